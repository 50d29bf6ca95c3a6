//! hello: the smallest test guest. Reads the device tree Xen generated for it, prints what it
//! was given and checks that the device tree parses, that `/memory` is sane (and matches an
//! optional `mem=<size>[K|M|G]` bootarg), and that the bootargs name a scenario.
//!
//! For testing the harness, `hello.crash=panic` makes it panic and `hello.crash=abort` makes it
//! read an unmapped guest-physical address (Xen injects a data abort) after its checks. Its
//! `mmu-on` check (guest-common `mmu`) shows the MMU and caches on and RAM and MMIO mapped as
//! they must be.

#![no_std]
#![no_main]

use guest_common::devicetree::DeviceTree;
use guest_common::mmu::{self, Probe};
use guest_common::{entry, println, scenario, Boot};

entry!(main);

/// Guest-physical address Xen loads the image at (RAM base + text_offset).
const LOAD_ADDR: usize = 0x4008_0000;

/// A guest-physical address with nothing behind it in a dom0less domU (Xen's arch-arm.h layout).
const UNMAPPED: usize = 0x1000_0000;

fn main(boot: &Boot) {
    println!(
        "hello from a bare-metal Rust guest, device tree at {:#x}",
        boot.fdt_addr()
    );
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => {
            scenario::check("fdt-parse", false, e);
            scenario::end();
            return;
        }
    };
    let root = dt.root_children().count();
    scenario::check(
        "fdt-parse",
        root > 0,
        format_args!("magic ok, {} bytes, {root} nodes under /", dt.total_size()),
    );
    greet(&dt);
    // The address `hello.crash=abort` reads must be MMIO to stage 1, so that the abort comes
    // from Xen's stage 2 (test added for the MMU-on guests; fails on d2a38d4, MMU off).
    mmu::check(
        "mmu-on",
        Some(boot),
        &[Probe::device("unmapped", UNMAPPED as u64)],
    );

    let bootargs = dt.bootargs().unwrap_or("");
    scenario::check(
        "bootargs-scenario",
        scenario::parse_name(bootargs).is_some(),
        format_args!("bootargs=\"{bootargs}\""),
    );

    check_memory(&dt, bootargs);
    match bootargs
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("hello.crash="))
    {
        Some("panic") => panic!("panic requested by hello.crash=panic"),
        Some("abort") => {
            // SAFETY: a volatile read outside any Rust allocation, like an MMIO read, of an aligned
            // address where a dom0less domU has neither RAM nor devices: Xen injects a
            // synchronous data abort, which guest-common's vectors report as a panic.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u32) };
            println!("read {value:#x} from {UNMAPPED:#x} without an abort");
        }
        _ => {}
    }
    scenario::end();
}

/// Prints the root's compatible string (Xen 4.17 gives a domU none) and the nodes under it.
fn greet(dt: &DeviceTree) {
    let compatible = dt
        .root()
        .and_then(|root| root.compatible())
        .map_or("(none)", |c| c.first());
    println!("root compatible: {compatible}; nodes under /:");
    for node in dt.root_children() {
        println!("  /{}", node.name);
    }
}

/// Checks that `/memory` describes RAM holding this image, of the size `mem=` asks for (if given).
fn check_memory(dt: &DeviceTree, bootargs: &str) {
    let mut total: usize = 0;
    let mut holds_image = false;
    for region in dt.memory_regions() {
        println!(
            "memory: {:#x}..{:#x}",
            region.base,
            region.base.saturating_add(region.size)
        );
        total = total.saturating_add(region.size);
        holds_image |= (region.base..region.base.saturating_add(region.size)).contains(&LOAD_ADDR);
    }
    scenario::check(
        "memory-size",
        total > 0,
        format_args!("{} KiB", total / 1024),
    );
    scenario::check(
        "memory-holds-image",
        holds_image,
        format_args!("load address {LOAD_ADDR:#x}"),
    );
    if let Some(arg) = bootargs
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("mem="))
    {
        match parse_size(arg) {
            Some(want) => scenario::check(
                "memory-matches-mem",
                total == want,
                format_args!(
                    "mem={arg} is {} KiB, /memory has {} KiB",
                    want / 1024,
                    total / 1024
                ),
            ),
            None => scenario::check("memory-matches-mem", false, format_args!("bad mem={arg}")),
        };
    }
}

/// Parses `<number>[K|M|G]` (binary units) into bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
}
