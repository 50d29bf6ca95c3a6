//! Host tests of the boot configuration (`Config::from_fdt`, DESIGN.md §3 binding): host device
//! trees written with an FDT writer, checking the defaults, the device numbering the backend
//! interface relies on (`docs/backend-abi.md`), and every `ErrorKind` with the node, property
//! and text an integrator reads.

// Test data: indices and cells are small, and narrowing them is the point of some cases.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::hostdt::{
    cells, host_dtb, host_dtb_with, string, Dev, Dom, GIC_SPIS, HOST_GIC_PHANDLE,
};
use rust_ioreq::config::{
    Config, ConfigError, ErrorKind, Name, ARGS_MAX, DEFAULT_NOTIFY_SPI, GUEST_VIRTIO_MMIO_BASE,
    MAX_DEVICES, MAX_DOMAINS, MAX_FRONTENDS_PER_BACKEND,
};
use rust_ioreq::types::{Gpa, Spi};

/// Phandle of the usual backend.
const BE: u32 = 0x100;

fn parse(doms: &[Dom]) -> Result<Box<Config>, ConfigError> {
    Config::from_fdt(&host_dtb(doms), GIC_SPIS)
}

fn ok(doms: &[Dom]) -> Box<Config> {
    parse(doms).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// Checks that `doms` is refused with `kind` at `node`/`property`, and the exact message.
#[track_caller]
fn refused(doms: &[Dom], node: &str, property: &str, kind: ErrorKind, text: &str) {
    let e = parse(doms).expect_err("configuration accepted");
    assert_eq!(
        (e.node.to_string().as_str(), e.property, e.kind),
        (node, property, kind),
        "{e}"
    );
    assert_eq!(e.to_string(), text);
}

fn name(s: &str) -> Name {
    Name::from_str(s)
}

/// A frontend `fe` with `devs`, served by `be`.
fn fe_be(devs: Vec<Dev>) -> Vec<Dom> {
    let mut fe = Dom::new("fe");
    for d in devs {
        fe = fe.device(d);
    }
    vec![fe, Dom::backend("be", BE)]
}

// ---------------------------------------------------------------------------------------------
// Accepted configurations

#[test]
fn defaults_fill_xens_virtio_mmio_window_and_spis() {
    let devs = (0..11)
        .map(|i| Dev::new(&format!("virtio{i}"), BE))
        .collect();
    let config = ok(&fe_be(devs));
    assert_eq!(config.devices().len(), 11);
    for (i, d) in config.devices().iter().enumerate() {
        assert_eq!(
            d.mmio.start(),
            Gpa(GUEST_VIRTIO_MMIO_BASE + 0x200 * i as u64)
        );
        assert_eq!(d.mmio.size(), 0x200);
        assert_eq!(d.spi, Spi(33 + i as u32));
        assert_eq!(d.name.as_str(), format!("virtio{i}"));
        assert_eq!(d.args.as_str(), "virtio-blk");
        assert_eq!((d.frontend, d.backend), (0, 1));
    }
    let be = config.domains()[1].backend.expect("be is a backend");
    assert_eq!(be.notify_spi, Spi(DEFAULT_NOTIFY_SPI));
    assert_eq!(DEFAULT_NOTIFY_SPI, 44);
    assert_eq!(be.frontends.as_slice(), &[0]);
    let fe = &config.domains()[0];
    assert!(fe.backend.is_none() && !fe.vpl011 && fe.phandle.is_none());
    assert_eq!((fe.vcpus, fe.nr_spis), (1, GIC_SPIS));
}

#[test]
fn a_domain_without_cpus_has_one_vcpu_and_linux_phandle_works() {
    let doms = [
        Dom::new("fe").without("cpus").device(Dev::new("d", 7)),
        Dom::new("be")
            .ioreq_server()
            .prop("linux,phandle", cells(&[7])),
    ];
    let config = ok(&doms);
    assert_eq!(config.domains()[0].vcpus, 1);
    assert_eq!(config.domains()[1].phandle, Some(7));
    assert_eq!(config.devices()[0].backend, 1);
}

#[test]
fn explicit_values_and_every_cell_layout() {
    for (a, s) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
        let doms = [
            Dom::new("fe")
                .cells(a, s)
                .cpus(4)
                .vpl011()
                .nr_spis(64)
                .device(
                    Dev::new("net", BE)
                        .at(0x0a00_0000, 0x1000)
                        .irq(95)
                        .args("virtio-net mac=1"),
                )
                .device(Dev::new("blk", BE).at(0x0a00_1000, 0x200).irq(40)),
            Dom::backend("be", BE).notify_spi(50),
        ];
        let config = ok(&doms);
        let [net, blk] = config.devices() else {
            panic!("two devices")
        };
        assert_eq!(
            (net.mmio.start(), net.mmio.size(), net.spi),
            (Gpa(0x0a00_0000), 0x1000, Spi(95))
        );
        assert_eq!(
            (blk.mmio.start(), blk.mmio.size(), blk.spi),
            (Gpa(0x0a00_1000), 0x200, Spi(40))
        );
        assert_eq!(net.args.as_str(), "virtio-net mac=1");
        let fe = &config.domains()[0];
        assert_eq!((fe.vcpus, fe.vpl011, fe.nr_spis), (4, true, 64));
        assert_eq!(
            config.domains()[1].backend.map(|b| b.notify_spi),
            Some(Spi(50))
        );
    }
}

