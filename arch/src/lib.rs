//! rust-ioreq's Xen on Arm64 binding: the staticlib linked into the hypervisor.
//!
//! This crate holds the only `unsafe` and `extern "C"` of the component: the calls into Xen
//! (`printk`, `panic`, `_xmalloc`/`xfree`) and the entry points Xen calls (`rust_ioreq_*`,
//! declared for C in `include/rust_ioreq.h`).
#![no_std]

extern crate alloc;

// `log` first: its macro is textually scoped to the modules declared after it.
#[macro_use]
mod log;

mod abi_c;
mod allocator;
mod entry;
mod panic;
mod platform;
mod state;
mod xen;
