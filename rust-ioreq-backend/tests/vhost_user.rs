//! Host tests of the vhost-user bridge against a real, unmodified vhost-user backend daemon:
//! rust-vmm's vhost-device-rng built for the host by `tools/vhost-user-daemons.sh --host` (which
//! `make host-test`, part of `make test`, runs first) into build/vhost-user-host/bin, or the
//! binary VHOST_DEVICE_RNG names. The frontend's RAM is a memfd both sides map, as
//! /dev/rust-ioreq-be is on a board.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rust_ioreq_backend::devices::Model;
use rust_ioreq_backend::ioreq::{reg, RecordingDoorbell};
use rust_ioreq_backend::layout::Layout;
use rust_ioreq_backend::server::{Mapped, Server};
use rust_ioreq_backend::shared::SharedRegion;
use rust_ioreq_backend::vhost::{Kind, MemoryRegion, VhostUser};
use rust_ioreq_backend::window::{Bank, Window};
use virtio_device::memory::Gpa;
use virtio_device::queue::{Queue, QueuePart};
use virtio_device::{GuestMemory, Logger, VirtioDevice};

mod common;

use common::{access, doorbell, AVAIL, BUF, DESC, QSIZE, RAM_GPA, RAM_SIZE, USED};
const VERSION_1: u64 = 1 << 32;
const EVENT_IDX: u64 = 1 << 29;

/// The daemon, killed when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts vhost-device-rng on a fresh socket; returns it and the socket's path.
fn start_rng(name: &str) -> (Daemon, String) {
    let bin = std::env::var("VHOST_DEVICE_RNG").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../build/vhost-user-host/bin/vhost-device-rng"
        )
        .to_string()
    });
    assert!(
        std::path::Path::new(&bin).exists(),
        "no {bin}: build it with tools/vhost-user-daemons.sh --host (make host-test does)"
    );
    let base =
        std::env::temp_dir().join(format!("rust-ioreq-vu-{}-{name}.sock", std::process::id()));
    let base = base.to_str().unwrap().to_string();
    let socket = format!("{base}0");
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(&bin)
        .args(["--socket-path", &base, "--socket-count", "1"])
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let daemon = Daemon(child);
    let start = Instant::now();
    while !listening(&socket) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no socket {socket} listening"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (daemon, socket)
}

/// Whether a socket listens at `path` (/proc/net/unix: flags __SO_ACCEPTCON). The file exists
/// from the daemon's bind(), before its listen(): a connect then would be refused.
fn listening(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[3] == "00010000" && f[7] == path
        })
    })
}

/// The frontend's RAM: a memfd of RAM_SIZE bytes, mapped here; returns the mapping and the fd.
fn ram() -> (SharedRegion, OwnedFd) {
    // SAFETY: plain arguments; the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"rust-ioreq-vu-ram".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd.try_clone().unwrap());
    file.set_len(RAM_SIZE as u64).unwrap();
    // SAFETY: a new shared mapping of the memfd chosen by the kernel; affects no other memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            RAM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: `[p, p + RAM_SIZE)` was just mapped read-write and is never unmapped (the test
    // process ends first).
    (unsafe { SharedRegion::from_raw(p.cast(), RAM_SIZE) }, fd)
}

/// The memory table's one region: the test RAM bank, at offset 0 of the memfd.
fn ram_region() -> MemoryRegion {
    MemoryRegion {
        gpa: RAM_GPA,
        size: RAM_SIZE as u64,
        offset: 0,
    }
}

fn ready_queue() -> Queue {
    let mut q = Queue::new(QSIZE);
    q.set_size(QSIZE);
    for (part, gpa) in [
        (QueuePart::Descriptors, DESC),
        (QueuePart::Driver, AVAIL),
        (QueuePart::Device, USED),
    ] {
        q.set_address_half(part, false, gpa as u32);
        q.set_address_half(part, true, (gpa >> 32) as u32);
    }
    q.enable().unwrap();
    q
}

