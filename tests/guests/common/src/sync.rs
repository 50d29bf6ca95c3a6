//! A mutual-exclusion lock for the test guests' vCPUs that needs no atomic read-modify-write:
//! Lamport's bakery algorithm ("A New Solution of Dijkstra's Concurrent Programming Problem",
//! CACM 17(8), 1974) over plain loads and stores with `dmb sy` between them.
//!
//! It dates from when the guests ran with the MMU off, where every data access is to
//! Device-nGnRnE memory and exclusive loads and stores (LDXR/STXR, what a spinlock would use) are
//! not guaranteed to work (Arm ARM B2.9.5). With the MMU on (`mmu.rs`) RAM is Normal Write-Back
//! Inner Shareable, where exclusives work, but the bakery lock stays: plain single-copy-atomic
//! loads and stores with full barriers between them are correct on any memory type.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::smp::{cpu_index, MAX_CPUS};

/// Orders every earlier memory access before every later one, for all observers.
fn barrier() {
    // SAFETY: `dmb sy` only orders memory accesses; it reads and writes nothing itself. It is not
    // `nomem`, so the compiler does not move memory accesses across it either.
    unsafe { asm!("dmb sy", options(nostack, preserves_flags)) };
}

/// Protects a `T` shared by the vCPUs of one guest; must not be taken in an exception handler.
pub struct BakeryLock<T> {
    choosing: [AtomicBool; MAX_CPUS],
    ticket: [AtomicU32; MAX_CPUS],
    data: UnsafeCell<T>,
}

// SAFETY: the bakery algorithm gives one vCPU at a time access to `data`, so sharing the lock
// between vCPUs hands `T` from one to another, which `T: Send` allows.
unsafe impl<T: Send> Sync for BakeryLock<T> {}

impl<T> fmt::Debug for BakeryLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BakeryLock")
    }
}

impl<T> BakeryLock<T> {
    /// Creates an unlocked lock around `data`.
    pub const fn new(data: T) -> Self {
        Self {
            choosing: [const { AtomicBool::new(false) }; MAX_CPUS],
            ticket: [const { AtomicU32::new(0) }; MAX_CPUS],
            data: UnsafeCell::new(data),
        }
    }

    /// Waits until this vCPU holds the lock.
    ///
    /// # Panics
    /// Panics if this vCPU already holds it (a deadlock otherwise).
    pub fn lock(&self) -> BakeryGuard<'_, T> {
        let me = cpu_index();
        assert_eq!(
            self.ticket[me].load(Ordering::Relaxed),
            0,
            "BakeryLock taken twice by vCPU {me}"
        );
        self.choosing[me].store(true, Ordering::Relaxed);
        barrier();
        let highest = self
            .ticket
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let mine = highest.wrapping_add(1).max(1);
        self.ticket[me].store(mine, Ordering::Relaxed);
        barrier();
        self.choosing[me].store(false, Ordering::Relaxed);
        barrier();
        for other in (0..MAX_CPUS).filter(|&o| o != me) {
            while self.choosing[other].load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
            barrier();
            loop {
                let theirs = self.ticket[other].load(Ordering::Relaxed);
                // Lower ticket first; equal tickets (both read the same maximum) go by index.
                if theirs == 0 || (theirs, other) > (mine, me) {
                    break;
                }
                core::hint::spin_loop();
            }
        }
        barrier();
        BakeryGuard { lock: self, me }
    }
}

/// Access to the data of a held [`BakeryLock`]; dropping it releases the lock.
pub struct BakeryGuard<'a, T> {
    lock: &'a BakeryLock<T>,
    me: usize,
}

impl<T> fmt::Debug for BakeryGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BakeryGuard(vCPU {})", self.me)
    }
}

impl<T> Deref for BakeryGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this vCPU holds the lock, so no other vCPU accesses
        // `data`, and the guard's borrow rules keep this vCPU's own accesses exclusive.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for BakeryGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for BakeryGuard<'_, T> {
    fn drop(&mut self) {
        // Everything done under the lock must be visible before the next holder enters.
        barrier();
        self.lock.ticket[self.me].store(0, Ordering::Relaxed);
        barrier();
    }
}
