//! `hostile.mode=attack`: a backend (two vCPUs) that breaks every rule of
//! docs/backend-abi.md it can without being crashed, while its victim frontend keeps issuing
//! requests (`hostile-frontend`, victim mode), and checks what Xen does about each: the data
//! abort it injects for a refused doorbell access (with the FAR), the requests it does or does
//! not post afterwards, the slots it leaves alone. One check line per attack; the order matters
//! (a timed-out request breaks its device for good, a backend without its ioreq page can answer
//! nothing), so the page removal comes last and the crashing attacks are other domains'
//! (`crashers.rs`).
//!
//! The victim has two devices here, A and B (frontend address order), and two vCPUs of which
//! only vCPU 0 runs: slot 1 is a real slot that is never awaited.

use core::sync::atomic::{AtomicU32, Ordering};

use guest_common::exception::{self, Fault};
use guest_common::timer::{self, Deadline};
use guest_common::{hypercall, println, scenario, smp};

use crate::doorbell::{self, refused_at, Doorbell};
use crate::insn;
use crate::serve::{Server, Taken};
use crate::slot::{INPROCESS, NONE, READY, RESP_READY};

/// How long an attack waits for the victim's next request before it gives up (FAIL).
const REQUEST_MS: u64 = 10_000;
/// Rounds of the two-vCPU COMPLETE race.
const RACE_ROUNDS: u32 = 20;
/// Valid `RAISE_IRQ`s in the storm, and per chunk (the victim is served between chunks so
/// its requests never wait long enough to time out).
const RAISE_STORM: u32 = 20_000;
/// `ONLINE`s in the storm (issue 7 defect 4: each used to print a line).
const ONLINE_STORM: u32 = 100_000;
/// Refused doorbell writes in a burst (each would print a line without a rate limit).
const REFUSED_STORM: u32 = 1_000;
/// Doorbell writes between two scans of the slots during a storm.
const CHUNK: u32 = 500;
/// How long the victim pauses while the storms run (they take a few seconds on a busy host;
/// past the pause, the victim's requests are served between chunks).
const STORM_PAUSE_MS: u16 = 4_000;
/// Requests served after the late answer while checking that B is never posted again.
const AFTER_TIMEOUT: u32 = 40;

/// The attacking backend's second vCPU: rings `COMPLETE` when told to.
static GO: AtomicU32 = AtomicU32::new(0);
static COMPLETE_VALUE: AtomicU32 = AtomicU32::new(0);
/// Round number << 1 | 1 if vCPU 1's `COMPLETE` was accepted.
static HELPER_RESULT: AtomicU32 = AtomicU32::new(0);
/// Tells vCPU 1 to stop.
const GO_STOP: u32 = u32::MAX;

fn helper(doorbell_base: usize) {
    // SAFETY: the same doorbell page vCPU 0 uses.
    let db = unsafe { Doorbell::new(doorbell_base as u64) };
    let mut done = 0;
    loop {
        let go = GO.load(Ordering::Acquire);
        if go == GO_STOP {
            return;
        }
        if go != done {
            let ok = db
                .write(doorbell::COMPLETE, COMPLETE_VALUE.load(Ordering::Relaxed))
                .is_ok();
            HELPER_RESULT.store(go << 1 | u32::from(ok), Ordering::Release);
            done = go;
        }
        core::hint::spin_loop();
    }
}

