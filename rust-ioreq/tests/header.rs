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
        (
            "RUST_IOREQ_TRANSPORT_PAGE_GPA",
            backend_layout::TRANSPORT_PAGE_GPA,
        ),
        (
            "RUST_IOREQ_NOTIFY_PAGE_GPA",
            backend_layout::NOTIFY_PAGE_GPA,
        ),
        (
            "RUST_IOREQ_BACKEND_PAGES",
            MAX_FRONTENDS_PER_BACKEND as u64 + 2,
        ),
        (
            "RUST_IOREQ_TRANSPORT_PAGE",
            MAX_FRONTENDS_PER_BACKEND as u64,
        ),
        (
            "RUST_IOREQ_NOTIFY_PAGE",
            MAX_FRONTENDS_PER_BACKEND as u64 + 1,
        ),
    ];
    for (name, value) in expect {
        assert_eq!(d.get(name), Some(&value), "{name} in include/rust_ioreq.h");
    }
}

/// The transport page's C structures, as the header's `_Static_assert`s pin them, match
/// `rust_ioreq::abi::transport` (the header is compiled by the glue and by C backends).
#[test]
fn the_header_states_the_transport_layout_of_the_core() {
    use rust_ioreq::abi::transport::{field, POLLING_OFFSET, RECORD_SIZE, WAKEUP_OFFSET};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/rust_ioreq.h");
    let text = std::fs::read_to_string(path).expect("include/rust_ioreq.h");
    let asserts = [
        format!("sizeof(struct rust_ioreq_transport_header) == {RECORD_SIZE:#x}"),
        format!("offsetof(struct rust_ioreq_transport_header, wakeup) == {WAKEUP_OFFSET:#04x}"),
        format!("offsetof(struct rust_ioreq_transport_header, polling) == {POLLING_OFFSET:#04x}"),
        format!("sizeof(struct rust_ioreq_transport_record) == {RECORD_SIZE:#x}"),
        format!(
            "offsetof(struct rust_ioreq_transport_record, device_id) == {:#04x}",
            field::DEVICE_ID
        ),
        format!(
            "offsetof(struct rust_ioreq_transport_record, num_queues) == {:#04x}",
            field::NUM_QUEUES
        ),
        format!(
            "offsetof(struct rust_ioreq_transport_record, config_generation) == {:#04x}",
            field::CONFIG_GENERATION
        ),
        format!(
            "offsetof(struct rust_ioreq_transport_record, device_features) == {:#04x}",
            field::DEVICE_FEATURES
        ),
    ];
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for a in asserts {
        assert!(
            flat.contains(&a),
            "include/rust_ioreq.h does not assert {a}"
        );
    }
}
