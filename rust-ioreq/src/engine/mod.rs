//! The request engine: region lookup, the registers answered in Xen (the fast transport),
//! posting an access to the backend, the per-vCPU request state machine, completion, timeouts,
//! domain lifetime, and the doorbell protocol (`docs/backend-abi.md`).
//!
//! Built once at boot by [`Builder`] while Xen creates the domains, then frozen into an
//! [`Engine`] whose only mutable state is atomics: one request record per frontend vCPU
//! (`record.rs`), and per-domain, per-device and per-slot flags. Nothing here allocates, locks
//! or waits after boot.

mod builder;
mod doorbell;
mod record;
mod stale;
mod transport;

use core::fmt;

use crate::abi::{
    IoReq, STATE_IOREQ_INPROCESS, STATE_IOREQ_NONE, STATE_IOREQ_READY, STATE_IORESP_READY,
};
use crate::config::{Config, Device, MAX_DEVICES, MAX_DOMAINS, MAX_FRONTENDS_PER_BACKEND};
use crate::fixed::Table;
use crate::platform::{BackendFault, DomainIndex, PageId, Platform};
use crate::sync::{fence, AtomicBool, AtomicU32, Ordering};
use crate::syndrome::{self, Access, Decoded, SyndromeError, XenDecode};
use crate::types::{DomId, Gpa, VcpuId, Width};

pub use builder::{BindError, BuildError, Builder};
pub use doorbell::{Discarded, DoorbellError, DoorbellEvent};
use record::{Posted, RecordState, Snapshot, VcpuRecord};
use stale::HeldSlots;
use transport::TransportState;
pub use transport::{reg, TransportKind, VIRTIO_MAGIC};

/// Most frontend vCPUs in the whole system (one request record each).
pub const MAX_FRONTEND_VCPUS: usize = 128;
/// Most looks a polling spin takes, whatever the clock says: a second bound, in case the clock
/// does not advance (each look is a few loads; a millisecond is far fewer looks on any CPU).
pub const MAX_SPIN_ROUNDS: u32 = 1 << 20;

/// `vcpu_base` of a domain that is no frontend.
const NO_VCPU_BASE: u16 = u16::MAX;
/// `domids` entry of a domain not created yet or destroyed.
const NO_DOMID: u32 = u32::MAX;

/// A frontend's trapped access, as the Xen glue reports it.
#[derive(Clone, Copy, Debug)]
pub struct Trap {
    /// Faulting domain.
    pub domid: DomId,
    /// Faulting vCPU.
    pub vcpu: VcpuId,
    /// Faulting guest-physical address.
    pub gpa: Gpa,
    /// ESR_EL2 as taken.
    pub hsr: u32,
    /// Xen's `info->dabt` after its instruction decoder.
    pub xen_dabt: u32,
    /// What Xen decoded.
    pub xen_decode: XenDecode,
}

/// What the glue does with a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioOutcome {
    /// Not a configured region: Xen's stock handling applies.
    NotMine,
    /// Posted to the backend: return to the guest without advancing the PC; the vCPU blocks.
    Retry,
    /// Not posted: the device is unavailable, and the access completes at once as on a device
    /// that vanished (the glue may log `why`, rate-limited). Handled like `Retry` otherwise.
    Unavailable(Unavailable),
    /// Nothing to emulate (cache maintenance): advance the PC.
    Handled,
    /// Answered in Xen (the fast transport): write the register if any, then as `Handled`
    /// (advance the PC; Xen finishes a post-indexed write-back).
    Answered {
        /// Register to write and its value (a load to a register other than XZR).
        write_reg: Option<(u8, u64)>,
    },
    /// Refused: inject a data abort into the frontend.
    Abort(MmioError),
}

/// Why an access to a configured device completes without reaching its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The backend shut down, crashed or was destroyed.
    BackendGone {
        /// The device (configuration index).
        device: usize,
    },
    /// An earlier request to this device timed out: it is broken for this frontend.
    Broken {
        /// The device.
        device: usize,
    },
    /// The vCPU's slot in the backend's page still holds a request that timed out, which the
    /// backend has neither answered nor released.
    SlotHeld {
        /// The device.
        device: usize,
    },
    /// The backend wrote the slot with nothing posted there: it was crashed.
    BackendFault {
        /// The device.
        device: usize,
    },
}

