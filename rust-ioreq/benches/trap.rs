//! Host benchmark of the Rust cost of one frontend trap (`cargo bench -p rust-ioreq`): region
//! lookup, syndrome decode and posting to the fake hypervisor, with 1, 8 and 32 (the most a
//! configuration may have) devices on the trapping frontend, and a register the fast transport
//! answers in Xen. Only `handle_mmio` is timed; the answer and completion that make the vCPU
//! idle again between samples are not. The hypervisor's own costs (the trap, the scheduler) are
//! `make bench`'s.

// Test data: indices and cells are small (the shared `common` helpers narrow them).
#![allow(clippy::cast_possible_truncation)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::hostdt::{Dev, Dom};
use common::rig::{domid, page, rig};
use common::trap::{load, trap};
use criterion::{criterion_group, criterion_main, Criterion};
use rust_ioreq::abi::{doorbell, transport};
use rust_ioreq::config::MAX_DEVICES;
use rust_ioreq::engine::{MmioOutcome, Work};
use rust_ioreq::types::{VcpuId, Width};

/// A frontend with `n` devices at 0x0200_0000 + 0x200 * i on one backend; returns the address
/// of the last one (the binary search's longest path is as long as any).
fn topology(n: usize) -> (Vec<Dom>, u64) {
    let mut fe = Dom::new("fe").nr_spis(64);
    for i in 0..n {
        let base = 0x0200_0000 + 0x200 * i as u64;
        fe = fe.device(
            Dev::new(&format!("d{i}"), 0x10)
                .at(base, 0x200)
                .irq(33 + i as u32),
        );
    }
    (
        vec![fe, Dom::backend("be", 0x10).notify_spi(90).nr_spis(64)],
        0x0200_0000 + 0x200 * (n as u64 - 1),
    )
}

fn round_trip_trap(c: &mut Criterion) {
    for n in [1, 8, MAX_DEVICES] {
        let (doms, gpa) = topology(n);
        let (engine, xen) = rig(&doms);
        let t = trap(1, 0, gpa + 0x100, load(2, 3, false));
        c.bench_function(&format!("trap_posted/{n}_devices"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let out = engine.handle_mmio(&xen, black_box(&t), |_| 0);
                    spent += start.elapsed();
                    assert_eq!(out, MmioOutcome::Retry);
                    // Make the vCPU idle again, untimed: answer, COMPLETE, completion.
                    xen.answer(page(1, 0), 0, 0);
                    let _ =
                        engine.doorbell_write(&xen, domid(1), doorbell::COMPLETE, Width::Word, 0);
                    assert!(matches!(
                        engine.vcpu_work(&xen, domid(0), VcpuId(0)),
                        Work::Complete(_)
                    ));
                    xen.take_events();
                    xen.take_posts();
                }
                spent
            });
        });
    }
}

fn answered_in_xen(c: &mut Criterion) {
    let (doms, gpa) = topology(MAX_DEVICES);
    let (engine, xen) = rig(&doms);
    // The backend publishes the last device's record (index n - 1).
    let r = transport::record(MAX_DEVICES - 1);
    for (field, v) in [
        (transport::field::DEVICE_ID, 2),
        (transport::field::NUM_QUEUES, 1),
        (transport::field::PUBLISHED, 1),
    ] {
        xen.backend_writes_transport(1, r + field, v);
    }
    xen.backend_writes_transport(1, transport::VERSION_OFFSET, transport::VERSION);
    let t = trap(1, 0, gpa + 0x008, load(2, 3, false));
    c.bench_function(
        &format!("trap_answered_in_xen/{MAX_DEVICES}_devices"),
        |b| {
            b.iter(|| {
                let out = engine.handle_mmio(&xen, black_box(&t), |_| 0);
                debug_assert!(matches!(out, MmioOutcome::Answered { .. }));
                out
            });
        },
    );
}

criterion_group!(benches, round_trip_trap, answered_in_xen);
criterion_main!(benches);
