//! Model checking of the engine's cross-pCPU paths with `loom` (issue 7, defect 1): every
//! interleaving (and every weak-memory outcome loom models) of a backend's `COMPLETE`s, the
//! frontend's completion and next trap, backend death, and the response timeout, over the
//! engine's real atomics (`src/sync.rs` switches them to loom's).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rust-ioreq --test loom --release`
//! (`make host-test` does, in its own target directory).
#![cfg(loom)]
// Test data: indices and cells are small (the shared `common` helpers narrow them).
#![allow(clippy::cast_possible_truncation)]

mod common;

use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use common::hostdt::{host_dtb, GIC_SPIS};
use common::rig::{domid, standard, BE, BE2, FE};
use common::trap::{load, store, trap};
use rust_ioreq::abi::{
    doorbell, notify, transport, IoReq, STATE_IOREQ_NONE, STATE_IOREQ_READY, STATE_IORESP_READY,
};
use rust_ioreq::config::{Config, DEFAULT_TIMEOUT_MS};
use rust_ioreq::engine::{Builder, DoorbellEvent, Engine, MmioOutcome, Work};
use rust_ioreq::platform::{BackendFault, DomainIndex, PageId, Platform};
use rust_ioreq::types::{Spi, VcpuId, Width};

const BLK: u64 = 0x0200_0000;
const NET: u64 = 0x0200_0200;

/// One ioreq slot as the backend shares it: the flags byte and the data word.
struct Slot {
    flags: AtomicU8,
    data: AtomicU64,
}

/// Words of a transport page the model keeps: the header and device 0's record.
const TRANSPORT_WORDS: usize = 2 * transport::RECORD_SIZE / 4;
/// Words of a notify page the model keeps: device 0's counts.
const NOTIFY_WORDS: usize = transport::MAX_QUEUES as usize;

/// A thread-safe fake of the platform: slots of be's and be2's pages for fe (index 0), be's
/// transport and notify pages (device 0 only), the clock, and a log of crashes and of SPIs.
struct LoomXen {
    pages: Vec<((DomainIndex, usize), Vec<Slot>)>,
    transport: Vec<AtomicU32>,
    notify: Vec<AtomicU32>,
    spis: AtomicU32,
    now: AtomicU64,
    crashes: Mutex<Vec<DomainIndex>>,
}

impl LoomXen {
    fn new() -> LoomXen {
        let page = || {
            (0..2)
                .map(|_| Slot {
                    flags: AtomicU8::new(0),
                    data: AtomicU64::new(0),
                })
                .collect()
        };
        LoomXen {
            pages: vec![
                ((BE, 0), page()),
                ((BE2, 0), page()),
                ((BE, 1), page()),
                ((BE2, 1), page()),
            ],
            transport: (0..TRANSPORT_WORDS).map(|_| AtomicU32::new(0)).collect(),
            notify: (0..NOTIFY_WORDS).map(|_| AtomicU32::new(0)).collect(),
            spis: AtomicU32::new(0),
            now: AtomicU64::new(1),
            crashes: Mutex::new(Vec::new()),
        }
    }

    fn slot(&self, page: PageId, vcpu: VcpuId) -> &Slot {
        let (_, slots) = self
            .pages
            .iter()
            .find(|(k, _)| *k == (page.backend, page.frontend_index))
            .expect("page");
        &slots[vcpu.0 as usize]
    }

    /// Plays the backend: answers slot `vcpu` of `page` (data, then the state, released).
    fn answer(&self, page: PageId, vcpu: u32, data: u64) {
        let s = self.slot(page, VcpuId(vcpu));
        s.data.store(data, Ordering::Relaxed);
        let flags = s.flags.load(Ordering::Relaxed);
        s.flags
            .store((flags & !0xf) | STATE_IORESP_READY, Ordering::Release);
    }

    fn state(&self, page: PageId, vcpu: u32) -> u8 {
        self.slot(page, VcpuId(vcpu)).flags.load(Ordering::Acquire) & 0xf
    }

