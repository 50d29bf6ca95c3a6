//! harness library: the console judge (`judge`, pure, unit-tested on synthetic logs) and the
//! QEMU runner (`run`) behind the `harness` command (DESIGN.md §7).

pub mod judge;
pub mod run;
