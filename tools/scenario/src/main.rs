//! `scenario` command: validates scenario files, generates their host DTB and QEMU command,
//! and writes and checks the boot files of real boards (a thin wrapper over the `scenario`
//! library; arguments are parsed by hand, there are few).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use scenario::board::{board_names, find_board, Board, BOARDS};
use scenario::boardcheck::{check_board, Expect};
use scenario::boardgen::{generate_board, BoardOptions};
use scenario::uboot::LoadCommand;
use scenario::{generate, Console, GenOptions, Scenario, Scheduler};

const USAGE: &str = "\
usage:
  scenario gen <scenario.toml> --xen <xen image> --images <dir> --out <dir>
      writes <out>/<name>/{virt.dtb,virt.dts,host.dts,host.dtb,qemu.args} and prints the
      interactive QEMU command (-nographic; Ctrl-A X quits)
  scenario check <scenario.toml>...
      parses and validates scenario files
  scenario board <scenario.toml> --board <name> --dtbs <dir> --xen <xen image> --images <dir>
                 --out <dir> [--load distro|tftp|<U-Boot command>]
      writes <out>/<board>/<name>/: host.dtb (+ .dts), boot.cmd + boot.scr, imagebuilder.cfg +
      rust-ioreq.dtbo, plan.txt and links to Xen and the images (docs/boards.md); for
      qemu-virt also disk.img, which `harness run --uboot <out>` boots through U-Boot
  scenario check-board <dir> --board <name> --checker <rust-ioreq-check> [--expect-error <msg>]
      checks one board output directory
  scenario boards --dtbs <dir> --xen <xen image> --images <dir> --out <dir>
                  --checker <rust-ioreq-check> [--board <name>]... <scenario.toml>...
      writes and checks every scenario on every board (or the ones named); one line each
      (no disk.img)
  scenario board --list
      names the boards";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => gen(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("board") => board(&args[1..]),
        Some("check-board") => check_board_cmd(&args[1..]),
        Some("boards") => boards(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scenario: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen(args: &[String]) -> Result<(), String> {
    let (mut xen, mut images, mut out, mut file) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{a} needs a value"))
        };
        match a.as_str() {
            "--xen" => xen = Some(value()?),
            "--images" => images = Some(value()?),
            "--out" => out = Some(value()?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s if file.is_none() => file = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}: one scenario per gen")),
        }
    }
    let need = |v: Option<PathBuf>, what: &str| v.ok_or(format!("missing {what}\n{USAGE}"));
    let file = need(file, "<scenario.toml>")?;
    let opts = GenOptions {
        xen: need(xen, "--xen")?,
        images: need(images, "--images")?,
        out: need(out, "--out")?,
    };
    let s = Scenario::load(&file).map_err(|e| e.to_string())?;
    let g = generate(&s, &opts).map_err(|e| e.to_string())?;
    eprintln!("scenario: wrote {}", g.dir.display());
    println!("{}", g.shell_command(Console::Interactive));
    Ok(())
}

fn check(files: &[String]) -> Result<(), String> {
    if files.is_empty() {
        return Err(format!("missing <scenario.toml>\n{USAGE}"));
    }
    let mut bad = 0;
    for f in files {
        match Scenario::load(f.as_ref()) {
            Ok(s) => println!(
                "{}: ok ({} domains, {} devices, timeout {}s)",
                f,
                s.domains.len(),
                s.device_count(),
                s.timeout_s
            ),
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(format!("{bad} of {} scenario files invalid", files.len()))
    }
}

/// Options of the board commands, parsed from `--key value` pairs and plain arguments.
#[derive(Debug, Default)]
struct BoardArgs {
    boards: Vec<&'static Board>,
    dtbs: Option<PathBuf>,
    xen: Option<PathBuf>,
    images: Option<PathBuf>,
    out: Option<PathBuf>,
    checker: Option<PathBuf>,
    load: Option<LoadCommand>,
    expect_error: Option<String>,
    list: bool,
    files: Vec<PathBuf>,
}

fn board_args(args: &[String]) -> Result<BoardArgs, String> {
    let mut a = BoardArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--board" => {
                let name = value()?;
                a.boards.push(
                    find_board(&name)
                        .ok_or(format!("unknown board {name:?}; boards: {}", board_names()))?,
                );
            }
            "--dtbs" => a.dtbs = Some(value()?.into()),
            "--xen" => a.xen = Some(value()?.into()),
            "--images" => a.images = Some(value()?.into()),
            "--out" => a.out = Some(value()?.into()),
            "--checker" => a.checker = Some(value()?.into()),
            "--load" => a.load = Some(LoadCommand::parse(&value()?)),
            "--expect-error" => a.expect_error = Some(value()?),
            "--list" => a.list = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => a.files.push(s.into()),
        }
    }
    Ok(a)
}

