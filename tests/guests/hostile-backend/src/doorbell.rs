//! The doorbell page (docs/backend-abi.md "Doorbell registers"), every access made through
//! guest-common's expected-fault facility: a hostile backend wants to see the data abort Xen
//! injects for each refused access, with its FAR.

use guest_common::exception::{self, Fault};

/// Register offsets.
pub const MAGIC: usize = 0x00;
pub const VERSION: usize = 0x04;
pub const FEATURES: usize = 0x08;
pub const COMPLETE: usize = 0x10;
pub const RAISE_IRQ: usize = 0x14;
pub const ONLINE: usize = 0x18;
/// "rioq".
pub const MAGIC_VALUE: u32 = 0x716f_6972;

/// Returns the `COMPLETE` value of slot `vcpu` of frontend `k`.
pub fn complete_value(k: u32, vcpu: u32) -> u32 {
    (k << 16) | vcpu
}

/// The doorbell page of this backend.
#[derive(Clone, Copy, Debug)]
pub struct Doorbell {
    base: usize,
}

impl Doorbell {
    /// Returns the doorbell at `base`.
    ///
    /// # Safety
    /// `base` must be the doorbell page Xen emulates for this domain.
    pub unsafe fn new(base: u64) -> Self {
        Doorbell {
            base: base as usize,
        }
    }

    /// Returns the address of register offset `off`.
    pub fn at(&self, off: usize) -> usize {
        self.base + off
    }

    /// 32-bit read of `off`.
    pub fn read(&self, off: usize) -> Result<u32, Fault> {
        // SAFETY: the doorbell is Xen's emulation: reads have no side effects, and a refused
        // one is caught.
        unsafe { exception::try_read_u32(self.at(off)) }
    }

    /// 32-bit write of `value` at `off`.
    pub fn write(&self, off: usize, value: u32) -> Result<(), Fault> {
        // SAFETY: the doorbell is Xen's emulation; a write's effects are what the caller tests,
        // and a refused one is caught.
        unsafe { exception::try_write_u32(self.at(off), value) }
    }

    /// `COMPLETE` for slot `vcpu` of frontend `k`.
    pub fn complete(&self, k: u32, vcpu: u32) -> Result<(), Fault> {
        self.write(COMPLETE, complete_value(k, vcpu))
    }
}

/// Tells whether `r` is the data abort Xen injects (ESR_EL1 0x96000000: EC 0x25, ISS 0) for an
/// access at `addr`.
pub fn refused_at<T>(r: &Result<T, Fault>, addr: usize) -> bool {
    matches!(r, Err(f) if f.is_data_abort() && f.esr & 0x1ff_ffff == 0 && f.far == addr as u64)
}
