//! Board boot files: from a scenario and a board, everything a board boot needs, in one
//! directory `<out>/<board>/<scenario>/`:
//!
//! - `board.dts` (the board's own tree, decompiled), `host.dts` (it plus `/chosen` with Xen's
//!   command line, the domains, their modules and devices) and `host.dtb`;
//! - `boot.cmd` and `boot.scr` (`mkimage`): U-Boot loads Xen, the modules and the DTB at the
//!   load plan's addresses and `booti`s Xen;
//! - `imagebuilder.cfg` and `imagebuilder.dts`/`.dtb`: the same setup for ImageBuilder (the
//!   board's tree with rust-ioreq's domain nodes, which ImageBuilder completes at boot);
//!   `rust-ioreq.dtso`/`.dtbo`, the same nodes as an overlay onto the board's own tree
//!   `board.dtb`; and `imagebuilder-expected.dts`/`.dtb`, the tree U-Boot will hand Xen after
//!   ImageBuilder's script (for the checks);
//! - `plan.txt`: the load plan, the board's reservations and the console;
//! - `xen` and every image, as symbolic links to the build's files (`cp -L` to copy them);
//! - for a board that boots here (QEMU), `disk.img`: an MBR disk whose one (bootable, ext2)
//!   partition holds boot.scr and the files it loads, as an SD card would.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::board::{
    arm64_image_size, plan_loads, Board, Load, LoadKind, Range, FDT_PAD, MAX_FDT_SIZE, SCRIPT_SLOT,
};
use crate::devtree::{self, TreeFacts};
use crate::dts::{host_dts_over, DtsBase, NodeNames};
use crate::error::Error;
use crate::generate::{find_images, FoundImage, DTC};
use crate::imagebuilder::{self, IbFile, BOARD_DTB, IB_DTB, OVERLAY_DTBO};
use crate::layout::{Module, ModuleKind, Owner};
use crate::model::Scenario;
use crate::uboot::{boot_cmd, LoadCommand, ScriptContext};

/// U-Boot's image tool, looked up on `PATH` (Debian package `u-boot-tools`).
pub const MKIMAGE: &str = "mkimage";

/// Says where `generate_board` finds its inputs and puts its outputs.
#[derive(Debug, Clone)]
pub struct BoardOptions {
    pub board: &'static Board,
    /// Directory holding `<board>.dtb` (`tools/board-dtbs.sh` fills `build/boards/dtb`).
    pub dtbs: PathBuf,
    /// The Xen image (an arm64 Image: `booti` starts it).
    pub xen: PathBuf,
    /// Directory holding the guest images `<kernel>.img`.
    pub images: PathBuf,
    /// Output root: files go to `<out>/<board>/<scenario>/`.
    pub out: PathBuf,
    /// How boot.scr reads its files.
    pub load: LoadCommand,
    /// Whether to write `disk.img` for a board that boots here (`Board::boots_here`).
    pub disk: bool,
}

/// What `generate_board` wrote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BoardOutput {
    pub dir: PathBuf,
    /// boot.scr's plan: the script, Xen, the modules, the DTB.
    pub plan: Vec<Load>,
    /// Where ImageBuilder's script will put its files.
    pub imagebuilder_plan: Vec<Load>,
    /// Things the person booting the board must know (printed by the command).
    pub notes: Vec<String>,
}

