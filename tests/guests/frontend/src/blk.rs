//! virtio-blk checks (virtio 1.2 §5.2) through virtio-drivers' `VirtIOBlk`: patterned single- and
//! multi-sector writes read back and compared, one request completed by waiting for the device
//! interrupt, the last sector, requests past the capacity (must end with VIRTIO_BLK_S_IOERR),
//! GET_ID, FLUSH, with two vCPUs concurrent I/O from both on different sector ranges (with
//! `frontend.smp-irq-rounds`, each vCPU's request in flight while the other submits and device
//! interrupts on), and optionally a timed soak of more I/O. Vanish mode (`until_vanished`) does I/O until the
//! backend disappears and checks the vanished device.
//!
//! Requests are submitted with the non-blocking API and waited for with a deadline, so a device
//! that never answers gives a FAIL line instead of a hang. The data pattern depends on the sector
//! and a per-frontend seed: data from another frontend's disk, or from another sector, never
//! compares equal.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use guest_common::gic::{self, IntId};
use guest_common::scenario;
use guest_common::sync::BakeryLock;
use guest_common::timer::{self, Deadline};
use guest_common::{exception, println};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{InterruptStatus, Transport};

use crate::cpu1;
use crate::dt::{List, VirtioNode};
use crate::hal::{self, GuestHal};
use crate::name;
use crate::report::{give_up, Name};

/// The driver type for one disk.
pub type Blk = VirtIOBlk<GuestHal, MmioTransport<'static>>;

/// Sectors in the largest request: one 4 KiB page.
const MULTI: usize = 8;
/// Bytes of a largest request.
const MULTI_BYTES: usize = MULTI * SECTOR_SIZE;
/// Smallest capacity the checks need: the per-vCPU ranges end below sector 1024 * MAX_CPUS + 64.
const MIN_SECTORS: u64 = 4096;
/// Time a request may take before the device is declared dead (TCG is slow, not this slow), unless
/// `frontend.request-ms` says otherwise (`set_request_ms`).
static REQUEST_MS: AtomicU64 = AtomicU64::new(5_000);

/// Sets how long one request may take (`frontend.request-ms`), before any disk is tested.
pub fn set_request_ms(ms: u64) {
    REQUEST_MS.store(ms, Ordering::Relaxed);
}

fn request_ms() -> u64 {
    REQUEST_MS.load(Ordering::Relaxed)
}
/// Rounds of 8-sector write + read each vCPU does in the two-vCPU phase.
const SMP_ROUNDS: usize = 8;
/// Identification register reads each vCPU makes without the lock in the two-vCPU phase.
const SMP_MMIO_READS: usize = 100;
/// Time the boot vCPU waits for vCPU 1 to finish the two-vCPU phase.
const SMP_WAIT_MS: u64 = 30_000;
/// Most rounds of `frontend.smp-irq-rounds`: a vCPU's range ends where the next one's starts.
pub const SMP_IRQ_MAX_ROUNDS: usize = 1024 / MULTI;
/// How long vCPU 0 sleeps for the device interrupt before it looks at the used ring anyway in
/// the interrupt variant: its own completion can be behind vCPU 1's in the used ring, with the
/// interrupt that announced both already taken.
const SMP_IRQ_SLICE_MS: u64 = 1;
/// First sector of the soak range, above the two-vCPU ranges (`smp_base`, up to 4 vCPUs).
const SOAK_BASE: u64 = 5120;
/// 8-sector slots the soak cycles through.
const SOAK_SLOTS: u64 = 16;
/// Interval of the soak's progress lines.
const SOAK_REPORT_MS: u64 = 2_000;
/// Reads of each identification register, and QueueNotify writes, once the device vanished.
const VANISHED_ACCESSES: usize = 100;
/// MagicValue (virtio 1.2 §4.2.2), and what a vanished device reads as (docs/backend-abi.md).
const MAGIC: u32 = 0x7472_6976;
const VANISHED: u32 = 0xffff_ffff;

/// virtio feature bits (virtio 1.2 §5.2.3, §6).
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;

/// First sector of the two-vCPU range of vCPU `cpu`.
fn smp_base(cpu: usize) -> u64 {
    1024 * (cpu as u64 + 1)
}

/// Returns word `word` of the pattern for `sector` under `seed` (splitmix64 finaliser).
pub fn pattern_word(seed: u64, sector: u64, word: usize) -> u32 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(sector.rotate_left(20))
        .wrapping_add(word as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // Folding 64 bits into 32: dropping the high half is the point.
    #[allow(clippy::cast_possible_truncation)]
    let word = (z ^ (z >> 32)) as u32;
    word
}

/// Fills `buf` (whole sectors) with the pattern of the sectors from `first`.
fn fill(buf: &mut [u8], seed: u64, first: u64) {
    for (s, sector) in buf.chunks_exact_mut(SECTOR_SIZE).enumerate() {
        for (w, bytes) in sector.chunks_exact_mut(4).enumerate() {
            bytes.copy_from_slice(&pattern_word(seed, first + s as u64, w).to_le_bytes());
        }
    }
}

/// Where a buffer first differs from the pattern.
#[derive(Clone, Copy, Debug)]
struct Mismatch {
    sector: u64,
    offset: usize,
    want: u32,
    got: u32,
}

/// Compares `buf` with the pattern of the sectors from `first`.
fn compare(buf: &[u8], seed: u64, first: u64) -> Result<(), Mismatch> {
    for (s, sector) in buf.chunks_exact(SECTOR_SIZE).enumerate() {
        for (w, bytes) in sector.chunks_exact(4).enumerate() {
            let got = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let want = pattern_word(seed, first + s as u64, w);
            if got != want {
                return Err(Mismatch {
                    sector: first + s as u64,
                    offset: w * 4,
                    want,
                    got,
                });
            }
        }
    }
    Ok(())
}

