//! The component's globals: the builder during boot, the frozen engine afterwards, the Xen
//! objects (domains, a backend's ioreq, transport and notify pages) the engine refers to by
//! index, and each domain's message budget.
//!
//! A domain's pointers are published once at boot and cleared when Xen destroys the domain
//! (`rust_ioreq_domain_destroyed`), before the glue drops its references after an RCU grace
//! period: a path that loaded a non-null pointer uses it before its pCPU can pass a quiescent
//! state (no softirq runs inside a trap, doorbell, completion or timer handler).

use core::sync::atomic::{AtomicPtr, Ordering};

use rust_ioreq::config::{MAX_DOMAINS, MAX_FRONTENDS_PER_BACKEND};
use rust_ioreq::engine::{Builder, Engine};
use rust_ioreq::ratelimit::RateLimit;
use spin::{Mutex, Once};

use crate::xen::XenDomain;

/// Boot phase: filled by `rust_ioreq_init`, read while Xen builds domains.
pub static BUILDER: Mutex<Option<Builder>> = Mutex::new(None);
/// Run phase: set once, when every domain exists, before any guest runs.
pub static ENGINE: Once<alloc::boxed::Box<Engine>> = Once::new();

/// `struct domain *` of each configured domain, by configuration index; null before it is
/// created and after it is destroyed.
pub static DOMAINS: [AtomicPtr<XenDomain>; MAX_DOMAINS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_DOMAINS];

/// Index in [`PAGES`] of a backend's transport page (after its ioreq pages).
pub const TRANSPORT_PAGE: usize = MAX_FRONTENDS_PER_BACKEND;
/// Index in [`PAGES`] of a backend's notify page.
pub const NOTIFY_PAGE: usize = MAX_FRONTENDS_PER_BACKEND + 1;
/// Pages Xen shares with a backend: one ioreq page per frontend index, the transport page and
/// the notify page (`RUST_IOREQ_BACKEND_PAGES` in the C glue).
pub const BACKEND_PAGES: usize = MAX_FRONTENDS_PER_BACKEND + 2;

/// Xen's mapping of each backend's pages, by [`PAGES`] index (ioreq page of frontend `k` at
/// `k`); null when not (or no longer) mapped.
pub static PAGES: [[AtomicPtr<u8>; BACKEND_PAGES]; MAX_DOMAINS] =
    [const { [const { AtomicPtr::new(core::ptr::null_mut()) }; BACKEND_PAGES] }; MAX_DOMAINS];

/// Message budget of each configured domain, and (last) of everything else.
pub static BUDGETS: Once<[RateLimit; MAX_DOMAINS + 1]> = Once::new();

/// Returns the Xen domain of configuration index `index` (null if not created or destroyed).
pub fn domain(index: usize) -> *mut XenDomain {
    DOMAINS
        .get(index)
        .map_or(core::ptr::null_mut(), |p| p.load(Ordering::Acquire))
}

/// Forgets domain `index`'s Xen objects: nothing loads them from now on.
pub fn forget(index: usize) {
    if let Some(d) = DOMAINS.get(index) {
        d.store(core::ptr::null_mut(), Ordering::Release);
    }
    for page in PAGES.get(index).into_iter().flatten() {
        page.store(core::ptr::null_mut(), Ordering::Release);
    }
}
