//! The vhost-user bridge: hands a device to an unmodified vhost-user backend daemon
//! (`vhost-device-rng`, `vhost-device-vsock`, ...), this daemon taking the vhost-user front-end
//! role QEMU has. The frontend's RAM banks are the memory table (the /dev/rust-ioreq-be fd at each
//! bank's window offset, so the backend daemon maps the same Write-Back pages this daemon does),
//! QueueNotify becomes a write to the queue's kick eventfd, and the backend's call eventfd
//! becomes the device's used-buffer interrupt. The register file stays this daemon's
//! (`virtio-device`'s `MmioTransport`); only the queues are handed over, at DRIVER_OK.
//!
//! Message layouts: the vhost-user protocol specification (QEMU's docs/interop/vhost-user.rst).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use virtio_device::queue::{Queue, QueuePart};

use crate::server::{RateLimit, PREFIX};
use crate::sys::Quiet;
use virtio_device::{GuestMemory, Logger, QueueError, VirtioDevice};

/// vhost-user requests this front-end sends (specification numbering).
mod req {
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const SET_OWNER: u32 = 3;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const GET_VRING_BASE: u32 = 11;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const GET_QUEUE_NUM: u32 = 17;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_CONFIG: u32 = 24;
}

/// Header flags: protocol version 1; set in replies.
const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
/// The feature bit (30) that says the backend speaks protocol features; never offered to the
/// driver (in virtio it is a reserved transport bit).
const F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Protocol features used: several queues (GET_QUEUE_NUM), the configuration space (GET_CONFIG).
const PF_MQ: u64 = 1 << 0;
const PF_CONFIG: u64 = 1 << 9;
/// Feature bits passed on to the driver: the device-specific ones (0..24), indirect
/// descriptors, event index and VERSION_1. Legacy bits (NOTIFY_ON_EMPTY, ANY_LAYOUT) and ring
/// layouts or notification schemes this transport does not implement (packed rings, in order,
/// notification data, ...) are not.
const PASSED_FEATURES: u64 = 0x00ff_ffff | (1 << 28) | (1 << 29) | (1 << 32);
/// The memory table's limit (the specification's VHOST_MEMORY_BASELINE_NREGIONS).
pub const MAX_REGIONS: usize = 8;
/// Longest reply accepted (a configuration space is at most 256 bytes).
const MAX_REPLY: u32 = 512;
/// How long a restart waits for the backend daemon to listen again.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(1);
/// How long one read or write on the vhost-user socket may take.
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// `QueueNumMax` offered to the driver for every queue of a bridged device.
pub const QUEUE_SIZE: u16 = 256;

/// The device types the bridge can stand for: what the transport must say that the vhost-user
/// protocol does not (the device ID, the number of queues, the configuration's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-rng (ID 4): one queue, no configuration.
    Rng,
    /// virtio-vsock (ID 19): rx, tx, event queues; the 8-byte guest CID as configuration.
    Vsock,
}

impl Kind {
    /// Returns the virtio device ID.
    pub fn device_id(self) -> u32 {
        match self {
            Kind::Rng => 4,
            Kind::Vsock => 19,
        }
    }

    /// Returns the number of virtqueues.
    pub fn num_queues(self) -> usize {
        match self {
            Kind::Rng => 1,
            Kind::Vsock => 3,
        }
    }

    /// Returns the configuration space's size.
    pub fn config_len(self) -> usize {
        match self {
            Kind::Rng => 0,
            Kind::Vsock => 8,
        }
    }

    /// Returns the name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rng => "virtio-rng",
            Kind::Vsock => "virtio-vsock",
        }
    }
}

/// One bank of the frontend's RAM as the backend daemon will map it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// The frontend's guest-physical address.
    pub gpa: u64,
    /// Bytes.
    pub size: u64,
    /// The window's offset in /dev/rust-ioreq-be (its physical address in this domain).
    pub offset: u64,
}

