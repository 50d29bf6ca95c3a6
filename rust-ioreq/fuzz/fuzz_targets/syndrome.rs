//! Fuzz target: any data-abort syndrome into syndrome::decode.
//! The body is in `tests/common/fuzz.rs`; `tests/fuzz_like.rs` runs it on stable too.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::fuzz::syndrome(data));
