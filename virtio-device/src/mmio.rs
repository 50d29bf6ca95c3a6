//! The virtio-mmio register file, device side (virtio 1.2 §4.2.2 "MMIO Device Register Layout",
//! Version 2 only; §4.2.3 "MMIO-specific Initialization And Device Operation").
//!
//! [`MmioTransport`] owns a device model ([`VirtioDevice`]) and its queues and turns raw register
//! reads and writes — offset, width, value, as a trap handler or an `ioreq_t` delivers them —
//! into the state changes the specification describes. Registers are 32-bit; the configuration
//! space at 0x100 takes naturally aligned 8-, 16- and 32-bit accesses (64-bit fields are read as
//! two 32-bit halves, §4.2.2.2). Any other access, and any write the current state does not
//! allow, is reported to the [`Logger`] and ignored; reads of it return 0. Nothing panics.
//!
//! Queue processing is separate from the register write that asks for it: a `QueueNotify` write
//! returns [`WriteEffect::Notify`], and the embedder calls [`MmioTransport::process_queue`] when
//! it suits it (a backend typically completes the trapped write first so the driver's vCPU can
//! resume, then processes).
//!
//! # Registers answered elsewhere (a "fast" transport)
//! A hypervisor can answer the read-only and interrupt registers itself and count `QueueNotify`
//! writes instead of forwarding them (rust-ioreq's interface version 2, docs/backend-abi.md).
//! The transport supports that without a mode of its own:
//! - [`MmioTransport::transport_registers`] gives what such a hypervisor needs to answer
//!   `MagicValue` to `QueueNumMax` and `ConfigGeneration` (device and vendor ID, queue count and
//!   size, the device feature words, the generation); the embedder publishes it;
//! - [`MmioTransport::notified`] is a `QueueNotify` that arrived some other way (a count that
//!   moved): the same checks and the same [`WriteEffect`] as the register write;
//! - every interrupt goes through [`Interrupt::raise_cause`] with its [`InterruptCause`] (the
//!   `InterruptStatus` bits it sets), so the embedder can pass the cause to whoever keeps
//!   `InterruptStatus`; the default method calls [`Interrupt::raise`], as before;
//! - a configuration change is two steps, [`MmioTransport::new_config_generation`] (then the
//!   embedder republishes the generation) and [`MmioTransport::signal_config_change`].
//!
//! The transport keeps its own `InterruptStatus` in every case: for a device whose registers the
//! hypervisor answers it is never read (and never acknowledged), and if the hypervisor forwards
//! them after all (it does not consider the device fast) the register behaves exactly as without
//! a hypervisor copy.

use crate::features::{self, INDIRECT_DESC, VERSION_1};
use crate::log::{Event, Logger, NotifyFault, RegisterFault};
use crate::memory::GuestMemory;
use crate::queue::{Queue, QueueError, QueuePart, QueueSetupError};
use crate::status::{self, DeviceStatus};
use crate::width::Width;

/// `MagicValue`: "virt" in little endian.
pub const MAGIC: u32 = 0x7472_6976;
/// `Version`: 2, the non-legacy interface.
pub const VERSION: u32 = 2;
/// Offset of the device configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;
/// The vendor ID reported unless [`MmioTransport::with_vendor_id`] sets another ("RIOQ").
pub const DEFAULT_VENDOR_ID: u32 = u32::from_le_bytes(*b"RIOQ");
/// The most queues a device may have here.
pub const MAX_QUEUES: usize = 4;

/// `InterruptStatus` bit: a queue has used buffers (§4.2.2).
pub const INT_USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit: the configuration (or DEVICE_NEEDS_RESET) changed.
pub const INT_CONFIG_CHANGE: u32 = 2;

/// Why an interrupt is raised: the `InterruptStatus` bits it sets (virtio 1.2 §4.2.2), one or
/// both of [`USED_BUFFER`](Self::USED_BUFFER) and [`CONFIG_CHANGE`](Self::CONFIG_CHANGE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptCause(u32);

impl InterruptCause {
    /// The device used buffers of a queue (`InterruptStatus` bit 0).
    pub const USED_BUFFER: Self = Self(INT_USED_BUFFER);
    /// The configuration changed, or the device needs a reset (bit 1).
    pub const CONFIG_CHANGE: Self = Self(INT_CONFIG_CHANGE);

