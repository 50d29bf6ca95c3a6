//! End-to-end host test: the real `virtio-drivers` 0.13.0 block and entropy drivers (the crate
//! and version the frontend guest uses) drive this crate's devices through an implementation of
//! their `Transport` trait that turns every call into the 32-bit register accesses of virtio 1.2
//! §4.2.2 — exactly what the frontend's MMIO transport does on real hardware — and a `Hal` over a
//! host memory arena that stands for the frontend's RAM.
//!
//! The `Hal` is stricter than hardware: every buffer is bounced through the arena (the driver's
//! own stack buffers are never visible to the device) and device-writable buffers are poisoned
//! first, so a device that claims bytes it did not write is caught.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;

use virtio_device::{
    Blk, Event, Gpa, GuestMemory, Interrupt, Logger, MemError, MmioTransport, Rng, SplitMix64,
    VirtioDevice, Width, WriteEffect,
};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Guest-physical address of the arena's first byte.
const ARENA_BASE: u64 = 0x8000_0000;
/// Arena size in pages (8 MiB).
const ARENA_PAGES: usize = 2048;
/// What device-writable bounce buffers are filled with before the device sees them.
const POISON: u8 = 0xa5;

/// Page-granular memory standing for the frontend's RAM; one per test thread, because `Hal`'s
/// methods are associated functions without a receiver.
struct Arena {
    base: NonNull<u8>,
    used: RefCell<Vec<bool>>,
}

impl Arena {
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(ARENA_PAGES * PAGE_SIZE, PAGE_SIZE).unwrap()
    }

    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        Self {
            base: NonNull::new(base).expect("arena allocation"),
            used: RefCell::new(vec![false; ARENA_PAGES]),
        }
    }

    /// Allocates `pages` contiguous zeroed pages; returns the first page's index.
    fn alloc(&self, pages: usize) -> usize {
        let mut used = self.used.borrow_mut();
        let first = (0..=ARENA_PAGES - pages)
            .find(|&p| used[p..p + pages].iter().all(|u| !u))
            .expect("arena exhausted");
        used[first..first + pages].fill(true);
        // SAFETY: the pages are inside the arena allocation and, just allocated, not referenced
        // by anyone.
        unsafe {
            self.base
                .as_ptr()
                .add(first * PAGE_SIZE)
                .write_bytes(0, pages * PAGE_SIZE)
        };
        first
    }

    fn free(&self, first: usize, pages: usize) {
        let mut used = self.used.borrow_mut();
        assert!(used[first..first + pages].iter().all(|&u| u), "double free");
        used[first..first + pages].fill(false);
    }

    /// Returns the host pointer of `[gpa, gpa + len)`, if it is inside the arena.
    fn host(&self, gpa: u64, len: usize) -> Result<*mut u8, MemError> {
        let err = MemError::OutOfRange {
            gpa,
            len: len as u64,
        };
        let off = gpa.checked_sub(ARENA_BASE).ok_or(err)? as usize;
        let end = off.checked_add(len).ok_or(err)?;
        if end > ARENA_PAGES * PAGE_SIZE {
            return Err(err);
        }
        // SAFETY: `off + len` is within the arena allocation.
        Ok(unsafe { self.base.as_ptr().add(off) })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), Self::layout()) };
    }
}

thread_local! {
    static ARENA: Arena = Arena::new();
}

/// The device's view of the arena.
struct ArenaMemory;

impl GuestMemory for ArenaMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        ARENA.with(|a| {
            let src = a.host(gpa.0, buf.len())?;
            // SAFETY: `src..src + len` is inside the arena; the test is single-threaded and the
            // driver holds no reference into the arena while the device runs (it only keeps raw
            // pointers), so nothing aliases this copy.
            unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
            Ok(())
        })
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        ARENA.with(|a| {
            let dst = a.host(gpa.0, data.len())?;
            // SAFETY: as for `read`.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
            Ok(())
        })
    }
}