/// Output files that are written fresh on every run (removed first so that none survives a
/// failed step).
const OUTPUTS: [&str; 15] = [
    "disk.img",
    "imagebuilder.dts",
    IB_DTB,
    "board.dts",
    "host.dts",
    "host.dtb",
    "boot.cmd",
    "boot.scr",
    "plan.txt",
    "imagebuilder.cfg",
    "rust-ioreq.dtso",
    OVERLAY_DTBO,
    BOARD_DTB,
    "imagebuilder-expected.dts",
    "imagebuilder-expected.dtb",
];

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// Runs a tool with stdin from /dev/null; a missing tool or a failure is an error with its
/// stderr.
fn run(tool: &'static str, package: &str, cmd: &mut Command) -> Result<Vec<u8>, Error> {
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
            message: format!("{}:\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(out.stdout)
}

/// Compiles DTS `src` to `dst`; `symbols`: with `-@` (labels kept, for an overlay).
fn dtc(src: &Path, dst: &Path, symbols: bool) -> Result<(), Error> {
    let mut cmd = Command::new(DTC);
    cmd.args(["-q", "-I", "dts", "-O", "dtb"]);
    if symbols {
        cmd.arg("-@");
    }
    run(DTC, "device-tree-compiler", cmd.arg("-o").arg(dst).arg(src)).map(drop)
}

/// Reads a file the tool just wrote or was given.
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(io_err(path, what))
}

/// Writes `text` to `path`.
fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(io_err(path, "write"))
}

/// Points `dir/name` at `target` (replacing what was there).
fn link(dir: &Path, name: &str, target: &Path) -> Result<(), Error> {
    let at = dir.join(name);
    match fs::remove_file(&at) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&at, "replace")(e)),
        _ => {}
    }
    symlink(target, &at).map_err(io_err(&at, "link"))
}

/// Checks that the board's own tree is the board's and says what the plan relies on.
fn check_base(board: &Board, facts: &TreeFacts, path: &Path) -> Result<(), Error> {
    let bad = |msg: String| Error::Tool {
        tool: "scenario",
        message: format!("{}: {msg}", path.display()),
    };
    if !facts.compatible.iter().any(|c| c == board.compatible) {
        return Err(bad(format!(
            "root compatible {:?} lacks {:?}: not the tree of {}",
            facts.compatible, board.compatible, board.title
        )));
    }
    match facts.resolve(board.console.dtuart) {
        Some(p) if p == board.console.path => {}
        other => {
            return Err(bad(format!(
                "dtuart={} names {other:?}, expected {}",
                board.console.dtuart, board.console.path
            )))
        }
    }
    if facts.stdout_path.as_deref() != Some(board.console.stdout_path) {
        return Err(bad(format!(
            "/chosen/stdout-path is {:?}, expected {:?}",
            facts.stdout_path, board.console.stdout_path
        )));
    }
    if facts.memory.is_empty() && board.ram_if_missing.is_empty() {
        return Err(bad("no /memory node and no RAM known for the board".into()));
    }
    Ok(())
}

/// Returns the `/memory` node text for a board whose tree has none.
fn memory_nodes(board: &Board) -> String {
    let mut s = String::new();
    for r in board.ram_if_missing {
        s.push_str(&format!(
            "\t/* {} */\n\tmemory@{:x} {{\n\t\tdevice_type = \"memory\";\n\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n\t}};\n\n",
            board.ram_if_missing_why,
            r.start,
            r.start >> 32,
            r.start & 0xffff_ffff,
            r.size() >> 32,
            r.size() & 0xffff_ffff
        ));
    }
    s
}

/// The regions nothing may be loaded into: the board's own list, the tree's
/// `/reserved-memory` and `/memreserve/`, and every device's registers (an SRAM or a buffer
/// described inside RAM).
pub fn avoid_ranges(board: &Board, facts: &TreeFacts) -> Vec<Range> {
    board
        .reserved
        .iter()
        .map(|r| r.range)
        .chain(facts.reserved_memory.iter().map(|r| r.range))
        .chain(facts.memreserve.iter().copied())
        .chain(facts.devices.iter().map(|d| d.range))
        .collect()
}

