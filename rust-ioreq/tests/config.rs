//! Host tests of the boot configuration (`Config::from_fdt`, DESIGN.md §3 binding): host device
//! trees written with an FDT writer, checking the defaults, the device numbering the backend
//! interface relies on (`docs/backend-abi.md`), and every `ErrorKind` with the node, property
//! and text an integrator reads.

// Test data: indices and cells are small, and narrowing them is the point of some cases.
#![allow(clippy::cast_possible_truncation)]
// The helpers return the library's `ConfigError`, large on purpose (whole node names).
#![allow(clippy::result_large_err)]

mod common;

use common::hostdt::{
    cells, host_dtb, host_dtb_full, host_dtb_with, string, Dev, Dom, Host, Node, GIC_SPIS,
    HOST_GIC_PHANDLE,
};
use rust_ioreq::config::{
    ram_p2m_pages, xen_default_p2m_pages, Config, ConfigError, ErrorKind, HostFacts, ModuleReader,
    Name, Text, ARGS_MAX, DEFAULT_NOTIFY_SPI, GUEST_VIRTIO_MMIO_BASE, MAX_DEVICES, MAX_DOMAINS,
    MAX_FRONTENDS_PER_BACKEND, MAX_RAM_BANKS, NAME_MAX,
};
use rust_ioreq::types::{Gpa, GpaRange, Spi};

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
    // Backends serving nothing still count as involved domains.
    for i in doms.len()..MAX_DOMAINS {
        doms.push(Dom::backend(&format!("idle{i}"), 0x1000 + i as u32));
    }
    // Domains that use no device do not count at all.
    for i in 0..4 {
        doms.push(Dom::new(&format!("other{i}")));
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
    // A domain that serves devices has its doorbell, ioreq, transport and notify pages at
    // 0x3e000000..0x3e00b000 (docs/backend-abi.md); as a frontend of another backend, its
    // devices must avoid them.
    let what = "the backend interface (doorbell, ioreq, transport, notify pages)";
    for base in [0x3e00_0000, 0x3e00_8e00, 0x3e00_ae00, 0x3dff_fe00] {
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
        Dom::backend("mid", 0x10).device(Dev::new("d", BE).at(0x3e00_b000, 0x200)),
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
        // Domain properties are read strictly only on domains involved in the binding (here
        // backends); see domains_that_use_no_device_never_stop_the_boot.
        (
            vec![Dom::new("fe").ioreq_server().prop("cpus", two.clone())],
            "/chosen/fe",
            "cpus",
        ),
        (
            vec![Dom::new("fe").ioreq_server().prop("nr_spis", vec![0, 1])],
            "/chosen/fe",
            "nr_spis",
        ),
        (
            vec![Dom::new("fe").ioreq_server().prop("phandle", two.clone())],
            "/chosen/fe",
            "phandle",
        ),
        (
            vec![Dom::new("fe")
                .ioreq_server()
                .prop("memory", cells(&[0, 0, 1]))],
            "/chosen/fe",
            "memory",
        ),
        (
            vec![Dom::backend("be", BE).prop("xen,domain-p2m-mem-mb", vec![0, 0, 1])],
            "/chosen/be",
            "xen,domain-p2m-mem-mb",
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
    // Seventeen involved domains (backends, even serving nothing); uninvolved ones in between
    // do not count.
    let mut doms: Vec<Dom> = (0..=MAX_DOMAINS)
        .map(|i| Dom::backend(&format!("d{i}"), 0x10 + i as u32))
        .collect();
    doms.insert(3, Dom::new("other"));
    refused(
        &doms,
        "/chosen/d16",
        "",
        ErrorKind::TooManyDomains,
        "/chosen/d16: more than 16 domains use virtio devices (frontends and backends count, \
         other domains do not)",
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

// ---------------------------------------------------------------------------------------------
// Hardening (issue 7). Each of these tests fails on main at d2a38d4, where the configuration
// accepted what they refuse (or had no API for what they look up).

/// Parses `doms` in a host tree shaped by `host`, with `facts`.
fn parse_with(doms: &[Dom], host: &Host, facts: HostFacts<'_>) -> Result<Box<Config>, ConfigError> {
    Config::from_fdt(&host_dtb_full(doms, host), facts)
}

/// The facts of QEMU virt with Cortex-A57 (the default), and no module reader.
fn facts() -> HostFacts<'static> {
    HostFacts::from(GIC_SPIS)
}

/// Checks an error's node, property and exact message.
#[track_caller]
fn is_error(
    result: Result<Box<Config>, ConfigError>,
    node: &str,
    property: &str,
    text: &str,
) -> ErrorKind {
    let e = result.expect_err("configuration accepted");
    assert_eq!(
        (e.node.to_string().as_str(), e.property),
        (node, property),
        "{e}"
    );
    assert_eq!(e.to_string(), text);
    e.kind
}

#[test]
fn domains_are_found_by_their_full_path() {
    // Defect 3: Xen 4.17's dt_node_name() gives `be` for both nodes; the configuration keys
    // domains by full node name so that Xen can pass dt_node_full_name().
    let doms = [
        Dom::backend("be", BE),
        Dom::new("be@1").device(Dev::new("d", BE)),
    ];
    let config = ok(&doms);
    assert_eq!(config.domain_index_by_path("/chosen/be"), Some(0));
    assert_eq!(config.domain_index_by_path("/chosen/be@1"), Some(1));
    assert_eq!(config.domain_index_by_path("/chosen/be@2"), None);
    assert_eq!(config.domain_index_by_path("be@1"), None);
    assert_eq!(config.domain_index("be@1"), Some(1));
    assert_eq!(config.domains()[1].name.as_str(), "be@1");
    // Messages print the full name too.
    refused(
        &[
            Dom::backend("be", BE),
            Dom::new("be@1").device(Dev::new("d", BE).irq(20)),
        ],
        "/chosen/be@1/d",
        "interrupts",
        ErrorKind::SpiOutOfRange {
            spi: 20,
            limit: 288,
        },
        "/chosen/be@1/d: property 'interrupts': SPI 20 is outside the domain's SPIs 32..288",
    );
}

#[test]
fn names_past_31_bytes_are_kept_whole() {
    // 31 bytes of node name plus a unit address: the old 31-byte names cut both to the same
    // 31 `a`s, so both paths found the first domain.
    let long = "a".repeat(31);
    let (fe, be) = (format!("{long}@1"), format!("{long}@2"));
    let config = ok(&[
        Dom::new(&fe).device(Dev::new("d", BE)),
        Dom::backend(&be, BE),
    ]);
    assert_eq!(
        config.domain_index_by_path(&format!("/chosen/{fe}")),
        Some(0)
    );
    assert_eq!(
        config.domain_index_by_path(&format!("/chosen/{be}")),
        Some(1)
    );
    assert_eq!(config.domains()[1].name.as_str(), be);
}

#[test]
fn refuses_a_name_longer_than_name_max() {
    let long = format!("{}@{}", "a".repeat(31), "1".repeat(NAME_MAX - 31));
    assert_eq!(long.len(), NAME_MAX + 1);
    let cut = &long[..NAME_MAX];
    is_error(
        parse(&[Dom::backend(&long, BE)]),
        &format!("/chosen/{cut}"),
        "",
        &format!(
            "/chosen/{cut}: node name of 64 bytes, longer than 63 (shown cut here; Xen finds \
             domains by their full node name, which must not be cut)"
        ),
    );
    // A device name too.
    is_error(
        parse(&fe_be(vec![Dev::new(&long, BE)])),
        &format!("/chosen/fe/{cut}"),
        "",
        &format!(
            "/chosen/fe/{cut}: node name of 64 bytes, longer than 63 (shown cut here; Xen finds \
             domains by their full node name, which must not be cut)"
        ),
    );
    // Exactly NAME_MAX is fine; so is any name on a domain that uses no device.
    ok(&[Dom::backend(&long[..NAME_MAX], BE), Dom::new(&long)]);
}

#[test]
fn refuses_duplicate_domain_names() {
    let text = "/chosen/be: another xen,domain node in /chosen has the same name (Xen finds \
                domains by their full node name)";
    let kind = is_error(
        parse(&[
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE),
            Dom::backend("be", 0x200),
        ]),
        "/chosen/be",
        "",
        text,
    );
    assert_eq!(kind, ErrorKind::DuplicateName);
    // Also when the other node is not involved: Xen would give both the same identity.
    is_error(
        parse(&[
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE),
            Dom::new("be"),
        ]),
        "/chosen/be",
        "",
        text,
    );
    // Two uninvolved domains with one name are Xen's business.
    ok(&[
        Dom::new("fe").device(Dev::new("d", BE)),
        Dom::backend("be", BE),
        Dom::new("x"),
        Dom::new("x"),
    ]);
}

#[test]
fn refuses_duplicate_phandles() {
    // The backend's phandle is also the host GIC's: the device's xen,backend is ambiguous.
    let kind = is_error(
        parse(&[
            Dom::new("fe").device(Dev::new("d", HOST_GIC_PHANDLE)),
            Dom::backend("be", HOST_GIC_PHANDLE),
        ]),
        "/chosen/be",
        "phandle",
        "/chosen/be: property 'phandle': phandle 0x8001 is also carried by /intc@8000000",
    );
    assert_eq!(
        kind,
        ErrorKind::DuplicatePhandle {
            phandle: HOST_GIC_PHANDLE,
            other: Text::from_str("/intc@8000000"),
        }
    );
    // Two domains with one phandle (one of them not involved, with linux,phandle).
    is_error(
        parse(&[
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE),
            Dom::new("other").prop("linux,phandle", cells(&[BE])),
        ]),
        "/chosen/be",
        "phandle",
        "/chosen/be: property 'phandle': phandle 0x100 is also carried by /chosen/other",
    );
    // phandle and linux,phandle on the same node are one carrier.
    ok(&[
        Dom::new("fe").device(Dev::new("d", BE)),
        Dom::backend("be", BE).prop("linux,phandle", cells(&[BE])),
    ]);
}

