//! GICv3 for the test guests (Arm IHI 0069H, GICv3/v4 architecture specification): distributor
//! and redistributor set-up through Xen's vGIC (xen/arch/arm/vgic-v3.c), the CPU interface through
//! the ICC_* system registers (§12.2), and interrupt counting for the IRQ vector.
//!
//! The layout is Xen's for every domU (public/arch-arm.h): distributor at `GUEST_GICV3_GICD_BASE`
//! 0x03001000, redistributors from `GUEST_GICV3_GICR0_BASE` 0x03020000, one 128 KiB frame pair
//! (RD_base + SGI_base) per vCPU. All interrupts are Group 1 Non-secure with one priority; the
//! guest takes them only inside [`wait_for_irq`], which unmasks PSTATE.I around `wfi`. Each IRQ
//! taken is acknowledged, counted per vCPU and INTID, and ended (EOImode 0: EOI also deactivates).

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::mmio;
use crate::smp::{cpu_index, mpidr, MAX_CPUS};
use crate::timer::{self, Deadline};

/// Guest-physical base of the distributor.
pub const GICD_BASE: usize = 0x0300_1000;
/// Guest-physical base of vCPU 0's redistributor.
pub const GICR_BASE: usize = 0x0302_0000;
/// Size of the redistributor region Xen gives a domU (`GUEST_GICV3_GICR0_SIZE`, 16 MiB).
const GICR_REGION_SIZE: usize = 0x0100_0000;
/// Distance between two vCPUs' redistributors: RD_base and SGI_base, 64 KiB each (§12.10).
const GICR_STRIDE: usize = 0x2_0000;
/// Offset of the SGI_base frame (SGI/PPI registers) in a redistributor.
const GICR_SGI_OFFSET: usize = 0x1_0000;

// Distributor registers (§12.9).
const GICD_CTLR: usize = 0x0000;
const GICD_TYPER: usize = 0x0004;
const GICD_IGROUPR: usize = 0x0080;
const GICD_ISENABLER: usize = 0x0100;
const GICD_ICENABLER: usize = 0x0180;
const GICD_IPRIORITYR: usize = 0x0400;
const GICD_ICFGR: usize = 0x0c00;
const GICD_IROUTER: usize = 0x6000;
/// GICD_CTLR.RWP: a register write is still being propagated.
const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICD_CTLR.ARE_NS (affinity routing, RAO on Xen) and EnableGrp1A (the only bit Xen lets a
/// guest change).
const GICD_CTLR_ARE_NS_GRP1A: u32 = (1 << 4) | (1 << 1);

// Redistributor registers (§12.10, §12.11).
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_IGROUPR0: usize = GICR_SGI_OFFSET + 0x0080;
const GICR_ISENABLER0: usize = GICR_SGI_OFFSET + 0x0100;
const GICR_ICENABLER0: usize = GICR_SGI_OFFSET + 0x0180;
const GICR_IPRIORITYR: usize = GICR_SGI_OFFSET + 0x0400;
const GICR_ICFGR0: usize = GICR_SGI_OFFSET + 0x0c00;

/// Priority of every interrupt the guest enables (any value below the PMR of 0xff works).
const PRIORITY: u8 = 0xa0;
/// INTIDs from 1020 to 1023 are special (§2.2.1): 1023 means nothing is pending.
const SPECIAL_FIRST: u32 = 1020;
/// INTIDs counted individually; others (none in a test guest) are counted as `COUNTED - 1`.
const COUNTED: usize = 128;
/// Polls of a "write pending" bit before giving up.
const POLL_LIMIT: u32 = 1_000_000;

/// An interrupt ID as the GIC numbers it: SGIs 0-15, PPIs 16-31, SPIs 32-1019.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IntId(u32);

impl IntId {
    /// Returns PPI `n` (INTID 16 + n).
    pub const fn ppi(n: u32) -> Self {
        IntId(16 + n)
    }

    /// Returns the SPI a device tree `interrupts = <0 n flags>` specifier names (INTID 32 + n).
    pub const fn spi_from_dt(n: u32) -> Self {
        IntId(32 + n)
    }

    /// Wraps a raw INTID (what Xen's docs and `xen,virtio-mmio-device` call "SPI 33" is 33).
    pub const fn from_raw(intid: u32) -> Self {
        IntId(intid)
    }

    /// Returns the raw INTID.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Tells whether this is an SPI (configured in the distributor, routed to one vCPU).
    pub const fn is_spi(self) -> bool {
        self.0 >= 32 && self.0 < SPECIAL_FIRST
    }

    /// Tells whether this is an SGI or PPI (configured in each vCPU's redistributor).
    pub const fn is_private(self) -> bool {
        self.0 < 32
    }

    /// Returns `(word offset, bit)` of this INTID in a one-bit-per-interrupt register array.
    fn bit(self) -> (usize, u32) {
        ((self.0 / 32) as usize * 4, 1 << (self.0 % 32))
    }
}

impl fmt::Display for IntId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INTID {}", self.0)
    }
}

