//! Entry points called by the Xen glue (declared in `include/rust_ioreq.h`): boot-time set-up
//! while Xen builds the dom0less domains, then the trap, completion and doorbell paths.

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::sync::atomic::Ordering;

use rust_ioreq::abi::backend_layout::{self, window};
use rust_ioreq::abi::doorbell;
use rust_ioreq::config::{Config, HostFacts};
use rust_ioreq::dt::{self, DtWriter};
use rust_ioreq::engine::{Builder, DoorbellEvent, Engine, MmioOutcome, Trap, Work};
use rust_ioreq::ratelimit::RateLimit;
use rust_ioreq::report;
use rust_ioreq::syndrome::XenDecode;
use rust_ioreq::types::{DomId, Gpa, VcpuId, Width};

use crate::abi_c::*;
use crate::platform::XenPlatform;
use crate::state::{domain, BUDGETS, BUILDER, DOMAINS, ENGINE, NOTIFY_PAGE, PAGES, TRANSPORT_PAGE};
use crate::xen::{self, CpuUserRegs, XenDomain, EINVAL, ENOMEM};

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

/// Reads and validates the configuration; called once at boot, before `create_domUs()`.
/// Returns 0, or `-EINVAL` after logging what is wrong (node and property).
///
/// # Safety
/// `fdt` is Xen's `device_tree_flattened`: a mapped, complete host FDT that stays mapped and
/// unchanged while this runs.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_init(
    fdt: *const u8,
    gic_spis: c_uint,
    ipa_bits: c_uint,
) -> c_int {
    if fdt.is_null() {
        log!("no host device tree");
        return -EINVAL;
    }
    // SAFETY: `fdt` is non-null and points to a mapped FDT, whose header is 40 bytes.
    let Some(size) = (unsafe { fdt_total_size(fdt) }) else {
        log!("host device tree has a bad header");
        return -EINVAL;
    };
    // SAFETY: the header says the blob is `size` bytes long, it is mapped and nothing writes
    // it during boot (see the function's contract).
    let blob = unsafe { core::slice::from_raw_parts(fdt, size) };
    let facts = HostFacts {
        gic_spis,
        ipa_bits,
        // Passthrough partial device trees are not read: their `xen,reg` ranges are not
        // checked at boot (docs/binding.md).
        modules: None,
    };
    let config = match Config::from_fdt(blob, facts) {
        Ok(c) => c,
        Err(e) => {
            log!("{}", report::InvalidConfig(&e));
            return -EINVAL;
        }
    };
    crate::log::print_line(format_args!("{}", report::Banner(&config)));
    for d in config.devices() {
        log!("{}", report::DeviceLine(&config, d));
    }
    BUDGETS.call_once(|| core::array::from_fn(|_| RateLimit::new()));
    *BUILDER.lock() = Some(Builder::new(config));
    0
}

/// Records a dom0less domain Xen just created from the `/chosen` node whose full path is
/// `path` (`dt_node_full_name()`: unit address included, so `be` and `be@1` differ), and
/// prepares what it needs before it is constructed: a reference held on it, reserved SPIs, and
/// for a backend its ioreq pages and doorbell. Returns 0 or a negative errno after logging the
/// node concerned.
///
/// # Safety
/// `d` is the newly created domain; `path` is a NUL-terminated node path.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_domain_created(
    d: *mut XenDomain,
    path: *const c_char,
    domid: u16,
) -> c_int {
    // SAFETY: the caller passes a NUL-terminated string that outlives this call.
    let Ok(path) = (unsafe { CStr::from_ptr(path) }).to_str() else {
        return 0;
    };
    let mut guard = BUILDER.lock();
    let Some(builder) = guard.as_mut() else {
        return 0;
    };
    let index = match builder.domain_created(path, DomId(domid)) {
        Ok(Some(index)) => index,
        Ok(None) => return 0,
        Err(e) => {
            log!("{}: cannot bind domain d{}: entry {}", path, domid, e);
            return -EINVAL;
        }
    };
    // SAFETY: `d` is the live domain just created; the reference is dropped by
    // `rust_xen_release_domain` when Xen destroys it.
    if !unsafe { xen::rust_xen_hold_domain(index as c_uint, d) } {
        log!("{}: domain d{} is already dying", path, domid);
        return -EINVAL;
    }
    DOMAINS[index].store(d, Ordering::Release);
    let config = builder.config();
    if config
        .devices()
        .iter()
        .any(|dev| usize::from(dev.frontend) == index)
    {
        // SAFETY: `d` is the live domain just created.
        unsafe { xen::rust_xen_mark_frontend(d) };
    }
    for dev in config
        .devices()
        .iter()
        .filter(|dev| usize::from(dev.frontend) == index)
    {
        // SAFETY: `d` is a live domain whose vGIC was initialised by domain_create().
        if !unsafe { xen::rust_xen_reserve_spi(d, dev.spi.0) } {
            log!(
                "{}/{}: property 'interrupts': SPI {} cannot be reserved",
                path,
                dev.name,
                dev.spi.0
            );
            return -EINVAL;
        }
    }
    let Some(backend) = config.domains()[index].backend else {
        return 0;
    };
    // SAFETY: as above.
    if !unsafe { xen::rust_xen_reserve_spi(d, backend.notify_spi.0) } {
        log!(
            "{}: property 'xen,ioreq-notify-spi': SPI {} cannot be reserved",
            path,
            backend.notify_spi.0
        );
        return -EINVAL;
    }
    // SAFETY: `d` is live; the doorbell region does not overlap the domain's other handlers.
    let rc =
        unsafe { xen::rust_xen_register_doorbell(d, backend_layout::DOORBELL_GPA, doorbell::SIZE) };
    if rc != 0 {
        log!("{}: cannot register the doorbell ({})", path, rc);
        return rc;
    }
    log!("{}", report::BackendLine(config, index, DomId(domid)));
    0
}

