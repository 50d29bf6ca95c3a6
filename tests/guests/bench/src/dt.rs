//! What the benchmark reads from the device tree Xen generated for it: the `virtio,mmio` nodes
//! (Linux Documentation/devicetree/bindings/virtio/mmio.yaml), the vpl011 node Xen adds for
//! `vpl011` (`arm,sbsa-uart`, xen/arch/arm/domain_build.c `make_vpl011_uart_node`), and from them
//! an address in Xen's virtio-mmio window that no device claims.
//!
//! Nodes are found by walking from `/` (guest-common explains why not by path).

use fdt::node::FdtNode;
use guest_common::devicetree::{DeviceTree, Region};

/// Xen's virtio-mmio window for domUs (`GUEST_VIRTIO_MMIO_BASE`/`_SIZE`, public/arch-arm.h).
pub const VIRTIO_WINDOW_BASE: usize = 0x0200_0000;
/// Size of that window.
pub const VIRTIO_WINDOW_SIZE: usize = 0x0010_0000;
/// Most `virtio,mmio` nodes remembered (Xen's binding allows 32 devices in total).
const MAX_DEVICES: usize = 32;
/// Deepest nesting searched; Xen puts the nodes directly under `/`.
const MAX_DEPTH: usize = 8;

/// The devices of the guest's device tree that the benchmark uses.
#[derive(Clone, Copy, Debug)]
pub struct Devices {
    /// Register windows of the `virtio,mmio` nodes, in tree order.
    virtio: [Option<Region>; MAX_DEVICES],
    /// The vpl011's register window, if the domain has one.
    pub vpl011: Option<Region>,
}

impl Devices {
    /// Collects the devices of `dt`.
    pub fn find(dt: &DeviceTree) -> Self {
        let mut devices = Devices {
            virtio: [None; MAX_DEVICES],
            vpl011: None,
        };
        if let Some(root) = dt.root() {
            devices.walk(root, 0);
        }
        devices
    }

    fn walk(&mut self, node: FdtNode<'_, 'static>, depth: usize) {
        for child in node.children() {
            let compatible = |want: &str| {
                child
                    .compatible()
                    .is_some_and(|c| c.all().any(|s| s == want))
            };
            let region = child.reg().and_then(|mut r| r.next()).map(|r| Region {
                base: r.starting_address as usize,
                size: r.size.unwrap_or(0),
            });
            if compatible("virtio,mmio") {
                if let (Some(region), Some(free)) =
                    (region, self.virtio.iter_mut().find(|s| s.is_none()))
                {
                    *free = Some(region);
                }
            } else if compatible("arm,sbsa-uart") || compatible("arm,pl011") {
                self.vpl011 = self.vpl011.or(region);
            } else if depth < MAX_DEPTH {
                self.walk(child, depth + 1);
            }
        }
    }

    /// Returns the `virtio,mmio` window with the lowest base address.
    pub fn first_virtio(&self) -> Option<Region> {
        self.virtio.iter().flatten().copied().min_by_key(|r| r.base)
    }

    /// Returns the `virtio,mmio` window that starts at `base`, if the device tree has one.
    pub fn virtio_at(&self, base: usize) -> Option<Region> {
        self.virtio
            .iter()
            .flatten()
            .copied()
            .find(|r| r.base == base)
    }

    /// Returns the number of `virtio,mmio` nodes found.
    pub fn virtio_count(&self) -> usize {
        self.virtio.iter().flatten().count()
    }

    /// Returns the highest page-aligned address of Xen's virtio-mmio window whose page no
    /// `virtio,mmio` node overlaps: Xen has no handler there, and rust-ioreq claims nothing.
    pub fn unclaimed(&self) -> Option<usize> {
        const PAGE: usize = 0x1000;
        (1..=VIRTIO_WINDOW_SIZE / PAGE)
            .map(|k| VIRTIO_WINDOW_BASE + VIRTIO_WINDOW_SIZE - k * PAGE)
            .find(|&page| {
                self.virtio.iter().flatten().all(|r| {
                    let end = r.base.saturating_add(r.size);
                    end <= page || page + PAGE <= r.base
                })
            })
    }
}
