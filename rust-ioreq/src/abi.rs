//! The shared-memory and register ABI with backends: Xen's `ioreq_t`
//! (`xen/include/public/hvm/ioreq.h`) and the doorbell page of `docs/backend-abi.md`.
//!
//! `include/rust_ioreq.h` mirrors every layout here with `_Static_assert`s.

use core::mem::{offset_of, size_of};

/// Xen's `ioreq_t`, field for field. The C bit-fields `state:4, data_is_ptr:1, dir:1, df:1`
/// share the byte at offset 30; they are one `u8` here with accessors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoReq {
    /// Guest-physical address of the access.
    pub addr: u64,
    /// Value written, or the backend's answer to a read.
    pub data: u64,
    /// Repetitions; always 1 for MMIO here.
    pub count: u32,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u32,
    /// Event channel of the upstream protocol; unused (0).
    pub vp_eport: u32,
    /// Padding.
    pub pad0: u16,
    /// `state:4 | data_is_ptr:1 | dir:1 | df:1 | _pad1:1`.
    pub flags: u8,
    /// I/O type (`IOREQ_TYPE_COPY` for MMIO).
    pub kind: u8,
}

const _: () = assert!(size_of::<IoReq>() == 32);
const _: () = assert!(offset_of!(IoReq, addr) == 0);
const _: () = assert!(offset_of!(IoReq, data) == 8);
const _: () = assert!(offset_of!(IoReq, count) == 16);
const _: () = assert!(offset_of!(IoReq, size) == 20);
const _: () = assert!(offset_of!(IoReq, vp_eport) == 24);
const _: () = assert!(offset_of!(IoReq, pad0) == 28);
const _: () = assert!(offset_of!(IoReq, flags) == 30);
const _: () = assert!(offset_of!(IoReq, kind) == 31);

/// Offset of the byte holding `state` (and `dir`) in a slot.
pub const IOREQ_FLAGS_OFFSET: usize = 30;
/// Size of one slot.
pub const IOREQ_SIZE: usize = 32;
/// Slots in one 4 KiB ioreq page: the most vCPUs a frontend may have.
pub const SLOTS_PER_PAGE: u32 = 4096 / 32;
const _: () = assert!(SLOTS_PER_PAGE as usize * IOREQ_SIZE == 4096);

/// `STATE_IOREQ_NONE`: the slot is free.
pub const STATE_IOREQ_NONE: u8 = 0;
/// `STATE_IOREQ_READY`: Xen posted a request.
pub const STATE_IOREQ_READY: u8 = 1;
/// `STATE_IOREQ_INPROCESS`: the backend is working on it.
pub const STATE_IOREQ_INPROCESS: u8 = 2;
/// `STATE_IORESP_READY`: the backend answered.
pub const STATE_IORESP_READY: u8 = 3;
/// `IOREQ_TYPE_COPY`: an MMIO access.
pub const IOREQ_TYPE_COPY: u8 = 1;

const DIR_READ_BIT: u8 = 1 << 5;

impl IoReq {
    /// Builds a READY MMIO request for one access.
    pub fn mmio(addr: u64, size: u32, read: bool, data: u64) -> IoReq {
        IoReq {
            addr,
            data,
            count: 1,
            size,
            vp_eport: 0,
            pad0: 0,
            flags: STATE_IOREQ_READY | if read { DIR_READ_BIT } else { 0 },
            kind: IOREQ_TYPE_COPY,
        }
    }

    /// Returns the `state` bit-field.
    pub fn state(&self) -> u8 {
        self.flags & 0xf
    }

    /// Tells whether `dir` says read.
    pub fn is_read(&self) -> bool {
        self.flags & DIR_READ_BIT != 0
    }
}

/// Doorbell page geometry and registers (`docs/backend-abi.md`).
pub mod doorbell {
    /// `MAGIC` register (R).
    pub const MAGIC: u64 = 0x00;
    /// `VERSION` register (R).
    pub const VERSION: u64 = 0x04;
    /// `FEATURES` register (R).
    pub const FEATURES: u64 = 0x08;
    /// `COMPLETE` register (W): `(frontend_index << 16) | vcpu_id`.
    pub const COMPLETE: u64 = 0x10;
    /// `RAISE_IRQ` register (W): device index.
    pub const RAISE_IRQ: u64 = 0x14;
    /// `ONLINE` register (W).
    pub const ONLINE: u64 = 0x18;
    /// Value of `MAGIC`: "rioq" in little-endian.
    pub const MAGIC_VALUE: u32 = 0x716f_6972;
    /// Interface version.
    pub const VERSION_VALUE: u32 = 1;
    /// Size of the doorbell region.
    pub const SIZE: u64 = 0x1000;
}

/// Guest-physical layout of a backend (`docs/backend-abi.md`).
pub mod backend_layout {
    /// Doorbell page.
    pub const DOORBELL_GPA: u64 = 0x3e00_0000;
    /// Ioreq page of frontend 0; frontend `k` at `+ k * 0x1000`.
    pub const IOREQ_PAGES_GPA: u64 = 0x3e00_1000;
    /// Size of one RAM window; window of frontend `k` at `WINDOW_SIZE * (k + 1)`.
    pub const WINDOW_SIZE: u64 = 0x10_0000_0000;

    /// Returns the GPA of frontend `k`'s ioreq page.
    pub fn ioreq_page(k: usize) -> u64 {
        IOREQ_PAGES_GPA + 0x1000 * k as u64
    }

    /// Returns the base of frontend `k`'s RAM window.
    pub fn window(k: usize) -> u64 {
        WINDOW_SIZE * (k as u64 + 1)
    }
}
