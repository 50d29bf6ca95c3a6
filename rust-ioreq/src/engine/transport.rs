//! The fast transport of backend interface version 2 (`docs/backend-abi.md`, "Version 2"): the
//! virtio-mmio registers (virtio 1.2 §4.2.2) Xen answers itself from the record a backend
//! publishes in its transport page, `QueueNotify` posted as a count in the notify page with
//! wake-up suppression, and `InterruptStatus` kept in Xen.
//!
//! Everything the backend writes is read once per use and validated: a record is used only
//! while the page's `version` is 2, the record says `published`, its `device_id` is non-zero
//! and its `num_queues` is at most [`transport::MAX_QUEUES`]; anything else makes the device a
//! round-trip device again, never an error. What Xen keeps of its own (the interrupt status,
//! the two selectors, the notify counts) lives here in atomics, one set per device, in Xen's
//! memory. Memory a backend can write (its transport page, and its notify page, which it could
//! reach writably through a grant) is only ever loaded or stored, never the target of a
//! read-modify-write: on Arm without LSE atomics that is an exclusive-access loop, which a
//! guest storing to the same line could keep failing forever (the class of XSA-295).

use crate::abi::{notify, transport};
use crate::config::{Device, MAX_DEVICES};
use crate::platform::{DomainIndex, Platform};
use crate::sync::{fence, spin_loop, AtomicBool, AtomicU32, Ordering};
use crate::syndrome::{Access, XZR};
use crate::types::Width;

use super::{Engine, MmioOutcome};

/// virtio-mmio register offsets (virtio 1.2 §4.2.2).
pub mod reg {
    /// `MagicValue` (R).
    pub const MAGIC_VALUE: u32 = 0x000;
    /// `Version` (R).
    pub const VERSION: u32 = 0x004;
    /// `DeviceID` (R).
    pub const DEVICE_ID: u32 = 0x008;
    /// `VendorID` (R).
    pub const VENDOR_ID: u32 = 0x00c;
    /// `DeviceFeatures` (R).
    pub const DEVICE_FEATURES: u32 = 0x010;
    /// `DeviceFeaturesSel` (W).
    pub const DEVICE_FEATURES_SEL: u32 = 0x014;
    /// `QueueSel` (W).
    pub const QUEUE_SEL: u32 = 0x030;
    /// `QueueNumMax` (R).
    pub const QUEUE_NUM_MAX: u32 = 0x034;
    /// `QueueNotify` (W).
    pub const QUEUE_NOTIFY: u32 = 0x050;
    /// `InterruptStatus` (R).
    pub const INTERRUPT_STATUS: u32 = 0x060;
    /// `InterruptACK` (W).
    pub const INTERRUPT_ACK: u32 = 0x064;
    /// `Status` (RW).
    pub const STATUS: u32 = 0x070;
    /// `ConfigGeneration` (R).
    pub const CONFIG_GENERATION: u32 = 0x0fc;
}

/// `MagicValue`: "virt" (virtio 1.2 §4.2.2).
pub const VIRTIO_MAGIC: u32 = 0x7472_6976;
/// `Version` of the virtio-mmio transport Xen answers for (the non-legacy one).
pub const VIRTIO_MMIO_VERSION: u32 = 2;
/// `InterruptStatus` bits a cause may set: used buffer (bit 0), configuration change (bit 1).
pub(crate) const INTERRUPT_BITS: u32 = 0b11;

/// How a device's accesses are served right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `xen,virtio-classic`: every access is a round trip, whatever the backend publishes.
    Classic,
    /// The backend published a valid record: the registers above are answered in Xen.
    Fast,
    /// No valid record (a version-1 backend, or one not ready): every access is a round trip.
    RoundTrips,
}

impl core::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TransportKind::Classic => "classic (xen,virtio-classic): every access a round trip",
            TransportKind::Fast => "fast transport: notifies posted, transport registers in Xen",
            TransportKind::RoundTrips => "no transport record published: every access a round trip",
        })
    }
}

