//! Byte-stream views of a descriptor chain's buffers (virtio 1.2 §2.6.4 "Message Framing": a
//! device must not assume how the driver splits a request over descriptors).
//!
//! A [`Reader`] walks the device-readable buffers, a [`Writer`] the device-writable ones. Both
//! only move forward, copy through [`GuestMemory`], and refuse to run past the chain's end.

use core::fmt;

use crate::memory::{GuestMemory, MemError};
use crate::queue::{total_len, Descriptor};

/// Why a chain read or write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainIoError {
    /// The buffers hold fewer bytes than asked for (nothing was transferred).
    Short {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes left in the buffers.
        left: u64,
    },
    /// A buffer is not (entirely) in guest memory; part of the transfer may have happened.
    Memory(MemError),
}

impl From<MemError> for ChainIoError {
    fn from(e: MemError) -> Self {
        ChainIoError::Memory(e)
    }
}

impl fmt::Display for ChainIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChainIoError::Short { wanted, left } => {
                write!(f, "wanted {wanted} bytes, buffers hold {left}")
            }
            ChainIoError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// A position in a list of buffers.
#[derive(Clone, Debug)]
struct Cursor<'c> {
    descs: &'c [Descriptor],
    index: usize,
    offset: u32,
    left: u64,
}

impl<'c> Cursor<'c> {
    fn new(descs: &'c [Descriptor]) -> Self {
        Self {
            descs,
            index: 0,
            offset: 0,
            left: total_len(descs),
        }
    }

    /// Checks that `n` bytes are left.
    fn check(&self, n: u64) -> Result<(), ChainIoError> {
        if n > self.left {
            Err(ChainIoError::Short {
                wanted: n,
                left: self.left,
            })
        } else {
            Ok(())
        }
    }

    /// Runs `f(gpa, start, len)` over consecutive pieces covering the next `n` bytes (at most
    /// `usize::MAX` at once, which the callers' slice lengths guarantee), and moves past them.
    fn advance(
        &mut self,
        n: usize,
        mut f: impl FnMut(crate::memory::Gpa, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), ChainIoError> {
        let total = u64::try_from(n).unwrap_or(u64::MAX);
        self.check(total)?;
        let mut done = 0usize;
        while done < n {
            let Some(d) = self.descs.get(self.index) else {
                // `check` guarantees the buffers hold `n` bytes.
                return Err(ChainIoError::Short {
                    wanted: total,
                    left: 0,
                });
            };
            let in_desc = d.len - self.offset;
            if in_desc == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let piece = usize::try_from(in_desc).unwrap_or(usize::MAX).min(n - done);
            // Push-time checks guarantee `addr + len` does not wrap, so `addr + offset` cannot.
            let gpa = d.addr.offset(u64::from(self.offset))?;
            f(gpa, done, piece)?;
            done += piece;
            // `piece <= in_desc`, a u32.
            let piece32 = u32::try_from(piece).unwrap_or(u32::MAX);
            self.offset += piece32;
            self.left -= u64::from(piece32);
        }
        Ok(())
    }
}

/// Reads the device-readable part of a chain as one byte stream.
#[derive(Clone, Debug)]
pub struct Reader<'c> {
    cursor: Cursor<'c>,
}

impl<'c> Reader<'c> {
    /// Starts at the first byte of `descs`.
    pub fn new(descs: &'c [Descriptor]) -> Self {
        Self {
            cursor: Cursor::new(descs),
        }
    }

    /// Returns the number of bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.cursor.left
    }

    /// Fills `buf` with the next `buf.len()` bytes.
    pub fn read(&mut self, mem: &dyn GuestMemory, buf: &mut [u8]) -> Result<(), ChainIoError> {
        self.cursor.advance(buf.len(), |gpa, start, len| {
            mem.read(gpa, &mut buf[start..start + len])
        })
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: u64) -> Result<(), ChainIoError> {
        self.cursor.check(n)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.cursor.advance(n, |_, _, _| Ok(()))
    }
}

