//! Naming what happened to an access, for the detail of a check line: a value read, or which
//! abort was taken and who took it.
//!
//! Xen reports an access it refuses to a domU as a data abort from the current EL with an ISS
//! of 0 (xen/arch/arm/traps.c `inject_abt64_exception`: `.iss = 0`, only EC and IL set), so
//! ESR_EL1 is `0x96000000` (`0x94000000` for a 16-bit instruction, never seen here). Anything
//! else is this vCPU's own exception, e.g. an alignment fault (DFSC 0x21) that its stage 1
//! took before the access could reach Xen's stage 2.

use core::fmt;

use guest_common::exception::{Fault, EC_DATA_ABORT_SAME_EL};

/// ESR_ELx.ISS: bits 24:0.
const ISS_MASK: u64 = 0x1ff_ffff;
/// Data fault status code of an alignment fault.
const DFSC_ALIGNMENT: u64 = 0x21;

/// Who took an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taker {
    /// Xen injected a data abort (EC 0x25, ISS 0).
    Xen,
    /// The vCPU's own alignment check (EC 0x25, DFSC 0x21): Xen never saw the access.
    Alignment,
    /// Anything else.
    Other,
}

/// Classifies `fault`.
pub fn taker(fault: &Fault) -> Taker {
    let iss = fault.esr & ISS_MASK;
    match (fault.ec(), iss) {
        (EC_DATA_ABORT_SAME_EL, 0) => Taker::Xen,
        (EC_DATA_ABORT_SAME_EL, iss) if iss & 0x3f == DFSC_ALIGNMENT => Taker::Alignment,
        _ => Taker::Other,
    }
}

/// Tells whether `r` is a data abort Xen injected for an access at `addr` (FAR = `addr`).
pub fn xen_abort_at<T>(r: &Result<T, Fault>, addr: usize) -> bool {
    matches!(r, Err(f) if taker(f) == Taker::Xen && f.far == addr as u64)
}

/// Tells whether `r` is this vCPU's own alignment fault at `addr`.
pub fn alignment_at<T>(r: &Result<T, Fault>, addr: usize) -> bool {
    matches!(r, Err(f) if taker(f) == Taker::Alignment && f.far == addr as u64)
}

/// Tells whether `r` never reached a device at `addr`: Xen refused it, or the vCPU's own
/// alignment check stopped it first (which of the two depends on the memory type the vCPU
/// uses for the region and on how faithfully the CPU, here QEMU TCG, checks alignment).
pub fn stopped_at<T>(r: &Result<T, Fault>, addr: usize) -> bool {
    xen_abort_at(r, addr) || alignment_at(r, addr)
}

/// Renders an outcome: the value (`0x..`) or the abort.
pub struct Shown<'a, T>(pub &'a Result<T, Fault>);

impl<T: fmt::LowerHex> fmt::Display for Shown<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "{v:#x}"),
            Err(fault) => Abort(fault).fmt(f),
        }
    }
}

/// Renders an abort by who took it: `Xen abort@<FAR>` (ESR_EL1 0x96000000), `align@<FAR>`,
/// or the raw syndrome.
pub struct Abort<'a>(pub &'a Fault);

impl fmt::Display for Abort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (esr, far) = (self.0.esr, self.0.far);
        match taker(self.0) {
            Taker::Xen => write!(f, "Xen abort@{far:#x}"),
            Taker::Alignment => write!(f, "align@{far:#x}"),
            Taker::Other => write!(f, "exception ESR {esr:#x} FAR {far:#x}"),
        }
    }
}

/// Renders an outcome whose value does not matter: `ok` or the abort.
pub struct Done<'a, T>(pub &'a Result<T, Fault>);

impl<T> fmt::Display for Done<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(_) => f.write_str("ok"),
            Err(fault) => Abort(fault).fmt(f),
        }
    }
}
