//! backend: the reference rust-ioreq backend (docs/backend-abi.md, interface versions 1 and 2),
//! a bare-metal guest that serves virtio-mmio devices (virtio 1.2 §4.2.2; virtio-blk §5.2 and
//! virtio-rng §5.4 from the `virtio-device` crate) to frontend domains.
//!
//! At boot it reads the `rust-ioreq,backend-v1` node of its device tree, checks the doorbell's
//! magic and version (any version from 1), enables the notify SPI in the GICv3 (Xen's vGIC),
//! builds the device models its `rust-ioreq,args` ask for, and, when Xen offers the fast
//! transport (`VERSION` >= 2, `FEATURES` bit 0 and the node's transport and notify pages),
//! publishes a record for every device that is not `rust-ioreq,classic` and writes the
//! transport page's header; then it writes `ONLINE`, prints
//! `SCENARIO <name> PASS backend-online ...`, and serves requests forever (see `server.rs`).
//! Without the node (a Xen without the backend interface) it prints a FAIL line and ends.
//!
//! Bootargs: `scenario=<name>` (guest-common), and
//! - `backend.exit-after=<n>`: stop after `n` requests, print the statistics and
//!   `SCENARIO <name> END`, and power off (Xen then answers the frontends' accesses itself:
//!   docs/backend-abi.md "When a backend dies"); or `backend.silent-after=<n>`: stop answering
//!   after `n` requests but stay alive, as a backend that hangs (docs/backend-abi.md
//!   "Timeouts"). Both count round trips (requests in the ioreq slots), not posted notifies;
//! - `backend.abi=1`: behave as a pure version-1 backend whatever Xen offers (never touch the
//!   transport page: every access is a round trip); `backend.abi=2`: require the fast
//!   transport (FAIL if Xen does not offer it); default: use it when offered;
//! - `backend.poll=1`: set `polling` in the transport page and busy-poll the notify counts and
//!   ioreq slots instead of sleeping (Xen sends no notify SPI then; needs the fast transport);
//! - `backend.stats-ms=<n>`: print a device's `backend: stats:` line at most every `n` ms when
//!   its counters changed (default 60000: a shared interactive console stays readable; 0: only
//!   at `exit-after`/`silent-after`); never while busy-polling.
//!
//! It runs with the MMU and caches on (guest-common `mmu`): its RAM, its frontends' RAM windows
//! and, once it has remapped them from its device tree, its ioreq pages are Normal Write-Back
//! Inner Shareable, as Xen and the frontends map them; the doorbell and the vGIC are Device.
//! `SCENARIO <name> PASS mmu-on ...` says so. Ordering between this backend and Xen or a
//! frontend on other CPUs comes from `dmb ish` where the protocols need it (`ioreq.rs`,
//! `window.rs`).

#![no_std]
#![no_main]
// aarch64 only: usize and u64 have the same width, and the narrowing casts that remain are of
// values bounded just before them (slot indices, queue indices, decimal digits).
#![allow(clippy::cast_possible_truncation)]

mod config;
mod copy;
mod devices;
mod fast;
mod ioreq;
mod server;
mod window;

use guest_common::gic::{self, GicError};
use guest_common::mmu::{self, Probe};
use guest_common::{entry, println, scenario, timer, Boot, DeviceTree};
use virtio_device::{Gpa, GuestMemory};

use crate::config::{Config, FastPages};
use crate::devices::{Model, Pool};
use crate::fast::{NotifyPage, TransportPage, FEATURE_FAST};
use crate::ioreq::{Doorbell, DOORBELL_MAGIC, DOORBELL_MIN_VERSION};
use crate::server::{FastTransport, Path, Server};
use crate::window::Window;

entry!(main);

/// Default least time between two unsolicited statistics prints: a minute, so that a console
/// a person types on (`make run DEMO=linux`, where Linux's hwrng thread reads every few seconds)
/// is not interrupted every time a device serves something.
const STATS_EVERY_MS: u64 = 60_000;

