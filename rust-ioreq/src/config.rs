//! Boot configuration read from the host device tree (Xen `docs/misc/arm/device-tree/booting.txt`).

use fdt::node::FdtNode;
use fdt::Fdt;

/// Compatible string of a virtio-mmio device node under a frontend's `xen,domain` node.
pub const VIRTIO_MMIO_DEVICE_COMPATIBLE: &str = "xen,virtio-mmio-device";

/// Errors reading the host device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The blob is not a valid flattened device tree.
    BadBlob,
    /// The tree has no `/chosen` node.
    NoChosen,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::BadBlob => f.write_str("host device tree: not a valid FDT blob"),
            ConfigError::NoChosen => f.write_str("host device tree: no /chosen node"),
        }
    }
}

fn is_compatible(node: &FdtNode<'_, '_>, wanted: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == wanted))
}

/// Finds `/chosen` by walking the root's children.
///
/// `Fdt::chosen()` / `find_node("/chosen")` of fdt 0.1.5 stop at the NOP tokens QEMU leaves
/// where it removed the old `/memory` node, so the lookup is done by hand.
fn chosen<'b, 'a>(fdt: &'b Fdt<'a>) -> Option<FdtNode<'b, 'a>> {
    fdt.find_node("/")?.children().find(|n| n.name == "chosen")
}

/// Counts the `xen,virtio-mmio-device` nodes that are children of `xen,domain` nodes in
/// `/chosen`.
pub fn count_virtio_mmio_devices(blob: &[u8]) -> Result<usize, ConfigError> {
    let fdt = Fdt::new(blob).map_err(|_| ConfigError::BadBlob)?;
    let chosen = chosen(&fdt).ok_or(ConfigError::NoChosen)?;
    Ok(chosen
        .children()
        .filter(|d| is_compatible(d, "xen,domain"))
        .flat_map(|d| d.children())
        .filter(|n| is_compatible(n, VIRTIO_MMIO_DEVICE_COMPATIBLE))
        .count())
}
