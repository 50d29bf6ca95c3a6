//! `hostile.mode=attack`: everything a frontend can point at its virtio-mmio regions that a
//! driver never would, one check line per kind, each saying what Xen did.
//!
//! The scenario (tests/scenarios/hostile-frontend.toml) gives this guest two vCPUs and three
//! adjacent devices: P (virtio-blk, 16 MiB: capacity 0x8000 sectors) and Q (virtio-rng), both
//! served by the reference backend that also serves an innocent frontend, then X (virtio-blk)
//! served by a reference backend that powers off after `hostile.answered` requests. Xen and
//! rust-ioreq must emulate what has a syndrome (ISV = 1: every width, sign extension, acquire,
//! unprivileged and unscaled forms, the zero register) and the post-indexed LDR/STR Xen
//! decodes itself, refuse everything else with a data abort at the right address (pairs,
//! pre-index and pair write-back, exclusives, SIMD registers, straddling pairs), ignore cache
//! and after a backend is gone. Misaligned accesses must never reach a backend: Xen refuses
//! them (QEMU TCG lets them reach stage 2 although the MMU is off, i.e. the memory is Device,
//! which refuses them on hardware), or the vCPU's own alignment check stops them first.
//!
//! Not here: cache maintenance by address (DC CIVAC and friends). Xen skips it on an emulated
//! region, but QEMU TCG executes it as a no-op without a translation, so it never traps.
//! Nor the stack pointer as a write-back base: the exception vectors use the stack.

use guest_common::scenario;
use guest_common::timer::{self, Deadline};

use crate::dt::{List, VirtioNode, MAX_CPUS, MAX_DEVICES};
use crate::insn::{self, WriteBack};
use crate::outcome::{stopped_at, xen_abort_at, Done, Shown};
use crate::{worker, Args};

/// virtio-mmio MagicValue, "virt" little endian.
const MAGIC: u64 = 0x7472_6976;
/// virtio-mmio register offsets (virtio 1.2 §4.2.2).
const DEVICE_FEATURES: usize = 0x10;
const DEVICE_FEATURES_SEL: usize = 0x14;
/// virtio-blk configuration space: `capacity`, a little-endian u64 in sectors.
const CAPACITY: usize = 0x100;
/// P's capacity: 16 MiB in 512-byte sectors, so byte 1 is 0x80 (a negative byte).
const P_SECTORS: u64 = 0x8000;
/// VIRTIO_F_VERSION_1 is feature bit 32: bit 0 of the high feature word.
const HIGH_WORD_VERSION_1: u64 = 1;
/// Register size of one device, and where the next one starts.
const WINDOW: usize = 0x200;
/// Rounds per vCPU in the storm (two reads each, a write every eighth).
const STORM_ROUNDS: u32 = 500;
/// Refused (ISV = 0) accesses per vCPU in the refused storm. Kept small: a debug Xen prints
/// three lines for each ("Decoding instruction ... not supported", "Unable to decode
/// instruction", the injected abort's HSR line).
const REFUSED_ROUNDS: u32 = 10;
/// Accesses to the dead backend's device once it is gone.
const AFTER_DEATH: u32 = 20;
/// Longest time an access to a device whose backend is gone may take: it is never posted, so
/// it must not wait anything like the backend's response timeout (5 s by default); the time
/// is Xen's trap and its rate-limited message on a busy emulator.
const GONE_US: u64 = 1_000_000;

/// The devices under attack, checked to be where the scenario puts them.
#[derive(Clone, Copy)]
struct Layout {
    p: usize,
    q: usize,
    x: usize,
}

impl Layout {
    fn of(nodes: &List<VirtioNode, MAX_DEVICES>) -> Option<Self> {
        let mut it = nodes.iter();
        let (p, q, x) = (it.next()?, it.next()?, it.next()?);
        let adjacent = q.base == p.base + WINDOW && x.base == q.base + WINDOW;
        let sized = [p, q, x].iter().all(|n| n.size == WINDOW);
        (adjacent && sized).then_some(Layout {
            p: p.base,
            q: q.base,
            x: x.base,
        })
    }
}

