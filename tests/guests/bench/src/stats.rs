//! Sample storage and statistics of the benchmark, in integer arithmetic only: the guests (like
//! the Rust code linked into Xen) contain no FP/SIMD instruction (`tools/check-fpsimd.py`).
//!
//! A sample is the counter difference, in ticks, around one batch of operations; a summary gives
//! the 10th, 50th and 90th percentile per operation in picoseconds, printed as nanoseconds.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::args::MAX_ITERS;

/// Most measurements one boot takes.
pub const MAX_BENCHES: usize = 16;

/// Sample buffers: one row of `MAX_ITERS` ticks per measurement (3.2 MB of .bss).
pub type Rows = [[u32; MAX_ITERS]; MAX_BENCHES];

/// The static sample store, handed out once.
struct Store {
    taken: AtomicBool,
    rows: UnsafeCell<Rows>,
}

// SAFETY: `rows` is only reached through the one `&mut` that `take` hands out, once.
unsafe impl Sync for Store {}

static STORE: Store = Store {
    taken: AtomicBool::new(false),
    rows: UnsafeCell::new([[0; MAX_ITERS]; MAX_BENCHES]),
};

/// Returns the sample buffers the first time it is called, `None` afterwards.
///
/// The benchmark runs on its boot vCPU only, so a load and a store of the flag suffice (no
/// read-modify-write atomics: they were not guaranteed to work when the guests ran with the MMU
/// off, and a single vCPU needs none).
pub fn take_rows() -> Option<&'static mut Rows> {
    if STORE.taken.load(Ordering::Relaxed) {
        return None;
    }
    STORE.taken.store(true, Ordering::Relaxed);
    // SAFETY: the flag was clear and is now set, and only this vCPU runs benchmark code, so no
    // other reference to `rows` exists or will be created.
    Some(unsafe { &mut *STORE.rows.get() })
}

/// Percentiles of one measurement, per operation, in picoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// 10th percentile.
    pub p10_ps: u64,
    /// Median.
    pub median_ps: u64,
    /// 90th percentile.
    pub p90_ps: u64,
}

impl Summary {
    /// Sorts `samples` (ticks per batch of `batch` operations, at `hz` ticks per second) and
    /// returns their percentiles per operation; `None` for no samples.
    pub fn of(samples: &mut [u32], batch: u32, hz: u64) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |percent: usize| to_ps(samples[(n - 1) * percent / 100], batch, hz);
        Some(Summary {
            p10_ps: at(10),
            median_ps: at(50),
            p90_ps: at(90),
        })
    }
}

/// Converts `ticks` for a batch of `batch` operations at `hz` into picoseconds per operation.
fn to_ps(ticks: u32, batch: u32, hz: u64) -> u64 {
    let den = u128::from(hz) * u128::from(batch.max(1));
    let ps = (u128::from(ticks) * 1_000_000_000_000 + den / 2) / den.max(1);
    u64::try_from(ps).unwrap_or(u64::MAX)
}

/// Picoseconds shown as whole nanoseconds (rounded).
#[derive(Clone, Copy, Debug)]
pub struct Ns(pub u64);

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.saturating_add(500) / 1000)
    }
}

/// The ratio `num / den` with two decimals, rounded; `None` when `den` is 0.
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    hundredths: u64,
}

impl Ratio {
    /// Returns `num / den`, or `None` if `den` is 0.
    pub fn new(num: u64, den: u64) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let h = (u128::from(num) * 100 + u128::from(den) / 2) / u128::from(den);
        Some(Ratio {
            hundredths: u64::try_from(h).unwrap_or(u64::MAX),
        })
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.hundredths / 100, self.hundredths % 100)
    }
}
