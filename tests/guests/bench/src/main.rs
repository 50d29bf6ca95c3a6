//! bench: the benchmark guest of `make bench` (`tests/bench/bench.toml`). In one boot it times,
//! with the virtual counter (CNTVCT_EL0 at CNTFRQ_EL0 Hz, Arm ARM D11.2), the operations a
//! rust-ioreq round trip is judged against, and prints their percentiles and ratios:
//!
//! - `empty`: nothing between the two counter reads (the floor of one sample);
//! - `ram_load`: a load from a .bss page of its own (64 per sample);
//! - `hypercall`: the null hypercall, `HYPERVISOR_xen_version(XENVER_version)`;
//! - `in_xen_mmio`: a read of the vGIC's GICD_TYPER, emulated inside Xen;
//! - `vpl011_mmio`: a read of the vpl011's UARTFR, emulated inside Xen (if the domain has one);
//! - `unclaimed_mmio`: a read in Xen's virtio-mmio window that no device claims: Xen injects a
//!   data abort, caught by guest-common's expected-fault accessor;
//! - `ioreq_read`: a rust-ioreq round trip to the backend, a read of the first virtio-mmio
//!   device's MagicValue (virtio 1.2 §4.2.2: read-only, no side effects);
//! - `ioreq_write`: a round trip with a write of 0 to its QueueSel (the value it has after reset;
//!   QueueSel only selects what later queue register accesses mean).
//!
//! Output, one line each: `BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n>`, then
//! `BENCH ratio <a>/<b>=<x.xx>`, then `SCENARIO <name> PASS|FAIL <check> ...` sanity checks
//! (each measurement answered as it must every time; RAM is faster than a hypercall, an in-Xen
//! MMIO read faster than a round trip through the backend; never a time threshold) and END.
//! Bootargs: see `args.rs`. The guest never enables interrupts.

#![no_std]
#![no_main]

mod args;
mod dt;
mod ops;
mod stats;

use guest_common::exception::EC_DATA_ABORT_SAME_EL;
use guest_common::mmu::{self, Probe};
use guest_common::{entry, gic, hypercall, println, scenario, timer, Boot};

use crate::args::Args;
use crate::dt::Devices;
use crate::ops::{ReadReg, Unclaimed, WriteReg};
use crate::stats::{Ns, Ratio, Summary, MAX_BENCHES};

entry!(main);

/// virtio-mmio MagicValue register offset and value ("virt", virtio 1.2 §4.2.2).
const VIRTIO_MAGIC_VALUE: usize = 0x000;
const VIRTIO_MAGIC: u32 = 0x7472_6976;
/// virtio-mmio QueueSel register offset.
const VIRTIO_QUEUE_SEL: usize = 0x030;
/// GICD_TYPER offset in the distributor (GICv3 §12.9.38): read-only.
const GICD_TYPER: usize = 0x004;
/// UARTFR offset in a PL011/SBSA UART: read-only flags.
const UARTFR: usize = 0x018;

/// The measurement every ratio is taken against.
const REFERENCE: &str = "in_xen_mmio";

/// What one sample does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Empty,
    RamLoad,
    Hypercall,
    Read(ReadReg),
    Unclaimed(Unclaimed),
    Write(WriteReg),
}

/// What every operation of a measurement must return.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This value, every time.
    Exactly(u64),
    /// The same value every time.
    Stable,
    /// Anything (only the completion matters).
    Any,
}

/// Observation of an unclaimed read: a data abort from the same EL at the address.
const UNCLAIMED_OK: u64 = 1;
/// Observation of an unclaimed read that took another fault.
const UNCLAIMED_OTHER_FAULT: u64 = 2;
/// Observation bit of an unclaimed read that returned a value (in the low 32 bits).
const UNCLAIMED_VALUE: u64 = 1 << 32;

/// Counts what a measurement's operations returned, against its `Expect`.
#[derive(Clone, Copy, Debug)]
struct Tally {
    expect: Expect,
    seen: u64,
    first: Option<u64>,
    bad: u64,
    first_bad: Option<u64>,
}

impl Tally {
    const fn new(expect: Expect) -> Self {
        Tally {
            expect,
            seen: 0,
            first: None,
            bad: 0,
            first_bad: None,
        }
    }

    fn see(&mut self, value: u64) {
        self.seen += 1;
        let ok = match self.expect {
            Expect::Exactly(want) => value == want,
            Expect::Stable => self.first.is_none_or(|first| first == value),
            Expect::Any => true,
        };
        self.first = self.first.or(Some(value));
        if !ok {
            self.bad += 1;
            self.first_bad = self.first_bad.or(Some(value));
        }
    }
}

