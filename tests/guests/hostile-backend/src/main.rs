//! hostile-backend: a rust-ioreq backend (docs/backend-abi.md) that breaks the interface on
//! purpose and checks what Xen does about it. It reads the same `rust-ioreq,backend-v1` node as
//! the reference backend (whose `config.rs` it shares as source), finds its doorbell, ioreq page
//! and notify SPI, writes `ONLINE`, and then, by the bootarg `hostile.mode=`:
//!
//! - `attack` (`attack.rs`): every attack that leaves it alive, one check line each, then
//!   `SCENARIO <name> END`, then it idles forever without its ioreq page;
//! - `slot-backwards`, `idle-slot` (`crashers.rs`): the two attacks Xen answers by crashing the
//!   backend.
//!
//! Its victim is a `hostile-frontend` in victim mode; both follow `contract.rs` (what each read
//! answers, what each store carries). `hostile.timeout-ms=<n>` gives the attacker its own
//! `xen,ioreq-timeout-ms` (the device tree does not carry it).
//!
//! The MMU stays off (guest-common): every access to the ioreq page and the doorbell is an
//! aligned single access to Device memory.

#![no_std]
#![no_main]
// aarch64 only: usize and u64 have the same width; narrowing casts are of bounded values.
#![allow(clippy::cast_possible_truncation)]

mod attack;
// The reference backend's device-tree reader, shared as source (guests are binaries).
#[allow(dead_code)]
#[path = "../../backend/src/config.rs"]
mod config;
// Shared as source with the victim, which uses all of it.
#[allow(dead_code)]
mod contract;
mod crashers;
mod doorbell;
// The hostile frontend's single-instruction accessors, shared as source.
#[allow(dead_code)]
#[path = "../../hostile-frontend/src/insn.rs"]
mod insn;
mod serve;
mod slot;

use core::arch::asm;

use guest_common::{entry, println, scenario, Boot};
use guest_common::{gic, mmu};

use crate::doorbell::Doorbell;
use crate::serve::Server;

entry!(main);

/// The MPIDR affinity of vCPU 1: Xen gives vCPU n Aff0 = n % 16, Aff1 = n / 16.
const VCPU1_MPIDR: u64 = 1;

fn main(boot: &Boot) {
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => return fail(format_args!("device tree: {e}")),
    };
    let mut mode = None;
    let mut timeout_ms = None;
    for word in dt.bootargs().unwrap_or("").split_ascii_whitespace() {
        if let Some(m) = word.strip_prefix("hostile.mode=") {
            mode = Some(m);
        } else if let Some(t) = word.strip_prefix("hostile.timeout-ms=") {
            timeout_ms = t.parse::<u64>().ok();
        } else if word.starts_with("hostile.") {
            return fail(format_args!("cannot use {word}"));
        }
    }
    let config = match config::parse(&dt) {
        Ok(c) => c,
        Err(e) => return fail(format_args!("{e}")),
    };
    // SAFETY: the `reg` of the backend node: the doorbell page Xen emulates for this domain.
    let db = unsafe { Doorbell::new(config.doorbell) };
    if db.read(doorbell::MAGIC) != Ok(doorbell::MAGIC_VALUE) {
        return fail(format_args!("no doorbell at {:#x}", config.doorbell));
    }
    if let Err(e) = gic::init_distributor()
        .and_then(|()| gic::init_cpu())
        .and_then(|()| gic::enable(config.notify, config.trigger))
    {
        return fail(format_args!("GICv3: {e}"));
    }
    let Some(mut server) = Server::new(&config, db) else {
        return fail(format_args!("no frontend in the backend node"));
    };
    // The slots are RAM Xen reads and writes through cacheable mappings: map the page Normal as
    // the reference backend does (coherent on hardware, not only under QEMU TCG).
    // SAFETY: `ioreq_page` is this backend's ioreq page from its backend node: RAM Xen shares
    // with this domain, not yet touched here; only this vCPU runs.
    if let Err(e) = unsafe { mmu::map_shared_ram_page(server.ioreq_page) } {
        return fail(format_args!(
            "rust-ioreq,ioreq-page {:#x}: cannot map it Normal: {e}",
            server.ioreq_page
        ));
    }
    let online = db.write(doorbell::ONLINE, 1);
    println!(
        "hostile-backend: mode {}, frontend {} with {} vCPU(s), {} device(s), ioreq page {:#x}, \
         ONLINE {}",
        mode.unwrap_or("(none)"),
        server.k,
        server.vcpus,
        server.ndevices,
        server.ioreq_page,
        if online.is_ok() {
            "accepted"
        } else {
            "REFUSED"
        }
    );
    match (mode, timeout_ms) {
        (Some("attack"), Some(ms)) => {
            attack::run(&mut server, &[0, VCPU1_MPIDR], ms);
            scenario::end();
        }
        (Some("slot-backwards"), _) => {
            crashers::slot_backwards(&mut server);
            scenario::end();
        }
        (Some("idle-slot"), _) => crashers::idle_slot(&mut server),
        _ => {
            return fail(format_args!(
                "want hostile.mode=attack (with hostile.timeout-ms=<n>), slot-backwards or \
                 idle-slot"
            ))
        }
    }
    // Stay alive (a backend that shuts down is a different test): nothing is served any more.
    loop {
        // SAFETY: `wfi` waits for an interrupt; it touches no memory.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// Prints a FAIL line and END; the domain then powers off.
fn fail(why: core::fmt::Arguments<'_>) {
    scenario::check("hostile-backend", false, why);
    scenario::end();
}
