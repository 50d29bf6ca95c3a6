//! A strict fake of the hypervisor services the engine uses ([`Platform`]), stricter than Xen:
//! any call Xen would have to trust blindly is checked against the configuration, and a
//! violation panics, failing the test.
//!
//! Ioreq pages exist only for the (backend, frontend index) pairs the configuration implies,
//! each with one slot per frontend vCPU. Posting to a page or slot that does not exist, posting
//! over a slot that is not `NONE` (Xen overwriting a request in flight), injecting an SPI the
//! domain does not own, waking a vCPU that does not exist and crashing a domain that is not a
//! backend all panic. Every injection, wake and crash is recorded for the test to check.
//!
//! Time stands still until the test moves it ([`FakeXen::advance`]), or moves by a fixed step
//! at every reading ([`FakeXen::tick_every_read`], for code that spins on the clock); timeouts
//! the engine arms are recorded per vCPU ([`FakeXen::armed`]), and the test fires them by
//! calling the engine.
//!
//! Every backend has a transport page (the test writes it as the backend would) and a notify
//! page (only the engine writes it); touching either of a domain that is no backend, or at an
//! offset that is not 4-aligned inside the page, panics.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use rust_ioreq::abi::{
    IoReq, IOREQ_TYPE_COPY, STATE_IOREQ_INPROCESS, STATE_IOREQ_NONE, STATE_IOREQ_READY,
    STATE_IORESP_READY,
};
use rust_ioreq::config::Config;
use rust_ioreq::platform::{BackendFault, DomainIndex, PageId, Platform};
use rust_ioreq::types::{Spi, VcpuId};

/// Something the engine asked the hypervisor to do to a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `inject_spi`.
    Inject {
        /// Domain index.
        domain: DomainIndex,
        /// SPI number.
        spi: u32,
    },
    /// `wake_vcpu`.
    Wake {
        /// Domain index.
        domain: DomainIndex,
        /// vCPU id.
        vcpu: u32,
    },
    /// `crash_domain`.
    Crash {
        /// Domain index.
        domain: DomainIndex,
    },
}

/// The strict fake.
#[derive(Debug)]
pub struct FakeXen {
    pages: BTreeMap<(DomainIndex, usize), RefCell<Vec<IoReq>>>,
    /// SPIs each domain owns: its devices' SPIs (frontend), its notify SPI (backend).
    spis: Vec<Vec<u32>>,
    vcpus: Vec<u32>,
    frontend: Vec<bool>,
    backend: Vec<bool>,
    events: RefCell<Vec<Event>>,
    posts: RefCell<Vec<(PageId, u32, IoReq)>>,
    faults: RefCell<Vec<(DomainIndex, BackendFault)>>,
    clock: Cell<u64>,
    tick: Cell<u64>,
    softirq_pending: Cell<bool>,
    armed: RefCell<BTreeMap<(DomainIndex, u32), u64>>,
    transport: BTreeMap<DomainIndex, RefCell<Vec<u32>>>,
    notify: BTreeMap<DomainIndex, RefCell<Vec<u32>>>,
}

/// Words in a 4 KiB page.
const PAGE_WORDS: usize = 1024;

