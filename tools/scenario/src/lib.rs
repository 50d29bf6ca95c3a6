//! scenario: turns a test scenario description (`tests/scenarios/<name>.toml`) into the host
//! DTB that Xen boots from (Xen's docs/misc/arm/device-tree/booting.txt, "Creating Multiple
//! Domains directly from Xen") and the QEMU command line that boots it.
//!
//! `lib.rs` only declares and re-exports; see `model` (schema and validation), `layout`
//! (where the boot modules go), `dts` (the generated device tree text) and `generate` (running
//! QEMU and dtc, writing the files, building the command).

mod dts;
mod error;
mod generate;
mod layout;
mod model;

pub use dts::host_dts;
pub use error::Error;
pub use generate::{
    generate, qemu_opt_escape, shell_quote, Console, GenOptions, Generated, DTC, QEMU,
};
pub use layout::{
    place_modules, Module, ModuleKind, Owner, PlaceError, MODULE_ALIGN, MODULE_BASE, RAM_BASE,
};
pub use model::{
    AtMost, Device, Dom0, Domain, Reg, Scenario, Scheduler, DEFAULT_MEM_MIB, DEFAULT_SMP,
    DEFAULT_XEN_BOOTARGS,
};