fn need<T>(v: Option<T>, what: &str) -> Result<T, String> {
    v.ok_or(format!("missing {what}\n{USAGE}"))
}

/// Builds the generator's options for one board.
fn board_options(a: &BoardArgs, board: &'static Board) -> Result<BoardOptions, String> {
    Ok(BoardOptions {
        board,
        dtbs: need(a.dtbs.clone(), "--dtbs")?,
        xen: need(a.xen.clone(), "--xen")?,
        images: need(a.images.clone(), "--images")?,
        out: need(a.out.clone(), "--out")?,
        load: a.load.clone().unwrap_or(LoadCommand::Distro),
        disk: board.boots_here,
    })
}

fn board(args: &[String]) -> Result<(), String> {
    let a = board_args(args)?;
    if a.list {
        for b in &BOARDS {
            println!("{:<24} {}", b.name, b.title);
        }
        return Ok(());
    }
    let [file] = a.files.as_slice() else {
        return Err(format!("one <scenario.toml> per board command\n{USAGE}"));
    };
    let [board] = a.boards.as_slice() else {
        return Err(format!("one --board ({})\n{USAGE}", board_names()));
    };
    let s = Scenario::load(file).map_err(|e| e.to_string())?;
    let out = generate_board(&s, &board_options(&a, board)?).map_err(|e| e.to_string())?;
    eprintln!("scenario: wrote {}", out.dir.display());
    for l in &out.plan {
        println!("{:#011x} {:<30} {} bytes", l.addr, l.file, l.size);
    }
    for n in &out.notes {
        println!("note: {n}");
    }
    Ok(())
}

/// What the configuration checker must say about `s` on a board: a refusal scenario's message
/// is QEMU's, so on a board the refusal must be for the same node and property (the counts in
/// the text follow the host), and sched=null's over-commit depends on the board's pCPUs.
fn expectation(s: &Scenario) -> Expect {
    match &s.expect_boot_error {
        Some(m) if s.scheduler() == Scheduler::Null => Expect::Either(m.clone()),
        Some(m) => Expect::RefuseLike(m.clone()),
        None => Expect::Accept,
    }
}

fn check_board_cmd(args: &[String]) -> Result<(), String> {
    let a = board_args(args)?;
    let [dir] = a.files.as_slice() else {
        return Err(format!("one output directory\n{USAGE}"));
    };
    let [board] = a.boards.as_slice() else {
        return Err(format!("one --board ({})\n{USAGE}", board_names()));
    };
    let checker = need(a.checker.clone(), "--checker")?;
    let expect = a
        .expect_error
        .clone()
        .map_or(Expect::Accept, Expect::Refuse);
    let checked = check_board(dir, board, &expect, &checker)?;
    for p in &checked.passed {
        println!("ok: {p}");
    }
    Ok(())
}

fn boards(args: &[String]) -> Result<(), String> {
    let a = board_args(args)?;
    let boards: Vec<&'static Board> = if a.boards.is_empty() {
        BOARDS.iter().collect()
    } else {
        a.boards.clone()
    };
    if a.files.is_empty() {
        return Err(format!("missing <scenario.toml>\n{USAGE}"));
    }
    let checker = need(a.checker.clone(), "--checker")?;
    let (mut pass, mut fail) = (0, 0);
    for board in boards {
        // Disks only for the boots `make board-qemu` makes: one per scenario would be large.
        let opts = BoardOptions {
            disk: false,
            ..board_options(&a, board)?
        };
        let mut notes: Vec<String> = Vec::new();
        for file in &a.files {
            let name = Path::new(file)
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
            let result = Scenario::load(file)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    let out = generate_board(&s, &opts).map_err(|e| e.to_string())?;
                    notes.extend(
                        out.notes
                            .iter()
                            .filter(|n| !notes.contains(n))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    check_board(&out.dir, board, &expectation(&s), &checker)
                });
            match result {
                Ok(c) => {
                    pass += 1;
                    println!(
                        "BOARD {} {name} PASS {} checks; {}",
                        board.name,
                        c.passed.len(),
                        c.verdict.trim_start_matches("(XEN) ")
                    );
                }
                Err(e) => {
                    fail += 1;
                    println!("BOARD {} {name} FAIL {e}", board.name);
                }
            }
        }
        for n in notes {
            println!("note: {n}");
        }
    }
    println!("boards: {pass} passed, {fail} failed");
    if fail == 0 {
        Ok(())
    } else {
        Err(format!("{fail} board output(s) failed"))
    }
}
