//! The frontend's second vCPU: started once with PSCI `CPU_ON` at boot (when the device tree lists
//! a second vCPU), it sets up its GIC CPU interface, reports, and then runs work the boot vCPU
//! posts to it, until told to stop (PSCI `CPU_OFF`).
//!
//! Starting it before any device is touched checks the SMP machinery on its own, whatever Xen
//! does with the devices. The hand-over uses a posted/done pair of counters with release/acquire
//! ordering (`stlr`/`ldar`, which need no exclusive monitor).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use guest_common::timer::Deadline;
use guest_common::{gic, mmu, scenario, smp};

use crate::dt::{List, MAX_CPUS};

/// Time vCPU 1 has to come up and report ready.
const START_MS: u64 = 5_000;

static READY: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
/// Work items posted by the boot vCPU / finished by vCPU 1.
static POSTED: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
/// The posted work, a `fn()` as an address.
static WORK: AtomicUsize = AtomicUsize::new(0);

/// Starts vCPU 1 if `cpus` lists one and waits until it is ready; reports `cpu1-start`. Returns
/// whether vCPU 1 is ready for work.
pub fn start(cpus: &List<u64, MAX_CPUS>) -> bool {
    let Some(mpidr) = cpus.iter().nth(1) else {
        return false;
    };
    if let Err(e) = smp::start_cpu(1, mpidr, main, 0) {
        scenario::check(
            "cpu1-start",
            false,
            format_args!("PSCI CPU_ON of MPIDR {mpidr:#x}: {e}"),
        );
        return false;
    }
    let deadline = Deadline::after_ms(START_MS);
    while !READY.load(Ordering::Acquire) && !deadline.expired() {
        core::hint::spin_loop();
    }
    let ready = READY.load(Ordering::Acquire);
    scenario::check(
        "cpu1-start",
        ready,
        format_args!(
            "PSCI CPU_ON of MPIDR {mpidr:#x}: vCPU 1 {} within {START_MS} ms",
            if ready { "running" } else { "not running" }
        ),
    );
    ready
}

/// Posts `work` to vCPU 1 and returns a handle to wait for it with. Only the boot vCPU posts.
pub fn post(work: fn()) -> Posted {
    WORK.store(work as usize, Ordering::Relaxed);
    let n = POSTED.load(Ordering::Relaxed).wrapping_add(1);
    POSTED.store(n, Ordering::Release);
    Posted(n)
}

/// A work item posted to vCPU 1.
#[derive(Debug)]
pub struct Posted(u32);

impl Posted {
    /// Waits until vCPU 1 finished this work or `deadline` passes; returns whether it finished.
    pub fn wait(&self, deadline: Deadline) -> bool {
        while DONE.load(Ordering::Acquire) != self.0 {
            if deadline.expired() {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

/// Tells vCPU 1 to turn itself off once it is idle.
pub fn stop() {
    STOP.store(true, Ordering::Release);
}

/// vCPU 1's entry: MMU check, GIC CPU interface, then the work loop.
fn main(_arg: usize) {
    // A vCPU started by CPU_ON turns its MMU on itself (guest-common smp.rs); test added for the
    // MMU-on guests, fails on d2a38d4 (MMU off).
    mmu::check("mmu-on-cpu1", None, &[]);
    let gic = gic::init_cpu();
    scenario::check(
        "gic-cpu1",
        gic.is_ok(),
        format_args!(
            "vCPU 1 (MPIDR {:#x}) redistributor and ICC interface: {}",
            smp::mpidr(),
            match gic {
                Ok(()) => "enabled",
                Err(_) => "failed",
            }
        ),
    );
    READY.store(true, Ordering::Release);
    loop {
        let posted = POSTED.load(Ordering::Acquire);
        if posted != DONE.load(Ordering::Relaxed) {
            let work = WORK.load(Ordering::Relaxed);
            // SAFETY: `WORK` was stored by `post` from a `fn()` before `POSTED` was released, and
            // the acquire load above makes that store visible; function pointers and usize have
            // the same size and representation on aarch64.
            let work = unsafe { core::mem::transmute::<usize, fn()>(work) };
            work();
            DONE.store(posted, Ordering::Release);
        } else if STOP.load(Ordering::Acquire) {
            return;
        }
        core::hint::spin_loop();
    }
}
