//! vCPU 1 as a worker: started once with PSCI `CPU_ON`, it runs the functions vCPU 0 posts to
//! it, one at a time, so that both vCPUs can hammer a device together. The hand-over is a
//! posted/done pair of counters with release/acquire ordering (no exclusives needed).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use guest_common::smp;
use guest_common::timer::Deadline;

/// Time vCPU 1 has to come up.
const START_MS: u64 = 5_000;

static READY: AtomicBool = AtomicBool::new(false);
static POSTED: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static WORK: AtomicUsize = AtomicUsize::new(0);

/// Starts vCPU 1 (MPIDR `mpidr`) and waits until it runs; returns whether it does.
pub fn start(mpidr: u64) -> bool {
    if smp::start_cpu(1, mpidr, main, 0).is_err() {
        return false;
    }
    let deadline = Deadline::after_ms(START_MS);
    while !READY.load(Ordering::Acquire) && !deadline.expired() {
        core::hint::spin_loop();
    }
    READY.load(Ordering::Acquire)
}

/// Posts `work` to vCPU 1; returns the number to [`wait`] for.
pub fn post(work: fn()) -> u32 {
    WORK.store(work as usize, Ordering::Relaxed);
    let n = POSTED.load(Ordering::Relaxed).wrapping_add(1);
    POSTED.store(n, Ordering::Release);
    n
}

/// Waits until vCPU 1 finished posted work `n`, or `deadline`; returns whether it did.
pub fn wait(n: u32, deadline: Deadline) -> bool {
    while DONE.load(Ordering::Acquire) != n {
        if deadline.expired() {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// vCPU 1's loop: run what is posted, forever.
fn main(_arg: usize) {
    READY.store(true, Ordering::Release);
    loop {
        let posted = POSTED.load(Ordering::Acquire);
        if posted != DONE.load(Ordering::Relaxed) {
            let work = WORK.load(Ordering::Relaxed);
            // SAFETY: `WORK` was stored by `post` from a `fn()` before `POSTED` was released,
            // and the acquire load above makes it visible; a function pointer and a usize have
            // the same representation on aarch64.
            let work = unsafe { core::mem::transmute::<usize, fn()>(work) };
            work();
            DONE.store(posted, Ordering::Release);
        }
        core::hint::spin_loop();
    }
}
