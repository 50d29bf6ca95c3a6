//! Entry points called by the Xen glue (declared in `include/rust_ioreq.h`).

use core::ffi::c_int;

use rust_ioreq::config;

/// Largest host device tree accepted, as Xen's own `MAX_DTB_SIZE` on Arm (2 MiB).
const MAX_FDT_SIZE: usize = 2 << 20;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// Reads the blob size from the FDT header (big-endian `magic`, `totalsize`).
///
/// # Safety
/// `fdt` must point to at least 8 readable bytes.
unsafe fn fdt_total_size(fdt: *const u8) -> Option<usize> {
    let mut header = [0u8; 8];
    // SAFETY: the caller guarantees 8 readable bytes; `header` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(fdt, header.as_mut_ptr(), header.len()) };
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    (magic == FDT_MAGIC && (8..=MAX_FDT_SIZE).contains(&size)).then_some(size)
}

/// Initialises the component from the host device tree; called once at boot, before
/// `create_domUs()`. Returns 0, or `-EINVAL` after logging what is wrong with the DT.
///
/// # Safety
/// `fdt` is Xen's `device_tree_flattened`: a mapped, complete host FDT that stays mapped and
/// unchanged while this runs.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_init(fdt: *const u8) -> c_int {
    if fdt.is_null() {
        log!("no host device tree");
        return -crate::xen::EINVAL;
    }
    // SAFETY: `fdt` is non-null and points to a mapped FDT, whose header is 40 bytes.
    let Some(size) = (unsafe { fdt_total_size(fdt) }) else {
        log!("host device tree has a bad header");
        return -crate::xen::EINVAL;
    };
    // SAFETY: the header says the blob is `size` bytes long, it is mapped and nothing writes
    // it during boot (see the function's contract).
    let blob = unsafe { core::slice::from_raw_parts(fdt, size) };
    match config::count_virtio_mmio_devices(blob) {
        Ok(count) => {
            crate::log::print_line(format_args!(
                "rust-ioreq v{} ready: {} xen,virtio-mmio-device node(s) in /chosen",
                rust_ioreq::VERSION,
                count
            ));
            0
        }
        Err(e) => {
            log!("{}", e);
            -crate::xen::EINVAL
        }
    }
}
