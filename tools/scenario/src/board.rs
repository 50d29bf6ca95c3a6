//! Real boards the scenario tool writes boot files for: what each one's firmware, RAM, console
//! and interrupt controller are (every value with where it comes from), and the load plan that
//! puts U-Boot's script, Xen, the host DTB and every boot module at non-overlapping addresses
//! inside the part of RAM nothing else uses at boot.
//!
//! The domains and devices of a scenario are guest-physical and so the same on every board;
//! what changes per board is the host tree they are added to, Xen's console, the addresses the
//! images are loaded at, and how many SPIs Xen gives a domain (`gic_number_lines() - 32`).

use std::fmt;

/// A half-open host physical address range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// Returns `[start, start + size)`, or `None` if it is empty or wraps.
    pub fn sized(start: u64, size: u64) -> Option<Range> {
        let end = start.checked_add(size)?;
        (size > 0).then_some(Range { start, end })
    }

    /// Tells whether the two ranges share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Tells whether `other` lies entirely inside this range.
    pub fn contains(&self, other: &Range) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// A region the board's firmware or boot loader owns while U-Boot runs the script (or that
/// Xen must not be loaded into), with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub range: Range,
    pub why: &'static str,
}

/// The interrupt controller generation: it decides which vGIC Xen gives every domU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (GIC-400): domUs get a vGICv2 (distributor at 0x03001000, CPU interface at
    /// 0x03002000, Xen's public/arch-arm.h `GUEST_GICD_BASE`/`GUEST_GICC_BASE`).
    V2,
    /// GICv3: domUs get a vGICv3 (distributor 0x03001000, redistributors from 0x03020000).
    V3,
}

/// What the project knows of the board GIC's interrupt lines (`gic_number_lines()`, which Xen
/// reads from GICD_TYPER and which no device tree states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicLines {
    /// The line count the checks use.
    pub lines: u32,
    /// Whether `lines` is the exact count (`true`) or a lower bound (`false`).
    pub exact: bool,
    /// How the count is known.
    pub why: &'static str,
}

/// Xen's console on the board: the UART `dtuart=` names and what the checks expect to find
/// there in the board's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardConsole {
    /// What Xen's `dtuart=` takes: an `/aliases` entry (what the DTS's `stdout-path` names) or
    /// the node's path.
    pub dtuart: &'static str,
    /// The node `dtuart` must resolve to.
    pub path: &'static str,
    /// A compatible string of that node that Xen 4.17's UART drivers match.
    pub compatible: &'static str,
    /// The `stdout-path` of the board's own tree (baud rate set by the firmware; Xen's DT UART
    /// drivers keep it).
    pub stdout_path: &'static str,
}

/// One board: where its tree comes from and the facts the load plan and checks rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Short name, the DTB's file stem (`make board BOARD=<name>`).
    pub name: &'static str,
    /// What a person calls it.
    pub title: &'static str,
    /// Where `tools/board-dtbs.sh` gets the DTB.
    pub dtb_source: &'static str,
    /// A string the tree's root `compatible` must contain (the right tree was given).
    pub compatible: &'static str,
    pub console: BoardConsole,
    pub gic: GicVersion,
    pub gic_lines: GicLines,
    /// Xen's `p2m_ipa_bits` on the board: the PARange of the boot CPU's core type (Xen leaves
    /// cores of another type offline unless `hmp-unsafe`), with no IOMMU driver restricting it.
    pub ipa_bits: u32,
    /// The `/memory` banks written into the host tree when the board's own tree has none
    /// (U-Boot replaces them with the real banks at `booti`), with the reason; empty when the
    /// tree has its own.
    pub ram_if_missing: &'static [Range],
    pub ram_if_missing_why: &'static str,
    /// Where the load plan puts U-Boot's script, Xen, the DTB and the modules.
    pub window: Range,
    pub window_why: &'static str,
    /// Regions outside the tree's `/reserved-memory` and `/memreserve/` that must stay
    /// untouched: firmware, U-Boot itself, U-Boot's own load addresses.
    pub reserved: &'static [Reserved],
    /// The U-Boot command that loads a file from the boot medium, when the script is run by
    /// hand rather than by U-Boot's distro boot.
    pub default_load_device: &'static str,
    /// Whether the board can be booted here (QEMU): the generator then also writes `disk.img`,
    /// a disk with the boot partition U-Boot's distro boot finds boot.scr on.
    pub boots_here: bool,
}

