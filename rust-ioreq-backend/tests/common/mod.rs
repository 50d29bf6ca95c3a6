//! What the daemon's host tests share: the frontend RAM bank they build virtqueues in, and Xen's
//! side of a register access (post it in the ioreq page, check the COMPLETE).

#![allow(dead_code)] // each test binary uses its part

use rust_ioreq_backend::ioreq::{reg, RecordingDoorbell, STATE_IORESP_READY, STATE_READY};
use rust_ioreq_backend::server::Server;
use rust_ioreq_backend::shared::SharedRegion;

/// The frontend's one RAM bank: guest-physical base and size.
pub const RAM_GPA: u64 = 0x4000_0000;
pub const RAM_SIZE: usize = 0x10_0000;
/// Where the tests' driver puts queue 0: descriptor table, available ring, used ring.
pub const DESC: u64 = RAM_GPA + 0x1000;
pub const AVAIL: u64 = RAM_GPA + 0x2000;
pub const USED: u64 = RAM_GPA + 0x3000;
/// The first data buffer.
pub const BUF: u64 = RAM_GPA + 0x10000;
/// The queue size the tests' driver sets.
pub const QSIZE: u16 = 8;

/// A doorbell of interface version 2 with the fast transport.
pub fn doorbell() -> RecordingDoorbell {
    RecordingDoorbell {
        version: 2,
        features: 1,
        ..Default::default()
    }
}

/// Plays Xen for one access of vCPU `vcpu`: posts it, lets the daemon serve, checks the
/// COMPLETE and the slot state, then frees the slot; returns the answer.
pub fn access(
    s: &mut Server<'_>,
    w_ioreq: SharedRegion,
    db: &RecordingDoorbell,
    vcpu: u32,
    addr: u64,
    size: u32,
    write: Option<u64>,
) -> u64 {
    let slot = 32 * vcpu as usize;
    w_ioreq.write_u64(slot, addr);
    w_ioreq.write_u64(slot + 8, write.unwrap_or(0xdead_beef));
    w_ioreq.write_u64(slot + 16, 1 | (u64::from(size) << 32));
    w_ioreq.write_u8(slot + 31, 1);
    let dir = if write.is_some() { 0 } else { 1 << 5 };
    w_ioreq.write_u8(slot + 30, dir | STATE_READY);
    s.serve_until_idle();
    assert_eq!(w_ioreq.read_u8(slot + 30), Some(dir | STATE_IORESP_READY));
    let writes = db.writes.borrow().clone();
    assert!(
        writes.contains(&(reg::COMPLETE, vcpu)),
        "no COMPLETE for vCPU {vcpu}: {writes:?}"
    );
    db.writes.borrow_mut().retain(|w| w.0 != reg::COMPLETE);
    w_ioreq.write_u8(slot + 30, 0);
    w_ioreq.read_u64(slot + 8).unwrap()
}
