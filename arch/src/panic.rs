//! Panic handler: a Rust panic is a bug in the component, so it becomes Xen's `panic()`.
//!
//! Never reached from guest- or backend-triggerable paths, which return `Err` instead.

use core::fmt::Write;
use core::panic::PanicInfo;

use crate::log::Line;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    let _ = write!(line, "{info}");
    let bytes = line.as_bytes();
    // LINE_MAX is far below c_int::MAX.
    let len = bytes.len() as core::ffi::c_int;
    // SAFETY: the format consumes exactly an int and a pointer to `len` readable bytes, which
    // live on this stack frame; `panic()` does not return.
    unsafe { crate::xen::xen_panic(c"rust-ioreq: %.*s\n".as_ptr(), len, bytes.as_ptr()) }
}
