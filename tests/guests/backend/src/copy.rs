//! Bulk copies between this guest's own memory and a frontend's RAM window.
//!
//! Both sides are Normal Write-Back memory (guest-common `mmu`), coherent with the frontend's
//! and Xen's cacheable mappings, so a copy is plain loads and stores. Every access is still
//! naturally aligned (the guests were first written for the MMU off, where Device memory faults
//! on unaligned accesses, and the target keeps `+strict-align`): single bytes up to the window
//! side's first 8-byte boundary, then volatile 64-bit words, each single-copy atomic, then the
//! last bytes singly. The local side is accessed a word at a time when it has the same alignment
//! as the window side, bytewise otherwise. The window side is only touched through volatile
//! accesses, each byte once: another domain may change it at any time, so no Rust reference to
//! it is made and nothing is read twice.
//!
//! Neither function checks anything: the caller has already checked that the whole range is
//! mapped RAM of the frontend (`window.rs`).

use core::ptr;

/// Width of the word accesses.
const WORD: usize = 8;

/// Returns the number of bytes from `addr` to the next multiple of [`WORD`], at most `len`.
fn head(addr: usize, len: usize) -> usize {
    (addr.wrapping_neg() % WORD).min(len)
}

/// Copies `dst.len()` bytes from backend address `src` into `dst`.
///
/// # Safety
/// `[src, src + dst.len())` must be memory that loads of any width have no side effects on
/// (RAM, not device registers), that is mapped for the whole range (a fault is not caught
/// here), and that no Rust reference covers.
pub unsafe fn read(src: usize, dst: &mut [u8]) {
    let len = dst.len();
    let mut i = 0;
    while i < head(src, len) {
        // SAFETY: `src + i` is inside the range the caller vouches for; a byte load is aligned.
        dst[i] = unsafe { ptr::read_volatile((src + i) as *const u8) };
        i += 1;
    }
    // `src + i` is now a multiple of 8 (or fewer than 8 bytes are left).
    let words = (len - i) / WORD;
    let out = dst.as_mut_ptr();
    if (out as usize + i).is_multiple_of(WORD) {
        for _ in 0..words {
            // SAFETY: `src + i` is 8-byte aligned and `[src + i, src + i + 8)` is inside the
            // range the caller vouches for.
            let word = unsafe { ptr::read_volatile((src + i) as *const u64) };
            // SAFETY: `i + 8 <= len`, so the eight bytes are inside `dst`, which this function
            // borrows mutably, and `out + i` is 8-byte aligned (checked above).
            unsafe { out.add(i).cast::<u64>().write(word) };
            i += WORD;
        }
    } else {
        for _ in 0..words {
            // SAFETY: as above, for the window side.
            let word = unsafe { ptr::read_volatile((src + i) as *const u64) };
            // The target has `+strict-align`: this compiles to aligned (byte) stores.
            dst[i..i + WORD].copy_from_slice(&word.to_ne_bytes());
            i += WORD;
        }
    }
    while i < len {
        // SAFETY: as for the head.
        dst[i] = unsafe { ptr::read_volatile((src + i) as *const u8) };
        i += 1;
    }
}

/// Copies `src` to backend address `dst`.
///
/// # Safety
/// `[dst, dst + src.len())` must be memory that stores of any width have no side effects on
/// beyond changing it (RAM, not device registers), that is mapped for the whole range, and that
/// neither this guest's Rust code nor anything it relies on uses (the frontend's RAM).
pub unsafe fn write(dst: usize, src: &[u8]) {
    let len = src.len();
    let mut i = 0;
    while i < head(dst, len) {
        // SAFETY: `dst + i` is inside the range the caller vouches for; a byte store is aligned.
        unsafe { ptr::write_volatile((dst + i) as *mut u8, src[i]) };
        i += 1;
    }
    let words = (len - i) / WORD;
    let from = src.as_ptr();
    if (from as usize + i).is_multiple_of(WORD) {
        for _ in 0..words {
            // SAFETY: `i + 8 <= len`, so the eight bytes are inside `src`, and `from + i` is
            // 8-byte aligned (checked above).
            let word = unsafe { from.add(i).cast::<u64>().read() };
            // SAFETY: `dst + i` is 8-byte aligned and inside the range the caller vouches for.
            unsafe { ptr::write_volatile((dst + i) as *mut u64, word) };
            i += WORD;
        }
    } else {
        for _ in 0..words {
            let mut bytes = [0u8; WORD];
            bytes.copy_from_slice(&src[i..i + WORD]);
            // SAFETY: as above, for the window side.
            unsafe { ptr::write_volatile((dst + i) as *mut u64, u64::from_ne_bytes(bytes)) };
            i += WORD;
        }
    }
    while i < len {
        // SAFETY: as for the head.
        unsafe { ptr::write_volatile((dst + i) as *mut u8, src[i]) };
        i += 1;
    }
}