impl FakeXen {
    /// Builds the pages and ownership tables `config` implies.
    pub fn new(config: &Config) -> FakeXen {
        let n = config.domains().len();
        let mut spis = vec![Vec::new(); n];
        let mut frontend = vec![false; n];
        let mut backend = vec![false; n];
        let mut pages = BTreeMap::new();
        for (i, d) in config.domains().iter().enumerate() {
            if let Some(b) = d.backend {
                backend[i] = true;
                spis[i].push(b.notify_spi.0);
                for (k, &fe) in b.frontends.iter().enumerate() {
                    let slots = config.domains()[usize::from(fe)].vcpus as usize;
                    pages.insert((i, k), RefCell::new(vec![IoReq::default(); slots]));
                }
            }
        }
        for dev in config.devices() {
            spis[usize::from(dev.frontend)].push(dev.spi.0);
            frontend[usize::from(dev.frontend)] = true;
        }
        let pages_of_backends = || {
            backend
                .iter()
                .enumerate()
                .filter(|(_, &b)| b)
                .map(|(i, _)| (i, RefCell::new(vec![0; PAGE_WORDS])))
                .collect::<BTreeMap<_, _>>()
        };
        let (transport, notify) = (pages_of_backends(), pages_of_backends());
        FakeXen {
            pages,
            spis,
            vcpus: config.domains().iter().map(|d| d.vcpus).collect(),
            frontend,
            backend,
            events: RefCell::new(Vec::new()),
            posts: RefCell::new(Vec::new()),
            faults: RefCell::new(Vec::new()),
            // Not zero: a real system has been up for a while.
            clock: Cell::new(1_000_000_000),
            tick: Cell::new(0),
            softirq_pending: Cell::new(false),
            armed: RefCell::new(BTreeMap::new()),
            transport,
            notify,
        }
    }

    /// Says whether the pCPU has softirqs pending (a polling spin must stop).
    pub fn set_softirq_pending(&self, pending: bool) {
        self.softirq_pending.set(pending);
    }

    /// Makes every later reading of the clock advance it by `ns` first.
    pub fn tick_every_read(&self, ns: u64) {
        self.tick.set(ns);
    }