/// One measurement.
#[derive(Debug)]
struct Bench {
    name: &'static str,
    /// What is measured, for the log.
    what: &'static str,
    kind: Kind,
    /// Operations per sample.
    batch: u32,
    tally: Tally,
    summary: Option<Summary>,
}

impl Bench {
    fn new(name: &'static str, what: &'static str, kind: Kind, expect: Expect) -> Self {
        let batch = match kind {
            Kind::RamLoad => ops::RAM_LOADS_PER_SAMPLE,
            _ => 1,
        };
        Bench {
            name,
            what,
            kind,
            batch,
            tally: Tally::new(expect),
            summary: None,
        }
    }
}

/// Times `op` once per entry of `samples` (ticks), feeding what it returns to `tally` outside
/// the timed region.
#[inline(always)]
fn time(samples: &mut [u32], tally: &mut Tally, mut op: impl FnMut() -> u64) {
    for sample in samples.iter_mut() {
        let t0 = ops::counter();
        let value = op();
        let t1 = ops::counter();
        *sample = u32::try_from(t1.wrapping_sub(t0)).unwrap_or(u32::MAX);
        tally.see(value);
    }
}

/// Takes one sample of `kind` per entry of `samples`. Each arm is its own loop, so that only the
/// operation itself sits between the counter reads.
fn fill(kind: Kind, samples: &mut [u32], tally: &mut Tally) {
    match kind {
        Kind::Empty => time(samples, tally, || 0),
        Kind::RamLoad => time(samples, tally, || u64::from(ops::ram_load_batch())),
        Kind::Hypercall => time(samples, tally, || hypercall::xen_version().cast_unsigned()),
        Kind::Read(reg) => time(samples, tally, || u64::from(reg.read())),
        Kind::Unclaimed(target) => time(samples, tally, || match target.read() {
            Err(f) if f.ec() == EC_DATA_ABORT_SAME_EL && f.far == target.addr() as u64 => {
                UNCLAIMED_OK
            }
            Err(_) => UNCLAIMED_OTHER_FAULT,
            Ok(v) => UNCLAIMED_VALUE | u64::from(v),
        }),
        Kind::Write(reg) => time(samples, tally, || {
            reg.write();
            0
        }),
    }
}

fn main(boot: &Boot) {
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => {
            scenario::check("fdt", false, e);
            scenario::end();
            return;
        }
    };
    let args = Args::parse(dt.bootargs().unwrap_or(""));
    if let Some(word) = args.bad {
        scenario::check(
            "bootargs",
            false,
            format_args!("{word}: unknown or out of range (see tests/guests/bench/src/args.rs)"),
        );
    }
    let devices = Devices::find(&dt);
    let device = devices.first_virtio();
    scenario::check(
        "virtio-device",
        device.is_some(),
        format_args!(
            "{} virtio,mmio node(s){}",
            devices.virtio_count(),
            match device {
                Some(_) => "",
                None => ": no IOREQ round trip to measure",
            }
        ),
    );
    check_mmu(boot, &devices);
    let Some(rows) = stats::take_rows() else {
        scenario::check("samples", false, "sample store already taken");
        scenario::end();
        return;
    };
    let hz = timer::frequency();
    ops::ram_init();
    let mut benches = plan(&devices);
    println!(
        "bench: counter at {hz} Hz; {} samples per measurement in {} round(s), after {} warm-up \
         iteration(s)",
        args.iters, args.rounds, args.warmup
    );
    for b in benches.iter().flatten() {
        let at = match b.kind {
            Kind::Read(r) => r.addr(),
            Kind::Write(w) => w.addr(),
            Kind::Unclaimed(u) => u.addr(),
            Kind::Empty | Kind::RamLoad | Kind::Hypercall => 0,
        };
        println!("bench: {:<15} {} {:#x}", b.name, b.what, at);
    }

    sample(&mut benches, rows, &args);
    for (b, row) in benches.iter_mut().zip(rows.iter_mut()) {
        let Some(b) = b else { continue };
        b.summary = Summary::of(&mut row[..args.iters], b.batch, hz);
        if let Some(s) = b.summary {
            println!(
                "BENCH {} median_ns={} p10_ns={} p90_ns={} iters={}",
                b.name,
                Ns(s.median_ps),
                Ns(s.p10_ps),
                Ns(s.p90_ps),
                args.iters
            );
        }
    }
    report_ratios(&benches);
    report_checks(&benches);
    scenario::end();
}

