//! Checks one board output directory from its files alone (what U-Boot and Xen will see), not
//! from what the generator meant:
//!
//! - dtc reads `host.dtb`, the overlay and ImageBuilder's expected tree back without error;
//! - boot.cmd's loads (parsed from the script) and `booti`: every file inside the tree's RAM,
//!   none overlapping another (Xen with its BSS, the DTB with the room U-Boot adds), the
//!   board's reservations, `/reserved-memory`, `/memreserve/` or any device's registers; Xen
//!   at an address Xen 4.17 can start from; each size check in the script equal to its file;
//! - `/chosen`'s modules are exactly the loaded images, at their addresses and sizes;
//! - Xen's console is the board's UART; the host tree has the board's devices unchanged and
//!   nothing that hands a host device to a domain (passthrough, direct-map, static memory);
//! - every device SPI and notify SPI is inside the SPIs the domain's vGIC has on this board;
//! - `rust-ioreq-check` (the configuration code Xen runs) derives the board's SPI count and
//!   IPA size from the tree as the board table says, and accepts the tree (or refuses it with
//!   the scenario's expected message);
//! - the same for ImageBuilder's predicted placement and tree, and the overlay applies to the
//!   board's tree (`fdtoverlay`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use fdt::Fdt;

use crate::board::{
    arm64_image_size, xen_417_can_start_at, Board, LoadKind, Range, FDT_PAD, LOAD_ALIGN,
    MAX_FDT_SIZE,
};
use crate::devtree::{self, prop_strings, TreeFacts};
use crate::imagebuilder::{self, IbFile, BOARD_DTB, IB_DTB, OVERLAY_DTBO};

/// What a board output must give the configuration checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Xen accepts it.
    Accept,
    /// Xen refuses it with exactly this message.
    Refuse(String),
    /// Xen refuses it for the same node and property as this message (QEMU's); the rest of the
    /// text may count things that depend on the host (P2M pages follow the IPA size).
    RefuseLike(String),
    /// Either: whether Xen refuses it depends on the board (the pCPUs a `sched=null`
    /// configuration needs); a refusal must still be for the same node and property.
    Either(String),
}

/// Returns the `<node path>: property '<name>'` part of a configuration error.
fn error_site(message: &str) -> &str {
    match message.match_indices(": ").nth(1) {
        Some((at, _)) => &message[..at],
        None => message,
    }
}

/// The result of checking one output: the checks that passed, or the first failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// One line per check.
    pub passed: Vec<String>,
    /// What the configuration checker printed first (Xen's banner or its refusal).
    pub verdict: String,
}

/// One region for the overlap checks.
#[derive(Debug, Clone)]
struct Placed {
    what: String,
    range: Range,
}

/// Fails with a message.
macro_rules! fail {
    ($($arg:tt)*) => { return Err(format!($($arg)*)) };
}

