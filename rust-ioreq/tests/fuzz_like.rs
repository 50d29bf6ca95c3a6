//! The fuzz bodies of `tests/common/fuzz.rs` (also the cargo-fuzz targets in `fuzz/`), run on
//! stable in every `cargo test`: driven by a deterministic PRNG over many thousands of inputs
//! (a failure prints the iteration and the input in hex; `FUZZ_LIKE_SCALE=<n>` multiplies the
//! iteration counts for a longer run), and over the committed regression corpus
//! `fuzz/corpus-min/<target>/` (what `make fuzz-corpus` kept of the campaigns, and every crash
//! found, named `crash-*`).

// Test data: lengths and bytes are narrowed on purpose.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::fuzz;
use common::rng::Rng;

fn scale() -> usize {
    std::env::var("FUZZ_LIKE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Runs `body` on `n` inputs made by `make` from a PRNG seeded with `seed`.
fn drive(
    name: &str,
    seed: u64,
    n: usize,
    make: impl Fn(&mut Rng) -> Vec<u8>,
    body: impl Fn(&[u8]),
) {
    let mut rng = Rng::new(seed);
    for i in 0..n * scale() {
        let input = make(&mut rng);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&input))) {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("{name}: iteration {i} (seed {seed:#x}) failed on input:\n{hex}");
            resume_unwind(panic);
        }
    }
}

fn random_len(rng: &mut Rng, max: u64) -> Vec<u8> {
    let len = rng.below(max) as usize;
    rng.bytes(len)
}

#[test]
fn random_bytes_into_the_config_parser_never_panic() {
    drive(
        "config_blob",
        0x636f_6e66,
        20_000,
        |rng| {
            let mut b = random_len(rng, 512);
            // Half of them get a plausible header so the parser goes past the magic check.
            if rng.below(2) == 0 && b.len() >= 40 {
                let total = b.len() as u32;
                let header = [
                    0xd00d_feed,
                    total,
                    0x38 + (rng.below(4) as u32) * 4,
                    (rng.below(u64::from(total)) as u32) & !3,
                    0x28,
                    17,
                    16,
                    0,
                    rng.below(64) as u32,
                    rng.below(u64::from(total)) as u32,
                ];
                for (i, v) in header.iter().enumerate() {
                    b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            b
        },
        fuzz::config_blob,
    );
}

#[test]
fn mutated_real_host_trees_into_the_config_parser_never_panic() {
    drive(
        "config_mutated",
        0x6d75_7461,
        20_000,
        |rng| random_len(rng, 64),
        fuzz::config_mutated,
    );
}

#[test]
fn random_syndromes_into_the_decoder_never_panic() {
    drive(
        "syndrome",
        0x7379_6e64,
        200_000,
        |rng| rng.bytes(24),
        fuzz::syndrome,
    );
}

#[test]
fn random_operation_sequences_keep_the_engine_and_the_fake_consistent() {
    drive(
        "engine_ops",
        0x656e_6769,
        1_500,
        |rng| random_len(rng, 4096),
        fuzz::engine_ops,
    );
}

#[test]
fn random_operation_sequences_keep_the_doorbell_and_domain_lifetime_to_the_model() {
    drive(
        "doorbell_ops",
        0x646f_6f72,
        1_500,
        |rng| random_len(rng, 2048),
        fuzz::doorbell_ops,
    );
}

#[test]
fn random_operation_sequences_keep_the_fast_transport_to_the_model() {
    drive(
        "transport_ops",
        0x7472_6e73,
        6_000,
        |rng| random_len(rng, 1024),
        fuzz::transport_ops,
    );
}

#[test]
fn dt_nodes_of_random_accepted_configurations_read_back_as_documented() {
    drive(
        "dt_nodes",
        0x6474_6e64,
        3_000,
        |rng| random_len(rng, 256),
        fuzz::dt_nodes,
    );
}

/// Runs `body` on every input of `fuzz/corpus-min/<target>/`, in name order.
fn replay(target: &str, body: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus-min")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "{}: a regression corpus of {} inputs",
        dir.display(),
        files.len()
    );
    for file in files {
        let input = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&input))) {
            eprintln!("{target}: corpus input {} failed", file.display());
            resume_unwind(panic);
        }
    }
}

#[test]
fn the_config_regression_corpus_replays() {
    replay("config", fuzz::config_blob);
}

#[test]
fn the_config_mutated_regression_corpus_replays() {
    replay("config_mutated", fuzz::config_mutated);
}

#[test]
fn the_syndrome_regression_corpus_replays() {
    replay("syndrome", fuzz::syndrome);
}

#[test]
fn the_engine_regression_corpus_replays() {
    replay("engine", fuzz::engine_ops);
}

#[test]
fn the_doorbell_regression_corpus_replays() {
    replay("doorbell", fuzz::doorbell_ops);
}

#[test]
fn the_transport_regression_corpus_replays() {
    replay("transport", fuzz::transport_ops);
}

#[test]
fn the_dt_regression_corpus_replays() {
    replay("dt", fuzz::dt_nodes);
}
