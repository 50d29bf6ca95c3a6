//! The device status field and its valid transitions (virtio 1.2 §2.1 "Device Status Field",
//! §3.1.1 "Driver Requirements: Device Initialization", §4.2.2 `Status` register).
//!
//! The driver advances through the initialisation stages by setting bits, never clearing them;
//! writing 0 resets the device. The transitions accepted here, as a table over the *progress*
//! bits (ACKNOWLEDGE=A, DRIVER=D, FEATURES_OK=F, DRIVER_OK=O):
//!
//! | current stage | may be written                       |
//! |---------------|--------------------------------------|
//! | (none)        | 0, A, AD, ADF, ADFO                   |
//! | A             | 0, A, AD, ADF, ADFO                   |
//! | AD            | 0, AD, ADF, ADFO                      |
//! | ADF           | 0, ADF, ADFO                          |
//! | ADFO          | 0, ADFO                               |
//!
//! Several stages may be taken in one write (virtio-drivers writes A|D right after the reset).
//! In addition: `FAILED` may be added at any time, after which only a reset is accepted;
//! `DEVICE_NEEDS_RESET` is the device's to set and may only be written back unchanged; unknown
//! bits are refused. F is only kept if the negotiated features pass
//! [`features::check`](crate::features::check) — the transport drops F (and O) otherwise, which
//! the driver sees when it reads the status back (§3.1.1 step 6).

use core::fmt;

/// The device status bits (§2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStatus(pub u32);

impl DeviceStatus {
    /// The guest OS has found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest OS knows how to drive the device.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device has experienced an error from which it cannot recover.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver has given up on the device.
    pub const FAILED: u32 = 128;

    /// Every bit defined by the specification.
    pub const KNOWN: u32 = Self::ACKNOWLEDGE
        | Self::DRIVER
        | Self::DRIVER_OK
        | Self::FEATURES_OK
        | Self::DEVICE_NEEDS_RESET
        | Self::FAILED;
    /// The bits that record the driver's progress through initialisation.
    pub const PROGRESS: u32 =
        Self::ACKNOWLEDGE | Self::DRIVER | Self::FEATURES_OK | Self::DRIVER_OK;

    /// The valid values of the progress bits, in order.
    const STAGES: [u32; 5] = [
        0,
        Self::ACKNOWLEDGE,
        Self::ACKNOWLEDGE | Self::DRIVER,
        Self::ACKNOWLEDGE | Self::DRIVER | Self::FEATURES_OK,
        Self::ACKNOWLEDGE | Self::DRIVER | Self::FEATURES_OK | Self::DRIVER_OK,
    ];

    /// Returns whether all of `bits` are set.
    pub const fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    /// Returns whether the driver has set DRIVER_OK (and the device may use the queues).
    pub const fn driver_ok(self) -> bool {
        self.has(Self::DRIVER_OK)
    }

    /// Returns the index of the progress bits in [`Self::STAGES`], or `None` if they are out of
    /// order (for example DRIVER without ACKNOWLEDGE).
    fn stage(self) -> Option<usize> {
        let progress = self.0 & Self::PROGRESS;
        Self::STAGES.iter().position(|&s| s == progress)
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Why a write to the status register was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusError {
    /// Bits the specification does not define.
    UnknownBits,
    /// A bit that is set would be cleared (only a reset, writing 0, clears bits).
    ClearsBits,
    /// The progress bits are not one of the stages (a stage was skipped in the middle).
    OutOfOrder,
    /// DEVICE_NEEDS_RESET is set only by the device.
    SetsNeedsReset,
    /// The driver set FAILED before; only a reset is accepted.
    AfterFailed,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusError::UnknownBits => "unknown bits",
            StatusError::ClearsBits => "clears bits without a reset",
            StatusError::OutOfOrder => "initialisation steps out of order",
            StatusError::SetsNeedsReset => "DEVICE_NEEDS_RESET is device-owned",
            StatusError::AfterFailed => "driver already set FAILED",
        })
    }
}

/// Checks the driver's write of `new` over the current status `old` (a write of 0, the reset, is
/// handled by the caller before this). Returns the status to store before feature checking.
pub fn transition(old: DeviceStatus, new: u32) -> Result<DeviceStatus, StatusError> {
    let new = DeviceStatus(new);
    if new.0 & !DeviceStatus::KNOWN != 0 {
        return Err(StatusError::UnknownBits);
    }
    if old.0 & !new.0 != 0 {
        return Err(StatusError::ClearsBits);
    }
    if new.has(DeviceStatus::DEVICE_NEEDS_RESET) && !old.has(DeviceStatus::DEVICE_NEEDS_RESET) {
        return Err(StatusError::SetsNeedsReset);
    }
    if old.has(DeviceStatus::FAILED) && new.0 != old.0 {
        return Err(StatusError::AfterFailed);
    }
    // No bit is cleared, so the new stage is at or after the old one; it only has to be a stage.
    match new.stage() {
        Some(_) => Ok(new),
        None => Err(StatusError::OutOfOrder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = DeviceStatus::ACKNOWLEDGE;
    const D: u32 = DeviceStatus::DRIVER;
    const F: u32 = DeviceStatus::FEATURES_OK;
    const O: u32 = DeviceStatus::DRIVER_OK;

    #[test]
    fn table_of_transitions() {
        // Every stage may go to itself or any later stage, and nowhere else.
        for (i, &from) in DeviceStatus::STAGES.iter().enumerate() {
            for (j, &to) in DeviceStatus::STAGES.iter().enumerate() {
                if to == 0 {
                    continue; // the reset is the caller's
                }
                let got = transition(DeviceStatus(from), to);
                if j >= i {
                    assert_eq!(got, Ok(DeviceStatus(to)), "{from:#x} -> {to:#x}");
                } else {
                    assert_eq!(got, Err(StatusError::ClearsBits), "{from:#x} -> {to:#x}");
                }
            }
        }
    }

    #[test]
    fn refused_writes() {
        assert_eq!(transition(DeviceStatus(0), D), Err(StatusError::OutOfOrder));
        assert_eq!(
            transition(DeviceStatus(A), A | F),
            Err(StatusError::OutOfOrder)
        );
        assert_eq!(
            transition(DeviceStatus(A | D), A | D | O),
            Err(StatusError::OutOfOrder)
        );
        assert_eq!(
            transition(DeviceStatus(A), A | 0x10),
            Err(StatusError::UnknownBits)
        );
        assert_eq!(
            transition(DeviceStatus(A), A | DeviceStatus::DEVICE_NEEDS_RESET),
            Err(StatusError::SetsNeedsReset)
        );
        let failed = DeviceStatus(A | DeviceStatus::FAILED);
        assert_eq!(
            transition(failed, A | D | DeviceStatus::FAILED),
            Err(StatusError::AfterFailed)
        );
        assert_eq!(transition(failed, failed.0), Ok(failed));
    }

    #[test]
    fn failed_and_needs_reset_written_back() {
        let all = A | D | F | O;
        assert_eq!(
            transition(DeviceStatus(all), all | DeviceStatus::FAILED),
            Ok(DeviceStatus(all | DeviceStatus::FAILED))
        );
        let nr = all | DeviceStatus::DEVICE_NEEDS_RESET;
        assert_eq!(transition(DeviceStatus(nr), nr), Ok(DeviceStatus(nr)));
        assert_eq!(
            transition(DeviceStatus(nr), all),
            Err(StatusError::ClearsBits)
        );
    }
}
