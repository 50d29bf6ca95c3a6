//! `hostile.mode=victim`: the frontend of the hostile backends (scenario `hostile-backend`).
//! It gives them requests to abuse and checks, from the frontend's side, that whatever they do
//! Xen hands back only their answer (masked and extended as the instruction asks: the answers
//! carry garbage above every width, `contract.rs`) or all ones, and that no access hangs.
//!
//! Devices, in address order: the attacking backend's A and B, then (`hostile.crashers=2`) C
//! and D, one on each backend Xen must crash. Only vCPU 0 runs.
//!
//! 1. A and B, until the attacker says DONE: one access each per round, rotating through every
//!    load and store width and sign extension, then a control read (which may also say PAUSE:
//!    sleep a while, the attacker is storming the doorbell). A load that returns all ones is
//!    "vanished": slow (it waited for the attacker's response timeout, `hostile.timeout-ms`) or
//!    at once (never posted: a broken device, or a slot still held by a request that timed
//!    out). After DONE the attacker takes its ioreq page away: the next read of A must wait for
//!    the timeout and return all ones, and every later access to A and B must complete at once.
//! 2. C: reads until one completes with all ones: its backend moved the slot backwards after
//!    `COMPLETE` and Xen crashed it from this vCPU's completion. That backend has no timeout,
//!    so all ones can only come from its death.
//! 3. D: its backend wrote into this vCPU's idle slot: the first read crashes it and completes
//!    with all ones at once.

use guest_common::timer::{self, Deadline};
use guest_common::{gic, scenario};

use crate::contract::{self, CONTROL, DONE, OFFSETS, PAUSE};
use crate::dt::{List, VirtioNode, MAX_DEVICES};
use crate::insn::{self, Outcome};
use crate::Args;

/// Longest phase 1 may take before the victim gives up (FAIL).
const PHASE1_MS: u64 = 60_000;
/// Reads of C before giving up on its backend's crash.
const C_READS: u32 = 200;
/// Accesses that must complete at once after a device broke or its backend died.
const AFTERWARDS: u32 = 5;
/// "At once" for a device whose backend has no response timeout (C, D): no wait for anyone,
/// only Xen's trap and its rate-limited message on a busy emulator.
const AT_ONCE_US: u64 = 1_000_000;

/// One access kind: the load or store instruction and its width.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ldrb,
    Ldrh,
    LdrW,
    LdrX,
    LdrsbW,
    LdrsbX,
    LdrshX,
    LdrswX,
    Strb,
    Strh,
    StrW,
    StrX,
}

const KINDS: [Kind; 12] = [
    Kind::Ldrb,
    Kind::Ldrh,
    Kind::LdrW,
    Kind::LdrX,
    Kind::LdrsbW,
    Kind::LdrsbX,
    Kind::LdrshX,
    Kind::LdrswX,
    Kind::Strb,
    Kind::Strh,
    Kind::StrW,
    Kind::StrX,
];

impl Kind {
    /// The register value the load makes of a device answer `raw` (a store: `None`).
    fn loaded(self, raw: u64) -> Option<u64> {
        let sext = |v: u64, bits: u32| (((v << (64 - bits)) as i64) >> (64 - bits)) as u64;
        Some(match self {
            Kind::Ldrb => raw & 0xff,
            Kind::Ldrh => raw & 0xffff,
            Kind::LdrW => raw & 0xffff_ffff,
            Kind::LdrX => raw,
            Kind::LdrsbW => sext(raw, 8) & 0xffff_ffff,
            Kind::LdrsbX => sext(raw, 8),
            Kind::LdrshX => sext(raw, 16),
            Kind::LdrswX => sext(raw, 32),
            Kind::Strb | Kind::Strh | Kind::StrW | Kind::StrX => return None,
        })
    }

    /// Performs the access at `addr` (register offset `off`).
    ///
    /// # Safety
    /// `addr` is a register of one of this guest's devices.
    unsafe fn run(self, addr: usize, off: u64) -> Outcome<u64> {
        let v = contract::stored(off);
        // SAFETY: the caller's register; a store's effect is what the backend checks.
        unsafe {
            match self {
                Kind::Ldrb => insn::ldrb(addr),
                Kind::Ldrh => insn::ldrh(addr),
                Kind::LdrW => insn::ldr_w(addr),
                Kind::LdrX => insn::ldr_x(addr),
                Kind::LdrsbW => insn::ldrsb_w(addr),
                Kind::LdrsbX => insn::ldrsb_x(addr),
                Kind::LdrshX => insn::ldrsh_x(addr),
                Kind::LdrswX => insn::ldrsw_x(addr),
                Kind::Strb => insn::strb(addr, v).map(|()| 0),
                Kind::Strh => insn::strh(addr, v).map(|()| 0),
                Kind::StrW => insn::str_w(addr, v).map(|()| 0),
                Kind::StrX => insn::str_x(addr, v).map(|()| 0),
            }
        }
    }
}

