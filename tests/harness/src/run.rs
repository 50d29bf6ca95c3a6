//! QEMU runner: boots one generated scenario, streams its console into the judge and a log
//! file under a deadline, and always kills QEMU by PID afterwards (DESIGN.md §5: QEMU never
//! exits by itself once the guests are done).

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
/// to `log`, and kills QEMU when done, on crash, on early exit or after `timeout`.
/// With `echo`, console lines are also copied to stdout as they arrive.
pub fn run_scenario(
    gen: &Generated,
    mut judge: Judge,
    timeout: Duration,
    log: &Path,
    echo: bool,
) -> io::Result<Outcome> {
    let mut log = BufWriter::new(File::create(log)?);
    let mut cmd = gen.qemu_command(Console::Harness);
    cmd.stdin(Stdio::null())
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
                if stop_at.is_none() && (judge.done() || judge.crashed()) {
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
