//! guest-common: the runtime of the bare-metal aarch64 test guests that Xen boots as dom0less
//! domUs (arm64 Image header, entry, console, shutdown, device tree, scenario reporter).
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
pub mod hypercall;
mod panic;
pub mod scenario;
mod start;

pub use devicetree::{DeviceTree, DtError};
pub use start::Boot;
