//! The Xen hypercalls the test guests use: console output, shutdown, the version query, the two
//! memory operations a hostile guest uses to take pages out of its own physmap, and the two the
//! benchmark's event-channel ping-pong needs (mapping shared_info, sending an event) (Xen public
//! headers `arch-arm.h` "Hypercall Calling Convention", `xen.h` console_io, `sched.h`
//! SCHEDOP_shutdown, `version.h` XENVER_version, `memory.h` XENMEM_decrease_reservation,
//! XENMEM_remove_from_physmap and XENMEM_add_to_physmap, `event_channel.h` EVTCHNOP_send).

use core::arch::asm;

/// `__HYPERVISOR_memory_op` (xen.h).
const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_xen_version` (xen.h).
const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io` (xen.h).
const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_sched_op` (xen.h).
const HYPERVISOR_SCHED_OP: u64 = 29;
/// `__HYPERVISOR_event_channel_op` (xen.h).
const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `EVTCHNOP_send` (event_channel.h).
const EVTCHNOP_SEND: u64 = 4;
/// `XENMEM_add_to_physmap` (memory.h).
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info` (memory.h): `idx` 0 is the shared_info page.
const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `CONSOLEIO_write` (xen.h).
const CONSOLEIO_WRITE: u64 = 0;
/// `XENVER_version` (version.h): returns `major << 16 | minor`, reads and writes no memory.
const XENVER_VERSION: u64 = 0;
/// `SCHEDOP_shutdown` (sched.h).
const SCHEDOP_SHUTDOWN: u64 = 2;
/// `XENMEM_decrease_reservation` (memory.h).
const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// `XENMEM_remove_from_physmap` (memory.h).
const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// `DOMID_SELF` (xen.h).
const DOMID_SELF: u16 = 0x7ff0;
/// Bytes in a Xen page frame (`XEN_PAGE_SHIFT` 12 on Arm).
const XEN_PAGE_SHIFT: u32 = 12;

/// Why the domain shuts down (`SHUTDOWN_*` in sched.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: the domain exited normally.
    Poweroff = 0,
    /// `SHUTDOWN_crash`: the domain crashed.
    Crash = 3,
}

/// `struct sched_shutdown` (sched.h).
#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);

/// `struct xen_memory_reservation` (memory.h) as Arm lays it out: guest handles and
/// `xen_ulong_t` are 64 bits on Arm (arch-arm.h `__guest_handle_64_*`, `xen_ulong_t`).
#[repr(C)]
struct MemoryReservation {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
}

const _: () = assert!(core::mem::size_of::<MemoryReservation>() == 32);

/// `struct xen_remove_from_physmap` (memory.h): `domid_t`, then a 64-bit `xen_pfn_t`.
#[repr(C)]
struct RemoveFromPhysmap {
    domid: u16,
    gpfn: u64,
}

const _: () = assert!(core::mem::size_of::<RemoveFromPhysmap>() == 16);

/// `struct xen_add_to_physmap` (memory.h): `domid_t`, `uint16_t size`, `unsigned int space`,
/// then a 64-bit `xen_ulong_t idx` and `xen_pfn_t gpfn`.
#[repr(C)]
struct AddToPhysmap {
    domid: u16,
    size: u16,
    space: u32,
    idx: u64,
    gpfn: u64,
}

const _: () = assert!(core::mem::size_of::<AddToPhysmap>() == 24);

/// `struct evtchn_send` (event_channel.h): the local port.
#[repr(C)]
struct EvtchnSend {
    port: u32,
}

/// Issues hypercall `nr` with three arguments and returns Xen's result (x0).
///
/// # Safety
///
/// The arguments must be what hypercall `nr` expects; in particular every argument that is a
/// guest address must point to memory of this guest that is valid for what Xen does with it.
unsafe fn hypercall3(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: `hvc #0xEA1` traps to Xen, which may clobber x16 and the argument registers and
    // returns in x0 (all declared below); it may read memory the arguments point to, which the
    // caller vouches for, so the asm is not `nomem`. It does not touch the stack.
    unsafe {
        asm!(
            "hvc #0xEA1",
            inlateout("x0") a0 => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x16") nr => _,
            options(nostack),
        );
    }
    ret
}

/// Writes `bytes` to the Xen console (Xen prefixes each line with `(dN) `).
///
/// Returns Xen's result: 0 on success or a negative errno.
pub fn console_write(bytes: &[u8]) -> i64 {
    // Lengths are bounded by the caller's buffers; usize and u64 are the same width on aarch64.
    let len = bytes.len() as u64;
    // SAFETY: CONSOLEIO_write reads `len` bytes at the given (virtual) address, which Xen
    // translates through this guest's stage 1. `bytes` is a live slice in this guest's RAM,
    // mapped readable by the identity map (`mmu.rs`).
    unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE,
            len,
            bytes.as_ptr() as u64,
        )
    }
}

