//! The benchmark guest's bootargs (`/chosen/bootargs`, words separated by spaces):
//!
//! - `scenario=<name>`: the scenario name for the SCENARIO lines (read by guest-common);
//! - `bench.iters=<n>`: samples per measurement (default 20000, at most [`MAX_ITERS`]);
//! - `bench.warmup=<n>`: unrecorded iterations of each measurement before the first sample
//!   (default 1000);
//! - `bench.rounds=<n>`: the samples of each measurement are taken in this many rounds that
//!   alternate between the measurements (default 4), so that a change of load on the host
//!   spreads over all of them instead of skewing one;
//! - `bench.fast=<hex>`, `bench.classic=<hex>`, `bench.poll=<hex>`: the base address of the
//!   `virtio,mmio` device of each kind (a virtio-blk device each): `fast` is served by the
//!   reference backend on the fast transport (docs/backend-abi.md "Version 2"), `classic` has
//!   `xen,virtio-classic` (every access a round trip), `poll` is served by a backend that polls
//!   (`backend.poll=1`, `xen,ioreq-poll-us`). A kind not given: its rows are skipped;
//! - `bench.linux=<hex>`: a classic device served by the userspace daemon rust-ioreq-backend in a
//!   Linux backend domain (any device type: only MagicValue is read): the `linux_read` row;
//! - `bench.evtchn=<port>`: the local port of a static event channel to the peer (`xen,evtchn-v1`
//!   in the host DT, `xen,enhanced = "no-xenstore"` on both domains): the `evtchn_roundtrip` row;
//! - `bench.mode=evtchn-peer`: instead of benchmarking, echo every event of `bench.evtchn` back
//!   (the other end of `evtchn_roundtrip`; never ends, so `expect_end = false`).

/// Samples per measurement when the bootargs give none.
pub const DEFAULT_ITERS: usize = 20_000;
/// Most samples per measurement (the sample store is static: 4 bytes per sample).
pub const MAX_ITERS: usize = 50_000;
/// Warm-up iterations when the bootargs give none.
const DEFAULT_WARMUP: usize = 1_000;
/// Most warm-up iterations.
const MAX_WARMUP: usize = 1_000_000;
/// Rounds when the bootargs give none.
const DEFAULT_ROUNDS: usize = 4;
/// Most rounds.
const MAX_ROUNDS: usize = 64;

/// What this instance of the guest does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Take the measurements (the default).
    Bench,
    /// Echo the events of `bench.evtchn`.
    EvtchnPeer,
}

/// The parsed bootargs.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    /// What to do.
    pub mode: Mode,
    /// Base address of the fast-transport device.
    pub fast: Option<usize>,
    /// Base address of the classic device.
    pub classic: Option<usize>,
    /// Base address of the device whose backend polls.
    pub poll: Option<usize>,
    /// Base address of the classic device a Linux backend's daemon serves.
    pub linux: Option<usize>,
    /// Local port of the static event channel.
    pub evtchn: Option<u32>,
    /// Samples per measurement, `1..=MAX_ITERS`.
    pub iters: usize,
    /// Warm-up iterations per measurement.
    pub warmup: usize,
    /// Rounds, `1..=min(iters, MAX_ROUNDS)`.
    pub rounds: usize,
    /// The first `bench.` word that is unknown or whose value is out of range, if any.
    pub bad: Option<&'static str>,
}

impl Args {
    /// Parses `bootargs`; a bad value is recorded in `bad` and its default kept.
    pub fn parse(bootargs: &'static str) -> Self {
        let mut args = Args {
            mode: Mode::Bench,
            fast: None,
            classic: None,
            poll: None,
            linux: None,
            evtchn: None,
            iters: DEFAULT_ITERS,
            warmup: DEFAULT_WARMUP,
            rounds: DEFAULT_ROUNDS,
            bad: None,
        };
        for word in bootargs.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("bench.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let number = value.parse::<usize>().ok();
            let address = value
                .strip_prefix("0x")
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .filter(|a| a % 4 == 0);
            let ok = match (key, number) {
                ("mode", _) if value == "evtchn-peer" => {
                    args.mode = Mode::EvtchnPeer;
                    true
                }
                ("mode", _) if value == "bench" => {
                    args.mode = Mode::Bench;
                    true
                }
                ("fast", _) if address.is_some() => {
                    args.fast = address;
                    true
                }
                ("classic", _) if address.is_some() => {
                    args.classic = address;
                    true
                }
                ("poll", _) if address.is_some() => {
                    args.poll = address;
                    true
                }
                ("linux", _) if address.is_some() => {
                    args.linux = address;
                    true
                }
                ("evtchn", Some(port)) => match u32::try_from(port) {
                    Ok(port) if port > 0 && port < crate::evtchn::MAX_PORTS => {
                        args.evtchn = Some(port);
                        true
                    }
                    _ => false,
                },
                ("iters", Some(n)) if (1..=MAX_ITERS).contains(&n) => {
                    args.iters = n;
                    true
                }
                ("warmup", Some(n)) if n <= MAX_WARMUP => {
                    args.warmup = n;
                    true
                }
                ("rounds", Some(n)) if (1..=MAX_ROUNDS).contains(&n) => {
                    args.rounds = n;
                    true
                }
                _ => false,
            };
            if !ok && args.bad.is_none() {
                args.bad = Some(word);
            }
        }
        args.rounds = args.rounds.min(args.iters);
        args
    }
}