#[test]
fn refuses_zero_vcpus_on_an_involved_domain() {
    refused(
        &[
            Dom::new("fe").cpus(0).device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe",
        "cpus",
        ErrorKind::NoVcpus,
        "/chosen/fe: property 'cpus': 0 vCPUs: a domain needs at least one",
    );
    ok(&[
        Dom::new("fe").device(Dev::new("d", BE)),
        Dom::backend("be", BE),
        Dom::new("idle").cpus(0),
    ]);
}

/// Xen 4.21+ gives a dom0less hardware domain (`capabilities` with DOMAIN_CAPS_HARDWARE) the
/// host's layout and its in-Xen devices there, which the binding's checks do not know: refused
/// as a frontend or a backend, ignored on a domain the binding does not involve.
#[test]
fn refuses_the_hardware_domain_as_frontend_or_backend() {
    let message = "property 'capabilities': the hardware domain (DOMAIN_CAPS_HARDWARE) cannot be \
                   a frontend or a backend: Xen gives it the host's layout, whose in-Xen devices \
                   (vGIC, vITS, vUART) the regions of rust-ioreq could shadow";
    refused(
        &[
            Dom::new("fe")
                .prop("capabilities", cells(&[0x2]))
                .device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe",
        "capabilities",
        ErrorKind::HardwareDomain,
        &format!("/chosen/fe: {message}"),
    );
    refused(
        &[
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE).prop("capabilities", cells(&[0x7])),
        ],
        "/chosen/be",
        "capabilities",
        ErrorKind::HardwareDomain,
        &format!("/chosen/be: {message}"),
    );
    // Control and xenstore capabilities change nothing here; an uninvolved hardware domain
    // is Xen's business.
    ok(&[
        Dom::new("fe")
            .prop("capabilities", cells(&[0x5]))
            .device(Dev::new("d", BE)),
        Dom::backend("be", BE),
        Dom::new("hw").prop("capabilities", cells(&[0x2])),
    ]);
}

#[test]
fn domains_that_use_no_device_never_stop_the_boot() {
    // Defect 7c: more than 16 domain nodes, and odd encodings on the ones no device involves.
    let mut doms = vec![
        Dom::new("fe").device(Dev::new("d", BE)),
        Dom::backend("be", BE),
    ];
    for i in 0..20 {
        doms.push(Dom::new(&format!("idle{i}")));
    }
    doms.push(Dom::new("cpus64").prop("cpus", cells(&[0, 1])));
    doms.push(Dom::new("spis").prop("nr_spis", vec![1]));
    doms.push(Dom::new("phandle").prop("phandle", cells(&[1, 2, 3])));
    doms.push(Dom::new("mem").prop("memory", cells(&[0, 0, 0, 1])));
    doms.push(Dom::new("p2m").prop("xen,domain-p2m-mem-mb", vec![]));
    doms.push(Dom::new("notify").prop("xen,ioreq-notify-spi", vec![1]));
    doms.push(Dom::new("cells").prop("#address-cells", vec![]));
    doms.push(
        Dom::new("static")
            .prop("xen,static-mem", vec![1, 2, 3])
            .prop("direct-map", vec![]),
    );
    doms.push(Dom::new(&format!("x@{}", "1".repeat(80))));
    // A frontend after all of them: its index counts involved domains only, its position in
    // /chosen (domid - 1) counts them all.
    let late = doms.len();
    doms.push(Dom::new("late").device(Dev::new("d", BE)));
    let config = ok(&doms);
    assert_eq!(config.domains().len(), 3);
    assert_eq!(config.domain_index("be"), Some(1));
    assert_eq!(config.domain_index("idle0"), None);
    assert_eq!(config.domain_index("late"), Some(2));
    assert_eq!(config.domains()[2].chosen_position, late);
    assert_eq!(config.domains()[1].chosen_position, 1);
}

/// 1 GiB in KiB.
const GIB_KIB: u32 = 1024 * 1024;

#[test]
fn refuses_a_frontend_whose_ram_passes_its_window() {
    // 59 GiB: 3 GiB in GUEST_RAM0, 56 in GUEST_RAM1 up to 0x1000000000 exactly: fits.
    let fe = |gib: u32| {
        [
            Dom::new("fe")
                .prop("memory", cells(&[0, gib * GIB_KIB]))
                .device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ]
    };
    let config = ok(&fe(59));
    assert_eq!(config.domains()[0].ram_end(), 0x10_0000_0000);
    refused(
        &fe(60),
        "/chosen/fe",
        "memory",
        ErrorKind::RamPastWindow {
            end: 0x10_4000_0000,
        },
        "/chosen/fe: property 'memory': RAM ends at 0x1040000000, past 64 GiB: its backend's RAM \
         window onto it is 64 GiB, the rest would land in the next frontend's window",
    );
    // A domain that is no frontend may have more.
    ok(&[Dom::new("big").prop("memory", cells(&[0, 60 * GIB_KIB]))]);
}

#[test]
fn refuses_a_backend_whose_ram_reaches_its_windows() {
    let be = |gib: u32| {
        [
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE).prop("memory", cells(&[0, gib * GIB_KIB])),
        ]
    };
    ok(&be(59));
    refused(
        &be(60),
        "/chosen/be",
        "memory",
        ErrorKind::RamReachesWindows {
            end: 0x10_4000_0000,
        },
        "/chosen/be: property 'memory': RAM ends at 0x1040000000, past 0x1000000000 where the \
         backend's RAM windows start",
    );
    // A backend serving nothing has no window.
    ok(&[Dom::backend("be", BE).prop("memory", cells(&[0, 60 * GIB_KIB]))]);
}