    /// Returns the `InterruptStatus` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Tells whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Tells whether no cause is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for InterruptCause {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl core::ops::BitOrAssign for InterruptCause {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// What a hypervisor needs to answer a device's read-only transport registers itself
/// (docs/backend-abi.md "Transport page", one device record): every value here is constant for
/// the device's life but `config_generation`, which [`MmioTransport::new_config_generation`]
/// moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportRegisters {
    /// `DeviceID` (non-zero).
    pub device_id: u32,
    /// `VendorID`.
    pub vendor_id: u32,
    /// Queues `0..num_queues` exist (at most [`MAX_QUEUES`]).
    pub num_queues: u32,
    /// `QueueNumMax` of every queue below `num_queues` (0 if there is none).
    pub queue_num_max: u32,
    /// `ConfigGeneration`.
    pub config_generation: u32,
    /// `DeviceFeatures` for `DeviceFeaturesSel` 0 to 3 (higher selectors read 0).
    pub device_features: [u32; 4],
}

/// Why a device's transport registers cannot be answered from a [`TransportRegisters`]: its
/// registers must then all be served by the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportRegistersError {
    /// The device ID is 0 ("reserved, invalid" in §5), which a record cannot publish.
    NoDeviceId,
    /// The queues do not all have the same `QueueNumMax`.
    QueueSizesDiffer {
        /// The first queue whose size differs from queue 0's.
        queue: u16,
        /// Its `QueueNumMax`.
        size: u16,
        /// Queue 0's.
        first: u16,
    },
}

impl core::fmt::Display for TransportRegistersError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TransportRegistersError::NoDeviceId => f.write_str("device ID 0"),
            TransportRegistersError::QueueSizesDiffer { queue, size, first } => write!(
                f,
                "queue {queue} has QueueNumMax {size}, queue 0 has {first}: one size for all is needed"
            ),
        }
    }
}

/// Register offsets (§4.2.2, table "MMIO Device Register Layout").
mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
}

/// A virtio device type: what the transport needs from a device model.
pub trait VirtioDevice {
    /// Returns the virtio device ID (§5: 2 block, 4 entropy, ...).
    fn device_id(&self) -> u32;

    /// Returns the device-specific feature bits offered; the transport adds
    /// `VIRTIO_F_VERSION_1` and, if enabled, `VIRTIO_F_INDIRECT_DESC`.
    fn features(&self) -> u64;

    /// Returns the number of virtqueues (at most [`MAX_QUEUES`]).
    fn num_queues(&self) -> usize;

    /// Returns `QueueNumMax` of queue `index`.
    fn queue_max_size(&self, index: usize) -> u16;

    /// Returns the size of the configuration space in bytes.
    fn config_len(&self) -> usize;

    /// Copies configuration bytes `[offset, offset + data.len())`, which the transport has
    /// checked lie within [`config_len`](Self::config_len).
    fn read_config(&self, offset: usize, data: &mut [u8]);

    /// Writes configuration bytes (checked like reads); returns false if the field is read-only.
    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }

    /// Takes note of the negotiated features, once the driver has set FEATURES_OK.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }

    /// Starts the device once the driver has set DRIVER_OK, with the queues as the driver set
    /// them up. A device that processes its queues itself (a vhost-user backend) hands them
    /// over here; one driven by [`process_queue`](Self::process_queue) has nothing to do.
    fn driver_ok(&mut self, queues: &[Queue]) {
        let _ = queues;
    }

    /// Returns the device to its initial state (the driver wrote 0 to `Status`).
    fn reset(&mut self) {}

    /// Consumes available chains of queue `index`: for each [`Queue::pop`], carry out the request
    /// and [`Queue::add_used`]. Requests that fail are completed with an error status; only a
    /// broken ring is an `Err`.
    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        log: &mut dyn Logger,
    ) -> Result<(), QueueError>;
}

/// Delivers the device's interrupt to the driver (an SPI, an ioreq doorbell, a test counter).
/// The transport has already updated `InterruptStatus` when it calls this, so the interrupt may
/// be an edge: the register carries the state.
pub trait Interrupt {
    /// Signals the driver.
    fn raise(&mut self);

    /// Signals the driver for `cause` (never empty). The transport calls this, never
    /// [`raise`](Self::raise) directly. An embedder whose hypervisor keeps `InterruptStatus`
    /// (module docs) passes `cause` on to it; the default just raises, since the transport's
    /// own `InterruptStatus` already says why.
    fn raise_cause(&mut self, cause: InterruptCause) {
        let _ = cause;
        self.raise();
    }
}

/// What the embedder must do after a register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing.
    None,
    /// The driver notified queue `n`: call [`MmioTransport::process_queue`].
    Notify(u16),
}

/// The outcome of one [`MmioTransport::process_queue`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    /// Chains returned to the used ring.
    pub used: u32,
    /// The round's budget (one queue size) ran out with chains still available: call again
    /// (after serving other work, so one busy queue cannot starve the rest).
    pub more: bool,
    /// The driver was interrupted.
    pub interrupted: bool,
}

