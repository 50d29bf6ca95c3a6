//! A virtio-blk disk backed by a file or a block device of the backend domain, through the
//! page cache (`pread`/`pwrite`; `VIRTIO_BLK_T_FLUSH` is `fdatasync`). Read-only disks are
//! opened `O_RDONLY`: nothing in this process can write them.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use virtio_device::{ChainIoError, Disk, DiskError};

/// A request up to this size is copied from the driver's buffers whole before anything is
/// written, so that a request whose buffers fault leaves the disk untouched (Linux's largest
/// requests are 1.25 MiB by default); larger ones are written in pieces of this size.
pub const WHOLE_WRITE: usize = 4 << 20;
/// Reads are handed to the driver in pieces of this size.
const READ_PIECE: usize = 1 << 20;

/// A disk file.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    len: u64,
    read_only: bool,
    buf: Vec<u8>,
}

/// Why a disk cannot be used.
#[derive(Debug)]
pub enum OpenError {
    /// The OS refused to open or measure it.
    Io(io::Error),
    /// Its size is not a non-zero multiple of 512 (the size).
    Size(u64),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "{e}"),
            OpenError::Size(n) => {
                write!(f, "its size, {n} bytes, is not a non-zero multiple of 512")
            }
        }
    }
}

impl FileDisk {
    /// Opens `path` (read-only when `read_only`) and measures it (a block device's size is
    /// where its end is, not its metadata length).
    pub fn open(path: &str, read_only: bool) -> Result<Self, OpenError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(OpenError::Io)?;
        let len = file.seek(SeekFrom::End(0)).map_err(OpenError::Io)?;
        if len == 0 || len % 512 != 0 {
            return Err(OpenError::Size(len));
        }
        Ok(Self {
            file,
            len,
            read_only,
            buf: Vec::new(),
        })
    }
}

/// Returns the first `n` bytes of `buf`, grown if needed (the buffer is reused across requests).
fn piece(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

/// Turns an OS error into a [`DiskError`].
fn io(e: io::Error) -> DiskError {
    DiskError::Io(e.raw_os_error().unwrap_or(0))
}

impl Disk for FileDisk {
    fn size(&self) -> u64 {
        self.len
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
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).map_or(READ_PIECE, |left| left.min(READ_PIECE));
            let buf = piece(&mut self.buf, n);
            self.file.read_exact_at(buf, offset + done).map_err(io)?;
            sink(buf).map_err(DiskError::Guest)?;
            done += n as u64;
        }
        Ok(())
    }

    fn write(
        &mut self,
        offset: u64,
        len: u64,
        source: &mut dyn FnMut(&mut [u8]) -> Result<(), ChainIoError>,
    ) -> Result<(), DiskError> {
        if self.read_only {
            // virtio-device never asks; stay safe if something else does.
            return Err(DiskError::Io(libc::EROFS));
        }
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).map_or(WHOLE_WRITE, |left| left.min(WHOLE_WRITE));
            let buf = piece(&mut self.buf, n);
            source(buf).map_err(DiskError::Guest)?;
            self.file.write_all_at(buf, offset + done).map_err(io)?;
            done += n as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(io)
    }
}
