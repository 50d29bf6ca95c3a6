//! Declarations of the Xen 4.17 functions the component calls (xen/include/xen/*.h).

use core::ffi::{c_char, c_int, c_ulong, c_void};

extern "C" {
    /// `void printk(const char *fmt, ...)` (xen/include/xen/lib.h).
    pub fn printk(fmt: *const c_char, ...);
    /// `void noreturn panic(const char *fmt, ...)` (xen/include/xen/lib.h).
    #[link_name = "panic"]
    pub fn xen_panic(fmt: *const c_char, ...) -> !;
    /// `void *_xmalloc(unsigned long size, unsigned long align)` (xen/include/xen/xmalloc.h).
    pub fn _xmalloc(size: c_ulong, align: c_ulong) -> *mut c_void;
    /// `void xfree(void *p)` (xen/include/xen/xmalloc.h).
    pub fn xfree(p: *mut c_void);
}

/// Xen's `EINVAL`, returned negated across the C boundary.
pub const EINVAL: c_int = 22;
