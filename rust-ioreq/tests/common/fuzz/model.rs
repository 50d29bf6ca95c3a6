//! The engine fuzz bodies: sequences of frontend traps, backend slot writes (well-behaved and
//! hostile), doorbell accesses with any offset, width and value, `vcpu_work`, timer expiries
//! with clock advances, backend shutdowns and domain destructions, run against the strict fake
//! and checked after every step against a model of what `docs/backend-abi.md` and
//! `src/engine/*` promise: the exact outcome of each call, the requests posted, the SPIs
//! injected, the vCPUs woken, the backends crashed, and the engine's dead/broken/domid state.
//!
//! The model is written from the documented rules, not from the engine's code paths:
//!
//! - a frontend vCPU's request is `Idle`, `Pending` (posted, deadline), `Answered` (its
//!   backend's `COMPLETE` was accepted) or `Vanished` (completes with all ones);
//! - a request that times out breaks its device for good and *holds* its slot: nothing is
//!   posted there until the backend answers (`IORESP_READY`) or lets go (`NONE`); a late
//!   `COMPLETE` for a held slot is `Discarded(LateAnswer)`;
//! - a backend that wrote a slot nobody posted (found when Xen is about to post) or moved an
//!   answered slot backwards is crashed, and that access completes as on a vanished device;
//! - a dead backend's waiting frontends complete at once, and later accesses too;
//! - a destroyed domain's domid is forgotten (a stranger from then on); a `COMPLETE` or
//!   `RAISE_IRQ` for a destroyed frontend is `Discarded(FrontendGone)`;
//! - `ONLINE` is `Online` once per backend, `OnlineAgain` after;
//! - the fast transport (interface version 2): a device whose backend's transport page has
//!   version 2 and a valid record for it (published, device ID non-zero, at most 16 queues)
//!   gets its 32-bit transport-register accesses answered in Xen (values from the record, or
//!   Xen's own copies of what the frontend wrote), `QueueNotify` counted in the notify page
//!   with one SPI per arming unless the backend polls, `RAISE_IRQ` causes in the interrupt
//!   status, and a reset answered by the backend clearing it; requests send no notify SPI to a
//!   backend that polls.
//!
//! Three bodies share the model: [`engine_ops`] leans on traps of every syndrome shape,
//! [`doorbell_ops`] on the doorbell, slot writes, timeouts and domain lifetime, over three
//! topologies (default timeouts; a 1 ms backend beside one that never times out; a chain where
//! a backend is itself a frontend), each with a page that two devices share; [`transport_ops`]
//! on a hostile backend's transport page and the registers answered from it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use rust_ioreq::abi::{
    doorbell, notify, transport, IoReq, IOREQ_TYPE_COPY, STATE_IOREQ_INPROCESS, STATE_IOREQ_NONE,
    STATE_IOREQ_READY, STATE_IORESP_READY,
};
use rust_ioreq::config::{Config, Device};
use rust_ioreq::engine::{
    reg, Builder, Completion, Discarded, DoorbellError, DoorbellEvent, Engine, Expired, MmioError,
    MmioOutcome, Trap, Unavailable, Work, VIRTIO_MAGIC,
};
use rust_ioreq::platform::{DomainIndex, PageId, Platform};
use rust_ioreq::syndrome::{decode, Access, Decoded, XenDecode, XZR};
use rust_ioreq::types::{DomId, Gpa, VcpuId, Width};

use super::super::fake::{Event, FakeXen};
use super::super::hostdt::{cells, host_dtb, Dev, Dom, GIC_SPIS};
use super::super::rig::{domid, standard};
use super::super::trap::{hsr, Iss};
use super::Input;

const MS: u64 = 1_000_000;
/// Bit of the `ioreq_t` flags byte that says read (`dir`).
const DIR_READ: u8 = 1 << 5;

// ---------------------------------------------------------------------------------------------
// Topologies

/// The topologies, parsed once per thread (parsing is most of the cost of a run otherwise).
fn topologies() -> Vec<Vec<Dom>> {
    let timeout = |ms: u32| cells(&[ms]);
    // 0: the standard topology, default timeouts (5 s).
    let default = standard();
    // 1: the same, `be` never gives up, `be2` (two devices on `fe2`'s page) after 1 ms.
    let mut quick = standard();
    quick[1] = quick[1].clone().prop("xen,ioreq-timeout-ms", timeout(0));
    quick[3] = quick[3].clone().prop("xen,ioreq-timeout-ms", timeout(1));
    // 2: a chain: `mid` serves `fe` and is itself a frontend of `be`, which also serves `fe`
    // (two devices).
    let chain = vec![
        Dom::new("fe")
            .cpus(3)
            .device(Dev::new("blk", 0x10))
            .device(Dev::new("rng", 0x20).args("virtio-rng"))
            .device(Dev::new("con", 0x20).at(0x0a00_0000, 0x1000).irq(40)),
        Dom::backend("mid@1", 0x10)
            .cpus(2)
            .prop("xen,ioreq-timeout-ms", timeout(2))
            .device(Dev::new("net", 0x20).args("virtio-net")),
        Dom::backend("be", 0x20)
            .notify_spi(60)
            .prop("xen,ioreq-timeout-ms", timeout(7)),
    ];
    vec![default, quick, chain]
}

thread_local! {
    static CONFIGS: RefCell<Vec<Box<Config>>> = const { RefCell::new(Vec::new()) };
}

/// Returns topology `which` as a frozen engine (every domain created, domid = index + 1) and
/// the strict fake beside it.
fn rig_topology(which: usize) -> (Box<Engine>, FakeXen) {
    let config = CONFIGS.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_empty() {
            *c = topologies()
                .iter()
                .map(|t| Config::from_fdt(&host_dtb(t), GIC_SPIS).expect("valid topology"))
                .collect();
        }
        c[which % c.len()].clone()
    });
    let xen = FakeXen::new(&config);
    let paths: Vec<String> = config
        .domains()
        .iter()
        .map(|d| format!("/chosen/{}", d.name))
        .collect();
    let mut b = Builder::new(config);
    for (i, path) in paths.iter().enumerate() {
        assert_eq!(b.domain_created(path, domid(i)), Ok(Some(i)));
    }
    (b.freeze().expect("freeze"), xen)
}

// ---------------------------------------------------------------------------------------------
// The model

/// Where one frontend vCPU's request stands, as the documents describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    Idle,
    /// Posted for `device`; given up at `deadline` (0 = never).
    Pending {
        device: usize,
        deadline: u64,
    },
    /// Its backend's `COMPLETE` was accepted: completes from the slot.
    Answered {
        device: usize,
    },
    /// Nobody will answer: completes with all ones.
    Vanished,
}

/// One frontend vCPU: its request and the access behind it.
#[derive(Clone, Copy, Debug)]
struct Vcpu {
    req: Req,
    access: Option<Access>,
    hsr: u32,
    offset: u32,
}

impl Vcpu {
    const IDLE: Vcpu = Vcpu {
        req: Req::Idle,
        access: None,
        hsr: 0,
        offset: 0,
    };
}