    fn crashes(&self) -> Vec<DomainIndex> {
        self.crashes.lock().expect("crash log").clone()
    }

    /// Returns be's transport word at `offset`, if the model keeps it.
    fn transport_word(&self, backend: DomainIndex, offset: usize) -> Option<&AtomicU32> {
        (backend == BE)
            .then(|| self.transport.get(offset / 4))
            .flatten()
    }

    /// Plays be at start-up: publishes blk (device 0) with one queue, then the page version.
    fn publish_blk(&self) {
        let record = transport::record(0);
        for (field, value) in [
            (transport::field::DEVICE_ID, 2),
            (transport::field::NUM_QUEUES, 1),
            (transport::field::QUEUE_NUM_MAX, 8),
            (transport::field::PUBLISHED, 1),
        ] {
            self.transport[(record + field) / 4].store(value, Ordering::Release);
        }
        self.transport[transport::VERSION_OFFSET / 4].store(transport::VERSION, Ordering::Release);
    }
}

impl Platform for LoomXen {
    fn post_request(&self, page: PageId, slot: VcpuId, req: &IoReq) {
        let s = self.slot(page, slot);
        assert_eq!(
            s.flags.load(Ordering::Relaxed) & 0xf,
            STATE_IOREQ_NONE,
            "posted over a busy slot"
        );
        s.data.store(req.data, Ordering::Relaxed);
        s.flags.store(req.flags, Ordering::Release);
    }
    fn read_slot(&self, page: PageId, slot: VcpuId) -> IoReq {
        let s = self.slot(page, slot);
        let flags = s.flags.load(Ordering::Acquire);
        IoReq {
            data: s.data.load(Ordering::Relaxed),
            flags,
            ..IoReq::default()
        }
    }
    fn set_slot_flags(&self, page: PageId, slot: VcpuId, flags: u8) {
        self.slot(page, slot).flags.store(flags, Ordering::Release);
    }
    fn inject_spi(&self, domain: DomainIndex, _: Spi) {
        if domain == BE {
            self.spis.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn wake_vcpu(&self, _: DomainIndex, _: VcpuId) {}
    fn crash_domain(&self, domain: DomainIndex, _: BackendFault) {
        self.crashes.lock().expect("crash log").push(domain);
    }
    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
    fn arm_timeout(&self, _: DomainIndex, _: VcpuId, _: u64) {}
    fn transport_read(&self, backend: DomainIndex, offset: usize) -> u32 {
        self.transport_word(backend, offset)
            .map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn transport_write(&self, backend: DomainIndex, offset: usize, value: u32) {
        if let Some(w) = self.transport_word(backend, offset) {
            w.store(value, Ordering::Release);
        }
    }
    fn notify_publish(&self, backend: DomainIndex, offset: usize, value: u32) {
        assert_eq!(backend, BE, "a notify for be only");
        self.notify[offset / 4].store(value, Ordering::Release);
    }
    fn spin_should_stop(&self) -> bool {
        false
    }
}

/// Runs `body` under loom's model checker, in a model thread with a stack big enough to build
/// the engine (large under loom, every atomic being loom's; the default stack overflows).
fn model(body: impl Fn() + Sync + Send + 'static) {
    loom::model(body);
}

/// The engine under test, in a std `Arc` (its reference count is not under test): straight
/// from the builder's box to the `Arc`, with no copy on the model's small stack (the engine is
/// large under loom, every atomic being loom's).
fn engine() -> std::sync::Arc<Engine> {
    let config = Config::from_fdt(&host_dtb(&standard()), GIC_SPIS).expect("valid");
    let names: Vec<String> = config
        .domains()
        .iter()
        .map(|d| d.name.as_str().to_string())
        .collect();
    let mut b = Builder::new(config);
    for (i, n) in names.iter().enumerate() {
        b.domain_created(&format!("/chosen/{n}"), domid(i))
            .expect("bound once");
    }
    std::sync::Arc::from(b.freeze().expect("freeze"))
}

const BE_PAGE: PageId = PageId {
    backend: BE,
    frontend_index: 0,
};
const BE2_PAGE: PageId = PageId {
    backend: BE2,
    frontend_index: 0,
};

fn complete(engine: &Engine, xen: &LoomXen, backend: DomainIndex) -> bool {
    matches!(
        engine.doorbell_write(xen, domid(backend), doorbell::COMPLETE, Width::Word, 0),
        Ok(DoorbellEvent::Completed { .. })
    )
}

/// fe vCPU 0's blk read is posted to be and answered.
fn answered_blk_read() -> (std::sync::Arc<Engine>, Arc<LoomXen>) {
    let engine = engine();
    let xen = Arc::new(LoomXen::new());
    let t = trap(1, 0, BLK, load(2, 3, false));
    assert_eq!(engine.handle_mmio(&*xen, &t, |_| 0), MmioOutcome::Retry);
    xen.answer(BE_PAGE, 0, 0x11);
    (engine, xen)
}

/// The frontend vCPU: waits for its blk read, then reads net (be2).
fn frontend_then_net(engine: &Engine, xen: &LoomXen) -> Work {
    let done = loop {
        match engine.vcpu_work(xen, domid(FE), VcpuId(0)) {
            Work::Waiting => thread::yield_now(),
            w => break w,
        }
    };
    let t = trap(1, 0, NET, load(2, 4, false));
    assert_eq!(engine.handle_mmio(xen, &t, |_| 0), MmioOutcome::Retry);
    done
}

/// Two vCPUs of a hostile backend ring `COMPLETE` for the same request while the frontend
/// completes it and posts its next request to another backend.
#[test]
fn duplicate_completes_never_answer_another_backends_request() {
    model(|| {
        let (engine, xen) = answered_blk_read();
        let spawn_complete = || {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || complete(&e, &x, BE))
        };
        let a = spawn_complete();
        let b = spawn_complete();
        let done = frontend_then_net(&engine, &xen);
        let wins = [a.join().unwrap(), b.join().unwrap()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let Work::Complete(c) = done else {
            panic!("{done:?}")
        };
        assert_eq!(c.write_reg, Some((3, 0x11)));
        // The net request waits on be2, in be2's page, untouched; nobody was crashed.
        assert_eq!(engine.vcpu_work(&*xen, domid(FE), VcpuId(0)), Work::Waiting);
        assert_eq!(xen.state(BE2_PAGE, 0), STATE_IOREQ_READY);
        assert!(xen.crashes().is_empty());
    });
}

/// be dies while it completes the request and the frontend moves on to be2: the death of be
/// must never settle the request of be2 (the scan's compare-exchange is on the whole word).
#[test]
fn a_backend_death_never_settles_another_backends_request() {
    model(|| {
        let (engine, xen) = answered_blk_read();
        let c = {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || complete(&e, &x, BE))
        };
        let d = {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || e.domain_shutdown(&*x, domid(BE)))
        };
        let done = frontend_then_net(&engine, &xen);
        let completed = c.join().unwrap();
        assert!(d.join().unwrap());
        let Work::Complete(first) = done else {
            panic!("{done:?}")
        };
        // Answered (its data) or vanished (all ones), never anything else.
        let expect = if completed { 0x11 } else { 0xffff_ffff };
        assert_eq!(first.write_reg, Some((3, expect)));
        assert_eq!(engine.vcpu_work(&*xen, domid(FE), VcpuId(0)), Work::Waiting);
        assert_eq!(xen.state(BE2_PAGE, 0), STATE_IOREQ_READY);
        assert!(xen.crashes().is_empty());
    });
}

/// The backend answers just as the request's deadline passes: exactly one of the answer and
/// the timeout wins, and the frontend sees that one's result.
#[test]
fn an_answer_and_a_timeout_race_to_exactly_one_result() {
    model(|| {
        let (engine, xen) = answered_blk_read();
        xen.now
            .store(u64::from(DEFAULT_TIMEOUT_MS) * 2_000_000, Ordering::Relaxed);
        let c = {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || complete(&e, &x, BE))
        };
        let expired = engine.expire(&*xen, FE, VcpuId(0)).is_some();
        let completed = c.join().unwrap();
        assert!(
            completed ^ expired,
            "completed {completed}, expired {expired}"
        );
        let Work::Complete(done) = engine.vcpu_work(&*xen, domid(FE), VcpuId(0)) else {
            panic!("not complete")
        };
        let expect = if completed { 0x11 } else { 0xffff_ffff };
        assert_eq!(done.write_reg, Some((3, expect)));
        assert_eq!(engine.is_broken(0), expired);
        assert!(xen.crashes().is_empty());
    });
}

