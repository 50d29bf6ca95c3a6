//! Decoding of the data-abort syndrome (Arm ARM D19.2.37 ESR_EL2, ISS encoding for a data abort
//! from a lower exception level), trusting a field only once it is known valid.

use crate::types::Width;

/// What Xen already did with the faulting instruction (`mmio_info_t.dabt_instr.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenDecode {
    /// The syndrome is all there is (ISV set, or nothing decoded).
    Syndrome,
    /// ISV was clear and Xen decoded a post-indexed `LDR`/`STR` into the dabt fields.
    PostIndexed {
        /// Base register written back after the access.
        rn: u8,
        /// Signed 9-bit immediate added to the base.
        imm9: i16,
    },
    /// A cache-maintenance instruction on the address (`CM` set).
    CacheMaintenance,
}

/// Why a syndrome cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyndromeError {
    /// The exception class is not "data abort from a lower exception level".
    NotDataAbort,
    /// ISV is clear and Xen did not decode the instruction.
    InvalidSyndrome,
    /// The post-index immediate does not fit in 9 signed bits.
    BadPostIndex,
}

/// A decoded guest load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Width of the access.
    pub width: Width,
    /// Store (true) or load.
    pub write: bool,
    /// Transfer register `Xt`/`Wt`; 31 is XZR.
    pub reg: u8,
    /// Load: sign-extend the value (`LDRSB`/`LDRSH`/`LDRSW`).
    pub sign_extend: bool,
    /// Load: the destination is a 64-bit `X` register.
    pub sixty_four: bool,
    /// Base write-back Xen must perform after completing the access.
    pub post_index: Option<(u8, i16)>,
}

/// Register number meaning XZR in a load/store's `Rt`.
pub const XZR: u8 = 31;

/// What the trapped instruction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A load or store to emulate.
    Access(Access),
    /// Cache maintenance by address: nothing to emulate.
    CacheMaintenance,
}

const EC_SHIFT: u32 = 26;
const EC_DATA_ABORT_LOWER_EL: u32 = 0x24;
const ISV: u32 = 1 << 24;
const SAS_SHIFT: u32 = 22;
const SSE: u32 = 1 << 21;
const SRT_SHIFT: u32 = 16;
const SF: u32 = 1 << 15;
const WNR: u32 = 1 << 6;

/// Decodes a data abort.
///
/// `hsr` is ESR_EL2 as taken; `xen_dabt` is Xen's `info->dabt` after its instruction decoder ran
/// (same bit layout, fields rewritten for a decoded instruction); `xen` says what Xen decoded.
pub fn decode(hsr: u32, xen_dabt: u32, xen: XenDecode) -> Result<Decoded, SyndromeError> {
    if hsr >> EC_SHIFT != EC_DATA_ABORT_LOWER_EL {
        return Err(SyndromeError::NotDataAbort);
    }
    if xen == XenDecode::CacheMaintenance {
        return Ok(Decoded::CacheMaintenance);
    }
    let (iss, post_index) = if hsr & ISV != 0 {
        (hsr, None)
    } else if let XenDecode::PostIndexed { rn, imm9 } = xen {
        if !(-256..=255).contains(&imm9) || rn > 31 {
            return Err(SyndromeError::BadPostIndex);
        }
        (xen_dabt, Some((rn, imm9)))
    } else {
        return Err(SyndromeError::InvalidSyndrome);
    };
    let width = match Width::from_log2((iss >> SAS_SHIFT) & 3) {
        Some(w) => w,
        None => return Err(SyndromeError::InvalidSyndrome),
    };
    // Xen's post-index decoder only knows LDR/STR (zero-extending) and leaves SF clear: the
    // destination is an X register exactly when the access is 64 bits wide.
    let sixty_four = if post_index.is_some() {
        width == Width::Double
    } else {
        iss & SF != 0
    };
    Ok(Decoded::Access(Access {
        width,
        write: iss & WNR != 0,
        reg: ((iss >> SRT_SHIFT) & 0x1f) as u8,
        sign_extend: iss & SSE != 0,
        sixty_four,
        post_index,
    }))
}

impl Access {
    /// Returns the value a store puts on the bus, from the source register's content.
    pub fn store_value(&self, reg_value: u64) -> u64 {
        if self.reg == XZR {
            0
        } else {
            reg_value & self.width.mask()
        }
    }

