//! The global allocator, over Xen's `_xmalloc`/`xfree`.
//!
//! Only boot-time code allocates: `_xmalloc` must not be called with IRQs off or in IRQ
//! context, so the trap path works on tables built before the domains start.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_ulong, c_void};

struct XenHeap;

// SAFETY: `_xmalloc` returns either NULL or a block of at least `size` bytes aligned to `align`
// that nothing else uses until `xfree`; `dealloc` hands back exactly such a block.
unsafe impl GlobalAlloc for XenHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `_xmalloc` accepts any size and any power-of-two alignment (`Layout`
        // guarantees the latter); a zero size is impossible through `GlobalAlloc`.
        unsafe { crate::xen::_xmalloc(layout.size() as c_ulong, layout.align() as c_ulong).cast() }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a pointer returned by `alloc` above, i.e. by `_xmalloc`.
        unsafe { crate::xen::xfree(ptr.cast::<c_void>()) }
    }
}

#[global_allocator]
static HEAP: XenHeap = XenHeap;
