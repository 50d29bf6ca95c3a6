//! Scenario schema (`tests/scenarios/<name>.toml`): parsed once with serde + toml, validated,
//! and frozen into the public types below (DESIGN.md §7, STYLE.md habit 7).
//!
//! The raw serde structs are private so that a `Scenario` can only come out of `parse`, i.e.
//! every value a caller sees has passed validation and has its defaults filled in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// Xen's command line when the scenario does not set `xen_bootargs` (DESIGN.md §5: the PL011
/// console, no scrubbing so boots stay fast, and every guest's console output shown).
///
/// No `sched=`: Xen's default, credit2. Its lost wake-up (an idle pCPU refusing to pull a unit
/// whose credit is near the minimum) is fixed by xen-patches/common/0004 (credit2) (docs/design.md,
/// "Schedulers").
///
/// `spin-debug` (xen-patches/common/0005 (spin-debug)) turns on the debug Xen's spinlock IRQ-safety checks. A
/// scenario with a dom0 (or a passthrough IRQ) must leave it out: Xen's own gicv3.lock fails
/// the check when a hardware IRQ is enabled for a domain.
///
/// `conswitch=ax`: console input stays with Xen when the boot ends (Ctrl-A three times moves
/// it), on every Xen version. Xen 4.22 otherwise hands it to the first domain that takes input
/// (a Linux domain on its vpl011), whose output then reaches the console without its `(dN)`
/// prefix, and the harness could no longer tell whose line it is.
pub const DEFAULT_XEN_BOOTARGS: &str = "console=dtuart dtuart=/pl011@9000000 bootscrub=0 \
     loglvl=all guest_loglvl=all conswitch=ax spin-debug";
/// Number of QEMU CPUs when the scenario does not set `qemu_smp`.
pub const DEFAULT_SMP: u32 = 2;
/// QEMU RAM in MiB when the scenario does not set `qemu_mem_mib`.
pub const DEFAULT_MEM_MIB: u64 = 2048;

/// Longest node name the devicetree specification allows (DT spec v0.4 §2.2.1).
const MAX_NODE_NAME: usize = 31;

/// One of the schedulers the project's Xen build has (xen-patches/rust-ioreq.config), chosen
/// with Xen's `sched=` boot parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// `credit2`, Xen's default.
    Credit2,
    /// `credit`, the older credit scheduler (a periodic tick on every pCPU).
    Credit,
    /// `null`: each vCPU gets a pCPU of its own for good; vCPUs beyond the pCPUs wait until a
    /// pCPU is given up (a vCPU going offline), never while their holders merely block.
    Null,
}

impl Scheduler {
    /// Every scheduler, Xen's default first.
    pub const ALL: [Scheduler; 3] = [Scheduler::Credit2, Scheduler::Credit, Scheduler::Null];

    /// Returns the scheduler Xen calls `name` in `sched=<name>`, if the build has it.
    pub fn from_name(name: &str) -> Option<Scheduler> {
        Scheduler::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Returns the name `sched=` takes (the scheduler's `opt_name` in Xen).
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Credit2 => "credit2",
            Scheduler::Credit => "credit",
            Scheduler::Null => "null",
        }
    }

    /// Returns the line Xen prints at boot when it uses this scheduler
    /// (xen/common/sched/core.c `scheduler_init`: "Using scheduler: <name> (<opt_name>)").
    pub fn boot_line(self) -> &'static str {
        match self {
            Scheduler::Credit2 => "Using scheduler: SMP Credit Scheduler rev2 (credit2)",
            Scheduler::Credit => "Using scheduler: SMP Credit Scheduler (credit)",
            Scheduler::Null => "Using scheduler: null Scheduler (null)",
        }
    }
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    timeout_s: u64,
    qemu_smp: Option<u32>,
    qemu_mem_mib: Option<u64>,
    xen_bootargs: Option<String>,
    dom0: Option<RawDom0>,
    #[serde(default, rename = "domain")]
    domains: Vec<RawDomain>,
    #[serde(default)]
    expect: RawExpect,
    expect_boot_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDom0 {
    memory_mib: u64,
    cpus: u32,
    kernel: String,
    ramdisk: Option<String>,
    bootargs: Option<String>,
    expect_end: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: String,
    memory_mib: u64,
    cpus: u32,
    #[serde(default)]
    vpl011: bool,
    kernel: String,
    ramdisk: Option<String>,
    bootargs: Option<String>,
    expect_end: Option<bool>,
    #[serde(default)]
    ioreq_server: bool,
    ioreq_notify_spi: Option<u32>,
    dts_extra: Option<String>,
    ioreq_timeout_ms: Option<u32>,
    ioreq_poll_us: Option<u32>,
    #[serde(default)]
    expect_crash: bool,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    kind: String,
    reg: Option<[u64; 2]>,
    interrupt: Option<u32>,
    backend: Option<String>,
    args: Option<String>,
    #[serde(default)]
    classic: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    ordered: Vec<String>,
    max_lines: Option<usize>,
    #[serde(default)]
    at_most: Vec<RawAtMost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAtMost {
    text: String,
    lines: usize,
}

/// Describes one boot: QEMU's machine, Xen's command line, the optional dom0, the dom0less
/// domains and what the harness must see on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scenario {
    /// File the scenario was read from (used in error messages and by the harness).
    pub path: PathBuf,
    /// Scenario name, equal to the file stem; guests print `SCENARIO <name> ...` markers.
    pub name: String,
    pub description: String,
    /// Wall-clock limit for one boot, in seconds.
    pub timeout_s: u64,
    pub qemu_smp: u32,
    pub qemu_mem_mib: u64,
    /// Xen's command line, with `dom0_mem=`/`dom0_max_vcpus=` appended when there is a dom0.
    pub xen_bootargs: String,
    /// The hardware domain booted next to the dom0less domains, if any (domid 0).
    pub dom0: Option<Dom0>,
    /// Dom0less domains in file order (domids 1, 2, ... in this order); their modules are
    /// placed in this order, before dom0's.
    pub domains: Vec<Domain>,
    /// Extra substrings that must appear somewhere in the console log.
    pub expect_contains: Vec<String>,
    /// Substrings that must appear in this order, each on a later line than the one before.
    pub expect_ordered: Vec<String>,
    /// When set, the scenario passes only if Xen refuses the configuration at boot with
    /// exactly this message (`rust-ioreq: invalid configuration: <message>`) and panics; no
    /// guest runs, so no marker is expected.
    pub expect_boot_error: Option<String>,
    /// Most console lines the whole boot may print (`[expect] max_lines`): a flood fails.
    pub max_lines: Option<usize>,
    /// Per-text bounds (`[[expect.at_most]]`): at most `lines` console lines may contain `text`.
    pub at_most: Vec<AtMost>,
}