/// R-Car H3 (R8A7795 ES3.x, "r8a77951") on Renesas' Salvator-XS board.
const SALVATOR_XS: Board = Board {
    name: "r8a77951-salvator-xs",
    title: "Renesas R-Car H3 Salvator-XS (R8A77951)",
    dtb_source:
        "compiled with cpp + dtc from arch/arm64/boot/dts/renesas/r8a77951-salvator-xs.dts \
                 of Debian's linux-source-6.1 (the version tools/board-dtbs.sh pins)",
    compatible: "renesas,salvator-xs",
    console: BoardConsole {
        dtuart: "serial0",
        path: "/soc/serial@e6e88000",
        compatible: "renesas,scif",
        stdout_path: "serial0:115200n8",
    },
    gic: GicVersion::V2,
    gic_lines: GicLines {
        lines: 512,
        exact: true,
        why: "the tree uses SPI 477 (INTID 509) and a GIC-400 has at most 480 SPIs, so \
              GICD_TYPER.ITLinesNumber is 15: 512 lines",
    },
    ipa_bits: 44,
    ram_if_missing: &[],
    ram_if_missing_why: "",
    window: Range {
        start: 0x4800_0000,
        end: 0x7000_0000,
    },
    window_why: "the start of DRAM bank 0 as U-Boot and the tree give it (0x48000000) up to \
                 256 MiB below the bank's end, where U-Boot relocates itself (code, malloc \
                 area, stack)",
    reserved: &[
        Reserved {
            range: Range {
                start: 0x4000_0000,
                end: 0x4800_0000,
            },
            why: "TF-A, OP-TEE and other secure firmware (U-Boot's DRAM_RSV_SIZE; not in the \
                  tree's /memory)",
        },
        Reserved {
            range: Range {
                start: 0x7000_0000,
                end: 0x8000_0000,
            },
            why: "U-Boot after relocation to the top of DRAM bank 0",
        },
    ],
    default_load_device: "mmc 0:1",
    boots_here: false,
};

/// Rockchip RK3568 on Radxa's ROCK 3 Model A.
const ROCK_3A: Board = Board {
    name: "rk3568-rock-3a",
    title: "Radxa ROCK 3 Model A (Rockchip RK3568)",
    dtb_source: "usr/lib/linux-image-<abi>-arm64/rockchip/rk3568-rock-3a.dtb of the Debian arm64 \
                 kernel package tools/linux-image.sh pins",
    compatible: "radxa,rock3a",
    console: BoardConsole {
        dtuart: "serial2",
        path: "/serial@fe660000",
        compatible: "snps,dw-apb-uart",
        stdout_path: "serial2:1500000n8",
    },
    gic: GicVersion::V3,
    gic_lines: GicLines {
        lines: 288,
        exact: false,
        why: "a lower bound: the tree uses SPI 231 (INTID 263), so the GIC-600 has at least 288 \
              lines; the real count is in GICD_TYPER (Xen prints it as \"GICv3: <n> lines\")",
    },
    ipa_bits: 40,
    ram_if_missing: &[Range {
        start: 0x0020_0000,
        end: 0x8000_0000,
    }],
    ram_if_missing_why: "the tree has no /memory: U-Boot writes the real banks at boot. This is \
                         bank 0 of the smallest ROCK 3A (2 GiB) as Rockchip's U-Boot reports it, \
                         from 0x200000 (TF-A's BL31 keeps the first 2 MiB)",
    window: Range {
        start: 0x1000_0000,
        end: 0x4000_0000,
    },
    window_why: "above U-Boot's own load addresses and Rockchip's OP-TEE, inside the first GiB \
                 that every ROCK 3A has, far below U-Boot at the top of bank 0",
    reserved: &[
        Reserved {
            range: Range {
                start: 0,
                end: 0x0020_0000,
            },
            why: "TF-A BL31 (U-Boot's DRAM bank 0 starts at 0x200000)",
        },
        Reserved {
            range: Range {
                start: 0x00c0_0000,
                end: 0x00e0_0000,
            },
            why: "U-Boot's scriptaddr, where distro boot loads boot.scr and runs it from",
        },
        Reserved {
            range: Range {
                start: 0x0840_0000,
                end: 0x0a40_0000,
            },
            why: "OP-TEE (BL32) when Rockchip's firmware has one (rkbin loads it at 0x8400000)",
        },
    ],
    default_load_device: "mmc 1:1",
    boots_here: false,
};

