//! Device register accesses as single plain `ldr`/`str` instructions (base register, no offset,
//! no writeback), so that a hypervisor trapping them gets a syndrome with ISV = 1 it can decode
//! (Arm ARM D13.2.37 ESR_ELx ISS for data aborts: ISV is 0 for pair, writeback and SIMD forms).
//!
//! `read_volatile` would usually compile to the same instructions but is allowed to use any
//! addressing form; inline assembly pins the form down.
//!
//! Every MMIO region of a test guest is Device-nGnRE in its stage-1 map (`mmu.rs`): these
//! accesses are not cached, merged or made speculatively, and reach the device (Xen's emulation)
//! in program order. Device accesses are not ordered against Normal memory accesses, though: a
//! caller whose device must see RAM written before a register write needs a barrier between
//! them (`dmb`), as the backend's doorbell writes have.

use core::arch::asm;

/// Reads the 32-bit register at `addr`.
///
/// # Safety
/// `addr` must be 4-byte aligned and be a device register (or memory) of this guest that may be
/// read with a 32-bit load; the read may have device side effects.
pub unsafe fn read32(addr: usize) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees a 32-bit load from `addr` is allowed; the asm only loads.
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) value,
             options(nostack, preserves_flags, readonly));
    }
    value
}

/// Writes the 32-bit register at `addr`.
///
/// # Safety
/// `addr` must be 4-byte aligned and be a device register (or memory) of this guest that may be
/// written with a 32-bit store; the write may have device side effects.
pub unsafe fn write32(addr: usize, value: u32) {
    // SAFETY: the caller guarantees a 32-bit store to `addr` is allowed; the asm only stores.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value,
             options(nostack, preserves_flags));
    }
}

/// Reads the 64-bit register at `addr`.
///
/// # Safety
/// As for [`read32`], for an 8-byte aligned 64-bit register.
pub unsafe fn read64(addr: usize) -> u64 {
    let value: u64;
    // SAFETY: the caller guarantees a 64-bit load from `addr` is allowed; the asm only loads.
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) value,
             options(nostack, preserves_flags, readonly));
    }
    value
}

/// Writes the 64-bit register at `addr`.
///
/// # Safety
/// As for [`write32`], for an 8-byte aligned 64-bit register.
pub unsafe fn write64(addr: usize, value: u64) {
    // SAFETY: the caller guarantees a 64-bit store to `addr` is allowed; the asm only stores.
    unsafe {
        asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value,
             options(nostack, preserves_flags));
    }
}