/// A bound on the console lines that contain a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtMost {
    /// The substring counted.
    pub text: String,
    /// Most lines that may contain it.
    pub lines: usize,
}

/// Describes the dom0 (Xen booting.txt, "Dom0 kernel and ramdisk modules"): its kernel and
/// ramdisk are modules directly under `/chosen`, its memory and vCPUs are Xen command-line
/// options. Xen builds it before the dom0less domains, so it is domid 0 and they keep 1, 2, ...
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dom0 {
    /// `dom0_mem=<n>M`.
    pub memory_mib: u64,
    /// `dom0_max_vcpus=<n>`.
    pub cpus: u32,
    /// Image name: the file is `<images dir>/<kernel>.img`.
    pub kernel: String,
    /// Ramdisk file name in the images directory (`multiboot,ramdisk`).
    pub ramdisk: Option<String>,
    /// Kernel command line (the kernel module's `bootargs`).
    pub bootargs: String,
    /// Whether the harness waits for a `SCENARIO <name> END` line from dom0.
    pub expect_end: bool,
}

/// Describes one dom0less domain (a `xen,domain` node under `/chosen`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Domain {
    /// Node name under `/chosen`.
    pub name: String,
    /// DTS label of the node, so that `xen,backend = <&label>` can point at it.
    pub label: String,
    pub memory_mib: u64,
    pub cpus: u32,
    pub vpl011: bool,
    /// Image name: the file is `<images dir>/<kernel>.img`.
    pub kernel: String,
    /// Ramdisk file name: the file `<images dir>/<ramdisk>` is loaded as a second module,
    /// `multiboot,ramdisk` (Xen booting.txt), which Xen hands to the guest as its initrd.
    pub ramdisk: Option<String>,
    /// Guest command line (the module node's `bootargs`).
    pub bootargs: String,
    /// Whether the harness waits for a `SCENARIO <name> END` line from this domain.
    pub expect_end: bool,
    /// Whether the domain serves virtio devices (`xen,ioreq-server;`).
    pub ioreq_server: bool,
    /// The backend's notify SPI (`xen,ioreq-notify-spi`); `None` leaves Xen's default.
    pub ioreq_notify_spi: Option<u32>,
    /// Raw DTS text copied into the domain node after its own properties and before its child
    /// nodes (properties first, then nodes), for what the schema has no field for.
    pub dts_extra: Option<String>,
    /// The backend's response timeout (`xen,ioreq-timeout-ms`); `None` leaves Xen's default.
    pub ioreq_timeout_ms: Option<u32>,
    /// How long Xen spins for a polling backend's answer (`xen,ioreq-poll-us`); `None` omits it.
    pub ioreq_poll_us: Option<u32>,
    /// Whether Xen must crash this domain during the boot (a hostile guest Xen is expected to
    /// stop): its crash lines are then not a failure, and their absence is.
    pub expect_crash: bool,
    pub devices: Vec<Device>,
}

/// Describes one virtio-mmio device a domain sees as a frontend (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// Free text ("blk", "rng"), kept as a comment in the generated DTS.
    pub kind: String,
    /// Frontend guest-physical base address and size of the register window; `None` omits
    /// `reg` so that Xen's default applies (docs/binding.md).
    pub reg: Option<Reg>,
    /// Frontend SPI (INTID); `None` omits `interrupts` so that Xen's default applies.
    pub interrupt: Option<u32>,
    /// Name of the domain serving this device, if any; validated to exist.
    pub backend: Option<String>,
    /// `xen,backend-args`: opaque to Xen, handed to the backend; `None` omits the property.
    pub args: Option<String>,
    /// `xen,virtio-classic`: every access a round trip to the backend (docs/binding.md).
    pub classic: bool,
}

/// A device's register window in the frontend's guest-physical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg {
    /// Base address.
    pub gpa: u64,
    /// Size in bytes (non-zero; `gpa + size` does not overflow).
    pub size: u64,
}

impl Scenario {
    /// Reads and validates the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates `text` as the scenario file `path` (the path is used for the
    /// name-equals-file-stem rule and in error messages).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, Error> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        validate(raw, path)
    }

    /// Counts the `[[domain.device]]` entries of all domains: the number the Rust banner must
    /// report.
    pub fn device_count(&self) -> usize {
        self.domains.iter().map(|d| d.devices.len()).sum()
    }

    /// Counts the domains (dom0 included) the harness waits for an END marker from.
    pub fn expected_ends(&self) -> usize {
        let dom0 = self.dom0.as_ref().is_some_and(|d| d.expect_end);
        self.domains.iter().filter(|d| d.expect_end).count() + usize::from(dom0)
    }

    /// Counts the vCPUs of all domains.
    pub fn vcpu_count(&self) -> u64 {
        self.domains.iter().map(|d| u64::from(d.cpus)).sum()
    }

    /// Returns the scheduler Xen will use: the last `sched=` of `xen_bootargs` (Xen parses the
    /// command line in order), or Xen's default, credit2.
    pub fn scheduler(&self) -> Scheduler {
        // validate() refused every name that is not a Scheduler.
        sched_arg(&self.xen_bootargs)
            .and_then(Scheduler::from_name)
            .unwrap_or(Scheduler::Credit2)
    }

    /// Returns this scenario booted with `sched`: any `sched=` is dropped from `xen_bootargs`,
    /// `sched=<name>` appended, and the console must show Xen using it. Fails, as `load` would,
    /// when the scenario cannot run under `sched` (null with more vCPUs than QEMU CPUs).
    pub fn with_scheduler(&self, sched: Scheduler) -> Result<Scenario, Error> {
        let mut s = self.clone();
        let mut args: Vec<&str> = self
            .xen_bootargs
            .split_ascii_whitespace()
            .filter(|w| !w.starts_with("sched="))
            .collect();
        let wanted = format!("sched={}", sched.name());
        args.push(&wanted);
        s.xen_bootargs = args.join(" ");
        s.expect_contains.retain(|c| !is_boot_line(c));
        check_scheduler(&mut s).map_err(|m| Error::invalid(&self.path, "xen_bootargs", m))?;
        Ok(s)
    }
}