/// Runs every attack.
pub fn run(nodes: &List<VirtioNode, MAX_DEVICES>, cpus: &List<u64, MAX_CPUS>, args: &Args) {
    let Some(l) = Layout::of(nodes) else {
        scenario::check(
            "layout",
            false,
            "want three adjacent 0x200-byte devices P, Q, X (see attack.rs)",
        );
        return;
    };
    // SAFETY: (all accesses below) P, Q and X are this guest's own device windows and the
    // addresses next to them are claimed by nothing; every access is the attack under test, its
    // effect on the devices is what the checks look at, and no Rust object lives there.
    unsafe {
        widths(l);
        misaligned(l);
        pairs(l);
        write_back(l);
        post_index(l);
        exclusives(l);
        dc_zva(l);
        simd(l);
        straddle(l);
    }
    match cpus.iter().nth(1) {
        Some(mpidr) if worker::start(mpidr) => {
            // SAFETY: as above.
            unsafe { storms(l) };
        }
        _ => {
            scenario::check("storm", false, "vCPU 1 did not start: no storm from it");
        }
    }
    match args.answered {
        // SAFETY: as above.
        Some(n) => unsafe { dead_backend(l, n) },
        None => {
            scenario::check("dead-backend", false, "hostile.answered=<n> missing");
        }
    }
}

/// ISV = 1 loads of every width from P's capacity (0x8000: bytes 00 80 00 .. 00), into
/// registers full of garbage, and the acquire, unprivileged and unscaled forms.
unsafe fn widths(l: Layout) {
    let cap = l.p + CAPACITY;
    // SAFETY: see `run`.
    let (b, h, w, x) = unsafe {
        (
            insn::ldrb(cap + 1),
            insn::ldrh(cap),
            insn::ldr_w(cap),
            insn::ldr_x(cap),
        )
    };
    let want = [P_SECTORS >> 8, P_SECTORS, P_SECTORS, 0];
    let ok = [b, h, w, x]
        .iter()
        .zip(want)
        .all(|(r, want)| *r == Ok(want));
    scenario::check(
        "widths-zero-extend",
        ok,
        format_args!(
            "capacity {P_SECTORS:#x} into garbage registers: ldrb +1 {}, ldrh {}, ldr w {}, \
             ldr x {} (the device answers 0 to 64-bit config reads)",
            Shown(&b),
            Shown(&h),
            Shown(&w),
            Shown(&x),
        ),
    );
    // SAFETY: see `run`.
    let (sbw, sbx, shx, swx) = unsafe {
        (
            insn::ldrsb_w(cap + 1),
            insn::ldrsb_x(cap + 1),
            insn::ldrsh_x(cap),
            insn::ldrsw_x(cap),
        )
    };
    let want = [
        0xffff_ff80,
        0xffff_ffff_ffff_ff80,
        0xffff_ffff_ffff_8000,
        P_SECTORS,
    ];
    let ok = [sbw, sbx, shx, swx]
        .iter()
        .zip(want)
        .all(|(r, want)| *r == Ok(want));
    scenario::check(
        "widths-sign-extend",
        ok,
        format_args!(
            "capacity: ldrsb w +1 {}, ldrsb x +1 {}, ldrsh x {}, ldrsw x {}",
            Shown(&sbw),
            Shown(&sbx),
            Shown(&shx),
            Shown(&swx)
        ),
    );
    // SAFETY: see `run`.
    let (ar, tr, ur, zr) = unsafe {
        (
            insn::ldar_w(l.p),
            insn::ldtr_w(l.p),
            insn::ldur_w(l.p),
            insn::ldr_xzr(l.p),
        )
    };
    let ok = [ar, tr, ur].iter().all(|r| *r == Ok(MAGIC)) && zr.is_ok();
    scenario::check(
        "widths-forms",
        ok,
        format_args!(
            "MagicValue by ldar w {}, ldtr w {}, ldur w {}; ldr xzr: {}",
            Shown(&ar),
            Shown(&tr),
            Shown(&ur),
            Done(&zr)
        ),
    );
    // The device takes 32-bit register writes only: a byte or halfword store that reached it
    // with its own width leaves DeviceFeaturesSel alone; a 32-bit store of a register whose
    // upper half is garbage selects the high feature word; `str wzr` selects the low one.
    let sel = l.p + DEVICE_FEATURES_SEL;
    let features = l.p + DEVICE_FEATURES;
    // SAFETY: see `run`.
    unsafe {
        let low = insn::ldr_w(features);
        let byte = insn::strb(sel, 0xffff_ff01).and_then(|()| insn::ldr_w(features));
        let half = insn::strh(sel, 0xffff_0001).and_then(|()| insn::ldr_w(features));
        let word = insn::str_w(sel, 0xffff_ffff_0000_0001).and_then(|()| insn::ldr_w(features));
        let zero = insn::str_wzr(sel).and_then(|()| insn::ldr_w(features));
        let release = insn::stlr_w(sel, 1).and_then(|()| insn::ldr_w(features));
        // DeviceFeatures is read-only and 8-byte aligned: an aligned 64-bit store reaches the
        // device, which refuses the width, so the selection stays.
        let dword = insn::str_x(features, 0).and_then(|()| insn::ldr_w(features));
        let _ = insn::str_wzr(sel);
        let ok = low.is_ok()
            && byte == low
            && half == low
            && word == Ok(HIGH_WORD_VERSION_1)
            && zero == low
            && release == Ok(HIGH_WORD_VERSION_1)
            && dword == Ok(HIGH_WORD_VERSION_1);
        scenario::check(
            "widths-stores",
            ok,
            format_args!(
                "DeviceFeatures {}; after DeviceFeaturesSel=1 by strb {}, strh {}, str w \
                 (garbage upper half) {}; =0 by str wzr {}; =1 by stlr w {}; str x 0 to \
                 DeviceFeatures {}",
                Shown(&low),
                Shown(&byte),
                Shown(&half),
                Shown(&word),
                Shown(&zero),
                Shown(&release),
                Shown(&dword)
            ),
        );
    }
}

