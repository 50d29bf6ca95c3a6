//! The event-channel ping-pong of the `evtchn_roundtrip` row: upstream Xen's own signalling
//! primitive, a static event channel between two dom0less domUs (Xen
//! docs/misc/arm/device-tree/booting.txt "Static Event Channel"; xen/arch/arm/domain_build.c
//! `alloc_static_evtchn` binds the ports at boot). Both sides are this guest: the timing side
//! sends, waits in `wfi` for the echo, and times the whole; the peer (`bench.mode=evtchn-peer`)
//! waits in `wfi` and echoes every event it gets.
//!
//! What a guest has to do, as Linux's drivers/xen/events/events_2l.c does it on Arm:
//! - map its shared_info page (`XENMEM_add_to_physmap`, `XENMAPSPACE_shared_info`) over a page of
//!   its own RAM; Xen keeps the 2-level pending bits and the vCPU's `evtchn_upcall_pending` in it;
//! - take the upcall interrupt: the PPI of the `/hypervisor` (`xen,xen`) node Xen adds to a domU
//!   with `xen,enhanced` (`make_hypervisor_node`, `GUEST_EVTCHN_PPI` 31);
//! - on the interrupt: clear `evtchn_upcall_pending`, then swap `evtchn_pending_sel` to 0, then
//!   swap each selected word of `evtchn_pending` to 0, then end the interrupt. Xen
//!   (`evtchn_2l_set_pending`) sets the pending bit, then the selector bit, then the upcall flag,
//!   and raises the PPI only when each was clear: clearing them in the opposite order means an
//!   event that lands meanwhile is either seen in a word about to be swapped or raises the PPI
//!   again. With the old vGIC (Xen's default) the PPI is injected once per 0 -> 1 change of
//!   `evtchn_upcall_pending`, so leaving it set would stop all further upcalls.
//!
//! Layout of shared_info on Arm64 (public/xen.h; `xen_ulong_t` is 64 bits, one legacy vCPU):
//! `vcpu_info[0]` at 0 (48 bytes: `evtchn_upcall_pending` byte at 0, `evtchn_pending_sel` at 8),
//! `evtchn_pending[64]` at 48, `evtchn_mask[64]` at 560 (all 0 in a new domain: every port
//! unmasked). Checked against Xen's headers with aarch64-linux-gnu-gcc when this was written.
//!
//! The guest runs with PSTATE.I set: `wfi` wakes on a pending interrupt even when it is masked,
//! and the interrupt is acknowledged by reading ICC_IAR1_EL1 directly, with no vector involved.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use fdt::node::FdtNode;
use guest_common::devicetree::DeviceTree;
use guest_common::gic::{self, IntId, Trigger};
use guest_common::hypercall;
use guest_common::timer::{self, Deadline};

/// Words of a 4 KiB page.
const PAGE_WORDS: usize = 512;
/// Word of shared_info holding vCPU 0's `evtchn_upcall_pending` (its byte 0, bit 0).
const UPCALL_WORD: usize = 0;
/// Word of shared_info holding vCPU 0's `evtchn_pending_sel`.
const SEL_WORD: usize = 1;
/// First word of `evtchn_pending` (byte offset 48).
const PENDING_WORD: usize = 6;
/// Ports a 2-level event channel ABI has on a 64-bit guest (64 selector bits x 64 ports).
pub const MAX_PORTS: u32 = 64 * 64;
/// The upcall PPI when the device tree does not say (`GUEST_EVTCHN_PPI`, public/arch-arm.h).
const DEFAULT_UPCALL: IntId = IntId::from_raw(31);
/// INTIDs from 1020 are special; 1023: nothing pending (GICv3 §2.2.1).
const SPECIAL_FIRST: u32 = 1020;
/// CNTV_CTL_EL0.ISTATUS: the virtual timer's condition is met.
const CNTV_ISTATUS: u64 = 1 << 2;

/// The page shared_info is mapped over: a page of this guest's .bss, which Xen's page replaces
/// in the stage-2 table. Only ever accessed with atomics, as Xen writes it at any time.
#[repr(C, align(4096))]
struct SharedInfoPage([AtomicU64; PAGE_WORDS]);

static SHARED_INFO: SharedInfoPage = SharedInfoPage([const { AtomicU64::new(0) }; PAGE_WORDS]);

/// Interrupts acknowledged while waiting that were neither the upcall nor the deadline.
static STRAY_IRQS: AtomicU64 = AtomicU64::new(0);
/// Upcalls that brought no event of the channel's port (none in a ping-pong, where one event
/// is in flight at a time).
static EMPTY_UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Returns the stray interrupts and the empty upcalls seen so far (both should stay 0).
pub fn anomalies() -> (u64, u64) {
    (
        STRAY_IRQS.load(Ordering::Relaxed),
        EMPTY_UPCALLS.load(Ordering::Relaxed),
    )
}

/// Adds one to a counter only this vCPU writes.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Why the event channel cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum SetupError {
    /// The port is 0 or beyond the 2-level ABI.
    BadPort(u32),
    /// `XENMEM_add_to_physmap` failed with this errno.
    MapSharedInfo(i64),
    /// The GIC could not be set up.
    Gic(gic::GicError),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::BadPort(p) => write!(f, "port {p} is not a 2-level event channel port"),
            SetupError::MapSharedInfo(e) => {
                write!(f, "XENMEM_add_to_physmap(shared_info) returned {e}")
            }
            SetupError::Gic(e) => write!(f, "GIC: {e}"),
        }
    }
}

/// One end of the static event channel, set up: shared_info mapped, the upcall PPI enabled.
/// Used from the boot vCPU only.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    port: u32,
    upcall: IntId,
}

/// How a wait for an event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The event of the channel's port arrived.
    Event,
    /// The deadline passed first.
    TimedOut,
}

