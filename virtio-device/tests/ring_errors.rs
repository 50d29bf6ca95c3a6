//! Host tests of every ring-protocol violation a hostile driver can commit (virtio 1.2 §2.7):
//! each must be caught without touching memory it should not, reported, and answered with
//! DEVICE_NEEDS_RESET plus a configuration-change interrupt (§2.1.2); after a reset the device
//! works again.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use virtio_device::features::{INDIRECT_DESC, VERSION_1};
use virtio_device::log::NotifyFault;
use virtio_device::mmio::INT_CONFIG_CHANGE;
use virtio_device::{blk, Blk, Event, MemError, MmioTransport, QueueError, Rng};

const SIZE: u16 = 8;

/// Sets up a block device with an 8-entry queue (indirect descriptors negotiated or not), lets
/// `build` write descriptors and the avail ring, notifies, and checks that the queue was found
/// broken with `want`. Then checks recovery by a reset.
fn expect_broken(indirect: bool, want: QueueError, build: impl FnOnce(&mut Driver<'_, Blk<'_>>)) {
    let (mut disk, mut ram) = (vec![0u8; 4 << 20], vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut disk, b"x").unwrap()),
        &mut ram,
    );
    let features = VERSION_1 | if indirect { INDIRECT_DESC } else { 0 };
    d.bring_up(features, SIZE);
    d.put_bytes(BUF, &blk_header(blk::T_OUT, 0));
    build(&mut d);
    d.write(reg::QUEUE_NOTIFY, 0);
    assert_eq!(
        d.events(),
        [Event::QueueBroken {
            queue: 0,
            error: want
        }],
        "{want:?}"
    );
    assert_eq!(d.used_idx(), 0, "nothing used: {want:?}");
    assert!(
        d.t.device().disk().iter().all(|&b| b == 0),
        "disk untouched"
    );
    assert_ne!(d.status() & NEEDS_RESET, 0);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), INT_CONFIG_CHANGE);
    assert_eq!(d.irq.0, 1);
    // Further notifies are ignored until the driver resets the device.
    d.write(reg::QUEUE_NOTIFY, 0);
    assert_eq!(
        d.events(),
        [Event::Notify {
            queue: 0,
            fault: NotifyFault::NeedsReset
        }]
    );
    // A reset and a clean bring-up serve requests again.
    d.write(reg::STATUS, 0);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), 0);
    d.bring_up(features, SIZE);
    d.put_bytes(AVAIL + 2, &[0, 0]);
    d.put_bytes(USED + 2, &[0, 0]);
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_OK);
    assert!(d.events().is_empty());
}

#[test]
fn avail_index_more_than_a_ring_ahead() {
    expect_broken(
        false,
        QueueError::AvailIndex {
            avail_idx: SIZE + 1,
            next_avail: 0,
        },
        |d| d.put_bytes(AVAIL + 2, &(SIZE + 1).to_le_bytes()),
    );
}

#[test]
fn head_out_of_range() {
    expect_broken(false, QueueError::HeadOutOfRange { index: SIZE }, |d| {
        d.offer(SIZE)
    });
    expect_broken(false, QueueError::HeadOutOfRange { index: u16::MAX }, |d| {
        d.offer(u16::MAX)
    });
}

#[test]
fn next_out_of_range() {
    expect_broken(false, QueueError::NextOutOfRange { index: SIZE }, |d| {
        d.put_desc(0, BUF, 16, F_NEXT, SIZE);
        d.offer(0);
    });
}

#[test]
fn chain_loops() {
    // 0 -> 1 -> 2 -> 0.
    expect_broken(false, QueueError::Loop { index: 0 }, |d| {
        d.put_desc(0, BUF, 16, F_NEXT, 1);
        d.put_desc(1, BUF + 0x1000, 512, F_NEXT, 2);
        d.put_desc(2, BUF + 0x2000, 512, F_NEXT, 0);
        d.offer(0);
    });
    // A descriptor pointing at itself.
    expect_broken(false, QueueError::Loop { index: 5 }, |d| {
        d.put_desc(5, BUF, 16, F_NEXT, 5);
        d.offer(5);
    });
    // A loop inside an indirect table.
    expect_broken(true, QueueError::Loop { index: 1 }, |d| {
        let table = BUF + 0x4000;
        d.put_desc_at(table, 0, BUF, 16, F_NEXT, 1);
        d.put_desc_at(table, 1, BUF + 16, 1, F_NEXT | F_WRITE, 2);
        d.put_desc_at(table, 2, BUF + 17, 1, F_NEXT | F_WRITE, 1);
        d.put_desc(0, table, 48, F_INDIRECT, 0);
        d.offer(0);
    });
}

#[test]
fn chains_longer_than_the_queue() {
    // An indirect table with more entries than the queue size.
    expect_broken(true, QueueError::TooLong, |d| {
        let table = BUF + 0x4000;
        d.put_desc(0, table, 16 * (u32::from(SIZE) + 1), F_INDIRECT, 0);
        d.offer(0);
    });
    // Direct buffers followed by an indirect table: more than the queue size in total.
    expect_broken(true, QueueError::TooLong, |d| {
        let table = BUF + 0x4000;
        for i in 0..SIZE {
            let flags = if i + 1 < SIZE { F_NEXT } else { 0 };
            d.put_desc_at(table, i, BUF + 0x100 * u64::from(i), 16, flags, i + 1);
        }
        d.put_desc(0, BUF, 16, F_NEXT, 1);
        d.put_desc(1, table, 16 * u32::from(SIZE), F_INDIRECT, 0);
        d.offer(0);
    });
}