/// Checks that the MMU and caches are on (the numbers are those of a guest running cached, as on
/// real hardware) with `ram_load`'s page Normal Write-Back and every MMIO target Device. Test
/// added for the MMU-on guests; fails on d2a38d4 (MMU off).
fn check_mmu(boot: &Boot, devices: &Devices) {
    let mut expect = [Probe::ram("ram-load-page", ops::ram_page() as u64); 4];
    let mut n = 1;
    let targets = [
        ("virtio", devices.first_virtio().map(|r| r.base)),
        ("vpl011", devices.vpl011.map(|r| r.base)),
        ("unclaimed", devices.unclaimed()),
    ];
    for (what, addr) in targets {
        if let Some(addr) = addr {
            expect[n] = Probe::device(what, addr as u64);
            n += 1;
        }
    }
    mmu::check("mmu-on", Some(boot), &expect[..n]);
}

/// Returns the measurements this guest's device tree allows, in the order they run.
fn plan(devices: &Devices) -> [Option<Bench>; MAX_BENCHES] {
    let mut benches: [Option<Bench>; MAX_BENCHES] = [const { None }; MAX_BENCHES];
    let mut add = |bench: Bench| {
        if let Some(free) = benches.iter_mut().find(|b| b.is_none()) {
            *free = Some(bench);
        }
    };
    add(Bench::new(
        "empty",
        "two counter reads, nothing between",
        Kind::Empty,
        Expect::Exactly(0),
    ));
    add(Bench::new(
        "ram_load",
        "32-bit load from a .bss page, 64 per sample",
        Kind::RamLoad,
        Expect::Exactly(u64::from(ops::RAM_PATTERN)),
    ));
    add(Bench::new(
        "hypercall",
        "HYPERVISOR_xen_version(XENVER_version)",
        Kind::Hypercall,
        Expect::Stable,
    ));
    // SAFETY: GICD_TYPER of the distributor Xen's vGIC emulates at GICD_BASE for every domU
    // (public/arch-arm.h) is a read-only ID register.
    let typer = unsafe { ReadReg::new(gic::GICD_BASE + GICD_TYPER) };
    add(Bench::new(
        "in_xen_mmio",
        "vGIC GICD_TYPER read (emulated in Xen)",
        Kind::Read(typer),
        Expect::Stable,
    ));
    match devices.vpl011 {
        Some(uart) => {
            // SAFETY: UARTFR of the vpl011 the device tree describes is a read-only flag
            // register; reading it changes nothing.
            let fr = unsafe { ReadReg::new(uart.base + UARTFR) };
            add(Bench::new(
                "vpl011_mmio",
                "vpl011 UARTFR read (emulated in Xen)",
                Kind::Read(fr),
                Expect::Any,
            ));
        }
        None => println!("bench: no vpl011 in the device tree: vpl011_mmio skipped"),
    }
    match devices.unclaimed() {
        Some(addr) => {
            // SAFETY: `unclaimed()` returns a page-aligned address in Xen's virtio-mmio window
            // outside every device the device tree lists; the guest's RAM is elsewhere.
            let target = unsafe { Unclaimed::new(addr) };
            add(Bench::new(
                "unclaimed_mmio",
                "read nothing claims in the virtio window (abort injected, caught)",
                Kind::Unclaimed(target),
                Expect::Exactly(UNCLAIMED_OK),
            ));
        }
        None => {
            println!("bench: every page of the virtio window is claimed: unclaimed_mmio skipped")
        }
    }
    if let Some(dev) = devices.first_virtio() {
        // SAFETY: MagicValue of a virtio-mmio device (the first `virtio,mmio` node) is read-only
        // and its read has no side effects (virtio 1.2 §4.2.2).
        let magic = unsafe { ReadReg::new(dev.base + VIRTIO_MAGIC_VALUE) };
        add(Bench::new(
            "ioreq_read",
            "virtio-mmio MagicValue read (rust-ioreq round trip)",
            Kind::Read(magic),
            Expect::Exactly(u64::from(VIRTIO_MAGIC)),
        ));
        // SAFETY: QueueSel of that device; writing 0, its reset value, any number of times only
        // selects queue 0 for later queue register accesses, which this guest never makes.
        let sel = unsafe { WriteReg::new(dev.base + VIRTIO_QUEUE_SEL, 0) };
        add(Bench::new(
            "ioreq_write",
            "virtio-mmio QueueSel write of 0 (rust-ioreq round trip)",
            Kind::Write(sel),
            Expect::Exactly(0),
        ));
    }
    benches
}

