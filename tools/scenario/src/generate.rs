//! Boot-file generation: dumps QEMU's own DTB with the scenario's machine options, merges the
//! scenario's `/chosen` into it with dtc, writes the QEMU arguments, and builds the QEMU
//! command line (DESIGN.md §5, "QEMU 7.2").

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::dts::host_dts;
use crate::error::Error;
use crate::layout::{place_modules, Module, ModuleKind, Owner, RAM_BASE};
use crate::model::Scenario;

/// QEMU binary, looked up on `PATH` (Debian package `qemu-system-arm`).
pub const QEMU: &str = "qemu-system-aarch64";
/// Device tree compiler, looked up on `PATH` (Debian package `device-tree-compiler`).
pub const DTC: &str = "dtc";
/// Debian's U-Boot for QEMU's 64-bit Arm virt machine (package `u-boot-qemu`), which
/// [`Generated::uboot_disk`] boots.
pub const UBOOT_QEMU: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// Machine options shared by the DTB dump and the boot: they must match exactly, or the
/// dumped tree would describe another machine than the one Xen runs on.
const MACHINE: &str = "virt,virtualization=on,gic-version=3";
const CPU: &str = "cortex-a57";

/// Warnings dtc prints for every host DTS that say nothing about the scenario:
/// - `clocks_property`, `gpios_property`: QEMU's tree decompiles with raw phandle numbers, no
///   labels, so dtc cannot tell they are phandles;
/// - `avoid_unnecessary_addr_size`: `/chosen` carries 2/2 cells like ImageBuilder's trees,
///   although its children (the domains) have no `reg`;
/// - `interrupts_property`: the binding's `interrupts = <spi>` is the frontend SPI number,
///   one cell by design (DESIGN.md §3), not a specifier for the host GIC's 3 cells.
const DTC_QUIET: &[&str] = &[
    "-W",
    "no-clocks_property",
    "-W",
    "no-gpios_property",
    "-W",
    "no-avoid_unnecessary_addr_size",
    "-W",
    "no-interrupts_property",
];

/// Says where `generate` finds its inputs and puts its outputs.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Xen hypervisor image (`xen/xen` of a Xen build), booted as QEMU's `-kernel`.
    pub xen: PathBuf,
    /// Directory holding the guest images `<kernel>.img`.
    pub images: PathBuf,
    /// Output root: files go to `<out>/<scenario name>/`.
    pub out: PathBuf,
}

/// Selects how QEMU's console is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// For the harness: serial on stdout, no monitor, no display; stdin should be /dev/null.
    Harness,
    /// For a person: `-nographic` with the terminal attached (Ctrl-A X quits).
    Interactive,
}

/// Describes the files `generate` wrote and everything needed to boot them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Generated {
    /// `<out>/<name>/`, absolute.
    pub dir: PathBuf,
    pub virt_dtb: PathBuf,
    pub virt_dts: PathBuf,
    pub host_dts: PathBuf,
    pub host_dtb: PathBuf,
    pub qemu_args_file: PathBuf,
    /// Xen image, absolute.
    pub xen: PathBuf,
    /// Boot modules in load order: per dom0less domain in scenario order, its kernel, then its
    /// ramdisk if it has one; then dom0's.
    pub modules: Vec<Module>,
    pub smp: u32,
    pub mem_mib: u64,
    /// When set, QEMU starts U-Boot ([`UBOOT_QEMU`]) with this disk attached, and U-Boot's
    /// distro boot runs the boot.scr on it, which loads Xen, the modules and the DTB (a
    /// `qemu-virt` board output, docs/boards.md); QEMU then loads none of them itself.
    pub uboot_disk: Option<PathBuf>,
}