#[test]
fn refuses_windows_past_the_ipa_size() {
    // Four frontends: windows end at 128, 192, 256 and 320 GiB.
    let mut doms = vec![Dom::backend("be", BE)];
    for f in 0..4 {
        doms.push(Dom::new(&format!("fe{f}")).device(Dev::new("d", BE)));
    }
    let blob = host_dtb(&doms);
    let with_bits = |ipa_bits| HostFacts {
        ipa_bits,
        ..facts()
    };
    assert!(Config::from_fdt(&blob, with_bits(40)).is_ok());
    assert_eq!(
        Config::from_fdt(&blob, with_bits(40))
            .map(|c| c.ipa_bits())
            .ok(),
        Some(40)
    );
    // 38 bits: 256 GiB.
    is_error(
        Config::from_fdt(&blob, with_bits(38)),
        "/chosen/be",
        "xen,ioreq-server",
        "/chosen/be: property 'xen,ioreq-server': the RAM window onto fe3 ends at 0x5000000000, \
         past the 38-bit guest-physical address space (0x4000000000): serve fewer frontends \
         from this backend",
    );
    // 36 bits: 64 GiB, no window fits.
    let kind = is_error(
        Config::from_fdt(&blob, with_bits(36)),
        "/chosen/be",
        "xen,ioreq-server",
        "/chosen/be: property 'xen,ioreq-server': the RAM window onto fe0 ends at 0x2000000000, \
         past the 36-bit guest-physical address space (0x1000000000): serve fewer frontends \
         from this backend",
    );
    assert!(matches!(
        kind,
        ErrorKind::WindowPastIpa { ipa_bits: 36, .. }
    ));
}