/// Devices whose notify counts are kept: all of them, except in the loom model-checking build,
/// where every atomic is loom's and costs every explored interleaving (its configurations
/// have fewer devices).
#[cfg(not(loom))]
const COUNTED_DEVICES: usize = MAX_DEVICES;
#[cfg(loom)]
const COUNTED_DEVICES: usize = 8;

/// What Xen keeps of each device's transport.
#[derive(Debug)]
pub(crate) struct TransportState {
    /// `InterruptStatus`.
    isr: [AtomicU32; MAX_DEVICES],
    /// `DeviceFeaturesSel`, as the frontend last wrote it.
    features_sel: [AtomicU32; MAX_DEVICES],
    /// `QueueSel`, as the frontend last wrote it.
    queue_sel: [AtomicU32; MAX_DEVICES],
    /// The `Status` write in flight is a reset (0): clear the above once it is answered.
    reset_posted: [AtomicBool; MAX_DEVICES],
    /// The notify counts, authoritative; the notify page gets copies.
    counts: [[AtomicU32; transport::MAX_QUEUES as usize]; COUNTED_DEVICES],
    /// Per device, a ticket lock that lets one vCPU at a time copy a count to the page.
    publish_next: [AtomicU32; MAX_DEVICES],
    publish_serving: [AtomicU32; MAX_DEVICES],
}