    /// Returns the register value a load produces from the device's answer, which is masked
    /// again because the backend is not trusted to respect the width.
    pub fn load_value(&self, data: u64) -> u64 {
        let value = data & self.width.mask();
        let value = if self.sign_extend {
            self.width.sign_extend(value)
        } else {
            value
        };
        if self.sixty_four {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dabt(isv: bool, sas: u32, sse: bool, srt: u32, sf: bool, ar: bool, wnr: bool) -> u32 {
        (EC_DATA_ABORT_LOWER_EL << EC_SHIFT)
            | (1 << 25)
            | if isv { ISV } else { 0 }
            | (sas << SAS_SHIFT)
            | if sse { SSE } else { 0 }
            | (srt << SRT_SHIFT)
            | if sf { SF } else { 0 }
            | if ar { 1 << 14 } else { 0 }
            | if wnr { WNR } else { 0 }
            | 0x07 // DFSC: translation fault, level 3
    }

    fn access(hsr: u32) -> Access {
        match decode(hsr, 0, XenDecode::Syndrome) {
            Ok(Decoded::Access(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_every_width_and_direction() {
        for (sas, width) in [
            (0, Width::Byte),
            (1, Width::Half),
            (2, Width::Word),
            (3, Width::Double),
        ] {
            for wnr in [false, true] {
                let a = access(dabt(true, sas, false, 5, sas == 3, false, wnr));
                assert_eq!((a.width, a.write, a.reg), (width, wnr, 5));
                assert_eq!(a.post_index, None);
            }
        }
    }

    #[test]
    fn sign_extends_loads_into_w_and_x_registers() {
        // LDRSB x1: 0x80 -> all ones above bit 7.
        let a = access(dabt(true, 0, true, 1, true, false, false));
        assert_eq!(a.load_value(0x80), 0xffff_ffff_ffff_ff80);
        // LDRSB w1: sign-extended to 32 bits, upper half zero.
        let a = access(dabt(true, 0, true, 1, false, false, false));
        assert_eq!(a.load_value(0x80), 0xffff_ff80);
        // LDRSH x1 / LDRSW x1.
        let a = access(dabt(true, 1, true, 1, true, false, false));
        assert_eq!(a.load_value(0x8001), 0xffff_ffff_ffff_8001);
        let a = access(dabt(true, 2, true, 1, true, false, false));
        assert_eq!(a.load_value(0x8000_0000), 0xffff_ffff_8000_0000);
        // LDRB w1 of a positive byte, LDR w1 of a value the backend padded with junk.
        let a = access(dabt(true, 0, false, 1, false, false, false));
        assert_eq!(a.load_value(0xdead_be7f), 0x7f);
        let a = access(dabt(true, 2, false, 1, false, false, false));
        assert_eq!(a.load_value(0xffff_ffff_1234_5678), 0x1234_5678);
        let a = access(dabt(true, 3, false, 1, true, false, false));
        assert_eq!(a.load_value(0xffff_ffff_1234_5678), 0xffff_ffff_1234_5678);
    }

    #[test]
    fn stores_are_masked_and_xzr_stores_zero() {
        let a = access(dabt(true, 1, false, 3, false, false, true));
        assert_eq!(a.store_value(0x1234_5678_9abc_def0), 0xdef0);
        let a = access(dabt(true, 2, false, XZR as u32, false, false, true));
        assert_eq!(a.store_value(0xffff_ffff), 0);
    }

    #[test]
    fn accepts_load_acquire_syndromes() {
        // Linux on Cortex-A57 reads virtio registers with LDAR (erratum 832075).
        let a = access(dabt(true, 2, false, 0, false, true, false));
        assert_eq!((a.width, a.write), (Width::Word, false));
    }

    #[test]
    fn refuses_an_invalid_syndrome_unless_xen_decoded_it() {
        let hsr = dabt(false, 0, false, 0, false, false, false);
        assert_eq!(
            decode(hsr, 0, XenDecode::Syndrome),
            Err(SyndromeError::InvalidSyndrome)
        );
        // Xen decoded `str w2, [x0], #4`: its dabt carries size 2, reg 2, write.
        let xen_dabt = dabt(true, 2, false, 2, false, false, true);
        let d = decode(hsr, xen_dabt, XenDecode::PostIndexed { rn: 0, imm9: 4 });
        let Ok(Decoded::Access(a)) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (a.width, a.write, a.reg, a.post_index),
            (Width::Word, true, 2, Some((0, 4)))
        );
        assert!(!a.sixty_four);
        let xen_dabt = dabt(true, 3, false, 2, false, false, false);
        let d = decode(hsr, xen_dabt, XenDecode::PostIndexed { rn: 1, imm9: -8 });
        let Ok(Decoded::Access(a)) = d else {
            panic!("{d:?}")
        };
        assert!(a.sixty_four && !a.write);
        assert_eq!(
            decode(hsr, xen_dabt, XenDecode::PostIndexed { rn: 1, imm9: 256 }),
            Err(SyndromeError::BadPostIndex)
        );
    }

    #[test]
    fn refuses_other_exception_classes_and_passes_cache_maintenance() {
        let iabt = (0x20 << EC_SHIFT) | ISV;
        assert_eq!(
            decode(iabt, 0, XenDecode::Syndrome),
            Err(SyndromeError::NotDataAbort)
        );
        let hsr = dabt(false, 0, false, 0, false, false, false) | (1 << 8);
        assert_eq!(
            decode(hsr, 0, XenDecode::CacheMaintenance),
            Ok(Decoded::CacheMaintenance)
        );
    }
}
