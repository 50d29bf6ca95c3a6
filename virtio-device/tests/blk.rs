//! Host tests of the virtio-blk model (virtio 1.2 §5.2) through raw registers and hand-built
//! rings: the four supported requests, message framing independence (§2.6.4), indirect
//! chains, and every request error (out-of-range sector, partial sectors, unsupported type,
//! missing status byte, buffers outside guest memory).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use virtio_device::features::{INDIRECT_DESC, VERSION_1};
use virtio_device::log::RequestError;
use virtio_device::{
    blk, Blk, BlkError, ChainIoError, Disk, DiskError, Event, MemError, MmioTransport,
};

const DISK: usize = 4 << 20;

fn new_driver<'m>(disk: &'m mut [u8], ram: &'m mut [u8]) -> Driver<'m, Blk<'m>> {
    let mut d = Driver::new(
        MmioTransport::new(Blk::new(disk, b"rust-ioreq-test").unwrap()),
        ram,
    );
    d.bring_up(VERSION_1 | blk::F_FLUSH | INDIRECT_DESC, 16);
    d
}

/// Builds header (split 10 + 6 bytes over two descriptors), data (split over two descriptors)
/// and status at descriptors 0..5, submits, and returns (status, used len).
fn split_request(d: &mut Driver<'_, Blk<'_>>, kind: u32, sector: u64, data: &[u8]) -> (u8, u32) {
    let hdr = BUF;
    let buf = BUF + 0x1000;
    let status = BUF + 0x800;
    d.put_bytes(hdr, &blk_header(kind, sector));
    d.put_bytes(status, &[0xff]);
    let write = if kind == blk::T_IN { F_WRITE } else { 0 };
    if kind == blk::T_OUT {
        d.put_bytes(buf, data);
    }
    let half = (data.len() / 2) as u32;
    d.put_desc(0, hdr, 10, F_NEXT, 1);
    d.put_desc(1, hdr + 10, 6, F_NEXT, 2);
    d.put_desc(2, buf, half, F_NEXT | write, 3);
    d.put_desc(
        3,
        buf + u64::from(half),
        data.len() as u32 - half,
        F_NEXT | write,
        4,
    );
    d.put_desc(4, status, 1, F_WRITE, 0);
    let before = d.used_idx();
    d.submit(0);
    assert_eq!(d.used_idx(), before.wrapping_add(1));
    let (id, len) = d.used_elem(before);
    assert_eq!(id, 0);
    (d.bytes(status, 1)[0], len)
}

#[test]
fn write_then_read_back_with_split_buffers() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(split_request(&mut d, blk::T_OUT, 5, &data), (blk::S_OK, 1));
    assert_eq!(&d.t.device().disk()[5 * 512..7 * 512], &data[..]);
    d.put_bytes(BUF + 0x1000, &[0u8; 1024]);
    assert_eq!(
        split_request(&mut d, blk::T_IN, 5, &[0u8; 1024]),
        (blk::S_OK, 1025)
    );
    assert_eq!(d.bytes(BUF + 0x1000, 1024), data);
    // The last sector of the disk is reachable too.
    let last = (DISK / 512 - 1) as u64;
    assert_eq!(
        split_request(&mut d, blk::T_OUT, last, &data[..512]).0,
        blk::S_OK
    );
    let stats = *d.t.device().stats();
    assert_eq!((stats.reads, stats.writes, stats.errors), (1, 2, 0));
    assert_eq!((stats.bytes_read, stats.bytes_written), (1024, 1536));
    assert_eq!(d.irq.0, 3);
    assert!(d.events().is_empty());
}

#[test]
fn flush_get_id_and_unsupported() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    // FLUSH: header + status.
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_OK);
    assert_eq!(d.used_elem(0), (0, 1));
    // GET_ID: header + 20 bytes + status.
    d.put_bytes(BUF, &blk_header(blk::T_GET_ID, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 32, 20, F_NEXT | F_WRITE, 2);
    d.put_desc(2, BUF + 64, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.bytes(BUF + 64, 1)[0], blk::S_OK);
    assert_eq!(&d.bytes(BUF + 32, 20)[..], b"rust-ioreq-test\0\0\0\0\0");
    assert_eq!(d.used_elem(1), (0, 21));
    // DISCARD (11) and an unknown type: UNSUPP, logged.
    for kind in [11, 0xdead] {
        d.put_bytes(BUF, &blk_header(kind, 0));
        d.put_desc(0, BUF, 16, F_NEXT, 1);
        d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
        d.submit(0);
        assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_UNSUPP);
        assert_eq!(
            d.events(),
            [Event::Request {
                queue: 0,
                head: 0,
                error: RequestError::Unsupported(kind)
            }]
        );
    }
    let s = *d.t.device().stats();
    assert_eq!((s.flushes, s.get_ids, s.errors), (1, 1, 2));
}