/// Misaligned loads and stores of P's registers.
unsafe fn misaligned(l: Layout) {
    let p = l.p;
    // SAFETY: see `run`.
    let (w, h, x, s) = unsafe {
        (
            insn::ldr_w(p + 2),
            insn::ldrh(p + 1),
            insn::ldr_x(p + CAPACITY + 4),
            insn::str_w(p + DEVICE_FEATURES_SEL + 2, 1),
        )
    };
    let ok = stopped_at(&w, p + 2)
        && stopped_at(&h, p + 1)
        && stopped_at(&x, p + CAPACITY + 4)
        && stopped_at(&s, p + DEVICE_FEATURES_SEL + 2);
    scenario::check(
        "misaligned",
        ok,
        format_args!(
            "ldr w +2: {}; ldrh +1: {}; ldr x +0x104: {}; str w +0x16: {} (never posted to \
             the backend)",
            Shown(&w),
            Shown(&h),
            Shown(&x),
            Done(&s)
        ),
    );
}

/// Load and store pairs: no syndrome, nothing Xen can decode.
unsafe fn pairs(l: Layout) {
    let p = l.p;
    // SAFETY: see `run`.
    let (lw, lx, sw) = unsafe { (insn::ldp_w(p), insn::ldp_x(p), insn::stp_w(p, 1, 2)) };
    let ok = xen_abort_at(&lw, p) && xen_abort_at(&lx, p) && xen_abort_at(&sw, p);
    scenario::check(
        "isv0-pairs",
        ok,
        format_args!(
            "ldp w: {}; ldp x: {}; stp w: {}",
            Done(&lw),
            Done(&lx),
            Done(&sw)
        ),
    );
}

/// Pair and pre-index write-back forms: refused, and the base register left alone.
unsafe fn write_back(l: Layout) {
    let p = l.p;
    // SAFETY: see `run`.
    let (lp, sp, lr) = unsafe {
        (
            insn::ldp_x_post(p),
            insn::stp_x_pre(p + 16, 1, 2),
            insn::ldr_w_pre(p - 4),
        )
    };
    let ok = xen_abort_at(&lp, p) && xen_abort_at(&sp, p) && xen_abort_at(&lr, p);
    scenario::check(
        "isv0-write-back",
        ok,
        format_args!(
            "ldp x post-index: {}; stp x pre-index: {}; ldr w pre-index: {} (base registers \
             unchanged)",
            Done(&lp),
            Done(&sp),
            Done(&lr)
        ),
    );
}

/// The post-indexed LDR/STR Xen decodes itself (rust-ioreq does the write-back after the
/// backend answers), and the post-index forms it cannot decode.
unsafe fn post_index(l: Layout) {
    let p = l.p;
    let sel = p + DEVICE_FEATURES_SEL;
    // SAFETY: see `run`.
    let (load, store, features, signed, rn_rt) = unsafe {
        let load = insn::ldr_w_post(p);
        let store = insn::str_w_post(sel, 1);
        let features = insn::ldr_w(p + DEVICE_FEATURES);
        let _ = insn::str_wzr(sel);
        (
            load,
            store,
            features,
            insn::ldrsw_post(p),
            insn::ldr_post_rn_is_rt(p),
        )
    };
    let ok =
        load == Ok(WriteBack {
            value: MAGIC,
            base: p + 4,
        }) && store
            == Ok(WriteBack {
                value: (),
                base: sel - 4,
            })
            && features == Ok(HIGH_WORD_VERSION_1)
            && xen_abort_at(&signed, p)
            && xen_abort_at(&rn_rt, p);
    scenario::check(
        "post-index",
        ok,
        format_args!(
            "ldr w [P], #4: {} base {}; str w 1 [sel], #-4: base {}, DeviceFeatures {}; \
             ldrsw post: {}; ldr x9, [x9], #8: {}",
            Shown(&load.map(|w| w.value)),
            Shown(&load.map(|w| w.base)),
            Shown(&store.map(|w| w.base)),
            Shown(&features),
            Done(&signed),
            Done(&rn_rt)
        ),
    );
}

