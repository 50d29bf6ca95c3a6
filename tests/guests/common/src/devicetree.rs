//! Read-only access to the device tree Xen generates for a dom0less domU (Devicetree
//! Specification v0.4 §5; Xen docs/misc/arm/device-tree/booting.txt), over the `fdt` crate.
//!
//! fdt 0.1.5 can fail to find `/chosen` by path (`Fdt::find_node("/chosen")`, `Fdt::chosen()`)
//! in blobs that contain NOP tokens, so nodes under the root are found by walking the children
//! of `/` instead.

use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

/// Why the boot device tree cannot be used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DtError {
    /// x0 was 0 at entry.
    NoBlob,
    /// The blob overlaps the guest image, its .bss or its stack.
    OverlapsImage {
        /// Guest-physical address of the blob.
        addr: usize,
        /// Size of the blob from its header.
        size: usize,
    },
    /// The blob's header is invalid.
    Parse(fdt::FdtError),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::NoBlob => f.write_str("no device tree (x0 = 0)"),
            DtError::OverlapsImage { addr, size } => write!(
                f,
                "device tree at {addr:#x} ({size} bytes) overlaps the guest image"
            ),
            DtError::Parse(e) => write!(f, "bad device tree: {e}"),
        }
    }
}

/// One `reg` entry: a guest-physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub base: usize,
    /// Size in bytes (0 if the node has `#size-cells = 0`).
    pub size: usize,
}

/// The device tree Xen passed to this guest; it stays valid and unchanged for the guest's life.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree {
    fdt: Fdt<'static>,
}

impl DeviceTree {
    /// Parses the blob at guest-physical address `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be 0 or the address of memory of this guest, readable for at least a device
    /// tree header and for the size that header gives, that nothing writes to for the rest of
    /// the guest's life except (possibly) this guest's own image, .bss and stack, which is
    /// checked here.
    pub(crate) unsafe fn from_addr(addr: usize) -> Result<Self, DtError> {
        if addr == 0 {
            return Err(DtError::NoBlob);
        }
        let (image_start, image_end) = crate::start::image_bounds();
        if (image_start..image_end).contains(&addr) {
            return Err(DtError::OverlapsImage { addr, size: 0 });
        }
        // SAFETY: the caller guarantees the header and the `totalsize` bytes it announces are
        // readable, and that nothing but this guest's own image writes to them; the blob's
        // start was just checked to lie outside the image, its end is checked below before the
        // `Fdt` is handed out.
        let fdt = unsafe { Fdt::from_ptr(addr as *const u8) }.map_err(DtError::Parse)?;
        let size = fdt.total_size();
        let end = addr
            .checked_add(size)
            .ok_or(DtError::OverlapsImage { addr, size })?;
        if addr < image_end && image_start < end {
            return Err(DtError::OverlapsImage { addr, size });
        }
        Ok(Self { fdt })
    }

    /// Returns the underlying `fdt` crate view, for anything this wrapper does not cover.
    pub fn fdt(&self) -> &Fdt<'static> {
        &self.fdt
    }

    /// Returns the blob's size in bytes (`totalsize` from its header).
    pub fn total_size(&self) -> usize {
        self.fdt.total_size()
    }

    /// Returns the root node `/`.
    pub fn root(&self) -> Option<FdtNode<'_, 'static>> {
        self.fdt.find_node("/")
    }

    /// Iterates over the children of the root node.
    pub fn root_children(&self) -> impl Iterator<Item = FdtNode<'_, 'static>> {
        self.root().into_iter().flat_map(|root| root.children())
    }

    /// Returns the first child of the root named `name`, which may omit the unit address
    /// (`"memory"` finds `memory@40000000`).
    pub fn root_child(&self, name: &str) -> Option<FdtNode<'_, 'static>> {
        self.root_children()
            .find(|node| node.name == name || node.name.split('@').next() == Some(name))
    }

    /// Returns `/chosen/bootargs`, if present and valid UTF-8.
    pub fn bootargs(&self) -> Option<&'static str> {
        self.root_child("chosen")?.property("bootargs")?.as_str()
    }

    /// Iterates over the `reg` ranges of every `/memory*` node.
    pub fn memory_regions(&self) -> impl Iterator<Item = Region> + '_ {
        self.root_children()
            .filter(|node| node.name.split('@').next() == Some("memory"))
            .flat_map(|node| node.reg().into_iter().flatten())
            .map(|region| Region {
                base: region.starting_address as usize,
                size: region.size.unwrap_or(0),
            })
    }

    /// Iterates over every node of the tree, depth first.
    pub fn nodes(&self) -> impl Iterator<Item = FdtNode<'_, 'static>> {
        self.fdt.all_nodes()
    }
}
