//! Split virtqueues, device side (virtio 1.2 §2.7): queue setup checks, the available ring,
//! descriptor chains (direct and indirect, §2.7.5), and the used ring (§2.7.8).
//!
//! The rings live in the driver's memory, which is hostile. Every index, length and address the
//! driver supplies is read exactly once (copied out through [`GuestMemory`]) and checked before
//! use: `avail.idx` may run at most one ring ahead of the device, heads and `next` fields must be
//! below the queue (or indirect table) size, a chain may not revisit a descriptor, may not hold
//! more buffers than the queue size, and no buffer may wrap the address space. A violation is a
//! [`QueueError`]; the transport then stops the queue and sets DEVICE_NEEDS_RESET (§2.1.2), since
//! a driver that breaks the ring protocol cannot be served reliably any more.

use core::fmt;

use crate::chain::{Reader, Writer};
use crate::memory::{read_u16, write_u16, Gpa, GuestMemory, MemError};

/// The largest queue size this implementation offers (`QueueNumMax`), and so the longest chain.
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Size of one descriptor (§2.7.5).
const DESC_SIZE: u64 = 16;
/// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable.
const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
const DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver does not want used-buffer notifications (§2.7.7).
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// One of the three areas of a split virtqueue (§2.7, table "Virtqueue Part Alignment").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueuePart {
    /// The descriptor table (`QueueDesc`), 16-byte aligned.
    Descriptors,
    /// The available ring (`QueueDriver`), 2-byte aligned.
    Driver,
    /// The used ring (`QueueDevice`), 4-byte aligned.
    Device,
}

impl QueuePart {
    /// Returns the alignment the specification requires.
    const fn align(self) -> u64 {
        match self {
            QueuePart::Descriptors => 16,
            QueuePart::Driver => 2,
            QueuePart::Device => 4,
        }
    }

    /// Returns the size in bytes of the area for a queue of `size` entries (without the event
    /// index fields, which are not offered).
    const fn len(self, size: u16) -> u64 {
        let n = size as u64;
        match self {
            QueuePart::Descriptors => DESC_SIZE * n,
            QueuePart::Driver => 4 + 2 * n,
            QueuePart::Device => 4 + 8 * n,
        }
    }
}

/// Why a queue could not be enabled (`QueueReady` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueSetupError {
    /// `QueueNum` is 0 or not a power of two (§2.7: split queue sizes are powers of two).
    Size(u16),
    /// `QueueNum` exceeds `QueueNumMax`.
    SizeTooLarge {
        /// The size the driver wrote.
        size: u16,
        /// The largest size the device offers for this queue.
        max: u16,
    },
    /// An area is not aligned as §2.7 requires.
    Misaligned(QueuePart),
    /// An area wraps the address space.
    Overflow(QueuePart),
    /// The driver enabled the queue before FEATURES_OK (§3.1.1: queues are set up after
    /// feature negotiation, which decides their layout).
    BeforeFeaturesOk,
}

impl fmt::Display for QueueSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QueueSetupError::Size(n) => write!(f, "size {n} is not a non-zero power of two"),
            QueueSetupError::SizeTooLarge { size, max } => {
                write!(f, "size {size} exceeds QueueNumMax {max}")
            }
            QueueSetupError::Misaligned(p) => write!(f, "{p:?} area misaligned"),
            QueueSetupError::Overflow(p) => write!(f, "{p:?} area wraps the address space"),
            QueueSetupError::BeforeFeaturesOk => f.write_str("enabled before FEATURES_OK"),
        }
    }
}