/// Returns the upcall interrupt of the `/hypervisor` node (compatible `xen,xen`): its
/// `interrupts` is one GIC specifier `<type number flags>` (type 1 = PPI: INTID 16 + number).
/// `None` when there is no such node or its specifier is not a PPI.
pub fn upcall_from_dt(dt: &DeviceTree) -> Option<IntId> {
    let node = dt.root_children().find(|n: &FdtNode<'_, 'static>| {
        n.compatible()
            .is_some_and(|c| c.all().any(|s| s == "xen,xen"))
    })?;
    let cells = node.property("interrupts")?.value;
    let cell = |i: usize| {
        cells
            .get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    match (cell(0)?, cell(1)?) {
        (1, n) if n < 16 => Some(IntId::ppi(n)),
        _ => None,
    }
}

impl Channel {
    /// Maps shared_info, sets up the GIC and enables `upcall` (the PPI of the DT, or Xen's
    /// default when the DT has none) on this vCPU.
    pub fn open(port: u32, upcall: Option<IntId>) -> Result<Self, SetupError> {
        if port == 0 || port >= MAX_PORTS {
            return Err(SetupError::BadPort(port));
        }
        let page = (&raw const SHARED_INFO) as u64;
        // SAFETY: SHARED_INFO is a page-aligned static that nothing but this module touches, and
        // only with atomics: Xen's page taking its place changes nothing for the rest of the
        // guest.
        let rc = unsafe { hypercall::map_shared_info(page) };
        if rc != 0 {
            return Err(SetupError::MapSharedInfo(rc));
        }
        let upcall = upcall.unwrap_or(DEFAULT_UPCALL);
        gic::init_distributor()
            .and_then(|()| gic::init_cpu())
            .and_then(|()| gic::enable(upcall, Trigger::Level))
            .map_err(SetupError::Gic)?;
        Ok(Channel { port, upcall })
    }

    /// Returns the local port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Returns the upcall interrupt.
    pub fn upcall(&self) -> IntId {
        self.upcall
    }

    /// Sends an event to the other end; returns Xen's result (0 or a negative errno).
    #[inline(always)]
    pub fn send(&self) -> i64 {
        hypercall::evtchn_send(self.port)
    }

    /// Clears the upcall flag, the selector and the selected pending words (in that order, see
    /// the head of this file); returns whether this channel's port was pending.
    #[inline(always)]
    fn take_events(&self) -> bool {
        let words = &SHARED_INFO.0;
        words[UPCALL_WORD].fetch_and(!1, Ordering::AcqRel);
        let mut sel = words[SEL_WORD].swap(0, Ordering::AcqRel);
        let mut mine = false;
        while sel != 0 {
            let word = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            let bits = words[PENDING_WORD + word].swap(0, Ordering::AcqRel);
            if word == (self.port / 64) as usize && bits & (1 << (self.port % 64)) != 0 {
                mine = true;
            }
        }
        mine
    }

    /// Waits in `wfi` for an event on the port. With `deadline`, the virtual timer is armed for
    /// it (before the caller starts its clock, by [`arm`]) and its expiry ends the wait.
    #[inline(always)]
    pub fn wait(&self, deadline: bool) -> Wait {
        loop {
            let iar = acknowledge();
            let intid = (iar & 0xff_ffff) as u32;
            if intid >= SPECIAL_FIRST {
                // Nothing pending: sleep until something is (masked interrupts wake `wfi` too).
                // SAFETY: `wfi` only waits; it touches no memory and no registers.
                unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
                continue;
            }
            let id = IntId::from_raw(intid);
            let outcome = if id == self.upcall {
                if self.take_events() {
                    Some(Wait::Event)
                } else {
                    bump(&EMPTY_UPCALLS);
                    None
                }
            } else if deadline && id == timer::VIRTUAL_TIMER {
                timer_expired().then_some(Wait::TimedOut)
            } else {
                bump(&STRAY_IRQS);
                None
            };
            end_interrupt(iar);
            if let Some(outcome) = outcome {
                if outcome == Wait::TimedOut {
                    timer::disarm();
                }
                return outcome;
            }
        }
    }
}

/// Arms the virtual timer for a wait of at most `ms` (see [`Channel::wait`]).
#[inline(always)]
pub fn arm(ms: u64) {
    timer::arm(Deadline::after_ms(ms));
}

/// Reads ICC_IAR1_EL1: acknowledges this vCPU's highest-priority pending Group 1 interrupt.
#[inline(always)]
fn acknowledge() -> u64 {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt of this vCPU's CPU interface; it
    // touches no memory.
    unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nomem, nostack)) };
    iar
}

/// Writes ICC_EOIR1_EL1: ends (EOImode 0: and deactivates) the acknowledged interrupt `iar`.
#[inline(always)]
fn end_interrupt(iar: u64) {
    // SAFETY: writing back the value ICC_IAR1_EL1 returned ends that interrupt; no memory.
    unsafe { asm!("msr S3_0_C12_C12_1, {}", in(reg) iar, options(nomem, nostack)) };
}

/// Tells whether the virtual timer really expired. Xen 4.17 may inject the timer PPI into a vCPU
/// whose timer is not due (guest-common's timer.rs explains); such an interrupt re-arms it.
fn timer_expired() -> bool {
    let ctl: u64;
    // SAFETY: reading CNTV_CTL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack, preserves_flags)) };
    if ctl & CNTV_ISTATUS != 0 {
        return true;
    }
    // SAFETY: ENABLE = 1, IMASK = 0 re-arms this vCPU's timer at its unchanged CVAL.
    unsafe {
        asm!("msr cntv_ctl_el0, {}", "isb", in(reg) 1u64, options(nomem, nostack, preserves_flags))
    };
    false
}
