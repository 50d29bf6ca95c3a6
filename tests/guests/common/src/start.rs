//! Image header and entry code of the boot vCPU (Linux Documentation/arm64/booting.rst §3-4);
//! the exception vectors it installs are in `exception.rs`.
//!
//! Xen copies the flat image to 0x40080000 and enters `_start` at EL1 with the MMU and caches off
//! and x0 = guest-physical address of the device tree Xen generated for this domain. The entry
//! code turns the MMU and caches on before anything else (`mmu.rs`: an identity map, so VA = GPA
//! throughout, RAM Normal Write-Back, MMIO Device), then sets up the stack and zeroes .bss through
//! the cacheable mapping: nothing is written with the MMU off, so no cache maintenance is needed.
//!
//! The target's `+strict-align` (a default of aarch64-unknown-none-softfloat) stays: Device memory
//! takes an Alignment fault on any unaligned access whatever the MMU does, and with it the
//! compiler never emits one, so no code path can turn into an unaligned MMIO access. Normal
//! memory would allow them; the guests lose little by not using them. The guest never touches
//! FP/SIMD (softfloat target).

use core::arch::global_asm;

use crate::devicetree::{DeviceTree, DtError};
use crate::hypercall::{self, ShutdownReason};
use crate::scenario;

// The 64-byte arm64 Image header, then the entry code. Header fields (booting.rst §4):
//   code0/code1   branch to the real entry, then a reserved word
//   text_offset   0x80000: Xen loads the image at RAM base + text_offset
//   image_size    memory the image needs from its load address, including .bss and the stack
//   flags         bit 0 = 0 little endian, bits 1-2 = 1 4 KiB pages, bit 3 = 0: the image is
//                 linked at a fixed address, so it wants to sit near the base of RAM
//   magic at 0x38 "ARM\x64" = 0x644d5241 little endian
global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       __guest_entry
    .long   0
    .quad   0x80000
    .quad   __image_size
    .quad   0x2
    .quad   0
    .quad   0
    .quad   0
    .long   0x644d5241
    .long   0

__guest_entry:
    mov     x19, x0

    adrp    x1, __guest_vectors
    add     x1, x1, :lo12:__guest_vectors
    msr     vbar_el1, x1
    isb

    bl      __guest_mmu_on

    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    mov     x0, x19
    bl      __guest_rust_start
3:  wfi
    b       3b
"#
);

/// What Xen handed this guest at boot. Only the entry code creates it, so the device tree address
/// it holds is the one Xen passed in x0.
#[derive(Debug)]
pub struct Boot {
    fdt_addr: usize,
}

impl Boot {
    /// Returns the guest-physical address of the device tree blob (x0 at entry).
    pub fn fdt_addr(&self) -> usize {
        self.fdt_addr
    }

    /// Parses the device tree Xen generated for this guest.
    pub fn device_tree(&self) -> Result<DeviceTree, DtError> {
        // SAFETY: `fdt_addr` is x0 from the boot protocol: the address of a blob Xen wrote into
        // this guest's RAM, which nothing in the guest writes to (`from_addr` also rejects a
        // blob that overlaps the guest's own image, .bss and stack).
        unsafe { DeviceTree::from_addr(self.fdt_addr) }
    }
}

extern "Rust" {
    /// The guest binary's main function, defined by [`entry!`](crate::entry).
    fn __guest_main(boot: &Boot);
}

/// Runs the guest: learns the scenario name from the bootargs, calls the guest's main function,
/// and powers the domain off when it returns.
#[no_mangle]
extern "C" fn __guest_rust_start(fdt_addr: usize) -> ! {
    let boot = Boot { fdt_addr };
    if let Some(name) = boot
        .device_tree()
        .ok()
        .and_then(|dt| dt.bootargs())
        .and_then(scenario::parse_name)
    {
        scenario::set_name(name);
    }
    // SAFETY: `__guest_main` is defined by `entry!` in the guest binary with exactly this
    // signature (the macro type-checks the user function against `fn(&Boot)`).
    unsafe { __guest_main(&boot) };
    hypercall::shutdown(ShutdownReason::Poweroff)
}

/// Defines the guest's entry point: `entry!(main)` with `fn main(boot: &Boot)`.
///
/// When `main` returns the domain powers off; a panic reports a FAIL line and crashes it.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Entry point called by guest-common after the runtime is set up.
        #[no_mangle]
        fn __guest_main(boot: &$crate::Boot) {
            let main: fn(&$crate::Boot) = $main;
            main(boot)
        }
    };
}

/// Returns the guest-physical range `[start, end)` this image occupies, .bss and stack included.
pub(crate) fn image_bounds() -> (usize, usize) {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    (
        (&raw const __image_start) as usize,
        (&raw const __image_end) as usize,
    )
}