#[test]
fn window_p2m_pages_counts_the_tables_of_every_window() {
    let mem = |mib: u32| cells(&[0, mib * 1024]);
    let config = ok(&[
        Dom::new("fe64")
            .prop("memory", mem(64))
            .device(Dev::new("d", BE)),
        Dom::new("fe1g")
            .prop("memory", mem(1024))
            .device(Dev::new("d", BE)),
        Dom::new("fe4g")
            .prop("memory", mem(4096))
            .device(Dev::new("d", 0x200)),
        Dom::backend("be", BE).prop("memory", mem(64)),
        Dom::backend("be2", 0x200).notify_spi(45),
        Dom::backend("idle", 0x300).notify_spi(46),
    ]);
    // The default IPA is QEMU virt's 44 bits: 4 levels, so everything below 512 GiB also
    // shares one level-1 page (+ 1).
    // be: ioreq pages (1 L3 + 1 L2), 64 MiB (32 + 1) and 1 GiB (512 + 1).
    assert_eq!(config.window_p2m_pages(3), 2 + 33 + 513 + 1);
    // be2: ioreq page, 3 GiB in bank 0 (1536 L3 + 3 L2) and 1 GiB in bank 1 (512 + 1).
    assert_eq!(config.window_p2m_pages(4), 2 + 1536 + 3 + 512 + 1 + 1);
    // A backend serving nothing still gets its transport and notify pages (1 L3 + 1 L2 +
    // 1 L1); a domain that serves nothing needs none.
    assert_eq!(config.window_p2m_pages(5), 3);
    assert_eq!(config.window_p2m_pages(0), 0);
    assert_eq!(config.window_p2m_pages(99), 0);
    // Xen's default pool for the 64 MiB backend: 2 MiB, far from the 548 pages its windows
    // need on top (1 GiB panicked a 64 MiB backend's boot before the pool grew).
    assert_eq!(xen_default_p2m_pages(64 * 1024, 1), 512);
    assert_eq!(ram_p2m_pages(&config.domains()[3], 40), 33);
}

#[test]
fn refuses_an_explicit_p2m_pool_too_small_for_the_windows() {
    // 128 MiB backend (64 + 1 pages at worst) serving a 1 GiB frontend (513 + 2 ioreq): 580,
    // and with the default 44-bit IPA (4 levels) one level-1 page for each: 582.
    let with = |mb: u32| {
        [
            Dom::new("fe")
                .prop("memory", cells(&[0, GIB_KIB]))
                .device(Dev::new("d", BE)),
            Dom::backend("be", BE).prop("xen,domain-p2m-mem-mb", cells(&[mb])),
        ]
    };
    ok(&with(3));
    refused(
        &with(2),
        "/chosen/be",
        "xen,domain-p2m-mem-mb",
        ErrorKind::P2mPoolTooSmall {
            mb: 2,
            need_pages: 582,
        },
        "/chosen/be: property 'xen,domain-p2m-mem-mb': 2 MiB is too small: the domain's RAM and \
         its RAM windows need 582 pages of P2M tables (3 MiB)",
    );
    // Without the property the pool is grown for the windows (Config::window_p2m_pages).
    ok(&[
        Dom::new("fe")
            .prop("memory", cells(&[0, GIB_KIB]))
            .device(Dev::new("d", BE)),
        Dom::backend("be", BE),
    ]);
}

