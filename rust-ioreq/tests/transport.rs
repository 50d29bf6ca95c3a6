//! Host tests of the fast transport (backend interface version 2, `docs/backend-abi.md`): the
//! registers Xen answers from a published record, posted `QueueNotify` with its counts and
//! wake-up suppression, `InterruptStatus` and `InterruptACK` kept in Xen, reset, classic
//! devices, invalid records, dead backends, and the polling spin. Each test fails on the
//! version-1 engine, where every one of these accesses was a round trip.

// Test data: indices and cells are small (the shared `common` helpers narrow them).
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::fake::{Event, FakeXen};
use common::hostdt::{Dev, Dom};
use common::rig::{domid, page, rig, standard, BE, FE};
use common::trap::{load, load_signed, store, trap};
use rust_ioreq::abi::{doorbell, notify, transport};
use rust_ioreq::engine::{reg, Engine, MmioOutcome, TransportKind, Work, VIRTIO_MAGIC};
use rust_ioreq::types::{DomId, VcpuId, Width};

/// blk: be's device 0 in fe; net: be's device 1.
const BLK: u64 = 0x0200_0000;
const NET: u64 = 0x0200_0200;
/// The notify SPI of be (the rig's default).
const BE_NOTIFY_SPI: u32 = 44;

/// What blk's record publishes.
const DEVICE_ID: u32 = 2;
const VENDOR_ID: u32 = 0x554d_4551;
const QUEUE_NUM_MAX: u32 = 128;
const GENERATION: u32 = 7;
const FEATURES: [u32; 4] = [0x0000_0264, 0x0000_0001, 0, 0xa5a5_0000];

/// Plays be: publishes device `index`'s record with `num_queues` queues, then the version.
fn publish(xen: &FakeXen, index: usize, num_queues: u32) {
    let r = transport::record(index);
    let w = |field: usize, v: u32| xen.backend_writes_transport(BE, r + field, v);
    w(transport::field::DEVICE_ID, DEVICE_ID);
    w(transport::field::VENDOR_ID, VENDOR_ID);
    w(transport::field::NUM_QUEUES, num_queues);
    w(transport::field::QUEUE_NUM_MAX, QUEUE_NUM_MAX);
    w(transport::field::CONFIG_GENERATION, GENERATION);
    for (i, f) in FEATURES.iter().enumerate() {
        w(transport::field::DEVICE_FEATURES + 4 * i, *f);
    }
    w(transport::field::PUBLISHED, 1);
    xen.backend_writes_transport(BE, transport::VERSION_OFFSET, transport::VERSION);
}

/// fe vCPU 0 reads the 32-bit register at `offset` of the device at `base` into w3.
fn read32(engine: &Engine, xen: &FakeXen, base: u64, offset: u32) -> MmioOutcome {
    engine.handle_mmio(
        xen,
        &trap(1, 0, base + u64::from(offset), load(2, 3, false)),
        |_| panic!("a load reads no register"),
    )
}

/// fe vCPU 0 writes `value` to the 32-bit register at `offset` of the device at `base`.
fn write32(engine: &Engine, xen: &FakeXen, base: u64, offset: u32, value: u32) -> MmioOutcome {
    engine.handle_mmio(
        xen,
        &trap(1, 0, base + u64::from(offset), store(2, 3)),
        |r| {
            assert_eq!(r, 3);
            u64::from(value)
        },
    )
}

fn answered(value: u32) -> MmioOutcome {
    MmioOutcome::Answered {
        write_reg: Some((3, u64::from(value))),
    }
}

const WRITTEN: MmioOutcome = MmioOutcome::Answered { write_reg: None };

/// Plays be answering fe vCPU 0's request with `data`, then completes the vCPU's access.
fn answer_and_complete(engine: &Engine, xen: &FakeXen, data: u64) -> Work {
    xen.answer(page(BE, 0), 0, data);
    engine
        .doorbell_write(xen, domid(BE), doorbell::COMPLETE, Width::Word, 0)
        .expect("COMPLETE accepted");
    engine.vcpu_work(xen, domid(FE), VcpuId(0))
}

