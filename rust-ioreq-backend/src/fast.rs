//! The two pages of interface version 2 (docs/backend-abi.md, "Version 2: the fast
//! transport"): the transport page this daemon writes (header `version`, `wakeup`, `polling`;
//! one record per published device) and the notify page Xen writes (per device, 16 counts of
//! the driver's `QueueNotify` writes), only read here.

use virtio_device::TransportRegisters;

use crate::shared::{barrier, SharedRegion};

/// The header `version` that makes Xen use the page.
pub const TRANSPORT_VERSION: u32 = 2;
/// Doorbell `FEATURES` bit 0: Xen offers the transport and notify pages.
pub const FEATURE_FAST: u32 = 1;
/// Counts per device in the notify page.
pub const NOTIFY_QUEUES: usize = 16;

const PAGE: usize = 0x1000;
const HDR_VERSION: usize = 0x00;
const HDR_WAKEUP: usize = 0x04;
const HDR_POLLING: usize = 0x08;
const RECORD_BASE: usize = 0x40;
const RECORD_SIZE: usize = 0x40;
const REC_PUBLISHED: usize = 0x00;
const REC_DEVICE_ID: usize = 0x04;
const REC_VENDOR_ID: usize = 0x08;
const REC_NUM_QUEUES: usize = 0x0c;
const REC_QUEUE_NUM_MAX: usize = 0x10;
const REC_CONFIG_GENERATION: usize = 0x14;
const REC_DEVICE_FEATURES: usize = 0x18;
const NOTIFY_STRIDE: usize = 0x40;

/// The transport page.
#[derive(Clone, Copy, Debug)]
pub struct TransportPage(pub SharedRegion);

impl TransportPage {
    /// Zeroes the page, `version` first, so that Xen ignores it until
    /// [`set_version`](Self::set_version) and every record starts unpublished.
    pub fn clear(&self) {
        self.0.write_u32(HDR_VERSION, 0);
        barrier();
        for offset in (4..PAGE.min(self.0.len())).step_by(4) {
            self.0.write_u32(offset, 0);
        }
        barrier();
    }

    /// Returns the offset of device `index`'s record, if the page has one.
    fn record(index: u32) -> Option<usize> {
        let rec =
            RECORD_BASE.checked_add(usize::try_from(index).ok()?.checked_mul(RECORD_SIZE)?)?;
        (rec + RECORD_SIZE <= PAGE).then_some(rec)
    }

    /// Publishes device `index`'s registers: the record, a barrier, `published = 1`. Returns
    /// false (nothing written) if the page has no record for that index.
    pub fn publish(&self, index: u32, regs: &TransportRegisters) -> bool {
        let Some(rec) = Self::record(index) else {
            return false;
        };
        self.0.write_u32(rec + REC_DEVICE_ID, regs.device_id);
        self.0.write_u32(rec + REC_VENDOR_ID, regs.vendor_id);
        self.0.write_u32(rec + REC_NUM_QUEUES, regs.num_queues);
        self.0
            .write_u32(rec + REC_QUEUE_NUM_MAX, regs.queue_num_max);
        self.0
            .write_u32(rec + REC_CONFIG_GENERATION, regs.config_generation);
        for (i, word) in regs.device_features.iter().enumerate() {
            self.0.write_u32(rec + REC_DEVICE_FEATURES + 4 * i, *word);
        }
        // Xen must never see `published` before the fields it vouches for.
        barrier();
        self.0.write_u32(rec + REC_PUBLISHED, 1)
    }

    /// Writes the header `version` after a barrier that orders every record before it, and
    /// `polling` = 0 (this daemon sleeps on the notify interrupt).
    pub fn enable(&self) {
        self.0.write_u32(HDR_POLLING, 0);
        barrier();
        self.0.write_u32(HDR_VERSION, TRANSPORT_VERSION);
        barrier();
    }

    /// Asks for the notify interrupt at the next posted notify (`wakeup = 1`), then a barrier:
    /// the caller then looks at every count and slot once more before it waits (Xen increments
    /// a count, full barrier, reads `wakeup`; one of the two sees the other's write).
    pub fn arm_wakeup(&self) {
        self.0.write_u32(HDR_WAKEUP, 1);
        barrier();
    }
}

/// The notify page (read-only to this daemon).
#[derive(Clone, Copy, Debug)]
pub struct NotifyPage(pub SharedRegion);

impl NotifyPage {
    /// Tells whether the page has counts for device `index`.
    pub fn has_device(index: u32) -> bool {
        usize::try_from(index).is_ok_and(|i| i < PAGE / NOTIFY_STRIDE)
    }

    /// Reads device `index`'s count of queue `queue` (one load: Xen writes it with one
    /// release store); 0 for a device or queue the page has no count for.
    pub fn count(&self, index: u32, queue: usize) -> u32 {
        if !Self::has_device(index) || queue >= NOTIFY_QUEUES {
            return 0;
        }
        let offset = usize::try_from(index).unwrap_or(0) * NOTIFY_STRIDE + 4 * queue;
        self.0.read_u32(offset).unwrap_or(0)
    }
}
