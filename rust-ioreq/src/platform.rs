//! What the core asks of the hypervisor: the trait `arch/` implements over Xen and host tests
//! implement with a strict fake.

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

/// Hypervisor services used on the trap, completion and doorbell paths. None may allocate or
/// block; all are called with the frontend's or backend's vCPU running on this pCPU.
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
    /// Crashes `domain` (a backend that broke the protocol in a way the frontend cannot wait out).
    fn crash_domain(&self, domain: DomainIndex);
}
