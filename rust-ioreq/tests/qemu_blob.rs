//! Host tests of the device-tree reader against the exact blob QEMU hands to Xen.
//!
//! `fixtures/qemu-boot-smoke.dtb` is what `qemu-system-aarch64 ... -dtb host.dtb
//! -machine dumpdtb=...` wrote for the boot-smoke scenario: QEMU's own tree with the old
//! `/memory` node blanked by NOP tokens, plus `/chosen` with two dom0less domains, the first
//! carrying two `xen,virtio-mmio-device` nodes.

use rust_ioreq::config::{count_virtio_mmio_devices, ConfigError};

const QEMU_BLOB: &[u8] = include_bytes!("fixtures/qemu-boot-smoke.dtb");

#[test]
fn counts_the_devices_in_the_blob_qemu_gives_xen() {
    assert_eq!(count_virtio_mmio_devices(QEMU_BLOB), Ok(2));
}

#[test]
fn refuses_a_blob_that_is_not_a_device_tree() {
    assert_eq!(
        count_virtio_mmio_devices(&[0u8; 64]),
        Err(ConfigError::BadBlob)
    );
    assert_eq!(
        count_virtio_mmio_devices(&QEMU_BLOB[..16]),
        Err(ConfigError::BadBlob)
    );
}
