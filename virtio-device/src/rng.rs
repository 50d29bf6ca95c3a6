//! virtio-rng (entropy device) model (virtio 1.2 §5.4): one request queue whose device-writable
//! buffers are filled from an [`Entropy`] source: by default a seeded [`SplitMix64`] generator,
//! or one the embedder supplies (an OS's random number generator).
//!
//! **[`SplitMix64`] is not cryptographic.** Its bytes are a deterministic function of the seed;
//! they are good for exercising a driver, and must not be credited as entropy by anything that
//! matters. At most
//! [`MAX_BYTES_PER_REQUEST`] bytes are given per request (§5.4.6.1 lets the device use less
//! than the whole buffer), which bounds the work one request can cause.

use crate::log::{Event, Logger, RequestError};
use crate::memory::GuestMemory;
use crate::mmio::VirtioDevice;
use crate::queue::{Queue, QueueError, MAX_QUEUE_SIZE};

/// Virtio device ID of an entropy source (§5.4.1).
pub const DEVICE_ID: u32 = 4;
/// The most bytes one request receives.
pub const MAX_BYTES_PER_REQUEST: u64 = 64 * 1024;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): a 64-bit counter passed through a mixing function. Small, fast, statistically
/// good, and entirely predictable from its state: not a cryptographic generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Creates a generator from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Returns the next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Where an entropy device's bytes come from.
pub trait Entropy {
    /// Fills all of `buf`, or fails with an OS error number (0 when there is none); the device
    /// then gives the driver nothing for that request.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), i32>;
}

impl Entropy for SplitMix64 {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), i32> {
        SplitMix64::fill(self, buf);
        Ok(())
    }
}

/// Counters of the requests an entropy device served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RngStats {
    /// Requests completed.
    pub requests: u64,
    /// Bytes given to the driver.
    pub bytes: u64,
    /// Requests with no writable buffer, a buffer outside guest memory, or no entropy.
    pub errors: u64,
}

/// A virtio-rng device whose bytes come from `E`.
#[derive(Clone, Debug)]
pub struct Rng<E = SplitMix64> {
    prng: E,
    stats: RngStats,
}

impl Rng<SplitMix64> {
    /// Creates an entropy device whose bytes come from a generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self::with_source(SplitMix64::new(seed))
    }
}

impl<E: Entropy> Rng<E> {
    /// Creates an entropy device whose bytes come from `source`.
    pub const fn with_source(source: E) -> Self {
        Self {
            prng: source,
            stats: RngStats {
                requests: 0,
                bytes: 0,
                errors: 0,
            },
        }
    }

    /// Returns the request counters.
    pub fn stats(&self) -> &RngStats {
        &self.stats
    }
}

impl<E: Entropy> VirtioDevice for Rng<E> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        0
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn queue_max_size(&self, _index: usize) -> u16 {
        MAX_QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        0
    }

    fn read_config(&self, _offset: usize, _data: &mut [u8]) {}

    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        log: &mut dyn Logger,
    ) -> Result<(), QueueError> {
        while let Some(chain) = queue.pop(mem)? {
            let mut w = chain.writer();
            let mut left = w.remaining().min(MAX_BYTES_PER_REQUEST);
            let mut error = (left == 0).then_some(RequestError::NoWritable);
            let mut block = [0u8; 64];
            while left > 0 && error.is_none() {
                let n = usize::try_from(left)
                    .unwrap_or(block.len())
                    .min(block.len());
                if let Err(errno) = self.prng.fill(&mut block[..n]) {
                    error = Some(RequestError::Entropy(errno));
                    break;
                }
                match w.write(mem, &block[..n]) {
                    Ok(()) => left -= u64::try_from(n).unwrap_or(left),
                    Err(e) => error = Some(RequestError::Data(e)),
                }
            }
            let used = w.written_prefix();
            self.stats.requests += 1;
            self.stats.bytes += used;
            if let Some(error) = error {
                self.stats.errors += 1;
                log.log(Event::Request {
                    queue: index,
                    head: chain.head(),
                    error,
                });
            }
            queue.add_used(mem, &chain, u32::try_from(used).unwrap_or(u32::MAX))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_seed_dependent() {
        let (mut a, mut b, mut c) = (SplitMix64::new(1), SplitMix64::new(1), SplitMix64::new(2));
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
        // Reference value of SplitMix64 seeded with 0 (first output).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut buf = [0u8; 13];
        SplitMix64::new(7).fill(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
