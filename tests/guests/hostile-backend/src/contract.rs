//! What the hostile backends and their victim frontend agree on (shared as source with
//! `hostile-frontend`'s victim mode): the value a backend answers each register read with, the
//! value the victim stores at each register, and the control register through which the
//! attacking backend tells the victim to pause (while it storms the doorbell, so that no
//! request of the victim waits on it long enough to time out on a busy host) and that it has
//! reached its last attack.
//!
//! Answers are 64 bits whatever the access width, with garbage above any width: what the victim
//! gets is what Xen kept of them (masked to the width, sign- or zero-extended as the instruction
//! asks). No width of an answer is all ones, so an answer is never mistaken for the all-ones of
//! a vanished device.

/// Offsets the victim's accesses rotate through: every 8-byte-aligned offset below
/// [`CONTROL`] (so accesses of every width are aligned).
pub const OFFSETS: u64 = 0xf8;
/// The control register: the victim reads it (32 bits) after every round.
pub const CONTROL: u64 = 0xf8;
/// What a control read returns once the attacking backend starts its last attack (it then
/// takes its ioreq page out of its physmap and never answers again).
pub const DONE: u64 = 0x600d_d0e5;
/// A control read returning `PAUSE | ms` (ms < 0x10000) asks the victim to make no access for
/// `ms` milliseconds.
pub const PAUSE: u64 = 0x9a05_0000;

/// The backend's answer to a read at register offset `off`: bytes 0, 1 and 3 have their top
/// bit set (negative for a sign-extending load of 1, 2 or 4 bytes), byte 2 carries the offset,
/// the upper half is garbage no load of 4 bytes or less may show.
pub fn answer(off: u64) -> u64 {
    0xa55a_5aa5_8000_c381 | ((off & 0x7f) << 16)
}

/// The register value the victim stores at offset `off` (whole register; a store of fewer
/// bytes must carry only its low bytes to the backend).
pub fn stored(off: u64) -> u64 {
    0xfeed_f00d_0bad_c0de ^ (off << 40) ^ off
}
