//! Host tests of the virtio-mmio register file (virtio 1.2 §4.2.2, §2.1, §3.1.1), driven with
//! raw register reads and writes: identity registers, access width rules, feature negotiation,
//! the status transition table, queue setup and notification rules.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use virtio_device::features::{FeatureError, EVENT_IDX, INDIRECT_DESC, VERSION_1};
use virtio_device::log::{NotifyFault, RegisterFault};
use virtio_device::status::StatusError;
use virtio_device::{blk, Blk, Event, MmioTransport, QueueSetupError, Rng, Width, MAGIC};

fn disk() -> Vec<u8> {
    vec![0u8; 4 << 20]
}

#[test]
fn identity_registers() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    assert_eq!(d.read(reg::MAGIC), MAGIC);
    assert_eq!(d.read(reg::VERSION), 2);
    assert_eq!(d.read(reg::DEVICE_ID), 2);
    assert_eq!(d.read(reg::VENDOR_ID), u32::from_le_bytes(*b"RIOQ"));
    assert_eq!(d.read(reg::QUEUE_NUM_MAX), 256);
    d.write(reg::QUEUE_SEL, 1);
    assert_eq!(d.read(reg::QUEUE_NUM_MAX), 0, "blk has one queue");
    assert_eq!(d.read(reg::QUEUE_READY), 0);
    assert_eq!(
        d.read(reg::SHM_LEN_LOW),
        u32::MAX,
        "no shared memory regions"
    );
    assert_eq!(d.read(reg::CONFIG_GENERATION), 0);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), 0);
    assert_eq!(d.status(), 0);
    assert!(d.events().is_empty());

    let mut ram2 = vec![0u8; RAM_SIZE];
    let mut r = Driver::new(
        MmioTransport::new(Rng::new(1)).with_vendor_id(0x1234),
        &mut ram2,
    );
    assert_eq!(r.read(reg::DEVICE_ID), 4);
    assert_eq!(r.read(reg::VENDOR_ID), 0x1234);
    assert_eq!(r.device_features(), VERSION_1 | INDIRECT_DESC);
}

#[test]
fn device_features_and_indirect_option() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let offered = VERSION_1 | INDIRECT_DESC | blk::F_SEG_MAX | blk::F_BLK_SIZE | blk::F_FLUSH;
    assert_eq!(d.device_features(), offered);
    d.write(reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(d.read(reg::DEVICE_FEATURES), 0);

    let (mut d_blk2, mut ram2) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d2 = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk2, b"x").unwrap()).with_indirect(false),
        &mut ram2,
    );
    assert_eq!(d2.device_features(), offered & !INDIRECT_DESC);
    // Accepting the feature that was not offered is refused.
    assert!(!d2.negotiate(VERSION_1 | INDIRECT_DESC));
}

#[test]
fn config_space_widths_and_range() {
    let (mut d_blk, mut ram) = (vec![0u8; 6 << 20], vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let sectors = (6u64 << 20) / 512;
    // capacity: a 64-bit field read as two 32-bit halves.
    let lo = d.read(reg::CONFIG);
    let hi = d.read(reg::CONFIG + 4);
    assert_eq!(u64::from(lo) | (u64::from(hi) << 32), sectors);
    assert_eq!(d.read_w(reg::CONFIG, Width::U8), sectors & 0xff);
    assert_eq!(d.read_w(reg::CONFIG + 1, Width::U8), (sectors >> 8) & 0xff);
    assert_eq!(d.read_w(reg::CONFIG, Width::U16), sectors & 0xffff);
    assert_eq!(d.read(reg::CONFIG + 12), 254, "seg_max");
    assert_eq!(d.read(reg::CONFIG + 20), 512, "blk_size");
    assert!(d.events().is_empty());

    // A 64-bit access, a misaligned one, one past the end, and a write: refused, reads give 0.
    assert_eq!(d.read_w(reg::CONFIG, Width::U64), 0);
    assert_eq!(d.read_w(reg::CONFIG + 1, Width::U16), 0);
    assert_eq!(d.read(reg::CONFIG + 96), 0);
    assert_eq!(d.read(reg::CONFIG + 0xfc), 0);
    d.write(reg::CONFIG, 0);
    let faults: Vec<_> = d
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Register { fault, .. } => fault,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        faults,
        [
            RegisterFault::BadWidth,
            RegisterFault::BadWidth,
            RegisterFault::ConfigOutOfRange,
            RegisterFault::ConfigOutOfRange,
            RegisterFault::ConfigReadOnly,
        ]
    );
    // The capacity is unchanged by the refused write.
    assert_eq!(u64::from(d.read(reg::CONFIG)), sectors & 0xffff_ffff);

    // An entropy device has no configuration space at all.
    let mut ram2 = vec![0u8; RAM_SIZE];
    let mut r = Driver::new(MmioTransport::new(Rng::new(1)), &mut ram2);
    assert_eq!(r.read_w(reg::CONFIG, Width::U8), 0);
    assert!(matches!(
        r.events()[..],
        [Event::Register {
            fault: RegisterFault::ConfigOutOfRange,
            ..
        }]
    ));
}

