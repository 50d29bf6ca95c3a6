//! The operations the benchmark times, as single instructions pinned down by inline assembly,
//! and the counter that times them (CNTVCT_EL0, Arm ARM D11.2.4). All of the benchmark's
//! `unsafe` is here: each target type is created by an `unsafe` constructor whose contract says
//! why accessing it any number of times is harmless; its methods are then safe.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use guest_common::exception::{self, Fault};
use guest_common::mmio;

/// Reads the virtual counter with an `isb` on each side: the one before keeps the read from
/// being taken before the operation ahead of it completes, the one after keeps the operation
/// behind it from starting before the read.
///
/// Not `nomem`: the asm is also a compiler barrier, so no access moves across it.
#[inline(always)]
pub fn counter() -> u64 {
    let t: u64;
    // SAFETY: `isb` and reading CNTVCT_EL0 (always allowed at EL1) have no side effects on memory
    // or registers other than `t`.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", "isb", out(reg) t, options(nostack, preserves_flags))
    };
    t
}

/// Loads timed per sample by [`ram_load_batch`]: one load is a few nanoseconds, far below the
/// counter's resolution (16 ns at 62.5 MHz), so a sample times a batch.
pub const RAM_LOADS_PER_SAMPLE: u32 = 64;

/// A page of its own in .bss (interior mutability keeps it out of .rodata, which shares pages
/// with code; see the guests' link.ld on why written data must not).
#[repr(C, align(4096))]
struct RamPage([AtomicU32; 1024]);

static RAM_PAGE: RamPage = RamPage([const { AtomicU32::new(0) }; 1024]);

/// Returns the address of the page [`ram_load_batch`] reads.
pub fn ram_page() -> usize {
    (&raw const RAM_PAGE) as usize
}

/// The value [`ram_load_batch`] must read.
pub const RAM_PATTERN: u32 = 0x5eed_cafe;

/// Stores [`RAM_PATTERN`] into the word the RAM loads read.
pub fn ram_init() {
    RAM_PAGE.0[0].store(RAM_PATTERN, Ordering::Relaxed);
}

/// Makes [`RAM_LOADS_PER_SAMPLE`] 32-bit loads of the word in the .bss page; returns the value.
#[inline(always)]
pub fn ram_load_batch() -> u32 {
    let value: u32;
    // SAFETY: the address is that of an `AtomicU32` in a static, valid for loads for the whole
    // program; a plain 32-bit load of an atomic is an atomic relaxed load on aarch64.
    unsafe {
        asm!(".rept {n}", "ldr {v:w}, [{a}]", ".endr",
             n = const RAM_LOADS_PER_SAMPLE, a = in(reg) RAM_PAGE.0.as_ptr(), v = out(reg) value,
             options(nostack, preserves_flags, readonly));
    }
    value
}

/// A 32-bit register that may be read any number of times without side effects.
#[derive(Clone, Copy, Debug)]
pub struct ReadReg(usize);

impl ReadReg {
    /// Wraps the register at `addr`.
    ///
    /// # Safety
    /// `addr` must be 4-byte aligned, and a 32-bit read of it must be allowed any number of times
    /// and have no effect the benchmark minds (an ID or status register, or a register a backend
    /// answers without side effects). If the read takes an abort the guest panics.
    pub const unsafe fn new(addr: usize) -> Self {
        ReadReg(addr)
    }

    /// Returns the register's address.
    pub fn addr(self) -> usize {
        self.0
    }

    /// Reads the register with one `ldr`.
    #[inline(always)]
    pub fn read(self) -> u32 {
        // SAFETY: `new`'s contract: aligned, and reading it any number of times is harmless.
        unsafe { mmio::read32(self.0) }
    }
}

/// A 32-bit register and a value that may be written to it any number of times harmlessly.
#[derive(Clone, Copy, Debug)]
pub struct WriteReg {
    addr: usize,
    value: u32,
}

impl WriteReg {
    /// Wraps the register at `addr` and the value `value`.
    ///
    /// # Safety
    /// `addr` must be 4-byte aligned, must not be memory Rust code uses, and writing `value` to it
    /// any number of times must have no effect the benchmark minds.
    pub const unsafe fn new(addr: usize, value: u32) -> Self {
        WriteReg { addr, value }
    }

