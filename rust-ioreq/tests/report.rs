//! Host tests of the boot lines (`report`): the exact text Xen prints about an accepted
//! configuration, the same text `arch/src/entry.rs` formats today (pinned here so the two
//! cannot drift while `arch/` still has its own format strings).

// The shared test helpers narrow small test values on purpose.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::hostdt::{host_dtb, Dev, Dom, GIC_SPIS};
use rust_ioreq::config::Config;
use rust_ioreq::report::{BackendLine, Banner, DeviceLine, InvalidConfig, WindowLine};
use rust_ioreq::types::DomId;

#[test]
fn boot_lines_name_every_device_backend_and_window() {
    let doms = [
        Dom::new("idle"),
        Dom::new("fe@1")
            .device(
                Dev::new("virtio@2000000", 0x10)
                    .at(0x0200_0000, 0x200)
                    .irq(33),
            )
            .device(Dev::new("rng", 0x10).args("virtio-rng")),
        Dom::backend("be", 0x10),
    ];
    let config = Config::from_fdt(&host_dtb(&doms), GIC_SPIS).expect("valid");
    assert_eq!(
        Banner(&config).to_string(),
        format!(
            "rust-ioreq v{} ready: 2 xen,virtio-mmio-device node(s) in /chosen",
            rust_ioreq::VERSION
        )
    );
    let lines: Vec<String> = config
        .devices()
        .iter()
        .map(|d| DeviceLine(&config, d).to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "fe@1/virtio@2000000: [0x2000000, 0x2000200) SPI 33 -> backend be device 0 \"virtio-blk\"",
            "fe@1/rng: [0x2000200, 0x2000400) SPI 34 -> backend be device 1 \"virtio-rng\"",
        ]
    );
    // `be` is the third xen,domain node: d3.
    let be = config.domain_index("be").expect("be");
    let domid = DomId(config.domains()[be].chosen_position as u16 + 1);
    assert_eq!(
        BackendLine(&config, be, domid).to_string(),
        "be (d3) serves 1 frontend(s), notify SPI 44, timeout 5000 ms"
    );
    assert_eq!(
        WindowLine(&config, be, 0).to_string(),
        "be: RAM of fe@1 mapped at 0x1000000000"
    );
    let e = Config::from_fdt(&[0u8; 64], GIC_SPIS).expect_err("not a DT");
    assert_eq!(
        InvalidConfig(&e).to_string(),
        "invalid configuration: /: not a valid flattened device tree"
    );
}
