//! Rate limiting of the messages a guest or backend can cause (Xen's `printk_ratelimit`
//! semantics, per domain): at most [`BURST`] messages per [`WINDOW_NS`], then silence, and the
//! first message of the next window says how many were suppressed.
//!
//! Xen's own limit for `XENLOG_G_*` messages applies only to levels above `guest_loglvl`, and a
//! development system runs with `guest_loglvl=all`: a backend looping on a bad doorbell write
//! would then flood the console. This limit holds whatever the log levels.

use crate::sync::{AtomicU64, Ordering};

/// Messages allowed per window and domain.
pub const BURST: u64 = 10;
/// Window length, in nanoseconds of the hypervisor's clock (5 s, as Xen's default).
pub const WINDOW_NS: u64 = 5_000_000_000;

// The word: window start in ms (40 bits) | messages in the window (8) | suppressed (16).
const COUNT_SHIFT: u32 = 40;
const SUPPRESSED_SHIFT: u32 = 48;
const START_MASK: u64 = (1 << COUNT_SHIFT) - 1;

/// One domain's message budget.
#[derive(Debug)]
pub struct RateLimit(AtomicU64);

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimit {
    /// Returns a fresh budget.
    pub fn new() -> Self {
        RateLimit(AtomicU64::new(0))
    }

    /// Asks to print one message at `now` (ns). Returns `None` to stay silent, or
    /// `Some(suppressed)`: print, after saying that `suppressed` messages were dropped.
    pub fn allow(&self, now: u64) -> Option<u64> {
        let now_ms = (now / 1_000_000) & START_MASK;
        let mut word = self.0.load(Ordering::Relaxed);
        loop {
            let start = word & START_MASK;
            let count = (word >> COUNT_SHIFT) & 0xff;
            let suppressed = word >> SUPPRESSED_SHIFT;
            let expired = now_ms.wrapping_sub(start) & START_MASK >= WINDOW_NS / 1_000_000;
            let (next, verdict) = if expired || count == 0 {
                (now_ms | 1 << COUNT_SHIFT, Some(suppressed))
            } else if count < BURST {
                (word + (1 << COUNT_SHIFT), Some(0))
            } else {
                let more = (suppressed + 1).min(0xffff);
                (
                    word & !(0xffff << SUPPRESSED_SHIFT) | more << SUPPRESSED_SHIFT,
                    None,
                )
            };
            match self
                .0
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(seen) => word = seen,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_silence_then_a_count_of_what_was_dropped() {
        let r = RateLimit::new();
        let t0 = 123_456 * MS;
        for _ in 0..BURST {
            assert_eq!(r.allow(t0), Some(0));
        }
        for i in 0..1000 {
            assert_eq!(r.allow(t0 + i * MS), None);
        }
        // Still inside the window.
        assert_eq!(r.allow(t0 + WINDOW_NS - MS), None);
        // Next window: the first message reports the 1001 dropped.
        assert_eq!(r.allow(t0 + WINDOW_NS), Some(1001));
        assert_eq!(r.allow(t0 + WINDOW_NS), Some(0));
    }

    #[test]
    fn a_flood_is_bounded_by_time_not_by_volume() {
        let r = RateLimit::new();
        let mut printed = 0;
        // 100 000 messages over 20 s.
        for i in 0..100_000u64 {
            if r.allow(i * 200_000).is_some() {
                printed += 1;
            }
        }
        assert!(printed <= 5 * BURST, "{printed}");
        assert!(printed >= BURST);
    }

    #[test]
    fn the_suppressed_count_saturates() {
        let r = RateLimit::new();
        for _ in 0..BURST + 100_000 {
            r.allow(MS);
        }
        assert_eq!(r.allow(MS + WINDOW_NS), Some(0xffff));
    }
}
