//! Generation test against the real tools: runs QEMU's DTB dump and dtc through
//! `scenario::generate` and reads the resulting host DTB back with fdtget.
//!
//! QEMU, dtc and fdtget are required: a missing tool fails the test with the package to
//! install, it does not skip (a silently skipped test would hide a broken machine setup).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use scenario::{generate, Console, Error, GenOptions, ModuleKind, Owner, Scenario, MODULE_BASE};

const SCENARIO: &str = r#"
name = "gen-test"
timeout_s = 10
qemu_smp = 2
qemu_mem_mib = 1024

[[domain]]
name = "domU1"
memory_mib = 64
cpus = 1
vpl011 = true
kernel = "front"
ramdisk = "front-initrd.cpio.gz"

  [[domain.device]]
  kind = "blk"
  reg = [0x02000000, 0x200]
  interrupt = 33
  backend = "domU2"
  args = "virtio-blk size=4M"

  [[domain.device]]
  kind = "rng"
  backend = "domU2"
  args = "virtio-rng"

[[domain]]
name = "domU2"
memory_mib = 32
cpus = 2
kernel = "back"
bootargs = "role=backend"
ioreq_server = true
ioreq_notify_spi = 44
"#;

/// Makes a fresh scratch directory for one test (no tempfile crate: one dependency less).
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scenario-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn fdtget(dtb: &Path, node: &str, prop: &str, ty: &str) -> String {
    let out = Command::new("fdtget")
        .args(["-t", ty])
        .arg(dtb)
        .args([node, prop])
        .output()
        .unwrap_or_else(|e| panic!("fdtget is required (Debian device-tree-compiler): {e}"));
    assert!(
        out.status.success(),
        "fdtget {node} {prop}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Tells whether `node` has property `prop` (`fdtget -p` lists the property names).
fn has_property(dtb: &Path, node: &str, prop: &str) -> bool {
    let out = Command::new("fdtget")
        .arg("-p")
        .arg(dtb)
        .arg(node)
        .output()
        .unwrap_or_else(|e| panic!("fdtget is required (Debian device-tree-compiler): {e}"));
    assert!(
        out.status.success(),
        "fdtget -p {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == prop)
}

fn setup(tag: &str, front_size: usize) -> (Scenario, GenOptions, PathBuf) {
    let dir = scratch(tag);
    let images = dir.join("images");
    fs::create_dir_all(&images).expect("mkdir images");
    fs::write(images.join("front.img"), vec![0u8; front_size]).expect("write image");
    fs::write(images.join("front-initrd.cpio.gz"), vec![0u8; 5000]).expect("write ramdisk");
    fs::write(images.join("back.img"), vec![0u8; 4096]).expect("write image");
    // generate() only needs the Xen image to exist; it is not booted here.
    let xen = dir.join("xen");
    fs::write(&xen, b"not really xen").expect("write xen");
    let s = Scenario::parse(SCENARIO, Path::new("tests/scenarios/gen-test.toml")).expect("valid");
    let opts = GenOptions {
        xen,
        images,
        out: dir.join("out"),
    };
    (s, opts, dir)
}

#[test]
fn generates_mergeable_host_dtb() {
    let (s, opts, dir) = setup("ok", 3 << 20);
    let g = match generate(&s, &opts) {
        Ok(g) => g,
        Err(e) => panic!("generate failed (QEMU and dtc must be installed): {e}"),
    };
    for f in [
        &g.virt_dtb,
        &g.virt_dts,
        &g.host_dts,
        &g.host_dtb,
        &g.qemu_args_file,
    ] {
        assert!(f.is_file(), "{} missing", f.display());
    }
    assert_eq!(
        g.dir,
        fs::canonicalize(dir.join("out/gen-test")).expect("out dir")
    );

    // Modules: domU1's kernel at the base, its ramdisk at the next 2 MiB boundary after
    // 3 MiB, domU2's kernel at the boundary after that.
    let placed: Vec<_> = g
        .modules
        .iter()
        .map(|m| (m.owner, m.kind, m.addr, m.size))
        .collect();
    assert_eq!(
        placed,
        [
            (Owner::Domain(0), ModuleKind::Kernel, MODULE_BASE, 3 << 20),
            (
                Owner::Domain(0),
                ModuleKind::Ramdisk,
                MODULE_BASE + (4 << 20),
                5000
            ),
            (
                Owner::Domain(1),
                ModuleKind::Kernel,
                MODULE_BASE + (6 << 20),
                4096
            ),
        ]
    );

    let dtb = &g.host_dtb;
    // QEMU's own tree survived the merge...
    assert_eq!(fdtget(dtb, "/chosen", "stdout-path", "s"), "/pl011@9000000");
    assert_eq!(
        fdtget(dtb, "/pl011@9000000", "compatible", "s"),
        "arm,pl011 arm,primecell"
    );
    // ...and the scenario's nodes are in it with Xen's shapes.
    assert!(fdtget(dtb, "/chosen", "xen,xen-bootargs", "s").starts_with("console=dtuart "));
    assert_eq!(
        fdtget(dtb, "/chosen/domU1", "compatible", "s"),
        "xen,domain"
    );
    assert_eq!(fdtget(dtb, "/chosen/domU1", "memory", "x"), "0 10000");
    assert_eq!(fdtget(dtb, "/chosen/domU2", "memory", "x"), "0 8000");
    assert_eq!(fdtget(dtb, "/chosen/domU1", "cpus", "u"), "1");
    assert_eq!(fdtget(dtb, "/chosen/domU1", "vpl011", "x"), "");
    let m1 = "/chosen/domU1/module@50000000";
    assert_eq!(fdtget(dtb, m1, "reg", "x"), "0 50000000 0 300000");
    assert_eq!(fdtget(dtb, m1, "bootargs", "s"), "scenario=gen-test");
    assert_eq!(
        fdtget(dtb, m1, "compatible", "s"),
        "multiboot,kernel multiboot,module"
    );
    let rd = "/chosen/domU1/module@50400000";
    assert_eq!(
        fdtget(dtb, rd, "compatible", "s"),
        "multiboot,ramdisk multiboot,module"
    );
    assert_eq!(fdtget(dtb, rd, "reg", "x"), "0 50400000 0 1388");
    assert!(!has_property(dtb, rd, "bootargs"));
    let m2 = "/chosen/domU2/module@50600000";
    assert_eq!(fdtget(dtb, m2, "reg", "x"), "0 50600000 0 1000");
    assert_eq!(fdtget(dtb, m2, "bootargs", "s"), "role=backend");
    let v = "/chosen/domU1/virtio@2000000";
    assert_eq!(fdtget(dtb, v, "compatible", "s"), "xen,virtio-mmio-device");
    assert_eq!(fdtget(dtb, v, "reg", "x"), "0 2000000 0 200");
    assert_eq!(fdtget(dtb, v, "interrupts", "u"), "33");
    assert_eq!(
        fdtget(dtb, v, "xen,backend-args", "s"),
        "virtio-blk size=4M"
    );
    // The phandle reference resolves to the backend domain node.
    let be = fdtget(dtb, v, "xen,backend", "u");
    assert_eq!(fdtget(dtb, "/chosen/domU2", "phandle", "u"), be);
    // A device without reg/interrupt has neither property (Xen's defaults apply).
    let r = "/chosen/domU1/virtio-1";
    assert_eq!(fdtget(dtb, r, "compatible", "s"), "xen,virtio-mmio-device");
    assert_eq!(fdtget(dtb, r, "xen,backend", "u"), be);
    assert_eq!(fdtget(dtb, r, "xen,backend-args", "s"), "virtio-rng");
    assert!(!has_property(dtb, r, "reg"));
    assert!(!has_property(dtb, r, "interrupts"));
    // The backend is marked as an ioreq server with its notify SPI; the frontend is not.
    assert_eq!(fdtget(dtb, "/chosen/domU2", "xen,ioreq-server", "x"), "");
    assert_eq!(
        fdtget(dtb, "/chosen/domU2", "xen,ioreq-notify-spi", "u"),
        "44"
    );
    assert_eq!(fdtget(dtb, "/chosen/domU2", "cpus", "u"), "2");
    assert!(!has_property(dtb, "/chosen/domU1", "xen,ioreq-server"));

    // qemu.args holds the machine arguments, one per line, matching the command builder.
    let args = fs::read_to_string(&g.qemu_args_file).expect("read qemu.args");
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines.len(), g.machine_args().len());
    assert_eq!(
        lines[0..2],
        ["-machine", "virt,virtualization=on,gic-version=3"]
    );
    assert!(lines.contains(&"1024M"));
    let loader = format!(
        "loader,file={},addr=0x50600000,force-raw=on",
        g.modules[2].image.display()
    );
    assert!(lines.contains(&loader.as_str()), "{args}");
    assert!(g
        .shell_command(Console::Interactive)
        .ends_with(" -nographic -no-reboot"));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn missing_image_names_the_field() {
    let (s, opts, dir) = setup("missing", 100);
    fs::remove_file(opts.images.join("back.img")).expect("rm");
    match generate(&s, &opts) {
        Err(e @ Error::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("tests/scenarios/gen-test.toml: domain[1].kernel: image "),
                "{msg}"
            );
            assert!(msg.contains("back.img not found"), "{msg}");
        }
        other => panic!("expected a missing-image error, got {other:?}"),
    }
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn missing_ramdisk_names_the_field() {
    let (s, opts, dir) = setup("missing-rd", 100);
    fs::remove_file(opts.images.join("front-initrd.cpio.gz")).expect("rm");
    let msg = generate(&s, &opts).expect_err("no ramdisk").to_string();
    assert!(
        msg.starts_with("tests/scenarios/gen-test.toml: domain[0].ramdisk: image "),
        "{msg}"
    );
    assert!(msg.contains("front-initrd.cpio.gz not found"), "{msg}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn image_beyond_ram_is_refused() {
    let (mut_s, opts, dir) = setup("big", 100);
    // 1024 MiB of RAM from 0x4000_0000 ends at 0x8000_0000; a 1 GiB sparse image cannot fit.
    let f = fs::File::options()
        .write(true)
        .open(opts.images.join("front.img"))
        .expect("open");
    f.set_len(1 << 30).expect("grow");
    let msg = generate(&mut_s, &opts).expect_err("too big").to_string();
    assert!(
        msg.contains("cannot place the kernel and ramdisk images: module 0 would end at"),
        "{msg}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn dom0_modules_sit_under_chosen_after_the_domus() {
    let (_, opts, dir) = setup("dom0", 100);
    fs::write(opts.images.join("linux.img"), vec![0u8; 3 << 20]).expect("write image");
    fs::write(opts.images.join("dom0.cpio.gz"), vec![0u8; 7000]).expect("write ramdisk");
    let text = SCENARIO.replace(
        "\n[[domain]]\nname = \"domU1\"",
        "\n[dom0]\nmemory_mib = 256\ncpus = 1\nkernel = \"linux\"\nramdisk = \"dom0.cpio.gz\"\n\
         bootargs = \"console=hvc0 scenario=gen-test\"\n\n[[domain]]\nname = \"domU1\"",
    );
    let s = Scenario::parse(&text, Path::new("tests/scenarios/gen-test.toml")).expect("valid");
    let g = generate(&s, &opts).expect("generate");
    // The domUs' modules are where they are without a dom0; dom0's follow.
    let placed: Vec<_> = g
        .modules
        .iter()
        .map(|m| (m.owner, m.kind, m.addr))
        .collect();
    assert_eq!(
        placed,
        [
            (Owner::Domain(0), ModuleKind::Kernel, MODULE_BASE),
            (
                Owner::Domain(0),
                ModuleKind::Ramdisk,
                MODULE_BASE + (2 << 20)
            ),
            (
                Owner::Domain(1),
                ModuleKind::Kernel,
                MODULE_BASE + (4 << 20)
            ),
            (Owner::Dom0, ModuleKind::Kernel, MODULE_BASE + (6 << 20)),
            (Owner::Dom0, ModuleKind::Ramdisk, MODULE_BASE + (10 << 20)),
        ]
    );
    let dtb = &g.host_dtb;
    let kernel = "/chosen/module@50600000";
    assert_eq!(
        fdtget(dtb, kernel, "compatible", "s"),
        "multiboot,kernel multiboot,module"
    );
    assert_eq!(fdtget(dtb, kernel, "reg", "x"), "0 50600000 0 300000");
    assert_eq!(
        fdtget(dtb, kernel, "bootargs", "s"),
        "console=hvc0 scenario=gen-test"
    );
    let ramdisk = "/chosen/module@50a00000";
    assert_eq!(
        fdtget(dtb, ramdisk, "compatible", "s"),
        "multiboot,ramdisk multiboot,module"
    );
    assert_eq!(fdtget(dtb, ramdisk, "reg", "x"), "0 50a00000 0 1b58");
    assert!(!has_property(dtb, ramdisk, "bootargs"));
    assert!(fdtget(dtb, "/chosen", "xen,xen-bootargs", "s")
        .ends_with(" dom0_mem=256M dom0_max_vcpus=1"));
    // The domU modules did not move under /chosen.
    assert_eq!(
        fdtget(dtb, "/chosen/domU2/module@50400000", "bootargs", "s"),
        "role=backend"
    );

    fs::remove_file(opts.images.join("linux.img")).expect("rm");
    let msg = generate(&s, &opts).expect_err("no dom0 kernel").to_string();
    assert!(
        msg.starts_with("tests/scenarios/gen-test.toml: dom0.kernel: image "),
        "{msg}"
    );
    let _ = fs::remove_dir_all(dir);
}
