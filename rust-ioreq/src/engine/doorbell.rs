//! The doorbell page of a backend (`docs/backend-abi.md`, "Doorbell registers"): identification
//! reads, and the `COMPLETE`, `RAISE_IRQ` and `ONLINE` writes with every check a hostile
//! backend can make fail.

use core::fmt;

use crate::abi::{doorbell, STATE_IORESP_READY};
use crate::platform::{DomainIndex, PageId, Platform};
use crate::sync::Ordering;
use crate::types::{DomId, VcpuId, Width};

use super::record::RecordState;
use super::Engine;

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
    /// The backend announced it serves requests, for the first time.
    Online,
    /// The backend wrote `ONLINE` again: nothing changes (and nothing is logged).
    OnlineAgain,
    /// A write that came too late to matter, accepted and ignored.
    Discarded(Discarded),
}

/// Why a doorbell write was accepted and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discarded {
    /// `COMPLETE` for a request Xen already gave up on (timeout): the slot is released when
    /// the frontend vCPU next posts.
    LateAnswer,
    /// `COMPLETE` or `RAISE_IRQ` for a frontend that was destroyed.
    FrontendGone,
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
    /// `RAISE_IRQ` with bits set above the two causes.
    BadCause(u32),
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
            DoorbellError::BadCause(v) => {
                write!(f, "RAISE_IRQ: {v:#x} has bits set other than 0-17")
            }
        }
    }
}

impl Engine {
    /// Returns the index of the live backend with `domid`.
    fn backend_index(&self, domid: DomId) -> Result<DomainIndex, DoorbellError> {
        let index = self.domain_index(domid).ok_or(DoorbellError::NotABackend)?;
        self.config.domains()[index]
            .backend
            .map(|_| index)
            .ok_or(DoorbellError::NotABackend)
    }

    /// Handles a backend's read of its doorbell page.
    pub fn doorbell_read(
        &self,
        backend_domid: DomId,
        offset: u64,
        width: Width,
    ) -> Result<u32, DoorbellError> {
        self.backend_index(backend_domid)?;
        if width != Width::Word {
            return Err(DoorbellError::BadWidth);
        }
        match offset {
            doorbell::MAGIC => Ok(doorbell::MAGIC_VALUE),
            doorbell::VERSION => Ok(doorbell::VERSION_VALUE),
            doorbell::FEATURES => Ok(doorbell::FEATURE_FAST_TRANSPORT),
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
        let backend = self.backend_index(backend_domid)?;
        if width != Width::Word {
            return Err(DoorbellError::BadWidth);
        }
        match offset {
            doorbell::COMPLETE => self.complete(p, backend, value >> 16, VcpuId(value & 0xffff)),
            doorbell::RAISE_IRQ => self.raise_irq(p, backend, value),
            doorbell::ONLINE => Ok(if self.online[backend].swap(true, Ordering::AcqRel) {
                DoorbellEvent::OnlineAgain
            } else {
                DoorbellEvent::Online
            }),
            o => Err(DoorbellError::BadRegister(o)),
        }
    }

    /// `COMPLETE`: the backend answered slot `vcpu` of its page for frontend `k`.
    fn complete<P: Platform>(
        &self,
        p: &P,
        backend: DomainIndex,
        k: u32,
        vcpu: VcpuId,
    ) -> Result<DoorbellEvent, DoorbellError> {
        let frontends = self.config.domains()[backend]
            .backend
            .map(|b| b.frontends)
            .unwrap_or_default();
        let frontend = usize::from(
            *frontends
                .as_slice()
                .get(k as usize)
                .ok_or(DoorbellError::UnknownFrontend(k))?,
        );
        if self.domid(frontend).is_none() {
            return Ok(DoorbellEvent::Discarded(Discarded::FrontendGone));
        }
        let record = self
            .record(frontend, vcpu)
            .ok_or(DoorbellError::UnknownVcpu(vcpu.0))?;
        let page = PageId {
            backend,
            frontend_index: k as usize,
        };
        // A held slot has had nothing posted since its request timed out: this COMPLETE is that
        // request's, whatever the record says (it may hold a request published, found the slot
        // held, and not settled yet: never posted, so never to be answered from this slot).
        let held = self.held(page);
        if held.is_some_and(|h| h.is_held(vcpu)) {
            return Ok(DoorbellEvent::Discarded(Discarded::LateAnswer));
        }
        // A late answer's COMPLETE that arrives after the vCPU took the slot back.
        let late = || held.is_some_and(|h| h.take_owed(vcpu));
        // One snapshot decides everything below, and the final compare-exchange succeeds only
        // on that very request (state, device and generation): whatever happened in between,
        // including another vCPU of this backend completing it and the frontend posting a new
        // request to another backend, makes it fail instead of answering the wrong request.
        let pending = record.snapshot();
        let awaited = pending.state == RecordState::Pending
            && self
                .config
                .devices()
                .get(usize::from(pending.device))
                .is_some_and(|d| usize::from(d.backend) == backend);
        if !awaited {
            return if late() {
                Ok(DoorbellEvent::Discarded(Discarded::LateAnswer))
            } else {
                Err(DoorbellError::NotAwaited(vcpu.0))
            };
        }
        let state = p.read_slot(page, vcpu).state();
        if state != STATE_IORESP_READY {
            return if late() {
                Ok(DoorbellEvent::Discarded(Discarded::LateAnswer))
            } else {
                Err(DoorbellError::NotAnswered(state))
            };
        }
        // Read before the settle: once settled, the vCPU may resume and post its next request
        // over these fields. Until then they are this request's (the owner writes them only
        // while Idle), and they are used only if the settle below succeeds on this very request.
        let (access, offset) = record.posted_access();
        if !record.settle(pending, RecordState::Answered) {
            return Err(DoorbellError::NotAwaited(vcpu.0));
        }
        if access.write && offset == super::reg::STATUS {
            self.status_answered(usize::from(pending.device));
        }
        // This backend answers in this slot again: a late COMPLETE still owed never came.
        let _ = late();
        p.wake_vcpu(frontend, vcpu);
        Ok(DoorbellEvent::Completed { frontend, vcpu })
    }

    /// `RAISE_IRQ`: injects the SPI of the backend's device (bits 0-15 of `value`) into its
    /// frontend, after adding the causes (bits 16-17) to a fast device's interrupt status.
    fn raise_irq<P: Platform>(
        &self,
        p: &P,
        backend: DomainIndex,
        value: u32,
    ) -> Result<DoorbellEvent, DoorbellError> {
        let causes = value & !doorbell::RAISE_IRQ_DEVICE;
        if causes & !(doorbell::CAUSE_USED_BUFFER | doorbell::CAUSE_CONFIG_CHANGE) != 0 {
            return Err(DoorbellError::BadCause(value));
        }
        let index = value & doorbell::RAISE_IRQ_DEVICE;
        let (device, d) = self
            .config
            .devices()
            .iter()
            .enumerate()
            .find(|(_, d)| {
                usize::from(d.backend) == backend && u32::from(d.index_in_backend) == index
            })
            .ok_or(DoorbellError::UnknownDevice(index))?;
        let frontend = usize::from(d.frontend);
        if self.domid(frontend).is_none() {
            return Ok(DoorbellEvent::Discarded(Discarded::FrontendGone));
        }
        self.add_interrupt_causes(p, device, causes >> 16);
        p.inject_spi(frontend, d.spi);
        Ok(DoorbellEvent::Raised { device })
    }
}