/// A `Hal` over the arena that bounces every shared buffer.
struct HostHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned arena pages whose host
// pointer and guest-physical address correspond; `share` returns the address of a bounce copy
// that stays allocated until `unshare`.
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        ARENA.with(|a| {
            let first = a.alloc(pages);
            let paddr = ARENA_BASE + (first * PAGE_SIZE) as u64;
            (paddr, NonNull::new(a.host(paddr, 0).unwrap()).unwrap())
        })
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        ARENA.with(|a| a.free((paddr - ARENA_BASE) as usize / PAGE_SIZE, pages));
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("only the PCI transport maps BARs")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        ARENA.with(|a| {
            let first = a.alloc(len.div_ceil(PAGE_SIZE).max(1));
            let paddr = ARENA_BASE + (first * PAGE_SIZE) as u64;
            let bounce = a.host(paddr, len).unwrap();
            // SAFETY: the caller guarantees `buffer` is valid for `len` bytes and not accessed
            // by anyone else during this call; `bounce` is `len` fresh arena bytes.
            unsafe {
                if direction == BufferDirection::DeviceToDriver {
                    bounce.write_bytes(POISON, len);
                } else {
                    std::ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), bounce, len);
                }
            }
            paddr
        })
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        ARENA.with(|a| {
            if direction != BufferDirection::DriverToDevice {
                let bounce = a.host(paddr, len).unwrap();
                // SAFETY: as in `share`; `paddr` came from `share` of the same buffer.
                unsafe { std::ptr::copy_nonoverlapping(bounce, buffer.as_ptr().cast::<u8>(), len) };
            }
            a.free(
                (paddr - ARENA_BASE) as usize / PAGE_SIZE,
                len.div_ceil(PAGE_SIZE).max(1),
            );
        });
    }
}

/// Collects the device's reports.
struct Recorder<'a>(&'a mut Vec<Event>);

impl Logger for Recorder<'_> {
    fn log(&mut self, event: Event) {
        self.0.push(event);
    }
}

/// Counts the device's interrupts.
struct Irq<'a>(&'a Cell<u32>);