/// A frontend traps while its backend dies: either the trap sees the backend dead, or the
/// death's scan sees the request; the vCPU never waits for a dead backend.
#[test]
fn a_request_posted_while_its_backend_dies_never_waits_forever() {
    model(|| {
        let engine = engine();
        let xen = Arc::new(LoomXen::new());
        let d = {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || e.domain_shutdown(&*x, domid(BE)))
        };
        let t = trap(1, 0, BLK, load(2, 3, false));
        let out = engine.handle_mmio(&*xen, &t, |_| 0);
        assert!(d.join().unwrap());
        assert!(matches!(
            out,
            MmioOutcome::Retry | MmioOutcome::Unavailable(_)
        ));
        assert!(matches!(
            engine.vcpu_work(&*xen, domid(FE), VcpuId(0)),
            Work::Complete(_)
        ));
    });
}

/// fe's vCPU 0 posts a `QueueNotify` of blk (a fast device) while be goes idle: be arms its
/// wake-up, fences and rescans the counts. Either the rescan sees the notify or Xen sends the
/// notify SPI (once): a notify is never left unseen by a sleeping backend.
#[test]
fn a_posted_notify_is_never_lost_by_a_backend_going_idle() {
    model(|| {
        let engine = engine();
        let xen = Arc::new(LoomXen::new());
        xen.publish_blk();
        let (e, x) = (engine.clone(), xen.clone());
        let frontend = thread::spawn(move || {
            let t = trap(1, 0, BLK + 0x50, store(2, 3));
            e.handle_mmio(&*x, &t, |_| 0)
        });
        xen.transport[transport::WAKEUP_OFFSET / 4].store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = xen.notify[notify::count(0, 0) / 4].load(Ordering::Acquire);
        let outcome = frontend.join().unwrap();
        assert_eq!(outcome, MmioOutcome::Answered { write_reg: None });
        let spis = xen.spis.load(Ordering::Relaxed);
        assert!(
            seen == 1 || spis == 1,
            "notify lost: count seen {seen}, {spis} SPIs"
        );
        assert!(spis <= 1, "{spis} SPIs for one arming");
    });
}

