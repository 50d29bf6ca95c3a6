//! wakeup: the scheduler test guest. Its vCPUs pass a token around a ring with SGIs; each sleeps
//! in `wfi`, with no timer armed, until it holds the token. Every pass is therefore one wake-up of
//! a blocked vCPU by a vGIC interrupt (Xen: `vgic_inject_irq` -> `vcpu_kick` -> `vcpu_wake`), and
//! nothing else ever wakes a vCPU of this domain: a wake-up the scheduler loses stops the ring for
//! good, and the harness's timeout reports it. No rust-ioreq device is involved, so a stall here
//! is Xen's (or the machine's), whatever rust-ioreq does.
//!
//! Bootargs: `wakeup.passes=<n>` (default 20000) is the number of passes, counted over all vCPUs;
//! `wakeup.progress=<n>` prints a line every `n` passes (default 0: never), so that a person
//! watching the console can tell a slow ring from a stopped one.
//! Checks: `ring-start` (every vCPU listed under `/cpus` came up), `ring-passes` (all passes
//! done; reports their rate and the longest wait for one pass, which shows wake-ups that a
//! scheduler delayed rather than lost).

#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use guest_common::devicetree::DeviceTree;
use guest_common::gic::{self, IntId, Trigger};
use guest_common::smp::{self, MAX_CPUS};
use guest_common::timer::{self, Deadline};
use guest_common::{entry, println, scenario, Boot};

entry!(main);

/// The SGI that hands the token over.
const TOKEN_SGI: IntId = IntId::from_raw(1);
/// Passes when the bootargs do not say.
const DEFAULT_PASSES: u32 = 20_000;
/// Time the secondary vCPUs have to come up.
const START_MS: u64 = 5_000;

/// MPIDR affinity of each vCPU, from `/cpus`.
static MPIDRS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Number of vCPUs in the ring.
static RING: AtomicUsize = AtomicUsize::new(0);
/// Passes to make in total.
static TARGET: AtomicU32 = AtomicU32::new(DEFAULT_PASSES);
/// Passes between two progress lines; 0 = none.
static PROGRESS: AtomicU32 = AtomicU32::new(0);
/// Set by each secondary vCPU once its GIC CPU interface takes the SGI.
static READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

// The token's state. Only the vCPU holding the token writes these (the hand-over is a release
// store of TOKEN, read with acquire), so no read-modify-write atomics are needed: with the MMU
// off the exclusive monitor cannot be relied on.
/// Index of the vCPU that holds the token.
static TOKEN: AtomicUsize = AtomicUsize::new(0);
/// Passes made so far.
static PASSES: AtomicU32 = AtomicU32::new(0);
/// Counter value when the token was last handed over.
static LAST_PASS: AtomicU64 = AtomicU64::new(0);
/// Longest time between two hand-overs, in counter ticks, and the vCPU that was waited for.
static MAX_GAP: AtomicU64 = AtomicU64::new(0);
static MAX_GAP_VCPU: AtomicUsize = AtomicUsize::new(0);
/// Counter value of the first and the last pass.
static FIRST_AT: AtomicU64 = AtomicU64::new(0);
static DONE_AT: AtomicU64 = AtomicU64::new(0);
/// Set by the vCPU that made the last pass; every vCPU then leaves the ring.
static FINISHED: AtomicBool = AtomicBool::new(false);

