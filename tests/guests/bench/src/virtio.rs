//! The benchmark as the driver of its fast-transport device (virtio 1.2 §3.1.1 driver
//! initialisation, §4.2.3 over MMIO): it brings the device up to DRIVER_OK with one tiny split
//! virtqueue (queue 0, 2 entries) whose available ring stays empty. The `notify_posted` row then
//! notifies a queue that is set up, as a real driver does, and the backend, woken by it, finds
//! `avail.idx` unchanged and has nothing to do: no request is ever made, so the device never
//! uses a buffer and never raises its interrupt (`InterruptStatus` stays 0, which the
//! `isr_read` row checks).

use core::sync::atomic::{AtomicU16, Ordering};

use crate::ops::VirtioWindow;

// Registers (virtio 1.2 §4.2.2).
pub const MAGIC_VALUE: usize = 0x000;
pub const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
pub const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
pub const QUEUE_NOTIFY: usize = 0x050;
pub const INTERRUPT_STATUS: usize = 0x060;
pub const INTERRUPT_ACK: usize = 0x064;
pub const STATUS: usize = 0x070;
const QUEUE_DESC_LOW: usize = 0x080;
const QUEUE_DESC_HIGH: usize = 0x084;
const QUEUE_DRIVER_LOW: usize = 0x090;
const QUEUE_DRIVER_HIGH: usize = 0x094;
const QUEUE_DEVICE_LOW: usize = 0x0a0;
const QUEUE_DEVICE_HIGH: usize = 0x0a4;
/// The device-specific configuration space (virtio-blk: `capacity`, le64, first).
pub const CONFIG: usize = 0x100;

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// Device ID of virtio-blk (virtio 1.2 §5).
pub const BLOCK_DEVICE_ID: u32 = 2;

// Device status bits (§2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// DEVICE_NEEDS_RESET: the device hit an error it cannot recover from.
pub const NEEDS_RESET: u32 = 0x40;
/// VIRTIO_F_VERSION_1 (feature bit 32): word 1, bit 0.
const VERSION_1: u32 = 1;

/// Entries of the benchmark's queue (a power of two, §2.7).
const QUEUE_SIZE: u16 = 2;
/// The queue index the benchmark sets up and notifies.
pub const QUEUE: u32 = 0;

/// The split virtqueue's memory, one page: descriptor table at 0 (16 bytes an entry, 16-byte
/// aligned), driver (available) ring at 0x100, device (used) ring at 0x200 (§2.7). All zero: an
/// empty available ring. Atomics, as the device reads (and may write the used ring of) this
/// memory through the backend at any time.
#[repr(C, align(4096))]
struct QueuePage([AtomicU16; 2048]);

static QUEUE_PAGE: QueuePage = QueuePage([const { AtomicU16::new(0) }; 2048]);

const DESC_OFFSET: u64 = 0x000;
const DRIVER_OFFSET: u64 = 0x100;
const DEVICE_OFFSET: u64 = 0x200;
/// Index of the available ring's `idx` (a u16 at byte 0x102).
const AVAIL_IDX: usize = (0x102 / 2) as usize;

/// Why the device could not be brought up.
#[derive(Clone, Copy, Debug)]
pub enum SetupError {
    /// MagicValue, Version or DeviceID is not that of a virtio 1.x block device.
    NotABlockDevice { magic: u32, device_id: u32 },
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1,
    /// The device did not keep FEATURES_OK.
    FeaturesRefused(u32),
    /// Queue 0 is not available, or already live.
    Queue { num_max: u32, ready: u32 },
    /// The status after DRIVER_OK is not what was written (or says NEEDS_RESET).
    Status(u32),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SetupError::NotABlockDevice { magic, device_id } => write!(
                f,
                "MagicValue {magic:#x}, DeviceID {device_id}: not a virtio-blk device"
            ),
            SetupError::NoVersion1 => f.write_str("VIRTIO_F_VERSION_1 not offered"),
            SetupError::FeaturesRefused(s) => write!(f, "FEATURES_OK not kept (status {s:#x})"),
            SetupError::Queue { num_max, ready } => write!(
                f,
                "queue {QUEUE}: QueueNumMax {num_max}, QueueReady {ready} (want > 0 and 0)"
            ),
            SetupError::Status(s) => write!(f, "status {s:#x} after DRIVER_OK"),
        }
    }
}

