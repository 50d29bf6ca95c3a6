//! Secondary vCPUs: the per-CPU index, PSCI `CPU_ON`/`CPU_OFF` through SMCCC `hvc #0` (Arm DEN0022
//! PSCI 1.1 §5.1.4, §5.1.3; DEN0028 SMCCC §2), and the entry code a started vCPU runs first.
//!
//! Xen enters a vCPU started by `CPU_ON` at EL1h with the MMU off and DAIF masked, x0 = the
//! context id (xen/arch/arm/vpsci.c `do_common_cpu_on`). The context id here is the address of a
//! [`Start`] record that holds the stack top, so the entry code needs nothing else. The entry code
//! turns the MMU and caches on with the boot vCPU's tables (`mmu.rs`) before it reads the record:
//! the boot vCPU wrote it through its cacheable mapping, which an uncached read could miss.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

/// Most vCPUs a test guest uses; per-CPU tables are this long.
pub const MAX_CPUS: usize = 4;
/// Stack size of every secondary vCPU (the boot vCPU uses the linker script's stack).
pub const SECONDARY_STACK_BYTES: usize = 64 * 1024;

/// SMCCC function id of PSCI `CPU_ON` (64-bit calling convention).
const PSCI_CPU_ON_64: u64 = 0xC400_0003;
/// SMCCC function id of PSCI `CPU_OFF`.
const PSCI_CPU_OFF: u64 = 0x8400_0002;

/// The affinity fields of MPIDR_EL1 (Aff3 at 39:32, Aff2..Aff0 at 23:0).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Returns this vCPU's index, derived from MPIDR_EL1: Xen numbers vCPU n with Aff0 = n % 16 and
/// Aff1 = n / 16 (xen/include/asm-arm/domain.h `vcpuid_to_vaffinity`).
///
/// # Panics
/// Panics if the index is not below [`MAX_CPUS`]: per-CPU tables would overflow.
pub fn cpu_index() -> usize {
    let mpidr = mpidr();
    let aff0 = (mpidr & 0xff) as usize;
    let aff1 = ((mpidr >> 8) & 0xff) as usize;
    let index = aff1 * 16 + aff0;
    assert!(
        index < MAX_CPUS,
        "vCPU index {index} >= MAX_CPUS {MAX_CPUS}"
    );
    index
}

/// Returns the affinity fields of this vCPU's MPIDR_EL1 (the value PSCI and GICD_IROUTER use).
pub fn mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects and touches no memory.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags)) };
    mpidr & MPIDR_AFFINITY_MASK
}

/// A PSCI error code (PSCI 1.1 §5.2.2), or a refusal before the call was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuOnError {
    /// The target index is 0 (the boot vCPU) or not below [`MAX_CPUS`].
    BadIndex(usize),
    /// The target's start record is still in use by an earlier `CPU_ON`.
    Busy(usize),
    /// PSCI returned this negative status (-2 INVALID_PARAMETERS, -4 ALREADY_ON, ...).
    Psci(i64),
}

impl fmt::Display for CpuOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuOnError::BadIndex(i) => write!(f, "vCPU index {i} cannot be started"),
            CpuOnError::Busy(i) => write!(f, "vCPU {i} was already started"),
            CpuOnError::Psci(e) => write!(f, "PSCI CPU_ON returned {e}"),
        }
    }
}

/// What a started vCPU needs at its entry; the entry code reads `stack_top` at offset 0.
#[repr(C)]
struct Start {
    stack_top: AtomicUsize,
    entry: AtomicUsize,
    arg: AtomicUsize,
    used: AtomicBool,
}

const _: () = assert!(core::mem::offset_of!(Start, stack_top) == 0);

/// One secondary stack; 16-byte aligned as AAPCS64 requires of SP.
#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; SECONDARY_STACK_BYTES]>);

/// The stacks of vCPUs 1..MAX_CPUS; vCPU i uses `STACKS[i - 1]`.
struct Stacks([Stack; MAX_CPUS - 1]);

// SAFETY: the stacks are only handed out as raw addresses, each to exactly one vCPU (guarded by
// `Start::used`), and no reference to their contents is ever created in Rust.
unsafe impl Sync for Stacks {}

