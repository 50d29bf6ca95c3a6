//! Host tests of the daemon's serving logic against in-memory pages: this file plays Xen (posts
//! `ioreq_t`s into the ioreq page, counts notifies in the notify page, reads the doorbell
//! writes) and the frontend's driver (builds virtqueues in its RAM bank), and checks what the
//! daemon answers: registers, disk contents, used rings, COMPLETE and RAISE_IRQ, the read-only
//! disk left untouched, bad requests answered without a write outside the request's buffers,
//! and incident lines rate-limited.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use rust_ioreq_backend::devices::{self, DiskArg, EntropyDebug};
use rust_ioreq_backend::fast::{NotifyPage, TransportPage};
use rust_ioreq_backend::ioreq::{reg, RecordingDoorbell};
use rust_ioreq_backend::layout::Layout;
use rust_ioreq_backend::server::{FastPages, Mapped, Server, LINES_PER_PERIOD};
use rust_ioreq_backend::shared::SharedRegion;
use rust_ioreq_backend::window::Bank;
use virtio_device::SplitMix64;

mod common;

use common::{access, doorbell, AVAIL, BUF, DESC, QSIZE, RAM_GPA, RAM_SIZE, USED};

/// Device 0: a classic disk; device 1: a fast disk; device 2: a read-only disk (classic);
/// device 3: a fast rng.
fn layout_text() -> String {
    format!(
        "abi version=2 features=0x1 irq=13
region doorbell frontend=-1 phys=0x3e000000 size=0x1000 gpa=0x0 type=device
region transport frontend=-1 phys=0x3e009000 size=0x1000 gpa=0x0 type=wb
region notify frontend=-1 phys=0x3e00a000 size=0x1000 gpa=0x0 type=wb
region ioreq frontend=0 phys=0x3e001000 size=0x1000 gpa=0x0 type=wb
region ram frontend=0 phys=0x1040000000 size={RAM_SIZE:#x} gpa={RAM_GPA:#x} type=wb
frontend 0 vcpus=2 ioreq=0x3e001000 window=0x1000000000 window-size=0x1000000000 name=domU1
device 0 frontend=0 mmio=0x2000000 size=0x200 classic=1 args=virtio-blk size=64K id=classic
device 1 frontend=0 mmio=0x2000200 size=0x200 classic=0 args=virtio-blk
device 2 frontend=0 mmio=0x2000400 size=0x200 classic=1 args=virtio-blk
device 3 frontend=0 mmio=0x2000600 size=0x200 classic=0 args=virtio-rng
"
    )
}

/// A disk image file of `len` bytes, each byte `i % 253`.
fn image(name: &str, len: usize) -> (String, Vec<u8>) {
    // Tests run in parallel: one file per call.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "rust-ioreq-backend-{}-{n}-{name}.img",
        std::process::id()
    ));
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    (path.to_str().unwrap().to_string(), data)
}

/// Deterministic entropy, so that tests can check the bytes.
/// The vhost-user connector of worlds with no --vhost-user device: never called.
fn no_vhost(
    d: &rust_ioreq_backend::layout::Device,
    _: rust_ioreq_backend::vhost::Kind,
    _: &str,
) -> Result<rust_ioreq_backend::vhost::VhostUser, String> {
    Err(format!("no vhost-user daemon for device {}", d.index))
}

fn entropy() -> Box<dyn EntropyDebug> {
    Box::new(SplitMix64::new(7))
}