/// How an interrupt signals (ICFGR; the device tree's flags 4 = level-high, 1 = edge-rising).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Level-sensitive.
    Level,
    /// Edge-triggered.
    Edge,
}

/// Why the GIC cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor frame has this vCPU's affinity (GICR_TYPER[63:32]).
    NoRedistributor {
        /// This vCPU's MPIDR affinity.
        mpidr: u64,
    },
    /// The INTID is beyond what the distributor implements (GICD_TYPER.ITLinesNumber).
    NotImplemented(IntId),
    /// A "write pending" or "children asleep" bit never cleared.
    Stuck(&'static str),
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GicError::NoRedistributor { mpidr } => {
                write!(f, "no GICv3 redistributor for MPIDR {mpidr:#x}")
            }
            GicError::NotImplemented(id) => write!(f, "{id} is not implemented by the distributor"),
            GicError::Stuck(what) => write!(f, "GICv3 {what} never cleared"),
        }
    }
}

/// Counts of IRQs taken, per vCPU (row) and INTID; each row is written only by its own vCPU.
static COUNTS: [[AtomicU32; COUNTED]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; COUNTED] }; MAX_CPUS];
/// Virtual timer IRQs per vCPU at which the timer had really expired (see `timer::on_irq`).
static TIMER_EXPIRED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// How long [`wait_for_irq`] keeps taking interrupts after its deadline for the timer's own,
/// which Xen delivers a little after the counter passes the deadline.
const TIMER_GRACE_MS: u64 = 100;

/// Redistributor base of each vCPU, found by [`init_cpu`]; 0 = not yet.
static RDIST: [core::sync::atomic::AtomicUsize; MAX_CPUS] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; MAX_CPUS];

/// Reads a distributor or redistributor register.
fn read(addr: usize) -> u32 {
    // SAFETY: every caller passes the aligned address of a 32-bit GICD/GICR register inside the
    // regions Xen's vGIC emulates for every domU; reads of these registers have no side effects.
    unsafe { mmio::read32(addr) }
}

/// Writes a distributor or redistributor register.
fn write(addr: usize, value: u32) {
    // SAFETY: every caller passes the aligned address of a 32-bit GICD/GICR register inside the
    // regions Xen's vGIC emulates for every domU; writing it only changes interrupt configuration.
    unsafe { mmio::write32(addr, value) }
}

/// Waits for `bit` of the register at `addr` to read as 0.
fn wait_clear(addr: usize, bit: u32, what: &'static str) -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if read(addr) & bit == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Stuck(what))
}

/// Enables the distributor (affinity routing, Group 1). Call once, from the boot vCPU.
pub fn init_distributor() -> Result<(), GicError> {
    write(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE_NS_GRP1A);
    wait_clear(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP, "GICD_CTLR.RWP")
}

/// Returns the number of INTIDs the distributor implements (32 * (ITLinesNumber + 1)).
pub fn implemented_intids() -> u32 {
    let typer = read(GICD_BASE + GICD_TYPER);
    32 * ((typer & 0x1f) + 1)
}

