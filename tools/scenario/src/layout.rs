//! Boot-module placement in QEMU's RAM: where each domain's kernel image (and ramdisk, if any)
//! is loaded by QEMU's generic loader and announced to Xen as a `multiboot,module` (Xen
//! booting.txt, "reg").

use std::fmt;
use std::path::PathBuf;

/// Start of RAM on QEMU's `virt` machine (hw/arm/virt.c `VIRT_MEM`).
pub const RAM_BASE: u64 = 0x4000_0000;
/// First module address: 256 MiB above RAM start, clear of Xen (loaded at 0x4020_0000, about
/// 1 MiB) and of the DTB QEMU places right after it.
pub const MODULE_BASE: u64 = 0x5000_0000;
/// Module alignment: 2 MiB, the block size Xen's early boot mappings use on arm64.
pub const MODULE_ALIGN: u64 = 2 << 20;

/// Says what a boot module is to Xen: its specific compatible string (booting.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// The domain's kernel: `multiboot,kernel`, carries the domain's `bootargs`.
    Kernel,
    /// The domain's initrd: `multiboot,ramdisk`; Xen copies it into the guest's RAM and
    /// passes its place in the guest DT (`linux,initrd-start`/`-end`).
    Ramdisk,
}

impl ModuleKind {
    /// Returns the module node's `compatible` strings, specific first.
    pub fn compatible(self) -> [&'static str; 2] {
        match self {
            ModuleKind::Kernel => ["multiboot,kernel", "multiboot,module"],
            ModuleKind::Ramdisk => ["multiboot,ramdisk", "multiboot,module"],
        }
    }
}

/// Says which domain a boot module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The dom0: its modules sit directly under `/chosen`.
    Dom0,
    /// The dom0less domain of this index in scenario order: its modules are children of its
    /// `xen,domain` node.
    Domain(usize),
}

/// Describes one placed boot module: a domain's kernel image or ramdisk and where QEMU loads
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The domain the module belongs to.
    pub owner: Owner,
    pub kind: ModuleKind,
    /// Image file (absolute once `generate` has resolved it).
    pub image: PathBuf,
    /// Load address in host physical memory.
    pub addr: u64,
    /// Exact file size in bytes: the module's `reg` size.
    pub size: u64,
}

/// Lists why a set of modules cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceError {
    /// Module `index` is empty; Xen refuses zero-sized modules.
    Empty { index: usize },
    /// Module `index` would end at `end`, past the end of RAM (`ram_end`).
    BeyondRam {
        index: usize,
        end: u64,
        ram_end: u64,
    },
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlaceError::Empty { index } => write!(f, "module {index} is empty"),
            PlaceError::BeyondRam {
                index,
                end,
                ram_end,
            } => write!(
                f,
                "module {index} would end at {end:#x}, past the end of RAM at {ram_end:#x}"
            ),
        }
    }
}

/// Places modules of the given byte sizes in order from `MODULE_BASE`, each at the next
/// 2 MiB boundary after the previous one, and returns their load addresses.
///
/// `ram_end` is the first address past RAM; every module must end at or below it.
pub fn place_modules(sizes: &[u64], ram_end: u64) -> Result<Vec<u64>, PlaceError> {
    let mut addrs = Vec::with_capacity(sizes.len());
    let mut next = MODULE_BASE;
    for (index, &size) in sizes.iter().enumerate() {
        if size == 0 {
            return Err(PlaceError::Empty { index });
        }
        // Overflow is reported as "beyond RAM": no machine has RAM up to 2^64.
        let beyond = PlaceError::BeyondRam {
            index,
            end: u64::MAX,
            ram_end,
        };
        let end = next.checked_add(size).ok_or(beyond)?;
        if end > ram_end {
            return Err(PlaceError::BeyondRam {
                index,
                end,
                ram_end,
            });
        }
        addrs.push(next);
        next = align_up(end, MODULE_ALIGN).ok_or(beyond)?;
    }
    Ok(addrs)
}

/// Rounds `x` up to a multiple of `align` (a power of two), or `None` on overflow.
fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM_END: u64 = RAM_BASE + (2048 << 20);

    #[test]
    fn modules_are_aligned_disjoint_and_in_order() {
        let sizes = [4096, MODULE_ALIGN, MODULE_ALIGN + 1, 1, 3 << 20];
        let addrs = place_modules(&sizes, RAM_END).expect("fits");
        assert_eq!(addrs[0], MODULE_BASE);
        assert_eq!(
            addrs,
            vec![
                MODULE_BASE,
                MODULE_BASE + MODULE_ALIGN,
                MODULE_BASE + 2 * MODULE_ALIGN,
                MODULE_BASE + 4 * MODULE_ALIGN,
                MODULE_BASE + 5 * MODULE_ALIGN,
            ]
        );
        for (i, (&a, &s)) in addrs.iter().zip(&sizes).enumerate() {
            assert_eq!(a % MODULE_ALIGN, 0, "module {i} misaligned");
            if let Some(&b) = addrs.get(i + 1) {
                assert!(a + s <= b, "module {i} overlaps the next one");
            }
        }
    }

    #[test]
    fn empty_module_is_refused() {
        assert_eq!(
            place_modules(&[10, 0], RAM_END),
            Err(PlaceError::Empty { index: 1 })
        );
    }

    #[test]
    fn module_past_ram_is_refused() {
        let small_ram = MODULE_BASE + MODULE_ALIGN + 100;
        assert_eq!(
            place_modules(&[100, 100], small_ram),
            Ok(vec![MODULE_BASE, MODULE_BASE + MODULE_ALIGN])
        );
        assert_eq!(
            place_modules(&[100, 101], small_ram),
            Err(PlaceError::BeyondRam {
                index: 1,
                end: small_ram + 1,
                ram_end: small_ram
            })
        );
        assert!(matches!(
            place_modules(&[u64::MAX], u64::MAX),
            Err(PlaceError::BeyondRam { index: 0, .. })
        ));
    }
}