#[test]
fn a_region_may_touch_reserved_regions_without_overlapping_them() {
    // Ends exactly where GUEST_RAM0 starts; starts exactly where the GICv3 distributor ends.
    let devs = vec![
        Dev::new("below-ram", BE).at(0x3fff_fe00, 0x200).irq(33),
        Dev::new("after-gicd", BE).at(0x0301_1000, 0x200).irq(34),
        Dev::new("before-gicd", BE).at(0x0300_0e00, 0x200).irq(35),
        Dev::new("vpl011-spot", BE).at(0x2200_0000, 0x200).irq(32),
    ];
    // Without vpl011 its region and SPI are free.
    ok(&fe_be(devs));
}

#[test]
fn devices_are_numbered_within_their_backend() {
    // be1 serves fe0 (two devices) and fe1 (one); be2 serves fe0's third device: fe0 uses two
    // backends, be1 serves two frontends. Backends may come before or after their frontends.
    let doms = [
        Dom::backend("be1", 0x10),
        Dom::new("fe0")
            .cpus(2)
            .device(Dev::new("a", 0x10))
            .device(Dev::new("b", 0x20))
            .device(Dev::new("c", 0x10)),
        Dom::new("fe1").device(Dev::new("d", 0x10)),
        Dom::backend("be2", 0x20).notify_spi(45),
    ];
    let config = ok(&doms);
    let got: Vec<(&str, u8, u8, u16, u8)> = config
        .devices()
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.frontend,
                d.backend,
                d.index_in_backend,
                d.frontend_index,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", 1, 0, 0, 0),
            ("b", 1, 3, 0, 0),
            ("c", 1, 0, 1, 0),
            ("d", 2, 0, 2, 1)
        ]
    );
    assert_eq!(
        config.domains()[0].backend.map(|b| b.frontends.len()),
        Some(2)
    );
    assert_eq!(
        config.domains()[0].backend.unwrap().frontends.as_slice(),
        &[1, 2]
    );
    assert_eq!(
        config.domains()[3].backend.unwrap().frontends.as_slice(),
        &[1]
    );
    assert_eq!(config.domain_index("fe1"), Some(2));
    assert_eq!(config.domain_index("be2"), Some(3));
    assert_eq!(config.domain_index("nope"), None);
}

#[test]
fn a_backend_may_itself_be_a_frontend_of_another_backend() {
    let doms = [
        Dom::new("fe").device(Dev::new("d", 0x10)),
        Dom::backend("mid", 0x10)
            .notify_spi(50)
            .device(Dev::new("d", 0x20)),
        Dom::backend("be", 0x20),
    ];
    let config = ok(&doms);
    assert_eq!(config.devices()[1].frontend, 1);
    assert_eq!(config.devices()[1].backend, 2);
}

#[test]
fn children_that_are_not_devices_and_nodes_that_are_not_domains_are_ignored() {
    let doms = [
        Dom::new("fe")
            .device(Dev::new("not-a-device", BE).prop("compatible", string("virtio,mmio")))
            .device(Dev::new("d", BE)),
        Dom::backend("be", BE),
        Dom::new("not-a-domain").prop("compatible", string("xen,something-else")),
    ];
    let config = ok(&doms);
    assert_eq!(config.domains().len(), 2);
    assert_eq!(config.devices().len(), 1);
    // Defaults count devices only: the first device gets the first default.
    assert_eq!(config.devices()[0].mmio.start(), Gpa(0x0200_0000));
    assert_eq!(config.devices()[0].spi, Spi(33));
}