/// Runs every attack; `cpus` are the MPIDRs of this domain's vCPUs.
pub fn run(server: &mut Server, cpus: &[u64], timeout_ms: u64) {
    let db = server.doorbell;
    if server.ndevices < 2 || server.vcpus < 2 {
        scenario::check(
            "attack-setup",
            false,
            "want a victim with two vCPUs and two devices (A, B)",
        );
        return;
    }
    identity(db);
    widths(db);
    offsets(db);
    forms(db);
    raise_unknown(db);
    complete_bad_frontend(db);
    complete_bad_vcpu(db);
    complete_not_awaited(server);
    let Some(t) = take(server, "complete-unanswered", |_| true) else {
        return;
    };
    complete_unanswered(server, &t);
    garbage(server, &t);
    complete_twice(server);
    match cpus.get(1) {
        Some(&mpidr) if smp::start_cpu(1, mpidr, helper, db.at(0)).is_ok() => {
            race(server);
            GO.store(GO_STOP, Ordering::Release);
        }
        _ => {
            scenario::check("complete-race", false, "vCPU 1 did not start");
        }
    }
    storms(server);
    slot_timeout(server, timeout_ms);
    let s = &*server;
    scenario::check(
        "store-data",
        s.bad_stores == 0 && s.stores.iter().sum::<u64>() > 0,
        format_args!(
            "{} victim stores arrived with exactly their width's bytes ({} wrong, first {:x?}); \
             {} reads answered, {} strays, {} COMPLETEs refused while serving",
            s.stores.iter().sum::<u64>(),
            s.bad_stores,
            s.first_bad_store,
            s.reads.iter().sum::<u64>(),
            s.strays,
            s.refused_completes
        ),
    );
    physmap(server, timeout_ms);
}

/// Waits for the victim's next request that `want` accepts, serving the others; a FAIL line
/// named `check` if none comes.
fn take(server: &mut Server, check: &str, mut want: impl FnMut(&Taken) -> bool) -> Option<Taken> {
    let t = server.wait(Deadline::after_ms(REQUEST_MS), &mut want);
    if t.is_none() {
        scenario::check(
            check,
            false,
            format_args!("no request from the victim within {REQUEST_MS} ms"),
        );
    }
    t
}

/// Renders a doorbell outcome: the value, `ok`, or the abort's FAR.
struct Shown<'a, T>(&'a Result<T, Fault>);

impl<T: core::fmt::LowerHex> core::fmt::Display for Shown<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "{v:#x}"),
            Err(e) if e.is_data_abort() && e.esr & 0x1ff_ffff == 0 => {
                write!(f, "abort@{:#x}", e.far)
            }
            Err(e) => write!(f, "exception ESR {:#x} FAR {:#x}", e.esr, e.far),
        }
    }
}

/// Renders a write outcome.
struct Wrote<'a>(&'a Result<(), Fault>);

impl core::fmt::Display for Wrote<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("accepted"),
            Err(_) => Shown(&self.0.map(|()| 0u8)).fmt(f),
        }
    }
}

/// Outcomes that must all be refusals (a data abort at the access's own address): says so, or
/// shows the first that is not.
struct Refusals<'a, T>(&'a [(usize, Result<T, Fault>)]);

impl<T: core::fmt::LowerHex> Refusals<'_, T> {
    fn all(&self) -> bool {
        self.0.iter().all(|(at, r)| refused_at(r, *at))
    }
}

impl<T: core::fmt::LowerHex> core::fmt::Display for Refusals<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.0.len();
        match self.0.iter().find(|(at, r)| !refused_at(r, *at)) {
            None => write!(f, "{n} of {n} refused with a data abort at their address"),
            Some((at, r)) => write!(f, "NOT refused at {at:#x}: {}", Shown(r)),
        }
    }
}

/// The identification registers, and the write-only ones read back.
fn identity(db: Doorbell) {
    let regs = [
        doorbell::MAGIC,
        doorbell::VERSION,
        doorbell::FEATURES,
        doorbell::COMPLETE,
        doorbell::RAISE_IRQ,
        doorbell::ONLINE,
    ];
    let got = regs.map(|r| db.read(r));
    // Interface version 2, with the fast transport (FEATURES bit 0).
    let want = [doorbell::MAGIC_VALUE, 2, 1, 0, 0, 0];
    scenario::check(
        "doorbell-identity",
        got.iter().zip(want).all(|(g, w)| *g == Ok(w)),
        format_args!(
            "MAGIC {} VERSION {} FEATURES {}; write-only COMPLETE {} RAISE_IRQ {} ONLINE {}",
            Shown(&got[0]),
            Shown(&got[1]),
            Shown(&got[2]),
            Shown(&got[3]),
            Shown(&got[4]),
            Shown(&got[5])
        ),
    );
}

