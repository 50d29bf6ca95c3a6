//! The operating system side: /dev/rust-ioreq-be (open, mmap of a region, waiting for the
//! notify interrupt), the doorbell as Device memory accessed with single 32-bit `LDR`/`STR`, and
//! `getrandom()` as the entropy source. Every `unsafe` of the daemon but the shared-memory
//! accessors (`shared.rs`) is here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use virtio_device::Entropy;

use crate::ioreq::Doorbell;
use crate::layout::Region;
use crate::shared::SharedRegion;

/// The module's ioctl that restricts an open file to one frontend's RAM banks: `_IOW('r', 1,
/// s32)` (tests/linux/rust-ioreq-be/rust-ioreq-be.c asserts the same number).
pub const RIOREQ_BE_RESTRICT: libc::c_ulong = ioc_write(b'r', 1, 4);
const _: () = assert!(RIOREQ_BE_RESTRICT == 0x4004_7201);

/// Linux's generic `_IOW(type, nr, size)` (arm64 and x86 alike).
const fn ioc_write(kind: u8, nr: u8, size: u16) -> libc::c_ulong {
    (1 << 30)
        | ((size as libc::c_ulong) << 16)
        | ((kind as libc::c_ulong) << 8)
        | nr as libc::c_ulong
}
/// The module's device node.
pub const DEV_PATH: &str = "/dev/rust-ioreq-be";
/// The module's layout file.
pub const LAYOUT_PATH: &str = "/sys/class/misc/rust-ioreq-be/layout";

/// An open /dev/rust-ioreq-be.
#[derive(Debug)]
pub struct BackendDevice {
    file: File,
}

impl BackendDevice {
    /// Opens the device node; a missing node gets the message that says why it may be missing.
    pub fn open(path: &str) -> Result<Self, String> {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => Ok(Self { file }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "no {path}: is rust-ioreq-be.ko loaded, and did it bind the rust-ioreq,backend \
                 node of this domain's device tree? (dmesg | grep rust-ioreq)"
            )),
            Err(e) => Err(format!("cannot open {path}: {e}")),
        }
    }

    /// Maps `region` read-write, shared (the module picks Device or Write-Back by region).
    pub fn map(&self, region: &Region) -> io::Result<SharedRegion> {
        let len = usize::try_from(region.size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let offset = libc::off_t::try_from(region.phys).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a new mapping chosen by the kernel (no fixed address), so no existing memory
        // of this process is affected; the arguments are plain values.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `[p, p + len)` was just mapped read-write and shared, and is never unmapped
        // (the daemon keeps every mapping for its whole life); the module maps only RAM pages
        // (ioreq, transport, notify, frontend banks) and the doorbell there, and no reference
        // into it is ever made. The doorbell's region is only used through `MmioDoorbell`.
        Ok(unsafe { SharedRegion::from_raw(p.cast(), len) })
    }

    /// Opens the device node again for a vhost-user backend daemon, restricted to frontend
    /// `frontend`'s RAM banks (`RIOREQ_BE_RESTRICT`): the vhost-user daemon maps that RAM
    /// through it and nothing else (not the doorbell, the ioreq pages, the records or other
    /// frontends' RAM), and cannot read the notify count. A new open file, not a duplicate: the
    /// restriction is the file's, and this daemon's file keeps everything.
    pub fn reopen_restricted(path: &str, frontend: u32) -> io::Result<OwnedFd> {
        let file: OwnedFd = OpenOptions::new().read(true).write(true).open(path)?.into();
        let index = i32::try_from(frontend).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: RIOREQ_BE_RESTRICT reads one i32 from the pointer, which points to `index`
        // for the whole call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), RIOREQ_BE_RESTRICT, &index) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOTTY) {
                io::Error::other(format!(
                    "{e}: this rust-ioreq-be.ko predates RIOREQ_BE_RESTRICT (rebuild the module)"
                ))
            } else {
                e
            });
        }
        Ok(file)
    }

    /// Waits up to `timeout_ms` for the notify interrupt count to move (returns at once the
    /// first time) or for one of `also` to become readable (the vhost-user call eventfds);
    /// returns whether the count moved.
    pub fn wait(&self, timeout_ms: i32, also: &[RawFd]) -> io::Result<bool> {
        let mut pfds: Vec<libc::pollfd> = std::iter::once(self.file.as_raw_fd())
            .chain(also.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let nfds = libc::nfds_t::try_from(pfds.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `pfds` holds `nfds` valid pollfds and outlives the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if n == 0 || pfds[0].revents == 0 {
            return Ok(false);
        }
        let mut count = [0u8; 8];
        // Readable: the read returns at once with the new count.
        (&self.file).read_exact(&mut count)?;
        Ok(true)
    }
}

/// The doorbell page, mapped Device nGnRE by the module.
#[derive(Debug)]
pub struct MmioDoorbell {
    base: *mut u8,
}

impl MmioDoorbell {
    /// Wraps the doorbell mapping.
    ///
    /// # Safety
    /// `region` must be the mapping of the layout's doorbell region (Device memory, at least
    /// 4 KiB), used for nothing else.
    pub unsafe fn new(region: SharedRegion) -> Self {
        debug_assert!(region.len() >= 0x1000);
        Self {
            base: region.as_ptr(),
        }
    }

    /// Returns the register address, for offsets inside the page and 4-byte aligned.
    fn reg(&self, offset: usize) -> Option<*mut u32> {
        (offset < 0x1000 && offset % 4 == 0).then(|| self.base.wrapping_add(offset).cast())
    }
}

impl Doorbell for MmioDoorbell {
    fn read(&self, offset: usize) -> u32 {
        let Some(p) = self.reg(offset) else {
            return 0;
        };
        read32(p)
    }

    fn write(&self, offset: usize, value: u32) {
        if let Some(p) = self.reg(offset) {
            write32(p, value);
        }
    }
}

/// One 32-bit load from a doorbell register.
#[cfg(target_arch = "aarch64")]
fn read32(p: *mut u32) -> u32 {
    let v: u32;
    // SAFETY: `p` is an aligned register inside the doorbell page (`MmioDoorbell::reg`), mapped
    // Device; a plain `LDR` with a base register (no writeback) gives Xen a valid syndrome, and
    // reads of the doorbell have no side effects. No `nomem`: the compiler must not move memory
    // accesses across it.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{p}]", p = in(reg) p, v = out(reg) v, options(nostack))
    };
    v
}

