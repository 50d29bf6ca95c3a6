//! The serving loop of the backend (docs/backend-abi.md "Protocol"): scan every slot of every
//! frontend's ioreq page, answer each READY request through the device's virtio-mmio register
//! file, complete it at the doorbell, process the queue a `QueueNotify` names, raise the device
//! interrupt through the doorbell, and sleep in `wfi` until the notify SPI when there is nothing
//! to do.
//!
//! With the fast transport of interface version 2 (docs/backend-abi.md "Version 2"), each
//! published device's `QueueNotify` writes are posted: Xen counts them in the notify page, and
//! the loop also scans those counts, processing a queue whose count moved since it last looked.
//! Its interrupts carry their cause in `RAISE_IRQ` bits 16-17 (Xen keeps `InterruptStatus`).
//! Before sleeping the loop arms `wakeup` and looks at every count and slot once more (the
//! Dekker order of "Notify page"); a polling backend (`backend.poll=1`) never sleeps. Classic
//! devices, and every device of a version-1 backend, are served as above.
//!
//! Order of a `QueueNotify` write: the request is completed first (so the frontend's vCPU runs
//! again as soon as possible), then the queue is processed and the used-buffer interrupt raised.
//! A queue with more chains than one round takes (its size) is finished in later passes of the
//! loop, between scans, so one busy queue cannot starve the other slots.

use core::fmt;

use guest_common::gic::{self, IntId};
use guest_common::println;
use guest_common::timer::Deadline;
use virtio_device::mmio::MAX_QUEUES;
use virtio_device::{
    DeviceStatus, Event, Interrupt, InterruptCause, Logger, MmioTransport, TransportRegistersError,
    Width, WriteEffect,
};

use crate::config::{Config, Device, MAX_DEVICES, MAX_FRONTENDS, MAX_RECORD_INDEX};
use crate::devices::Model;
use crate::fast::{NotifyPage, TransportPage, TRANSPORT_VERSION};
use crate::ioreq::{Doorbell, Request, Slot};
use crate::window::Window;

/// How long the loop sleeps at most before looking at every slot again anyway (a lost SPI
/// costs at most this much) and printing the statistics of devices that changed.
const IDLE_MS: u64 = 1000;
/// "driver ready" and "reset:" lines one device prints at most (each a few dozen vpl011 or
/// console writes): a driver resetting its device in a loop cannot flood the console.
const STATUS_LINES: u32 = 32;
/// Incidents of one device (or frontend) printed before they are only counted.
const EVENTS_SHOWN: u32 = 16;

/// Per-device counters kept by the server (the models keep their own request counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    /// Register accesses served.
    accesses: u64,
    /// Queue notifications written through a round trip.
    notifies: u64,
    /// Posted queue notifications: how far the notify page's counts moved.
    posted: u64,
    /// Interrupts raised.
    irqs: u64,
    /// Incidents the device reported.
    events: u32,
}

/// How a device's register accesses reach this backend.
#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// Every access is a round trip: interface version 1 (`backend.abi=1`, or a Xen without
    /// the fast transport).
    Version1,
    /// Every access is a round trip: the device is `rust-ioreq,classic`.
    Classic,
    /// Every access is a round trip: the backend could not publish a record (why).
    Unpublished(&'static str),
    /// Published: Xen answers the transport registers and posts `QueueNotify`; `seen` holds the
    /// notify counts of queues `0..queues` as last handled.
    Fast {
        queues: usize,
        seen: [u32; MAX_QUEUES],
    },
}

impl Path {
    /// Tells whether Xen treats the device as fast.
    fn is_fast(&self) -> bool {
        matches!(self, Path::Fast { .. })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Version1 => f.write_str("round trips (interface version 1)"),
            Path::Classic => f.write_str("classic (rust-ioreq,classic: round trips)"),
            Path::Unpublished(why) => write!(f, "round trips (no record published: {why})"),
            Path::Fast { .. } => f.write_str("fast transport (record published)"),
        }
    }
}

/// The version-2 pages, when this backend uses them.
#[derive(Clone, Copy, Debug)]
pub struct FastTransport {
    /// The transport page (records, `wakeup`, `polling`).
    pub transport: TransportPage,
    /// The notify page (posted `QueueNotify` counts).
    pub notify: NotifyPage,
    /// `polling` is set: never sleep, Xen sends no notify SPI.
    pub polling: bool,
}

