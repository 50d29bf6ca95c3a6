//! Console output for the test guests: `print!`/`println!` over `core::fmt`, formatted into a
//! fixed line buffer on the stack and written with `HYPERVISOR_console_io` one line at a time.

use core::fmt;

use crate::hypercall;

/// Bytes buffered before a line is written out even without a newline.
const LINE_BYTES: usize = 256;

/// A line buffer that writes to the Xen console at every newline, when full, and when dropped.
#[derive(Debug)]
pub struct Console {
    buf: [u8; LINE_BYTES],
    len: usize,
}

impl Console {
    /// Creates an empty line buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            // Nothing useful can be done if the console refuses output.
            let _ = hypercall::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            self.buf[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == LINE_BYTES {
                self.flush();
            }
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Formats `args` to the Xen console; used by [`print!`](crate::print) and
/// [`println!`](crate::println).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Console::write_str never fails.
    let _ = fmt::Write::write_fmt(&mut Console::new(), args);
}

/// Prints to the Xen console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the Xen console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
