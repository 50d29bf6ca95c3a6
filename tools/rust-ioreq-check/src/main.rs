//! `rust-ioreq-check`: runs the configuration check Xen runs at boot (`Config::from_fdt` of
//! `rust-ioreq`, the same code) on a host device tree, and prints what Xen will print about
//! it (the `report` lines), or the error Xen will stop with (docs/binding.md, "Validation").

mod hostfacts;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use rust_ioreq::abi::backend_layout;
use rust_ioreq::config::{
    ram_p2m_pages, xen_default_p2m_pages, Config, HostFacts, ModuleReader, DEFAULT_IPA_BITS,
};
use rust_ioreq::report::{
    BackendLine, Banner, DeviceLine, InvalidConfig, WindowLine, LOG_PREFIX, PANIC_TEXT,
};
use rust_ioreq::types::DomId;

/// FDT magic (big-endian), to tell a blob from a source file.
const FDT_MAGIC: [u8; 4] = [0xd0, 0x0d, 0xfe, 0xed];
/// Pages in a MiB.
const PAGES_PER_MB: u64 = 256;

const USAGE: &str = "\
usage: rust-ioreq-check [--gic-spis <n>] [--ipa-bits <n>] [--module <addr>=<file>]...
                        <host.dtb | host.dts>
  Checks the virtio-mmio configuration in a host device tree exactly as Xen does at boot and
  prints what Xen will print: the banner, one line per device, one per backend and one per
  RAM window (then notes starting with '#'); or the error Xen will stop with.
  A .dts file is compiled with dtc first (includes relative to its directory).
  --gic-spis <n>         SPIs of a domain without nr_spis: Xen's gic_number_lines() - 32.
                         Default: 224 on QEMU virt; else the least the host GIC can have,
                         from the highest SPI the tree routes to it (exact when that is the
                         GIC's maximum, e.g. GIC-400 with an SPI above 447)
  --ipa-bits <n>         Xen's p2m_ipa_bits. Default: the smallest PARange of the boot CPU's
                         core type (all CPUs with hmp-unsafe), e.g. 44 for Cortex-A57, 40 for
                         Cortex-A53/A55; an IOMMU driver in Xen may lower it
  --module <addr>=<file> the boot module at host address <addr> (0x...) is <file>: give a
                         domain's multiboot,device-tree partial DT so that its passthrough
                         xen,reg ranges are checked too (a .dts is compiled)
exit status: 0 valid, 1 invalid (Xen would panic), 2 usage or input error";

/// Prints a line to stdout; a closed stdout (`| head`) is not an error worth a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The parsed command line.
#[derive(Debug)]
struct Args {
    file: PathBuf,
    gic_spis: Option<u32>,
    ipa_bits: Option<u32>,
    modules: Vec<(u64, PathBuf)>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rust-ioreq-check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match check(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rust-ioreq-check: {e}");
            ExitCode::from(2)
        }
    }
}

/// Parses a decimal or `0x` hexadecimal number.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut file = None;
    let mut gic_spis = None;
    let mut ipa_bits = None;
    let mut modules = Vec::new();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--gic-spis" => {
                let v = value()?;
                gic_spis = Some(
                    number(v)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(format!("--gic-spis {v}: not a number"))?,
                );
            }
            "--ipa-bits" => {
                let v = value()?;
                ipa_bits = Some(
                    number(v)
                        .filter(|n| (32..=64).contains(n))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(format!("--ipa-bits {v}: expected 32 to 64"))?,
                );
            }
            "--module" => {
                let v = value()?;
                let (addr, path) = v
                    .split_once('=')
                    .ok_or(format!("--module {v}: expected <addr>=<file>"))?;
                let addr = number(addr).ok_or(format!("--module {v}: bad address"))?;
                modules.push((addr, PathBuf::from(path)));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if file.is_none() => file = Some(PathBuf::from(s)),
            s => return Err(format!("one device tree only ({s})")),
        }
    }
    Ok(Args {
        file: file.ok_or("no device tree given")?,
        gic_spis,
        ipa_bits,
        modules,
    })
}

