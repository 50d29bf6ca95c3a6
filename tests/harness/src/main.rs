//! `harness` command: boots Xen and the dom0less guests of each scenario in QEMU, judges the
//! console and prints a PASS/FAIL table (DESIGN.md §7); `boot` starts one scenario for a person;
//! `soak` boots one scenario many times under each of Xen's schedulers and counts the passes.
//!
//! Arguments are parsed by hand: three commands, eight options.
//! Ctrl-C: QEMU runs in the harness's process group, so the terminal's SIGINT reaches it too
//! and it exits ("terminating on signal 2"); no signal handler is needed for that.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use scenario::{generate, Console, GenOptions, Scenario, Scheduler};

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
      without input and kills QEMU after <s> seconds
  harness soak --xen <xen image> --images <dir> --out <dir> [--logs <dir>] [--runs <n>]
              <scenario.toml>
      boots one scenario <n> times (default 10) under each of Xen's schedulers (sched=credit2,
      credit, null; null only if no more vCPUs than QEMU CPUs), prints one line per boot and
      the passes per scheduler; keeps the logs of failed boots as
      <logs>/soak/<name>-<sched>-<i>.log; exits 1 if any boot fails
  --debug-keys <keys>  (run, soak) when a scenario times out, type these Xen debug keys on
      the console before killing QEMU and log what Xen prints (soak default: r, the run
      queues; run default: none)
  --uboot <dir>  (run) boot each scenario through U-Boot from the disk its qemu-virt board
      output has, <dir>/qemu-virt/<name>/disk.img (scenario board --board qemu-virt; make
      board-qemu): U-Boot runs the boot.scr there, which loads Xen, the images and the DTB";

/// Boots per scheduler when `soak` is not given `--runs`.
const SOAK_RUNS: u32 = 10;
/// Xen debug keys `soak` types on a timeout when not given `--debug-keys`: the run queues.
const SOAK_DEBUG_KEYS: &str = "r";