#[test]
fn out_of_range_and_partial_sectors_are_ioerr() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    let sectors = (DISK / 512) as u64;
    let data = [0xabu8; 1024];
    for (kind, sector, len, error) in [
        // One sector past the end, and a request straddling the end.
        (
            blk::T_IN,
            sectors,
            512,
            RequestError::OutOfRange {
                sector: sectors,
                len: 512,
            },
        ),
        (
            blk::T_OUT,
            sectors - 1,
            1024,
            RequestError::OutOfRange {
                sector: sectors - 1,
                len: 1024,
            },
        ),
        // sector * 512 overflows.
        (
            blk::T_IN,
            u64::MAX / 256,
            512,
            RequestError::OutOfRange {
                sector: u64::MAX / 256,
                len: 512,
            },
        ),
        // Not whole sectors.
        (blk::T_OUT, 0, 700, RequestError::NotSectors { len: 700 }),
        (blk::T_IN, 0, 100, RequestError::NotSectors { len: 100 }),
    ] {
        let (status, used) = split_request(&mut d, kind, sector, &data[..len]);
        assert_eq!(status, blk::S_IOERR, "{kind} {sector} {len}");
        // Only the status byte was written; the data buffers were skipped.
        let expect_used = if kind == blk::T_IN { 0 } else { 1 };
        assert_eq!(used, expect_used);
        assert_eq!(
            d.events(),
            [Event::Request {
                queue: 0,
                head: 0,
                error
            }]
        );
    }
    assert!(
        d.t.device().disk().iter().all(|&b| b == 0),
        "disk untouched"
    );
    assert_eq!(d.t.device().stats().errors, 5);
}

#[test]
fn malformed_requests() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    // No writable descriptor: nowhere to put a status; completed with len 0.
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, 0, 0);
    d.submit(0);
    assert_eq!(d.used_elem(0), (0, 0));
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::NoWritable,
            ..
        }]
    ));
    // A short header.
    d.put_desc(0, BUF, 8, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_IOERR);
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::Header(ChainIoError::Short {
                wanted: 16,
                left: 8
            }),
            ..
        }]
    ));
    // A data buffer outside guest memory: IOERR, the rest of guest memory untouched.
    let outside = RAM_BASE + RAM_SIZE as u64 - 256;
    d.put_bytes(BUF, &blk_header(blk::T_IN, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, outside, 512, F_NEXT | F_WRITE, 2);
    d.put_desc(2, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_IOERR);
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::Data(ChainIoError::Memory(MemError::OutOfRange { .. })),
            ..
        }]
    ));
    // The status byte itself outside guest memory: the request completes with len 0.
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, RAM_BASE + RAM_SIZE as u64, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_elem(3), (0, 0));
    assert!(matches!(
        d.events()[..],
        [Event::Request {
            error: RequestError::Data(ChainIoError::Memory(_)),
            ..
        }]
    ));
    // The device kept working through all of it.
    assert_eq!(d.status() & NEEDS_RESET, 0);
    assert_eq!(d.used_idx(), 4);
}

#[test]
fn indirect_request() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    let table = BUF + 0x8000;
    let data = [0x5au8; 512];
    d.put_bytes(BUF, &blk_header(blk::T_OUT, 9));
    d.put_bytes(BUF + 0x1000, &data);
    d.put_desc_at(table, 0, BUF, 16, F_NEXT, 2);
    d.put_desc_at(table, 2, BUF + 0x1000, 512, F_NEXT, 1);
    d.put_desc_at(table, 1, BUF + 16, 1, F_WRITE, 0);
    d.put_desc(7, table, 48, F_INDIRECT, 0);
    d.submit(7);
    assert_eq!(d.used_elem(0), (7, 1));
    assert_eq!(d.bytes(BUF + 16, 1)[0], blk::S_OK);
    assert_eq!(&d.t.device().disk()[9 * 512..10 * 512], &data[..]);
    assert!(d.events().is_empty());
}