impl Drop for World {
    fn drop(&mut self) {
        for (path, _) in &self.disks {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The pages and disks, as a test sees them.
struct World {
    layout: Layout,
    ioreq: SharedRegion,
    ram: SharedRegion,
    transport: SharedRegion,
    notify: SharedRegion,
    disks: Vec<(String, Vec<u8>)>,
}

impl World {
    fn new() -> Self {
        let disks = vec![
            image("classic", 64 << 10),
            image("fast", 32 << 10),
            image("ro", 32 << 10),
        ];
        Self {
            layout: Layout::parse(&layout_text()).unwrap(),
            ioreq: SharedRegion::alloc(0x1000),
            ram: SharedRegion::alloc(RAM_SIZE),
            transport: SharedRegion::alloc(0x1000),
            notify: SharedRegion::alloc(0x1000),
            disks,
        }
    }

    /// What the daemon maps of this world: frontend 0's ioreq page and RAM bank, and the
    /// version-2 pages when the test uses the fast transport.
    fn mapping(&self, fast: Option<FastPages>) -> Mapped {
        Mapped {
            ioreq: vec![(0, self.ioreq)],
            banks: vec![(
                0,
                Bank {
                    gpa: RAM_GPA,
                    region: self.ram,
                },
            )],
            fast,
        }
    }

    fn disk_args(&self) -> Vec<DiskArg> {
        self.disks
            .iter()
            .enumerate()
            .map(|(i, (path, _))| DiskArg {
                index: i as u32,
                path: path.clone(),
                read_only: i == 2,
            })
            .collect()
    }
}

fn put_desc(ram: SharedRegion, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let off = (DESC - RAM_GPA) as usize + 16 * usize::from(i);
    ram.write_u64(off, addr);
    ram.write_u32(off + 8, len);
    ram.write_u32(off + 12, u32::from(flags) | (u32::from(next) << 16));
}

/// Makes chain `head` available (the driver's side of §2.7.13) and returns the new avail idx.
fn offer(ram: SharedRegion, head: u16) -> u16 {
    let base = (AVAIL - RAM_GPA) as usize;
    let idx = (ram.read_u32(base).unwrap() >> 16) as u16;
    let slot = base + 4 + 2 * usize::from(idx % QSIZE);
    let word = ram.read_u32(slot & !3).unwrap();
    let shift = 8 * (slot & 3);
    let word = (word & !(0xffff << shift)) | (u32::from(head) << shift);
    ram.write_u32(slot & !3, word);
    let new = idx.wrapping_add(1);
    ram.write_u32(base, u32::from(new) << 16);
    new
}

fn used_idx(ram: SharedRegion) -> u16 {
    (ram.read_u32((USED - RAM_GPA) as usize).unwrap() >> 16) as u16
}

/// Brings device `base`'s queue 0 up by register accesses (those of a fast device that Xen
/// would answer itself are skipped).
fn bring_up(s: &mut Server<'_>, w: &World, db: &RecordingDoorbell, base: u64, features: u64) {
    let a = |s: &mut Server<'_>, off: u64, v: Option<u32>| {
        access(s, w.ioreq, db, 0, base + off, 4, v.map(u64::from)) as u32
    };
    a(s, 0x070, Some(0));
    a(s, 0x070, Some(1 | 2));
    a(s, 0x024, Some(0));
    a(s, 0x020, Some(features as u32));
    a(s, 0x024, Some(1));
    a(s, 0x020, Some((features >> 32) as u32));
    a(s, 0x070, Some(1 | 2 | 8));
    assert_eq!(a(s, 0x070, None) & 8, 8, "FEATURES_OK refused");
    a(s, 0x030, Some(0));
    a(s, 0x038, Some(u32::from(QSIZE)));
    for (off, gpa) in [(0x080, DESC), (0x090, AVAIL), (0x0a0, USED)] {
        a(s, off, Some(gpa as u32));
        a(s, off + 4, Some((gpa >> 32) as u32));
    }
    a(s, 0x044, Some(1));
    a(s, 0x070, Some(1 | 2 | 8 | 4));
}

/// A blk request: header at BUF, data at BUF + 0x100 (`len` bytes), status at BUF + 0x80.
fn blk_request(w: &World, kind: u32, sector: u64, len: u32, data_writable: bool) {
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&kind.to_le_bytes());
    hdr[8..].copy_from_slice(&sector.to_le_bytes());
    w.ram.write_bytes((BUF - RAM_GPA) as usize, &hdr);
    w.ram.write_u8((BUF - RAM_GPA) as usize + 0x80, 0xff);
    put_desc(w.ram, 0, BUF, 16, 1, 1);
    put_desc(
        w.ram,
        1,
        BUF + 0x100,
        len,
        1 | if data_writable { 2 } else { 0 },
        2,
    );
    put_desc(w.ram, 2, BUF + 0x80, 1, 2, 0);
}

fn status(w: &World) -> u8 {
    w.ram.read_u8((BUF - RAM_GPA) as usize + 0x80).unwrap()
}

const VERSION_1: u64 = 1 << 32;

#[test]
fn a_classic_disk_is_served_by_round_trips_into_its_file() {
    let w = World::new();
    let (ioreq, ram) = (w.ioreq, w.ram);
    let path = w.disks[0].0.clone();
    let original = w.disks[0].1.clone();
    let db = doorbell();
    let mut console = Vec::new();
    {
        let models =
            devices::build(&w.layout.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap();
        let mapped = w.mapping(None);
        let mut s = Server::new(&w.layout, mapped, models, &db, &mut console, None);
        assert!(!s.fast());
        assert_eq!(
            access(&mut s, ioreq, &db, 0, 0x200_0000, 4, None),
            0x7472_6976
        );
        assert_eq!(
            access(&mut s, ioreq, &db, 1, 0x200_0008, 4, None),
            2,
            "DeviceID"
        );
        // capacity, configuration space at 0x100: 128 sectors.
        assert_eq!(access(&mut s, ioreq, &db, 0, 0x200_0100, 4, None), 128);
        bring_up(&mut s, &w, &db, 0x200_0000, VERSION_1);
        // Write 1 KiB at sector 3, then read it back.
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 5 + 1) as u8).collect();
        blk_request(&w, 1, 3, 1024, false);
        ram.write_bytes((BUF - RAM_GPA) as usize + 0x100, &data);
        offer(ram, 0);
        db.take();
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        assert_eq!(status(&w), 0, "VIRTIO_BLK_S_OK");
        assert_eq!(used_idx(ram), 1);
        // A classic device's interrupt: the bare index.
        assert_eq!(db.take(), [(reg::RAISE_IRQ, 0)]);
        assert_eq!(
            access(&mut s, ioreq, &db, 0, 0x200_0060, 4, None),
            1,
            "InterruptStatus"
        );
        blk_request(&w, 0, 3, 1024, true);
        ram.write_bytes((BUF - RAM_GPA) as usize + 0x100, &[0; 1024]);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        let mut back = vec![0u8; 1024];
        ram.read_bytes((BUF - RAM_GPA) as usize + 0x100, &mut back);
        assert_eq!(back, data);
    }
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[3 * 512..5 * 512], &data_of(1024)[..]);
    assert_eq!(&file[..3 * 512], &original[..3 * 512]);
    assert_eq!(&file[5 * 512..], &original[5 * 512..]);
    assert!(
        console
            .iter()
            .any(|l| l.contains("dev0 virtio-blk: driver ready")),
        "{console:?}"
    );
}

