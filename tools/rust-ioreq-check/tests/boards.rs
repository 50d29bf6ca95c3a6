//! Board outputs end to end on a made-up board whose tree has every kind of region the load
//! plan must avoid (a firmware reservation, `/reserved-memory`, `/memreserve/`, a device
//! inside RAM): `scenario`'s generator writes the files, its checker and this crate's binary
//! accept them, and each kind of damage a person or a bug could do to them is caught with its
//! own message. Needs dtc, fdtoverlay and mkimage (`make setup`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use scenario::board::{Board, BoardConsole, GicLines, GicVersion, Range, Reserved};
use scenario::boardcheck::{check_board, Expect};
use scenario::boardgen::{generate_board, BoardOptions};
use scenario::uboot::LoadCommand;
use scenario::Scenario;

static TEST_BOARD: Board = Board {
    name: "test-board",
    title: "A test board",
    dtb_source: "tests/boards.rs",
    compatible: "test,board",
    console: BoardConsole {
        dtuart: "serial0",
        path: "/soc/serial@1000",
        compatible: "ns16550a",
        stdout_path: "serial0:115200n8",
    },
    gic: GicVersion::V3,
    gic_lines: GicLines {
        lines: 288,
        exact: true,
        why: "made up",
    },
    ipa_bits: 44,
    ram_if_missing: &[],
    ram_if_missing_why: "",
    window: Range {
        start: 0x4800_0000,
        end: 0x5000_0000,
    },
    window_why: "made up",
    reserved: &[Reserved {
        range: Range {
            start: 0x4860_0000,
            end: 0x4880_0000,
        },
        why: "the test board's firmware",
    }],
    default_load_device: "mmc 0:1",
    boots_here: false,
};

const BOARD_DTS: &str = r#"/dts-v1/;
/memreserve/ 0x48c00000 0x1000;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	compatible = "test,board";
	interrupt-parent = <&gic>;
	aliases { serial0 = "/soc/serial@1000"; };
	chosen { stdout-path = "serial0:115200n8"; };
	cpus {
		#address-cells = <1>;
		#size-cells = <0>;
		cpu@0 { device_type = "cpu"; compatible = "arm,cortex-a57"; reg = <0>; };
		cpu@1 { device_type = "cpu"; compatible = "arm,cortex-a57"; reg = <1>; };
	};
	memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x40000000>; };
	reserved-memory {
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		tee@48a00000 { reg = <0 0x48a00000 0 0x100000>; no-map; };
	};
	gic: interrupt-controller@8000000 {
		compatible = "arm,gic-v3";
		interrupt-controller;
		#interrupt-cells = <3>;
		reg = <0 0x8000000 0 0x10000 0 0x80a0000 0 0xf60000>;
	};
	soc {
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		serial@1000 { compatible = "ns16550a"; reg = <0 0x1000 0 0x100>; interrupts = <0 255 4>; };
		sram@48e00000 { compatible = "mmio-sram"; reg = <0 0x48e00000 0 0x10000>; };
	};
};
"#;

const SCENARIO: &str = r#"
name = "test-pair"
timeout_s = 1

[[domain]]
name = "fe"
memory_mib = 64
cpus = 1
kernel = "frontend"

  [[domain.device]]
  kind = "blk"
  reg = [0x02000000, 0x200]
  interrupt = 33
  backend = "be"
  args = "virtio-blk size=4M"

