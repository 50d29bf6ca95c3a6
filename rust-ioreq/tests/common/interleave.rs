//! A [`Platform`] that forwards to the strict fake and runs a scripted interleaving right after
//! a chosen call returns: the deterministic way to put another pCPU's work between two steps
//! of one engine path (the window between a check and its compare-exchange).

use std::cell::{Cell, RefCell};

use rust_ioreq::abi::IoReq;
use rust_ioreq::platform::{BackendFault, DomainIndex, PageId, Platform};
use rust_ioreq::types::{Spi, VcpuId};

use super::fake::FakeXen;

/// A script run once, after the `nth` `read_slot` (counting from 1) returns.
type Script<'a> = Box<dyn FnOnce() + 'a>;

/// The strict fake with one interleaving point.
pub struct Interleave<'a> {
    xen: &'a FakeXen,
    reads: Cell<u32>,
    nth: u32,
    script: RefCell<Option<Script<'a>>>,
}

impl<'a> Interleave<'a> {
    /// Runs `script` right after the `nth` `read_slot` made through this platform returns.
    pub fn after_read_slot(xen: &'a FakeXen, nth: u32, script: impl FnOnce() + 'a) -> Self {
        Interleave {
            xen,
            reads: Cell::new(0),
            nth,
            script: RefCell::new(Some(Box::new(script))),
        }
    }

    /// Tells whether the script ran.
    pub fn ran(&self) -> bool {
        self.script.borrow().is_none()
    }
}

impl Platform for Interleave<'_> {
    fn post_request(&self, page: PageId, slot: VcpuId, req: &IoReq) {
        self.xen.post_request(page, slot, req)
    }
    fn read_slot(&self, page: PageId, slot: VcpuId) -> IoReq {
        let value = self.xen.read_slot(page, slot);
        self.reads.set(self.reads.get() + 1);
        if self.reads.get() == self.nth {
            let script = self.script.borrow_mut().take();
            if let Some(script) = script {
                script();
            }
        }
        value
    }
    fn set_slot_flags(&self, page: PageId, slot: VcpuId, flags: u8) {
        self.xen.set_slot_flags(page, slot, flags)
    }
    fn inject_spi(&self, domain: DomainIndex, spi: Spi) {
        self.xen.inject_spi(domain, spi)
    }
    fn wake_vcpu(&self, domain: DomainIndex, vcpu: VcpuId) {
        self.xen.wake_vcpu(domain, vcpu)
    }
    fn crash_domain(&self, domain: DomainIndex, why: BackendFault) {
        self.xen.crash_domain(domain, why)
    }
    fn now(&self) -> u64 {
        self.xen.now()
    }
    fn arm_timeout(&self, frontend: DomainIndex, vcpu: VcpuId, deadline: u64) {
        self.xen.arm_timeout(frontend, vcpu, deadline)
    }
    fn transport_read(&self, backend: DomainIndex, offset: usize) -> u32 {
        self.xen.transport_read(backend, offset)
    }
    fn transport_write(&self, backend: DomainIndex, offset: usize, value: u32) {
        self.xen.transport_write(backend, offset, value)
    }
    fn notify_publish(&self, backend: DomainIndex, offset: usize, value: u32) {
        self.xen.notify_publish(backend, offset, value)
    }
    fn spin_should_stop(&self) -> bool {
        self.xen.spin_should_stop()
    }
}
