//! The structures exchanged with the C glue, mirrored in `include/rust_ioreq.h` (whose
//! `_Static_assert`s check the same sizes and offsets).

use core::mem::{offset_of, size_of};

/// `struct rust_ioreq_trap`: a frontend's stage-2 data abort.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RustIoreqTrap {
    pub gpa: u64,
    pub hsr: u32,
    pub dabt: u32,
    pub vcpu: u32,
    pub domid: u16,
    pub decode: u8,
    pub post_rn: u8,
    pub post_imm9: i16,
    pub pad0: u16,
    pub pad1: u32,
}

const _: () = assert!(size_of::<RustIoreqTrap>() == 32);
const _: () = assert!(offset_of!(RustIoreqTrap, hsr) == 8);
const _: () = assert!(offset_of!(RustIoreqTrap, dabt) == 12);
const _: () = assert!(offset_of!(RustIoreqTrap, vcpu) == 16);
const _: () = assert!(offset_of!(RustIoreqTrap, domid) == 20);
const _: () = assert!(offset_of!(RustIoreqTrap, decode) == 22);
const _: () = assert!(offset_of!(RustIoreqTrap, post_rn) == 23);
const _: () = assert!(offset_of!(RustIoreqTrap, post_imm9) == 24);

/// `RUST_IOREQ_DECODE_*`: what Xen decoded.
#[allow(dead_code)] // named for symmetry with the C header; any other value means "syndrome"
pub const DECODE_SYNDROME: u8 = 0;
pub const DECODE_POST_INDEXED: u8 = 1;
pub const DECODE_CACHE: u8 = 2;

/// `RUST_IOREQ_MMIO_*`: what the glue does with a trap.
pub const MMIO_NOT_MINE: i32 = 0;
pub const MMIO_RETRY: i32 = 1;
pub const MMIO_HANDLED: i32 = 2;
pub const MMIO_ABORT: i32 = 3;

/// `struct rust_ioreq_completion`: how to finish an answered access.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RustIoreqCompletion {
    pub value: u64,
    pub hsr: u32,
    pub write_reg: u8,
    pub reg: u8,
    pub post_index: u8,
    pub post_rn: u8,
    pub post_imm9: i16,
    pub pad0: u16,
    pub pad1: u32,
}

const _: () = assert!(size_of::<RustIoreqCompletion>() == 24);
const _: () = assert!(offset_of!(RustIoreqCompletion, hsr) == 8);
const _: () = assert!(offset_of!(RustIoreqCompletion, write_reg) == 12);
const _: () = assert!(offset_of!(RustIoreqCompletion, reg) == 13);
const _: () = assert!(offset_of!(RustIoreqCompletion, post_index) == 14);
const _: () = assert!(offset_of!(RustIoreqCompletion, post_rn) == 15);
const _: () = assert!(offset_of!(RustIoreqCompletion, post_imm9) == 16);

/// `RUST_IOREQ_WORK_*`: what a frontend vCPU must do before resuming.
pub const WORK_IDLE: i32 = 0;
pub const WORK_WAITING: i32 = 1;
pub const WORK_COMPLETE: i32 = 2;

/// `RUST_IOREQ_BACKEND_PAGES`, `RUST_IOREQ_TRANSPORT_PAGE`, `RUST_IOREQ_NOTIFY_PAGE`: the
/// glue's table of a backend's pages, indexed as `state::PAGES`.
pub const BACKEND_PAGES: u32 = 10;
pub const TRANSPORT_PAGE: u32 = 8;
pub const NOTIFY_PAGE: u32 = 9;
const _: () = assert!(BACKEND_PAGES as usize == crate::state::BACKEND_PAGES);
const _: () = assert!(TRANSPORT_PAGE as usize == crate::state::TRANSPORT_PAGE);
const _: () = assert!(NOTIFY_PAGE as usize == crate::state::NOTIFY_PAGE);