/// The check name of the one PASS/FAIL line the backend prints.
const CHECK: &str = "backend-online";

/// Which interface version the backend uses (`backend.abi`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Abi {
    /// The fast transport if Xen offers it, else version 1.
    #[default]
    Best,
    /// Version 1 only: the transport page is never touched.
    Version1,
    /// The fast transport, or a FAIL.
    Version2,
}

/// The backend's own bootargs.
#[derive(Debug, Default)]
struct Options {
    exit_after: Option<u64>,
    silent_after: Option<u64>,
    abi: Abi,
    poll: bool,
    /// Least time between two unsolicited statistics prints (0: none).
    stats_ms: Option<u64>,
    /// A `backend.` word that did not parse.
    bad: Option<&'static str>,
}

impl Options {
    fn parse(bootargs: &'static str) -> Self {
        let mut o = Options::default();
        for word in bootargs.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("backend.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            match (key, value.parse::<u64>()) {
                ("exit-after", Ok(n)) => o.exit_after = Some(n),
                ("silent-after", Ok(n)) => o.silent_after = Some(n),
                ("abi", Ok(1)) => o.abi = Abi::Version1,
                ("abi", Ok(2)) => o.abi = Abi::Version2,
                ("poll", Ok(n @ (0 | 1))) => o.poll = n == 1,
                ("stats-ms", Ok(n)) => o.stats_ms = Some(n),
                _ => o.bad = Some(word),
            }
        }
        o
    }
}

