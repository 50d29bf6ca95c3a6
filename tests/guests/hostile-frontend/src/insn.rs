//! One A64 load, store or cache instruction per function, each made through guest-common's
//! expected-fault facility ([`try_access`]): the instruction either completes (its result is
//! returned) or takes a synchronous exception (returned as a [`Fault`]; the handler skips it).
//!
//! These are the forms a hostile frontend points at a device region: single registers of every
//! width (ISV = 1: Xen and rust-ioreq emulate them), and the forms for which the Arm ARM gives
//! no instruction syndrome (ISV = 0: pairs, pre- and post-index write-back, exclusives, SIMD
//! registers, DC ZVA), which Xen must decode itself or refuse (Arm ARM D13.2.37, ESR_ELx ISS
//! encoding for a data abort, field ISV).
//!
//! Every output register is `inout` with a known starting value, so a skipped instruction
//! leaves a defined result. Instructions that name a fixed register (the `.inst` encodings:
//! SIMD forms this softfloat target cannot assemble, and the `Rn == Rt` post-index load the
//! assembler refuses) take their base in x9.

use core::arch::asm;

use guest_common::exception::{try_access, Fault};

/// The result of one instruction.
pub type Outcome<T> = Result<T, Fault>;

/// What a base register holds after a write-back instruction, with the value loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBack<T> {
    /// The loaded value (or the value stored, for stores).
    pub value: T,
    /// The base register afterwards.
    pub base: usize,
}

/// Register contents loads start from, so that a load that writes only part of a register, or
/// none, is visible.
pub const POISON: u64 = 0xdead_beef_dead_beef;

macro_rules! load {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The load may reach a device; the caller accepts its side effects.
        pub unsafe fn $name(addr: usize) -> Outcome<u64> {
            // SAFETY: one load from `addr`, accepted by the caller; a fault skips it and leaves
            // the output at its starting value.
            unsafe {
                try_access(|| {
                    let mut v: u64 = POISON;
                    asm!($insn, a = in(reg) addr, v = inout(reg) v, options(nostack));
                    v
                })
            }
        }
    };
}

load!(
    /// `ldrb w`: zero-extends one byte into the whole register.
    ldrb,
    "ldrb {v:w}, [{a}]"
);
load!(
    /// `ldrh w`.
    ldrh,
    "ldrh {v:w}, [{a}]"
);
load!(
    /// `ldr w`.
    ldr_w,
    "ldr {v:w}, [{a}]"
);
load!(
    /// `ldr x`.
    ldr_x,
    "ldr {v}, [{a}]"
);
load!(
    /// `ldrsb w`: sign-extends to 32 bits, clears the upper half.
    ldrsb_w,
    "ldrsb {v:w}, [{a}]"
);
load!(
    /// `ldrsb x`: sign-extends to 64 bits.
    ldrsb_x,
    "ldrsb {v}, [{a}]"
);
load!(
    /// `ldrsh x`.
    ldrsh_x,
    "ldrsh {v}, [{a}]"
);
load!(
    /// `ldrsw x`.
    ldrsw_x,
    "ldrsw {v}, [{a}]"
);
load!(
    /// `ldar w`: load-acquire (ISV = 1, with the AR bit).
    ldar_w,
    "ldar {v:w}, [{a}]"
);
load!(
    /// `ldtr w`: unprivileged load (ISV = 1).
    ldtr_w,
    "ldtr {v:w}, [{a}]"
);
load!(
    /// `ldur w` with a zero offset: the unscaled form (ISV = 1).
    ldur_w,
    "ldur {v:w}, [{a}]"
);
load!(
    /// `ldxr w`: load-exclusive (ISV = 0).
    ldxr_w,
    "ldxr {v:w}, [{a}]"
);
load!(
    /// `ldaxr x`: load-acquire exclusive (ISV = 0).
    ldaxr_x,
    "ldaxr {v}, [{a}]"
);

macro_rules! store {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The store may reach a device; the caller accepts its side effects.
        pub unsafe fn $name(addr: usize, value: u64) -> Outcome<()> {
            // SAFETY: one store to `addr`, accepted by the caller; a fault skips it.
            unsafe {
                try_access(|| {
                    asm!($insn, a = in(reg) addr, v = in(reg) value, options(nostack));
                })
            }
        }
    };
}

store!(
    /// `strb w`: stores the low byte of a register whose other bits are whatever `value` has.
    strb,
    "strb {v:w}, [{a}]"
);
store!(
    /// `strh w`.
    strh,
    "strh {v:w}, [{a}]"
);
store!(
    /// `str w`.
    str_w,
    "str {v:w}, [{a}]"
);
store!(
    /// `str x`.
    str_x,
    "str {v}, [{a}]"
);
store!(
    /// `stlr w`: store-release (ISV = 1, with the AR bit).
    stlr_w,
    "stlr {v:w}, [{a}]"
);