/// Exclusive loads and stores: no syndrome.
unsafe fn exclusives(l: Layout) {
    let p = l.p;
    // SAFETY: see `run`.
    let (lx, lax, sx) = unsafe { (insn::ldxr_w(p), insn::ldaxr_x(p), insn::stxr_w(p, 1)) };
    // With no exclusive monitor armed (the loads were refused), a store-exclusive may fail
    // without accessing memory (status 1), or reach Xen, which must refuse it; it must never
    // store (status 0).
    let ok = xen_abort_at(&lx, p) && xen_abort_at(&lax, p) && (sx == Ok(1) || xen_abort_at(&sx, p));
    scenario::check(
        "exclusives",
        ok,
        format_args!(
            "ldxr w: {}; ldaxr x: {}; stxr w: {} (status 1: failed without an access)",
            Shown(&lx),
            Shown(&lax),
            Shown(&sx)
        ),
    );
}

/// DC ZVA: a whole block of zeroes, no syndrome.
unsafe fn dc_zva(l: Layout) {
    let p = l.p;
    let block = insn::zva_block();
    // SAFETY: see `run`.
    let zva = unsafe { insn::dc_zva(p) };
    // SAFETY: see `run`.
    let magic = unsafe { insn::ldr_w(p) };
    scenario::check(
        "dc-zva",
        block.is_some() && stopped_at(&zva, p) && magic == Ok(MAGIC),
        format_args!(
            "dc zva on P (block {} bytes): {}; MagicValue after it {}",
            block.unwrap_or(0),
            Done(&zva),
            Shown(&magic)
        ),
    );
}

/// SIMD&FP registers as the transfer register: no syndrome.
unsafe fn simd(l: Layout) {
    let p = l.p;
    insn::enable_fp();
    // SAFETY: see `run`; FP/SIMD is enabled on this vCPU just above.
    let (lq, sq, ld1, ls) = unsafe {
        (
            insn::ldr_q0(p),
            insn::str_q0(p),
            insn::ld1_v0(p),
            insn::ldr_s0(p),
        )
    };
    let ok = [&lq, &sq, &ld1, &ls].iter().all(|r| xen_abort_at(r, p));
    scenario::check(
        "simd",
        ok,
        format_args!(
            "FP enabled; ldr q0: {}; str q0: {}; ld1 {{v0.16b}}: {}; ldr s0: {}",
            Done(&lq),
            Done(&sq),
            Done(&ld1),
            Done(&ls)
        ),
    );
}

/// Accesses across the boundary of two devices: pairs (the only aligned way to straddle) and
/// a misaligned doubleword.
unsafe fn straddle(l: Layout) {
    let (pq, qx) = (l.q - 8, l.x - 8);
    // SAFETY: see `run`.
    let (a, b, c, d) = unsafe {
        (
            insn::ldp_x(pq),
            insn::ldp_w(l.q - 4),
            insn::ldp_x(qx),
            insn::ldr_x(l.q - 4),
        )
    };
    let ok = xen_abort_at(&a, pq)
        && xen_abort_at(&b, l.q - 4)
        && xen_abort_at(&c, qx)
        && stopped_at(&d, l.q - 4);
    scenario::check(
        "straddle",
        ok,
        format_args!(
            "ldp x P|Q: {}; ldp w P|Q: {}; ldp x Q|X: {}; ldr x P|Q (misaligned): {}",
            Done(&a),
            Done(&b),
            Done(&c),
            Shown(&d)
        ),
    );
}

/// What the storm of one vCPU saw.
#[derive(Clone, Copy, Debug, Default)]
struct StormResult {
    wrong: u32,
    first_wrong: u64,
    refused: u32,
    micros: u64,
}

static STORM_P: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
static STORM_Q: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
static CPU1_RESULT: guest_common::sync::BakeryLock<StormResult> =
    guest_common::sync::BakeryLock::new(StormResult {
        wrong: 0,
        first_wrong: 0,
        refused: 0,
        micros: 0,
    });

