//! Fuzz target: a hostile backend's transport page (interface version 2) and the frontend
//! accesses Xen answers from it, with round trips, doorbell writes, timeouts and deaths around
//! them, checked against a model. The body is in `tests/common/fuzz/model.rs`;
//! `tests/fuzz_like.rs` runs it on stable too.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::fuzz::transport_ops(data));