/// `xen,static-mem` (in /chosen's 2/2 cells) and `direct-map`.
fn direct_map(dom: Dom, base: u64, size: u64) -> Dom {
    dom.prop(
        "xen,static-mem",
        cells(&[
            (base >> 32) as u32,
            base as u32,
            (size >> 32) as u32,
            size as u32,
        ]),
    )
    .prop("direct-map", vec![])
    .prop("memory", cells(&[0, (size / 1024) as u32]))
}

#[test]
fn a_direct_mapped_domain_has_its_ram_at_host_addresses() {
    let config = ok(&[
        direct_map(Dom::new("fe"), 0x6000_0000, 0x400_0000).device(Dev::new("d", BE)),
        Dom::backend("be", BE)
            .prop("xen,static-mem", cells(&[0, 0x8000_0000, 0, 0x800_0000]))
            .prop("memory", cells(&[0, 0x2_0000])),
    ]);
    let fe = &config.domains()[0];
    assert!(fe.direct_map);
    assert_eq!(
        fe.ram(),
        &[GpaRange::new(Gpa(0x6000_0000), 0x400_0000).unwrap()]
    );
    // Static memory without direct-map is placed like allocated memory.
    let be = &config.domains()[1];
    assert!(!be.direct_map);
    assert_eq!(
        be.ram(),
        &[GpaRange::new(Gpa(0x4000_0000), 0x800_0000).unwrap()]
    );
    // The window maps exactly that: 32 + 1 tables for 64 MiB, + the ioreq page's 2, + the
    // level-1 page of a 44-bit IPA.
    assert_eq!(config.window_p2m_pages(1), 36);
}

#[test]
fn refuses_device_regions_over_a_direct_mapped_domains_own_regions() {
    let fe = |dev: Dev| {
        [
            direct_map(Dom::new("fe"), 0x0c00_0000, 0x400_0000)
                .vpl011()
                .device(dev),
            Dom::backend("be", BE),
        ]
    };
    for (base, what, range) in [
        (
            0x0c00_0000,
            "its static memory (xen,static-mem, direct-map)",
            "[0xc000000, 0x10000000)",
        ),
        (
            0x0800_0000,
            "the host GIC distributor (direct-map)",
            "[0x8000000, 0x8010000)",
        ),
        (
            0x0900_0000,
            "the host UART its vpl011 takes over (direct-map)",
            "[0x9000000, 0x9001000)",
        ),
        (
            0x08ff_fe00,
            "the host GIC redistributors (direct-map)",
            "[0x80a0000, 0x9000000)",
        ),
    ] {
        is_error(
            parse(&fe(Dev::new("d", BE).at(base, 0x200).irq(40))),
            "/chosen/fe/d",
            "reg",
            &format!("/chosen/fe/d: property 'reg': region overlaps {what} {range}"),
        );
    }
    // Elsewhere is fine.
    ok(&fe(Dev::new("d", BE).at(0x1000_0000, 0x200).irq(40)));
}

/// A `xen,domain-shared-memory-v1` child: host address, guest address, size (2/2 cells).
fn shm(name: &str, host: u64, guest: u64, size: u64) -> Node {
    let split64 = |v: u64| [(v >> 32) as u32, v as u32];
    Node::new(name)
        .prop("compatible", string("xen,domain-shared-memory-v1"))
        .prop("xen,shm-id", string("shm0"))
        .prop(
            "xen,shared-mem",
            cells(&[split64(host), split64(guest), split64(size)].concat()),
        )
}