/// Generates the board boot files for `scenario` (see the module documentation).
pub fn generate_board(scenario: &Scenario, opts: &BoardOptions) -> Result<BoardOutput, Error> {
    let board = opts.board;
    let base_path = opts.dtbs.join(format!("{}.dtb", board.name));
    let base = read(&base_path, "read the board's DTB (make board-dtbs)")?;
    let facts = devtree::read_facts(&base).map_err(|m| Error::Tool {
        tool: "scenario",
        message: format!("{}: {m}", base_path.display()),
    })?;
    check_base(board, &facts, &base_path)?;

    let xen = fs::canonicalize(&opts.xen).map_err(io_err(&opts.xen, "find the Xen image"))?;
    let xen_bytes = read(&xen, "read the Xen image")?;
    let xen_span = arm64_image_size(&xen_bytes).ok_or_else(|| Error::Tool {
        tool: "scenario",
        message: format!(
            "{}: not an arm64 Image (no \"ARM\\x64\" at 0x38): booti cannot start it",
            xen.display()
        ),
    })?;
    let xen_size = xen_bytes.len() as u64;
    let images = find_images(scenario, &opts.images)?;

    let dir = opts.out.join(board.name).join(&scenario.name);
    fs::create_dir_all(&dir).map_err(io_err(&dir, "create the output directory"))?;
    let dir = fs::canonicalize(&dir).map_err(io_err(&dir, "resolve the output directory"))?;
    for name in OUTPUTS {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(&p, "remove the old file")(e))
            }
            _ => {}
        }
    }

    // Script, Xen and the modules first: their addresses go into the DTB, whose size is known
    // only once it is compiled, so the DTB comes last.
    let avoid = avoid_ranges(board, &facts);
    let mut files = vec![
        (LoadKind::Script, "boot.scr".to_owned(), 1, SCRIPT_SLOT),
        (LoadKind::Xen, "xen".to_owned(), xen_size, xen_span),
    ];
    for (i, f) in images.iter().enumerate() {
        files.push((LoadKind::Module(i), f.name.clone(), f.size, f.size));
    }
    let bad_plan = |e: crate::board::PlanError| {
        Error::invalid(
            &scenario.path,
            "domain",
            format!("cannot load the images on {}: {e}", board.name),
        )
    };
    let mut plan = plan_loads(board.window, &avoid, files.clone()).map_err(bad_plan)?;
    let modules: Vec<Module> = images
        .iter()
        .zip(&plan[2..])
        .map(|(f, l)| Module {
            owner: f.owner,
            kind: f.kind,
            image: f.path.clone(),
            addr: l.addr,
            size: f.size,
        })
        .collect();

    // The trees.
    let board_dts = dir.join("board.dts");
    run(
        DTC,
        "device-tree-compiler",
        Command::new(DTC)
            .args(["-q", "-I", "dtb", "-O", "dts", "-o"])
            .arg(&board_dts)
            .arg(&base_path),
    )?;
    let xen_bootargs = board.xen_bootargs(&scenario.xen_bootargs);
    let memory = if facts.memory.is_empty() {
        memory_nodes(board)
    } else {
        String::new()
    };
    let host_dts = dir.join("host.dts");
    let host_dtb = dir.join("host.dtb");
    let dts_base = DtsBase {
        include: "board.dts",
        xen_bootargs: &xen_bootargs,
        root_nodes: &memory,
        node_names: NodeNames::Scenario,
    };
    write(&host_dts, &host_dts_over(scenario, &modules, &dts_base))?;
    dtc(&host_dts, &host_dtb, false)?;
    let dtb_size = read(&host_dtb, "read")?.len() as u64;
    if dtb_size > MAX_FDT_SIZE {
        return Err(Error::Tool {
            tool: "scenario",
            message: format!(
                "{}: {dtb_size} bytes, Xen accepts at most {MAX_FDT_SIZE}",
                host_dtb.display()
            ),
        });
    }
    files.push((
        LoadKind::Dtb,
        "host.dtb".to_owned(),
        dtb_size,
        dtb_size + FDT_PAD,
    ));
    plan = plan_loads(board.window, &avoid, files).map_err(bad_plan)?;
    // The DTB went last, so nothing the DTB names moved.
    assert!(
        modules
            .iter()
            .zip(&plan[2..])
            .all(|(m, l)| m.addr == l.addr),
        "the modules keep their addresses when the DTB is added"
    );

    // U-Boot's script.
    let source = scenario.path.display().to_string();
    let ctx = ScriptContext {
        board,
        scenario: &scenario.name,
        source: &source,
    };
    let boot_cmd_path = dir.join("boot.cmd");
    let boot_scr = dir.join("boot.scr");
    write(&boot_cmd_path, &boot_cmd(&ctx, &plan, &opts.load))?;
    run(
        MKIMAGE,
        "u-boot-tools",
        Command::new(MKIMAGE)
            // A fixed timestamp: the script depends only on its text.
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
            .arg("-n")
            .arg(format!("rust-ioreq {} {}", board.name, scenario.name))
            .arg("-d")
            .arg(&boot_cmd_path)
            .arg(&boot_scr),
    )?;
    let scr_size = read(&boot_scr, "read")?.len() as u64;
    if let Some(s) = plan.iter_mut().find(|l| l.kind == LoadKind::Script) {
        s.size = scr_size;
    }

    // The files the scripts load, by the names they use.
    link(&dir, "xen", &xen)?;
    for f in &images {
        link(&dir, &f.name, &f.path)?;
    }

    let imagebuilder_plan = write_imagebuilder(
        scenario,
        board,
        &dir,
        &base_path,
        &xen_bootargs,
        &images,
        (xen_size, xen_span),
        &memory,
        &avoid,
    )?;
    write(
        &dir.join("plan.txt"),
        &plan_text(
            scenario,
            board,
            &facts,
            &plan,
            &imagebuilder_plan,
            &xen_bootargs,
        ),
    )?;

    if board.boots_here && opts.disk {
        let mut files: Vec<&str> = vec!["boot.scr"];
        files.extend(
            plan.iter()
                .filter(|l| l.kind != LoadKind::Script)
                .map(|l| l.file.as_str()),
        );
        write_disk_image(&dir, &files)?;
    }

    let mut notes = Vec::new();
    if board.gic == crate::board::GicVersion::V2 {
        notes.push(format!(
            "{} has a GICv2: Xen gives every domU a vGICv2; the project's bare-metal guests \
             (tests/guests) drive only a GICv3 and get no interrupts there (Linux guests are fine)",
            board.name
        ));
    }
    if !board.gic_lines.exact {
        notes.push(format!(
            "{}'s GIC line count is known only as at least {} ({}): SPIs were checked against {} \
             per domain",
            board.name,
            board.gic_lines.lines,
            board.gic_lines.why,
            board.default_nr_spis()
        ));
    }
    Ok(BoardOutput {
        dir,
        plan,
        imagebuilder_plan,
        notes,
    })
}

