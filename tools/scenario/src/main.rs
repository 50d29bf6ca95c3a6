//! `scenario` command: validates scenario files and generates their host DTB and QEMU command
//! (a thin wrapper over the `scenario` library; arguments are parsed by hand, there are few).

use std::path::PathBuf;
use std::process::ExitCode;

use scenario::{generate, Console, GenOptions, Scenario};

const USAGE: &str = "\
usage:
  scenario gen <scenario.toml> --xen <xen image> --images <dir> --out <dir>
      writes <out>/<name>/{virt.dtb,virt.dts,host.dts,host.dtb,qemu.args} and prints the
      interactive QEMU command (-nographic; Ctrl-A X quits)
  scenario check <scenario.toml>...
      parses and validates scenario files";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => gen(&args[1..]),
        Some("check") => check(&args[1..]),
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
