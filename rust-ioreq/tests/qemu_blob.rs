//! Host tests of the device-tree reader against the exact blob QEMU hands to Xen.
//!
//! `fixtures/qemu-boot-smoke.dtb` is what `qemu-system-aarch64 ... -dtb host.dtb
//! -machine dumpdtb=...` wrote for the boot-smoke scenario: QEMU's own tree with the old
//! `/memory` node blanked by NOP tokens, plus `/chosen` with two dom0less domains, the first
//! carrying two `xen,virtio-mmio-device` nodes served by the second.

use rust_ioreq::config::{Config, ErrorKind};
use rust_ioreq::types::{Gpa, Spi};

const QEMU_BLOB: &[u8] = include_bytes!("fixtures/qemu-boot-smoke.dtb");
/// SPIs of a domain on QEMU's virt GICv3 (288 lines).
const GIC_SPIS: u32 = 256;

#[test]
fn reads_the_devices_in_the_blob_qemu_gives_xen() {
    let config = Config::from_fdt(QEMU_BLOB, GIC_SPIS).expect("valid configuration");
    let names: Vec<&str> = config.domains().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["domU1", "domU2"]);
    let devices = config.devices();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        (devices[0].mmio.start(), devices[0].mmio.size()),
        (Gpa(0x0200_0000), 0x200)
    );
    assert_eq!(
        (devices[1].mmio.start(), devices[1].spi),
        (Gpa(0x0200_0200), Spi(34))
    );
    assert!(devices.iter().all(|d| d.frontend == 0 && d.backend == 1));
    assert_eq!(
        [devices[0].index_in_backend, devices[1].index_in_backend],
        [0, 1]
    );
}

#[test]
fn refuses_a_blob_that_is_not_a_device_tree() {
    for blob in [&[0u8; 64][..], &QEMU_BLOB[..16]] {
        let e = Config::from_fdt(blob, GIC_SPIS).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadBlob);
    }
}
