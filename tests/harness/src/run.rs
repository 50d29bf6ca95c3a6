//! QEMU runner: boots one generated scenario, streams its console into the judge and a log
//! file under a deadline, and always kills QEMU by PID afterwards (DESIGN.md §5: QEMU never
//! exits by itself once the guests are done). On a timeout it can first type Xen debug keys on
//! the serial console, so that the log shows Xen's state (run queues, ...) at the stall.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use scenario::{Console, Generated};

use crate::judge::{Ending, Judge, Verdict};

/// Time to keep reading after the last awaited marker (or a crash line), so trailing lines
/// such as a call trace still reach the log.
const GRACE: Duration = Duration::from_millis(500);
/// Poll interval while waiting for a non-interactive `boot` to time out.
const POLL: Duration = Duration::from_millis(100);
/// Xen's console-input switch: Ctrl-A three times moves serial input to the next of Xen, dom0
/// (none here) and the domUs (xen/drivers/char/console.c `serial_rx`).
const SWITCH_INPUT: &[u8] = b"\x01\x01\x01";
/// What Xen prints once serial input goes to Xen itself, i.e. debug keys work.
const INPUT_TO_XEN: &str = "*** Serial input to Xen";
/// Time to wait for Xen's answer to one input switch, and for the output of one debug key.
const SWITCH_WAIT: Duration = Duration::from_millis(1000);
const KEY_WAIT: Duration = Duration::from_millis(2000);

/// Owns a running QEMU and kills it (by PID, via `Child::kill`) when dropped, so that every
/// way out of a run, early returns included, leaves no QEMU behind.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
}

impl Qemu {
    /// Returns QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills QEMU if it still runs and reaps it; returns how it ended.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        // `kill` fails harmlessly (InvalidInput) when the child was already reaped, and
        // sends SIGKILL to our own child's PID otherwise: no name-based matching.
        if self.child.try_wait()?.is_none() {
            let _ = self.child.kill();
        }
        self.child.wait()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Tells which QEMU stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
enum Event {
    Line(Stream, String),
    Eof,
}

/// Describes one finished run.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Time from QEMU start to the last awaited marker, or to the stop.
    pub elapsed: Duration,
    pub pid: u32,
}

