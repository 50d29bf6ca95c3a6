//! Builds data-abort syndromes (Arm ARM D19.2.37, ESR_EL2 ISS for a data abort from a lower
//! exception level) and frontend traps for the engine tests.

use rust_ioreq::engine::Trap;
use rust_ioreq::syndrome::XenDecode;
use rust_ioreq::types::{DomId, Gpa, VcpuId};

/// ESR_EL2.EC of a data abort from a lower exception level.
pub const EC_DABT_LOWER: u32 = 0x24;

/// Fields of an ISS with ISV set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Iss {
    /// log2 of the access size.
    pub sas: u32,
    /// Sign-extending load.
    pub sse: bool,
    /// Transfer register.
    pub srt: u32,
    /// 64-bit destination register.
    pub sf: bool,
    /// Acquire/release.
    pub ar: bool,
    /// Store.
    pub wnr: bool,
}

/// Encodes ESR_EL2 for a data abort; `isv` says whether the ISS fields are valid.
pub fn hsr(isv: bool, iss: Iss) -> u32 {
    (EC_DABT_LOWER << 26)
        | (1 << 25) // IL: 32-bit instruction
        | (u32::from(isv) << 24)
        | (iss.sas << 22)
        | (u32::from(iss.sse) << 21)
        | (iss.srt << 16)
        | (u32::from(iss.sf) << 15)
        | (u32::from(iss.ar) << 14)
        | (u32::from(iss.wnr) << 6)
        | 0x07 // DFSC: translation fault, level 3
}

/// `LDR{B,H,,}` of `1 << sas` bytes into `x<srt>` (`sf`) or `w<srt>`.
pub fn load(sas: u32, srt: u32, sf: bool) -> u32 {
    hsr(
        true,
        Iss {
            sas,
            srt,
            sf,
            ..Iss::default()
        },
    )
}

/// `LDRS{B,H,W}` of `1 << sas` bytes into `x<srt>` (`sf`) or `w<srt>`.
pub fn load_signed(sas: u32, srt: u32, sf: bool) -> u32 {
    hsr(
        true,
        Iss {
            sas,
            srt,
            sf,
            sse: true,
            ..Iss::default()
        },
    )
}

/// `STR{B,H,,}` of `1 << sas` bytes from `x<srt>`/`w<srt>`.
pub fn store(sas: u32, srt: u32) -> u32 {
    hsr(
        true,
        Iss {
            sas,
            srt,
            sf: sas == 3,
            wnr: true,
            ..Iss::default()
        },
    )
}

/// A trap of `domid`'s vCPU `vcpu` at `gpa` with a syndrome Xen did not need to decode.
pub fn trap(domid: u16, vcpu: u32, gpa: u64, hsr: u32) -> Trap {
    Trap {
        domid: DomId(domid),
        vcpu: VcpuId(vcpu),
        gpa: Gpa(gpa),
        hsr,
        xen_dabt: hsr,
        xen_decode: XenDecode::Syndrome,
    }
}
