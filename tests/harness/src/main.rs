//! `harness` command: boots Xen and the dom0less guests of each scenario in QEMU, judges the
//! console and prints a PASS/FAIL table (DESIGN.md §7); `boot` starts one scenario for a person.
//!
//! Arguments are parsed by hand: two commands, five options.
//! Ctrl-C: QEMU runs in the harness's process group, so the terminal's SIGINT reaches it too
//! and it exits ("terminating on signal 2"); no signal handler is needed for that.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use scenario::{generate, Console, GenOptions, Scenario};

use harness::judge::{Expectation, Judge};
use harness::run;

const USAGE: &str = "\
usage:
  harness run --xen <xen image> --images <dir> --out <dir> [--logs <dir>] [--verbose]
              <scenario.toml>...
      boots each scenario, judges its console, prints one line per scenario and a table;
      generated files go to <out>/<name>/, console logs to <logs>/<name>.log (default
      <out>/logs); --verbose echoes the console; exits 1 if any scenario fails
  harness boot --xen <xen image> --images <dir> --out <dir> [--timeout <s>]
              <scenario.toml>
      boots one scenario with the console attached (Ctrl-A X quits); with --timeout, runs
      without input and kills QEMU after <s> seconds";

/// Holds the parsed command line.
#[derive(Debug, Default)]
struct Args {
    xen: Option<PathBuf>,
    images: Option<PathBuf>,
    out: Option<PathBuf>,
    logs: Option<PathBuf>,
    timeout: Option<u64>,
    verbose: bool,
    scenarios: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match argv.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("", &argv[..]),
    };
    if matches!(cmd, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let result = match cmd {
        "run" => run_all(&args),
        "boot" => boot_one(&args),
        _ => return usage_error("expected a command: run or boot"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("harness: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--xen" => a.xen = Some(value()?.into()),
            "--images" => a.images = Some(value()?.into()),
            "--out" => a.out = Some(value()?.into()),
            "--logs" => a.logs = Some(value()?.into()),
            "--timeout" => {
                let v = value()?;
                let s = v.parse().ok().filter(|&s: &u64| s > 0);
                a.timeout = Some(s.ok_or(format!("--timeout {v}: expected whole seconds > 0"))?);
            }
            "-v" | "--verbose" => a.verbose = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.scenarios.push(s.into()),
        }
    }
    Ok(a)
}

/// Builds the generator options from the command line; generated files go to
/// `<out>/<name>/`, as with `scenario gen`.
fn gen_options(a: &Args) -> Result<GenOptions, String> {
    let need = |v: &Option<PathBuf>, what: &str| v.clone().ok_or(format!("missing {what}"));
    Ok(GenOptions {
        xen: need(&a.xen, "--xen")?,
        images: need(&a.images, "--images")?,
        out: need(&a.out, "--out")?,
    })
}

/// Describes one row of the final table.
struct Row {
    name: String,
    pass: bool,
    checks: usize,
    time: Duration,
    log: String,
}

fn run_all(a: &Args) -> Result<ExitCode, String> {
    let opts = gen_options(a)?;
    if a.scenarios.is_empty() {
        return Err("no scenario files given".into());
    }
    if a.timeout.is_some() {
        return Err("--timeout is for boot; run uses each scenario's timeout_s".into());
    }
    let logs = match &a.logs {
        Some(l) => l.clone(),
        None => need_out(a)?.join("logs"),
    };
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;

    let mut rows = Vec::new();
    for file in &a.scenarios {
        let row = run_one(file, &opts, &logs, a.verbose);
        println!(
            "SCENARIO {} {} {}",
            row.0.name,
            if row.0.pass { "PASS" } else { "FAIL" },
            row.1
        );
        rows.push(row.0);
    }
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.pass).count();
    println!("{} passed, {} failed", rows.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn need_out(a: &Args) -> Result<&Path, String> {
    a.out.as_deref().ok_or_else(|| "missing --out".to_owned())
}

/// Runs one scenario file and returns its table row and the one-line reason; every error
/// becomes a FAIL of that scenario so the remaining ones still run.
fn run_one(file: &Path, opts: &GenOptions, logs: &Path, echo: bool) -> (Row, String) {
    // Before the file is parsed its stem is the best name there is.
    let stem = file
        .file_stem()
        .map_or("?".into(), |s| s.to_string_lossy().into_owned());
    let fail = |name: String, why: String| {
        (
            Row {
                name,
                pass: false,
                checks: 0,
                time: Duration::ZERO,
                log: "-".into(),
            },
            why,
        )
    };
    let s = match Scenario::load(file) {
        Ok(s) => s,
        Err(e) => return fail(stem, format!("invalid scenario: {e}")),
    };
    let gen = match generate(&s, opts) {
        Ok(g) => g,
        Err(e) => return fail(s.name.clone(), format!("cannot generate: {e}")),
    };
    let log = logs.join(format!("{}.log", s.name));
    let judge = Judge::new(Expectation::of(&s));
    let timeout = Duration::from_secs(s.timeout_s);
    match run::run_scenario(&gen, judge, timeout, &log, echo) {
        Ok(o) => {
            let why = o.verdict.why(o.elapsed);
            let why = if o.verdict.pass {
                why
            } else {
                format!("{why} (log {})", log.display())
            };
            let row = Row {
                name: s.name,
                pass: o.verdict.pass,
                checks: o.verdict.checks_passed,
                time: o.elapsed,
                log: log.display().to_string(),
            };
            (row, why)
        }
        Err(e) => fail(s.name, format!("cannot run QEMU: {e}")),
    }
}

fn print_table(rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("scenario".len());
    println!();
    println!(
        "{:<w$}  {:<6}  {:>6}  {:>7}  log",
        "scenario", "result", "checks", "time"
    );
    for r in rows {
        println!(
            "{:<w$}  {:<6}  {:>6}  {:>6.1}s  {}",
            r.name,
            if r.pass { "PASS" } else { "FAIL" },
            r.checks,
            r.time.as_secs_f64(),
            r.log
        );
    }
}

fn boot_one(a: &Args) -> Result<ExitCode, String> {
    let opts = gen_options(a)?;
    let [file] = &a.scenarios[..] else {
        return Err("boot takes exactly one scenario file".into());
    };
    let s = Scenario::load(file).map_err(|e| e.to_string())?;
    let gen = generate(&s, &opts).map_err(|e| e.to_string())?;
    let timeout = a.timeout.map(Duration::from_secs);
    match timeout {
        None => {
            eprintln!("harness: booting {} with the console attached", s.name);
            eprintln!("harness: quit with Ctrl-A X (Ctrl-A C: QEMU monitor; Ctrl-A Ctrl-A sends Ctrl-A to Xen)");
            eprintln!("harness: {}", gen.shell_command(Console::Interactive));
        }
        Some(t) => {
            eprintln!(
                "harness: booting {} for {}s without input",
                s.name,
                t.as_secs()
            );
            eprintln!("harness: {}", gen.shell_command(Console::Harness));
        }
    }
    match run::boot(&gen, timeout).map_err(|e| format!("cannot run QEMU: {e}"))? {
        None => {
            eprintln!("harness: timeout reached, QEMU killed");
            Ok(ExitCode::SUCCESS)
        }
        Some(status) if status.success() => Ok(ExitCode::SUCCESS),
        Some(status) => Err(format!("QEMU exited with {status}")),
    }
}
