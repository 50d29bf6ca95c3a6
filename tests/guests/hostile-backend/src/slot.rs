//! Raw access to one slot of an ioreq page (docs/backend-abi.md "The ioreq page": Xen's
//! 32-byte `ioreq_t`), field by field, for a backend that writes whatever it likes there.
//!
//! Every access is one volatile, naturally aligned load or store (the MMU is off: the page is
//! Device memory to this guest).

use core::arch::asm;

/// `STATE_IOREQ_NONE`.
pub const NONE: u8 = 0;
/// `STATE_IOREQ_READY`.
pub const READY: u8 = 1;
/// `STATE_IOREQ_INPROCESS`.
pub const INPROCESS: u8 = 2;
/// `STATE_IORESP_READY`.
pub const RESP_READY: u8 = 3;
/// `IOREQ_TYPE_COPY`.
pub const TYPE_COPY: u8 = 1;
/// Byte 30: `dir` (1 = read).
pub const DIR_READ: u8 = 1 << 5;

const ADDR: usize = 0;
const DATA: usize = 8;
const COUNT_SIZE: usize = 16;
const EPORT_PAD: usize = 24;
const FLAGS: usize = 30;
const TYPE: usize = 31;
const SLOT_SIZE: usize = 32;

/// Orders all memory accesses before it against all after it (inner shareable: Xen and the
/// frontends run there).
pub fn dmb() {
    // SAFETY: a barrier; it changes no register and no memory.
    unsafe { asm!("dmb ish", options(nostack, preserves_flags)) };
}

/// A slot's fields, copied out (state byte first, then a barrier, then the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub addr: u64,
    pub data: u64,
    pub count: u32,
    pub size: u32,
    /// `vp_eport` (u32) and `_pad0` (u16), as one value: eport in the low 32 bits.
    pub eport_pad: u64,
    pub flags: u8,
    pub kind: u8,
}

impl Request {
    /// Tells whether the frontend reads.
    pub fn is_read(&self) -> bool {
        self.flags & DIR_READ != 0
    }

    /// Tells whether every field is what Xen writes for an MMIO request of the frontend
    /// (docs/backend-abi.md): count 1, a power-of-two size up to 8, `addr` aligned to it, no
    /// event port, no padding, type COPY, only the direction bit beside the state.
    pub fn is_clean(&self) -> bool {
        self.count == 1
            && matches!(self.size, 1 | 2 | 4 | 8)
            && self.addr.is_multiple_of(u64::from(self.size))
            && self.eport_pad & 0xffff_ffff_ffff == 0
            && self.kind == TYPE_COPY
            && self.flags & 0xf0 & !DIR_READ == 0
    }
}

/// One slot of an ioreq page.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    base: usize,
}

impl Slot {
    /// Returns slot `vcpu` of the ioreq page at guest-physical `page`.
    ///
    /// # Safety
    /// `page` must be an ioreq page Xen mapped into this domain and `vcpu` below 128.
    pub unsafe fn new(page: u64, vcpu: u32) -> Self {
        Slot {
            base: page as usize + vcpu as usize * SLOT_SIZE,
        }
    }

    fn read8(&self, off: usize) -> u8 {
        // SAFETY: inside the slot (`new`), a mapped page; a volatile byte load has no side
        // effect.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u8) }
    }

    fn read32(&self, off: usize) -> u32 {
        // SAFETY: as for `read8`; `off` is 4-byte aligned and slots are 32-byte aligned.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as for `read8`; `off` is 8-byte aligned.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u64) }
    }

    fn write8(&self, off: usize, v: u8) {
        // SAFETY: inside the slot of a mapped page that only Xen and this backend use; no
        // Rust object lives there.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u8, v) }
    }

    fn write64(&self, off: usize, v: u64) {
        // SAFETY: as for `write8`; `off` is 8-byte aligned.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u64, v) }
    }

    /// Reads byte 30 (state and flags).
    pub fn flags(&self) -> u8 {
        self.read8(FLAGS)
    }

    /// Copies the whole slot out, state first.
    pub fn read(&self) -> Request {
        let flags = self.read8(FLAGS);
        dmb();
        let count_size = self.read64(COUNT_SIZE);
        Request {
            addr: self.read64(ADDR),
            data: self.read64(DATA),
            count: count_size as u32,
            size: (count_size >> 32) as u32,
            eport_pad: u64::from(self.read32(EPORT_PAD))
                | (u64::from(self.read8(28)) << 32)
                | (u64::from(self.read8(29)) << 40),
            flags,
            kind: self.read8(TYPE),
        }
    }

    /// Writes `data`.
    pub fn set_data(&self, data: u64) {
        self.write64(DATA, data);
    }

    /// Writes byte 30 (after a barrier: whatever was written before is visible first).
    pub fn set_flags(&self, flags: u8) {
        dmb();
        self.write8(FLAGS, flags);
        dmb();
    }

    /// Overwrites every field but the state and `data` with garbage.
    pub fn scribble(&self) {
        self.write64(ADDR, 0xdead_beef_dead_beef);
        self.write64(COUNT_SIZE, 0x0000_1234_0000_0000);
        self.write64(EPORT_PAD, 0xffff_ffff_ffff_ffff);
        self.write8(TYPE, 0xff);
    }

    /// Answers the request in the slot: `data`, then `RESP_READY` keeping the upper flag bits
    /// as they are.
    pub fn respond(&self, data: u64) {
        self.set_data(data);
        let flags = self.flags();
        self.set_flags((flags & 0xf0) | RESP_READY);
    }

    /// Moves byte 30 from `old` to `new` only if it still holds `old`, with an exclusive
    /// load/store pair (Xen may write the byte meanwhile; a plain store could overwrite what
    /// Xen wrote). Returns whether it did.
    pub fn compare_exchange_flags(&self, old: u8, new: u8) -> bool {
        let addr = self.base + FLAGS;
        loop {
            let (seen, failed): (u32, u32);
            // SAFETY: an exclusive pair on byte 30 of the slot (a mapped page no Rust object
            // lives in); `clrex` drops the reservation when the byte holds something else.
            unsafe {
                asm!(
                    "ldxrb {seen:w}, [{a}]",
                    "cmp {seen:w}, {old:w}",
                    "b.ne 2f",
                    "stxrb {failed:w}, {new:w}, [{a}]",
                    "b 3f",
                    "2:",
                    "clrex",
                    "mov {failed:w}, #2",
                    "3:",
                    a = in(reg) addr,
                    old = in(reg) u32::from(old),
                    new = in(reg) u32::from(new),
                    seen = out(reg) seen,
                    failed = out(reg) failed,
                    options(nostack)
                );
            }
            match failed {
                0 => return true,
                // The store-exclusive lost its reservation: look again.
                1 => continue,
                _ => {
                    let _ = seen;
                    return false;
                }
            }
        }
    }
}