#[test]
fn capacities_are_reachable() {
    // MAX_DEVICES devices, MAX_FRONTENDS_PER_BACKEND frontends, MAX_DOMAINS domains, a frontend
    // with 128 vCPUs and args of ARGS_MAX bytes are all fine.
    let mut doms = vec![Dom::backend("be", BE)];
    let mut n = 0;
    for f in 0..MAX_FRONTENDS_PER_BACKEND {
        let mut fe = Dom::new(&format!("fe{f}"));
        for i in 0..4 {
            fe = fe.device(Dev::new(&format!("d{i}"), BE).args(&"a".repeat(ARGS_MAX)));
            n += 1;
        }
        doms.push(fe);
    }
    assert_eq!(n, MAX_DEVICES);
    doms[1] = doms[1].clone().cpus(128);
    for i in doms.len()..MAX_DOMAINS {
        doms.push(Dom::new(&format!("idle{i}")));
    }
    let config = ok(&doms);
    assert_eq!(config.domains().len(), MAX_DOMAINS);
    assert_eq!(config.devices().len(), MAX_DEVICES);
    assert_eq!(config.devices()[31].index_in_backend, 31);
    assert_eq!(config.devices()[31].frontend_index, 7);
}

#[test]
fn a_huge_nr_spis_does_not_overflow() {
    // 32 + nr_spis overflows a u32: the parser must neither panic nor wrap.
    let doms = [
        Dom::new("fe")
            .nr_spis(u32::MAX)
            .device(Dev::new("d", BE).irq(1019)),
        Dom::backend("be", BE).nr_spis(u32::MAX - 31),
    ];
    let config = ok(&doms);
    assert_eq!(config.devices()[0].spi, Spi(1019));
    refused(
        &[
            Dom::new("fe")
                .nr_spis(u32::MAX)
                .device(Dev::new("d", BE).irq(1020)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/d",
        "interrupts",
        ErrorKind::SpiOutOfRange {
            spi: 1020,
            limit: u32::MAX,
        },
        "/chosen/fe/d: property 'interrupts': SPI 1020 is outside the domain's SPIs 32..4294967295",
    );
}

// ---------------------------------------------------------------------------------------------
// Blob-level errors

#[test]
fn refuses_what_is_not_a_device_tree() {
    for blob in [&[][..], &[0u8; 64][..], &host_dtb(&[])[..39]] {
        let e = Config::from_fdt(blob, GIC_SPIS).expect_err("not a DT");
        assert_eq!((e.kind, e.property), (ErrorKind::BadBlob, ""));
        assert_eq!(e.to_string(), "/: not a valid flattened device tree");
    }
}

#[test]
fn refuses_a_tree_without_chosen() {
    let e = Config::from_fdt(&host_dtb_with(&[], false), GIC_SPIS).expect_err("no chosen");
    assert_eq!(e.kind, ErrorKind::NoChosen);
    assert_eq!(e.to_string(), "/: no /chosen node");
}

#[test]
fn an_empty_chosen_is_an_empty_configuration() {
    let config = ok(&[]);
    assert!(config.domains().is_empty() && config.devices().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Region errors

#[test]
fn refuses_overlap_with_each_region_of_the_guest_memory_map() {
    for (base, what) in [
        (0x4000_0000, "guest RAM bank 0 (GUEST_RAM0)"),
        (0xffff_fe00, "guest RAM bank 0 (GUEST_RAM0)"),
        (0x2_0000_0000, "guest RAM bank 1 (GUEST_RAM1)"),
        (0xff_ffff_fe00, "guest RAM bank 1 (GUEST_RAM1)"),
        (0x0300_1000, "the GICv3 distributor"),
        (0x0301_0e00, "the GICv3 distributor"),
        (0x0302_0000, "the GICv3 redistributors"),
        (0x0401_fe00, "the GICv3 redistributors"),
        (0x3800_0000, "the grant table (GUEST_GNTTAB)"),
        (0x38ff_fe00, "the grant table (GUEST_GNTTAB)"),
        (0x3900_0000, "the magic pages (GUEST_MAGIC)"),
        (0x39ff_fe00, "the magic pages (GUEST_MAGIC)"),
    ] {
        refused(
            &fe_be(vec![Dev::new("d", BE).at(base, 0x200)]),
            "/chosen/fe/d",
            "reg",
            ErrorKind::Overlaps(what),
            &format!("/chosen/fe/d: property 'reg': region overlaps {what}"),
        );
    }
    // A region straddling into the distributor from below.
    refused(
        &fe_be(vec![Dev::new("d", BE).at(0x0300_0e00, 0x400)]),
        "/chosen/fe/d",
        "reg",
        ErrorKind::Overlaps("the GICv3 distributor"),
        "/chosen/fe/d: property 'reg': region overlaps the GICv3 distributor",
    );
}

#[test]
fn refuses_overlap_with_vpl011_only_when_the_domain_has_it() {
    for base in [0x2200_0000, 0x2200_0e00] {
        let dev = Dev::new("d", BE).at(base, 0x200).irq(40);
        refused(
            &[
                Dom::new("fe").vpl011().device(dev.clone()),
                Dom::backend("be", BE),
            ],
            "/chosen/fe/d",
            "reg",
            ErrorKind::Overlaps("the vpl011 UART"),
            "/chosen/fe/d: property 'reg': region overlaps the vpl011 UART",
        );
        ok(&[Dom::new("fe").device(dev), Dom::backend("be", BE)]);
    }
    // Just past the UART's 4 KiB is fine even with vpl011.
    ok(&[
        Dom::new("fe")
            .vpl011()
            .device(Dev::new("d", BE).at(0x2200_1000, 0x200)),
        Dom::backend("be", BE),
    ]);
}

#[test]
fn refuses_overlap_with_its_own_backend_pages_only_when_the_domain_is_a_backend() {
    // A domain that serves devices has its doorbell and ioreq pages at 0x3e000000..0x3e009000
    // (docs/backend-abi.md); as a frontend of another backend, its devices must avoid them.
    let what = "the backend interface (doorbell, ioreq pages)";
    for base in [0x3e00_0000, 0x3e00_8e00, 0x3dff_fe00] {
        let size = if base == 0x3dff_fe00 { 0x400 } else { 0x200 };
        let dev = Dev::new("d", BE).at(base, size);
        refused(
            &[
                Dom::backend("mid", 0x10).device(dev.clone()),
                Dom::backend("be", BE),
            ],
            "/chosen/mid/d",
            "reg",
            ErrorKind::Overlaps(what),
            &format!("/chosen/mid/d: property 'reg': region overlaps {what}"),
        );
        ok(&[Dom::new("fe").device(dev), Dom::backend("be", BE)]);
    }
    ok(&[
        Dom::backend("mid", 0x10).device(Dev::new("d", BE).at(0x3e00_9000, 0x200)),
        Dom::backend("be", BE),
    ]);
}

#[test]
fn refuses_overlap_between_two_devices_of_a_frontend() {
    refused(
        &fe_be(vec![
            Dev::new("a", BE).at(0x0a00_0000, 0x400).irq(40),
            Dev::new("b", BE).at(0x0a00_0200, 0x200).irq(41),
        ]),
        "/chosen/fe/b",
        "reg",
        ErrorKind::OverlapsDevice(name("a")),
        "/chosen/fe/b: property 'reg': region overlaps device a",
    );
    // A default region taken by an explicit one.
    refused(
        &fe_be(vec![
            Dev::new("a", BE).at(0x0200_0200, 0x200).irq(40),
            Dev::new("b", BE),
        ]),
        "/chosen/fe/b",
        "reg",
        ErrorKind::OverlapsDevice(name("a")),
        "/chosen/fe/b: property 'reg': region overlaps device a",
    );
    // The same GPA in two frontends is fine: each has its own address space.
    ok(&[
        Dom::new("fe1").device(Dev::new("a", BE)),
        Dom::new("fe2").device(Dev::new("a", BE)),
        Dom::backend("be", BE),
    ]);
}

#[test]
fn refuses_bad_sizes() {
    for size in [0, 0x100, 0x300, 0x1001] {
        refused(
            &fe_be(vec![Dev::new("d", BE).at(0x0a00_0000, size)]),
            "/chosen/fe/d",
            "reg",
            ErrorKind::BadSize(size),
            &format!(
                "/chosen/fe/d: property 'reg': size {size:#x} is not a non-zero multiple of 0x200"
            ),
        );
    }
}

#[test]
fn refuses_bad_alignment() {
    for base in [0x0a00_0100, 0x0a00_0001, 0x0a00_0004] {
        refused(
            &fe_be(vec![Dev::new("d", BE).at(base, 0x200)]),
            "/chosen/fe/d",
            "reg",
            ErrorKind::BadAlignment(base),
            &format!("/chosen/fe/d: property 'reg': address {base:#x} is not 0x200-aligned"),
        );
    }
}

#[test]
fn refuses_a_region_that_wraps() {
    refused(
        &fe_be(vec![Dev::new("d", BE).at(0xffff_ffff_ffff_fe00, 0x400)]),
        "/chosen/fe/d",
        "reg",
        ErrorKind::BadSize(0x400),
        "/chosen/fe/d: property 'reg': region of size 0x400 wraps past the end of the address space",
    );
}

#[test]
fn refuses_a_reg_with_the_wrong_number_of_cells() {
    for (a, s, reg) in [
        (2, 2, vec![0, 0x0a00_0000, 0x200]),
        (2, 1, vec![0, 0x0a00_0000, 0, 0x200]),
        (1, 1, vec![0x0a00_0000]),
        (1, 1, vec![]),
    ] {
        refused(
            &[
                Dom::new("fe")
                    .cells(a, s)
                    .device(Dev::new("d", BE).raw_reg(&reg)),
                Dom::backend("be", BE),
            ],
            "/chosen/fe/d",
            "reg",
            ErrorKind::Malformed,
            "/chosen/fe/d: property 'reg': malformed (wrong number of cells?)",
        );
    }
    // A reg whose length is not a whole number of cells.
    for len in [15, 17] {
        refused(
            &fe_be(vec![Dev::new("d", BE).prop("reg", vec![0; len])]),
            "/chosen/fe/d",
            "reg",
            ErrorKind::Malformed,
            "/chosen/fe/d: property 'reg': malformed (wrong number of cells?)",
        );
    }
}

#[test]
fn refuses_an_address_that_does_not_fit_64_bits() {
    // Three address cells are legal DT, but a non-zero top cell cannot be a guest address; it
    // must not be silently dropped (which would place the device at 0x0a000000).
    refused(
        &[
            Dom::new("fe")
                .cells(3, 1)
                .device(Dev::new("d", BE).raw_reg(&[1, 0, 0x0a00_0000, 0x200])),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/d",
        "reg",
        ErrorKind::Malformed,
        "/chosen/fe/d: property 'reg': malformed (wrong number of cells?)",
    );
    // Leading zero cells are fine.
    let config = ok(&[
        Dom::new("fe")
            .cells(3, 3)
            .device(Dev::new("d", BE).raw_reg(&[0, 0, 0x0a00_0000, 0, 0, 0x200])),
        Dom::backend("be", BE),
    ]);
    assert_eq!(config.devices()[0].mmio.start(), Gpa(0x0a00_0000));
}

#[test]
fn a_malformed_cells_property_is_reported_on_the_domain_node() {
    for prop in ["#address-cells", "#size-cells"] {
        refused(
            &[
                Dom::new("fe")
                    .prop(prop, cells(&[1, 1]))
                    .device(Dev::new("d", BE)),
                Dom::backend("be", BE),
            ],
            "/chosen/fe",
            prop,
            ErrorKind::Malformed,
            &format!("/chosen/fe: property '{prop}': malformed (wrong number of cells?)"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SPI errors

#[test]
fn refuses_a_device_spi_outside_the_domains_spis() {
    // nr_spis = 16: SPIs 32..48.
    let fe = |irq| {
        [
            Dom::new("fe")
                .nr_spis(16)
                .device(Dev::new("d", BE).irq(irq)),
            Dom::backend("be", BE),
        ]
    };
    ok(&fe(47));
    for irq in [48, 31, 0, 1020, u32::MAX] {
        refused(
            &fe(irq),
            "/chosen/fe/d",
            "interrupts",
            ErrorKind::SpiOutOfRange { spi: irq, limit: 48 },
            &format!("/chosen/fe/d: property 'interrupts': SPI {irq} is outside the domain's SPIs 32..48"),
        );
    }
    // A default SPI needs nr_spis too.
    refused(
        &[
            Dom::new("fe").nr_spis(1).device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/d",
        "interrupts",
        ErrorKind::SpiOutOfRange { spi: 33, limit: 33 },
        "/chosen/fe/d: property 'interrupts': SPI 33 is outside the domain's SPIs 32..33",
    );
}

#[test]
fn refuses_a_notify_spi_outside_the_backends_spis() {
    refused(
        &[Dom::backend("be", BE).nr_spis(8)],
        "/chosen/be",
        "xen,ioreq-notify-spi",
        ErrorKind::SpiOutOfRange { spi: 44, limit: 40 },
        "/chosen/be: property 'xen,ioreq-notify-spi': SPI 44 is outside the domain's SPIs 32..40",
    );
    refused(
        &[Dom::backend("be", BE).notify_spi(20)],
        "/chosen/be",
        "xen,ioreq-notify-spi",
        ErrorKind::SpiOutOfRange {
            spi: 20,
            limit: 32 + GIC_SPIS,
        },
        "/chosen/be: property 'xen,ioreq-notify-spi': SPI 20 is outside the domain's SPIs 32..288",
    );
}

#[test]
fn refuses_an_spi_used_by_two_devices() {
    refused(
        &fe_be(vec![Dev::new("a", BE).irq(40), Dev::new("b", BE).irq(40)]),
        "/chosen/fe/b",
        "interrupts",
        ErrorKind::SpiReused {
            spi: 40,
            by: name("a"),
        },
        "/chosen/fe/b: property 'interrupts': SPI 40 is already used by a",
    );
    // An explicit SPI colliding with the next default.
    refused(
        &fe_be(vec![Dev::new("a", BE).irq(34), Dev::new("b", BE)]),
        "/chosen/fe/b",
        "interrupts",
        ErrorKind::SpiReused {
            spi: 34,
            by: name("a"),
        },
        "/chosen/fe/b: property 'interrupts': SPI 34 is already used by a",
    );
    // The same SPI in two frontends is fine.
    ok(&[
        Dom::new("fe1").device(Dev::new("a", BE).irq(40)),
        Dom::new("fe2").device(Dev::new("a", BE).irq(40)),
        Dom::backend("be", BE),
    ]);
}

#[test]
fn refuses_a_device_spi_taken_by_vpl011_only_when_the_domain_has_it() {
    let dev = Dev::new("d", BE).at(0x0a00_0000, 0x200).irq(32);
    refused(
        &[
            Dom::new("fe").vpl011().device(dev.clone()),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/d",
        "interrupts",
        ErrorKind::SpiReused {
            spi: 32,
            by: name("vpl011"),
        },
        "/chosen/fe/d: property 'interrupts': SPI 32 is already used by vpl011",
    );
    ok(&[Dom::new("fe").device(dev), Dom::backend("be", BE)]);
}

#[test]
fn refuses_a_device_spi_equal_to_its_own_domains_notify_spi() {
    // `mid` is a backend (notify SPI 44) and a frontend of `be`.
    refused(
        &[
            Dom::backend("mid", 0x10).device(Dev::new("d", BE).irq(44)),
            Dom::backend("be", BE),
        ],
        "/chosen/mid/d",
        "interrupts",
        ErrorKind::SpiReused { spi: 44, by: name("its own xen,ioreq-notify-spi") },
        "/chosen/mid/d: property 'interrupts': SPI 44 is already used by its own xen,ioreq-notify-spi",
    );
}

#[test]
fn refuses_a_notify_spi_taken_by_vpl011() {
    refused(
        &[Dom::backend("be", BE).vpl011().notify_spi(32)],
        "/chosen/be",
        "xen,ioreq-notify-spi",
        ErrorKind::SpiReused {
            spi: 32,
            by: name("vpl011"),
        },
        "/chosen/be: property 'xen,ioreq-notify-spi': SPI 32 is already used by vpl011",
    );
    ok(&[Dom::backend("be", BE).notify_spi(32)]);
}

#[test]
fn refuses_a_twelfth_default() {
    let mut devs: Vec<Dev> = (0..11).map(|i| Dev::new(&format!("d{i}"), BE)).collect();
    let mut with_reg = devs.clone();
    devs.push(Dev::new("d11", BE));
    refused(
        &fe_be(devs),
        "/chosen/fe/d11",
        "reg",
        ErrorKind::NoDefaultLeft,
        "/chosen/fe/d11: property 'reg': no default left (SPIs 33..43 taken): give 'reg' and 'interrupts'",
    );
    with_reg.push(Dev::new("d11", BE).at(0x0a00_0000, 0x200));
    refused(
        &fe_be(with_reg.clone()),
        "/chosen/fe/d11",
        "interrupts",
        ErrorKind::NoDefaultLeft,
        "/chosen/fe/d11: property 'interrupts': no default left (SPIs 33..43 taken): give 'reg' and 'interrupts'",
    );
    with_reg.pop();
    with_reg.push(Dev::new("d11", BE).at(0x0a00_0000, 0x200).irq(60));
    ok(&fe_be(with_reg));
}

// ---------------------------------------------------------------------------------------------
// Backend reference errors

#[test]
fn refuses_a_dangling_phandle() {
    for p in [0x999, HOST_GIC_PHANDLE, 0] {
        refused(
            &fe_be(vec![Dev::new("d", p)]),
            "/chosen/fe/d",
            "xen,backend",
            ErrorKind::DanglingPhandle(p),
            &format!("/chosen/fe/d: property 'xen,backend': phandle {p:#x} is no xen,domain node"),
        );
    }
}

#[test]
fn refuses_a_phandle_of_a_domain_that_is_no_backend() {
    refused(
        &[
            Dom::new("fe").device(Dev::new("d", 0x30)),
            Dom::new("other").phandle(0x30),
        ],
        "/chosen/fe/d",
        "xen,backend",
        ErrorKind::NotABackend(name("other")),
        "/chosen/fe/d: property 'xen,backend': domain other has no 'xen,ioreq-server'",
    );
}

#[test]
fn refuses_a_domain_serving_itself() {
    refused(
        &[Dom::backend("be", BE).device(Dev::new("d", BE))],
        "/chosen/be/d",
        "xen,backend",
        ErrorKind::ServesItself,
        "/chosen/be/d: property 'xen,backend': a domain cannot be its own backend",
    );
}

#[test]
fn refuses_missing_backend_properties() {
    for prop in ["xen,backend", "xen,backend-args"] {
        refused(
            &fe_be(vec![Dev::new("d", BE).without(prop)]),
            "/chosen/fe/d",
            prop,
            ErrorKind::Missing,
            &format!("/chosen/fe/d: property '{prop}': missing"),
        );
    }
}

#[test]
fn refuses_args_longer_than_the_limit() {
    let long = "x".repeat(ARGS_MAX + 1);
    refused(
        &fe_be(vec![Dev::new("d", BE).args(&long)]),
        "/chosen/fe/d",
        "xen,backend-args",
        ErrorKind::ArgsTooLong,
        "/chosen/fe/d: property 'xen,backend-args': longer than 96 bytes",
    );
    // Multi-byte characters count as bytes.
    let config = ok(&fe_be(vec![
        Dev::new("d", BE).args(&"é".repeat(ARGS_MAX / 2))
    ]));
    assert_eq!(config.devices()[0].args.as_str().len(), ARGS_MAX);
    refused(
        &fe_be(vec![
            Dev::new("d", BE).args(&format!("{}x", "é".repeat(ARGS_MAX / 2)))
        ]),
        "/chosen/fe/d",
        "xen,backend-args",
        ErrorKind::ArgsTooLong,
        "/chosen/fe/d: property 'xen,backend-args': longer than 96 bytes",
    );
}

#[test]
fn refuses_malformed_single_cell_properties() {
    let two = cells(&[1, 2]);
    let cases: Vec<(Vec<Dom>, &str, &str)> = vec![
        (
            fe_be(vec![
                Dev::new("d", BE).prop("interrupts", cells(&[0, 40, 4]))
            ]),
            "/chosen/fe/d",
            "interrupts",
        ),
        (
            fe_be(vec![Dev::new("d", BE).prop("xen,backend", two.clone())]),
            "/chosen/fe/d",
            "xen,backend",
        ),
        (
            vec![Dom::new("fe").prop("cpus", two.clone())],
            "/chosen/fe",
            "cpus",
        ),
        (
            vec![Dom::new("fe").prop("nr_spis", vec![0, 1])],
            "/chosen/fe",
            "nr_spis",
        ),
        (
            vec![Dom::new("fe").prop("phandle", two.clone())],
            "/chosen/fe",
            "phandle",
        ),
        (
            vec![Dom::backend("be", BE).prop("xen,ioreq-notify-spi", vec![])],
            "/chosen/be",
            "xen,ioreq-notify-spi",
        ),
    ];
    for (doms, node, prop) in cases {
        refused(
            &doms,
            node,
            prop,
            ErrorKind::Malformed,
            &format!("{node}: property '{prop}': malformed (wrong number of cells?)"),
        );
    }
    // Args that are not UTF-8.
    refused(
        &fe_be(vec![
            Dev::new("d", BE).prop("xen,backend-args", vec![0xff, 0xfe, 0])
        ]),
        "/chosen/fe/d",
        "xen,backend-args",
        ErrorKind::Malformed,
        "/chosen/fe/d: property 'xen,backend-args': malformed (not UTF-8 text)",
    );
}

// ---------------------------------------------------------------------------------------------
// Capacity errors

#[test]
fn refuses_a_thirty_third_device() {
    let mut doms = vec![Dom::backend("be", BE)];
    for f in 0..3 {
        let mut fe = Dom::new(&format!("fe{f}"));
        for i in 0..11 {
            fe = fe.device(Dev::new(&format!("d{i}"), BE));
        }
        doms.push(fe);
    }
    refused(
        &doms,
        "/chosen/fe2/d10",
        "",
        ErrorKind::TooManyDevices,
        &format!("/chosen/fe2/d10: more than {MAX_DEVICES} devices"),
    );
}

#[test]
fn refuses_a_ninth_frontend_on_one_backend() {
    let mut doms = vec![Dom::backend("be", BE)];
    for f in 0..=MAX_FRONTENDS_PER_BACKEND {
        doms.push(Dom::new(&format!("fe{f}")).device(Dev::new("d", BE)));
    }
    refused(
        &doms,
        "/chosen/fe8/d",
        "xen,backend",
        ErrorKind::TooManyFrontends,
        "/chosen/fe8/d: property 'xen,backend': backend serves more than 8 frontends",
    );
    // A second device of an already-served frontend does not count again.
    doms.pop();
    doms[1] = doms[1].clone().device(Dev::new("e", BE));
    ok(&doms);
}

#[test]
fn refuses_a_seventeenth_domain() {
    let doms: Vec<Dom> = (0..=MAX_DOMAINS)
        .map(|i| Dom::new(&format!("d{i}")))
        .collect();
    refused(
        &doms,
        "/chosen/d16",
        "",
        ErrorKind::TooManyDomains,
        "/chosen/d16: more than 16 domains",
    );
}

#[test]
fn refuses_a_frontend_with_more_vcpus_than_slots() {
    refused(
        &[
            Dom::new("fe").cpus(129).device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe",
        "cpus",
        ErrorKind::TooManyVcpus(129),
        "/chosen/fe: property 'cpus': 129 vCPUs: a frontend has at most 128",
    );
    // A domain that is no frontend may have more.
    ok(&[Dom::backend("be", BE).cpus(129)]);
}

/// Xen binds a domain by its node's full name (unit address included); cut at 31 bytes, a longer
/// one would never be bound (see tests/lifetime.rs; found by the `dt_nodes` fuzz target).
#[test]
fn refuses_a_domain_name_longer_than_31_bytes() {
    let node_name = "abcdefghijklmnopqrstuvwxyz01234";
    refused(
        &[
            Dom::new(&format!("{node_name}@1")).device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/abcdefghijklmnopqrstuvwxyz01234",
        "",
        ErrorKind::NameTooLong,
        "/chosen/abcdefghijklmnopqrstuvwxyz01234: node name longer than 31 bytes (unit address \
         included)",
    );
    // 31 bytes fit.
    ok(&[
        Dom::new(node_name).device(Dev::new("d", BE)),
        Dom::backend("abcdefghijklmnopqrstuvwxyz012@1", BE),
    ]);
}

#[test]
fn every_error_kind_is_covered_here() {
    // A reminder that compiles only while the list above is complete: adding a variant to
    // ErrorKind breaks this match until a test for it is written.
    fn covered(k: ErrorKind) -> &'static str {
        match k {
            ErrorKind::BadBlob => "refuses_what_is_not_a_device_tree",
            ErrorKind::NoChosen => "refuses_a_tree_without_chosen",
            ErrorKind::Missing => "refuses_missing_backend_properties",
            ErrorKind::Malformed => "refuses_malformed_single_cell_properties",
            ErrorKind::BadSize(_) => "refuses_bad_sizes",
            ErrorKind::BadAlignment(_) => "refuses_bad_alignment",
            ErrorKind::Overlaps(_) => "refuses_overlap_with_each_region_of_the_guest_memory_map",
            ErrorKind::OverlapsDevice(_) => "refuses_overlap_between_two_devices_of_a_frontend",
            ErrorKind::SpiOutOfRange { .. } => "refuses_a_device_spi_outside_the_domains_spis",
            ErrorKind::SpiReused { .. } => "refuses_an_spi_used_by_two_devices",
            ErrorKind::NoDefaultLeft => "refuses_a_twelfth_default",
            ErrorKind::DanglingPhandle(_) => "refuses_a_dangling_phandle",
            ErrorKind::NotABackend(_) => "refuses_a_phandle_of_a_domain_that_is_no_backend",
            ErrorKind::ServesItself => "refuses_a_domain_serving_itself",
            ErrorKind::TooManyDevices => "refuses_a_thirty_third_device",
            ErrorKind::TooManyFrontends => "refuses_a_ninth_frontend_on_one_backend",
            ErrorKind::TooManyDomains => "refuses_a_seventeenth_domain",
            ErrorKind::TooManyVcpus(_) => "refuses_a_frontend_with_more_vcpus_than_slots",
            ErrorKind::ArgsTooLong => "refuses_args_longer_than_the_limit",
            ErrorKind::NameTooLong => "refuses_a_domain_name_longer_than_31_bytes",
        }
    }
    assert!(!covered(ErrorKind::BadBlob).is_empty());
}