#[test]
fn no_interrupt_flag_suppresses_the_interrupt() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    d.put_bytes(AVAIL, &1u16.to_le_bytes()); // VIRTQ_AVAIL_F_NO_INTERRUPT
    d.put_bytes(BUF, &blk_header(blk::T_FLUSH, 0));
    d.put_desc(0, BUF, 16, F_NEXT, 1);
    d.put_desc(1, BUF + 16, 1, F_WRITE, 0);
    d.submit(0);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.irq.0, 0);
    assert_eq!(d.read(reg::INTERRUPT_STATUS), 0);
}

#[test]
fn many_requests_wrap_the_rings() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    // 16-entry queue, 70000 requests: the 16-bit ring indices wrap around.
    for i in 0..70_000u32 {
        let sector = u64::from(i % 8192);
        d.put_bytes(BUF, &blk_header(blk::T_OUT, sector));
        d.put_bytes(BUF + 0x1000, &i.to_le_bytes());
        d.put_desc(3, BUF, 16, F_NEXT, 4);
        d.put_desc(4, BUF + 0x1000, 512, F_NEXT, 5);
        d.put_desc(5, BUF + 16, 1, F_WRITE, 0);
        d.submit(3);
    }
    assert_eq!(d.used_idx(), 70_000u32 as u16);
    assert_eq!(d.t.device().stats().writes, 70_000);
    let last = &d.t.device().disk()[(69_999 % 8192) * 512..][..4];
    assert_eq!(last, &69_999u32.to_le_bytes());
}

#[test]
fn disk_sizes() {
    assert_eq!(Blk::new(&mut [], b"").err(), Some(BlkError::Size(0)));
    assert_eq!(
        Blk::new(&mut [0u8; 1000], b"").err(),
        Some(BlkError::Size(1000))
    );
    let mut disk = [0u8; 1024];
    let b = Blk::new(&mut disk, b"a-very-long-identifier-string").unwrap();
    assert_eq!(b.capacity(), 2);
}

/// A [`Disk`] stricter than a file: hands data out in odd-sized pieces, counts every call, and
/// fails with an OS error on demand.
struct FakeDisk {
    bytes: Vec<u8>,
    read_only: bool,
    piece: usize,
    fail: Option<i32>,
    writes: u32,
    flushes: u32,
}

impl FakeDisk {
    fn new(len: usize, read_only: bool) -> Self {
        Self {
            bytes: (0..len).map(|i| (i % 251) as u8).collect(),
            read_only,
            piece: 300,
            fail: None,
            writes: 0,
            flushes: 0,
        }
    }
}

impl Disk for FakeDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ChainIoError>,
    ) -> Result<(), DiskError> {
        if let Some(e) = self.fail {
            return Err(DiskError::Io(e));
        }
        let range = &self.bytes[offset as usize..(offset + len) as usize];
        for piece in range.chunks(self.piece) {
            sink(piece).map_err(DiskError::Guest)?;
        }
        Ok(())
    }
    fn write(
        &mut self,
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(&mut [u8]) -> Result<(), ChainIoError>,
    ) -> Result<(), DiskError> {
        assert!(!self.read_only, "Blk wrote to a read-only disk");
        self.writes += 1;
        if let Some(e) = self.fail {
            return Err(DiskError::Io(e));
        }
        let range = &mut self.bytes[offset as usize..(offset + len) as usize];
        for piece in range.chunks_mut(self.piece) {
            source(piece).map_err(DiskError::Guest)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.flushes += 1;
        self.fail.map_or(Ok(()), |e| Err(DiskError::Io(e)))
    }
}

fn disk_driver<'m>(disk: &'m mut FakeDisk, ram: &'m mut [u8]) -> Driver<'m, Blk<'m>> {
    let mut d = Driver::new(
        MmioTransport::new(Blk::with_disk(disk, b"disk").unwrap()),
        ram,
    );
    d.bring_up(VERSION_1 | blk::F_FLUSH, 16);
    d
}