/// Returns the value of the last `sched=` in a Xen command line.
fn sched_arg(bootargs: &str) -> Option<&str> {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("sched="))
        .next_back()
}

/// Tells whether `line` is one of the scheduler boot lines `check_scheduler` adds.
fn is_boot_line(line: &str) -> bool {
    Scheduler::ALL.iter().any(|s| s.boot_line() == line)
}

/// Checks the scheduler `xen_bootargs` asks for and, when it names one, makes the console show
/// that Xen uses it (Xen falls back to its default for a scheduler it was built without).
fn check_scheduler(s: &mut Scenario) -> Result<(), String> {
    let Some(name) = sched_arg(&s.xen_bootargs) else {
        return Ok(());
    };
    let Some(sched) = Scheduler::from_name(name) else {
        let known: Vec<&str> = Scheduler::ALL.iter().map(|s| s.name()).collect();
        return Err(format!(
            "sched={name}: not a scheduler this Xen build has ({})",
            known.join(", ")
        ));
    };
    let vcpus = s.vcpu_count();
    // A scenario that expects Xen to refuse its configuration (bad-sched-null) asks for this on
    // purpose: Xen's own check must say it, and Xen stops before it prints its scheduler.
    if s.expect_boot_error.is_some() {
        return Ok(());
    }
    if sched == Scheduler::Null && vcpus > u64::from(s.qemu_smp) {
        return Err(format!(
            "sched=null needs a pCPU for every vCPU: the null scheduler gives each vCPU a pCPU \
             of its own and time-shares none, and a vCPU keeps its pCPU while it is blocked; \
             with {vcpus} vCPUs on {} QEMU CPUs (qemu_smp), {} vCPU(s) would wait until a \
             vCPU goes offline, and a boot in which the frontends hold the pCPUs and block on \
             their backend never completes. Use another scheduler, or qemu_smp = {vcpus}",
            s.qemu_smp,
            vcpus - u64::from(s.qemu_smp)
        ));
    }
    if !s.expect_contains.iter().any(|c| c == sched.boot_line()) {
        s.expect_contains.push(sched.boot_line().to_owned());
    }
    Ok(())
}