static STACKS: Stacks =
    Stacks([const { Stack(UnsafeCell::new([0; SECONDARY_STACK_BYTES])) }; MAX_CPUS - 1]);

static STARTS: [Start; MAX_CPUS] = [const {
    Start {
        stack_top: AtomicUsize::new(0),
        entry: AtomicUsize::new(0),
        arg: AtomicUsize::new(0),
        used: AtomicBool::new(false),
    }
}; MAX_CPUS];

// The first code a started vCPU runs: vectors, the MMU (which keeps x0), its own stack, then Rust
// with x0 = &Start.
global_asm!(
    r#"
    .section .text.secondary, "ax"
    .global __guest_secondary_entry
__guest_secondary_entry:
    adrp    x1, __guest_vectors
    add     x1, x1, :lo12:__guest_vectors
    msr     vbar_el1, x1
    isb
    bl      __guest_mmu_on
    ldr     x1, [x0]
    mov     sp, x1
    bl      __guest_secondary_rust
1:  wfi
    b       1b
"#
);

extern "C" {
    fn __guest_secondary_entry();
}

/// Starts vCPU `index` (its MPIDR affinity is `mpidr`, as the device tree's `/cpus/cpu@N` `reg`
/// gives it) running `entry(arg)` on its own stack. When `entry` returns the vCPU turns itself off
/// with PSCI `CPU_OFF`. The new vCPU starts with interrupts masked and must set up its own GIC
/// CPU interface ([`crate::gic::init_cpu`]) if it wants interrupts.
pub fn start_cpu(index: usize, mpidr: u64, entry: fn(usize), arg: usize) -> Result<(), CpuOnError> {
    if index == 0 || index >= MAX_CPUS {
        return Err(CpuOnError::BadIndex(index));
    }
    let start = &STARTS[index];
    if start.used.load(Ordering::Relaxed) {
        return Err(CpuOnError::Busy(index));
    }
    start.used.store(true, Ordering::Relaxed);
    let stack = &STACKS.0[index - 1];
    let stack_top = stack.0.get() as usize + SECONDARY_STACK_BYTES;
    start.stack_top.store(stack_top, Ordering::Relaxed);
    start.entry.store(entry as usize, Ordering::Relaxed);
    start.arg.store(arg, Ordering::Relaxed);
    // The new vCPU reads the record once its MMU is on (cacheable, coherent with these stores);
    // order the stores before the CPU_ON call that starts it.
    fence(Ordering::SeqCst);
    let ret = psci_call(
        PSCI_CPU_ON_64,
        mpidr,
        __guest_secondary_entry as *const () as usize as u64,
        start as *const Start as u64,
    );
    if ret != 0 {
        start.used.store(false, Ordering::Relaxed);
        return Err(CpuOnError::Psci(ret));
    }
    Ok(())
}

/// Runs the entry function recorded for a started vCPU, then turns the vCPU off.
#[no_mangle]
extern "C" fn __guest_secondary_rust(start: &Start) -> ! {
    let entry = start.entry.load(Ordering::Relaxed);
    let arg = start.arg.load(Ordering::Relaxed);
    // SAFETY: `entry` was stored by `start_cpu` from a `fn(usize)`; function pointers and usize
    // have the same size and representation on aarch64.
    let entry: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(entry) };
    entry(arg);
    psci_call(PSCI_CPU_OFF, 0, 0, 0);
    // CPU_OFF does not return on success; should it fail, park the vCPU.
    loop {
        // SAFETY: `wfi` waits for an interrupt; it touches no memory and no registers.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Makes a PSCI call through SMCCC `hvc #0` and returns x0.
fn psci_call(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: an SMCCC call through `hvc #0` goes to Xen's PSCI emulation, which reads only the
    // argument registers and returns in x0..x3; x4..x17 are declared clobbered as SMCCC 1.0
    // allows. CPU_ON makes Xen read nothing from memory (the start record is read later by the
    // new vCPU itself), so the asm touches no memory of this vCPU and not the stack.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") function => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret
}
