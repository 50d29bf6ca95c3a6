//! rust-ioreq-backend: a rust-ioreq backend in Linux userspace (docs/backend-abi.md, "Linux
//! backend"). It reads the layout the `rust-ioreq-be` module publishes, maps the doorbell, the
//! ioreq/transport/notify pages and the frontends' RAM banks through /dev/rust-ioreq-be, and
//! serves virtio-blk (a file or block device) and virtio-rng (`getrandom()`) devices through
//! the `virtio-device` crate, by round trips and, when Xen offers it, on the fast transport of
//! interface version 2.
//!
//! Everything but `main.rs` and `sys.rs` is independent of the OS and host-tested against
//! in-memory pages (`tests/`).

pub mod args;
pub mod devices;
pub mod disk;
pub mod fast;
pub mod ioreq;
pub mod layout;
pub mod server;
pub mod shared;
pub mod sys;
pub mod vhost;
pub mod window;
