//! scenario: turns a test scenario description (`tests/scenarios/<name>.toml`) into the host
//! DTB that Xen boots from (Xen's docs/misc/arm/device-tree/booting.txt, "Creating Multiple
//! Domains directly from Xen") and the QEMU command line that boots it.
//!
//! For real boards it writes the host DTB, U-Boot's boot script and an ImageBuilder
//! configuration instead, and checks them (docs/boards.md).
//!
//! `lib.rs` only declares and re-exports; see `model` (schema and validation), `layout`
//! (where the boot modules go on QEMU), `dts` (the generated device tree text), `generate`
//! (running QEMU and dtc, writing the files, building the command), `board` (the boards and
//! their load plans), `devtree` (reading a board's tree), `uboot` and `imagebuilder` (the two
//! boot script forms), `boardgen` (writing a board's files) and `boardcheck` (checking them).

pub mod board;
pub mod boardcheck;
pub mod boardgen;
pub mod devtree;
mod dts;
mod error;
mod generate;
pub mod imagebuilder;
mod layout;
mod model;
pub mod uboot;

pub use dts::{host_dts, host_dts_over, DtsBase, NodeNames};
pub use error::Error;
pub use generate::{
    generate, qemu_opt_escape, shell_quote, Console, GenOptions, Generated, DTC, QEMU, UBOOT_QEMU,
};
pub use layout::{
    place_modules, Module, ModuleKind, Owner, PlaceError, MODULE_ALIGN, MODULE_BASE, RAM_BASE,
};
pub use model::{
    AtMost, Device, Dom0, Domain, Reg, Scenario, Scheduler, DEFAULT_MEM_MIB, DEFAULT_SMP,
    DEFAULT_XEN_BOOTARGS,
};
