//! Console judge: a pure fold over console lines that decides PASS/FAIL for one scenario
//! (DESIGN.md §7: guest `SCENARIO <name> PASS|FAIL|END` markers, the Rust banner, Xen
//! panic/crash lines, expected substrings, timeout).
//!
//! Every marker is tied to the domain that printed it, from the prefix Xen puts on the line:
//! `(dN) ` for `HYPERVISOR_console_io` output (xen/drivers/char/console.c `guest_printk`) and
//! `(XEN) DOMN: ` for a domain's vpl011 UART (xen/arch/arm/vpl011.c `vpl011_write_data_xen`).
//! Dom0less domains get their IDs in `/chosen` order starting at 1 (Xen 4.17
//! `create_domUs`, `++max_init_domid`), and the scenario tool writes `/chosen` in file order, so
//! the scenario's domain `i` is domid `i + 1`; a dom0 is built before them (domid 0) and does
//! not change that. Dom0's console (`hvc0`, `HYPERVISOR_console_io` of the hardware domain) is
//! written to the serial line as it is, without a prefix (console.c `guest_console_write`):
//! in a scenario with a dom0, a line that starts with neither a domain prefix nor `(XEN)` is
//! dom0's; without one it is nobody's. Xen writes dom0's output in chunks of at most
//! [`DOM0_CHUNK`] bytes, each under the console lock, so a whole line of Xen's or of another
//! domain can land between two chunks of one dom0 line: an unprefixed line with a prefix inside
//! it is a dom0 head followed by that line, and the head is joined with dom0's next line. A scenario ends when every `expect_end` domain printed
//! its own END: an END from a backend cannot stand in for a frontend that hangs. PASS and END
//! count only from a scenario domain; a FAIL fails the scenario whoever printed it.
//!
//! The vpl011 prints a domain's line in chunks of at most [`VPL011_CHUNK`] bytes (its 128-byte
//! buffer less the newline and NUL it appends), each with its own prefix. A chunk of exactly
//! that length is the head of a longer line, so it is held and joined with the same domain's
//! next chunk before any check looks at it.
//!
//! A scenario with `expect_boot_error` is judged the other way round: it passes only if Xen
//! prints `rust-ioreq: invalid configuration: <that message>` and then panics with the
//! component's panic text; the banner, any guest marker, any other crash line, another message
//! or a timeout fail it.
//!
//! Domain crashes are attributed: Xen's `domain_crash()` prints `domain_crash called from
//! <file>:<line>`, then `__domain_crash()` names the domain in a second line (`Domain <id>
//! (vcpu#<v>) crashed on cpu#<c>:` or `Domain <id> reported crashed by domain <other> on
//! cpu#<c>:`), except for a domain that is already shutting down, for which it prints nothing
//! more. A crash of a domain the scenario marks `expect_crash` (a hostile guest Xen must stop)
//! is expected, and required; any other domain's crash fails the scenario, and so does a
//! `domain_crash called` line no domain line follows, unless an expected crash came before it
//! (then it is that domain crashed again while shutting down).
//!
//! The console can be bounded (`[expect] max_lines`, `[[expect.at_most]]`): a guest that makes
//! Xen print without limit fails the scenario, and reading stops as soon as a bound is passed.
//!
//! It has no I/O so it can be tested on synthetic logs; `run` feeds it live lines and asks
//! `done()` and `stop_early()` to know when to stop reading.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use scenario::Scenario;

/// Console substrings that mean Xen itself failed, or a Linux guest panicked, as Xen 4.17
/// prints them, with the reason the verdict gives. Sources: `panic()` drivers/char/console.c
/// ("Panic on CPU %d:"); `BUG()`/`WARN()`/`ASSERT()` arch/arm/traps.c `do_bug_frame` ("Xen BUG
/// at", "Xen WARN at", "Assertion '%s' failed at"); `show_trace` arch/arm/traps.c ("Xen call
/// trace:"). "FATAL" and "PANIC" are kept from the harness brief although Xen/Arm does not
/// print them today.
const CRASH_PATTERNS: &[(&str, &str)] = &[
    ("Panic on CPU", "Xen panic"),
    ("Xen BUG at", "Xen BUG"),
    ("Assertion '", "Xen assertion failed"),
    ("Xen WARN at", "Xen WARN"),
    ("Xen call trace", "Xen call trace"),
    ("FATAL", "FATAL"),
    ("PANIC", "PANIC"),
    ("Kernel panic - not syncing", "guest kernel panic"),
];

/// What Xen prints when it crashes a domain (include/xen/sched.h `domain_crash`).
const DOMAIN_CRASH_CALLED: &str = "domain_crash called";
/// The lines of common/domain.c `__domain_crash` that name the crashed domain: `Domain <id>`
/// followed by one of these.
const DOMAIN_CRASHED: [&str; 2] = ["crashed on cpu#", "reported crashed by domain"];
const DOMAIN_HEAD: &str = "Domain ";

/// Says what the Rust component's boot banner must look like (regex
/// `rust-ioreq v\S+ ready: (\d+) xen,virtio-mmio-device node`).
const BANNER_HEAD: &str = "rust-ioreq v";
const BANNER_MID: &str = " ready: ";
const BANNER_TAIL: &str = " xen,virtio-mmio-device node";

/// What Xen prints before a configuration error (`arch/src/entry.rs`, `rust_ioreq_init`).
const REFUSAL_HEAD: &str = "rust-ioreq: invalid configuration: ";
/// Xen's panic text after a configuration error (xen-patches 0003, `start_xen()`).
const REFUSAL_PANIC: &str = "rust-ioreq: invalid configuration in the host device tree (see above)";
/// The crash pattern a refused configuration is expected to print.
const XEN_PANIC: &str = "Panic on CPU";
/// Longest line `arch/`'s logger prints (`arch/src/log.rs` `LINE_MAX`): a longer line is cut
/// there and ends in `...`, so an expected message is matched against that cut too.
pub const ARCH_LINE_MAX: usize = 160;

/// Prefix of a domain's `HYPERVISOR_console_io` line: `(d<domid>) `.
const CONSOLE_IO_HEAD: &str = "(d";
const CONSOLE_IO_TAIL: &str = ") ";
/// Prefix of every line Xen prints itself.
const XEN_HEAD: &str = "(XEN)";
/// Prefix of a domain's vpl011 line: `(XEN) DOM<domid>: `.
const VPL011_HEAD: &str = "(XEN) DOM";
const VPL011_TAIL: &str = ": ";
/// Bytes of a line the vpl011 prints at most per chunk: `SBSA_UART_OUT_BUF_SIZE` (128,
/// xen/arch/arm/include/asm/vpl011.h) less the newline and NUL `vpl011_write_data_xen` adds.
pub const VPL011_CHUNK: usize = 126;

/// Bytes of dom0 output Xen writes at a time: `kbuf[128]` less the NUL in
/// `guest_console_write` (xen/drivers/char/console.c).
pub const DOM0_CHUNK: usize = 127;

/// Keeps at most this many crash and guest-FAIL lines for the report.
const MAX_KEPT: usize = 3;

/// One domain of the scenario, as the judge needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainExpectation {
    /// The domain's node name under `/chosen`, used in the verdict.
    pub name: String,
    /// Whether the scenario waits for a `SCENARIO <name> END` from this domain.
    pub expect_end: bool,
    /// Whether Xen must crash this domain (and may).
    pub expect_crash: bool,
}

/// Says what one scenario's console must show; derived from the scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub name: String,
    /// The dom0less domains in `/chosen` order: entry `i` is domid `i + 1`.
    pub domains: Vec<DomainExpectation>,
    /// The dom0 (domid 0, unprefixed console lines), if the scenario has one.
    pub dom0: Option<DomainExpectation>,
    /// Number the banner must report: all `[[domain.device]]` entries.
    pub devices: usize,
    pub contains: Vec<String>,
    /// Strings that must appear in this order, each on a later line than the one before.
    pub ordered: Vec<String>,
    /// The configuration error Xen must stop with, for a scenario that expects a refusal.
    pub boot_error: Option<String>,
    /// Most console lines the boot may print.
    pub max_lines: Option<usize>,
    /// Most console lines that may contain each text.
    pub at_most: Vec<(String, usize)>,
}