fn validate(raw: RawScenario, path: &Path) -> Result<Scenario, Error> {
    let bad = |field: &str, msg: String| Error::invalid(path, field, msg);

    // Markers and log file names are built from the name, so it must be one plain token.
    if !is_token(&raw.name) {
        return Err(bad(
            "name",
            format!(
                "{:?} must be non-empty and use only A-Z a-z 0-9 . _ -",
                raw.name
            ),
        ));
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if raw.name != stem {
        return Err(bad(
            "name",
            format!(
                "{:?} must equal the file name without .toml ({stem:?})",
                raw.name
            ),
        ));
    }
    if raw.timeout_s == 0 {
        return Err(bad("timeout_s", "must be at least 1".into()));
    }
    let qemu_smp = raw.qemu_smp.unwrap_or(DEFAULT_SMP);
    if qemu_smp == 0 {
        return Err(bad("qemu_smp", "must be at least 1".into()));
    }
    let qemu_mem_mib = raw.qemu_mem_mib.unwrap_or(DEFAULT_MEM_MIB);
    if qemu_mem_mib == 0 {
        return Err(bad("qemu_mem_mib", "must be at least 1".into()));
    }
    let mut xen_bootargs = raw
        .xen_bootargs
        .unwrap_or_else(|| DEFAULT_XEN_BOOTARGS.to_owned());
    check_dts_string(&xen_bootargs).map_err(|m| bad("xen_bootargs", m))?;
    let dom0 = match raw.dom0 {
        None => None,
        Some(d) => Some(validate_dom0(d, &raw.name, &mut xen_bootargs, path)?),
    };
    if raw.domains.is_empty() && dom0.is_none() {
        return Err(bad(
            "domain",
            "at least one [[domain]] (or a [dom0]) is needed".into(),
        ));
    }

    // First pass: names and labels, so that backends can refer to domains declared later.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_label: HashMap<String, usize> = HashMap::new();
    for (i, d) in raw.domains.iter().enumerate() {
        let field = format!("domain[{i}].name");
        check_node_name(&d.name).map_err(|m| bad(&field, m))?;
        if let Some(first) = by_name.insert(d.name.clone(), i) {
            return Err(bad(
                &field,
                format!("duplicate domain name {:?} (also domain[{first}])", d.name),
            ));
        }
        let label = dts_label(&d.name);
        if let Some(first) = by_label.insert(label.clone(), i) {
            return Err(bad(
                &field,
                format!(
                    "{:?} and domain[{first}] map to the same DTS label {label:?}; rename one",
                    d.name
                ),
            ));
        }
    }

    let mut total_mib: u64 = dom0.as_ref().map_or(0, |d| d.memory_mib);
    let mut domains = Vec::with_capacity(raw.domains.len());
    for (i, d) in raw.domains.into_iter().enumerate() {
        let f = |name: &str| format!("domain[{i}].{name}");
        if d.memory_mib == 0 || d.memory_mib.checked_mul(1024).is_none() {
            return Err(bad(
                &f("memory_mib"),
                format!("{} is not a usable size", d.memory_mib),
            ));
        }
        total_mib = total_mib.saturating_add(d.memory_mib);
        if d.cpus == 0 {
            return Err(bad(&f("cpus"), "must be at least 1".into()));
        }
        check_file_name(&d.kernel, "an image name").map_err(|m| bad(&f("kernel"), m))?;
        if let Some(rd) = &d.ramdisk {
            check_file_name(rd, "a file name in the images directory")
                .map_err(|m| bad(&f("ramdisk"), m))?;
        }
        let bootargs = d
            .bootargs
            .unwrap_or_else(|| format!("scenario={}", raw.name));
        check_dts_string(&bootargs).map_err(|m| bad(&f("bootargs"), m))?;
        if let Some(extra) = &d.dts_extra {
            check_dts_snippet(extra).map_err(|m| bad(&f("dts_extra"), m))?;
        }

        let mut devices = Vec::with_capacity(d.devices.len());
        let mut seen_gpa: HashMap<u64, usize> = HashMap::new();
        for (j, dev) in d.devices.into_iter().enumerate() {
            let g = |name: &str| format!("domain[{i}].device[{j}].{name}");
            check_dts_string(&dev.kind).map_err(|m| bad(&g("kind"), m))?;
            if dev.kind.is_empty() || dev.kind.contains("*/") {
                return Err(bad(
                    &g("kind"),
                    format!("{:?} must be non-empty text", dev.kind),
                ));
            }
            let reg = match dev.reg {
                None => None,
                Some([gpa, size]) => {
                    if size == 0 {
                        return Err(bad(&g("reg"), "size must not be 0".into()));
                    }
                    if gpa.checked_add(size).is_none() {
                        return Err(bad(&g("reg"), format!("{gpa:#x} + {size:#x} overflows")));
                    }
                    // Two devices at one address would get the same node name; overlapping
                    // but distinct windows (alignment, SPI ranges, ...) are left for Xen to
                    // reject, so negative tests stay possible.
                    if let Some(first) = seen_gpa.insert(gpa, j) {
                        return Err(bad(
                            &g("reg"),
                            format!(
                                "address {gpa:#x} is also used by device[{first}] of this domain"
                            ),
                        ));
                    }
                    Some(Reg { gpa, size })
                }
            };
            if let Some(args) = &dev.args {
                check_dts_string(args).map_err(|m| bad(&g("args"), m))?;
            }
            if let Some(be) = &dev.backend {
                if !by_name.contains_key(be.as_str()) {
                    return Err(bad(
                        &g("backend"),
                        format!("unknown backend {be:?}: no [[domain]] has that name"),
                    ));
                }
            }
            devices.push(Device {
                kind: dev.kind,
                reg,
                interrupt: dev.interrupt,
                backend: dev.backend,
                args: dev.args,
                classic: dev.classic,
            });
        }

        domains.push(Domain {
            label: dts_label(&d.name),
            name: d.name,
            memory_mib: d.memory_mib,
            cpus: d.cpus,
            vpl011: d.vpl011,
            kernel: d.kernel,
            ramdisk: d.ramdisk,
            bootargs,
            expect_end: d.expect_end.unwrap_or(true),
            ioreq_server: d.ioreq_server,
            ioreq_notify_spi: d.ioreq_notify_spi,
            dts_extra: d.dts_extra,
            ioreq_timeout_ms: d.ioreq_timeout_ms,
            ioreq_poll_us: d.ioreq_poll_us,
            expect_crash: d.expect_crash,
            devices,
        });
    }
    if total_mib >= qemu_mem_mib {
        return Err(bad(
            "qemu_mem_mib",
            format!("{qemu_mem_mib} MiB cannot hold domains that need {total_mib} MiB plus Xen"),
        ));
    }

    if let Some(e) = &raw.expect_boot_error {
        if e.trim().is_empty() || e.chars().any(char::is_control) {
            return Err(bad(
                "expect_boot_error",
                format!("{e:?} must be the one-line message Xen prints"),
            ));
        }
    }
    if raw.expect.max_lines == Some(0) {
        return Err(bad("expect.max_lines", "must be at least 1".into()));
    }
    let mut at_most = Vec::with_capacity(raw.expect.at_most.len());
    for (k, a) in raw.expect.at_most.into_iter().enumerate() {
        if a.text.is_empty() {
            return Err(bad(
                &format!("expect.at_most[{k}].text"),
                "must not be empty".into(),
            ));
        }
        at_most.push(AtMost {
            text: a.text,
            lines: a.lines,
        });
    }

    for (list, strings) in [
        ("contains", &raw.expect.contains),
        ("ordered", &raw.expect.ordered),
    ] {
        for (k, c) in strings.iter().enumerate() {
            if c.is_empty() {
                return Err(bad(
                    &format!("expect.{list}[{k}]"),
                    "must not be empty".into(),
                ));
            }
        }
    }

    let mut scenario = Scenario {
        path: path.to_owned(),
        name: raw.name,
        description: raw.description,
        timeout_s: raw.timeout_s,
        qemu_smp,
        qemu_mem_mib,
        xen_bootargs,
        dom0,
        domains,
        expect_contains: raw.expect.contains,
        max_lines: raw.expect.max_lines,
        at_most,
        expect_ordered: raw.expect.ordered,
        expect_boot_error: raw.expect_boot_error,
    };
    check_scheduler(&mut scenario).map_err(|m| bad("xen_bootargs", m))?;
    Ok(scenario)
}

/// Validates `[dom0]` and appends its memory and vCPU count to Xen's command line, which must
/// not set them itself (one place to say it, so the two cannot disagree).
fn validate_dom0(
    d: RawDom0,
    scenario: &str,
    xen_bootargs: &mut String,
    path: &Path,
) -> Result<Dom0, Error> {
    let bad = |field: &str, msg: String| Error::invalid(path, format!("dom0.{field}"), msg);
    for option in ["dom0_mem=", "dom0_max_vcpus="] {
        if xen_bootargs
            .split_ascii_whitespace()
            .any(|w| w.starts_with(option))
        {
            return Err(Error::invalid(
                path,
                "xen_bootargs",
                format!("sets {option}; with a [dom0], say it with dom0.memory_mib and dom0.cpus"),
            ));
        }
    }
    if d.memory_mib == 0 || d.memory_mib.checked_mul(1 << 20).is_none() {
        return Err(bad(
            "memory_mib",
            format!("{} is not a usable size", d.memory_mib),
        ));
    }
    if d.cpus == 0 {
        return Err(bad("cpus", "must be at least 1".into()));
    }
    check_file_name(&d.kernel, "an image name").map_err(|m| bad("kernel", m))?;
    if let Some(rd) = &d.ramdisk {
        check_file_name(rd, "a file name in the images directory")
            .map_err(|m| bad("ramdisk", m))?;
    }
    let bootargs = d
        .bootargs
        .unwrap_or_else(|| format!("console=hvc0 scenario={scenario}"));
    check_dts_string(&bootargs).map_err(|m| bad("bootargs", m))?;
    xen_bootargs.push_str(&format!(
        " dom0_mem={}M dom0_max_vcpus={}",
        d.memory_mib, d.cpus
    ));
    Ok(Dom0 {
        memory_mib: d.memory_mib,
        cpus: d.cpus,
        kernel: d.kernel,
        ramdisk: d.ramdisk,
        bootargs,
        expect_end: d.expect_end.unwrap_or(true),
    })
}

/// Checks that `name` is a plain file name in the images directory (`what` says which kind).
fn check_file_name(name: &str, what: &str) -> Result<(), String> {
    if !is_token(name) || name.starts_with('.') {
        return Err(format!(
            "{name:?} must be {what} (A-Z a-z 0-9 . _ -), not a path"
        ));
    }
    Ok(())
}

/// Tells whether `s` is a non-empty run of `[A-Za-z0-9._-]`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Checks a node name against the devicetree spec's character set (DT spec §2.2.1); the
/// first character must be a letter so the name is also a sensible label base.
fn check_node_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b",._+-".contains(&b));
    let starts_alpha = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    if name.is_empty() || name.len() > MAX_NODE_NAME || !ok_chars || !starts_alpha {
        return Err(format!(
            "{name:?} is not a device tree node name (1-{MAX_NODE_NAME} chars, a letter first, \
             then A-Z a-z 0-9 , . _ + -)"
        ));
    }
    Ok(())
}