/// libfdt's sequential writer as a `DtWriter`.
struct LibFdt(*mut c_void);

/// Copies `s` into a NUL-terminated buffer for libfdt.
fn c_name(s: &str) -> [u8; 64] {
    let mut buf = [0u8; 64];
    let n = s.len().min(63);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    buf
}

impl DtWriter for LibFdt {
    type Error = c_int;

    fn begin_node(&mut self, name: &str) -> Result<(), c_int> {
        let name = c_name(name);
        // SAFETY: `self.0` is the tree prepare_dtb_domU() is writing; `name` is NUL-terminated.
        match unsafe { xen::fdt_begin_node(self.0, name.as_ptr().cast()) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn property(&mut self, name: &str, value: &[u8]) -> Result<(), c_int> {
        let name = c_name(name);
        // Property values are at most a few dozen bytes.
        let len = value.len() as c_int;
        // SAFETY: as above; libfdt copies `len` bytes from `value`.
        match unsafe { xen::fdt_property(self.0, name.as_ptr().cast(), value.as_ptr().cast(), len) }
        {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn end_node(&mut self) -> Result<(), c_int> {
        // SAFETY: as above.
        match unsafe { xen::fdt_end_node(self.0) } {
            0 => Ok(()),
            e => Err(e),
        }
    }
}

/// Adds the component's nodes to the root of the DT Xen is generating for domain `domid`:
/// `virtio,mmio` nodes for a frontend, the backend node for a backend, their interrupts on the
/// guest GIC node `gic_phandle`. Returns 0 or libfdt's negative error.
///
/// # Safety
/// `fdt` is the tree being written by `prepare_dtb_domU()`, with the root node open.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_make_dt_nodes(
    domid: u16,
    fdt: *mut c_void,
    gic_phandle: u32,
) -> c_int {
    let guard = BUILDER.lock();
    let Some(builder) = guard.as_ref() else {
        return 0;
    };
    let config = builder.config();
    let Some(index) = (0..config.domains().len()).find(|&i| builder.domid(i) == Some(DomId(domid)))
    else {
        return 0;
    };
    let mut w = LibFdt(fdt);
    let result = dt::write_frontend_nodes(config, index, gic_phandle, &mut w).and_then(|()| {
        dt::write_backend_node(config, index, gic_phandle, |i| builder.domid(i), &mut w)
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            log!(
                "/chosen/{}: cannot add nodes to its device tree ({})",
                config.domains()[index].name,
                e
            );
            e
        }
    }
}

/// Freezes the configuration once every dom0less domain exists, creates the frontends' timers
/// and maps each frontend's RAM into its backends. Returns 0 or a negative errno after logging
/// why.
#[no_mangle]
pub extern "C" fn rust_ioreq_domains_built() -> c_int {
    let Some(builder) = BUILDER.lock().take() else {
        return 0;
    };
    let engine = match builder.freeze() {
        Ok(e) => e,
        Err(e) => {
            log!("cannot start: {:?}", e);
            return -EINVAL;
        }
    };
    let engine = ENGINE.call_once(|| engine);
    let config = engine.config();
    let frontends = (0..config.domains().len()).filter(|&f| {
        config
            .devices()
            .iter()
            .any(|d| usize::from(d.frontend) == f)
    });
    for f in frontends {
        // SAFETY: the frontend was created, held and constructed (freeze checked it).
        let rc = unsafe { xen::rust_xen_init_timers(f as c_uint) };
        if rc != 0 {
            log!(
                "{}: cannot create its timers ({})",
                config.domains()[f].name,
                rc
            );
            return rc;
        }
    }
    for b in 0..config.domains().len() {
        if let Err(rc) = connect_backend(config, b) {
            return rc;
        }
    }
    0
}

/// Gives backend `b` (a domain index; nothing for a domain that serves nobody) its P2M pool
/// growth, its ioreq pages and its frontends' RAM windows. Runs after every domain was
/// constructed: `construct_domU()` sets the P2M pool, and later Xens start it empty.
fn connect_backend(config: &Config, b: usize) -> Result<(), c_int> {
    let dom = &config.domains()[b];
    let Some(backend) = dom.backend else {
        return Ok(());
    };
    let bd = domain(b);
    // An explicit `xen,domain-p2m-mem-mb` was checked to cover the windows already.
    if dom.p2m_mem_mb.is_none() {
        let pages = config.window_p2m_pages(b);
        // SAFETY: `bd` is created, held and constructed (freeze checked it), not running yet.
        let rc = unsafe { xen::rust_xen_grow_p2m_pool(bd, pages) };
        if rc != 0 {
            log!(
                "{}: cannot grow its P2M pool by {} pages ({})",
                dom.name,
                pages,
                rc
            );
            return Err(rc);
        }
    }
    let ioreq_pages =
        (0..backend.frontends.len()).map(|k| (k, backend_layout::ioreq_page(k), true));
    let pages = ioreq_pages.chain([
        (TRANSPORT_PAGE, backend_layout::TRANSPORT_PAGE_GPA, true),
        // Only Xen writes the notify counts, and never reads them back: a backend that writes
        // the page confuses only itself. Read-only in its stage 2 would add nothing (a grant
        // could still map it writable) and would hang a vCPU that writes it (Xen 4.17 returns
        // from a permission fault on p2m_ram_ro without an abort when mem_access is off).
        (NOTIFY_PAGE, backend_layout::NOTIFY_PAGE_GPA, true),
    ]);
    for (index, gpa, writable) in pages {
        // SAFETY: `bd` is live and held; the glue allocates and maps a fresh page.
        let page = unsafe {
            xen::rust_xen_map_backend_page(b as c_uint, index as c_uint, bd, gpa, writable)
        };
        if page.is_null() {
            log!("{}: cannot map its page at {:#x}", dom.name, gpa);
            return Err(-ENOMEM);
        }
        PAGES[b][index].store(page, Ordering::Release);
    }
    for (k, &f) in backend.frontends.iter().enumerate() {
        let frontend = &config.domains()[usize::from(f)];
        for ram in frontend.ram() {
            let (gpa, size) = (ram.start().0, ram.size());
            // SAFETY: both domains are created, held and constructed; the glue maps only the
            // frontend's RAM pages, with a reference each that the backend's p2m keeps.
            let rc = unsafe {
                xen::rust_xen_map_ram(bd, domain(usize::from(f)), gpa, size, window(k) + gpa)
            };
            if rc != 0 {
                log!(
                    "{}: cannot map the RAM of {} at {:#x} ({})",
                    dom.name,
                    frontend.name,
                    window(k) + gpa,
                    rc
                );
                return Err(rc);
            }
        }
        log!("{}", report::WindowLine(config, b, k));
    }
    Ok(())
}

/// Handles a frontend's stage-2 data abort, before Xen's own IOREQ forwarding. Returns a
/// `RUST_IOREQ_MMIO_*` code.
///
/// # Safety
/// `trap` points to a filled `struct rust_ioreq_trap`; `regs` are the trapping vCPU's
/// registers.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_handle_mmio(
    trap: *const RustIoreqTrap,
    regs: *mut CpuUserRegs,
) -> c_int {
    let Some(engine) = ENGINE.get() else {
        return MMIO_NOT_MINE;
    };
    // SAFETY: the caller passes a valid, initialised structure; it is copied out at once.
    let t = unsafe { *trap };
    let xen_decode = match t.decode {
        DECODE_POST_INDEXED => XenDecode::PostIndexed {
            rn: t.post_rn,
            imm9: t.post_imm9,
        },
        DECODE_CACHE => XenDecode::CacheMaintenance,
        _ => XenDecode::Syndrome,
    };
    let trap = Trap {
        domid: DomId(t.domid),
        vcpu: VcpuId(t.vcpu),
        gpa: Gpa(t.gpa),
        hsr: t.hsr,
        xen_dabt: t.dabt,
        xen_decode,
    };
    // SAFETY: `regs` are the current vCPU's saved registers; the engine asks only for 0..=30.
    let read_reg = |n: u8| unsafe { xen::rust_xen_guest_reg(regs, c_uint::from(n)) };
    match engine.handle_mmio(&XenPlatform, &trap, read_reg) {
        MmioOutcome::NotMine => MMIO_NOT_MINE,
        MmioOutcome::Retry => MMIO_RETRY,
        MmioOutcome::Unavailable(why) => {
            glog!(
                engine.domain_index(trap.domid),
                "d{}v{}: access at {:#x} reads as a vanished device: {}",
                t.domid,
                t.vcpu,
                t.gpa,
                why
            );
            MMIO_RETRY
        }
        MmioOutcome::Handled => MMIO_HANDLED,
        MmioOutcome::Answered { write_reg } => {
            if let Some((n, value)) = write_reg {
                // SAFETY: `regs` are the current vCPU's saved registers; `n` is 0..=30 (a
                // decoded load's target other than XZR).
                unsafe { xen::rust_xen_set_guest_reg(regs, c_uint::from(n), value) };
            }
            MMIO_HANDLED
        }
        MmioOutcome::Abort(e) => {
            glog!(
                engine.domain_index(trap.domid),
                "d{}v{}: access at {:#x} refused: {:?}",
                t.domid,
                t.vcpu,
                t.gpa,
                e
            );
            MMIO_ABORT
        }
    }
}

/// Runs on a vCPU's way back to the guest. Returns a `RUST_IOREQ_WORK_*` code and, for
/// `COMPLETE`, fills `out`. With `spin`, a vCPU waiting on a polling backend spins for up to
/// its `xen,ioreq-poll-us` first (the glue asks once per return, before it blocks the vCPU).
///
/// # Safety
/// `out` points to writable storage for a `struct rust_ioreq_completion`.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_vcpu_work(
    domid: u16,
    vcpu: u32,
    spin: bool,
    out: *mut RustIoreqCompletion,
) -> c_int {
    let Some(engine) = ENGINE.get() else {
        return WORK_IDLE;
    };
    let (p, domid, vcpu) = (&XenPlatform, DomId(domid), VcpuId(vcpu));
    let work = if spin {
        engine.vcpu_work_spinning(p, domid, vcpu)
    } else {
        engine.vcpu_work(p, domid, vcpu)
    };
    match work {
        Work::Idle => WORK_IDLE,
        Work::Waiting => WORK_WAITING,
        Work::Complete(c) => {
            let (write_reg, reg, value) = match c.write_reg {
                Some((r, v)) => (1, r, v),
                None => (0, 0, 0),
            };
            let (post_index, post_rn, post_imm9) = match c.post_index {
                Some((rn, imm)) => (1, rn, imm),
                None => (0, 0, 0),
            };
            let completion = RustIoreqCompletion {
                value,
                hsr: c.hsr,
                write_reg,
                reg,
                post_index,
                post_rn,
                post_imm9,
                pad0: 0,
                pad1: 0,
            };
            // SAFETY: the caller passes writable storage of the right type.
            unsafe { out.write(completion) };
            WORK_COMPLETE
        }
    }
}

/// Handles a backend's access to its doorbell page at `gpa`. Returns 0 (with `*value` set for
/// reads) or `-EINVAL` when the access is refused (the glue then injects a data abort).
///
/// # Safety
/// `value` points to a readable and writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn rust_ioreq_doorbell(
    domid: u16,
    gpa: u64,
    size_log2: c_uint,
    is_write: bool,
    value: *mut u64,
) -> c_int {
    let Some(engine) = ENGINE.get() else {
        return -EINVAL;
    };
    let width = Width::from_log2(size_log2).unwrap_or(Width::Byte);
    let offset = gpa.wrapping_sub(backend_layout::DOORBELL_GPA);
    let index = engine.domain_index(DomId(domid));
    if is_write {
        // SAFETY: the caller passes a valid pointer; only the low 32 bits are a register value.
        let v = unsafe { value.read() } as u32;
        match engine.doorbell_write(&XenPlatform, DomId(domid), offset, width, v) {
            Ok(DoorbellEvent::Online) => {
                // Once per backend: later ONLINE writes are `OnlineAgain`, never logged.
                log!("d{}: backend online", domid);
                // How each of its devices is served from now on (the transport record must be
                // published before ONLINE).
                if let Some(b) = index {
                    let config = engine.config();
                    for (i, dev) in config.devices().iter().enumerate() {
                        if usize::from(dev.backend) == b {
                            log!(
                                "d{}: device {} ({}/{}): {}",
                                domid,
                                dev.index_in_backend,
                                config.domains()[usize::from(dev.frontend)].name,
                                dev.name,
                                engine.transport_kind(&XenPlatform, i)
                            );
                        }
                    }
                }
                0
            }
            Ok(_) => 0,
            Err(e) => {
                glog!(
                    index,
                    "d{}: doorbell write {:#x} at +{:#x} refused: {}",
                    domid,
                    v,
                    offset,
                    e
                );
                -EINVAL
            }
        }
    } else {
        match engine.doorbell_read(DomId(domid), offset, width) {
            Ok(v) => {
                // SAFETY: as above.
                unsafe { value.write(u64::from(v)) };
                0
            }
            Err(e) => {
                glog!(
                    index,
                    "d{}: doorbell read at +{:#x} refused: {}",
                    domid,
                    offset,
                    e
                );
                -EINVAL
            }
        }
    }
}