impl Expectation {
    /// Derives the expectation of a validated scenario.
    pub fn of(s: &Scenario) -> Self {
        Expectation {
            name: s.name.clone(),
            domains: s
                .domains
                .iter()
                .map(|d| DomainExpectation {
                    name: d.name.clone(),
                    expect_end: d.expect_end,
                    expect_crash: d.expect_crash,
                })
                .collect(),
            dom0: s.dom0.as_ref().map(|d| DomainExpectation {
                name: "dom0".to_owned(),
                expect_end: d.expect_end,
                expect_crash: false,
            }),
            devices: s.device_count(),
            contains: s.expect_contains.clone(),
            ordered: s.expect_ordered.clone(),
            boot_error: s.expect_boot_error.clone(),
            max_lines: s.max_lines,
            at_most: s
                .at_most
                .iter()
                .map(|a| (a.text.clone(), a.lines))
                .collect(),
        }
    }

    /// Returns the number of domains (dom0 included) an END is awaited from.
    pub fn ends(&self) -> usize {
        self.all().filter(|d| d.expect_end).count()
    }

    /// Returns every domain of the scenario, in [`Judge::ended`] order: the dom0less domains,
    /// then dom0.
    fn all(&self) -> impl Iterator<Item = &DomainExpectation> {
        self.domains.iter().chain(&self.dom0)
    }

    /// Returns the position in [`all`](Self::all) of the domain that printed a line from
    /// `source`, if it is one of the scenario's.
    fn index_of(&self, source: Source) -> Option<usize> {
        match source {
            Source::Xen => None,
            Source::Dom0Console => self.dom0.as_ref().map(|_| self.domains.len()),
            Source::ConsoleIo(domid) | Source::Vpl011(domid) => {
                let i = usize::try_from(domid.checked_sub(1)?).ok()?;
                (i < self.domains.len()).then_some(i)
            }
        }
    }
}

/// Says how reading the console stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The harness stopped reading because `done()` or `stop_early()` said so.
    Stopped,
    /// The scenario's timeout expired first.
    TimedOut(Duration),
    /// QEMU closed its output first; the text says how it exited.
    QemuExited(String),
}

/// Gives the decision on one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    /// Why it failed, most important first; empty on PASS.
    pub reasons: Vec<String>,
    /// `SCENARIO <name> PASS` lines seen from the scenario's domains.
    pub checks_passed: usize,
    /// `expect_end` domains that printed END.
    pub ends_seen: usize,
    pub ends_expected: usize,
    /// Whether the scenario expected (and, on PASS, got) Xen refusing its configuration.
    pub refusal: bool,
}

impl Verdict {
    /// Summarises the verdict in one line: the reasons on FAIL, the counts on PASS.
    pub fn why(&self, elapsed: Duration) -> String {
        if self.pass && self.refusal {
            format!(
                "Xen refused the configuration as expected in {:.1}s",
                elapsed.as_secs_f64()
            )
        } else if self.pass {
            format!(
                "{}/{} guests ended, {} checks passed in {:.1}s",
                self.ends_seen,
                self.ends_expected,
                self.checks_passed,
                elapsed.as_secs_f64()
            )
        } else {
            self.reasons.join("; ")
        }
    }
}

/// Who printed a console line, from Xen's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Xen itself, or a line without a domain prefix in a scenario without a dom0.
    Xen,
    /// The dom0's console: a line with no prefix at all, in a scenario with a dom0.
    Dom0Console,
    /// Domain `domid` through `HYPERVISOR_console_io`.
    ConsoleIo(u32),
    /// Domain `domid` through its vpl011.
    Vpl011(u32),
}

impl Source {
    /// Returns the domain ID, if a domain printed the line.
    fn domid(self) -> Option<u32> {
        match self {
            Source::Xen => None,
            Source::Dom0Console => Some(0),
            Source::ConsoleIo(d) | Source::Vpl011(d) => Some(d),
        }
    }
}

/// Accumulates what the console showed so far.
#[derive(Debug, Clone)]
pub struct Judge {
    exp: Expectation,
    banner: Option<u64>,
    /// Per scenario domain (dom0less domains in order, then dom0): whether it printed END.
    ended: Vec<bool>,
    passes: usize,
    guest_fails: Vec<String>,
    guest_fail_count: usize,
    crashes: Vec<String>,
    crash_count: usize,
    /// Per scenario domain: whether Xen crashed it (only `expect_crash` domains are recorded;
    /// any other crash counts in `crash_count`).
    crashed: Vec<bool>,
    /// `domain_crash called` lines not yet followed by the line naming their domain, each with
    /// whether an expected crash had been seen before it.
    unattributed: VecDeque<(String, bool)>,
    contains_seen: Vec<bool>,
    /// How many of the `ordered` strings were seen in order so far.
    ordered_seen: usize,
    /// Console lines seen, and per `at_most` entry the lines that contained its text.
    lines: usize,
    at_most_seen: Vec<usize>,
    /// Heads of vpl011 lines still waiting for their next chunk, by domid.
    partial: BTreeMap<u32, String>,
    /// The head of a dom0 line another line cut into, waiting for the rest.
    dom0_head: Option<String>,
    /// What Xen said after `rust-ioreq: invalid configuration: `, each time it did.
    refusals: Vec<String>,
    /// Xen's `Panic on CPU` line, when a refusal is expected (then it is not a crash).
    xen_panic: bool,
    /// Xen's panic text after a configuration error.
    refusal_panic: bool,
}

/// Classifies a scenario marker line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker<'a> {
    Pass,
    Fail(&'a str),
    End,
}

impl Judge {
    /// Starts judging against `exp` with nothing seen.
    pub fn new(exp: Expectation) -> Self {
        let n = exp.contains.len();
        let d = exp.all().count();
        let a = exp.at_most.len();
        Judge {
            exp,
            banner: None,
            ended: vec![false; d],
            passes: 0,
            guest_fails: Vec::new(),
            guest_fail_count: 0,
            crashes: Vec::new(),
            crash_count: 0,
            crashed: vec![false; d],
            unattributed: VecDeque::new(),
            contains_seen: vec![false; n],
            ordered_seen: 0,
            lines: 0,
            at_most_seen: vec![0; a],
            partial: BTreeMap::new(),
            dom0_head: None,
            refusals: Vec::new(),
            xen_panic: false,
            refusal_panic: false,
        }
    }

    /// Takes one console line (without its line ending) into account.
    pub fn feed(&mut self, line: &str) {
        let (source, text) = match split_source(line) {
            (Source::Xen, text) if self.exp.dom0.is_some() && !line.starts_with(XEN_HEAD) => {
                (Source::Dom0Console, text)
            }
            other => other,
        };
        if source == Source::Dom0Console {
            self.feed_dom0(line);
            return;
        }
        let Source::Vpl011(domid) = source else {
            self.take(source, line, text);
            return;
        };
        // Join a vpl011 chunk with the head(s) held before it.
        let joined = match self.partial.remove(&domid) {
            Some(mut head) => {
                head.push_str(text);
                head
            }
            None => text.to_owned(),
        };
        if text.len() == VPL011_CHUNK {
            self.partial.insert(domid, joined);
        } else {
            self.take(
                source,
                &format!("{VPL011_HEAD}{domid}{VPL011_TAIL}{joined}"),
                &joined,
            );
        }
    }

    /// Takes an unprefixed line of a scenario with a dom0: a piece of a dom0 line, possibly
    /// followed by a whole line of another source that Xen printed between two dom0 chunks.
    fn feed_dom0(&mut self, line: &str) {
        if let Some(at) = embedded_prefix(line) {
            self.dom0_head
                .get_or_insert_with(String::new)
                .push_str(&line[..at]);
            self.feed(&line[at..]);
            return;
        }
        let joined = match self.dom0_head.take() {
            Some(mut head) => {
                head.push_str(line);
                head
            }
            None => line.to_owned(),
        };
        self.take(Source::Dom0Console, &joined, &joined);
    }

