//! The stage-1 identity map of the test guests, the code that turns the MMU and the data and
//! instruction caches on as the first thing every vCPU does (Arm ARM D8, "The AArch64 Virtual
//! Memory System Architecture", 4 KiB granule), and `AT S1E1R` translations for the guests'
//! `mmu-on` checks.
//!
//! # Why
//! Xen, and every domain a guest shares memory with (a backend's windows onto its frontends'
//! RAM, the ioreq pages), access RAM through Normal Write-Back cacheable mappings. With its MMU
//! off a guest's data accesses are all Device-nGnRnE, uncached: coherent with those mappings
//! only under QEMU TCG, which models no caches. With the MMU on, RAM is Normal Write-Back Inner
//! Shareable in this guest too, the attributes Xen's stage 2 gives it, and the hardware keeps
//! every cached copy coherent.
//!
//! # The map: static tables for Xen's fixed domU layout
//! The tables are `static`s of the image, complete at link time (the linker fills in the table
//! addresses). A domU's guest-physical layout is Xen's public ABI (public/arch-arm.h of Xen
//! 4.17) and the backend interface sits at fixed addresses too (docs/backend-abi.md), so one
//! map fits every guest: VA = IPA, 40 bits (1 TiB, the IPA space Xen gives a guest):
//!
//! | VA = IPA | mapped as | what is there |
//! |---|---|---|
//! | 0 .. 1 GiB | Device-nGnRE, no execute, 2 MiB blocks | vGIC, vpl011, virtio-mmio windows, ... |
//! | 0x3e00_0000 .. 0x3e20_0000 | 4 KiB pages, Device | doorbell; a backend's ioreq pages (below) |
//! | 1 .. 4 GiB | Normal WB, Inner Shareable, 1 GiB blocks | GUEST_RAM0 (the image; executable) |
//! | 4 .. 8 GiB | Device-nGnRE, no execute | a gap; the binding lets virtio windows sit here |
//! | 8 GiB .. 1 TiB | Normal WB, Inner Shareable, no execute | GUEST_RAM1; a backend's RAM windows |
//!
//! Everything that is not RAM is Device, so every place docs/binding.md lets a frontend's
//! virtio-mmio window sit is Device, and an access where Xen maps and emulates nothing still
//! reaches Xen's stage 2 and gets its data abort (the `unclaimed-access` scenario; a backend's
//! probe of a hole in a window). Mapping more than Xen backs is harmless: stage 1 only gives
//! attributes, an access to an IPA without a stage-2 mapping traps to Xen as before, Device
//! memory is never read speculatively, and a speculative access to Normal memory that stage 2
//! does not map is never reported.
//!
//! A backend's ioreq pages are RAM Xen shares with it, inside the block whose first page is the
//! doorbell. A domU that is not a backend may put a virtio window there, so the static map has
//! them Device, and the backend remaps exactly the pages its device tree names
//! (`rust-ioreq,ioreq-page`) as Normal with [`map_shared_ram_page`], before it first touches
//! them.
//!
//! Why static tables rather than tables built from the device tree before the MMU is turned on:
//! nothing is written with the MMU off, so no cache maintenance is needed for the tables, .bss
//! or stacks (below); the layout they encode is Xen's ABI, not a per-boot choice; and the guests
//! check at run time that what their device tree names is mapped as it must be ([`check`],
//! [`is_ram`]), so a Xen with another layout is a FAIL line, not silent corruption.
//!
//! # Turning it on (`__guest_mmu_on`)
//! The boot vCPU calls it before it sets up its stack or zeroes .bss (start.rs), and a vCPU
//! started by PSCI `CPU_ON` calls it before it reads its start record (smp.rs). Each vCPU programs
//! its own registers (Xen resets them for every vCPU); all share the one set of tables.
//!
//! - MAIR_EL1: Attr0 = 0x04 Device-nGnRE, Attr1 = 0xff Normal, Inner and Outer Write-Back
//!   Non-transient, Read- and Write-Allocate.
//! - TCR_EL1: T0SZ = 24 (40-bit VAs: the walk starts at level 0, of which entries 0 and 1 are
//!   used), TG0 = 4 KiB, table walks Inner Shareable and Write-Back cacheable (IRGN0, ORGN0,
//!   SH0: the tables live in Normal WB memory, so walks see what the caches hold), EPD1 = 1 (no
//!   TTBR1 walks; T1SZ and TG1 still hold valid values), IPS = 40 bits, or less if
//!   ID_AA64MMFR0_EL1.PARange says the PE implements less (Xen's guest IPA space is at most as
//!   large as the host's, and the map ends at 1 TiB).
//! - TTBR0_EL1: the level-0 table (ASID 0; every entry is global).
//! - `tlbi vmalle1` and `ic iallu`, then `dsb ish` and `isb`: no stale stage-1 entry or
//!   instruction survives into the new regime. Xen sets HCR_EL2.FB, which makes both broadcast to
//!   the Inner Shareable domain; `dsb ish` waits for either form.
//! - SCTLR_EL1: M, C and I set, WXN cleared, the rest as Xen reset it; then `isb`, so the next
//!   instruction is fetched and executes with translation on. The code runs from the identity
//!   map, so the PC stays valid across the switch.
//!
//! Cache maintenance: none is needed, because no data is read or written with the MMU off (the
//! walker reads the tables only once it is on). Xen loads the image (tables
//! included) and the device tree through its cacheable mapping and cleans them to the point of
//! coherency, as Linux's arm64 booting.rst requires of any loader; cached copies are then either
//! clean or newer than memory, and with the MMU on every access sees them. .bss is zeroed, the
//! stacks are used and a secondary's start record is read only after the MMU is on, all through
//! cacheable mappings. [`map_shared_ram_page`] writes a table entry with the MMU on: cacheable
//! walks see it after `dsb ishst`.

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::gic::{GICD_BASE, GICR_BASE};
use crate::{println, scenario, Boot};