/// A violation of the ring protocol by the driver, found while consuming the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// `avail.idx` is more than the queue size ahead of the device's position.
    AvailIndex {
        /// `avail.idx` as read.
        avail_idx: u16,
        /// The next available entry the device would consume.
        next_avail: u16,
    },
    /// An available ring entry names a descriptor beyond the table.
    HeadOutOfRange {
        /// The head index read from the ring.
        index: u16,
    },
    /// A `next` field points beyond the table (or indirect table).
    NextOutOfRange {
        /// The `next` index.
        index: u16,
    },
    /// The chain visits descriptor `index` a second time.
    Loop {
        /// The descriptor visited twice.
        index: u16,
    },
    /// The chain holds more buffers than the queue size (§2.7.5.3.1).
    TooLong,
    /// An indirect descriptor although `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    IndirectNotNegotiated,
    /// A descriptor with both INDIRECT and NEXT set (§2.7.5.3.1).
    IndirectWithNext,
    /// An INDIRECT descriptor inside an indirect table (§2.7.5.3.1).
    NestedIndirect,
    /// An indirect table whose length is 0 or not a multiple of 16.
    IndirectSize {
        /// The indirect descriptor's `len`.
        len: u32,
    },
    /// A buffer (or indirect table) whose end wraps the address space.
    BufferOverflow {
        /// The descriptor's `addr`.
        addr: u64,
        /// The descriptor's `len`.
        len: u32,
    },
    /// A device-readable buffer after a device-writable one (§2.7.4.2).
    ReadableAfterWritable,
    /// A ring or descriptor table is not (entirely) in guest memory.
    Memory(MemError),
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QueueError::AvailIndex {
                avail_idx,
                next_avail,
            } => write!(
                f,
                "avail.idx {avail_idx} is more than a ring ahead of {next_avail}"
            ),
            QueueError::HeadOutOfRange { index } => write!(f, "head {index} out of range"),
            QueueError::NextOutOfRange { index } => write!(f, "next {index} out of range"),
            QueueError::Loop { index } => write!(f, "chain loops at descriptor {index}"),
            QueueError::TooLong => f.write_str("chain longer than the queue size"),
            QueueError::IndirectNotNegotiated => f.write_str("indirect descriptor not negotiated"),
            QueueError::IndirectWithNext => f.write_str("indirect descriptor with NEXT"),
            QueueError::NestedIndirect => f.write_str("nested indirect descriptor"),
            QueueError::IndirectSize { len } => write!(f, "indirect table length {len}"),
            QueueError::BufferOverflow { addr, len } => {
                write!(f, "buffer {addr:#x}+{len:#x} wraps the address space")
            }
            QueueError::ReadableAfterWritable => f.write_str("readable buffer after writable"),
            QueueError::Memory(e) => write!(f, "ring access: {e}"),
        }
    }
}

/// One buffer of a descriptor chain, as copied out of guest memory and checked: `addr + len`
/// does not wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: Gpa,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// Whether the device may write the buffer (`VIRTQ_DESC_F_WRITE`); otherwise it only reads.
    pub writable: bool,
}

/// A descriptor exactly as the driver wrote it.
#[derive(Clone, Copy, Debug)]
struct RawDescriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl RawDescriptor {
    /// Copies descriptor `index` of the table at `table` out of guest memory, in one read.
    fn read(mem: &dyn GuestMemory, table: Gpa, index: u16) -> Result<Self, MemError> {
        let at = table.offset(u64::from(index) * DESC_SIZE)?;
        let mut b = [0u8; 16];
        mem.read(at, &mut b)?;
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = b;
        Ok(Self {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        })
    }
}

/// A set of descriptor indices below [`MAX_QUEUE_SIZE`], for loop detection.
struct Seen([u64; MAX_QUEUE_SIZE as usize / 64]);

impl Seen {
    const fn new() -> Self {
        Self([0; MAX_QUEUE_SIZE as usize / 64])
    }

    /// Adds `index`; returns false if it was already there. Callers only pass indices below the
    /// queue size, itself at most `MAX_QUEUE_SIZE`; anything else counts as seen.
    fn insert(&mut self, index: u16) -> bool {
        let (word, bit) = (usize::from(index / 64), index % 64);
        match self.0.get_mut(word) {
            Some(w) if *w & (1 << bit) == 0 => {
                *w |= 1 << bit;
                true
            }
            _ => false,
        }
    }
}

/// A descriptor chain taken from the available ring: its head index and a checked copy of all
/// its buffers, readable ones first.
#[derive(Clone, Debug)]
pub struct DescriptorChain {
    head: u16,
    descs: [Descriptor; MAX_QUEUE_SIZE as usize],
    count: usize,
    readable: usize,
}