    /// Takes one whole console line into account: `line` as printed (vpl011 chunks joined),
    /// `text` the part after the domain prefix.
    fn take(&mut self, source: Source, line: &str, text: &str) {
        self.lines += 1;
        for (seen, (want, _)) in self.at_most_seen.iter_mut().zip(&self.exp.at_most) {
            if line.contains(want.as_str()) {
                *seen += 1;
            }
        }
        let refusal_expected = self.exp.boot_error.is_some();
        if source == Source::Xen {
            if let Some(i) = line.find(REFUSAL_HEAD) {
                self.refusals
                    .push(line[i + REFUSAL_HEAD.len()..].trim_end().to_owned());
            }
            self.refusal_panic |= line.contains(REFUSAL_PANIC);
        }
        if refusal_expected && line.contains(XEN_PANIC) {
            self.xen_panic = true;
        } else if let Some(&(_, why)) = CRASH_PATTERNS.iter().find(|(pat, _)| line.contains(pat)) {
            self.crash(format!("{why}: {}", line.trim()));
        }
        self.domain_crash(source, line);
        if self.banner.is_none() {
            self.banner = parse_banner(line);
        }
        let domain = self.exp.index_of(source);
        match (parse_marker(text, &self.exp.name), domain) {
            (Some(Marker::Pass), Some(_)) => self.passes += 1,
            (Some(Marker::End), Some(i)) => self.ended[i] = true,
            (Some(Marker::Fail(detail)), _) => {
                self.guest_fail_count += 1;
                if self.guest_fails.len() < MAX_KEPT {
                    let who = match (domain, source.domid()) {
                        (Some(i), _) => self
                            .exp
                            .all()
                            .nth(i)
                            .map_or(String::new(), |d| d.name.clone()),
                        (None, Some(d)) => format!("unknown domain d{d}"),
                        (None, None) => "a line without a domain prefix".to_owned(),
                    };
                    self.guest_fails.push(format!("{who} FAIL {detail}"));
                }
            }
            // PASS or END from no domain of the scenario: not evidence of anything.
            (Some(Marker::Pass | Marker::End), None) | (None, _) => {}
        }
        for (seen, want) in self.contains_seen.iter_mut().zip(&self.exp.contains) {
            *seen = *seen || line.contains(want.as_str());
        }
        // One step per line at most: "a" then "b" must be on two lines, in this order.
        if let Some(next) = self.exp.ordered.get(self.ordered_seen) {
            if line.contains(next.as_str()) {
                self.ordered_seen += 1;
            }
        }
    }

    /// Counts a crash line that fails the scenario, keeping the first few for the report.
    fn crash(&mut self, what: String) {
        self.crash_count += 1;
        if self.crashes.len() < MAX_KEPT {
            self.crashes.push(what);
        }
    }

    /// Attributes Xen's domain-crash lines (see the module documentation). The same text from
    /// a domain (its own console output) proves nothing about Xen and fails as before.
    fn domain_crash(&mut self, source: Source, line: &str) {
        let called = line.contains(DOMAIN_CRASH_CALLED);
        let named = DOMAIN_CRASHED.iter().any(|p| line.contains(p));
        if !called && !named {
            return;
        }
        if source != Source::Xen {
            self.crash(format!("domain crashed: {}", line.trim()));
            return;
        }
        if called {
            let excused = self.crashed.iter().any(|&c| c);
            self.unattributed
                .push_back((line.trim().to_owned(), excused));
            return;
        }
        self.unattributed.pop_front();
        let source = |domid| match domid {
            0 => Source::Dom0Console,
            d => Source::ConsoleIo(d),
        };
        let domain = crashed_domid(line)
            .and_then(|d| self.exp.index_of(source(d)))
            .and_then(|i| Some((i, self.exp.all().nth(i)?.clone())));
        match domain {
            Some((i, d)) if d.expect_crash => self.crashed[i] = true,
            Some((_, d)) => self.crash(format!("{} crashed: {}", d.name, line.trim())),
            None => self.crash(format!("domain crashed: {}", line.trim())),
        }
    }

    /// Returns the `at_most` bounds passed and the line count if it passed `max_lines`, as
    /// verdict reasons.
    fn over_budget(&self) -> Vec<String> {
        let mut r = Vec::new();
        if let Some(max) = self.exp.max_lines.filter(|&m| self.lines > m) {
            r.push(format!(
                "the console printed more than {max} lines ({} read)",
                self.lines
            ));
        }
        for (&seen, (text, max)) in self.at_most_seen.iter().zip(&self.exp.at_most) {
            if seen > *max {
                r.push(format!(
                    "{seen} console lines contain {text:?}, at most {max} allowed"
                ));
            }
        }
        r
    }

    /// Takes the vpl011 line heads still held into account as they are (their domain printed
    /// nothing more).
    fn flush(&mut self) {
        if let Some(head) = self.dom0_head.take() {
            self.take(Source::Dom0Console, &head, &head);
        }
        for (domid, text) in std::mem::take(&mut self.partial) {
            let line = format!("{VPL011_HEAD}{domid}{VPL011_TAIL}{text}");
            self.take(Source::Vpl011(domid), &line, &text);
        }
    }

    /// Returns how many `expect_end` domains printed END.
    fn ends_seen(&self) -> usize {
        self.exp
            .all()
            .zip(&self.ended)
            .filter(|(d, &ended)| d.expect_end && ended)
            .count()
    }

    /// Tells whether every `expect_end` domain has printed END (with no END awaited: at least
    /// one PASS) and every `expect_crash` domain has crashed, i.e. the harness can stop reading
    /// after a short grace period.
    pub fn done(&self) -> bool {
        if self.exp.boot_error.is_some() {
            // Nothing follows Xen's panic; after the banner, no refusal will come.
            return self.refusal_panic || self.banner.is_some();
        }
        let ends = self.exp.ends();
        let crashes_seen = self
            .exp
            .domains
            .iter()
            .zip(&self.crashed)
            .all(|(d, &c)| c || !d.expect_crash);
        self.ends_seen() == ends && crashes_seen && (ends > 0 || self.passes > 0)
    }

    /// Tells whether a crash line that fails the scenario has been seen.
    pub fn crashed(&self) -> bool {
        self.crash_count > 0
    }

    /// Tells whether the scenario has already failed in a way nothing can repair (a crash, a
    /// console bound passed): stop reading.
    pub fn stop_early(&self) -> bool {
        self.crashed() || !self.over_budget().is_empty()
    }

    /// Decides, given how reading ended.
    pub fn verdict(&self, ending: &Ending) -> Verdict {
        let mut j = self.clone();
        j.flush();
        j.decide(ending)
    }

    /// Decides once every held line has been taken into account.
    fn decide(&self, ending: &Ending) -> Verdict {
        if let Some(want) = &self.exp.boot_error {
            return self.decide_refusal(want, ending);
        }
        let name = &self.exp.name;
        let mut r = Vec::new();
        let mut crashes = self.crashes.clone();
        let mut crash_count = self.crash_count;
        for (line, excused) in &self.unattributed {
            if !excused {
                crash_count += 1;
                if crashes.len() < MAX_KEPT {
                    crashes.push(format!("domain crashed, no domain named after: {line}"));
                }
            }
        }
        if crash_count > 0 {
            r.push(plural_list(&crashes, crash_count, "crash lines"));
        }
        for (d, &crashed) in self.exp.domains.iter().zip(&self.crashed) {
            if d.expect_crash && !crashed {
                r.push(format!("{} was expected to crash but did not", d.name));
            }
        }
        r.extend(self.over_budget());
        if self.guest_fail_count > 0 {
            r.push(plural_list(
                &self.guest_fails,
                self.guest_fail_count,
                "FAIL lines",
            ));
        }
        match self.banner {
            None => r.push("no rust-ioreq banner".to_owned()),
            Some(n) if usize::try_from(n).ok() != Some(self.exp.devices) => r.push(format!(
                "banner reports {n} xen,virtio-mmio-device nodes, scenario has {}",
                self.exp.devices
            )),
            Some(_) => {}
        }
        for (d, &ended) in self.exp.all().zip(&self.ended) {
            if d.expect_end && !ended {
                r.push(format!("{} did not end", d.name));
            }
        }
        if self.passes == 0 {
            r.push(format!("no 'SCENARIO {name} PASS' line"));
        }
        for (seen, want) in self.contains_seen.iter().zip(&self.exp.contains) {
            if !seen {
                r.push(format!("expected output {want:?} missing"));
            }
        }
        if let Some(missing) = self.exp.ordered.get(self.ordered_seen) {
            let after = match self.ordered_seen.checked_sub(1) {
                Some(k) => format!(" after {:?}", self.exp.ordered[k]),
                None => String::new(),
            };
            r.push(format!("expected output {missing:?}{after} missing"));
        }
        match ending {
            Ending::Stopped => {}
            Ending::TimedOut(t) => r.push(format!("timeout after {}s", t.as_secs())),
            // QEMU only exits by itself on a Xen reboot/panic (-no-reboot) or an error: even
            // with every marker seen that is worth failing on.
            Ending::QemuExited(how) => r.push(format!("QEMU exited early ({how})")),
        }
        Verdict {
            pass: r.is_empty(),
            reasons: r,
            checks_passed: self.passes,
            ends_seen: self.ends_seen(),
            ends_expected: self.exp.ends(),
            refusal: false,
        }
    }