/// Called when domain `domid` shuts down or crashes: if it is a backend, its frontends stop
/// waiting for it (their accesses complete as to a vanished device).
#[no_mangle]
pub extern "C" fn rust_ioreq_domain_shutdown(domid: u16) {
    let Some(engine) = ENGINE.get() else { return };
    if engine.domain_shutdown(&XenPlatform, DomId(domid)) {
        if let Some(index) = engine.domain_index(DomId(domid)) {
            log!(
                "backend {} (d{}) is gone: its devices now read as all ones",
                engine.config().domains()[index].name,
                domid
            );
        }
    }
}

/// Called when Xen destroys domain `domid` (`domain_kill()`, from a toolstack), possibly
/// without a shutdown first. The engine forgets the domid (a later domain reusing it is a
/// stranger) and treats the domain as dead; its RAM windows leave its backends; the component's
/// references on it are dropped after an RCU grace period.
#[no_mangle]
pub extern "C" fn rust_ioreq_domain_destroyed(domid: u16) {
    let Some(engine) = ENGINE.get() else { return };
    let Some(index) = engine.domain_destroyed(&XenPlatform, DomId(domid)) else {
        return;
    };
    let config = engine.config();
    log!(
        "{} (d{}) destroyed: forgetting it",
        config.domains()[index].name,
        domid
    );
    unmap_windows_of(engine, index);
    crate::state::forget(index);
    // SAFETY: `index` was held at creation; nothing loads its pointers any more.
    unsafe { xen::rust_xen_release_domain(index as c_uint) };
}

