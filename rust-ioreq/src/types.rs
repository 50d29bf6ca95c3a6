//! Typed units of the component: guest addresses, domain/vCPU ids, SPIs and access widths.

use core::fmt;

/// A guest-physical address (an IPA in Arm terms) in some domain's stage-2 space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

impl Gpa {
    /// Returns `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Gpa> {
        self.0.checked_add(bytes).map(Gpa)
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A half-open guest-physical range `[start, end)`; never empty, never wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpaRange {
    start: Gpa,
    end: Gpa,
}

impl GpaRange {
    /// Builds `[start, start + size)`, refusing an empty or wrapping range.
    pub fn new(start: Gpa, size: u64) -> Option<GpaRange> {
        let end = start.checked_add(size)?;
        (size > 0).then_some(GpaRange { start, end })
    }

    /// Returns the first address.
    pub fn start(&self) -> Gpa {
        self.start
    }

    /// Returns the size in bytes.
    pub fn size(&self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Tells whether `gpa` lies inside.
    pub fn contains(&self, gpa: Gpa) -> bool {
        self.start <= gpa && gpa < self.end
    }

    /// Tells whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &GpaRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for GpaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

/// A Xen domain id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(pub u16);

/// A vCPU id within its domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u32);

/// A shared peripheral interrupt number as the GIC numbers it (32..=1019).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spi(pub u32);

impl Spi {
    /// First SPI INTID.
    pub const FIRST: u32 = 32;
    /// Last SPI INTID the GIC architecture allows.
    pub const LAST: u32 = 1019;

    /// Returns the SPI, if `intid` is in the SPI range.
    pub fn new(intid: u32) -> Option<Spi> {
        (Self::FIRST..=Self::LAST)
            .contains(&intid)
            .then_some(Spi(intid))
    }
}

/// Width of a single load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl Width {
    /// Decodes the `SAS`-style log2 size (0..=3).
    pub fn from_log2(log2: u32) -> Option<Width> {
        match log2 {
            0 => Some(Width::Byte),
            1 => Some(Width::Half),
            2 => Some(Width::Word),
            3 => Some(Width::Double),
            _ => None,
        }
    }

    /// Returns log2 of the size in bytes.
    pub fn log2(self) -> u32 {
        match self {
            Width::Byte => 0,
            Width::Half => 1,
            Width::Word => 2,
            Width::Double => 3,
        }
    }

    /// Returns the size in bytes.
    pub fn bytes(self) -> u32 {
        1 << self.log2()
    }

    /// Returns the mask of the low `bytes() * 8` bits.
    pub fn mask(self) -> u64 {
        match self {
            Width::Double => u64::MAX,
            w => (1u64 << (w.bytes() * 8)) - 1,
        }
    }

    /// Sign-extends the low `bytes() * 8` bits of `value` to 64 bits.
    pub fn sign_extend(self, value: u64) -> u64 {
        let shift = 64 - self.bytes() * 8;
        (((value << shift) as i64) >> shift) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_mask_and_sign_extend() {
        assert_eq!(Width::Byte.mask(), 0xff);
        assert_eq!(Width::Half.mask(), 0xffff);
        assert_eq!(Width::Word.mask(), 0xffff_ffff);
        assert_eq!(Width::Double.mask(), u64::MAX);
        assert_eq!(Width::Byte.sign_extend(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(Width::Byte.sign_extend(0x7f), 0x7f);
        assert_eq!(Width::Half.sign_extend(0x8000), 0xffff_ffff_ffff_8000);
        assert_eq!(Width::Word.sign_extend(0x8000_0000), 0xffff_ffff_8000_0000);
        assert_eq!(
            Width::Double.sign_extend(0x8000_0000_0000_0000),
            0x8000_0000_0000_0000
        );
        assert_eq!(Width::from_log2(4), None);
    }

    #[test]
    fn ranges_refuse_empty_and_wrapping_and_detect_overlap() {
        assert_eq!(GpaRange::new(Gpa(0x1000), 0), None);
        assert_eq!(GpaRange::new(Gpa(u64::MAX), 2), None);
        let a = GpaRange::new(Gpa(0x1000), 0x200).unwrap();
        let b = GpaRange::new(Gpa(0x1200), 0x200).unwrap();
        let c = GpaRange::new(Gpa(0x11ff), 0x2).unwrap();
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        assert!(a.overlaps(&c) && c.overlaps(&b));
        assert!(a.contains(Gpa(0x11ff)) && !a.contains(Gpa(0x1200)));
    }

    #[test]
    fn spi_range() {
        assert_eq!(Spi::new(31), None);
        assert_eq!(Spi::new(32), Some(Spi(32)));
        assert_eq!(Spi::new(1020), None);
    }
}
