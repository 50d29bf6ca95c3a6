//! An engine frozen from a host device tree, with the strict fake beside it, and the topology
//! most engine tests use.

use rust_ioreq::config::Config;
use rust_ioreq::engine::{Builder, Engine};
use rust_ioreq::platform::PageId;
use rust_ioreq::types::DomId;

use super::fake::FakeXen;
use super::hostdt::{host_dtb, Dev, Dom, GIC_SPIS};

/// Domain indices (and domids, index + 1) of [`standard`].
pub const FE: usize = 0;
/// Backend of `blk` and `rng`.
pub const BE: usize = 1;
/// Second frontend: its `rng` has the same GPA as `fe`'s `blk`.
pub const FE2: usize = 2;
/// Backend of `net`, `con` and `vsock`.
pub const BE2: usize = 3;
/// A domain with no part in any of it: last in `/chosen` (domid 5), and not tracked by the
/// configuration, so no domain index is 4.
pub const IDLE: usize = 4;

/// Returns the domid Xen gives domain index `i` (dom0less: `/chosen` order from 1).
pub fn domid(i: usize) -> DomId {
    DomId(i as u16 + 1)
}

/// Returns the page of frontend index `k` in `backend`.
pub fn page(backend: usize, k: usize) -> PageId {
    PageId {
        backend,
        frontend_index: k,
    }
}

/// The standard topology:
///
/// | device | frontend | GPA, size | SPI | backend | index in backend | frontend index |
/// |---|---|---|---|---|---|---|
/// | blk | fe (2 vCPUs) | 0x0200_0000, 0x200 | 33 | be (notify 44) | 0 | 0 |
/// | net | fe | 0x0200_0200, 0x200 | 34 | be2 (notify 50) | 0 | 0 |
/// | rng | fe2 (1 vCPU) | 0x0200_0000, 0x200 | 33 | be | 1 | 1 |
/// | con | fe2 | 0x0a00_0000, 0x1000 | 40 | be2 | 1 | 1 |
/// | vsock | fe2 | 0x0a00_2000, 0x200 | 41 | be2 | 2 | 1 |
pub fn standard() -> Vec<Dom> {
    vec![
        Dom::new("fe")
            .cpus(2)
            .device(Dev::new("blk", 0x10))
            .device(Dev::new("net", 0x20).args("virtio-net")),
        Dom::backend("be", 0x10),
        Dom::new("fe2")
            .device(Dev::new("rng", 0x10).args("virtio-rng"))
            .device(Dev::new("con", 0x20).at(0x0a00_0000, 0x1000).irq(40))
            .device(Dev::new("vsock", 0x20).at(0x0a00_2000, 0x200).irq(41)),
        Dom::backend("be2", 0x20).notify_spi(50).cpus(2),
        Dom::new("idle").cpus(4),
    ]
}

/// Parses `doms`, tells the builder every domain was created (domid = index + 1) and freezes.
pub fn rig(doms: &[Dom]) -> (Box<Engine>, FakeXen) {
    let config = Config::from_fdt(&host_dtb(doms), GIC_SPIS).expect("valid configuration");
    let xen = FakeXen::new(&config);
    let names: Vec<String> = config
        .domains()
        .iter()
        .map(|d| d.name.as_str().to_string())
        .collect();
    let mut b = Builder::new(config);
    for (i, n) in names.iter().enumerate() {
        let path = format!("/chosen/{n}");
        assert_eq!(b.domain_created(&path, domid(i)), Ok(Some(i)));
    }
    (b.freeze().expect("freeze"), xen)
}