/// Holds the parsed command line.
#[derive(Debug, Default)]
struct Args {
    xen: Option<PathBuf>,
    images: Option<PathBuf>,
    out: Option<PathBuf>,
    logs: Option<PathBuf>,
    timeout: Option<u64>,
    verbose: bool,
    runs: Option<u32>,
    debug_keys: Option<String>,
    uboot: Option<PathBuf>,
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
        "soak" => soak(&args),
        _ => return usage_error("expected a command: run, boot or soak"),
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
            "--runs" => {
                let v = value()?;
                let n = v.parse().ok().filter(|&n: &u32| n > 0);
                a.runs = Some(n.ok_or(format!("--runs {v}: expected a whole number > 0"))?);
            }
            "--debug-keys" => {
                let v = value()?;
                // Printable ASCII only: Ctrl-A would switch the console input away from Xen.
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("--debug-keys {v:?}: expected printable keys"));
                }
                a.debug_keys = Some(v.clone());
            }
            "--uboot" => a.uboot = Some(value()?.into()),
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
    if a.runs.is_some() {
        return Err("--runs is for soak".into());
    }
    let logs = logs_dir(a)?;
    let keys = a.debug_keys.as_deref().unwrap_or("");

    let mut rows = Vec::new();
    for file in &a.scenarios {
        let row = match Scenario::load(file) {
            Ok(s) => {
                let log = logs.join(format!("{}.log", s.name));
                let disk = a
                    .uboot
                    .as_ref()
                    .map(|root| root.join("qemu-virt").join(&s.name).join("disk.img"));
                run_one(&s, &opts, disk, &log, a.verbose, keys)
            }
            Err(e) => {
                // Before the file is parsed its stem is the best name there is.
                let stem = file
                    .file_stem()
                    .map_or("?".into(), |s| s.to_string_lossy().into_owned());
                failed_row(stem, format!("invalid scenario: {e}"))
            }
        };
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

/// Returns the console log directory (`--logs`, default `<out>/logs`), created.
fn logs_dir(a: &Args) -> Result<PathBuf, String> {
    let logs = match &a.logs {
        Some(l) => l.clone(),
        None => need_out(a)?.join("logs"),
    };
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    Ok(logs)
}

/// Builds the row and reason of a scenario that failed before QEMU ran.
fn failed_row(name: String, why: String) -> (Row, String) {
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
}

/// Boots one scenario, with its console log at `log`, and returns its table row and the
/// one-line reason; every error becomes a FAIL of that scenario so the remaining ones still
/// run. `debug_keys` are typed on a timeout (see `run::run_scenario`).
fn run_one(
    s: &Scenario,
    opts: &GenOptions,
    uboot_disk: Option<PathBuf>,
    log: &Path,
    echo: bool,
    debug_keys: &str,
) -> (Row, String) {
    let mut gen = match generate(s, opts) {
        Ok(g) => g,
        Err(e) => return failed_row(s.name.clone(), format!("cannot generate: {e}")),
    };
    if let Some(disk) = uboot_disk {
        if !disk.is_file() {
            return failed_row(
                s.name.clone(),
                format!("no {} (scenario board --board qemu-virt)", disk.display()),
            );
        }
        gen.uboot_disk = Some(disk);
    }
    let mut expect = s.clone();
    if gen.uboot_disk.is_some() {
        // U-Boot must have run the disk's boot.scr to its end (tools/scenario/src/uboot.rs).
        for line in [
            "Found U-Boot script /boot.scr",
            "rust-ioreq: qemu-virt: loading Xen",
            "rust-ioreq: booting Xen",
        ] {
            expect.expect_ordered.push(line.to_owned());
        }
        expect.expect_ordered.rotate_right(3);
    }
    let judge = Judge::new(Expectation::of(&expect));
    let timeout = Duration::from_secs(s.timeout_s);
    match run::run_scenario(&gen, judge, timeout, log, echo, debug_keys) {
        Ok(o) => {
            let why = o.verdict.why(o.elapsed);
            let why = if o.verdict.pass {
                why
            } else {
                format!("{why} (log {})", log.display())
            };
            let row = Row {
                name: s.name.clone(),
                pass: o.verdict.pass,
                checks: o.verdict.checks_passed,
                time: o.elapsed,
                log: log.display().to_string(),
            };
            (row, why)
        }
        Err(e) => failed_row(s.name.clone(), format!("cannot run QEMU: {e}")),
    }
}

/// Boots one scenario `--runs` times under each scheduler and prints the passes per scheduler.
fn soak(a: &Args) -> Result<ExitCode, String> {
    let opts = gen_options(a)?;
    let [file] = &a.scenarios[..] else {
        return Err("soak takes exactly one scenario file".into());
    };
    if a.timeout.is_some() {
        return Err("--timeout is for boot; soak uses the scenario's timeout_s".into());
    }
    if a.uboot.is_some() {
        return Err("--uboot is for run".into());
    }
    let runs = a.runs.unwrap_or(SOAK_RUNS);
    let keys = a.debug_keys.as_deref().unwrap_or(SOAK_DEBUG_KEYS);
    let base = Scenario::load(file).map_err(|e| e.to_string())?;
    let logs = logs_dir(a)?.join("soak");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    // Logs of an earlier soak of this scenario would read as failures of this one.
    if let Ok(entries) = std::fs::read_dir(&logs) {
        for e in entries.flatten() {
            if is_soak_log(&e.file_name().to_string_lossy(), &base.name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    println!(
        "soak {}: {runs} boot(s) per scheduler; host load before: {}",
        base.name,
        load_average()
    );
    let mut rows: Vec<(Scheduler, Result<u32, String>)> = Vec::new();
    let mut kept = Vec::new();
    for sched in Scheduler::ALL {
        let s = match base.with_scheduler(sched) {
            Ok(s) => s,
            Err(e) => {
                println!("soak {} {sched}: skipped: {e}", base.name);
                rows.push((sched, Err(e.to_string())));
                continue;
            }
        };
        let mut passed = 0;
        for i in 1..=runs {
            let log = logs.join(format!("{}-{sched}-{i}.log", s.name));
            let (row, why) = run_one(&s, &opts, None, &log, a.verbose, keys);
            let verdict = if row.pass { "PASS" } else { "FAIL" };
            println!("soak {} {sched} {i}/{runs} {verdict} {why}", s.name);
            if row.pass {
                passed += 1;
                let _ = std::fs::remove_file(&log);
            } else if log.exists() {
                kept.push(log);
            }
        }
        rows.push((sched, Ok(passed)));
    }
    println!("soak {}: host load after: {}", base.name, load_average());

    println!();
    println!("{:<9}  passed", "scheduler");
    let mut failed = false;
    for (sched, r) in &rows {
        match r {
            Ok(p) => {
                failed |= *p != runs;
                println!("{:<9}  {p}/{runs}", sched.name());
            }
            Err(_) => println!(
                "{:<9}  skipped: {} vCPUs on {} QEMU CPUs (see above)",
                sched.name(),
                base.vcpu_count(),
                base.qemu_smp
            ),
        }
    }
    for log in &kept {
        println!("kept {}", log.display());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Tells whether `file` is the name of a soak log of scenario `name`,
/// `<name>-<scheduler>-<i>.log` (not one of a scenario whose name merely starts the same).
fn is_soak_log(file: &str, name: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".log"))
    else {
        return false;
    };
    let Some((sched, run)) = rest.rsplit_once('-') else {
        return false;
    };
    Scheduler::from_name(sched).is_some()
        && !run.is_empty()
        && run.bytes().all(|b| b.is_ascii_digit())
}

/// Returns the host's load averages (1, 5, 15 min) and runnable/total tasks from
/// /proc/loadavg: other QEMU runs on the host change TCG's timing, so soak figures carry them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
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
    if a.uboot.is_some() {
        return Err("--uboot is for run".into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        let v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        parse_args(&v)
    }

    #[test]
    fn soak_options_are_checked() {
        let a = args(&["--runs", "50", "--debug-keys", "rq", "x.toml"]).expect("valid");
        assert_eq!(a.runs, Some(50));
        assert_eq!(a.debug_keys.as_deref(), Some("rq"));
        assert!(args(&["--runs", "0"]).is_err());
        assert!(args(&["--runs", "many"]).is_err());
        // Ctrl-A would switch Xen's console input away; a space is no key either.
        assert!(args(&["--debug-keys", "\u{1}"]).is_err());
        assert!(args(&["--debug-keys", "r q"]).is_err());
    }

    #[test]
    fn soak_logs_are_recognised_by_scenario_and_scheduler() {
        assert!(is_soak_log("linux-credit2-1.log", "linux"));
        assert!(is_soak_log("two-frontends-null-50.log", "two-frontends"));
        // Another scenario whose name starts the same, and anything else, stays.
        assert!(!is_soak_log("linux-blk-credit2-1.log", "linux"));
        assert!(!is_soak_log("linux-rtds-1.log", "linux"));
        assert!(!is_soak_log("linux-credit-.log", "linux"));
        assert!(!is_soak_log("linux.log", "linux"));
    }
}
