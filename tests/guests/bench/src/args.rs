//! The benchmark guest's bootargs (`/chosen/bootargs`, words separated by spaces):
//!
//! - `scenario=<name>`: the scenario name for the SCENARIO lines (read by guest-common);
//! - `bench.iters=<n>`: samples per measurement (default 20000, at most [`MAX_ITERS`]);
//! - `bench.warmup=<n>`: unrecorded iterations of each measurement before the first sample
//!   (default 1000);
//! - `bench.rounds=<n>`: the samples of each measurement are taken in this many rounds that
//!   alternate between the measurements (default 4), so that a change of load on the host
//!   spreads over all of them instead of skewing one.

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

/// The parsed bootargs.
#[derive(Clone, Copy, Debug)]
pub struct Args {
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
            let ok = match (key, number) {
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
