//! The bad-configuration corpus (`tests/bad-configs/`, README there): every host tree is
//! compiled with dtc and checked by the library (`Config::from_fdt`, the code Xen runs) and by
//! the `rust-ioreq-check` binary against the exact message of its `// expect:` line. The
//! booted refusal scenarios (`tests/scenarios/*.toml` with `expect_boot_error`) are rendered as
//! the harness renders them, over the corpus's stand-in for QEMU's tree, and checked the same
//! way, so what QEMU boots and what the host checks are the same configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rust_ioreq::config::{Config, HostFacts, ModuleReader, DEFAULT_IPA_BITS};
use scenario::{host_dts, place_modules, Module, ModuleKind, Owner, Scenario, RAM_BASE};

/// SPIs of a domain without `nr_spis` on QEMU virt's GICv3 (256 lines, "GICv3: 256 lines" in
/// Xen's boot log): the checker's default too.
const GIC_SPIS: u32 = 224;
/// CPUs in the corpus's stand-in for QEMU's tree (`virt.dts`).
const STAND_IN_CPUS: u32 = 2;
/// The shared host tree every case includes; not a case.
const BASE: &str = "virt.dts";

/// One corpus file and what its header says.
#[derive(Debug)]
struct Case {
    path: PathBuf,
    /// The message Xen must stop with; `None`: the configuration is valid.
    expect: Option<String>,
    ipa_bits: u32,
    gic_spis: u32,
    /// Boot modules: address and source file.
    modules: Vec<(u64, PathBuf)>,
    /// Compile with `dtc -f` (a tree dtc itself flags, e.g. a duplicate phandle).
    force: bool,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn corpus() -> PathBuf {
    repo().join("tests/bad-configs")
}

/// Parses a decimal or `0x` number.
fn number(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|_| panic!("bad number {s:?}"))
}

/// Reads the `// key: value` header of a case.
fn read_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("read case");
    let mut case = Case {
        path: path.to_owned(),
        expect: None,
        ipa_bits: DEFAULT_IPA_BITS,
        gic_spis: GIC_SPIS,
        modules: Vec::new(),
        force: false,
    };
    let mut expects = 0;
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        let Some((key, value)) = line[2..].trim().split_once(": ") else {
            continue;
        };
        match key {
            "expect" => {
                expects += 1;
                case.expect = (value != "ok").then(|| value.to_owned());
            }
            "ipa-bits" => case.ipa_bits = u32::try_from(number(value)).expect("ipa-bits"),
            "gic-spis" => case.gic_spis = u32::try_from(number(value)).expect("gic-spis"),
            "module" => {
                let (addr, file) = value.split_once('=').expect("module: <addr>=<file>");
                case.modules.push((number(addr), corpus().join(file)));
            }
            "dtc" => case.force = value == "-f",
            _ => {}
        }
    }
    assert_eq!(
        expects,
        1,
        "{}: needs exactly one '// expect:' line",
        path.display()
    );
    case
}

/// Lists the cases, in name order.
fn cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/bad-configs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dts"))
        .filter(|p| p.file_name().is_some_and(|n| n != BASE))
        .collect();
    paths.sort();
    paths.iter().map(|p| read_case(p)).collect()
}