    /// Decides a scenario that expects Xen to refuse its configuration with `want`.
    fn decide_refusal(&self, want: &str, ending: &Ending) -> Verdict {
        let mut r = Vec::new();
        if self.crash_count > 0 {
            r.push(plural_list(&self.crashes, self.crash_count, "crash lines"));
        }
        if self.guest_fail_count > 0 {
            r.push(plural_list(
                &self.guest_fails,
                self.guest_fail_count,
                "FAIL lines",
            ));
        }
        if let Some(n) = self.banner {
            r.push(format!(
                "rust-ioreq accepted the configuration (banner with {n} devices)"
            ));
        }
        if self.passes > 0 || self.ended.iter().any(|&e| e) {
            r.push("a domain ran and printed markers".to_owned());
        }
        match self.refusals.as_slice() {
            [] => r.push(format!("no '{REFUSAL_HEAD}' line")),
            got if !got.iter().any(|g| refusal_matches(g, want)) => {
                r.push(format!("Xen refused with {:?}, expected {want:?}", got[0]))
            }
            _ => {}
        }
        if !(self.xen_panic && self.refusal_panic) {
            r.push(format!("Xen did not panic with {REFUSAL_PANIC:?}"));
        }
        for (seen, want) in self.contains_seen.iter().zip(&self.exp.contains) {
            if !seen {
                r.push(format!("expected output {want:?} missing"));
            }
        }
        // After its panic Xen resets the board and QEMU (-no-reboot) exits: that is the
        // expected end, as is the harness stopping once it saw the panic.
        if let Ending::TimedOut(t) = ending {
            r.push(format!("timeout after {}s", t.as_secs()));
        }
        Verdict {
            pass: r.is_empty(),
            reasons: r,
            checks_passed: self.passes,
            ends_seen: self.ends_seen(),
            ends_expected: 0,
            refusal: true,
        }
    }
}

/// Tells whether Xen's refusal text `got` (after [`REFUSAL_HEAD`]) is `want`, allowing for the
/// cut `arch/`'s logger makes to lines longer than [`ARCH_LINE_MAX`].
pub fn refusal_matches(got: &str, want: &str) -> bool {
    let full = format!("{REFUSAL_HEAD}{want}");
    let printed = format!("{REFUSAL_HEAD}{got}");
    if printed == full {
        return true;
    }
    full.len() > ARCH_LINE_MAX
        && printed.len() == ARCH_LINE_MAX
        && printed.ends_with("...")
        && full.as_bytes()[..ARCH_LINE_MAX - 3] == printed.as_bytes()[..ARCH_LINE_MAX - 3]
}

/// Judges a whole log at once: the pure function the harness's live loop is equivalent to.
pub fn judge<'a>(
    exp: &Expectation,
    lines: impl IntoIterator<Item = &'a str>,
    ending: &Ending,
) -> Verdict {
    let mut j = Judge::new(exp.clone());
    for l in lines {
        j.feed(l);
    }
    j.verdict(ending)
}