/// Generates the boot files for `scenario` under `<opts.out>/<name>/`: `virt.dtb` (QEMU's own
/// tree), `virt.dts` (its source), `host.dts` (the merge), `host.dtb` (what Xen boots with)
/// and `qemu.args` (the machine part of the QEMU command, one argument per line, without the
/// binary name and without console options).
pub fn generate(scenario: &Scenario, opts: &GenOptions) -> Result<Generated, Error> {
    let xen = fs::canonicalize(&opts.xen).map_err(|source| Error::Io {
        path: opts.xen.clone(),
        what: "find the Xen image",
        source,
    })?;
    if !xen.is_file() {
        return Err(Error::Io {
            path: xen,
            what: "use the Xen image",
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }

    let found = find_images(scenario, &opts.images)?;
    let sizes: Vec<u64> = found.iter().map(|f| f.size).collect();
    // QEMU's RAM is `qemu_mem_mib` from RAM_BASE; validation bounded the size, so no overflow
    // for any real value, and saturation would only make the check stricter.
    let ram_end = RAM_BASE.saturating_add(scenario.qemu_mem_mib.saturating_mul(1 << 20));
    let addrs = place_modules(&sizes, ram_end).map_err(|e| {
        Error::invalid(
            &scenario.path,
            "domain",
            format!("cannot place the kernel and ramdisk images: {e}"),
        )
    })?;
    let modules: Vec<Module> = found
        .into_iter()
        .zip(addrs)
        .map(|(f, addr)| Module {
            owner: f.owner,
            kind: f.kind,
            image: f.path,
            addr,
            size: f.size,
        })
        .collect();

    let dir = opts.out.join(&scenario.name);
    fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        what: "create the output directory",
        source,
    })?;
    let dir = fs::canonicalize(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        what: "resolve the output directory",
        source,
    })?;
    let gen = Generated {
        virt_dtb: dir.join("virt.dtb"),
        virt_dts: dir.join("virt.dts"),
        host_dts: dir.join("host.dts"),
        host_dtb: dir.join("host.dtb"),
        qemu_args_file: dir.join("qemu.args"),
        dir,
        xen,
        modules,
        smp: scenario.qemu_smp,
        mem_mib: scenario.qemu_mem_mib,
        uboot_disk: None,
    };

    // Stale outputs must not survive a failed step and be mistaken for fresh ones.
    for p in [
        &gen.virt_dtb,
        &gen.virt_dts,
        &gen.host_dts,
        &gen.host_dtb,
        &gen.qemu_args_file,
    ] {
        match fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    path: p.clone(),
                    what: "remove the old file",
                    source: e,
                });
            }
            _ => {}
        }
    }

    let mut dump = OsString::from(format!("{MACHINE},dumpdtb="));
    dump.push(qemu_opt_escape(gen.virt_dtb.as_os_str()));
    run_tool(
        QEMU,
        "qemu-system-arm",
        Command::new(QEMU)
            .arg("-machine")
            .arg(dump)
            .args([
                "-cpu",
                CPU,
                "-smp",
                &gen.smp.to_string(),
                "-m",
                &format!("{}M", gen.mem_mib),
            ])
            .arg("-nographic"),
    )?;
    run_tool(
        DTC,
        "device-tree-compiler",
        Command::new(DTC)
            .args(["-q", "-I", "dtb", "-O", "dts", "-o"])
            .arg(&gen.virt_dts)
            .arg(&gen.virt_dtb),
    )?;
    fs::write(&gen.host_dts, host_dts(scenario, &gen.modules)).map_err(|source| Error::Io {
        path: gen.host_dts.clone(),
        what: "write",
        source,
    })?;
    run_tool(
        DTC,
        "device-tree-compiler",
        Command::new(DTC)
            .args(DTC_QUIET)
            .args(["-I", "dts", "-O", "dtb", "-o"])
            .arg(&gen.host_dtb)
            .arg(&gen.host_dts),
    )?;

    let mut lines = String::new();
    for a in gen.machine_args() {
        lines.push_str(&a.to_string_lossy());
        lines.push('\n');
    }
    fs::write(&gen.qemu_args_file, lines).map_err(|source| Error::Io {
        path: gen.qemu_args_file.clone(),
        what: "write",
        source,
    })?;
    Ok(gen)
}

/// A boot module's image file found in the images directory.
#[derive(Debug, Clone)]
pub(crate) struct FoundImage {
    pub owner: Owner,
    pub kind: ModuleKind,
    /// The file's name in the images directory (`<kernel>.img`, the ramdisk's name).
    pub name: String,
    /// Its absolute path, symbolic links resolved.
    pub path: PathBuf,
    pub size: u64,
}

