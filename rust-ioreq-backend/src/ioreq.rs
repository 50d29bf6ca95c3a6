//! The ioreq page and the doorbell (docs/backend-abi.md, "The ioreq page", "Protocol",
//! "Doorbell registers"): Xen's 32-byte `ioreq_t` read once and copied out, the answer written
//! back in the order Xen expects, and the doorbell's 32-bit registers behind a trait so that
//! host tests can record what the daemon rings.

use std::cell::RefCell;
use std::fmt;

use crate::shared::{barrier, SharedRegion};

/// `STATE_IOREQ_READY`: Xen posted a request.
pub const STATE_READY: u8 = 1;
/// `STATE_IORESP_READY`: the backend answered.
pub const STATE_IORESP_READY: u8 = 3;
/// `IOREQ_TYPE_COPY`: an MMIO access.
pub const IOREQ_TYPE_COPY: u8 = 1;
/// Size of one `ioreq_t`.
pub const SLOT_SIZE: usize = 32;

/// Doorbell `MAGIC`: "rioq".
pub const DOORBELL_MAGIC: u32 = 0x716f_6972;
/// Doorbell register offsets.
pub mod reg {
    /// `MAGIC` (R).
    pub const MAGIC: usize = 0x00;
    /// `VERSION` (R).
    pub const VERSION: usize = 0x04;
    /// `FEATURES` (R).
    pub const FEATURES: usize = 0x08;
    /// `COMPLETE` (W): `(frontend << 16) | vcpu`.
    pub const COMPLETE: usize = 0x10;
    /// `RAISE_IRQ` (W): device index, causes in bits 16-17.
    pub const RAISE_IRQ: usize = 0x14;
    /// `ONLINE` (W): 1.
    pub const ONLINE: usize = 0x18;
}

// Offsets in `ioreq_t`.
const OFF_ADDR: usize = 0;
const OFF_DATA: usize = 8;
const OFF_COUNT_SIZE: usize = 16;
const OFF_FLAGS: usize = 30;
const OFF_TYPE: usize = 31;

/// The doorbell page: one 32-bit load or store per register access (docs/backend-abi.md: a
/// single `LDR`/`STR`, so that Xen gets a valid syndrome).
pub trait Doorbell {
    /// Reads the register at `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Writes `value` to the register at `offset`.
    fn write(&self, offset: usize, value: u32);
}

/// Tells Xen that slot `vcpu` of frontend `frontend` holds an answer.
pub fn complete(db: &dyn Doorbell, frontend: u32, vcpu: u32) {
    db.write(reg::COMPLETE, (frontend << 16) | vcpu);
}

/// Asks Xen to inject device `device`'s interrupt, with `causes` (`InterruptStatus` bits, for a
/// fast device) in bits 16-17. The used ring the frontend will look at must be visible first:
/// a barrier between the RAM writes and the doorbell store.
pub fn raise_irq(db: &dyn Doorbell, device: u32, causes: u32) {
    barrier();
    db.write(reg::RAISE_IRQ, (device & 0xffff) | ((causes & 3) << 16));
}

/// A request copied out of a slot. `flags` is byte 30 as read: the state in bits 0-3,
/// `data_is_ptr` bit 4, `dir` bit 5 (1 = read), `df` bit 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Frontend guest-physical address of the access.
    pub addr: u64,
    /// The value written (for writes).
    pub data: u64,
    /// `count`: 1 for every request Xen forwards.
    pub count: u32,
    /// `size`: 1, 2, 4 or 8.
    pub size: u32,
    /// Byte 30 as read.
    pub flags: u8,
    /// `type`.
    pub kind: u8,
}

impl Request {
    /// Tells whether the frontend reads (`dir` = 1).
    pub fn is_read(&self) -> bool {
        self.flags & (1 << 5) != 0
    }

    /// Returns why the request is not a plain MMIO access this daemon can serve, if it is not.
    pub fn defect(&self) -> Option<&'static str> {
        if self.kind != IOREQ_TYPE_COPY {
            Some("type is not IOREQ_TYPE_COPY")
        } else if self.flags & (1 << 4) != 0 {
            Some("data_is_ptr set")
        } else if self.flags & (1 << 6) != 0 {
            Some("df set")
        } else if self.count != 1 {
            Some("count is not 1")
        } else if !matches!(self.size, 1 | 2 | 4 | 8) {
            Some("size is not 1, 2, 4 or 8")
        } else {
            None
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.is_read() { "read" } else { "write" };
        write!(
            f,
            "{dir} addr={:#x} size={} data={:#x} count={} type={} flags={:#x}",
            self.addr, self.size, self.data, self.count, self.kind, self.flags
        )
    }
}

/// One slot of an ioreq page.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    page: SharedRegion,
    base: usize,
}

impl Slot {
    /// Returns slot `vcpu` of `page` (`None` if the page has no such slot).
    pub fn new(page: SharedRegion, vcpu: u32) -> Option<Self> {
        let base = usize::try_from(vcpu).ok()?.checked_mul(SLOT_SIZE)?;
        (base.checked_add(SLOT_SIZE)? <= page.len()).then_some(Self { page, base })
    }

    /// Copies the request out of the slot if its state is READY: the state first, a barrier
    /// (Xen wrote the other fields before it), then every field once.
    pub fn take(&self) -> Option<Request> {
        let flags = self.page.read_u8(self.base + OFF_FLAGS)?;
        if flags & 0xf != STATE_READY {
            return None;
        }
        barrier();
        let addr = self.page.read_u64(self.base + OFF_ADDR)?;
        let data = self.page.read_u64(self.base + OFF_DATA)?;
        let count_size = self.page.read_u64(self.base + OFF_COUNT_SIZE)?;
        let kind = self.page.read_u8(self.base + OFF_TYPE)?;
        let [c0, c1, c2, c3, s0, s1, s2, s3] = count_size.to_le_bytes();
        Some(Request {
            addr,
            data,
            count: u32::from_le_bytes([c0, c1, c2, c3]),
            size: u32::from_le_bytes([s0, s1, s2, s3]),
            flags,
            kind,
        })
    }

    /// Answers `req`: `data` (for reads), a barrier, the state IORESP_READY (keeping the
    /// direction bits Xen wrote), a barrier before the doorbell write that sends Xen to look.
    pub fn respond(&self, req: &Request, data: Option<u64>) {
        if let Some(data) = data {
            self.page.write_u64(self.base + OFF_DATA, data);
        }
        barrier();
        self.page.write_u8(
            self.base + OFF_FLAGS,
            (req.flags & 0xf0) | STATE_IORESP_READY,
        );
        barrier();
    }
}

/// A doorbell for host tests: answers `MAGIC`, `VERSION` and `FEATURES` and records every write.
#[derive(Debug, Default)]
pub struct RecordingDoorbell {
    /// `VERSION`.
    pub version: u32,
    /// `FEATURES`.
    pub features: u32,
    /// Every write, `(offset, value)`, in order.
    pub writes: RefCell<Vec<(usize, u32)>>,
}

impl Doorbell for RecordingDoorbell {
    fn read(&self, offset: usize) -> u32 {
        match offset {
            reg::MAGIC => DOORBELL_MAGIC,
            reg::VERSION => self.version,
            reg::FEATURES => self.features,
            _ => 0,
        }
    }

    fn write(&self, offset: usize, value: u32) {
        self.writes.borrow_mut().push((offset, value));
    }
}

impl RecordingDoorbell {
    /// Returns and forgets the writes so far.
    pub fn take(&self) -> Vec<(usize, u32)> {
        std::mem::take(&mut *self.writes.borrow_mut())
    }
}