/// One 32-bit store to a doorbell register.
#[cfg(target_arch = "aarch64")]
fn write32(p: *mut u32, v: u32) {
    // SAFETY: as in `read32`; the callers write only values docs/backend-abi.md defines.
    unsafe { core::arch::asm!("str {v:w}, [{p}]", p = in(reg) p, v = in(reg) v, options(nostack)) };
}

/// Elsewhere (host builds: the doorbell is never mapped there) a volatile access.
#[cfg(not(target_arch = "aarch64"))]
fn read32(p: *mut u32) -> u32 {
    // SAFETY: as above; only reachable with a doorbell mapping, which only aarch64 has.
    unsafe { p.read_volatile() }
}

#[cfg(not(target_arch = "aarch64"))]
fn write32(p: *mut u32, v: u32) {
    // SAFETY: as above.
    unsafe { p.write_volatile(v) }
}

/// The kernel's random number generator (`getrandom(2)`, blocking until it is initialised: about
/// 20 s after boot under QEMU). Not `GRND_NONBLOCK`: completing an rng request with no bytes
/// (virtio 1.2 allows it) leaves Debian 6.1's virtio-rng driver waiting forever in
/// `hwrng_fillfn` (seen in `linux-backend`), so the daemon's one thread waits instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetRandom;

impl Entropy for GetRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), i32> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is writable memory of `rest.len()` bytes that this call borrows.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.raw_os_error().unwrap_or(0));
            }
            done += usize::try_from(n).unwrap_or(0);
        }
        Ok(())
    }
}

/// A new non-blocking eventfd (the vhost-user kick and call notifications).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain arguments; the result is a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to eventfd `fd`'s count (a kick).
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `one` is 8 readable bytes that outlive the call.
    let n = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    if n == 8 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // A count at its maximum already wakes the reader.
    if e.kind() == io::ErrorKind::WouldBlock {
        return Ok(());
    }
    Err(e)
}

/// Reads and clears non-blocking eventfd `fd`'s count (0 if nothing was signalled).
pub fn eventfd_take(fd: RawFd) -> u64 {
    let mut count = [0u8; 8];
    // SAFETY: `count` is 8 writable bytes that outlive the call.
    let n = unsafe { libc::read(fd, count.as_mut_ptr().cast(), count.len()) };
    if n == 8 {
        u64::from_ne_bytes(count)
    } else {
        0
    }
}

/// Connects a Unix stream socket to `path` with `timeout` as its send and receive timeouts,
/// set before the connect (Linux bounds a connect to a full listen queue by the send timeout;
/// `UnixStream::connect` would wait forever).
pub fn connect_unix(path: &str, timeout: std::time::Duration) -> io::Result<UnixStream> {
    // SAFETY: plain arguments; the result is a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let socket = unsafe { UnixStream::from_raw_fd(fd) };
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family =
        libc::sa_family_t::try_from(libc::AF_UNIX).map_err(|_| io::ErrorKind::InvalidInput)?;
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a Unix socket path (empty, NUL, or longer than 107 bytes)",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    let len = libc::socklen_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes for the whole call.
        let rc = unsafe {
            libc::connect(
                socket.as_raw_fd(),
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc == 0 {
            return Ok(socket);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What a look at a socket that should be quiet found, without waiting or consuming anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing to read: the peer is there and said nothing.
    Yes,
    /// The peer closed the connection (it exited, or shut the socket down).
    Closed,
    /// The peer sent something.
    Sent,
}

/// Looks whether connected socket `socket` has something to read (MSG_PEEK | MSG_DONTWAIT).
pub fn peek_quiet(socket: RawFd) -> io::Result<Quiet> {
    let mut byte = [0u8; 1];
    // SAFETY: `byte` is 1 writable byte that outlives the call; MSG_PEEK leaves it queued.
    let n = unsafe {
        libc::recv(
            socket,
            byte.as_mut_ptr().cast(),
            byte.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Ok(Quiet::Closed),
        n if n > 0 => Ok(Quiet::Sent),
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Quiet::Yes),
                io::ErrorKind::ConnectionReset => Ok(Quiet::Closed),
                _ => Err(e),
            }
        }
    }
}

/// Sends `bytes` on the Unix socket `socket` with `fds` as SCM_RIGHTS (a vhost-user message that
/// carries descriptors: the memory table, kick and call eventfds).
pub fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fds_len = std::mem::size_of_val(fds);
    let fds_len32 = u32::try_from(fds_len).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fds_len32) } as usize;
    // u64 words: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` has a control buffer of CMSG_SPACE(fds_len) bytes, so CMSG_FIRSTHDR is a
    // valid header inside it and CMSG_DATA has room for `fds_len` bytes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), fds_len);
    }
    // SAFETY: `msg` points at `iov` (the caller's bytes, only read) and `control`, both alive.
    let n = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != bytes.len() {
        return Err(io::Error::other(format!(
            "sendmsg sent {n} of {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}