impl DescriptorChain {
    fn new(head: u16) -> Self {
        Self {
            head,
            descs: [Descriptor::default(); MAX_QUEUE_SIZE as usize],
            count: 0,
            readable: 0,
        }
    }

    /// Appends a buffer, enforcing the chain length limit `limit`, the address-space bound and
    /// the readable-before-writable order.
    fn push(&mut self, raw: &RawDescriptor, limit: u16) -> Result<(), QueueError> {
        if self.count >= usize::from(limit) {
            return Err(QueueError::TooLong);
        }
        if raw.addr.checked_add(u64::from(raw.len)).is_none() {
            return Err(QueueError::BufferOverflow {
                addr: raw.addr,
                len: raw.len,
            });
        }
        let writable = raw.flags & DESC_F_WRITE != 0;
        if !writable {
            if self.readable != self.count {
                return Err(QueueError::ReadableAfterWritable);
            }
            self.readable += 1;
        }
        let slot = self.descs.get_mut(self.count).ok_or(QueueError::TooLong)?;
        *slot = Descriptor {
            addr: Gpa(raw.addr),
            len: raw.len,
            writable,
        };
        self.count += 1;
        Ok(())
    }

    /// Returns the index of the head descriptor (the `id` of the used element).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Returns every buffer of the chain in order.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descs[..self.count]
    }

    /// Returns the device-readable buffers (the first ones).
    pub fn readable(&self) -> &[Descriptor] {
        &self.descs[..self.readable]
    }

    /// Returns the device-writable buffers (the last ones).
    pub fn writable(&self) -> &[Descriptor] {
        &self.descs[self.readable..self.count]
    }

    /// Returns the total length of the readable buffers.
    pub fn readable_len(&self) -> u64 {
        total_len(self.readable())
    }

    /// Returns the total length of the writable buffers.
    pub fn writable_len(&self) -> u64 {
        total_len(self.writable())
    }

    /// Returns a reader over the readable buffers, as one byte stream.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(self.readable())
    }

    /// Returns a writer over the writable buffers, as one byte stream.
    pub fn writer(&self) -> Writer<'_> {
        Writer::new(self.writable())
    }
}

/// Sums buffer lengths; at most `MAX_QUEUE_SIZE` × 4 GiB, so it cannot overflow 64 bits.
pub(crate) fn total_len(descs: &[Descriptor]) -> u64 {
    descs
        .iter()
        .fold(0u64, |sum, d| sum.saturating_add(u64::from(d.len)))
}

/// The device's state of one split virtqueue: the driver's setup (`QueueNum`, the three area
/// addresses, `QueueReady`) and the device's positions in the two rings.
#[derive(Clone, Debug)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: Gpa,
    driver: Gpa,
    device: Gpa,
    indirect: bool,
    next_avail: u16,
    next_used: u16,
    budget: u16,
    stopped_early: bool,
    used_added: u32,
}