#[test]
fn register_access_rules() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let cases: [(u64, Width, Option<u64>, RegisterFault); 9] = [
        (reg::MAGIC, Width::U8, None, RegisterFault::BadWidth),
        (reg::MAGIC, Width::U16, None, RegisterFault::BadWidth),
        (reg::MAGIC, Width::U64, None, RegisterFault::BadWidth),
        (reg::MAGIC + 2, Width::U32, None, RegisterFault::BadWidth),
        (0x0c0, Width::U32, None, RegisterFault::Unknown),
        (0x028, Width::U32, Some(4096), RegisterFault::Unknown), // legacy GuestPageSize
        (reg::MAGIC, Width::U32, Some(0), RegisterFault::ReadOnly),
        (reg::QUEUE_SEL, Width::U32, None, RegisterFault::WriteOnly),
        (reg::STATUS, Width::U16, Some(1), RegisterFault::BadWidth),
    ];
    for (offset, width, write, want) in cases {
        match write {
            None => assert_eq!(d.read_w(offset, width), 0, "{offset:#x} {width}"),
            Some(v) => d.write_w(offset, width, v),
        }
        let events = d.events();
        assert!(
            matches!(events[..], [Event::Register { fault, offset: o, write: w, .. }]
                if fault == want && o == offset && w == write.is_some()),
            "{offset:#x} {width}: {events:?}"
        );
    }
    // The refused status write did not change anything.
    assert_eq!(d.status(), 0);
    assert_eq!(d.read(reg::MAGIC), MAGIC);
}

#[test]
fn status_transitions_refused_and_reset() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let bad: [(u32, u32, StatusError); 5] = [
        (0, DRIVER, StatusError::OutOfOrder),
        (ACK, ACK | FEATURES_OK, StatusError::OutOfOrder),
        (ACK | DRIVER, ACK, StatusError::ClearsBits),
        (ACK | DRIVER, ACK | DRIVER | 0x10, StatusError::UnknownBits),
        (
            ACK | DRIVER,
            ACK | DRIVER | NEEDS_RESET,
            StatusError::SetsNeedsReset,
        ),
    ];
    for (from, to, error) in bad {
        d.write(reg::STATUS, 0);
        if from != 0 {
            d.write(reg::STATUS, from);
        }
        d.events();
        d.write(reg::STATUS, to);
        assert_eq!(d.status(), from, "{from:#x} -> {to:#x}");
        assert_eq!(d.events(), [Event::Status { from, to, error }]);
    }
    // DRIVER_OK before FEATURES_OK.
    d.write(reg::STATUS, 0);
    d.write(reg::STATUS, ACK | DRIVER);
    d.write(reg::STATUS, ACK | DRIVER | DRIVER_OK);
    assert_eq!(d.status(), ACK | DRIVER);
    // After FAILED only a reset is accepted.
    d.write(reg::STATUS, ACK | DRIVER | 128);
    d.write(reg::STATUS, ACK | DRIVER | 128 | FEATURES_OK);
    assert_eq!(d.status(), ACK | DRIVER | 128);
    d.events();

    // A full bring-up, then a reset returns everything to its initial state.
    d.bring_up(VERSION_1 | blk::F_FLUSH, 8);
    assert_eq!(d.t.negotiated_features(), VERSION_1 | blk::F_FLUSH);
    d.write(reg::STATUS, 0);
    assert_eq!(d.status(), 0);
    assert_eq!(d.read(reg::QUEUE_READY), 0);
    assert_eq!(d.t.negotiated_features(), 0);
    assert!(d.events().is_empty());
}

