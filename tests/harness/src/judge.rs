//! Console judge: a pure fold over console lines that decides PASS/FAIL for one scenario
//! (DESIGN.md §7: guest `SCENARIO <name> PASS|FAIL|END` markers, the Rust banner, Xen
//! panic/crash lines, expected substrings, timeout).
//!
//! It has no I/O so it can be tested on synthetic logs; `run` feeds it live lines and asks
//! `done()` to know when to stop reading.

use std::time::Duration;

use scenario::Scenario;

/// Console substrings that mean Xen or a domain crashed, as Xen 4.17 prints them, with the
/// reason the verdict gives. Sources: `panic()` drivers/char/console.c ("Panic on CPU %d:");
/// `BUG()`/`WARN()`/`ASSERT()` arch/arm/traps.c `do_bug_frame` ("Xen BUG at", "Xen WARN at",
/// "Assertion '%s' failed at"); `show_trace` arch/arm/traps.c ("Xen call trace:");
/// `domain_crash()` include/xen/sched.h ("domain_crash called from") and common/domain.c
/// `__domain_crash` ("Domain %d (vcpu#%d) crashed on cpu#", "reported crashed by domain").
/// "FATAL" and "PANIC" are kept from the harness brief although Xen/Arm does not print them
/// today. A Linux guest's panic fails the scenario too.
const CRASH_PATTERNS: &[(&str, &str)] = &[
    ("Panic on CPU", "Xen panic"),
    ("Xen BUG at", "Xen BUG"),
    ("Assertion '", "Xen assertion failed"),
    ("Xen WARN at", "Xen WARN"),
    ("Xen call trace", "Xen call trace"),
    ("FATAL", "FATAL"),
    ("PANIC", "PANIC"),
    ("domain_crash called", "domain crashed"),
    ("crashed on cpu#", "domain crashed"),
    ("reported crashed by domain", "domain crashed"),
    ("Kernel panic - not syncing", "guest kernel panic"),
];

/// Says what the Rust component's boot banner must look like (regex
/// `rust-ioreq v\S+ ready: (\d+) xen,virtio-mmio-device node`).
const BANNER_HEAD: &str = "rust-ioreq v";
const BANNER_MID: &str = " ready: ";
const BANNER_TAIL: &str = " xen,virtio-mmio-device node";

/// Keeps at most this many crash and guest-FAIL lines for the report.
const MAX_KEPT: usize = 3;

/// Says what one scenario's console must show; derived from the scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub name: String,
    /// Number of `SCENARIO <name> END` lines needed.
    pub ends: usize,
    /// Number the banner must report: all `[[domain.device]]` entries.
    pub devices: usize,
    pub contains: Vec<String>,
}

impl Expectation {
    /// Derives the expectation of a validated scenario.
    pub fn of(s: &Scenario) -> Self {
        Expectation {
            name: s.name.clone(),
            ends: s.expected_ends(),
            devices: s.device_count(),
            contains: s.expect_contains.clone(),
        }
    }
}

/// Says how reading the console stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The harness stopped reading because `done()` or `crashed()` said so.
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
    /// `SCENARIO <name> PASS` lines seen.
    pub checks_passed: usize,
    pub ends_seen: usize,
    pub ends_expected: usize,
}

