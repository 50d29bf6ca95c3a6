//! The component's globals: the builder during boot, the frozen engine afterwards, and the
//! Xen objects (domains, ioreq pages) the engine refers to by index.

use core::sync::atomic::{AtomicPtr, Ordering};

use rust_ioreq::config::{MAX_DOMAINS, MAX_FRONTENDS_PER_BACKEND};
use rust_ioreq::engine::{Builder, Engine};
use spin::{Mutex, Once};

use crate::xen::XenDomain;

/// Boot phase: filled by `rust_ioreq_init`, read while Xen builds domains.
pub static BUILDER: Mutex<Option<Builder>> = Mutex::new(None);
/// Run phase: set once, when every domain exists, before any guest runs.
pub static ENGINE: Once<Engine> = Once::new();

/// `struct domain *` of each configured domain, by configuration index.
pub static DOMAINS: [AtomicPtr<XenDomain>; MAX_DOMAINS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_DOMAINS];

/// Xen's mapping of each backend's ioreq page per frontend index.
pub static PAGES: [[AtomicPtr<u8>; MAX_FRONTENDS_PER_BACKEND]; MAX_DOMAINS] =
    [const { [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_FRONTENDS_PER_BACKEND] };
        MAX_DOMAINS];

/// Returns the Xen domain of configuration index `index` (null if not created).
pub fn domain(index: usize) -> *mut XenDomain {
    DOMAINS
        .get(index)
        .map_or(core::ptr::null_mut(), |p| p.load(Ordering::Acquire))
}