/// `ldr xzr`: a load whose destination is the zero register (the value is discarded).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldr_xzr(addr: usize) -> Outcome<()> {
    // SAFETY: as for the loads above.
    unsafe { try_access(|| asm!("ldr xzr, [{a}]", a = in(reg) addr, options(nostack))) }
}

/// `str wzr`: stores zero from the zero register.
///
/// # Safety
/// As for [`str_w`].
pub unsafe fn str_wzr(addr: usize) -> Outcome<()> {
    // SAFETY: as for the stores above.
    unsafe { try_access(|| asm!("str wzr, [{a}]", a = in(reg) addr, options(nostack))) }
}

/// `stxr w`: store-exclusive (ISV = 0); returns the status register (0 = stored).
///
/// # Safety
/// As for [`str_w`].
pub unsafe fn stxr_w(addr: usize, value: u64) -> Outcome<u32> {
    // SAFETY: as for the stores above.
    unsafe {
        try_access(|| {
            let mut status: u32 = 0xffff_ffff;
            asm!("stxr {s:w}, {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value,
                 s = inout(reg) status, options(nostack));
            status
        })
    }
}

/// `ldp w, w` (ISV = 0).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldp_w(addr: usize) -> Outcome<(u64, u64)> {
    // SAFETY: as for the loads above (one pair load).
    unsafe {
        try_access(|| {
            let (mut a, mut b) = (POISON, POISON);
            asm!("ldp {x:w}, {y:w}, [{p}]", p = in(reg) addr, x = inout(reg) a,
                 y = inout(reg) b, options(nostack));
            (a, b)
        })
    }
}

/// `ldp x, x` (ISV = 0).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldp_x(addr: usize) -> Outcome<(u64, u64)> {
    // SAFETY: as for the loads above (one pair load).
    unsafe {
        try_access(|| {
            let (mut a, mut b) = (POISON, POISON);
            asm!("ldp {x}, {y}, [{p}]", p = in(reg) addr, x = inout(reg) a,
                 y = inout(reg) b, options(nostack));
            (a, b)
        })
    }
}

/// `stp w, w` (ISV = 0).
///
/// # Safety
/// As for [`str_w`].
pub unsafe fn stp_w(addr: usize, a: u64, b: u64) -> Outcome<()> {
    // SAFETY: as for the stores above (one pair store).
    unsafe {
        try_access(|| {
            asm!("stp {x:w}, {y:w}, [{p}]", p = in(reg) addr, x = in(reg) a, y = in(reg) b,
                 options(nostack));
        })
    }
}

/// `ldp x, x, [base], #16`: a pair with post-index write-back (ISV = 0).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldp_x_post(addr: usize) -> Outcome<WriteBack<(u64, u64)>> {
    // SAFETY: as for the loads above (one pair load).
    unsafe {
        try_access(|| {
            let (mut a, mut b, mut p) = (POISON, POISON, addr);
            asm!("ldp {x}, {y}, [{p}], #16", p = inout(reg) p, x = inout(reg) a,
                 y = inout(reg) b, options(nostack));
            WriteBack {
                value: (a, b),
                base: p,
            }
        })
    }
}

/// `stp x, x, [base, #-16]!`: a pair with pre-index write-back (ISV = 0); `addr` is the base
/// before the write-back, the store goes to `addr - 16`.
///
/// # Safety
/// As for [`str_w`].
pub unsafe fn stp_x_pre(addr: usize, a: u64, b: u64) -> Outcome<WriteBack<()>> {
    // SAFETY: as for the stores above (one pair store).
    unsafe {
        try_access(|| {
            let mut p = addr;
            asm!("stp {x}, {y}, [{p}, #-16]!", p = inout(reg) p, x = in(reg) a, y = in(reg) b,
                 options(nostack));
            WriteBack { value: (), base: p }
        })
    }
}

/// `ldr w, [base, #4]!`: pre-index write-back (ISV = 0; Xen's decoder knows only the
/// post-index form); `addr` is the base before, the load reads `addr + 4`.
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldr_w_pre(addr: usize) -> Outcome<WriteBack<u64>> {
    // SAFETY: as for the loads above.
    unsafe {
        try_access(|| {
            let (mut v, mut p) = (POISON, addr);
            asm!("ldr {v:w}, [{p}, #4]!", p = inout(reg) p, v = inout(reg) v, options(nostack));
            WriteBack { value: v, base: p }
        })
    }
}