fn main(boot: &Boot) {
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => {
            scenario::check("ring-start", false, format_args!("device tree: {e}"));
            scenario::end();
            return;
        }
    };
    let bootargs = dt.bootargs().unwrap_or("");
    let passes = arg(bootargs, "wakeup.passes=")
        .filter(|&p| p > 0)
        .unwrap_or(DEFAULT_PASSES);
    TARGET.store(passes, Ordering::Relaxed);
    PROGRESS.store(
        arg(bootargs, "wakeup.progress=").unwrap_or(0),
        Ordering::Relaxed,
    );
    let n = read_cpus(&dt);
    RING.store(n, Ordering::Relaxed);
    if !(2..=MAX_CPUS).contains(&n) {
        let found = if n > MAX_CPUS { "more than" } else { "only" };
        scenario::check(
            "ring-start",
            false,
            format_args!(
                "{found} {} vCPU(s) under /cpus: the ring needs 2 to {MAX_CPUS}",
                n.min(MAX_CPUS)
            ),
        );
        scenario::end();
        return;
    }
    if let Err(e) = gic::init_distributor()
        .and_then(|()| gic::init_cpu())
        .and_then(|()| gic::enable(TOKEN_SGI, Trigger::Edge))
    {
        scenario::check("ring-start", false, format_args!("GIC: {e}"));
        scenario::end();
        return;
    }
    // Timer IRQs would wake vCPUs for reasons other than the token; none is ever armed.
    gic::disable(timer::VIRTUAL_TIMER);

    for i in 1..n {
        let mpidr = MPIDRS[i].load(Ordering::Relaxed);
        if let Err(e) = smp::start_cpu(i, mpidr, secondary, i) {
            scenario::check(
                "ring-start",
                false,
                format_args!("PSCI CPU_ON of vCPU {i} (MPIDR {mpidr:#x}): {e}"),
            );
            scenario::end();
            return;
        }
    }
    let deadline = Deadline::after_ms(START_MS);
    while !(1..n).all(|i| READY[i].load(Ordering::Acquire)) && !deadline.expired() {
        core::hint::spin_loop();
    }
    let up = 1 + (1..n).filter(|&i| READY[i].load(Ordering::Acquire)).count();
    if !scenario::check(
        "ring-start",
        up == n,
        format_args!("{up} of {n} vCPUs ready within {START_MS} ms, {passes} passes to make"),
    ) {
        scenario::end();
        return;
    }

    let start = timer::now();
    FIRST_AT.store(start, Ordering::Relaxed);
    LAST_PASS.store(start, Ordering::Relaxed);
    run_ring(0);
    report(n, passes);
    scenario::end();
}

/// Reads the number after `key` (which ends in `=`) from the bootargs.
fn arg(bootargs: &str, key: &str) -> Option<u32> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse::<u32>().ok())
}

/// Stores the MPIDR affinity of each `/cpus/cpu@N` node (at most [`MAX_CPUS`]) and returns how
/// many there are, or `MAX_CPUS + 1` when there are more.
fn read_cpus(dt: &DeviceTree) -> usize {
    let Some(cpus) = dt.root_child("cpus") else {
        return 0;
    };
    let mut n = 0;
    for cpu in cpus.children() {
        if cpu.name.split('@').next() != Some("cpu") {
            continue;
        }
        // `/cpus` has #size-cells = 0, so `reg` is the affinity.
        if let Some(region) = cpu.reg().and_then(|mut r| r.next()) {
            if n == MAX_CPUS {
                return MAX_CPUS + 1;
            }
            MPIDRS[n].store(region.starting_address as u64, Ordering::Relaxed);
            n += 1;
        }
    }
    n
}

/// Entry of vCPUs 1..n: set up the GIC CPU interface, say so, and take part in the ring.
fn secondary(me: usize) {
    if gic::init_cpu().is_err() || gic::enable(TOKEN_SGI, Trigger::Edge).is_err() {
        println!("wakeup: vCPU {me}: GIC set-up failed");
        return;
    }
    gic::disable(timer::VIRTUAL_TIMER);
    READY[me].store(true, Ordering::Release);
    run_ring(me);
}