    fn word<'a>(
        pages: &'a BTreeMap<DomainIndex, RefCell<Vec<u32>>>,
        backend: DomainIndex,
        offset: usize,
        what: &str,
    ) -> (&'a RefCell<Vec<u32>>, usize) {
        let page = pages
            .get(&backend)
            .unwrap_or_else(|| panic!("{what} of domain {backend}, which is no backend"));
        assert!(
            offset.is_multiple_of(4) && offset < 4 * PAGE_WORDS,
            "{what} at offset {offset:#x}"
        );
        (page, offset / 4)
    }

    /// Writes a word of `backend`'s transport page, as the backend does.
    pub fn backend_writes_transport(&self, backend: DomainIndex, offset: usize, value: u32) {
        let (page, i) = Self::word(&self.transport, backend, offset, "a transport write");
        page.borrow_mut()[i] = value;
    }

    /// Returns a word of `backend`'s transport page.
    pub fn transport_word(&self, backend: DomainIndex, offset: usize) -> u32 {
        let (page, i) = Self::word(&self.transport, backend, offset, "a transport read");
        let v = page.borrow()[i];
        v
    }

    /// Returns a word of `backend`'s notify page.
    pub fn notify_word(&self, backend: DomainIndex, offset: usize) -> u32 {
        let (page, i) = Self::word(&self.notify, backend, offset, "a notify read");
        let v = page.borrow()[i];
        v
    }

    fn page(&self, page: PageId, what: &str) -> &RefCell<Vec<IoReq>> {
        self.pages
            .get(&(page.backend, page.frontend_index))
            .unwrap_or_else(|| {
                panic!("{what} on {page:?}, a page the configuration does not imply")
            })
    }

    fn check_slot(&self, page: PageId, slot: VcpuId, what: &str) -> usize {
        let len = self.page(page, what).borrow().len();
        let i = slot.0 as usize;
        assert!(
            i < len,
            "{what} on slot {} of {page:?}, which has {len} slots",
            slot.0
        );
        i
    }

    /// Returns the pages that exist, as (backend, frontend index).
    pub fn page_ids(&self) -> Vec<PageId> {
        self.pages
            .keys()
            .map(|&(backend, frontend_index)| PageId {
                backend,
                frontend_index,
            })
            .collect()
    }

    /// Returns the number of slots of `page`.
    pub fn slots(&self, page: PageId) -> u32 {
        self.page(page, "slots").borrow().len() as u32
    }

    /// Returns slot `vcpu` of `page` as the backend would read it.
    pub fn slot(&self, page: PageId, vcpu: u32) -> IoReq {
        let i = self.check_slot(page, VcpuId(vcpu), "backend read");
        self.page(page, "backend read").borrow()[i]
    }

    /// Plays a well-behaved backend: answers the `READY`/`INPROCESS` request in the slot.
    pub fn answer(&self, page: PageId, vcpu: u32, data: u64) {
        let i = self.check_slot(page, VcpuId(vcpu), "backend answer");
        let mut slots = self.page(page, "backend answer").borrow_mut();
        let s = &mut slots[i];
        assert!(
            matches!(s.state(), STATE_IOREQ_READY | STATE_IOREQ_INPROCESS),
            "test bug: answering slot {vcpu} of {page:?} in state {}",
            s.state()
        );
        if s.is_read() {
            s.data = data;
        }
        s.flags = (s.flags & !0xf) | STATE_IORESP_READY;
    }

    /// Plays any backend, hostile included: writes the state bits of a slot.
    pub fn set_state(&self, page: PageId, vcpu: u32, state: u8) {
        let i = self.check_slot(page, VcpuId(vcpu), "backend write");
        let mut slots = self.page(page, "backend write").borrow_mut();
        slots[i].flags = (slots[i].flags & !0xf) | (state & 0xf);
    }

    /// Plays any backend: writes a whole slot.
    pub fn set_slot(&self, page: PageId, vcpu: u32, req: IoReq) {
        let i = self.check_slot(page, VcpuId(vcpu), "backend write");
        self.page(page, "backend write").borrow_mut()[i] = req;
    }

    /// Returns and forgets the recorded events.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.borrow_mut())
    }

    /// Returns the recorded events.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    /// Returns and forgets the posted requests, as (page, slot, request).
    pub fn take_posts(&self) -> Vec<(PageId, u32, IoReq)> {
        std::mem::take(&mut *self.posts.borrow_mut())
    }

    /// Returns and forgets why domains were crashed.
    pub fn take_faults(&self) -> Vec<(DomainIndex, BackendFault)> {
        std::mem::take(&mut *self.faults.borrow_mut())
    }

    /// Moves the clock forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.clock.set(self.clock.get() + ns);
    }

    /// Returns the deadline last armed for `vcpu` of `domain`.
    pub fn armed(&self, domain: DomainIndex, vcpu: u32) -> Option<u64> {
        self.armed.borrow().get(&(domain, vcpu)).copied()
    }

    /// Tells whether every slot of every page is `NONE`.
    pub fn all_idle(&self) -> bool {
        self.pages
            .values()
            .all(|p| p.borrow().iter().all(|s| s.state() == STATE_IOREQ_NONE))
    }
}

impl Platform for FakeXen {
    fn post_request(&self, page: PageId, slot: VcpuId, req: &IoReq) {
        let i = self.check_slot(page, slot, "post_request");
        let mut slots = self.page(page, "post_request").borrow_mut();
        let current = slots[i].state();
        assert_eq!(
            current, STATE_IOREQ_NONE,
            "post_request over slot {} of {page:?} in state {current}: a request in flight \
             would be overwritten",
            slot.0
        );
        assert_eq!(
            req.state(),
            STATE_IOREQ_READY,
            "posted request not READY: {req:?}"
        );
        assert_eq!(
            (req.count, req.kind),
            (1, IOREQ_TYPE_COPY),
            "bad request {req:?}"
        );
        assert!(matches!(req.size, 1 | 2 | 4 | 8), "bad size in {req:?}");
        assert_eq!((req.vp_eport, req.pad0), (0, 0), "junk in {req:?}");
        assert_eq!(req.flags & !0x2f, 0, "data_is_ptr/df/pad set in {req:?}");
        if !req.is_read() {
            let mask = if req.size == 8 {
                u64::MAX
            } else {
                (1u64 << (req.size * 8)) - 1
            };
            assert_eq!(
                req.data & !mask,
                0,
                "write data wider than the access: {req:?}"
            );
        } else {
            assert_eq!(req.data, 0, "a read carries data (leak?): {req:?}");
        }
        slots[i] = *req;
        self.posts.borrow_mut().push((page, slot.0, *req));
    }