#[test]
fn an_unpublished_device_goes_to_the_backend() {
    let (engine, xen) = rig(&standard());
    assert_eq!(engine.transport_kind(&xen, 0), TransportKind::RoundTrips);
    assert_eq!(
        read32(&engine, &xen, BLK, reg::MAGIC_VALUE),
        MmioOutcome::Retry
    );
    assert_eq!(xen.take_posts().len(), 1);
}

#[test]
fn a_published_record_answers_the_transport_registers_in_xen() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    assert_eq!(engine.transport_kind(&xen, 0), TransportKind::Fast);
    // net (device 1) published nothing: still round trips.
    assert_eq!(engine.transport_kind(&xen, 1), TransportKind::RoundTrips);
    for (offset, value) in [
        (reg::MAGIC_VALUE, VIRTIO_MAGIC),
        (reg::VERSION, 2),
        (reg::DEVICE_ID, DEVICE_ID),
        (reg::VENDOR_ID, VENDOR_ID),
        (reg::DEVICE_FEATURES, FEATURES[0]),
        (reg::QUEUE_NUM_MAX, QUEUE_NUM_MAX),
        (reg::INTERRUPT_STATUS, 0),
        (reg::CONFIG_GENERATION, GENERATION),
    ] {
        assert_eq!(
            read32(&engine, &xen, BLK, offset),
            answered(value),
            "{offset:#x}"
        );
    }
    // Nothing reached the backend, nothing was injected, the vCPU never waited.
    assert!(xen.take_posts().is_empty());
    assert!(xen.take_events().is_empty());
    assert_eq!(engine.vcpu_work(&xen, domid(FE), VcpuId(0)), Work::Idle);
    // DeviceFeaturesSel is kept in Xen, where it selects the word, and reaches the backend.
    for sel in [1u32, 3, 2, 4, u32::MAX] {
        assert_eq!(
            write32(&engine, &xen, BLK, reg::DEVICE_FEATURES_SEL, sel),
            MmioOutcome::Retry
        );
        assert!(matches!(
            answer_and_complete(&engine, &xen, 0),
            Work::Complete(_)
        ));
        let want = FEATURES.get(sel as usize).copied().unwrap_or(0);
        assert_eq!(
            read32(&engine, &xen, BLK, reg::DEVICE_FEATURES),
            answered(want)
        );
    }
    assert_eq!(
        xen.take_posts().len(),
        5,
        "one post per DeviceFeaturesSel write"
    );
    // A 16-bit load of MagicValue's low half is not an access Xen answers: the backend's.
    let t = trap(1, 0, BLK, load_signed(1, 3, true));
    assert_eq!(engine.handle_mmio(&xen, &t, |_| 0), MmioOutcome::Retry);
    assert_eq!(xen.take_posts().len(), 1);
}

#[test]
fn other_registers_and_widths_still_go_to_the_backend() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    // Status, device configuration space, DriverFeatures, QueueReady: round trips.
    for offset in [reg::STATUS, 0x100, 0x020, 0x044] {
        assert_eq!(
            read32(&engine, &xen, BLK, offset),
            MmioOutcome::Retry,
            "{offset:#x}"
        );
        let Work::Complete(c) = answer_and_complete(&engine, &xen, 5) else {
            panic!("{offset:#x}: not completed")
        };
        assert_eq!(c.write_reg, Some((3, 5)));
    }
    // A 64-bit read of MagicValue is not a register access Xen answers.
    let t = trap(1, 0, BLK, load(3, 3, true));
    assert_eq!(engine.handle_mmio(&xen, &t, |_| 0), MmioOutcome::Retry);
}