fn data_of(n: u32) -> Vec<u8> {
    (0..n).map(|i| (i * 5 + 1) as u8).collect()
}

#[test]
fn a_fast_device_publishes_its_record_and_is_served_from_the_notify_count() {
    let w = World::new();
    let (ram, transport, notify) = (w.ram, w.transport, w.notify);
    // A count left by an earlier daemon: not a notify for this one.
    notify.write_u32(0x40, 5);
    let db = doorbell();
    let mut console = Vec::new();
    let models =
        devices::build(&w.layout.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap();
    let mapped = w.mapping(Some(FastPages {
        transport: TransportPage(transport),
        notify: NotifyPage(notify),
    }));
    let mut s = Server::new(&w.layout, mapped, models, &db, &mut console, None);
    assert!(s.fast());
    // Header version 2; records of devices 1 and 3 published, not of the classic 0 and 2.
    assert_eq!(transport.read_u32(0), Some(2));
    let rec = |i: usize, f: usize| transport.read_u32(0x40 + 0x40 * i + f).unwrap();
    assert_eq!((rec(1, 0), rec(1, 4), rec(1, 0xc)), (1, 2, 1), "blk record");
    assert_eq!((rec(3, 0), rec(3, 4)), (1, 4), "rng record");
    assert_eq!((rec(0, 0), rec(2, 0)), (0, 0));
    assert_eq!(rec(1, 0x1c), 1, "VERSION_1 in device_features[1]");
    // Xen answers MagicValue .. QueueNumMax of a fast device; the rest are round trips.
    bring_up(&mut s, &w, &db, 0x200_0600, VERSION_1);
    let out = (BUF - RAM_GPA) as usize + 0x100;
    put_desc(ram, 0, BUF + 0x100, 32, 2, 0);
    offer(ram, 0);
    db.take();
    // Xen counts the QueueNotify of device 3 queue 0.
    notify.write_u32(3 * 0x40, 1);
    s.serve_until_idle();
    assert_eq!(used_idx(ram), 1);
    let mut want = [0u8; 32];
    SplitMix64::new(7).fill(&mut want);
    let mut got = [0u8; 32];
    ram.read_bytes(out, &mut got);
    assert_eq!(got, want);
    // A fast device's interrupt carries its cause (used buffer, bit 16).
    assert_eq!(db.take(), [(reg::RAISE_IRQ, 3 | 1 << 16)]);
    // Going idle armed the wake-up.
    assert_eq!(transport.read_u32(4), Some(1));
    // Nothing new: nothing served.
    s.serve_until_idle();
    assert_eq!(used_idx(ram), 1);
    assert!(db.take().is_empty());
    assert!(console
        .iter()
        .any(|l| l.contains("dev3: first posted notify (queue 0, count 1)")));
}

#[test]
fn a_read_only_disk_fails_writes_and_its_file_is_never_written() {
    let w = World::new();
    let (ioreq, ram) = (w.ioreq, w.ram);
    let (path, original) = w.disks[2].clone();
    let db = doorbell();
    let mut console = Vec::new();
    {
        let models =
            devices::build(&w.layout.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap();
        let mapped = w.mapping(None);
        let mut s = Server::new(&w.layout, mapped, models, &db, &mut console, None);
        // VIRTIO_BLK_F_RO (bit 5) offered.
        access(&mut s, ioreq, &db, 0, 0x200_0414, 4, Some(0));
        assert_ne!(
            access(&mut s, ioreq, &db, 0, 0x200_0410, 4, None) & (1 << 5),
            0
        );
        bring_up(&mut s, &w, &db, 0x200_0400, VERSION_1 | (1 << 5));
        blk_request(&w, 1, 0, 512, false);
        ram.write_bytes((BUF - RAM_GPA) as usize + 0x100, &[0xee; 512]);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0450, 4, Some(0));
        assert_eq!(status(&w), 1, "VIRTIO_BLK_S_IOERR");
        // Reads still work.
        blk_request(&w, 0, 1, 512, true);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0450, 4, Some(0));
        assert_eq!(status(&w), 0);
        let mut back = vec![0u8; 512];
        ram.read_bytes((BUF - RAM_GPA) as usize + 0x100, &mut back);
        assert_eq!(back, original[512..1024]);
    }
    assert_eq!(std::fs::read(&path).unwrap(), original);
    assert!(
        console.iter().any(|l| l.contains("ReadOnly")),
        "{console:?}"
    );
}

