//! `Platform` over Xen: ioreq slots read and written with volatile accesses and barriers, the
//! transport and notify pages' words loaded and stored atomically (never read-modify-written:
//! the backend can write them), SPI injection, vCPU wake-up, domain crash, the clock,
//! per-vCPU timers and the softirq check through the C glue.
//!
//! Domains and pages are reached through `state`: null once Xen destroyed the domain, in which
//! case the call does nothing (the engine has already forgotten the domain; see `state.rs` for
//! why a pointer loaded non-null stays valid for the rest of the call).

use core::ffi::c_uint;
use core::ptr;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use rust_ioreq::abi::{IoReq, IOREQ_FLAGS_OFFSET, IOREQ_SIZE, SLOTS_PER_PAGE};
use rust_ioreq::platform::{BackendFault, DomainIndex, PageId, Platform};
use rust_ioreq::types::{Spi, VcpuId};

use crate::state::{domain, NOTIFY_PAGE, PAGES, TRANSPORT_PAGE};
use crate::xen;

/// The Xen implementation of the core's `Platform`.
pub struct XenPlatform;

/// Returns a pointer to `slot` of `page`, or `None` if the page was never mapped.
fn slot_ptr(page: PageId, slot: VcpuId) -> Option<*mut u8> {
    let base = PAGES
        .get(page.backend)?
        .get(page.frontend_index)?
        .load(Ordering::Acquire);
    if base.is_null() || slot.0 >= SLOTS_PER_PAGE {
        return None;
    }
    // In bounds: slot < SLOTS_PER_PAGE, so the slot lies inside the 4 KiB page.
    Some(base.wrapping_add(slot.0 as usize * IOREQ_SIZE))
}

/// Runs `f` on the word at `offset` of page `page` (a `PAGES` index) of `backend`, if that
/// page is mapped and `offset` is a 4-aligned offset inside it. The word is only lent to `f`:
/// the page may go (after an RCU grace period) once this returns.
fn with_page_word<T>(
    backend: usize,
    page: usize,
    offset: usize,
    f: impl FnOnce(&AtomicU32) -> T,
) -> Option<T> {
    let base = PAGES.get(backend)?.get(page)?.load(Ordering::Acquire);
    if base.is_null() || !offset.is_multiple_of(4) || offset >= 4096 {
        return None;
    }
    // SAFETY: `base` is Xen's mapping of a whole 4 KiB page the glue allocated for this backend
    // and holds a reference to until an RCU grace period after it left `PAGES`, which this
    // call (inside a trap, doorbell or completion handler, where no softirq runs) cannot
    // outlive (see `state.rs`); `offset` is 4-aligned and inside the page, so the word is
    // aligned and valid for the call. Another domain may write it at any time: it is only ever
    // loaded and stored atomically, and never turned into a plain reference to its contents.
    let word = unsafe { AtomicU32::from_ptr(base.add(offset).cast::<u32>()) };
    Some(f(word))
}

impl Platform for XenPlatform {
    fn post_request(&self, page: PageId, slot: VcpuId, req: &IoReq) {
        let Some(p) = slot_ptr(page, slot) else {
            return;
        };
        // SAFETY: `p` points to a 32-byte slot inside a page Xen allocated for this backend,
        // which the glue holds a reference to until an RCU grace period after the page left
        // `PAGES` (see `state.rs`); it is 8-byte aligned (page-aligned base, 32-byte slots). The
        // backend may write it concurrently, so every access is volatile and no reference is
        // formed.
        unsafe {
            ptr::write_volatile(p.cast::<u64>(), req.addr);
            ptr::write_volatile(p.add(8).cast::<u64>(), req.data);
            ptr::write_volatile(p.add(16).cast::<u32>(), req.count);
            ptr::write_volatile(p.add(20).cast::<u32>(), req.size);
            ptr::write_volatile(p.add(24).cast::<u32>(), req.vp_eport);
            ptr::write_volatile(p.add(28).cast::<u16>(), req.pad0);
            ptr::write_volatile(p.add(31), req.kind);
        }
        // The backend must see every field before the state says READY.
        fence(Ordering::SeqCst);
        // SAFETY: as above; the flags byte is at offset 30 of the slot.
        unsafe { ptr::write_volatile(p.add(IOREQ_FLAGS_OFFSET), req.flags) };
        fence(Ordering::SeqCst);
    }