/// Every width but 32 bits, both directions: refused.
fn widths(db: Doorbell) {
    let (magic, complete, online) = (
        db.at(doorbell::MAGIC),
        db.at(doorbell::COMPLETE),
        db.at(doorbell::ONLINE),
    );
    // SAFETY: (all) doorbell registers, Xen's emulation; refusals are caught.
    let r = unsafe {
        [
            (magic, insn::ldrb(magic)),
            (magic, insn::ldrh(magic)),
            (magic, insn::ldr_x(magic)),
            (online, insn::strb(online, 1).map(|()| 0)),
            (complete, insn::strh(complete, 0).map(|()| 0)),
            (complete, insn::str_x(complete, 0).map(|()| 0)),
        ]
    };
    scenario::check(
        "doorbell-width",
        Refusals(&r).all(),
        format_args!(
            "8-, 16-, 64-bit reads of MAGIC and writes of ONLINE, COMPLETE, COMPLETE: {}",
            Refusals(&r)
        ),
    );
}

/// Offsets with no register, read-only registers written, a misaligned register.
fn offsets(db: Doorbell) {
    let reads = [0x0c, 0x1c, 0xffc, 0x02].map(|o| (db.at(o), db.read(o)));
    let writes = [
        doorbell::MAGIC,
        doorbell::VERSION,
        doorbell::FEATURES,
        0x1c,
        0xffc,
    ]
    .map(|o| (db.at(o), db.write(o, 1).map(|()| 0)));
    scenario::check(
        "doorbell-offset",
        Refusals(&reads).all() && Refusals(&writes).all(),
        format_args!(
            "reads of +0xc +0x1c +0xffc +0x2: {}; writes of MAGIC VERSION FEATURES +0x1c \
             +0xffc: {}",
            Refusals(&reads),
            Refusals(&writes)
        ),
    );
}

/// Instruction forms without a syndrome on the doorbell: a pair (refused) and the post-indexed
/// load Xen decodes (served, base written back).
fn forms(db: Doorbell) {
    let magic = db.at(doorbell::MAGIC);
    // SAFETY: doorbell registers; reads have no side effects, refusals are caught.
    let (pair, post) = unsafe { (insn::ldp_w(magic), insn::ldr_w_post(magic)) };
    let ok = refused_at(&pair, magic)
        && post
            == Ok(insn::WriteBack {
                value: u64::from(doorbell::MAGIC_VALUE),
                base: magic + 4,
            });
    scenario::check(
        "doorbell-forms",
        ok,
        format_args!(
            "ldp w at MAGIC: {}; ldr w [MAGIC], #4: {} base {}",
            Shown(&pair.map(|(a, _)| a)),
            Shown(&post.map(|w| w.value)),
            Shown(&post.map(|w| w.base))
        ),
    );
}

/// `RAISE_IRQ` for devices this backend does not serve.
fn raise_unknown(db: Doorbell) {
    let at = db.at(doorbell::RAISE_IRQ);
    let r = [2, 99, 0xffff_ffff].map(|d| (at, db.write(doorbell::RAISE_IRQ, d).map(|()| 0)));
    scenario::check(
        "raise-irq-unknown",
        Refusals(&r).all(),
        format_args!(
            "RAISE_IRQ 2, 99, 0xffffffff (it serves 0 and 1): {}",
            Refusals(&r)
        ),
    );
}

/// `COMPLETE` naming a frontend index this backend does not have.
fn complete_bad_frontend(db: Doorbell) {
    let at = db.at(doorbell::COMPLETE);
    let r = [(1, 0), (7, 0), (0xffff, 1)].map(|(k, v)| (at, db.complete(k, v).map(|()| 0)));
    scenario::check(
        "complete-bad-frontend",
        Refusals(&r).all(),
        format_args!(
            "COMPLETE for frontend 1, 7, 0xffff (it has one): {}",
            Refusals(&r)
        ),
    );
}

/// `COMPLETE` naming a vCPU the victim does not have.
fn complete_bad_vcpu(db: Doorbell) {
    let at = db.at(doorbell::COMPLETE);
    let r = [2, 127, 0xffff].map(|v| (at, db.complete(0, v).map(|()| 0)));
    scenario::check(
        "complete-bad-vcpu",
        Refusals(&r).all(),
        format_args!(
            "COMPLETE for vCPU 2, 127, 0xffff (the victim has 2): {}",
            Refusals(&r)
        ),
    );
}