struct Model<'a> {
    engine: &'a Engine,
    xen: &'a FakeXen,
    config: &'a Config,
    /// Every frontend vCPU, by (domain index, vCPU).
    vcpus: BTreeMap<(usize, u32), Vcpu>,
    /// The domain still has its domid (not destroyed).
    alive: Vec<bool>,
    /// The backend shut down, crashed or was destroyed.
    dead: Vec<bool>,
    online: Vec<bool>,
    /// Devices a timeout broke.
    broken: Vec<bool>,
    /// Slots held by a timed-out request, as (backend, frontend index, vCPU).
    held: BTreeSet<(usize, usize, u32)>,
    /// Slots taken back after the backend answered a timed-out request: its late COMPLETE is
    /// owed (discarded once instead of refused).
    owed: BTreeSet<(usize, usize, u32)>,
    /// The backends the engine crashed and Xen has not yet reported shut down.
    crashed: BTreeSet<usize>,
    /// Interesting guest-physical addresses to trap on.
    gpas: Vec<u64>,
    /// Per device, what Xen keeps of the fast transport: `InterruptStatus`,
    /// `DeviceFeaturesSel`, `QueueSel`, and whether the `Status` write in flight is a reset.
    isr: Vec<u32>,
    features_sel: Vec<u32>,
    queue_sel: Vec<u32>,
    reset_posted: Vec<bool>,
}

/// A device's valid transport record, as the model reads it.
#[derive(Clone, Copy, Debug)]
struct Record {
    base: usize,
    num_queues: u32,
}

