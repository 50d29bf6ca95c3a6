//! Feature bits shared by all device types (virtio 1.2 §6 "Reserved Feature Bits") and the
//! feature negotiation rule the transport enforces at FEATURES_OK (§2.2, §3.1.1).

/// `VIRTIO_F_INDIRECT_DESC` (bit 28): the driver may use indirect descriptor tables (§2.7.5.3).
pub const INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_F_EVENT_IDX` (bit 29): `used_event`/`avail_event` notification suppression. Not
/// offered by this implementation.
pub const EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1` (bit 32): compliance with virtio 1.x; required of every driver here.
pub const VERSION_1: u64 = 1 << 32;

/// Why a driver's feature set was refused at FEATURES_OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// The driver did not accept `VIRTIO_F_VERSION_1`; this device has no legacy interface.
    NoVersion1,
    /// The driver accepted bits the device did not offer (the value holds them).
    NotOffered(u64),
    /// The driver wrote non-zero bits to a feature word above 63, which no device offers.
    BeyondBit63,
}

/// Checks the driver's accepted features against what the device offered.
pub fn check(offered: u64, accepted: u64, beyond_63: bool) -> Result<(), FeatureError> {
    if beyond_63 {
        return Err(FeatureError::BeyondBit63);
    }
    let extra = accepted & !offered;
    if extra != 0 {
        return Err(FeatureError::NotOffered(extra));
    }
    if accepted & VERSION_1 == 0 {
        return Err(FeatureError::NoVersion1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_rule() {
        let offered = VERSION_1 | INDIRECT_DESC | (1 << 9);
        assert_eq!(check(offered, VERSION_1, false), Ok(()));
        assert_eq!(check(offered, offered, false), Ok(()));
        assert_eq!(check(offered, 1 << 9, false), Err(FeatureError::NoVersion1));
        assert_eq!(
            check(offered, VERSION_1 | EVENT_IDX, false),
            Err(FeatureError::NotOffered(EVENT_IDX))
        );
        assert_eq!(
            check(offered, VERSION_1, true),
            Err(FeatureError::BeyondBit63)
        );
    }
}