/// Offers chain `head`: one writable buffer of `len` bytes at `buf`, as available entry `slot`.
fn offer(mem: &Window, head: u16, buf: u64, len: u32, slot: u16) {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&buf.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&2u16.to_le_bytes()); // VIRTQ_DESC_F_WRITE
    mem.write(Gpa(DESC + 16 * u64::from(head)), &d).unwrap();
    mem.write(
        Gpa(AVAIL + 4 + 2 * u64::from(slot % QSIZE)),
        &head.to_le_bytes(),
    )
    .unwrap();
    mem.write(Gpa(AVAIL + 2), &(slot + 1).to_le_bytes())
        .unwrap();
}

fn read_u16(mem: &Window, gpa: u64) -> u16 {
    let mut b = [0u8; 2];
    mem.read(Gpa(gpa), &mut b).unwrap();
    u16::from_le_bytes(b)
}

fn read_u32(mem: &Window, gpa: u64) -> u32 {
    let mut b = [0u8; 4];
    mem.read(Gpa(gpa), &mut b).unwrap();
    u32::from_le_bytes(b)
}

struct NoLog;
impl Logger for NoLog {
    fn log(&mut self, _: virtio_device::Event) {}
}

/// Kicks queue 0 and waits for the call eventfd; returns whether it came within 5 s.
fn kick_and_wait(dev: &mut VhostUser, queue: &mut Queue, mem: &dyn GuestMemory) -> bool {
    dev.process_queue(0, queue, mem, &mut NoLog).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if dev.take_used() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn vhost_device_rng_fills_the_frontends_buffers_through_the_bridge() {
    let (_daemon, socket) = start_rng("fill");
    let (ram, fd) = ram();
    let mut dev = VhostUser::connect(Kind::Rng, &socket, fd, vec![ram_region()]).unwrap();
    assert_eq!(dev.device_id(), 4);
    assert_eq!(dev.num_queues(), 1);
    assert!(dev.describe().contains("virtio-rng through vhost-user"));
    assert!(dev.offers_indirect());
    // The transport offers VERSION_1 and INDIRECT_DESC itself; the protocol-features bit (30)
    // and the legacy NOTIFY_ON_EMPTY (24) never reach the driver.
    assert_eq!(dev.features() & (1 << 30 | 1 << 24 | 1 << 28), 0);
    // Linux accepts the event index: used_event (after the available ring) stays 0 here, so
    // the first used buffer is signalled and later ones are not asked for.
    dev.activate(VERSION_1 | EVENT_IDX);
    let mut queue = ready_queue();
    dev.driver_ok(std::slice::from_ref(&queue));
    assert!(dev.broken().is_none());

    let mem = Window::new(vec![Bank {
        gpa: RAM_GPA,
        region: ram,
    }]);
    offer(&mem, 0, BUF, 64, 0);
    assert!(
        kick_and_wait(&mut dev, &mut queue, &mem),
        "no call after the kick"
    );
    assert_eq!(read_u16(&mem, USED + 2), 1, "used.idx");
    assert_eq!(read_u32(&mem, USED + 4), 0, "used.ring[0].id");
    assert_eq!(read_u32(&mem, USED + 8), 64, "used.ring[0].len");
    let mut first = [0u8; 64];
    mem.read(Gpa(BUF), &mut first).unwrap();
    assert!(first.iter().any(|&b| b != 0), "random bytes, not zeros");

    // A second request gets other bytes.
    offer(&mem, 1, BUF + 0x100, 64, 1);
    assert!(kick_and_wait(&mut dev, &mut queue, &mem));
    assert_eq!(read_u16(&mem, USED + 2), 2);
    let mut second = [0u8; 64];
    mem.read(Gpa(BUF + 0x100), &mut second).unwrap();
    assert_ne!(first, second);

    // A reset stops the ring (GET_VRING_BASE is answered); a new start serves again.
    dev.reset();
    assert!(dev.broken().is_none(), "{:?}", dev.broken());
    mem.write(Gpa(AVAIL), &[0; 16]).unwrap();
    mem.write(Gpa(USED), &[0; 16]).unwrap();
    let mut queue = ready_queue();
    dev.activate(VERSION_1);
    dev.driver_ok(std::slice::from_ref(&queue));
    offer(&mem, 0, BUF + 0x200, 32, 0);
    assert!(
        kick_and_wait(&mut dev, &mut queue, &mem),
        "no call after the restart"
    );
    assert_eq!(read_u32(&mem, USED + 8), 32);
}

#[test]
fn a_ring_outside_the_frontends_ram_is_refused_before_the_daemon_sees_it() {
    let (_daemon, socket) = start_rng("ring");
    let (_, fd) = ram();
    let mut dev = VhostUser::connect(Kind::Rng, &socket, fd, vec![ram_region()]).unwrap();
    dev.activate(VERSION_1);
    let mut q = Queue::new(QSIZE);
    q.set_size(QSIZE);
    // The used ring's last bytes past the end of RAM.
    let used = RAM_GPA + RAM_SIZE as u64 - 16;
    q.set_address_half(QueuePart::Descriptors, false, DESC as u32);
    q.set_address_half(QueuePart::Driver, false, AVAIL as u32);
    q.set_address_half(QueuePart::Device, false, used as u32);
    q.enable().unwrap();
    dev.driver_ok(std::slice::from_ref(&q));
    let why = dev.broken().expect("refused");
    assert!(
        why.contains(
            "queue 0: its Device ring at 0x400ffff0 (+0x46) is outside the frontend's RAM"
        ),
        "{why}"
    );
}

#[test]
fn a_socket_nobody_listens_on_is_a_clear_error() {
    let (_, fd) = ram();
    let e =
        VhostUser::connect(Kind::Rng, "/nonexistent/vu.sock", fd, vec![ram_region()]).unwrap_err();
    assert!(
        e.starts_with("cannot connect to the vhost-user socket /nonexistent/vu.sock: "),
        "{e}"
    );
}

/// Frontend 0's one virtio-rng, classic (every register a round trip: the test reads
/// `Status` and `InterruptStatus` from the daemon), served through the bridge.
const RESTART_LAYOUT: &str = "abi version=2 features=0x0 irq=13
region doorbell frontend=-1 phys=0x3e000000 size=0x1000 gpa=0x0 type=device
region ioreq frontend=0 phys=0x3e001000 size=0x1000 gpa=0x0 type=wb
region ram frontend=0 phys=0x0 size=0x100000 gpa=0x40000000 type=wb
frontend 0 vcpus=1 ioreq=0x3e001000 window=0x1000000000 window-size=0x1000000000 name=domU1
device 0 frontend=0 mmio=0x2000000 size=0x200 classic=1 args=virtio-rng
";
const MMIO: u64 = 0x200_0000;
const NEEDS_RESET: u64 = 0x40;

/// Resets the device and brings queue 0 up again on fresh rings, as a driver's probe does.
fn reset_and_bring_up(
    s: &mut Server<'_>,
    db: &RecordingDoorbell,
    ioreq: SharedRegion,
    mem: &Window,
) {
    let db_writes = |s: &mut Server<'_>, off: u64, v: u32| {
        access_w(s, db, ioreq, off, Some(v));
    };
    db_writes(s, 0x070, 0);
    mem.write(Gpa(AVAIL), &[0; 16]).unwrap();
    mem.write(Gpa(USED), &[0; 16]).unwrap();
    db_writes(s, 0x070, 1 | 2);
    db_writes(s, 0x024, 1);
    db_writes(s, 0x020, 1); // VERSION_1
    db_writes(s, 0x070, 1 | 2 | 8);
    db_writes(s, 0x030, 0);
    db_writes(s, 0x038, u32::from(QSIZE));
    for (off, gpa) in [(0x080, DESC), (0x090, AVAIL), (0x0a0, USED)] {
        db_writes(s, off, gpa as u32);
        db_writes(s, off + 4, (gpa >> 32) as u32);
    }
    db_writes(s, 0x044, 1);
    db_writes(s, 0x070, 1 | 2 | 8 | 4);
}

