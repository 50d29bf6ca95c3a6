//! hostile-frontend: a frontend test guest that does to its virtio-mmio regions what a driver
//! never would, and checks what Xen (with rust-ioreq) does about it. Three modes, chosen by the
//! bootarg `hostile.mode=`:
//!
//! - `attack` (`attack.rs`, scenario `hostile-frontend`): ISV=0 forms (pairs, write-back,
//!   exclusives, SIMD registers, DC ZVA), every width, misaligned and straddling accesses,
//!   storms from both vCPUs, and accesses to a device whose backend powered off;
//! - `victim` (`victim.rs`, scenario `hostile-backend`): issues verifiable register accesses to
//!   devices served by hostile backends and checks that every answer Xen hands back is the
//!   backend's (masked and sign-extended as the instruction asks) or all ones, and that no
//!   access hangs;
//! - `silent` (`silent.rs`, scenario `silent-backend`): reads a device whose backend stops
//!   answering and checks the response timeout.
//!
//! Every check prints one `SCENARIO <name> PASS|FAIL <check> <what Xen did>` line; the guest
//! ends with `SCENARIO <name> END` and powers off.

#![no_std]
#![no_main]
// aarch64 only: usize and u64 have the same width; narrowing casts are of bounded values.
#![allow(clippy::cast_possible_truncation)]

mod attack;
// What the hostile backends and this guest's victim mode agree on, shared as source.
#[path = "../../hostile-backend/src/contract.rs"]
mod contract;
// The frontend guest's device-tree reader, shared as source (guests are binaries, not
// libraries); this guest does not use all of it.
#[allow(dead_code)]
#[path = "../../frontend/src/dt.rs"]
mod dt;
mod insn;
mod outcome;
mod silent;
mod victim;
mod worker;

use guest_common::{entry, println, scenario, Boot};

entry!(main);

/// The bootargs of this guest (`hostile.<key>=<value>` words).
#[derive(Debug, Default)]
pub struct Args {
    /// `hostile.mode=`: attack, victim or silent.
    pub mode: Option<&'static str>,
    /// `hostile.answered=<n>`: requests the device's backend answers before it powers off
    /// (attack) or falls silent (silent).
    pub answered: Option<u64>,
    /// `hostile.timeout-ms=<n>`: the response timeout of the backend under test.
    pub timeout_ms: Option<u64>,
    /// `hostile.crashers=<n>`: victim mode: the last `n` devices belong to backends Xen must
    /// crash, one each.
    pub crashers: Option<u64>,
    /// A `hostile.` word that did not parse.
    pub bad: Option<&'static str>,
}

impl Args {
    fn parse(bootargs: &'static str) -> Self {
        let mut a = Args::default();
        for word in bootargs.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("hostile.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let number = value.parse::<u64>().ok();
            match (key, number) {
                ("mode", _) => a.mode = Some(value),
                ("answered", Some(n)) => a.answered = Some(n),
                ("timeout-ms", Some(n)) => a.timeout_ms = Some(n),
                ("crashers", Some(n)) => a.crashers = Some(n),
                _ => a.bad = Some(word),
            }
        }
        a
    }
}

fn main(boot: &Boot) {
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => {
            scenario::check("fdt", false, e);
            scenario::end();
            return;
        }
    };
    let args = Args::parse(dt.bootargs().unwrap_or(""));
    if let Some(word) = args.bad {
        scenario::check("bootargs", false, format_args!("cannot use {word}"));
    }
    let nodes = dt::virtio_nodes(&dt);
    let cpus = dt::cpus(&dt);
    println!(
        "hostile-frontend: mode {}, {} vCPU(s), {} virtio,mmio node(s)",
        args.mode.unwrap_or("(none)"),
        cpus.len(),
        nodes.len()
    );
    for node in nodes.iter() {
        println!("hostile-frontend:   virtio,mmio {node}");
    }
    match args.mode {
        Some("attack") => attack::run(&nodes, &cpus, &args),
        Some("victim") => victim::run(&nodes, &args),
        Some("silent") => silent::run(&nodes, &args),
        other => {
            scenario::check(
                "bootargs",
                false,
                format_args!(
                    "hostile.mode={} is not attack, victim or silent",
                    other.unwrap_or("")
                ),
            );
        }
    }
    scenario::end();
}
