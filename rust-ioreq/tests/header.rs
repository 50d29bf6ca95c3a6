//! Pins the constants `include/rust_ioreq.h` shares with the C glue to the Rust ones: the glue
//! sizes its per-domain table with the capacities and maps the backend pages at the layout's
//! addresses, while the component indexes and addresses them from Rust.

use std::collections::BTreeMap;

use rust_ioreq::abi::{backend_layout, doorbell};
use rust_ioreq::config::{MAX_DOMAINS, MAX_FRONTENDS_PER_BACKEND};

/// Returns the header's `#define NAME value` lines whose value is a plain number.
fn defines() -> BTreeMap<String, u64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/rust_ioreq.h");
    let text = std::fs::read_to_string(path).expect("include/rust_ioreq.h");
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "#define").then_some(())?;
            let name = words.next()?.to_string();
            let value = words.next()?.trim_end_matches("ULL");
            let value = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                None => value.parse().ok()?,
            };
            Some((name, value))
        })
        .collect()
}

#[test]
fn the_header_and_the_core_agree() {
    let d = defines();
    let expect = [
        ("RUST_IOREQ_MAX_DOMAINS", MAX_DOMAINS as u64),
        (
            "RUST_IOREQ_MAX_FRONTENDS_PER_BACKEND",
            MAX_FRONTENDS_PER_BACKEND as u64,
        ),
        ("RUST_IOREQ_DOORBELL_GPA", backend_layout::DOORBELL_GPA),
        ("RUST_IOREQ_DOORBELL_SIZE", doorbell::SIZE),
        (
            "RUST_IOREQ_IOREQ_PAGES_GPA",
            backend_layout::IOREQ_PAGES_GPA,
        ),
    ];
    for (name, value) in expect {
        assert_eq!(d.get(name), Some(&value), "{name} in include/rust_ioreq.h");
    }
}
