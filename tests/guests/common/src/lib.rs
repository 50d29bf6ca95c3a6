//! guest-common: the runtime of the bare-metal aarch64 test guests that Xen boots as dom0less
//! domUs (arm64 Image header, entry, console, shutdown, device tree, scenario reporter), plus
//! what device tests need: exception vectors with expected faults, GICv3 interrupts, the virtual
//! timer, secondary vCPUs and a lock that needs no exclusives. Every vCPU runs with the MMU and
//! caches on over a static identity map (`mmu`): RAM is Normal Write-Back, MMIO Device.
//!
//! A guest binary is `#![no_std] #![no_main]`, names its main function with [`entry!`] and
//! reports through [`scenario`]:
//!
//! ```ignore
//! guest_common::entry!(main);
//! fn main(boot: &guest_common::Boot) {
//!     guest_common::scenario::check("booted", true, "");
//!     guest_common::scenario::end();
//! }
//! ```

#![no_std]

pub mod console;
pub mod devicetree;
pub mod exception;
pub mod gic;
pub mod hypercall;
pub mod mmio;
pub mod mmu;
mod panic;
pub mod scenario;
pub mod smp;
mod start;
pub mod sync;
pub mod timer;

pub use devicetree::{DeviceTree, DtError};
pub use start::Boot;
