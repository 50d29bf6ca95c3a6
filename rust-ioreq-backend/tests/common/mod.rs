//! What the daemon's host tests share: the frontend RAM bank they build virtqueues in.

/// The frontend's one RAM bank: guest-physical base and size.
pub const RAM_GPA: u64 = 0x4000_0000;
pub const RAM_SIZE: usize = 0x10_0000;
/// Where the tests' driver puts queue 0: descriptor table, available ring, used ring.
pub const DESC: u64 = RAM_GPA + 0x1000;
pub const AVAIL: u64 = RAM_GPA + 0x2000;
pub const USED: u64 = RAM_GPA + 0x3000;
/// The first data buffer.
pub const BUF: u64 = RAM_GPA + 0x10000;
/// The queue size the tests' driver sets.
pub const QSIZE: u16 = 8;