impl<'a> Model<'a> {
    fn new(engine: &'a Engine, xen: &'a FakeXen) -> Model<'a> {
        let config = engine.config();
        let ndom = config.domains().len();
        let mut vcpus = BTreeMap::new();
        for (f, d) in config.domains().iter().enumerate() {
            if config
                .devices()
                .iter()
                .any(|x| usize::from(x.frontend) == f)
            {
                for v in 0..d.vcpus {
                    vcpus.insert((f, v), Vcpu::IDLE);
                }
            }
        }
        let mut gpas = vec![0, u64::MAX, 0x2200_0000, 0x3e00_0000, 0x4000_0000];
        for d in config.devices() {
            let s = d.mmio.start().0;
            let e = s + d.mmio.size();
            gpas.extend([s, s + 1, s + 4, s + 0x70, s + 0x1fc, e - 1, e - 4, e, s - 1]);
        }
        Model {
            engine,
            xen,
            config,
            vcpus,
            alive: vec![true; ndom],
            dead: vec![false; ndom],
            online: vec![false; ndom],
            broken: vec![false; config.devices().len()],
            held: BTreeSet::new(),
            owed: BTreeSet::new(),
            crashed: BTreeSet::new(),
            gpas,
            isr: vec![0; config.devices().len()],
            features_sel: vec![0; config.devices().len()],
            queue_sel: vec![0; config.devices().len()],
            reset_posted: vec![false; config.devices().len()],
        }
    }

    /// Returns device `i`'s record if its backend's transport page makes it a fast device.
    fn record(&self, i: usize) -> Option<Record> {
        let d = self.device(i);
        let b = usize::from(d.backend);
        let word = |offset| self.xen.transport_word(b, offset);
        let base = transport::record(usize::from(d.index_in_backend));
        let num_queues = word(base + transport::field::NUM_QUEUES);
        (!d.classic
            && word(transport::VERSION_OFFSET) == transport::VERSION
            && word(base + transport::field::PUBLISHED) == 1
            && word(base + transport::field::DEVICE_ID) != 0
            && num_queues <= transport::MAX_QUEUES)
            .then_some(Record { base, num_queues })
    }

    /// Tells whether backend `b` says it polls.
    fn polls(&self, b: usize) -> bool {
        self.xen.transport_word(b, transport::VERSION_OFFSET) == transport::VERSION
            && self.xen.transport_word(b, transport::POLLING_OFFSET) != 0
    }

    fn ndom(&self) -> usize {
        self.config.domains().len()
    }

    fn device(&self, i: usize) -> &'a Device {
        &self.config.devices()[i]
    }

    fn page_of(&self, device: usize) -> PageId {
        let d = self.device(device);
        PageId {
            backend: usize::from(d.backend),
            frontend_index: usize::from(d.frontend_index),
        }
    }

    /// The live domain whose domid is `domid` (the rig gives domain `i` domid `i + 1`).
    fn index_of(&self, domid: DomId) -> Option<usize> {
        let i = usize::from(domid.0).checked_sub(1)?;
        (i < self.ndom() && self.alive[i]).then_some(i)
    }

    fn is_backend(&self, i: usize) -> bool {
        self.config.domains()[i].backend.is_some()
    }

    fn vcpu(&self, f: usize, v: u32) -> Vcpu {
        self.vcpus.get(&(f, v)).copied().unwrap_or(Vcpu::IDLE)
    }

    fn set_req(&mut self, f: usize, v: u32, req: Req) {
        self.vcpus.get_mut(&(f, v)).expect("a frontend vCPU").req = req;
    }

    /// The device of frontend `f` whose region holds `gpa` (a linear search, unlike the
    /// engine's binary search).
    fn device_at(&self, f: usize, gpa: u64) -> Option<usize> {
        self.config
            .devices()
            .iter()
            .position(|d| usize::from(d.frontend) == f && d.mmio.contains(Gpa(gpa)))
    }

    fn timeout_ms(&self, backend: usize) -> u32 {
        self.config.domains()[backend]
            .backend
            .map_or(0, |b| b.timeout_ms)
    }

    /// Picks a domid: mostly a configured domain's, sometimes a stranger's.
    fn pick_domid(&self, input: &mut Input<'_>) -> DomId {
        match input.u8() % 16 {
            0 => DomId(0),
            1 => DomId(self.ndom() as u16 + 1),
            2 => DomId(input.u16()),
            _ => domid(input.below(self.ndom())),
        }
    }

    /// Picks a (domain index, vCPU), mostly a frontend vCPU.
    fn pick_vcpu(&self, input: &mut Input<'_>) -> (usize, u32) {
        if input.one_in(8) || self.vcpus.is_empty() {
            return (input.below(self.ndom() + 1), u32::from(input.u8() % 5));
        }
        let keys: Vec<&(usize, u32)> = self.vcpus.keys().collect();
        *keys[input.below(keys.len())]
    }

    /// The slots where something is going on: held, or with a request pending or answered.
    fn busy_slots(&self) -> Vec<(PageId, u32)> {
        let mut busy: Vec<(PageId, u32)> = self
            .held
            .iter()
            .map(|&(backend, frontend_index, v)| {
                let page = PageId {
                    backend,
                    frontend_index,
                };
                (page, v)
            })
            .collect();
        for (&(_, v), vc) in &self.vcpus {
            if let Req::Pending { device, .. } | Req::Answered { device } = vc.req {
                busy.push((self.page_of(device), v));
            }
        }
        busy
    }

    /// Picks an ioreq page and one of its slots; half the time one where something is going
    /// on, which coverage alone would not steer the fuzzer to.
    fn pick_slot(&self, input: &mut Input<'_>) -> (PageId, u32) {
        let busy = self.busy_slots();
        if !busy.is_empty() && input.one_in(2) {
            return input.pick(&busy);
        }
        let pages = self.xen.page_ids();
        let page = input.pick(&pages);
        let v = input.below(self.xen.slots(page) as usize) as u32;
        (page, v)
    }

    /// Settles every request waiting on `backend` as vanished, waking its vCPU, as a backend's
    /// death does (domain order, then vCPU order).
    fn backend_died(&mut self, backend: usize, woken: &mut Vec<Event>) -> bool {
        if !self.is_backend(backend) || self.dead[backend] {
            return false;
        }
        self.dead[backend] = true;
        let devices = self.config.devices();
        for (&(f, v), vc) in self.vcpus.iter_mut() {
            if let Req::Pending { device, .. } = vc.req {
                if usize::from(devices[device].backend) == backend {
                    vc.req = Req::Vanished;
                    woken.push(Event::Wake { domain: f, vcpu: v });
                }
            }
        }
        true
    }

    /// Checks the engine's externally visible state against the model, and the model's own
    /// invariants.
    fn check(&self) {
        for i in 0..self.ndom() {
            let id = domid(i);
            assert_eq!(
                self.engine.domid(i),
                self.alive[i].then_some(id),
                "domid of {i}"
            );
            assert_eq!(
                self.engine.domain_index(id),
                self.alive[i].then_some(i),
                "index of {id:?}"
            );
            assert_eq!(self.engine.is_dead(i), self.dead[i], "dead {i}");
        }
        assert!(!self.engine.is_dead(self.ndom()));
        for (d, &b) in self.broken.iter().enumerate() {
            assert_eq!(self.engine.is_broken(d), b, "broken {d}");
        }
        assert!(!self.engine.is_broken(self.broken.len()));
        for (&(f, v), vc) in &self.vcpus {
            match vc.req {
                Req::Pending { device, .. } | Req::Answered { device } => {
                    let page = self.page_of(device);
                    assert!(
                        !self.held.contains(&(page.backend, page.frontend_index, v)),
                        "{f}v{v} has a request in a held slot"
                    );
                    if matches!(vc.req, Req::Pending { .. }) {
                        // Nobody waits on a dead backend: its death settles every request.
                        assert!(!self.dead[page.backend], "{f}v{v} waits on a dead backend");
                    }
                }
                Req::Idle | Req::Vanished => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

fn random_syndrome(input: &mut Input<'_>) -> (u32, u32, XenDecode) {
    match input.u8() % 8 {
        // Valid loads and stores of every shape.
        0..=5 => {
            let iss = Iss {
                sas: u32::from(input.u8() % 4),
                sse: input.one_in(2),
                srt: u32::from(input.u8() % 32),
                sf: input.one_in(2),
                ar: input.one_in(4),
                wnr: input.one_in(2),
            };
            let h = hsr(true, iss);
            (h, h, XenDecode::Syndrome)
        }
        // No valid ISS: what Xen's own decoder made of the instruction.
        6 => {
            let h = hsr(false, Iss::default());
            let dabt = hsr(
                true,
                Iss {
                    sas: u32::from(input.u8() % 4),
                    srt: u32::from(input.u8() % 31),
                    wnr: input.one_in(2),
                    ..Iss::default()
                },
            );
            let xen = match input.u8() % 3 {
                0 => XenDecode::PostIndexed {
                    rn: input.u8() % 40,
                    imm9: input.u16() as i16 % 300,
                },
                1 => XenDecode::CacheMaintenance,
                _ => XenDecode::Syndrome,
            };
            (h, dabt, xen)
        }
        _ => (input.u32(), input.u32(), XenDecode::Syndrome),
    }
}

/// A plain load: what the liveness checks at the end use.
fn plain_load() -> (u32, u32, XenDecode) {
    let h = hsr(
        true,
        Iss {
            sas: 2,
            srt: 1,
            ..Iss::default()
        },
    );
    (h, h, XenDecode::Syndrome)
}

/// The backend of a random device plays with its transport page: the page version, a field of
/// a record, a whole valid record, `wakeup`, `polling` (any value, well-formed or not).
fn op_transport(m: &mut Model<'_>, input: &mut Input<'_>) {
    let devices = m.config.devices();
    let d = devices[input.below(devices.len())];
    let b = usize::from(d.backend);
    let base = transport::record(usize::from(d.index_in_backend));
    let value = |input: &mut Input<'_>| {
        let any = input.u32();
        input.pick(&[0, 1, 2, 3, 16, 17, u32::MAX, any])
    };
    let w = |offset, v| m.xen.backend_writes_transport(b, offset, v);
    match input.u8() % 10 {
        0 => w(transport::VERSION_OFFSET, input.pick(&[2, 2, 1, 0, 3])),
        1 => {
            let field = input.pick(&[
                transport::field::PUBLISHED,
                transport::field::DEVICE_ID,
                transport::field::VENDOR_ID,
                transport::field::NUM_QUEUES,
                transport::field::QUEUE_NUM_MAX,
                transport::field::CONFIG_GENERATION,
                transport::field::DEVICE_FEATURES,
                transport::field::DEVICE_FEATURES + 12,
            ]);
            w(base + field, value(input));
        }
        2..=5 => {
            for (field, v) in [
                (transport::field::DEVICE_ID, 1 + u32::from(input.u8() % 3)),
                (transport::field::VENDOR_ID, input.u32()),
                (transport::field::NUM_QUEUES, u32::from(input.u8() % 4) + 1),
                (transport::field::QUEUE_NUM_MAX, u32::from(input.u16())),
                (transport::field::CONFIG_GENERATION, input.u32()),
                (transport::field::DEVICE_FEATURES, input.u32()),
                (transport::field::DEVICE_FEATURES + 4, input.u32()),
                (transport::field::PUBLISHED, 1),
            ] {
                w(base + field, v);
            }
            w(transport::VERSION_OFFSET, transport::VERSION);
        }
        6..=8 => w(transport::WAKEUP_OFFSET, input.pick(&[1, 1, 0, 2])),
        _ => w(transport::POLLING_OFFSET, input.pick(&[0, 0, 1, u32::MAX])),
    }
}

/// A frontend vCPU accesses a transport register of one of its devices: mostly a 32-bit load
/// or store (of any value) at the offsets the fast transport answers, sometimes another width.
fn op_fast_trap(m: &mut Model<'_>, input: &mut Input<'_>) {
    let devices = m.config.devices();
    // Mostly a device that is fast right now (if any), so that sequences go deep.
    let fast: Vec<usize> = (0..devices.len())
        .filter(|&i| m.record(i).is_some())
        .collect();
    let i = if !fast.is_empty() && !input.one_in(4) {
        input.pick(&fast)
    } else {
        input.below(devices.len())
    };
    let d = devices[i];
    let f = usize::from(d.frontend);
    let v = u32::from(input.u8()) % m.config.domains()[f].vcpus;
    let offset = input.pick(&[
        reg::MAGIC_VALUE,
        reg::VERSION,
        reg::DEVICE_ID,
        reg::VENDOR_ID,
        reg::DEVICE_FEATURES,
        reg::DEVICE_FEATURES_SEL,
        reg::QUEUE_SEL,
        reg::QUEUE_NUM_MAX,
        reg::QUEUE_NOTIFY,
        reg::QUEUE_NOTIFY,
        reg::INTERRUPT_STATUS,
        reg::INTERRUPT_ACK,
        reg::STATUS,
        reg::CONFIG_GENERATION,
        0x100,
    ]);
    let write = input.one_in(2);
    let sas = if input.one_in(8) {
        u32::from(input.u8() % 4)
    } else {
        2
    };
    let h = hsr(
        true,
        Iss {
            sas,
            srt: u32::from(input.u8() % 32),
            sf: input.one_in(2),
            sse: !write && input.one_in(4),
            wnr: write,
            ..Iss::default()
        },
    );
    let reg_value = if input.one_in(4) {
        input.u64()
    } else {
        u64::from(input.u8() % 6)
    };
    let gpa = d.mmio.start().0 + u64::from(offset);
    trap_and_check(m, domid(f), v, gpa, (h, h, XenDecode::Syndrome), reg_value);
}

/// A frontend vCPU (or anyone) traps on an address.
fn op_trap(m: &mut Model<'_>, input: &mut Input<'_>) {
    let mut id = m.pick_domid(input);
    let mut v = u32::from(input.u8() % 5);
    let mut gpa = if input.one_in(8) {
        input.u64()
    } else {
        input.pick(&m.gpas)
    };
    // A third of the time, a vCPU whose slot is held, on a device behind that slot.
    let held: Vec<(usize, usize, u32)> = m.held.iter().copied().collect();
    if !held.is_empty() && input.one_in(3) {
        let (backend, k, slot) = input.pick(&held);
        let behind: Vec<&Device> = m
            .config
            .devices()
            .iter()
            .filter(|d| usize::from(d.backend) == backend && usize::from(d.frontend_index) == k)
            .collect();
        let d = behind[input.below(behind.len())];
        id = domid(usize::from(d.frontend));
        v = slot;
        gpa = d.mmio.start().0 + u64::from(input.u8() % 16) * 4;
    }
    let syndrome = random_syndrome(input);
    let reg_value = input.u64();
    trap_and_check(m, id, v, gpa, syndrome, reg_value);
}

/// Returns every backend's notify page, as (backend, offset, count) for the counts in use.
fn notify_counts(m: &Model<'_>) -> Vec<(usize, usize, u32)> {
    let mut out = Vec::new();
    for d in m.config.devices() {
        let b = usize::from(d.backend);
        for q in 0..transport::MAX_QUEUES {
            let offset = notify::count(usize::from(d.index_in_backend), q);
            out.push((b, offset, m.xen.notify_word(b, offset)));
        }
    }
    out
}

/// Returns the one notify count that went up by one since `before`, if any; panics on any other
/// change.
fn counts_differ(m: &Model<'_>, before: &[(usize, usize, u32)]) -> Option<(usize, usize)> {
    let mut changed = None;
    for &(b, offset, count) in before {
        let now = m.xen.notify_word(b, offset);
        if now != count {
            assert_eq!(now, count.wrapping_add(1), "count at {offset:#x} of d{b}");
            assert!(changed.replace((b, offset)).is_none(), "two counts changed");
        }
    }
    changed
}

/// Traps and checks the outcome, the post, the events and the new state against the model.
fn trap_and_check(
    m: &mut Model<'_>,
    id: DomId,
    v: u32,
    gpa: u64,
    (h, dabt, xen_decode): (u32, u32, XenDecode),
    reg_value: u64,
) -> MmioOutcome {
    let t = Trap {
        domid: id,
        vcpu: VcpuId(v),
        gpa: Gpa(gpa),
        hsr: h,
        xen_dabt: dabt,
        xen_decode,
    };
    let frontend = m.index_of(id);
    let device = frontend.and_then(|f| m.device_at(f, gpa));
    let known_vcpu = frontend.is_some_and(|f| m.vcpus.contains_key(&(f, v)));
    let slot_before = match device {
        Some(d) if known_vcpu => Some(m.xen.slot(m.page_of(d), v)),
        _ => None,
    };
    let now = m.xen.now();
    let armed_before = frontend.and_then(|f| m.xen.armed(f, v));
    let counts_before = notify_counts(m);
    let wakeups_before: Vec<u32> = (0..m.ndom())
        .map(|b| {
            if m.is_backend(b) {
                m.xen.transport_word(b, transport::WAKEUP_OFFSET)
            } else {
                0
            }
        })
        .collect();

    let mut read = None;
    let out = m.engine.handle_mmio(m.xen, &t, |r| {
        assert!(read.replace(r).is_none(), "read_reg called twice");
        reg_value
    });
    let posts = m.xen.take_posts();
    let events = m.xen.take_events();

    let (Some(f), Some(dev)) = (frontend, device) else {
        assert_eq!(out, MmioOutcome::NotMine, "{t:?}");
        assert!(posts.is_empty() && events.is_empty() && read.is_none());
        return out;
    };
    let a = match decode(h, dabt, xen_decode) {
        Ok(Decoded::CacheMaintenance) => {
            assert_eq!(out, MmioOutcome::Handled);
            assert!(posts.is_empty() && events.is_empty() && read.is_none());
            return out;
        }
        Err(e) => {
            assert_eq!(out, MmioOutcome::Abort(MmioError::Syndrome(e)));
            assert!(posts.is_empty() && events.is_empty() && read.is_none());
            return out;
        }
        Ok(Decoded::Access(a)) => a,
    };
    if !gpa.is_multiple_of(u64::from(a.width.bytes())) {
        assert_eq!(
            out,
            MmioOutcome::Abort(MmioError::Misaligned {
                gpa: Gpa(gpa),
                width: a.width
            })
        );
        assert!(posts.is_empty() && events.is_empty() && read.is_none());
        return out;
    }
    if !known_vcpu {
        assert_eq!(out, MmioOutcome::Abort(MmioError::UnknownVcpu(VcpuId(v))));
        assert!(posts.is_empty() && events.is_empty() && read.is_none());
        return out;
    }
    if m.vcpu(f, v).req != Req::Idle {
        assert_eq!(out, MmioOutcome::Abort(MmioError::Busy(VcpuId(v))));
        assert!(posts.is_empty() && events.is_empty() && read.is_none());
        return out;
    }
    // The register is read for a store of anything but XZR, and only then.
    let stores_reg = a.write && a.reg != XZR;
    assert_eq!(read, stores_reg.then_some(a.reg), "read_reg for {a:?}");
    let data = if stores_reg {
        a.store_value(reg_value)
    } else {
        0
    };
    let offset = (gpa - m.device(dev).mmio.start().0) as u32;
    let counted = counts_differ(m, &counts_before);
    let wakeup_before = wakeups_before[usize::from(m.device(dev).backend)];
    if let Some(answered) =
        expect_transport(m, dev, offset, &a, data, wakeup_before, (&posts, &events))
    {
        assert_eq!(out, answered, "{t:?}");
        let queue = (data as u32 & 0xffff).min(transport::MAX_QUEUES);
        let bumped = a.write
            && offset == reg::QUEUE_NOTIFY
            && m.record(dev).is_some_and(|r| queue < r.num_queues);
        let expected = bumped.then(|| {
            let d = m.device(dev);
            (
                usize::from(d.backend),
                notify::count(usize::from(d.index_in_backend), queue),
            )
        });
        assert_eq!(counted, expected, "notify counts for {t:?}");
        assert_eq!(m.xen.armed(f, v), armed_before, "a timer armed");
        return out;
    }
    let page = m.page_of(dev);
    let backend = page.backend;
    let slot = slot_before.expect("a slot");
    let held_key = (backend, page.frontend_index, v);
    let held = m.held.contains(&held_key);
    let expected = if m.dead[backend] {
        Some(Unavailable::BackendGone { device: dev })
    } else if m.broken[dev] {
        Some(Unavailable::Broken { device: dev })
    } else {
        match (slot.state(), held) {
            (STATE_IOREQ_NONE, false) => None,
            (STATE_IOREQ_NONE | STATE_IORESP_READY, true) => {
                // The backend let go of, or finally answered, the request that timed out; an
                // answer's COMPLETE is still owed.
                m.held.remove(&held_key);
                if slot.state() == STATE_IORESP_READY {
                    m.owed.insert(held_key);
                }
                None
            }
            (STATE_IOREQ_READY | STATE_IOREQ_INPROCESS, true) => {
                Some(Unavailable::SlotHeld { device: dev })
            }
            _ => Some(Unavailable::BackendFault { device: dev }),
        }
    };
    m.vcpus.insert(
        (f, v),
        Vcpu {
            req: Req::Vanished,
            access: Some(a),
            hsr: h,
            offset: (gpa - m.device(dev).mmio.start().0) as u32,
        },
    );
    if let Some(why) = expected {
        assert_eq!(out, MmioOutcome::Unavailable(why), "{t:?}");
        assert!(posts.is_empty(), "{why:?} but posted {posts:?}");
        if matches!(why, Unavailable::BackendFault { .. }) {
            assert_eq!(events, [Event::Crash { domain: backend }]);
            m.crashed.insert(backend);
        } else {
            assert!(events.is_empty(), "{why:?} with {events:?}");
        }
        assert_eq!(m.xen.slot(page, v), slot, "the slot changed");
        assert_eq!(m.xen.armed(f, v), armed_before, "a timer armed");
        return out;
    }
    assert_eq!(out, MmioOutcome::Retry, "{t:?}");
    assert_eq!(counted, None, "a posted request counted a notify");
    let req = IoReq {
        addr: gpa,
        data,
        count: 1,
        size: 1 << a.width.log2(),
        vp_eport: 0,
        pad0: 0,
        flags: STATE_IOREQ_READY | if a.write { 0 } else { DIR_READ },
        kind: IOREQ_TYPE_COPY,
    };
    assert_eq!(posts, [(page, v, req)]);
    assert_eq!(m.xen.slot(page, v), req);
    let notify = m.config.domains()[backend]
        .backend
        .expect("a backend")
        .notify_spi;
    if m.polls(backend) {
        assert!(events.is_empty(), "a polling backend got {events:?}");
    } else {
        assert_eq!(
            events,
            [Event::Inject {
                domain: backend,
                spi: notify.0
            }]
        );
    }
    let timeout = u64::from(m.timeout_ms(backend));
    let deadline = if timeout == 0 {
        assert_eq!(
            m.xen.armed(f, v),
            armed_before,
            "a timer armed for no timeout"
        );
        0
    } else {
        let deadline = now + timeout * MS;
        assert_eq!(m.xen.armed(f, v), Some(deadline));
        deadline
    };
    m.set_req(
        f,
        v,
        Req::Pending {
            device: dev,
            deadline,
        },
    );
    out
}

/// Predicts a trapped access to device `dev` at `offset` that the fast transport answers in
/// Xen, checks the posts and events, and updates the model; `None` for an access that must go
/// on to the backend (after noting what Xen keeps of a `QueueSel` or `Status` write).
fn expect_transport(
    m: &mut Model<'_>,
    dev: usize,
    offset: u32,
    a: &Access,
    data: u64,
    wakeup_before: u32,
    (posts, events): (&[(PageId, u32, IoReq)], &[Event]),
) -> Option<MmioOutcome> {
    let backend = usize::from(m.device(dev).backend);
    if m.device(dev).classic || a.width != Width::Word || m.dead[backend] || m.broken[dev] {
        return None;
    }
    // Kept by Xen whether or not the device is fast, and forwarded to the backend.
    if a.write {
        let value = data as u32;
        match offset {
            reg::DEVICE_FEATURES_SEL => m.features_sel[dev] = value,
            reg::QUEUE_SEL => m.queue_sel[dev] = value,
            reg::STATUS => m.reset_posted[dev] = value == 0,
            _ => {}
        }
        if matches!(
            offset,
            reg::DEVICE_FEATURES_SEL | reg::QUEUE_SEL | reg::STATUS
        ) {
            return None;
        }
    }
    let record = m.record(dev)?;
    let word = |m: &Model<'_>, field: usize| m.xen.transport_word(backend, record.base + field);
    let value = data as u32;
    let answered = if a.write {
        match offset {
            reg::QUEUE_NOTIFY => {
                // Only the queue index: the high half is VIRTIO_F_NOTIFICATION_DATA's.
                let value = value & 0xffff;
                // The count was bumped (checked by the caller's before/after), and the SPI
                // went out if the backend had armed its wake-up and does not poll.
                let wakeup_now = m.xen.transport_word(backend, transport::WAKEUP_OFFSET);
                if value < record.num_queues {
                    if wakeup_before == 1 && !m.polls(backend) {
                        let notify = m.config.domains()[backend]
                            .backend
                            .expect("a backend")
                            .notify_spi;
                        assert_eq!(
                            events,
                            [Event::Inject {
                                domain: backend,
                                spi: notify.0
                            }]
                        );
                        assert_eq!(wakeup_now, 0, "the arming was not used up");
                    } else {
                        assert!(events.is_empty(), "{events:?}");
                        assert_eq!(wakeup_now, wakeup_before);
                    }
                } else {
                    assert!(events.is_empty(), "a dropped notify woke: {events:?}");
                    assert_eq!(wakeup_now, wakeup_before);
                }
                MmioOutcome::Answered { write_reg: None }
            }
            reg::INTERRUPT_ACK => {
                m.isr[dev] &= !value;
                MmioOutcome::Answered { write_reg: None }
            }
            _ => return None,
        }
    } else {
        let answer = match offset {
            reg::MAGIC_VALUE => VIRTIO_MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => word(m, transport::field::DEVICE_ID),
            reg::VENDOR_ID => word(m, transport::field::VENDOR_ID),
            reg::DEVICE_FEATURES => match m.features_sel[dev] {
                sel @ 0..=3 => word(m, transport::field::DEVICE_FEATURES + 4 * sel as usize),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX if m.queue_sel[dev] < record.num_queues => {
                word(m, transport::field::QUEUE_NUM_MAX)
            }
            reg::QUEUE_NUM_MAX => 0,
            reg::INTERRUPT_STATUS => m.isr[dev],
            reg::CONFIG_GENERATION => word(m, transport::field::CONFIG_GENERATION),
            _ => return None,
        };
        assert!(events.is_empty(), "{events:?}");
        let write_reg = (a.reg != XZR).then(|| (a.reg, a.load_value(u64::from(answer))));
        MmioOutcome::Answered { write_reg }
    };
    assert!(posts.is_empty(), "answered in Xen but posted {posts:?}");
    Some(answered)
}

/// What `doorbell_write` must answer, and its events; updates the model.
fn expect_doorbell_write(
    m: &mut Model<'_>,
    id: DomId,
    offset: u64,
    width: Width,
    value: u32,
) -> (Result<DoorbellEvent, DoorbellError>, Vec<Event>) {
    let Some(b) = m.index_of(id).filter(|&b| m.is_backend(b)) else {
        return (Err(DoorbellError::NotABackend), vec![]);
    };
    if width != Width::Word {
        return (Err(DoorbellError::BadWidth), vec![]);
    }
    let backend = m.config.domains()[b].backend.expect("a backend");
    match offset {
        doorbell::COMPLETE => {
            let (k, v) = (value >> 16, value & 0xffff);
            let Some(&f) = backend.frontends.as_slice().get(k as usize) else {
                return (Err(DoorbellError::UnknownFrontend(k)), vec![]);
            };
            let f = usize::from(f);
            if !m.alive[f] {
                return (
                    Ok(DoorbellEvent::Discarded(Discarded::FrontendGone)),
                    vec![],
                );
            }
            if !m.vcpus.contains_key(&(f, v)) {
                return (Err(DoorbellError::UnknownVcpu(v)), vec![]);
            }
            let slot_key = (b, k as usize, v);
            // A held slot's COMPLETE is the timed-out request's, whatever the vCPU's record says.
            if m.held.contains(&slot_key) {
                return (Ok(DoorbellEvent::Discarded(Discarded::LateAnswer)), vec![]);
            }
            let awaited = match m.vcpu(f, v).req {
                Req::Pending { device, .. } if m.page_of(device).backend == b => {
                    assert_eq!(m.page_of(device).frontend_index, k as usize);
                    Some(device)
                }
                _ => None,
            };
            let Some(device) = awaited else {
                return if m.owed.remove(&slot_key) {
                    (Ok(DoorbellEvent::Discarded(Discarded::LateAnswer)), vec![])
                } else {
                    (Err(DoorbellError::NotAwaited(v)), vec![])
                };
            };
            let page = m.page_of(device);
            let state = m.xen.slot(page, v).state();
            if state != STATE_IORESP_READY {
                return if m.owed.remove(&slot_key) {
                    (Ok(DoorbellEvent::Discarded(Discarded::LateAnswer)), vec![])
                } else {
                    (Err(DoorbellError::NotAnswered(state)), vec![])
                };
            }
            m.owed.remove(&slot_key);
            m.set_req(f, v, Req::Answered { device });
            // A reset the backend answered clears what Xen keeps of the transport, at COMPLETE.
            let vc = m.vcpu(f, v);
            let a = vc.access.expect("an access");
            if a.write && vc.offset == reg::STATUS && std::mem::take(&mut m.reset_posted[device]) {
                m.isr[device] = 0;
                m.features_sel[device] = 0;
                m.queue_sel[device] = 0;
            }
            (
                Ok(DoorbellEvent::Completed {
                    frontend: f,
                    vcpu: VcpuId(v),
                }),
                vec![Event::Wake { domain: f, vcpu: v }],
            )
        }
        doorbell::RAISE_IRQ => {
            // Bits 16-17 are causes, for a fast device's interrupt status.
            if value >> 18 != 0 {
                return (Err(DoorbellError::BadCause(value)), vec![]);
            }
            let index = value & 0xffff;
            let Some(device) = m.config.devices().iter().position(|d| {
                usize::from(d.backend) == b && u32::from(d.index_in_backend) == index
            }) else {
                return (Err(DoorbellError::UnknownDevice(index)), vec![]);
            };
            let d = m.device(device);
            let f = usize::from(d.frontend);
            if !m.alive[f] {
                return (
                    Ok(DoorbellEvent::Discarded(Discarded::FrontendGone)),
                    vec![],
                );
            }
            if m.record(device).is_some() {
                let causes = value >> 16;
                m.isr[device] |= if causes == 0 { 1 } else { causes };
            }
            (
                Ok(DoorbellEvent::Raised { device }),
                vec![Event::Inject {
                    domain: f,
                    spi: d.spi.0,
                }],
            )
        }
        doorbell::ONLINE => {
            let again = std::mem::replace(&mut m.online[b], true);
            let event = if again {
                DoorbellEvent::OnlineAgain
            } else {
                DoorbellEvent::Online
            };
            (Ok(event), vec![])
        }
        o => (Err(DoorbellError::BadRegister(o)), vec![]),
    }
}

/// Writes the doorbell and checks the answer and the events against the model.
fn doorbell_write_and_check(
    m: &mut Model<'_>,
    id: DomId,
    offset: u64,
    width: Width,
    value: u32,
) -> Result<DoorbellEvent, DoorbellError> {
    let slots_before: Vec<(PageId, Vec<IoReq>)> = m
        .xen
        .page_ids()
        .into_iter()
        .map(|p| (p, (0..m.xen.slots(p)).map(|v| m.xen.slot(p, v)).collect()))
        .collect();
    let got = m.engine.doorbell_write(m.xen, id, offset, width, value);
    let events = m.xen.take_events();
    let (expected, expected_events) = expect_doorbell_write(m, id, offset, width, value);
    assert_eq!(
        got, expected,
        "doorbell write {value:#x} at {offset:#x} by {id:?}"
    );
    assert_eq!(events, expected_events);
    // A doorbell write never touches a slot.
    for (p, slots) in slots_before {
        for (v, s) in slots.into_iter().enumerate() {
            assert_eq!(m.xen.slot(p, v as u32), s, "doorbell write changed a slot");
        }
    }
    assert!(m.xen.take_posts().is_empty());
    got
}

fn pick_width(input: &mut Input<'_>) -> Width {
    input.pick(&[
        Width::Word,
        Width::Word,
        Width::Word,
        Width::Byte,
        Width::Half,
        Width::Double,
    ])
}

/// A `COMPLETE`, mostly naming a real page and slot.
fn op_complete(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (page, v) = m.pick_slot(input);
    let (id, value) = match input.u8() % 8 {
        0 => (m.pick_domid(input), input.u32()),
        1 => (
            domid(page.backend),
            (page.frontend_index as u32) << 16 | u32::from(input.u16()),
        ),
        _ => (domid(page.backend), (page.frontend_index as u32) << 16 | v),
    };
    let width = if input.one_in(8) {
        pick_width(input)
    } else {
        Width::Word
    };
    let _ = doorbell_write_and_check(m, id, doorbell::COMPLETE, width, value);
}

/// A `RAISE_IRQ`, mostly naming one of the backend's devices.
fn op_raise_irq(m: &mut Model<'_>, input: &mut Input<'_>) {
    let id = m.pick_domid(input);
    let value = if input.one_in(4) {
        input.u32()
    } else {
        u32::from(input.u8() % 4)
    };
    let width = if input.one_in(8) {
        pick_width(input)
    } else {
        Width::Word
    };
    let _ = doorbell_write_and_check(m, id, doorbell::RAISE_IRQ, width, value);
}

/// An `ONLINE` with any value.
fn op_online(m: &mut Model<'_>, input: &mut Input<'_>) {
    let id = m.pick_domid(input);
    let value = input.pick(&[1, 0, u32::MAX]);
    let _ = doorbell_write_and_check(m, id, doorbell::ONLINE, Width::Word, value);
}

/// Any doorbell read or write: any offset, width and value.
fn op_doorbell_any(m: &mut Model<'_>, input: &mut Input<'_>) {
    let id = m.pick_domid(input);
    let any = u64::from(input.u16());
    let offset = input.pick(&[0u64, 4, 8, 0xc, 0x10, 0x14, 0x18, 0x1c, 0xfff, any]);
    let width = pick_width(input);
    let value = input.u32();
    if input.one_in(2) {
        let _ = doorbell_write_and_check(m, id, offset, width, value);
        return;
    }
    let got = m.engine.doorbell_read(id, offset, width);
    let expected = match m.index_of(id).filter(|&b| m.is_backend(b)) {
        None => Err(DoorbellError::NotABackend),
        Some(_) if width != Width::Word => Err(DoorbellError::BadWidth),
        Some(_) => match offset {
            0x00 => Ok(0x716f_6972),
            0x04 => Ok(2),
            0x08 => Ok(1),
            0x10 | 0x14 | 0x18 => Ok(0),
            o => Err(DoorbellError::BadRegister(o)),
        },
    };
    assert_eq!(got, expected, "doorbell read at {offset:#x} by {id:?}");
    assert!(m.xen.take_events().is_empty());
}

/// A well-behaved backend answers a request in its slot, and usually rings `COMPLETE`.
fn op_answer(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (page, v) = m.pick_slot(input);
    if !matches!(
        m.xen.slot(page, v).state(),
        STATE_IOREQ_READY | STATE_IOREQ_INPROCESS
    ) {
        return;
    }
    m.xen.answer(page, v, input.u64());
    if !input.one_in(4) {
        let value = (page.frontend_index as u32) << 16 | v;
        let _ = doorbell_write_and_check(
            m,
            domid(page.backend),
            doorbell::COMPLETE,
            Width::Word,
            value,
        );
    }
}

/// Any backend writes any slot: a state (a hostile one too), or the whole slot; or lets go of
/// a slot (`NONE`), or marks a request `INPROCESS`.
fn op_slot_write(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (page, v) = m.pick_slot(input);
    match input.u8() % 6 {
        0 => m.xen.set_state(page, v, STATE_IOREQ_NONE),
        1 => m.xen.set_state(page, v, STATE_IOREQ_INPROCESS),
        2 => {
            let any = input.u8();
            let s = input.pick(&[STATE_IOREQ_READY, STATE_IORESP_READY, any]);
            m.xen.set_state(page, v, s);
        }
        3 => {
            let r = m.xen.slot(page, v);
            m.xen.set_slot(
                page,
                v,
                IoReq {
                    data: input.u64(),
                    ..r
                },
            );
        }
        _ => {
            let req = IoReq {
                addr: input.u64(),
                data: input.u64(),
                count: input.u32(),
                size: input.u32(),
                vp_eport: input.u32(),
                pad0: input.u16(),
                flags: input.u8(),
                kind: input.u8(),
            };
            m.xen.set_slot(page, v, req);
        }
    }
}

/// The frontend vCPU on its way back to the guest.
fn op_vcpu_work(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (f, v) = m.pick_vcpu(input);
    let id = if input.one_in(16) {
        m.pick_domid(input)
    } else {
        domid(f)
    };
    vcpu_work_and_check(m, id, v);
}

fn vcpu_work_and_check(m: &mut Model<'_>, id: DomId, v: u32) -> Work {
    let frontend = m.index_of(id).filter(|&f| m.vcpus.contains_key(&(f, v)));
    let vc = frontend.map_or(Vcpu::IDLE, |f| m.vcpu(f, v));
    let answered_slot = match vc.req {
        Req::Answered { device } => Some((m.page_of(device), m.xen.slot(m.page_of(device), v))),
        _ => None,
    };
    let w = m.engine.vcpu_work(m.xen, id, VcpuId(v));
    let events = m.xen.take_events();
    assert!(m.xen.take_posts().is_empty());
    match vc.req {
        Req::Idle => {
            assert_eq!(w, Work::Idle);
            assert!(events.is_empty());
            return w;
        }
        Req::Pending { .. } => {
            assert_eq!(w, Work::Waiting);
            assert!(events.is_empty());
            return w;
        }
        Req::Vanished => {
            assert!(events.is_empty());
            assert_eq!(w, Work::Complete(completion(&vc, u64::MAX)));
        }
        Req::Answered { .. } => {
            let (page, slot) = answered_slot.expect("the slot");
            let data = if slot.state() == STATE_IORESP_READY {
                assert!(events.is_empty());
                slot.data
            } else {
                // Moved backwards after its COMPLETE: the backend is crashed.
                assert_eq!(
                    events,
                    [Event::Crash {
                        domain: page.backend
                    }]
                );
                m.crashed.insert(page.backend);
                u64::MAX
            };
            assert_eq!(w, Work::Complete(completion(&vc, data)));
            // The slot is Xen's again: NONE, flags cleared.
            assert_eq!(m.xen.slot(page, v).flags, 0);
        }
    }
    let f = frontend.expect("a frontend");
    m.set_req(f, v, Req::Idle);
    w
}

/// How the access of `vc` completes with the backend's `data`, computed from the access.
fn completion(vc: &Vcpu, data: u64) -> Completion {
    let a = vc.access.expect("an access");
    let write_reg = (!a.write && a.reg != XZR).then(|| {
        let bits = 8 << a.width.log2();
        let v = if bits == 64 {
            data
        } else {
            data & ((1u64 << bits) - 1)
        };
        let v = if a.sign_extend && bits < 64 && v >> (bits - 1) & 1 == 1 {
            v | !((1u64 << bits) - 1)
        } else {
            v
        };
        (a.reg, if a.sixty_four { v } else { v & 0xffff_ffff })
    });
    Completion {
        write_reg,
        hsr: vc.hsr,
        post_index: a.post_index,
    }
}

/// Lets time pass and fires a timer as Xen would: the one armed for a frontend vCPU, once due.
fn op_timer(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (f, v) = m.pick_vcpu(input);
    let Some(armed) = m.xen.armed(f, v) else {
        return;
    };
    let late = u64::from(input.u16()) * 1000;
    let now = m.xen.now();
    if armed > now {
        m.xen.advance(armed - now + late);
    }
    expire_and_check(m, f, v);
}

/// The engine's `expire` called at any time, for anyone (a stale or spurious timer).
fn op_expire_any(m: &mut Model<'_>, input: &mut Input<'_>) {
    let (f, v) = m.pick_vcpu(input);
    expire_and_check(m, f, v);
}

fn op_advance(m: &mut Model<'_>, input: &mut Input<'_>) {
    let any = u64::from(input.u32()) * 4096;
    let ns = input.pick(&[1, MS - 1, MS, 2 * MS, 5000 * MS, any]);
    m.xen.advance(ns);
}

fn expire_and_check(m: &mut Model<'_>, f: DomainIndex, v: u32) -> Option<Expired> {
    let got = m.engine.expire(m.xen, f, VcpuId(v));
    let events = m.xen.take_events();
    assert!(m.xen.take_posts().is_empty());
    let vc = m.vcpu(f, v);
    let due = match vc.req {
        Req::Pending { device, deadline } if deadline != 0 && m.xen.now() >= deadline => {
            Some(device)
        }
        _ => None,
    };
    let Some(device) = due else {
        assert_eq!(got, None, "{f}v{v} {:?} expired", vc.req);
        assert!(events.is_empty());
        return got;
    };
    let page = m.page_of(device);
    let a = vc.access.expect("an access");
    assert_eq!(
        got,
        Some(Expired {
            frontend: f,
            vcpu: VcpuId(v),
            device,
            offset: vc.offset,
            write: a.write,
            backend_online: m.online[page.backend],
        })
    );
    assert_eq!(events, [Event::Wake { domain: f, vcpu: v }]);
    m.broken[device] = true;
    m.held.insert((page.backend, page.frontend_index, v));
    m.set_req(f, v, Req::Vanished);
    got
}

/// A domain shuts down or crashes (Xen's shutdown hook); often a backend the engine crashed.
fn op_shutdown(m: &mut Model<'_>, input: &mut Input<'_>) {
    let id = match m.crashed.iter().next() {
        Some(&b) if input.one_in(2) => domid(b),
        _ => m.pick_domid(input),
    };
    let index = m.index_of(id);
    if let Some(i) = index {
        m.crashed.remove(&i);
    }
    let got = m.engine.domain_shutdown(m.xen, id);
    let events = m.xen.take_events();
    let mut woken = Vec::new();
    let died = index.is_some_and(|i| m.backend_died(i, &mut woken));
    assert_eq!(got, died, "shutdown of {id:?}");
    assert_eq!(events, woken);
}

/// Xen destroys a domain (`domain_kill`).
fn op_destroy(m: &mut Model<'_>, input: &mut Input<'_>) {
    let id = m.pick_domid(input);
    let index = m.index_of(id);
    let got = m.engine.domain_destroyed(m.xen, id);
    let events = m.xen.take_events();
    assert_eq!(got, index, "destruction of {id:?}");
    let mut woken = Vec::new();
    if let Some(i) = index {
        m.alive[i] = false;
        m.crashed.remove(&i);
        m.backend_died(i, &mut woken);
    }
    assert_eq!(events, woken);
}

type Op = fn(&mut Model<'_>, &mut Input<'_>);

/// Runs the operations `data` describes, drawn from `ops`, then checks that nothing is left
/// hanging: a backend that finally answers everything releases every frontend vCPU.
fn run(topology: usize, data: &[u8], ops: &[Op]) {
    let (engine, xen) = rig_topology(topology);
    let mut m = Model::new(&engine, &xen);
    let mut input = Input::new(data);
    let mut steps = 0;
    while !input.is_empty() && steps < 2048 {
        steps += 1;
        let op = ops[usize::from(input.u8()) % ops.len()];
        op(&mut m, &mut input);
        assert!(xen.take_events().is_empty() && xen.take_posts().is_empty());
        m.check();
    }
    drain(&mut m);
}

/// Every live backend answers what waits on it; every timer fires; every frontend vCPU then
/// completes and can post again.
fn drain(m: &mut Model<'_>) {
    let waiting: Vec<((usize, u32), usize)> = m
        .vcpus
        .iter()
        .filter_map(|(&k, vc)| match vc.req {
            Req::Pending { device, .. } => Some((k, device)),
            _ => None,
        })
        .collect();
    for ((f, v), device) in waiting {
        let page = m.page_of(device);
        if !m.alive[page.backend] {
            continue;
        }
        // Whatever the backend scribbled there, it now answers properly.
        m.xen.set_state(page, v, STATE_IOREQ_INPROCESS);
        m.xen.answer(page, v, 0x5a5a);
        let value = (page.frontend_index as u32) << 16 | v;
        let got = doorbell_write_and_check(
            m,
            domid(page.backend),
            doorbell::COMPLETE,
            Width::Word,
            value,
        );
        let expected = if m.alive[f] {
            DoorbellEvent::Completed {
                frontend: f,
                vcpu: VcpuId(v),
            }
        } else {
            DoorbellEvent::Discarded(Discarded::FrontendGone)
        };
        assert_eq!(got, Ok(expected));
    }
    // Fire every timer still armed, past every deadline.
    m.xen.advance(10_000 * MS);
    let keys: Vec<(usize, u32)> = m.vcpus.keys().copied().collect();
    for &(f, v) in &keys {
        if m.xen.armed(f, v).is_some() {
            expire_and_check(m, f, v);
        }
    }
    for &(f, v) in &keys {
        if m.alive[f] {
            let w = vcpu_work_and_check(m, domid(f), v);
            assert_ne!(w, Work::Waiting, "{f}v{v} hangs");
            assert_eq!(vcpu_work_and_check(m, domid(f), v), Work::Idle);
        }
    }
    // Nothing is awaited now: a COMPLETE on every slot of every page tells which slots the
    // engine holds (`LateAnswer`) and which it does not (`NotAwaited`), without changing any.
    for page in m.xen.page_ids() {
        if m.alive[page.backend] {
            for v in 0..m.xen.slots(page) {
                let value = (page.frontend_index as u32) << 16 | v;
                let id = domid(page.backend);
                let _ = doorbell_write_and_check(m, id, doorbell::COMPLETE, Width::Word, value);
            }
        }
    }
    for &(f, v) in &keys {
        if !m.alive[f] {
            continue;
        }
        // And every vCPU can trap again: never Busy.
        let dev = m
            .config
            .devices()
            .iter()
            .find(|d| usize::from(d.frontend) == f)
            .expect("a device");
        let out = trap_and_check(m, domid(f), v, dev.mmio.start().0, plain_load(), 0);
        assert!(
            matches!(
                out,
                MmioOutcome::Retry | MmioOutcome::Unavailable(_) | MmioOutcome::Answered { .. }
            ),
            "{f}v{v}: {out:?}"
        );
        m.check();
    }
}

/// Operation sequences leaning on frontend traps of every syndrome shape (the standard
/// topology with its default timeouts, or the chain).
pub fn engine_ops(data: &[u8]) {
    let topology = if data.first().is_some_and(|b| b & 0x80 != 0) {
        2
    } else {
        0
    };
    run(
        topology,
        data.get(1..).unwrap_or_default(),
        &[
            op_trap,
            op_trap,
            op_trap,
            op_trap,
            op_answer,
            op_answer,
            op_answer,
            op_slot_write,
            op_complete,
            op_complete,
            op_doorbell_any,
            op_vcpu_work,
            op_vcpu_work,
            op_vcpu_work,
            op_timer,
            op_shutdown,
        ],
    );
}

/// Operation sequences leaning on the doorbell, hostile slot writes, timeouts (held slots,
/// broken devices, late answers) and domain lifetime, over every topology.
pub fn doorbell_ops(data: &[u8]) {
    let topology = usize::from(data.first().copied().unwrap_or(0) % 3);
    run(
        topology,
        data.get(1..).unwrap_or_default(),
        &[
            op_trap,
            op_trap,
            op_trap,
            op_answer,
            op_answer,
            op_slot_write,
            op_slot_write,
            op_complete,
            op_complete,
            op_complete,
            op_raise_irq,
            op_online,
            op_doorbell_any,
            op_vcpu_work,
            op_vcpu_work,
            op_vcpu_work,
            op_timer,
            op_timer,
            op_expire_any,
            op_advance,
            op_shutdown,
            op_destroy,
        ],
    );
}

/// Operation sequences leaning on the fast transport: a backend writing its transport page
/// (valid records, spoiled ones, wake-up arming, polling) while frontend vCPUs access the
/// registers Xen answers, notify, acknowledge, reset, and round trips and deaths go on.
pub fn transport_ops(data: &[u8]) {
    let topology = usize::from(data.first().copied().unwrap_or(0) % 3);
    run(
        topology,
        data.get(1..).unwrap_or_default(),
        &[
            op_transport,
            op_transport,
            op_transport,
            op_fast_trap,
            op_fast_trap,
            op_fast_trap,
            op_fast_trap,
            op_trap,
            op_answer,
            op_answer,
            op_complete,
            op_complete,
            op_raise_irq,
            op_raise_irq,
            op_vcpu_work,
            op_vcpu_work,
            op_timer,
            op_shutdown,
            op_destroy,
        ],
    );
}