/// `COMPLETE` for the victim's vCPU 1, which never runs, so never has a request: as it is, and
/// after writing IORESP_READY into its idle slot.
fn complete_not_awaited(server: &mut Server) {
    let db = server.doorbell;
    let at = db.at(doorbell::COMPLETE);
    let slot1 = server.slot(1);
    let plain = db.complete(server.k, 1);
    slot1.set_flags(RESP_READY);
    let forged = db.complete(server.k, 1);
    slot1.set_flags(NONE);
    scenario::check(
        "complete-not-awaited",
        refused_at(&plain, at) && refused_at(&forged, at),
        format_args!(
            "COMPLETE for the victim's vCPU 1 (never runs): {}; again with its slot forged \
             IORESP_READY: {}",
            Wrote(&plain),
            Wrote(&forged)
        ),
    );
}

/// A real request in flight, `COMPLETE` rung before it is answered, with every state that is
/// not IORESP_READY.
fn complete_unanswered(server: &mut Server, t: &Taken) {
    let db = server.doorbell;
    let at = db.at(doorbell::COMPLETE);
    let upper = t.req.flags & 0xf0;
    let states = [READY, INPROCESS, 0x4, 0x7, 0xf];
    let mut refused = 0;
    for state in states {
        t.slot.set_flags(upper | state);
        if refused_at(&db.complete(server.k, t.vcpu), at) {
            refused += 1;
        }
    }
    // Xen did not take the request away meanwhile: the slot holds what we last wrote.
    let still = t.slot.flags();
    scenario::check(
        "complete-unanswered",
        refused == states.len() && still == upper | 0xf,
        format_args!(
            "request at {:#x} in flight: COMPLETE with state READY, INPROCESS, 4, 7, 15: {} of \
             {} refused; slot untouched by Xen ({:#x})",
            t.req.addr,
            refused,
            states.len(),
            still
        ),
    );
}

/// Answers the request with garbage in every other field, the state's upper bits set; then
/// checks that Xen accepted it and rewrote every field of the next request in that slot.
fn garbage(server: &mut Server, t: &Taken) {
    let db = server.doorbell;
    t.slot.scribble();
    t.slot.set_data(crate::contract::answer(t.offset(server)));
    t.slot.set_flags(0xf0 | RESP_READY);
    let accepted = db.complete(server.k, t.vcpu);
    let vcpu = t.vcpu;
    let next = take(server, "slot-garbage", |n| n.vcpu == vcpu);
    let clean = next.is_some_and(|n| n.req.is_clean() && n.device.is_some());
    scenario::check(
        "slot-garbage",
        accepted.is_ok() && clean,
        format_args!(
            "answer with garbage addr, size, count, eport, pad, type, flags 0xf3: {}; Xen \
             wrote the next request in the slot {}: {}",
            Wrote(&accepted),
            if clean { "clean" } else { "NOT clean" },
            Fields(next.map(|n| n.req))
        ),
    );
    if let Some(n) = next {
        server.serve(&n);
    }
}

/// Renders a request's fields compactly.
struct Fields(Option<crate::slot::Request>);

impl core::fmt::Display for Fields {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(r) => write!(
                f,
                "addr {:#x} size {} count {} eport+pad {:#x} flags {:#x} type {}",
                r.addr, r.size, r.count, r.eport_pad, r.flags, r.kind
            ),
        }
    }
}

/// `COMPLETE` twice for one answer.
fn complete_twice(server: &mut Server) {
    let Some(t) = take(server, "complete-twice", |_| true) else {
        return;
    };
    let db = server.doorbell;
    let at = db.at(doorbell::COMPLETE);
    t.slot.respond(crate::contract::answer(t.offset(server)));
    let first = db.complete(server.k, t.vcpu);
    let second = db.complete(server.k, t.vcpu);
    scenario::check(
        "complete-twice",
        first.is_ok() && refused_at(&second, at),
        format_args!(
            "one answer, COMPLETE twice: first {}, second {}",
            Wrote(&first),
            Wrote(&second)
        ),
    );
}