/// A device served by a vhost-user backend daemon.
#[derive(Debug)]
pub struct VhostUser {
    kind: Kind,
    socket: UnixStream,
    path: String,
    /// The /dev/rust-ioreq-be file, sent with the memory table.
    memory_fd: OwnedFd,
    regions: Vec<MemoryRegion>,
    backend_features: u64,
    protocol_features: u64,
    config: Vec<u8>,
    driver_features: u64,
    kicks: Vec<OwnedFd>,
    calls: Vec<OwnedFd>,
    started: Vec<bool>,
    /// The queues were handed over since the connection was made: a new start reconnects.
    used_connection: bool,
    /// The first failure talking to the backend daemon: the device then needs a reset (the
    /// server sets DEVICE_NEEDS_RESET), and the driver's reset reconnects.
    broken: Option<String>,
    /// The bridge's own lines: a driver that resets in a loop chooses how often they come.
    limit: RateLimit,
    /// What the driver (and a fast device's record, in Xen) was offered at start-up: a new
    /// connection must offer the same.
    offered: Offer,
    /// When a broken device last tried to reconnect: at most one try per [`RECONNECT_FOR`].
    last_recovery: Option<std::time::Instant>,
}

/// What the driver sees of the backend daemon: the feature bits passed on, whether indirect
/// descriptors are offered, the configuration space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Offer {
    features: u64,
    indirect: bool,
    config: Vec<u8>,
}

impl VhostUser {
    /// Connects to the backend daemon at `path` and learns its features (and configuration);
    /// `regions` are the frontend's RAM banks, shared through `memory_fd`.
    pub fn connect(
        kind: Kind,
        path: &str,
        memory_fd: OwnedFd,
        regions: Vec<MemoryRegion>,
    ) -> Result<Self, String> {
        if regions.is_empty() || regions.len() > MAX_REGIONS {
            return Err(format!(
                "{} RAM banks: vhost-user shares 1 to {MAX_REGIONS}",
                regions.len()
            ));
        }
        let socket = connect(path)
            .map_err(|e| format!("cannot connect to the vhost-user socket {path}: {e}"))?;
        let (kicks, calls) = eventfds(kind).map_err(|e| format!("eventfd: {e}"))?;
        let mut dev = Self {
            kind,
            socket,
            path: path.to_string(),
            memory_fd,
            regions,
            backend_features: 0,
            protocol_features: 0,
            config: vec![0; kind.config_len()],
            driver_features: 0,
            kicks,
            calls,
            started: vec![false; kind.num_queues()],
            used_connection: false,
            broken: None,
            limit: RateLimit::new(),
            offered: Offer::default(),
            last_recovery: None,
        };
        dev.handshake()
            .map_err(|e| format!("vhost-user backend at {path}: {e}"))?;
        dev.offered = dev.offer();
        Ok(dev)
    }

