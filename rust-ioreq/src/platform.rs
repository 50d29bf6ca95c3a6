//! What the core asks of the hypervisor: the trait `arch/` implements over Xen and host tests
//! implement with a strict fake.

use core::fmt;

use crate::abi::IoReq;
use crate::types::{Spi, VcpuId};

/// Index of a domain in the configuration (`/chosen` order), not a Xen domid.
pub type DomainIndex = usize;

/// An ioreq page: the one of frontend `frontend_index` in backend `backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageId {
    /// Backend domain.
    pub backend: DomainIndex,
    /// Frontend index `k` within that backend.
    pub frontend_index: usize,
}

/// Why the engine crashes a backend: it broke the slot protocol in a way that cannot be waited
/// out (`docs/backend-abi.md`, "When a backend breaks the slot protocol").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendFault {
    /// Xen was about to post and found the slot in `state`, although nothing was posted there.
    WroteIdleSlot {
        /// The frontend vCPU (slot index).
        vcpu: VcpuId,
        /// The state found.
        state: u8,
    },
    /// After its `COMPLETE`, the slot was no longer `IORESP_READY` when the vCPU completed.
    MovedSlotBackwards {
        /// The frontend vCPU (slot index).
        vcpu: VcpuId,
        /// The state found.
        state: u8,
    },
}

impl fmt::Display for BackendFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendFault::WroteIdleSlot { vcpu, state } => write!(
                f,
                "slot {} is in state {state} with nothing posted there",
                vcpu.0
            ),
            BackendFault::MovedSlotBackwards { vcpu, state } => write!(
                f,
                "slot {} went from IORESP_READY to state {state} after COMPLETE",
                vcpu.0
            ),
        }
    }
}

/// Hypervisor services used on the trap, completion, doorbell and timer paths. None may
/// allocate or block.
pub trait Platform {
    /// Writes `req` into `slot` of `page`: every field except the flags byte, then a write
    /// barrier, then the flags byte (which carries `state = READY`).
    fn post_request(&self, page: PageId, slot: VcpuId, req: &IoReq);
    /// Reads `slot` of `page`, each field exactly once (the backend may write it concurrently).
    fn read_slot(&self, page: PageId, slot: VcpuId) -> IoReq;
    /// Writes the flags byte of `slot` (used to return it to `NONE`).
    fn set_slot_flags(&self, page: PageId, slot: VcpuId, flags: u8);
    /// Raises `spi` in `domain` (edge: one injection per call).
    fn inject_spi(&self, domain: DomainIndex, spi: Spi);
    /// Wakes `vcpu` of `domain` if it is blocked waiting for its request.
    fn wake_vcpu(&self, domain: DomainIndex, vcpu: VcpuId);
    /// Crashes backend `domain`, saying why first.
    fn crash_domain(&self, domain: DomainIndex, why: BackendFault);
    /// Returns the hypervisor's monotonic system time, in nanoseconds.
    fn now(&self) -> u64;
    /// Asks for `Engine::expire(frontend, vcpu)` to run at or after `deadline` (nanoseconds of
    /// [`now`](Self::now)), replacing any earlier request for that vCPU.
    fn arm_timeout(&self, frontend: DomainIndex, vcpu: VcpuId, deadline: u64);
    /// Reads the 32-bit word at `offset` (4-aligned, below 4096) of `backend`'s transport page,
    /// once (the backend may write it at any time); 0 if the backend has no such page.
    fn transport_read(&self, backend: DomainIndex, offset: usize) -> u32;
    /// Stores `value` into the word at `offset` of `backend`'s transport page (release; nothing
    /// if there is no such page). Never a read-modify-write: on memory another domain writes,
    /// an exclusive-access retry loop would be unbounded (XSA-295's class).
    fn transport_write(&self, backend: DomainIndex, offset: usize, value: u32);
    /// Stores `value` into the word at `offset` (4-aligned, below 4096) of `backend`'s notify
    /// page, ordered after everything this pCPU saw before (release; a plain store, as above).
    fn notify_publish(&self, backend: DomainIndex, offset: usize, value: u32);
    /// Tells whether the pCPU has work pending (softirqs) that a spin must not delay.
    fn spin_should_stop(&self) -> bool;
}