/// Both vCPUs ring `COMPLETE` for the same answer at once: exactly one may be accepted.
fn race(server: &mut Server) {
    let db = server.doorbell;
    let mut exact = 0;
    let mut both = 0;
    let mut neither = 0;
    for round in 1..=RACE_ROUNDS {
        let Some(t) = take(server, "complete-race", |_| true) else {
            break;
        };
        t.slot.respond(crate::contract::answer(t.offset(server)));
        COMPLETE_VALUE.store(
            doorbell::complete_value(server.k, t.vcpu),
            Ordering::Relaxed,
        );
        GO.store(round, Ordering::Release);
        let mine = db.complete(server.k, t.vcpu).is_ok();
        let deadline = Deadline::after_ms(REQUEST_MS);
        let theirs = loop {
            let r = HELPER_RESULT.load(Ordering::Acquire);
            if r >> 1 == round {
                break Some(r & 1 == 1);
            }
            if deadline.expired() {
                break None;
            }
            core::hint::spin_loop();
        };
        match theirs {
            Some(theirs) if mine != theirs => exact += 1,
            Some(true) => both += 1,
            Some(false) => neither += 1,
            None => break,
        }
    }
    scenario::check(
        "complete-race",
        exact == RACE_ROUNDS,
        format_args!(
            "{RACE_ROUNDS} answers, COMPLETE from both vCPUs at once: exactly one accepted in \
             {exact}, both in {both}, neither in {neither}"
        ),
    );
}

/// Valid `RAISE_IRQ`s and `ONLINE`s by the ten thousand, then refused writes. The victim is
/// asked to pause first, and served between chunks once the pause is over.
fn storms(server: &mut Server) {
    let a = server.devices[0].base;
    let Some(control) = take(server, "raise-irq-storm", |t| {
        t.device == Some(0) && t.req.is_read() && t.req.addr == a + crate::contract::CONTROL
    }) else {
        return;
    };
    server.pause_ms = Some(STORM_PAUSE_MS);
    server.serve(&control);
    let db = server.doorbell;
    let device = server.indices[0];
    let mut storm = |what: &str, count: u32, off: usize, value: u32, want_ok: bool| {
        let start = timer::now();
        let mut as_wanted = 0;
        let mut n = 0;
        while n < count {
            for _ in 0..CHUNK.min(count - n) {
                if db.write(off, value).is_ok() == want_ok {
                    as_wanted += 1;
                }
                n += 1;
            }
            server.scan(&mut |_| false);
        }
        let ms = timer::ticks_to_us(timer::now() - start) / 1000;
        scenario::check(
            what,
            as_wanted == count,
            format_args!(
                "{count} x {} in {ms} ms: {as_wanted} {}",
                match off {
                    doorbell::ONLINE => "ONLINE",
                    _ => "RAISE_IRQ",
                },
                if want_ok {
                    "accepted"
                } else {
                    "refused with a data abort (Xen's messages rate-limited)"
                }
            ),
        );
    };
    storm(
        "raise-irq-storm",
        RAISE_STORM,
        doorbell::RAISE_IRQ,
        device,
        true,
    );
    storm("online-storm", ONLINE_STORM, doorbell::ONLINE, 1, true);
    storm(
        "refused-storm",
        REFUSED_STORM,
        doorbell::RAISE_IRQ,
        99,
        false,
    );
}

