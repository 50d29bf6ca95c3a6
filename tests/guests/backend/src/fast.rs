//! The two pages of interface version 2 (docs/backend-abi.md "Version 2: the fast transport"):
//! the transport page this backend writes (header `version`, `wakeup`, `polling`; one record per
//! device with the registers Xen answers for it) and the notify page Xen writes (per device, 16
//! counts of the driver's `QueueNotify` writes), read-only here.
//!
//! Both are RAM Xen shares with this domain, mapped Normal Write-Back Inner Shareable (main.rs
//! remaps them so, guest-common `mmu`), like the ioreq pages: every field is one naturally
//! aligned volatile 32-bit access, and `dmb ish` orders them where the protocol says so. Xen
//! reads each transport-page field once per use and validates it; the counts are only ever read
//! here (single-copy atomic loads of words Xen updates atomically). No reference into either
//! page is ever made.
//!
//! This backend's devices never change their configuration space, so a record's
//! `config_generation` is written once; a backend whose devices do would republish it (then
//! `dmb ish`) before it answers a configuration read with new contents
//! (`MmioTransport::new_config_generation`).

use guest_common::mmio;
use virtio_device::TransportRegisters;

use crate::config::MAX_RECORD_INDEX;
use crate::ioreq::dmb;

/// The header `version` that makes Xen use the page.
pub const TRANSPORT_VERSION: u32 = 2;
/// `FEATURES` bit 0 of the doorbell: Xen offers the transport and notify pages.
pub const FEATURE_FAST: u32 = 1;
/// Counts per device in the notify page (queues 0..16).
pub const NOTIFY_QUEUES: usize = 16;

/// Page size of both pages.
const PAGE: usize = 0x1000;
// Header fields.
const HDR_VERSION: usize = 0x00;
const HDR_WAKEUP: usize = 0x04;
const HDR_POLLING: usize = 0x08;
// Device records: record i at RECORD_BASE + i * RECORD_SIZE.
const RECORD_BASE: usize = 0x40;
const RECORD_SIZE: usize = 0x40;
const REC_PUBLISHED: usize = 0x00;
const REC_DEVICE_ID: usize = 0x04;
const REC_VENDOR_ID: usize = 0x08;
const REC_NUM_QUEUES: usize = 0x0c;
const REC_QUEUE_NUM_MAX: usize = 0x10;
const REC_CONFIG_GENERATION: usize = 0x14;
const REC_DEVICE_FEATURES: usize = 0x18;
/// Bytes of one device's counts in the notify page.
const NOTIFY_STRIDE: usize = 0x40;

/// The transport page.
#[derive(Clone, Copy, Debug)]
pub struct TransportPage {
    base: usize,
}

impl TransportPage {
    /// Returns the transport page at `base`.
    ///
    /// # Safety
    /// `base` must be the `rust-ioreq,transport-page` of this domain's backend node: a page of
    /// RAM Xen shares with this domain, mapped Normal, that nothing else in this guest uses.
    pub unsafe fn new(base: u64) -> Self {
        Self {
            base: base as usize,
        }
    }

    /// Writes the 32-bit field at `offset`.
    fn write(&self, offset: usize, value: u32) {
        debug_assert!(offset < PAGE && offset.is_multiple_of(4));
        // SAFETY: `offset` is a 4-byte aligned offset inside the page (callers pass constants
        // and record offsets checked against MAX_RECORD_INDEX), which `new` says is RAM of
        // this domain that only this backend writes.
        unsafe { mmio::write32(self.base + offset, value) }
    }

    /// Zeroes the whole page, `version` first, so that Xen ignores it until
    /// [`set_version`](Self::set_version) and every record starts unpublished with its reserved
    /// words 0.
    pub fn clear(&self) {
        self.write(HDR_VERSION, 0);
        dmb();
        for offset in (4..PAGE).step_by(4) {
            self.write(offset, 0);
        }
        dmb();
    }

    /// Returns the offset of device `index`'s record, if the page has one.
    fn record(index: u32) -> Option<usize> {
        (index <= MAX_RECORD_INDEX).then(|| RECORD_BASE + index as usize * RECORD_SIZE)
    }

    /// Publishes device `index`'s registers: fills its record, `dmb ish`, then `published = 1`.
    /// Returns false (and writes nothing) if the page has no record for that index.
    pub fn publish(&self, index: u32, regs: &TransportRegisters) -> bool {
        let Some(rec) = Self::record(index) else {
            return false;
        };
        self.write(rec + REC_DEVICE_ID, regs.device_id);
        self.write(rec + REC_VENDOR_ID, regs.vendor_id);
        self.write(rec + REC_NUM_QUEUES, regs.num_queues);
        self.write(rec + REC_QUEUE_NUM_MAX, regs.queue_num_max);
        self.write(rec + REC_CONFIG_GENERATION, regs.config_generation);
        for (i, word) in regs.device_features.iter().enumerate() {
            self.write(rec + REC_DEVICE_FEATURES + 4 * i, *word);
        }
        // Xen must never see `published` before the fields it vouches for.
        dmb();
        self.write(rec + REC_PUBLISHED, 1);
        true
    }

    /// Writes `polling`.
    pub fn set_polling(&self, polling: bool) {
        self.write(HDR_POLLING, u32::from(polling));
    }

    /// Writes the header `version`, after a `dmb ish` that orders every record before it.
    pub fn set_version(&self, version: u32) {
        dmb();
        self.write(HDR_VERSION, version);
        dmb();
    }

    /// Asks for the notify SPI at the next posted notify (`wakeup = 1`), then `dmb ish`: the
    /// caller must then look at every count and slot once more before it waits (the Dekker
    /// order of docs/backend-abi.md "Notify page": Xen increments a count, full barrier, reads
    /// `wakeup`; this backend writes `wakeup`, full barrier, reads the counts; one of the two
    /// sees the other's write).
    pub fn arm_wakeup(&self) {
        self.write(HDR_WAKEUP, 1);
        dmb();
    }
}

/// The notify page (read-only in this domain's stage 2).
#[derive(Clone, Copy, Debug)]
pub struct NotifyPage {
    base: usize,
}

impl NotifyPage {
    /// Returns the notify page at `base`.
    ///
    /// # Safety
    /// `base` must be the `rust-ioreq,notify-page` of this domain's backend node: a page of RAM
    /// Xen shares with this domain (read-only), mapped Normal.
    pub unsafe fn new(base: u64) -> Self {
        Self {
            base: base as usize,
        }
    }

    /// Tells whether the page has counts for device `index`.
    pub fn has_device(index: u32) -> bool {
        (index as usize) < PAGE / NOTIFY_STRIDE
    }

    /// Reads device `index`'s count of queue `queue` (one load: Xen updates it atomically).
    /// Returns 0 for a device or queue the page has no count for.
    pub fn count(&self, index: u32, queue: usize) -> u32 {
        if !Self::has_device(index) || queue >= NOTIFY_QUEUES {
            return 0;
        }
        let offset = index as usize * NOTIFY_STRIDE + 4 * queue;
        // SAFETY: a 4-byte aligned word inside the notify page (checked above), which `new`
        // says is RAM mapped for this domain; a load has no side effect.
        unsafe { mmio::read32(self.base + offset) }
    }
}
