//! A frontend's RAM as this daemon reaches it: its RAM banks, each mapped from its RAM window
//! (docs/backend-abi.md: frontend GPA `a` is at backend GPA `window + a`; the module maps only
//! the banks `rust-ioreq,ram` lists), as virtio-device's `GuestMemory`.
//!
//! The frontend chooses every address and length, so `[gpa, gpa + len)` (checked arithmetic)
//! must lie entirely inside one bank before anything is touched; anything else is refused
//! without a load or store. The banks are Normal Write-Back, coherent with the frontend's view;
//! [`GuestMemory::barrier`] gives the ring protocol its ordering.

use std::cell::Cell;

use virtio_device::{Gpa, GuestMemory, MemError};

use crate::shared::{barrier, SharedRegion};

/// One mapped bank: frontend GPAs `[gpa, gpa + region.len())`.
#[derive(Clone, Copy, Debug)]
pub struct Bank {
    /// Frontend GPA of the first byte.
    pub gpa: u64,
    /// The mapping.
    pub region: SharedRegion,
}

/// The RAM of one frontend.
#[derive(Debug)]
pub struct Window {
    banks: Vec<Bank>,
    /// Accesses refused (outside every bank).
    refused: Cell<u64>,
}

impl Window {
    /// Creates the window over `banks`.
    pub fn new(banks: Vec<Bank>) -> Self {
        Self {
            banks,
            refused: Cell::new(0),
        }
    }

    /// Returns how many accesses were refused.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Returns the bank and offset of `[gpa, gpa + len)`, if one bank holds all of it.
    fn find(&self, gpa: Gpa, len: usize) -> Result<(SharedRegion, usize), MemError> {
        let len64 = u64::try_from(len).unwrap_or(u64::MAX);
        let Some(end) = gpa.0.checked_add(len64) else {
            self.refused.set(self.refused.get().saturating_add(1));
            return Err(MemError::Overflow {
                gpa: gpa.0,
                len: len64,
            });
        };
        let hit = self.banks.iter().find_map(|b| {
            let size = u64::try_from(b.region.len()).ok()?;
            let off = gpa.0.checked_sub(b.gpa)?;
            (end - b.gpa <= size)
                .then(|| usize::try_from(off).ok().map(|o| (b.region, o)))
                .flatten()
        });
        hit.ok_or_else(|| {
            self.refused.set(self.refused.get().saturating_add(1));
            MemError::OutOfRange {
                gpa: gpa.0,
                len: len64,
            }
        })
    }
}

impl GuestMemory for Window {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let (region, off) = self.find(gpa, buf.len())?;
        // `find` checked the range is inside the bank, so the copy cannot be refused.
        region.read_bytes(off, buf);
        Ok(())
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let (region, off) = self.find(gpa, data.len())?;
        region.write_bytes(off, data);
        Ok(())
    }

    fn barrier(&self) {
        barrier();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_whole_ranges_inside_one_bank_are_touched() {
        let a = SharedRegion::alloc(0x1000);
        let b = SharedRegion::alloc(0x1000);
        let w = Window::new(vec![
            Bank {
                gpa: 0x4000_0000,
                region: a,
            },
            Bank {
                gpa: 0x4000_1000,
                region: b,
            },
        ]);
        w.write(Gpa(0x4000_0ffc), &[1, 2, 3, 4]).unwrap();
        assert_eq!(a.read_u32(0xffc), Some(u32::from_ne_bytes([1, 2, 3, 4])));
        // Straddling two banks (even adjacent ones), before the first, past the last, wrapping.
        for (gpa, len) in [
            (0x4000_0ffe, 4),
            (0x3fff_fffe, 4),
            (0x4000_1ffd, 4),
            (u64::MAX - 1, 4),
        ] {
            assert!(w.write(Gpa(gpa), &vec![9; len]).is_err(), "{gpa:#x}");
            let mut buf = vec![0; len];
            assert!(w.read(Gpa(gpa), &mut buf).is_err());
        }
        assert_eq!(w.refused(), 8);
        // Nothing of the refused writes landed.
        assert_eq!(a.read_u8(0xffe), Some(3));
        assert_eq!(b.read_u8(0), Some(0));
        assert_eq!(b.read_u32(0xffc), Some(0));
    }
}