/// Finds every domain's kernel (and ramdisk) image in `images`, in load order: per dom0less
/// domain in scenario order its kernel then its ramdisk, then dom0's (last, so that adding a
/// dom0 moves no dom0less module). A missing image is a scenario problem, reported against
/// its field.
pub(crate) fn find_images(
    scenario: &Scenario,
    images_dir: &std::path::Path,
) -> Result<Vec<FoundImage>, Error> {
    let mut images: Vec<(Owner, String, &str, &str, Option<&str>)> = scenario
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                Owner::Domain(i),
                format!("domain[{i}]"),
                d.name.as_str(),
                d.kernel.as_str(),
                d.ramdisk.as_deref(),
            )
        })
        .collect();
    if let Some(d) = &scenario.dom0 {
        images.push((
            Owner::Dom0,
            "dom0".to_owned(),
            "dom0",
            d.kernel.as_str(),
            d.ramdisk.as_deref(),
        ));
    }
    let mut found = Vec::new();
    for (owner, field_base, name, kernel, ramdisk) in images {
        let kernel = (ModuleKind::Kernel, format!("{kernel}.img"), "kernel");
        let ramdisk = ramdisk.map(|r| (ModuleKind::Ramdisk, r.to_owned(), "ramdisk"));
        for (kind, file, field) in std::iter::once(kernel).chain(ramdisk) {
            let wanted = images_dir.join(&file);
            let meta = fs::metadata(&wanted).ok().filter(|m| m.is_file());
            let (Some(meta), Ok(abs)) = (meta, fs::canonicalize(&wanted)) else {
                return Err(Error::invalid(
                    &scenario.path,
                    format!("{field_base}.{field}"),
                    format!("image {} not found (domain {name:?})", wanted.display()),
                ));
            };
            found.push(FoundImage {
                owner,
                kind,
                name: file,
                path: abs,
                size: meta.len(),
            });
        }
    }
    Ok(found)
}

impl Generated {
    /// Returns the machine part of the QEMU arguments: machine, CPU, memory, host DTB, Xen and
    /// one generic loader per module (`force-raw` so QEMU copies the image byte for byte).
    pub fn machine_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = ["-machine", MACHINE, "-cpu", CPU, "-smp"]
            .iter()
            .map(OsString::from)
            .collect();
        a.push(self.smp.to_string().into());
        a.push("-m".into());
        a.push(format!("{}M", self.mem_mib).into());
        if let Some(disk) = &self.uboot_disk {
            a.push("-bios".into());
            a.push(UBOOT_QEMU.into());
            let mut drive = OsString::from("if=none,format=raw,id=boot,snapshot=on,file=");
            drive.push(qemu_opt_escape(disk.as_os_str()));
            a.push("-drive".into());
            a.push(drive);
            a.push("-device".into());
            a.push("virtio-blk-device,drive=boot".into());
            return a;
        }
        a.push("-dtb".into());
        a.push(self.host_dtb.clone().into());
        a.push("-kernel".into());
        a.push(self.xen.clone().into());
        for m in &self.modules {
            let mut dev = OsString::from("loader,file=");
            dev.push(qemu_opt_escape(m.image.as_os_str()));
            dev.push(format!(",addr={:#x},force-raw=on", m.addr));
            a.push("-device".into());
            a.push(dev);
        }
        a
    }

    /// Returns all QEMU arguments (without the binary) for the given console mode.
    ///
    /// Both modes pass `-no-reboot`: after a Xen panic QEMU exits instead of booting the same
    /// modules again.
    pub fn qemu_args(&self, console: Console) -> Vec<OsString> {
        let mut a = self.machine_args();
        let tail: &[&str] = match console {
            Console::Harness => &["-display", "none", "-serial", "stdio", "-monitor", "none"],
            Console::Interactive => &["-nographic"],
        };
        a.extend(tail.iter().map(OsString::from));
        a.push("-no-reboot".into());
        a
    }

    /// Builds the QEMU command for the given console mode; the caller sets up stdio
    /// (`Console::Harness` expects stdin from /dev/null and stdout piped).
    pub fn qemu_command(&self, console: Console) -> Command {
        let mut c = Command::new(QEMU);
        c.args(self.qemu_args(console));
        c
    }

    /// Renders the QEMU command as one line a shell can run.
    pub fn shell_command(&self, console: Console) -> String {
        let mut s = String::from(QEMU);
        for a in self.qemu_args(console) {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }
}

