//! A frontend's RAM as the backend reaches it: through the frontend's RAM window
//! (docs/backend-abi.md "Guest physical layout of a backend": frontend GPA `a` is at backend GPA
//! `window_base + a`), as virtio-device's `GuestMemory`.
//!
//! The frontend chooses every address and length, so every access is checked before anything
//! is touched: `[gpa, gpa + len)`, with checked arithmetic, must be inside the window and, when
//! Xen lists the frontend's RAM banks (`rust-ioreq,ram`), entirely inside one bank. The window
//! maps exactly those banks, so an access that passes cannot fault and is a plain aligned
//! volatile copy (`copy.rs`); anything else is refused without a load or store.
//!
//! Fallback: a backend DT without `rust-ioreq,ram` (a Xen older than the property) gives only
//! the window's bounds, and the window has holes. Then every load and store goes through
//! guest-common's expected-fault accessors, one aligned 64-bit word or byte at a time, so that a
//! buffer in a hole fails the access instead of crashing the backend. That path arms and disarms
//! the fault handler around each word and is much slower.
//!
//! The window is Normal Write-Back Inner Shareable memory to this backend (guest-common `mmu`;
//! main.rs checks the window lies in the RAM part of the map), as the frontend's RAM is to the
//! frontend and to Xen: the caches keep all views coherent, no cache maintenance is needed, and
//! the ordering the ring protocol needs comes from [`GuestMemory::barrier`], a `dmb ish`.
//!
//! A hole in the window is Normal memory to stage 1 too: the access reaches Xen's stage 2, which
//! maps nothing there, and Xen injects a data abort as it does for any unmapped address, which
//! the expected-fault accessors catch. Speculative accesses to a hole are never reported.

use core::cell::Cell;

use guest_common::exception;
use virtio_device::{Gpa, GuestMemory, MemError};

use crate::config::Frontend;
use crate::copy;

/// The RAM window of one frontend.
#[derive(Debug)]
pub struct Window {
    frontend: Frontend,
    /// Accesses that took a data abort (a buffer in a hole of the window).
    faults: Cell<u32>,
}

impl Window {
    /// Creates the window of `frontend`.
    pub fn new(frontend: Frontend) -> Self {
        Self {
            frontend,
            faults: Cell::new(0),
        }
    }

    /// Returns how many accesses took a data abort so far (only without `rust-ioreq,ram`).
    pub fn faults(&self) -> u32 {
        self.faults.get()
    }

    /// Tells whether accesses are checked against the frontend's RAM banks (and copied in bulk)
    /// rather than probed for faults.
    pub fn has_banks(&self) -> bool {
        self.frontend.ram_banks > 0
    }

    /// Returns the backend address of `[gpa, gpa + len)`, if all of it may be accessed.
    fn translate(&self, gpa: Gpa, len: usize) -> Result<usize, MemError> {
        let len64 = u64::try_from(len).unwrap_or(u64::MAX);
        let out = MemError::OutOfRange {
            gpa: gpa.0,
            len: len64,
        };
        let end = gpa.0.checked_add(len64).ok_or(MemError::Overflow {
            gpa: gpa.0,
            len: len64,
        })?;
        if end > self.frontend.window.size {
            return Err(out);
        }
        let banks = &self.frontend.ram[..self.frontend.ram_banks];
        if !banks.is_empty() && !banks.iter().any(|b| b.base <= gpa.0 && end <= b.end()) {
            return Err(out);
        }
        // The window was checked not to wrap, and `gpa + len` is inside it.
        let addr = self.frontend.window.base + gpa.0;
        usize::try_from(addr).map_err(|_| out)
    }

    /// Records a fault and turns it into the access's error.
    fn fault(&self, gpa: Gpa, len: usize) -> MemError {
        self.faults.set(self.faults.get().saturating_add(1));
        MemError::OutOfRange {
            gpa: gpa.0,
            len: u64::try_from(len).unwrap_or(u64::MAX),
        }
    }

    /// Reads through the expected-fault accessors (no bank list): `base` is the backend address
    /// of `gpa`, already checked against the window.
    fn probe_read(&self, base: usize, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let mut i = 0;
        while i < buf.len() {
            let addr = base + i;
            if addr.is_multiple_of(8) && buf.len() - i >= 8 {
                // SAFETY: `addr` is 8-byte aligned and inside the frontend's RAM window, which
                // holds only the frontend's RAM (no device registers), so a load has no side
                // effect; a hole in the window takes a data abort, returned as `Err`.
                let word = unsafe { exception::try_read_u64(addr) }
                    .map_err(|_| self.fault(gpa, buf.len()))?;
                buf[i..i + 8].copy_from_slice(&word.to_le_bytes());
                i += 8;
            } else {
                // SAFETY: as above, for a byte.
                buf[i] = unsafe { exception::try_read_u8(addr) }
                    .map_err(|_| self.fault(gpa, buf.len()))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Writes through the expected-fault accessors (no bank list); as [`Self::probe_read`].
    fn probe_write(&self, base: usize, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let mut i = 0;
        while i < data.len() {
            let addr = base + i;
            if addr.is_multiple_of(8) && data.len() - i >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&data[i..i + 8]);
                // SAFETY: `addr` is 8-byte aligned and inside the frontend's RAM window: memory
                // the frontend shared with its devices by putting it in a virtqueue, never this
                // guest's own memory; a hole takes a data abort, returned as `Err`.
                unsafe { exception::try_write_u64(addr, u64::from_le_bytes(word)) }
                    .map_err(|_| self.fault(gpa, data.len()))?;
                i += 8;
            } else {
                // SAFETY: as above, for a byte.
                unsafe { exception::try_write_u8(addr, data[i]) }
                    .map_err(|_| self.fault(gpa, data.len()))?;
                i += 1;
            }
        }
        Ok(())
    }
}

impl GuestMemory for Window {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let base = self.translate(gpa, buf.len())?;
        if !self.has_banks() {
            return self.probe_read(base, gpa, buf);
        }
        // SAFETY: `translate` checked that `[gpa, gpa + len)` is inside one RAM bank of the
        // frontend, and the window maps every page of every bank (docs/backend-abi.md): the
        // range is mapped RAM, loads have no side effect, and this guest holds no reference
        // into any frontend's window.
        unsafe { copy::read(base, buf) };
        Ok(())
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let base = self.translate(gpa, data.len())?;
        if !self.has_banks() {
            return self.probe_write(base, gpa, data);
        }
        // SAFETY: as in `read`: mapped RAM of the frontend, which the frontend shared with its
        // devices by putting it in a virtqueue; never this guest's own memory.
        unsafe { copy::write(base, data) };
        Ok(())
    }

    fn barrier(&self) {
        crate::ioreq::dmb();
    }
}
