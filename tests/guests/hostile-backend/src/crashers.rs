//! The two ways a backend gets itself crashed (docs/backend-abi.md "When a backend breaks the
//! slot protocol"), one per domain, since a crashed backend attacks nothing more. Neither can
//! report its own crash: the victim frontend checks what it sees (all ones, then nothing
//! waits), and the scenario requires Xen's crash lines for exactly these domains
//! (`expect_crash`) and rust-ioreq's line saying why.
//!
//! - `slot-backwards`: answers a request, rings `COMPLETE` (accepted), then moves the slot back
//!   from IORESP_READY to INPROCESS before the frontend vCPU completes the access: Xen finds it
//!   on the frontend's completion path and crashes the backend from there. The move is a
//!   compare-and-exchange: if Xen already completed the access (and wrote NONE), nothing is
//!   written, the attempt is counted and the next request is tried, so a lost race never
//!   turns into the other crash (a slot written while idle).
//! - `idle-slot`: writes READY into the victim's idle slot at boot, then waits: Xen finds it
//!   when it next posts there and crashes the backend from the frontend's trap.

use guest_common::timer::{self, Deadline};
use guest_common::{println, scenario};

use crate::contract;
use crate::serve::Server;
use crate::slot::{INPROCESS, NONE, READY, RESP_READY};

/// Tries before `slot-backwards` gives up.
const ATTEMPTS: u32 = 200;
/// How long a slot moved backwards may stay so before something is wrong (Xen neither
/// completed the access nor crashed this domain).
const STUCK_MS: u64 = 10_000;

/// `hostile.mode=slot-backwards`.
pub fn slot_backwards(server: &mut Server) {
    for attempt in 1..=ATTEMPTS {
        let Some(t) = server.wait(Deadline::after_ms(60_000), &mut |_| true) else {
            scenario::check("slot-backwards", false, "no request to abuse within 60 s");
            return;
        };
        let flags = t.req.flags & 0xf0;
        t.slot.respond(contract::answer(t.offset(server)));
        if server.doorbell.complete(server.k, t.vcpu).is_err() {
            scenario::check(
                "slot-backwards",
                false,
                "COMPLETE of a proper answer refused",
            );
            return;
        }
        if !t
            .slot
            .compare_exchange_flags(flags | RESP_READY, flags | INPROCESS)
        {
            // Xen completed the access first: no harm done, try the next one.
            continue;
        }
        // Moved back before Xen looked, or after it read IORESP_READY and before it wrote
        // NONE over it: wait for whichever happens.
        let deadline = Deadline::after_ms(STUCK_MS);
        let start = timer::now();
        while t.slot.flags() & 0xf == INPROCESS {
            if deadline.expired() {
                scenario::check(
                    "slot-backwards",
                    false,
                    format_args!(
                        "attempt {attempt}: slot moved back to INPROCESS after COMPLETE, and \
                         {STUCK_MS} ms later this backend is alive and the slot unchanged"
                    ),
                );
                return;
            }
        }
        let state = t.slot.flags() & 0xf;
        println!(
            "hostile-backend: attempt {attempt}: Xen overwrote the moved-back slot with state \
             {state} after {} us (it completed the access first)",
            timer::ticks_to_us(timer::now() - start)
        );
        if state != NONE && state != READY {
            scenario::check(
                "slot-backwards",
                false,
                format_args!("slot state {state} after Xen completed"),
            );
            return;
        }
    }
    scenario::check(
        "slot-backwards",
        false,
        format_args!("{ATTEMPTS} attempts, and Xen always completed first"),
    );
}

/// `hostile.mode=idle-slot`.
pub fn idle_slot(server: &mut Server) {
    let slot = server.slot(0);
    let before = slot.flags();
    slot.set_data(contract::answer(0));
    slot.set_flags(READY);
    println!(
        "hostile-backend: wrote READY into the victim's idle slot 0 (state was {before}); \
         waiting for Xen to post there"
    );
}