/// Why a frontend access to a configured region was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The syndrome cannot be used.
    Syndrome(SyndromeError),
    /// The vCPU id is past what the frontend was configured with.
    UnknownVcpu(VcpuId),
    /// The vCPU already has a request in flight (it should be blocked).
    Busy(VcpuId),
    /// The access is not aligned to its width. No virtio-mmio register may be accessed so
    /// (virtio 1.2 §4.2.2.2), the Device memory a register window is on hardware refuses it,
    /// and only a misaligned access can run past the end of a region (regions are 0x200-aligned
    /// multiples of 0x200): into the next device, possibly another backend's.
    Misaligned {
        /// The address of the access.
        gpa: Gpa,
        /// Its width.
        width: Width,
    },
}

/// Work pending for a frontend vCPU on its way back to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Nothing in flight.
    Idle,
    /// The backend has not answered: block the vCPU.
    Waiting,
    /// Complete the access, then resume.
    Complete(Completion),
}

/// How to finish a trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Register to write and its value (loads to a register other than XZR).
    pub write_reg: Option<(u8, u64)>,
    /// ESR_EL2 of the trap, for the PC advance (instruction length).
    pub hsr: u32,
    /// Base register write-back of a post-indexed access Xen decoded.
    pub post_index: Option<(u8, i16)>,
}

/// A request given up because its backend did not answer in time (for the glue's message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The frontend.
    pub frontend: DomainIndex,
    /// Its vCPU.
    pub vcpu: VcpuId,
    /// The device, now broken for that frontend.
    pub device: usize,
    /// Offset of the access in the device's region.
    pub offset: u32,
    /// Whether it was a write.
    pub write: bool,
    /// Whether the backend had announced `ONLINE` (if not, it may still be booting: the
    /// timeout in its node bounds that wait too).
    pub backend_online: bool,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::BackendGone { .. } => "its backend is gone",
            Unavailable::Broken { .. } => "the device is broken (an earlier request timed out)",
            Unavailable::SlotHeld { .. } => {
                "the backend still holds this vCPU's slot with a request that timed out"
            }
            Unavailable::BackendFault { .. } => "its backend broke the slot protocol",
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Region {
    frontend: u8,
    start: u64,
    end: u64,
    device: u8,
}

/// The frozen engine.
#[derive(Debug)]
pub struct Engine {
    config: alloc::boxed::Box<Config>,
    /// The domid of each configured domain, or `NO_DOMID` once it is destroyed.
    domids: [AtomicU32; MAX_DOMAINS],
    /// Backends that shut down, crashed or were destroyed: their devices have vanished.
    dead: [AtomicBool; MAX_DOMAINS],
    /// Backends that wrote `ONLINE`.
    online: [AtomicBool; MAX_DOMAINS],
    /// Devices whose backend let a request time out: they read as vanished from then on.
    broken: [AtomicBool; MAX_DEVICES],
    /// Slots still held by a timed-out request, per backend and frontend index.
    held: [[HeldSlots; MAX_FRONTENDS_PER_BACKEND]; MAX_DOMAINS],
    /// What Xen keeps of each device's transport (the fast transport); boxed at boot, so that
    /// building the engine never holds it all on the stack.
    transport: alloc::boxed::Box<TransportState>,
    regions: Table<Region, MAX_DEVICES>,
    vcpu_base: [u16; MAX_DOMAINS],
    vcpus: [VcpuRecord; MAX_FRONTEND_VCPUS],
}