/// Sets up this vCPU's side: finds and wakes its redistributor, enables the ICC system-register
/// interface with priority mask 0xff and Group 1 on, and enables the virtual timer PPI (so that
/// [`wait_for_irq`] can time out). Interrupts stay masked in PSTATE.
pub fn init_cpu() -> Result<(), GicError> {
    let me = mpidr();
    // GICR_TYPER[63:32] holds Aff3.Aff2.Aff1.Aff0; MPIDR has Aff3 at 39:32.
    let want = ((me >> 8) & 0xff00_0000) | (me & 0x00ff_ffff);
    let mut base = None;
    let mut frame = GICR_BASE;
    while frame < GICR_BASE + GICR_REGION_SIZE {
        // SAFETY: `frame` is the RD_base of a redistributor inside the region Xen emulates (the
        // walk stops at the frame marked Last); GICR_TYPER is a side-effect-free 64-bit register.
        let typer = unsafe { mmio::read64(frame + GICR_TYPER) };
        if typer >> 32 == want {
            base = Some(frame);
            break;
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        frame += GICR_STRIDE;
    }
    let base = base.ok_or(GicError::NoRedistributor { mpidr: me })?;
    RDIST[cpu_index()].store(base, Ordering::Relaxed);

    let waker = read(base + GICR_WAKER);
    write(base + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    wait_clear(
        base + GICR_WAKER,
        GICR_WAKER_CHILDREN_ASLEEP,
        "GICR_WAKER.ChildrenAsleep",
    )?;

    // SAFETY: these writes configure only this vCPU's GIC CPU interface (ICC_SRE_EL1.SRE = 1,
    // ICC_PMR_EL1 = 0xff: every priority passes, ICC_BPR1_EL1 = 0: no preemption grouping,
    // ICC_CTLR_EL1 = 0: EOImode 0, ICC_IGRPEN1_EL1 = 1: Group 1 on). PSTATE.I stays set, so no
    // interrupt is taken yet. No memory is touched.
    unsafe {
        asm!(
            "mrs {t}, S3_0_C12_C12_5",
            "orr {t}, {t}, #1",
            "msr S3_0_C12_C12_5, {t}",
            "isb",
            "msr S3_0_C4_C6_0, {pmr}",
            "msr S3_0_C12_C12_3, xzr",
            "msr S3_0_C12_C12_4, xzr",
            "msr S3_0_C12_C12_7, {one}",
            "isb",
            t = out(reg) _,
            pmr = in(reg) 0xffu64,
            one = in(reg) 1u64,
            options(nomem, nostack, preserves_flags),
        );
    }
    timer::disarm();
    enable(timer::VIRTUAL_TIMER, Trigger::Level)
}

/// Returns this vCPU's redistributor base.
///
/// # Panics
/// Panics if [`init_cpu`] did not run on this vCPU.
fn my_redistributor() -> usize {
    let base = RDIST[cpu_index()].load(Ordering::Relaxed);
    assert_ne!(base, 0, "gic::init_cpu() was not called on this vCPU");
    base
}

/// Writes the priority byte of `id` in the IPRIORITYR array at `array` (word accesses only:
/// Xen's vGIC accepts bytes here too, but a read-modify-write of the word works on any GIC).
fn set_priority(array: usize, id: IntId) {
    let addr = array + (id.0 as usize & !3);
    let shift = (id.0 % 4) * 8;
    let word = read(addr) & !(0xff << shift);
    write(addr, word | (u32::from(PRIORITY) << shift));
}

/// Writes the two-bit configuration field of `id` in the ICFGR array at `array`.
fn set_trigger(array: usize, id: IntId, trigger: Trigger) {
    let addr = array + (id.0 as usize / 16) * 4;
    let shift = (id.0 % 16) * 2;
    let edge = match trigger {
        Trigger::Edge => 2,
        Trigger::Level => 0,
    };
    let word = read(addr) & !(3 << shift);
    write(addr, word | (edge << shift));
}

/// Configures and enables `id`: an SPI in the distributor, routed to this vCPU; an SGI/PPI in
/// this vCPU's redistributor. Group 1, priority 0xa0.
pub fn enable(id: IntId, trigger: Trigger) -> Result<(), GicError> {
    let (word, bit) = id.bit();
    if id.is_private() {
        let rd = my_redistributor();
        write(rd + GICR_IGROUPR0, read(rd + GICR_IGROUPR0) | bit);
        set_priority(rd + GICR_IPRIORITYR, id);
        // SGIs are always edge-triggered; ICFGR0 (SGIs) is read-only.
        if id.0 >= 16 {
            set_trigger(rd + GICR_ICFGR0, id, trigger);
        }
        write(rd + GICR_ISENABLER0, bit);
        return Ok(());
    }
    if !id.is_spi() || id.0 >= implemented_intids() {
        return Err(GicError::NotImplemented(id));
    }
    let d = GICD_BASE;
    write(d + GICD_IGROUPR + word, read(d + GICD_IGROUPR + word) | bit);
    set_priority(d + GICD_IPRIORITYR, id);
    set_trigger(d + GICD_ICFGR, id, trigger);
    // IROUTER has MPIDR's affinity layout (Aff3 at 39:32), Interrupt_Routing_Mode 0: this vCPU.
    // SAFETY: GICD_IROUTER<n> is the aligned 64-bit routing register of SPI n, inside the
    // distributor Xen emulates; writing it only changes which vCPU gets the SPI.
    unsafe { mmio::write64(d + GICD_IROUTER + id.0 as usize * 8, mpidr()) };
    write(d + GICD_ISENABLER + word, bit);
    wait_clear(d + GICD_CTLR, GICD_CTLR_RWP, "GICD_CTLR.RWP")
}

/// Disables `id` (see [`enable`] for where).
pub fn disable(id: IntId) {
    let (word, bit) = id.bit();
    if id.is_private() {
        write(my_redistributor() + GICR_ICENABLER0, bit);
    } else if id.is_spi() {
        write(GICD_BASE + GICD_ICENABLER + word, bit);
    }
}

/// Returns how many times `id` was taken as an IRQ, summed over all vCPUs.
pub fn irq_count(id: IntId) -> u32 {
    let i = (id.0 as usize).min(COUNTED - 1);
    COUNTS
        .iter()
        .map(|row| row[i].load(Ordering::Relaxed))
        .fold(0, u32::wrapping_add)
}

/// Handles an IRQ exception: acknowledges every pending interrupt, counts it for this vCPU, lets
/// `timer::on_irq` deal with the virtual timer, and ends it. Called by the IRQ vector only.
pub(crate) fn handle_irq() {
    let me = cpu_index();
    loop {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority pending Group 1
        // interrupt of this vCPU; it touches no memory.
        unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nomem, nostack)) };
        let intid = (iar & 0xff_ffff) as u32;
        if (SPECIAL_FIRST..1024).contains(&intid) {
            break;
        }
        if IntId(intid) == timer::VIRTUAL_TIMER && timer::on_irq() {
            let expired = &TIMER_EXPIRED[me];
            expired.store(
                expired.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
        let slot = &COUNTS[me][(intid as usize).min(COUNTED - 1)];
        // Only this vCPU writes its row, and IRQs do not nest: no update can be lost.
        slot.store(
            slot.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        // SAFETY: writing ICC_EOIR1_EL1 with the acknowledged value ends (and, with EOImode 0,
        // deactivates) that interrupt; it touches no memory.
        unsafe { asm!("msr S3_0_C12_C12_1, {}", in(reg) iar, options(nomem, nostack)) };
    }
}

/// Waits, with `wfi`, until `id` has been taken as an IRQ at least once more than `seen` times
/// in total, or `deadline` passes; returns whether it was. Take `seen` from [`irq_count`] before
/// starting whatever raises the interrupt, so one that fires early is not missed. For
/// [`timer::VIRTUAL_TIMER`] itself, `seen` is ignored: the wait is for the timer's expiry at
/// `deadline`, and returns whether its interrupt came.
///
/// IRQs are unmasked only between the check and the next `wfi`: `wfi` wakes for a pending
/// interrupt even while PSTATE.I masks it, and unmasking then takes it through the IRQ vector.
/// The virtual timer, armed at `deadline`, ends the sleep; the wait ends when its interrupt has
/// been taken, or (should Xen deliver it late or not at all) after a grace period spent polling
/// instead of sleeping, so the wait never outlives the deadline by more than 100 ms of running.
/// An interrupt already pending when the grace period is found over is still taken and counted:
/// the counter runs on while Xen has the vCPU descheduled, so a vCPU that gets no CPU for the
/// whole grace period comes back to an interrupt Xen delivered meanwhile.
/// Needs [`init_cpu`] on this vCPU.
pub fn wait_for_irq(id: IntId, seen: u32, deadline: Deadline) -> bool {
    let me = cpu_index();
    let is_timer = id == timer::VIRTUAL_TIMER;
    let expired_before = TIMER_EXPIRED[me].load(Ordering::Relaxed);
    let grace_ticks = timer::frequency().saturating_mul(TIMER_GRACE_MS) / 1000;
    let give_up = deadline.ticks().saturating_add(grace_ticks);
    let arrived_now = || {
        if is_timer {
            TIMER_EXPIRED[me].load(Ordering::Relaxed) != expired_before
        } else {
            irq_count(id).wrapping_sub(seen) > 0
        }
    };
    timer::arm(deadline);
    let arrived = loop {
        let timer_fired = TIMER_EXPIRED[me].load(Ordering::Relaxed) != expired_before;
        if arrived_now() {
            break true;
        } else if !is_timer && timer_fired && deadline.expired() {
            break false;
        }
        let now = timer::now();
        if now >= give_up {
            // Take what is pending once more before giving up (see above).
            take_pending_irqs();
            break arrived_now();
        }
        if now < deadline.ticks() {
            // SAFETY: `wfi` waits for an interrupt; the `daifclr`/`daifset` pair lets a pending
            // IRQ be taken through the vector table (which saves and restores every register it
            // uses) and masks IRQs again. Not `nomem`: the IRQ handler updates the counters read
            // above.
            unsafe {
                asm!(
                    "wfi",
                    "msr daifclr, #2",
                    "isb",
                    "msr daifset, #2",
                    options(nostack)
                )
            };
        } else {
            // Past the deadline the timer's interrupt may still be on its way: take whatever is
            // pending, but do not sleep (nothing else may come to wake us).
            take_pending_irqs();
        }
    };
    timer::disarm();
    arrived
}

/// Takes the interrupts pending now through the IRQ vector (PSTATE.I unmasked for one `isb`).
fn take_pending_irqs() {
    // SAFETY: the `daifclr`/`daifset` pair lets a pending IRQ be taken through the vector table
    // (which saves and restores every register it uses) and masks IRQs again. Not `nomem`: the
    // IRQ handler updates the counters the caller reads next.
    unsafe {
        asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
}
