//! The request engine: region lookup, posting an access to the backend, the per-vCPU request
//! state machine, completion, and the doorbell protocol (`docs/backend-abi.md`).
//!
//! Built once at boot by [`Builder`] while Xen creates the domains, then frozen into an
//! [`Engine`] whose only mutable state is one atomic record per frontend vCPU.

use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::abi::{doorbell, IoReq, STATE_IOREQ_NONE, STATE_IORESP_READY};
use crate::config::{Config, Device, MAX_DEVICES, MAX_DOMAINS};
use crate::fixed::Table;
use crate::platform::{DomainIndex, PageId, Platform};
use crate::syndrome::{self, Access, Decoded, SyndromeError, XenDecode};
use crate::types::{DomId, Gpa, VcpuId, Width};

/// Most frontend vCPUs in the whole system (one request record each).
pub const MAX_FRONTEND_VCPUS: usize = 128;

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
    /// Nothing to emulate (cache maintenance): advance the PC.
    Handled,
    /// Refused: inject a data abort into the frontend.
    Abort(MmioError),
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

/// What a backend did with a valid doorbell write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorbellEvent {
    /// A frontend vCPU's request was answered and the vCPU woken.
    Completed {
        /// The frontend.
        frontend: DomainIndex,
        /// Its vCPU.
        vcpu: VcpuId,
    },
    /// A device interrupt was injected into its frontend.
    Raised {
        /// The device (configuration index).
        device: usize,
    },
    /// The backend announced it serves requests.
    Online,
}

/// Why a backend's doorbell access was refused (Xen injects a data abort into the backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorbellError {
    /// The domain serves nothing.
    NotABackend,
    /// Not a 32-bit access.
    BadWidth,
    /// No register at that offset, or the wrong direction.
    BadRegister(u64),
    /// `COMPLETE` names a frontend index this backend does not have.
    UnknownFrontend(u32),
    /// `COMPLETE` names a vCPU the frontend does not have.
    UnknownVcpu(u32),
    /// `COMPLETE` for a vCPU with no request from this backend in flight.
    NotAwaited(u32),
    /// `COMPLETE` for a slot whose state is not `IORESP_READY`.
    NotAnswered(u8),
    /// `RAISE_IRQ` names a device this backend does not serve.
    UnknownDevice(u32),
}

impl fmt::Display for DoorbellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoorbellError::NotABackend => f.write_str("domain is not a backend"),
            DoorbellError::BadWidth => f.write_str("doorbell access is not 32 bits wide"),
            DoorbellError::BadRegister(o) => {
                write!(f, "no doorbell register at {o:#x} for that access")
            }
            DoorbellError::UnknownFrontend(k) => write!(f, "COMPLETE: no frontend {k}"),
            DoorbellError::UnknownVcpu(v) => write!(f, "COMPLETE: no vCPU {v}"),
            DoorbellError::NotAwaited(v) => {
                write!(f, "COMPLETE: vCPU {v} awaits nothing from this backend")
            }
            DoorbellError::NotAnswered(s) => {
                write!(f, "COMPLETE: slot state is {s}, not IORESP_READY")
            }
            DoorbellError::UnknownDevice(d) => write!(f, "RAISE_IRQ: no device {d}"),
        }
    }
}

/// Why the engine cannot be frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// A domain of the configuration was never created by Xen.
    DomainNotCreated(DomainIndex),
    /// More frontend vCPUs than [`MAX_FRONTEND_VCPUS`].
    TooManyVcpus,
}

/// Collects what Xen tells at domain creation, then freezes into an [`Engine`].
#[derive(Debug)]
pub struct Builder {
    config: Box<Config>,
    domids: [Option<DomId>; MAX_DOMAINS],
}

