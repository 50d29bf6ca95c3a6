//! What the device reports about a misbehaving driver (virtio 1.2 §4.2.2.2 driver requirements,
//! §2.1 status, §2.7 rings, §5.2/§5.4 device requests): one small `Copy` [`Event`] per incident,
//! handed to a [`Logger`] the embedder implements. Nothing here panics or allocates; the device
//! ignores the offending access (reads return 0) and carries on.

use core::fmt;

use crate::chain::ChainIoError;
use crate::features::FeatureError;
use crate::queue::{QueueError, QueueSetupError};
use crate::status::StatusError;
use crate::width::Width;

/// What was wrong with a register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterFault {
    /// Not a naturally aligned access of a width the register allows.
    BadWidth,
    /// No register at this offset.
    Unknown,
    /// A write to a read-only register.
    ReadOnly,
    /// A read of a write-only register.
    WriteOnly,
    /// Beyond the device's configuration space.
    ConfigOutOfRange,
    /// A configuration field the driver may not write.
    ConfigReadOnly,
    /// A value the register does not accept.
    BadValue,
}

/// Why a `QueueNotify` did not lead to processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyFault {
    /// No queue with that index.
    NoSuchQueue,
    /// The queue is not enabled.
    NotReady,
    /// DRIVER_OK is not set (§3.1.1: the device must not use buffers before it).
    NotDriverOk,
    /// The device needs a reset.
    NeedsReset,
}

/// Why the device could not carry out one request; the request still completes, with an error
/// status where the device type has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The chain has no device-writable byte, so no status can be returned.
    NoWritable,
    /// The request header could not be read.
    Header(ChainIoError),
    /// The data length is not a multiple of the 512-byte sector.
    NotSectors {
        /// Data length in bytes.
        len: u64,
    },
    /// The request reaches beyond the end of the disk.
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Data length in bytes.
        len: u64,
    },
    /// The data buffers could not be read or written.
    Data(ChainIoError),
    /// The request type is not supported (the value is the type).
    Unsupported(u32),
    /// A write to a read-only device (refused before the disk is touched).
    ReadOnly,
    /// The disk behind the device failed (an OS error number, or 0).
    Disk(i32),
    /// The entropy source failed (an OS error number, or 0).
    Entropy(i32),
}

/// One incident, reported to the [`Logger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A register access was ignored (reads returned 0).
    Register {
        /// Offset in the register window.
        offset: u64,
        /// Access width.
        width: Width,
        /// Whether it was a write.
        write: bool,
        /// What was wrong.
        fault: RegisterFault,
    },
    /// A status write was refused; the status is unchanged.
    Status {
        /// The status before.
        from: u32,
        /// The value written.
        to: u32,
        /// Why it was refused.
        error: StatusError,
    },
    /// FEATURES_OK was refused (the status keeps it clear).
    Features {
        /// What the driver accepted.
        accepted: u64,
        /// What the device offered.
        offered: u64,
        /// Why it was refused.
        error: FeatureError,
    },
    /// A `DriverFeatures` write after FEATURES_OK, or before DRIVER, was ignored.
    FeaturesLocked,
    /// A queue setup register write was ignored: the queue is enabled, or does not exist.
    QueueLocked {
        /// `QueueSel`.
        queue: u32,
        /// Offset of the register.
        offset: u64,
    },
    /// `QueueReady` = 1 was refused.
    QueueSetup {
        /// `QueueSel`.
        queue: u32,
        /// Why.
        error: QueueSetupError,
    },
    /// A `QueueNotify` was ignored.
    Notify {
        /// The value written (the queue index).
        queue: u32,
        /// Why it was ignored.
        fault: NotifyFault,
    },
    /// The driver broke the ring protocol; the device now needs a reset.
    QueueBroken {
        /// The queue index.
        queue: u16,
        /// What was wrong.
        error: QueueError,
    },
    /// A request failed.
    Request {
        /// The queue index.
        queue: u16,
        /// The chain's head descriptor.
        head: u16,
        /// What was wrong.
        error: RequestError,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Register {
                offset,
                width,
                write,
                fault,
            } => {
                let dir = if write { "write" } else { "read" };
                write!(f, "ignored {width} {dir} at {offset:#x}: {fault:?}")
            }
            Event::Status { from, to, error } => {
                write!(f, "refused status {from:#x} -> {to:#x}: {error}")
            }
            Event::Features {
                accepted,
                offered,
                error,
            } => write!(
                f,
                "refused FEATURES_OK: accepted {accepted:#x}, offered {offered:#x}: {error:?}"
            ),
            Event::FeaturesLocked => {
                f.write_str("ignored DriverFeatures write outside negotiation")
            }
            Event::QueueLocked { queue, offset } => {
                write!(f, "ignored queue {queue} setup write at {offset:#x}")
            }
            Event::QueueSetup { queue, error } => write!(f, "refused queue {queue}: {error}"),
            Event::Notify { queue, fault } => {
                write!(f, "ignored notify of queue {queue}: {fault:?}")
            }
            Event::QueueBroken { queue, error } => {
                write!(f, "queue {queue} broken, device needs reset: {error}")
            }
            Event::Request { queue, head, error } => {
                write!(f, "queue {queue} request {head}: {error:?}")
            }
        }
    }
}

/// Receives the device's incident reports.
pub trait Logger {
    /// Records `event`.
    fn log(&mut self, event: Event);
}

/// A logger that drops everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullLogger;

impl Logger for NullLogger {
    fn log(&mut self, _event: Event) {}
}
