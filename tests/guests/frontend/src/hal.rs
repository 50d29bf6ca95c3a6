//! virtio-drivers `Hal` for a guest on guest-common's identity map (GPA == VA), and the page pool
//! all DMA memory comes from: virtqueues, and the test's own I/O buffers.
//!
//! The "device" that does the DMA is a backend domain's vCPU, reading and writing the pool through
//! its RAM window. Both sides map it Normal Write-Back Inner Shareable (this guest's stage 1 and
//! stage 2, the backend's stage 1 and Xen's foreign mapping in its stage 2), so the caches keep it
//! coherent and `share`/`unshare` need no cache maintenance. Ordering is virtio-drivers' own
//! (`fence(SeqCst)`, i.e. `dmb ish`, and release/acquire on the ring indices); the notify and
//! register accesses trap to Xen on this pCPU, which publishes the request to the backend after
//! a barrier, so everything written before them is visible to the backend first.
//!
//! The pool is a page-aligned static in `.bss`, whole pages only, so it shares no page with code:
//! under QEMU TCG a write (here: by the backend, through its window onto our RAM) to a page holding
//! translated code takes the self-modifying-code path (DESIGN.md §5). `share` refuses any buffer
//! below `__bss_start` for the same reason; request headers live on the stack, which has its own
//! pages too.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use guest_common::sync::BakeryLock;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Pages in the pool: a few virtqueues (2-3 pages each) and a few 4 KiB I/O buffers per vCPU.
const POOL_PAGES: usize = 96;

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[u8; POOL_PAGES * PAGE_SIZE]>);

// SAFETY: the pool is only handed out as disjoint page ranges by `alloc_pages`, which holds the
// allocator lock while it carves them; no reference to the whole array is ever created.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([0; POOL_PAGES * PAGE_SIZE]));
/// Pages handed out so far (a bump allocator; only the most recent allocation can be returned).
static NEXT_PAGE: BakeryLock<usize> = BakeryLock::new(0);

extern "C" {
    /// First byte of `.bss` (link.ld): everything below it is code, read-only data or `.data`.
    static __bss_start: u8;
}

/// Allocates `pages` zeroed, contiguous, page-aligned pages; `None` when the pool is exhausted.
fn alloc_pages(pages: usize) -> Option<NonNull<u8>> {
    let mut next = NEXT_PAGE.lock();
    let end = next
        .checked_add(pages)
        .filter(|&e| e <= POOL_PAGES && pages > 0)?;
    // SAFETY: `*next * PAGE_SIZE` is at most the pool size, so the offset stays inside (or one
    // past) the pool array.
    let start = unsafe { POOL.0.get().cast::<u8>().add(*next * PAGE_SIZE) };
    // SAFETY: pages `[next, end)` are inside the pool and were never handed out (or were given
    // back), so nothing else accesses them while they are zeroed.
    unsafe { core::ptr::write_bytes(start, 0, pages * PAGE_SIZE) };
    *next = end;
    NonNull::new(start)
}

/// Returns the address of the first page of the DMA pool.
pub fn pool_base() -> usize {
    POOL.0.get() as usize
}

/// Allocates a zeroed I/O buffer of `pages` pages that stays allocated for the guest's life.
///
/// # Panics
/// Panics when the pool is exhausted (a bug in the test's sizing).
pub fn buffer(pages: usize) -> &'static mut [u8] {
    let start = alloc_pages(pages).expect("DMA pool exhausted");
    // SAFETY: `alloc_pages` returned `pages` fresh pages of the static pool that no one else will
    // ever be given (they are never freed), so a unique `'static` slice over them is sound.
    unsafe { core::slice::from_raw_parts_mut(start.as_ptr(), pages * PAGE_SIZE) }
}

/// Tells whether `[addr, addr + len)` lies entirely at or above `__bss_start`.
fn off_code_pages(addr: usize, len: usize) -> bool {
    let writable = (&raw const __bss_start) as usize;
    addr >= writable && addr.checked_add(len).is_some()
}

/// The `Hal` of the frontend guest: identity mapping, the static page pool.
#[derive(Debug)]
pub struct GuestHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned, contiguous pool pages that no other allocation
// or reference aliases until `dma_dealloc`; physical and virtual addresses are equal because
// guest-common's map is the identity, and `share` hands the device exactly the buffer's own
// address.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match alloc_pages(pages) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            // virtio-drivers reports paddr 0 as `Error::DmaError`.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let mut next = NEXT_PAGE.lock();
        let Some(offset) = (vaddr.as_ptr() as usize).checked_sub(POOL.0.get() as usize) else {
            return -1;
        };
        let first = offset / PAGE_SIZE;
        // Only the latest allocation can be taken back; anything else stays allocated (leaks),
        // which is harmless for a guest that lives for one test.
        if first + pages == *next {
            *next = first;
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Only the PCI transport calls this; MMIO is identity-mapped like everything else.
        usize::try_from(paddr)
            .ok()
            .and_then(|a| NonNull::new(a as *mut u8))
            .expect("MMIO address 0 or beyond the address space")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let addr = buffer.as_ptr().cast::<u8>() as usize;
        assert!(
            off_code_pages(addr, buffer.len()),
            "DMA buffer at {addr:#x} is on a page that may hold code"
        );
        addr as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // The device accessed the buffer in place: nothing to copy back. The backend's accesses
        // are cacheable and coherent with ours (module docs): nothing to clean or invalidate.
    }
}