#[test]
fn queue_num_max_follows_queue_sel_which_still_reaches_the_backend() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 2);
    for (sel, want) in [(1, QUEUE_NUM_MAX), (2, 0), (0, QUEUE_NUM_MAX)] {
        assert_eq!(
            write32(&engine, &xen, BLK, reg::QUEUE_SEL, sel),
            MmioOutcome::Retry
        );
        let posts = xen.take_posts();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].2.data, u64::from(sel));
        assert!(matches!(
            answer_and_complete(&engine, &xen, 0),
            Work::Complete(_)
        ));
        assert_eq!(
            read32(&engine, &xen, BLK, reg::QUEUE_NUM_MAX),
            answered(want)
        );
    }
}

#[test]
fn a_posted_notify_is_counted_and_wakes_the_backend_once_per_arming() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 2);
    let count = |q| xen.notify_word(BE, notify::count(0, q));
    let notify_spi = Event::Inject {
        domain: BE,
        spi: BE_NOTIFY_SPI,
    };
    // Not armed: counted, no SPI.
    assert_eq!(write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 0), WRITTEN);
    assert_eq!((count(0), count(1)), (1, 0));
    assert!(xen.take_events().is_empty());
    // Armed: one SPI, and the arming is used up.
    xen.backend_writes_transport(BE, transport::WAKEUP_OFFSET, 1);
    assert_eq!(write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 1), WRITTEN);
    assert_eq!(xen.take_events(), [notify_spi]);
    assert_eq!(xen.transport_word(BE, transport::WAKEUP_OFFSET), 0);
    assert_eq!(write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 1), WRITTEN);
    assert!(xen.take_events().is_empty());
    assert_eq!((count(0), count(1)), (1, 2));
    // A queue the device does not have: dropped, nothing counted, nothing woken.
    xen.backend_writes_transport(BE, transport::WAKEUP_OFFSET, 1);
    for q in [2, 16, u32::MAX] {
        assert_eq!(write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, q), WRITTEN);
    }
    assert!(xen.take_events().is_empty());
    assert_eq!((count(0), count(1), count(2)), (1, 2, 0));
    // A backend that polls is never sent the SPI, armed or not.
    xen.backend_writes_transport(BE, transport::POLLING_OFFSET, 1);
    assert_eq!(write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 0), WRITTEN);
    assert!(xen.take_events().is_empty());
    assert_eq!(count(0), 2);
    // Nothing was ever posted to the ioreq page.
    assert!(xen.take_posts().is_empty());
}

#[test]
fn interrupt_status_is_kept_in_xen_from_the_raise_irq_causes() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    let raise = |value: u32| {
        engine
            .doorbell_write(&xen, domid(BE), doorbell::RAISE_IRQ, Width::Word, value)
            .expect("RAISE_IRQ accepted")
    };
    let isr = |engine: &Engine| read32(engine, &xen, BLK, reg::INTERRUPT_STATUS);
    raise(doorbell::CAUSE_USED_BUFFER);
    assert_eq!(isr(&engine), answered(1));
    raise(doorbell::CAUSE_CONFIG_CHANGE);
    assert_eq!(isr(&engine), answered(3));
    assert_eq!(
        xen.take_events(),
        [Event::Inject {
            domain: FE,
            spi: 33
        }; 2]
    );
    assert_eq!(write32(&engine, &xen, BLK, reg::INTERRUPT_ACK, 1), WRITTEN);
    assert_eq!(isr(&engine), answered(2));
    assert_eq!(write32(&engine, &xen, BLK, reg::INTERRUPT_ACK, 2), WRITTEN);
    assert_eq!(isr(&engine), answered(0));
    // No cause counts as a used buffer.
    raise(0);
    assert_eq!(isr(&engine), answered(1));
    // Causes of a device Xen does not answer for change nothing in Xen (net: no record).
    raise(1 | doorbell::CAUSE_USED_BUFFER);
    assert_eq!(
        read32(&engine, &xen, NET, reg::INTERRUPT_STATUS),
        MmioOutcome::Retry
    );
    assert!(xen.take_posts().len() == 1);
}