/// Reports the outcome of a compare as check `check`.
fn check_compare(
    check: &str,
    result: Result<(), Mismatch>,
    what: core::fmt::Arguments<'_>,
) -> bool {
    match result {
        Ok(()) => scenario::check(check, true, what),
        Err(m) => scenario::check(
            check,
            false,
            format_args!(
                "{what}: sector {} offset {:#x}: read {:#010x}, wrote {:#010x}",
                m.sector, m.offset, m.got, m.want
            ),
        ),
    }
}

/// How to wait for a request.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Spin on the used ring.
    Poll,
    /// Sleep in `wfi` until the device's interrupt arrives, then look at the used ring.
    Irq(IntId),
}

/// Direction of a data request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// How a request ended.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// The device's status byte, or the error virtio-drivers refused the submission with.
    status: Result<RespStatus, virtio_drivers::Error>,
    /// IRQs taken for the device while waiting (Wait::Irq only).
    irqs: u32,
    /// InterruptStatus bits acknowledged while waiting (Wait::Irq only).
    int_status: u32,
    /// Submission to completion.
    micros: u64,
}

impl Outcome {
    fn ok(&self) -> bool {
        matches!(self.status, Ok(s) if s == RespStatus::OK)
    }
}

/// Renders a status for a detail line.
struct StatusText(Result<RespStatus, virtio_drivers::Error>);

impl core::fmt::Display for StatusText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(s) if s == RespStatus::OK => f.write_str("OK"),
            Ok(s) if s == RespStatus::IO_ERR => f.write_str("IOERR"),
            Ok(s) if s == RespStatus::UNSUPPORTED => f.write_str("UNSUPP"),
            Ok(s) => write!(f, "status {s:?}"),
            Err(e) => write!(f, "not submitted: {e}"),
        }
    }
}

/// Runs one read or write of `buf` (whole sectors) at `sector` and waits for it per `wait`.
/// A request the device does not complete within `request_ms()` ends the scenario (`check` FAILs):
/// its buffers stay the device's, so this function must not return.
fn transfer(
    blk: &mut Blk,
    check: &str,
    dir: Dir,
    sector: u64,
    buf: &mut [u8],
    wait: Wait,
) -> Outcome {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    let start = timer::now();
    let seen = match wait {
        Wait::Irq(id) => gic::irq_count(id),
        Wait::Poll => 0,
    };
    let Ok(block) = usize::try_from(sector) else {
        return Outcome {
            status: Err(virtio_drivers::Error::InvalidParam),
            irqs: 0,
            int_status: 0,
            micros: 0,
        };
    };
    // SAFETY: `req`, `buf` and `resp` are not touched again until the device has used the
    // request (`peek_used` returns its token) and `complete_*` has taken them back; if that never
    // happens this function gives up without returning, so they stay valid and unused.
    let token = unsafe {
        match dir {
            Dir::Read => blk.read_blocks_nb(block, &mut req, buf, &mut resp),
            Dir::Write => blk.write_blocks_nb(block, &mut req, buf, &mut resp),
        }
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                status: Err(e),
                irqs: 0,
                int_status: 0,
                micros: 0,
            }
        }
    };
    let deadline = Deadline::after_ms(request_ms());
    let mut int_status = InterruptStatus::empty();
    let mut irqs = 0;
    loop {
        match wait {
            Wait::Poll => {
                if blk.peek_used() == Some(token) {
                    break;
                }
                core::hint::spin_loop();
            }
            Wait::Irq(id) => {
                // Wait for the interrupt first, even if the request is already done: the check is
                // that the device interrupts, not that it is fast.
                if gic::wait_for_irq(id, seen.wrapping_add(irqs), deadline) {
                    irqs = gic::irq_count(id).wrapping_sub(seen);
                    int_status |= blk.ack_interrupt();
                    if blk.peek_used() == Some(token) {
                        break;
                    }
                    continue;
                }
            }
        }
        if deadline.expired() {
            let used = blk.peek_used() == Some(token);
            give_up(
                check,
                format_args!(
                    "{dir:?} of sector {sector}: no {} within {} ms (request used: {used}, \
                     IRQs taken: {irqs})",
                    if matches!(wait, Wait::Irq(_)) {
                        "interrupt"
                    } else {
                        "completion"
                    },
                    request_ms(),
                ),
            );
        }
    }
    let micros = timer::ticks_to_us(timer::now().wrapping_sub(start));
    // SAFETY: the same `req`, `buf` and `resp` as the submission, and the device has used the
    // request (its token is next in the used ring).
    let popped = unsafe {
        match dir {
            Dir::Read => blk.complete_read_blocks(token, &req, buf, &mut resp),
            Dir::Write => blk.complete_write_blocks(token, &req, buf, &mut resp),
        }
    };
    // A non-OK status also comes back as an error; the status byte itself is what is checked.
    let status = match popped {
        Err(virtio_drivers::Error::WrongToken) => Err(virtio_drivers::Error::WrongToken),
        _ => Ok(resp.status()),
    };
    Outcome {
        status,
        irqs,
        int_status: int_status.bits(),
        micros,
    }
}

/// Writes the pattern to `count` sectors from `sector` in one request, with a FAIL on error.
fn write_pattern(
    blk: &mut Blk,
    check: &str,
    buf: &mut [u8],
    seed: u64,
    sector: u64,
    count: usize,
) -> bool {
    let data = &mut buf[..count * SECTOR_SIZE];
    fill(data, seed, sector);
    let out = transfer(blk, check, Dir::Write, sector, data, Wait::Poll);
    if !out.ok() {
        scenario::check(
            check,
            false,
            format_args!(
                "write of {count} sector(s) at {sector}: {}",
                StatusText(out.status)
            ),
        );
    }
    out.ok()
}

/// Reads `count` sectors from `sector` in one request and compares them with the pattern; the
/// error (if any) is returned as text for the caller's check.
fn read_compare(
    blk: &mut Blk,
    check: &str,
    buf: &mut [u8],
    seed: u64,
    sector: u64,
    count: usize,
) -> Result<(), ReadError> {
    let data = &mut buf[..count * SECTOR_SIZE];
    data.fill(0);
    let out = transfer(blk, check, Dir::Read, sector, data, Wait::Poll);
    if !out.ok() {
        return Err(ReadError::Status(out.status));
    }
    compare(data, seed, sector).map_err(ReadError::Data)
}

