//! Reporting helpers: check names built at run time (`blk@2000000-rw-multi`) without an
//! allocator, and giving up on a scenario that cannot continue safely.

use core::fmt::{self, Write};

use guest_common::hypercall::{self, ShutdownReason};
use guest_common::scenario;

/// Longest check name kept; longer names are cut (a check name is one short word).
const NAME_BYTES: usize = 48;

/// A check name formatted into a fixed buffer.
#[derive(Clone, Copy, Debug)]
pub struct Name {
    buf: [u8; NAME_BYTES],
    len: usize,
}

impl Name {
    /// Formats `args` into a name (cut at 48 bytes, on a character boundary).
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut name = Name {
            buf: [0; NAME_BYTES],
            len: 0,
        };
        // `write_str` below never fails; it cuts instead.
        let _ = name.write_fmt(args);
        name
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0; 4];
            let bytes = c.encode_utf8(&mut tmp).as_bytes();
            if self.len + bytes.len() > NAME_BYTES {
                break;
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

/// Formats a check name: `name!("{prefix}-rw")`.
#[macro_export]
macro_rules! name {
    ($($arg:tt)*) => {
        $crate::report::Name::new(::core::format_args!($($arg)*))
    };
}

/// Reports `check` as failed with `detail`, ends the scenario and powers the domain off.
///
/// For failures after which continuing is unsafe, e.g. a request the device never completed:
/// its buffers are still the device's, so the stack frame holding them must never be reused.
pub fn give_up(check: &str, detail: fmt::Arguments<'_>) -> ! {
    scenario::check(check, false, detail);
    scenario::end();
    hypercall::shutdown(ShutdownReason::Poweroff)
}
