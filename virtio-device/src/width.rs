//! Width of a register access (virtio 1.2 §4.2.2.2: 32-bit registers, 8/16/32-bit config space
//! fields); the four sizes an Arm load/store or a Xen `ioreq_t` can have.

use core::fmt;

/// The size of one register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    /// 8 bits.
    U8,
    /// 16 bits.
    U16,
    /// 32 bits.
    U32,
    /// 64 bits.
    U64,
}

impl Width {
    /// Returns the width for an access of `bytes` bytes (1, 2, 4 or 8), or `None`.
    pub const fn from_bytes(bytes: u64) -> Option<Width> {
        match bytes {
            1 => Some(Width::U8),
            2 => Some(Width::U16),
            4 => Some(Width::U32),
            8 => Some(Width::U64),
            _ => None,
        }
    }

    /// Returns the size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
            Width::U64 => 8,
        }
    }

    /// Returns the mask of the value bits (`0xff` for [`Width::U8`]).
    pub const fn mask(self) -> u64 {
        match self {
            Width::U8 => 0xff,
            Width::U16 => 0xffff,
            Width::U32 => 0xffff_ffff,
            Width::U64 => u64::MAX,
        }
    }

    /// Returns whether `offset` is a multiple of the access size.
    pub const fn is_aligned(self, offset: u64) -> bool {
        offset % self.bytes() == 0
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bytes() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_round_trip() {
        for n in [1, 2, 4, 8] {
            let w = Width::from_bytes(n).unwrap();
            assert_eq!(w.bytes(), n);
            assert_eq!(w.mask().count_ones() as u64, n * 8);
        }
        assert_eq!(Width::from_bytes(3), None);
        assert_eq!(Width::from_bytes(0), None);
        assert!(Width::U32.is_aligned(0x104));
        assert!(!Width::U32.is_aligned(0x102));
        assert!(Width::U8.is_aligned(0x103));
    }
}