/// Resets the device and brings it up to DRIVER_OK with VIRTIO_F_VERSION_1 only and queue 0
/// live and empty. Every step is a round trip or a register Xen answers; none is timed.
pub fn bring_up(dev: VirtioWindow) -> Result<(), SetupError> {
    let magic = dev.read(MAGIC_VALUE);
    let device_id = dev.read(DEVICE_ID);
    if magic != MAGIC || device_id != BLOCK_DEVICE_ID {
        return Err(SetupError::NotABlockDevice { magic, device_id });
    }
    dev.write(STATUS, 0);
    dev.write(STATUS, ACKNOWLEDGE);
    dev.write(STATUS, ACKNOWLEDGE | DRIVER);
    dev.write(DEVICE_FEATURES_SEL, 1);
    if dev.read(DEVICE_FEATURES) & VERSION_1 == 0 {
        return Err(SetupError::NoVersion1);
    }
    dev.write(DRIVER_FEATURES_SEL, 1);
    dev.write(DRIVER_FEATURES, VERSION_1);
    dev.write(DRIVER_FEATURES_SEL, 0);
    dev.write(DRIVER_FEATURES, 0);
    dev.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    let status = dev.read(STATUS);
    if status & FEATURES_OK == 0 {
        return Err(SetupError::FeaturesRefused(status));
    }
    dev.write(QUEUE_SEL, QUEUE);
    let num_max = dev.read(QUEUE_NUM_MAX);
    let ready = dev.read(QUEUE_READY);
    if num_max < u32::from(QUEUE_SIZE) || ready != 0 {
        return Err(SetupError::Queue { num_max, ready });
    }
    let page = (&raw const QUEUE_PAGE) as u64;
    QUEUE_PAGE.0[AVAIL_IDX].store(0, Ordering::Release);
    dev.write(QUEUE_NUM, u32::from(QUEUE_SIZE));
    for (low, offset) in [
        (QUEUE_DESC_LOW, DESC_OFFSET),
        (QUEUE_DRIVER_LOW, DRIVER_OFFSET),
        (QUEUE_DEVICE_LOW, DEVICE_OFFSET),
    ] {
        let addr = page + offset;
        dev.write(low, addr as u32);
        dev.write(low + 4, (addr >> 32) as u32);
    }
    const _: () = assert!(
        QUEUE_DESC_HIGH == QUEUE_DESC_LOW + 4
            && QUEUE_DRIVER_HIGH == QUEUE_DRIVER_LOW + 4
            && QUEUE_DEVICE_HIGH == QUEUE_DEVICE_LOW + 4
    );
    dev.write(QUEUE_READY, 1);
    dev.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    let status = dev.read(STATUS);
    if status != ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK {
        return Err(SetupError::Status(status));
    }
    Ok(())
}

/// What the device looks like after the benchmark: status, queue 0's QueueReady, the interrupt
/// status, and whether the available ring is still empty (the device never writes it).
#[derive(Clone, Copy, Debug)]
pub struct Health {
    pub status: u32,
    pub queue_ready: u32,
    pub interrupt_status: u32,
    pub avail_idx: u16,
}

impl Health {
    /// Reads the device's state.
    pub fn of(dev: VirtioWindow) -> Self {
        dev.write(QUEUE_SEL, QUEUE);
        Health {
            status: dev.read(STATUS),
            queue_ready: dev.read(QUEUE_READY),
            interrupt_status: dev.read(INTERRUPT_STATUS),
            avail_idx: QUEUE_PAGE.0[AVAIL_IDX].load(Ordering::Acquire),
        }
    }

    /// Tells whether the device is as `bring_up` left it: DRIVER_OK, no NEEDS_RESET, queue 0
    /// live, no interrupt, nothing made available.
    pub fn intact(&self) -> bool {
        self.status == ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
            && self.queue_ready == 1
            && self.interrupt_status == 0
            && self.avail_idx == 0
    }
}

impl core::fmt::Display for Health {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "status {:#x}{}, QueueReady {}, InterruptStatus {:#x}, avail.idx {}",
            self.status,
            if self.status & NEEDS_RESET != 0 {
                " (NEEDS_RESET)"
            } else {
                ""
            },
            self.queue_ready,
            self.interrupt_status,
            self.avail_idx
        )
    }
}
