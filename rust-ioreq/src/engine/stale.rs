//! Ioreq slots still held by a request that timed out: Xen gave up on the request, but the
//! backend may still be working on it and may yet write the slot, so nothing new may be posted
//! there until the backend lets go (`docs/backend-abi.md`, "Timeouts").
//!
//! One bit per slot of each ioreq page. Only a timeout sets a bit; only the frontend vCPU that
//! owns the slot clears it, when it next posts and finds the slot released. Doorbell paths only
//! read it (a late `COMPLETE` for a held slot is discarded, not refused).

use crate::abi::SLOTS_PER_PAGE;
use crate::sync::{AtomicU64, Ordering};
use crate::types::VcpuId;

const WORDS: usize = SLOTS_PER_PAGE as usize / 64;

/// The held slots of one ioreq page.
#[derive(Debug)]
pub(crate) struct HeldSlots([AtomicU64; WORDS]);

impl HeldSlots {
    pub(crate) fn new() -> Self {
        HeldSlots(core::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Returns the word and bit of `slot`, if the page has it.
    fn bit(slot: VcpuId) -> Option<(usize, u64)> {
        let i = slot.0 as usize;
        (i < WORDS * 64).then_some((i / 64, 1 << (i % 64)))
    }

    /// Marks `slot` held. SeqCst: it must be visible to the owner before the owner can see its
    /// request settled (the settle that follows is SeqCst too).
    pub(crate) fn hold(&self, slot: VcpuId) {
        if let Some((w, b)) = Self::bit(slot) {
            self.0[w].fetch_or(b, Ordering::SeqCst);
        }
    }

    /// Clears `slot`; returns whether it was held.
    pub(crate) fn release(&self, slot: VcpuId) -> bool {
        Self::bit(slot).is_some_and(|(w, b)| self.0[w].fetch_and(!b, Ordering::SeqCst) & b != 0)
    }

    /// Tells whether `slot` is held.
    pub(crate) fn is_held(&self, slot: VcpuId) -> bool {
        Self::bit(slot).is_some_and(|(w, b)| self.0[w].load(Ordering::Acquire) & b != 0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn hold_release_and_bounds() {
        let h = HeldSlots::new();
        for v in [0, 63, 64, 127] {
            assert!(!h.is_held(VcpuId(v)));
            h.hold(VcpuId(v));
            assert!(h.is_held(VcpuId(v)));
        }
        assert!(!h.is_held(VcpuId(1)) && !h.is_held(VcpuId(65)));
        assert!(h.release(VcpuId(64)));
        assert!(!h.release(VcpuId(64)));
        assert!(!h.is_held(VcpuId(64)) && h.is_held(VcpuId(63)));
        h.hold(VcpuId(128));
        assert!(!h.is_held(VcpuId(128)) && !h.release(VcpuId(128)));
    }
}