/// Reads a device tree blob, compiling a source file with dtc.
fn load(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.starts_with(&FDT_MAGIC) {
        return Ok(bytes);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let out = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-i"])
        .arg(dir)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run dtc (tools/setup.sh installs it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: dtc failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Boot modules read from files.
struct Files(Vec<(u64, Vec<u8>)>);

impl ModuleReader for Files {
    fn read(&self, addr: u64, size: u64) -> Option<&[u8]> {
        let (_, blob) = self.0.iter().find(|(a, _)| *a == addr)?;
        // The module's `reg` size covers the file; a longer file would not be all loaded.
        (blob.len() as u64 <= size).then_some(blob.as_slice())
    }
}

/// The host facts the check used, and where each came from.
struct Host {
    gic_spis: u32,
    gic_why: String,
    ipa_bits: u32,
    ipa_why: String,
}

/// Checks the tree; `Ok(false)` when Xen would refuse it.
fn check(args: &Args) -> Result<bool, String> {
    let blob = load(&args.file)?;
    let files = Files(
        args.modules
            .iter()
            .map(|(a, p)| Ok((*a, load(p)?)))
            .collect::<Result<_, String>>()?,
    );
    let (gic_spis, gic_why) = match args.gic_spis {
        Some(n) => (n, "given".to_owned()),
        None => hostfacts::gic_spis(&blob).map_or(
            (
                hostfacts::QEMU_VIRT_SPIS,
                "assumed: no GIC Xen drives in the tree".to_owned(),
            ),
            |d| (d.value, d.why),
        ),
    };
    let (ipa_bits, ipa_why) = match args.ipa_bits {
        Some(n) => (n, "given".to_owned()),
        None => hostfacts::ipa_bits(&blob).map_or(
            (DEFAULT_IPA_BITS, "assumed: no /cpus in the tree".to_owned()),
            |d| (d.value, d.why),
        ),
    };
    let host = Host {
        gic_spis,
        gic_why,
        ipa_bits,
        ipa_why,
    };
    let facts = HostFacts {
        gic_spis,
        ipa_bits,
        modules: (!files.0.is_empty()).then_some(&files as &dyn ModuleReader),
    };
    match Config::from_fdt(&blob, facts) {
        Ok(config) => {
            print_boot(&config);
            print_notes(&config, args, &host);
            Ok(true)
        }
        Err(e) => {
            // As Xen prints it (docs/binding.md, "Validation errors").
            out!("(XEN) {LOG_PREFIX}{}", InvalidConfig(&e));
            out!("(XEN) ****************************************");
            out!("(XEN) Panic on CPU 0:");
            out!("(XEN) {PANIC_TEXT}");
            out!("(XEN) ****************************************");
            out!();
            print_host(args, &host);
            Ok(false)
        }
    }
}

/// Returns the domid Xen 4.17 gives a dom0less domain: `/chosen` order from 1.
fn domid(config: &Config, index: usize) -> DomId {
    DomId(u16::try_from(config.domains()[index].chosen_position + 1).unwrap_or(u16::MAX))
}

/// Prints Xen's lines, in the order Xen prints them: at `rust_ioreq_init` (banner, devices),
/// as each backend is created, and once every domain is built (windows).
fn print_boot(config: &Config) {
    out!("(XEN) {}", Banner(config));
    for d in config.devices() {
        out!("(XEN) {LOG_PREFIX}{}", DeviceLine(config, d));
    }
    for (i, d) in config.domains().iter().enumerate() {
        if d.backend.is_some() {
            out!(
                "(XEN) {LOG_PREFIX}{}",
                BackendLine(config, i, domid(config, i))
            );
        }
    }
    for (i, d) in config.domains().iter().enumerate() {
        for k in 0..d.backend.map_or(0, |b| b.frontends.len()) {
            out!("(XEN) {LOG_PREFIX}{}", WindowLine(config, i, k));
        }
    }
}

/// Prints what Xen does not: each involved domain's role, RAM and P2M needs.
fn print_notes(config: &Config, args: &Args, host: &Host) {
    out!();
    print_host(args, host);
    for (i, d) in config.domains().iter().enumerate() {
        let frontend = config
            .devices()
            .iter()
            .any(|x| usize::from(x.frontend) == i);
        let role = match (frontend, d.backend.is_some()) {
            (true, true) => "frontend and backend",
            (true, false) => "frontend",
            _ => "backend",
        };
        let ram: Vec<String> = d.ram().iter().map(ToString::to_string).collect();
        out!(
            "# d{} /chosen/{}: {role}, {} vCPU(s), RAM {}{}",
            domid(config, i).0,
            d.name,
            d.vcpus,
            ram.join(" "),
            if d.direct_map { " (direct-map)" } else { "" }
        );
        out!(
            "#   vGIC: {} SPIs, INTIDs 32..{}",
            d.nr_spis,
            32 + u64::from(d.nr_spis)
        );
        let Some(be) = d.backend else { continue };
        for (k, &f) in be.frontends.iter().enumerate() {
            out!(
                "#   frontend {k}: {}, ioreq page {:#x}, RAM window {:#x}",
                config.domains()[usize::from(f)].name,
                backend_layout::ioreq_page(k),
                backend_layout::window(k)
            );
        }
        let windows = config.window_p2m_pages(i);
        match d.p2m_mem_mb {
            None => out!(
                "#   P2M pool: Xen's default {} pages, to grow by {windows} pages for the \
                 windows and ioreq pages",
                xen_default_p2m_pages(d.memory_kib, d.vcpus)
            ),
            Some(mb) => out!(
                "#   P2M pool: xen,domain-p2m-mem-mb = {mb} ({} pages), of which the RAM needs \
                 at most {} and the windows and ioreq pages {windows}",
                u64::from(mb) * PAGES_PER_MB,
                ram_p2m_pages(d, config.ipa_bits())
            ),
        }
    }
}

/// Prints the host facts the check used.
fn print_host(args: &Args, host: &Host) {
    out!(
        "# checked as Xen does with gic_spis={} ipa_bits={}; passthrough partial DTs: {}",
        host.gic_spis,
        host.ipa_bits,
        if args.modules.is_empty() {
            "not read (--module)"
        } else {
            "read"
        }
    );
    out!("#   gic_spis: {}", host.gic_why);
    out!("#   ipa_bits: {}", host.ipa_why);
}