/// Bytes in a page (TG0 = 4 KiB).
pub const PAGE_SIZE: u64 = 0x1000;
/// Entries in a table of the 4 KiB granule.
const ENTRIES: usize = 512;
/// Bytes one level-1 block maps.
const L1_BLOCK: u64 = 1 << 30;
/// Bytes one level-2 block maps.
const L2_BLOCK: u64 = 1 << 21;
/// Bytes one level-0 entry maps (a level-1 table).
const L0_SPAN: u64 = 1 << 39;
/// Bits of virtual address: TCR_EL1.T0SZ = 64 - 40.
const VA_BITS: u64 = 40;

/// Xen's first domU RAM bank, GUEST_RAM0 (public/arch-arm.h): 0x4000_0000, 3 GiB.
const GUEST_RAM0: (u64, u64) = (0x4000_0000, 0x1_0000_0000);
/// Xen's second domU RAM bank, GUEST_RAM1: 0x2_0000_0000 up to the end of the 40-bit space. A
/// backend's RAM windows (0x10_0000_0000 * (k + 1), docs/backend-abi.md) are inside it.
const GUEST_RAM1: (u64, u64) = (0x2_0000_0000, 0x100_0000_0000);
/// The 2 MiB block mapped with 4 KiB pages: the backend interface (doorbell at its base, ioreq
/// pages after it, docs/backend-abi.md).
pub const SHARED_BLOCK_BASE: u64 = 0x3e00_0000;

// MAIR_EL1 attribute indices and their encodings (Arm ARM, register MAIR_EL1).
const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;
/// MAIR encoding of Device-nGnRE.
pub const MAIR_DEVICE_NGNRE: u8 = 0x04;
/// MAIR encoding of Normal, Inner and Outer Write-Back Non-transient, Read/Write-Allocate.
pub const MAIR_NORMAL_WB: u8 = 0xff;
const MAIR: u64 = ((MAIR_DEVICE_NGNRE as u64) << (8 * ATTR_DEVICE))
    | ((MAIR_NORMAL_WB as u64) << (8 * ATTR_NORMAL));