#[test]
fn refuses_device_regions_over_shared_memory() {
    refused(
        &[
            Dom::new("fe")
                .device(Dev::new("d", BE).at(0x0a00_0000, 0x200))
                .child(shm("shm@0", 0x7000_0000, 0x0a00_0000, 0x10_0000)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/d",
        "reg",
        ErrorKind::OverlapsRegion {
            what: "the shared memory",
            node: Name::from_str("shm@0"),
            range: GpaRange::new(Gpa(0x0a00_0000), 0x10_0000).unwrap(),
        },
        "/chosen/fe/d: property 'reg': region overlaps the shared memory of shm@0 \
         [0xa000000, 0xa100000)",
    );
    // Next to it is fine; a malformed one is refused.
    ok(&[
        Dom::new("fe")
            .device(Dev::new("d", BE).at(0x0a10_0000, 0x200))
            .child(shm("shm@0", 0x7000_0000, 0x0a00_0000, 0x10_0000)),
        Dom::backend("be", BE),
    ]);
    refused(
        &[
            Dom::new("fe")
                .device(Dev::new("d", BE))
                .child(shm("shm@0", 0, 0, 0).prop("xen,shared-mem", cells(&[1, 2, 3]))),
            Dom::backend("be", BE),
        ],
        "/chosen/fe/shm@0",
        "xen,shared-mem",
        ErrorKind::Malformed,
        "/chosen/fe/shm@0: property 'xen,shared-mem': malformed (wrong number of cells?)",
    );
}

#[test]
fn refuses_backend_regions_over_its_interface_pages_and_windows() {
    let be = |extra: Node| {
        [
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE).child(extra),
        ]
    };
    let kind = is_error(
        parse(&be(shm("shm@0", 0x7000_0000, 0x3e00_8000, 0x1000))),
        "/chosen/be/shm@0",
        "xen,shared-mem",
        "/chosen/be/shm@0: property 'xen,shared-mem': the shared memory [0x3e008000, 0x3e009000) \
         overlaps the backend interface (doorbell, ioreq, transport, notify pages) [0x3e000000, 0x3e00b000)",
    );
    assert!(matches!(
        kind,
        ErrorKind::BackendSpaceOverlap {
            window_of: None,
            ..
        }
    ));
    is_error(
        parse(&be(shm("shm@0", 0x7000_0000, 0x10_0000_0000, 0x1000))),
        "/chosen/be/shm@0",
        "xen,shared-mem",
        "/chosen/be/shm@0: property 'xen,shared-mem': the shared memory \
         [0x1000000000, 0x1000001000) overlaps the RAM window onto fe \
         [0x1000000000, 0x2000000000)",
    );
    ok(&be(shm("shm@0", 0x7000_0000, 0x3e00_b000, 0x1000)));
    // A direct-mapped backend's RAM over its doorbell.
    is_error(
        parse(&[
            Dom::new("fe").device(Dev::new("d", BE)),
            direct_map(Dom::backend("be", BE), 0x3c00_0000, 0x400_0000),
        ]),
        "/chosen/be",
        "xen,static-mem",
        "/chosen/be: property 'xen,static-mem': its static memory (xen,static-mem, direct-map) \
         [0x3c000000, 0x40000000) overlaps the backend interface (doorbell, ioreq, transport, notify \
         pages) [0x3e000000, 0x3e00b000)",
    );
}

/// Boot modules in host memory, for the passthrough partial device trees.
struct Modules(Vec<(u64, Vec<u8>)>);

impl ModuleReader for Modules {
    fn read(&self, addr: u64, size: u64) -> Option<&[u8]> {
        let (_, blob) = self.0.iter().find(|(a, _)| *a == addr)?;
        (blob.len() as u64 <= size).then_some(blob.as_slice())
    }
}

/// A partial device tree whose `/passthrough/dev` maps host `host` to guest `guest`.
fn partial_dt(host: u64, size: u64, guest: u64) -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new().expect("partial DT");
    let root = w.begin_node("").expect("partial DT");
    w.property("#address-cells", &cells(&[2]))
        .expect("partial DT");
    w.property("#size-cells", &cells(&[2])).expect("partial DT");
    let pt = w.begin_node("passthrough").expect("partial DT");
    w.property("compatible", &string("simple-bus"))
        .expect("partial DT");
    w.property("ranges", &[]).expect("partial DT");
    w.property("#address-cells", &cells(&[2]))
        .expect("partial DT");
    w.property("#size-cells", &cells(&[2])).expect("partial DT");
    let dev = w.begin_node("uart@9000000").expect("partial DT");
    let s = |v: u64| [(v >> 32) as u32, v as u32];
    w.property("xen,reg", &cells(&[s(host), s(size), s(guest)].concat()))
        .expect("partial DT");
    w.property("xen,path", &string("/pl011@9000000"))
        .expect("partial DT");
    w.end_node(dev).expect("partial DT");
    w.end_node(pt).expect("partial DT");
    w.end_node(root).expect("partial DT");
    w.finish().expect("partial DT")
}

/// The module node of a partial device tree at 0x4c000000.
fn dtb_module(size: u64) -> Node {
    Node::new("module@4c000000")
        .prop(
            "compatible",
            [string("multiboot,device-tree"), string("multiboot,module")].concat(),
        )
        .prop("reg", cells(&[0, 0x4c00_0000, 0, size as u32]))
}

#[test]
fn refuses_regions_over_passthrough_ranges_when_the_partial_dt_is_readable() {
    let blob = partial_dt(0x0900_0000, 0x1000, 0x0a00_0000);
    let modules = Modules(vec![(0x4c00_0000, blob.clone())]);
    let with_reader = HostFacts {
        modules: Some(&modules),
        ..facts()
    };
    let doms = [
        Dom::new("fe")
            .device(Dev::new("d", BE).at(0x0a00_0000, 0x200))
            .child(dtb_module(blob.len() as u64)),
        Dom::backend("be", BE),
    ];
    is_error(
        parse_with(&doms, &Host::default(), with_reader),
        "/chosen/fe/d",
        "reg",
        "/chosen/fe/d: property 'reg': region overlaps the passthrough xen,reg range of \
         uart@9000000 [0xa000000, 0xa001000)",
    );
    // Without a reader the partial DT is not read (Xen has not wired one yet).
    assert!(parse_with(&doms, &Host::default(), facts()).is_ok());
    // A backend passing a device through at its doorbell.
    let be_blob = partial_dt(0x0900_0000, 0x1000, 0x3e00_0000);
    let be_modules = Modules(vec![(0x4c00_0000, be_blob.clone())]);
    is_error(
        parse_with(
            &[
                Dom::new("fe").device(Dev::new("d", BE)),
                Dom::backend("be", BE).child(dtb_module(be_blob.len() as u64)),
            ],
            &Host::default(),
            HostFacts {
                modules: Some(&be_modules),
                ..facts()
            },
        ),
        "/chosen/be/module@4c000000",
        "xen,reg",
        "/chosen/be/module@4c000000: property 'xen,reg': the passthrough xen,reg range \
         [0x3e000000, 0x3e001000) overlaps the backend interface (doorbell, ioreq, transport, notify \
         pages) [0x3e000000, 0x3e00b000)",
    );
    // A module that cannot be read as a device tree.
    let junk = Modules(vec![(0x4c00_0000, vec![0; 64])]);
    refused_with(
        &[
            Dom::new("fe")
                .device(Dev::new("d", BE))
                .child(dtb_module(64)),
            Dom::backend("be", BE),
        ],
        HostFacts {
            modules: Some(&junk),
            ..facts()
        },
        "/chosen/fe/module@4c000000",
        "reg",
        ErrorKind::BadPartialDt { addr: 0x4c00_0000 },
        "/chosen/fe/module@4c000000: property 'reg': the module at 0x4c000000 is not a readable \
         device tree",
    );
}