#[test]
fn a_reset_answered_by_the_backend_clears_what_xen_keeps() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 2);
    engine
        .doorbell_write(
            &xen,
            domid(BE),
            doorbell::RAISE_IRQ,
            Width::Word,
            doorbell::CAUSE_USED_BUFFER,
        )
        .expect("RAISE_IRQ accepted");
    for (offset, value) in [(reg::DEVICE_FEATURES_SEL, 1), (reg::QUEUE_SEL, 5)] {
        assert_eq!(
            write32(&engine, &xen, BLK, offset, value),
            MmioOutcome::Retry
        );
        assert!(matches!(
            answer_and_complete(&engine, &xen, 0),
            Work::Complete(_)
        ));
    }
    // A Status write other than 0 changes none of it.
    assert_eq!(
        write32(&engine, &xen, BLK, reg::STATUS, 1),
        MmioOutcome::Retry
    );
    assert!(matches!(
        answer_and_complete(&engine, &xen, 0),
        Work::Complete(_)
    ));
    assert_eq!(
        read32(&engine, &xen, BLK, reg::INTERRUPT_STATUS),
        answered(1)
    );
    // The reset, posted: nothing cleared until the backend answered it.
    assert_eq!(
        write32(&engine, &xen, BLK, reg::STATUS, 0),
        MmioOutcome::Retry
    );
    assert!(matches!(
        answer_and_complete(&engine, &xen, 0),
        Work::Complete(_)
    ));
    assert_eq!(
        read32(&engine, &xen, BLK, reg::INTERRUPT_STATUS),
        answered(0)
    );
    assert_eq!(
        read32(&engine, &xen, BLK, reg::DEVICE_FEATURES),
        answered(FEATURES[0])
    );
    assert_eq!(
        read32(&engine, &xen, BLK, reg::QUEUE_NUM_MAX),
        answered(QUEUE_NUM_MAX)
    );
}

#[test]
fn a_classic_device_ignores_its_record() {
    let doms = [
        Dom::new("fe")
            .cpus(2)
            .device(Dev::new("blk", 0x10).prop("xen,virtio-classic", Vec::new())),
        Dom::backend("be", 0x10),
    ];
    let (engine, xen) = rig(&doms);
    publish(&xen, 0, 1);
    assert_eq!(engine.transport_kind(&xen, 0), TransportKind::Classic);
    for offset in [reg::MAGIC_VALUE, reg::INTERRUPT_STATUS] {
        assert_eq!(read32(&engine, &xen, BLK, offset), MmioOutcome::Retry);
        assert!(matches!(
            answer_and_complete(&engine, &xen, 0),
            Work::Complete(_)
        ));
    }
    assert_eq!(
        write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 0),
        MmioOutcome::Retry
    );
    assert_eq!(xen.notify_word(BE, notify::count(0, 0)), 0);
}

#[test]
fn an_invalid_record_or_page_version_makes_round_trips() {
    type Spoil = fn(&FakeXen);
    let spoils: [(&str, Spoil); 5] = [
        ("version 1", |x| {
            x.backend_writes_transport(BE, transport::VERSION_OFFSET, 1)
        }),
        ("unpublished", |x| {
            x.backend_writes_transport(BE, transport::record(0) + transport::field::PUBLISHED, 0)
        }),
        ("published = 2", |x| {
            x.backend_writes_transport(BE, transport::record(0) + transport::field::PUBLISHED, 2)
        }),
        ("device ID 0", |x| {
            x.backend_writes_transport(BE, transport::record(0) + transport::field::DEVICE_ID, 0)
        }),
        ("17 queues", |x| {
            x.backend_writes_transport(BE, transport::record(0) + transport::field::NUM_QUEUES, 17)
        }),
    ];
    for (what, spoil) in spoils {
        let (engine, xen) = rig(&standard());
        publish(&xen, 0, 1);
        spoil(&xen);
        assert_eq!(
            engine.transport_kind(&xen, 0),
            TransportKind::RoundTrips,
            "{what}"
        );
        assert_eq!(
            read32(&engine, &xen, BLK, reg::MAGIC_VALUE),
            MmioOutcome::Retry,
            "{what}"
        );
    }
}

