//! frontend: the virtio-mmio frontend test guest. Finds the `virtio,mmio` nodes Xen put in its
//! device tree, probes each, and drives virtio-blk and virtio-rng devices with the virtio-drivers
//! crate (virtio 1.2 §4.2 MMIO transport, §5.2 block, §5.4 entropy), one SCENARIO line per check.
//!
//! Modes (bootargs, see `args.rs`): the default starts the second vCPU if the device tree lists
//! one and runs every device test, the first disk's with block I/O from both vCPUs (then, with
//! `frontend.soak-ms`, more I/O for a while); `frontend.probe-unclaimed=<addr>` leaves the
//! devices alone and checks that an access to an address nothing claims takes a data abort;
//! `frontend.until-vanished-ms` does I/O on the first disk until its backend is destroyed.
//! `frontend.linger=1` keeps the guest alive after `END`, accessing its first device.
//!
//! Like every test guest it runs with the MMU and caches on (guest-common `mmu`), and checks it
//! (`mmu-on`, and `mmu-on-cpu1` on the second vCPU).

#![no_std]
#![no_main]

mod args;
mod blk;
mod cpu1;
mod dt;
mod hal;
mod probe;
mod report;
mod rng;

use guest_common::exception::{self, EC_DATA_ABORT_SAME_EL};
use guest_common::mmu::{self, Probe};
use guest_common::sync::BakeryLock;
use guest_common::timer::{self, Deadline};
use guest_common::{entry, gic, println, scenario, Boot};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::args::Args;
use crate::dt::{List, VirtioNode, MAX_DEVICES};

entry!(main);

/// Xen's virtio-mmio window for domUs (`GUEST_VIRTIO_MMIO_BASE`/`_SIZE`, public/arch-arm.h).
const VIRTIO_WINDOW_BASE: usize = 0x0200_0000;
const VIRTIO_WINDOW_SIZE: usize = 0x0010_0000;
/// Delay of the timer interrupt check.
const TIMER_TEST_MS: u64 = 2;

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
    if let Some(ms) = args.request_ms {
        blk::set_request_ms(ms);
    }
    if let Some(word) = args.unknown {
        scenario::check("bootargs", false, format_args!("unknown option {word}"));
    }
    if let Some(Err(text)) = args.sentinel {
        scenario::check(
            "bootargs",
            false,
            format_args!("frontend.sentinel={text} is not a hex address"),
        );
    }
    if let Some(word) = args.bad_value {
        scenario::check("bootargs", false, format_args!("{word}: bad value"));
    }
    let nodes = dt::virtio_nodes(&dt);
    let cpus = dt::cpus(&dt);
    println!(
        "frontend: {} vCPU(s), {} virtio,mmio node(s){}",
        cpus.len(),
        nodes.len(),
        if nodes.dropped > 0 {
            " (more than MAX_DEVICES: some ignored)"
        } else {
            ""
        }
    );
    for node in nodes.iter() {
        println!("frontend:   virtio,mmio {node}");
    }
    check_mmu(boot, &nodes, &args);

    let gic = gic::init_distributor().and_then(|()| gic::init_cpu());
    scenario::check(
        "gic-init",
        gic.is_ok(),
        format_args!(
            "GICv3 distributor {:#x}, redistributor from {:#x}: {}",
            gic::GICD_BASE,
            gic::GICR_BASE,
            match gic {
                Ok(()) => "enabled",
                Err(_) => "failed",
            }
        ),
    );
    match gic {
        Ok(()) => timer_irq(),
        Err(e) => println!("gic-init: {e}"),
    }

    match (args.probe_unclaimed, args.until_vanished_ms) {
        (Some(addr), _) => unclaimed(&nodes, addr),
        (None, Some(ms)) => until_vanished(&nodes, &args, ms),
        (None, None) => {
            // vCPU 1 first, before any device: the SMP machinery is checked on its own.
            let with_cpu1 = cpus.len() > 1 && cpu1::start(&cpus);
            if with_cpu1 {
                lock_contention();
            } else if args.smp_irq_rounds.is_some() {
                scenario::check(
                    "bootargs",
                    false,
                    "frontend.smp-irq-rounds needs a second vCPU",
                );
            }
            devices(&nodes, &args, with_cpu1);
            cpu1::stop();
        }
    }
    scenario::end();
    if args.linger {
        linger(&nodes);
    }
}

/// Vanish mode: probes the first node and does I/O on its disk until the backend disappears.
fn until_vanished(nodes: &List<VirtioNode, MAX_DEVICES>, args: &Args, ms: u64) {
    let Some(node) = nodes.iter().next() else {
        scenario::check("vanish", false, "no virtio,mmio node in the device tree");
        return;
    };
    let Some(transport) = probe::probe(&node) else {
        return;
    };
    if transport.device_type() != DeviceType::Block {
        scenario::check(
            "vanish",
            false,
            format_args!(
                "the first device is a {:?}, not a disk",
                transport.device_type()
            ),
        );
        return;
    }
    blk::until_vanished(&node, transport, args.seed, ms);
}

