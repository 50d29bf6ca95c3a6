//! Time for the test guests: the virtual counter (CNTVCT_EL0 at CNTFRQ_EL0 Hz) for deadlines, and
//! the EL1 virtual timer (CNTV_CVAL_EL0/CNTV_CTL_EL0, Arm ARM D11.2.4) to wake a `wfi` when a
//! deadline passes. Xen gives a domU the virtual timer as PPI 27 (`GUEST_TIMER_VIRT_PPI`,
//! public/arch-arm.h).

use core::arch::asm;

use crate::gic::IntId;

/// The virtual timer's interrupt in a Xen guest (PPI 27).
pub const VIRTUAL_TIMER: IntId = IntId::ppi(27 - 16);

/// Returns the virtual counter; the `isb` keeps the read from being taken early.
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; EL1 may always read it.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack, preserves_flags))
    };
    t
}

/// Returns the counter frequency in Hz (CNTFRQ_EL0, set by firmware/Xen).
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags)) };
    // A zero frequency would make every deadline "now"; 62.5 MHz is what QEMU's virt machine uses.
    if f == 0 {
        62_500_000
    } else {
        f
    }
}

/// Converts counter ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / frequency()
}

/// A point in virtual-counter time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(u64);

impl Deadline {
    /// Returns the deadline `ms` milliseconds from now.
    pub fn after_ms(ms: u64) -> Self {
        let ticks = frequency().saturating_mul(ms) / 1000;
        Deadline(now().saturating_add(ticks))
    }

    /// Tells whether the deadline has passed.
    pub fn expired(&self) -> bool {
        now() >= self.0
    }

    /// Returns the counter value of the deadline.
    pub fn ticks(&self) -> u64 {
        self.0
    }
}

/// Makes the virtual timer raise [`VIRTUAL_TIMER`] at `deadline` (on this vCPU).
pub fn arm(deadline: Deadline) {
    // SAFETY: CNTV_CVAL_EL0 and CNTV_CTL_EL0 only configure this vCPU's virtual timer (ENABLE = 1,
    // IMASK = 0); no memory is touched.
    unsafe {
        asm!(
            "msr cntv_cval_el0, {cval}",
            "msr cntv_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) deadline.0,
            ctl = in(reg) 1u64,
            options(nomem, nostack, preserves_flags),
        );
    }
}

/// CNTV_CTL_EL0 bits (Arm ARM D13.8.x): ENABLE, IMASK, ISTATUS (the condition is met).
const CTL_ENABLE: u64 = 1 << 0;
const CTL_ISTATUS: u64 = 1 << 2;

/// Handles the virtual timer's interrupt; returns whether the timer really expired.
///
/// Xen 4.17 injects the virtual timer PPI into whichever vCPU is current when the physical PPI
/// reaches it (xen/arch/arm/time.c `vtimer_interrupt`), and sets IMASK in that vCPU's CNTV_CTL.
/// After a context switch that can be a vCPU whose timer is not due: it gets a spurious
/// interrupt and a masked timer that would never fire. So: if the condition is met (ISTATUS),
/// the deadline passed and the timer is stopped; if not, the interrupt was spurious or stale,
/// and an armed timer is unmasked again (CVAL is unchanged).
pub(crate) fn on_irq() -> bool {
    let ctl: u64;
    // SAFETY: reading CNTV_CTL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack, preserves_flags)) };
    if ctl & CTL_ISTATUS != 0 {
        disarm();
        true
    } else {
        if ctl & CTL_ENABLE != 0 {
            // SAFETY: ENABLE = 1, IMASK = 0 re-arms this vCPU's timer at its unchanged CVAL.
            unsafe {
                asm!("msr cntv_ctl_el0, {}", "isb", in(reg) CTL_ENABLE,
                     options(nomem, nostack, preserves_flags));
            }
        }
        false
    }
}

/// Stops the virtual timer (ENABLE = 0), which also drops its interrupt.
pub fn disarm() {
    // SAFETY: writing 0 to CNTV_CTL_EL0 disables this vCPU's virtual timer; no memory is touched.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}