/// Writes the device-writable part of a chain as one byte stream, and keeps count of how many
/// bytes were written from its start without a gap (the used element's `len`, §2.7.8.2).
#[derive(Clone, Debug)]
pub struct Writer<'c> {
    cursor: Cursor<'c>,
    prefix: u64,
    gap: bool,
}

impl<'c> Writer<'c> {
    /// Starts at the first byte of `descs`.
    pub fn new(descs: &'c [Descriptor]) -> Self {
        Self {
            cursor: Cursor::new(descs),
            prefix: 0,
            gap: false,
        }
    }

    /// Returns the number of bytes not yet written or skipped.
    pub fn remaining(&self) -> u64 {
        self.cursor.left
    }

    /// Writes `data` as the next `data.len()` bytes.
    pub fn write(&mut self, mem: &dyn GuestMemory, data: &[u8]) -> Result<(), ChainIoError> {
        let mut written = 0u64;
        let result = self.cursor.advance(data.len(), |gpa, start, len| {
            mem.write(gpa, &data[start..start + len])?;
            written += u64::try_from(len).unwrap_or(u64::MAX);
            Ok(())
        });
        if !self.gap {
            self.prefix = self.prefix.saturating_add(written);
        }
        if result.is_err() {
            // Whatever comes next is not contiguous with what was written.
            self.gap = true;
        }
        result
    }

    /// Skips `n` bytes without writing them.
    pub fn skip(&mut self, n: u64) -> Result<(), ChainIoError> {
        self.cursor.check(n)?;
        if n > 0 {
            self.gap = true;
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.cursor.advance(n, |_, _, _| Ok(()))
    }

    /// Returns how many bytes were written contiguously from the first writable byte.
    pub fn written_prefix(&self) -> u64 {
        self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Gpa, SliceMemory};

    fn d(addr: u64, len: u32, writable: bool) -> Descriptor {
        Descriptor {
            addr: Gpa(addr),
            len,
            writable,
        }
    }

    #[test]
    fn reader_crosses_buffers() {
        let mut bytes: Vec<u8> = (0..=255).collect();
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let descs = [d(10, 3, false), d(100, 0, false), d(200, 4, false)];
        let mut r = Reader::new(&descs);
        assert_eq!(r.remaining(), 7);
        let mut buf = [0u8; 5];
        r.read(&mem, &mut buf).unwrap();
        assert_eq!(buf, [10, 11, 12, 200, 201]);
        assert_eq!(
            r.read(&mem, &mut buf),
            Err(ChainIoError::Short { wanted: 5, left: 2 })
        );
        r.skip(1).unwrap();
        let mut one = [0u8; 1];
        r.read(&mem, &mut one).unwrap();
        assert_eq!(one, [203]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn writer_tracks_contiguous_prefix() {
        let mut bytes = vec![0u8; 256];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let descs = [d(16, 2, true), d(64, 4, true)];
        let mut w = Writer::new(&descs);
        w.write(&mem, &[1, 2, 3]).unwrap();
        assert_eq!(w.written_prefix(), 3);
        w.skip(2).unwrap();
        w.write(&mem, &[9]).unwrap();
        assert_eq!(w.written_prefix(), 3);
        assert_eq!(w.remaining(), 0);
        let mut out = [0u8; 4];
        mem.read(Gpa(64), &mut out).unwrap();
        assert_eq!(out, [3, 0, 0, 9]);
    }

    #[test]
    fn writer_reports_memory_errors() {
        let mut bytes = vec![0u8; 32];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let descs = [d(30, 2, true), d(1000, 2, true)];
        let mut w = Writer::new(&descs);
        assert_eq!(
            w.write(&mem, &[1, 2, 3, 4]),
            Err(ChainIoError::Memory(MemError::OutOfRange {
                gpa: 1000,
                len: 2
            }))
        );
        assert_eq!(w.written_prefix(), 2);
    }
}
