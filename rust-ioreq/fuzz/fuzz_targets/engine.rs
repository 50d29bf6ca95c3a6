//! Fuzz target: operation sequences (traps of every syndrome shape first) against the engine
//! and the strict fake Xen, checked against a model.
//! The body is in `tests/common/fuzz/model.rs`; `tests/fuzz_like.rs` runs it on stable too.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::fuzz::engine_ops(data));
