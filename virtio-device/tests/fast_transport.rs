//! Host tests of what a backend needs when a hypervisor answers the transport registers itself
//! (rust-ioreq interface version 2, docs/backend-abi.md "Version 2: the fast transport"): the
//! published register values agree with what the register file answers, a posted `QueueNotify`
//! (a count that moved) is checked and processed like the register write, interrupts carry
//! their cause, and a configuration change can be republished before it is signalled.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use virtio_device::features::{INDIRECT_DESC, VERSION_1};
use virtio_device::log::NotifyFault;
use virtio_device::mmio::DEFAULT_VENDOR_ID;
use virtio_device::mmio::{INT_CONFIG_CHANGE, INT_USED_BUFFER};
use virtio_device::{
    blk, Blk, Event, GuestMemory, Interrupt, InterruptCause, Logger, MmioTransport, Queue,
    QueueError, Rng, TransportRegisters, TransportRegistersError, VirtioDevice, WriteEffect,
};

/// Records the cause of every interrupt, and any call of the cause-less `raise`, which the
/// transport must never make when `raise_cause` is provided.
#[derive(Debug, Default)]
struct Causes {
    causes: Vec<u32>,
    bare_raises: u32,
}

impl Interrupt for Causes {
    fn raise(&mut self) {
        self.bare_raises += 1;
    }
    fn raise_cause(&mut self, cause: InterruptCause) {
        self.causes.push(cause.bits());
    }
}

fn disk() -> Vec<u8> {
    vec![0u8; 4 << 20]
}

/// Reads every register a hypervisor answers from the published values, through the register
/// file, and checks that the published values give the same answers: `DeviceFeatures` for
/// selectors 0..6 and `QueueNumMax` for queues 0..18 (16 is the record's limit).
fn assert_registers_agree<D: VirtioDevice>(d: &mut Driver<'_, D>, r: &TransportRegisters) {
    assert_eq!(d.read(reg::MAGIC), virtio_device::MAGIC);
    assert_eq!(d.read(reg::VERSION), virtio_device::VERSION);
    assert_eq!(d.read(reg::DEVICE_ID), r.device_id);
    assert_eq!(d.read(reg::VENDOR_ID), r.vendor_id);
    assert_eq!(d.read(reg::CONFIG_GENERATION), r.config_generation);
    for sel in 0..6u32 {
        d.write(reg::DEVICE_FEATURES_SEL, sel);
        let published = r.device_features.get(sel as usize).copied().unwrap_or(0);
        assert_eq!(d.read(reg::DEVICE_FEATURES), published, "selector {sel}");
    }
    for q in 0..18u32 {
        d.write(reg::QUEUE_SEL, q);
        let published = if q < r.num_queues { r.queue_num_max } else { 0 };
        assert_eq!(d.read(reg::QUEUE_NUM_MAX), published, "queue {q}");
    }
    d.write(reg::QUEUE_SEL, 0);
    d.write(reg::DEVICE_FEATURES_SEL, 0);
}

#[test]
fn published_registers_of_blk_and_rng_match_the_register_file() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let r = d.t.transport_registers().unwrap();
    let offered = VERSION_1 | INDIRECT_DESC | blk::F_SEG_MAX | blk::F_BLK_SIZE | blk::F_FLUSH;
    assert_eq!(
        r,
        TransportRegisters {
            device_id: blk::DEVICE_ID,
            vendor_id: DEFAULT_VENDOR_ID,
            num_queues: 1,
            queue_num_max: 256,
            config_generation: 0,
            device_features: [offered as u32, (offered >> 32) as u32, 0, 0],
        }
    );
    assert_registers_agree(&mut d, &r);
    assert!(d.events().is_empty());

    let mut ram2 = vec![0u8; RAM_SIZE];
    let mut d2 = Driver::new(
        MmioTransport::new(Rng::new(1))
            .with_vendor_id(0x1234)
            .with_indirect(false),
        &mut ram2,
    );
    let r2 = d2.t.transport_registers().unwrap();
    assert_eq!(
        (
            r2.device_id,
            r2.vendor_id,
            r2.num_queues,
            r2.device_features
        ),
        (4, 0x1234, 1, [0, 1, 0, 0])
    );
    assert_registers_agree(&mut d2, &r2);
}

/// A device the transport cannot publish: ID 0, or queues of different sizes.
struct Odd {
    id: u32,
    sizes: [u16; 3],
}

