//! The serving logic (docs/backend-abi.md, "Protocol" and "Version 2"), independent of how the
//! pages are mapped and how the daemon waits: scan every slot of every frontend, answer each
//! READY request through the device's virtio-mmio register file, `COMPLETE` it, process the
//! queue a `QueueNotify` names, raise the device interrupt with `RAISE_IRQ`; for fast devices,
//! also process every queue whose notify count moved. [`Server::serve_until_idle`] does that
//! until there is nothing left, arming `wakeup` and looking once more before it returns.
//!
//! A request is completed before the queue it notified is processed, so the frontend's vCPU
//! runs again as soon as possible. A queue with more chains than one round takes (its size) is
//! finished in later passes, between scans, so one busy queue cannot starve the other slots.
//!
//! A misbehaving frontend (a request outside every device, a ring outside its RAM, a bad
//! descriptor) is answered as virtio says (reads 0, writes dropped, IOERR, DEVICE_NEEDS_RESET)
//! and reported through a rate limit: at most [`LINES_PER_PERIOD`] lines per device (and per
//! frontend) every [`PERIOD`], then one line counting the ones left out.

use std::fmt;
use std::time::{Duration, Instant};

use virtio_device::mmio::MAX_QUEUES;
use virtio_device::{
    DeviceStatus, Event, Interrupt, InterruptCause, Logger, MmioTransport, TransportRegistersError,
    Width, WriteEffect,
};

use crate::devices::Model;
use crate::fast::{NotifyPage, TransportPage, FEATURE_FAST};
use crate::ioreq::{self, Doorbell, Request, Slot};
use crate::layout;
use crate::shared::{barrier, SharedRegion};
use crate::window::Window;

/// Lines of incidents one device (or frontend) may print per [`PERIOD`].
pub const LINES_PER_PERIOD: u32 = 10;
/// The rate limit's period.
pub const PERIOD: Duration = Duration::from_secs(5);

/// A rate limit: [`LINES_PER_PERIOD`] lines per [`PERIOD`].
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    start: Option<Instant>,
    shown: u32,
    dropped: u64,
}

impl RateLimit {
    /// Creates a limit with nothing printed yet.
    pub const fn new() -> Self {
        Self {
            start: None,
            shown: 0,
            dropped: 0,
        }
    }

    /// Tells whether a line may be printed at `now`; when a new period starts after lines
    /// were left out, `Some(n)` first says how many (the caller prints that too).
    pub fn allow(&mut self, now: Instant) -> (bool, Option<u64>) {
        let mut dropped = None;
        if self.start.is_none_or(|s| now.duration_since(s) >= PERIOD) {
            self.start = Some(now);
            self.shown = 0;
            if self.dropped > 0 {
                dropped = Some(self.dropped);
                self.dropped = 0;
            }
        }
        if self.shown < LINES_PER_PERIOD {
            self.shown += 1;
            (true, dropped)
        } else {
            self.dropped += 1;
            (false, dropped)
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the daemon's lines go: stdout, or a vector in host tests.
pub trait Console {
    /// Prints one line.
    fn line(&mut self, text: &str);
}

/// Standard output, line by line.
#[derive(Debug, Default)]
pub struct Stdout;

impl Console for Stdout {
    fn line(&mut self, text: &str) {
        println!("{text}");
    }
}

impl Console for Vec<String> {
    fn line(&mut self, text: &str) {
        self.push(text.to_string());
    }
}

/// The prefix of every line.
pub const PREFIX: &str = "rust-ioreq-backend";

/// Per-device counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Register accesses served (round trips).
    pub accesses: u64,
    /// `QueueNotify` writes that came as round trips.
    pub notifies: u64,
    /// Posted notifies: how far the notify counts moved.
    pub posted: u64,
    /// Interrupts raised.
    pub irqs: u64,
    /// Incidents the device reported.
    pub incidents: u64,
}

/// How a device's register accesses reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Every access is a round trip: Xen offers no fast transport (or `--no-fast`).
    RoundTrips,
    /// Every access is a round trip: the device is `classic=1`.
    Classic,
    /// Every access is a round trip: no record could be published (why).
    Unpublished(&'static str),
    /// Published: Xen answers the transport registers and posts `QueueNotify`; `seen` holds the
    /// counts of queues `0..queues` as last handled.
    Fast {
        /// Queues with counts.
        queues: usize,
        /// Counts last handled.
        seen: [u32; MAX_QUEUES],
    },
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::RoundTrips => f.write_str("round trips (no fast transport)"),
            Path::Classic => f.write_str("classic (round trips)"),
            Path::Unpublished(why) => write!(f, "round trips (no record published: {why})"),
            Path::Fast { .. } => f.write_str("fast transport (record published)"),
        }
    }
}