#[test]
fn features_ok_refused() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let offered = d.device_features();
    for (accept, error) in [
        (blk::F_FLUSH, FeatureError::NoVersion1),
        (VERSION_1 | EVENT_IDX, FeatureError::NotOffered(EVENT_IDX)),
        (VERSION_1 | (1 << 63), FeatureError::NotOffered(1 << 63)),
    ] {
        assert!(!d.negotiate(accept), "{accept:#x}");
        assert_eq!(d.status(), ACK | DRIVER);
        assert_eq!(
            d.events(),
            [Event::Features {
                accepted: accept,
                offered,
                error
            }]
        );
    }
    // Bits above 63.
    d.write(reg::STATUS, 0);
    d.write(reg::STATUS, ACK | DRIVER);
    d.write_driver_features(VERSION_1);
    d.write(reg::DRIVER_FEATURES_SEL, 2);
    d.write(reg::DRIVER_FEATURES, 1);
    d.write(reg::STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(d.status(), ACK | DRIVER);
    assert!(matches!(
        d.events()[..],
        [Event::Features {
            error: FeatureError::BeyondBit63,
            ..
        }]
    ));
    // ... and FEATURES_OK with DRIVER_OK in one write keeps neither.
    d.write(reg::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(d.status(), ACK | DRIVER);
    d.events();

    // Driver features written before DRIVER or after FEATURES_OK are ignored.
    d.write(reg::STATUS, 0);
    d.write(reg::STATUS, ACK);
    d.write_driver_features(VERSION_1);
    assert_eq!(d.events().len(), 2);
    assert!(d.negotiate(VERSION_1));
    d.write_driver_features(VERSION_1 | blk::F_FLUSH);
    assert_eq!(d.events(), [Event::FeaturesLocked, Event::FeaturesLocked]);
    assert_eq!(d.t.negotiated_features(), VERSION_1);
}

#[test]
fn queue_setup_rules() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    // Before FEATURES_OK.
    d.write(reg::STATUS, ACK | DRIVER);
    d.setup_queue(0, 8);
    assert_eq!(d.read(reg::QUEUE_READY), 0);
    assert!(d.events().contains(&Event::QueueSetup {
        queue: 0,
        error: QueueSetupError::BeforeFeaturesOk
    }));
    assert!(d.negotiate(VERSION_1));
    // Bad sizes.
    for size in [0u32, 3, 512, 0x1_0000] {
        d.write(reg::QUEUE_NUM, size);
        d.write(reg::QUEUE_READY, 1);
        assert_eq!(d.read(reg::QUEUE_READY), 0, "size {size}");
        assert!(
            matches!(d.events()[..], [Event::QueueSetup { queue: 0, .. }]),
            "size {size}"
        );
    }
    // A queue that does not exist.
    d.write(reg::QUEUE_SEL, 3);
    d.write(reg::QUEUE_NUM, 8);
    d.write(reg::QUEUE_READY, 1);
    assert_eq!(d.events().len(), 2);
    // A good setup; then writes to the enabled queue's registers are ignored.
    d.setup_queue(0, 8);
    assert_eq!(d.read(reg::QUEUE_READY), 1);
    d.events();
    d.write(reg::QUEUE_NUM, 16);
    d.write(reg::QUEUE_DESC_LOW, 0);
    assert_eq!(
        d.events(),
        [
            Event::QueueLocked {
                queue: 0,
                offset: reg::QUEUE_NUM
            },
            Event::QueueLocked {
                queue: 0,
                offset: reg::QUEUE_DESC_LOW
            }
        ]
    );
    assert_eq!(d.t.queue(0).unwrap().size(), 8);
    // QueueReady accepts only 0 and 1; 0 disables, after which setup is possible again.
    d.write(reg::QUEUE_READY, 2);
    assert_eq!(d.read(reg::QUEUE_READY), 1);
    assert_eq!(d.events().len(), 1);
    d.write(reg::QUEUE_READY, 0);
    assert_eq!(d.read(reg::QUEUE_READY), 0);
    d.write(reg::QUEUE_NUM, 16);
    d.write(reg::QUEUE_READY, 1);
    assert_eq!(d.t.queue(0).unwrap().size(), 16);
    assert!(d.events().is_empty());
}

#[test]
fn notify_rules_and_interrupt_ack() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    assert!(d.negotiate(VERSION_1));
    d.setup_queue(0, 8);
    // A valid request, made available before DRIVER_OK: not processed.
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_idx(), 0);
    assert_eq!(
        d.events(),
        [Event::Notify {
            queue: 0,
            fault: NotifyFault::NotDriverOk
        }]
    );
    d.write(reg::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    d.write(reg::QUEUE_NOTIFY, 1);
    d.write(reg::QUEUE_NOTIFY, 0x1_0000);
    assert_eq!(
        d.events(),
        [
            Event::Notify {
                queue: 1,
                fault: NotifyFault::NoSuchQueue
            },
            Event::Notify {
                queue: 0x1_0000,
                fault: NotifyFault::NoSuchQueue
            }
        ]
    );
    // Now it is processed, and interrupts.
    d.write(reg::QUEUE_NOTIFY, 0);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.irq.0, 1);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), 1);
    d.write(reg::INTERRUPT_ACK, 1);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), 0);
    // A disabled queue is not processed.
    d.write(reg::QUEUE_READY, 0);
    d.write(reg::QUEUE_NOTIFY, 0);
    assert_eq!(
        d.events(),
        [Event::Notify {
            queue: 0,
            fault: NotifyFault::NotReady
        }]
    );
}

