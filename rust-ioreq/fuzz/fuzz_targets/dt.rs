//! Fuzz target: host trees built from the input; the DT nodes written from an accepted
//! configuration are read back from a real blob and compared. The body is in
//! `tests/common/fuzz/dt.rs`; `tests/fuzz_like.rs` runs it on stable too.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::fuzz::dt_nodes(data));
