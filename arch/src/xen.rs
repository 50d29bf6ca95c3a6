//! Declarations of the Xen 4.17 functions the component calls: core services
//! (xen/include/xen/*.h), libfdt's sequential writer, and the C glue in
//! `xen/arch/arm/rust_ioreq.c` (declared in `include/rust_ioreq.h`).

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// Xen's `struct domain`, only ever handled by pointer.
#[repr(C)]
pub struct XenDomain {
    _opaque: [u8; 0],
}

/// Xen's `struct cpu_user_regs`, only ever handled by pointer.
#[repr(C)]
pub struct CpuUserRegs {
    _opaque: [u8; 0],
}

extern "C" {
    /// `void printk(const char *fmt, ...)`.
    pub fn printk(fmt: *const c_char, ...);
    /// `void noreturn panic(const char *fmt, ...)`.
    #[link_name = "panic"]
    pub fn xen_panic(fmt: *const c_char, ...) -> !;
    /// `void *_xmalloc(unsigned long size, unsigned long align)`.
    pub fn _xmalloc(size: c_ulong, align: c_ulong) -> *mut c_void;
    /// `void xfree(void *p)`.
    pub fn xfree(p: *mut c_void);

    /// libfdt: opens a node in a tree being written.
    pub fn fdt_begin_node(fdt: *mut c_void, name: *const c_char) -> c_int;
    /// libfdt: adds a property to the open node.
    pub fn fdt_property(
        fdt: *mut c_void,
        name: *const c_char,
        val: *const c_void,
        len: c_int,
    ) -> c_int;
    /// libfdt: closes the open node.
    pub fn fdt_end_node(fdt: *mut c_void) -> c_int;

    /// Takes a reference to `d` for configuration entry `index`, kept until
    /// `rust_xen_release_domain(index)`; false if the domain is already dying.
    pub fn rust_xen_hold_domain(index: c_uint, d: *mut XenDomain) -> bool;
    /// Marks `d` as a frontend: only frontends pay for the return-to-guest hook.
    pub fn rust_xen_mark_frontend(d: *mut XenDomain);
    /// Reserves `spi` in the domain's vGIC (`vgic_reserve_virq`).
    pub fn rust_xen_reserve_spi(d: *mut XenDomain, spi: c_uint) -> bool;
    /// Allocates a zeroed Xen page for backend entry `index`, page `page` (an ioreq page, the
    /// transport or the notify page: `abi_c::BACKEND_PAGES`), maps it at `gpa` in `d`,
    /// read-write or read-only, and keeps a reference to it until
    /// `rust_xen_release_domain(index)`. Returns Xen's mapping of it, or null.
    pub fn rust_xen_map_backend_page(
        index: c_uint,
        page: c_uint,
        d: *mut XenDomain,
        gpa: u64,
        writable: bool,
    ) -> *mut u8;
    /// Registers the doorbell MMIO handler of backend `d` at `[gpa, gpa + size)`.
    pub fn rust_xen_register_doorbell(d: *mut XenDomain, gpa: u64, size: u64) -> c_int;
    /// Maps the RAM pages of `frontend` at `[gpa, gpa + size)` into `backend` at `at`.
    pub fn rust_xen_map_ram(
        backend: *mut XenDomain,
        frontend: *mut XenDomain,
        gpa: u64,
        size: u64,
        at: u64,
    ) -> c_int;
    /// Removes from `backend` what `rust_xen_map_ram` mapped with the same arguments.
    pub fn rust_xen_unmap_ram(
        backend: *mut XenDomain,
        frontend: *mut XenDomain,
        gpa: u64,
        size: u64,
        at: u64,
    ) -> c_int;
    /// Grows the P2M pool of `d` by `pages` pages.
    pub fn rust_xen_grow_p2m_pool(d: *mut XenDomain, pages: u64) -> c_int;
    /// Creates one timer per vCPU of frontend entry `index` (whose domain was held); each
    /// calls `rust_ioreq_timeout(index, vcpu)` when it fires.
    pub fn rust_xen_init_timers(index: c_uint) -> c_int;
    /// (Re)arms the timer of vCPU `vcpu` of frontend entry `index` for `deadline` (ns).
    pub fn rust_xen_set_timer(index: c_uint, vcpu: c_uint, deadline: u64);
    /// Returns Xen's system time (`NOW()`, ns).
    pub fn rust_xen_now() -> u64;
    /// Stops entry `index`'s timers and, after an RCU grace period, drops every reference taken
    /// for it (ioreq pages, the domain).
    pub fn rust_xen_release_domain(index: c_uint);
    /// Raises `spi` in `d` (`vgic_inject_irq(d, NULL, spi, true)`).
    pub fn rust_xen_inject_spi(d: *mut XenDomain, spi: c_uint);
    /// Wakes vCPU `vcpu` of `d` if it is blocked in Xen.
    pub fn rust_xen_wake_vcpu(d: *mut XenDomain, vcpu: c_uint);
    /// `domain_crash(d)`.
    pub fn rust_xen_domain_crash(d: *mut XenDomain);
    /// Reads general-purpose register `n` (0..=30) of the trapping vCPU.
    pub fn rust_xen_guest_reg(regs: *const CpuUserRegs, n: c_uint) -> u64;
    /// Tells whether this pCPU has softirqs pending (`softirq_pending(smp_processor_id())`).
    pub fn rust_xen_softirq_pending() -> bool;
    /// Writes general-purpose register `n` (0..=30) of the trapping vCPU.
    pub fn rust_xen_set_guest_reg(regs: *mut CpuUserRegs, n: c_uint, value: u64);
}

/// Xen's `EINVAL`, returned negated across the C boundary.
pub const EINVAL: c_int = 22;
/// Xen's `ENOMEM`.
pub const ENOMEM: c_int = 12;