    fn read_slot(&self, page: PageId, slot: VcpuId) -> IoReq {
        let Some(p) = slot_ptr(page, slot) else {
            return IoReq::default();
        };
        // Read the state first, then the data it vouches for.
        // SAFETY: as in `post_request`: an aligned slot of a live page, read volatile, copied out.
        let flags = unsafe { ptr::read_volatile(p.add(IOREQ_FLAGS_OFFSET)) };
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe {
            IoReq {
                addr: ptr::read_volatile(p.cast::<u64>()),
                data: ptr::read_volatile(p.add(8).cast::<u64>()),
                count: ptr::read_volatile(p.add(16).cast::<u32>()),
                size: ptr::read_volatile(p.add(20).cast::<u32>()),
                vp_eport: ptr::read_volatile(p.add(24).cast::<u32>()),
                pad0: ptr::read_volatile(p.add(28).cast::<u16>()),
                flags,
                kind: ptr::read_volatile(p.add(31)),
            }
        }
    }

    fn set_slot_flags(&self, page: PageId, slot: VcpuId, flags: u8) {
        let Some(p) = slot_ptr(page, slot) else {
            return;
        };
        fence(Ordering::SeqCst);
        // SAFETY: as in `post_request`.
        unsafe { ptr::write_volatile(p.add(IOREQ_FLAGS_OFFSET), flags) };
    }

    fn inject_spi(&self, d: DomainIndex, spi: Spi) {
        let dom = domain(d);
        if !dom.is_null() {
            // SAFETY: `dom` is a live domain recorded at boot and not destroyed (see `state.rs`).
            unsafe { xen::rust_xen_inject_spi(dom, spi.0) };
        }
    }

    fn wake_vcpu(&self, d: DomainIndex, vcpu: VcpuId) {
        let dom = domain(d);
        if !dom.is_null() {
            // SAFETY: as in `inject_spi`; the glue checks `vcpu` against the domain's vCPUs.
            unsafe { xen::rust_xen_wake_vcpu(dom, vcpu.0) };
        }
    }

    fn crash_domain(&self, d: DomainIndex, why: BackendFault) {
        let dom = domain(d);
        if !dom.is_null() {
            // Once per domain: a crashed backend is dead, and nothing crashes it again.
            if let Some(e) = crate::state::ENGINE.get() {
                log!(
                    "backend {} broke the slot protocol ({}): crashing it",
                    e.config().domains()[d].name,
                    why
                );
            }
            // SAFETY: as in `inject_spi`.
            unsafe { xen::rust_xen_domain_crash(dom) };
        }
    }

    fn now(&self) -> u64 {
        // SAFETY: only reads Xen's clock.
        unsafe { xen::rust_xen_now() }
    }

    fn arm_timeout(&self, frontend: DomainIndex, vcpu: VcpuId, deadline: u64) {
        if !domain(frontend).is_null() {
            // SAFETY: the glue's timers of `frontend` exist while the domain is recorded, and
            // `vcpu` is checked against them there.
            unsafe { xen::rust_xen_set_timer(frontend as c_uint, vcpu.0, deadline) };
        }
    }

    fn transport_read(&self, backend: DomainIndex, offset: usize) -> u32 {
        with_page_word(backend, TRANSPORT_PAGE, offset, |w| {
            w.load(Ordering::Acquire)
        })
        .unwrap_or(0)
    }

    fn transport_write(&self, backend: DomainIndex, offset: usize, value: u32) {
        with_page_word(backend, TRANSPORT_PAGE, offset, |w| {
            w.store(value, Ordering::Release)
        });
    }

    fn notify_publish(&self, backend: DomainIndex, offset: usize, value: u32) {
        // A release store (`stlr`): the ring writes the count vouches for, acquired by the
        // engine's load of Xen's own count, are visible before it.
        with_page_word(backend, NOTIFY_PAGE, offset, |w| {
            w.store(value, Ordering::Release)
        });
    }

    fn spin_should_stop(&self) -> bool {
        // SAFETY: only reads this pCPU's pending-softirq word.
        unsafe { xen::rust_xen_softirq_pending() }
    }
}