fn main(boot: &Boot) {
    let boot_ticks = timer::now();
    let dt = match boot.device_tree() {
        Ok(dt) => dt,
        Err(e) => return fail(format_args!("device tree: {e}")),
    };
    let options = Options::parse(dt.bootargs().unwrap_or(""));
    if let Some(word) = options.bad {
        return fail(format_args!(
            "bad bootarg {word} (backend.exit-after=<n>, backend.silent-after=<n>, \
             backend.abi=<1|2>, backend.poll=<0|1>, backend.stats-ms=<n>)"
        ));
    }
    if options.poll && options.abi == Abi::Version1 {
        return fail(format_args!(
            "backend.poll=1 needs the fast transport's page, and backend.abi=1 never uses it"
        ));
    }
    let config = match config::parse(&dt) {
        Ok(c) => c,
        Err(e) => return fail(format_args!("{e}")),
    };
    for fe in config.frontends() {
        if fe.ioreq_page == config.doorbell {
            return fail(format_args!(
                "frontend@{}: rust-ioreq,ioreq-page {:#x} is the doorbell page (reg)",
                fe.index, fe.ioreq_page
            ));
        }
        // SAFETY: `ioreq_page` is the frontend's ioreq page from this domain's backend node: RAM
        // Xen shares with this domain, which nothing here has touched yet (the server reads it
        // later); only this vCPU runs.
        if let Err(e) = unsafe { mmu::map_shared_ram_page(fe.ioreq_page) } {
            return fail(format_args!(
                "frontend@{}: rust-ioreq,ioreq-page: cannot map it Normal: {e}",
                fe.index
            ));
        }
        if !mmu::is_ram(fe.window.base, fe.window.size) {
            return fail(format_args!(
                "frontend@{}: rust-ioreq,ram-window {} is not inside Xen's GUEST_RAM0/1 layout, \
                 which the stage-1 map has as Normal memory",
                fe.index, fe.window
            ));
        }
    }

    // SAFETY: `config.doorbell` is the `reg` of the backend node: the doorbell page Xen emulates
    // for this domain.
    let doorbell = unsafe { Doorbell::new(config.doorbell) };
    let (magic, version) = (doorbell.magic(), doorbell.version());
    // Later versions keep everything version 1 offers (docs/backend-abi.md).
    if magic != DOORBELL_MAGIC || version < DOORBELL_MIN_VERSION {
        return fail(format_args!(
            "doorbell at {:#x}: magic {magic:#x} version {version}, want {DOORBELL_MAGIC:#x} \
             version >= {DOORBELL_MIN_VERSION}",
            config.doorbell
        ));
    }
    let features = doorbell.features();
    let pages = match choose_abi(&options, version, features, config.fast) {
        Ok(p) => p,
        Err(why) => return fail(format_args!("{why}")),
    };
    if let Some(p) = pages {
        for (what, page) in [
            ("rust-ioreq,transport-page", p.transport),
            ("rust-ioreq,notify-page", p.notify),
        ] {
            // SAFETY: `page` is one of the version-2 pages of this domain's backend node: RAM
            // Xen shares with this domain, which nothing here has touched yet; only this vCPU
            // runs.
            if let Err(e) = unsafe { mmu::map_shared_ram_page(page) } {
                return fail(format_args!("{what}: cannot map it Normal: {e}"));
            }
        }
    }
    check_mmu(boot, &config, pages);
    if let Err(e) = init_gic(&config) {
        return fail(format_args!("GICv3: {e}"));
    }

    let Some(mut pool) = free_ram(boot, &dt) else {
        return fail(format_args!("cannot find this guest's RAM bank in /memory"));
    };
    let ram = pool.left();
    let mut models = [const { None::<Model> }; config::MAX_DEVICES];
    let mut broken = 0;
    for (model, dev) in models.iter_mut().zip(config.devices()) {
        match devices::parse(dev.args)
            .and_then(|spec| devices::build(spec, dev.index, boot_ticks, &mut pool))
        {
            Ok(m) => *model = Some(m),
            Err(why) => {
                broken += 1;
                scenario::check(
                    CHECK,
                    false,
                    format_args!("dev{}: args \"{}\": {why}", dev.index, dev.args),
                );
            }
        }
    }
    describe(&config, &models, ram);
    check_window_guard(&config);

    // SAFETY: the pages of this domain's backend node, mapped Normal above.
    let fast = pages.map(|p| unsafe {
        FastTransport {
            transport: TransportPage::new(p.transport),
            notify: NotifyPage::new(p.notify),
            polling: options.poll,
        }
    });
    let mut server = Server::new(
        &config,
        doorbell,
        fast,
        &mut models.into_iter(),
        options.exit_after,
        options.silent_after,
        options.stats_ms.unwrap_or(STATS_EVERY_MS),
    );
    describe_paths(&server);
    doorbell.online();
    let frontends = config.frontends().count();
    let devices = config.devices().count();
    let published = server
        .paths()
        .filter(|(_, p)| matches!(p, Path::Fast { .. }))
        .count();
    scenario::check(
        CHECK,
        broken == 0,
        format_args!(
            "doorbell v{version} at {:#x} (features {features:#x}), notify {}, {frontends} \
             frontend(s), {devices} device(s), {}{}",
            config.doorbell,
            config.notify,
            Interface {
                fast: pages.is_some(),
                published,
                polling: options.poll,
                poll_us: pages.and_then(|p| p.poll_us),
            },
            match (options.exit_after, options.silent_after) {
                (Some(_), _) => ", exits after backend.exit-after requests",
                (None, Some(_)) => ", falls silent after backend.silent-after requests",
                (None, None) => "",
            }
        ),
    );
    server.run();
    println!("backend: served {} requests, exiting", server.served());
    scenario::end();
}

/// Decides whether to use the fast transport: it needs `VERSION` >= 2, `FEATURES` bit 0 and the
/// node's pages, and `backend.abi` not 1. Returns the pages to use, or why the bootargs cannot
/// be honoured.
fn choose_abi(
    options: &Options,
    version: u32,
    features: u32,
    pages: Option<FastPages>,
) -> Result<Option<FastPages>, &'static str> {
    if options.abi == Abi::Version1 {
        return Ok(None);
    }
    let offered = match pages {
        Some(p) if version >= 2 && features & FEATURE_FAST != 0 => Some(p),
        _ => None,
    };
    match offered {
        Some(p) => Ok(Some(p)),
        None if options.abi == Abi::Version2 || options.poll => Err(
            "backend.abi=2 or backend.poll=1, but Xen does not offer the fast transport \
             (doorbell VERSION >= 2, FEATURES bit 0, rust-ioreq,transport-page and \
             rust-ioreq,notify-page)",
        ),
        None => Ok(None),
    }
}