/// The device side of one virtio-mmio register window.
#[derive(Debug)]
pub struct MmioTransport<D> {
    device: D,
    vendor_id: u32,
    offer_indirect: bool,
    status: DeviceStatus,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    driver_features_beyond_63: bool,
    negotiated: u64,
    queue_sel: u32,
    queues: [Queue; MAX_QUEUES],
    num_queues: usize,
    interrupt_status: u32,
    config_generation: u32,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Creates the register file of `device`, in the reset state, offering indirect descriptors.
    pub fn new(device: D) -> Self {
        let num_queues = device.num_queues().min(MAX_QUEUES);
        let queues = core::array::from_fn(|i| {
            Queue::new(if i < num_queues {
                device.queue_max_size(i)
            } else {
                0
            })
        });
        Self {
            device,
            vendor_id: DEFAULT_VENDOR_ID,
            offer_indirect: true,
            status: DeviceStatus(0),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_beyond_63: false,
            negotiated: 0,
            queue_sel: 0,
            queues,
            num_queues,
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    /// Sets whether `VIRTIO_F_INDIRECT_DESC` is offered (it is by default).
    pub fn with_indirect(mut self, offer: bool) -> Self {
        self.offer_indirect = offer;
        self
    }

    /// Sets the `VendorID` register.
    pub fn with_vendor_id(mut self, vendor_id: u32) -> Self {
        self.vendor_id = vendor_id;
        self
    }

    /// Returns the device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Returns the device model for changes (for example configuration updates, followed by
    /// [`config_changed`](Self::config_changed)).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Returns the device status.
    pub fn status(&self) -> DeviceStatus {
        self.status
    }

    /// Returns all features offered to the driver.
    pub fn offered_features(&self) -> u64 {
        let transport = VERSION_1
            | if self.offer_indirect {
                INDIRECT_DESC
            } else {
                0
            };
        self.device.features() | transport
    }

    /// Returns the features negotiated at FEATURES_OK (0 before).
    pub fn negotiated_features(&self) -> u64 {
        self.negotiated
    }

    /// Returns `InterruptStatus`.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Returns queue `index`, if the device has it.
    pub fn queue(&self, index: usize) -> Option<&Queue> {
        self.queues[..self.num_queues].get(index)
    }

    /// Resets the device, as a write of 0 to `Status` does.
    pub fn reset(&mut self) {
        self.status = DeviceStatus(0);
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_beyond_63 = false;
        self.negotiated = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt_status = 0;
        self.device.reset();
    }

    /// Tells the driver that the configuration space changed (§2.5.1, §4.2.3.3): a new
    /// generation, then the configuration-change interrupt.
    pub fn config_changed(&mut self, irq: &mut dyn Interrupt) {
        self.new_config_generation();
        self.signal_config_change(irq);
    }

    /// First half of [`config_changed`](Self::config_changed): moves `ConfigGeneration` on and
    /// returns the new value. An embedder that publishes the generation to a hypervisor
    /// ([`transport_registers`](Self::transport_registers)) republishes it now, before it
    /// serves any configuration read with the new contents.
    pub fn new_config_generation(&mut self) -> u32 {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.config_generation
    }

    /// Second half of [`config_changed`](Self::config_changed): raises the
    /// configuration-change interrupt, if the driver is ready for interrupts (DRIVER_OK).
    pub fn signal_config_change(&mut self, irq: &mut dyn Interrupt) {
        if self.status.driver_ok() {
            self.interrupt_status |= INT_CONFIG_CHANGE;
            irq.raise_cause(InterruptCause::CONFIG_CHANGE);
        }
    }

    /// Tells the driver that the device used buffers on its own, outside
    /// [`process_queue`](Self::process_queue) (a vhost-user backend's call eventfd): sets the
    /// used-buffer bit and interrupts, if the driver is ready for interrupts (DRIVER_OK).
    pub fn signal_used_buffer(&mut self, irq: &mut dyn Interrupt) {
        if self.status.driver_ok() {
            self.interrupt_status |= INT_USED_BUFFER;
            irq.raise_cause(InterruptCause::USED_BUFFER);
        }
    }

    /// Tells the driver that the device failed on its own, outside a queue round (a
    /// vhost-user backend daemon that exited): sets DEVICE_NEEDS_RESET and raises the
    /// configuration-change interrupt (§2.1.2). Only once the driver set DRIVER_OK: during
    /// initialisation the driver writes `Status` back as it read it plus one bit, and a bit set
    /// between its read and its write would make that write one that clears it (refused here;
    /// Linux then gives the device up as FAILED). An embedder calls this on every look, and
    /// right after the `Status` write that set DRIVER_OK on a device that failed earlier, and
    /// gets whether the bit was newly set.
    pub fn set_needs_reset(&mut self, irq: &mut dyn Interrupt) -> bool {
        if !self.status.driver_ok() || self.status.has(DeviceStatus::DEVICE_NEEDS_RESET) {
            return false;
        }
        self.status.0 |= DeviceStatus::DEVICE_NEEDS_RESET;
        self.signal_config_change(irq);
        true
    }

    /// Returns `ConfigGeneration`.
    pub fn config_generation(&self) -> u32 {
        self.config_generation
    }

    /// Returns the number of queues (at most [`MAX_QUEUES`]).
    pub fn num_queues(&self) -> usize {
        self.num_queues
    }

    /// Returns the values of the read-only transport registers, for a hypervisor that answers
    /// them itself (module docs), or why it cannot: it needs one `QueueNumMax` for all queues
    /// and a non-zero device ID.
    pub fn transport_registers(&self) -> Result<TransportRegisters, TransportRegistersError> {
        let device_id = self.device.device_id();
        if device_id == 0 {
            return Err(TransportRegistersError::NoDeviceId);
        }
        let sizes = self.queues[..self.num_queues].iter().map(Queue::max_size);
        let first = self.queues[..self.num_queues]
            .first()
            .map_or(0, Queue::max_size);
        if let Some((queue, size)) = sizes.enumerate().find(|&(_, s)| s != first) {
            return Err(TransportRegistersError::QueueSizesDiffer {
                // Below MAX_QUEUES.
                queue: u16::try_from(queue).unwrap_or(u16::MAX),
                size,
                first,
            });
        }
        let f = self.offered_features();
        Ok(TransportRegisters {
            device_id,
            vendor_id: self.vendor_id,
            // At most MAX_QUEUES.
            num_queues: u32::try_from(self.num_queues).unwrap_or(0),
            queue_num_max: u32::from(first),
            config_generation: self.config_generation,
            device_features: [low(f), high(f), 0, 0],
        })
    }

    /// Takes note of a `QueueNotify` of `queue` that did not come through
    /// [`write`](Self::write): a hypervisor counted the driver's write and the embedder saw the
    /// count move (a posted notify). Checked and reported exactly like the register write;
    /// returns [`WriteEffect::Notify`] if the queue is to be processed.
    pub fn notified(&mut self, queue: u32, log: &mut dyn Logger) -> WriteEffect {
        self.write_notify(queue, log)
    }

    /// Returns the selected queue, if it exists.
    fn selected(&mut self) -> Option<&mut Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        self.queues[..self.num_queues].get_mut(i)
    }

    /// Reads the register at `offset` with `width`; returns the value (0 for a bad access).
    pub fn read(&self, offset: u64, width: Width, log: &mut dyn Logger) -> u64 {
        if offset >= CONFIG_OFFSET {
            return self.read_config(offset, width, log);
        }
        let fault = |fault| Event::Register {
            offset,
            width,
            write: false,
            fault,
        };
        if width != Width::U32 || !width.is_aligned(offset) {
            log.log(fault(RegisterFault::BadWidth));
            return 0;
        }
        let selected = usize::try_from(self.queue_sel)
            .ok()
            .and_then(|i| self.queue(i));
        let value: u32 = match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => self.vendor_id,
            reg::DEVICE_FEATURES => {
                let f = self.offered_features();
                match self.device_features_sel {
                    0 => low(f),
                    1 => high(f),
                    _ => 0,
                }
            }
            reg::QUEUE_NUM_MAX => selected.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => selected.map_or(0, |q| u32::from(q.is_ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status.0,
            // No shared memory regions: a length of -1 says so (§4.2.2).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.config_generation,
            reg::DEVICE_FEATURES_SEL
            | reg::DRIVER_FEATURES
            | reg::DRIVER_FEATURES_SEL
            | reg::QUEUE_SEL
            | reg::QUEUE_NUM
            | reg::QUEUE_NOTIFY
            | reg::INTERRUPT_ACK
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
            | reg::SHM_SEL => {
                log.log(fault(RegisterFault::WriteOnly));
                0
            }
            _ => {
                log.log(fault(RegisterFault::Unknown));
                0
            }
        };
        u64::from(value)
    }

    /// Writes `value` (masked to `width`) to the register at `offset`.
    pub fn write(
        &mut self,
        offset: u64,
        width: Width,
        value: u64,
        log: &mut dyn Logger,
    ) -> WriteEffect {
        let value = value & width.mask();
        if offset >= CONFIG_OFFSET {
            self.write_config(offset, width, value, log);
            return WriteEffect::None;
        }
        let fault = |fault| Event::Register {
            offset,
            width,
            write: true,
            fault,
        };
        if width != Width::U32 || !width.is_aligned(offset) {
            log.log(fault(RegisterFault::BadWidth));
            return WriteEffect::None;
        }
        // Checked above: a 32-bit access carries a 32-bit value.
        let v = u32::try_from(value).unwrap_or(u32::MAX);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES => self.write_driver_features(v, log),
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => self.write_queue_setup(offset, log, |q| {
                // Sizes beyond u16 fail the power-of-two/max check at enable time.
                q.set_size(u16::try_from(v).unwrap_or(0));
            }),
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => {
                self.write_queue_setup(offset, log, |q| {
                    q.set_address_half(QueuePart::Descriptors, offset == reg::QUEUE_DESC_HIGH, v);
                });
            }
            reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH => {
                self.write_queue_setup(offset, log, |q| {
                    q.set_address_half(QueuePart::Driver, offset == reg::QUEUE_DRIVER_HIGH, v);
                });
            }
            reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH => {
                self.write_queue_setup(offset, log, |q| {
                    q.set_address_half(QueuePart::Device, offset == reg::QUEUE_DEVICE_HIGH, v);
                });
            }
            reg::QUEUE_READY => self.write_queue_ready(v, log),
            reg::QUEUE_NOTIFY => return self.write_notify(v, log),
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => self.write_status(v, log),
            // No shared memory regions, but selecting one is harmless.
            reg::SHM_SEL => {}
            reg::MAGIC_VALUE
            | reg::VERSION
            | reg::DEVICE_ID
            | reg::VENDOR_ID
            | reg::DEVICE_FEATURES
            | reg::QUEUE_NUM_MAX
            | reg::INTERRUPT_STATUS
            | reg::SHM_LEN_LOW
            | reg::SHM_LEN_HIGH
            | reg::SHM_BASE_LOW
            | reg::SHM_BASE_HIGH
            | reg::CONFIG_GENERATION => log.log(fault(RegisterFault::ReadOnly)),
            _ => log.log(fault(RegisterFault::Unknown)),
        }
        WriteEffect::None
    }

    /// Checks a configuration space access; returns its offset into the space.
    fn config_range(
        &self,
        offset: u64,
        width: Width,
        write: bool,
        log: &mut dyn Logger,
    ) -> Option<usize> {
        let fault = |fault| Event::Register {
            offset,
            width,
            write,
            fault,
        };
        // 64-bit fields are accessed as two 32-bit halves (§4.2.2.2).
        if width == Width::U64 || !width.is_aligned(offset) {
            log.log(fault(RegisterFault::BadWidth));
            return None;
        }
        let start = offset - CONFIG_OFFSET;
        let end = start.checked_add(width.bytes());
        let len = u64::try_from(self.device.config_len()).unwrap_or(u64::MAX);
        match end {
            Some(end) if end <= len => usize::try_from(start).ok(),
            _ => {
                log.log(fault(RegisterFault::ConfigOutOfRange));
                None
            }
        }
    }

    fn read_config(&self, offset: u64, width: Width, log: &mut dyn Logger) -> u64 {
        let Some(start) = self.config_range(offset, width, false, log) else {
            return 0;
        };
        let mut b = [0u8; 4];
        self.device
            .read_config(start, &mut b[..config_bytes(width)]);
        u64::from(u32::from_le_bytes(b))
    }

    fn write_config(&mut self, offset: u64, width: Width, value: u64, log: &mut dyn Logger) {
        let Some(start) = self.config_range(offset, width, true, log) else {
            return;
        };
        let b = value.to_le_bytes();
        if !self.device.write_config(start, &b[..config_bytes(width)]) {
            log.log(Event::Register {
                offset,
                width,
                write: true,
                fault: RegisterFault::ConfigReadOnly,
            });
        }
    }

    fn write_driver_features(&mut self, v: u32, log: &mut dyn Logger) {
        // Features are written after DRIVER and before FEATURES_OK (§3.1.1 steps 3-5).
        if !self.status.has(DeviceStatus::DRIVER) || self.status.has(DeviceStatus::FEATURES_OK) {
            log.log(Event::FeaturesLocked);
            return;
        }
        let v64 = u64::from(v);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v64,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v64 << 32),
            _ => self.driver_features_beyond_63 |= v != 0,
        }
    }

    /// Applies `f` to the selected queue if its setup registers may be written (it exists and
    /// is not enabled, §4.2.2.2).
    fn write_queue_setup(&mut self, offset: u64, log: &mut dyn Logger, f: impl FnOnce(&mut Queue)) {
        let queue = self.queue_sel;
        match self.selected() {
            Some(q) if !q.is_ready() => f(q),
            _ => log.log(Event::QueueLocked { queue, offset }),
        }
    }

    fn write_queue_ready(&mut self, v: u32, log: &mut dyn Logger) {
        let queue = self.queue_sel;
        let features_ok = self.status.has(DeviceStatus::FEATURES_OK);
        let Some(q) = self.selected() else {
            log.log(Event::QueueLocked {
                queue,
                offset: reg::QUEUE_READY,
            });
            return;
        };
        match v {
            0 => q.disable(),
            1 if q.is_ready() => {}
            1 if !features_ok => log.log(Event::QueueSetup {
                queue,
                error: QueueSetupError::BeforeFeaturesOk,
            }),
            1 => {
                if let Err(error) = q.enable() {
                    log.log(Event::QueueSetup { queue, error });
                }
            }
            _ => log.log(Event::Register {
                offset: reg::QUEUE_READY,
                width: Width::U32,
                write: true,
                fault: RegisterFault::BadValue,
            }),
        }
    }

    fn write_notify(&mut self, v: u32, log: &mut dyn Logger) -> WriteEffect {
        let fault = match usize::try_from(v).ok().and_then(|i| self.queue(i)) {
            None => NotifyFault::NoSuchQueue,
            Some(_) if self.status.has(DeviceStatus::DEVICE_NEEDS_RESET) => NotifyFault::NeedsReset,
            Some(_) if !self.status.driver_ok() => NotifyFault::NotDriverOk,
            Some(q) if !q.is_ready() => NotifyFault::NotReady,
            Some(_) => {
                // `queue()` found it, so it is below MAX_QUEUES.
                return WriteEffect::Notify(u16::try_from(v).unwrap_or(u16::MAX));
            }
        };
        log.log(Event::Notify { queue: v, fault });
        WriteEffect::None
    }

    fn write_status(&mut self, v: u32, log: &mut dyn Logger) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET is the device's: a driver's read-modify-write that raced with it
        // (Linux adding FAILED, say) keeps it rather than being refused for clearing it.
        let v = v | (old.0 & DeviceStatus::DEVICE_NEEDS_RESET);
        let mut new = match status::transition(old, v) {
            Ok(s) => s,
            Err(error) => {
                log.log(Event::Status {
                    from: old.0,
                    to: v,
                    error,
                });
                return;
            }
        };
        if new.has(DeviceStatus::FEATURES_OK) && !old.has(DeviceStatus::FEATURES_OK) {
            let offered = self.offered_features();
            let accepted = self.driver_features;
            match features::check(offered, accepted, self.driver_features_beyond_63) {
                Ok(()) => {
                    self.negotiated = accepted;
                    for q in &mut self.queues {
                        q.set_indirect(accepted & INDIRECT_DESC != 0);
                    }
                    self.device.activate(accepted);
                }
                Err(error) => {
                    log.log(Event::Features {
                        accepted,
                        offered,
                        error,
                    });
                    // The driver finds FEATURES_OK clear when it reads the status back.
                    new.0 &= !(DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK);
                }
            }
        }
        let starting = new.driver_ok() && !old.driver_ok();
        self.status = new;
        if starting {
            self.device.driver_ok(&self.queues[..self.num_queues]);
        }
    }

    /// Processes queue `index` after a notify: runs the device over at most one queue's worth
    /// of chains, then interrupts the driver if it used buffers (and the driver wants to know)
    /// or if the queue turned out to be broken (then DEVICE_NEEDS_RESET is set, §2.1.2).
    pub fn process_queue(
        &mut self,
        index: u16,
        mem: &dyn GuestMemory,
        irq: &mut dyn Interrupt,
        log: &mut dyn Logger,
    ) -> Processed {
        let i = usize::from(index);
        if i >= self.num_queues
            || !self.status.driver_ok()
            || self.status.has(DeviceStatus::DEVICE_NEEDS_RESET)
            || !self.queues[i].is_ready()
        {
            return Processed::default();
        }
        let queue = &mut self.queues[i];
        queue.start_round(queue.size());
        let result = self.device.process_queue(index, queue, mem, log);
        let used = queue.take_used_added();
        let mut more = queue.stopped_early();
        let mut cause = InterruptCause::default();
        // If the flag cannot be read the queue is broken anyway: interrupt rather than not.
        if used > 0 && queue.needs_notification(mem).unwrap_or(true) {
            cause |= InterruptCause::USED_BUFFER;
        }
        if let Err(error) = result {
            log.log(Event::QueueBroken {
                queue: index,
                error,
            });
            self.status.0 |= DeviceStatus::DEVICE_NEEDS_RESET;
            cause |= InterruptCause::CONFIG_CHANGE;
            more = false;
        }
        if !cause.is_empty() {
            self.interrupt_status |= cause.bits();
            irq.raise_cause(cause);
        }
        Processed {
            used,
            more,
            interrupted: !cause.is_empty(),
        }
    }
}