// TCR_EL1 fields (Arm ARM, register TCR_EL1). IPS is inserted at run time, see `__guest_mmu_on`.
const TCR_T0SZ: u64 = 64 - VA_BITS;
const TCR_IRGN0_WBWA: u64 = 0b01 << 8;
const TCR_ORGN0_WBWA: u64 = 0b01 << 10;
const TCR_SH0_INNER: u64 = 0b11 << 12;
const TCR_TG0_4K: u64 = 0b00 << 14;
const TCR_T1SZ: u64 = (64 - VA_BITS) << 16;
const TCR_EPD1: u64 = 1 << 23;
const TCR_TG1_4K: u64 = 0b10 << 30;
const TCR: u64 = TCR_T0SZ
    | TCR_IRGN0_WBWA
    | TCR_ORGN0_WBWA
    | TCR_SH0_INNER
    | TCR_TG0_4K
    | TCR_T1SZ
    | TCR_EPD1
    | TCR_TG1_4K;
/// TCR_EL1.IPS / ID_AA64MMFR0_EL1.PARange encoding of 40 bits.
const PA_40_BITS: u64 = 0b010;
/// Bit position of TCR_EL1.IPS.
const TCR_IPS_SHIFT: u64 = 32;

// SCTLR_EL1 bits (Arm ARM, register SCTLR_EL1).
/// SCTLR_EL1.M: stage-1 translation on.
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR_EL1.C: data accesses to Normal memory cacheable.
pub const SCTLR_C: u64 = 1 << 2;
/// SCTLR_EL1.I: instruction fetches cacheable.
pub const SCTLR_I: u64 = 1 << 12;
const SCTLR_WXN: u64 = 1 << 19;

// Descriptor bits, VMSAv8-64 stage 1 (Arm ARM, "VMSAv8-64 translation table format descriptors").
const DESC_TABLE: u64 = 0b11;
const DESC_BLOCK: u64 = 0b01;
const DESC_PAGE: u64 = 0b11;
const fn attr_index(index: u64) -> u64 {
    index << 2
}
/// SH = Inner Shareable (ignored for Device memory, which is always Outer Shareable).
const SH_INNER: u64 = 0b11 << 8;
/// AF: set, so no access flag fault is ever taken (TCR_EL1.HA is 0).
const AF: u64 = 1 << 10;
/// AP[2:1] = 0b00 (read/write at EL1, no EL0 access) is the zero value; nG = 0 (global).
/// AP[1] set: read/write at EL0 too.
const AP_EL0: u64 = 1 << 6;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// Leaf attributes of RAM holding code (GUEST_RAM0: the image).
const NORMAL_EXEC: u64 = AF | SH_INNER | attr_index(ATTR_NORMAL) | UXN;
/// Leaf attributes of RAM that never holds code.
const NORMAL_DATA: u64 = NORMAL_EXEC | PXN;
/// Leaf attributes of MMIO: never executable, so never fetched from speculatively. Accessible
/// from EL0 too, so an unprivileged load or store (`LDTR`/`STTR` at EL1, which a hostile
/// frontend uses on a device) reaches the device and Xen as with the MMU off. No guest runs
/// code at EL0, and Xen starts vCPUs with SCTLR_EL1.SPAN set (SCTLR_GUEST_INIT), so PAN is never
/// set and EL1's own accesses are unaffected.
const DEVICE: u64 = AF | attr_index(ATTR_DEVICE) | AP_EL0 | PXN | UXN;

/// Returns the leaf attributes of the static map at `addr` (the layout table of the module docs).
const fn static_attributes(addr: u64) -> u64 {
    if GUEST_RAM0.0 <= addr && addr < GUEST_RAM0.1 {
        NORMAL_EXEC
    } else if GUEST_RAM1.0 <= addr && addr < GUEST_RAM1.1 {
        NORMAL_DATA
    } else {
        DEVICE
    }
}