/// A device being served.
struct Served {
    config: Device,
    /// `None` if its args asked for something this backend cannot make.
    transport: Option<MmioTransport<Model>>,
    path: Path,
    /// Queues whose last round stopped early.
    pending: [bool; MAX_QUEUES],
    counters: Counters,
    /// `counters` when they were last printed.
    printed: Counters,
    /// "driver ready" and "reset:" lines printed: a driver resetting its device in a loop
    /// chooses how often they would come, so at most [`STATUS_LINES`] are.
    status_lines: u32,
}

/// A frontend being served.
struct FrontendState {
    index: u32,
    vcpus: u32,
    ioreq_page: u64,
    window: Window,
    /// Requests that were malformed or hit no device.
    strays: u32,
    /// `(strays, window faults)` when they were last printed.
    printed: (u32, u32),
}

/// Prints a device's incidents, the first few in full.
struct DeviceLog<'a> {
    device: u32,
    count: &'a mut u32,
}

impl Logger for DeviceLog<'_> {
    fn log(&mut self, event: Event) {
        *self.count = self.count.saturating_add(1);
        if *self.count <= EVENTS_SHOWN {
            println!("backend: dev{}: {event}", self.device);
        } else if *self.count == EVENTS_SHOWN + 1 {
            println!("backend: dev{}: more incidents, counted only", self.device);
        }
    }
}

/// Raises a device's interrupt in its frontend through the doorbell; for a fast device with its
/// cause, which Xen ORs into the `InterruptStatus` it keeps.
struct DoorbellIrq<'a> {
    doorbell: Doorbell,
    device: u32,
    fast: bool,
    count: &'a mut u64,
}

impl Interrupt for DoorbellIrq<'_> {
    fn raise(&mut self) {
        *self.count += 1;
        self.doorbell.raise_irq(self.device, 0);
    }

    fn raise_cause(&mut self, cause: InterruptCause) {
        *self.count += 1;
        // A classic device keeps `InterruptStatus` in its transport: the bare index, as in
        // version 1.
        let causes = if self.fast { cause.bits() } else { 0 };
        self.doorbell.raise_irq(self.device, causes);
    }
}

/// One line of statistics about a device.
struct Stats<'a>(&'a Served);

impl fmt::Display for Stats<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let c = s.counters;
        write!(
            f,
            "dev{} {} accesses, {} notifies, {} posted notifies, {} irqs, {} incidents",
            s.config.index, c.accesses, c.notifies, c.posted, c.irqs, c.events
        )?;
        match s.transport.as_ref().map(MmioTransport::device) {
            Some(Model::Blk(b)) => {
                let b = b.stats();
                write!(
                    f,
                    "; blk: {} reads ({} B), {} writes ({} B), {} flushes, {} get-ids, {} errors",
                    b.reads,
                    b.bytes_read,
                    b.writes,
                    b.bytes_written,
                    b.flushes,
                    b.get_ids,
                    b.errors
                )
            }
            Some(Model::Rng(r)) => {
                let r = r.stats();
                write!(
                    f,
                    "; rng: {} requests, {} B, {} errors",
                    r.requests, r.bytes, r.errors
                )
            }
            None => Ok(()),
        }
    }
}

/// The backend at work.
pub struct Server {
    doorbell: Doorbell,
    notify: IntId,
    /// The version-2 pages, if in use.
    fast: Option<FastTransport>,
    frontends: [Option<FrontendState>; MAX_FRONTENDS],
    devices: [Option<Served>; MAX_DEVICES],
    /// Requests answered.
    served: u64,
    /// Stop after this many requests (`backend.exit-after`).
    exit_after: Option<u64>,
    /// Stop answering after this many requests, but stay (`backend.silent-after`).
    silent_after: Option<u64>,
    /// Least time between two unsolicited statistics prints (0: none), and when the next may be.
    stats_every_ms: u64,
    stats_due: Deadline,
}

