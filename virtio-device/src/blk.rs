//! virtio-blk device model (virtio 1.2 §5.2) over a RAM disk or any [`Disk`] (a file, a block
//! device): one request queue, requests `VIRTIO_BLK_T_IN`, `OUT`, `FLUSH` and `GET_ID`;
//! everything else is answered `VIRTIO_BLK_S_UNSUPP`.
//!
//! Offered features: `VIRTIO_BLK_F_SEG_MAX` (so Linux puts more than one data segment in a
//! request), `VIRTIO_BLK_F_BLK_SIZE` (512) and `VIRTIO_BLK_F_FLUSH` (Linux then treats the disk
//! as write-back and sends flushes, which a RAM disk completes at once). A request is framed
//! as §5.2.6 describes but independently of how the driver splits it over descriptors (§2.6.4):
//! a 16-byte header at the start of the readable part, data, and the status in the last
//! writable byte. A request that reaches past the disk, or whose data is not a whole number of
//! sectors, completes with `VIRTIO_BLK_S_IOERR` and does not touch the disk.
//!
//! A read-only [`Disk`] is offered with `VIRTIO_BLK_F_RO`, and every `OUT` request completes
//! with `VIRTIO_BLK_S_IOERR` without reaching the disk (§5.2.6.2: the device must reject a write
//! to a read-only device).

use crate::chain::{ChainIoError, Reader, Writer};
use crate::log::{Event, Logger, RequestError};
use crate::memory::GuestMemory;
use crate::mmio::VirtioDevice;
use crate::queue::{DescriptorChain, Queue, QueueError, MAX_QUEUE_SIZE};

/// Virtio device ID of a block device (§5.2.1).
/// Bytes of requests one round serves before it yields, at least one request whatever its
/// size: a driver that fills its ring with large requests cannot hold the backend for a whole
/// queue of them (say 256 times the disk) before it looks at its other devices and frontends,
/// whose round trips have a deadline (the backend's `xen,ioreq-timeout-ms`).
pub const ROUND_BYTES: u64 = 1 << 20;

pub const DEVICE_ID: u32 = 2;
/// The sector: the unit of `capacity` and of a request's `sector` field (§5.2.4).
pub const SECTOR_SIZE: u64 = 512;
/// Bytes of the GET_ID answer (§5.2.6).
pub const ID_BYTES: usize = 20;

/// `VIRTIO_BLK_F_SIZE_MAX`: `size_max` is valid (not offered).
pub const F_SIZE_MAX: u64 = 1 << 1;
/// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` is valid.
pub const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`: the device is read-only (offered for a read-only [`Disk`]).
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` is valid.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`: the FLUSH request is supported.
pub const F_FLUSH: u64 = 1 << 9;

/// `VIRTIO_BLK_T_IN`: read sectors.
pub const T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`: write sectors.
pub const T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`: flush the write cache.
pub const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_T_GET_ID`: read the device ID string.
pub const T_GET_ID: u32 = 8;