/// `ldr w, [base], #4`: post-index write-back (ISV = 0, but Xen decodes this form).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldr_w_post(addr: usize) -> Outcome<WriteBack<u64>> {
    // SAFETY: as for the loads above.
    unsafe {
        try_access(|| {
            let (mut v, mut p) = (POISON, addr);
            asm!("ldr {v:w}, [{p}], #4", p = inout(reg) p, v = inout(reg) v, options(nostack));
            WriteBack { value: v, base: p }
        })
    }
}

/// `str w, [base], #-4`: post-index write-back with a negative immediate.
///
/// # Safety
/// As for [`str_w`].
pub unsafe fn str_w_post(addr: usize, value: u64) -> Outcome<WriteBack<()>> {
    // SAFETY: as for the stores above.
    unsafe {
        try_access(|| {
            let mut p = addr;
            asm!("str {v:w}, [{p}], #-4", p = inout(reg) p, v = in(reg) value, options(nostack));
            WriteBack { value: (), base: p }
        })
    }
}

/// `ldrsw x, [base], #4`: a post-index form Xen's decoder does not know (opc = 2).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldrsw_post(addr: usize) -> Outcome<WriteBack<u64>> {
    // SAFETY: as for the loads above.
    unsafe {
        try_access(|| {
            let (mut v, mut p) = (POISON, addr);
            asm!("ldrsw {v}, [{p}], #4", p = inout(reg) p, v = inout(reg) v, options(nostack));
            WriteBack { value: v, base: p }
        })
    }
}

/// `ldr x9, [x9], #8`: post-index with the base also the destination, which the Arm ARM makes
/// CONSTRAINED UNPREDICTABLE (encoded by hand: assemblers refuse it).
///
/// # Safety
/// As for [`ldr_w`].
pub unsafe fn ldr_post_rn_is_rt(addr: usize) -> Outcome<u64> {
    // SAFETY: as for the loads above; x9 is both base and destination.
    unsafe {
        try_access(|| {
            let mut x9 = addr;
            // LDR (immediate, post-index, 64-bit): 0xf8400400 | imm9 << 12 | Rn << 5 | Rt.
            asm!(".inst 0xf8408529", inout("x9") x9, options(nostack));
            x9 as u64
        })
    }
}

/// `dc zva`: zeroes the block of `DCZID_EL0` size holding `addr` (ISV = 0, not a cache
/// maintenance operation for the syndrome's CM bit).
///
/// # Safety
/// The block may reach a device or RAM; the caller accepts the side effects.
pub unsafe fn dc_zva(addr: usize) -> Outcome<()> {
    // SAFETY: one block store, accepted by the caller; a fault skips it.
    unsafe { try_access(|| asm!("dc zva, {a}", a = in(reg) addr, options(nostack))) }
}

/// Returns the `DC ZVA` block size in bytes (DCZID_EL0.BS), or `None` if it is prohibited.
pub fn zva_block() -> Option<usize> {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    (dczid & 0x10 == 0).then(|| 4usize << (dczid & 0xf))
}

/// Lets this vCPU execute FP/SIMD instructions at EL1 (CPACR_EL1.FPEN = 0b11). Nothing in
/// these guests uses FP/SIMD registers (softfloat target), so their contents are free.
pub fn enable_fp() {
    // SAFETY: CPACR_EL1 only controls traps of this vCPU's FP/SIMD and SVE instructions; Xen
    // saves and restores FP/SIMD state for every vCPU on a context switch.
    unsafe {
        asm!(
            "mrs {t}, cpacr_el1",
            "orr {t}, {t}, #(3 << 20)",
            "msr cpacr_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack)
        )
    };
}

macro_rules! simd {
    ($(#[$doc:meta])* $name:ident, $encoding:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// [`enable_fp`] must have run on this vCPU; the access may reach a device.
        pub unsafe fn $name(addr: usize) -> Outcome<()> {
            // SAFETY: one SIMD access through x9; v0 is not used by anything else in the
            // guest, so it needs no declaring (the target has no vector registers to name).
            unsafe { try_access(|| asm!($encoding, in("x9") addr, options(nostack))) }
        }
    };
}

simd!(
    /// `ldr q0, [x9]`: a 128-bit SIMD&FP load.
    ldr_q0,
    ".inst 0x3dc00120"
);
simd!(
    /// `str q0, [x9]`: a 128-bit SIMD&FP store.
    str_q0,
    ".inst 0x3d800120"
);
simd!(
    /// `ld1 {v0.16b}, [x9]`: a SIMD structure load.
    ld1_v0,
    ".inst 0x4c407120"
);
simd!(
    /// `ldr s0, [x9]`: a 32-bit SIMD&FP scalar load.
    ldr_s0,
    ".inst 0xbd400120"
);