/// Never returns: reads the first device's MagicValue every millisecond, each read a request
/// to its backend (or, once the backend is gone, an access completed by Xen), until the domain
/// is destroyed.
fn linger(nodes: &List<VirtioNode, MAX_DEVICES>) -> ! {
    let base = nodes.iter().next().map(|n| n.base);
    println!(
        "frontend: lingering: reading MagicValue at {} every ms until destroyed",
        base.map_or(0, |b| b)
    );
    let mut reads: u64 = 0;
    loop {
        if let Some(base) = base {
            // SAFETY: `base` is the register window of a virtio-mmio device from the device
            // tree; MagicValue is read-only and reading it has no side effect; a fault is
            // caught.
            let _ = unsafe { exception::try_read_u32(base) };
            reads += 1;
            if reads.is_multiple_of(10_000) {
                println!("frontend: lingering: {reads} reads");
            }
        }
        sleep_ms(1);
    }
}

/// Sleeps in `wfi` for `ms` milliseconds (the virtual timer wakes the vCPU), leaving the pCPU to
/// other domains. Needs the GIC set up (`main` does it first).
pub fn sleep_ms(ms: u64) {
    let seen = gic::irq_count(timer::VIRTUAL_TIMER);
    gic::wait_for_irq(timer::VIRTUAL_TIMER, seen, Deadline::after_ms(ms));
}

/// Checks that the MMU and caches are on and that what this guest shares or traps is mapped as
/// it must be: the DMA pool (which the backend reads and writes through its window) Normal
/// Write-Back like the rest of RAM, every virtio-mmio window Device, and so is the address of
/// unclaimed mode. Test added for the MMU-on guests; fails on d2a38d4 (MMU off).
fn check_mmu(boot: &Boot, nodes: &List<VirtioNode, MAX_DEVICES>, args: &Args) {
    let mut expect = [Probe::ram("dma-pool", hal::pool_base() as u64); MAX_DEVICES + 2];
    let mut n = 1;
    for node in nodes.iter() {
        expect[n] = Probe::device("virtio", node.base as u64);
        n += 1;
    }
    if let Some(Ok(addr)) = args.probe_unclaimed {
        expect[n] = Probe::device("unclaimed", addr as u64);
        n += 1;
    }
    mmu::check("mmu-on", Some(boot), &expect[..n]);
}

/// Checks the IRQ path on its own: the virtual timer's PPI, taken through the vector table while
/// the vCPU sleeps in `wfi`.
fn timer_irq() {
    let seen = gic::irq_count(timer::VIRTUAL_TIMER);
    let start = timer::now();
    let arrived = gic::wait_for_irq(
        timer::VIRTUAL_TIMER,
        seen,
        Deadline::after_ms(TIMER_TEST_MS),
    );
    let micros = timer::ticks_to_us(timer::now().wrapping_sub(start));
    scenario::check(
        "gic-timer-irq",
        arrived,
        format_args!(
            "virtual timer (INTID {}) due in {TIMER_TEST_MS} ms: {} after {micros} us",
            timer::VIRTUAL_TIMER.raw(),
            if arrived { "taken as an IRQ" } else { "no IRQ" }
        ),
    );
}

/// A counter both vCPUs increment under a `BakeryLock`, with a plain read and write.
static COUNTER: BakeryLock<u64> = BakeryLock::new(0);
/// Increments per vCPU.
const LOCK_ROUNDS: u64 = 2_000;

fn count_under_lock() {
    for _ in 0..LOCK_ROUNDS {
        let mut c = COUNTER.lock();
        *c += 1;
    }
}

/// Checks the lock both vCPUs share the disk with: no increment may be lost under contention.
fn lock_contention() {
    let posted = cpu1::post(count_under_lock);
    count_under_lock();
    let finished = posted.wait(Deadline::after_ms(10_000));
    let total = *COUNTER.lock();
    scenario::check(
        "smp-lock",
        finished && total == 2 * LOCK_ROUNDS,
        format_args!(
            "two vCPUs x {LOCK_ROUNDS} increments under the bakery lock: {total}{}",
            if finished {
                ""
            } else {
                " (vCPU 1 did not finish)"
            }
        ),
    );
}