// The RAM banks are whole 1 GiB blocks, and the 0 .. 1 GiB table holds no RAM.
const _: () = assert!(GUEST_RAM0.0 % L1_BLOCK == 0 && GUEST_RAM0.1 % L1_BLOCK == 0);
const _: () = assert!(GUEST_RAM1.0 % L1_BLOCK == 0 && GUEST_RAM1.1 == 1 << VA_BITS);
const _: () = assert!(GUEST_RAM0.0 == L1_BLOCK);
const _: () = assert!(SHARED_BLOCK_BASE % L2_BLOCK == 0 && SHARED_BLOCK_BASE < L1_BLOCK);
const _: () = assert!(2 * L0_SPAN == 1 << VA_BITS);

/// One translation table entry as the walker reads it: a pointer, so that a table descriptor
/// can hold the address of the next table (a link-time relocation); leaf descriptors are plain
/// numbers in it.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Descriptor(*const u8);

/// A translation table that is never written: 512 descriptors, 4 KiB aligned as the walker needs.
#[repr(C, align(4096))]
struct Table([Descriptor; ENTRIES]);

// SAFETY: the tables are immutable statics; the pointers in them are only read (by the table
// walker, and by nothing in Rust), so sharing them between vCPUs is sharing constant data.
unsafe impl Sync for Table {}

/// The one table written at run time (the backend-interface block), read by the walker.
#[repr(C, align(4096))]
struct PageTable([AtomicU64; ENTRIES]);

const _: () = assert!(core::mem::size_of::<Table>() == 4096);
const _: () = assert!(core::mem::size_of::<PageTable>() == 4096);

/// Returns a leaf descriptor (block or page) with output address `addr`.
const fn leaf(kind: u64, addr: u64) -> Descriptor {
    Descriptor(core::ptr::without_provenance(
        (kind | addr | static_attributes(addr)) as usize,
    ))
}

/// Returns a table descriptor pointing to `next`.
const fn table(next: *const u8) -> Descriptor {
    Descriptor(next.wrapping_add(DESC_TABLE as usize))
}

/// An invalid descriptor (any access through it takes a translation fault).
const INVALID: Descriptor = Descriptor(core::ptr::null());

/// Level 0: VA bit 39 picks one of two level-1 tables.
static L0: Table = {
    let mut t = [INVALID; ENTRIES];
    t[0] = table((&raw const L1_LOW).cast());
    t[1] = table((&raw const L1_HIGH).cast());
    Table(t)
};

/// Level 1 for 0 .. 512 GiB: the low GiB through a level-2 table, 1 GiB blocks above.
static L1_LOW: Table = {
    let mut t = [INVALID; ENTRIES];
    t[0] = table((&raw const L2_LOW).cast());
    let mut i = 1;
    while i < ENTRIES {
        t[i] = leaf(DESC_BLOCK, i as u64 * L1_BLOCK);
        i += 1;
    }
    Table(t)
};

/// Level 1 for 512 GiB .. 1 TiB: 1 GiB blocks (all GUEST_RAM1).
static L1_HIGH: Table = {
    let mut t = [INVALID; ENTRIES];
    let mut i = 0;
    while i < ENTRIES {
        t[i] = leaf(DESC_BLOCK, L0_SPAN + i as u64 * L1_BLOCK);
        i += 1;
    }
    Table(t)
};

/// Level 2 for 0 .. 1 GiB: 2 MiB Device blocks, the backend-interface block through pages.
static L2_LOW: Table = {
    let mut t = [INVALID; ENTRIES];
    let mut i = 0;
    while i < ENTRIES {
        let addr = i as u64 * L2_BLOCK;
        t[i] = if addr == SHARED_BLOCK_BASE {
            table((&raw const L3_SHARED).cast())
        } else {
            leaf(DESC_BLOCK, addr)
        };
        i += 1;
    }
    Table(t)
};

/// Level 3 for the backend-interface block: Device pages until [`map_shared_ram_page`].
static L3_SHARED: PageTable = {
    let mut t = [const { AtomicU64::new(0) }; ENTRIES];
    let mut i = 0;
    while i < ENTRIES {
        let addr = SHARED_BLOCK_BASE + i as u64 * PAGE_SIZE;
        t[i] = AtomicU64::new(DESC_PAGE | addr | static_attributes(addr));
        i += 1;
    }
    PageTable(t)
};