/// What happened to one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The backend's answer, as the instruction must make it (or a store completed).
    Answer,
    /// All ones (a store: cannot tell; stores are never classified so).
    Vanished,
    /// Anything else: a wrong value, or an exception.
    Wrong,
}

/// Tally of one device in phase 1.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    answers: u32,
    stores: u32,
    wrong: u32,
    first_wrong: Option<(u64, u64)>,
    /// Vanished accesses that waited at least the response timeout, and the longest.
    slow: u32,
    slowest_us: u64,
    /// Vanished accesses that completed at once.
    at_once: u32,
    /// Answers after the first vanished access (the device came back).
    answers_after_vanished: u32,
}

/// Does access `i` (kind and offset rotate) on the device at `base`, classifies and times it.
fn access(base: usize, i: u32) -> (Seen, u64, Kind, u64, Outcome<u64>) {
    let kind = KINDS[i as usize % KINDS.len()];
    let off = (u64::from(i) * 8) % OFFSETS;
    let start = timer::now();
    // SAFETY: a register of this guest's device (`off` < 0x100, the window is 0x200).
    let r = unsafe { kind.run(base + off as usize, off) };
    let us = timer::ticks_to_us(timer::now() - start);
    let seen = match (kind.loaded(contract::answer(off)), &r) {
        (Some(want), Ok(v)) if *v == want => Seen::Answer,
        (Some(_), Ok(v)) if Some(*v) == kind.loaded(u64::MAX) => Seen::Vanished,
        (None, Ok(_)) => Seen::Answer,
        _ => Seen::Wrong,
    };
    (seen, us, kind, off, r)
}

impl Tally {
    fn add(&mut self, seen: Seen, us: u64, slow_us: u64, kind: Kind, off: u64, r: Outcome<u64>) {
        match seen {
            // A store completes whatever happened to it: only loads tell.
            Seen::Answer if kind.loaded(0).is_none() => self.stores += 1,
            Seen::Answer => {
                self.answers += 1;
                if self.slow + self.at_once > 0 {
                    self.answers_after_vanished += 1;
                }
            }
            Seen::Vanished => {
                if us >= slow_us {
                    self.slow += 1;
                    self.slowest_us = self.slowest_us.max(us);
                } else {
                    self.at_once += 1;
                }
            }
            Seen::Wrong => {
                self.wrong += 1;
                self.first_wrong
                    .get_or_insert((off, r.unwrap_or(0xbad_e11)));
            }
        }
    }
}

/// Runs the victim.
pub fn run(nodes: &List<VirtioNode, MAX_DEVICES>, args: &Args) {
    let (Some(timeout_ms), Some(crashers)) = (args.timeout_ms, args.crashers) else {
        scenario::check(
            "victim",
            false,
            "want hostile.timeout-ms=<attacker's timeout> hostile.crashers=<n>",
        );
        return;
    };
    let bases: [usize; MAX_DEVICES] = {
        let mut b = [0; MAX_DEVICES];
        for (slot, n) in b.iter_mut().zip(nodes.iter()) {
            *slot = n.base;
        }
        b
    };
    let n = nodes.len();
    if n != 2 + crashers as usize || crashers != 2 {
        scenario::check(
            "victim",
            false,
            format_args!("want devices A, B of the attacker, then C and D: {n} nodes"),
        );
        return;
    }
    if let Err(e) = gic::init_distributor().and_then(|()| gic::init_cpu()) {
        scenario::check("victim", false, format_args!("GICv3 (for its pauses): {e}"));
        return;
    }
    phase1(bases[0], bases[1], timeout_ms);
    crashed_on_completion(bases[2]);
    crashed_on_post(bases[3]);
}

