//! The Xen hypercalls the test guests use: console output, shutdown and the version query (Xen
//! public headers `arch-arm.h` "Hypercall Calling Convention", `xen.h` console_io, `sched.h`
//! SCHEDOP_shutdown, `version.h` XENVER_version).

use core::arch::asm;

/// `__HYPERVISOR_xen_version` (xen.h).
const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io` (xen.h).
const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_sched_op` (xen.h).
const HYPERVISOR_SCHED_OP: u64 = 29;
/// `CONSOLEIO_write` (xen.h).
const CONSOLEIO_WRITE: u64 = 0;
/// `XENVER_version` (version.h): returns `major << 16 | minor`, reads and writes no memory.
const XENVER_VERSION: u64 = 0;
/// `SCHEDOP_shutdown` (sched.h).
const SCHEDOP_SHUTDOWN: u64 = 2;

/// Why the domain shuts down (`SHUTDOWN_*` in sched.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: the domain exited normally.
    Poweroff = 0,
    /// `SHUTDOWN_crash`: the domain crashed.
    Crash = 3,
}

/// `struct sched_shutdown` (sched.h).
#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);

/// Issues hypercall `nr` with three arguments and returns Xen's result (x0).
///
/// # Safety
///
/// The arguments must be what hypercall `nr` expects; in particular every argument that is a
/// guest address must point to memory of this guest that is valid for what Xen does with it.
unsafe fn hypercall3(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: `hvc #0xEA1` traps to Xen, which may clobber x16 and the argument registers and
    // returns in x0 (all declared below); it may read memory the arguments point to, which the
    // caller vouches for, so the asm is not `nomem`. It does not touch the stack.
    unsafe {
        asm!(
            "hvc #0xEA1",
            inlateout("x0") a0 => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x16") nr => _,
            options(nostack),
        );
    }
    ret
}

/// Writes `bytes` to the Xen console (Xen prefixes each line with `(dN) `).
///
/// Returns Xen's result: 0 on success or a negative errno.
pub fn console_write(bytes: &[u8]) -> i64 {
    // Lengths are bounded by the caller's buffers; usize and u64 are the same width on aarch64.
    let len = bytes.len() as u64;
    // SAFETY: CONSOLEIO_write reads `len` bytes at the given (virtual) address, which Xen
    // translates through this guest's stage 1. `bytes` is a live slice in this guest's RAM,
    // mapped readable by the identity map (`mmu.rs`).
    unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE,
            len,
            bytes.as_ptr() as u64,
        )
    }
}

/// Returns Xen's version as `major << 16 | minor` (`XENVER_version`), or a negative errno.
///
/// The cheapest hypercall without side effects (xen/common/kernel.c `do_xen_version`): the
/// benchmark guest uses it as the null hypercall.
pub fn xen_version() -> i64 {
    // SAFETY: XENVER_version takes no guest buffer (the pointer argument is unused and 0) and
    // changes no state.
    unsafe { hypercall3(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0) }
}

/// Shuts this domain down for `reason` and never returns.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: SCHEDOP_shutdown reads one `struct sched_shutdown` at the given (virtual) address;
    // `arg` is such a struct on this guest's stack (identity-mapped RAM, `mmu.rs`) and outlives
    // the call.
    unsafe {
        hypercall3(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_SHUTDOWN,
            core::ptr::addr_of!(arg) as u64,
            0,
        );
    }
    // Xen deschedules a domain that shut down; should the call ever return, park the vCPU.
    loop {
        // SAFETY: `wfi` only waits for an interrupt; it touches no memory and no registers.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
