//! The ioreq page and the doorbell of docs/backend-abi.md ("The ioreq page", "Protocol",
//! "Doorbell registers"): Xen's `ioreq_t` (xen/include/public/hvm/ioreq.h, 32 bytes per slot)
//! read once and copied, and the doorbell's 32-bit registers.
//!
//! The ioreq page is written by Xen and by this backend only, but Xen writes it from another
//! CPU. It is RAM, mapped Normal Write-Back Inner Shareable here (main.rs remaps it so from the
//! device tree, guest-common `mmu`) as in Xen, so the caches keep the two views coherent and
//! only the order of accesses needs care: every field is read with one volatile, naturally
//! aligned (single-copy atomic) access, the state first, then a `dmb ish`, then the rest (Xen
//! writes the other fields, a barrier, then the state); an answer is written, then a `dmb ish`,
//! then the state, then a `dmb ish` before the doorbell write that sends Xen to look. `ish` is
//! the domain of every CPU Xen and the domains run on. No reference into the page is ever made.
//!
//! The doorbell is MMIO (Device-nGnRE): each access traps to Xen on this CPU.

use core::arch::asm;
use core::fmt;

use guest_common::mmio;

/// `STATE_IOREQ_READY`: Xen posted a request.
pub const STATE_READY: u8 = 1;
/// `STATE_IORESP_READY`: the backend answered.
pub const STATE_IORESP_READY: u8 = 3;
/// `IOREQ_TYPE_COPY`: an MMIO access.
pub const IOREQ_TYPE_COPY: u8 = 1;
/// Size of one `ioreq_t`.
pub const SLOT_SIZE: usize = 32;

/// Doorbell magic, "rioq".
pub const DOORBELL_MAGIC: u32 = 0x716f_6972;
/// The oldest interface version this backend can use (docs/backend-abi.md: accept any version
/// from 1; version 2 adds the fast transport, offered in `FEATURES` bit 0).
pub const DOORBELL_MIN_VERSION: u32 = 1;

// Doorbell register offsets.
const DB_MAGIC: usize = 0x00;
const DB_VERSION: usize = 0x04;
const DB_FEATURES: usize = 0x08;
const DB_COMPLETE: usize = 0x10;
const DB_RAISE_IRQ: usize = 0x14;
const DB_ONLINE: usize = 0x18;

// Offsets in `ioreq_t`.
const OFF_ADDR: usize = 0;
const OFF_DATA: usize = 8;
const OFF_COUNT_SIZE: usize = 16;
const OFF_FLAGS: usize = 30;
const OFF_TYPE: usize = 31;

/// Orders all memory accesses before it against all after it, for every CPU of the inner
/// shareable domain (Xen and the frontends run there).
pub fn dmb() {
    // SAFETY: a barrier instruction; it changes no register and no memory.
    unsafe { asm!("dmb ish", options(nostack, preserves_flags)) };
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
    /// Tells whether the frontend reads (Xen's `IOREQ_READ`, dir = 1).
    pub fn is_read(&self) -> bool {
        self.flags & (1 << 5) != 0
    }

    /// Returns why the request is not a plain MMIO access this backend can serve, if it is not.
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
    base: usize,
}

impl Slot {
    /// Returns slot `vcpu` of the ioreq page at `page`.
    ///
    /// # Safety
    /// `page` must be the guest-physical address of an ioreq page Xen mapped into this domain
    /// (4 KiB, written only by Xen and this backend) and `vcpu` below 128.
    pub unsafe fn new(page: u64, vcpu: u32) -> Self {
        // usize is 64 bits on aarch64; vcpu < 128 keeps the slot inside the page.
        Self {
            base: page as usize + vcpu as usize * SLOT_SIZE,
        }
    }

    /// Reads byte `off` of the slot.
    fn read8(&self, off: usize) -> u8 {
        // SAFETY: `base + off` is inside the ioreq page (`Slot::new`), which is RAM mapped for
        // this domain; a volatile byte load is always aligned and has no side effect.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u8) }
    }