impl TransportState {
    pub(crate) fn new() -> Self {
        TransportState {
            isr: core::array::from_fn(|_| AtomicU32::new(0)),
            features_sel: core::array::from_fn(|_| AtomicU32::new(0)),
            queue_sel: core::array::from_fn(|_| AtomicU32::new(0)),
            reset_posted: core::array::from_fn(|_| AtomicBool::new(false)),
            counts: core::array::from_fn(|_| core::array::from_fn(|_| AtomicU32::new(0))),
            publish_next: core::array::from_fn(|_| AtomicU32::new(0)),
            publish_serving: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// A device's published record, validated; fields other than these are read when used.
#[derive(Clone, Copy, Debug)]
struct Record {
    backend: DomainIndex,
    base: usize,
    device_id: u32,
    num_queues: u32,
}

impl Record {
    /// Reads and validates the record of `device`, if its backend's page enables it.
    fn of<P: Platform>(p: &P, device: &Device) -> Option<Record> {
        let backend = usize::from(device.backend);
        if device.classic
            || p.transport_read(backend, transport::VERSION_OFFSET) != transport::VERSION
        {
            return None;
        }
        let base = transport::record(usize::from(device.index_in_backend));
        if p.transport_read(backend, base + transport::field::PUBLISHED) != 1 {
            return None;
        }
        let device_id = p.transport_read(backend, base + transport::field::DEVICE_ID);
        let num_queues = p.transport_read(backend, base + transport::field::NUM_QUEUES);
        (device_id != 0 && num_queues <= transport::MAX_QUEUES).then_some(Record {
            backend,
            base,
            device_id,
            num_queues,
        })
    }

    /// Reads the record's field at `offset` (once).
    fn read<P: Platform>(&self, p: &P, offset: usize) -> u32 {
        p.transport_read(self.backend, self.base + offset)
    }
}

impl Engine {
    /// Returns how `device`'s accesses are served right now.
    pub fn transport_kind<P: Platform>(&self, p: &P, device: usize) -> TransportKind {
        match self.config.devices().get(device) {
            Some(d) if d.classic => TransportKind::Classic,
            Some(d) if Record::of(p, d).is_some() => TransportKind::Fast,
            _ => TransportKind::RoundTrips,
        }
    }

    /// Answers a frontend's access to a fast device's transport register in Xen, if it is one
    /// of those (`docs/backend-abi.md`, "Registers Xen answers for a fast device"). `data` is
    /// the value a store writes. Returns `None` for an access that must go to the backend
    /// (after noting what Xen keeps of it: `QueueSel`, a reset).
    pub(super) fn transport_access<P: Platform>(
        &self,
        p: &P,
        device_index: usize,
        offset: u32,
        access: &Access,
        data: u64,
    ) -> Option<MmioOutcome> {
        let device = self.config.devices().get(device_index)?;
        let backend = usize::from(device.backend);
        // A vanished device reads as one, fast or not: the usual path says so.
        if device.classic
            || access.width != Width::Word
            || self.dead[backend].load(Ordering::Acquire)
            || self.broken[device_index].load(Ordering::Acquire)
        {
            return None;
        }
        let t = &self.transport;
        // A 32-bit store: the value is the low word.
        let value = data as u32;
        // What Xen keeps of these writes is kept whether or not the device is fast right now,
        // and they all go on to the backend: a device that becomes fast (or stops being) finds
        // both sides agreeing on the selectors.
        if access.write {
            match offset {
                reg::DEVICE_FEATURES_SEL => {
                    t.features_sel[device_index].store(value, Ordering::Relaxed);
                    return None;
                }
                reg::QUEUE_SEL => {
                    t.queue_sel[device_index].store(value, Ordering::Relaxed);
                    return None;
                }
                reg::STATUS => {
                    t.reset_posted[device_index].store(value == 0, Ordering::Relaxed);
                    return None;
                }
                _ => {}
            }
        }
        let record = Record::of(p, device)?;
        if access.write {
            match offset {
                // With VIRTIO_F_NOTIFICATION_DATA the high half carries the driver's ring
                // position (virtio 1.2 §4.2.2): only the queue index is kept.
                reg::QUEUE_NOTIFY => {
                    self.post_notify(p, device_index, device, &record, value & 0xffff)
                }
                reg::INTERRUPT_ACK => {
                    t.isr[device_index].fetch_and(!value, Ordering::AcqRel);
                }
                _ => return None,
            }
            return Some(MmioOutcome::Answered { write_reg: None });
        }
        let answer = match offset {
            reg::MAGIC_VALUE => VIRTIO_MAGIC,
            reg::VERSION => VIRTIO_MMIO_VERSION,
            reg::DEVICE_ID => record.device_id,
            reg::VENDOR_ID => record.read(p, transport::field::VENDOR_ID),
            reg::DEVICE_FEATURES => {
                let sel = t.features_sel[device_index].load(Ordering::Relaxed) as usize;
                if sel < transport::FEATURE_WORDS {
                    record.read(p, transport::field::DEVICE_FEATURES + 4 * sel)
                } else {
                    0
                }
            }
            reg::QUEUE_NUM_MAX => {
                if t.queue_sel[device_index].load(Ordering::Relaxed) < record.num_queues {
                    record.read(p, transport::field::QUEUE_NUM_MAX)
                } else {
                    0
                }
            }
            reg::INTERRUPT_STATUS => t.isr[device_index].load(Ordering::Acquire),
            reg::CONFIG_GENERATION => record.read(p, transport::field::CONFIG_GENERATION),
            _ => return None,
        };
        let write_reg =
            (access.reg != XZR).then(|| (access.reg, access.load_value(u64::from(answer))));
        Some(MmioOutcome::Answered { write_reg })
    }

    /// Posts `QueueNotify(queue)`: counts it, publishes the count in the notify page, and
    /// sends the notify SPI if the backend armed its wake-up and does not poll. A queue the
    /// device does not have is dropped, as the backend would drop it.
    fn post_notify<P: Platform>(
        &self,
        p: &P,
        device_index: usize,
        device: &Device,
        record: &Record,
        queue: u32,
    ) {
        if queue >= record.num_queues {
            return;
        }
        let backend = record.backend;
        let t = &self.transport;
        let Some(count) = t
            .counts
            .get(device_index)
            .and_then(|c| c.get(queue as usize))
        else {
            return;
        };
        // Xen's memory: the driver's ring writes, ordered before its QueueNotify store, are
        // before this increment, which the publishing load below acquires.
        count.fetch_add(1, Ordering::SeqCst);
        // One publisher at a time copies the then-current count, so the page's count never
        // goes back (two vCPUs of the frontend may notify at once). The lock is Xen's, held
        // for a load and a store, and fair: a vCPU waits for at most the frontend's other
        // vCPUs notifying this device.
        let ticket = t.publish_next[device_index].fetch_add(1, Ordering::Acquire);
        while t.publish_serving[device_index].load(Ordering::Acquire) != ticket {
            spin_loop();
        }
        p.notify_publish(
            backend,
            notify::count(usize::from(device.index_in_backend), queue),
            count.load(Ordering::Acquire),
        );
        t.publish_serving[device_index].store(ticket.wrapping_add(1), Ordering::Release);
        // Dekker with a backend going idle: it writes `wakeup = 1`, fences, then reads every
        // count; Xen publishes, fences, then reads `wakeup`. Either its scan sees this count,
        // or Xen sees it armed and wakes it. Disarming is a plain store: an arming it
        // overwrites is followed by this SPI anyway, and two vCPUs may both send one (harmless).
        fence(Ordering::SeqCst);
        if p.transport_read(backend, transport::POLLING_OFFSET) != 0 {
            return;
        }
        if p.transport_read(backend, transport::WAKEUP_OFFSET) == 1 {
            p.transport_write(backend, transport::WAKEUP_OFFSET, 0);
            self.notify_backend(p, backend);
        }
    }

    /// Raises the notify SPI of `backend`.
    fn notify_backend<P: Platform>(&self, p: &P, backend: DomainIndex) {
        if let Some(b) = self.config.domains()[backend].backend {
            p.inject_spi(backend, b.notify_spi);
        }
    }

    /// Tells whether `backend` says it polls (no notify SPI is then sent).
    pub(super) fn backend_polls<P: Platform>(&self, p: &P, backend: DomainIndex) -> bool {
        p.transport_read(backend, transport::VERSION_OFFSET) == transport::VERSION
            && p.transport_read(backend, transport::POLLING_OFFSET) != 0
    }

    /// Sends the notify SPI for a request just posted, unless the backend polls. The post's
    /// full barrier orders the slot before the read of `polling`: a backend that stops polling
    /// writes `polling = 0`, fences and rescans the slots.
    pub(super) fn notify_request<P: Platform>(&self, p: &P, backend: DomainIndex) {
        fence(Ordering::SeqCst);
        if !self.backend_polls(p, backend) {
            self.notify_backend(p, backend);
        }
    }

    /// Adds `causes` (`RAISE_IRQ` bits 16-17, shifted down) to a fast device's interrupt
    /// status before its SPI is injected; nothing for any other device, whose backend keeps
    /// `InterruptStatus` itself. No cause counts as a used buffer.
    pub(super) fn add_interrupt_causes<P: Platform>(
        &self,
        p: &P,
        device_index: usize,
        causes: u32,
    ) {
        let Some(device) = self.config.devices().get(device_index) else {
            return;
        };
        if Record::of(p, device).is_none() {
            return;
        }
        let bits = if causes == 0 {
            1
        } else {
            causes & INTERRUPT_BITS
        };
        self.transport.isr[device_index].fetch_or(bits, Ordering::AcqRel);
    }

    /// Runs when the backend's `COMPLETE` answered a frontend's `Status` write: after a reset
    /// (0), the device's interrupt status and selectors start again from 0 (virtio 1.2
    /// §4.2.2.1). Done at `COMPLETE`, not when the frontend vCPU resumes: an interrupt the
    /// backend raises after answering the reset is kept.
    pub(super) fn status_answered(&self, device_index: usize) {
        let t = &self.transport;
        if device_index < MAX_DEVICES && t.reset_posted[device_index].swap(false, Ordering::AcqRel)
        {
            t.isr[device_index].store(0, Ordering::Release);
            t.features_sel[device_index].store(0, Ordering::Relaxed);
            t.queue_sel[device_index].store(0, Ordering::Relaxed);
        }
    }

    /// Returns how long a frontend vCPU waiting on `device` may spin for its answer: the
    /// backend's `xen,ioreq-poll-us` while it says it polls, in nanoseconds; 0 otherwise.
    pub(super) fn spin_budget_ns<P: Platform>(&self, p: &P, device_index: usize) -> u64 {
        let Some(device) = self.config.devices().get(device_index) else {
            return 0;
        };
        let backend = usize::from(device.backend);
        let poll_us = self.config.domains()[backend]
            .backend
            .map_or(0, |b| b.poll_us);
        if poll_us == 0 || !self.backend_polls(p, backend) {
            return 0;
        }
        u64::from(poll_us) * 1000
    }
}