/// A device being served.
#[derive(Debug)]
pub struct Served {
    /// Its layout line.
    pub desc: layout::Device,
    /// Its register file and model.
    pub transport: MmioTransport<Model>,
    /// How its accesses arrive.
    pub path: Path,
    pending: [bool; MAX_QUEUES],
    /// Its counters.
    pub counters: Counters,
    printed: Counters,
    limit: RateLimit,
    /// The "driver ready" and "reset:" lines: a driver that resets its device in a loop
    /// chooses how often they come, so they are rate-limited apart from the incidents.
    status_limit: RateLimit,
}

/// A frontend being served.
#[derive(Debug)]
struct FrontendState {
    index: u32,
    vcpus: u32,
    page: SharedRegion,
    window: Window,
    strays: u64,
    limit: RateLimit,
}

/// The version-2 pages in use.
#[derive(Clone, Copy, Debug)]
pub struct FastPages {
    /// The transport page.
    pub transport: TransportPage,
    /// The notify page.
    pub notify: NotifyPage,
}

/// The mapped memory of a backend, by layout region.
#[derive(Debug)]
pub struct Mapped {
    /// Each frontend's ioreq page, by frontend index.
    pub ioreq: Vec<(u32, SharedRegion)>,
    /// Each frontend's RAM banks.
    pub banks: Vec<(u32, crate::window::Bank)>,
    /// The transport and notify pages, if mapped.
    pub fast: Option<FastPages>,
}

/// The backend at work.
pub struct Server<'a> {
    doorbell: &'a dyn Doorbell,
    console: &'a mut dyn Console,
    fast: Option<FastPages>,
    frontends: Vec<FrontendState>,
    /// The devices, in layout order.
    pub devices: Vec<Served>,
    /// Requests answered.
    pub served: u64,
    stats_due: Option<Instant>,
}

impl fmt::Debug for Server<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("devices", &self.devices.len())
            .field("served", &self.served)
            .finish()
    }
}

/// Prints a device's incidents through its rate limit.
struct DeviceLog<'c> {
    device: u32,
    console: &'c mut dyn Console,
    limit: &'c mut RateLimit,
    count: &'c mut u64,
}

impl Logger for DeviceLog<'_> {
    fn log(&mut self, event: Event) {
        *self.count += 1;
        let (show, dropped) = self.limit.allow(Instant::now());
        if let Some(n) = dropped {
            self.console.line(&format!(
                "{PREFIX}: dev{}: {n} more incidents not shown",
                self.device
            ));
        }
        if show {
            self.console
                .line(&format!("{PREFIX}: dev{}: {event}", self.device));
        }
    }
}

/// Raises a device's interrupt through the doorbell; for a fast device with its cause, which
/// Xen ORs into the `InterruptStatus` it keeps (a classic device keeps its own).
struct DoorbellIrq<'d> {
    doorbell: &'d dyn Doorbell,
    device: u32,
    fast: bool,
    count: &'d mut u64,
}

impl Interrupt for DoorbellIrq<'_> {
    fn raise(&mut self) {
        self.raise_cause(InterruptCause::USED_BUFFER);
    }

    fn raise_cause(&mut self, cause: InterruptCause) {
        *self.count += 1;
        let causes = if self.fast { cause.bits() } else { 0 };
        ioreq::raise_irq(self.doorbell, self.device, causes);
    }
}

/// One line of statistics about a device.
struct Stats<'s>(&'s Served);

impl fmt::Display for Stats<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let c = s.counters;
        write!(
            f,
            "dev{} {} accesses, {} notifies, {} posted notifies, {} irqs, {} incidents",
            s.desc.index, c.accesses, c.notifies, c.posted, c.irqs, c.incidents
        )?;
        match s.transport.device() {
            Model::Blk { blk, .. } => {
                let b = blk.stats();
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
            Model::Rng(r) => {
                let r = r.stats();
                write!(
                    f,
                    "; rng: {} requests, {} B, {} errors",
                    r.requests, r.bytes, r.errors
                )
            }
            Model::VhostUser(v) => match v.broken() {
                Some(_) => write!(f, "; vhost-user: broken"),
                None => write!(f, "; vhost-user"),
            },
        }
    }
}