/// QEMU's `virt` machine as `make test` runs it (GICv3, Cortex-A57), started by Debian's
/// U-Boot for QEMU instead of by QEMU's own loader: the board whose boot files are booted
/// here (`make board-qemu`), so that boot.scr itself is tested on a real U-Boot.
const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    title: "QEMU virt (GICv3, 2 x Cortex-A57, 2 GiB) started by U-Boot",
    dtb_source: "QEMU's own tree, dumped by tools/board-dtbs.sh with the machine options the \
                 harness boots (virt,virtualization=on,gic-version=3, cortex-a57, 2 CPUs, 2 GiB)",
    compatible: "linux,dummy-virt",
    console: BoardConsole {
        dtuart: "/pl011@9000000",
        path: "/pl011@9000000",
        compatible: "arm,pl011",
        stdout_path: "/pl011@9000000",
    },
    gic: GicVersion::V3,
    gic_lines: GicLines {
        lines: 256,
        exact: true,
        why: "Xen reads 256 lines from the GICv3 of QEMU 7.2's virt machine (\"GICv3: 256 \
              lines\" in every scenario's boot log)",
    },
    ipa_bits: 44,
    ram_if_missing: &[],
    ram_if_missing_why: "",
    window: Range {
        start: 0x4800_0000,
        end: 0x7000_0000,
    },
    window_why: "clear of QEMU's tree and U-Boot's load addresses at the start of RAM and of \
                 U-Boot at its end",
    reserved: &[
        Reserved {
            range: Range {
                start: 0x4000_0000,
                end: 0x4020_0000,
            },
            why: "QEMU's own tree, which it puts at the start of RAM for U-Boot",
        },
        Reserved {
            range: Range {
                start: 0x4020_0000,
                end: 0x4040_0000,
            },
            why: "U-Boot's scriptaddr (include/configs/qemu-arm.h), where distro boot loads \
                  boot.scr and runs it from",
        },
        Reserved {
            range: Range {
                start: 0xb000_0000,
                end: 0xc000_0000,
            },
            why: "U-Boot after relocation to the top of RAM",
        },
    ],
    default_load_device: "virtio 0:1",
    boots_here: true,
};

/// Every board the tool knows.
pub const BOARDS: [Board; 3] = [SALVATOR_XS, ROCK_3A, QEMU_VIRT];

/// Returns the board called `name`.
pub fn find_board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}

/// Names of every board, for messages.
pub fn board_names() -> String {
    BOARDS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

impl Board {
    /// SPIs Xen gives a domain whose node has no `nr_spis`: `gic_number_lines() - 32` on Xen
    /// 4.17, `min(gic_number_lines(), 992) - 32` from 4.21 (`vgic_def_nr_spis()`); the same
    /// below 992 lines.
    pub fn default_nr_spis(&self) -> u32 {
        self.gic_lines.lines.min(992) - 32
    }

    /// Xen's command line for this board: `console=dtuart dtuart=<uart>` followed by the
    /// scenario's options without its own `console=` and `dtuart=` (QEMU's PL011 is not on the
    /// board) and without `spin-debug`, the debug Xen's lock check that the QEMU runs turn on
    /// (xen-patches/common/0005 (spin-debug); a board runs the release build).
    pub fn xen_bootargs(&self, scenario_bootargs: &str) -> String {
        let mut args = vec![
            "console=dtuart".to_owned(),
            format!("dtuart={}", self.console.dtuart),
        ];
        args.extend(
            scenario_bootargs
                .split_ascii_whitespace()
                .filter(|w| !["console=", "dtuart="].iter().any(|p| w.starts_with(p)))
                .filter(|w| *w != "spin-debug")
                .map(str::to_owned),
        );
        args.join(" ")
    }
}

/// Alignment of every load address: 2 MiB, what `booti` wants for an Image with no text offset
/// (it moves Xen to the next 2 MiB boundary otherwise) and Xen's early block mappings.
pub const LOAD_ALIGN: u64 = 2 << 20;

/// Slot kept for U-Boot's script (boot.scr): far more than it needs.
pub const SCRIPT_SLOT: u64 = LOAD_ALIGN;

/// Bytes U-Boot may add to the DTB in place before `booti` (`CONFIG_SYS_FDT_PAD`, 0x3000 by
/// default) with `fdt_high=0xffffffffffffffff`; the DTB's slot keeps room for it.
pub const FDT_PAD: u64 = 0x3000;

/// Largest host DTB Xen 4.17 accepts (`MAX_FDT_SIZE`, 2 MiB).
pub const MAX_FDT_SIZE: u64 = 2 << 20;

/// What one loaded file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadKind {
    /// U-Boot's script (boot.scr), loaded by the person or by distro boot before the rest.
    Script,
    /// The Xen image, started with `booti`.
    Xen,
    /// The host device tree.
    Dtb,
    /// A boot module: index into the module list the DTB's `/chosen` describes.
    Module(usize),
    /// A device tree overlay U-Boot applies to the DTB before booting (ImageBuilder's).
    Overlay,
}