/// Removes frontend `index`'s RAM from the backends still alive that map it, so that its
/// pages can be freed.
fn unmap_windows_of(engine: &Engine, index: usize) {
    let config = engine.config();
    for (b, dom) in config.domains().iter().enumerate() {
        let Some(backend) = dom.backend else { continue };
        let Some(k) = backend
            .frontends
            .iter()
            .position(|&f| usize::from(f) == index)
        else {
            continue;
        };
        let (bd, fd) = (domain(b), domain(index));
        if bd.is_null() || fd.is_null() {
            continue;
        }
        for ram in config.domains()[index].ram() {
            let (gpa, size) = (ram.start().0, ram.size());
            // SAFETY: both domains are held (non-null in `DOMAINS`); the glue removes only the
            // foreign mappings of `fd`'s pages it added at boot.
            let rc = unsafe { xen::rust_xen_unmap_ram(bd, fd, gpa, size, window(k) + gpa) };
            if rc != 0 {
                log!(
                    "{}: cannot unmap the RAM of a destroyed frontend ({})",
                    dom.name,
                    rc
                );
            }
        }
    }
}

/// Runs when the response timer of vCPU `vcpu` of frontend entry `index` fires (timer
/// softirq): gives up on a request its backend left unanswered past its deadline.
#[no_mangle]
pub extern "C" fn rust_ioreq_timeout(index: c_uint, vcpu: c_uint) {
    let Some(engine) = ENGINE.get() else { return };
    let Some(e) = engine.expire(&XenPlatform, index as usize, VcpuId(vcpu)) else {
        return;
    };
    let config = engine.config();
    let device = &config.devices()[e.device];
    let backend = &config.domains()[usize::from(device.backend)];
    glog!(
        Some(usize::from(device.backend)),
        "backend {}{} did not answer {}v{}'s {} at {}+{:#x} within {} ms: {} is broken for it",
        backend.name,
        if e.backend_online {
            ""
        } else {
            " (not online yet)"
        },
        config.domains()[e.frontend].name,
        vcpu,
        if e.write { "write" } else { "read" },
        device.name,
        e.offset,
        backend.backend.map_or(0, |b| b.timeout_ms),
        device.name
    );
}