/// Checks that `s` can go into a DTS string: dtc's escapes are handled by `dts::quote`, but
/// raw control characters would be silently mangled, so they are refused.
fn check_dts_string(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(())
}

/// Checks a raw DTS snippet: lines of text (tabs allowed), braces balanced so that it cannot
/// close the domain node, no comment left open.
fn check_dts_snippet(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("{s:?} contains a control character"));
    }
    let mut depth = 0i64;
    for c in s.chars() {
        depth += match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        };
        if depth < 0 {
            return Err("closes a brace it did not open".into());
        }
    }
    if depth != 0 {
        return Err("leaves a brace open".into());
    }
    if s.matches("/*").count() != s.matches("*/").count() {
        return Err("leaves a comment open".into());
    }
    Ok(())
}

/// Derives a DTS label from a domain name: labels are C identifiers, node names are not.
fn dts_label(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOKE: &str = r#"
name = "boot-smoke"
description = "two domUs"
timeout_s = 60

[[domain]]
name = "domU1"
memory_mib = 64
cpus = 1
kernel = "hello"

  [[domain.device]]
  kind = "blk"
  reg = [0x02000000, 0x200]
  interrupt = 33
  backend = "domU2"

[[domain]]
name = "domU2"
memory_mib = 64
cpus = 1
vpl011 = true
kernel = "hello"
bootargs = "custom args"
expect_end = false

[expect]
contains = ["Freed"]
"#;

    fn parse(text: &str) -> Result<Scenario, Error> {
        Scenario::parse(text, Path::new("tests/scenarios/boot-smoke.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(s) => panic!("expected an error, parsed {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_fields_and_fills_defaults() {
        let s = parse(SMOKE).expect("valid");
        assert_eq!(s.name, "boot-smoke");
        assert_eq!(s.timeout_s, 60);
        assert_eq!(s.qemu_smp, DEFAULT_SMP);
        assert_eq!(s.qemu_mem_mib, DEFAULT_MEM_MIB);
        assert_eq!(s.xen_bootargs, DEFAULT_XEN_BOOTARGS);
        assert_eq!(s.domains.len(), 2);
        let d1 = &s.domains[0];
        assert_eq!((d1.name.as_str(), d1.memory_mib, d1.cpus), ("domU1", 64, 1));
        assert!(!d1.vpl011);
        assert!(d1.expect_end);
        assert_eq!(d1.bootargs, "scenario=boot-smoke");
        assert_eq!(d1.label, "domU1");
        assert_eq!(d1.ramdisk, None);
        assert_eq!(
            d1.devices,
            vec![Device {
                kind: "blk".into(),
                reg: Some(Reg {
                    gpa: 0x0200_0000,
                    size: 0x200
                }),
                interrupt: Some(33),
                backend: Some("domU2".into()),
                args: None,
                classic: false,
            }]
        );
        assert!(!d1.ioreq_server);
        assert_eq!(d1.ioreq_notify_spi, None);
        assert_eq!(d1.ioreq_timeout_ms, None);
        assert!(!d1.expect_crash);
        let d2 = &s.domains[1];
        assert!(d2.vpl011);
        assert!(!d2.expect_end);
        assert_eq!(d2.bootargs, "custom args");
        assert_eq!(s.expect_contains, vec!["Freed".to_owned()]);
        assert_eq!((s.max_lines, s.at_most.len()), (None, 0));
        assert_eq!(s.device_count(), 1);
        assert_eq!(s.expected_ends(), 1);
    }

    #[test]
    fn backend_and_device_binding_fields() {
        let text = SMOKE
            .replace(
                "expect_end = false\n",
                "expect_end = false\nioreq_server = true\nioreq_notify_spi = 45\n",
            )
            .replace(
                "  reg = [0x02000000, 0x200]\n  interrupt = 33\n  backend = \"domU2\"\n",
                "  backend = \"domU2\"\n  args = \"virtio-blk size=4M\"\n",
            );
        let s = parse(&text).expect("valid");
        let be = &s.domains[1];
        assert!(be.ioreq_server);
        assert_eq!(be.ioreq_notify_spi, Some(45));
        let dev = &s.domains[0].devices[0];
        assert_eq!(dev.reg, None);
        assert_eq!(dev.interrupt, None);
        assert_eq!(dev.args.as_deref(), Some("virtio-blk size=4M"));
        assert_eq!(s.device_count(), 1);
    }

    #[test]
    fn timeout_crash_and_console_bounds() {
        let text = SMOKE
            .replace(
                "expect_end = false\n",
                "expect_end = false\nioreq_server = true\nioreq_timeout_ms = 200\n\
                 expect_crash = true\n",
            )
            .replace(
                "contains = [\"Freed\"]\n",
                "contains = [\"Freed\"]\nmax_lines = 900\nat_most = [\n  \
                 { text = \"backend online\", lines = 1 },\n  { text = \"x\", lines = 0 },\n]\n",
            );
        let s = parse(&text).expect("valid");
        assert_eq!(s.domains[1].ioreq_timeout_ms, Some(200));
        assert!(s.domains[1].expect_crash);
        assert!(!s.domains[0].expect_crash);
        assert_eq!(s.max_lines, Some(900));
        assert_eq!(
            s.at_most,
            vec![
                AtMost {
                    text: "backend online".into(),
                    lines: 1
                },
                AtMost {
                    text: "x".into(),
                    lines: 0
                },
            ]
        );
        let msg = err(&text.replace("max_lines = 900", "max_lines = 0"));
        assert!(
            msg.contains("expect.max_lines: must be at least 1"),
            "{msg}"
        );
        let msg = err(&text.replace("{ text = \"x\"", "{ text = \"\""));
        assert!(
            msg.contains("expect.at_most[1].text: must not be empty"),
            "{msg}"
        );
        let msg = err(&text.replace("lines = 1 }", "line = 1 }"));
        assert!(msg.contains("unknown field `line`"), "{msg}");
        let msg = err(&text.replace("ioreq_timeout_ms = 200", "ioreq_timeout_ms = -1"));
        assert!(msg.contains("ioreq_timeout_ms"), "{msg}");
    }

    #[test]
    fn devices_without_reg_do_not_collide() {
        let text = SMOKE.replace(
            "  reg = [0x02000000, 0x200]\n  interrupt = 33\n  backend = \"domU2\"\n",
            "  backend = \"domU2\"\n\n  [[domain.device]]\n  kind = \"rng\"\n  backend = \"domU2\"\n",
        );
        let s = parse(&text).expect("valid");
        assert_eq!(s.domains[0].devices.len(), 2);
        assert!(s.domains[0].devices.iter().all(|d| d.reg.is_none()));
    }

    #[test]
    fn ramdisk_is_a_file_name_in_the_images_dir() {
        let text = SMOKE.replacen(
            "kernel = \"hello\"\n",
            "kernel = \"hello\"\nramdisk = \"initrd.cpio.gz\"\n",
            1,
        );
        let s = parse(&text).expect("valid");
        assert_eq!(s.domains[0].ramdisk.as_deref(), Some("initrd.cpio.gz"));
        assert_eq!(s.domains[1].ramdisk, None);
        for bad in ["../initrd", "a/b", ".hidden", ""] {
            let msg = err(&SMOKE.replacen(
                "kernel = \"hello\"\n",
                &format!("kernel = \"hello\"\nramdisk = {bad:?}\n"),
                1,
            ));
            assert!(msg.contains("domain[0].ramdisk: "), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn explicit_machine_settings_override_defaults() {
        let text = SMOKE.replace(
            "timeout_s = 60",
            "timeout_s = 5\nqemu_smp = 4\nqemu_mem_mib = 1024\nxen_bootargs = \"console=dtuart\"",
        );
        let s = parse(&text).expect("valid");
        assert_eq!((s.timeout_s, s.qemu_smp, s.qemu_mem_mib), (5, 4, 1024));
        assert_eq!(s.xen_bootargs, "console=dtuart");
    }

    #[test]
    fn default_bootargs_leave_xen_default_scheduler() {
        let s = parse(SMOKE).expect("valid");
        assert!(!s.xen_bootargs.contains("sched="), "{}", s.xen_bootargs);
        assert_eq!(s.scheduler(), Scheduler::Credit2);
        assert_eq!(s.expect_contains, vec!["Freed".to_owned()]);
    }

    /// Sets the scenario's Xen command line (the default one plus `extra`) and vCPUs of domU1.
    fn with_sched(extra: &str, cpus: u32, smp: Option<u32>) -> String {
        let smp = smp.map_or(String::new(), |n| format!("\nqemu_smp = {n}"));
        SMOKE
            .replacen(
                "timeout_s = 60",
                &format!("timeout_s = 60{smp}\nxen_bootargs = \"{DEFAULT_XEN_BOOTARGS} {extra}\""),
                1,
            )
            .replacen("cpus = 1", &format!("cpus = {cpus}"), 1)
    }

    #[test]
    fn named_scheduler_must_show_on_the_console() {
        let s = parse(&with_sched("sched=credit", 1, None)).expect("valid");
        assert_eq!(s.scheduler(), Scheduler::Credit);
        assert_eq!(
            s.expect_contains,
            vec![
                "Freed".to_owned(),
                "Using scheduler: SMP Credit Scheduler (credit)".to_owned()
            ]
        );
        // Xen parses its command line in order: the last sched= wins.
        let s = parse(&with_sched("sched=null sched=credit2", 1, None)).expect("valid");
        assert_eq!(s.scheduler(), Scheduler::Credit2);
        assert!(s
            .expect_contains
            .contains(&Scheduler::Credit2.boot_line().to_owned()));
    }

    #[test]
    fn unknown_scheduler_is_refused() {
        let msg = err(&with_sched("sched=rtds", 1, None));
        assert!(
            msg.contains("xen_bootargs: sched=rtds: not a scheduler this Xen build has"),
            "{msg}"
        );
    }

    #[test]
    fn null_with_more_vcpus_than_qemu_cpus_is_refused() {
        // Old code (d2a38d4) accepted this: 3 vCPUs on 2 QEMU CPUs under null.
        let msg = err(&with_sched("sched=null", 2, None));
        assert!(
            msg.contains("xen_bootargs: sched=null needs a pCPU for every vCPU"),
            "{msg}"
        );
        assert!(msg.contains("with 3 vCPUs on 2 QEMU CPUs (qemu_smp), 1 vCPU(s) would wait"));
        assert!(msg.contains("qemu_smp = 3"), "{msg}");
        // As many vCPUs as QEMU CPUs is what null is for.
        let s = parse(&with_sched("sched=null", 2, Some(3))).expect("valid");
        assert_eq!(s.scheduler(), Scheduler::Null);
        assert!(s
            .expect_contains
            .contains(&"Using scheduler: null Scheduler (null)".to_owned()));
        parse(&with_sched("sched=null", 1, None)).expect("2 vCPUs on 2 CPUs");
        // Unless the scenario expects Xen itself to refuse it at boot (bad-sched-null).
        let refused_by_xen = with_sched("sched=null", 2, None).replace(
            "timeout_s = 60",
            "timeout_s = 60\nexpect_boot_error = \"sched=null with 3 vCPUs\"",
        );
        let s = parse(&refused_by_xen).expect("Xen's refusal is the point");
        assert!(!s.expect_contains.iter().any(|c| is_boot_line(c)));
    }

    #[test]
    fn with_scheduler_replaces_sched_and_keeps_the_rules() {
        let s = parse(&with_sched("sched=credit", 2, None)).expect("valid");
        let c2 = s
            .with_scheduler(Scheduler::Credit2)
            .expect("credit2 time-shares");
        assert_eq!(
            c2.xen_bootargs,
            format!("{DEFAULT_XEN_BOOTARGS} sched=credit2")
        );
        assert_eq!(
            c2.expect_contains,
            vec![
                "Freed".to_owned(),
                Scheduler::Credit2.boot_line().to_owned()
            ]
        );
        let msg = s
            .with_scheduler(Scheduler::Null)
            .expect_err("3 vCPUs, 2 CPUs")
            .to_string();
        assert!(
            msg.contains("sched=null needs a pCPU for every vCPU"),
            "{msg}"
        );
        let small = parse(SMOKE).expect("valid");
        let null = small
            .with_scheduler(Scheduler::Null)
            .expect("2 vCPUs, 2 CPUs");
        assert!(null.xen_bootargs.ends_with(" sched=null"));
        assert_eq!(null.scheduler(), Scheduler::Null);
    }

    #[test]
    fn name_must_equal_file_stem() {
        let e = Scenario::parse(SMOKE, Path::new("x/other.toml")).expect_err("stem differs");
        let msg = e.to_string();
        assert!(msg.starts_with("x/other.toml: name: "), "{msg}");
        assert!(msg.contains("\"other\""), "{msg}");
    }

    #[test]
    fn duplicate_domain_names_are_refused() {
        let msg = err(&SMOKE.replace("name = \"domU2\"", "name = \"domU1\""));
        assert!(
            msg.contains("domain[1].name: duplicate domain name \"domU1\""),
            "{msg}"
        );
        assert!(
            msg.starts_with("tests/scenarios/boot-smoke.toml: "),
            "{msg}"
        );
    }

    #[test]
    fn label_collisions_are_refused() {
        let text = SMOKE
            .replace("name = \"domU1\"", "name = \"dom-a\"")
            .replace("name = \"domU2\"", "name = \"dom.a\"")
            .replace("backend = \"domU2\"", "backend = \"dom.a\"");
        assert!(err(&text).contains("same DTS label \"dom_a\""));
    }

    #[test]
    fn unknown_backend_is_refused() {
        let msg = err(&SMOKE.replace("backend = \"domU2\"", "backend = \"domU9\""));
        assert!(
            msg.contains("domain[0].device[0].backend: unknown backend \"domU9\""),
            "{msg}"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_parse_errors() {
        let msg = err(&SMOKE.replace("cpus = 1\nkernel", "cpus = 1\nkernal = \"x\"\nkernel"));
        assert!(msg.contains("unknown field `kernal`"), "{msg}");
        let msg = err(&SMOKE.replace("timeout_s = 60\n", ""));
        assert!(msg.contains("missing field `timeout_s`"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("timeout_s = 60", "timeout_s = 0", "timeout_s:"),
            ("timeout_s = 60", "timeout_s = 1\nqemu_smp = 0", "qemu_smp:"),
            (
                "timeout_s = 60",
                "timeout_s = 1\nqemu_mem_mib = 100",
                "qemu_mem_mib:",
            ),
            ("name = \"domU1\"", "name = \"dom U1\"", "domain[0].name:"),
            ("name = \"domU1\"", "name = \"1dom\"", "domain[0].name:"),
            (
                "memory_mib = 64\ncpus = 1\nkernel",
                "memory_mib = 0\ncpus = 1\nkernel",
                "domain[0].memory_mib:",
            ),
            (
                "cpus = 1\nkernel = \"hello\"\n\n",
                "cpus = 0\nkernel = \"hello\"\n\n",
                "domain[0].cpus:",
            ),
            (
                "kernel = \"hello\"\n\n",
                "kernel = \"../hello\"\n\n",
                "domain[0].kernel:",
            ),
            ("0x200]", "0]", "domain[0].device[0].reg:"),
            (
                "[0x02000000, 0x200]",
                "[0xffffffffffffff00, 0x200]",
                "domain[0].device[0].reg:",
            ),
            ("kind = \"blk\"", "kind = \"\"", "domain[0].device[0].kind:"),
            (
                "backend = \"domU2\"\n",
                "backend = \"domU2\"\nargs = \"a\\tb\"\n",
                "domain[0].device[0].args:",
            ),
            (
                "expect_end = false",
                "expect_end = false\nioreq_notify_spi = -1",
                "ioreq_notify_spi",
            ),
            (
                "bootargs = \"custom args\"",
                "bootargs = \"a\\nb\"",
                "domain[1].bootargs:",
            ),
            ("[\"Freed\"]", "[\"\"]", "expect.contains[0]:"),
        ];
        for (from, to, field) in cases {
            assert!(SMOKE.contains(from), "test case {from:?} does not apply");
            let msg = err(&SMOKE.replacen(from, to, 1));
            assert!(msg.contains(field), "{to:?}: expected {field:?} in {msg:?}");
        }
    }

    #[test]
    fn expect_boot_error_and_dts_extra() {
        let text = SMOKE
            .replace(
                "timeout_s = 60\n",
                "timeout_s = 60\nexpect_boot_error = \"/chosen: property 'x': y\"\n",
            )
            .replacen(
                "kernel = \"hello\"\n",
                "kernel = \"hello\"\ndts_extra = \"\"\"\nxen,domain-p2m-mem-mb = <1>;\nshm@0 {\n\tx;\n};\n\"\"\"\n",
                1,
            );
        let s = parse(&text).expect("valid");
        assert_eq!(
            s.expect_boot_error.as_deref(),
            Some("/chosen: property 'x': y")
        );
        assert_eq!(
            s.domains[0].dts_extra.as_deref(),
            Some("xen,domain-p2m-mem-mb = <1>;\nshm@0 {\n\tx;\n};\n")
        );
        assert_eq!(s.domains[1].dts_extra, None);
        assert_eq!(parse(SMOKE).expect("valid").expect_boot_error, None);
        // The expected message is one non-empty line; a snippet cannot close the node.
        for bad in ["\"\"", "\"a\\nb\""] {
            let msg = err(&SMOKE.replace(
                "timeout_s = 60\n",
                &format!("timeout_s = 60\nexpect_boot_error = {bad}\n"),
            ));
            assert!(msg.contains("expect_boot_error:"), "{bad}: {msg}");
        }
        for (bad, why) in [
            ("\"};\"", "closes a brace"),
            ("\"a {\"", "brace open"),
            ("\"/* x\"", "comment open"),
            ("\"a\\u0007\"", "control character"),
        ] {
            let msg = err(&SMOKE.replacen(
                "kernel = \"hello\"\n",
                &format!("kernel = \"hello\"\ndts_extra = {bad}\n"),
                1,
            ));
            assert!(
                msg.contains("domain[0].dts_extra:") && msg.contains(why),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn no_domains_is_refused() {
        let msg = err("name = \"boot-smoke\"\ntimeout_s = 1\n");
        assert!(msg.contains("domain: at least one"), "{msg}");
    }

    const DOM0: &str = "[dom0]\nmemory_mib = 256\ncpus = 1\nkernel = \"linux\"\n\
                        ramdisk = \"dom0.cpio.gz\"\n\n";

    #[test]
    fn dom0_sets_xen_options_and_counts() {
        let s = parse(&SMOKE.replace(
            "[[domain]]\nname = \"domU1\"",
            &format!("{DOM0}[[domain]]\nname = \"domU1\""),
        ))
        .expect("valid");
        let d = s.dom0.as_ref().expect("dom0");
        assert_eq!((d.memory_mib, d.cpus, d.kernel.as_str()), (256, 1, "linux"));
        assert_eq!(d.ramdisk.as_deref(), Some("dom0.cpio.gz"));
        assert_eq!(d.bootargs, "console=hvc0 scenario=boot-smoke");
        assert!(d.expect_end);
        assert_eq!(
            s.xen_bootargs,
            format!("{DEFAULT_XEN_BOOTARGS} dom0_mem=256M dom0_max_vcpus=1")
        );
        // The domUs keep their order (and domids 1, 2); dom0's END is awaited too.
        assert_eq!(s.domains[0].name, "domU1");
        assert_eq!(s.expected_ends(), 2);
        assert_eq!(parse(SMOKE).expect("valid").dom0, None);
    }

    #[test]
    fn dom0_alone_is_a_scenario() {
        let s = parse(&format!(
            "name = \"boot-smoke\"\ntimeout_s = 1\n{}",
            DOM0.replace(
                "cpus = 1",
                "cpus = 2\nbootargs = \"console=hvc0 x\"\nexpect_end = false"
            )
        ))
        .expect("valid");
        assert!(s.domains.is_empty());
        let d = s.dom0.expect("dom0");
        assert_eq!(
            (d.cpus, d.bootargs.as_str(), d.expect_end),
            (2, "console=hvc0 x", false)
        );
    }

    #[test]
    fn dom0_errors_name_their_field() {
        let place = |dom0: &str| {
            SMOKE.replacen(
                "\n[[domain]]\nname = \"domU1\"",
                &format!("\n{dom0}[[domain]]\nname = \"domU1\""),
                1,
            )
        };
        for (from, to, field) in [
            ("memory_mib = 256", "memory_mib = 0", "dom0.memory_mib:"),
            ("cpus = 1", "cpus = 0", "dom0.cpus:"),
            (
                "kernel = \"linux\"",
                "kernel = \"../linux\"",
                "dom0.kernel:",
            ),
            (
                "ramdisk = \"dom0.cpio.gz\"",
                "ramdisk = \"a/b\"",
                "dom0.ramdisk:",
            ),
            (
                "cpus = 1",
                "cpus = 1\nbootargs = \"a\\tb\"",
                "dom0.bootargs:",
            ),
        ] {
            let msg = err(&place(&DOM0.replace(from, to)));
            assert!(msg.contains(field), "{to:?}: expected {field:?} in {msg:?}");
        }
        let msg = err(&place(&DOM0.replace("cpus = 1", "cpus = 1\nname = \"x\"")));
        assert!(msg.contains("unknown field `name`"), "{msg}");
        for option in ["dom0_mem=1G", "dom0_max_vcpus=2"] {
            let msg = err(&place(DOM0).replace(
                "timeout_s = 60",
                &format!("timeout_s = 60\nxen_bootargs = \"console=dtuart {option}\""),
            ));
            assert!(msg.contains("xen_bootargs: sets "), "{msg}");
        }
        // Dom0's memory counts against QEMU's.
        let msg = err(&place(
            &DOM0.replace("memory_mib = 256", "memory_mib = 2000"),
        ));
        assert!(msg.contains("qemu_mem_mib:"), "{msg}");
    }

    #[test]
    fn ordered_expectations_are_kept_in_order() {
        let s = parse(&SMOKE.replace(
            "contains = [\"Freed\"]",
            "contains = [\"Freed\"]\nordered = [\"b\", \"a\"]",
        ))
        .expect("valid");
        assert_eq!(s.expect_ordered, vec!["b".to_owned(), "a".to_owned()]);
        let msg = err(&SMOKE.replace(
            "contains = [\"Freed\"]",
            "contains = [\"Freed\"]\nordered = [\"b\", \"\"]",
        ));
        assert!(msg.contains("expect.ordered[1]:"), "{msg}");
    }

    #[test]
    fn duplicate_device_address_is_refused() {
        let text = SMOKE.replace(
            "  backend = \"domU2\"\n",
            "  backend = \"domU2\"\n\n  [[domain.device]]\n  kind = \"rng\"\n  \
             reg = [0x02000000, 0x200]\n  interrupt = 34\n",
        );
        assert!(err(&text).contains("domain[0].device[1].reg: address 0x2000000 is also used"));
    }
}
