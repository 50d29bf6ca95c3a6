//! Host tests of the virtio-rng model (virtio 1.2 §5.4) through raw registers: buffers are
//! filled from the seeded generator across descriptors, requests are capped, and bad buffers
//! are reported without stopping the device.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use virtio_device::features::VERSION_1;
use virtio_device::log::RequestError;
use virtio_device::rng::MAX_BYTES_PER_REQUEST;
use virtio_device::{ChainIoError, Entropy, Event, MmioTransport, Rng, SplitMix64};

#[test]
fn fills_buffers_from_the_seeded_generator() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Rng::new(42)), &mut ram);
    d.bring_up(VERSION_1, 8);
    d.put_desc(2, BUF, 5, F_WRITE | F_NEXT, 6);
    d.put_desc(6, BUF + 0x100, 11, F_WRITE, 0);
    d.submit(2);
    assert_eq!(d.used_elem(0), (2, 16));
    let mut want = [0u8; 16];
    SplitMix64::new(42).fill(&mut want);
    let mut got = d.bytes(BUF, 5);
    got.extend(d.bytes(BUF + 0x100, 11));
    assert_eq!(got, want);
    assert_eq!(d.irq.0, 1);
    let s = *d.t.device().stats();
    assert_eq!((s.requests, s.bytes, s.errors), (1, 16, 0));
    // The next request continues the stream.
    d.put_desc(0, BUF, 8, F_WRITE, 0);
    d.submit(0);
    let mut g = SplitMix64::new(42);
    g.next_u64();
    g.next_u64();
    assert_eq!(d.bytes(BUF, 8), g.next_u64().to_le_bytes());
    assert!(d.events().is_empty());
}

#[test]
fn large_requests_are_capped() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Rng::new(1)), &mut ram);
    d.bring_up(VERSION_1, 8);
    d.put_desc(0, BUF, 0x40000, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_elem(0), (0, MAX_BYTES_PER_REQUEST as u32));
    assert!(d
        .bytes(BUF + MAX_BYTES_PER_REQUEST, 0x1000)
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn bad_buffers_are_reported_and_completed() {
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = Driver::new(MmioTransport::new(Rng::new(1)), &mut ram);
    d.bring_up(VERSION_1, 8);
    // Only a readable buffer.
    d.put_desc(0, BUF, 64, 0, 0);
    d.submit(0);
    assert_eq!(d.used_elem(0), (0, 0));
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::NoWritable,
            ..
        }]
    ));
    // A buffer running off the end of guest memory: the part inside is filled.
    let near_end = RAM_BASE + RAM_SIZE as u64 - 16;
    d.put_desc(0, BUF, 32, F_WRITE | F_NEXT, 1);
    d.put_desc(1, near_end, 64, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_elem(1), (0, 32));
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::Data(ChainIoError::Memory(_)),
            ..
        }]
    ));
    assert_eq!(d.t.device().stats().errors, 2);
    assert_eq!(d.status() & NEEDS_RESET, 0);
}

/// An entropy source that counts up, or fails once `fail_after` bytes were given.
struct Counting {
    next: u8,
    given: usize,
    fail_after: usize,
}

impl Entropy for Counting {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), i32> {
        if self.given + buf.len() > self.fail_after {
            return Err(11);
        }
        for b in buf.iter_mut() {
            *b = self.next;
            self.next = self.next.wrapping_add(1);
        }
        self.given += buf.len();
        Ok(())
    }
}

#[test]
fn an_embedders_source_fills_buffers_and_its_failure_is_reported() {
    let mut ram = vec![0u8; RAM_SIZE];
    let source = Counting {
        next: 0,
        given: 0,
        fail_after: 100,
    };
    let mut d = Driver::new(MmioTransport::new(Rng::with_source(source)), &mut ram);
    d.bring_up(VERSION_1, 8);
    d.put_desc(0, BUF, 70, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_elem(0), (0, 70));
    assert_eq!(d.bytes(BUF, 70), (0..70u8).collect::<Vec<_>>());
    // The source runs dry: the request completes with what was written before (one 64-byte
    // block would pass 100), and the failure is logged.
    d.put_bytes(BUF, &[0xaa; 70]);
    d.put_desc(0, BUF, 70, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_elem(1), (0, 0));
    assert_eq!(d.bytes(BUF, 70), [0xaa; 70]);
    assert_eq!(
        d.events(),
        [Event::Request {
            queue: 0,
            head: 0,
            error: RequestError::Entropy(11)
        }]
    );
    assert_eq!(d.t.device().stats().errors, 1);
}
