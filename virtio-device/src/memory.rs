//! Guest memory as the device sees it: guest-physical addresses of the driver's address space
//! (virtio 1.2 §2.7 "the driver's physical memory"), reached only through the [`GuestMemory`]
//! trait so that the same device code runs over a RAM window in a backend domain and over a
//! `Vec` in host tests.
//!
//! The memory belongs to the driver and is hostile: it can change between any two accesses.
//! Everything the device needs is therefore *copied out* with [`GuestMemory::read`] and never
//! referenced in place.

use core::cell::Cell;
use core::fmt;

/// A guest-physical address in the driver's (frontend's) address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

impl Gpa {
    /// Returns the raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Returns `self + offset`, or `None` if that wraps around the 64-bit address space.
    pub const fn checked_add(self, offset: u64) -> Option<Gpa> {
        match self.0.checked_add(offset) {
            Some(a) => Some(Gpa(a)),
            None => None,
        }
    }

    /// Returns `self + offset`, or [`MemError::Overflow`] naming `self` and `offset`.
    pub fn offset(self, offset: u64) -> Result<Gpa, MemError> {
        self.checked_add(offset).ok_or(MemError::Overflow {
            gpa: self.0,
            len: offset,
        })
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Why a guest memory access failed. Small and `Copy` so it travels inside other errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `[gpa, gpa + len)` is not entirely inside the driver's memory.
    OutOfRange {
        /// First guest-physical address of the access.
        gpa: u64,
        /// Length of the access in bytes.
        len: u64,
    },
    /// `gpa + len` does not fit in 64 bits.
    Overflow {
        /// First guest-physical address of the access.
        gpa: u64,
        /// Length of the access in bytes.
        len: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemError::OutOfRange { gpa, len } => {
                write!(f, "{len} bytes at {gpa:#x} are outside guest memory")
            }
            MemError::Overflow { gpa, len } => {
                write!(f, "{len} bytes at {gpa:#x} wrap the address space")
            }
        }
    }
}

/// The driver's memory, as reachable by the device.
///
/// Implementations must bounds-check every access in full (`[gpa, gpa + len)`, with overflow
/// checked) and fail without side effects on a range they cannot serve; they must never panic on
/// a guest-supplied address. The device calls [`barrier`](GuestMemory::barrier) where the virtio
/// ring protocol needs ordering between its accesses and the driver's (virtio 1.2 §2.7.13.3.1:
/// after reading `avail.idx` and before writing `used.idx`).
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at `gpa` into `buf`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copies `data` to `gpa`.
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError>;

    /// Orders every access before the call against every access after it, as seen by the driver.
    /// The default does nothing, which is right for memory that no other CPU touches.
    fn barrier(&self) {}
}

/// Reads a little-endian `u16` at `gpa`.
pub fn read_u16(mem: &dyn GuestMemory, gpa: Gpa) -> Result<u16, MemError> {
    let mut b = [0; 2];
    mem.read(gpa, &mut b)?;
    Ok(u16::from_le_bytes(b))
}