impl<'a> Server<'a> {
    /// Creates the server over `mapped` pages; `models` holds each layout device's model in
    /// layout order. With fast pages and `FEATURES` bit 0, publishes a record for every device
    /// that is not classic, then enables the transport page: call it before `ONLINE`.
    pub fn new(
        layout: &layout::Layout,
        mapped: Mapped,
        models: Vec<Model>,
        doorbell: &'a dyn Doorbell,
        console: &'a mut dyn Console,
        stats_every: Option<Duration>,
    ) -> Self {
        let fast = mapped
            .fast
            .filter(|_| layout.version >= 2 && layout.features & FEATURE_FAST != 0);
        let frontends = layout
            .frontends
            .iter()
            .filter_map(|f| {
                let page = mapped.ioreq.iter().find(|(i, _)| *i == f.index)?.1;
                let banks = mapped
                    .banks
                    .iter()
                    .filter(|(i, _)| *i == f.index)
                    .map(|(_, b)| *b)
                    .collect();
                Some(FrontendState {
                    index: f.index,
                    vcpus: f.vcpus,
                    page,
                    window: Window::new(banks),
                    strays: 0,
                    limit: RateLimit::new(),
                })
            })
            .collect();
        if let Some(f) = fast {
            f.transport.clear();
        }
        let devices = layout
            .devices
            .iter()
            .zip(models)
            .map(|(desc, model)| {
                // A vhost-user daemon reads the rings itself: offer what it takes.
                let indirect = match &model {
                    Model::VhostUser(v) => v.offers_indirect(),
                    _ => true,
                };
                let transport = MmioTransport::new(model).with_indirect(indirect);
                let path = match fast {
                    None => Path::RoundTrips,
                    Some(_) if desc.classic => Path::Classic,
                    Some(f) => publish(f, desc.index, &transport),
                };
                Served {
                    desc: desc.clone(),
                    transport,
                    path,
                    pending: [false; MAX_QUEUES],
                    counters: Counters::default(),
                    printed: Counters::default(),
                    limit: RateLimit::new(),
                    status_limit: RateLimit::new(),
                }
            })
            .collect();
        if let Some(f) = fast {
            f.transport.enable();
        }
        Self {
            doorbell,
            console,
            fast,
            frontends,
            devices,
            served: 0,
            // A period too long to add to now (`--stats-ms` near u64::MAX) means never.
            stats_due: stats_every.and_then(|d| Instant::now().checked_add(d)),
        }
    }

    /// Tells whether the fast transport is in use.
    pub fn fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Serves requests until there is nothing left: scans, notify counts and unfinished queues;
    /// with the fast transport, arms `wakeup` and looks once more before returning (a notify is
    /// then either seen here or raises the interrupt the caller waits for).
    pub fn serve_until_idle(&mut self) {
        loop {
            let mut busy = self.scan();
            busy |= self.scan_counts();
            busy |= self.finish_pending();
            if busy {
                continue;
            }
            if let Some(f) = self.fast {
                f.transport.arm_wakeup();
                if self.scan() | self.scan_counts() {
                    continue;
                }
            }
            return;
        }
    }

