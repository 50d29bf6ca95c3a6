//! Ioreq slots still held by a request that timed out: Xen gave up on the request, but the
//! backend may still be working on it and may yet write the slot, so nothing new may be posted
//! there until the backend lets go (`docs/backend-abi.md`, "Timeouts").
//!
//! Two bits per slot of each ioreq page:
//!
//! - *held*: only a timeout sets it; only the frontend vCPU that owns the slot clears it, when
//!   it next posts and finds the slot released. While it is set, every `COMPLETE` for the slot
//!   is the timed-out request's (nothing else can have been posted there): discarded, never
//!   settling the vCPU's record, which may hold a request that was published but never posted.
//! - *owed*: the slot was released because the backend wrote IORESP_READY, whose `COMPLETE`
//!   may still be on its way while the vCPU posts its next request there. Set by the owner
//!   before it clears *held*; the first `COMPLETE` for the slot that has nothing to answer
//!   consumes it (discarded, not refused); a `COMPLETE` that answers a request clears it.
//!   At worst one protocol error of that backend goes unrefused.

use crate::abi::SLOTS_PER_PAGE;
use crate::sync::{AtomicU64, Ordering};
use crate::types::VcpuId;

const WORDS: usize = SLOTS_PER_PAGE as usize / 64;

/// The held slots of one ioreq page, and the slots owed a late `COMPLETE`.
#[derive(Debug)]
pub(crate) struct HeldSlots {
    held: [AtomicU64; WORDS],
    owed: [AtomicU64; WORDS],
}

impl HeldSlots {
    pub(crate) fn new() -> Self {
        HeldSlots {
            held: core::array::from_fn(|_| AtomicU64::new(0)),
            owed: core::array::from_fn(|_| AtomicU64::new(0)),
        }
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
            self.held[w].fetch_or(b, Ordering::SeqCst);
        }
    }

    /// Clears `slot`; returns whether it was held.
    pub(crate) fn release(&self, slot: VcpuId) -> bool {
        Self::bit(slot).is_some_and(|(w, b)| self.held[w].fetch_and(!b, Ordering::SeqCst) & b != 0)
    }

    /// Clears `slot`, which the backend released by answering: its `COMPLETE` is owed. The
    /// owed bit is set first, so a `COMPLETE` that no longer sees the slot held sees it owed.
    pub(crate) fn release_answered(&self, slot: VcpuId) {
        if let Some((w, b)) = Self::bit(slot) {
            self.owed[w].fetch_or(b, Ordering::SeqCst);
            self.held[w].fetch_and(!b, Ordering::SeqCst);
        }
    }

    /// Tells whether `slot` is held.
    pub(crate) fn is_held(&self, slot: VcpuId) -> bool {
        Self::bit(slot).is_some_and(|(w, b)| self.held[w].load(Ordering::SeqCst) & b != 0)
    }

    /// Consumes the late `COMPLETE` owed for `slot`; returns whether one was.
    pub(crate) fn take_owed(&self, slot: VcpuId) -> bool {
        Self::bit(slot).is_some_and(|(w, b)| self.owed[w].fetch_and(!b, Ordering::SeqCst) & b != 0)
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

    #[test]
    fn a_slot_released_by_an_answer_owes_one_complete() {
        let h = HeldSlots::new();
        h.hold(VcpuId(3));
        assert!(!h.take_owed(VcpuId(3)));
        h.release_answered(VcpuId(3));
        assert!(!h.is_held(VcpuId(3)));
        assert!(h.take_owed(VcpuId(3)));
        assert!(!h.take_owed(VcpuId(3)));
        h.release_answered(VcpuId(200));
        assert!(!h.take_owed(VcpuId(200)));
    }
}