impl Server {
    /// Creates the server; `models` gives each configured device's model, in `config` order.
    /// With `fast`, publishes a record for every device that is not classic and can be
    /// published, then the header (`polling`, then `version` = 2): call it before `ONLINE`.
    pub fn new(
        config: &Config,
        doorbell: Doorbell,
        fast: Option<FastTransport>,
        models: &mut dyn Iterator<Item = Option<Model>>,
        exit_after: Option<u64>,
        silent_after: Option<u64>,
        stats_every_ms: u64,
    ) -> Self {
        let mut frontends: [Option<FrontendState>; MAX_FRONTENDS] = Default::default();
        for (slot, fe) in frontends.iter_mut().zip(config.frontends()) {
            *slot = Some(FrontendState {
                index: fe.index,
                vcpus: fe.vcpus,
                ioreq_page: fe.ioreq_page,
                window: Window::new(*fe),
                strays: 0,
                printed: (0, 0),
            });
        }
        let mut devices: [Option<Served>; MAX_DEVICES] = Default::default();
        if let Some(f) = fast {
            f.transport.clear();
        }
        for ((slot, dev), model) in devices.iter_mut().zip(config.devices()).zip(models) {
            let transport = model.map(MmioTransport::new);
            let path = match fast {
                None => Path::Version1,
                Some(_) if dev.classic => Path::Classic,
                Some(f) => publish(f, dev.index, transport.as_ref()),
            };
            *slot = Some(Served {
                config: *dev,
                transport,
                path,
                pending: [false; MAX_QUEUES],
                counters: Counters::default(),
                printed: Counters::default(),
                status_lines: 0,
            });
        }
        if let Some(f) = fast {
            f.transport.set_polling(f.polling);
            f.transport.set_version(TRANSPORT_VERSION);
        }
        Self {
            doorbell,
            notify: config.notify,
            fast,
            frontends,
            devices,
            served: 0,
            exit_after,
            silent_after,
            stats_every_ms,
            stats_due: Deadline::after_ms(stats_every_ms),
        }
    }

    /// Prints the statistics that changed, if the last unsolicited print is old enough.
    fn print_stats_when_due(&mut self) {
        if self.stats_every_ms > 0 && self.stats_due.expired() {
            self.print_stats(false);
            self.stats_due = Deadline::after_ms(self.stats_every_ms);
        }
    }

    /// Serves requests until `backend.exit-after` requests were answered (forever without it);
    /// after `backend.silent-after` requests, never returns and answers nothing more.
    pub fn run(&mut self) {
        let polling = self.fast.is_some_and(|f| f.polling);
        loop {
            // Count before scanning: an SPI for a request posted during the scan stays pending
            // (IRQs are masked here) and ends the wait below at once.
            let seen = gic::irq_count(self.notify);
            let mut busy = self.scan();
            busy |= self.scan_counts();
            busy |= self.finish_pending();
            if self.exit_after.is_some_and(|n| self.served >= n) {
                self.print_stats(true);
                return;
            }
            if self.silent_after.is_some_and(|n| self.served >= n) {
                self.print_stats(true);
                println!(
                    "backend: silent from now on (backend.silent-after): {} requests answered",
                    self.served
                );
                // The notify SPI would keep `wfi` from sleeping: nothing is listening any more.
                gic::disable(self.notify);
                loop {
                    // SAFETY: `wfi` waits for an interrupt; it touches no memory.
                    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
                }
            }
            if busy {
                continue;
            }
            if polling {
                // Never prints while idle-polling: nothing would stop the lines.
                core::hint::spin_loop();
                continue;
            }
            if let Some(f) = self.fast {
                // Going idle: ask for the SPI at the next posted notify, then look once more,
                // so that a notify counted before Xen could see `wakeup` is not slept through.
                f.transport.arm_wakeup();
                if self.scan() | self.scan_counts() {
                    continue;
                }
            }
            if !gic::wait_for_irq(self.notify, seen, Deadline::after_ms(IDLE_MS)) {
                self.print_stats_when_due();
            }
        }
    }