    /// Returns what to wait on for the devices served by vhost-user daemons, with the notify
    /// interrupt: their call eventfds and the sockets of their live connections (which change
    /// when a reset reconnects: ask again after every look).
    pub fn vhost_user_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = Vec::new();
        for d in &self.devices {
            if let Model::VhostUser(v) = d.transport.device() {
                fds.extend(v.call_fds());
                fds.extend(v.connection_fd());
            }
        }
        fds
    }

    /// Looks at the devices served by vhost-user daemons after a wait: interrupts the driver of
    /// each whose daemon used buffers since the last look (its call eventfd was signalled), and
    /// sets DEVICE_NEEDS_RESET (with the configuration-change interrupt) on each that broke:
    /// its daemon exited or failed a request. The driver's reset then reconnects.
    pub fn handle_vhost_user_events(&mut self) {
        for dev in &mut self.devices {
            let used = match dev.transport.device_mut() {
                Model::VhostUser(v) => {
                    v.check_connection();
                    v.take_used()
                }
                _ => continue,
            };
            if used {
                let mut irq = DoorbellIrq {
                    doorbell: self.doorbell,
                    device: dev.desc.index,
                    fast: matches!(dev.path, Path::Fast { .. }),
                    count: &mut dev.counters.irqs,
                };
                dev.transport.signal_used_buffer(&mut irq);
            }
            flag_broken_bridge(self.doorbell, dev);
        }
    }

    /// Prints the statistics of devices that changed, if `stats_every` has passed.
    pub fn print_stats_when_due(&mut self, every: Duration) {
        let now = Instant::now();
        if self.stats_due.is_some_and(|due| now >= due) {
            self.print_stats(false);
            self.stats_due = now.checked_add(every);
        }
    }

    /// Prints one line per device whose counters changed since the last print (every device
    /// if `all`), and each frontend's refused accesses.
    pub fn print_stats(&mut self, all: bool) {
        for dev in &mut self.devices {
            if all || dev.counters != dev.printed {
                self.console
                    .line(&format!("{PREFIX}: stats: {}", Stats(dev)));
                dev.printed = dev.counters;
            }
        }
    }

    /// Processes every queue of a fast device whose notify count moved; returns whether any did.
    fn scan_counts(&mut self) -> bool {
        let Some(f) = self.fast else {
            return false;
        };
        let mut any = false;
        for d in 0..self.devices.len() {
            let mut notified = [None::<u16>; MAX_QUEUES];
            let dev = &mut self.devices[d];
            let index = dev.desc.index;
            let Path::Fast { queues, seen } = &mut dev.path else {
                continue;
            };
            for (q, last) in seen.iter_mut().enumerate().take(*queues) {
                let count = f.notify.count(index, q);
                if count == *last {
                    continue;
                }
                // The driver's ring writes before its QueueNotify are visible once the new
                // count is (docs/backend-abi.md, "Notify page").
                barrier();
                if dev.counters.posted == 0 {
                    self.console.line(&format!(
                        "{PREFIX}: dev{index}: first posted notify (queue {q}, count {count})"
                    ));
                }
                dev.counters.posted += u64::from(count.wrapping_sub(*last));
                *last = count;
                any = true;
                let mut log = DeviceLog {
                    device: index,
                    console: &mut *self.console,
                    limit: &mut dev.limit,
                    count: &mut dev.counters.incidents,
                };
                // q < MAX_QUEUES.
                let queue = u32::try_from(q).unwrap_or(u32::MAX);
                if let WriteEffect::Notify(n) = dev.transport.notified(queue, &mut log) {
                    notified[q] = Some(n);
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
        for fe in 0..self.frontends.len() {
            let (page, vcpus) = (self.frontends[fe].page, self.frontends[fe].vcpus);
            for vcpu in 0..vcpus {
                let Some(slot) = Slot::new(page, vcpu) else {
                    break;
                };
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
        let frontend = self.frontends[fe].index;
        let mut answer = req.is_read().then_some(0u64);
        let found = match req.defect() {
            Some(why) => Err(why),
            None => self
                .devices
                .iter()
                .position(|d| {
                    d.desc.frontend == frontend
                        && req.addr >= d.desc.mmio
                        && req.addr - d.desc.mmio < d.desc.size
                        && req.addr - d.desc.mmio + u64::from(req.size) <= d.desc.size
                })
                .ok_or("no device at this address"),
        };
        let mut notified = None;
        match found {
            Ok(d) => {
                let dev = &mut self.devices[d];
                notified = access(dev, &req, &mut answer, &mut *self.console).map(|q| (d, q));
                // Before the COMPLETE: a driver that reads Status right after its DRIVER_OK
                // must find DEVICE_NEEDS_RESET if the hand-over failed.
                flag_broken_bridge(self.doorbell, dev);
            }
            Err(why) => {
                let f = &mut self.frontends[fe];
                f.strays += 1;
                let (show, dropped) = f.limit.allow(Instant::now());
                if let Some(n) = dropped {
                    self.console.line(&format!(
                        "{PREFIX}: frontend {frontend}: {n} more stray requests not shown"
                    ));
                }
                if show {
                    self.console.line(&format!(
                        "{PREFIX}: frontend {frontend} vCPU {vcpu}: {why}: {req} (reads answered 0, writes dropped)"
                    ));
                }
            }
        }
        slot.respond(&req, answer);
        ioreq::complete(self.doorbell, frontend, vcpu);
        if let Some((d, q)) = notified {
            self.process(d, q);
        }
    }

    /// Runs one round of queue `q` of device `d`.
    fn process(&mut self, d: usize, q: u16) {
        let dev = &mut self.devices[d];
        let Some(fe) = self.frontends.iter().find(|f| f.index == dev.desc.frontend) else {
            return;
        };
        let mut irq = DoorbellIrq {
            doorbell: self.doorbell,
            device: dev.desc.index,
            fast: matches!(dev.path, Path::Fast { .. }),
            count: &mut dev.counters.irqs,
        };
        let mut log = DeviceLog {
            device: dev.desc.index,
            console: &mut *self.console,
            limit: &mut dev.limit,
            count: &mut dev.counters.incidents,
        };
        let done = dev
            .transport
            .process_queue(q, &fe.window, &mut irq, &mut log);
        if let Some(p) = dev.pending.get_mut(usize::from(q)) {
            *p = done.more;
        }
    }

    /// Continues the queues whose last round stopped early; returns whether there were any.
    fn finish_pending(&mut self) -> bool {
        let mut any = false;
        for d in 0..self.devices.len() {
            for q in 0..MAX_QUEUES {
                if self.devices[d].pending[q] {
                    // q < MAX_QUEUES.
                    self.process(d, u16::try_from(q).unwrap_or(u16::MAX));
                    any = true;
                }
            }
        }
        any
    }

    /// Returns how many accesses to frontend `index`'s RAM were refused (outside its banks).
    pub fn refused(&self, index: u32) -> u64 {
        self.frontends
            .iter()
            .find(|f| f.index == index)
            .map_or(0, |f| f.window.refused())
    }
}

/// Sets DEVICE_NEEDS_RESET (with the configuration-change interrupt) on `dev` if it is a
/// bridged device whose vhost-user connection broke and its driver set DRIVER_OK.
fn flag_broken_bridge(doorbell: &dyn Doorbell, dev: &mut Served) {
    let broken = matches!(dev.transport.device(), Model::VhostUser(v) if v.broken().is_some());
    if !broken {
        return;
    }
    let mut irq = DoorbellIrq {
        doorbell,
        device: dev.desc.index,
        fast: matches!(dev.path, Path::Fast { .. }),
        count: &mut dev.counters.irqs,
    };
    if dev.transport.set_needs_reset(&mut irq) {
        dev.counters.incidents += 1;
    }
}

/// Performs the register access `req` on `dev`; returns the queue it notified, if any.
fn access(
    dev: &mut Served,
    req: &Request,
    answer: &mut Option<u64>,
    console: &mut dyn Console,
) -> Option<u16> {
    dev.counters.accesses += 1;
    // `defect()` checked the size.
    let width = Width::from_bytes(u64::from(req.size))?;
    let offset = req.addr - dev.desc.mmio;
    let index = dev.desc.index;
    let mut log = DeviceLog {
        device: index,
        console: &mut *console,
        limit: &mut dev.limit,
        count: &mut dev.counters.incidents,
    };
    let before = dev.transport.status();
    let mut notified = None;
    if req.is_read() {
        *answer = Some(dev.transport.read(offset, width, &mut log));
    } else if let WriteEffect::Notify(q) = dev.transport.write(offset, width, req.data, &mut log) {
        dev.counters.notifies += 1;
        notified = Some(q);
    }
    let after = dev.transport.status();
    let ready = !before.driver_ok() && after.driver_ok();
    let reset = before != DeviceStatus(0)
        && after == DeviceStatus(0)
        && dev.counters.notifies + dev.counters.posted > 0;
    if ready || reset {
        let (show, dropped) = dev.status_limit.allow(Instant::now());
        if let Some(n) = dropped {
            console.line(&format!(
                "{PREFIX}: dev{index}: {n} more driver ready/reset lines not shown"
            ));
        }
        if show && ready {
            console.line(&format!(
                "{PREFIX}: dev{index} {}: driver ready, features {:#x}",
                dev.transport.device().kind(),
                dev.transport.negotiated_features()
            ));
        } else if show {
            console.line(&format!("{PREFIX}: reset: {}", Stats(dev)));
            dev.printed = dev.counters;
        }
    }
    notified
}

/// Publishes device `index`'s record, if it can be; the counts to start from are the page's
/// (they never go back, and a daemon started again finds them where Xen left them).
fn publish(fast: FastPages, index: u32, transport: &MmioTransport<Model>) -> Path {
    if !NotifyPage::has_device(index) {
        return Path::Unpublished("device index beyond the notify page");
    }
    let regs = match transport.transport_registers() {
        Ok(r) => r,
        Err(TransportRegistersError::NoDeviceId) => return Path::Unpublished("device ID 0"),
        Err(TransportRegistersError::QueueSizesDiffer { .. }) => {
            return Path::Unpublished("queues of different sizes")
        }
    };
    let queues = transport.num_queues();
    let mut seen = [0u32; MAX_QUEUES];
    for (q, s) in seen.iter_mut().enumerate().take(queues) {
        *s = fast.notify.count(index, q);
    }
    if !fast.transport.publish(index, &regs) {
        return Path::Unpublished("device index beyond the transport page");
    }
    Path::Fast { queues, seen }
}