/// How this backend talks to Xen, for the `backend-online` line.
struct Interface {
    fast: bool,
    published: usize,
    polling: bool,
    /// `rust-ioreq,poll-us`, if Xen set it.
    poll_us: Option<u32>,
}

impl core::fmt::Display for Interface {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !self.fast {
            return f.write_str("interface version 1 (every access a round trip)");
        }
        write!(
            f,
            "fast transport, {} record(s) published{}",
            self.published,
            if self.polling { ", polling" } else { "" }
        )?;
        match self.poll_us {
            Some(us) => write!(f, " (Xen spins up to {us} us for an answer)"),
            None => Ok(()),
        }
    }
}

/// Prints how each device's accesses reach this backend.
fn describe_paths(server: &Server) {
    for (index, path) in server.paths() {
        println!("backend:   dev{index}: {path}");
    }
}

/// Prints the FAIL line and END; the backend then powers off.
fn fail(why: core::fmt::Arguments<'_>) {
    scenario::check(CHECK, false, why);
    scenario::end();
}

/// Checks that the MMU and caches are on and that what this backend shares with Xen and its
/// frontends is Normal Write-Back memory (every ioreq page; every RAM window, at the first RAM
/// bank of the frontend, or its base without `rust-ioreq,ram`) and that the doorbell is Device.
/// Test added for the MMU-on guests; fails on d2a38d4 (MMU off). With the fast transport, the
/// transport and notify pages must be Normal too.
fn check_mmu(boot: &Boot, config: &Config, pages: Option<FastPages>) {
    let mut expect = [Probe::device("doorbell", config.doorbell); 3 + 2 * config::MAX_FRONTENDS];
    let mut n = 1;
    if let Some(p) = pages {
        expect[1] = Probe::ram("transport-page", p.transport);
        expect[2] = Probe::ram("notify-page", p.notify);
        n = 3;
    }
    for fe in config.frontends() {
        let first_ram = if fe.ram_banks > 0 { fe.ram[0].base } else { 0 };
        expect[n] = Probe::ram("ioreq-page", fe.ioreq_page);
        expect[n + 1] = Probe::ram("ram-window", fe.window.base + first_ram);
        n += 2;
    }
    mmu::check("mmu-on", Some(boot), &expect[..n]);
}

/// Enables the distributor, this vCPU's interface, and the notify SPI, routed here.
fn init_gic(config: &Config) -> Result<(), GicError> {
    gic::init_distributor()?;
    gic::init_cpu()?;
    gic::enable(config.notify, config.trigger)
}