/// The first sector of the partition in `disk.img` (1 MiB in, as partitioning tools align).
const PARTITION_LBA: u32 = 2048;
/// Sector size of `disk.img`.
const SECTOR: usize = 512;

/// Writes `dir/disk.img`: an MBR with one bootable Linux partition from 1 MiB, an ext2 file
/// system made by `mke2fs -d` from copies of `files` (links followed). U-Boot's distro boot
/// scans bootable partitions for boot.scr.
fn write_disk_image(dir: &Path, files: &[&str]) -> Result<(), Error> {
    let stage = dir.join("disk.d");
    let part = dir.join("disk.part");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).map_err(io_err(&stage, "create"))?;
    let mut bytes = 0;
    for f in files {
        let to = stage.join(f);
        bytes += fs::copy(dir.join(f), &to).map_err(io_err(&to, "copy"))?;
    }
    // Room for ext2's own blocks: a quarter more, and at least 16 MiB, in whole MiB.
    let mib = (bytes + bytes / 4).div_ceil(1 << 20).max(16);
    run(
        "mke2fs",
        "e2fsprogs",
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext2",
                "-L",
                "boot",
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(&stage)
            .arg(&part)
            .arg(format!("{mib}M")),
    )?;
    let fs_image = read(&part, "read")?;
    let _ = fs::remove_dir_all(&stage);
    let _ = fs::remove_file(&part);
    let Ok(count) = u32::try_from(fs_image.len().div_ceil(SECTOR)) else {
        return Err(Error::Tool {
            tool: "scenario",
            message: format!(
                "{}: {mib} MiB is too big for an MBR partition",
                part.display()
            ),
        });
    };
    let mut disk = vec![0u8; PARTITION_LBA as usize * SECTOR];
    // Partition entry 1 (MBR offset 446): bootable, type 0x83, CHS fields unused (0xfe 0xff
    // 0xff: "use the LBA"), first sector and sector count.
    let entry = &mut disk[446..462];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&PARTITION_LBA.to_le_bytes());
    entry[12..16].copy_from_slice(&count.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(&fs_image);
    disk.resize(disk.len().div_ceil(SECTOR) * SECTOR, 0);
    let path = dir.join("disk.img");
    fs::write(&path, disk).map_err(io_err(&path, "write"))
}