/// Takes every sample: first `args.warmup` unrecorded iterations of each measurement (the
/// first IOREQ also waits for the backend to come online), then `args.rounds` rounds in which
/// each measurement in turn takes its share of `args.iters` samples into its row.
fn sample(benches: &mut [Option<Bench>], rows: &mut stats::Rows, args: &Args) {
    for (b, row) in benches.iter_mut().zip(rows.iter_mut()) {
        let Some(b) = b else { continue };
        let mut left = args.warmup;
        while left > 0 {
            let n = left.min(args.iters);
            fill(b.kind, &mut row[..n], &mut b.tally);
            left -= n;
        }
    }
    for round in 0..args.rounds {
        let from = args.iters * round / args.rounds;
        let to = args.iters * (round + 1) / args.rounds;
        for (b, row) in benches.iter_mut().zip(rows.iter_mut()) {
            if let Some(b) = b {
                fill(b.kind, &mut row[from..to], &mut b.tally);
            }
        }
    }
}

/// Returns the median (ps per operation) of the measurement `name`, if it ran.
fn median(benches: &[Option<Bench>], name: &str) -> Option<u64> {
    benches
        .iter()
        .flatten()
        .find(|b| b.name == name)
        .and_then(|b| b.summary)
        .map(|s| s.median_ps)
}

/// Prints `BENCH ratio <a>/<b>=<x.xx>` of medians: every measurement against the in-Xen MMIO
/// read, and the IOREQ read against the hypercall and the unclaimed access.
fn report_ratios(benches: &[Option<Bench>]) {
    let ratio = |a: &str, b: &str| {
        if let (Some(x), Some(y)) = (median(benches, a), median(benches, b)) {
            if let Some(r) = Ratio::new(x, y) {
                println!("BENCH ratio {a}/{b}={r}");
            }
        }
    };
    for b in benches.iter().flatten().filter(|b| b.name != REFERENCE) {
        ratio(b.name, REFERENCE);
    }
    ratio("ioreq_read", "hypercall");
    ratio("ioreq_read", "unclaimed_mmio");
    ratio("ioreq_write", "ioreq_read");
}

/// Prints the sanity checks: one per measurement that completed, and two orderings.
fn report_checks(benches: &[Option<Bench>]) {
    for b in benches.iter().flatten() {
        let Some(s) = b.summary else { continue };
        let t = &b.tally;
        let first = t.first.unwrap_or(0);
        let ok = t.bad == 0 && t.seen > 0 && (b.name == "empty" || s.median_ps > 0);
        match t.first_bad {
            None => scenario::check(
                b.name,
                ok,
                format_args!(
                    "{} operations, each returned {}; median {} ns",
                    t.seen,
                    Observed(b.kind, first),
                    Ns(s.median_ps)
                ),
            ),
            Some(bad) => scenario::check(
                b.name,
                false,
                format_args!(
                    "{} of {} operations returned something else, first {} (first of all {})",
                    t.bad,
                    t.seen,
                    Observed(b.kind, bad),
                    Observed(b.kind, first)
                ),
            ),
        };
    }
    let order = |check: &str, fast: &str, slow: &str, why: &str| {
        if let (Some(f), Some(s)) = (median(benches, fast), median(benches, slow)) {
            scenario::check(
                check,
                f < s,
                format_args!(
                    "{fast} median {} ns < {slow} median {} ns ({why})",
                    Ns(f),
                    Ns(s)
                ),
            );
        }
    };
    order(
        "order-ram-hypercall",
        "ram_load",
        "hypercall",
        "a load does not leave the guest",
    );
    order(
        "order-in-xen-ioreq",
        "in_xen_mmio",
        "ioreq_read",
        "the round trip traps into Xen too, then goes through the backend",
    );
}

/// Renders what an operation returned, per kind.
struct Observed(Kind, u64);

impl core::fmt::Display for Observed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.0, self.1) {
            (Kind::Empty, _) => f.write_str("nothing"),
            (Kind::Write(w), _) => write!(f, "after writing {:#x}", w.value()),
            (Kind::Hypercall, v) if v >> 63 == 0 => write!(f, "Xen {}.{}", v >> 16, v & 0xffff),
            (Kind::Unclaimed(_), UNCLAIMED_OK) => write!(
                f,
                "a data abort (EC {EC_DATA_ABORT_SAME_EL:#x}) with FAR = the address"
            ),
            (Kind::Unclaimed(_), UNCLAIMED_OTHER_FAULT) => f.write_str("another fault"),
            (Kind::Unclaimed(_), v) => write!(f, "the value {:#x} (no abort)", v & 0xffff_ffff),
            (_, v) => write!(f, "{v:#x}"),
        }
    }
}