/// Escapes a value for a QEMU `-device key=value,...` option string, where a literal comma
/// is written as two.
pub fn qemu_opt_escape(v: &std::ffi::OsStr) -> OsString {
    v.to_string_lossy().replace(',', ",,").into()
}

/// Quotes `s` for a POSIX shell when it contains anything beyond a safe set.
pub fn shell_quote(s: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-_./=,:@+%".contains(&b);
    if !s.is_empty() && s.bytes().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs an external tool to completion with stdin from /dev/null; a missing tool or a
/// non-zero exit is an error carrying the tool's stderr and the package that provides it.
fn run_tool(tool: &'static str, package: &str, cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Error::Tool {
        tool,
        message: if e.kind() == io::ErrorKind::NotFound {
            format!("not found on PATH (install the Debian package {package})")
        } else {
            format!("cannot run: {e}")
        },
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool,
            message: format!(
                "{} ({:?}):\n{}",
                out.status,
                cmd_line(cmd),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    // Whatever dtc still warns about (the known-noise classes are off) is worth seeing.
    if tool == DTC && !out.stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn cmd_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(&a.to_string_lossy()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_option_commas_are_doubled() {
        assert_eq!(
            qemu_opt_escape("/a,b/c.img".as_ref()),
            OsString::from("/a,,b/c.img")
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_quote("loader,file=/x.img,addr=0x1"),
            "loader,file=/x.img,addr=0x1"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn command_lines_for_both_consoles() {
        let gen = Generated {
            dir: "/o/s".into(),
            virt_dtb: "/o/s/virt.dtb".into(),
            virt_dts: "/o/s/virt.dts".into(),
            host_dts: "/o/s/host.dts".into(),
            host_dtb: "/o/s/host.dtb".into(),
            qemu_args_file: "/o/s/qemu.args".into(),
            xen: "/x/xen".into(),
            modules: vec![
                Module {
                    owner: Owner::Domain(0),
                    kind: ModuleKind::Kernel,
                    image: "/i/a.img".into(),
                    addr: 0x5000_0000,
                    size: 1,
                },
                Module {
                    owner: Owner::Domain(1),
                    kind: ModuleKind::Kernel,
                    image: "/i/b.img".into(),
                    addr: 0x5020_0000,
                    size: 1,
                },
            ],
            smp: 2,
            mem_mib: 2048,
            uboot_disk: None,
        };
        let machine = "qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3 \
            -cpu cortex-a57 -smp 2 -m 2048M -dtb /o/s/host.dtb -kernel /x/xen \
            -device loader,file=/i/a.img,addr=0x50000000,force-raw=on \
            -device loader,file=/i/b.img,addr=0x50200000,force-raw=on";
        assert_eq!(
            gen.shell_command(Console::Harness),
            format!("{machine} -display none -serial stdio -monitor none -no-reboot")
        );
        assert_eq!(
            gen.shell_command(Console::Interactive),
            format!("{machine} -nographic -no-reboot")
        );
        let cmd = gen.qemu_command(Console::Harness);
        assert_eq!(cmd.get_program(), QEMU);
        assert_eq!(
            cmd.get_args().count(),
            gen.qemu_args(Console::Harness).len()
        );
        // Through U-Boot: the disk instead of the DTB, Xen and the loaders.
        let mut gen = gen;
        gen.uboot_disk = Some("/b/qemu-virt/s/disk,1.img".into());
        assert_eq!(
            gen.shell_command(Console::Harness),
            "qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3 -cpu cortex-a57 \
             -smp 2 -m 2048M -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin \
             -drive if=none,format=raw,id=boot,snapshot=on,file=/b/qemu-virt/s/disk,,1.img \
             -device virtio-blk-device,drive=boot -display none -serial stdio -monitor none -no-reboot"
        );
    }
}