    /// Looks at the notify counts of every fast device and processes each queue whose count
    /// moved since the last look (a posted `QueueNotify`); returns whether there was any.
    fn scan_counts(&mut self) -> bool {
        let Some(f) = self.fast else {
            return false;
        };
        let mut any = false;
        for d in 0..MAX_DEVICES {
            let mut notified = [None::<u16>; MAX_QUEUES];
            let Some(dev) = self.devices[d].as_mut() else {
                continue;
            };
            let index = dev.config.index;
            let Path::Fast { queues, seen } = &mut dev.path else {
                continue;
            };
            for (q, (last, to_process)) in seen
                .iter_mut()
                .zip(notified.iter_mut())
                .take(*queues)
                .enumerate()
            {
                let count = f.notify.count(index, q);
                if count == *last {
                    continue;
                }
                // The driver's ring writes before its QueueNotify are visible once the new
                // count is (docs/backend-abi.md "Notify page").
                crate::ioreq::dmb();
                if dev.counters.posted == 0 {
                    println!("backend: dev{index}: first posted notify (queue {q}, count {count})");
                }
                dev.counters.posted += u64::from(count.wrapping_sub(*last));
                *last = count;
                any = true;
                if let Some(transport) = dev.transport.as_mut() {
                    let mut log = DeviceLog {
                        device: index,
                        count: &mut dev.counters.events,
                    };
                    // q < MAX_QUEUES = 4.
                    if let WriteEffect::Notify(queue) = transport.notified(q as u32, &mut log) {
                        *to_process = Some(queue);
                    }
                }
            }
            for queue in notified.into_iter().flatten() {
                self.process(d, queue);
            }
        }
        any
    }

    /// Answers every READY slot once; returns whether there was any.
    fn scan(&mut self) -> bool {
        let mut any = false;
        for fe in 0..MAX_FRONTENDS {
            let Some((page, vcpus)) = self.frontends[fe].as_ref().map(|f| (f.ioreq_page, f.vcpus))
            else {
                continue;
            };
            for vcpu in 0..vcpus {
                // SAFETY: `page` is the ioreq page Xen described for this frontend, checked page
                // aligned, and `vcpu` is below its slot count, at most 128.
                let slot = unsafe { Slot::new(page, vcpu) };
                if let Some(req) = slot.take() {
                    self.serve(fe, vcpu, slot, req);
                    any = true;
                }
            }
        }
        any
    }

    /// Serves one request of frontend `fe`'s vCPU `vcpu`.
    fn serve(&mut self, fe: usize, vcpu: u32, slot: Slot, req: Request) {
        self.served += 1;
        let mut answer = req.is_read().then_some(0u64);
        let mut notified = None;
        let found = match req.defect() {
            Some(why) => Err(why),
            None => self
                .devices
                .iter()
                .position(|d| {
                    d.as_ref().is_some_and(|d| {
                        d.config.frontend == fe
                            && req.addr >= d.config.mmio.base
                            && req.addr - d.config.mmio.base + u64::from(req.size)
                                <= d.config.mmio.size
                    })
                })
                .ok_or("no device at this address"),
        };
        match found {
            Ok(d) => {
                if let Some(dev) = self.devices[d].as_mut() {
                    notified = Self::access(dev, &req, &mut answer).map(|q| (d, q));
                }
            }
            Err(why) => {
                if let Some(f) = self.frontends[fe].as_mut() {
                    f.strays = f.strays.saturating_add(1);
                    if f.strays == 1 {
                        println!(
                            "backend: frontend {} vCPU {vcpu}: {why}: {req} (answered with 0/ignored; \
                             further ones counted only)",
                            f.index
                        );
                    }
                }
            }
        }
        slot.respond(&req, answer);
        if let Some(f) = self.frontends[fe].as_ref() {
            self.doorbell.complete(f.index, vcpu);
        }
        if let Some((d, q)) = notified {
            self.process(d, q);
        }
    }