impl Engine {
    fn new(
        config: alloc::boxed::Box<Config>,
        domids: &[Option<DomId>; MAX_DOMAINS],
        regions: Table<Region, MAX_DEVICES>,
        vcpu_base: [u16; MAX_DOMAINS],
    ) -> Engine {
        Engine {
            config,
            domids: core::array::from_fn(|i| {
                AtomicU32::new(domids[i].map_or(NO_DOMID, |d| u32::from(d.0)))
            }),
            dead: core::array::from_fn(|_| AtomicBool::new(false)),
            online: core::array::from_fn(|_| AtomicBool::new(false)),
            broken: core::array::from_fn(|_| AtomicBool::new(false)),
            held: core::array::from_fn(|_| core::array::from_fn(|_| HeldSlots::new())),
            transport: alloc::boxed::Box::new(TransportState::new()),
            regions,
            vcpu_base,
            vcpus: core::array::from_fn(|_| VcpuRecord::new()),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the configuration index of the live domain with `domid`, if tracked.
    pub fn domain_index(&self, domid: DomId) -> Option<DomainIndex> {
        let wanted = u32::from(domid.0);
        self.domids
            .iter()
            .position(|d| d.load(Ordering::Acquire) == wanted)
    }

    /// Returns the domid of domain `index` while it is alive.
    pub fn domid(&self, index: DomainIndex) -> Option<DomId> {
        let d = self.domids.get(index)?.load(Ordering::Acquire);
        u16::try_from(d).ok().map(DomId)
    }

    /// Finds the device whose region holds `gpa` in frontend `frontend` (binary search).
    pub fn lookup(&self, frontend: DomainIndex, gpa: Gpa) -> Option<&Device> {
        self.lookup_index(frontend, gpa)
            .map(|i| &self.config.devices()[i])
    }

    /// Returns the configuration index of the device whose region holds `gpa` in `frontend`.
    fn lookup_index(&self, frontend: DomainIndex, gpa: Gpa) -> Option<usize> {
        let regions = self.regions.as_slice();
        let key = (frontend as u8, gpa.0);
        let after = regions.partition_point(|r| (r.frontend, r.start) <= key);
        let r = regions.get(after.checked_sub(1)?)?;
        (usize::from(r.frontend) == frontend && gpa.0 < r.end).then_some(usize::from(r.device))
    }

    fn record(&self, frontend: DomainIndex, vcpu: VcpuId) -> Option<&VcpuRecord> {
        let base = *self.vcpu_base.get(frontend)?;
        let dom = self.config.domains().get(frontend)?;
        if base == NO_VCPU_BASE || vcpu.0 >= dom.vcpus {
            return None;
        }
        self.vcpus.get(usize::from(base) + vcpu.0 as usize)
    }

    fn page_of(device: &Device) -> PageId {
        PageId {
            backend: usize::from(device.backend),
            frontend_index: usize::from(device.frontend_index),
        }
    }

    fn held(&self, page: PageId) -> Option<&HeldSlots> {
        self.held.get(page.backend)?.get(page.frontend_index)
    }

    /// Handles a frontend's stage-2 data abort. `read_reg` returns a general-purpose register
    /// of the trapping vCPU (called only for stores, never for XZR).
    pub fn handle_mmio<P: Platform>(
        &self,
        p: &P,
        trap: &Trap,
        read_reg: impl FnOnce(u8) -> u64,
    ) -> MmioOutcome {
        let Some(frontend) = self.domain_index(trap.domid) else {
            return MmioOutcome::NotMine;
        };
        let Some(device_index) = self.lookup_index(frontend, trap.gpa) else {
            return MmioOutcome::NotMine;
        };
        let device = &self.config.devices()[device_index];
        let access = match syndrome::decode(trap.hsr, trap.xen_dabt, trap.xen_decode) {
            Ok(Decoded::Access(a)) => a,
            Ok(Decoded::CacheMaintenance) => return MmioOutcome::Handled,
            Err(e) => return MmioOutcome::Abort(MmioError::Syndrome(e)),
        };
        if !trap.gpa.0.is_multiple_of(u64::from(access.width.bytes())) {
            return MmioOutcome::Abort(MmioError::Misaligned {
                gpa: trap.gpa,
                width: access.width,
            });
        }
        let Some(record) = self.record(frontend, trap.vcpu) else {
            return MmioOutcome::Abort(MmioError::UnknownVcpu(trap.vcpu));
        };
        // Only this vCPU moves its record out of Idle, so an Idle seen here stays Idle until
        // `publish`; any other state is a request in flight, left untouched.
        let idle = record.snapshot();
        if idle.state != RecordState::Idle {
            return MmioOutcome::Abort(MmioError::Busy(trap.vcpu));
        }
        let data = if access.write && access.reg != syndrome::XZR {
            access.store_value(read_reg(access.reg))
        } else {
            0
        };
        // Regions are at most a few pages: the offset fits.
        let offset = (trap.gpa.0 - device.mmio.start().0) as u32;
        if let Some(answered) = self.transport_access(p, device_index, offset, &access, data) {
            return answered;
        }
        let backend = usize::from(device.backend);
        let timeout_ms = self.config.domains()[backend]
            .backend
            .map_or(0, |b| b.timeout_ms);
        let posted = Posted {
            access,
            hsr: trap.hsr,
            offset,
            deadline: deadline(p, timeout_ms),
        };
        let Some(pending) = record.publish(idle, device_index as u8, &posted) else {
            return MmioOutcome::Abort(MmioError::Busy(trap.vcpu));
        };

        // Dekker with `backend_died`: we publish, fence, read `dead`; it sets `dead`, fences,
        // scans the records. One of the two always sees the other, so a request is never left
        // waiting on a dead backend (tests/loom.rs checks it; loom models SeqCst fences, not
        // SeqCst accesses alone).
        fence(Ordering::SeqCst);
        if self.dead[backend].load(Ordering::Relaxed) {
            return self.unavailable(
                record,
                pending,
                Unavailable::BackendGone {
                    device: device_index,
                },
            );
        }
        if self.broken[device_index].load(Ordering::Acquire) {
            return self.unavailable(
                record,
                pending,
                Unavailable::Broken {
                    device: device_index,
                },
            );
        }
        let page = Self::page_of(device);
        if let Err(why) = self.claim_slot(p, page, trap.vcpu, device_index) {
            return self.unavailable(record, pending, why);
        }
        let req = IoReq::mmio(trap.gpa.0, access.width.bytes(), !access.write, data);
        p.post_request(page, trap.vcpu, &req);
        self.notify_request(p, backend);
        if posted.deadline != 0 {
            p.arm_timeout(frontend, trap.vcpu, posted.deadline);
        }
        MmioOutcome::Retry
    }

    /// Makes sure the vCPU's slot in `page` is Xen's to post into: `NONE`, or released by the
    /// backend after a timeout. Crashes a backend that wrote a slot nobody posted.
    fn claim_slot<P: Platform>(
        &self,
        p: &P,
        page: PageId,
        vcpu: VcpuId,
        device: usize,
    ) -> Result<(), Unavailable> {
        let state = p.read_slot(page, vcpu).state();
        let held = self.held(page).is_some_and(|h| h.is_held(vcpu));
        match (state, held) {
            (STATE_IOREQ_NONE, false) => Ok(()),
            // The backend answered (or dropped) the request that timed out: the slot is Xen's
            // again, and returns to NONE as after any completion.
            // Answered, its COMPLETE may still come (while the next request is posted there):
            // the slot owes it, discarded when it arrives.
            (STATE_IOREQ_NONE | STATE_IORESP_READY, true) => {
                if state == STATE_IORESP_READY {
                    p.set_slot_flags(page, vcpu, STATE_IOREQ_NONE);
                }
                if let Some(h) = self.held(page) {
                    if state == STATE_IORESP_READY {
                        h.release_answered(vcpu);
                    } else {
                        h.release(vcpu);
                    }
                }
                Ok(())
            }
            // Still working on it, maybe: post nothing over it.
            (STATE_IOREQ_READY | STATE_IOREQ_INPROCESS, true) => {
                Err(Unavailable::SlotHeld { device })
            }
            // A slot written while nothing was posted, or garbage: the backend is broken.
            // Posting over it would hide that (upstream's ioreq_send refuses too).
            (state, _) => {
                p.crash_domain(page.backend, BackendFault::WroteIdleSlot { vcpu, state });
                Err(Unavailable::BackendFault { device })
            }
        }
    }

    /// Settles a just-published request as vanished: it completes at once, on the way back to
    /// the guest, without reaching the backend.
    fn unavailable(&self, record: &VcpuRecord, pending: Snapshot, why: Unavailable) -> MmioOutcome {
        // Fails only if a shutdown scan settled it first, with the same effect.
        record.settle(pending, RecordState::Vanished);
        MmioOutcome::Unavailable(why)
    }

    /// Runs on the frontend vCPU's way back to the guest: tells whether it must wait, or how
    /// to complete its access once answered.
    pub fn vcpu_work<P: Platform>(&self, p: &P, domid: DomId, vcpu: VcpuId) -> Work {
        let Some(frontend) = self.domain_index(domid) else {
            return Work::Idle;
        };
        let Some(record) = self.record(frontend, vcpu) else {
            return Work::Idle;
        };
        let settled = record.snapshot();
        let data = match settled.state {
            RecordState::Idle => return Work::Idle,
            RecordState::Pending => return Work::Waiting,
            // The backend is gone, or gave up: reads see a vanished device, writes are dropped.
            RecordState::Vanished => u64::MAX,
            RecordState::Answered => {
                let device = &self.config.devices()[usize::from(settled.device)];
                let page = Self::page_of(device);
                let slot = p.read_slot(page, vcpu);
                let data = if slot.state() == STATE_IORESP_READY {
                    slot.data
                } else {
                    // The backend moved the slot backwards after ringing COMPLETE: crash it
                    // (Xen's policy for the guilty domain) and finish as on a vanished device.
                    let why = BackendFault::MovedSlotBackwards {
                        vcpu,
                        state: slot.state(),
                    };
                    p.crash_domain(page.backend, why);
                    u64::MAX
                };
                p.set_slot_flags(page, vcpu, STATE_IOREQ_NONE);
                data
            }
        };
        let posted = record.posted();
        record.retire(settled);
        Work::Complete(completion(&posted, data))
    }

    /// As [`vcpu_work`](Self::vcpu_work), but a vCPU waiting on a backend that polls (and has
    /// `xen,ioreq-poll-us`) spins for its answer for up to that long before it is told to wait:
    /// like KVM's halt-polling, a blocked vCPU costs two scheduler passes and a wake-up. The
    /// spin ends early when the pCPU has softirqs pending (a scheduling decision, a timer: what
    /// the spin must not delay, including the backend's own vCPU being woken here), and after
    /// [`MAX_SPIN_ROUNDS`] looks whatever the clock says.
    pub fn vcpu_work_spinning<P: Platform>(&self, p: &P, domid: DomId, vcpu: VcpuId) -> Work {
        let work = self.vcpu_work(p, domid, vcpu);
        if work != Work::Waiting {
            return work;
        }
        let Some(record) = self.domain_index(domid).and_then(|f| self.record(f, vcpu)) else {
            return work;
        };
        let budget = self.spin_budget_ns(p, usize::from(record.snapshot().device));
        if budget == 0 {
            return work;
        }
        let until = p.now().saturating_add(budget);
        for _ in 0..MAX_SPIN_ROUNDS {
            if p.spin_should_stop() {
                break;
            }
            core::hint::spin_loop();
            let work = self.vcpu_work(p, domid, vcpu);
            if work != Work::Waiting || p.now() >= until {
                return work;
            }
        }
        Work::Waiting
    }

    /// Runs when the timeout armed for `vcpu` of `frontend` fires. If its request is still
    /// pending past its deadline, gives up on it: the device is marked broken for the frontend,
    /// the slot stays held until the backend lets go, and the vCPU wakes to see all ones.
    pub fn expire<P: Platform>(
        &self,
        p: &P,
        frontend: DomainIndex,
        vcpu: VcpuId,
    ) -> Option<Expired> {
        let record = self.record(frontend, vcpu)?;
        let pending = record.snapshot();
        if pending.state != RecordState::Pending {
            return None;
        }
        let posted = record.posted();
        // A newer request re-armed the timer: this expiry is early for it.
        if posted.deadline == 0 || p.now() < posted.deadline {
            return None;
        }
        let device_index = usize::from(pending.device);
        let device = self.config.devices().get(device_index)?;
        let page = Self::page_of(device);
        let held = self.held(page)?;
        // Held before the settle: the vCPU that sees its request vanished sees the hold too.
        held.hold(vcpu);
        if !record.settle(pending, RecordState::Vanished) {
            // Answered or vanished meanwhile: nothing timed out, the slot is not held.
            held.release(vcpu);
            return None;
        }
        self.broken[device_index].store(true, Ordering::Release);
        p.wake_vcpu(frontend, vcpu);
        Some(Expired {
            frontend,
            vcpu,
            device: device_index,
            offset: posted.offset,
            write: posted.access.write,
            backend_online: self.online[page.backend].load(Ordering::Acquire),
        })
    }

    /// Called when a domain shuts down or crashes. If it is a backend, its devices vanish:
    /// every frontend vCPU waiting for it completes (reads return all ones, writes are
    /// dropped) and later accesses complete the same way, so no frontend hangs on a dead
    /// backend. Returns whether it was a backend that had not died before.
    pub fn domain_shutdown<P: Platform>(&self, p: &P, domid: DomId) -> bool {
        self.domain_index(domid)
            .is_some_and(|index| self.backend_died(p, index))
    }

    /// Called when Xen destroys a domain (`domain_kill`): forgets its domid, so that a domain
    /// that later gets the same domid is a stranger, and treats it as dead. Returns its index:
    /// the glue must then stop using its Xen objects.
    pub fn domain_destroyed<P: Platform>(&self, p: &P, domid: DomId) -> Option<DomainIndex> {
        let index = self.domain_index(domid)?;
        self.domids[index].store(NO_DOMID, Ordering::SeqCst);
        self.backend_died(p, index);
        Some(index)
    }

    fn backend_died<P: Platform>(&self, p: &P, index: DomainIndex) -> bool {
        if self.config.domains()[index].backend.is_none() {
            return false;
        }
        if self.dead[index].swap(true, Ordering::SeqCst) {
            return false;
        }
        // The other half of the Dekker in `handle_mmio`.
        fence(Ordering::SeqCst);
        for (frontend, dom) in self.config.domains().iter().enumerate() {
            for v in 0..dom.vcpus {
                let Some(record) = self.record(frontend, VcpuId(v)) else {
                    break;
                };
                let pending = record.snapshot();
                if pending.state != RecordState::Pending {
                    continue;
                }
                let backend = self
                    .config
                    .devices()
                    .get(usize::from(pending.device))
                    .map(|d| usize::from(d.backend));
                if backend == Some(index) && record.settle(pending, RecordState::Vanished) {
                    p.wake_vcpu(frontend, VcpuId(v));
                }
            }
        }
        true
    }

    /// Tells whether backend `index` has died.
    pub fn is_dead(&self, index: DomainIndex) -> bool {
        self.dead
            .get(index)
            .is_some_and(|d| d.load(Ordering::Acquire))
    }

    /// Tells whether device `index` is broken (a request to it timed out).
    pub fn is_broken(&self, index: usize) -> bool {
        self.broken
            .get(index)
            .is_some_and(|d| d.load(Ordering::Acquire))
    }
}

/// Returns the deadline of a request posted now to a backend with `timeout_ms` (0 = none).
fn deadline<P: Platform>(p: &P, timeout_ms: u32) -> u64 {
    if timeout_ms == 0 {
        return 0;
    }
    p.now()
        .saturating_add(u64::from(timeout_ms) * 1_000_000)
        .max(1)
}

/// Finishes `posted` with the backend's `data` (all ones for a vanished device).
fn completion(posted: &Posted, data: u64) -> Completion {
    let a: &Access = &posted.access;
    let write_reg = (!a.write && a.reg != syndrome::XZR).then(|| (a.reg, a.load_value(data)));
    Completion {
        write_reg,
        hsr: posted.hsr,
        post_index: a.post_index,
    }
}