/// Reads a little-endian `u32` at `gpa`.
pub fn read_u32(mem: &dyn GuestMemory, gpa: Gpa) -> Result<u32, MemError> {
    let mut b = [0; 4];
    mem.read(gpa, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Reads a little-endian `u64` at `gpa`.
pub fn read_u64(mem: &dyn GuestMemory, gpa: Gpa) -> Result<u64, MemError> {
    let mut b = [0; 8];
    mem.read(gpa, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes `value` as a little-endian `u16` at `gpa`.
pub fn write_u16(mem: &dyn GuestMemory, gpa: Gpa, value: u16) -> Result<(), MemError> {
    mem.write(gpa, &value.to_le_bytes())
}

/// Writes `value` as a little-endian `u32` at `gpa`.
pub fn write_u32(mem: &dyn GuestMemory, gpa: Gpa, value: u32) -> Result<(), MemError> {
    mem.write(gpa, &value.to_le_bytes())
}

/// Guest memory backed by a byte slice that starts at guest-physical address `base`: for host
/// tests and for any environment where the driver's memory is an ordinary slice.
///
/// The bytes are `Cell<u8>` so that a test can keep looking at (and changing) the memory while a
/// device holds a shared reference to it, just as a driver would.
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    base: Gpa,
    cells: &'a [Cell<u8>],
}

impl<'a> SliceMemory<'a> {
    /// Wraps `bytes`, placing its first byte at guest-physical address `base`.
    pub fn new(base: Gpa, bytes: &'a mut [u8]) -> Self {
        Self::from_cells(base, Cell::from_mut(bytes).as_slice_of_cells())
    }

    /// Wraps `cells`, placing the first one at guest-physical address `base`.
    pub fn from_cells(base: Gpa, cells: &'a [Cell<u8>]) -> Self {
        Self { base, cells }
    }

    /// Returns the guest-physical address of the first byte.
    pub fn base(&self) -> Gpa {
        self.base
    }

    /// Returns the size in bytes.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Returns whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Returns the cells for `[gpa, gpa + len)`, or why that range is not all inside.
    fn range(&self, gpa: Gpa, len: usize) -> Result<&'a [Cell<u8>], MemError> {
        let len64 = u64::try_from(len).map_err(|_| MemError::Overflow {
            gpa: gpa.0,
            len: u64::MAX,
        })?;
        let out = MemError::OutOfRange {
            gpa: gpa.0,
            len: len64,
        };
        gpa.0.checked_add(len64).ok_or(MemError::Overflow {
            gpa: gpa.0,
            len: len64,
        })?;
        let start = gpa.0.checked_sub(self.base.0).ok_or(out)?;
        let start = usize::try_from(start).map_err(|_| out)?;
        let end = start.checked_add(len).ok_or(out)?;
        self.cells.get(start..end).ok_or(out)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let src = self.range(gpa, buf.len())?;
        for (d, s) in buf.iter_mut().zip(src) {
            *d = s.get();
        }
        Ok(())
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let dst = self.range(gpa, data.len())?;
        for (d, s) in dst.iter().zip(data) {
            d.set(*s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_memory_reads_and_writes_inside() {
        let mut bytes = [0u8; 16];
        let mem = SliceMemory::new(Gpa(0x1000), &mut bytes);
        write_u32(&mem, Gpa(0x1004), 0xdead_beef).unwrap();
        assert_eq!(read_u32(&mem, Gpa(0x1004)).unwrap(), 0xdead_beef);
        assert_eq!(read_u16(&mem, Gpa(0x1004)).unwrap(), 0xbeef);
        mem.write(Gpa(0x100f), &[7]).unwrap();
        assert_eq!(read_u64(&mem, Gpa(0x1008)).unwrap(), 7 << 56);
    }

    #[test]
    fn slice_memory_refuses_outside_and_overflow() {
        let mut bytes = [0u8; 16];
        let mem = SliceMemory::new(Gpa(0x1000), &mut bytes);
        let mut b = [0u8; 4];
        assert_eq!(
            mem.read(Gpa(0xffe), &mut b),
            Err(MemError::OutOfRange { gpa: 0xffe, len: 4 })
        );
        assert_eq!(
            mem.read(Gpa(0x100e), &mut b),
            Err(MemError::OutOfRange {
                gpa: 0x100e,
                len: 4
            })
        );
        assert_eq!(
            mem.write(Gpa(u64::MAX - 1), &b),
            Err(MemError::Overflow {
                gpa: u64::MAX - 1,
                len: 4
            })
        );
        // Nothing was written by the failed accesses.
        assert_eq!(read_u64(&mem, Gpa(0x1000)).unwrap(), 0);
        assert_eq!(
            Gpa(u64::MAX).offset(1),
            Err(MemError::Overflow {
                gpa: u64::MAX,
                len: 1
            })
        );
    }
}