/// Boots `gen` with the harness console, judges its console with `judge`, writes every line
/// to `log`, and kills QEMU when done, on a crash or a console bound passed, on early exit or
/// after `timeout`.
/// With `echo`, console lines are also copied to stdout as they arrive. When the timeout
/// expires and `debug_keys` is not empty, serial input is switched to Xen and those Xen debug
/// keys are typed (`r` dumps the run queues, `q` the domains); what Xen prints then goes to the
/// log, marked, and not to the judge: the verdict stays the timeout's.
pub fn run_scenario(
    gen: &Generated,
    mut judge: Judge,
    timeout: Duration,
    log: &Path,
    echo: bool,
    debug_keys: &str,
) -> io::Result<Outcome> {
    let mut log = BufWriter::new(File::create(log)?);
    let mut cmd = gen.qemu_command(Console::Harness);
    // QEMU's serial port reads its stdin: a pipe only when keys may be typed, nothing otherwise.
    cmd.stdin(if debug_keys.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut qemu = Qemu {
        child: cmd.spawn()?,
    };
    let pid = qemu.pid();
    // The log starts with how QEMU was run; these lines are not fed to the judge.
    writeln!(
        log,
        "[harness] qemu pid {pid}: {}",
        gen.shell_command(Console::Harness)
    )?;

    let (tx, rx) = mpsc::channel();
    let stdout = qemu
        .child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no QEMU stdout"))?;
    let stderr = qemu
        .child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no QEMU stderr"))?;
    let readers = [
        spawn_reader(stdout, Stream::Stdout, tx.clone()),
        spawn_reader(stderr, Stream::Stderr, tx),
    ];

    let deadline = start + timeout;
    let mut stop_at: Option<Instant> = None;
    let mut finished_at: Option<Instant> = None;
    let mut eofs = 0;
    let mut last_stderr = String::new();
    let ending = loop {
        let until = stop_at.map_or(deadline, |s| s.min(deadline));
        let now = Instant::now();
        if now >= until {
            break if stop_at.is_some() {
                Ending::Stopped
            } else {
                Ending::TimedOut(timeout)
            };
        }
        match rx.recv_timeout(until - now) {
            Ok(Event::Line(stream, line)) => {
                if echo {
                    println!("{line}");
                }
                if stream == Stream::Stderr {
                    // QEMU's own complaints (bad option, missing file) go to stderr; keep them
                    // in the log, marked, and out of the judge.
                    writeln!(log, "[qemu stderr] {line}")?;
                    last_stderr = line;
                } else {
                    writeln!(log, "{line}")?;
                    judge.feed(&line);
                }
                if stop_at.is_none() && (judge.done() || judge.stop_early()) {
                    let now = Instant::now();
                    finished_at = Some(now);
                    stop_at = Some(now + GRACE);
                }
            }
            Ok(Event::Eof) => {
                eofs += 1;
                if eofs == readers.len() {
                    break Ending::QemuExited(String::new());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break Ending::QemuExited(String::new()),
        }
    };
    let elapsed = finished_at.unwrap_or_else(Instant::now) - start;
    if matches!(ending, Ending::TimedOut(_)) && !debug_keys.is_empty() {
        // Each domain (dom0 included) has a kernel module: count the owners of kernels.
        let domains = gen
            .modules
            .iter()
            .filter(|m| m.kind == scenario::ModuleKind::Kernel)
            .count();
        type_debug_keys(&mut qemu, &rx, &mut log, debug_keys, domains)?;
    }
    let status = qemu.kill()?;
    // Killing QEMU closes its pipes, so the readers end now.
    for r in readers {
        let _ = r.join();
    }
    log.flush()?;
    let ending = match ending {
        Ending::QemuExited(_) if last_stderr.is_empty() => Ending::QemuExited(status.to_string()),
        Ending::QemuExited(_) => Ending::QemuExited(format!("{status}: {last_stderr}")),
        e => e,
    };
    Ok(Outcome {
        verdict: judge.verdict(&ending),
        elapsed,
        pid,
    })
}

/// Switches Xen's serial input to Xen, types `keys` one by one and writes what follows to `log`
/// (marked; nothing here is judged). Xen cycles input through Xen, dom0 and each domU, so it
/// takes up to `domains + 2` switches.
fn type_debug_keys(
    qemu: &mut Qemu,
    rx: &mpsc::Receiver<Event>,
    log: &mut impl Write,
    keys: &str,
    domains: usize,
) -> io::Result<()> {
    let Some(mut stdin) = qemu.child.stdin.take() else {
        return Ok(());
    };
    writeln!(
        log,
        "[harness] timed out: typing Xen debug keys {keys:?} (the lines below are not judged)"
    )?;
    let mut to_xen = false;
    for _ in 0..domains + 2 {
        // QEMU may be gone; then there is nothing more to learn.
        if stdin
            .write_all(SWITCH_INPUT)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return Ok(());
        }
        if copy_lines(rx, log, SWITCH_WAIT, Some(INPUT_TO_XEN))? {
            to_xen = true;
            break;
        }
    }
    if !to_xen {
        writeln!(
            log,
            "[harness] Xen did not take the console input; no keys typed"
        )?;
        return Ok(());
    }
    for key in keys.bytes() {
        if stdin
            .write_all(&[key])
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return Ok(());
        }
        copy_lines(rx, log, KEY_WAIT, None)?;
    }
    Ok(())
}

/// Copies console lines from `rx` to `log` for `wait`, or until a line contains `stop`;
/// returns whether one did.
fn copy_lines(
    rx: &mpsc::Receiver<Event>,
    log: &mut impl Write,
    wait: Duration,
    stop: Option<&str>,
) -> io::Result<bool> {
    let until = Instant::now() + wait;
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        match rx.recv_timeout(until - now) {
            Ok(Event::Line(Stream::Stdout, line)) => {
                writeln!(log, "{line}")?;
                if stop.is_some_and(|s| line.contains(s)) {
                    return Ok(true);
                }
            }
            Ok(Event::Line(Stream::Stderr, line)) => writeln!(log, "[qemu stderr] {line}")?,
            Ok(Event::Eof) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(false),
        }
    }
}

/// Boots `gen` for a person. Without `timeout`: `-nographic` with the terminal attached,
/// until QEMU exits (Ctrl-A X). With `timeout`: stdin from /dev/null, the console on our
/// stdout, and QEMU killed when the time is up. Returns QEMU's exit status, or `None` when
/// it was killed at the timeout.
pub fn boot(gen: &Generated, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
    let Some(timeout) = timeout else {
        let mut qemu = Qemu {
            child: gen.qemu_command(Console::Interactive).spawn()?,
        };
        return qemu.child.wait().map(Some);
    };
    let mut cmd = gen.qemu_command(Console::Harness);
    cmd.stdin(Stdio::null());
    let deadline = Instant::now() + timeout;
    let mut qemu = Qemu {
        child: cmd.spawn()?,
    };
    loop {
        if let Some(status) = qemu.child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            qemu.kill()?;
            return Ok(None);
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// Reads `r` line by line on its own thread (blocking reads cannot honour a deadline) and
/// sends each line, then `Eof`. Bytes that are not UTF-8 are replaced, not fatal: a guest may
/// print anything.
fn spawn_reader<R: Read + Send + 'static>(
    r: R,
    stream: Stream,
    tx: mpsc::Sender<Event>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    // Xen's serial driver ends lines with "\r\n".
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    })
}