// Turns the MMU and caches on with the tables above (module docs, "Turning it on"). Called with
// `bl` before any stack exists; touches no memory; clobbers x9-x11 and the flags.
global_asm!(
    r#"
    .section .text.mmu_on, "ax"
    .global __guest_mmu_on
__guest_mmu_on:
    movz    x9, #{mair_0}
    movk    x9, #{mair_1}, lsl #16
    msr     mair_el1, x9

    movz    x9, #{tcr_0}
    movk    x9, #{tcr_1}, lsl #16
    movk    x9, #{tcr_2}, lsl #32
    mrs     x10, id_aa64mmfr0_el1
    and     x10, x10, #0xf
    mov     x11, #{pa_40}
    cmp     x10, x11
    csel    x10, x10, x11, lo
    bfi     x9, x10, #{ips_shift}, #3
    msr     tcr_el1, x9

    adrp    x9, {l0}
    add     x9, x9, :lo12:{l0}
    msr     ttbr0_el1, x9
    isb

    tlbi    vmalle1
    ic      iallu
    dsb     ish
    isb

    mrs     x9, sctlr_el1
    mov     x10, #{sctlr_on}
    orr     x9, x9, x10
    bic     x9, x9, #{sctlr_wxn}
    msr     sctlr_el1, x9
    isb
    ret
"#,
    mair_0 = const MAIR & 0xffff,
    mair_1 = const (MAIR >> 16) & 0xffff,
    tcr_0 = const TCR & 0xffff,
    tcr_1 = const (TCR >> 16) & 0xffff,
    tcr_2 = const (TCR >> 32) & 0xffff,
    pa_40 = const PA_40_BITS,
    ips_shift = const TCR_IPS_SHIFT,
    l0 = sym L0,
    sctlr_on = const SCTLR_M | SCTLR_C | SCTLR_I,
    sctlr_wxn = const SCTLR_WXN,
);

const _: () = assert!(MAIR >> 32 == 0 && TCR >> 48 == 0);

/// Returns SCTLR_EL1.
pub fn sctlr() -> u64 {
    let value: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects and touches no memory.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Tells whether translation and both caches are on (SCTLR_EL1 M, C and I).
pub fn enabled() -> bool {
    let on = SCTLR_M | SCTLR_C | SCTLR_I;
    sctlr() & on == on
}

/// The memory types of the identity map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// Normal, Inner and Outer Write-Back, Inner Shareable: RAM.
    NormalWriteBack,
    /// Any Device type: MMIO.
    Device,
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryType::NormalWriteBack => "Normal WB inner-shareable",
            MemoryType::Device => "Device",
        })
    }
}

/// PAR_EL1 after an `AT S1E1R`: the stage-1 translation of one address (Arm ARM, register
/// PAR_EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation(u64);

impl Translation {
    /// Returns the raw PAR_EL1 value.
    pub fn par(&self) -> u64 {
        self.0
    }

    /// Tells whether the translation failed (PAR_EL1.F).
    pub fn faulted(&self) -> bool {
        self.0 & 1 != 0
    }

    /// Returns the output address's page (the IPA: Xen's stage 2 is not part of `AT S1E1R`).
    pub fn page(&self) -> u64 {
        self.0 & 0x000f_ffff_ffff_f000
    }

    /// Returns the memory attributes, MAIR encoded (PAR_EL1.ATTR).
    pub fn attr(&self) -> u8 {
        self.0.to_be_bytes()[0]
    }

    /// Returns the shareability (PAR_EL1.SH: 0b11 Inner, 0b10 Outer, 0b00 Non-shareable).
    pub fn shareability(&self) -> u64 {
        (self.0 >> 7) & 0b11
    }