/// Two vCPUs of fe post `QueueNotify` of blk at once: both are counted, and the page's count
/// only ever grows (the backend, reading it meanwhile, never sees it go back). The ticket
/// lock's spin multiplies the interleavings: explored with at most three preemptions, loom's
/// usual bound for spinning code.
#[test]
fn concurrent_posted_notifies_are_all_counted() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let engine = engine();
        let xen = Arc::new(LoomXen::new());
        xen.publish_blk();
        let spawn_notify = |vcpu| {
            let (e, x) = (engine.clone(), xen.clone());
            thread::spawn(move || {
                let t = trap(1, vcpu, BLK + 0x50, store(2, 3));
                e.handle_mmio(&*x, &t, |_| 0)
            })
        };
        let a = spawn_notify(0);
        let b = spawn_notify(1);
        let first = xen.notify[notify::count(0, 0) / 4].load(Ordering::Acquire);
        let second = xen.notify[notify::count(0, 0) / 4].load(Ordering::Acquire);
        assert!(
            second >= first,
            "the count went back from {first} to {second}"
        );
        for outcome in [a.join().unwrap(), b.join().unwrap()] {
            assert_eq!(outcome, MmioOutcome::Answered { write_reg: None });
        }
        assert_eq!(
            xen.notify[notify::count(0, 0) / 4].load(Ordering::Acquire),
            2
        );
    });
}