#[test]
fn a_dead_backends_fast_device_reads_as_vanished() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    assert!(engine.domain_shutdown(&xen, domid(BE)));
    assert!(matches!(
        read32(&engine, &xen, BLK, reg::MAGIC_VALUE),
        MmioOutcome::Unavailable(_)
    ));
    let Work::Complete(c) = engine.vcpu_work(&xen, domid(FE), VcpuId(0)) else {
        panic!("the vanished access completes at once")
    };
    assert_eq!(c.write_reg, Some((3, 0xffff_ffff)));
    // A notify is dropped like any write to a vanished device: nothing counted.
    assert!(matches!(
        write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, 0),
        MmioOutcome::Unavailable(_)
    ));
    assert_eq!(xen.notify_word(BE, notify::count(0, 0)), 0);
}

#[test]
fn requests_to_a_polling_backend_send_no_spi_and_the_vcpu_spins_for_its_poll_time() {
    let doms = [
        Dom::new("fe").cpus(2).device(Dev::new("blk", 0x10)),
        Dom::backend("be", 0x10).prop("xen,ioreq-poll-us", common::hostdt::cells(&[50])),
    ];
    let (engine, xen) = rig(&doms);
    publish(&xen, 0, 1);
    xen.backend_writes_transport(BE, transport::POLLING_OFFSET, 1);
    assert_eq!(read32(&engine, &xen, BLK, 0x100), MmioOutcome::Retry);
    assert_eq!(xen.take_posts().len(), 1);
    assert!(
        xen.take_events().is_empty(),
        "a polling backend got the SPI"
    );
    // Nobody answers: the vCPU spins for 50 µs of Xen's clock, then waits.
    xen.tick_every_read(1_000);
    let before = now(&xen);
    assert_eq!(
        engine.vcpu_work_spinning(&xen, domid(FE), VcpuId(0)),
        Work::Waiting
    );
    let spun = now(&xen) - before;
    assert!((50_000..60_000).contains(&spun), "spun {spun} ns");
    // Answered before the spin: completes at once.
    xen.answer(page(BE, 0), 0, 9);
    engine
        .doorbell_write(&xen, domid(BE), doorbell::COMPLETE, Width::Word, 0)
        .expect("COMPLETE");
    assert!(matches!(
        engine.vcpu_work_spinning(&xen, domid(FE), VcpuId(0)),
        Work::Complete(_)
    ));
    xen.take_events();
    // Once it stops polling, requests send the SPI again and nobody spins.
    xen.backend_writes_transport(BE, transport::POLLING_OFFSET, 0);
    assert_eq!(read32(&engine, &xen, BLK, 0x100), MmioOutcome::Retry);
    assert_eq!(
        xen.take_events(),
        [Event::Inject {
            domain: BE,
            spi: BE_NOTIFY_SPI
        }]
    );
    let before = now(&xen);
    assert_eq!(
        engine.vcpu_work_spinning(&xen, domid(FE), VcpuId(0)),
        Work::Waiting
    );
    assert!(
        now(&xen) - before <= 3_000,
        "spun for a backend that does not poll"
    );
}

/// Reads the fake's clock (each reading advances it by the tick).
fn now(xen: &FakeXen) -> u64 {
    rust_ioreq::platform::Platform::now(xen)
}

#[test]
fn a_backend_that_polls_without_a_poll_time_never_makes_a_vcpu_spin() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    xen.backend_writes_transport(BE, transport::POLLING_OFFSET, 1);
    assert_eq!(read32(&engine, &xen, BLK, 0x100), MmioOutcome::Retry);
    xen.tick_every_read(1_000);
    let before = now(&xen);
    assert_eq!(
        engine.vcpu_work_spinning(&xen, DomId(1), VcpuId(0)),
        Work::Waiting
    );
    assert!(now(&xen) - before <= 3_000);
}