    fn read_slot(&self, page: PageId, slot: VcpuId) -> IoReq {
        let i = self.check_slot(page, slot, "read_slot");
        self.page(page, "read_slot").borrow()[i]
    }

    fn set_slot_flags(&self, page: PageId, slot: VcpuId, flags: u8) {
        let i = self.check_slot(page, slot, "set_slot_flags");
        assert_eq!(
            flags & 0xf,
            STATE_IOREQ_NONE,
            "set_slot_flags to anything but NONE"
        );
        self.page(page, "set_slot_flags").borrow_mut()[i].flags = flags;
    }

    fn inject_spi(&self, domain: DomainIndex, spi: Spi) {
        let owned = self
            .spis
            .get(domain)
            .unwrap_or_else(|| panic!("inject_spi into unknown domain {domain}"));
        assert!(
            owned.contains(&spi.0),
            "inject_spi of SPI {} into domain {domain}, which owns only {owned:?}",
            spi.0
        );
        self.events
            .borrow_mut()
            .push(Event::Inject { domain, spi: spi.0 });
    }

    fn wake_vcpu(&self, domain: DomainIndex, vcpu: VcpuId) {
        let n = *self
            .vcpus
            .get(domain)
            .unwrap_or_else(|| panic!("wake_vcpu in unknown domain {domain}"));
        assert!(
            vcpu.0 < n,
            "wake_vcpu of vCPU {} of domain {domain}, which has {n}",
            vcpu.0
        );
        assert!(
            self.frontend[domain],
            "wake_vcpu in domain {domain}, which is no frontend"
        );
        self.events.borrow_mut().push(Event::Wake {
            domain,
            vcpu: vcpu.0,
        });
    }

    fn crash_domain(&self, domain: DomainIndex, why: BackendFault) {
        assert!(
            self.backend.get(domain).copied().unwrap_or(false),
            "crash_domain of domain {domain}, which is no backend"
        );
        self.events.borrow_mut().push(Event::Crash { domain });
        self.faults.borrow_mut().push((domain, why));
    }

    fn now(&self) -> u64 {
        self.clock.set(self.clock.get() + self.tick.get());
        self.clock.get()
    }

    fn arm_timeout(&self, domain: DomainIndex, vcpu: VcpuId, deadline: u64) {
        let n = *self
            .vcpus
            .get(domain)
            .unwrap_or_else(|| panic!("arm_timeout in unknown domain {domain}"));
        assert!(
            vcpu.0 < n && self.frontend[domain],
            "arm_timeout for vCPU {} of domain {domain}, no frontend vCPU",
            vcpu.0
        );
        assert!(
            deadline > self.clock.get(),
            "arm_timeout with a deadline in the past"
        );
        self.armed.borrow_mut().insert((domain, vcpu.0), deadline);
    }

    fn transport_read(&self, backend: DomainIndex, offset: usize) -> u32 {
        self.transport_word(backend, offset)
    }

    fn transport_write(&self, backend: DomainIndex, offset: usize, value: u32) {
        let (page, i) = Self::word(&self.transport, backend, offset, "transport_write");
        page.borrow_mut()[i] = value;
    }

    fn notify_publish(&self, backend: DomainIndex, offset: usize, value: u32) {
        let (page, i) = Self::word(&self.notify, backend, offset, "notify_publish");
        page.borrow_mut()[i] = value;
    }

    fn spin_should_stop(&self) -> bool {
        self.softirq_pending.get()
    }
}