/// Why a read-back failed.
#[derive(Clone, Copy, Debug)]
enum ReadError {
    Status(Result<RespStatus, virtio_drivers::Error>),
    Data(Mismatch),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Status(s) => write!(f, "read failed: {}", StatusText(*s)),
            ReadError::Data(m) => write!(
                f,
                "sector {} offset {:#x}: read {:#010x}, wrote {:#010x}",
                m.sector, m.offset, m.got, m.want
            ),
        }
    }
}

/// Sector ranges written during the run, re-read at the end.
type Written = List<(u64, usize), 16>;

/// Runs every check on the disk at `node` (transport already probed) from the boot vCPU; with
/// `with_cpu1` (vCPU 1 is running and idle), also the two-vCPU phase.
pub fn run(
    node: &VirtioNode,
    mut transport: MmioTransport<'static>,
    seed: u64,
    with_cpu1: bool,
    smp_irq_rounds: Option<usize>,
    soak: Option<Soak>,
) {
    let prefix = name!("blk@{:x}", node.base);
    let prefix = prefix.as_str();
    let features = transport.read_device_features();
    println!(
        "{prefix}: device features {features:#x} (VERSION_1 {}, FLUSH {}, RO {})",
        features & F_VERSION_1 != 0,
        features & F_FLUSH != 0,
        features & F_RO != 0
    );
    let mut blk = match Blk::new(transport) {
        Ok(blk) => blk,
        Err(e) => {
            scenario::check(
                name!("{prefix}-init").as_str(),
                false,
                format_args!("VirtIOBlk::new: {e}"),
            );
            return;
        }
    };
    let capacity = blk.capacity();
    if !scenario::check(
        name!("{prefix}-init").as_str(),
        capacity >= MIN_SECTORS && !blk.readonly(),
        format_args!(
            "capacity {capacity} sectors ({} KiB), {}; need >= {MIN_SECTORS} sectors, writable",
            capacity / 2,
            if blk.readonly() {
                "read-only"
            } else {
                "writable"
            }
        ),
    ) {
        return;
    }
    // Polled requests should not leave interrupts pending; the device may still send them.
    blk.disable_interrupts();
    let buf = hal::buffer(1);
    let mut written = Written::new();

    let mut id = [0u8; 20];
    match blk.device_id(&mut id) {
        Ok(len) => {
            let text = core::str::from_utf8(&id[..len]).unwrap_or("(not UTF-8)");
            scenario::check(
                name!("{prefix}-get-id").as_str(),
                len > 0,
                format_args!("VIRTIO_BLK_T_GET_ID: \"{text}\" ({len} bytes)"),
            );
        }
        Err(e) => {
            scenario::check(
                name!("{prefix}-get-id").as_str(),
                false,
                format_args!("VIRTIO_BLK_T_GET_ID: {e}"),
            );
        }
    }

    check_single(&mut blk, prefix, buf, seed, &mut written);
    check_multi(&mut blk, prefix, buf, seed, &mut written);
    check_irq(&mut blk, prefix, node, buf, seed);
    check_edges(&mut blk, prefix, buf, seed, capacity, &mut written);

    let flush = name!("{prefix}-flush");
    if features & F_FLUSH == 0 {
        scenario::check(
            flush.as_str(),
            false,
            "device does not offer VIRTIO_BLK_F_FLUSH: no flush request sent",
        );
    } else {
        match blk.flush() {
            Ok(()) => scenario::check(flush.as_str(), true, "VIRTIO_BLK_T_FLUSH: OK"),
            Err(e) => scenario::check(
                flush.as_str(),
                false,
                format_args!("VIRTIO_BLK_T_FLUSH: {e}"),
            ),
        };
    }

    let blk = match (with_cpu1, smp_irq_rounds) {
        (true, None) => two_vcpus(blk, prefix, node, seed, &mut written),
        (true, Some(rounds)) => two_vcpus_irq(blk, prefix, node, seed, rounds, &mut written),
        (false, _) => Some(blk),
    };

    let blk = match (blk, soak) {
        (Some(mut blk), Some(how)) => {
            run_soak(&mut blk, prefix, buf, seed, capacity, how);
            Some(blk)
        }
        (blk, _) => blk,
    };

    // Everything written must still be there: catches a backend that mixes up disks, frontends
    // or sectors between requests.
    if let Some(mut blk) = blk {
        let check = name!("{prefix}-reverify");
        let mut sectors = 0;
        let mut result = Ok(());
        for (first, count) in written.iter() {
            for chunk in (0..count).step_by(MULTI) {
                let n = (count - chunk).min(MULTI);
                result = read_compare(&mut blk, check.as_str(), buf, seed, first + chunk as u64, n);
                if result.is_err() {
                    break;
                }
                sectors += n;
            }
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => scenario::check(
                check.as_str(),
                true,
                format_args!(
                    "{sectors} sectors in {} ranges still hold their pattern",
                    written.len()
                ),
            ),
            Err(e) => scenario::check(check.as_str(), false, e),
        };
    }
}

/// Four sectors, one request each, written then read back.
fn check_single(blk: &mut Blk, prefix: &str, buf: &mut [u8], seed: u64, written: &mut Written) {
    let check = name!("{prefix}-rw-single");
    for sector in 0..4 {
        if !write_pattern(blk, check.as_str(), buf, seed, sector, 1) {
            return;
        }
    }
    written.push((0, 4));
    for sector in 0..4 {
        if let Err(e) = read_compare(blk, check.as_str(), buf, seed, sector, 1) {
            scenario::check(check.as_str(), false, e);
            return;
        }
    }
    scenario::check(
        check.as_str(),
        true,
        format_args!("sectors 0-3 written and read back, one request per sector, seed {seed:#x}"),
    );
}