/// One vCPU's storm: MagicValue of P and Q, a write every eighth round, then refused pairs.
fn storm() -> StormResult {
    use core::sync::atomic::Ordering;
    let p = STORM_P.load(Ordering::Relaxed);
    let q = STORM_Q.load(Ordering::Relaxed);
    let mut r = StormResult::default();
    let start = timer::now();
    for i in 0..STORM_ROUNDS {
        // SAFETY: see `run`: the storm's accesses are the attack under test.
        let (a, b) = unsafe { (insn::ldr_w(p), insn::ldr_w(q)) };
        for v in [a, b] {
            if v != Ok(MAGIC) {
                r.wrong += 1;
                r.first_wrong = v.unwrap_or(u64::MAX);
            }
        }
        if i % 8 == 0 {
            // SAFETY: as above; selecting the low feature word changes nothing.
            let _ = unsafe { insn::str_wzr(p + DEVICE_FEATURES_SEL) };
        }
    }
    for _ in 0..REFUSED_ROUNDS {
        // SAFETY: as above.
        if xen_abort_at(&unsafe { insn::ldp_x(p) }, p) {
            r.refused += 1;
        }
    }
    r.micros = timer::ticks_to_us(timer::now() - start);
    r
}

fn storm_on_cpu1() {
    let r = storm();
    *CPU1_RESULT.lock() = r;
}

/// Both vCPUs at once.
unsafe fn storms(l: Layout) {
    use core::sync::atomic::Ordering;
    STORM_P.store(l.p, Ordering::Relaxed);
    STORM_Q.store(l.q, Ordering::Relaxed);
    let posted = worker::post(storm_on_cpu1);
    let mine = storm();
    let finished = worker::wait(posted, Deadline::after_ms(30_000));
    let theirs = *CPU1_RESULT.lock();
    let ok = finished
        && mine.wrong == 0
        && theirs.wrong == 0
        && mine.refused == REFUSED_ROUNDS
        && theirs.refused == REFUSED_ROUNDS;
    scenario::check(
        "storm",
        ok,
        format_args!(
            "2 vCPUs x {} x (MagicValue of P and Q, a write every 8th): {} and {} wrong (last \
             {:#x}/{:#x}) in {} and {} ms; {REFUSED_ROUNDS} ldp each: {} and {} Xen aborts{}",
            STORM_ROUNDS,
            mine.wrong,
            theirs.wrong,
            mine.first_wrong,
            theirs.first_wrong,
            mine.micros / 1000,
            theirs.micros / 1000,
            mine.refused,
            theirs.refused,
            if finished {
                ""
            } else {
                " (vCPU 1 did not finish)"
            }
        ),
    );
}

/// X's backend answers `answered` requests and powers off: the request after them completes
/// with all ones when it goes, and later ones at once.
unsafe fn dead_backend(l: Layout, answered: u64) {
    let x = l.x;
    let mut good = 0;
    let mut first_bad = Ok(0);
    for _ in 0..answered {
        // SAFETY: see `run`.
        let v = unsafe { insn::ldr_w(x) };
        if v == Ok(MAGIC) {
            good += 1;
        } else if first_bad == Ok(0) {
            first_bad = v;
        }
    }
    scenario::check(
        "dead-backend-answered",
        good == answered,
        format_args!(
            "{good} of {answered} MagicValue reads answered before X's backend powers off \
             (first other: {})",
            Shown(&first_bad)
        ),
    );
    let start = timer::now();
    // SAFETY: see `run`.
    let in_flight = unsafe { insn::ldr_w(x) };
    let waited = timer::ticks_to_us(timer::now() - start);
    scenario::check(
        "dead-backend-in-flight",
        in_flight == Ok(0xffff_ffff),
        format_args!(
            "the read after them, in flight while the backend powered off: {} after {waited} us",
            Shown(&in_flight)
        ),
    );
    let mut slowest = 0;
    let mut ones = 0;
    let mut writes = 0;
    for _ in 0..AFTER_DEATH {
        let start = timer::now();
        // SAFETY: see `run`.
        let (r, w) = unsafe { (insn::ldr_x(x), insn::str_w(x + DEVICE_FEATURES_SEL, 1)) };
        slowest = slowest.max(timer::ticks_to_us(timer::now() - start));
        ones += u32::from(r == Ok(u64::MAX));
        writes += u32::from(w.is_ok());
    }
    // SAFETY: see `run`.
    let pair = unsafe { insn::ldp_x(x) };
    scenario::check(
        "dead-backend-after",
        ones == AFTER_DEATH && writes == AFTER_DEATH && slowest < GONE_US && xen_abort_at(&pair, x),
        format_args!(
            "{AFTER_DEATH} x (ldr x, str w): {ones} reads all ones, {writes} writes dropped \
             without fault, slowest {slowest} us; ldp x: {}",
            Done(&pair)
        ),
    );
}