    fn handshake(&mut self) -> io::Result<()> {
        self.send(req::SET_OWNER, &[], &[])?;
        self.backend_features = self.get_u64(req::GET_FEATURES)?;
        if self.backend_features & (1 << 32) == 0 {
            return Err(io::Error::other(format!(
                "features {:#x} lack VERSION_1",
                self.backend_features
            )));
        }
        if self.backend_features & F_PROTOCOL_FEATURES != 0 {
            let offered = self.get_u64(req::GET_PROTOCOL_FEATURES)?;
            self.protocol_features = offered & (PF_MQ | PF_CONFIG);
            self.send(
                req::SET_PROTOCOL_FEATURES,
                &self.protocol_features.to_le_bytes(),
                &[],
            )?;
        }
        if self.protocol_features & PF_MQ == 0 && self.kind.num_queues() > 1 {
            return Err(io::Error::other(format!(
                "no MQ protocol feature: cannot learn whether it has the {} queues of a {}",
                self.kind.num_queues(),
                self.kind.name()
            )));
        }
        if self.protocol_features & PF_MQ != 0 {
            let queues = self.get_u64(req::GET_QUEUE_NUM)?;
            if queues < self.kind.num_queues() as u64 {
                return Err(io::Error::other(format!(
                    "{queues} queue(s): a {} has {}",
                    self.kind.name(),
                    self.kind.num_queues()
                )));
            }
        }
        if !self.config.is_empty() {
            if self.protocol_features & PF_CONFIG == 0 {
                return Err(io::Error::other(format!(
                    "a {} needs its configuration space, and the backend offers no CONFIG protocol feature",
                    self.kind.name()
                )));
            }
            let len = self.config.len();
            let mut msg = Vec::with_capacity(12 + len);
            msg.extend_from_slice(&0u32.to_le_bytes()); // offset
            msg.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_le_bytes());
            msg.extend_from_slice(&0u32.to_le_bytes()); // flags
            msg.resize(12 + len, 0);
            self.send(req::GET_CONFIG, &msg, &[])?;
            let reply = self.reply(req::GET_CONFIG)?;
            if reply.len() != 12 + len {
                return Err(io::Error::other(format!(
                    "GET_CONFIG answered {} bytes, want {}",
                    reply.len(),
                    12 + len
                )));
            }
            self.config.copy_from_slice(&reply[12..]);
        }
        Ok(())
    }

    /// Describes the device for the start-up lines.
    pub fn describe(&self) -> String {
        format!(
            "{} through vhost-user {} (backend features {:#x})",
            self.kind.name(),
            self.path,
            self.backend_features
        )
    }

    /// Returns the device type.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Returns the eventfds the backend daemon signals used buffers on, to wait for.
    pub fn call_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.calls.iter().map(AsRawFd::as_raw_fd)
    }

    /// Consumes the call eventfds' counts; returns whether the backend used buffers since.
    pub fn take_used(&mut self) -> bool {
        let mut any = false;
        for fd in &self.calls {
            any |= crate::sys::eventfd_take(fd.as_raw_fd()) != 0;
        }
        any
    }

    /// Returns the first failure, if the device stopped talking to its backend daemon.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Makes a new connection for a restarted device. A stopped ring keeps its backend's used
    /// index in vhost-user (SET_VRING_BASE sets only the next available index), while a reset
    /// driver starts its used ring at 0: a new session starts both at 0. The backend daemon
    /// listens again once the old connection is gone, so the connect is retried for a while.
    fn reconnect(&mut self) -> io::Result<()> {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        let deadline = std::time::Instant::now() + RECONNECT_FOR;
        let socket = loop {
            match connect(&self.path) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        self.new_session(socket)
    }

    /// Starts a session on a new connection: the handshake, which must find the offer of
    /// start-up, and new kick and call eventfds (the last session's daemon, if it still runs,
    /// may hold the old ones). On any failure what the driver sees stays as it was.
    fn new_session(&mut self, socket: UnixStream) -> io::Result<()> {
        let (backend_features, config) = (self.backend_features, self.config.clone());
        self.socket = socket;
        self.protocol_features = 0;
        let checked = self.handshake().and_then(|()| {
            let now = self.offer();
            if now != self.offered {
                return Err(io::Error::other(format!(
                    "the daemon now offers {now:02x?}, was {:02x?}",
                    self.offered
                )));
            }
            eventfds(self.kind)
        });
        match checked {
            Ok((kicks, calls)) => {
                self.kicks = kicks;
                self.calls = calls;
                self.started.iter_mut().for_each(|s| *s = false);
                Ok(())
            }
            Err(e) => {
                self.backend_features = backend_features;
                self.config = config;
                Err(e)
            }
        }
    }

    /// Returns what the driver sees of the backend daemon now.
    fn offer(&self) -> Offer {
        Offer {
            features: self.features(),
            indirect: self.offers_indirect(),
            config: self.config.clone(),
        }
    }

    fn start(&mut self, queues: &[Queue]) -> io::Result<()> {
        if std::mem::replace(&mut self.used_connection, true) {
            self.reconnect()?;
        }
        let features = self.driver_features | (self.backend_features & F_PROTOCOL_FEATURES);
        self.send(req::SET_FEATURES, &features.to_le_bytes(), &[])?;
        let mut table = Vec::with_capacity(8 + 32 * self.regions.len());
        table.extend_from_slice(&u32::try_from(self.regions.len()).unwrap_or(0).to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        for r in &self.regions {
            // The "user address" of a bank is its guest-physical address: ring addresses are
            // then sent as they are (SET_VRING_ADDR takes user addresses).
            for v in [r.gpa, r.size, r.gpa, r.offset] {
                table.extend_from_slice(&v.to_le_bytes());
            }
        }
        let fds = vec![self.memory_fd.as_raw_fd(); self.regions.len()];
        self.send(req::SET_MEM_TABLE, &table, &fds)?;
        for (i, q) in queues.iter().enumerate().take(self.kind.num_queues()) {
            if q.is_ready() {
                self.check_ring(i, q)?;
            }
        }
        for (i, q) in queues.iter().enumerate().take(self.kind.num_queues()) {
            if !q.is_ready() {
                continue;
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            self.send(req::SET_VRING_NUM, &state(index, u32::from(q.size())), &[])?;
            let mut addr = Vec::with_capacity(40);
            addr.extend_from_slice(&index.to_le_bytes());
            addr.extend_from_slice(&0u32.to_le_bytes()); // flags: no logging
            for part in [QueuePart::Descriptors, QueuePart::Device, QueuePart::Driver] {
                addr.extend_from_slice(&q.address(part).0.to_le_bytes());
            }
            addr.extend_from_slice(&0u64.to_le_bytes()); // log address
            self.send(req::SET_VRING_ADDR, &addr, &[])?;
            self.send(req::SET_VRING_BASE, &state(index, 0), &[])?;
            let call = self.calls[i].as_raw_fd();
            self.send(
                req::SET_VRING_CALL,
                &u64::from(index).to_le_bytes(),
                &[call],
            )?;
            if self.backend_features & F_PROTOCOL_FEATURES != 0 {
                // With protocol features, rings start disabled. Enabled before the kick fd is
                // given: the backend starts polling the kick fd as SET_VRING_KICK arrives, and a
                // kick it reads while the ring is still disabled is consumed and dropped (the
                // messages are not acknowledged, so nothing else orders the two).
                self.send(req::SET_VRING_ENABLE, &state(index, 1), &[])?;
            }
            let kick = self.kicks[i].as_raw_fd();
            self.send(
                req::SET_VRING_KICK,
                &u64::from(index).to_le_bytes(),
                &[kick],
            )?;
            self.started[i] = true;
        }
        // A barrier: the backend handles messages in order and answers this one after the
        // others. Without it the driver's first kick (it may come as soon as DRIVER_OK is
        // answered) can reach vhost-user-backend between its registering the kick fd and marking
        // the queue ready: the kick is then consumed with nothing done, and the driver waits
        // forever (seen with vhost-device-rng 0.1.0, under load).
        self.get_u64(req::GET_FEATURES)?;
        let sizes: Vec<String> = queues
            .iter()
            .zip(&self.started)
            .filter(|(_, started)| **started)
            .map(|(q, _)| q.size().to_string())
            .collect();
        self.say(&format!(
            "memory table of {} bank(s) and {} queue(s) of size {} handed over",
            self.regions.len(),
            sizes.len(),
            sizes.join("/")
        ));
        Ok(())
    }

    /// Refuses a ring outside the frontend's RAM before the vhost-user daemon sees it (it
    /// would fail the whole connection).
    fn check_ring(&self, index: usize, q: &Queue) -> io::Result<()> {
        let n = u64::from(q.size());
        for (part, len) in [
            (QueuePart::Descriptors, 16 * n),
            (QueuePart::Driver, 6 + 2 * n),
            (QueuePart::Device, 6 + 8 * n),
        ] {
            let start = q.address(part).0;
            let inside = self.regions.iter().any(|r| {
                start >= r.gpa
                    && start
                        .checked_add(len)
                        .is_some_and(|end| end <= r.gpa.saturating_add(r.size))
            });
            if !inside {
                return Err(io::Error::other(format!(
                    "queue {index}: its {part:?} ring at {start:#x} (+{len:#x}) is outside the frontend's RAM"
                )));
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> io::Result<()> {
        for i in 0..self.started.len() {
            if std::mem::take(&mut self.started[i]) {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                // Stops the ring; the answer (the next available index) is not needed: a
                // restart begins from a reset ring.
                self.send(req::GET_VRING_BASE, &state(index, 0), &[])?;
                self.reply(req::GET_VRING_BASE)?;
            }
        }
        Ok(())
    }

    /// Marks the device broken (once per connection) and drops the connection: a backend
    /// daemon still running listens again for the reconnect a reset makes.
    fn fail(&mut self, what: &str, e: impl std::fmt::Display) {
        self.started.iter_mut().for_each(|s| *s = false);
        if self.broken.is_none() {
            let why = format!("{what}: {e}");
            self.say(&format!("{why}; the device needs a reset"));
            self.broken = Some(format!("vhost-user backend at {}: {why}", self.path));
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Prints one of the bridge's lines through its rate limit.
    fn say(&mut self, line: &str) {
        let (show, dropped) = self.limit.allow(std::time::Instant::now());
        if let Some(n) = dropped {
            println!(
                "{PREFIX}: vhost-user {}: {n} more lines not shown",
                self.path
            );
        }
        if show {
            println!("{PREFIX}: vhost-user {}: {line}", self.path);
        }
    }

    /// Returns the socket to the backend daemon while the connection is in use, to wait on
    /// with the call eventfds: it becomes readable when the daemon exits.
    pub fn connection_fd(&self) -> Option<RawFd> {
        self.broken.is_none().then(|| self.socket.as_raw_fd())
    }

    /// Looks whether the backend daemon is still there (without waiting): a daemon that exited
    /// closed its end of the socket; one that sends a message nobody asked for broke the
    /// protocol (back-end requests would come on a channel this front-end never sets up).
    /// Returns whether the device broke now.
    pub fn check_connection(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
        match crate::sys::peek_quiet(self.socket.as_raw_fd()) {
            Ok(Quiet::Yes) => return false,
            Ok(Quiet::Closed) => self.fail("connection", "closed by the daemon (did it exit?)"),
            Ok(Quiet::Sent) => self.fail("connection", "a message nobody asked for"),
            Err(e) => self.fail("connection", e),
        }
        true
    }

    /// A reset of a broken device: one new connection, at most one try per [`RECONNECT_FOR`]
    /// (a driver that resets in a loop does not get the daemon's one thread, which serves
    /// every device, talking to a hung vhost-user daemon for a second each time). The daemon
    /// must offer what the driver was offered at start-up.
    fn recover(&mut self) {
        let now = std::time::Instant::now();
        if self
            .last_recovery
            .is_some_and(|t| now.duration_since(t) < RECONNECT_FOR)
        {
            self.say("still broken: the last reconnect was less than 1 s ago");
            return;
        }
        self.last_recovery = Some(now);
        match connect(&self.path).and_then(|socket| self.new_session(socket)) {
            Ok(()) => {
                self.used_connection = false;
                self.broken = None;
                self.say("reconnected after the driver's reset");
            }
            Err(e) => {
                let _ = self.socket.shutdown(std::net::Shutdown::Both);
                self.say(&format!("still broken after the driver's reset: {e}"));
            }
        }
    }

    fn get_u64(&mut self, request: u32) -> io::Result<u64> {
        self.send(request, &[], &[])?;
        let reply = self.reply(request)?;
        let bytes: [u8; 8] = reply.as_slice().try_into().map_err(|_| {
            io::Error::other(format!(
                "request {request} answered {} bytes, want 8",
                reply.len()
            ))
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn send(&mut self, request: u32, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let size = u32::try_from(payload.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut msg = Vec::with_capacity(12 + payload.len());
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&FLAG_VERSION.to_le_bytes());
        msg.extend_from_slice(&size.to_le_bytes());
        msg.extend_from_slice(payload);
        if fds.is_empty() {
            return self.socket.write_all(&msg);
        }
        crate::sys::send_with_fds(self.socket.as_raw_fd(), &msg, fds)
    }

    fn reply(&mut self, request: u32) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 12];
        self.socket.read_exact(&mut header)?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (got, flags, size) = (word(0), word(4), word(8));
        if got != request || flags & FLAG_REPLY == 0 || size > MAX_REPLY {
            return Err(io::Error::other(format!(
                "reply to request {request}: request {got}, flags {flags:#x}, {size} bytes"
            )));
        }
        let mut payload = vec![0u8; size as usize];
        self.socket.read_exact(&mut payload)?;
        Ok(payload)
    }
}

/// Connects to a vhost-user socket whose connect, reads and writes give up after [`IO_TIMEOUT`]:
/// the daemon serves every device on one thread, and a hung vhost-user daemon must not stall
/// the others (it makes its device broken instead).
fn connect(path: &str) -> io::Result<UnixStream> {
    // The timeouts are set before connecting: a hung daemon's full listen queue would block
    // the connect itself for as long as the send timeout allows.
    crate::sys::connect_unix(path, IO_TIMEOUT)
}

/// New kick and call eventfds, one each per queue of `kind`.
fn eventfds(kind: Kind) -> io::Result<(Vec<OwnedFd>, Vec<OwnedFd>)> {
    let mut kicks = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..kind.num_queues() {
        kicks.push(crate::sys::eventfd()?);
        calls.push(crate::sys::eventfd()?);
    }
    Ok((kicks, calls))
}

/// A vring state message: a queue index and a number.
fn state(index: u32, num: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&index.to_le_bytes());
    b[4..].copy_from_slice(&num.to_le_bytes());
    b
}

impl VirtioDevice for VhostUser {
    fn device_id(&self) -> u32 {
        self.kind.device_id()
    }

    fn features(&self) -> u64 {
        // The transport adds VERSION_1 and INDIRECT_DESC itself (the caller turns indirect
        // descriptors off when the backend lacks them: `offers_indirect`).
        self.backend_features & PASSED_FEATURES & !(1 << 28)
    }

    fn num_queues(&self) -> usize {
        self.kind.num_queues()
    }

    fn queue_max_size(&self, _: usize) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        self.config.len()
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        if let Some(src) = self.config.get(offset..offset + data.len()) {
            data.copy_from_slice(src);
        }
    }

    fn activate(&mut self, features: u64) {
        self.driver_features = features;
    }

    fn driver_ok(&mut self, queues: &[Queue]) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = self.start(queues) {
            self.fail("handing the queues over", e);
        }
    }

    fn reset(&mut self) {
        if self.broken.is_some() {
            self.recover();
            return;
        }
        if let Err(e) = self.stop() {
            self.fail("stopping the queues", e);
        }
    }

    fn process_queue(
        &mut self,
        index: u16,
        _: &mut Queue,
        _: &dyn GuestMemory,
        _: &mut dyn Logger,
    ) -> Result<(), QueueError> {
        let i = usize::from(index);
        if self.started.get(i) == Some(&true) {
            if let Err(e) = crate::sys::eventfd_signal(self.kicks[i].as_raw_fd()) {
                self.fail("kick", e);
            }
        }
        Ok(())
    }
}

impl VhostUser {
    /// Whether the backend daemon takes indirect descriptors (the transport offers them then).
    pub fn offers_indirect(&self) -> bool {
        self.backend_features & (1 << 28) != 0
    }
}