/// Writes the ImageBuilder files and returns where ImageBuilder's script will load its files.
#[allow(clippy::too_many_arguments)]
fn write_imagebuilder(
    scenario: &Scenario,
    board: &Board,
    dir: &Path,
    base_path: &Path,
    xen_bootargs: &str,
    images: &[FoundImage],
    (xen_size, xen_span): (u64, u64),
    memory: &str,
    avoid: &[Range],
) -> Result<Vec<Load>, Error> {
    fs::copy(base_path, dir.join(BOARD_DTB)).map_err(io_err(base_path, "copy"))?;
    let names = |owner: Owner| {
        let find = |k| {
            images
                .iter()
                .find(|f| f.owner == owner && f.kind == k)
                .map(|f| f.name.clone())
        };
        (
            find(ModuleKind::Kernel).unwrap_or_default(),
            find(ModuleKind::Ramdisk),
        )
    };
    let domain_files: Vec<(String, Option<String>)> = (0..scenario.domains.len())
        .map(|i| names(Owner::Domain(i)))
        .collect();
    let dom0_files = scenario.dom0.as_ref().map(|_| names(Owner::Dom0));
    let dtso = dir.join("rust-ioreq.dtso");
    write(&dtso, &imagebuilder::overlay_dts(scenario))?;
    dtc(&dtso, &dir.join(OVERLAY_DTBO), true)?;
    let ib_dts = dir.join("imagebuilder.dts");
    let ib_dtb = dir.join(IB_DTB);
    write(&ib_dts, &imagebuilder::tree_dts(scenario, "board.dts"))?;
    dtc(&ib_dts, &ib_dtb, false)?;

    // ImageBuilder's order: dom0's files, each domain's kernel and ramdisk, Xen, the DTB.
    let mut files = Vec::new();
    let mut order: Vec<(usize, &FoundImage)> = images
        .iter()
        .enumerate()
        .filter(|(_, f)| f.owner == Owner::Dom0)
        .collect();
    order.extend(
        images
            .iter()
            .enumerate()
            .filter(|(_, f)| f.owner != Owner::Dom0),
    );
    for (i, f) in order {
        files.push(IbFile {
            kind: LoadKind::Module(i),
            file: f.name.clone(),
            size: f.size,
        });
    }
    files.push(IbFile {
        kind: LoadKind::Xen,
        file: "xen".to_owned(),
        size: xen_size,
    });
    files.push(IbFile {
        kind: LoadKind::Dtb,
        file: IB_DTB.to_owned(),
        size: read(&ib_dtb, "read")?.len() as u64,
    });
    let (ib_memory, loads) = imagebuilder::choose_memory(board.window, avoid, &files, xen_span)
        .ok_or_else(|| {
            Error::invalid(
                &scenario.path,
                "domain",
                format!(
                    "ImageBuilder, which loads its files one after the other, finds no stretch of \
                     {}'s load window {} free of reservations that holds them",
                    board.name, board.window
                ),
            )
        })?;
    let load_cmd = format!("load {}", board.default_load_device);
    write(
        &dir.join("imagebuilder.cfg"),
        &imagebuilder::config(
            scenario,
            board,
            ib_memory,
            xen_bootargs,
            &domain_files,
            dom0_files.as_ref(),
            &load_cmd,
        ),
    )?;

    // The tree Xen will get from ImageBuilder's script: the board's, the overlay's nodes and
    // ImageBuilder's modules at its addresses (and U-Boot's /memory where the tree has none).
    let modules: Vec<Module> = images
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let l = loads.iter().find(|l| l.kind == LoadKind::Module(i))?;
            Some(Module {
                owner: f.owner,
                kind: f.kind,
                image: f.path.clone(),
                addr: l.addr,
                size: f.size,
            })
        })
        .collect();
    let expected = dir.join("imagebuilder-expected.dts");
    let base = DtsBase {
        include: "board.dts",
        xen_bootargs,
        root_nodes: memory,
        node_names: NodeNames::ImageBuilder,
    };
    write(&expected, &host_dts_over(scenario, &modules, &base))?;
    dtc(&expected, &dir.join("imagebuilder-expected.dtb"), false)?;
    Ok(loads)
}

