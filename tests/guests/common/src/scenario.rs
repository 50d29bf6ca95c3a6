//! Scenario reporter: the console protocol between test guests and the harness (DESIGN.md §7).
//!
//! A guest learns its scenario name from `scenario=<name>` in `/chosen/bootargs`, prints one line
//! per check, `SCENARIO <name> PASS <check> <detail>` or `SCENARIO <name> FAIL <check> <detail>`,
//! and finally `SCENARIO <name> END` exactly once (also after FAIL lines and after a panic).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use crate::console::Console;
use crate::println;

/// Name used in SCENARIO lines when the bootargs name none.
const UNNAMED: &str = "unnamed";

// Plain loads and stores only (no read-modify-write atomics: they were not guaranteed to work
// when the guests ran with the MMU off, all data memory Device memory, and nothing here needs
// them; with the MMU on, `mmu.rs`, they would work). The name is set once
// before anything else runs. A guest whose second vCPU reports checks too (smp.rs) can lose a
// FAILURES count when two FAILs race; `failures()` is informative only, the harness counts the
// FAIL lines themselves.
static NAME_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
static FAILURES: AtomicUsize = AtomicUsize::new(0);
static ENDED: AtomicBool = AtomicBool::new(false);

/// Returns the value of the first `scenario=<name>` word in `bootargs`, if non-empty.
pub fn parse_name(bootargs: &str) -> Option<&str> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix("scenario="))
        .filter(|name| !name.is_empty())
}

/// Records the scenario name; called once by the entry code before the guest's main function.
pub(crate) fn set_name(name: &'static str) {
    NAME_PTR.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
    NAME_LEN.store(name.len(), Ordering::Relaxed);
}

/// Returns the scenario name from the bootargs, if they named one.
pub fn name() -> Option<&'static str> {
    let ptr = NAME_PTR.load(Ordering::Relaxed);
    if ptr.is_null() {
        return None;
    }
    let len = NAME_LEN.load(Ordering::Relaxed);
    // SAFETY: `ptr` and `len` were stored together by `set_name` from a `&'static str`, so they
    // describe valid UTF-8 that lives and stays unchanged for the rest of the guest's life.
    Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) })
}

/// Prints the PASS or FAIL line of check `check` (one word) with `detail`; returns `ok`.
pub fn check(check: &str, ok: bool, detail: impl fmt::Display) -> bool {
    let verdict = if ok { "PASS" } else { "FAIL" };
    report(verdict, check, detail);
    if !ok {
        FAILURES.store(FAILURES.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    ok
}

/// Returns how many checks failed so far.
pub fn failures() -> usize {
    FAILURES.load(Ordering::Relaxed)
}

/// Prints `SCENARIO <name> END`, unless it was printed before.
pub fn end() {
    if !ENDED.load(Ordering::Relaxed) {
        ENDED.store(true, Ordering::Relaxed);
        println!("SCENARIO {} END", name().unwrap_or(UNNAMED));
    }
}

/// Prints `SCENARIO <name> <verdict> <check> <detail>`, leaving out an empty detail.
fn report(verdict: &str, check: &str, detail: impl fmt::Display) {
    let name = name().unwrap_or(UNNAMED);
    let mut out = Console::new();
    // Console never fails to format.
    let _ = write!(out, "SCENARIO {name} {verdict} {check}");
    let _ = write!(
        SpaceFirst {
            out: &mut out,
            pending: true
        },
        "{detail}"
    );
    let _ = out.write_str("\n");
}

/// A writer that puts one space before the first non-empty string it passes on.
struct SpaceFirst<'a> {
    out: &'a mut Console,
    pending: bool,
}

impl fmt::Write for SpaceFirst<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.pending && !s.is_empty() {
            self.pending = false;
            self.out.write_str(" ")?;
        }
        self.out.write_str(s)
    }
}
