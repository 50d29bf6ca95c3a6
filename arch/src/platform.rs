//! `Platform` over Xen: ioreq slots read and written with volatile accesses and barriers, the
//! transport page's words read (and `wakeup` swapped) and the notify page's counts incremented
//! with atomics, SPI injection, vCPU wake-up, domain crash, the clock and per-vCPU timers
//! through the C glue.
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

/// Returns the word at `offset` of page `page` (a `PAGES` index) of `backend`, if that page is
/// mapped and `offset` is a 4-aligned offset inside it.
fn page_word(backend: usize, page: usize, offset: usize) -> Option<&'static AtomicU32> {
    let base = PAGES.get(backend)?.get(page)?.load(Ordering::Acquire);
    if base.is_null() || !offset.is_multiple_of(4) || offset >= 4096 {
        return None;
    }
    // SAFETY: `base` is Xen's mapping of a whole 4 KiB page the glue allocated for this backend
    // and holds a reference to until an RCU grace period after it left `PAGES`, which this
    // path (a trap, doorbell or completion handler) cannot outlive (see `state.rs`); `offset`
    // is 4-aligned and inside the page, so the word is aligned and valid. Another domain may
    // write it at any time: it is only ever accessed atomically here, through this reference,
    // and never turned into a plain reference to its contents.
    Some(unsafe { AtomicU32::from_ptr(base.add(offset).cast::<u32>()) })
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
        page_word(backend, TRANSPORT_PAGE, offset).map_or(0, |w| w.load(Ordering::Acquire))
    }

    fn transport_swap(&self, backend: DomainIndex, offset: usize, value: u32) -> u32 {
        page_word(backend, TRANSPORT_PAGE, offset).map_or(0, |w| w.swap(value, Ordering::SeqCst))
    }

    fn notify_increment(&self, backend: DomainIndex, offset: usize) {
        if let Some(w) = page_word(backend, NOTIFY_PAGE, offset) {
            w.fetch_add(1, Ordering::SeqCst);
        }
    }
}