impl Queue {
    /// Creates a disabled queue offering at most `max_size` entries (clamped to
    /// [`MAX_QUEUE_SIZE`]; 0 means the queue does not exist).
    pub fn new(max_size: u16) -> Self {
        let max_size = max_size.min(MAX_QUEUE_SIZE);
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc: Gpa(0),
            driver: Gpa(0),
            device: Gpa(0),
            indirect: false,
            next_avail: 0,
            next_used: 0,
            budget: u16::MAX,
            stopped_early: false,
            used_added: 0,
        }
    }

    /// Returns the queue to its state after a device reset.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Returns `QueueNumMax`.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// Returns `QueueNum`.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Returns `QueueReady`.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Returns the guest-physical address of `part`.
    pub fn address(&self, part: QueuePart) -> Gpa {
        match part {
            QueuePart::Descriptors => self.desc,
            QueuePart::Driver => self.driver,
            QueuePart::Device => self.device,
        }
    }

    /// Sets `QueueNum` (checked when the queue is enabled).
    pub fn set_size(&mut self, size: u16) {
        self.size = size;
    }

    /// Sets the low (`high == false`) or high 32 bits of the address of `part`.
    pub fn set_address_half(&mut self, part: QueuePart, high: bool, value: u32) {
        let slot = match part {
            QueuePart::Descriptors => &mut self.desc,
            QueuePart::Driver => &mut self.driver,
            QueuePart::Device => &mut self.device,
        };
        let v = u64::from(value);
        slot.0 = if high {
            (slot.0 & 0xffff_ffff) | (v << 32)
        } else {
            (slot.0 & !0xffff_ffff) | v
        };
    }

    /// Records whether `VIRTIO_F_INDIRECT_DESC` was negotiated.
    pub fn set_indirect(&mut self, on: bool) {
        self.indirect = on;
    }

    /// Enables the queue (`QueueReady` = 1) after checking its size and areas; the device starts
    /// at entry 0 of both rings.
    pub fn enable(&mut self) -> Result<(), QueueSetupError> {
        if self.size == 0 || !self.size.is_power_of_two() {
            return Err(QueueSetupError::Size(self.size));
        }
        if self.size > self.max_size {
            return Err(QueueSetupError::SizeTooLarge {
                size: self.size,
                max: self.max_size,
            });
        }
        for part in [QueuePart::Descriptors, QueuePart::Driver, QueuePart::Device] {
            let at = self.address(part);
            if at.0 % part.align() != 0 {
                return Err(QueueSetupError::Misaligned(part));
            }
            if at.checked_add(part.len(self.size)).is_none() {
                return Err(QueueSetupError::Overflow(part));
            }
        }
        self.ready = true;
        self.next_avail = 0;
        self.next_used = 0;
        Ok(())
    }

    /// Disables the queue (`QueueReady` = 0); the setup registers may be written again.
    pub fn disable(&mut self) {
        self.ready = false;
    }

    /// Limits the next round of [`pop`](Self::pop) calls to `budget` chains.
    pub fn start_round(&mut self, budget: u16) {
        self.budget = budget;
        self.stopped_early = false;
    }

    /// Ends the current round: the next [`pop`](Self::pop) returns `None`, and the round counts
    /// as stopped early if the driver has chains waiting. For a device whose requests differ in
    /// size, so that one round moves a bounded number of bytes.
    pub fn end_round(&mut self) {
        self.budget = 0;
    }

    /// Returns whether the last round stopped with chains still available.
    pub fn stopped_early(&self) -> bool {
        self.stopped_early
    }

    /// Returns the number of used elements added since the last call, and resets it.
    pub fn take_used_added(&mut self) -> u32 {
        core::mem::take(&mut self.used_added)
    }

    /// Takes the next available descriptor chain, or returns `None` if the driver has made none
    /// available (or the round's budget is spent).
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescriptorChain>, QueueError> {
        if !self.ready {
            return Ok(None);
        }
        let avail_idx = read_u16(mem, self.driver.offset(2)?)?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailIndex {
                avail_idx,
                next_avail: self.next_avail,
            });
        }
        if self.budget == 0 {
            self.stopped_early = true;
            return Ok(None);
        }
        // The ring entry and the descriptors were written before avail.idx (§2.7.13): read them
        // only after it.
        mem.barrier();
        let slot = self.next_avail & (self.size - 1);
        let head = read_u16(mem, self.driver.offset(4 + 2 * u64::from(slot))?)?;
        let chain = self.read_chain(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.budget -= 1;
        Ok(Some(chain))
    }

    /// Copies and checks the chain starting at descriptor `head`.
    fn read_chain(&self, mem: &dyn GuestMemory, head: u16) -> Result<DescriptorChain, QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange { index: head });
        }
        let mut chain = DescriptorChain::new(head);
        let mut seen = Seen::new();
        let mut index = head;
        loop {
            if !seen.insert(index) {
                return Err(QueueError::Loop { index });
            }
            let raw = RawDescriptor::read(mem, self.desc, index)?;
            if raw.flags & DESC_F_INDIRECT != 0 {
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if raw.flags & DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                self.read_indirect(mem, &raw, &mut chain)?;
                return Ok(chain);
            }
            chain.push(&raw, self.size)?;
            if raw.flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            if raw.next >= self.size {
                return Err(QueueError::NextOutOfRange { index: raw.next });
            }
            index = raw.next;
        }
    }

    /// Appends the buffers of the indirect table described by `ind` to `chain` (§2.7.5.3.2).
    fn read_indirect(
        &self,
        mem: &dyn GuestMemory,
        ind: &RawDescriptor,
        chain: &mut DescriptorChain,
    ) -> Result<(), QueueError> {
        let len = ind.len;
        if len == 0 || u64::from(len) % DESC_SIZE != 0 {
            return Err(QueueError::IndirectSize { len });
        }
        // A table longer than the queue cannot be a valid chain; this also keeps every index
        // below MAX_QUEUE_SIZE for the loop check.
        let entries = u16::try_from(u64::from(len) / DESC_SIZE).map_err(|_| QueueError::TooLong)?;
        if entries > self.size {
            return Err(QueueError::TooLong);
        }
        if ind.addr.checked_add(u64::from(len)).is_none() {
            return Err(QueueError::BufferOverflow {
                addr: ind.addr,
                len,
            });
        }
        let table = Gpa(ind.addr);
        let mut seen = Seen::new();
        let mut index = 0;
        loop {
            if !seen.insert(index) {
                return Err(QueueError::Loop { index });
            }
            let raw = RawDescriptor::read(mem, table, index)?;
            if raw.flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::NestedIndirect);
            }
            chain.push(&raw, self.size)?;
            if raw.flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            if raw.next >= entries {
                return Err(QueueError::NextOutOfRange { index: raw.next });
            }
            index = raw.next;
        }
    }

    /// Returns `chain` to the driver through the used ring, reporting `len` bytes written
    /// (clamped to the chain's writable length, §2.7.8.2).
    pub fn add_used(
        &mut self,
        mem: &dyn GuestMemory,
        chain: &DescriptorChain,
        len: u32,
    ) -> Result<(), QueueError> {
        let len = u64::from(len).min(chain.writable_len());
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let slot = self.next_used & (self.size - 1);
        let elem = self.device.offset(4 + 8 * u64::from(slot))?;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&u32::from(chain.head()).to_le_bytes());
        b[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(elem, &b)?;
        // The element must be visible before the index that publishes it (§2.7.8).
        mem.barrier();
        self.next_used = self.next_used.wrapping_add(1);
        write_u16(mem, self.device.offset(2)?, self.next_used)?;
        self.used_added = self.used_added.saturating_add(1);
        Ok(())
    }

    /// Returns whether the driver wants a used-buffer notification now (it has not set
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`, §2.7.7.1).
    pub fn needs_notification(&self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        // Read the flag only after the used index update is visible, so that a driver that
        // clears it and then checks the used ring does not miss both.
        mem.barrier();
        let flags = read_u16(mem, self.driver)?;
        Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
    }
}

#[cfg(test)]
mod tests {
    // Test addresses and counts are small constants.
    #![allow(clippy::cast_possible_truncation)]

    use super::*;
    use crate::memory::SliceMemory;

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    fn put_desc(
        mem: &SliceMemory<'_>,
        table: u64,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        mem.write(Gpa(table + 16 * u64::from(i)), &b).unwrap();
    }

    fn make_avail(mem: &SliceMemory<'_>, heads: &[u16]) {
        for (i, h) in heads.iter().enumerate() {
            write_u16(mem, Gpa(AVAIL + 4 + 2 * i as u64), *h).unwrap();
        }
        write_u16(mem, Gpa(AVAIL + 2), heads.len() as u16).unwrap();
    }

    fn ready_queue(size: u16) -> Queue {
        let mut q = Queue::new(MAX_QUEUE_SIZE);
        q.set_size(size);
        q.set_address_half(QueuePart::Descriptors, false, DESC as u32);
        q.set_address_half(QueuePart::Driver, false, AVAIL as u32);
        q.set_address_half(QueuePart::Device, false, USED as u32);
        q.enable().unwrap();
        q
    }

    #[test]
    fn pops_a_direct_chain_and_returns_it() {
        let mut bytes = vec![0u8; 0x10000];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let mut q = ready_queue(8);
        put_desc(&mem, DESC, 3, 0x8000, 16, DESC_F_NEXT, 5);
        put_desc(&mem, DESC, 5, 0x9000, 512, DESC_F_NEXT | DESC_F_WRITE, 1);
        put_desc(&mem, DESC, 1, 0x9200, 1, DESC_F_WRITE, 0);
        make_avail(&mem, &[3]);
        let chain = q.pop(&mem).unwrap().unwrap();
        assert_eq!(chain.head(), 3);
        assert_eq!(chain.readable().len(), 1);
        assert_eq!(chain.writable().len(), 2);
        assert_eq!(chain.readable_len(), 16);
        assert_eq!(chain.writable_len(), 513);
        assert!(q.pop(&mem).unwrap().is_none());
        q.add_used(&mem, &chain, 1000).unwrap();
        assert_eq!(read_u16(&mem, Gpa(USED + 2)).unwrap(), 1);
        let mut elem = [0u8; 8];
        mem.read(Gpa(USED + 4), &mut elem).unwrap();
        assert_eq!(u32::from_le_bytes(elem[..4].try_into().unwrap()), 3);
        // len clamped to the writable length.
        assert_eq!(u32::from_le_bytes(elem[4..].try_into().unwrap()), 513);
        assert_eq!(q.take_used_added(), 1);
        assert!(q.needs_notification(&mem).unwrap());
        write_u16(&mem, Gpa(AVAIL), AVAIL_F_NO_INTERRUPT).unwrap();
        assert!(!q.needs_notification(&mem).unwrap());
    }

    #[test]
    fn setup_checks() {
        let mut q = Queue::new(16);
        q.set_size(12);
        assert_eq!(q.enable(), Err(QueueSetupError::Size(12)));
        q.set_size(0);
        assert_eq!(q.enable(), Err(QueueSetupError::Size(0)));
        q.set_size(32);
        assert_eq!(
            q.enable(),
            Err(QueueSetupError::SizeTooLarge { size: 32, max: 16 })
        );
        q.set_size(16);
        q.set_address_half(QueuePart::Descriptors, false, 0x1008);
        assert_eq!(
            q.enable(),
            Err(QueueSetupError::Misaligned(QueuePart::Descriptors))
        );
        q.set_address_half(QueuePart::Descriptors, false, 0x1000);
        q.set_address_half(QueuePart::Driver, false, 0x2001);
        assert_eq!(
            q.enable(),
            Err(QueueSetupError::Misaligned(QueuePart::Driver))
        );
        q.set_address_half(QueuePart::Driver, false, 0x2000);
        q.set_address_half(QueuePart::Device, false, 0x3002);
        assert_eq!(
            q.enable(),
            Err(QueueSetupError::Misaligned(QueuePart::Device))
        );
        q.set_address_half(QueuePart::Device, false, 0xffff_fff0);
        q.set_address_half(QueuePart::Device, true, 0xffff_ffff);
        assert_eq!(
            q.enable(),
            Err(QueueSetupError::Overflow(QueuePart::Device))
        );
        assert!(!q.is_ready());
        q.set_address_half(QueuePart::Device, true, 0);
        assert_eq!(q.address(QueuePart::Device), Gpa(0xffff_fff0));
        q.enable().unwrap();
        assert!(q.is_ready());
    }

    #[test]
    fn budget_stops_a_round_early() {
        let mut bytes = vec![0u8; 0x10000];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let mut q = ready_queue(4);
        for i in 0..3 {
            put_desc(&mem, DESC, i, 0x8000, 4, DESC_F_WRITE, 0);
        }
        make_avail(&mem, &[0, 1, 2]);
        q.start_round(2);
        assert!(q.pop(&mem).unwrap().is_some());
        assert!(q.pop(&mem).unwrap().is_some());
        assert!(q.pop(&mem).unwrap().is_none());
        assert!(q.stopped_early());
        q.start_round(2);
        assert!(q.pop(&mem).unwrap().is_some());
        assert!(q.pop(&mem).unwrap().is_none());
        assert!(!q.stopped_early());
    }
}