    /// Classifies the result: `None` for a fault or attributes the map never uses.
    pub fn memory_type(&self) -> Option<MemoryType> {
        if self.faulted() {
            return None;
        }
        let attr = self.attr();
        // Write-Back: 0b01RW (transient, R or W allocate) or 0b11RW, for both halves.
        let write_back = |half: u8| (half >> 2 == 0b11) || (half >> 2 == 0b01 && half & 0b11 != 0);
        if attr >> 4 == 0 && attr & 0b11 == 0 {
            Some(MemoryType::Device)
        } else if write_back(attr >> 4) && write_back(attr & 0xf) && self.shareability() == 0b11 {
            Some(MemoryType::NormalWriteBack)
        } else {
            None
        }
    }
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faulted() {
            return write!(f, "PAR_EL1={:#x} (translation fault)", self.0);
        }
        write!(
            f,
            "PAR_EL1={:#x} (page {:#x}, attr {:#04x}, SH {:#b}",
            self.0,
            self.page(),
            self.attr(),
            self.shareability()
        )?;
        match self.memory_type() {
            Some(t) => write!(f, ": {t})"),
            None => f.write_str(": not a type the map uses)"),
        }
    }
}

/// Translates `va` for a read at EL1 with the current stage-1 tables (`AT S1E1R`).
pub fn translate(va: u64) -> Translation {
    let par: u64;
    // SAFETY: AT only walks the translation tables and writes PAR_EL1; the `isb` makes the
    // result visible to the `mrs`. It reads memory (the tables), so it is not `nomem`.
    unsafe {
        asm!(
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = lateout(reg) par,
            options(nostack, preserves_flags, readonly),
        );
    }
    Translation(par)
}

/// Tells whether the static map has all of `[base, base + size)` as Normal RAM (a backend checks
/// its RAM windows with it).
pub fn is_ram(base: u64, size: u64) -> bool {
    let Some(end) = base.checked_add(size) else {
        return false;
    };
    size > 0
        && [GUEST_RAM0, GUEST_RAM1]
            .iter()
            .any(|&(start, stop)| start <= base && end <= stop)
}

/// Why [`map_shared_ram_page`] refused a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The address is not a multiple of 4 KiB.
    NotPageAligned(u64),
    /// The page is outside the block the map has page tables for.
    OutsideSharedBlock(u64),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::NotPageAligned(a) => write!(f, "{a:#x} is not 4 KiB aligned"),
            MapError::OutsideSharedBlock(a) => write!(
                f,
                "{a:#x} is outside {SHARED_BLOCK_BASE:#x}..{:#x}, the only block the stage-1 map \
                 has 4 KiB pages for",
                SHARED_BLOCK_BASE + L2_BLOCK
            ),
        }
    }
}

/// Remaps the page at `addr` of the backend-interface block as Normal Write-Back Inner
/// Shareable, no execute (it was Device), with break-before-make (a change of memory type needs
/// it: Arm ARM, "Using break-before-make when updating translation table entries").
///
/// # Safety
/// `addr` must be a page of RAM that Xen shares with this guest (a backend's ioreq page), that
/// nothing in this guest is accessing while it is remapped; another vCPU touching it in between
/// would take a translation fault.
pub unsafe fn map_shared_ram_page(addr: u64) -> Result<(), MapError> {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::NotPageAligned(addr));
    }
    let index = addr
        .checked_sub(SHARED_BLOCK_BASE)
        .map(|offset| offset / PAGE_SIZE)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|&i| i < ENTRIES)
        .ok_or(MapError::OutsideSharedBlock(addr))?;
    let entry = &L3_SHARED.0[index];
    let normal = DESC_PAGE | addr | NORMAL_DATA;
    if entry.load(Ordering::Relaxed) == normal {
        return Ok(());
    }
    entry.store(0, Ordering::Relaxed);
    // SAFETY: barriers and a TLB invalidation by VA, all ASIDs, broadcast to the Inner Shareable
    // domain (every vCPU of this guest, wherever Xen runs it); no memory is accessed. `dsb
    // ishst` makes the invalid entry visible to walkers before the invalidation, `dsb ish` waits
    // for it to complete everywhere.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vaae1is, {page}",
            "dsb ish",
            page = in(reg) addr >> 12,
            options(nostack, preserves_flags),
        );
    }
    entry.store(normal, Ordering::Relaxed);
    // SAFETY: a barrier to make the new entry visible to walkers, and an `isb` so that no later
    // instruction of this vCPU was translated with the old one; no memory is accessed.
    unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
    Ok(())
}