/// Eight sectors in one write request, read back in one request and one sector alone.
fn check_multi(blk: &mut Blk, prefix: &str, buf: &mut [u8], seed: u64, written: &mut Written) {
    let check = name!("{prefix}-rw-multi");
    let first = 8;
    if !write_pattern(blk, check.as_str(), buf, seed, first, MULTI) {
        return;
    }
    written.push((first, MULTI));
    let result = read_compare(blk, check.as_str(), buf, seed, first, MULTI)
        .and_then(|()| read_compare(blk, check.as_str(), buf, seed, first + 5, 1));
    match result {
        Ok(()) => scenario::check(
            check.as_str(),
            true,
            format_args!(
                "sectors {first}-{} as one {MULTI_BYTES}-byte write and one read; sector {} alone",
                first + MULTI as u64 - 1,
                first + 5
            ),
        ),
        Err(e) => scenario::check(check.as_str(), false, e),
    };
}

/// One read completed by waiting for the device interrupt.
fn check_irq(blk: &mut Blk, prefix: &str, node: &VirtioNode, buf: &mut [u8], seed: u64) {
    let check = name!("{prefix}-irq");
    let Some((id, trigger)) = node.irq else {
        scenario::check(
            check.as_str(),
            false,
            "the virtio,mmio node has no SPI in `interrupts`",
        );
        return;
    };
    if let Err(e) = gic::enable(id, trigger) {
        scenario::check(check.as_str(), false, e);
        return;
    }
    blk.enable_interrupts();
    // Let interrupts of the earlier polled requests arrive and clear them, so that the wait
    // below counts only this request's.
    gic::wait_for_irq(id, gic::irq_count(id), Deadline::after_ms(20));
    blk.ack_interrupt();
    let data = &mut buf[..MULTI_BYTES];
    data.fill(0);
    let out = transfer(blk, check.as_str(), Dir::Read, 8, data, Wait::Irq(id));
    blk.disable_interrupts();
    if !out.ok() {
        scenario::check(
            check.as_str(),
            false,
            format_args!("read: {}", StatusText(out.status)),
        );
        return;
    }
    let queue_bit = out.int_status & InterruptStatus::QUEUE_INTERRUPT.bits() != 0;
    let detail = format_args!(
        "8-sector read completed after {} IRQ(s) on INTID {} in {} us, InterruptStatus {:#x}",
        out.irqs,
        id.raw(),
        out.micros,
        out.int_status
    );
    match compare(data, seed, 8) {
        Ok(()) if queue_bit && out.irqs > 0 => scenario::check(check.as_str(), true, detail),
        Ok(()) => scenario::check(
            check.as_str(),
            false,
            format_args!("{detail}: no used-buffer notification bit"),
        ),
        Err(m) => check_compare(check.as_str(), Err(m), detail),
    };
}

/// The last sector works; anything at or past the capacity ends with IOERR; the disk works after.
fn check_edges(
    blk: &mut Blk,
    prefix: &str,
    buf: &mut [u8],
    seed: u64,
    capacity: u64,
    written: &mut Written,
) {
    let last = capacity - 1;
    let check = name!("{prefix}-last-sector");
    if write_pattern(blk, check.as_str(), buf, seed, last, 1) {
        written.push((last, 1));
        match read_compare(blk, check.as_str(), buf, seed, last, 1) {
            Ok(()) => scenario::check(
                check.as_str(),
                true,
                format_args!("sector {last} written and read back"),
            ),
            Err(e) => scenario::check(check.as_str(), false, e),
        };
    }

    let check = name!("{prefix}-past-end");
    let cases: [(Dir, u64, usize); 3] = [
        (Dir::Read, capacity, 1),
        (Dir::Write, capacity, 1),
        (Dir::Read, last, 2),
    ];
    let mut all_ioerr = true;
    for (dir, sector, count) in cases {
        let data = &mut buf[..count * SECTOR_SIZE];
        if dir == Dir::Write {
            fill(data, seed, sector);
        }
        let out = transfer(blk, check.as_str(), dir, sector, data, Wait::Poll);
        let ioerr = matches!(out.status, Ok(s) if s == RespStatus::IO_ERR);
        println!(
            "{prefix}: {dir:?} of {count} sector(s) at {sector} (capacity {capacity}): {}",
            StatusText(out.status)
        );
        all_ioerr &= ioerr;
    }
    scenario::check(
        check.as_str(),
        all_ioerr,
        format_args!(
            "read and write at sector {capacity} (= capacity) and a 2-sector read at {last}: {}",
            if all_ioerr {
                "all IOERR"
            } else {
                "expected IOERR for all three"
            }
        ),
    );

    let check = name!("{prefix}-after-error");
    match read_compare(blk, check.as_str(), buf, seed, 0, 1) {
        Ok(()) => scenario::check(
            check.as_str(),
            true,
            "sector 0 reads back after the failed requests",
        ),
        Err(e) => scenario::check(check.as_str(), false, e),
    };
}

/// The disk shared by both vCPUs in the two-vCPU phase.
static SHARED: BakeryLock<Option<Blk>> = BakeryLock::new(None);
/// What vCPU 1 needs: the device base and the seed.
static SMP_BASE_ADDR: AtomicUsize = AtomicUsize::new(0);
static SMP_SEED: AtomicU64 = AtomicU64::new(0);

