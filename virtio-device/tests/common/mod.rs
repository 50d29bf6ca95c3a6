//! A hand-written virtio-mmio driver for the host tests (virtio 1.2 §4.2.3 initialisation,
//! §2.7 split rings): it drives an [`MmioTransport`] with raw 32-bit register accesses and
//! builds descriptors and rings in a byte vector that stands for guest RAM, so a test can break
//! any rule on purpose and look at every byte the device wrote.

// Test helpers: addresses and counts are small, and failing loudly is the point.
#![allow(clippy::cast_possible_truncation, clippy::unwrap_used, dead_code)]

use virtio_device::log::Event;
use virtio_device::memory::{read_u16, read_u32, write_u16};
use virtio_device::{
    Gpa, GuestMemory, Interrupt, Logger, MmioTransport, SliceMemory, VirtioDevice, Width,
    WriteEffect,
};

/// Guest-physical address of the first byte of the test RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Size of the test RAM.
pub const RAM_SIZE: usize = 1 << 20;
/// Where `setup_queue` puts the descriptor table, the available ring and the used ring.
pub const DESC: u64 = RAM_BASE + 0x1000;
pub const AVAIL: u64 = RAM_BASE + 0x2000;
pub const USED: u64 = RAM_BASE + 0x3000;
/// Free RAM for buffers.
pub const BUF: u64 = RAM_BASE + 0x10000;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

pub const ACK: u32 = 1;
pub const DRIVER: u32 = 2;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
pub const NEEDS_RESET: u32 = 64;
pub const FAILED: u32 = 128;

/// Register offsets used by the tests (§4.2.2).
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Records every event the device logs.
#[derive(Debug, Default)]
pub struct Recorder(pub Vec<Event>);

impl Logger for Recorder {
    fn log(&mut self, event: Event) {
        self.0.push(event);
    }
}

/// Counts interrupts.
#[derive(Debug, Default)]
pub struct Counter(pub u32);

impl Interrupt for Counter {
    fn raise(&mut self) {
        self.0 += 1;
    }
}

/// The test driver: a transport, the RAM it sees, and what it logged and raised.
pub struct Driver<'m, D> {
    pub t: MmioTransport<D>,
    pub mem: SliceMemory<'m>,
    pub log: Recorder,
    pub irq: Counter,
    /// The driver's next available ring index (`avail.idx`).
    pub avail_idx: u16,
    pub queue_size: u16,
}

impl<'m, D: VirtioDevice> Driver<'m, D> {
    pub fn new(t: MmioTransport<D>, ram: &'m mut [u8]) -> Self {
        Self {
            t,
            mem: SliceMemory::new(Gpa(RAM_BASE), ram),
            log: Recorder::default(),
            irq: Counter::default(),
            avail_idx: 0,
            queue_size: 0,
        }
    }

    pub fn read(&mut self, offset: u64) -> u32 {
        self.read_w(offset, Width::U32) as u32
    }

    pub fn read_w(&mut self, offset: u64, width: Width) -> u64 {
        self.t.read(offset, width, &mut self.log)
    }

    pub fn write(&mut self, offset: u64, value: u32) {
        self.write_w(offset, Width::U32, u64::from(value));
    }

    /// Writes a register and, like a backend would, processes a notified queue until done.
    pub fn write_w(&mut self, offset: u64, width: Width, value: u64) {
        if let WriteEffect::Notify(q) = self.t.write(offset, width, value, &mut self.log) {
            loop {
                let p = self
                    .t
                    .process_queue(q, &self.mem, &mut self.irq, &mut self.log);
                if !p.more {
                    break;
                }
            }
        }
    }

    pub fn status(&mut self) -> u32 {
        self.read(reg::STATUS)
    }

    pub fn device_features(&mut self) -> u64 {
        self.write(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.read(reg::DEVICE_FEATURES);
        self.write(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.read(reg::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    pub fn write_driver_features(&mut self, features: u64) {
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, features as u32);
        self.write(reg::DRIVER_FEATURES_SEL, 1);
        self.write(reg::DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// Resets and negotiates `accept` (§3.1.1 steps 1-6); returns whether FEATURES_OK stuck.
    pub fn negotiate(&mut self, accept: u64) -> bool {
        self.write(reg::STATUS, 0);
        self.write(reg::STATUS, ACK);
        self.write(reg::STATUS, ACK | DRIVER);
        self.write_driver_features(accept);
        self.write(reg::STATUS, ACK | DRIVER | FEATURES_OK);
        self.status() & FEATURES_OK != 0
    }

    /// Sets up queue `q` with `size` entries at DESC/AVAIL/USED and enables it.
    pub fn setup_queue(&mut self, q: u32, size: u16) {
        self.write(reg::QUEUE_SEL, q);
        self.write(reg::QUEUE_NUM, u32::from(size));
        self.write(reg::QUEUE_DESC_LOW, DESC as u32);
        self.write(reg::QUEUE_DESC_HIGH, (DESC >> 32) as u32);
        self.write(reg::QUEUE_DRIVER_LOW, AVAIL as u32);
        self.write(reg::QUEUE_DRIVER_HIGH, (AVAIL >> 32) as u32);
        self.write(reg::QUEUE_DEVICE_LOW, USED as u32);
        self.write(reg::QUEUE_DEVICE_HIGH, (USED >> 32) as u32);
        self.write(reg::QUEUE_READY, 1);
        self.queue_size = size;
        self.avail_idx = 0;
    }

    /// Negotiates `accept`, sets up queue 0 with `size` entries and sets DRIVER_OK.
    pub fn bring_up(&mut self, accept: u64, size: u16) {
        assert!(self.negotiate(accept), "FEATURES_OK refused");
        self.setup_queue(0, size);
        assert_eq!(
            self.read(reg::QUEUE_READY),
            1,
            "queue refused: {:?}",
            self.log.0
        );
        self.write(reg::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(self.status(), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Writes descriptor `i` of the table at `table`.
    pub fn put_desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write(Gpa(table + 16 * u64::from(i)), &b).unwrap();
    }

    /// Writes descriptor `i` of the queue's table.
    pub fn put_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.put_desc_at(DESC, i, addr, len, flags, next);
    }

    /// Makes the chain at `head` available (without notifying).
    pub fn offer(&mut self, head: u16) {
        let slot = self.avail_idx % self.queue_size;
        write_u16(&self.mem, Gpa(AVAIL + 4 + 2 * u64::from(slot)), head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        write_u16(&self.mem, Gpa(AVAIL + 2), self.avail_idx).unwrap();
    }

    /// Makes the chain at `head` available and notifies queue 0.
    pub fn submit(&mut self, head: u16) {
        self.offer(head);
        self.write(reg::QUEUE_NOTIFY, 0);
    }

    pub fn used_idx(&self) -> u16 {
        read_u16(&self.mem, Gpa(USED + 2)).unwrap()
    }

    /// Returns used element `i` as (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = USED + 4 + 8 * u64::from(i % self.queue_size);
        (
            read_u32(&self.mem, Gpa(at)).unwrap(),
            read_u32(&self.mem, Gpa(at + 4)).unwrap(),
        )
    }

    pub fn put_bytes(&self, gpa: u64, bytes: &[u8]) {
        self.mem.write(Gpa(gpa), bytes).unwrap();
    }

    pub fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(Gpa(gpa), &mut v).unwrap();
        v
    }

    /// Takes the events logged so far.
    pub fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.log.0)
    }
}

/// Returns a virtio-blk request header.
pub fn blk_header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}