impl VirtioDevice for Odd {
    fn device_id(&self) -> u32 {
        self.id
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> usize {
        3
    }
    fn queue_max_size(&self, index: usize) -> u16 {
        self.sizes[index]
    }
    fn config_len(&self) -> usize {
        0
    }
    fn read_config(&self, _offset: usize, _data: &mut [u8]) {}
    fn process_queue(
        &mut self,
        _index: u16,
        _queue: &mut Queue,
        _mem: &dyn GuestMemory,
        _log: &mut dyn Logger,
    ) -> Result<(), QueueError> {
        Ok(())
    }
}

#[test]
fn devices_that_cannot_be_published_say_why() {
    let t = MmioTransport::new(Odd {
        id: 0,
        sizes: [8; 3],
    });
    assert_eq!(
        t.transport_registers(),
        Err(TransportRegistersError::NoDeviceId)
    );
    let t = MmioTransport::new(Odd {
        id: 9,
        sizes: [8, 8, 16],
    });
    assert_eq!(
        t.transport_registers(),
        Err(TransportRegistersError::QueueSizesDiffer {
            queue: 2,
            size: 16,
            first: 8
        })
    );
    let t = MmioTransport::new(Odd {
        id: 9,
        sizes: [32; 3],
    });
    let r = t.transport_registers().unwrap();
    assert_eq!((r.num_queues, r.queue_num_max), (3, 32));
}

/// Makes a FLUSH request available on queue 0 (descriptors 0 and 1, status byte at BUF + 16).
fn offer_flush(d: &mut Driver<'_, Blk<'_>>) {
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_bytes(BUF + 16, &[0xff]);
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.offer(0);
}

#[test]
fn posted_notify_is_checked_like_the_register_and_processed() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    assert!(d.negotiate(VERSION_1));
    d.setup_queue(0, 8);
    offer_flush(&mut d);
    // Counted before DRIVER_OK: refused and reported, as the register write would be.
    assert_eq!(d.t.notified(0, &mut d.log), WriteEffect::None);
    assert_eq!(
        d.events(),
        [Event::Notify {
            queue: 0,
            fault: NotifyFault::NotDriverOk
        }]
    );
    d.write(reg::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    // A queue the device does not have (a count a hypervisor kept for queue 5).
    assert_eq!(d.t.notified(5, &mut d.log), WriteEffect::None);
    assert_eq!(
        d.events(),
        [Event::Notify {
            queue: 5,
            fault: NotifyFault::NoSuchQueue
        }]
    );
    assert_eq!(d.t.notified(0, &mut d.log), WriteEffect::Notify(0));
    let mut irq = Causes::default();
    let p = d.t.process_queue(0, &d.mem, &mut irq, &mut d.log);
    assert_eq!((p.used, p.more, p.interrupted), (1, false, true));
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.bytes(BUF + 16, 1), [blk::S_OK]);
    assert_eq!(irq.causes, [INT_USED_BUFFER]);
    assert_eq!(irq.bare_raises, 0);
    assert!(d.events().is_empty());
    // The register path still works next to it.
    offer_flush(&mut d);
    d.write(reg::QUEUE_NOTIFY, 0);
    assert_eq!(d.used_idx(), 2);
    assert_eq!(d.irq.0, 1, "the default raise_cause raises");
}

#[test]
fn interrupt_causes_follow_the_ring_and_the_queue_state() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    d.bring_up(VERSION_1, 8);
    let mut irq = Causes::default();

    // The driver suppresses used-buffer interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT): none.
    d.put_bytes(AVAIL, &1u16.to_le_bytes());
    offer_flush(&mut d);
    let p = d.t.process_queue(0, &d.mem, &mut irq, &mut d.log);
    assert_eq!((p.used, p.interrupted), (1, false));
    assert!(irq.causes.is_empty());

    // A broken ring with a used chain first: both causes in one interrupt.
    d.put_bytes(AVAIL, &0u16.to_le_bytes());
    offer_flush(&mut d);
    // Head 9 is beyond the 8-entry table.
    d.offer(9);
    let p = d.t.process_queue(0, &d.mem, &mut irq, &mut d.log);
    assert_eq!((p.used, p.interrupted), (1, true));
    assert_eq!(irq.causes, [INT_USED_BUFFER | INT_CONFIG_CHANGE]);
    assert!(matches!(
        d.events().as_slice(),
        [Event::QueueBroken {
            queue: 0,
            error: QueueError::HeadOutOfRange { index: 9 }
        }]
    ));
    // The transport's own InterruptStatus has both bits as well (it keeps it in every case).
    assert_eq!(d.t.interrupt_status(), INT_USED_BUFFER | INT_CONFIG_CHANGE);
    assert_eq!(irq.bare_raises, 0);
}

#[test]
fn config_change_in_two_steps_for_republishing() {
    let (mut d_blk, mut ram) = (disk(), vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut d_blk, b"x").unwrap()),
        &mut ram,
    );
    let mut irq = Causes::default();
    // Before DRIVER_OK: the generation moves, no interrupt.
    assert_eq!(d.t.new_config_generation(), 1);
    d.t.signal_config_change(&mut irq);
    assert!(irq.causes.is_empty());
    assert_eq!(d.t.transport_registers().unwrap().config_generation, 1);
    d.bring_up(VERSION_1, 8);
    // The generation is there to be republished before the interrupt goes out.
    assert_eq!(d.t.new_config_generation(), 2);
    assert_eq!(d.t.config_generation(), 2);
    let r = d.t.transport_registers().unwrap();
    assert_eq!(r.config_generation, 2);
    assert!(irq.causes.is_empty(), "no interrupt before the second step");
    d.t.signal_config_change(&mut irq);
    assert_eq!(irq.causes, [INT_CONFIG_CHANGE]);
    assert_registers_agree(&mut d, &r);
    // The one-step form does both, through the same cause.
    d.t.config_changed(&mut irq);
    assert_eq!(d.t.config_generation(), 3);
    assert_eq!(irq.causes, [INT_CONFIG_CHANGE, INT_CONFIG_CHANGE]);
    assert_eq!(irq.bare_raises, 0);
}

#[test]
fn interrupt_cause_bits() {
    let both = InterruptCause::USED_BUFFER | InterruptCause::CONFIG_CHANGE;
    assert_eq!(both.bits(), 3);
    assert!(both.contains(InterruptCause::USED_BUFFER));
    assert!(!InterruptCause::USED_BUFFER.contains(InterruptCause::CONFIG_CHANGE));
    assert!(InterruptCause::default().is_empty());
    let mut c = InterruptCause::default();
    c |= InterruptCause::CONFIG_CHANGE;
    assert_eq!(c, InterruptCause::CONFIG_CHANGE);
}
