//! bench: the benchmark guest of `make bench` (`tests/bench/bench.toml`). In one boot it times,
//! with the virtual counter (CNTVCT_EL0 at CNTFRQ_EL0 Hz, Arm ARM D11.2), the operations a
//! rust-ioreq access is judged against and the accesses themselves, and prints their
//! percentiles and ratios:
//!
//! - `empty`: nothing between the two counter reads (the floor of one sample);
//! - `ram_load`: a load from a .bss page of its own (64 per sample);
//! - `hypercall`: the null hypercall, `HYPERVISOR_xen_version(XENVER_version)`;
//! - `in_xen_mmio`: a read of the vGIC's GICD_TYPER, emulated inside Xen (every ratio's base);
//! - `vpl011_mmio`: a read of the vpl011's UARTFR, emulated inside Xen (if the domain has one);
//! - `unclaimed_mmio`: a read in Xen's virtio-mmio window that no device claims: Xen injects a
//!   data abort, caught by guest-common's expected-fault accessor;
//! - on the fast-transport device (`bench.fast=`, docs/backend-abi.md "Version 2"), which the
//!   guest first brings up to DRIVER_OK with one empty 2-entry queue (`virtio.rs`):
//!   `transport_read` (DeviceID, answered in Xen), `isr_read` (InterruptStatus, answered in
//!   Xen; 0, as the device never uses a buffer), `ack_write` (InterruptACK of bit 0, which is
//!   not set: changes nothing), `notify_posted` (QueueNotify of the live, empty queue 0: posted,
//!   the backend finds nothing to do) and `config_read` (the first word of the virtio-blk
//!   configuration space, a round trip);
//! - on the classic device (`bench.classic=`, `xen,virtio-classic`): `classic_read` (MagicValue)
//!   and `classic_write` (QueueSel = 0, its reset value), both round trips: the baseline;
//! - on the device whose backend polls (`bench.poll=`): `poll_read`, the configuration-space
//!   read of `config_read`, with Xen spinning for the answer instead of blocking the vCPU;
//! - on the classic device of a Linux backend (`bench.linux=`): `linux_read` (MagicValue), the
//!   round trip of `classic_read` answered by rust-ioreq-backend in Linux userspace;
//! - `evtchn_roundtrip` (`bench.evtchn=`): upstream Xen's own signalling primitive, a static
//!   event channel ping-pong with a peer domain running this guest in `bench.mode=evtchn-peer`,
//!   both waiting in `wfi` (`evtchn.rs`).
//!
//! Output, one line each: `BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n>`, then
//! `BENCH ratio <a>/<b>=<x.xx>`, then `SCENARIO <name> PASS|FAIL <check> ...` sanity checks
//! (each measurement answered as it must every time, the fast device still as it was set up;
//! RAM is faster than a hypercall, an in-Xen MMIO read faster than a round trip through the
//! backend; never a time threshold) and END. Bootargs: see `args.rs`. The guest never takes an
//! interrupt: the event-channel wait acknowledges its upcall with PSTATE.I set.

#![no_std]
#![no_main]

mod args;
mod dt;
mod evtchn;
mod ops;
mod stats;
mod virtio;

use core::sync::atomic::{AtomicBool, Ordering};

use guest_common::exception::EC_DATA_ABORT_SAME_EL;
use guest_common::mmu::{self, Probe};
use guest_common::{entry, gic, hypercall, println, scenario, timer, Boot};

use crate::args::{Args, Mode};
use crate::dt::Devices;
use crate::evtchn::{Channel, Wait};
use crate::ops::{ReadReg, Unclaimed, VirtioWindow, WriteReg};
use crate::stats::{Ns, Ratio, Summary, MAX_BENCHES};

entry!(main);

/// GICD_TYPER offset in the distributor (GICv3 §12.9.38): read-only.
const GICD_TYPER: usize = 0x004;
/// UARTFR offset in a PL011/SBSA UART: read-only flags.
const UARTFR: usize = 0x018;

/// The measurement every ratio is taken against.
const REFERENCE: &str = "in_xen_mmio";

