//! rust-ioreq: the portable, safe core of the dom0less virtio-mmio IOREQ path (Xen on Arm64).
//!
//! Everything here is `no_std`, free of `unsafe`, and host-tested; the Xen binding lives in
//! `arch/`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod config;

/// Version of the component, printed in the boot banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
