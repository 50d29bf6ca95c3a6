//! What the frontend reads from the device tree Xen generated for it: the `virtio,mmio` nodes
//! (Linux Documentation/devicetree/bindings/virtio/mmio.yaml; GIC interrupt specifiers per
//! arm,gic-v3.yaml: `<type number flags>`, type 0 = SPI, flags 4 = level-high, 1 = edge-rising)
//! and the vCPUs under `/cpus`.
//!
//! Nodes are found by walking from `/` (guest-common explains why not by path).

use core::fmt;

use fdt::node::FdtNode;
use guest_common::devicetree::DeviceTree;
use guest_common::gic::{IntId, Trigger};

/// Most virtio-mmio nodes the frontend handles (Xen's binding allows 32 devices in total).
pub const MAX_DEVICES: usize = 32;
/// Most vCPUs the frontend looks at.
pub const MAX_CPUS: usize = guest_common::smp::MAX_CPUS;

/// One `virtio,mmio` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioNode {
    /// Guest-physical base of the register window.
    pub base: usize,
    /// Size of the register window.
    pub size: usize,
    /// The device's interrupt, if the node has a usable `interrupts` property.
    pub irq: Option<(IntId, Trigger)>,
}

impl fmt::Display for VirtioNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.base, self.size)?;
        match self.irq {
            Some((id, Trigger::Level)) => write!(f, " INTID {} level", id.raw()),
            Some((id, Trigger::Edge)) => write!(f, " INTID {} edge", id.raw()),
            None => f.write_str(" no interrupt"),
        }
    }
}

/// A fixed-capacity list (the guest has no allocator).
#[derive(Clone, Copy, Debug)]
pub struct List<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
    /// Entries that did not fit.
    pub dropped: usize,
}

impl<T: Copy, const N: usize> List<T, N> {
    /// Creates an empty list.
    pub const fn new() -> Self {
        Self {
            items: [None; N],
            len: 0,
            dropped: 0,
        }
    }

    /// Appends `item`, or counts it as dropped when full.
    pub fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = Some(item);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    /// Returns the number of entries kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Tells whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Returns every `virtio,mmio` node in the tree, sorted by base address.
pub fn virtio_nodes(dt: &DeviceTree) -> List<VirtioNode, MAX_DEVICES> {
    let mut list = List::new();
    if let Some(root) = dt.root() {
        walk(root, 0, &mut list);
    }
    // Insertion sort: a handful of entries.
    let n = list.len;
    for i in 1..n {
        let mut j = i;
        while j > 0 && key(&list.items[j - 1]) > key(&list.items[j]) {
            list.items.swap(j - 1, j);
            j -= 1;
        }
    }
    list
}

fn key(node: &Option<VirtioNode>) -> usize {
    node.map_or(usize::MAX, |n| n.base)
}

/// Deepest nesting searched; Xen puts the nodes directly under `/`.
const MAX_DEPTH: usize = 8;

fn walk(node: FdtNode<'_, 'static>, depth: usize, out: &mut List<VirtioNode, MAX_DEVICES>) {
    for child in node.children() {
        let is_virtio = child
            .compatible()
            .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
        if is_virtio {
            if let Some(region) = child.reg().and_then(|mut r| r.next()) {
                out.push(VirtioNode {
                    base: region.starting_address as usize,
                    size: region.size.unwrap_or(0),
                    irq: interrupt(child),
                });
            }
        } else if depth < MAX_DEPTH {
            walk(child, depth + 1, out);
        }
    }
}

/// Decodes the first GIC interrupt specifier `<type number flags>` of `node`.
fn interrupt(node: FdtNode<'_, 'static>) -> Option<(IntId, Trigger)> {
    let value = node.property("interrupts")?.value;
    let cell = |i: usize| -> Option<u32> {
        let bytes = value.get(i * 4..i * 4 + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let (kind, number, flags) = (cell(0)?, cell(1)?, cell(2)?);
    // Type 0 = SPI; anything else is not how a virtio-mmio device is wired.
    if kind != 0 {
        return None;
    }
    let trigger = if flags & 0x3 != 0 {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    Some((IntId::spi_from_dt(number), trigger))
}

/// Returns the MPIDR affinity (`reg`) of every `/cpus/cpu@N` node, in tree order.
pub fn cpus(dt: &DeviceTree) -> List<u64, MAX_CPUS> {
    let mut list = List::new();
    let Some(cpus) = dt.root_child("cpus") else {
        return list;
    };
    for cpu in cpus.children() {
        if cpu.name.split('@').next() != Some("cpu") {
            continue;
        }
        // `/cpus` has #address-cells = 1 (or 2) and #size-cells = 0, so `reg` is the affinity.
        if let Some(region) = cpu.reg().and_then(|mut r| r.next()) {
            list.push(region.starting_address as u64);
        }
    }
    list
}