#[test]
fn bad_requests_are_answered_without_writing_outside_their_buffers() {
    let w = World::new();
    let (ioreq, ram) = (w.ioreq, w.ram);
    let (path, original) = w.disks[0].clone();
    let db = doorbell();
    let mut console = Vec::new();
    {
        let models =
            devices::build(&w.layout.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap();
        let mapped = w.mapping(None);
        let mut s = Server::new(&w.layout, mapped, models, &db, &mut console, None);
        bring_up(&mut s, &w, &db, 0x200_0000, VERSION_1);
        // A read into a buffer that runs past the frontend's RAM: IOERR, nothing written past.
        let snapshot = |ram: SharedRegion| {
            let mut all = vec![0u8; RAM_SIZE];
            ram.read_bytes(0, &mut all);
            all
        };
        blk_request(&w, 0, 0, 1024, true);
        put_desc(ram, 1, RAM_GPA + RAM_SIZE as u64 - 512, 1024, 1 | 2, 2);
        offer(ram, 0);
        let before = snapshot(ram);
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        let after = snapshot(ram);
        assert_eq!(status(&w), 1, "IOERR");
        let changed: Vec<usize> = (0..RAM_SIZE).filter(|&i| before[i] != after[i]).collect();
        // Only the status byte and the used ring moved.
        let status_at = (BUF - RAM_GPA) as usize + 0x80;
        let used = (USED - RAM_GPA) as usize;
        assert!(
            changed
                .iter()
                .all(|&i| i == status_at || (used..used + 16).contains(&i)),
            "{changed:?}"
        );
        // A write whose data buffer is outside RAM: IOERR and the file is untouched.
        blk_request(&w, 1, 0, 512, false);
        put_desc(ram, 1, 0x1000, 512, 1, 2);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        assert_eq!(status(&w), 1);
        // A descriptor index past the queue: the device needs a reset (§2.1.2), no crash.
        put_desc(ram, 0, BUF, 16, 1, 200);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        assert_ne!(
            access(&mut s, ioreq, &db, 0, 0x200_0070, 4, None) & 64,
            0,
            "NEEDS_RESET"
        );
        // Requests outside every device and malformed ones: answered 0, rate-limited lines.
        for i in 0..100u64 {
            let v = access(&mut s, ioreq, &db, 1, 0x300_0000 + 4 * i, 4, None);
            assert_eq!(v, 0);
        }
        assert!(s.refused(0) >= 1);
    }
    assert_eq!(std::fs::read(&path).unwrap(), original);
    let strays = console
        .iter()
        .filter(|l| l.contains("no device at this address"))
        .count();
    assert_eq!(strays, LINES_PER_PERIOD as usize, "{console:?}");
}

#[test]
fn set_up_errors_name_the_device() {
    let w = World::new();
    let l = &w.layout.devices;
    let mut disks = w.disk_args();
    // A missing disk for a virtio-blk.
    let e = devices::build(l, &disks[..2], &[], &entropy, &no_vhost).unwrap_err();
    assert_eq!(
        e,
        "device 2 is a virtio-blk: name its disk with --disk 2=<path>[:ro]"
    );
    // A disk that cannot be opened.
    disks[2].path = "/nonexistent/disk.img".into();
    let e = devices::build(l, &disks, &[], &entropy, &no_vhost).unwrap_err();
    assert!(
        e.starts_with("device 2: cannot use disk /nonexistent/disk.img: "),
        "{e}"
    );
    // size= that is not the file's.
    let mut disks = w.disk_args();
    disks[0].path = w.disks[1].0.clone();
    let e = devices::build(l, &disks, &[], &entropy, &no_vhost).unwrap_err();
    assert!(e.contains("args say size=65536 bytes but disk"), "{e}");
    // --disk for an rng, or for no device.
    let mut disks = w.disk_args();
    disks.push(DiskArg {
        index: 3,
        path: "/x".into(),
        read_only: false,
    });
    let e = devices::build(l, &disks, &[], &entropy, &no_vhost).unwrap_err();
    assert!(e.contains("device 3 is not a virtio-blk"), "{e}");
    // Args this daemon does not know.
    let text = layout_text().replace("args=virtio-rng", "args=virtio-gpu");
    let l = Layout::parse(&text).unwrap();
    let e = devices::build(&l.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap_err();
    assert_eq!(
        e,
        "device 3: args \"virtio-gpu\": unknown device kind \"virtio-gpu\" (this daemon serves virtio-blk, virtio-rng and, through vhost-user, virtio-vsock)"
    );
    // A virtio-vsock is served only through a vhost-user daemon.
    let text = layout_text().replace("args=virtio-rng", "args=virtio-vsock");
    let l = Layout::parse(&text).unwrap();
    let e = devices::build(&l.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap_err();
    assert!(e.contains("device 3 is a virtio-vsock: this daemon serves it only through a vhost-user backend daemon (--vhost-user 3=<socket>)"), "{e}");
    // The bridge takes rng and vsock, not a disk; an index must be in the layout; the connector
    // (here refusing) is asked for the devices named, with their type.
    let vu = |i: u32| vec![(i, "/run/vu.sock0".to_string())];
    let e = devices::build(
        &w.layout.devices,
        &w.disk_args(),
        &vu(1),
        &entropy,
        &no_vhost,
    )
    .unwrap_err();
    assert!(
        e.contains("device 1: --vhost-user bridges virtio-rng and virtio-vsock, not virtio-blk"),
        "{e}"
    );
    let e = devices::build(
        &w.layout.devices,
        &w.disk_args(),
        &vu(9),
        &entropy,
        &no_vhost,
    )
    .unwrap_err();
    assert_eq!(e, "--vhost-user 9=...: no device 9 in the layout");
    let e = devices::build(
        &w.layout.devices,
        &w.disk_args(),
        &vu(3),
        &entropy,
        &no_vhost,
    )
    .unwrap_err();
    assert_eq!(e, "device 3: no vhost-user daemon for device 3");
}

/// A driver resetting its device in a loop chooses how often the "driver ready" and "reset:"
/// lines would come: they are rate-limited like the incidents.
#[test]
fn a_driver_resetting_in_a_loop_cannot_flood_the_console() {
    let w = World::new();
    let (ioreq, ram) = (w.ioreq, w.ram);
    let db = doorbell();
    let mut console = Vec::new();
    {
        let models =
            devices::build(&w.layout.devices, &w.disk_args(), &[], &entropy, &no_vhost).unwrap();
        let mapped = w.mapping(None);
        let mut s = Server::new(&w.layout, mapped, models, &db, &mut console, None);
        bring_up(&mut s, &w, &db, 0x200_0000, VERSION_1);
        // One request, so that a reset has counters to print.
        blk_request(&w, 0, 0, 512, true);
        offer(ram, 0);
        access(&mut s, ioreq, &db, 0, 0x200_0050, 4, Some(0));
        for _ in 0..50 {
            access(&mut s, ioreq, &db, 0, 0x200_0070, 4, Some(0));
            bring_up(&mut s, &w, &db, 0x200_0000, VERSION_1);
        }
    }
    let status_lines = console
        .iter()
        .filter(|l| l.contains("driver ready") || l.contains("reset:"))
        .count();
    assert!(
        status_lines <= LINES_PER_PERIOD as usize,
        "{status_lines} lines for 50 resets: {console:?}"
    );
    assert!(status_lines >= 2, "the first ones are shown: {console:?}");
}