/// One file of the load plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub kind: LoadKind,
    /// File name on the boot medium.
    pub file: String,
    /// Load address.
    pub addr: u64,
    /// Bytes read from the file.
    pub size: u64,
    /// Bytes the region must keep free from `addr` (Xen's `image_size` with its BSS, the DTB's
    /// growth): at least `size`.
    pub span: u64,
}

impl Load {
    /// Returns the region this load occupies.
    pub fn range(&self) -> Range {
        Range {
            start: self.addr,
            end: self.addr + self.span,
        }
    }
}

/// Why a load plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A file is empty.
    Empty { file: String },
    /// The files do not fit in the board's window.
    Full {
        file: String,
        end: u64,
        window: Range,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Empty { file } => write!(f, "{file} is empty"),
            PlanError::Full { file, end, window } => write!(
                f,
                "{file} would end at {end:#x}, past the board's load window {window}"
            ),
        }
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Places the files in order from the start of `window`, each at the next 2 MiB boundary
/// after the previous one that does not overlap any range of `avoid`. `files` are (kind, name,
/// size, span); the span is the room the file needs (at least its size).
pub fn plan_loads(
    window: Range,
    avoid: &[Range],
    files: Vec<(LoadKind, String, u64, u64)>,
) -> Result<Vec<Load>, PlanError> {
    let mut next = window.start;
    let mut out = Vec::with_capacity(files.len());
    for (kind, file, size, span) in files {
        if size == 0 {
            return Err(PlanError::Empty { file });
        }
        let span = span.max(size);
        let full = |end| PlanError::Full {
            file: file.clone(),
            end,
            window,
        };
        let mut addr = align_up(next, LOAD_ALIGN).ok_or_else(|| full(u64::MAX))?;
        // Each move lands at or past a reserved region's end, so this ends.
        while let Some(r) = avoid
            .iter()
            .find(|r| Range::sized(addr, span).is_some_and(|me| me.overlaps(r)))
        {
            addr = align_up(r.end, LOAD_ALIGN).ok_or_else(|| full(u64::MAX))?;
        }
        let end = addr.checked_add(span).ok_or_else(|| full(u64::MAX))?;
        if end > window.end {
            return Err(full(end));
        }
        out.push(Load {
            kind,
            file,
            addr,
            size,
            span,
        });
        next = end;
    }
    Ok(out)
}