#[test]
fn selectors_written_before_the_record_is_published_are_kept() {
    // The driver selects feature word 1 while the device still makes round trips; the backend
    // then publishes: the DeviceFeatures Xen answers is word 1's, as the backend's would be.
    let (engine, xen) = rig(&standard());
    assert_eq!(
        write32(&engine, &xen, BLK, reg::DEVICE_FEATURES_SEL, 1),
        MmioOutcome::Retry
    );
    assert!(matches!(
        answer_and_complete(&engine, &xen, 0),
        Work::Complete(_)
    ));
    assert_eq!(
        write32(&engine, &xen, BLK, reg::QUEUE_SEL, 3),
        MmioOutcome::Retry
    );
    assert!(matches!(
        answer_and_complete(&engine, &xen, 0),
        Work::Complete(_)
    ));
    publish(&xen, 0, 2);
    assert_eq!(
        read32(&engine, &xen, BLK, reg::DEVICE_FEATURES),
        answered(FEATURES[1])
    );
    assert_eq!(read32(&engine, &xen, BLK, reg::QUEUE_NUM_MAX), answered(0));
}

#[test]
fn a_notify_with_notification_data_counts_its_queue() {
    // VIRTIO_F_NOTIFICATION_DATA (virtio 1.2 §4.2.2): the high half is the driver's ring
    // position, the low half the queue.
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 2);
    for value in [5 << 16, 1 | 0x8123 << 16] {
        assert_eq!(
            write32(&engine, &xen, BLK, reg::QUEUE_NOTIFY, value),
            WRITTEN
        );
    }
    assert_eq!(xen.notify_word(BE, notify::count(0, 0)), 1);
    assert_eq!(xen.notify_word(BE, notify::count(0, 1)), 1);
}

#[test]
fn an_interrupt_raised_after_the_reset_was_answered_survives_the_vcpus_completion() {
    let (engine, xen) = rig(&standard());
    publish(&xen, 0, 1);
    assert_eq!(
        write32(&engine, &xen, BLK, reg::STATUS, 0),
        MmioOutcome::Retry
    );
    // The backend answers the reset, then its configuration changes, all before the frontend
    // vCPU runs again.
    xen.answer(page(BE, 0), 0, 0);
    engine
        .doorbell_write(&xen, domid(BE), doorbell::COMPLETE, Width::Word, 0)
        .expect("COMPLETE");
    engine
        .doorbell_write(
            &xen,
            domid(BE),
            doorbell::RAISE_IRQ,
            Width::Word,
            doorbell::CAUSE_CONFIG_CHANGE,
        )
        .expect("RAISE_IRQ");
    assert!(matches!(
        engine.vcpu_work(&xen, domid(FE), VcpuId(0)),
        Work::Complete(_)
    ));
    assert_eq!(
        read32(&engine, &xen, BLK, reg::INTERRUPT_STATUS),
        answered(2)
    );
}

#[test]
fn a_polling_spin_stops_when_the_pcpu_has_softirqs_pending() {
    let doms = [
        Dom::new("fe").cpus(2).device(Dev::new("blk", 0x10)),
        Dom::backend("be", 0x10).prop("xen,ioreq-poll-us", common::hostdt::cells(&[1000])),
    ];
    let (engine, xen) = rig(&doms);
    publish(&xen, 0, 1);
    xen.backend_writes_transport(BE, transport::POLLING_OFFSET, 1);
    assert_eq!(read32(&engine, &xen, BLK, 0x100), MmioOutcome::Retry);
    xen.tick_every_read(1_000);
    xen.set_softirq_pending(true);
    let before = now(&xen);
    assert_eq!(
        engine.vcpu_work_spinning(&xen, domid(FE), VcpuId(0)),
        Work::Waiting
    );
    assert!(now(&xen) - before <= 3_000, "spun with softirqs pending");
}