/// Default mode: probe every node, compare with `frontend.expect`, test each device.
fn devices(nodes: &List<VirtioNode, MAX_DEVICES>, args: &Args, with_cpu1: bool) {
    if nodes.is_empty() {
        // Say what the window does today, so the FAIL line explains itself.
        // SAFETY: the first word of Xen's virtio-mmio window; with no device there the read only
        // takes a data abort, which is caught.
        let what = match unsafe { exception::try_read_u32(VIRTIO_WINDOW_BASE) } {
            Ok(v) => FaultText::Value(v),
            Err(f) => FaultText::Fault(f),
        };
        scenario::check(
            "dt-devices",
            false,
            format_args!(
                "no virtio,mmio node in the device tree (a read of {VIRTIO_WINDOW_BASE:#x}: {what})"
            ),
        );
        return;
    }
    scenario::check(
        "dt-devices",
        nodes.dropped == 0,
        format_args!("{} virtio,mmio node(s)", nodes.len() + nodes.dropped),
    );

    let sentinel = args.sentinel.and_then(Result::ok);
    let mut found: List<(VirtioNode, Option<DeviceType>), MAX_DEVICES> = List::new();
    let mut transports = [const { None }; MAX_DEVICES];
    // The sentinel is only watched (by the soak), never probed or tested here.
    for (i, node) in nodes
        .iter()
        .filter(|n| Some(n.base) != sentinel)
        .enumerate()
    {
        let transport = probe::probe(&node);
        found.push((node, transport.as_ref().map(|t| t.device_type())));
        transports[i] = transport;
    }
    if let Some(expect) = args.expect {
        let mut got = report::Name::new(format_args!(""));
        for (i, (_, t)) in found.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = core::fmt::Write::write_fmt(
                &mut got,
                format_args!("{sep}{}", t.map_or("none", probe::kind)),
            );
        }
        scenario::check(
            "devices-expected",
            got.as_str() == expect,
            format_args!("found {}, frontend.expect={expect}", got.as_str()),
        );
    }

    let mut smp_used = false;
    for (i, (node, _)) in found.iter().enumerate() {
        let Some(transport) = transports[i].take() else {
            continue;
        };
        match transport.device_type() {
            DeviceType::Block => {
                // Only the first disk gets the two-vCPU phase and the soak.
                let soak = if smp_used {
                    None
                } else {
                    args.soak_ms.map(|ms| blk::Soak { ms, sentinel })
                };
                let smp_irq_rounds = args.smp_irq_rounds.and_then(|n| usize::try_from(n).ok());
                blk::run(
                    &node,
                    transport,
                    args.seed,
                    with_cpu1 && !smp_used,
                    smp_irq_rounds,
                    soak,
                );
                smp_used = true;
            }
            DeviceType::EntropySource => rng::run(&node, transport),
            other => println!("frontend: no test for {other:?} at {:#x}", node.base),
        }
    }
}

/// Renders "a value was read" or "the read faulted" for a detail line.
enum FaultText {
    Value(u32),
    Fault(exception::Fault),
}

impl core::fmt::Display for FaultText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FaultText::Value(v) => write!(f, "read {v:#x}"),
            FaultText::Fault(fault) => write!(f, "{fault}"),
        }
    }
}

/// Unclaimed mode: read and write `addr`, which must take a data abort (EC 0x25) with FAR =
/// `addr`, exactly as Xen does for any access to a domU address nothing emulates. The devices
/// are not touched: the point is that an address next to claimed ones (same 1 MiB window) still
/// gets stock Xen's answer, and that needs no backend.
fn unclaimed(nodes: &List<VirtioNode, MAX_DEVICES>, addr: Result<usize, &'static str>) {
    let addr = match addr {
        Ok(a) => a,
        Err(text) => {
            scenario::check(
                "unclaimed-arg",
                false,
                format_args!("frontend.probe-unclaimed={text} is not a hex address"),
            );
            return;
        }
    };
    let in_window = (VIRTIO_WINDOW_BASE..VIRTIO_WINDOW_BASE + VIRTIO_WINDOW_SIZE).contains(&addr);
    let claimed = nodes
        .iter()
        .find(|n| (n.base..n.base.saturating_add(n.size)).contains(&addr));
    if !in_window || addr % 4 != 0 || claimed.is_some() {
        scenario::check(
            "unclaimed-arg",
            false,
            format_args!(
                "{addr:#x} must be 4-byte aligned, inside {VIRTIO_WINDOW_BASE:#x}+{VIRTIO_WINDOW_SIZE:#x} \
                 and outside every device (claimed by: {})",
                claimed.map_or(0, |n| n.base)
            ),
        );
        return;
    }
    // SAFETY: `addr` is inside Xen's virtio-mmio window and outside every register window the
    // device tree lists, so no device sees the read; it only takes the abort under test.
    let read = unsafe { exception::try_read_u32(addr) };
    // SAFETY: as above: nothing is behind `addr`, so the write changes nothing.
    let write = unsafe { exception::try_write_u32(addr, 0x5ca1_ab1e) };
    for (check, result) in [
        ("unclaimed-read", read.map(|_| ())),
        ("unclaimed-write", write),
    ] {
        match result {
            Ok(()) => {
                scenario::check(
                    check,
                    false,
                    format_args!("access to {addr:#x} did not fault"),
                );
            }
            Err(fault) => {
                scenario::check(
                    check,
                    fault.ec() == EC_DATA_ABORT_SAME_EL && fault.far == addr as u64,
                    format_args!(
                        "{fault}; want EC {EC_DATA_ABORT_SAME_EL:#x} (data abort, same EL) and FAR {addr:#x}"
                    ),
                );
            }
        }
    }
    if let Ok(v) = read {
        println!("frontend: read {v:#x} from unclaimed {addr:#x}");
    }
}