/// One 32-bit register access of vCPU 0 (Xen's side: `common::access`).
fn access_w(
    s: &mut Server<'_>,
    db: &RecordingDoorbell,
    ioreq: SharedRegion,
    off: u64,
    write: Option<u32>,
) -> u64 {
    access(s, ioreq, db, 0, MMIO + off, 4, write.map(u64::from))
}

/// Looks at the vhost-user events until a RAISE_IRQ comes (5 s at most); returns whether it did.
fn irq_within_5s(s: &mut Server<'_>, db: &RecordingDoorbell) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        s.handle_vhost_user_events();
        if db.take().iter().any(|w| w.0 == reg::RAISE_IRQ) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn bridge<'s>(s: &'s Server<'_>) -> &'s VhostUser {
    match s.devices[0].transport.device() {
        Model::VhostUser(v) => v,
        _ => unreachable!("device 0 is bridged"),
    }
}

/// A vhost-user daemon that exits is noticed without a request (its socket is waited on): the
/// device gets DEVICE_NEEDS_RESET and the configuration-change interrupt, as virtio says for a
/// device that needs a reset; a driver reset with no daemon listening leaves it broken (and
/// says so again), and once the daemon runs again, the driver's reset reconnects and the
/// device serves. Before this change the device stayed silent: no DEVICE_NEEDS_RESET, no
/// interrupt, and no reconnect (fails on 41d536e, which has no `handle_vhost_user_events`).
#[test]
fn a_daemon_that_exits_makes_the_device_need_a_reset_and_a_restarted_one_serves_again() {
    let (daemon, socket) = start_rng("restart");
    let (ram, fd) = ram();
    let dev = VhostUser::connect(Kind::Rng, &socket, fd, vec![ram_region()]).unwrap();
    let layout = Layout::parse(RESTART_LAYOUT).unwrap();
    let ioreq = SharedRegion::alloc(0x1000);
    let mapped = Mapped {
        ioreq: vec![(0, ioreq)],
        banks: vec![(
            0,
            Bank {
                gpa: RAM_GPA,
                region: ram,
            },
        )],
        fast: None,
    };
    let mem = Window::new(vec![Bank {
        gpa: RAM_GPA,
        region: ram,
    }]);
    let mut console = Vec::new();
    let db = doorbell();
    let mut s = Server::new(
        &layout,
        mapped,
        vec![Model::VhostUser(dev)],
        &db,
        &mut console,
        None,
    );

    reset_and_bring_up(&mut s, &db, ioreq, &mem);
    assert!(bridge(&s).broken().is_none(), "{:?}", bridge(&s).broken());
    let sock = bridge(&s)
        .connection_fd()
        .expect("the connection is waited on");
    assert!(s.vhost_user_fds().contains(&sock));
    offer(&mem, 0, BUF, 64, 0);
    access_w(&mut s, &db, ioreq, 0x050, Some(0));
    assert!(
        irq_within_5s(&mut s, &db),
        "no interrupt for the used buffer"
    );
    assert_eq!(read_u16(&mem, USED + 2), 1);
    assert_eq!(
        access_w(&mut s, &db, ioreq, 0x060, None),
        1,
        "InterruptStatus: used buffer"
    );
    access_w(&mut s, &db, ioreq, 0x064, Some(1));

    // The daemon exits: what the daemon's loop waits on becomes readable (no request is
    // needed to wake it), and the next look finds the socket closed.
    drop(daemon);
    let mut pfds: Vec<libc::pollfd> = s
        .vhost_user_fds()
        .into_iter()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` holds valid pollfds and outlives the call.
    let ready = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 5000) };
    assert!(ready > 0, "the wait would not wake: {ready}");
    assert!(
        irq_within_5s(&mut s, &db),
        "no configuration-change interrupt"
    );
    let why = bridge(&s).broken().expect("broken").to_string();
    assert!(why.contains("closed by the daemon"), "{why}");
    assert!(
        !s.vhost_user_fds().contains(&sock),
        "a closed socket would wake every wait"
    );
    assert_eq!(
        access_w(&mut s, &db, ioreq, 0x070, None) & NEEDS_RESET,
        NEEDS_RESET
    );
    assert_eq!(
        access_w(&mut s, &db, ioreq, 0x060, None),
        2,
        "InterruptStatus: config change"
    );

    // A reset with nobody listening: still broken, and the new DRIVER_OK needs a reset again,
    // already when the driver reads Status right after it (no look at the events between: the
    // bit is set before the DRIVER_OK write completes).
    reset_and_bring_up(&mut s, &db, ioreq, &mem);
    assert!(bridge(&s).broken().is_some());
    assert_eq!(
        access_w(&mut s, &db, ioreq, 0x070, None) & NEEDS_RESET,
        NEEDS_RESET
    );
    assert!(irq_within_5s(&mut s, &db));

    // The daemon runs again. A reset less than a second after the last try does not try
    // again (a driver resetting in a loop cannot keep the daemon's thread reconnecting); the
    // next one reconnects and the device serves.
    let (_daemon, again) = start_rng("restart");
    assert_eq!(again, socket);
    reset_and_bring_up(&mut s, &db, ioreq, &mem);
    assert!(bridge(&s).broken().is_some(), "tried again within 1 s");
    assert!(
        irq_within_5s(&mut s, &db),
        "DEVICE_NEEDS_RESET at DRIVER_OK again"
    );
    std::thread::sleep(Duration::from_millis(1100));
    reset_and_bring_up(&mut s, &db, ioreq, &mem);
    assert!(bridge(&s).broken().is_none(), "{:?}", bridge(&s).broken());
    assert_eq!(
        access_w(&mut s, &db, ioreq, 0x070, None),
        0xf,
        "DRIVER_OK, no NEEDS_RESET"
    );
    offer(&mem, 0, BUF + 0x100, 64, 0);
    access_w(&mut s, &db, ioreq, 0x050, Some(0));
    assert!(irq_within_5s(&mut s, &db), "no interrupt after the restart");
    assert_eq!(read_u16(&mem, USED + 2), 1);
    assert_eq!(read_u32(&mem, USED + 8), 64);
}

/// A scripted vhost-user daemon: answers SET_OWNER and GET_FEATURES with `features`, then runs
/// `after` on the connection.
fn fake_session(stream: &mut std::os::unix::net::UnixStream, features: u64) {
    use std::io::{Read, Write};
    for expected in [3u32, 1] {
        let mut header = [0u8; 12];
        stream.read_exact(&mut header).unwrap();
        let request = u32::from_le_bytes(header[..4].try_into().unwrap());
        assert_eq!(request, expected, "SET_OWNER then GET_FEATURES");
        if request == 1 {
            let mut reply = Vec::new();
            reply.extend_from_slice(&1u32.to_le_bytes());
            reply.extend_from_slice(&0x5u32.to_le_bytes());
            reply.extend_from_slice(&8u32.to_le_bytes());
            reply.extend_from_slice(&features.to_le_bytes());
            stream.write_all(&reply).unwrap();
        }
    }
}

/// A daemon that sends a message nobody asked for breaks the protocol: the device breaks at
/// the next look. A reconnect must find what the driver was offered: a daemon that now offers
/// a feature bit the driver sees stays refused; one that differs only in a bit the driver
/// never sees (NOTIFY_ON_EMPTY) is taken, once a second has passed since the last try.
#[test]
fn an_unrequested_message_breaks_the_device_and_a_reconnect_must_offer_the_same() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("rust-ioreq-vu-fake-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let path = dir.to_str().unwrap().to_string();
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let daemon = std::thread::spawn(move || {
        let (mut first, _) = listener.accept().unwrap();
        fake_session(&mut first, VERSION_1);
        // Unasked: a GET_FEATURES "reply".
        let mut msg = Vec::new();
        for w in [1u32, 0x5, 8, 0, 0] {
            msg.extend_from_slice(&w.to_le_bytes());
        }
        first.write_all(&msg).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        fake_session(&mut second, VERSION_1 | 1 << 5);
        let (mut third, _) = listener.accept().unwrap();
        fake_session(&mut third, VERSION_1 | 1 << 24);
        // Keep the last connection open until the test is done with it.
        let mut end = [0u8; 1];
        let _ = std::io::Read::read(&mut third, &mut end);
    });
    let (_, fd) = ram();
    let mut dev = VhostUser::connect(Kind::Rng, &path, fd, vec![ram_region()]).unwrap();
    let start = Instant::now();
    while !dev.check_connection() {
        assert!(start.elapsed() < Duration::from_secs(5), "not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let why = dev.broken().unwrap().to_string();
    assert!(why.contains("a message nobody asked for"), "{why}");
    assert!(dev.connection_fd().is_none());

    dev.reset();
    let why = dev
        .broken()
        .expect("a new feature bit is refused")
        .to_string();
    assert_eq!(dev.features() & (1 << 5), 0, "the driver's offer is kept");
    std::thread::sleep(Duration::from_millis(1100));
    dev.reset();
    assert!(dev.broken().is_none(), "after {why}: {:?}", dev.broken());
    assert!(dev.connection_fd().is_some());
    drop(dev);
    daemon.join().unwrap();
    let _ = std::fs::remove_file(&path);
}
