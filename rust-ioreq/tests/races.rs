//! Deterministic interleavings of the engine's cross-pCPU paths (issue 7, defect 1): another
//! pCPU's work is run between a path's check and its compare-exchange, and the innocent domain
//! must not pay for it. `tests/loom.rs` explores every interleaving of the same atomics.

// Test data: indices and cells are small (the shared `common` helpers narrow them).
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::fake::Event;
use common::interleave::Interleave;
use common::rig::{domid, page, rig, standard, BE, BE2, FE};
use common::trap::{load, trap};
use rust_ioreq::abi::{doorbell, STATE_IOREQ_READY};
use rust_ioreq::engine::{DoorbellError, DoorbellEvent, MmioOutcome, Work};
use rust_ioreq::types::{VcpuId, Width};

const BLK: u64 = 0x0200_0000;
const NET: u64 = 0x0200_0200;

fn no_reg(r: u8) -> u64 {
    panic!("read_reg({r}) for a load")
}

/// `COMPLETE` (frontend index `k`, `vcpu`) from `backend`'s doorbell.
fn complete_value(k: u32, vcpu: u32) -> u32 {
    (k << 16) | vcpu
}

/// A hostile SMP backend rings `COMPLETE` for the same request from two vCPUs. The first
/// (vCPU A) has checked the record and read an `IORESP_READY` slot when, on other pCPUs, its
/// sibling (vCPU B) completes the request, the frontend finishes it and traps again, on a
/// device of *another* backend. A's stale compare-exchange must not answer that new request.
///
/// Fails on d2a38d4: its exchange compared the state byte alone (PENDING -> ANSWERED), so A
/// answered the new request; the frontend then read the innocent backend's slot, found it
/// `READY` rather than `IORESP_READY`, and crashed the innocent backend.
#[test]
fn a_stale_complete_cannot_answer_the_next_request_of_another_backend() {
    let (engine, xen) = rig(&standard());
    // fe vCPU 0 reads blk (served by be); be answers.
    let t = trap(1, 0, BLK, load(2, 3, false));
    assert_eq!(engine.handle_mmio(&xen, &t, no_reg), MmioOutcome::Retry);
    xen.answer(page(BE, 0), 0, 0x1234);
    xen.take_events();
    xen.take_posts();

    let sibling_and_frontend = || {
        // vCPU B of the hostile backend completes the request.
        let got = engine.doorbell_write(
            &xen,
            domid(BE),
            doorbell::COMPLETE,
            Width::Word,
            complete_value(0, 0),
        );
        assert_eq!(
            got,
            Ok(DoorbellEvent::Completed {
                frontend: FE,
                vcpu: VcpuId(0)
            })
        );
        // The frontend vCPU completes its read, then reads net (served by be2).
        let Work::Complete(c) = engine.vcpu_work(&xen, domid(FE), VcpuId(0)) else {
            panic!("not completed")
        };
        assert_eq!(c.write_reg, Some((3, 0x1234)));
        let t = trap(1, 0, NET, load(2, 4, false));
        assert_eq!(engine.handle_mmio(&xen, &t, no_reg), MmioOutcome::Retry);
    };
    // vCPU A's COMPLETE: the script runs right after it read the slot (its only read).
    let a = Interleave::after_read_slot(&xen, 1, sibling_and_frontend);
    let got = engine.doorbell_write(
        &a,
        domid(BE),
        doorbell::COMPLETE,
        Width::Word,
        complete_value(0, 0),
    );
    assert!(a.ran());
    assert_eq!(got, Err(DoorbellError::NotAwaited(0)));

    // The new request is untouched: waiting on be2, posted READY in be2's page.
    assert_eq!(engine.vcpu_work(&xen, domid(FE), VcpuId(0)), Work::Waiting);
    assert_eq!(xen.slot(page(BE2, 0), 0).state(), STATE_IOREQ_READY);
    let events = xen.take_events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Crash { .. })),
        "{events:?}"
    );
    assert!(xen.take_faults().is_empty());
    // And be2 answers it as usual.
    xen.answer(page(BE2, 0), 0, 0x5678);
    let got = engine.doorbell_write(
        &xen,
        domid(BE2),
        doorbell::COMPLETE,
        Width::Word,
        complete_value(0, 0),
    );
    assert!(
        matches!(got, Ok(DoorbellEvent::Completed { .. })),
        "{got:?}"
    );
    let Work::Complete(c) = engine.vcpu_work(&xen, domid(FE), VcpuId(0)) else {
        panic!("not completed")
    };
    assert_eq!(c.write_reg, Some((4, 0x5678)));
}

/// The same race against the same backend: the frontend's next request goes to another device
/// of the *same* backend (same slot). The stale `COMPLETE` must not answer it before the
/// backend has.
///
/// Fails on d2a38d4: the stale exchange answered the new request while its slot was `READY`,
/// and the frontend's completion then found the slot not `IORESP_READY` and crashed the
/// backend (here guilty of nothing but a duplicate doorbell write).
#[test]
fn a_stale_complete_cannot_answer_the_next_request_to_the_same_backend() {
    let (engine, xen) = rig(&standard());
    let t = trap(1, 0, BLK, load(2, 3, false));
    assert_eq!(engine.handle_mmio(&xen, &t, no_reg), MmioOutcome::Retry);
    xen.answer(page(BE, 0), 0, 1);
    let sibling_and_frontend = || {
        let got = engine.doorbell_write(
            &xen,
            domid(BE),
            doorbell::COMPLETE,
            Width::Word,
            complete_value(0, 0),
        );
        assert!(matches!(got, Ok(DoorbellEvent::Completed { .. })));
        assert!(matches!(
            engine.vcpu_work(&xen, domid(FE), VcpuId(0)),
            Work::Complete(_)
        ));
        // Same device again (a new register read): same page, same slot, READY.
        let t = trap(1, 0, BLK + 4, load(2, 5, false));
        assert_eq!(engine.handle_mmio(&xen, &t, no_reg), MmioOutcome::Retry);
    };
    let a = Interleave::after_read_slot(&xen, 1, sibling_and_frontend);
    let got = engine.doorbell_write(
        &a,
        domid(BE),
        doorbell::COMPLETE,
        Width::Word,
        complete_value(0, 0),
    );
    assert!(a.ran());
    assert_eq!(got, Err(DoorbellError::NotAwaited(0)));
    assert_eq!(engine.vcpu_work(&xen, domid(FE), VcpuId(0)), Work::Waiting);
    assert_eq!(xen.slot(page(BE, 0), 0).state(), STATE_IOREQ_READY);
    assert!(xen.take_faults().is_empty());
}
