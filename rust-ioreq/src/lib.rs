//! rust-ioreq: the portable, safe core of the dom0less virtio-mmio IOREQ path (Xen on Arm64).
//!
//! Everything here is `no_std`, free of `unsafe`, and host-tested; the Xen binding lives in
//! `arch/`. A frontend's access to a configured region is decoded ([`syndrome`]), looked up in
//! the frozen region table and posted as an `ioreq_t` ([`abi`]) to its backend by the
//! [`engine`], which also runs the per-vCPU request state machine and the doorbell protocol.
#![no_std]
#![forbid(unsafe_code)]
// Indices narrowed to u8/u16 are bounded by the fixed table capacities (at most 128), which are
// enforced where the tables are built; address halves are split on purpose.
#![allow(clippy::cast_possible_truncation)]

// Boot-time tables only: nothing on the trap, completion or doorbell paths allocates.
extern crate alloc;
#[cfg(any(test, loom, feature = "std"))]
extern crate std;

pub mod abi;
pub mod config;
pub mod dt;
pub mod engine;
mod fdtcheck;
pub mod fixed;
pub mod platform;
pub mod ratelimit;
pub mod report;
mod sync;
pub mod syndrome;
pub mod types;

/// Version of the component, printed in the boot banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