    /// Performs the register access `req` on `dev`; returns the queue it notified, if any.
    fn access(dev: &mut Served, req: &Request, answer: &mut Option<u64>) -> Option<u16> {
        dev.counters.accesses += 1;
        let transport = dev.transport.as_mut()?;
        // `defect()` checked the size.
        let width = Width::from_bytes(u64::from(req.size))?;
        let offset = req.addr - dev.config.mmio.base;
        let mut log = DeviceLog {
            device: dev.config.index,
            count: &mut dev.counters.events,
        };
        let before = transport.status();
        let mut notified = None;
        if req.is_read() {
            *answer = Some(transport.read(offset, width, &mut log));
        } else if let WriteEffect::Notify(q) = transport.write(offset, width, req.data, &mut log) {
            dev.counters.notifies += 1;
            notified = Some(q);
        }
        let after = transport.status();
        let ready = !before.driver_ok() && after.driver_ok();
        let reset = before != DeviceStatus(0)
            && after == DeviceStatus(0)
            && dev.counters.notifies + dev.counters.posted > 0;
        if ready || reset {
            dev.status_lines = dev.status_lines.saturating_add(1);
            if dev.status_lines == STATUS_LINES + 1 {
                println!(
                    "backend: dev{}: no more driver ready/reset lines (a driver resetting in a loop)",
                    dev.config.index
                );
            }
        }
        if dev.status_lines <= STATUS_LINES && ready {
            println!(
                "backend: dev{} {}: driver ready, features {:#x}",
                dev.config.index,
                transport.device().kind(),
                transport.negotiated_features()
            );
        } else if dev.status_lines <= STATUS_LINES && reset {
            println!("backend: reset: {}", Stats(dev));
            dev.printed = dev.counters;
        }
        notified
    }

    /// Runs one round of queue `q` of device `d`.
    fn process(&mut self, d: usize, q: u16) {
        let Some(dev) = self.devices[d].as_mut() else {
            return;
        };
        let Some(fe) = self.frontends[dev.config.frontend].as_ref() else {
            return;
        };
        let Some(transport) = dev.transport.as_mut() else {
            return;
        };
        let mut irq = DoorbellIrq {
            doorbell: self.doorbell,
            device: dev.config.index,
            fast: dev.path.is_fast(),
            count: &mut dev.counters.irqs,
        };
        let mut log = DeviceLog {
            device: dev.config.index,
            count: &mut dev.counters.events,
        };
        let done = transport.process_queue(q, &fe.window, &mut irq, &mut log);
        if let Some(p) = dev.pending.get_mut(usize::from(q)) {
            *p = done.more;
        }
    }

    /// Continues the queues whose last round stopped early; returns whether there were any.
    fn finish_pending(&mut self) -> bool {
        let mut any = false;
        for d in 0..MAX_DEVICES {
            for q in 0..MAX_QUEUES {
                if self.devices[d].as_ref().is_some_and(|dev| dev.pending[q]) {
                    // q < MAX_QUEUES = 4.
                    self.process(d, q as u16);
                    any = true;
                }
            }
        }
        any
    }

    /// Prints the statistics of every device whose counters changed since they were last
    /// printed (all of them if `all`).
    fn print_stats(&mut self, all: bool) {
        for dev in self.devices.iter_mut().flatten() {
            if all || dev.counters != dev.printed {
                println!("backend: stats: {}", Stats(dev));
                dev.printed = dev.counters;
            }
        }
        for fe in self.frontends.iter_mut().flatten() {
            let now = (fe.strays, fe.window.faults());
            if now != fe.printed {
                println!(
                    "backend: frontend {}: {} stray requests, {} faulting buffer accesses",
                    fe.index, now.0, now.1
                );
                fe.printed = now;
            }
        }
    }

    /// Returns the number of requests answered.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Returns how each device's accesses reach this backend, in `config` order.
    pub fn paths(&self) -> impl Iterator<Item = (u32, Path)> + '_ {
        self.devices
            .iter()
            .flatten()
            .map(|d| (d.config.index, d.path))
    }
}

/// Publishes device `index`'s record in the transport page, if it can be: it needs a model, a
/// record slot, notify counts, and registers a record can hold.
fn publish(fast: FastTransport, index: u32, transport: Option<&MmioTransport<Model>>) -> Path {
    let Some(transport) = transport else {
        return Path::Unpublished("no device model");
    };
    if index > MAX_RECORD_INDEX || !NotifyPage::has_device(index) {
        return Path::Unpublished("device index beyond the transport page");
    }
    let regs = match transport.transport_registers() {
        Ok(r) => r,
        Err(TransportRegistersError::NoDeviceId) => return Path::Unpublished("device ID 0"),
        Err(TransportRegistersError::QueueSizesDiffer { .. }) => {
            return Path::Unpublished("queues of different sizes")
        }
    };
    if !fast.transport.publish(index, &regs) {
        return Path::Unpublished("device index beyond the transport page");
    }
    Path::Fast {
        queues: transport.num_queues(),
        // Xen's counts start at 0 and only move once the device is published.
        seen: [0; MAX_QUEUES],
    }
}