/// Runs dtc on a blob and fails on any error.
fn dtc_reads(path: &Path) -> Result<(), String> {
    let out = Command::new(crate::DTC)
        .args(["-q", "-I", "dtb", "-O", "dts", "-o", "/dev/null"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dtc: {e}"))?;
    if !out.status.success() {
        fail!(
            "dtc cannot read {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Size of the file at `path` (symbolic links followed).
fn file_size(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a `0x` hexadecimal number.
fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// What boot.cmd does: its loads (address, file, size the script checks) and `booti`.
#[derive(Debug, Default)]
struct Script {
    loads: Vec<(u64, String, Option<u64>)>,
    booti: Option<(u64, u64)>,
    /// The slot its header gives the script itself.
    own_slot: Option<Range>,
}

/// Parses boot.cmd as U-Boot would run it (only the commands the generator writes).
fn parse_script(text: &str) -> Result<Script, String> {
    let mut s = Script::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["#", range_start, range_end, "boot.scr", ..] = words.as_slice() {
            let start = range_start.trim_start_matches('[').trim_end_matches(',');
            let end = range_end.trim_end_matches(')');
            if let (Some(start), Some(end)) = (hex(start), hex(end)) {
                s.own_slot = Some(Range { start, end });
            }
            continue;
        }
        if line.starts_with('#') || words.is_empty() {
            continue;
        }
        // `if test "${rio_ok}" = yes; then ...; booti <xen> - <dtb>; fi`: booti runs only if
        // every load and size check before it passed.
        if let Some(at) = line.find("booti ") {
            if !line.starts_with("if test \"${rio_ok}\" = yes; then ") || s.booti.is_some() {
                fail!("booti line {line:?}: expected one, run only when rio_ok is yes");
            }
            let b: Vec<&str> = line[at..]
                .trim_end_matches("; fi")
                .split_whitespace()
                .collect();
            let [_, xen, "-", dtb] = b.as_slice() else {
                fail!("booti line {line:?}: expected booti <xen> - <dtb>");
            };
            s.booti = Some((
                hex(xen).ok_or("booti: bad address")?,
                hex(dtb).ok_or("booti: bad address")?,
            ));
            continue;
        }
        match words[0] {
            "if" if line.contains("${filesize}") => {
                if !line.ends_with("setenv rio_ok no; fi") {
                    fail!("size check {line:?} does not stop the boot");
                }
                let want = line
                    .split('"')
                    .nth(3)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("size check {line:?}: no size"))?;
                let Some(last) = s.loads.last_mut() else {
                    fail!("size check before any load: {line:?}");
                };
                last.2 = Some(want);
            }
            "if" | "echo" | "setenv" => {}
            _ => {
                // `<load command...> <address> <file> || setenv rio_ok no`: a failed load
                // must keep booti from running.
                let Some(load) = line.strip_suffix(" || setenv rio_ok no") else {
                    fail!("boot.cmd line {line:?}: not a load whose failure stops the boot");
                };
                let words: Vec<&str> = load.split_whitespace().collect();
                let n = words.len();
                match (n >= 3).then(|| hex(words[n - 2])).flatten() {
                    Some(addr) => s.loads.push((addr, words[n - 1].to_owned(), None)),
                    None => fail!("boot.cmd line not understood: {line:?}"),
                }
            }
        }
    }
    Ok(s)
}

/// Checks that no two regions overlap and none meets a forbidden one.
fn no_overlaps(placed: &[Placed], forbidden: &[Placed]) -> Result<(), String> {
    for (i, a) in placed.iter().enumerate() {
        for b in &placed[i + 1..] {
            if a.range.overlaps(&b.range) {
                fail!("{} {} overlaps {} {}", a.what, a.range, b.what, b.range);
            }
        }
        for f in forbidden {
            if a.range.overlaps(&f.range) {
                fail!("{} {} overlaps {} {}", a.what, a.range, f.what, f.range);
            }
        }
    }
    Ok(())
}

/// Checks that every region lies inside one RAM bank.
fn in_ram(placed: &[Placed], ram: &[Range]) -> Result<(), String> {
    for p in placed {
        if !ram.iter().any(|r| r.contains(&p.range)) {
            fail!("{} {} is not inside RAM {ram:?}", p.what, p.range);
        }
    }
    Ok(())
}

/// The regions nothing may be loaded into, named.
fn forbidden(board: &Board, facts: &TreeFacts) -> Vec<Placed> {
    let mut out: Vec<Placed> = board
        .reserved
        .iter()
        .map(|r| Placed {
            what: format!("the board's reservation ({})", r.why),
            range: r.range,
        })
        .collect();
    out.extend(facts.reserved_memory.iter().map(|r| Placed {
        what: format!("/reserved-memory {}", r.path),
        range: r.range,
    }));
    out.extend(facts.memreserve.iter().map(|r| Placed {
        what: "/memreserve/".to_owned(),
        range: *r,
    }));
    out.extend(facts.devices.iter().map(|d| Placed {
        what: format!("device {}", d.path),
        range: d.range,
    }));
    out
}

/// RAM the checks use: the tree's `/memory` (the generator wrote the board's assumed banks
/// into host.dtb when the board's own tree had none).
fn ram(facts: &TreeFacts) -> Result<Vec<Range>, String> {
    if facts.memory.is_empty() {
        fail!("host.dtb has no /memory");
    }
    Ok(facts.memory.clone())
}

/// Checks the SPIs each domain's devices and notify page use against its vGIC.
fn check_spis(dtb: &[u8], board: &Board) -> Result<usize, String> {
    let fdt = Fdt::new(dtb).map_err(|e| format!("host.dtb: {e:?}"))?;
    let chosen = fdt.find_node("/chosen").ok_or("host.dtb has no /chosen")?;
    let u32_of = |v: &[u8]| {
        v.get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut seen = 0;
    for d in chosen.children() {
        if !prop_strings(&d, "compatible")
            .iter()
            .any(|c| c == "xen,domain")
        {
            continue;
        }
        let nr_spis = d
            .property("nr_spis")
            .and_then(|p| u32_of(p.value))
            .unwrap_or(board.default_nr_spis());
        let limit = 32 + nr_spis;
        let mut spis = Vec::new();
        if d.property("xen,ioreq-server").is_some() {
            // Xen's default notify SPI (rust-ioreq's DEFAULT_NOTIFY_SPI) when unset.
            spis.push((
                "xen,ioreq-notify-spi".to_owned(),
                d.property("xen,ioreq-notify-spi")
                    .and_then(|p| u32_of(p.value))
                    .unwrap_or(44),
            ));
        }
        for v in d.children() {
            if prop_strings(&v, "compatible")
                .iter()
                .any(|c| c == "xen,virtio-mmio-device")
            {
                if let Some(spi) = v.property("interrupts").and_then(|p| u32_of(p.value)) {
                    spis.push((format!("{}/interrupts", v.name), spi));
                }
            }
        }
        for (what, spi) in spis {
            if !(32..limit).contains(&spi) {
                fail!(
                    "/chosen/{}: {what} = {spi} is outside the domain's vGIC SPIs 32..{limit} \
                     (nr_spis {nr_spis} on {})",
                    d.name,
                    board.name
                );
            }
            seen += 1;
        }
    }
    Ok(seen)
}

/// Runs the configuration checker on `dtb` without options and with the board's, checks that
/// it derives the board's values, and returns its first line; fails unless its verdict is
/// `expect`.
fn run_checker(
    checker: &Path,
    dtb: &Path,
    board: &Board,
    expect: &Expect,
) -> Result<String, String> {
    let run = |args: &[String]| {
        Command::new(checker)
            .args(args)
            .arg(dtb)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", checker.display()))
    };
    let derived = run(&[])?;
    let text = String::from_utf8_lossy(&derived.stdout).into_owned();
    let want = format!(
        "gic_spis={} ipa_bits={}",
        board.default_nr_spis(),
        board.ipa_bits
    );
    if derived.status.code() == Some(0) && !text.contains(&want) {
        fail!("rust-ioreq-check derives other host values than the board table ({want}):\n{text}");
    }
    let out = run(&[
        "--gic-spis".to_owned(),
        board.default_nr_spis().to_string(),
        "--ipa-bits".to_owned(),
        board.ipa_bits.to_string(),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap_or("").to_owned();
    let got = first.strip_prefix("(XEN) rust-ioreq: invalid configuration: ");
    let ok = match (out.status.code(), expect) {
        (Some(0), Expect::Accept | Expect::Either(_)) => first.starts_with("(XEN) rust-ioreq v"),
        (Some(1), Expect::Refuse(m)) => got == Some(m.as_str()),
        (Some(1), Expect::RefuseLike(m) | Expect::Either(m)) => {
            got.is_some_and(|g| error_site(g) == error_site(m))
        }
        _ => false,
    };
    if !ok {
        fail!(
            "rust-ioreq-check on {} (exit {:?}), expected {expect:?}:\n{text}{}",
            dtb.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(first)
}

/// Returns the bytes a device tree blob uses (its header's string block end; a blob may be
/// padded beyond, as QEMU's dumps are).
fn fdt_used_size(blob: &[u8]) -> u64 {
    let be = |at: usize| {
        blob.get(at..at + 4).map_or(0, |b| {
            u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        })
    };
    // off_dt_strings at 12, size_dt_strings at 32; the structure block comes before it.
    be(12) + be(32)
}

/// Reads `KEY="value"` / `KEY[n]="value"` lines of an ImageBuilder config.
fn ib_value(cfg: &str, key: &str) -> Option<String> {
    cfg.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches('"').to_owned())
    })
}

/// Checks one output directory (`<out>/<board>/<scenario>/`) of `board`.
pub fn check_board(
    dir: &Path,
    board: &Board,
    expect: &Expect,
    checker: &Path,
) -> Result<Checked, String> {
    let mut passed = Vec::new();
    let host_dtb_path = dir.join("host.dtb");
    for f in [
        "host.dtb",
        OVERLAY_DTBO,
        IB_DTB,
        "imagebuilder-expected.dtb",
        BOARD_DTB,
    ] {
        dtc_reads(&dir.join(f))?;
    }
    passed.push("dtc reads host.dtb, the overlay and ImageBuilder's trees".to_owned());

    let dtb = fs::read(&host_dtb_path).map_err(|e| format!("host.dtb: {e}"))?;
    let facts = devtree::read_facts(&dtb)?;
    let base = fs::read(dir.join(BOARD_DTB)).map_err(|e| format!("{BOARD_DTB}: {e}"))?;
    let base_facts = devtree::read_facts(&base)?;
    let ram = ram(&facts)?;
    let forbidden = forbidden(board, &facts);

    // boot.cmd.
    let text = fs::read_to_string(dir.join("boot.cmd")).map_err(|e| format!("boot.cmd: {e}"))?;
    let script = parse_script(&text)?;
    let Some((xen_addr, dtb_addr)) = script.booti else {
        fail!("boot.cmd has no booti");
    };
    let mut placed = Vec::new();
    let slot = script.own_slot.ok_or("boot.cmd names no slot for itself")?;
    let scr = file_size(&dir.join("boot.scr"))?;
    if scr > slot.size() {
        fail!("boot.scr ({scr} bytes) is larger than its slot {slot}");
    }
    placed.push(Placed {
        what: "boot.scr".to_owned(),
        range: slot,
    });
    let mut loaded: Vec<(u64, String, u64)> = Vec::new();
    for (addr, file, checked) in &script.loads {
        let path = dir.join(file);
        let size = file_size(&path)?;
        if *checked != Some(size) {
            fail!("boot.cmd checks {file} for {checked:?} bytes, the file has {size}");
        }
        if addr % LOAD_ALIGN != 0 {
            fail!("{file} is loaded at {addr:#x}, not on a 2 MiB boundary");
        }
        let span = if *addr == xen_addr {
            let image = fs::read(&path).map_err(|e| format!("{file}: {e}"))?;
            arm64_image_size(&image)
                .ok_or(format!("{file}: not an arm64 Image"))?
                .max(size)
        } else if *addr == dtb_addr {
            if size > MAX_FDT_SIZE {
                fail!("{file}: {size} bytes, Xen takes at most {MAX_FDT_SIZE}");
            }
            size + FDT_PAD
        } else {
            size
        };
        placed.push(Placed {
            what: file.clone(),
            range: Range::sized(*addr, span).ok_or(format!("{file}: empty"))?,
        });
        loaded.push((*addr, file.clone(), size));
    }
    let named = |a: u64| loaded.iter().find(|l| l.0 == a).map(|l| l.1.as_str());
    if named(xen_addr) != Some("xen") || named(dtb_addr) != Some("host.dtb") {
        fail!(
            "booti starts {:?} with the tree {:?}",
            named(xen_addr),
            named(dtb_addr)
        );
    }
    if !xen_417_can_start_at(xen_addr) {
        fail!("Xen at {xen_addr:#x} clashes with Xen 4.17's 1:1 mapping of 0x200000");
    }
    in_ram(&placed, &ram)?;
    no_overlaps(&placed, &forbidden)?;
    passed.push(format!(
        "boot.scr: {} files inside RAM, disjoint, clear of {} reserved and device regions, sizes as checked",
        placed.len(),
        forbidden.len()
    ));

    // /chosen's modules are the loaded images.
    let mut modules: Vec<(u64, u64)> = facts
        .modules
        .iter()
        .map(|m| (m.2.start, m.2.size()))
        .collect();
    let mut images: Vec<(u64, u64)> = loaded
        .iter()
        .filter(|l| l.0 != xen_addr && l.0 != dtb_addr)
        .map(|l| (l.0, l.2))
        .collect();
    modules.sort_unstable();
    images.sort_unstable();
    if modules != images {
        fail!("/chosen's modules {modules:x?} are not the loaded images {images:x?}");
    }
    passed.push(format!(
        "/chosen's {} modules are the loaded images",
        modules.len()
    ));

    // Console, devices, no passthrough.
    let fdt = Fdt::new(&dtb).map_err(|e| format!("host.dtb: {e:?}"))?;
    let bootargs = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("xen,xen-bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_owned();
    let want = format!("dtuart={}", board.console.dtuart);
    if !bootargs.split_whitespace().any(|w| w == want)
        || !bootargs.split_whitespace().any(|w| w == "console=dtuart")
    {
        fail!("Xen's command line {bootargs:?} lacks console=dtuart {want}");
    }
    if facts.resolve(board.console.dtuart) != Some(board.console.path)
        || !devtree::compatible_at(&dtb, board.console.path)
            .iter()
            .any(|c| c == board.console.compatible)
    {
        fail!(
            "{} is not {} ({}) in host.dtb",
            board.console.dtuart,
            board.console.path,
            board.console.compatible
        );
    }
    if facts.devices != base_facts.devices {
        fail!("host.dtb's devices differ from the board's own tree");
    }
    if !facts.passthrough.is_empty() {
        fail!(
            "host.dtb gives host resources to domains: {:?}",
            facts.passthrough
        );
    }
    passed.push(format!(
        "console {} = {}; the board's {} device regions unchanged; no passthrough, direct-map or static memory",
        board.console.dtuart,
        board.console.path,
        facts.devices.len()
    ));

    let spis = check_spis(&dtb, board)?;
    passed.push(format!(
        "{spis} SPIs inside the domains' vGIC SPIs (32..{} by default on {})",
        32 + board.default_nr_spis(),
        board.name
    ));

    let verdict = run_checker(checker, &host_dtb_path, board, expect)?;
    passed.push(format!("rust-ioreq-check: {verdict}"));

    check_imagebuilder(dir, board, expect, checker, &forbidden, &mut passed)?;
    Ok(Checked { passed, verdict })
}

/// The ImageBuilder side: its predicted placement, the overlay, its tree.
fn check_imagebuilder(
    dir: &Path,
    board: &Board,
    expect: &Expect,
    checker: &Path,
    forbidden: &[Placed],
    passed: &mut Vec<String>,
) -> Result<(), String> {
    let cfg = fs::read_to_string(dir.join("imagebuilder.cfg"))
        .map_err(|e| format!("imagebuilder.cfg: {e}"))?;
    let start = ib_value(&cfg, "MEMORY_START")
        .and_then(|v| hex(&v))
        .ok_or("no MEMORY_START")?;
    let end = ib_value(&cfg, "MEMORY_END")
        .and_then(|v| hex(&v))
        .ok_or("no MEMORY_END")?;
    let window = Range { start, end };
    let n: usize = ib_value(&cfg, "NUM_DOMUS")
        .and_then(|v| v.parse().ok())
        .ok_or("no NUM_DOMUS")?;
    let mut files = Vec::new();
    let mut add = |kind, file: String| -> Result<(), String> {
        let size = file_size(&dir.join(&file))?;
        files.push(IbFile { kind, file, size });
        Ok(())
    };
    let mut module = 0;
    for key in ["DOM0_KERNEL", "DOM0_RAMDISK"] {
        if let Some(f) = ib_value(&cfg, key) {
            add(LoadKind::Module(module), f)?;
            module += 1;
        }
    }
    for i in 0..n {
        for key in ["DOMU_KERNEL", "DOMU_RAMDISK"] {
            if let Some(f) = ib_value(&cfg, &format!("{key}[{i}]")) {
                add(LoadKind::Module(module), f)?;
                module += 1;
            }
        }
    }
    add(LoadKind::Xen, ib_value(&cfg, "XEN").ok_or("no XEN")?)?;
    if let Some(overlay) = ib_value(&cfg, "DT_OVERLAY[0]") {
        add(LoadKind::Overlay, overlay)?;
    }
    let tree = ib_value(&cfg, "DEVICE_TREE").ok_or("no DEVICE_TREE")?;
    add(LoadKind::Dtb, tree.clone())?;
    let (loads, next) = imagebuilder::predict_loads(window, &files);
    // U-Boot's `fdt resize 1024` in ImageBuilder's script makes the DTB its used bytes rounded
    // up to 4 KiB plus 0x1024 (fdt_shrink_to_minimum); booti may add FDT_PAD to that.
    let tree_blob = fs::read(dir.join(&tree)).map_err(|e| format!("{tree}: {e}"))?;
    let budget = fdt_used_size(&tree_blob).div_ceil(0x1000) * 0x1000 + 0x1024;
    // uboot-script-gen's own check: MEMORY_END - last address - 2 MiB >= 0.
    if next + LOAD_ALIGN > end {
        fail!("ImageBuilder would refuse: its files end at {next:#x}, MEMORY_END is {end:#x}");
    }
    let mut placed = Vec::new();
    for l in &loads {
        let span = if l.kind == LoadKind::Xen {
            let image = fs::read(dir.join(&l.file)).map_err(|e| format!("{}: {e}", l.file))?;
            arm64_image_size(&image).unwrap_or(0).max(l.size)
        } else if l.kind == LoadKind::Dtb {
            budget + FDT_PAD
        } else {
            l.size.max(l.span)
        };
        placed.push(Placed {
            what: format!("ImageBuilder's {}", l.file),
            range: Range::sized(l.addr, span).ok_or("empty file")?,
        });
    }
    let facts = devtree::read_facts(
        &fs::read(dir.join("imagebuilder-expected.dtb")).map_err(|e| e.to_string())?,
    )?;
    in_ram(&placed, &ram(&facts)?)?;
    no_overlaps(&placed, forbidden)?;
    let mut modules: Vec<(u64, u64)> = facts
        .modules
        .iter()
        .map(|m| (m.2.start, m.2.size()))
        .collect();
    let mut images: Vec<(u64, u64)> = loads
        .iter()
        .filter(|l| matches!(l.kind, LoadKind::Module(_)))
        .map(|l| (l.addr, l.size))
        .collect();
    modules.sort_unstable();
    images.sort_unstable();
    if modules != images {
        fail!("ImageBuilder's tree has modules {modules:x?}, its script loads {images:x?}");
    }
    passed.push(format!(
        "ImageBuilder: {} files inside RAM and MEMORY_END, disjoint (Xen's BSS included), clear of reservations and devices",
        placed.len()
    ));

    // The overlay applies to the board's own tree, and the result fits the space ImageBuilder's
    // `fdt resize 1024` leaves (the tree rounded up to 4 KiB plus 0x1024 bytes).
    let applied = std::env::temp_dir().join(format!("scenario-overlay-{}.dtb", std::process::id()));
    let out = Command::new("fdtoverlay")
        .arg("-i")
        .arg(dir.join(BOARD_DTB))
        .arg("-o")
        .arg(&applied)
        .arg(dir.join(OVERLAY_DTBO))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run fdtoverlay: {e}"))?;
    let _ = fs::remove_file(&applied);
    if !out.status.success() {
        fail!(
            "the overlay does not apply to {BOARD_DTB}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected = file_size(&dir.join("imagebuilder-expected.dtb"))?;
    if expected > budget {
        fail!(
            "ImageBuilder's tree needs {expected} bytes; after `fdt resize 1024` U-Boot has {budget}"
        );
    }
    passed.push(format!(
        "ImageBuilder: the edited {tree} ({expected} bytes) fits `fdt resize 1024` ({budget}); the overlay applies to the board's own tree"
    ));
    let ib_expect = match expect {
        // Domain names differ (domU<n>): only the verdict is compared.
        Expect::Refuse(_) | Expect::RefuseLike(_) | Expect::Either(_) => None,
        Expect::Accept => Some(Expect::Accept),
    };
    if let Some(e) = ib_expect {
        let verdict = run_checker(checker, &dir.join("imagebuilder-expected.dtb"), board, &e)?;
        passed.push(format!(
            "rust-ioreq-check on ImageBuilder's tree: {verdict}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_parsing() {
        let text = "#   [0x048000000, 0x048200000) boot.scr                     (this script)\n\
                    if test -z \"${devtype}\"; then setenv devtype mmc; fi\n\
                    echo \"x\"\n\
                    setenv rio_ok yes\n\
                    load ${devtype} ${devnum}:${distro_bootpart} 0x48200000 xen || setenv rio_ok no\n\
                    if test \"${filesize}\" != \"1a2b\"; then echo \"no\"; setenv rio_ok no; fi\n\
                    tftpboot 0x48400000 host.dtb || setenv rio_ok no\n\
                    setenv fdt_high 0xffffffffffffffff\n\
                    if test \"${rio_ok}\" = yes; then echo \"b\"; booti 0x48200000 - 0x48400000; fi\n";
        let s = parse_script(text).expect("parses");
        assert_eq!(
            s.own_slot,
            Some(Range {
                start: 0x4800_0000,
                end: 0x4820_0000
            })
        );
        assert_eq!(
            s.loads,
            [
                (0x4820_0000, "xen".to_owned(), Some(0x1a2b)),
                (0x4840_0000, "host.dtb".to_owned(), None)
            ]
        );
        assert_eq!(s.booti, Some((0x4820_0000, 0x4840_0000)));
        assert!(parse_script("frobnicate\n").is_err());
        // A load or a size check that would not stop the boot, an unguarded booti.
        assert!(parse_script("load mmc 0:1 0x1 xen\n").is_err());
        assert!(parse_script(
            "load mmc 0:1 0x1 xen || setenv rio_ok no\n\
             if test \"${filesize}\" != \"1\"; then exit; fi\n"
        )
        .is_err());
        assert!(parse_script("booti 0x1 - 0x2\n").is_err());
    }

    #[test]
    fn overlaps_and_ram() {
        let p = |what: &str, start, end| Placed {
            what: what.to_owned(),
            range: Range { start, end },
        };
        let placed = [p("a", 0, 0x10), p("b", 0x10, 0x20)];
        assert!(no_overlaps(&placed, &[p("r", 0x20, 0x30)]).is_ok());
        let e = no_overlaps(&placed, &[p("r", 0x1f, 0x30)]).expect_err("b meets r");
        assert_eq!(e, "b [0x10, 0x20) overlaps r [0x1f, 0x30)");
        assert!(no_overlaps(&[p("a", 0, 0x11), p("b", 0x10, 0x20)], &[]).is_err());
        assert!(in_ram(
            &placed,
            &[Range {
                start: 0,
                end: 0x20
            }]
        )
        .is_ok());
        assert!(in_ram(
            &placed,
            &[
                Range {
                    start: 0,
                    end: 0x10
                },
                Range {
                    start: 0x10,
                    end: 0x20
                }
            ]
        )
        .is_ok());
        assert!(in_ram(
            &[p("c", 0x8, 0x18)],
            &[
                Range {
                    start: 0,
                    end: 0x10
                },
                Range {
                    start: 0x10,
                    end: 0x20
                }
            ]
        )
        .is_err());
    }

    #[test]
    fn error_sites() {
        assert_eq!(
            error_site("/chosen/be: property 'xen,domain-p2m-mem-mb': 1 MiB is too small: x"),
            "/chosen/be: property 'xen,domain-p2m-mem-mb'"
        );
        assert_eq!(error_site("no colon"), "no colon");
    }

    #[test]
    fn imagebuilder_values() {
        let cfg = "MEMORY_START=\"0x10\"\nDOMU_KERNEL[1]=\"b.img\"\nDOMU_KERNEL[10]=\"c\"\n";
        assert_eq!(ib_value(cfg, "MEMORY_START").as_deref(), Some("0x10"));
        assert_eq!(ib_value(cfg, "DOMU_KERNEL[1]").as_deref(), Some("b.img"));
        assert_eq!(ib_value(cfg, "DOMU_KERNEL[0]"), None);
    }
}
