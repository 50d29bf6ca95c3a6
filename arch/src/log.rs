//! Logging through Xen's `printk`: one formatted line per call, built in a fixed stack buffer.

use core::ffi::c_int;
use core::fmt;

/// Longest line the log keeps; longer lines are cut and end in `...`.
const LINE_MAX: usize = 160;

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

/// Logs a line a guest or backend caused, at Xen's rate-limited guest warning level
/// (`XENLOG_G_WARNING`), so a misbehaving domain cannot flood the console.
macro_rules! glog {
    ($($arg:tt)*) => {
        $crate::log::print_line(format_args!("<G><1>rust-ioreq: {}", format_args!($($arg)*)))
    };
}
