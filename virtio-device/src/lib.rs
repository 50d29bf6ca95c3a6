//! virtio-device: the device side of virtio 1.2 over the MMIO transport (§4.2.2, Version 2),
//! with split virtqueues (§2.7) and two device models, virtio-blk (§5.2) and virtio-rng (§5.4).
//!
//! Independent of any hypervisor and of how guest memory is reached: the embedder supplies
//! [`GuestMemory`] (the driver's memory, hostile, bounds-checked by the implementation),
//! [`Interrupt`] (how the driver is signalled) and [`Logger`] (where reports of a misbehaving
//! driver go), and feeds register accesses to an [`MmioTransport`].
//!
//! ```
//! use virtio_device::{Blk, Gpa, MmioTransport, NullLogger, SliceMemory, Width, MAGIC};
//!
//! let mut disk = vec![0u8; 4 << 20];
//! let mut transport = MmioTransport::new(Blk::new(&mut disk, b"example").unwrap());
//! assert_eq!(transport.read(0, Width::U32, &mut NullLogger), u64::from(MAGIC));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod blk;
pub mod chain;
pub mod features;
pub mod log;
pub mod memory;
pub mod mmio;
pub mod queue;
pub mod rng;
pub mod status;
pub mod width;

pub use blk::{Blk, BlkError, BlkStats, Disk, DiskError};
pub use chain::{ChainIoError, Reader, Writer};
pub use log::{Event, Logger, NullLogger, RequestError};
pub use memory::{Gpa, GuestMemory, MemError, SliceMemory};
pub use mmio::{
    Interrupt, InterruptCause, MmioTransport, Processed, TransportRegisters,
    TransportRegistersError, VirtioDevice, WriteEffect, CONFIG_OFFSET, MAGIC, VERSION,
};
pub use queue::{DescriptorChain, Queue, QueueError, QueueSetupError, MAX_QUEUE_SIZE};
pub use rng::{Entropy, Rng, RngStats, SplitMix64};
pub use status::DeviceStatus;
pub use width::Width;