[[domain]]
name = "be"
memory_mib = 64
cpus = 1
kernel = "backend"
ioreq_server = true
"#;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a tool (make setup installs dtc)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a fake Xen to `path`: an arm64 Image header saying it needs `image_size` bytes (its
/// BSS past the file's 64 KiB).
fn fake_xen(path: &Path, image_size: u64) {
    let mut xen = vec![0u8; 0x1_0000];
    xen[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
    xen[0x38..0x3c].copy_from_slice(b"ARM\x64");
    fs::write(path, xen).expect("xen");
}

/// Builds the board's DTB, a fake Xen and two guest images in `root`, and generates the board
/// files for the scenario.
fn generate(root: &Path) -> PathBuf {
    for d in ["dtb", "images", "out"] {
        fs::create_dir_all(root.join(d)).expect("dirs");
    }
    fs::write(root.join("board.dts"), BOARD_DTS).expect("write");
    run(Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(root.join("dtb/test-board.dtb"))
        .arg(root.join("board.dts")));
    fake_xen(&root.join("xen"), 0x1c_0000);
    fs::write(root.join("images/frontend.img"), vec![1u8; 0x1_8000]).expect("img");
    fs::write(root.join("images/backend.img"), vec![2u8; 0x2_0000]).expect("img");
    let toml = root.join("test-pair.toml");
    fs::write(&toml, SCENARIO).expect("toml");
    let s = Scenario::load(&toml).expect("valid scenario");
    let out = generate_board(
        &s,
        &BoardOptions {
            board: &TEST_BOARD,
            dtbs: root.join("dtb"),
            xen: root.join("xen"),
            images: root.join("images"),
            out: root.join("out"),
            load: LoadCommand::Distro,
            disk: false,
        },
    )
    .expect("generated");
    out.dir
}

fn checker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rust-ioreq-check"))
}

/// Copies the output directory (following the links) to a fresh one for one damage.
fn copy(dir: &Path, to: &Path) {
    fs::create_dir_all(to).expect("dir");
    for e in fs::read_dir(dir).expect("read") {
        let p = e.expect("entry").path();
        fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

/// Edits `host.dts` in `dir`, compiles it again and updates boot.cmd's size check of the
/// DTB, as a person editing the tree on purpose would.
fn edit_host(dir: &Path, from: &str, to: &str) {
    let p = dir.join("host.dts");
    let text = fs::read_to_string(&p).expect("host.dts");
    assert!(text.contains(from), "{from:?} not in host.dts:\n{text}");
    let old_size = fs::metadata(dir.join("host.dtb")).expect("host.dtb").len();
    fs::write(&p, text.replacen(from, to, 1)).expect("write");
    run(Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(dir.join("host.dtb"))
        .arg(&p));
    let new_size = fs::metadata(dir.join("host.dtb")).expect("host.dtb").len();
    edit(
        dir,
        "boot.cmd",
        &format!("\"${{filesize}}\" != \"{old_size:x}\""),
        &format!("\"${{filesize}}\" != \"{new_size:x}\""),
    );
}

/// Edits a text file in `dir`.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let p = dir.join(file);
    let text = fs::read_to_string(&p).expect("read");
    assert!(text.contains(from), "{from:?} not in {file}:\n{text}");
    fs::write(&p, text.replacen(from, to, 1)).expect("write");
}

/// One way to damage an output: what it is, how, and the message that must catch it.
type Damage<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);