/// Renders plan.txt.
fn plan_text(
    scenario: &Scenario,
    board: &Board,
    facts: &TreeFacts,
    plan: &[Load],
    ib: &[Load],
    xen_bootargs: &str,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({}): scenario {} ({})",
        board.title,
        board.name,
        scenario.name,
        scenario.path.display()
    );
    let _ = writeln!(s, "board tree: {}", board.dtb_source);
    let _ = writeln!(s);
    let _ = writeln!(s, "Xen's command line: {xen_bootargs}");
    let _ = writeln!(
        s,
        "console: {} = {} ({}), /chosen/stdout-path {:?}",
        board.console.dtuart,
        board.console.path,
        board.console.compatible,
        board.console.stdout_path
    );
    let _ = writeln!(
        s,
        "GIC: {:?}, {} lines ({}): a domain without nr_spis gets {} SPIs (32..{})",
        board.gic,
        board.gic_lines.lines,
        if board.gic_lines.exact {
            "exact"
        } else {
            "at least"
        },
        board.default_nr_spis(),
        32 + board.default_nr_spis()
    );
    let _ = writeln!(s, "  {}", board.gic_lines.why);
    let _ = writeln!(s, "IPA bits: {} (the boot CPU's PARange)", board.ipa_bits);
    let _ = writeln!(s);
    let _ = writeln!(s, "RAM:");
    if facts.memory.is_empty() {
        for r in board.ram_if_missing {
            let _ = writeln!(
                s,
                "  {r} (written into host.dtb: {})",
                board.ram_if_missing_why
            );
        }
    }
    for r in &facts.memory {
        let _ = writeln!(s, "  {r} (the board's tree)");
    }
    let _ = writeln!(s, "load window: {} ({})", board.window, board.window_why);
    let _ = writeln!(s, "never loaded into:");
    for r in board.reserved {
        let _ = writeln!(s, "  {} {}", r.range, r.why);
    }
    for r in &facts.reserved_memory {
        let _ = writeln!(s, "  {} {} (/reserved-memory)", r.range, r.path);
    }
    for r in &facts.memreserve {
        let _ = writeln!(s, "  {r} (/memreserve/)");
    }
    for (title, loads) in [
        ("boot.scr", plan),
        ("ImageBuilder's script (predicted)", ib),
    ] {
        let _ = writeln!(s);
        let _ = writeln!(s, "load plan of {title}:");
        for l in loads {
            let size = if l.kind == LoadKind::Script {
                "(the script)".to_owned()
            } else {
                format!("{:>9} bytes", l.size)
            };
            let _ = writeln!(
                s,
                "  [{:#011x}, {:#011x}) {:<30} {size}",
                l.addr,
                l.addr + l.span.max(l.size),
                l.file,
            );
        }
    }
    s
}