    /// Reads the 64-bit field at `off` (8-byte aligned).
    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as for `read8`; `off` is 0, 8 or 16, so the access is 8-byte aligned (the
        // page is page aligned and slots are 32 bytes).
        unsafe { mmio::read64(self.base + off) }
    }

    /// Copies the request out of the slot if its state is READY.
    pub fn take(&self) -> Option<Request> {
        let flags = self.read8(OFF_FLAGS);
        if flags & 0xf != STATE_READY {
            return None;
        }
        // Xen wrote the other fields before the state.
        dmb();
        let addr = self.read64(OFF_ADDR);
        let data = self.read64(OFF_DATA);
        let count_size = self.read64(OFF_COUNT_SIZE);
        let kind = self.read8(OFF_TYPE);
        Some(Request {
            addr,
            data,
            count: (count_size & 0xffff_ffff) as u32,
            size: (count_size >> 32) as u32,
            flags,
            kind,
        })
    }

    /// Answers `req`: writes `data` (for reads), then, after a barrier, the state
    /// IORESP_READY (keeping the direction bits of byte 30 as Xen wrote them).
    pub fn respond(&self, req: &Request, data: Option<u64>) {
        if let Some(data) = data {
            // SAFETY: the `data` field of this slot, 8-byte aligned, inside the ioreq page;
            // the slot is READY, so Xen does not touch it until the state changes below.
            unsafe { mmio::write64(self.base + OFF_DATA, data) };
        }
        // The answer must be visible before the state that publishes it.
        dmb();
        let flags = (req.flags & 0xf0) | STATE_IORESP_READY;
        // SAFETY: byte 30 of this slot, inside the ioreq page; see above.
        unsafe { core::ptr::write_volatile((self.base + OFF_FLAGS) as *mut u8, flags) };
        // The state must be visible before the doorbell write that tells Xen to look.
        dmb();
    }
}

/// The doorbell page.
#[derive(Clone, Copy, Debug)]
pub struct Doorbell {
    base: usize,
}

impl Doorbell {
    /// Returns the doorbell at `base`.
    ///
    /// # Safety
    /// `base` must be the guest-physical address of the doorbell page Xen emulates for this
    /// domain (the `reg` of the backend node).
    pub unsafe fn new(base: u64) -> Self {
        Self {
            base: base as usize,
        }
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: a 32-bit register of the doorbell page (`Doorbell::new`), aligned; reads of
        // the doorbell have no side effects.
        unsafe { mmio::read32(self.base + off) }
    }

    fn write(&self, off: usize, value: u32) {
        // SAFETY: a 32-bit register of the doorbell page, aligned; the callers write only the
        // values docs/backend-abi.md defines.
        unsafe { mmio::write32(self.base + off, value) }
    }

    /// Reads `MAGIC`.
    pub fn magic(&self) -> u32 {
        self.read(DB_MAGIC)
    }

    /// Reads `VERSION`.
    pub fn version(&self) -> u32 {
        self.read(DB_VERSION)
    }

    /// Reads `FEATURES`.
    pub fn features(&self) -> u32 {
        self.read(DB_FEATURES)
    }

    /// Tells Xen that slot `vcpu` of frontend `frontend` holds an answer.
    pub fn complete(&self, frontend: u32, vcpu: u32) {
        self.write(DB_COMPLETE, (frontend << 16) | vcpu);
    }

    /// Asks Xen to inject device `device`'s interrupt into its frontend, with `causes` (the
    /// `InterruptStatus` bits, version 2) in bits 16-17; 0 for a version-1 `RAISE_IRQ`.
    pub fn raise_irq(&self, device: u32, causes: u32) {
        // What the frontend will look at when it takes the interrupt (the used ring, written
        // through the window: Normal memory) must be visible to its CPU before the doorbell
        // write (Device) that has Xen inject it. The queue code has a barrier after the used
        // index already; this one keeps the rule true whatever calls `raise_irq`.
        dmb();
        self.write(DB_RAISE_IRQ, device | ((causes & 3) << 16));
    }

    /// Tells Xen this backend serves requests now.
    pub fn online(&self) {
        self.write(DB_ONLINE, 1);
    }
}