/// Checks that `doms` is refused with `facts` exactly so.
#[track_caller]
fn refused_with(
    doms: &[Dom],
    facts: HostFacts<'_>,
    node: &str,
    property: &str,
    kind: ErrorKind,
    text: &str,
) {
    let got = is_error(
        parse_with(doms, &Host::default(), facts),
        node,
        property,
        text,
    );
    assert_eq!(got, kind);
}

#[test]
fn refuses_more_static_banks_than_a_direct_mapped_domain_may_have() {
    let banks: Vec<u32> = (0..=MAX_RAM_BANKS as u32)
        .flat_map(|i| [0, 0x6000_0000 + i * 0x10_0000, 0, 0x10_0000])
        .collect();
    refused(
        &[
            Dom::new("fe")
                .prop("xen,static-mem", cells(&banks))
                .prop("direct-map", vec![])
                .device(Dev::new("d", BE)),
            Dom::backend("be", BE),
        ],
        "/chosen/fe",
        "xen,static-mem",
        ErrorKind::TooManyRamBanks,
        "/chosen/fe: property 'xen,static-mem': more than 8 banks on a direct-mapped domain",
    );
}

#[test]
fn refuses_backends_serving_each_other_in_a_cycle() {
    refused(
        &[
            Dom::backend("a", 0x10).device(Dev::new("d", 0x20)),
            Dom::backend("b", 0x20)
                .notify_spi(50)
                .device(Dev::new("d", 0x10)),
        ],
        "/chosen/a/d",
        "xen,backend",
        ErrorKind::Cycle(Text::from_str("a uses b, b uses a")),
        "/chosen/a/d: property 'xen,backend': backends serve each other in a cycle (a uses b, b \
         uses a): a vCPU blocked on its backend can wait on itself and deadlock them all",
    );
    // Three: a uses b, b uses c, c uses a; reported on the first device on the cycle.
    let e = parse(&[
        Dom::backend("a", 0x10).device(Dev::new("d", 0x20)),
        Dom::backend("b", 0x20).device(Dev::new("d", 0x30)),
        Dom::backend("c", 0x30).device(Dev::new("d", 0x10)),
    ])
    .expect_err("cycle");
    assert_eq!(
        e.kind,
        ErrorKind::Cycle(Text::from_str("a uses b, b uses c, c uses a"))
    );
    assert_eq!(e.node.to_string(), "/chosen/a/d");
    // A chain is fine.
    ok(&[
        Dom::new("a").device(Dev::new("d", 0x20)),
        Dom::backend("b", 0x20).device(Dev::new("d", 0x30)),
        Dom::backend("c", 0x30),
    ]);
}