/// Checks, on each frontend's window, that buffers outside the frontend's RAM fail cleanly
/// instead of crashing the backend: frontend GPA 0 is never RAM in a dom0less domU (RAM starts
/// at GUEST_RAM0_BASE 0x40000000), so docs/backend-abi.md says it is not mapped in the window.
///
/// With `rust-ioreq,ram` the accesses are refused by the bank check before any load: one at GPA
/// 0, one straddling the end of the first bank, one wrapping the address space, none may
/// succeed, and 8 bytes at the first bank's base must read (the banks are mapped). A backend
/// that touched an unmapped page here would take a data abort nobody expects and panic. Without
/// the property only GPA 0 is probed, and the expected-fault path must catch its data abort.
fn check_window_guard(config: &Config) {
    const CHECK: &str = "backend-window-guard";
    for fe in config.frontends() {
        let window = Window::new(*fe);
        let mut probe = [0u8; 8];
        let at_zero = window.read(Gpa(0), &mut probe);
        if !window.has_banks() {
            scenario::check(
                CHECK,
                at_zero.is_err() && window.faults() > 0,
                format_args!(
                    "frontend {}: no rust-ioreq,ram; 8 bytes at GPA 0 through the window: {}",
                    fe.index,
                    match at_zero {
                        Ok(()) => "readable (the window maps more than RAM)",
                        Err(_) if window.faults() > 0 => "data abort caught, access refused",
                        Err(_) => "refused without a data abort (GPA 0 outside the window?)",
                    }
                ),
            );
            continue;
        }
        let bank = fe.ram[0];
        let straddle = window.read(Gpa(bank.end().saturating_sub(4)), &mut probe);
        let wrap = window.read(Gpa(u64::MAX - 3), &mut probe);
        let inside = window.read(Gpa(bank.base), &mut probe);
        let refused = |r: &Result<(), _>| if r.is_err() { "refused" } else { "ACCEPTED" };
        scenario::check(
            CHECK,
            at_zero.is_err() && straddle.is_err() && wrap.is_err() && inside.is_ok(),
            format_args!(
                "frontend {}: 8 bytes through the window at GPA 0 {}, across the end of bank {} \
                 {}, at {:#x} (wraps) {}, by the RAM bank list; at the bank's base {}",
                fe.index,
                refused(&at_zero),
                bank,
                refused(&straddle),
                u64::MAX - 3,
                refused(&wrap),
                if inside.is_ok() { "read" } else { "REFUSED" },
            ),
        );
    }
}

/// Formats a frontend's RAM bank list for [`describe`].
struct Banks<'a>(&'a [config::Range]);

impl core::fmt::Display for Banks<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_empty() {
            return f
                .write_str(" (no rust-ioreq,ram: bounds from the window only, buffers probed)");
        }
        f.write_str(", RAM")?;
        for bank in self.0 {
            write!(f, " {bank}")?;
        }
        Ok(())
    }
}

/// Prints what the backend serves.
fn describe(config: &Config, models: &[Option<Model>], ram: usize) {
    for fe in config.frontends() {
        println!(
            "backend: frontend {} ({}, domid {}): {} vCPU(s), ioreq page {:#x}, RAM window {}{}",
            fe.index,
            fe.name,
            fe.domid.map_or(-1, i64::from),
            fe.vcpus,
            fe.ioreq_page,
            fe.window,
            Banks(&fe.ram[..fe.ram_banks]),
        );
    }
    for (dev, model) in config.devices().zip(models) {
        let kind = model.as_ref().map_or("(none)", Model::kind);
        println!(
            "backend:   dev{} {kind} at {} of frontend {}: \"{}\"",
            dev.index,
            dev.mmio,
            config.frontend(dev.frontend).map_or(u32::MAX, |f| f.index),
            dev.args
        );
    }
    println!("backend: {} KiB of free RAM for disks", ram / 1024);
}

/// Returns the pool of this guest's free RAM: the rest of the memory bank holding the image,
/// after the image, and before the device tree if Xen placed it above the image.
fn free_ram(boot: &Boot, dt: &DeviceTree) -> Option<Pool> {
    extern "C" {
        /// End of the image, its .bss and stacks included (guest-common's link.ld).
        static __image_end: u8;
    }
    let image_end = (&raw const __image_end) as usize;
    let bank = dt
        .memory_regions()
        .find(|r| r.base < image_end && image_end <= r.base.saturating_add(r.size))?;
    let start = image_end.checked_add(0xfff)? & !0xfff;
    let mut end = bank.base.saturating_add(bank.size);
    let (fdt_start, fdt_end) = (
        boot.fdt_addr(),
        boot.fdt_addr().saturating_add(dt.total_size()),
    );
    if fdt_start >= start && fdt_start < end {
        end = fdt_start & !0xfff;
    } else if fdt_end > start && fdt_start < start {
        // Never seen (Xen puts the tree above the image), but keep clear of it.
        return None;
    }
    // SAFETY: `[start, end)` is in this guest's RAM bank, after its image, .bss and stacks and
    // before its device tree; Xen loads nothing else into a dom0less domU without an initrd,
    // and nothing in this guest uses memory it did not get from its image or this pool.
    Some(unsafe { Pool::new(start, end) })
}