#[test]
fn descriptor_table_and_rings_outside_memory() {
    let end = RAM_BASE + RAM_SIZE as u64;
    // The descriptor table.
    expect_broken(
        false,
        QueueError::Memory(MemError::OutOfRange {
            gpa: end + 16,
            len: 16,
        }),
        |d| {
            d.write(reg::QUEUE_READY, 0);
            d.write(reg::QUEUE_DESC_LOW, end as u32);
            d.write(reg::QUEUE_READY, 1);
            d.offer(1);
        },
    );
    // The available ring.
    expect_broken(
        false,
        QueueError::Memory(MemError::OutOfRange {
            gpa: end + 2,
            len: 2,
        }),
        |d| {
            d.write(reg::QUEUE_READY, 0);
            d.write(reg::QUEUE_DRIVER_LOW, end as u32);
            d.write(reg::QUEUE_READY, 1);
        },
    );
}

#[test]
fn used_ring_outside_memory() {
    // Found when the device returns the first chain; the request itself was carried out.
    let (mut disk, mut ram) = (vec![0u8; 4 << 20], vec![0u8; RAM_SIZE]);
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(&mut disk, b"x").unwrap()),
        &mut ram,
    );
    assert!(d.negotiate(VERSION_1));
    d.setup_queue(0, SIZE);
    d.write(reg::QUEUE_READY, 0);
    d.write(reg::QUEUE_DEVICE_HIGH, 1);
    d.write(reg::QUEUE_READY, 1);
    d.write(reg::STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert!(matches!(
        d.events()[..],
        [Event::QueueBroken {
            error: QueueError::Memory(MemError::OutOfRange { .. }),
            ..
        }]
    ));
    assert_ne!(d.status() & NEEDS_RESET, 0);
}

#[test]
fn indirect_rule_violations() {
    let table = BUF + 0x4000;
    expect_broken(false, QueueError::IndirectNotNegotiated, |d| {
        d.put_desc_at(table, 0, BUF, 16, 0, 0);
        d.put_desc(0, table, 16, F_INDIRECT, 0);
        d.offer(0);
    });
    expect_broken(true, QueueError::IndirectWithNext, |d| {
        d.put_desc_at(table, 0, BUF, 16, 0, 0);
        d.put_desc(0, table, 16, F_INDIRECT | F_NEXT, 1);
        d.offer(0);
    });
    expect_broken(true, QueueError::NestedIndirect, |d| {
        d.put_desc_at(table, 0, BUF, 16, F_NEXT, 1);
        d.put_desc_at(table, 1, table, 32, F_INDIRECT, 0);
        d.put_desc(0, table, 32, F_INDIRECT, 0);
        d.offer(0);
    });
    for len in [0, 17, 24] {
        expect_broken(true, QueueError::IndirectSize { len }, |d| {
            d.put_desc(0, table, len, F_INDIRECT, 0);
            d.offer(0);
        });
    }
    expect_broken(
        true,
        QueueError::BufferOverflow {
            addr: u64::MAX - 15,
            len: 32,
        },
        |d| {
            d.put_desc(0, u64::MAX - 15, 32, F_INDIRECT, 0);
            d.offer(0);
        },
    );
    expect_broken(true, QueueError::NextOutOfRange { index: 2 }, |d| {
        d.put_desc_at(table, 0, BUF, 16, F_NEXT, 2);
        d.put_desc(0, table, 32, F_INDIRECT, 0);
        d.offer(0);
    });
    // The table itself outside guest memory.
    let end = RAM_BASE + RAM_SIZE as u64;
    expect_broken(
        true,
        QueueError::Memory(MemError::OutOfRange { gpa: end, len: 16 }),
        |d| {
            d.put_desc(0, end, 32, F_INDIRECT, 0);
            d.offer(0);
        },
    );
}

#[test]
fn buffer_wrapping_the_address_space() {
    expect_broken(
        false,
        QueueError::BufferOverflow {
            addr: u64::MAX - 100,
            len: 512,
        },
        |d| {
            d.put_desc(0, BUF, 16, F_NEXT, 1);
            d.put_desc(1, u64::MAX - 100, 512, F_NEXT, 2);
            d.put_desc(2, BUF + 16, 1, F_WRITE, 0);
            d.offer(0);
        },
    );
}

#[test]
fn readable_after_writable() {
    expect_broken(false, QueueError::ReadableAfterWritable, |d| {
        d.put_desc(0, BUF, 16, F_NEXT, 1);
        d.put_desc(1, BUF + 16, 1, F_NEXT | F_WRITE, 2);
        d.put_desc(2, BUF + 0x1000, 512, 0, 0);
        d.offer(0);
    });
}

#[test]
fn entropy_device_breaks_the_same_way() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Rng::new(3)), &mut ram);
    d.bring_up(VERSION_1, SIZE);
    d.put_desc(0, BUF, 16, F_WRITE | F_NEXT, 0);
    d.submit(0);
    assert_eq!(
        d.events(),
        [Event::QueueBroken {
            queue: 0,
            error: QueueError::Loop { index: 0 }
        }]
    );
    assert_ne!(d.status() & NEEDS_RESET, 0);
}