    /// Returns the register's address.
    pub fn addr(self) -> usize {
        self.addr
    }

    /// Returns the value written.
    pub fn value(self) -> u32 {
        self.value
    }

    /// Writes the value with one `str`.
    #[inline(always)]
    pub fn write(self) {
        // SAFETY: `new`'s contract: aligned, not Rust memory, the write is harmless.
        unsafe { mmio::write32(self.addr, self.value) }
    }
}

/// A 4-byte aligned guest-physical address where nothing is: every access takes a data abort.
#[derive(Clone, Copy, Debug)]
pub struct Unclaimed(usize);

impl Unclaimed {
    /// Wraps `addr`.
    ///
    /// # Safety
    /// `addr` must be 4-byte aligned and neither RAM of this guest nor a device of it: a read has
    /// no effect other than the abort it takes (or, should something be there after all, the
    /// value it returns).
    pub const unsafe fn new(addr: usize) -> Self {
        Unclaimed(addr)
    }

    /// Returns the address.
    pub fn addr(self) -> usize {
        self.0
    }

    /// Reads the address with the expected-fault accessor.
    #[inline(always)]
    pub fn read(self) -> Result<u32, Fault> {
        // SAFETY: `new`'s contract: aligned, and the read has no side effects; a fault is caught.
        unsafe { exception::try_read_u32(self.0) }
    }
}

/// A virtio-mmio device window the benchmark drives itself (its register layout: virtio 1.2
/// §4.2.2): the fast-transport device it sets up with a tiny queue.
#[derive(Clone, Copy, Debug)]
pub struct VirtioWindow {
    base: usize,
    size: usize,
}

impl VirtioWindow {
    /// Wraps the window `[base, base + size)`.
    ///
    /// # Safety
    /// The window must be a `virtio,mmio` device of this guest's device tree that nothing else in
    /// the guest uses: the benchmark is then its driver, and any register access is its own
    /// business (the device, not this guest's memory, is what it changes).
    pub const unsafe fn new(base: usize, size: usize) -> Self {
        VirtioWindow { base, size }
    }

    /// Returns the window's base address.
    pub fn base(self) -> usize {
        self.base
    }

    /// Returns the address of the register at `offset`, `None` outside the window or unaligned.
    fn at(self, offset: usize) -> Option<usize> {
        (offset % 4 == 0 && offset.checked_add(4).is_some_and(|end| end <= self.size))
            .then_some(self.base + offset)
    }

    /// Reads the 32-bit register at `offset` (all ones outside the window).
    pub fn read(self, offset: usize) -> u32 {
        match self.at(offset) {
            // SAFETY: `new`'s contract: a device window this guest drives; `at` keeps the aligned
            // access inside it.
            Some(addr) => unsafe { mmio::read32(addr) },
            None => u32::MAX,
        }
    }

    /// Writes the 32-bit register at `offset` (nothing outside the window).
    pub fn write(self, offset: usize, value: u32) {
        if let Some(addr) = self.at(offset) {
            // SAFETY: as for `read`.
            unsafe { mmio::write32(addr, value) }
        }
    }

    /// Returns a [`ReadReg`] for the register at `offset`, which must be one whose reads have no
    /// side effects (an ID, status or configuration register); `None` outside the window.
    pub fn read_reg(self, offset: usize) -> Option<ReadReg> {
        // SAFETY: `new`'s contract (this guest drives the device), and the caller picks a
        // register without read side effects, as this method's contract says.
        self.at(offset).map(|addr| unsafe { ReadReg::new(addr) })
    }

    /// Returns a [`WriteReg`] writing `value` to the register at `offset`, which must be a write
    /// the benchmark may repeat any number of times; `None` outside the window.
    pub fn write_reg(self, offset: usize, value: u32) -> Option<WriteReg> {
        // SAFETY: `new`'s contract: the window is a device, not memory Rust code uses; the
        // caller vouches for repeating the write, as this method's contract says.
        self.at(offset)
            .map(|addr| unsafe { WriteReg::new(addr, value) })
    }
}
