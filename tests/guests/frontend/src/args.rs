//! The frontend's bootargs (`/chosen/bootargs`, words separated by spaces):
//!
//! - `scenario=<name>`: the scenario name for the SCENARIO lines (read by guest-common);
//! - `frontend.seed=<n>`: seed of the block data pattern (decimal or 0x-hex; default 1), so that two
//!   frontends writing the same sectors of different disks write different data;
//! - `frontend.expect=<kind>[,<kind>...]`: the device kinds (`blk`, `rng`, ...) the device tree must
//!   list, in address order; checked when given;
//! - `frontend.probe-unclaimed=<hex address>`: unclaimed mode. Instead of the device tests, read
//!   and write this address (inside Xen's virtio MMIO window but claimed by no device) and check
//!   that both accesses take a data abort;
//! - `frontend.soak-ms=<n>`: after the first disk's checks, keep writing and reading it back for
//!   `n` ms (an innocent frontend doing I/O while other domains are destroyed);
//! - `frontend.request-ms=<n>`: how long one block request may take before the device is
//!   declared dead (default 5000; a scenario whose host is loaded by a booting Linux dom0 gives
//!   its backend longer);
//! - `frontend.sentinel=<hex address>`: the device at this address is not tested, only watched:
//!   with `soak-ms`, the soak ends as soon as its MagicValue reads all ones (its backend was
//!   destroyed: a dom0 saying "done"), and must end that way within the `n` ms;
//! - `frontend.until-vanished-ms=<n>`: vanish mode. Instead of the device tests, write and read
//!   back the first disk in a loop until its backend disappears (MagicValue reads all ones),
//!   within `n` ms, then check the vanished device's registers answer at once;
//! - `frontend.linger=1`: after `END`, do not power off: keep reading the first device's
//!   MagicValue every millisecond until the domain is destroyed (a dom0 destroys it);
//! - `frontend.smp-irq-rounds=<n>`: with two vCPUs, run the first disk's two-vCPU phase with
//!   device interrupts on and each vCPU's request in flight while the other submits (and
//!   notifies) its own: `n` rounds (1 to 128) of 8-sector write + read-back per vCPU, vCPU 0
//!   sleeping for the device interrupt, vCPU 1 polling (`blk.rs`, `two_vcpus_irq`).

/// Default pattern seed.
const DEFAULT_SEED: u64 = 1;

/// The parsed bootargs.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    /// Block data pattern seed.
    pub seed: u64,
    /// Expected device kinds, comma-separated, if given.
    pub expect: Option<&'static str>,
    /// Unclaimed mode: the address to probe (or the text that did not parse).
    pub probe_unclaimed: Option<Result<usize, &'static str>>,
    /// Milliseconds of extra I/O on the first disk after its checks.
    pub soak_ms: Option<u64>,
    /// Milliseconds a block request may take, if not the default.
    pub request_ms: Option<u64>,
    /// Address of a device that is only watched (or the text that did not parse).
    pub sentinel: Option<Result<usize, &'static str>>,
    /// Vanish mode: how long the first disk's backend may take to disappear, in ms.
    pub until_vanished_ms: Option<u64>,
    /// Whether to stay alive after `END`, reading the first device.
    pub linger: bool,
    /// Rounds of the interrupt variant of the two-vCPU phase, if asked for.
    pub smp_irq_rounds: Option<u64>,
    /// Words starting with `frontend.` that mean nothing here (reported, so a typo is noticed).
    pub unknown: Option<&'static str>,
    /// A `frontend.<option>=<value>` word whose value did not parse.
    pub bad_value: Option<&'static str>,
}

/// Parses a number in decimal or with a `0x` prefix in hexadecimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses a hexadecimal address, with or without `0x`.
fn parse_hex(s: &str) -> Option<usize> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    usize::from_str_radix(digits, 16).ok()
}

impl Args {
    /// Parses `bootargs`.
    pub fn parse(bootargs: &'static str) -> Self {
        let mut args = Args {
            seed: DEFAULT_SEED,
            expect: None,
            probe_unclaimed: None,
            soak_ms: None,
            request_ms: None,
            sentinel: None,
            until_vanished_ms: None,
            linger: false,
            smp_irq_rounds: None,
            unknown: None,
            bad_value: None,
        };
        for word in bootargs.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("frontend.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let mut number = |slot: &mut Option<u64>| match parse_number(value) {
                Some(n) => *slot = Some(n),
                None => args.bad_value = Some(word),
            };
            match key {
                "seed" => {
                    let mut seed = None;
                    number(&mut seed);
                    args.seed = seed.unwrap_or(args.seed);
                }
                "soak-ms" => number(&mut args.soak_ms),
                "request-ms" => number(&mut args.request_ms),
                "sentinel" => args.sentinel = Some(parse_hex(value).ok_or(value)),
                "until-vanished-ms" => number(&mut args.until_vanished_ms),
                "smp-irq-rounds" => {
                    number(&mut args.smp_irq_rounds);
                    let max = crate::blk::SMP_IRQ_MAX_ROUNDS as u64;
                    if args.smp_irq_rounds.is_some_and(|n| n == 0 || n > max) {
                        args.smp_irq_rounds = None;
                        args.bad_value = Some(word);
                    }
                }
                "linger" => match value {
                    "1" => args.linger = true,
                    "0" => args.linger = false,
                    _ => args.bad_value = Some(word),
                },
                "expect" => args.expect = Some(value),
                "probe-unclaimed" => {
                    args.probe_unclaimed = Some(parse_hex(value).ok_or(value));
                }
                _ => args.unknown = Some(word),
            }
        }
        args
    }
}
