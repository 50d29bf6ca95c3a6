//! Memory another domain writes: the ioreq, transport and notify pages (Xen) and a frontend's
//! RAM banks (the frontend), as mapped from /dev/rust-ioreq-be (docs/backend-abi.md, "Memory
//! types a backend must use": Normal Write-Back, so plain loads and stores are coherent).
//!
//! The house rule for hostile memory: no Rust reference into it, every field read once with a
//! volatile, naturally aligned (single-copy atomic) access, copied out, then validated.
//! [`SharedRegion`] is the only way this crate touches such memory; every access is
//! bounds-checked against the region and fails (`None`/`false`) instead of going outside it.

use core::ptr;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Orders every memory access before it against every one after it, for all CPUs of the inner
/// shareable domain (`dmb ish` on aarch64): the barrier the protocol asks for between a slot's
/// state and its fields, a record and `published`, a used ring and `RAISE_IRQ`.
pub fn barrier() {
    fence(Ordering::SeqCst);
}

/// A mapped range of memory another domain may change at any time.
///
/// Not `Send`/`Sync` (a raw pointer): the daemon is one thread.
#[derive(Clone, Copy, Debug)]
pub struct SharedRegion {
    base: *mut u8,
    len: usize,
}

impl SharedRegion {
    /// Wraps `[base, base + len)`.
    ///
    /// # Safety
    /// The range must stay mapped readable and writable for the rest of the process (a
    /// `MAP_SHARED` mapping that is never unmapped), must be memory on which loads and stores
    /// have no side effects beyond the data (RAM, not device registers), and no Rust reference
    /// may ever cover it.
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Self {
        Self { base, len }
    }

    /// Wraps memory of this process standing for a shared page (host tests, fakes). The words
    /// are leaked, so the region stays valid forever.
    pub fn from_words(words: &'static [AtomicU64]) -> Self {
        Self {
            base: AtomicU64::as_ptr(words.first().unwrap_or(&ZERO)).cast(),
            len: if words.is_empty() { 0 } else { words.len() * 8 },
        }
    }

    /// Allocates a zeroed region of `len` bytes (rounded up to 8) for host tests and fakes.
    pub fn alloc(len: usize) -> Self {
        let words: Vec<AtomicU64> = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
        Self::from_words(Box::leak(words.into_boxed_slice()))
    }

