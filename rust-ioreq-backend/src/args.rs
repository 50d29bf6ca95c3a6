//! The daemon's command line:
//!
//! ```text
//! rust-ioreq-backend [--disk <index>=<path>[:ro]]... [--vhost-user <index>=<socket>]...
//!                    [--stats-ms <n>] [--no-fast] [--dev <path>] [--layout <path>]
//! ```
//!
//! `--disk` backs virtio-blk device `<index>` (the layout's `device <index>`) with a file or
//! block device, read-only with `:ro`; `--vhost-user` hands device `<index>` to the vhost-user
//! backend daemon listening on the Unix socket `<socket>` (the vhost-user bridge, `vhost.rs`);
//! `--stats-ms` prints a device's counters at most every
//! `<n>` ms when they changed (default 60000, 0: never); `--no-fast` serves every device by
//! round trips even when Xen offers the fast transport; `--dev` and `--layout` name the
//! module's device node and layout file (defaults: /dev/rust-ioreq-be and
//! /sys/class/misc/rust-ioreq-be/layout).

use crate::devices::DiskArg;
use crate::layout::number;
use crate::sys::{DEV_PATH, LAYOUT_PATH};

/// The usage line printed with a command-line error.
pub const USAGE: &str = "usage: rust-ioreq-backend [--disk <index>=<path>[:ro]]... \
                         [--vhost-user <index>=<socket>]... \
                         [--stats-ms <n>] [--no-fast] [--dev <path>] [--layout <path>]";

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The module's device node.
    pub dev: String,
    /// The module's layout file.
    pub layout: String,
    /// The disks.
    pub disks: Vec<DiskArg>,
    /// The devices handed to vhost-user backend daemons: (index, socket path).
    pub vhost_users: Vec<(u32, String)>,
    /// Least time between two statistics prints, in ms (0: none).
    pub stats_ms: u64,
    /// Use the fast transport when Xen offers it.
    pub fast: bool,
}

/// Parses `--disk`'s value.
fn disk(v: &str) -> Result<DiskArg, String> {
    let (index, path) = v
        .split_once('=')
        .ok_or_else(|| format!("--disk {v}: want <index>=<path>[:ro]"))?;
    let index = number(index)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("--disk {v}: {index:?} is not a device index"))?;
    let (path, read_only) = match path.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (path, false),
    };
    if path.is_empty() {
        return Err(format!("--disk {v}: no path"));
    }
    Ok(DiskArg {
        index,
        path: path.to_string(),
        read_only,
    })
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, String> {
        let mut o = Options {
            dev: DEV_PATH.into(),
            layout: LAYOUT_PATH.into(),
            disks: Vec::new(),
            vhost_users: Vec::new(),
            stats_ms: 60_000,
            fast: true,
        };
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            // `--opt=value` and `--opt value` alike.
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name.as_str() {
                "--disk" => {
                    let d = disk(&value()?)?;
                    if o.disks.iter().any(|e| e.index == d.index) {
                        return Err(format!("--disk {}=...: given twice", d.index));
                    }
                    if o.vhost_users.iter().any(|(i, _)| *i == d.index) {
                        return Err(format!(
                            "--disk {}=...: device {} is already given to --vhost-user",
                            d.index, d.index
                        ));
                    }
                    o.disks.push(d);
                }
                "--vhost-user" => {
                    let v = value()?;
                    let (index, path) = v
                        .split_once('=')
                        .filter(|(_, p)| !p.is_empty())
                        .ok_or_else(|| format!("--vhost-user {v}: want <index>=<socket>"))?;
                    let index = number(index)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("--vhost-user {v}: {index:?} is not a device index")
                        })?;
                    if o.vhost_users.iter().any(|(i, _)| *i == index)
                        || o.disks.iter().any(|d| d.index == index)
                    {
                        return Err(format!("--vhost-user {v}: device {index} is already given"));
                    }
                    o.vhost_users.push((index, path.to_string()));
                }
                "--stats-ms" => {
                    let v = value()?;
                    o.stats_ms =
                        number(&v).ok_or_else(|| format!("--stats-ms {v}: not a number"))?;
                }
                "--dev" => o.dev = value()?,
                "--layout" => o.layout = value()?,
                "--no-fast" => o.fast = false,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn options_parse() {
        let o = parse(
            "--disk 0=/disk.img --disk=1=/dev/vdb:ro --stats-ms 1000 --no-fast --vhost-user 2=/run/rng.sock0",
        )
        .unwrap();
        assert_eq!(o.vhost_users, [(2, "/run/rng.sock0".to_string())]);
        assert_eq!(
            o.disks,
            [
                DiskArg {
                    index: 0,
                    path: "/disk.img".into(),
                    read_only: false
                },
                DiskArg {
                    index: 1,
                    path: "/dev/vdb".into(),
                    read_only: true
                },
            ]
        );
        assert_eq!(
            (o.stats_ms, o.fast, o.dev.as_str()),
            (1000, false, DEV_PATH)
        );
    }

    #[test]
    fn bad_options_are_refused() {
        assert_eq!(parse("--disk").unwrap_err(), "--disk needs a value");
        assert!(parse("--disk /x").unwrap_err().contains("<index>=<path>"));
        assert!(parse("--disk a=/x")
            .unwrap_err()
            .contains("not a device index"));
        assert!(parse("--disk 0=:ro").unwrap_err().contains("no path"));
        assert!(parse("--disk 0=/a --disk 0=/b")
            .unwrap_err()
            .contains("twice"));
        assert_eq!(parse("--fast").unwrap_err(), "unknown argument \"--fast\"");
        assert!(parse("--vhost-user 1")
            .unwrap_err()
            .contains("<index>=<socket>"));
        assert!(parse("--vhost-user 1=")
            .unwrap_err()
            .contains("<index>=<socket>"));
        assert!(parse("--vhost-user x=/s")
            .unwrap_err()
            .contains("not a device index"));
        assert!(parse("--vhost-user 1=/a --vhost-user 1=/b")
            .unwrap_err()
            .contains("already given"));
        assert!(parse("--vhost-user 1=/a --disk 1=/d")
            .unwrap_err()
            .contains("already given to --vhost-user"));
        assert!(parse("--disk 1=/d --vhost-user 1=/a")
            .unwrap_err()
            .contains("already given"));
    }
}