#[test]
fn a_disk_serves_requests_in_its_own_pieces() {
    let mut disk = FakeDisk::new(64 * 512, false);
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = disk_driver(&mut disk, &mut ram);
    assert_eq!(d.device_features() & blk::F_RO, 0);
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 13 + 1) as u8).collect();
    assert_eq!(split_request(&mut d, blk::T_OUT, 5, &data), (blk::S_OK, 1));
    d.put_bytes(BUF + 0x1000, &[0u8; 1024]);
    assert_eq!(
        split_request(&mut d, blk::T_IN, 5, &[0u8; 1024]),
        (blk::S_OK, 1025)
    );
    assert_eq!(d.bytes(BUF + 0x1000, 1024), data);
    assert_eq!(split_request(&mut d, blk::T_FLUSH, 0, &[]).0, blk::S_OK);
    drop(d);
    assert_eq!(&disk.bytes[5 * 512..7 * 512], &data[..]);
    assert_eq!((disk.writes, disk.flushes), (1, 1));
}

#[test]
fn a_read_only_disk_offers_ro_and_refuses_every_write() {
    let mut disk = FakeDisk::new(64 * 512, true);
    let before = disk.bytes.clone();
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = disk_driver(&mut disk, &mut ram);
    assert_ne!(d.device_features() & blk::F_RO, 0);
    // In range, out of range, not whole sectors: all IOERR, none reaches the disk.
    for (sector, len) in [(0, 512), (63, 1024), (2, 700)] {
        assert_eq!(
            split_request(&mut d, blk::T_OUT, sector, &vec![0xee; len]).0,
            blk::S_IOERR
        );
        assert_eq!(
            d.events(),
            [Event::Request {
                queue: 0,
                head: 0,
                error: RequestError::ReadOnly
            }]
        );
    }
    // Reads still work.
    assert_eq!(
        split_request(&mut d, blk::T_IN, 1, &[0u8; 512]),
        (blk::S_OK, 513)
    );
    assert_eq!(d.bytes(BUF + 0x1000, 512), before[512..1024]);
    drop(d);
    assert_eq!(disk.writes, 0);
    assert_eq!(disk.bytes, before);
}

#[test]
fn a_failing_disk_completes_with_ioerr() {
    let mut disk = FakeDisk::new(64 * 512, false);
    disk.fail = Some(5);
    let mut ram = vec![0u8; RAM_SIZE];
    let mut d = disk_driver(&mut disk, &mut ram);
    for kind in [blk::T_IN, blk::T_OUT, blk::T_FLUSH] {
        let len = if kind == blk::T_FLUSH { 0 } else { 512 };
        assert_eq!(
            split_request(&mut d, kind, 0, &vec![0u8; len]).0,
            blk::S_IOERR
        );
        assert_eq!(
            d.events(),
            [Event::Request {
                queue: 0,
                head: 0,
                error: RequestError::Disk(5)
            }]
        );
    }
    assert_eq!(d.t.device().stats().errors, 3);
}

/// One round serves at most about `ROUND_BYTES` of requests (at least one request), then says
/// there is more: a driver offering a ring of large requests gets them served over several
/// rounds, between which a backend serves everyone else.
#[test]
fn a_round_stops_after_round_bytes_and_the_rest_follows() {
    let (mut disk, mut ram) = (vec![0u8; DISK], vec![0u8; RAM_SIZE]);
    let mut d = new_driver(&mut disk, &mut ram);
    let data = (blk::ROUND_BYTES / 2) as u32;
    assert!(u64::from(data) + 0x1000 <= (RAM_SIZE as u64) - (BUF - RAM_BASE));
    // Four writes of half a round each, sharing one data buffer; status bytes apart.
    d.put_bytes(BUF, &blk_header(blk::T_OUT, 0));
    for i in 0..4u16 {
        let base = 3 * i;
        d.put_desc(base, BUF, 16, F_NEXT, base + 1);
        d.put_desc(base + 1, BUF + 0x1000, data, F_NEXT, base + 2);
        d.put_desc(base + 2, BUF + 0x100 + u64::from(i), 1, F_WRITE, 0);
    }
    for i in 0..4u16 {
        d.offer(3 * i);
    }
    let p = d.t.process_queue(0, &d.mem, &mut d.irq, &mut d.log);
    assert_eq!(
        (p.used, p.more),
        (2, true),
        "two half-round requests, then yield"
    );
    let p = d.t.process_queue(0, &d.mem, &mut d.irq, &mut d.log);
    assert_eq!(
        (p.used, p.more),
        (2, false),
        "the other two in the next round"
    );
    assert_eq!(d.used_idx(), 4);
    assert_eq!(d.t.device().stats().writes, 4);
}