/// Returns Xen's version as `major << 16 | minor` (`XENVER_version`), or a negative errno.
///
/// The cheapest hypercall without side effects (xen/common/kernel.c `do_xen_version`): the
/// benchmark guest uses it as the null hypercall.
pub fn xen_version() -> i64 {
    // SAFETY: XENVER_version takes no guest buffer (the pointer argument is unused and 0) and
    // changes no state.
    unsafe { hypercall3(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0) }
}

/// Asks Xen to release the page at guest-physical address `gpa` from this domain
/// (`XENMEM_decrease_reservation`, one extent of order 0): Xen removes it from the physmap and
/// drops the domain's allocation reference. Returns the number of extents released (1 or 0) or
/// a negative errno.
///
/// # Safety
/// Nothing of this guest may use the page afterwards: accesses to `gpa` fault from then on.
pub unsafe fn decrease_reservation(gpa: u64) -> i64 {
    let gfn = gpa >> XEN_PAGE_SHIFT;
    let reservation = MemoryReservation {
        extent_start: core::ptr::addr_of!(gfn) as u64,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    // SAFETY: XENMEM_decrease_reservation reads the reservation and `nr_extents` frame numbers
    // from `extent_start`; both are locals on this guest's stack that outlive the call (GPA =
    // VA, or an identity map). The caller vouches for losing the page.
    unsafe {
        hypercall3(
            HYPERVISOR_MEMORY_OP,
            XENMEM_DECREASE_RESERVATION,
            core::ptr::addr_of!(reservation) as u64,
            0,
        )
    }
}

/// Asks Xen to remove whatever this domain has mapped at guest-physical address `gpa` from
/// its physmap (`XENMEM_remove_from_physmap`). Returns 0 or a negative errno.
///
/// # Safety
/// As for [`decrease_reservation`]: accesses to `gpa` fault from then on.
pub unsafe fn remove_from_physmap(gpa: u64) -> i64 {
    let request = RemoveFromPhysmap {
        domid: DOMID_SELF,
        gpfn: gpa >> XEN_PAGE_SHIFT,
    };
    // SAFETY: XENMEM_remove_from_physmap reads one `struct xen_remove_from_physmap` at the given
    // address, a local of this guest's stack that outlives the call. The caller vouches for
    // losing the mapping.
    unsafe {
        hypercall3(
            HYPERVISOR_MEMORY_OP,
            XENMEM_REMOVE_FROM_PHYSMAP,
            core::ptr::addr_of!(request) as u64,
            0,
        )
    }
}

/// Maps this domain's shared_info page at guest-physical address `gpa` (page-aligned)
/// (`XENMEM_add_to_physmap`, `XENMAPSPACE_shared_info`). Returns 0 or a negative errno.
///
/// # Safety
/// Whatever was at `gpa` is replaced by the shared_info page, which Xen writes at any time
/// (event-channel pending bits, the vCPU's `evtchn_upcall_pending`): nothing of this guest may
/// use `gpa`'s page as its own memory from then on, and reads of it must be atomic or volatile.
pub unsafe fn map_shared_info(gpa: u64) -> i64 {
    let request = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: gpa >> XEN_PAGE_SHIFT,
    };
    // SAFETY: XENMEM_add_to_physmap reads one `struct xen_add_to_physmap` at the given address,
    // a local of this guest's stack that outlives the call. The caller vouches for the page.
    unsafe {
        hypercall3(
            HYPERVISOR_MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP,
            core::ptr::addr_of!(request) as u64,
            0,
        )
    }
}

/// Sends an event on this domain's event channel `port` (`EVTCHNOP_send`). Returns 0 or a
/// negative errno.
pub fn evtchn_send(port: u32) -> i64 {
    let request = EvtchnSend { port };
    // SAFETY: EVTCHNOP_send reads one `struct evtchn_send` at the given address, a local of this
    // guest's stack that outlives the call; it only signals the port's other end.
    unsafe {
        hypercall3(
            HYPERVISOR_EVENT_CHANNEL_OP,
            EVTCHNOP_SEND,
            core::ptr::addr_of!(request) as u64,
            0,
        )
    }
}

/// Shuts this domain down for `reason` and never returns.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: SCHEDOP_shutdown reads one `struct sched_shutdown` at the given (virtual) address;
    // `arg` is such a struct on this guest's stack (identity-mapped RAM, `mmu.rs`) and outlives
    // the call.
    unsafe {
        hypercall3(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_SHUTDOWN,
            core::ptr::addr_of!(arg) as u64,
            0,
        );
    }
    // Xen deschedules a domain that shut down; should the call ever return, park the vCPU.
    loop {
        // SAFETY: `wfi` only waits for an interrupt; it touches no memory and no registers.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