/// Takes part in the ring until the last pass: waits for the token, counts the pass and hands
/// the token to the next vCPU.
fn run_ring(me: usize) {
    let n = RING.load(Ordering::Relaxed);
    let target = TARGET.load(Ordering::Relaxed);
    let progress = PROGRESS.load(Ordering::Relaxed);
    loop {
        while TOKEN.load(Ordering::Acquire) != me {
            if FINISHED.load(Ordering::Acquire) {
                return;
            }
            sleep_until_irq();
        }
        if FINISHED.load(Ordering::Acquire) {
            return;
        }
        let now = timer::now();
        let gap = now.saturating_sub(LAST_PASS.load(Ordering::Relaxed));
        if gap > MAX_GAP.load(Ordering::Relaxed) {
            MAX_GAP.store(gap, Ordering::Relaxed);
            MAX_GAP_VCPU.store(me, Ordering::Relaxed);
        }
        LAST_PASS.store(now, Ordering::Relaxed);
        let passes = PASSES.load(Ordering::Relaxed) + 1;
        PASSES.store(passes, Ordering::Relaxed);
        if progress != 0 && passes % progress == 0 {
            println!("wakeup: {passes} passes");
        }
        if passes >= target {
            DONE_AT.store(now, Ordering::Relaxed);
            FINISHED.store(true, Ordering::Release);
            for i in (0..n).filter(|&i| i != me) {
                send_sgi(MPIDRS[i].load(Ordering::Relaxed));
            }
            return;
        }
        let next = (me + 1) % n;
        TOKEN.store(next, Ordering::Release);
        send_sgi(MPIDRS[next].load(Ordering::Relaxed));
    }
}

/// Prints the `ring-passes` check.
fn report(n: usize, target: u32) {
    let passes = PASSES.load(Ordering::Relaxed);
    let elapsed_us = timer::ticks_to_us(
        DONE_AT
            .load(Ordering::Relaxed)
            .saturating_sub(FIRST_AT.load(Ordering::Relaxed)),
    );
    let per_pass_us = elapsed_us / u64::from(passes.max(1));
    scenario::check(
        "ring-passes",
        passes == target,
        format_args!(
            "{passes} of {target} passes around {n} vCPUs in {} ms ({per_pass_us} us each); \
             longest wait {} us, for vCPU {}",
            elapsed_us / 1000,
            timer::ticks_to_us(MAX_GAP.load(Ordering::Relaxed)),
            MAX_GAP_VCPU.load(Ordering::Relaxed)
        ),
    );
}

/// Sleeps until an interrupt is pending, then takes it: `wfi` wakes for a pending interrupt even
/// while PSTATE.I masks it, and unmasking lets guest-common's vector acknowledge and end it.
fn sleep_until_irq() {
    // SAFETY: `wfi` waits for an interrupt; the `daifclr`/`daifset` pair lets a pending IRQ be
    // taken through the vector table (which saves and restores every register it uses) and masks
    // IRQs again. Not `nomem`: the IRQ handler updates memory, and the token is read after this.
    unsafe {
        asm!(
            "wfi",
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
}

/// Sends [`TOKEN_SGI`] to the vCPU with MPIDR affinity `mpidr` (ICC_SGI1R_EL1, GICv3 §12.2.21:
/// TargetList 15:0 one bit per Aff0, Aff1 23:16, INTID 27:24, Aff2 39:32, Aff3 55:48).
fn send_sgi(mpidr: u64) {
    let aff0 = mpidr & 0xf;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    let value = (1u64 << aff0)
        | (aff1 << 16)
        | (u64::from(TOKEN_SGI.raw()) << 24)
        | (aff2 << 32)
        | (aff3 << 48);
    // SAFETY: the stores the receiver reads (the token) were made with release ordering before
    // this; the `dsb` makes them complete before the SGI is generated, as the GIC architecture
    // requires for system-register SGIs. Writing ICC_SGI1R_EL1 only raises an SGI (Xen emulates
    // it); no memory is touched.
    unsafe {
        asm!(
            "dsb ishst",
            "msr S3_0_C12_C11_5, {}",
            "isb",
            in(reg) value,
            options(nostack, preserves_flags)
        )
    };
}