impl Builder {
    /// Starts from a validated configuration.
    pub fn new(config: Box<Config>) -> Builder {
        Builder {
            config,
            domids: [None; MAX_DOMAINS],
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records that the domain whose node is `name` got `domid`; returns its index, or `None`
    /// for a domain the component has nothing to do with.
    pub fn domain_created(&mut self, name: &str, domid: DomId) -> Option<DomainIndex> {
        let index = self.config.domain_index(name)?;
        self.domids[index] = Some(domid);
        Some(index)
    }

    /// Returns the domid recorded for `index`.
    pub fn domid(&self, index: DomainIndex) -> Option<DomId> {
        self.domids.get(index).copied().flatten()
    }

    /// Freezes the tables. Every domain that serves or uses a device must have been created.
    pub fn freeze(self) -> Result<Engine, BuildError> {
        let mut regions: Table<Region, MAX_DEVICES> = Table::new();
        for (i, dev) in self.config.devices().iter().enumerate() {
            for d in [dev.frontend, dev.backend] {
                if self.domids[usize::from(d)].is_none() {
                    return Err(BuildError::DomainNotCreated(usize::from(d)));
                }
            }
            // Capacity matches MAX_DEVICES, which the configuration already enforces.
            let _ = regions.push(Region {
                frontend: dev.frontend,
                start: dev.mmio.start().0,
                end: dev.mmio.start().0 + dev.mmio.size(),
                device: i as u8,
            });
        }
        regions
            .as_mut_slice()
            .sort_unstable_by_key(|r| (r.frontend, r.start));

        let mut vcpu_base = [u16::MAX; MAX_DOMAINS];
        let mut next = 0usize;
        for (i, dom) in self.config.domains().iter().enumerate() {
            if self
                .config
                .devices()
                .iter()
                .any(|d| usize::from(d.frontend) == i)
            {
                vcpu_base[i] = next as u16;
                next += dom.vcpus as usize;
                if next > MAX_FRONTEND_VCPUS {
                    return Err(BuildError::TooManyVcpus);
                }
            }
        }
        Ok(Engine {
            config: self.config,
            domids: self.domids,
            dead: [const { AtomicBool::new(false) }; MAX_DOMAINS],
            regions,
            vcpu_base,
            vcpus: [const { VcpuRecord::new() }; MAX_FRONTEND_VCPUS],
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

/// Request record states. Transitions: trap IDLE→PENDING, doorbell PENDING→ANSWERED,
/// backend death PENDING→VANISHED, completion ANSWERED|VANISHED→IDLE. Nothing else moves a
/// record.
const IDLE: u8 = 0;
const PENDING: u8 = 1;
const ANSWERED: u8 = 2;
const VANISHED: u8 = 3;

/// One frontend vCPU's request in flight. Written by that vCPU at trap time, read back by it at
/// completion; the backend's pCPU only moves `state` forward.
#[derive(Debug)]
struct VcpuRecord {
    state: AtomicU8,
    device: AtomicU8,
    access: AtomicU64,
    hsr: AtomicU32,
}

impl VcpuRecord {
    const fn new() -> Self {
        VcpuRecord {
            state: AtomicU8::new(IDLE),
            device: AtomicU8::new(0),
            access: AtomicU64::new(0),
            hsr: AtomicU32::new(0),
        }
    }
}

/// Packs an [`Access`] into 64 bits for the per-vCPU record.
fn pack(a: &Access) -> u64 {
    let (post, rn, imm) = match a.post_index {
        Some((rn, imm)) => (1u64, u64::from(rn), u64::from(imm as u16 & 0x1ff)),
        None => (0, 0, 0),
    };
    u64::from(a.reg)
        | u64::from(a.width.log2()) << 5
        | u64::from(a.write) << 7
        | u64::from(a.sign_extend) << 8
        | u64::from(a.sixty_four) << 9
        | post << 10
        | rn << 11
        | imm << 16
}

fn unpack(v: u64) -> Access {
    let imm = ((v >> 16) & 0x1ff) as i16;
    Access {
        reg: (v & 0x1f) as u8,
        width: Width::from_log2(((v >> 5) & 3) as u32).unwrap_or(Width::Byte),
        write: v >> 7 & 1 != 0,
        sign_extend: v >> 8 & 1 != 0,
        sixty_four: v >> 9 & 1 != 0,
        // Sign-extend the 9-bit immediate.
        post_index: (v >> 10 & 1 != 0).then_some((((v >> 11) & 0x1f) as u8, (imm << 7) >> 7)),
    }
}

/// The frozen engine.
#[derive(Debug)]
pub struct Engine {
    config: Box<Config>,
    domids: [Option<DomId>; MAX_DOMAINS],
    /// Backends that shut down or crashed: their devices have vanished.
    dead: [AtomicBool; MAX_DOMAINS],
    regions: Table<Region, MAX_DEVICES>,
    vcpu_base: [u16; MAX_DOMAINS],
    vcpus: [VcpuRecord; MAX_FRONTEND_VCPUS],
}

impl Engine {
    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the configuration index of the domain with `domid`, if tracked.
    pub fn domain_index(&self, domid: DomId) -> Option<DomainIndex> {
        self.domids.iter().position(|d| *d == Some(domid))
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
        if base == u16::MAX || vcpu.0 >= dom.vcpus {
            return None;
        }
        self.vcpus.get(usize::from(base) + vcpu.0 as usize)
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
        let Some(record) = self.record(frontend, trap.vcpu) else {
            return MmioOutcome::Abort(MmioError::UnknownVcpu(trap.vcpu));
        };
        // Only this vCPU moves its record out of IDLE, so an IDLE seen here stays IDLE until
        // PENDING is published below; any other state is a request in flight, left untouched.
        if record.state.load(Ordering::Acquire) != IDLE {
            return MmioOutcome::Abort(MmioError::Busy(trap.vcpu));
        }
        let data = if access.write && access.reg != syndrome::XZR {
            access.store_value(read_reg(access.reg))
        } else {
            0
        };
        // Fill the record before publishing PENDING: the backend's COMPLETE and
        // `domain_shutdown` run on other pCPUs and read these fields once they see PENDING.
        record.device.store(device_index as u8, Ordering::Relaxed);
        record.access.store(pack(&access), Ordering::Relaxed);
        record.hsr.store(trap.hsr, Ordering::Relaxed);
        if record
            .state
            .compare_exchange(IDLE, PENDING, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            return MmioOutcome::Abort(MmioError::Busy(trap.vcpu));
        }
        // PENDING is published (SeqCst) before `dead` is read, and `domain_shutdown` sets
        // `dead` before scanning for PENDING records: one of the two always sees the other.
        if self.dead[usize::from(device.backend)].load(Ordering::SeqCst) {
            self.vanish(p, frontend, trap.vcpu, record);
            return MmioOutcome::Retry;
        }
        let page = PageId {
            backend: usize::from(device.backend),
            frontend_index: usize::from(device.frontend_index),
        };
        // The slot is Xen's to fill only while the backend leaves it NONE. A backend that wrote
        // the slot of a vCPU with nothing in flight is broken; posting over the slot would hide
        // that (upstream's ioreq_send refuses too). Crash it, the policy for a backend that
        // moves a slot backwards, and let the access see a vanished device.
        if p.read_slot(page, trap.vcpu).state() != STATE_IOREQ_NONE {
            p.crash_domain(usize::from(device.backend));
            self.vanish(p, frontend, trap.vcpu, record);
            return MmioOutcome::Retry;
        }
        let req = IoReq::mmio(trap.gpa.0, access.width.bytes(), !access.write, data);
        p.post_request(page, trap.vcpu, &req);
        let notify = self.config.domains()[usize::from(device.backend)]
            .backend
            .map(|b| b.notify_spi);
        if let Some(spi) = notify {
            p.inject_spi(usize::from(device.backend), spi);
        }
        MmioOutcome::Retry
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
        let vanished = match record.state.load(Ordering::Acquire) {
            PENDING => return Work::Waiting,
            ANSWERED => false,
            VANISHED => true,
            _ => return Work::Idle,
        };
        let access = unpack(record.access.load(Ordering::Relaxed));
        let device = &self.config.devices()[usize::from(record.device.load(Ordering::Relaxed))];
        let page = PageId {
            backend: usize::from(device.backend),
            frontend_index: usize::from(device.frontend_index),
        };
        if vanished {
            // The backend is gone: reads see a vanished device (all ones), writes are dropped.
            record.state.store(IDLE, Ordering::Release);
            let write_reg = (!access.write && access.reg != syndrome::XZR)
                .then(|| (access.reg, access.load_value(u64::MAX)));
            return Work::Complete(Completion {
                write_reg,
                hsr: record.hsr.load(Ordering::Relaxed),
                post_index: access.post_index,
            });
        }
        let slot = p.read_slot(page, vcpu);
        let data = if slot.state() == STATE_IORESP_READY {
            slot.data
        } else {
            // The backend moved the slot backwards after ringing COMPLETE: it is broken. Crash
            // it (Xen's policy for the guilty domain) and finish the access as if the device
            // had vanished, so the frontend does not hang.
            p.crash_domain(usize::from(device.backend));
            u64::MAX
        };
        p.set_slot_flags(page, vcpu, STATE_IOREQ_NONE);
        record.state.store(IDLE, Ordering::Release);
        let write_reg = (!access.write && access.reg != syndrome::XZR)
            .then(|| (access.reg, access.load_value(data)));
        Work::Complete(Completion {
            write_reg,
            hsr: record.hsr.load(Ordering::Relaxed),
            post_index: access.post_index,
        })
    }

    /// Marks a pending request as answered by nobody and wakes its vCPU.
    fn vanish<P: Platform>(&self, p: &P, frontend: DomainIndex, vcpu: VcpuId, record: &VcpuRecord) {
        if record
            .state
            .compare_exchange(PENDING, VANISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            p.wake_vcpu(frontend, vcpu);
        }
    }

    /// Called when a domain shuts down or crashes. If it is a backend, its devices vanish:
    /// every frontend vCPU waiting for it completes (reads return all ones, writes are
    /// dropped) and later accesses complete the same way, so no frontend hangs on a dead
    /// backend.
    pub fn domain_shutdown<P: Platform>(&self, p: &P, domid: DomId) {
        let Some(index) = self.domain_index(domid) else {
            return;
        };
        if self.config.domains()[index].backend.is_none() {
            return;
        }
        self.dead[index].store(true, Ordering::SeqCst);
        for (frontend, dom) in self.config.domains().iter().enumerate() {
            for v in 0..dom.vcpus {
                let Some(record) = self.record(frontend, VcpuId(v)) else {
                    break;
                };
                if record.state.load(Ordering::SeqCst) != PENDING {
                    continue;
                }
                let device =
                    &self.config.devices()[usize::from(record.device.load(Ordering::Relaxed))];
                if usize::from(device.backend) == index {
                    self.vanish(p, frontend, VcpuId(v), record);
                }
            }
        }
    }

    /// Tells whether backend `index` has shut down.
    pub fn is_dead(&self, index: DomainIndex) -> bool {
        self.dead
            .get(index)
            .is_some_and(|d| d.load(Ordering::Acquire))
    }

    /// Handles a backend's read of its doorbell page.
    pub fn doorbell_read(
        &self,
        backend_domid: DomId,
        offset: u64,
        width: Width,
    ) -> Result<u32, DoorbellError> {
        let backend = self
            .domain_index(backend_domid)
            .ok_or(DoorbellError::NotABackend)?;
        self.config.domains()[backend]
            .backend
            .ok_or(DoorbellError::NotABackend)?;
        if width != Width::Word {
            return Err(DoorbellError::BadWidth);
        }
        match offset {
            doorbell::MAGIC => Ok(doorbell::MAGIC_VALUE),
            doorbell::VERSION => Ok(doorbell::VERSION_VALUE),
            doorbell::FEATURES => Ok(0),
            doorbell::COMPLETE | doorbell::RAISE_IRQ | doorbell::ONLINE => Ok(0),
            o => Err(DoorbellError::BadRegister(o)),
        }
    }

    /// Handles a backend's write to its doorbell page.
    pub fn doorbell_write<P: Platform>(
        &self,
        p: &P,
        backend_domid: DomId,
        offset: u64,
        width: Width,
        value: u32,
    ) -> Result<DoorbellEvent, DoorbellError> {
        let backend_index = self
            .domain_index(backend_domid)
            .ok_or(DoorbellError::NotABackend)?;
        let backend = self.config.domains()[backend_index]
            .backend
            .ok_or(DoorbellError::NotABackend)?;
        if width != Width::Word {
            return Err(DoorbellError::BadWidth);
        }
        match offset {
            doorbell::COMPLETE => {
                let k = value >> 16;
                let vcpu = VcpuId(value & 0xffff);
                let frontend = usize::from(
                    *backend
                        .frontends
                        .as_slice()
                        .get(k as usize)
                        .ok_or(DoorbellError::UnknownFrontend(k))?,
                );
                let record = self
                    .record(frontend, vcpu)
                    .ok_or(DoorbellError::UnknownVcpu(vcpu.0))?;
                if record.state.load(Ordering::Acquire) != PENDING {
                    return Err(DoorbellError::NotAwaited(vcpu.0));
                }
                let device =
                    &self.config.devices()[usize::from(record.device.load(Ordering::Relaxed))];
                if usize::from(device.backend) != backend_index {
                    return Err(DoorbellError::NotAwaited(vcpu.0));
                }
                let page = PageId {
                    backend: backend_index,
                    frontend_index: k as usize,
                };
                let state = p.read_slot(page, vcpu).state();
                if state != STATE_IORESP_READY {
                    return Err(DoorbellError::NotAnswered(state));
                }
                // Only this backend can move this record out of PENDING, and it does so once.
                record
                    .state
                    .compare_exchange(PENDING, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
                    .map_err(|_| DoorbellError::NotAwaited(vcpu.0))?;
                p.wake_vcpu(frontend, vcpu);
                Ok(DoorbellEvent::Completed { frontend, vcpu })
            }
            doorbell::RAISE_IRQ => {
                let (index, device) = self
                    .config
                    .devices()
                    .iter()
                    .enumerate()
                    .find(|(_, d)| {
                        usize::from(d.backend) == backend_index
                            && u32::from(d.index_in_backend) == value
                    })
                    .ok_or(DoorbellError::UnknownDevice(value))?;
                p.inject_spi(usize::from(device.frontend), device.spi);
                Ok(DoorbellEvent::Raised { device: index })
            }
            doorbell::ONLINE => Ok(DoorbellEvent::Online),
            o => Err(DoorbellError::BadRegister(o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Spi;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// Minimal recording platform; the strict one lives in `tests/engine.rs`.
    #[derive(Default)]
    struct Rec {
        slots: RefCell<[IoReq; 2]>,
        events: RefCell<Vec<&'static str>>,
    }

    impl Platform for Rec {
        fn post_request(&self, _: PageId, slot: VcpuId, req: &IoReq) {
            self.slots.borrow_mut()[slot.0 as usize] = *req;
            self.events.borrow_mut().push("post");
        }
        fn read_slot(&self, _: PageId, slot: VcpuId) -> IoReq {
            self.slots.borrow()[slot.0 as usize]
        }
        fn set_slot_flags(&self, _: PageId, slot: VcpuId, flags: u8) {
            self.slots.borrow_mut()[slot.0 as usize].flags = flags;
        }
        fn inject_spi(&self, _: DomainIndex, _: Spi) {
            self.events.borrow_mut().push("inject");
        }
        fn wake_vcpu(&self, _: DomainIndex, _: VcpuId) {
            self.events.borrow_mut().push("wake");
        }
        fn crash_domain(&self, _: DomainIndex) {
            self.events.borrow_mut().push("crash");
        }
    }

    fn engine() -> Engine {
        let blob = include_bytes!("../tests/fixtures/qemu-boot-smoke.dtb");
        let mut b = Builder::new(Config::from_fdt(blob, 256).unwrap());
        b.domain_created("domU1", DomId(1));
        b.domain_created("domU2", DomId(2));
        b.freeze().unwrap()
    }

    fn read_trap() -> Trap {
        // LDR w3, [..] with a valid syndrome.
        let hsr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | 0x07;
        Trap {
            domid: DomId(1),
            vcpu: VcpuId(0),
            gpa: Gpa(0x0200_0000),
            hsr,
            xen_dabt: hsr,
            xen_decode: XenDecode::Syndrome,
        }
    }

    #[test]
    fn a_dead_backend_releases_waiting_and_later_accesses() {
        let e = engine();
        let p = Rec::default();
        assert_eq!(e.handle_mmio(&p, &read_trap(), |_| 0), MmioOutcome::Retry);
        assert_eq!(e.vcpu_work(&p, DomId(1), VcpuId(0)), Work::Waiting);
        // Shutting down a frontend releases nothing.
        e.domain_shutdown(&p, DomId(1));
        assert_eq!(e.vcpu_work(&p, DomId(1), VcpuId(0)), Work::Waiting);
        e.domain_shutdown(&p, DomId(2));
        assert!(e.is_dead(1));
        let Work::Complete(c) = e.vcpu_work(&p, DomId(1), VcpuId(0)) else {
            panic!()
        };
        assert_eq!(c.write_reg, Some((3, 0xffff_ffff)));
        // A late COMPLETE from the dead backend is refused.
        let complete = e.doorbell_write(&p, DomId(2), doorbell::COMPLETE, Width::Word, 0);
        assert_eq!(complete, Err(DoorbellError::NotAwaited(0)));
        // New accesses complete at once without posting anything.
        let posts = p.events.borrow().iter().filter(|e| **e == "post").count();
        assert_eq!(e.handle_mmio(&p, &read_trap(), |_| 0), MmioOutcome::Retry);
        assert!(matches!(
            e.vcpu_work(&p, DomId(1), VcpuId(0)),
            Work::Complete(_)
        ));
        assert_eq!(
            p.events.borrow().iter().filter(|e| **e == "post").count(),
            posts
        );
        assert_eq!(e.vcpu_work(&p, DomId(1), VcpuId(0)), Work::Idle);
    }

    #[test]
    fn access_records_round_trip() {
        for post_index in [None, Some((3u8, -256i16)), Some((30, 255)), Some((0, -1))] {
            for width in [Width::Byte, Width::Half, Width::Word, Width::Double] {
                let a = Access {
                    width,
                    write: true,
                    reg: 31,
                    sign_extend: true,
                    sixty_four: false,
                    post_index,
                };
                assert_eq!(unpack(pack(&a)), a);
                let b = Access {
                    write: false,
                    sign_extend: false,
                    sixty_four: true,
                    reg: 0,
                    ..a
                };
                assert_eq!(unpack(pack(&b)), b);
            }
        }
    }
}
