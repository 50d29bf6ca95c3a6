//! Shared pieces of the host integration tests: a host device-tree builder, a strict fake of
//! the hypervisor, syndrome builders, a deterministic PRNG, and the fuzz bodies (shared with
//! `fuzz/`).
// Each test binary uses a different subset.
#![allow(dead_code)]

pub mod fake;
pub mod fuzz;
pub mod hostdt;
pub mod interleave;
pub mod rig;
pub mod rng;
pub mod trap;