/// Longest wait for one event-channel echo before the peer counts as gone (ms).
const EVTCHN_WAIT_MS: u64 = 5_000;
/// Longest wait for the peer's first echo, which includes its boot (ms).
const EVTCHN_FIRST_WAIT_MS: u64 = 60_000;

/// What one sample does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Empty,
    RamLoad,
    Hypercall,
    Read(ReadReg),
    Unclaimed(Unclaimed),
    Write(WriteReg),
    Evtchn(Channel),
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
/// Observation of an event-channel round trip whose echo did not come in time.
const EVTCHN_TIMED_OUT: u64 = 1 << 32;
/// Observation bit of an event-channel round trip whose send failed (errno in the low bits).
const EVTCHN_SEND_FAILED: u64 = 1 << 33;

/// Set once an echo did not come: the remaining round trips are not attempted (each would
/// wait for the deadline), and report a time-out at once.
static PEER_GONE: AtomicBool = AtomicBool::new(false);

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

    /// Returns the address the measurement accesses, 0 for none.
    fn address(&self) -> usize {
        match self.kind {
            Kind::Read(r) => r.addr(),
            Kind::Write(w) => w.addr(),
            Kind::Unclaimed(u) => u.addr(),
            Kind::Empty | Kind::RamLoad | Kind::Hypercall | Kind::Evtchn(_) => 0,
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

/// One event-channel round trip: send, then wait in `wfi` for the echo. The deadline timer is
/// armed before the clock starts (by `fill`).
#[inline(always)]
fn evtchn_round_trip(channel: &Channel) -> u64 {
    if PEER_GONE.load(Ordering::Relaxed) {
        return EVTCHN_TIMED_OUT;
    }
    let rc = channel.send();
    if rc != 0 {
        return EVTCHN_SEND_FAILED | (rc.unsigned_abs() & 0xffff_ffff);
    }
    match channel.wait(true) {
        Wait::Event => u64::from(channel.port()),
        Wait::TimedOut => {
            PEER_GONE.store(true, Ordering::Relaxed);
            EVTCHN_TIMED_OUT
        }
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
        Kind::Evtchn(channel) => {
            for sample in samples.iter_mut() {
                // Outside the timed region: the deadline that ends a wait for a peer that is gone.
                evtchn::arm(EVTCHN_WAIT_MS);
                let t0 = ops::counter();
                let value = evtchn_round_trip(&channel);
                let t1 = ops::counter();
                *sample = u32::try_from(t1.wrapping_sub(t0)).unwrap_or(u32::MAX);
                tally.see(value);
            }
            timer::disarm();
        }
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
    if args.mode == Mode::EvtchnPeer {
        evtchn_peer(&dt, &args);
        return;
    }
    let devices = Devices::find(&dt);
    let Some(roles) = Roles::find(&devices, &args) else {
        scenario::end();
        return;
    };
    check_mmu(boot, &devices);
    let fast_up = roles.fast.map(|dev| {
        let up = virtio::bring_up(dev);
        match up {
            Ok(()) => scenario::check(
                "fast-setup",
                true,
                format_args!(
                    "device at {:#x}: DRIVER_OK, queue {} live with 2 entries, nothing available",
                    dev.base(),
                    virtio::QUEUE
                ),
            ),
            Err(e) => scenario::check(
                "fast-setup",
                false,
                format_args!("device at {:#x}: {e}", dev.base()),
            ),
        }
    });
    // The Linux backend's first answer comes once its kernel has booted and its daemon runs
    // (seconds): waited for here, so that its boot does not load the host while the other rows
    // are measured.
    if let Some(magic) = roles
        .linux
        .and_then(|dev| dev.read_reg(virtio::MAGIC_VALUE))
    {
        let value = magic.read();
        scenario::check(
            "linux-online",
            value == virtio::MAGIC,
            format_args!("Linux backend's device answered MagicValue {value:#x}"),
        );
    }
    let channel = args.evtchn.and_then(|port| open_channel(&dt, port));
    let Some(rows) = stats::take_rows() else {
        scenario::check("samples", false, "sample store already taken");
        scenario::end();
        return;
    };
    let hz = timer::frequency();
    ops::ram_init();
    let mut benches = plan(&devices, &roles, fast_up == Some(true), channel);
    println!(
        "bench: counter at {hz} Hz; {} samples per measurement in {} round(s), after {} warm-up \
         iteration(s)",
        args.iters, args.rounds, args.warmup
    );
    for b in benches.iter().flatten() {
        println!("bench: {:<16} {} {:#x}", b.name, b.what, b.address());
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
    if let (Some(dev), Some(true)) = (roles.fast, fast_up) {
        let health = virtio::Health::of(dev);
        scenario::check(
            "fast-intact",
            health.intact(),
            format_args!(
                "after the fast-path rows: {health} (want 0xf, 1, 0x0, 0: as set up, no \
                 interrupt, no request)"
            ),
        );
    }
    if let Some(c) = channel {
        let (stray, empty) = evtchn::anomalies();
        scenario::check(
            "evtchn-upcalls",
            stray == 0 && empty == 0,
            format_args!(
                "port {}, upcall {}: {stray} stray interrupt(s), {empty} upcall(s) without the \
                 port pending",
                c.port(),
                c.upcall()
            ),
        );
    }
    scenario::end();
}

/// The virtio devices the bootargs name, each checked against the device tree.
#[derive(Clone, Copy, Debug)]
struct Roles {
    fast: Option<VirtioWindow>,
    classic: Option<VirtioWindow>,
    poll: Option<VirtioWindow>,
    linux: Option<VirtioWindow>,
}

impl Roles {
    /// Returns the devices `bench.fast=`, `bench.classic=`, `bench.poll=` and `bench.linux=` name; `None` (after
    /// a FAIL line) when one is not a `virtio,mmio` node of the device tree.
    fn find(devices: &Devices, args: &Args) -> Option<Self> {
        let mut ok = true;
        let mut window = |key: &str, base: Option<usize>| {
            let base = base?;
            match devices.virtio_at(base) {
                // SAFETY: a `virtio,mmio` node of this guest's device tree, named by the bootargs
                // for this role alone: only the benchmark drives it.
                Some(r) => Some(unsafe { VirtioWindow::new(r.base, r.size) }),
                None => {
                    ok = false;
                    scenario::check(
                        "devices",
                        false,
                        format_args!(
                            "bench.{key}={base:#x}: no virtio,mmio node there ({} in the device \
                             tree)",
                            devices.virtio_count()
                        ),
                    );
                    None
                }
            }
        };
        let roles = Roles {
            fast: window("fast", args.fast),
            classic: window("classic", args.classic),
            poll: window("poll", args.poll),
            linux: window("linux", args.linux),
        };
        if !ok {
            return None;
        }
        let named = [roles.fast, roles.classic, roles.poll, roles.linux]
            .iter()
            .flatten()
            .count();
        scenario::check(
            "devices",
            true,
            format_args!(
                "{} virtio,mmio node(s), {named} named: fast {}, classic {}, poll {}, linux {}",
                devices.virtio_count(),
                Base(roles.fast),
                Base(roles.classic),
                Base(roles.poll),
                Base(roles.linux)
            ),
        );
        Some(roles)
    }
}

/// Renders a device's base address, or "none".
struct Base(Option<VirtioWindow>);

impl core::fmt::Display for Base {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(w) => write!(f, "{:#x}", w.base()),
            None => f.write_str("none"),
        }
    }
}

/// Opens the event channel and waits for the peer's first echo (which includes the peer's boot);
/// `None` after a FAIL line when either fails.
fn open_channel(dt: &guest_common::DeviceTree, port: u32) -> Option<Channel> {
    let upcall = evtchn::upcall_from_dt(dt);
    let channel = match Channel::open(port, upcall) {
        Ok(c) => c,
        Err(e) => {
            scenario::check("evtchn-setup", false, format_args!("port {port}: {e}"));
            return None;
        }
    };
    evtchn::arm(EVTCHN_FIRST_WAIT_MS);
    let first = evtchn_round_trip(&channel);
    timer::disarm();
    scenario::check(
        "evtchn-setup",
        first == u64::from(port),
        format_args!(
            "port {port}, upcall {} ({}): first echo {}",
            channel.upcall(),
            if upcall.is_some() {
                "from the xen,xen node"
            } else {
                "no xen,xen node: Xen's default"
            },
            Observed(Kind::Evtchn(channel), first)
        ),
    )
    .then_some(channel)
}

/// The peer of `evtchn_roundtrip`: echoes every event of its port, forever.
fn evtchn_peer(dt: &guest_common::DeviceTree, args: &Args) {
    let Some(port) = args.evtchn else {
        scenario::check(
            "evtchn-peer",
            false,
            "bench.mode=evtchn-peer needs bench.evtchn=<port>",
        );
        scenario::end();
        return;
    };
    let upcall = evtchn::upcall_from_dt(dt);
    let channel = match Channel::open(port, upcall) {
        Ok(c) => c,
        Err(e) => {
            scenario::check("evtchn-peer", false, format_args!("port {port}: {e}"));
            scenario::end();
            return;
        }
    };
    // No deadline: nothing but the upcall may wake this vCPU.
    gic::disable(timer::VIRTUAL_TIMER);
    scenario::check(
        "evtchn-peer",
        true,
        format_args!(
            "port {port}, upcall {}{}: echoing",
            channel.upcall(),
            if upcall.is_some() {
                ""
            } else {
                " (no xen,xen node: Xen's default)"
            }
        ),
    );
    let mut failed_sends = 0u64;
    loop {
        if channel.wait(false) != Wait::Event {
            continue;
        }
        let rc = channel.send();
        if rc != 0 {
            failed_sends += 1;
            if failed_sends == 1 {
                scenario::check(
                    "evtchn-peer-send",
                    false,
                    format_args!("EVTCHNOP_send({port}) returned {rc}"),
                );
            }
        }
    }
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

/// Returns the measurements this guest's device tree and bootargs allow, in the order they run.
fn plan(
    devices: &Devices,
    roles: &Roles,
    fast_up: bool,
    channel: Option<Channel>,
) -> [Option<Bench>; MAX_BENCHES] {
    let mut benches: [Option<Bench>; MAX_BENCHES] = [const { None }; MAX_BENCHES];
    let mut add = |bench: Bench| {
        if let Some(free) = benches.iter_mut().find(|b| b.is_none()) {
            *free = Some(bench);
        } else {
            scenario::check("plan", false, format_args!("no room for {}", bench.name));
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
    match (roles.fast, fast_up) {
        (Some(dev), true) => {
            // Reads of DeviceID, InterruptStatus and the configuration space have no side
            // effects (virtio 1.2 §4.2.2); InterruptStatus stays 0 as the device never uses a
            // buffer. Writing InterruptACK with a bit that is not set acknowledges nothing;
            // QueueNotify of the live, empty queue finds nothing to do (virtio.rs).
            let reads = [
                (
                    "transport_read",
                    "fast device DeviceID read (answered in Xen)",
                    virtio::DEVICE_ID,
                    Expect::Exactly(u64::from(virtio::BLOCK_DEVICE_ID)),
                ),
                (
                    "isr_read",
                    "fast device InterruptStatus read (answered in Xen)",
                    virtio::INTERRUPT_STATUS,
                    Expect::Exactly(0),
                ),
            ];
            for (name, what, offset, expect) in reads {
                if let Some(reg) = dev.read_reg(offset) {
                    add(Bench::new(name, what, Kind::Read(reg), expect));
                }
            }
            let writes = [
                (
                    "ack_write",
                    "fast device InterruptACK write of bit 0, not set (answered in Xen)",
                    virtio::INTERRUPT_ACK,
                    1,
                ),
                (
                    "notify_posted",
                    "fast device QueueNotify write of live empty queue 0 (posted)",
                    virtio::QUEUE_NOTIFY,
                    virtio::QUEUE,
                ),
            ];
            for (name, what, offset, value) in writes {
                if let Some(reg) = dev.write_reg(offset, value) {
                    add(Bench::new(name, what, Kind::Write(reg), Expect::Exactly(0)));
                }
            }
            if let Some(reg) = dev.read_reg(virtio::CONFIG) {
                add(Bench::new(
                    "config_read",
                    "fast device config space read, capacity low word (round trip)",
                    Kind::Read(reg),
                    Expect::Stable,
                ));
            }
        }
        (Some(_), false) => println!("bench: the fast device did not come up: its rows skipped"),
        (None, _) => println!("bench: no bench.fast= device: the fast-path rows skipped"),
    }
    match roles.classic {
        Some(dev) => {
            if let Some(reg) = dev.read_reg(virtio::MAGIC_VALUE) {
                add(Bench::new(
                    "classic_read",
                    "classic device MagicValue read (round trip)",
                    Kind::Read(reg),
                    Expect::Exactly(u64::from(virtio::MAGIC)),
                ));
            }
            // QueueSel = 0, its reset value, any number of times only selects queue 0 for later
            // queue register accesses, which this guest never makes on this device.
            if let Some(reg) = dev.write_reg(virtio::QUEUE_SEL, 0) {
                add(Bench::new(
                    "classic_write",
                    "classic device QueueSel write of 0 (round trip)",
                    Kind::Write(reg),
                    Expect::Exactly(0),
                ));
            }
        }
        None => println!("bench: no bench.classic= device: classic_read/classic_write skipped"),
    }
    match roles.poll {
        Some(dev) => {
            if let Some(reg) = dev.read_reg(virtio::CONFIG) {
                add(Bench::new(
                    "poll_read",
                    "polled device config space read (round trip, Xen spins)",
                    Kind::Read(reg),
                    Expect::Stable,
                ));
            }
        }
        None => println!("bench: no bench.poll= device: poll_read skipped"),
    }
    match roles
        .linux
        .and_then(|dev| dev.read_reg(virtio::MAGIC_VALUE))
    {
        Some(reg) => add(Bench::new(
            "linux_read",
            "Linux backend's classic device MagicValue read (round trip to its daemon)",
            Kind::Read(reg),
            Expect::Exactly(u64::from(virtio::MAGIC)),
        )),
        None => println!("bench: no bench.linux= device: linux_read skipped"),
    }
    match channel {
        Some(c) => add(Bench::new(
            "evtchn_roundtrip",
            "static event channel ping-pong with a peer domU, both in wfi",
            Kind::Evtchn(c),
            Expect::Exactly(u64::from(c.port())),
        )),
        None => println!("bench: no event channel: evtchn_roundtrip skipped"),
    }
    benches
}

/// Takes every sample: first `args.warmup` unrecorded iterations of each measurement, then
/// `args.rounds` rounds in which each measurement in turn takes its share of `args.iters`
/// samples into its row.
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
/// read, then the comparisons the fast path is judged by.
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
    ratio("classic_read", "hypercall");
    ratio("classic_read", "unclaimed_mmio");
    ratio("classic_write", "classic_read");
    ratio("config_read", "classic_read");
    ratio("config_read", "evtchn_roundtrip");
    ratio("classic_read", "evtchn_roundtrip");
    ratio("poll_read", "config_read");
    ratio("classic_write", "notify_posted");
    ratio("classic_read", "transport_read");
    ratio("linux_read", "classic_read");
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
        "classic_read",
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
            (Kind::Evtchn(_), EVTCHN_TIMED_OUT) => f.write_str("no echo in time"),
            (Kind::Evtchn(_), v) if v & EVTCHN_SEND_FAILED != 0 => {
                write!(f, "EVTCHNOP_send error -{}", v & 0xffff_ffff)
            }
            (Kind::Evtchn(_), v) => write!(f, "the echo on port {v}"),
            (_, v) => write!(f, "{v:#x}"),
        }
    }
}