/// `VIRTIO_BLK_S_OK`.
pub const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_IOERR`.
pub const S_IOERR: u8 = 1;
/// `VIRTIO_BLK_S_UNSUPP`.
pub const S_UNSUPP: u8 = 2;

/// Size of the configuration space: `struct virtio_blk_config` of virtio 1.2, through the
/// zoned characteristics (fields of features not offered read as 0).
const CONFIG_LEN: usize = 96;
/// Size of the request header (`type`, `reserved`, `sector`).
const HEADER_LEN: usize = 16;

/// Why a disk cannot back a block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The size is 0 or not a multiple of 512 bytes (the value is the size).
    Size(usize),
}

/// Why a [`Disk`] transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The driver's buffers could not be read or written (what the closure returned).
    Guest(ChainIoError),
    /// The disk itself failed (an OS error number, or 0 when there is none).
    Io(i32),
}

/// A disk behind a block device that is not a RAM slice: a file or a block device of the
/// embedder's OS. [`Blk`] checks every range against [`size`](Disk::size) before it calls
/// [`read`](Disk::read) or [`write`](Disk::write), and never calls `write` when
/// [`read_only`](Disk::read_only).
pub trait Disk {
    /// Returns the size in bytes (a non-zero multiple of 512 for [`Blk::with_disk`]).
    fn size(&self) -> u64;

    /// Tells whether the disk refuses writes.
    fn read_only(&self) -> bool;

    /// Hands disk bytes `[offset, offset + len)` to `sink` in order, in pieces of the
    /// implementation's choosing; stops at the first error, of the disk or of `sink`.
    fn read(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ChainIoError>,
    ) -> Result<(), DiskError>;

    /// Writes `len` bytes at `offset`, each piece filled by `source` first. An implementation
    /// should fill as large a piece as it can before writing anything, so that a request whose
    /// buffers fault leaves the disk untouched (the ones it makes in one piece).
    fn write(
        &mut self,
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(&mut [u8]) -> Result<(), ChainIoError>,
    ) -> Result<(), DiskError>;

    /// Makes every completed write durable (`VIRTIO_BLK_T_FLUSH`).
    fn flush(&mut self) -> Result<(), DiskError>;
}

/// What a [`Blk`] stores its sectors in.
enum Storage<'d> {
    /// A RAM disk: requests copy straight between it and the driver's buffers.
    Ram(&'d mut [u8]),
    /// Anything else.
    Disk(&'d mut dyn Disk),
}

impl core::fmt::Debug for Storage<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Storage::Ram(d) => write!(f, "Ram({} bytes)", d.len()),
            Storage::Disk(d) => write!(f, "Disk({} bytes, read-only: {})", d.size(), d.read_only()),
        }
    }
}

impl Storage<'_> {
    /// Returns the size in bytes.
    fn len(&self) -> u64 {
        match self {
            Storage::Ram(d) => u64::try_from(d.len()).unwrap_or(u64::MAX),
            Storage::Disk(d) => d.size(),
        }
    }

    /// Tells whether writes are refused.
    fn read_only(&self) -> bool {
        match self {
            Storage::Ram(_) => false,
            Storage::Disk(d) => d.read_only(),
        }
    }
}

/// Counters of the requests a block device served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Successful IN requests.
    pub reads: u64,
    /// Successful OUT requests.
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// GET_ID requests.
    pub get_ids: u64,
    /// Requests answered with an error status (IOERR or UNSUPP), or not answerable.
    pub errors: u64,
    /// Bytes copied to the driver by IN requests.
    pub bytes_read: u64,
    /// Bytes copied from the driver by OUT requests.
    pub bytes_written: u64,
}

/// A virtio-blk device serving a RAM disk or a [`Disk`].
#[derive(Debug)]
pub struct Blk<'d> {
    disk: Storage<'d>,
    id: [u8; ID_BYTES],
    config: [u8; CONFIG_LEN],
    stats: BlkStats,
}

impl<'d> Blk<'d> {
    /// Creates a block device over `disk` (a whole number of sectors) whose GET_ID answer is
    /// `id` (truncated to 20 bytes, zero-padded).
    pub fn new(disk: &'d mut [u8], id: &[u8]) -> Result<Self, BlkError> {
        Self::build(Storage::Ram(disk), id)
    }

    /// Creates a block device over `disk` (a whole number of sectors, at most `usize::MAX`
    /// bytes), read-only if the disk is, whose GET_ID answer is `id` (as for [`Blk::new`]).
    pub fn with_disk(disk: &'d mut dyn Disk, id: &[u8]) -> Result<Self, BlkError> {
        Self::build(Storage::Disk(disk), id)
    }

    fn build(disk: Storage<'d>, id: &[u8]) -> Result<Self, BlkError> {
        let len = disk.len();
        if len == 0 || len % SECTOR_SIZE != 0 || usize::try_from(len).is_err() {
            return Err(BlkError::Size(usize::try_from(len).unwrap_or(usize::MAX)));
        }
        let mut ident = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        ident[..n].copy_from_slice(&id[..n]);
        let capacity = len / SECTOR_SIZE;
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        // size_max (8..12) stays 0: not offered, any segment size is fine.
        // seg_max: without indirect descriptors a chain also holds the header and the status,
        // and no chain is longer than the queue.
        let seg_max = u32::from(MAX_QUEUE_SIZE) - 2;
        config[12..16].copy_from_slice(&seg_max.to_le_bytes());
        // geometry (16..20) stays 0; blk_size:
        config[20..24].copy_from_slice(&512u32.to_le_bytes());
        Ok(Self {
            disk,
            id: ident,
            config,
            stats: BlkStats::default(),
        })
    }

    /// Returns the capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.len() / SECTOR_SIZE
    }

    /// Tells whether the device is read-only (`VIRTIO_BLK_F_RO` offered, writes refused).
    pub fn read_only(&self) -> bool {
        self.disk.read_only()
    }

    /// Returns the request counters.
    pub fn stats(&self) -> &BlkStats {
        &self.stats
    }

    /// Returns the RAM disk's contents (empty for a [`Disk`], which the embedder owns).
    pub fn disk(&self) -> &[u8] {
        match &self.disk {
            Storage::Ram(d) => d,
            Storage::Disk(_) => &[],
        }
    }

    /// Returns the disk byte range of `len` bytes from `sector`, if the request is well formed.
    fn range(&self, sector: u64, len: u64) -> Result<core::ops::Range<usize>, (u8, RequestError)> {
        if len % SECTOR_SIZE != 0 {
            return Err((S_IOERR, RequestError::NotSectors { len }));
        }
        let out = (S_IOERR, RequestError::OutOfRange { sector, len });
        let start = sector.checked_mul(SECTOR_SIZE).ok_or(out)?;
        let end = start.checked_add(len).ok_or(out)?;
        let (start, end) = (
            usize::try_from(start).map_err(|_| out)?,
            usize::try_from(end).map_err(|_| out)?,
        );
        if u64::try_from(end).map_or(true, |e| e > self.disk.len()) {
            return Err(out);
        }
        Ok(start..end)
    }

    /// Carries out one request; `room` is the writable space before the status byte.
    fn execute(
        &mut self,
        r: &mut Reader<'_>,
        w: &mut Writer<'_>,
        room: u64,
        mem: &dyn GuestMemory,
    ) -> Result<(), (u8, RequestError)> {
        let mut header = [0u8; HEADER_LEN];
        r.read(mem, &mut header)
            .map_err(|e| (S_IOERR, RequestError::Header(e)))?;
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
        let kind = u32::from_le_bytes([t0, t1, t2, t3]);
        let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        let data_error = |e| (S_IOERR, RequestError::Data(e));
        match kind {
            T_IN => {
                let range = self.range(sector, room)?;
                match &mut self.disk {
                    Storage::Ram(d) => w.write(mem, &d[range]).map_err(data_error)?,
                    Storage::Disk(d) => d
                        .read(range_u64(&range), room, &mut |piece| w.write(mem, piece))
                        .map_err(disk_error)?,
                }
                self.stats.reads += 1;
                self.stats.bytes_read += room;
            }
            T_OUT => {
                let len = r.remaining();
                if self.disk.read_only() {
                    return Err((S_IOERR, RequestError::ReadOnly));
                }
                let range = self.range(sector, len)?;
                match &mut self.disk {
                    Storage::Ram(d) => r.read(mem, &mut d[range]).map_err(data_error)?,
                    Storage::Disk(d) => d
                        .write(range_u64(&range), len, &mut |piece| r.read(mem, piece))
                        .map_err(disk_error)?,
                }
                self.stats.writes += 1;
                self.stats.bytes_written += len;
            }
            T_FLUSH => match &mut self.disk {
                // A RAM disk has no cache to write back.
                Storage::Ram(_) => self.stats.flushes += 1,
                Storage::Disk(d) => {
                    d.flush().map_err(disk_error)?;
                    self.stats.flushes += 1;
                }
            },
            T_GET_ID => {
                let n = usize::try_from(room).unwrap_or(usize::MAX).min(ID_BYTES);
                w.write(mem, &self.id[..n]).map_err(data_error)?;
                self.stats.get_ids += 1;
            }
            other => return Err((S_UNSUPP, RequestError::Unsupported(other))),
        }
        Ok(())
    }

    /// Serves `chain`; returns the used length and what went wrong, if anything.
    fn serve(
        &mut self,
        chain: &DescriptorChain,
        mem: &dyn GuestMemory,
    ) -> (u32, Option<RequestError>) {
        let mut w = chain.writer();
        let writable = w.remaining();
        let Some(room) = writable.checked_sub(1) else {
            self.stats.errors += 1;
            return (0, Some(RequestError::NoWritable));
        };
        let mut r = chain.reader();
        let (status, mut error) = match self.execute(&mut r, &mut w, room, mem) {
            Ok(()) => (S_OK, None),
            Err((status, e)) => {
                self.stats.errors += 1;
                (status, Some(e))
            }
        };
        // The status is the last writable byte, whatever was (or was not) written before it.
        let before_status = w.remaining().saturating_sub(1);
        let status_written = w.skip(before_status).and_then(|()| w.write(mem, &[status]));
        if let Err(e) = status_written {
            if error.is_none() {
                self.stats.errors += 1;
                error = Some(RequestError::Data(e));
            }
        }
        let used = u32::try_from(w.written_prefix()).unwrap_or(u32::MAX);
        (used, error)
    }
}

/// Returns the disk offset a checked byte range starts at.
fn range_u64(range: &core::ops::Range<usize>) -> u64 {
    // usize is at most 64 bits on every target this crate supports.
    u64::try_from(range.start).unwrap_or(u64::MAX)
}

/// Turns a [`Disk`] failure into the request's status and error.
fn disk_error(e: DiskError) -> (u8, RequestError) {
    match e {
        DiskError::Guest(e) => (S_IOERR, RequestError::Data(e)),
        DiskError::Io(errno) => (S_IOERR, RequestError::Disk(errno)),
    }
}

impl VirtioDevice for Blk<'_> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only() { F_RO } else { 0 };
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | ro
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn queue_max_size(&self, _index: usize) -> u16 {
        MAX_QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        // The transport checked the range; stay total anyway.
        if let Some(src) = offset
            .checked_add(data.len())
            .and_then(|end| self.config.get(offset..end))
        {
            data.copy_from_slice(src);
        }
    }

    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        log: &mut dyn Logger,
    ) -> Result<(), QueueError> {
        // The bytes the round's chains describe, whatever the requests moved of them.
        let mut round_bytes: u64 = 0;
        while let Some(chain) = queue.pop(mem)? {
            round_bytes = round_bytes
                .saturating_add(chain.reader().remaining())
                .saturating_add(chain.writer().remaining());
            let (used, error) = self.serve(&chain, mem);
            if let Some(error) = error {
                log.log(Event::Request {
                    queue: index,
                    head: chain.head(),
                    error,
                });
            }
            queue.add_used(mem, &chain, used)?;
            if round_bytes >= ROUND_BYTES {
                queue.end_round();
            }
        }
        Ok(())
    }
}