/// Returns the domain ID of an `__domain_crash` line (`... Domain <id> ...crashed...`).
fn crashed_domid(line: &str) -> Option<u32> {
    let rest = &line[line.find(DOMAIN_HEAD)? + DOMAIN_HEAD.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Formats kept lines, noting how many more there were.
fn plural_list(kept: &[String], total: usize, what: &str) -> String {
    let mut s = kept.join(" | ");
    if total > kept.len() {
        s.push_str(&format!(" (+{} more {what})", total - kept.len()));
    }
    s
}

/// Splits a console line into who printed it and the text after Xen's domain prefix (the whole
/// line when it has none).
fn split_source(line: &str) -> (Source, &str) {
    /// Parses `<digits><tail>` at the start of `s` into the number and the rest.
    fn domid<'a>(s: &'a str, tail: &str) -> Option<(u32, &'a str)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let id = s[..digits].parse().ok()?;
        Some((id, s[digits..].strip_prefix(tail)?))
    }
    if let Some((d, text)) = line
        .strip_prefix(VPL011_HEAD)
        .and_then(|s| domid(s, VPL011_TAIL))
    {
        return (Source::Vpl011(d), text);
    }
    if let Some((d, text)) = line
        .strip_prefix(CONSOLE_IO_HEAD)
        .and_then(|s| domid(s, CONSOLE_IO_TAIL))
    {
        return (Source::ConsoleIo(d), text);
    }
    (Source::Xen, line)
}

/// Returns where in `line` (after its first byte) a line of Xen's or of a domain starts, if one
/// does: `(XEN) ` or `(d<digits>) `.
fn embedded_prefix(line: &str) -> Option<usize> {
    line.match_indices('(').map(|(i, _)| i).find(|&i| {
        let rest = &line[i..];
        i > 0 && (rest.starts_with("(XEN) ") || split_source(rest).0 != Source::Xen)
    })
}

/// Extracts the device count from a banner line, if `line` contains one.
fn parse_banner(line: &str) -> Option<u64> {
    let mut rest = line;
    while let Some(i) = rest.find(BANNER_HEAD) {
        rest = &rest[i + BANNER_HEAD.len()..];
        // `\S+`: the version runs to the next whitespace and must not be empty.
        let v_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if v_end > 0 {
            if let Some(after) = rest[v_end..].strip_prefix(BANNER_MID) {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 && after[digits..].starts_with(BANNER_TAIL) {
                    // More digits than a u64 holds cannot be a right count either.
                    return Some(after[..digits].parse().unwrap_or(u64::MAX));
                }
            }
        }
    }
    None
}

/// Finds a `SCENARIO <name> PASS|FAIL|END` marker in `line`, matching the name as a whole
/// word so that `boot` does not pick up `boot-smoke`'s lines.
fn parse_marker<'a>(line: &'a str, name: &str) -> Option<Marker<'a>> {
    let mut rest = line;
    while let Some(i) = rest.find("SCENARIO ") {
        rest = &rest[i + "SCENARIO ".len()..];
        let Some(after_name) = rest.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let word_end = after_name
            .find(char::is_whitespace)
            .unwrap_or(after_name.len());
        let detail = after_name[word_end..].trim();
        match &after_name[..word_end] {
            "PASS" => return Some(Marker::Pass),
            "END" => return Some(Marker::End),
            "FAIL" => return Some(Marker::Fail(detail)),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two domains, domU1 (d1) and domU2 (d2); the first `ends` of them expect END.
    fn exp(ends: usize, devices: usize) -> Expectation {
        assert!(ends <= 2);
        Expectation {
            name: "smoke".into(),
            domains: (0..2)
                .map(|i| DomainExpectation {
                    name: format!("domU{}", i + 1),
                    expect_end: i < ends,
                    expect_crash: false,
                })
                .collect(),
            dom0: None,
            devices,
            contains: vec![],
            ordered: vec![],
            boot_error: None,
            max_lines: None,
            at_most: vec![],
        }
    }

    const BANNER2: &str = "(XEN) rust-ioreq v0.1.0 ready: 2 xen,virtio-mmio-device nodes";

    fn good_log() -> Vec<&'static str> {
        vec![
            "(XEN) Xen version 4.17.5",
            BANNER2,
            "(d1) SCENARIO smoke PASS hello from d1",
            "(d2) SCENARIO smoke PASS hello from d2",
            "(d2) SCENARIO smoke PASS blk read",
            "(d1) SCENARIO smoke END",
            "(d2) SCENARIO smoke END",
        ]
    }

    #[test]
    fn pass_when_everything_is_there() {
        let v = judge(&exp(2, 2), good_log(), &Ending::Stopped);
        assert!(v.pass, "{:?}", v.reasons);
        assert_eq!((v.checks_passed, v.ends_seen, v.ends_expected), (3, 2, 2));
        assert_eq!(
            v.why(Duration::from_millis(3100)),
            "2/2 guests ended, 3 checks passed in 3.1s"
        );
    }

    #[test]
    fn done_after_all_ends_only() {
        let mut j = Judge::new(exp(2, 2));
        for l in &good_log()[..6] {
            j.feed(l);
            assert!(!j.done());
        }
        j.feed(good_log()[6]);
        assert!(j.done());
        assert!(!j.crashed());
    }

    #[test]
    fn no_end_expected_is_done_after_a_pass() {
        let mut j = Judge::new(exp(0, 0));
        assert!(!j.done());
        j.feed("(d1) SCENARIO smoke PASS x");
        assert!(j.done());
    }

    #[test]
    fn guest_fail_line_fails() {
        let mut log = good_log();
        log.insert(
            3,
            "(d1) SCENARIO smoke FAIL blk read: got 0x0 want 0x74726976",
        );
        let v = judge(&exp(2, 2), log, &Ending::Stopped);
        assert!(!v.pass);
        assert_eq!(
            v.reasons,
            vec!["domU1 FAIL blk read: got 0x0 want 0x74726976"]
        );
    }

    #[test]
    fn every_crash_pattern_fails() {
        let lines = [
            "(XEN) Panic on CPU 0:",
            "(XEN) Xen BUG at arch/arm/io.c:42",
            "(XEN) Assertion 'x' failed at io.c:1",
            "(XEN) Xen WARN at common/foo.c:10",
            "(XEN) Xen call trace:",
            "(XEN) FATAL something",
            "(XEN) PANIC something",
            "[    1.0] Kernel panic - not syncing: Attempted to kill init!",
        ];
        assert_eq!(lines.len(), CRASH_PATTERNS.len());
        for l in lines {
            let mut log = good_log();
            log.insert(4, l);
            let mut j = Judge::new(exp(2, 2));
            log.iter().for_each(|l| j.feed(l));
            assert!(j.crashed(), "{l}");
            let v = j.verdict(&Ending::Stopped);
            assert!(!v.pass, "{l}");
            assert!(v.reasons[0].ends_with(l.trim()), "{l}: {:?}", v.reasons);
        }
    }

    #[test]
    fn an_unexpected_domain_crash_fails() {
        for (lines, reason) in [
            (
                &[
                    "(XEN) domain_crash called from arch/arm/traps.c:2000",
                    "(XEN) Domain 1 (vcpu#0) crashed on cpu#1:",
                ][..],
                "domU1 crashed: (XEN) Domain 1 (vcpu#0) crashed on cpu#1:",
            ),
            (
                &["(XEN) Domain 2 reported crashed by domain 0 on cpu#0:"][..],
                "domU2 crashed: (XEN) Domain 2 reported crashed by domain 0 on cpu#0:",
            ),
            (
                &["(XEN) Domain 7 reported crashed by domain 1 on cpu#0:"][..],
                "domain crashed: (XEN) Domain 7 reported crashed by domain 1 on cpu#0:",
            ),
            // A guest's own text is no evidence of what Xen did: it fails as it always did.
            (
                &["(d1) Domain 2 reported crashed by domain 1 on cpu#0:"][..],
                "domain crashed: (d1) Domain 2 reported crashed by domain 1 on cpu#0:",
            ),
        ] {
            let mut log = good_log();
            for (k, l) in lines.iter().enumerate() {
                log.insert(4 + k, l);
            }
            let mut j = Judge::new(exp(2, 2));
            log.iter().for_each(|l| j.feed(l));
            assert!(j.crashed() && j.stop_early(), "{lines:?}");
            let v = j.verdict(&Ending::Stopped);
            assert_eq!(v.reasons, vec![reason.to_owned()]);
        }
        // `domain_crash called` and no line naming the domain: the crash is nobody's to excuse.
        let mut log = good_log();
        log.insert(4, "(XEN) domain_crash called from arch/arm/traps.c:2000");
        let mut j = Judge::new(exp(2, 2));
        log.iter().for_each(|l| j.feed(l));
        assert!(!j.crashed());
        let v = j.verdict(&Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec![
                "domain crashed, no domain named after: (XEN) domain_crash called from \
                 arch/arm/traps.c:2000"
            ]
        );
    }

    /// domU1 ends; domU2 is a hostile domain Xen must crash.
    fn hostile() -> Expectation {
        let mut e = exp(1, 2);
        e.domains[1].expect_crash = true;
        e
    }

    #[test]
    fn an_expected_crash_is_required_and_not_a_failure() {
        let crash = [
            "(XEN) rust-ioreq: backend domU2 broke the slot protocol: crashing it",
            "(XEN) domain_crash called from arch/arm/rust_ioreq.c:582",
            "(XEN) Domain 2 reported crashed by domain 1 on cpu#1:",
        ];
        let mut j = Judge::new(hostile());
        for l in [
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
        ] {
            j.feed(l);
        }
        // domU1 ended, but domU2 has not crashed yet: not done.
        assert!(!j.done());
        let v = j.verdict(&Ending::TimedOut(Duration::from_secs(9)));
        assert_eq!(
            v.reasons,
            vec![
                "domU2 was expected to crash but did not",
                "timeout after 9s"
            ]
        );
        for l in crash {
            j.feed(l);
            assert!(!j.stop_early(), "{l}");
        }
        assert!(j.done());
        assert!(j.verdict(&Ending::Stopped).pass);
        // Crashed again while shutting down: Xen names nobody, and that is domU2 again.
        j.feed(crash[1]);
        assert!(j.verdict(&Ending::Stopped).pass);
        // The innocent domain crashing still fails.
        j.feed(crash[1]);
        j.feed("(XEN) Domain 1 reported crashed by domain 2 on cpu#0:");
        assert!(j.crashed());
        let v = j.verdict(&Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec!["domU1 crashed: (XEN) Domain 1 reported crashed by domain 2 on cpu#0:"]
        );
    }

    #[test]
    fn an_unnamed_crash_before_any_expected_one_fails() {
        let log = [
            BANNER2,
            "(XEN) domain_crash called from common/foo.c:1",
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
            "(XEN) domain_crash called from arch/arm/rust_ioreq.c:582",
            "(XEN) Domain 2 reported crashed by domain 1 on cpu#1:",
            "(XEN) domain_crash called from arch/arm/rust_ioreq.c:582",
        ];
        let v = judge(&hostile(), log, &Ending::Stopped);
        // The domain line resolves the oldest pending call; the last call comes after domU2's
        // crash and is excused, the first is not.
        assert_eq!(
            v.reasons,
            vec![
                "domain crashed, no domain named after: (XEN) domain_crash called from \
                 arch/arm/rust_ioreq.c:582"
            ]
        );
    }

    #[test]
    fn console_bounds() {
        let mut e = exp(2, 2);
        e.max_lines = Some(good_log().len());
        e.at_most = vec![("PASS".into(), 3), ("hello".into(), 1)];
        let v = judge(&e, good_log(), &Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec!["2 console lines contain \"hello\", at most 1 allowed"]
        );
        e.at_most[1].1 = 2;
        assert!(judge(&e, good_log(), &Ending::Stopped).pass);
        let mut j = Judge::new(e);
        for l in good_log() {
            j.feed(l);
        }
        assert!(!j.stop_early());
        j.feed("(XEN) one line too many");
        assert!(j.stop_early() && !j.crashed());
        let v = j.verdict(&Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec!["the console printed more than 7 lines (8 read)"]
        );
        // Joined vpl011 chunks count as one line.
        let mut e = exp(1, 2);
        e.max_lines = Some(3);
        let v = judge(
            &e,
            [BANNER2, SPLIT[0], SPLIT[1], "(d1) SCENARIO smoke PASS x"],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons, vec!["domU1 did not end"]);
    }

    #[test]
    fn many_crash_lines_are_summarised() {
        let mut log = good_log();
        log.extend(["Xen call trace:"; 5]);
        let v = judge(&exp(2, 2), log, &Ending::Stopped);
        assert!(
            v.reasons[0].ends_with("(+2 more crash lines)"),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn missing_banner_fails() {
        let log: Vec<&str> = good_log().into_iter().filter(|l| *l != BANNER2).collect();
        let v = judge(&exp(2, 2), log, &Ending::Stopped);
        assert_eq!(v.reasons, vec!["no rust-ioreq banner"]);
    }

    #[test]
    fn banner_count_mismatch_fails() {
        let v = judge(&exp(2, 3), good_log(), &Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec!["banner reports 2 xen,virtio-mmio-device nodes, scenario has 3"]
        );
        let v = judge(
            &exp(2, 2),
            good_log().into_iter().map(|l| {
                if l == BANNER2 {
                    "rust-ioreq v0.2-rc1 ready: 1 xen,virtio-mmio-device node"
                } else {
                    l
                }
            }),
            &Ending::Stopped,
        );
        assert_eq!(
            v.reasons,
            vec!["banner reports 1 xen,virtio-mmio-device nodes, scenario has 2"]
        );
    }

    #[test]
    fn banner_grammar() {
        assert_eq!(
            parse_banner("rust-ioreq v1 ready: 0 xen,virtio-mmio-device node"),
            Some(0)
        );
        assert_eq!(
            parse_banner("x rust-ioreq v0.1.0+g12 ready: 17 xen,virtio-mmio-device nodes"),
            Some(17)
        );
        assert_eq!(
            parse_banner("rust-ioreq v ready: 1 xen,virtio-mmio-device node"),
            None
        );
        assert_eq!(
            parse_banner("rust-ioreq v1 ready: x xen,virtio-mmio-device node"),
            None
        );
        assert_eq!(parse_banner("rust-ioreq v1 ready: 1 virtio node"), None);
        assert_eq!(
            parse_banner("rust-ioreq v1  ready: 1 xen,virtio-mmio-device node"),
            None
        );
        assert_eq!(
            parse_banner(
                "rust-ioreq v1 ready: 99999999999999999999999 xen,virtio-mmio-device node"
            ),
            Some(u64::MAX)
        );
    }

    #[test]
    fn missing_end_and_pass_fail() {
        let v = judge(
            &exp(2, 2),
            [BANNER2, "(d2) SCENARIO smoke END"],
            &Ending::Stopped,
        );
        assert_eq!(
            v.reasons,
            vec!["domU1 did not end", "no 'SCENARIO smoke PASS' line"]
        );
    }

    #[test]
    fn markers_match_the_whole_name() {
        let log = [
            BANNER2,
            "(d1) SCENARIO smoke-2 PASS x",
            "(d1) SCENARIO smokey END",
            "(d1) SCENARIO smoke ENDS",
        ];
        let v = judge(&exp(1, 2), log, &Ending::Stopped);
        assert_eq!((v.checks_passed, v.ends_seen), (0, 0));
        assert_eq!(
            parse_marker("a SCENARIO x SCENARIO smoke FAIL why  ", "smoke"),
            Some(Marker::Fail("why"))
        );
        assert_eq!(
            parse_marker("SCENARIO smoke END", "smoke"),
            Some(Marker::End)
        );
    }

    #[test]
    fn missing_expected_output_fails() {
        let mut e = exp(2, 2);
        e.contains = vec!["hello from d1".into(), "not there".into()];
        let v = judge(&e, good_log(), &Ending::Stopped);
        assert_eq!(v.reasons, vec!["expected output \"not there\" missing"]);
    }

    #[test]
    fn timeout_fails_and_says_what_was_missing() {
        let v = judge(
            &exp(2, 2),
            ["(XEN) Loading d1 kernel"],
            &Ending::TimedOut(Duration::from_secs(60)),
        );
        assert_eq!(
            v.reasons,
            vec![
                "no rust-ioreq banner",
                "domU1 did not end",
                "domU2 did not end",
                "no 'SCENARIO smoke PASS' line",
                "timeout after 60s",
            ]
        );
        assert_eq!(v.why(Duration::ZERO), v.reasons.join("; "));
    }

    #[test]
    fn qemu_exit_fails_even_with_all_markers() {
        let v = judge(
            &exp(2, 2),
            good_log(),
            &Ending::QemuExited("exit status: 0".into()),
        );
        assert_eq!(v.reasons, vec!["QEMU exited early (exit status: 0)"]);
    }

    /// A frontend (domU1, waited for) and a backend (domU2, not waited for), as in blk-rw.
    fn frontend_backend() -> Expectation {
        let mut e = exp(1, 1);
        e.devices = 2;
        e
    }

    #[test]
    fn a_backend_end_does_not_end_the_scenario() {
        let mut j = Judge::new(frontend_backend());
        for l in [
            BANNER2,
            "(d2) SCENARIO smoke PASS backend-online",
            "(d2) SCENARIO smoke END",
            "(d1) SCENARIO smoke PASS probe",
        ] {
            j.feed(l);
            assert!(!j.done(), "{l}");
        }
        let v = j.verdict(&Ending::TimedOut(Duration::from_secs(60)));
        assert_eq!(v.reasons, vec!["domU1 did not end", "timeout after 60s"]);
        assert_eq!((v.ends_seen, v.ends_expected), (0, 1));
        j.feed("(d1) SCENARIO smoke END");
        assert!(j.done());
        assert!(j.verdict(&Ending::Stopped).pass);
    }

    #[test]
    fn one_domain_ending_twice_is_one_end() {
        let mut j = Judge::new(exp(2, 2));
        for l in [
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
        ] {
            j.feed(l);
        }
        j.feed("(d1) SCENARIO smoke END");
        assert!(!j.done());
        let v = j.verdict(&Ending::Stopped);
        assert_eq!(v.reasons, vec!["domU2 did not end"]);
        assert_eq!((v.ends_seen, v.ends_expected), (1, 2));
    }

    #[test]
    fn vpl011_lines_count_for_their_domain() {
        let log = [
            BANNER2,
            "(XEN) DOM2: SCENARIO smoke PASS from Linux",
            "(XEN) DOM2: SCENARIO smoke END",
            "(d1) SCENARIO smoke END",
        ];
        let v = judge(&exp(2, 2), log, &Ending::Stopped);
        assert!(v.pass, "{:?}", v.reasons);
        assert_eq!((v.checks_passed, v.ends_seen), (1, 2));
        assert_eq!(split_source("(XEN) DOM12: x"), (Source::Vpl011(12), "x"));
        assert_eq!(split_source("(d3) "), (Source::ConsoleIo(3), ""));
        for not_a_domain in [
            "(XEN) DOM: x",
            "(XEN) DOM1 x",
            "(d) x",
            "(dx) x",
            "(d1)x",
            " (d1) x",
        ] {
            assert_eq!(
                split_source(not_a_domain),
                (Source::Xen, not_a_domain),
                "{not_a_domain}"
            );
        }
    }

    #[test]
    fn markers_from_no_scenario_domain() {
        let log = [
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            // Not a domain of this two-domain scenario, and no domain at all: neither ends.
            "(d3) SCENARIO smoke END",
            "(XEN) DOM0: SCENARIO smoke END",
            "SCENARIO smoke END",
            "(XEN) SCENARIO smoke PASS y",
            // A FAIL fails the scenario whoever printed it.
            "(d3) SCENARIO smoke FAIL from d3",
            "SCENARIO smoke FAIL unprefixed",
        ];
        let v = judge(&exp(1, 2), log, &Ending::Stopped);
        assert_eq!(v.checks_passed, 1);
        assert_eq!(
            v.reasons,
            vec![
                "unknown domain d3 FAIL from d3 | a line without a domain prefix FAIL unprefixed",
                "domU1 did not end",
            ]
        );
    }

    /// Lines of build/logs/linux-blk.log: Xen's vpl011 cut /init's 151-byte line after 126.
    const SPLIT: [&str; 2] = [
        "(XEN) DOM1: init: cmdline: console=ttyAMA0 earlycon=pl011,0x22000000 scenario=linux-blk \
         linuxtest.dt_nodes=2 linuxtest.disk_mib=8 linuxtes",
        "(XEN) DOM1: t.rng=1 linuxtest.timeout_s=150",
    ];

    #[test]
    fn vpl011_chunks_are_joined() {
        assert_eq!(SPLIT[0].len(), "(XEN) DOM1: ".len() + VPL011_CHUNK);
        let mut e = exp(1, 2);
        e.contains = vec!["linuxtest.disk_mib=8 linuxtest.rng=1".into()];
        let v = judge(
            &e,
            [
                BANNER2,
                SPLIT[0],
                SPLIT[1],
                "(XEN) DOM1: SCENARIO smoke PASS x",
            ],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons, vec!["domU1 did not end"]);

        // A long FAIL line keeps its whole detail, another domain's line may come in between,
        // and the continuation alone is no marker.
        let detail = format!("{} tail", "x".repeat(130));
        let fail = format!("(XEN) DOM1: SCENARIO smoke FAIL {detail}");
        let (head, tail) = fail.split_at("(XEN) DOM1: ".len() + VPL011_CHUNK);
        let tail = format!("(XEN) DOM1: {tail}");
        let v = judge(
            &exp(2, 2),
            [
                BANNER2,
                head,
                "(d2) SCENARIO smoke PASS y",
                "(d2) SCENARIO smoke END",
                &tail,
                "(XEN) DOM1: SCENARIO smoke END",
            ],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons, vec![format!("domU1 FAIL {detail}")]);
        assert_eq!(v.ends_seen, 2);
    }

    #[test]
    fn a_held_chunk_is_judged_at_the_end() {
        // A 126-byte line, then the domain stops: Xen printed it as a full chunk.
        let line = format!("SCENARIO smoke FAIL {}", "z".repeat(VPL011_CHUNK - 20));
        assert_eq!(line.len(), VPL011_CHUNK);
        let chunk = format!("(XEN) DOM2: {line}");
        let mut j = Judge::new(exp(1, 2));
        for l in [
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
        ] {
            j.feed(l);
        }
        j.feed(&chunk);
        assert!(j.done());
        let v = j.verdict(&Ending::Stopped);
        assert_eq!(v.reasons, vec![format!("domU2 FAIL {}", &line[20..])]);
        // Xen's own empty chunk after it (the newline alone) joins as nothing.
        let v = judge(
            &exp(1, 2),
            [
                BANNER2,
                "(d1) SCENARIO smoke PASS x",
                "(d1) SCENARIO smoke END",
                &chunk,
                "(XEN) DOM2: ",
            ],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons, vec![format!("domU2 FAIL {}", &line[20..])]);
    }

    #[test]
    fn expectation_follows_the_scenario_file_order() {
        let toml = r#"
name = "order"
timeout_s = 10

[[domain]]
name = "linux"
memory_mib = 128
cpus = 1
kernel = "linux"

  [[domain.device]]
  kind = "blk"
  backend = "backend"
  args = "virtio-blk"

[[domain]]
name = "backend"
memory_mib = 64
cpus = 1
kernel = "backend"
ioreq_server = true
expect_end = false
"#;
        let s = Scenario::parse(toml, std::path::Path::new("order.toml")).unwrap();
        let e = Expectation::of(&s);
        assert_eq!(
            e.domains,
            vec![
                DomainExpectation {
                    name: "linux".into(),
                    expect_end: true,
                    expect_crash: false,
                },
                DomainExpectation {
                    name: "backend".into(),
                    expect_end: false,
                    expect_crash: false,
                },
            ]
        );
        assert_eq!((e.ends(), e.devices), (1, 1));
        assert_eq!(e.dom0, None);
        let at = |d| e.index_of(Source::ConsoleIo(d));
        assert_eq!((at(0), at(1), at(2), at(3)), (None, Some(0), Some(1), None));
        assert_eq!(e.index_of(Source::Dom0Console), None);

        // A dom0 changes no domid: it is domid 0, after the domUs in the judge's list.
        let with_dom0 = toml.replace(
            "\n[[domain]]\nname = \"linux\"",
            "\n[dom0]\nmemory_mib = 256\ncpus = 1\nkernel = \"linux\"\n\n[[domain]]\nname = \"linux\"",
        );
        let s = Scenario::parse(&with_dom0, std::path::Path::new("order.toml")).unwrap();
        let e = Expectation::of(&s);
        assert_eq!(
            e.dom0,
            Some(DomainExpectation {
                name: "dom0".into(),
                expect_end: true,
                expect_crash: false,
            })
        );
        let at = |d| e.index_of(Source::ConsoleIo(d));
        assert_eq!((at(0), at(1), at(2)), (None, Some(0), Some(1)));
        assert_eq!(e.index_of(Source::Dom0Console), Some(2));
        assert_eq!(e.ends(), 2);
    }

    /// domU1 (d1, awaited), domU2 (d2, not awaited) and a dom0 (awaited).
    fn with_dom0() -> Expectation {
        let mut e = exp(1, 2);
        e.dom0 = Some(DomainExpectation {
            name: "dom0".into(),
            expect_end: true,
            expect_crash: false,
        });
        e
    }

    #[test]
    fn unprefixed_lines_are_dom0s_when_there_is_one() {
        let log = [
            " Xen 4.17.5",
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
            "[    2.1] Run /init as init process",
            "SCENARIO smoke PASS destroy d2: gone",
        ];
        let mut j = Judge::new(with_dom0());
        log.iter().for_each(|l| j.feed(l));
        assert!(!j.done(), "dom0 has not ended");
        // Xen's own lines are never dom0's, even when they carry a marker.
        j.feed("(XEN) SCENARIO smoke END");
        assert!(!j.done());
        j.feed("SCENARIO smoke END");
        assert!(j.done());
        let v = j.verdict(&Ending::Stopped);
        assert!(v.pass, "{:?}", v.reasons);
        assert_eq!((v.checks_passed, v.ends_seen, v.ends_expected), (2, 2, 2));

        let v = judge(&with_dom0(), log[..4].iter().copied(), &Ending::Stopped);
        assert_eq!(v.reasons, vec!["dom0 did not end"]);
        let v = judge(
            &with_dom0(),
            [
                BANNER2,
                "(d1) SCENARIO smoke END",
                "SCENARIO smoke FAIL destroy d2: EPERM",
            ],
            &Ending::Stopped,
        );
        assert_eq!(
            v.reasons,
            vec![
                "dom0 FAIL destroy d2: EPERM",
                "dom0 did not end",
                "no 'SCENARIO smoke PASS' line"
            ]
        );
        // Without a dom0 the same lines are nobody's (markers_from_no_scenario_domain).
        let v = judge(&exp(1, 2), log, &Ending::Stopped);
        assert_eq!(v.checks_passed, 1);
    }

    #[test]
    fn a_dom0_line_cut_by_another_line_is_joined() {
        // As seen in build/logs/dom0-destroy.log: Xen wrote the first 127 bytes of dom0's line,
        // then a whole line of d1's, then the rest of dom0's line.
        let dom0 = format!("SCENARIO smoke PASS destroy-d3 {}pages", "x".repeat(100));
        let (head, tail) = dom0.split_at(DOM0_CHUNK);
        let cut = format!("{head}(d1) SCENARIO smoke END");
        let mut e = with_dom0();
        e.contains = vec![format!("destroy-d3 {}pages", "x".repeat(100))];
        let mut j = Judge::new(e);
        for l in [BANNER2, cut.as_str()] {
            j.feed(l);
        }
        assert!(!j.done(), "dom0 has not ended");
        for l in [tail, "SCENARIO smoke END"] {
            j.feed(l);
        }
        assert!(j.done());
        let v = j.verdict(&Ending::Stopped);
        assert!(v.pass, "{:?}", v.reasons);
        assert_eq!((v.checks_passed, v.ends_seen), (1, 2));

        // Xen's own line can cut in too, and a FAIL keeps its whole detail and its domain.
        let v = judge(
            &with_dom0(),
            [
                BANNER2,
                "(d1) SCENARIO smoke PASS x",
                "(d1) SCENARIO smoke END",
                "SCENARIO smoke FAIL destroy-d2: lin(XEN) rust-ioreq: something",
                "gers",
                "SCENARIO smoke END",
            ],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons, vec!["dom0 FAIL destroy-d2: lingers"]);
        // A head with nothing after it is judged at the end.
        let v = judge(
            &with_dom0(),
            [
                BANNER2,
                "(d1) SCENARIO smoke END",
                "SCENARIO smoke FAIL x(d1) y",
            ],
            &Ending::Stopped,
        );
        assert_eq!(v.reasons[0], "dom0 FAIL x");
        assert_eq!(embedded_prefix("(d1) x"), None);
        assert_eq!(embedded_prefix("a (d) (dx) (d1)x"), None);
        assert_eq!(embedded_prefix("ab(d12) x"), Some(2));
        assert_eq!(embedded_prefix("a(XEN) x"), Some(1));
    }

    #[test]
    fn ordered_strings_must_come_in_order_on_separate_lines() {
        let mut e = exp(1, 2);
        e.ordered = vec!["first".into(), "second".into()];
        let base = [
            BANNER2,
            "(d1) SCENARIO smoke PASS x",
            "(d1) SCENARIO smoke END",
        ];
        let run = |extra: &[&'static str]| {
            let mut log: Vec<&str> = base.to_vec();
            log.extend_from_slice(extra);
            judge(&e, log, &Ending::Stopped).reasons
        };
        assert!(run(&["first", "x", "second"]).is_empty());
        assert_eq!(
            run(&["second", "first"]),
            vec!["expected output \"second\" after \"first\" missing"]
        );
        assert_eq!(
            run(&["first and second"]),
            vec!["expected output \"second\" after \"first\" missing"]
        );
        assert_eq!(run(&[]), vec!["expected output \"first\" missing"]);
    }

    /// A scenario expecting Xen to refuse its configuration with `msg`.
    fn refusal(msg: &str) -> Expectation {
        let mut e = exp(2, 2);
        e.boot_error = Some(msg.to_owned());
        e
    }

    const MSG: &str = "/chosen/a/d: property 'xen,backend': a domain cannot be its own backend";

    /// What Xen 4.17 + rust-ioreq prints for a refused configuration.
    fn refusal_log(msg: &str) -> Vec<String> {
        vec![
            "(XEN) Xen version 4.17.5".to_owned(),
            format!("(XEN) rust-ioreq: invalid configuration: {msg}"),
            "(XEN) ".to_owned(),
            "(XEN) ****************************************".to_owned(),
            "(XEN) Panic on CPU 0:".to_owned(),
            "(XEN) rust-ioreq: invalid configuration in the host device tree (see above)"
                .to_owned(),
            "(XEN) ****************************************".to_owned(),
            "(XEN) Reboot in five seconds...".to_owned(),
        ]
    }

    fn judge_refusal(msg: &str, log: &[String], ending: &Ending) -> Verdict {
        judge(&refusal(msg), log.iter().map(String::as_str), ending)
    }

    #[test]
    fn an_expected_refusal_passes_and_is_done_at_the_panic() {
        let log = refusal_log(MSG);
        for ending in [Ending::Stopped, Ending::QemuExited("exit status: 0".into())] {
            let v = judge_refusal(MSG, &log, &ending);
            assert!(v.pass, "{:?}", v.reasons);
            assert!(v.refusal);
            assert_eq!(
                v.why(Duration::from_millis(1500)),
                "Xen refused the configuration as expected in 1.5s"
            );
        }
        let mut j = Judge::new(refusal(MSG));
        for l in &log[..5] {
            j.feed(l);
            assert!(!j.done() && !j.crashed(), "{l}");
        }
        j.feed(&log[5]);
        assert!(j.done() && !j.crashed());
    }

    #[test]
    fn a_refusal_is_matched_whole_or_as_arch_cuts_it() {
        let long = format!("/chosen: property 'xen,xen-bootargs': {}", "x".repeat(200));
        let full = format!("{REFUSAL_HEAD}{long}");
        let cut = format!("{}...", &full[..ARCH_LINE_MAX - 3]);
        let got = &cut[REFUSAL_HEAD.len()..];
        assert!(refusal_matches(got, &long));
        assert!(refusal_matches(&long, &long));
        let mut log = refusal_log(&long);
        log[1] = format!("(XEN) {cut}");
        assert!(judge_refusal(&long, &log, &Ending::Stopped).pass);
        // A cut that differs, or a cut of a message short enough to be printed whole.
        let other = format!("{}...", &full[..ARCH_LINE_MAX - 4]);
        assert!(!refusal_matches(&other[REFUSAL_HEAD.len()..], &long));
        assert!(!refusal_matches(&MSG[..MSG.len() - 3], MSG));
        assert!(!refusal_matches(
            &format!("{}...", &MSG[..MSG.len() - 3]),
            MSG
        ));
    }

    #[test]
    fn a_refusal_fails_on_anything_else() {
        let other = "/chosen/a: property 'cpus': 0 vCPUs: a domain needs at least one";
        let v = judge_refusal(MSG, &refusal_log(other), &Ending::Stopped);
        assert_eq!(
            v.reasons,
            vec![format!("Xen refused with {other:?}, expected {MSG:?}")]
        );
        // Accepted: the banner, domains running, no panic.
        let v = judge_refusal(
            MSG,
            &[BANNER2.to_owned(), "(d1) SCENARIO smoke PASS x".to_owned()],
            &Ending::TimedOut(Duration::from_secs(9)),
        );
        assert_eq!(
            v.reasons,
            vec![
                "rust-ioreq accepted the configuration (banner with 2 devices)".to_owned(),
                "a domain ran and printed markers".to_owned(),
                format!("no '{REFUSAL_HEAD}' line"),
                format!("Xen did not panic with {REFUSAL_PANIC:?}"),
                "timeout after 9s".to_owned(),
            ]
        );
        let mut j = Judge::new(refusal(MSG));
        j.feed(BANNER2);
        assert!(j.done());
        // The right line but no panic: Xen went on.
        let v = judge_refusal(MSG, &refusal_log(MSG)[..2], &Ending::QemuExited("x".into()));
        assert_eq!(
            v.reasons,
            vec![format!("Xen did not panic with {REFUSAL_PANIC:?}")]
        );
        // Any other crash line still fails, and a guest's FAIL line.
        let mut log = refusal_log(MSG);
        log.push("(XEN) Xen BUG at domain_build.c:42".to_owned());
        log.push("(d1) SCENARIO smoke FAIL late".to_owned());
        let v = judge_refusal(MSG, &log, &Ending::Stopped);
        assert!(!v.pass);
        assert_eq!(v.reasons.len(), 2, "{:?}", v.reasons);
        assert!(v.reasons[0].starts_with("Xen BUG: "), "{:?}", v.reasons);
        // A domain cannot print the refusal for Xen.
        let mut log = refusal_log(MSG);
        log[1] = format!("(d1) rust-ioreq: invalid configuration: {MSG}");
        assert!(!judge_refusal(MSG, &log, &Ending::Stopped).pass);
        // Without expect_boot_error, the same log is a Xen panic.
        let v = judge(
            &exp(2, 2),
            refusal_log(MSG).iter().map(String::as_str),
            &Ending::Stopped,
        );
        assert!(
            !v.pass && v.reasons[0].starts_with("Xen panic: "),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn expect_boot_error_comes_from_the_scenario() {
        let toml = r#"
name = "refused"
timeout_s = 10
expect_boot_error = "/chosen/a: property 'cpus': 0 vCPUs"

[[domain]]
name = "a"
memory_mib = 64
cpus = 1
kernel = "hello"
"#;
        let s = Scenario::parse(toml, std::path::Path::new("refused.toml")).unwrap();
        let e = Expectation::of(&s);
        assert_eq!(
            e.boot_error.as_deref(),
            Some("/chosen/a: property 'cpus': 0 vCPUs")
        );
    }
}