impl Interrupt for Irq<'_> {
    fn raise(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The device and what it reported, shared between the driver's transport and the test.
struct Inner<D> {
    dev: RefCell<MmioTransport<D>>,
    events: RefCell<Vec<Event>>,
    irqs: Cell<u32>,
    notifies: Cell<u32>,
}

/// virtio-drivers' `Transport` over raw register accesses to an [`MmioTransport`], as the
/// frontend's `MmioTransport` would do them through real MMIO (virtio-drivers
/// src/transport/mmio.rs, the Version 2 paths). Clones share the device, so a test keeps one
/// to look at the log after handing the other to a driver.
struct RegisterTransport<D> {
    inner: Rc<Inner<D>>,
}

impl<D> Clone for RegisterTransport<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<D: VirtioDevice> RegisterTransport<D> {
    fn new(dev: MmioTransport<D>) -> Self {
        Self {
            inner: Rc::new(Inner {
                dev: RefCell::new(dev),
                events: RefCell::new(Vec::new()),
                irqs: Cell::new(0),
                notifies: Cell::new(0),
            }),
        }
    }

    fn read(&self, offset: u64, width: Width) -> u64 {
        let mut events = self.inner.events.borrow_mut();
        self.inner
            .dev
            .borrow()
            .read(offset, width, &mut Recorder(&mut events))
    }

    fn read32(&self, offset: u64) -> u32 {
        self.read(offset, Width::U32) as u32
    }

    fn write(&self, offset: u64, width: Width, value: u64) {
        let mut events = self.inner.events.borrow_mut();
        let mut dev = self.inner.dev.borrow_mut();
        if let WriteEffect::Notify(q) = dev.write(offset, width, value, &mut Recorder(&mut events))
        {
            self.inner.notifies.set(self.inner.notifies.get() + 1);
            // Like a backend: process until the queue has nothing left.
            while dev
                .process_queue(
                    q,
                    &ArenaMemory,
                    &mut Irq(&self.inner.irqs),
                    &mut Recorder(&mut events),
                )
                .more
            {}
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        self.write(offset, Width::U32, u64::from(value));
    }

    fn events(&self) -> Vec<Event> {
        std::mem::take(&mut self.inner.events.borrow_mut())
    }
}

impl<D: VirtioDevice> Transport for RegisterTransport<D> {
    fn device_type(&self) -> DeviceType {
        DeviceType::try_from(self.read32(0x008)).unwrap()
    }

    fn read_device_features(&mut self) -> u64 {
        self.write32(0x014, 0);
        let lo = self.read32(0x010);
        self.write32(0x014, 1);
        let hi = self.read32(0x010);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.write32(0x024, 0);
        self.write32(0x020, driver_features as u32);
        self.write32(0x024, 1);
        self.write32(0x020, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.write32(0x030, queue.into());
        self.read32(0x034)
    }

    fn notify(&mut self, queue: u16) {
        self.write32(0x050, queue.into());
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.read32(0x070))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.write32(0x070, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.write32(0x030, queue.into());
        self.write32(0x038, size);
        self.write32(0x080, descriptors as u32);
        self.write32(0x084, (descriptors >> 32) as u32);
        self.write32(0x090, driver_area as u32);
        self.write32(0x094, (driver_area >> 32) as u32);
        self.write32(0x0a0, device_area as u32);
        self.write32(0x0a4, (device_area >> 32) as u32);
        self.write32(0x044, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.write32(0x030, queue.into());
        self.write32(0x044, 0);
        assert_eq!(self.read32(0x044), 0);
        for offset in [0x038, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4] {
            self.write32(offset, 0);
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.write32(0x030, queue.into());
        self.read32(0x044) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.read32(0x060);
        if status != 0 {
            self.write32(0x064, status);
        }
        InterruptStatus::from_bits_truncate(status)
    }

    fn read_config_generation(&self) -> u32 {
        self.read32(0x0fc)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        let at = 0x100 + offset as u64;
        match bytes.len() {
            1 => bytes[0] = self.read(at, Width::U8) as u8,
            2 => bytes.copy_from_slice(&(self.read(at, Width::U16) as u16).to_le_bytes()),
            4 => bytes.copy_from_slice(&self.read32(at).to_le_bytes()),
            // 64-bit fields as two 32-bit reads (virtio 1.2 §4.2.2.2).
            8 => {
                bytes[..4].copy_from_slice(&self.read32(at).to_le_bytes());
                bytes[4..].copy_from_slice(&self.read32(at + 4).to_le_bytes());
            }
            _ => return Err(virtio_drivers::Error::InvalidParam),
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let bytes = value.as_bytes();
        let at = 0x100 + offset as u64;
        let mut v = [0u8; 8];
        v[..bytes.len()].copy_from_slice(bytes);
        let width =
            Width::from_bytes(bytes.len() as u64).ok_or(virtio_drivers::Error::InvalidParam)?;
        self.write(at, width, u64::from_le_bytes(v));
        Ok(())
    }
}

/// Runs the block driver against a 4 MiB RAM disk.
fn blk_session(indirect: bool) {
    let mut disk = vec![0u8; 4 << 20];
    let transport = RegisterTransport::new(
        MmioTransport::new(Blk::new(&mut disk, b"rust-ioreq-e2e").unwrap()).with_indirect(indirect),
    );
    let probe = transport.clone();
    let mut blk = VirtIOBlk::<HostHal, _>::new(transport).unwrap();
    assert_eq!(blk.capacity(), 8192);
    assert!(!blk.readonly());
    let negotiated = probe.inner.dev.borrow().negotiated_features();
    assert_eq!(
        negotiated & virtio_device::features::INDIRECT_DESC != 0,
        indirect
    );

    // Write 64 sectors one at a time and 16 sectors at once, read everything back.
    let pattern = |sector: usize, i: usize| ((sector * 31 + i * 7) % 251) as u8;
    for sector in 0..64 {
        let buf: Vec<u8> = (0..SECTOR_SIZE).map(|i| pattern(sector, i)).collect();
        blk.write_blocks(sector, &buf).unwrap();
    }
    let big: Vec<u8> = (0..16 * SECTOR_SIZE)
        .map(|i| pattern(8000 + i / SECTOR_SIZE, i % SECTOR_SIZE))
        .collect();
    blk.write_blocks(8000, &big).unwrap();
    blk.flush().unwrap();
    let mut back = vec![0u8; 64 * SECTOR_SIZE];
    blk.read_blocks(0, &mut back).unwrap();
    for (sector, chunk) in back.chunks(SECTOR_SIZE).enumerate() {
        assert!(
            chunk
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(sector, i)),
            "sector {sector}"
        );
    }
    let mut back = vec![0u8; 16 * SECTOR_SIZE];
    blk.read_blocks(8000, &mut back).unwrap();
    assert_eq!(back, big);

    let mut id = [0u8; 20];
    let n = blk.device_id(&mut id).unwrap();
    assert_eq!(&id[..n], b"rust-ioreq-e2e");
    // Everything so far was within the rules: nothing logged; one interrupt per request.
    assert!(probe.events().is_empty(), "{:?}", probe.events());
    let requests = 64 + 1 + 1 + 1 + 1 + 1;
    assert_eq!(probe.inner.notifies.get(), requests);
    assert_eq!(probe.inner.irqs.get(), requests);

    // Past the end: the device answers IOERR, logs why, and the driver reports it.
    let mut one = [0u8; SECTOR_SIZE];
    assert_eq!(
        blk.read_blocks(8192, &mut one),
        Err(virtio_drivers::Error::IoError)
    );
    assert_eq!(
        blk.write_blocks(8191, &[0u8; 2 * SECTOR_SIZE]),
        Err(virtio_drivers::Error::IoError)
    );
    assert_eq!(probe.events().len(), 2);

    // Several requests outstanding at once, completed in order.
    let mut reqs: Vec<BlkReq> = (0..4).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..4).map(|_| BlkResp::default()).collect();
    let mut bufs = vec![[0u8; SECTOR_SIZE]; 4];
    let mut tokens = Vec::new();
    for (i, ((req, resp), buf)) in reqs
        .iter_mut()
        .zip(resps.iter_mut())
        .zip(bufs.iter_mut())
        .enumerate()
    {
        // SAFETY: the request, buffer and response are not touched until completed below.
        tokens.push(unsafe { blk.read_blocks_nb(i, req, buf, resp) }.unwrap());
    }
    for (i, token) in tokens.into_iter().enumerate() {
        assert_eq!(blk.peek_used(), Some(token));
        // SAFETY: the same buffers as passed to `read_blocks_nb` with this token.
        unsafe { blk.complete_read_blocks(token, &reqs[i], &mut bufs[i], &mut resps[i]) }.unwrap();
        assert_eq!(resps[i].status(), RespStatus::OK);
        assert!(bufs[i].iter().enumerate().all(|(j, &b)| b == pattern(i, j)));
    }

    // InterruptStatus has no Debug: compare with assert!.
    assert!(
        blk.ack_interrupt() == InterruptStatus::QUEUE_INTERRUPT,
        "used buffers were signalled"
    );
    assert!(blk.ack_interrupt() == InterruptStatus::empty());
    // Dropping the driver unsets the queue (QueueReady 0, then the setup registers cleared):
    // also within the rules.
    drop(blk);
    assert!(probe.events().is_empty(), "{:?}", probe.events());
    assert_eq!(
        probe.inner.dev.borrow().queue(0).map(|q| q.is_ready()),
        Some(false)
    );
    let stats = *probe.inner.dev.borrow().device().stats();
    assert_eq!((stats.writes, stats.reads, stats.errors), (65, 6, 2));
    drop(probe);
    assert!(disk[..SECTOR_SIZE]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(0, i)));
}

#[test]
fn blk_with_indirect_descriptors() {
    blk_session(true);
}

#[test]
fn blk_with_direct_descriptors_only() {
    blk_session(false);
}

#[test]
fn rng_stream_matches_the_seed() {
    let transport = RegisterTransport::new(MmioTransport::new(Rng::new(0x5eed)));
    let probe = transport.clone();
    let mut rng = VirtIORng::<HostHal, _>::new(transport).unwrap();
    assert_eq!(probe.read32(0x008), 4);
    let mut want = SplitMix64::new(0x5eed);
    for len in [8usize, 64, 200, 4096] {
        let mut buf = vec![0u8; len];
        let n = rng.request_entropy(&mut buf).unwrap();
        assert_eq!(n, len);
        let mut expect = vec![0u8; len];
        // The device fills in 64-byte blocks from whole 64-bit words.
        for chunk in expect.chunks_mut(64) {
            want.fill(chunk);
        }
        assert_eq!(buf, expect, "{len} bytes");
    }
    assert!(rng.ack_interrupt() == InterruptStatus::QUEUE_INTERRUPT);
    assert!(probe.events().is_empty(), "{:?}", probe.events());
    assert_eq!(
        probe.inner.dev.borrow().device().stats().bytes,
        8 + 64 + 200 + 4096
    );
}