/// Phase 1: A and B until DONE and A's silence.
fn phase1(a: usize, b: usize, timeout_ms: u64) {
    let slow_us = timeout_ms * 1000 * 9 / 10;
    let at_once_us = timeout_ms * 1000 / 2;
    let mut tally = [Tally::default(); 2];
    let mut done_seen = false;
    let mut pauses = 0;
    let mut i: u32 = 0;
    let deadline = Deadline::after_ms(PHASE1_MS);
    while !done_seen && !deadline.expired() {
        for (d, base) in [a, b].into_iter().enumerate() {
            let (seen, us, kind, off, r) = access(base, i);
            tally[d].add(seen, us, slow_us, kind, off, r);
        }
        i = i.wrapping_add(1);
        // SAFETY: A's control register, read-only by the contract.
        let control = unsafe { insn::ldr_w(a + CONTROL as usize) };
        done_seen = control == Ok(DONE);
        if let Ok(v) = control {
            if v & !0xffff == PAUSE {
                pauses += 1;
                pause(v & 0xffff);
                continue;
            }
        }
        let want = contract::answer(CONTROL) & 0xffff_ffff;
        if !matches!(control, Ok(v) if v == want || v == DONE || v == 0xffff_ffff) {
            tally[0].wrong += 1;
            tally[0]
                .first_wrong
                .get_or_insert((CONTROL, control.unwrap_or(0xbad_e11)));
        }
    }
    // The attacker has no ioreq page now: this read waits for the timeout.
    let (last, last_us) = read_timed(a);
    // Both devices now complete at once with all ones.
    let after = [a, b].map(|base| at_once(base, at_once_us));
    let [ta, tb] = tally;
    scenario::check(
        "victim-answers",
        ta.wrong + tb.wrong == 0 && ta.answers > 0 && tb.answers > 0,
        format_args!(
            "loads of every width and extension answered as the attacker's garbage-laden \
             answers masked/extended: A {}, B {}; {} stores completed; wrong values {} (first \
             {:x?}); {pauses} pause(s)",
            ta.answers,
            tb.answers,
            ta.stores + tb.stores,
            ta.wrong + tb.wrong,
            ta.first_wrong.or(tb.first_wrong)
        ),
    );
    scenario::check(
        "victim-timeout",
        tb.slow >= 1 && tb.slowest_us < (timeout_ms + 2_000) * 1000 && after[1] == AFTERWARDS,
        format_args!(
            "B: {} load(s) all ones after waiting {} ms (timeout {timeout_ms}), {} at once \
             after; {} of {AFTERWARDS} at once at the end",
            tb.slow,
            tb.slowest_us / 1000,
            tb.at_once,
            after[1]
        ),
    );
    scenario::check(
        "victim-slot-held",
        ta.at_once >= 1 && ta.answers_after_vanished > 0,
        format_args!(
            "A: {} load(s) all ones at once while B's timed-out request held the slot, {} \
             answered after the attacker let go",
            ta.at_once, ta.answers_after_vanished
        ),
    );
    scenario::check(
        "victim-no-page",
        done_seen
            && last == Ok(0xffff_ffff)
            && last_us >= slow_us
            && last_us < (timeout_ms + 2_000) * 1000
            && after[0] == AFTERWARDS,
        format_args!(
            "DONE {}; A's next read (the attacker has no ioreq page): {}; {} of {AFTERWARDS} \
             reads at once after",
            if done_seen { "read" } else { "NEVER read" },
            Reading(last.unwrap_or(0xbad_e11), last_us),
            after[0],
        ),
    );
}

/// Phase 2: C's backend moves the slot backwards after `COMPLETE`.
fn crashed_on_completion(c: usize) {
    let mut answered = 0;
    let mut last = None;
    for i in 0..C_READS {
        let off = (u64::from(i) * 8) % OFFSETS;
        let start = timer::now();
        // SAFETY: a register of this guest's device C.
        let r = unsafe { insn::ldr_w(c + off as usize) };
        let us = timer::ticks_to_us(timer::now() - start);
        if r == Ok(contract::answer(off) & 0xffff_ffff) {
            answered += 1;
            continue;
        }
        last = Some((r, us));
        break;
    }
    let after = at_once(c, AT_ONCE_US);
    scenario::check(
        "victim-slot-backwards",
        matches!(last, Some((Ok(0xffff_ffff), _))) && after == AFTERWARDS,
        format_args!(
            "C: {answered} reads answered, then {} (its backend moved the slot back after \
             COMPLETE); {after} of {AFTERWARDS} later reads all ones at once",
            match last {
                Some((Ok(v), us)) => Reading(v, us),
                Some((Err(_), us)) => Reading(0xbad_e11, us),
                None => Reading(0, 0),
            }
        ),
    );
}

/// Phase 3: D's backend wrote into the idle slot.
fn crashed_on_post(d: usize) {
    let (r, us) = read_timed(d);
    let after = at_once(d, AT_ONCE_US);
    scenario::check(
        "victim-idle-slot",
        r == Ok(0xffff_ffff) && us < AT_ONCE_US && after == AFTERWARDS,
        format_args!(
            "D: first read {} (its backend had written the idle slot); {after} of \
             {AFTERWARDS} later reads all ones at once",
            Reading(r.unwrap_or(0xbad_e11), us)
        ),
    );
}

/// Makes no access for `ms` milliseconds, asleep (the virtual timer wakes the vCPU).
fn pause(ms: u64) {
    let _ = gic::wait_for_irq(timer::VIRTUAL_TIMER, 0, Deadline::after_ms(ms));
}

/// Reads register 0 of the device at `base` (32 bits); returns the outcome and its time.
fn read_timed(base: usize) -> (Outcome<u64>, u64) {
    let start = timer::now();
    // SAFETY: register 0 of one of this guest's devices; reads have no side effect.
    let r = unsafe { insn::ldr_w(base) };
    (r, timer::ticks_to_us(timer::now() - start))
}

/// Counts reads of `base` that return all ones within `limit_us`, out of [`AFTERWARDS`].
fn at_once(base: usize, limit_us: u64) -> u32 {
    let mut n = 0;
    for _ in 0..AFTERWARDS {
        let (r, us) = read_timed(base);
        n += u32::from(r == Ok(0xffff_ffff) && us < limit_us);
    }
    n
}

/// A value read and how long it took.
struct Reading(u64, u64);

impl core::fmt::Display for Reading {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x} after {} us", self.0, self.1)
    }
}