/// Runs the two-vCPU phase with vCPU 1 (already running, see `cpu1.rs`); returns the disk when
/// it is over (`None` if vCPU 1 did not finish: the disk may still be in use by it).
fn two_vcpus(
    blk: Blk,
    prefix: &str,
    node: &VirtioNode,
    seed: u64,
    written: &mut Written,
) -> Option<Blk> {
    *SHARED.lock() = Some(blk);
    SMP_BASE_ADDR.store(node.base, Ordering::Relaxed);
    SMP_SEED.store(seed, Ordering::Relaxed);
    let posted = cpu1::post(cpu1_work);
    smp_io(0, prefix, node.base, seed);
    written.push((smp_base(0), SMP_ROUNDS * MULTI));
    let finished = posted.wait(Deadline::after_ms(SMP_WAIT_MS));
    scenario::check(
        "cpu1-done",
        finished,
        format_args!(
            "vCPU 1 {} its disk checks within {SMP_WAIT_MS} ms",
            if finished {
                "finished"
            } else {
                "did not finish"
            }
        ),
    );
    if !finished {
        return None;
    }
    written.push((smp_base(1), SMP_ROUNDS * MULTI));
    SHARED.lock().take()
}

/// vCPU 1's part of the two-vCPU phase.
fn cpu1_work() {
    let base = SMP_BASE_ADDR.load(Ordering::Relaxed);
    let prefix = name!("blk@{base:x}");
    let seed = SMP_SEED.load(Ordering::Relaxed);
    match SMP_IRQ_ROUNDS.load(Ordering::Relaxed) {
        0 => smp_io(1, prefix.as_str(), base, seed),
        rounds => {
            id_reads(1, prefix.as_str(), base);
            smp_irq_io(1, prefix.as_str(), seed, rounds, None);
        }
    }
}

/// Rounds of the interrupt variant of the two-vCPU phase (0: the plain one), for vCPU 1.
static SMP_IRQ_ROUNDS: AtomicUsize = AtomicUsize::new(0);

/// The two-vCPU phase with device interrupts on (`frontend.smp-irq-rounds`): each vCPU submits
/// its own requests (so both vCPUs write `QueueNotify`) and waits for each without holding the
/// disk's lock, so both have a request in flight at once and one notifies while the other's
/// request completes; the device interrupts for every used buffer; vCPU 0, where the disk's SPI
/// is routed (`check_irq` enabled it there), sleeps for it between looks at the used ring and
/// acknowledges `InterruptStatus`; vCPU 1 polls. Checks each vCPU's data, and that vCPU 0 took
/// device interrupts with the used-buffer bit during the phase.
fn two_vcpus_irq(
    mut blk: Blk,
    prefix: &str,
    node: &VirtioNode,
    seed: u64,
    rounds: usize,
    written: &mut Written,
) -> Option<Blk> {
    let check = name!("{prefix}-smp-irqs");
    let Some((id, _)) = node.irq else {
        scenario::check(
            check.as_str(),
            false,
            "the virtio,mmio node has no SPI in `interrupts`",
        );
        return Some(blk);
    };
    blk.enable_interrupts();
    blk.ack_interrupt();
    let irqs_before = gic::irq_count(id);
    *SHARED.lock() = Some(blk);
    SMP_BASE_ADDR.store(node.base, Ordering::Relaxed);
    SMP_SEED.store(seed, Ordering::Relaxed);
    SMP_IRQ_ROUNDS.store(rounds, Ordering::Relaxed);
    let posted = cpu1::post(cpu1_work);
    id_reads(0, prefix, node.base);
    let tally = smp_irq_io(0, prefix, seed, rounds, Some(id));
    written.push((smp_base(0), rounds * MULTI));
    let finished = posted.wait(Deadline::after_ms(SMP_WAIT_MS));
    scenario::check(
        "cpu1-done",
        finished,
        format_args!(
            "vCPU 1 {} its disk checks within {SMP_WAIT_MS} ms",
            if finished {
                "finished"
            } else {
                "did not finish"
            }
        ),
    );
    if !finished {
        return None;
    }
    written.push((smp_base(1), rounds * MULTI));
    let irqs = gic::irq_count(id).wrapping_sub(irqs_before);
    let used_bit = tally.int_status & InterruptStatus::QUEUE_INTERRUPT.bits() != 0;
    scenario::check(
        check.as_str(),
        irqs > 0 && used_bit && tally.completed_after_irq > 0,
        format_args!(
            "{irqs} device IRQs (INTID {}) taken by vCPU 0 while both vCPUs had requests in \
             flight, InterruptStatus bits seen {:#x}, {} of vCPU 0's {} requests found done \
             after an IRQ",
            id.raw(),
            tally.int_status,
            tally.completed_after_irq,
            2 * rounds
        ),
    );
    let mut blk = SHARED.lock().take()?;
    blk.disable_interrupts();
    Some(blk)
}

/// What vCPU 0 saw of the device interrupt in the interrupt variant.
#[derive(Clone, Copy, Debug, Default)]
struct IrqTally {
    /// `InterruptStatus` bits acknowledged.
    int_status: u32,
    /// Requests whose completion was found right after an interrupt was taken.
    completed_after_irq: usize,
}

/// One vCPU's rounds of the interrupt variant: 8-sector write, then read-back and compare, in
/// this vCPU's own range; `irq` (vCPU 0 only) is the disk's SPI to sleep for.
fn smp_irq_io(cpu: usize, prefix: &str, seed: u64, rounds: usize, irq: Option<IntId>) -> IrqTally {
    let check = name!("{prefix}-smp-cpu{cpu}");
    let buf = hal::buffer(1);
    let first = smp_base(cpu);
    let mut tally = IrqTally::default();
    for round in 0..rounds {
        let sector = first + (round * MULTI) as u64;
        let data = &mut buf[..MULTI_BYTES];
        fill(data, seed, sector);
        let status = in_flight(check.as_str(), Dir::Write, sector, data, irq, &mut tally);
        if !matches!(status, Ok(s) if s == RespStatus::OK) {
            scenario::check(
                check.as_str(),
                false,
                format_args!(
                    "vCPU {cpu} round {round}: write of sector {sector}: {}",
                    StatusText(status)
                ),
            );
            return tally;
        }
        data.fill(0);
        let status = in_flight(check.as_str(), Dir::Read, sector, data, irq, &mut tally);
        let result = match status {
            Ok(s) if s == RespStatus::OK => compare(data, seed, sector).map_err(ReadError::Data),
            other => Err(ReadError::Status(other)),
        };
        if let Err(e) = result {
            scenario::check(
                check.as_str(),
                false,
                format_args!("vCPU {cpu} round {round}: {e}"),
            );
            return tally;
        }
    }
    scenario::check(
        check.as_str(),
        true,
        format_args!(
            "vCPU {cpu}: {rounds} rounds of {MULTI}-sector write + read, sectors {first}-{}, \
             each request submitted (and notified) here and awaited without the lock, {}",
            first + (rounds * MULTI) as u64 - 1,
            if irq.is_some() {
                "sleeping for the device interrupt"
            } else {
                "polling"
            }
        ),
    );
    tally
}

