//! `hostile.mode=silent` (scenario `silent-backend`, issue 7 defect 8): the reference backend
//! of this guest's two devices answers `hostile.answered` requests and then never again, but
//! stays alive. Its response timeout is `hostile.timeout-ms`.
//!
//! Checks: the first reads are answered; the next one completes with all ones after at least
//! the timeout, and not much later; the device is broken from then on (later reads and writes
//! complete at once, reads all ones); the backend's other device, which shares this vCPU's
//! slot with the request that timed out, completes at once too (the slot stays the silent
//! backend's), without being broken; and nothing ever hangs. On d2a38d4 there was no timeout:
//! the read after the last answer never completed.

use guest_common::scenario;
use guest_common::timer;

use crate::dt::{List, VirtioNode, MAX_DEVICES};
use crate::insn;
use crate::Args;

/// virtio-mmio MagicValue, "virt" little endian.
const MAGIC: u64 = 0x7472_6976;
/// How much later than the timeout the read may complete (Xen's timer, a busy emulator).
const SLACK_MS: u64 = 2_000;
/// Accesses checked after the timeout.
const AFTER: u32 = 20;

/// Reads MagicValue of `base` (32 bits), timed.
fn read(base: usize) -> (Result<u64, guest_common::exception::Fault>, u64) {
    let start = timer::now();
    // SAFETY: MagicValue of one of this guest's devices: a read without side effects.
    let r = unsafe { insn::ldr_w(base) };
    (r, timer::ticks_to_us(timer::now() - start))
}

/// Runs the checks.
pub fn run(nodes: &List<VirtioNode, MAX_DEVICES>, args: &Args) {
    let (Some(answered), Some(timeout_ms)) = (args.answered, args.timeout_ms) else {
        scenario::check(
            "silent",
            false,
            "want hostile.answered=<n> hostile.timeout-ms=<the backend's timeout>",
        );
        return;
    };
    let mut it = nodes.iter();
    let (Some(dev), Some(other)) = (it.next(), it.next()) else {
        scenario::check("silent", false, "want two devices of the silent backend");
        return;
    };
    let mut good = 0;
    for _ in 0..answered {
        if read(dev.base).0 == Ok(MAGIC) {
            good += 1;
        }
    }
    scenario::check(
        "silent-answered",
        good == answered,
        format_args!(
            "{good} of {answered} MagicValue reads answered before the backend fell silent"
        ),
    );

    let (r, us) = read(dev.base);
    let ms = us / 1000;
    scenario::check(
        "silent-timeout",
        r == Ok(0xffff_ffff) && ms >= timeout_ms && ms < timeout_ms + SLACK_MS,
        format_args!(
            "the next read: {:#x} after {ms} ms (timeout {timeout_ms} ms, at most {} ms allowed)",
            r.unwrap_or(0xbad_e11),
            timeout_ms + SLACK_MS
        ),
    );

    // The device is broken: reads and writes complete at once without reaching anyone.
    let at_once_us = timeout_ms * 1000 / 2;
    let mut ones = 0;
    let mut writes = 0;
    let mut slowest = 0;
    for _ in 0..AFTER {
        let (r, us) = read(dev.base);
        ones += u32::from(r == Ok(0xffff_ffff));
        let start = timer::now();
        // SAFETY: QueueSel (0x30) of this guest's device: the write would select queue 1.
        let w = unsafe { insn::str_w(dev.base + 0x30, 1) };
        writes += u32::from(w.is_ok());
        slowest = slowest
            .max(us)
            .max(timer::ticks_to_us(timer::now() - start));
    }
    scenario::check(
        "silent-broken",
        ones == AFTER && writes == AFTER && slowest < at_once_us,
        format_args!(
            "then {AFTER} reads and writes: {ones} reads all ones, {writes} writes dropped \
             without fault, slowest {slowest} us"
        ),
    );

    // The other device of the silent backend: this vCPU's slot still holds the request that
    // timed out, so nothing is posted there; it completes at once, and is not broken.
    let (r, us) = read(other.base);
    let (again, again_us) = read(other.base);
    scenario::check(
        "silent-slot-held",
        r == Ok(0xffff_ffff) && again == r && us.max(again_us) < at_once_us,
        format_args!(
            "the backend's other device (same slot, still held): {:#x} after {us} us, again \
             after {again_us} us",
            r.unwrap_or(0xbad_e11)
        ),
    );
}
