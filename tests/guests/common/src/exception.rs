//! EL1 exception vectors (Arm ARM D1.10.2 vector table layout) and what the test guests do with
//! each exception: IRQs go to the GIC code, a synchronous exception is either an *expected fault*
//! (an access the guest makes on purpose to see how the hypervisor answers it) or a bug that is
//! reported as a panic.
//!
//! Expected faults: [`try_read_u32`]/[`try_write_u32`] (and the 8- and 64-bit variants) arm a
//! per-vCPU flag and make exactly one load or store. If that instruction takes a synchronous
//! exception, the handler records ESR_EL1 and FAR_EL1, advances ELR_EL1 by 4 past it and returns;
//! the caller gets the record instead of the value. Xen reports an access nothing handles to a
//! domU as a data abort (EC 0x25, "from the current EL"), xen/arch/arm/traps.c
//! `inject_dabt_exception`. The stage-1 map (`mmu.rs`) maps every guest-physical address below
//! 1 TiB, so such an access passes stage 1 and the abort is Xen's, with FAR_EL1 = the address
//! (VA = IPA); a translation fault of this guest's own map would have the same EC, but there is
//! none to take below 1 TiB.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::smp::{cpu_index, MAX_CPUS};

/// ESR_ELx.EC of a data abort taken without a change in exception level.
pub const EC_DATA_ABORT_SAME_EL: u64 = 0x25;

