//! Logging through Xen's `printk`: one formatted line per call, built in a fixed stack buffer.

use core::ffi::c_int;
use core::fmt;

/// Longest line the log keeps; longer lines are cut and end in `...`.
const LINE_MAX: usize = 512;

/// A fixed-size line buffer that truncates instead of failing or allocating.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// Returns the text written so far, with `...` marking a cut.
    pub fn as_bytes(&mut self) -> &[u8] {
        if self.truncated {
            self.buf[LINE_MAX - 3..].copy_from_slice(b"...");
            self.len = LINE_MAX;
        }
        &self.buf[..self.len]
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// Prints one line, prefixed with `rust-ioreq: ` by the caller's format, through `printk`.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = fmt::write(&mut line, args);
    let bytes = line.as_bytes();
    // The length fits: LINE_MAX is far below c_int::MAX.
    let len = bytes.len() as c_int;
    // SAFETY: the format string is a NUL-terminated literal whose only conversion, `%.*s`,
    // consumes an int and a pointer; `printk` reads at most `len` bytes from `bytes`, which
    // stays alive for the whole call.
    unsafe { crate::xen::printk(c"%.*s\n".as_ptr(), len, bytes.as_ptr()) };
}

/// Logs a line through Xen's `printk`, prefixed with `rust-ioreq: `.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::print_line(format_args!("rust-ioreq: {}", format_args!($($arg)*)))
    };
}

/// Prints a line a guest or backend caused, at Xen's guest warning level, within the budget of
/// configuration domain `domain` (or of everyone else): at most a burst per window, then a
/// count of what was dropped (`rust_ioreq::ratelimit`).
pub fn guest_line(domain: Option<usize>, args: fmt::Arguments<'_>) {
    let Some(budgets) = crate::state::BUDGETS.get() else {
        return;
    };
    let budget = &budgets[domain.unwrap_or(budgets.len() - 1).min(budgets.len() - 1)];
    // SAFETY: `rust_xen_now` only reads Xen's clock.
    let now = unsafe { crate::xen::rust_xen_now() };
    let Some(suppressed) = budget.allow(now) else {
        return;
    };
    if suppressed > 0 {
        print_line(format_args!(
            "<G><1>rust-ioreq: ({suppressed} messages suppressed)"
        ));
    }
    print_line(format_args!("<G><1>rust-ioreq: {args}"));
}

/// Logs a line a guest or backend caused (`XENLOG_G_WARNING`), rate-limited per domain:
/// `glog!(Some(index), ...)` for configuration domain `index`, `glog!(None, ...)` for others.
macro_rules! glog {
    ($domain:expr, $($arg:tt)*) => {
        $crate::log::guest_line($domain, format_args!($($arg)*))
    };
}
