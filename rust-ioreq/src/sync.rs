//! The atomics the engine's shared state is made of: `core`'s, or `loom`'s when the crate is
//! built with `--cfg loom` so that `tests/loom.rs` can model-check every interleaving of them.

#[cfg(loom)]
pub(crate) use loom::{
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering},
};

#[cfg(not(loom))]
pub(crate) use core::{
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering},
};