// Every vector saves the caller-saved registers (x0-x18), x29, x30, ELR_EL1 and SPSR_EL1 in a
// frame on the current stack, calls `__guest_trap(kind, &mut frame)` and restores them (ELR and
// SPSR too, so the handler can move ELR and an IRQ taken inside `wfi` returns correctly). The
// Rust handler preserves x19-x28 itself (AAPCS64). No FP/SIMD state exists in these guests.
//
// Frame layout (192 bytes): x0..x18 at 8*n, x29 at 152, x30 at 160, ELR at 168, SPSR at 176.
global_asm!(
    r#"
    .section .text.vectors, "ax"
    .balign 2048
    .global __guest_vectors
__guest_vectors:
    .irp    kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    sub     sp, sp, #192
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       __guest_trap_entry
    .endr

__guest_trap_entry:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x30, x2, [sp, #160]
    str     x3, [sp, #176]
    mov     x1, sp
    bl      __guest_trap
    ldp     x30, x2, [sp, #160]
    ldr     x3, [sp, #176]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x18, x29, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #192
    eret
"#
);

/// The registers the vector code saved, as laid out by `__guest_trap_entry`.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0 to x18.
    pub x: [u64; 19],
    /// Frame pointer.
    pub x29: u64,
    /// Link register.
    pub x30: u64,
    /// Where the exception returns to.
    pub elr: u64,
    /// PSTATE to return with.
    pub spsr: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 192);
const _: () = assert!(core::mem::offset_of!(TrapFrame, x29) == 152);
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 168);
const _: () = assert!(core::mem::offset_of!(TrapFrame, spsr) == 176);

/// Vector kinds (offset / 0x80): the exception type, then where it came from.
const KINDS: [&str; 4] = ["sync", "irq", "fiq", "serror"];
const ORIGINS: [&str; 4] = ["EL1t", "EL1h", "EL0 AArch64", "EL0 AArch32"];
/// Synchronous exception from EL1 with SP_EL1, the only kind a probe takes.
const SYNC_EL1H: u64 = 4;
/// IRQ from EL1 with SP_EL1: this guest's own code was interrupted.
const IRQ_EL1H: u64 = 5;

/// Per-vCPU state of the expected-fault facility.
struct Expect {
    armed: AtomicBool,
    faulted: AtomicBool,
    esr: AtomicU64,
    far: AtomicU64,
}

static EXPECT: [Expect; MAX_CPUS] = [const {
    Expect {
        armed: AtomicBool::new(false),
        faulted: AtomicBool::new(false),
        esr: AtomicU64::new(0),
        far: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// A synchronous exception an expected-fault access took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1 at the exception.
    pub esr: u64,
    /// FAR_EL1 at the exception.
    pub far: u64,
}

impl Fault {
    /// Returns the exception class, ESR_EL1[31:26].
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// Tells whether this is a data abort from the guest's own exception level.
    pub fn is_data_abort(&self) -> bool {
        self.ec() == EC_DATA_ABORT_SAME_EL
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR_EL1={:#x} (EC {:#x}) FAR_EL1={:#x}",
            self.esr,
            self.ec(),
            self.far
        )
    }
}

/// Arms the expected-fault flag of this vCPU and returns its record.
fn arm() -> &'static Expect {
    let e = &EXPECT[cpu_index()];
    e.faulted.store(false, Ordering::Relaxed);
    e.armed.store(true, Ordering::Relaxed);
    e
}

/// Disarms the flag and turns the record into the access's result.
fn disarm<T>(e: &Expect, value: T) -> Result<T, Fault> {
    e.armed.store(false, Ordering::Relaxed);
    if e.faulted.load(Ordering::Relaxed) {
        Err(Fault {
            esr: e.esr.load(Ordering::Relaxed),
            far: e.far.load(Ordering::Relaxed),
        })
    } else {
        Ok(value)
    }
}

/// Reads the 32-bit word at `addr` with one `ldr`, returning the synchronous exception it takes
/// instead of the value if it takes one.
///
/// # Safety
/// `addr` must be 4-byte aligned, and a read of it must not have side effects the caller does not
/// want (it may be a device register, RAM of this guest, or nothing at all).
pub unsafe fn try_read_u32(addr: usize) -> Result<u32, Fault> {
    let e = arm();
    let value: u32;
    // SAFETY: the caller accepts the load's side effects. If it faults, the sync handler sees the
    // armed flag and resumes at the next instruction, leaving `v` at the 0 it was given. Not
    // `nomem`/`readonly`: the handler writes the record, so the compiler must not cache it.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) 0u32 => value,
                         options(nostack, preserves_flags));
    }
    disarm(e, value)
}

/// Writes the 32-bit word at `addr` with one `str`, returning the synchronous exception it takes
/// if it takes one.
///
/// # Safety
/// `addr` must be 4-byte aligned, must not be memory Rust code uses, and the caller must accept the
/// write's side effects.
pub unsafe fn try_write_u32(addr: usize, value: u32) -> Result<(), Fault> {
    let e = arm();
    // SAFETY: the caller accepts the store; a fault is skipped by the sync handler (see above).
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value,
                         options(nostack, preserves_flags));
    }
    disarm(e, ())
}

/// Reads the byte at `addr` with one `ldrb`, returning the synchronous exception it takes
/// instead of the value if it takes one.
///
/// # Safety
/// A read of `addr` must not have side effects the caller does not want (as for
/// [`try_read_u32`]).
pub unsafe fn try_read_u8(addr: usize) -> Result<u8, Fault> {
    let e = arm();
    let value: u32;
    // SAFETY: as in `try_read_u32`: one load, skipped by the sync handler if it faults.
    unsafe {
        core::arch::asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) 0u32 => value,
                         options(nostack, preserves_flags));
    }
    // `ldrb` zero-extends one byte.
    disarm(e, value.to_le_bytes()[0])
}

/// Writes the byte at `addr` with one `strb`, returning the synchronous exception it takes if it
/// takes one.
///
/// # Safety
/// As for [`try_write_u32`].
pub unsafe fn try_write_u8(addr: usize, value: u8) -> Result<(), Fault> {
    let e = arm();
    // SAFETY: as in `try_write_u32`: one store, skipped by the sync handler if it faults.
    unsafe {
        core::arch::asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value),
                         options(nostack, preserves_flags));
    }
    disarm(e, ())
}