/// Reads the `image_size` field of an arm64 Image header (Linux's booting.rst; Xen's
/// head.S writes `_end - start`, BSS included): the memory `booti` keeps for the image.
/// `None` if `image` is not an arm64 Image (no "ARM\x64" magic at 0x38).
pub fn arm64_image_size(image: &[u8]) -> Option<u64> {
    if image.get(0x38..0x3c)? != b"ARM\x64" {
        return None;
    }
    let bytes: [u8; 8] = image.get(0x10..0x18)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Tells whether Xen 4.17 can start at `addr`: its head.S refuses a load address in the same
/// 2 MiB second-level slot as its link address `XEN_VIRT_START` (0x200000) unless it is exactly
/// that address ("Unable to map Xen: clashes with 1:1 mapping", `virtphys_clash`).
pub fn xen_417_can_start_at(addr: u64) -> bool {
    const XEN_VIRT_START: u64 = 0x20_0000;
    addr == XEN_VIRT_START || addr >> 21 != XEN_VIRT_START >> 21
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn boards_are_consistent() {
        for b in &BOARDS {
            assert!(b.window.start % LOAD_ALIGN == 0, "{}", b.name);
            assert!(b.window.start < b.window.end, "{}", b.name);
            for res in b.reserved {
                assert!(!res.range.overlaps(&b.window), "{}: {}", b.name, res.why);
            }
            for ram in b.ram_if_missing {
                assert!(ram.contains(&b.window), "{}", b.name);
            }
            assert!(b.console.stdout_path.starts_with(b.console.dtuart));
            assert!(b.default_nr_spis() >= 64, "{}", b.name);
            assert!(xen_417_can_start_at(b.window.start + SCRIPT_SLOT));
            assert_eq!(find_board(b.name), Some(b));
        }
        assert_eq!(find_board("nope"), None);
        assert_eq!(SALVATOR_XS.default_nr_spis(), 480);
        assert_eq!(ROCK_3A.default_nr_spis(), 256);
    }

    #[test]
    fn board_console_replaces_qemus() {
        let args = SALVATOR_XS.xen_bootargs(crate::DEFAULT_XEN_BOOTARGS);
        assert_eq!(
            args,
            "console=dtuart dtuart=serial0 bootscrub=0 loglvl=all guest_loglvl=all conswitch=ax"
        );
        assert_eq!(
            ROCK_3A.xen_bootargs("console=vga dtuart=/x sched=credit"),
            "console=dtuart dtuart=serial2 sched=credit"
        );
    }

    #[test]
    fn loads_are_aligned_in_order_and_skip_reservations() {
        let window = r(0x1000_0000, 0x2000_0000);
        // The DTB's first slot, 0x10400000, is reserved: it moves to 0x10600000, and the
        // module after it to the next boundary past the DTB's span.
        let avoid = [r(0x1040_0000, 0x1050_0000)];
        let files = vec![
            (LoadKind::Script, "boot.scr".to_owned(), 100, SCRIPT_SLOT),
            (LoadKind::Xen, "xen".to_owned(), 0x10_0000, 0x18_0000),
            (LoadKind::Dtb, "host.dtb".to_owned(), 0x2_0000, 0x2_3000),
            (LoadKind::Module(0), "a.img".to_owned(), 0x20_0001, 0),
        ];
        let plan = plan_loads(window, &avoid, files).expect("fits");
        let addrs: Vec<u64> = plan.iter().map(|l| l.addr).collect();
        assert_eq!(addrs, [0x1000_0000, 0x1020_0000, 0x1060_0000, 0x1080_0000]);
        assert_eq!(plan[3].span, 0x20_0001, "a span below the size is the size");
        for w in plan.windows(2) {
            assert!(!w[0].range().overlaps(&w[1].range()));
        }
        // A reservation in the way moves the file past it.
        let avoid = [r(0x1041_0000, 0x1042_0000)];
        let files = vec![(LoadKind::Dtb, "d".to_owned(), 0x2_0000, 0)];
        let plan = plan_loads(r(0x1040_0000, 0x2000_0000), &avoid, files).expect("fits");
        assert_eq!(plan[0].addr, 0x1060_0000);
    }

    #[test]
    fn plans_that_do_not_fit_are_refused() {
        let files = vec![(LoadKind::Xen, "xen".to_owned(), 0x30_0000, 0)];
        assert_eq!(
            plan_loads(r(0x1000_0000, 0x1020_0000), &[], files),
            Err(PlanError::Full {
                file: "xen".to_owned(),
                end: 0x1030_0000,
                window: r(0x1000_0000, 0x1020_0000)
            })
        );
        let files = vec![(LoadKind::Xen, "xen".to_owned(), 0, 0)];
        assert!(matches!(
            plan_loads(r(0, 0x1000_0000), &[], files),
            Err(PlanError::Empty { .. })
        ));
    }

    #[test]
    fn image_header_and_xen_417_start_rule() {
        let mut img = vec![0u8; 0x40];
        img[0x10..0x18].copy_from_slice(&0x1234_5678u64.to_le_bytes());
        assert_eq!(arm64_image_size(&img), None, "no magic");
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(arm64_image_size(&img), Some(0x1234_5678));
        assert_eq!(arm64_image_size(&img[..0x20]), None);
        assert!(xen_417_can_start_at(0x20_0000));
        assert!(!xen_417_can_start_at(0x20_1000));
        assert!(!xen_417_can_start_at(0x3f_f000));
        assert!(xen_417_can_start_at(0x40_0000));
        assert!(xen_417_can_start_at(0x4820_0000));
    }

    #[test]
    fn ranges() {
        assert_eq!(Range::sized(0x10, 0), None);
        assert_eq!(Range::sized(u64::MAX, 2), None);
        let a = r(0x10, 0x20);
        assert!(a.overlaps(&r(0x1f, 0x30)) && !a.overlaps(&r(0x20, 0x30)));
        assert!(a.contains(&r(0x10, 0x20)) && !a.contains(&r(0x10, 0x21)));
        assert_eq!(a.to_string(), "[0x10, 0x20)");
    }
}