    /// Returns the address of the first byte (for a mapping used otherwise: the doorbell).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// Returns the size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Tells whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the address of `[offset, offset + size)` if it lies inside the region and is
    /// aligned to `align`.
    fn at(&self, offset: usize, size: usize, align: usize) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len {
            return None;
        }
        // `offset < len`, so the sum stays inside the mapping.
        let addr = self.base.wrapping_add(offset);
        ((addr as usize) % align == 0).then_some(addr)
    }

    /// Reads the byte at `offset`.
    pub fn read_u8(&self, offset: usize) -> Option<u8> {
        let p = self.at(offset, 1, 1)?;
        // SAFETY: `p` is inside the region (checked by `at`), which `from_raw`/`from_words`
        // guarantee is mapped memory without read side effects and covered by no reference.
        Some(unsafe { ptr::read_volatile(p) })
    }

    /// Reads the naturally aligned `u32` at `offset`.
    pub fn read_u32(&self, offset: usize) -> Option<u32> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: as in `read_u8`; `at` checked the four bytes are inside and aligned.
        Some(unsafe { ptr::read_volatile(p.cast::<u32>()) })
    }

    /// Reads the naturally aligned `u64` at `offset`.
    pub fn read_u64(&self, offset: usize) -> Option<u64> {
        let p = self.at(offset, 8, 8)?;
        // SAFETY: as in `read_u8`; `at` checked the eight bytes are inside and aligned.
        Some(unsafe { ptr::read_volatile(p.cast::<u64>()) })
    }

    /// Writes the byte at `offset`; false (nothing written) if it is outside.
    pub fn write_u8(&self, offset: usize, value: u8) -> bool {
        let Some(p) = self.at(offset, 1, 1) else {
            return false;
        };
        // SAFETY: inside the region (checked by `at`), mapped writable, no reference covers it.
        unsafe { ptr::write_volatile(p, value) };
        true
    }

    /// Writes the naturally aligned `u32` at `offset`; false (nothing written) if it is not.
    pub fn write_u32(&self, offset: usize, value: u32) -> bool {
        let Some(p) = self.at(offset, 4, 4) else {
            return false;
        };
        // SAFETY: as in `write_u8`; aligned and inside (checked by `at`).
        unsafe { ptr::write_volatile(p.cast::<u32>(), value) };
        true
    }

    /// Writes the naturally aligned `u64` at `offset`; false (nothing written) if it is not.
    pub fn write_u64(&self, offset: usize, value: u64) -> bool {
        let Some(p) = self.at(offset, 8, 8) else {
            return false;
        };
        // SAFETY: as in `write_u8`; aligned and inside (checked by `at`).
        unsafe { ptr::write_volatile(p.cast::<u64>(), value) };
        true
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`, each shared byte read once (aligned
    /// 64-bit words where the shared side allows); false (nothing copied) if not all inside.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> bool {
        let Some(src) = self.at(offset, buf.len(), 1) else {
            return false;
        };
        let len = buf.len();
        let head = (src as usize).wrapping_neg() % 8;
        let mut i = 0;
        while i < len {
            let p = src.wrapping_add(i);
            if i >= head.min(len) && len - i >= 8 {
                // SAFETY: `p` is 8-byte aligned (past the head) and `[p, p + 8)` is inside the
                // range `at` checked.
                let word = unsafe { ptr::read_volatile(p.cast::<u64>()) };
                buf[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: `p` is inside the range `at` checked.
                buf[i] = unsafe { ptr::read_volatile(p) };
                i += 1;
            }
        }
        true
    }

    /// Copies `data` to `offset` (aligned 64-bit words where the shared side allows); false
    /// (nothing written) if not all of it is inside.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> bool {
        let Some(dst) = self.at(offset, data.len(), 1) else {
            return false;
        };
        let len = data.len();
        let head = (dst as usize).wrapping_neg() % 8;
        let mut i = 0;
        while i < len {
            let p = dst.wrapping_add(i);
            if i >= head.min(len) && len - i >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&data[i..i + 8]);
                // SAFETY: `p` is 8-byte aligned and `[p, p + 8)` is inside the checked range.
                unsafe { ptr::write_volatile(p.cast::<u64>(), u64::from_ne_bytes(word)) };
                i += 8;
            } else {
                // SAFETY: `p` is inside the checked range.
                unsafe { ptr::write_volatile(p, data[i]) };
                i += 1;
            }
        }
        true
    }
}

/// What an empty [`SharedRegion::from_words`] points at (never accessed: its length is 0).
static ZERO: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_and_alignment_checked() {
        let r = SharedRegion::alloc(64);
        assert!(r.write_u32(60, 7));
        assert_eq!(r.read_u32(60), Some(7));
        assert!(!r.write_u32(62, 1), "misaligned");
        assert!(!r.write_u64(64, 1), "outside");
        assert_eq!(r.read_u64(usize::MAX - 3), None, "wraps");
        assert!(!r.write_bytes(60, &[0; 5]));
        assert_eq!(r.read_u32(60), Some(7), "a refused copy wrote nothing");
    }

    #[test]
    fn byte_copies_round_trip_at_any_alignment() {
        let r = SharedRegion::alloc(128);
        let data: Vec<u8> = (0..50u8).collect();
        for off in 0..9 {
            assert!(r.write_bytes(off, &data));
            let mut back = vec![0u8; 50];
            assert!(r.read_bytes(off, &mut back));
            assert_eq!(back, data);
        }
    }
}