impl Verdict {
    /// Summarises the verdict in one line: the reasons on FAIL, the counts on PASS.
    pub fn why(&self, elapsed: Duration) -> String {
        if self.pass {
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

/// Accumulates what the console showed so far.
#[derive(Debug, Clone)]
pub struct Judge {
    exp: Expectation,
    banner: Option<u64>,
    ends: usize,
    passes: usize,
    guest_fails: Vec<String>,
    guest_fail_count: usize,
    crashes: Vec<String>,
    crash_count: usize,
    contains_seen: Vec<bool>,
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
        Judge {
            exp,
            banner: None,
            ends: 0,
            passes: 0,
            guest_fails: Vec::new(),
            guest_fail_count: 0,
            crashes: Vec::new(),
            crash_count: 0,
            contains_seen: vec![false; n],
        }
    }

    /// Takes one console line (without its line ending) into account.
    pub fn feed(&mut self, line: &str) {
        if let Some(&(_, why)) = CRASH_PATTERNS.iter().find(|(pat, _)| line.contains(pat)) {
            self.crash_count += 1;
            if self.crashes.len() < MAX_KEPT {
                self.crashes.push(format!("{why}: {}", line.trim()));
            }
        }
        if self.banner.is_none() {
            self.banner = parse_banner(line);
        }
        match parse_marker(line, &self.exp.name) {
            Some(Marker::Pass) => self.passes += 1,
            Some(Marker::End) => self.ends += 1,
            Some(Marker::Fail(detail)) => {
                self.guest_fail_count += 1;
                if self.guest_fails.len() < MAX_KEPT {
                    self.guest_fails.push(detail.to_owned());
                }
            }
            None => {}
        }
        for (seen, want) in self.contains_seen.iter_mut().zip(&self.exp.contains) {
            *seen = *seen || line.contains(want.as_str());
        }
    }

    /// Tells whether every awaited END marker has been seen (with no END awaited: at least one
    /// PASS), i.e. the harness can stop reading after a short grace period.
    pub fn done(&self) -> bool {
        self.ends >= self.exp.ends && (self.exp.ends > 0 || self.passes > 0)
    }

    /// Tells whether a crash line has been seen: nothing good can follow, stop reading.
    pub fn crashed(&self) -> bool {
        self.crash_count > 0
    }

    /// Decides, given how reading ended.
    pub fn verdict(&self, ending: &Ending) -> Verdict {
        let name = &self.exp.name;
        let mut r = Vec::new();
        if self.crash_count > 0 {
            r.push(plural_list(&self.crashes, self.crash_count, "crash lines"));
        }
        if self.guest_fail_count > 0 {
            let shown: Vec<String> = self
                .guest_fails
                .iter()
                .map(|d| format!("FAIL {d}"))
                .collect();
            r.push(format!(
                "guest {}",
                plural_list(&shown, self.guest_fail_count, "FAIL lines")
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
        if self.ends < self.exp.ends {
            r.push(format!(
                "{}/{} 'SCENARIO {name} END' seen",
                self.ends, self.exp.ends
            ));
        }
        if self.passes == 0 {
            r.push(format!("no 'SCENARIO {name} PASS' line"));
        }
        for (seen, want) in self.contains_seen.iter().zip(&self.exp.contains) {
            if !seen {
                r.push(format!("expected output {want:?} missing"));
            }
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
            ends_seen: self.ends,
            ends_expected: self.exp.ends,
        }
    }
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

/// Formats kept lines, noting how many more there were.
fn plural_list(kept: &[String], total: usize, what: &str) -> String {
    let mut s = kept.join(" | ");
    if total > kept.len() {
        s.push_str(&format!(" (+{} more {what})", total - kept.len()));
    }
    s
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

    fn exp(ends: usize, devices: usize) -> Expectation {
        Expectation {
            name: "smoke".into(),
            ends,
            devices,
            contains: vec![],
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
        j.feed("SCENARIO smoke PASS x");
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
            vec!["guest FAIL blk read: got 0x0 want 0x74726976"]
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
            "(XEN) domain_crash called from arch/arm/traps.c:2000",
            "(XEN) Domain 1 (vcpu#0) crashed on cpu#1:",
            "(XEN) Domain 2 reported crashed by domain 0 on cpu#0:",
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
            [BANNER2, "SCENARIO smoke END"],
            &Ending::Stopped,
        );
        assert_eq!(
            v.reasons,
            vec![
                "1/2 'SCENARIO smoke END' seen",
                "no 'SCENARIO smoke PASS' line"
            ]
        );
    }

    #[test]
    fn markers_match_the_whole_name() {
        let log = [
            BANNER2,
            "SCENARIO smoke-2 PASS x",
            "SCENARIO smokey END",
            "SCENARIO smoke ENDS",
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
                "0/2 'SCENARIO smoke END' seen",
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
}