/// Returns bits 0..32 of `v`.
fn low(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// Returns bits 32..64 of `v`.
fn high(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

/// Returns the number of bytes of a configuration access (64-bit ones are refused earlier).
fn config_bytes(width: Width) -> usize {
    match width {
        Width::U8 => 1,
        Width::U16 => 2,
        Width::U32 | Width::U64 => 4,
    }
}

#[cfg(test)]
mod tests {
    // Test addresses and counts are small constants.
    #![allow(clippy::cast_possible_truncation)]

    use super::*;
    use crate::memory::{read_u16, write_u16, Gpa, SliceMemory};
    use crate::NullLogger;

    /// A device with two queues (8 and 4 entries), 8 writable config bytes and feature bit 0.
    /// Its queue processing returns every chain with length 0 and, while `grow` is set, plays a
    /// driver that makes one more chain available for each one it consumes.
    struct Dummy {
        config: [u8; 8],
        processed: [u32; 2],
        grow: bool,
        activated: Option<u64>,
        resets: u32,
    }

    impl VirtioDevice for Dummy {
        fn device_id(&self) -> u32 {
            0x42
        }
        fn features(&self) -> u64 {
            1
        }
        fn num_queues(&self) -> usize {
            2
        }
        fn queue_max_size(&self, index: usize) -> u16 {
            [8, 4][index]
        }
        fn config_len(&self) -> usize {
            8
        }
        fn read_config(&self, offset: usize, data: &mut [u8]) {
            data.copy_from_slice(&self.config[offset..offset + data.len()]);
        }
        fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
            self.config[offset..offset + data.len()].copy_from_slice(data);
            true
        }
        fn activate(&mut self, features: u64) {
            self.activated = Some(features);
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
        fn process_queue(
            &mut self,
            index: u16,
            queue: &mut Queue,
            mem: &dyn GuestMemory,
            _log: &mut dyn Logger,
        ) -> Result<(), QueueError> {
            while let Some(chain) = queue.pop(mem)? {
                self.processed[usize::from(index)] += 1;
                queue.add_used(mem, &chain, 0)?;
                if self.grow {
                    let avail = queue.address(QueuePart::Driver);
                    let idx = read_u16(mem, Gpa(avail.0 + 2))?;
                    let slot = u64::from(idx % queue.size());
                    write_u16(mem, Gpa(avail.0 + 4 + 2 * slot), 0)?;
                    write_u16(mem, Gpa(avail.0 + 2), idx.wrapping_add(1))?;
                }
            }
            Ok(())
        }
    }

    struct Count(u32);
    impl Interrupt for Count {
        fn raise(&mut self) {
            self.0 += 1;
        }
    }

    fn dummy() -> MmioTransport<Dummy> {
        MmioTransport::new(Dummy {
            config: [0; 8],
            processed: [0; 2],
            grow: false,
            activated: None,
            resets: 0,
        })
    }

    fn w(t: &mut MmioTransport<Dummy>, offset: u64, v: u32) -> WriteEffect {
        t.write(offset, Width::U32, u64::from(v), &mut NullLogger)
    }

    fn r(t: &MmioTransport<Dummy>, offset: u64) -> u32 {
        t.read(offset, Width::U32, &mut NullLogger) as u32
    }

    /// Negotiates VERSION_1 | bit 0, sets up queue `q` (descriptor 0 is a 1-byte writable
    /// buffer; the rings of queue q are at 0x1000 * (q + 1)) and sets DRIVER_OK.
    fn bring_up(t: &mut MmioTransport<Dummy>, mem: &SliceMemory<'_>, q: u32, size: u32) {
        w(t, reg::STATUS, 0);
        w(t, reg::STATUS, 3);
        w(t, reg::DRIVER_FEATURES_SEL, 0);
        w(t, reg::DRIVER_FEATURES, 1);
        w(t, reg::DRIVER_FEATURES_SEL, 1);
        w(t, reg::DRIVER_FEATURES, 1);
        w(t, reg::STATUS, 11);
        let base = 0x1000 * (u64::from(q) + 1);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&0x8000u64.to_le_bytes());
        d[8..12].copy_from_slice(&1u32.to_le_bytes());
        d[12..14].copy_from_slice(&2u16.to_le_bytes());
        mem.write(Gpa(base), &d).unwrap();
        w(t, reg::QUEUE_SEL, q);
        w(t, reg::QUEUE_NUM, size);
        w(t, reg::QUEUE_DESC_LOW, base as u32);
        w(t, reg::QUEUE_DRIVER_LOW, (base + 0x400) as u32);
        w(t, reg::QUEUE_DEVICE_LOW, (base + 0x800) as u32);
        w(t, reg::QUEUE_READY, 1);
        w(t, reg::STATUS, 15);
        assert_eq!(r(t, reg::STATUS), 15);
    }

    #[test]
    fn queues_are_selected_and_processed_separately() {
        let mut bytes = vec![0u8; 0x10000];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let mut t = dummy();
        assert_eq!(r(&t, reg::DEVICE_ID), 0x42);
        w(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 4);
        w(&mut t, reg::QUEUE_SEL, 0);
        assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 8);
        bring_up(&mut t, &mem, 1, 4);
        assert_eq!(t.device().activated, Some(VERSION_1 | 1));
        // One chain on queue 1.
        write_u16(&mem, Gpa(0x2400 + 2), 1).unwrap();
        assert_eq!(w(&mut t, reg::QUEUE_NOTIFY, 1), WriteEffect::Notify(1));
        // Queue 0 was never enabled.
        assert_eq!(w(&mut t, reg::QUEUE_NOTIFY, 0), WriteEffect::None);
        let mut irq = Count(0);
        let p = t.process_queue(1, &mem, &mut irq, &mut NullLogger);
        assert_eq!(
            p,
            Processed {
                used: 1,
                more: false,
                interrupted: true
            }
        );
        assert_eq!(t.device().processed, [0, 1]);
        assert_eq!(read_u16(&mem, Gpa(0x2800 + 2)).unwrap(), 1);
        // Processing a queue that is not ready, or does not exist, does nothing.
        assert_eq!(
            t.process_queue(0, &mem, &mut irq, &mut NullLogger),
            Processed::default()
        );
        assert_eq!(
            t.process_queue(7, &mem, &mut irq, &mut NullLogger),
            Processed::default()
        );
        assert_eq!(irq.0, 1);
        w(&mut t, reg::STATUS, 0);
        assert_eq!(t.device().resets, 2, "bring_up's reset and this one");
    }

    #[test]
    fn config_writes_and_change_notification() {
        let mut bytes = vec![0u8; 0x10000];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let mut t = dummy();
        let mut irq = Count(0);
        t.write(CONFIG_OFFSET + 2, Width::U16, 0xbeef, &mut NullLogger);
        t.write(CONFIG_OFFSET + 4, Width::U32, 0x1234_5678, &mut NullLogger);
        assert_eq!(r(&t, CONFIG_OFFSET), 0xbeef_0000);
        assert_eq!(t.read(CONFIG_OFFSET + 7, Width::U8, &mut NullLogger), 0x12);
        // Before DRIVER_OK a change only moves the generation.
        t.config_changed(&mut irq);
        assert_eq!(r(&t, reg::CONFIG_GENERATION), 1);
        assert_eq!((irq.0, t.interrupt_status()), (0, 0));
        bring_up(&mut t, &mem, 0, 8);
        t.config_changed(&mut irq);
        assert_eq!(r(&t, reg::CONFIG_GENERATION), 2);
        assert_eq!((irq.0, t.interrupt_status()), (1, INT_CONFIG_CHANGE));
        w(&mut t, reg::INTERRUPT_ACK, INT_CONFIG_CHANGE);
        assert_eq!(t.interrupt_status(), 0);
    }

    #[test]
    fn a_round_is_one_queue_size_and_more_is_reported() {
        let mut bytes = vec![0u8; 0x10000];
        let mem = SliceMemory::new(Gpa(0), &mut bytes);
        let mut t = dummy();
        bring_up(&mut t, &mem, 0, 8);
        t.device_mut().grow = true;
        write_u16(&mem, Gpa(0x1400 + 2), 1).unwrap();
        let mut irq = Count(0);
        // The driver keeps adding: each round stops after 8 chains and asks to be called again.
        for round in 1..=3 {
            let p = t.process_queue(0, &mem, &mut irq, &mut NullLogger);
            assert_eq!((p.used, p.more), (8, true), "round {round}");
        }
        t.device_mut().grow = false;
        let p = t.process_queue(0, &mem, &mut irq, &mut NullLogger);
        assert_eq!((p.used, p.more), (1, false));
        assert_eq!(t.device().processed[0], 25);
        assert_eq!(irq.0, 4);
    }
}