/// Submits one request under the disk's lock and waits for it without the lock, looking at the
/// used ring under the lock: with `irq`, after each device interrupt (acknowledging it) or
/// slice of sleep; without, continuously. The used ring is shared: a request is popped only
/// by the vCPU that submitted it, when it is the next one. A request the device does not
/// complete within `request_ms()` ends the scenario (`check` FAILs), as in `transfer`.
fn in_flight(
    check: &str,
    dir: Dir,
    sector: u64,
    buf: &mut [u8],
    irq: Option<IntId>,
    tally: &mut IrqTally,
) -> Result<RespStatus, virtio_drivers::Error> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    let block = usize::try_from(sector).map_err(|_| virtio_drivers::Error::InvalidParam)?;
    // Before the submission: the interrupt for this request comes after it.
    let mut seen = irq.map(gic::irq_count);
    let token = {
        let mut guard = SHARED.lock();
        let blk = guard.as_mut().ok_or(virtio_drivers::Error::NotReady)?;
        // SAFETY: `req`, `buf` and `resp` are not touched again until the device has used the
        // request (`peek_used` returns its token) and `complete_*` has taken them back; if that
        // never happens this function gives up without returning, so they stay valid and
        // unused.
        unsafe {
            match dir {
                Dir::Read => blk.read_blocks_nb(block, &mut req, buf, &mut resp),
                Dir::Write => blk.write_blocks_nb(block, &mut req, buf, &mut resp),
            }
        }
    }?;
    let deadline = Deadline::after_ms(request_ms());
    loop {
        // With interrupts, sleep for one first, even if the request is already done: the
        // point is that the device interrupts while both vCPUs are at work.
        let took_irq = match (irq, seen) {
            (Some(id), Some(since)) => {
                gic::wait_for_irq(id, since, Deadline::after_ms(SMP_IRQ_SLICE_MS))
            }
            _ => {
                core::hint::spin_loop();
                false
            }
        };
        // Before the look: an interrupt that comes after it ends the next sleep at once.
        seen = irq.map(gic::irq_count);
        {
            let mut guard = SHARED.lock();
            let blk = guard.as_mut().ok_or(virtio_drivers::Error::NotReady)?;
            if took_irq {
                tally.int_status |= blk.ack_interrupt().bits();
            }
            if blk.peek_used() == Some(token) {
                if took_irq {
                    tally.completed_after_irq += 1;
                }
                // SAFETY: the same `req`, `buf` and `resp` as the submission, and the device
                // has used the request (its token is next in the used ring).
                let popped = unsafe {
                    match dir {
                        Dir::Read => blk.complete_read_blocks(token, &req, buf, &mut resp),
                        Dir::Write => blk.complete_write_blocks(token, &req, buf, &mut resp),
                    }
                };
                return match popped {
                    Err(virtio_drivers::Error::WrongToken) => {
                        Err(virtio_drivers::Error::WrongToken)
                    }
                    _ => Ok(resp.status()),
                };
            }
        }
        if deadline.expired() {
            give_up(
                check,
                format_args!(
                    "{dir:?} of sector {sector}: not completed within {} ms \
                     (two vCPUs, interrupts on)",
                    request_ms()
                ),
            );
        }
    }
}

/// Reads the identification registers without the lock, as the first part of the two-vCPU
/// phase on vCPU `cpu` (so both vCPUs have register accesses outstanding at once).
fn id_reads(cpu: usize, prefix: &str, base: usize) {
    let check = name!("{prefix}-mmio-cpu{cpu}");
    let mut bad = None;
    for i in 0..SMP_MMIO_READS {
        // MagicValue, Version and DeviceID (virtio 1.2 §4.2.2): side-effect-free reads.
        for (offset, want) in [(0x0, Some(0x7472_6976)), (0x4, None), (0x8, None)] {
            // SAFETY: `base` is the register window of a probed virtio-mmio device; these three
            // registers are read-only and reading them has no side effect.
            match unsafe { exception::try_read_u32(base + offset) } {
                Ok(v) if want.is_none_or(|w| v == w) => {}
                Ok(v) => bad = Some((i, offset, Ok(v))),
                Err(f) => bad = Some((i, offset, Err(f))),
            }
        }
        if bad.is_some() {
            break;
        }
    }
    match bad {
        None => scenario::check(
            check.as_str(),
            true,
            format_args!(
                "{} identification register reads, no lock",
                3 * SMP_MMIO_READS
            ),
        ),
        Some((i, offset, Ok(v))) => scenario::check(
            check.as_str(),
            false,
            format_args!("read {i}: register {offset:#x} = {v:#x}"),
        ),
        Some((i, offset, Err(f))) => scenario::check(
            check.as_str(),
            false,
            format_args!("read {i}: register {offset:#x}: {f}"),
        ),
    };
}

