//! The shared-memory and register ABI with backends: Xen's `ioreq_t`
//! (`xen/include/public/hvm/ioreq.h`), the doorbell page, and the transport and notify pages of
//! interface version 2 (`docs/backend-abi.md`).
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
    /// `RAISE_IRQ` register (W): device index, causes in bits 16-17.
    pub const RAISE_IRQ: u64 = 0x14;
    /// `RAISE_IRQ` bits holding the device index.
    pub const RAISE_IRQ_DEVICE: u32 = 0xffff;
    /// `RAISE_IRQ` cause: used buffer (`InterruptStatus` bit 0).
    pub const CAUSE_USED_BUFFER: u32 = 1 << 16;
    /// `RAISE_IRQ` cause: configuration change (`InterruptStatus` bit 1).
    pub const CAUSE_CONFIG_CHANGE: u32 = 1 << 17;
    /// `FEATURES` bit: the fast transport (transport and notify pages).
    pub const FEATURE_FAST_TRANSPORT: u32 = 1 << 0;
    /// `ONLINE` register (W).
    pub const ONLINE: u64 = 0x18;
    /// Value of `MAGIC`: "rioq" in little-endian.
    pub const MAGIC_VALUE: u32 = 0x716f_6972;
    /// Interface version.
    pub const VERSION_VALUE: u32 = 2;
    /// Size of the doorbell region.
    pub const SIZE: u64 = 0x1000;
}

/// Guest-physical layout of a backend (`docs/backend-abi.md`).
pub mod backend_layout {
    /// Doorbell page.
    pub const DOORBELL_GPA: u64 = 0x3e00_0000;
    /// Ioreq page of frontend 0; frontend `k` at `+ k * 0x1000`.
    pub const IOREQ_PAGES_GPA: u64 = 0x3e00_1000;
    /// Transport page (version 2): written by the backend, read by Xen.
    pub const TRANSPORT_PAGE_GPA: u64 = 0x3e00_9000;
    /// Notify page (version 2): written by Xen, read-only to the backend.
    pub const NOTIFY_PAGE_GPA: u64 = 0x3e00_a000;
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

/// The transport page of interface version 2: a header, then one record per device, all
/// written by the backend (`docs/backend-abi.md`, "Transport page"). Xen reads each field once
/// per use and validates it.
pub mod transport {
    use core::mem::{offset_of, size_of};

    /// The header at offset 0.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Header {
        /// [`VERSION`] to use the page; anything else: Xen ignores it.
        pub version: u32,
        /// 1: send the notify SPI at the next posted notify (Xen swaps it to 0 then).
        pub wakeup: u32,
        /// Non-zero: the backend polls; no notify SPI at all.
        pub polling: u32,
        /// Reserved (0).
        pub reserved: [u32; 13],
    }

    /// A device's record, at [`record`]`(i)`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Record {
        /// 1: the fields below are valid.
        pub published: u32,
        /// virtio device ID (non-zero).
        pub device_id: u32,
        /// virtio vendor ID.
        pub vendor_id: u32,
        /// Queues `0..num_queues`, at most [`MAX_QUEUES`].
        pub num_queues: u32,
        /// `QueueNumMax` of every queue below `num_queues`.
        pub queue_num_max: u32,
        /// `ConfigGeneration`.
        pub config_generation: u32,
        /// `DeviceFeatures` for `DeviceFeaturesSel` 0..[`FEATURE_WORDS`].
        pub device_features: [u32; FEATURE_WORDS],
        /// Reserved (0).
        pub reserved: [u32; 6],
    }

    /// The header's `version` that enables the page.
    pub const VERSION: u32 = 2;
    /// Most queues of a fast device (the notify counts of one device).
    pub const MAX_QUEUES: u32 = 16;
    /// `DeviceFeatures` words a record holds.
    pub const FEATURE_WORDS: usize = 4;
    /// Size of the header and of each record.
    pub const RECORD_SIZE: usize = 0x40;
    /// Offset of the header's `version`.
    pub const VERSION_OFFSET: usize = offset_of!(Header, version);
    /// Offset of the header's `wakeup`.
    pub const WAKEUP_OFFSET: usize = offset_of!(Header, wakeup);
    /// Offset of the header's `polling`.
    pub const POLLING_OFFSET: usize = offset_of!(Header, polling);

    const _: () = assert!(size_of::<Header>() == RECORD_SIZE);
    const _: () = assert!(size_of::<Record>() == RECORD_SIZE);
    const _: () = assert!(offset_of!(Header, wakeup) == 0x04);
    const _: () = assert!(offset_of!(Header, polling) == 0x08);
    const _: () = assert!(offset_of!(Record, published) == 0x00);
    const _: () = assert!(offset_of!(Record, device_id) == 0x04);
    const _: () = assert!(offset_of!(Record, vendor_id) == 0x08);
    const _: () = assert!(offset_of!(Record, num_queues) == 0x0c);
    const _: () = assert!(offset_of!(Record, queue_num_max) == 0x10);
    const _: () = assert!(offset_of!(Record, config_generation) == 0x14);
    const _: () = assert!(offset_of!(Record, device_features) == 0x18);
    // Every device's record fits in the page.
    const _: () = assert!(RECORD_SIZE * (1 + crate::config::MAX_DEVICES) <= 4096);

    /// Returns the offset of device `i`'s record.
    pub const fn record(i: usize) -> usize {
        RECORD_SIZE * (i + 1)
    }

    /// Offsets of a record's fields.
    pub mod field {
        use super::Record;
        use core::mem::offset_of;

        /// `published`.
        pub const PUBLISHED: usize = offset_of!(Record, published);
        /// `device_id`.
        pub const DEVICE_ID: usize = offset_of!(Record, device_id);
        /// `vendor_id`.
        pub const VENDOR_ID: usize = offset_of!(Record, vendor_id);
        /// `num_queues`.
        pub const NUM_QUEUES: usize = offset_of!(Record, num_queues);
        /// `queue_num_max`.
        pub const QUEUE_NUM_MAX: usize = offset_of!(Record, queue_num_max);
        /// `config_generation`.
        pub const CONFIG_GENERATION: usize = offset_of!(Record, config_generation);
        /// `device_features[0]`.
        pub const DEVICE_FEATURES: usize = offset_of!(Record, device_features);
    }
}

/// The notify page of interface version 2: per device, [`transport::MAX_QUEUES`] counts of
/// `QueueNotify` writes, written by Xen only (`docs/backend-abi.md`, "Notify page").
pub mod notify {
    use super::transport::{MAX_QUEUES, RECORD_SIZE};

    /// Returns the offset of queue `q`'s count of device `i`.
    pub const fn count(i: usize, q: u32) -> usize {
        RECORD_SIZE * i + 4 * q as usize
    }

    const _: () = assert!(4 * MAX_QUEUES as usize == RECORD_SIZE);
    const _: () = assert!(RECORD_SIZE * crate::config::MAX_DEVICES <= 4096);
}