/// Reads the 64-bit word at `addr` with one `ldr`, returning the synchronous exception it takes
/// instead of the value if it takes one.
///
/// # Safety
/// `addr` must be 8-byte aligned; otherwise as for [`try_read_u32`].
pub unsafe fn try_read_u64(addr: usize) -> Result<u64, Fault> {
    let e = arm();
    let value: u64;
    // SAFETY: as in `try_read_u32`: one load, skipped by the sync handler if it faults.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) 0u64 => value,
                         options(nostack, preserves_flags));
    }
    disarm(e, value)
}

/// Writes the 64-bit word at `addr` with one `str`, returning the synchronous exception it takes
/// if it takes one.
///
/// # Safety
/// `addr` must be 8-byte aligned; otherwise as for [`try_write_u32`].
pub unsafe fn try_write_u64(addr: usize, value: u64) -> Result<(), Fault> {
    let e = arm();
    // SAFETY: as in `try_write_u32`: one store, skipped by the sync handler if it faults.
    unsafe {
        core::arch::asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value,
                         options(nostack, preserves_flags));
    }
    disarm(e, ())
}

/// Runs `access`, which makes exactly one memory access that may take a synchronous
/// exception, and returns the exception it took instead of `access`'s result if it took one:
/// the generic form of [`try_read_u32`] and friends, for the instructions those do not cover
/// (pairs, write-back forms, exclusives, cache operations, SIMD registers).
///
/// As for the fixed accessors, the handler resumes 4 bytes past the faulting instruction, so
/// the instruction must be a 4-byte A64 instruction inside an `asm!` block of `access` whose
/// outputs hold defined values should it be skipped (`inout` with a known initial value), and
/// nothing else in `access` may fault.
///
/// # Safety
/// `access` must be as described above, and the caller must accept the access's side effects
/// (it may reach a device, this guest's RAM or nothing at all).
pub unsafe fn try_access<R>(access: impl FnOnce() -> R) -> Result<R, Fault> {
    let e = arm();
    let value = access();
    disarm(e, value)
}

/// Handles every exception taken to EL1: called by the vector code with the vector's kind and
/// the saved registers.
#[no_mangle]
extern "C" fn __guest_trap(kind: u64, frame: &mut TrapFrame) {
    match kind {
        IRQ_EL1H => crate::gic::handle_irq(),
        SYNC_EL1H => {
            let (esr, far) = syndrome();
            let e = &EXPECT[cpu_index()];
            if e.armed.load(Ordering::Relaxed) {
                e.esr.store(esr, Ordering::Relaxed);
                e.far.store(far, Ordering::Relaxed);
                e.faulted.store(true, Ordering::Relaxed);
                e.armed.store(false, Ordering::Relaxed);
                // Skip the one (4-byte) load or store that faulted.
                frame.elr += 4;
            } else {
                unexpected(kind, esr, frame.elr, far);
            }
        }
        _ => {
            let (esr, far) = syndrome();
            unexpected(kind, esr, frame.elr, far);
        }
    }
}

/// Reads ESR_EL1 and FAR_EL1.
fn syndrome() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading ESR_EL1 and FAR_EL1 has no side effects and touches no memory.
    unsafe {
        core::arch::asm!("mrs {e}, esr_el1", "mrs {f}, far_el1", e = out(reg) esr, f = out(reg) far,
                         options(nomem, nostack, preserves_flags));
    }
    (esr, far)
}

/// Reports an exception nobody expected as a panic (a FAIL line, END, and a crash shutdown).
fn unexpected(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let kind = usize::try_from(kind).unwrap_or(0) % 16;
    panic!(
        "unexpected {} exception from {}: ESR_EL1={esr:#x} ELR_EL1={elr:#x} FAR_EL1={far:#x}",
        KINDS[kind % 4],
        ORIGINS[kind / 4]
    );
}