/// The two-vCPU phase on vCPU `cpu`: identification register reads without the lock (so both
/// vCPUs have requests outstanding at once), then rounds of 8-sector writes and read-backs under
/// the lock in this vCPU's own sector range.
fn smp_io(cpu: usize, prefix: &str, base: usize, seed: u64) {
    id_reads(cpu, prefix, base);
    let check = name!("{prefix}-smp-cpu{cpu}");
    let buf = hal::buffer(1);
    let first = smp_base(cpu);
    for round in 0..SMP_ROUNDS {
        let sector = first + (round * MULTI) as u64;
        let ok = {
            let mut guard = SHARED.lock();
            let Some(blk) = guard.as_mut() else {
                scenario::check(check.as_str(), false, "the disk is not shared");
                return;
            };
            write_pattern(blk, check.as_str(), buf, seed, sector, MULTI)
        };
        if !ok {
            return;
        }
        let result = {
            let mut guard = SHARED.lock();
            let Some(blk) = guard.as_mut() else {
                scenario::check(check.as_str(), false, "the disk is not shared");
                return;
            };
            read_compare(blk, check.as_str(), buf, seed, sector, MULTI)
        };
        if let Err(e) = result {
            scenario::check(
                check.as_str(),
                false,
                format_args!("vCPU {cpu} round {round}: {e}"),
            );
            return;
        }
    }
    scenario::check(
        check.as_str(),
        true,
        format_args!(
            "vCPU {cpu}: {SMP_ROUNDS} rounds of {MULTI}-sector write + read, sectors {first}-{}",
            first + (SMP_ROUNDS * MULTI) as u64 - 1
        ),
    );
}

/// How long the soak lasts.
#[derive(Clone, Copy, Debug)]
pub struct Soak {
    /// At most this long, in milliseconds.
    pub ms: u64,
    /// Until the device at this address vanishes (MagicValue all ones), which must happen
    /// within `ms`; without one, exactly `ms`.
    pub sentinel: Option<usize>,
}

/// Reads MagicValue at `base`: whether a device still answers there.
fn answers(base: usize) -> bool {
    // SAFETY: `base` is a virtio-mmio register window from the device tree; MagicValue is
    // read-only and reading it has no side effect; a fault is caught.
    matches!(unsafe { exception::try_read_u32(base) }, Ok(MAGIC))
}

/// Writes and reads back 8-sector slots until the soak ends (see [`Soak`]), a different pattern
/// each round (seed + round), so that a stale read of an earlier round never compares equal.
fn run_soak(blk: &mut Blk, prefix: &str, buf: &mut [u8], seed: u64, capacity: u64, how: Soak) {
    let check = name!("{prefix}-soak");
    let end = SOAK_BASE + SOAK_SLOTS * MULTI as u64;
    // The last sector belongs to check_edges.
    if end >= capacity {
        scenario::check(
            check.as_str(),
            false,
            format_args!(
                "the soak needs sectors {SOAK_BASE}-{end}: capacity {capacity} is too small"
            ),
        );
        return;
    }
    if let Some(base) = how.sentinel {
        if !answers(base) {
            scenario::check(
                check.as_str(),
                false,
                format_args!("the sentinel device at {base:#x} is not there at the start"),
            );
            return;
        }
    }
    let start = timer::now();
    let deadline = Deadline::after_ms(how.ms);
    let mut report = Deadline::after_ms(SOAK_REPORT_MS);
    let mut rounds: u64 = 0;
    let mut sentinel_gone = false;
    while !deadline.expired() {
        let sector = SOAK_BASE + (rounds % SOAK_SLOTS) * MULTI as u64;
        let round_seed = seed.wrapping_add(rounds + 1);
        if !write_pattern(blk, check.as_str(), buf, round_seed, sector, MULTI) {
            return;
        }
        if let Err(e) = read_compare(blk, check.as_str(), buf, round_seed, sector, MULTI) {
            scenario::check(check.as_str(), false, format_args!("round {rounds}: {e}"));
            return;
        }
        rounds += 1;
        if report.expired() {
            println!("{prefix}: soak: {rounds} rounds");
            report = Deadline::after_ms(SOAK_REPORT_MS);
        }
        if how.sentinel.is_some_and(|base| !answers(base)) {
            sentinel_gone = true;
            break;
        }
    }
    let millis = timer::ticks_to_us(timer::now().wrapping_sub(start)) / 1000;
    let until = match how.sentinel {
        Some(base) if sentinel_gone => {
            Name::new(format_args!(", until the sentinel at {base:#x} vanished"))
        }
        Some(base) => Name::new(format_args!("; the sentinel at {base:#x} is still there")),
        None => Name::new(format_args!("")),
    };
    scenario::check(
        check.as_str(),
        rounds > 0 && (how.sentinel.is_none() || sentinel_gone),
        format_args!(
            "{rounds} rounds of {MULTI}-sector write + read-back in {millis} ms{}",
            until.as_str()
        ),
    );
}

/// How a vanish-mode request ended.
enum Vanish {
    /// The device completed it.
    Done(Result<RespStatus, virtio_drivers::Error>),
    /// MagicValue read as all ones while it was in flight: the backend is gone.
    Vanished,
}

/// Submits one request and waits for it, reading MagicValue at `base` while it waits, so that
/// a backend that disappears ends the wait (its used ring will never move) instead of hanging.
/// The request's buffers stay the device's for ever when it vanished: the caller never reuses
/// them (vanish mode ends in `linger` or powers off).
fn transfer_or_vanish(
    blk: &mut Blk,
    base: usize,
    dir: Dir,
    sector: u64,
    buf: &mut [u8],
    req: &mut BlkReq,
    resp: &mut BlkResp,
) -> Vanish {
    let Ok(block) = usize::try_from(sector) else {
        return Vanish::Done(Err(virtio_drivers::Error::InvalidParam));
    };
    // SAFETY: `req`, `buf` and `resp` are not touched again until the device has used the
    // request and `complete_*` has taken them back; if it never does (the backend vanished),
    // the caller never touches them again either.
    let token = unsafe {
        match dir {
            Dir::Read => blk.read_blocks_nb(block, req, buf, resp),
            Dir::Write => blk.write_blocks_nb(block, req, buf, resp),
        }
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => return Vanish::Done(Err(e)),
    };
    loop {
        if blk.peek_used() == Some(token) {
            break;
        }
        // SAFETY: `base` is the disk's register window; MagicValue is read-only and reading
        // it has no side effect; a fault is caught.
        match unsafe { exception::try_read_u32(base) } {
            Ok(MAGIC) => {}
            _ => return Vanish::Vanished,
        }
    }
    // SAFETY: the same `req`, `buf` and `resp` as the submission, and the device has used the
    // request.
    let popped = unsafe {
        match dir {
            Dir::Read => blk.complete_read_blocks(token, req, buf, resp),
            Dir::Write => blk.complete_write_blocks(token, req, buf, resp),
        }
    };
    Vanish::Done(match popped {
        Err(virtio_drivers::Error::WrongToken) => Err(virtio_drivers::Error::WrongToken),
        _ => Ok(resp.status()),
    })
}