/// A device that processes its queues elsewhere (as a vhost-user backend does): it records
/// what `driver_ok` handed it.
#[derive(Default)]
struct Handed {
    started: Vec<Vec<QueueAsHanded>>,
}

/// Size, ready, descriptor table, available ring, used ring.
type QueueAsHanded = (u16, bool, u64, u64, u64);

impl virtio_device::VirtioDevice for Handed {
    fn device_id(&self) -> u32 {
        4
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> usize {
        2
    }
    fn queue_max_size(&self, _: usize) -> u16 {
        64
    }
    fn config_len(&self) -> usize {
        0
    }
    fn read_config(&self, _: usize, _: &mut [u8]) {}
    fn driver_ok(&mut self, queues: &[virtio_device::queue::Queue]) {
        use virtio_device::queue::QueuePart;
        self.started.push(
            queues
                .iter()
                .map(|q| {
                    (
                        q.size(),
                        q.is_ready(),
                        q.address(QueuePart::Descriptors).0,
                        q.address(QueuePart::Driver).0,
                        q.address(QueuePart::Device).0,
                    )
                })
                .collect(),
        );
    }
    fn process_queue(
        &mut self,
        _: u16,
        _: &mut virtio_device::queue::Queue,
        _: &dyn virtio_device::GuestMemory,
        _: &mut dyn virtio_device::Logger,
    ) -> Result<(), virtio_device::QueueError> {
        Ok(())
    }
}

#[test]
fn driver_ok_hands_the_queues_over_once_and_used_buffers_can_be_signalled_later() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Handed::default()), &mut ram);
    // Before DRIVER_OK a device's own used-buffer signal is not delivered.
    d.t.signal_used_buffer(&mut d.irq);
    assert_eq!((d.irq.0, d.read(reg::INTERRUPT_STATUS)), (0, 0));
    d.bring_up(VERSION_1, 16);
    assert_eq!(
        d.t.device().started,
        vec![vec![(16, true, DESC, AVAIL, USED), (64, false, 0, 0, 0)]],
        "queue 0 as set up, queue 1 untouched (not ready, size at its maximum)"
    );
    // Writing DRIVER_OK again is no new start.
    let s = d.status();
    d.write(reg::STATUS, s);
    assert_eq!(d.t.device().started.len(), 1);
    d.t.signal_used_buffer(&mut d.irq);
    assert_eq!((d.irq.0, d.read(reg::INTERRUPT_STATUS)), (1, 1));
    // After a reset, the next DRIVER_OK starts the device again.
    d.write(reg::STATUS, 0);
    d.bring_up(VERSION_1, 8);
    assert_eq!(d.t.device().started.len(), 2);
    assert_eq!(d.t.device().started[1][0].0, 8);
}

/// A device that fails on its own (a vhost-user daemon gone) says so once DRIVER_OK is set, and
/// once: DEVICE_NEEDS_RESET and the configuration-change interrupt; a reset clears it.
#[test]
fn a_device_failing_on_its_own_sets_needs_reset_once_and_interrupts_after_driver_ok() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Handed::default()), &mut ram);
    // A device the driver has not touched has nothing to report.
    assert!(!d.t.set_needs_reset(&mut d.irq));
    assert_eq!(d.status(), 0);
    d.bring_up(VERSION_1, 16);
    let ready = d.status();
    assert!(d.t.set_needs_reset(&mut d.irq));
    assert_eq!(d.status(), ready | NEEDS_RESET);
    assert_eq!(
        (d.irq.0, d.read(reg::INTERRUPT_STATUS)),
        (1, 2),
        "config change"
    );
    // Once is enough: the bit is already there.
    assert!(!d.t.set_needs_reset(&mut d.irq));
    assert_eq!(d.irq.0, 1);
    // Writing the status back unchanged is allowed, and so is a write that raced with the bit
    // (read before it was set): the bit stays. A reset clears it.
    d.write(reg::STATUS, ready | NEEDS_RESET);
    assert_eq!(d.status(), ready | NEEDS_RESET);
    d.write(reg::STATUS, ready | FAILED);
    assert_eq!(d.status(), ready | FAILED | NEEDS_RESET);
    assert!(d
        .events()
        .iter()
        .all(|e| !matches!(e, Event::Status { .. })));
    d.write(reg::STATUS, 0);
    assert_eq!(d.status(), 0);
    // Not during initialisation: the driver's next read-modify-write of Status would clear it
    // (seen: Linux's probe then set FAILED and never reset the device again).
    d.write(reg::STATUS, ACK | DRIVER);
    assert!(!d.t.set_needs_reset(&mut d.irq));
    assert_eq!(d.status(), ACK | DRIVER);
    assert_eq!(d.irq.0, 1);
}