#[test]
fn refuses_sched_null_with_more_vcpus_than_pcpus() {
    let doms = [
        Dom::new("fe").device(Dev::new("d", BE)),
        Dom::backend("be", BE),
    ];
    let host = |args: &str, cpus: u32| Host {
        bootargs: Some(args.to_string()),
        cpus,
        ..Host::default()
    };
    let null = "console=dtuart sched=null";
    // Two vCPUs on two pCPUs: fine.
    assert!(parse_with(&doms, &host(null, 2), facts()).is_ok());
    let text = "/chosen: property 'xen,xen-bootargs': sched=null with 3 vCPUs on 2 pCPUs: the \
                null scheduler gives each vCPU a pCPU of its own, so 1 vCPU(s) never run, and a \
                frontend waiting on a backend that never runs blocks forever";
    // A third domain, even one that uses no device.
    let mut three = doms.to_vec();
    three.push(Dom::new("idle"));
    let kind = is_error(
        parse_with(&three, &host(null, 2), facts()),
        "/chosen",
        "xen,xen-bootargs",
        text,
    );
    assert_eq!(kind, ErrorKind::SchedNullOvercommit { vcpus: 3, pcpus: 2 });
    // maxcpus=1 leaves one pCPU; the last sched= wins.
    is_error(
        parse_with(
            &doms,
            &host("sched=credit maxcpus=1 sched=null", 2),
            facts(),
        ),
        "/chosen",
        "xen,xen-bootargs",
        &text.replace("3 vCPUs on 2 pCPUs", "2 vCPUs on 1 pCPUs"),
    );
    assert!(parse_with(&doms, &host("sched=null sched=credit", 1), facts()).is_ok());
    assert!(parse_with(&three, &host("sched=credit2", 2), facts()).is_ok());
    // dom0 (a kernel module in /chosen) takes one vCPU per pCPU unless dom0_max_vcpus says.
    let dom0 = Node::new("module@40000000")
        .prop(
            "compatible",
            [string("multiboot,kernel"), string("multiboot,module")].concat(),
        )
        .prop("reg", cells(&[0, 0x4000_0000, 0, 0x1000]));
    let with_dom0 = |args: &str| Host {
        chosen_extra: vec![dom0.clone()],
        ..host(args, 4)
    };
    is_error(
        parse_with(&doms, &with_dom0(null), facts()),
        "/chosen",
        "xen,xen-bootargs",
        &text
            .replace("3 vCPUs on 2 pCPUs", "6 vCPUs on 4 pCPUs")
            .replace("so 1", "so 2"),
    );
    assert!(parse_with(&doms, &with_dom0("sched=null dom0_max_vcpus=2"), facts()).is_ok());
    // Cpupools have their own CPUs and schedulers: not checked.
    let pools = Host {
        chosen_extra: vec![Node::new("pool").prop("compatible", string("xen,cpupool"))],
        ..host(null, 1)
    };
    assert!(parse_with(&doms, &pools, facts()).is_ok());
    // Without xen,xen-bootargs Xen takes /chosen/bootargs only with a dom0 command line.
    let no_args = Host {
        bootargs: None,
        ..host(null, 1)
    };
    assert!(parse_with(&doms, &no_args, facts()).is_ok());
}

#[test]
fn refuses_a_poll_longer_than_a_millisecond() {
    let with_poll = |us: u32| {
        vec![
            Dom::new("fe").device(Dev::new("d", BE)),
            Dom::backend("be", BE).prop("xen,ioreq-poll-us", cells(&[us])),
        ]
    };
    refused(
        &with_poll(1001),
        "/chosen/be",
        "xen,ioreq-poll-us",
        ErrorKind::PollTooLong { us: 1001 },
        "/chosen/be: property 'xen,ioreq-poll-us': 1001 us is more than 1000 us of spinning on \
         a frontend's pCPU per access",
    );
    let c = ok(&with_poll(1000));
    assert_eq!(c.domains()[1].backend.map(|b| b.poll_us), Some(1000));
    let c = ok(&fe_be(vec![Dev::new("d", BE)]));
    assert_eq!(c.domains()[1].backend.map(|b| b.poll_us), Some(0));
}

#[test]
fn reads_virtio_classic_per_device() {
    let c = ok(&fe_be(vec![
        Dev::new("fast", BE),
        Dev::new("classic", BE).prop("xen,virtio-classic", Vec::new()),
    ]));
    let classic: Vec<(&str, bool)> = c
        .devices()
        .iter()
        .map(|d| (d.name.as_str(), d.classic))
        .collect();
    assert_eq!(classic, [("fast", false), ("classic", true)]);
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
            ErrorKind::OverlapsRegion { .. } => "refuses_device_regions_over_shared_memory",
            ErrorKind::BackendSpaceOverlap { .. } => {
                "refuses_backend_regions_over_its_interface_pages_and_windows"
            }
            ErrorKind::NoVcpus => "refuses_zero_vcpus_on_an_involved_domain",
            ErrorKind::HardwareDomain => "refuses_the_hardware_domain_as_frontend_or_backend",
            ErrorKind::NameTooLong { .. } => "refuses_a_name_longer_than_name_max",
            ErrorKind::DuplicateName => "refuses_duplicate_domain_names",
            ErrorKind::DuplicatePhandle { .. } => "refuses_duplicate_phandles",
            ErrorKind::Cycle(_) => "refuses_backends_serving_each_other_in_a_cycle",
            ErrorKind::RamPastWindow { .. } => "refuses_a_frontend_whose_ram_passes_its_window",
            ErrorKind::RamReachesWindows { .. } => {
                "refuses_a_backend_whose_ram_reaches_its_windows"
            }
            ErrorKind::WindowPastIpa { .. } => "refuses_windows_past_the_ipa_size",
            ErrorKind::P2mPoolTooSmall { .. } => {
                "refuses_an_explicit_p2m_pool_too_small_for_the_windows"
            }
            ErrorKind::TooManyRamBanks => {
                "refuses_more_static_banks_than_a_direct_mapped_domain_may_have"
            }
            ErrorKind::BadPartialDt { .. } => {
                "refuses_regions_over_passthrough_ranges_when_the_partial_dt_is_readable"
            }
            ErrorKind::PollTooLong { .. } => "refuses_a_poll_longer_than_a_millisecond",
            ErrorKind::SchedNullOvercommit { .. } => {
                "refuses_sched_null_with_more_vcpus_than_pcpus"
            }
        }
    }
    assert!(!covered(ErrorKind::BadBlob).is_empty());
}