#[test]
fn generated_board_files_pass_and_each_damage_is_caught() {
    let root = std::env::temp_dir().join(format!("rust-ioreq-check-boards-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let dir = generate(&root);

    // The plan went around the firmware, /reserved-memory, /memreserve/ and the SRAM.
    let cmd = fs::read_to_string(dir.join("boot.cmd")).expect("boot.cmd");
    let loads: Vec<&str> = cmd
        .lines()
        .filter_map(|l| l.strip_suffix(" || setenv rio_ok no"))
        .map(|l| l.rsplit(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        loads,
        ["0x48200000", "0x48400000", "0x48800000", "0x49000000"],
        "xen, the first module, the second past the firmware at [0x48600000, 0x48800000), the \
         DTB past the TEE, the /memreserve/ and the SRAM:\n{cmd}"
    );
    // ImageBuilder fills from MEMORY_START without looking: its stretch starts past the SRAM.
    let cfg = fs::read_to_string(dir.join("imagebuilder.cfg")).expect("imagebuilder.cfg");
    assert!(
        cfg.contains("\nMEMORY_START=\"0x49000000\"\nMEMORY_END=\"0x50000000\"\n"),
        "{cfg}"
    );
    let good = check_board(&dir, &TEST_BOARD, &Expect::Accept, &checker()).expect("passes");
    assert!(good.verdict.starts_with("(XEN) rust-ioreq v"), "{good:?}");
    assert!(good.passed.len() >= 9, "{good:?}");

    let damages: &[Damage<'_>] = &[
        (
            "a load over /reserved-memory",
            &|d| edit(d, "boot.cmd", "0x48800000 backend.img", "0x48a00000 backend.img"),
            "overlaps /reserved-memory /reserved-memory/tee@48a00000",
        ),
        (
            "a load over the board's firmware",
            &|d| edit(d, "boot.cmd", "0x48400000 frontend.img", "0x48600000 frontend.img"),
            "overlaps the board's reservation (the test board's firmware)",
        ),
        (
            "Xen's BSS under the next file",
            &|d| fake_xen(&d.join("xen"), 0x30_0000),
            "xen [0x48200000, 0x48500000) overlaps frontend.img [0x48400000, 0x48418000)",
        ),
        (
            "an image that is not the one the script was made for",
            &|d| fs::write(d.join("frontend.img"), vec![0u8; 0x1_8001]).expect("write"),
            "boot.cmd checks frontend.img for Some(98304) bytes, the file has 98305",
        ),
        (
            "a module the DTB places elsewhere",
            &|d| edit_host(d, "reg = <0x0 0x48400000 0x0 0x18000>", "reg = <0x0 0x48400000 0x0 0x17000>"),
            "/chosen's modules",
        ),
        (
            "another console",
            &|d| edit_host(d, "dtuart=serial0", "dtuart=serial1"),
            "lacks console=dtuart dtuart=serial0",
        ),
        (
            "a device SPI beyond the board's GIC",
            &|d| edit_host(d, "interrupts = <33>;", "interrupts = <300>;"),
            "virtio@2000000/interrupts = 300 is outside the domain's vGIC SPIs 32..288",
        ),
        (
            "a passthrough",
            &|d| edit_host(d, "/ {\n", "/ {\n\tsoc { serial@1000 { xen,passthrough; }; };\n"),
            "gives host resources to domains: [\"/soc/serial@1000\"]",
        ),
        (
            "a refusal Xen would stop with",
            &|d| edit_host(d, "xen,ioreq-server;", "xen,ioreq-server;\n\t\t\txen,ioreq-poll-us = <5000>;"),
            "(XEN) rust-ioreq: invalid configuration: /chosen/be: property 'xen,ioreq-poll-us': 5000 us",
        ),
        (
            "booti with the wrong tree",
            &|d| edit(d, "boot.cmd", "booti 0x48200000 - 0x49000000", "booti 0x48200000 - 0x48800000"),
            "booti starts Some(\"xen\") with the tree Some(\"backend.img\")",
        ),
        (
            "ImageBuilder short of memory",
            &|d| edit(d, "imagebuilder.cfg", "MEMORY_END=\"0x50000000\"", "MEMORY_END=\"0x49800000\""),
            "ImageBuilder would refuse",
        ),
    ];
    for (i, (what, damage, want)) in damages.iter().enumerate() {
        let d = root.join(format!("damaged-{i}"));
        copy(&dir, &d);
        damage(&d);
        let got = check_board(&d, &TEST_BOARD, &Expect::Accept, &checker())
            .expect_err(&format!("{what}: caught"));
        assert!(got.contains(want), "{what}: got {got:?}, want {want:?}");
    }
    // The same refusal, expected, passes.
    let d = root.join("refused");
    copy(&dir, &d);
    edit_host(
        &d,
        "xen,ioreq-server;",
        "xen,ioreq-server;\n\t\t\txen,ioreq-poll-us = <5000>;",
    );
    let expect = Expect::RefuseLike("/chosen/be: property 'xen,ioreq-poll-us': x".to_owned());
    let refused = check_board(&d, &TEST_BOARD, &expect, &checker()).expect("expected refusal");
    assert!(
        refused.verdict.starts_with(
            "(XEN) rust-ioreq: invalid configuration: /chosen/be: property 'xen,ioreq-poll-us': "
        ),
        "{refused:?}"
    );
    let _ = fs::remove_dir_all(&root);
}