/// An address a guest's `mmu-on` check translates, and the type it must be mapped as.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// What the address is, one word (`ioreq-page`, `virtio`, ...).
    pub what: &'static str,
    /// The address.
    pub addr: u64,
    /// The memory type it must have.
    pub want: MemoryType,
}

impl Probe {
    /// Expects `addr` to be RAM.
    pub const fn ram(what: &'static str, addr: u64) -> Self {
        Self {
            what,
            addr,
            want: MemoryType::NormalWriteBack,
        }
    }

    /// Expects `addr` to be MMIO.
    pub const fn device(what: &'static str, addr: u64) -> Self {
        Self {
            what,
            addr,
            want: MemoryType::Device,
        }
    }
}

/// Checks that this vCPU runs with the MMU and caches on and that every address of `extra`, and
/// the addresses every guest has, translate to what they must: reads SCTLR_EL1 and translates
/// each with `AT S1E1R`, prints one `mmu: ...` line per address, then one
/// `SCENARIO <name> PASS|FAIL <check> ...` line. Returns whether it passed.
///
/// The common addresses: the image (RAM), the vGIC distributor and the first redistributor
/// (Device), and with `boot`, the device tree blob and the first and last page of every
/// `/memory` bank (RAM).
///
/// With the MMU off (the guests before this module) SCTLR_EL1.M is 0 and `AT` reports no
/// attributes of the map: the check fails.
pub fn check(check: &str, boot: Option<&Boot>, extra: &[Probe]) -> bool {
    let sctlr = sctlr();
    let mut total = 0usize;
    let mut bad: Option<(Probe, Translation)> = None;
    let mut judge = |e: Probe| {
        let t = translate(e.addr);
        let ok = t.memory_type() == Some(e.want) && t.page() == e.addr & !(PAGE_SIZE - 1);
        println!(
            "mmu: {} {:#x}: {t}{}",
            e.what,
            e.addr,
            if ok { "" } else { " MISMATCH" }
        );
        total += 1;
        if !ok && bad.is_none() {
            bad = Some((e, t));
        }
    };
    let (image_start, _) = crate::start::image_bounds();
    judge(Probe::ram("image", image_start as u64));
    judge(Probe::device("gicd", GICD_BASE as u64));
    judge(Probe::device("gicr", GICR_BASE as u64));
    if let Some(boot) = boot {
        judge(Probe::ram("fdt", boot.fdt_addr() as u64));
        if let Ok(dt) = boot.device_tree() {
            for bank in dt.memory_regions() {
                let (base, size) = (bank.base as u64, bank.size as u64);
                judge(Probe::ram("memory", base));
                if size > PAGE_SIZE {
                    judge(Probe::ram(
                        "memory-end",
                        (base + size - 1) & !(PAGE_SIZE - 1),
                    ));
                }
            }
        }
    }
    for e in extra {
        judge(*e);
    }
    let on = enabled();
    let state = SctlrBits(sctlr);
    match bad {
        None if on => scenario::check(
            check,
            true,
            format_args!("{state}; {total} addresses: RAM Normal WB inner-shareable, MMIO Device"),
        ),
        None => scenario::check(check, false, format_args!("{state}: MMU or caches off")),
        Some((e, t)) => scenario::check(
            check,
            false,
            format_args!("{state}; {} {:#x} want {}: {t}", e.what, e.addr, e.want),
        ),
    }
}

/// Formats SCTLR_EL1 with its M, C and I bits spelled out (`-` for a clear bit).
struct SctlrBits(u64);

impl fmt::Display for SctlrBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |mask: u64, name: &'static str| if self.0 & mask != 0 { name } else { "-" };
        write!(
            f,
            "SCTLR_EL1={:#x} ({}{}{})",
            self.0,
            bit(SCTLR_M, "M"),
            bit(SCTLR_C, "C"),
            bit(SCTLR_I, "I")
        )
    }
}