/// Compiles a device tree source with dtc (includes from the corpus directory).
fn dtc(path: &Path, force: bool) -> Vec<u8> {
    let mut cmd = Command::new("dtc");
    cmd.args(["-q", "-I", "dts", "-O", "dtb", "-i"])
        .arg(corpus());
    if force {
        cmd.arg("-f");
    }
    let out = cmd
        .arg(path)
        .output()
        .expect("dtc not found: `make setup` (tools/setup.sh) installs device-tree-compiler");
    assert!(
        out.status.success(),
        "{}: dtc failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Boot modules compiled from their sources.
struct Modules(Vec<(u64, Vec<u8>)>);

impl ModuleReader for Modules {
    fn read(&self, addr: u64, size: u64) -> Option<&[u8]> {
        let (_, blob) = self.0.iter().find(|(a, _)| *a == addr)?;
        (blob.len() as u64 <= size).then_some(blob.as_slice())
    }
}

/// Checks `blob` with the library; returns what went wrong, if anything.
fn check(name: &str, blob: &[u8], case: &Case) -> Option<String> {
    let modules = Modules(
        case.modules
            .iter()
            .map(|(a, p)| (*a, dtc(p, false)))
            .collect(),
    );
    let facts = HostFacts {
        gic_spis: case.gic_spis,
        ipa_bits: case.ipa_bits,
        modules: (!modules.0.is_empty()).then_some(&modules as &dyn ModuleReader),
    };
    match (Config::from_fdt(blob, facts), &case.expect) {
        (Ok(_), None) => None,
        (Ok(_), Some(want)) => Some(format!("{name}: accepted, expected {want:?}")),
        (Err(e), None) => Some(format!(
            "{name}: refused with {:?}, expected ok",
            e.to_string()
        )),
        (Err(e), Some(want)) if e.to_string() == *want => None,
        (Err(e), Some(want)) => Some(format!(
            "{name}:\n   got {:?}\n  want {want:?}",
            e.to_string()
        )),
    }
}

#[test]
fn every_case_gives_exactly_its_message() {
    let cases = cases();
    let bad = cases.iter().filter(|c| c.expect.is_some()).count();
    let good = cases.len() - bad;
    assert!(bad >= 15 && good >= 1, "{bad} bad and {good} good cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let name = c.path.file_name()?.to_string_lossy().into_owned();
            check(&name, &dtc(&c.path, c.force), c)
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A scratch directory of this test process.
fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rust-ioreq-check-{}-{what}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn the_checker_prints_what_xen_prints() {
    let bin = env!("CARGO_BIN_EXE_rust-ioreq-check");
    let dir = scratch("cli");
    for c in cases() {
        let name = c
            .path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        // The checker compiles sources itself, without -f: give it the blob.
        let dtb = dir.join(format!("{name}.dtb"));
        std::fs::write(&dtb, dtc(&c.path, c.force)).expect("write dtb");
        let mut cmd = Command::new(bin);
        cmd.args(["--ipa-bits", &c.ipa_bits.to_string()])
            .args(["--gic-spis", &c.gic_spis.to_string()]);
        for (addr, file) in &c.modules {
            // A module source is compiled by the checker.
            cmd.arg("--module")
                .arg(format!("{addr:#x}={}", file.display()));
        }
        let out = cmd.arg(&dtb).output().expect("run rust-ioreq-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        match &c.expect {
            Some(want) => {
                assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
                assert_eq!(
                    lines.first().copied(),
                    Some(format!("(XEN) rust-ioreq: invalid configuration: {want}").as_str()),
                    "{name}"
                );
                assert!(lines.contains(&"(XEN) Panic on CPU 0:"), "{name}: {stdout}");
                assert!(
                    lines.contains(
                        &"(XEN) rust-ioreq: invalid configuration in the host device tree (see above)"
                    ),
                    "{name}: {stdout}"
                );
            }
            None => {
                assert_eq!(out.status.code(), Some(0), "{name}: {stdout}");
                assert!(
                    lines
                        .first()
                        .is_some_and(|l| l.starts_with("(XEN) rust-ioreq v")
                            && l.ends_with(" xen,virtio-mmio-device node(s) in /chosen")),
                    "{name}: {stdout}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_checker_reads_sources_and_prints_every_boot_line() {
    let bin = env!("CARGO_BIN_EXE_rust-ioreq-check");
    let good = corpus().join("good-basic.dts");
    let out = Command::new(bin).arg(&good).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let xen: Vec<&str> = stdout.lines().filter(|l| l.starts_with("(XEN) ")).collect();
    assert_eq!(
        xen,
        [
            format!(
                "(XEN) rust-ioreq v{} ready: 2 xen,virtio-mmio-device node(s) in /chosen",
                env!("CARGO_PKG_VERSION")
            )
            .as_str(),
            "(XEN) rust-ioreq: fe/virtio@2000000: [0x2000000, 0x2000200) SPI 33 -> backend be device 0 \"virtio-blk\"",
            "(XEN) rust-ioreq: fe/virtio-rng: [0x2000200, 0x2000400) SPI 34 -> backend be device 1 \"virtio-rng\"",
            "(XEN) rust-ioreq: be (d2) serves 1 frontend(s), notify SPI 44, timeout 5000 ms",
            "(XEN) rust-ioreq: be: RAM of fe mapped at 0x1000000000",
        ]
    );
    // The notes: P2M needs of the backend (64 MiB frontend: 32 + 1, ioreq page: 1 + 1, and the
    // level-1 page of the default 44-bit IPA).
    assert!(
        stdout.contains(
            "#   P2M pool: Xen's default 512 pages, to grow by 36 pages for the windows and \
             ioreq pages"
        ),
        "{stdout}"
    );
    // A module given as a source, and usage errors.
    let pt = corpus().join("passthrough-over-device.dts");
    let module = format!(
        "0x4c000000={}",
        corpus().join("modules/partial-uart.dts").display()
    );
    let out = Command::new(bin)
        .args(["--module", &module])
        .arg(&pt)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(bin).arg(&pt).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "without the module its ranges are unknown"
    );
    for args in [&["--ipa-bits", "7"][..], &["--nope"], &[], &["a", "b"]] {
        let out = Command::new(bin).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = Command::new(bin)
        .arg("/nonexistent.dtb")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// Renders a scenario's host tree as the harness does, with QEMU's tree replaced by the
/// corpus's stand-in, and compiles it.
fn render(s: &Scenario, dir: &Path) -> Vec<u8> {
    let mut kinds = Vec::new();
    for (i, d) in s.domains.iter().enumerate() {
        kinds.push((Owner::Domain(i), ModuleKind::Kernel));
        if d.ramdisk.is_some() {
            kinds.push((Owner::Domain(i), ModuleKind::Ramdisk));
        }
    }
    if let Some(d) = &s.dom0 {
        kinds.push((Owner::Dom0, ModuleKind::Kernel));
        if d.ramdisk.is_some() {
            kinds.push((Owner::Dom0, ModuleKind::Ramdisk));
        }
    }
    // Image sizes only show in the module nodes' `reg`, which the check does not read.
    let sizes = vec![0x10_0000; kinds.len()];
    let ram_end = RAM_BASE + (s.qemu_mem_mib << 20);
    let addrs = place_modules(&sizes, ram_end).expect("modules fit");
    let modules: Vec<Module> = kinds
        .into_iter()
        .zip(addrs)
        .zip(sizes)
        .map(|(((owner, kind), addr), size)| Module {
            owner,
            kind,
            image: PathBuf::from(format!("/images/{owner:?}.img")),
            addr,
            size,
        })
        .collect();
    let dts = dir.join(format!("{}.dts", s.name));
    std::fs::write(&dts, host_dts(s, &modules)).expect("write host.dts");
    dtc(&dts, false)
}

#[test]
fn booted_refusals_are_refused_on_the_host_too() {
    let dir = scratch("scenarios");
    let mut booted = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("tests/scenarios")).expect("tests/scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let s = Scenario::load(&path).expect("valid scenario");
        let Some(want) = s.expect_boot_error.clone() else {
            continue;
        };
        assert_eq!(
            s.qemu_smp, STAND_IN_CPUS,
            "{}: the stand-in for QEMU's tree has {STAND_IN_CPUS} CPUs",
            s.name
        );
        let got = Config::from_fdt(&render(&s, &dir), GIC_SPIS).map(|_| ());
        booted.insert(s.name.clone(), (got.map_err(|e| e.to_string()), want));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        booted.len() >= 3,
        "{} booted refusal scenarios",
        booted.len()
    );
    for (name, (got, want)) in booted {
        assert_eq!(got, Err(want), "{name}");
    }
}