/// Vanish mode: 8-sector write + read-back rounds on the disk until its backend disappears
/// (within `ms`), then checks that the vanished device's registers answer at once: reads all
/// ones, writes dropped, no fault and no wait.
pub fn until_vanished(node: &VirtioNode, transport: MmioTransport<'static>, seed: u64, ms: u64) {
    let prefix = name!("blk@{:x}", node.base);
    let prefix = prefix.as_str();
    let check = name!("{prefix}-vanish");
    let mut blk = match Blk::new(transport) {
        Ok(blk) => blk,
        Err(e) => {
            scenario::check(check.as_str(), false, format_args!("VirtIOBlk::new: {e}"));
            return;
        }
    };
    blk.disable_interrupts();
    // The buffers of the request in flight when the backend vanishes stay the device's: they
    // live in the pool for the guest's life, and the request header on this stack frame, which
    // this function never leaves afterwards without powering off or lingering.
    let buf = hal::buffer(1);
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    let start = timer::now();
    let deadline = Deadline::after_ms(ms);
    let mut rounds: u64 = 0;
    let in_flight = loop {
        if deadline.expired() {
            scenario::check(
                check.as_str(),
                false,
                format_args!("{rounds} rounds of I/O in {ms} ms and the backend is still there"),
            );
            return;
        }
        let sector = (rounds % SOAK_SLOTS) * MULTI as u64;
        let round_seed = seed.wrapping_add(rounds + 1);
        let data = &mut buf[..MULTI_BYTES];
        fill(data, round_seed, sector);
        match transfer_or_vanish(
            &mut blk,
            node.base,
            Dir::Write,
            sector,
            data,
            &mut req,
            &mut resp,
        ) {
            Vanish::Vanished => break (Dir::Write, sector),
            Vanish::Done(Ok(s)) if s == RespStatus::OK => {}
            Vanish::Done(status) => {
                scenario::check(
                    check.as_str(),
                    false,
                    format_args!(
                        "round {rounds}: write of sector {sector}: {}",
                        StatusText(status)
                    ),
                );
                return;
            }
        }
        data.fill(0);
        match transfer_or_vanish(
            &mut blk,
            node.base,
            Dir::Read,
            sector,
            data,
            &mut req,
            &mut resp,
        ) {
            Vanish::Vanished => break (Dir::Read, sector),
            Vanish::Done(Ok(s)) if s == RespStatus::OK => {}
            Vanish::Done(status) => {
                scenario::check(
                    check.as_str(),
                    false,
                    format_args!(
                        "round {rounds}: read of sector {sector}: {}",
                        StatusText(status)
                    ),
                );
                return;
            }
        }
        if let Err(m) = compare(data, round_seed, sector) {
            check_compare(
                check.as_str(),
                Err(m),
                format_args!("round {rounds}: read-back of sector {sector}"),
            );
            return;
        }
        rounds += 1;
        // I/O all along, but leaving most of the pCPU to the other domains (the dom0 above all).
        crate::sleep_ms(1);
    };
    let millis = timer::ticks_to_us(timer::now().wrapping_sub(start)) / 1000;
    scenario::check(
        check.as_str(),
        rounds > 0,
        format_args!(
            "{rounds} rounds of {MULTI}-sector write + read-back verified, then after {millis} ms \
             MagicValue read {VANISHED:#x} with the {:?} of sector {} in flight: the backend is \
             gone{}",
            in_flight.0,
            in_flight.1,
            if rounds == 0 {
                " before any I/O completed"
            } else {
                ""
            }
        ),
    );

    // Every access now completes at once, without reaching anyone.
    let check = name!("{prefix}-vanished-registers");
    let t0 = timer::now();
    let mut bad = None;
    for i in 0..VANISHED_ACCESSES {
        // MagicValue, Version, DeviceID, VendorID (virtio 1.2 §4.2.2), then a QueueNotify
        // write (0x50) of queue 0.
        for offset in [0x0, 0x4, 0x8, 0xc] {
            // SAFETY: the disk's register window; identification registers are read-only.
            match unsafe { exception::try_read_u32(node.base + offset) } {
                Ok(VANISHED) => {}
                other => bad = Some((i, offset, other.map_err(|_| ()))),
            }
        }
        // SAFETY: a notify of queue 0 of a device that is gone; nothing can act on it.
        if unsafe { exception::try_write_u32(node.base + 0x50, 0) }.is_err() {
            bad = Some((i, 0x50, Err(())));
        }
        if bad.is_some() {
            break;
        }
    }
    let micros = timer::ticks_to_us(timer::now().wrapping_sub(t0));
    match bad {
        None => scenario::check(
            check.as_str(),
            true,
            format_args!(
                "{} register reads all {VANISHED:#x}, {VANISHED_ACCESSES} QueueNotify writes \
                 dropped, in {micros} us",
                4 * VANISHED_ACCESSES
            ),
        ),
        Some((i, offset, got)) => scenario::check(
            check.as_str(),
            false,
            format_args!("access {i} to register {offset:#x}: {got:x?}, want {VANISHED:#x}"),
        ),
    };
    // Not dropped: VirtIOBlk's drop unsets the queue and waits for QueueReady to read 0, which
    // a vanished device (all ones) never does; and the request in flight still owns buffers.
    core::mem::forget(blk);
}