/// Lets a request to B time out: Xen must give up on it (the victim sees all ones), leave the
/// slot to this backend (no other request is posted over it), accept the late `COMPLETE`
/// silently, and never post to B again.
fn slot_timeout(server: &mut Server, timeout_ms: u64) {
    let b = 1;
    // A read: the victim can tell that it completed with all ones.
    let Some(t) = take(server, "slot-timeout", |t| {
        t.device == Some(b) && t.req.is_read()
    }) else {
        return;
    };
    // Hold it for twice the timeout, watching the slot.
    let hold = Deadline::after_ms(2 * timeout_ms);
    let mut changed = false;
    while !hold.expired() {
        changed |= t.slot.read() != t.req;
    }
    let held_ms = timer::ticks_to_us(timer::now() - t.seen) / 1000;
    t.slot.respond(crate::contract::answer(t.offset(server)));
    let late = server.doorbell.complete(server.k, t.vcpu);
    // The slot is this backend's again once answered: the victim's next request lands there.
    let mut to_b = 0;
    let mut served = 0;
    let deadline = Deadline::after_ms(REQUEST_MS);
    while served < AFTER_TIMEOUT && !deadline.expired() {
        if let Some(n) = server.wait(deadline, &mut |_| true) {
            to_b += u32::from(n.device == Some(b));
            server.serve(&n);
            served += 1;
        }
    }
    scenario::check(
        "slot-timeout",
        !changed && late.is_ok() && served == AFTER_TIMEOUT && to_b == 0,
        format_args!(
            "a read of B held {held_ms} ms (timeout {timeout_ms}): slot {} by Xen; late \
             COMPLETE {}; then {served} requests served, {to_b} of them to B",
            if changed { "CHANGED" } else { "untouched" },
            Wrote(&late)
        ),
    );
}

/// Announces the end (control reads answer DONE), then takes the victim's RAM window page and the ioreq page out of this
/// domain's physmap and checks that Xen keeps going: the hypercalls' results, the aborts on
/// the removed pages, the doorbell still there. The victim's next request then times out.
fn physmap(server: &mut Server, timeout_ms: u64) {
    server.done_mode = true;
    let a = server.devices[0].base;
    let control = take(server, "physmap", |t| {
        t.device == Some(0) && t.req.is_read() && t.req.addr == a + crate::contract::CONTROL
    });
    let Some(control) = control else {
        return;
    };
    server.serve(&control);
    let window = (server.window.base + server.ram.base) as usize;
    let page = server.ioreq_page as usize;
    // SAFETY: (all) the victim's first RAM page through the window, this domain's ioreq page
    // and doorbell: no Rust object lives there, and every access after a removal is caught.
    let (before, dec_window, after_dec, rm_window, after_rm, rm_page, slot_after, dec_db) = unsafe {
        let before = exception::try_read_u64(window);
        let dec_window = hypercall::decrease_reservation(window as u64);
        let after_dec = exception::try_read_u64(window);
        let rm_window = hypercall::remove_from_physmap(window as u64);
        let after_rm = exception::try_read_u64(window);
        let rm_page = hypercall::remove_from_physmap(page as u64);
        let slot_after = exception::try_read_u8(page + 30);
        let dec_db = hypercall::decrease_reservation(server.doorbell.at(0) as u64);
        (
            before, dec_window, after_dec, rm_window, after_rm, rm_page, slot_after, dec_db,
        )
    };
    let magic = server.doorbell.read(doorbell::MAGIC);
    let complete = server.doorbell.complete(server.k, 0);
    let ok = server.done_delivered
        && refused_at(&complete, server.doorbell.at(doorbell::COMPLETE))
        && before.is_ok()
        && dec_window == 0
        && after_dec.is_ok()
        && rm_window == 0
        && refused_at(&after_rm, window)
        && rm_page == 0
        && refused_at(&slot_after, page + 30)
        && dec_db == 0
        && magic == Ok(doorbell::MAGIC_VALUE);
    scenario::check(
        "physmap",
        ok,
        format_args!(
            "window page: decrease_reservation {dec_window} (read {}), remove_from_physmap \
             {rm_window} (read {}); ioreq page: remove {rm_page} (read {}); doorbell: \
             decrease {dec_db}, MAGIC {}; COMPLETE {}",
            if after_dec.is_ok() { "ok" } else { "FAULTS" },
            Shown(&after_rm),
            Shown(&slot_after),
            if magic == Ok(doorbell::MAGIC_VALUE) {
                "ok"
            } else {
                "WRONG"
            },
            Wrote(&complete)
        ),
    );
    println!(
        "hostile-backend: no ioreq page any more; the victim's next request times out after \
         {timeout_ms} ms"
    );
}
