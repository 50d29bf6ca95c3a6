//! Fuzz bodies: plain functions from bytes to a run that must not panic, shared by the cargo-fuzz
//! targets in `fuzz/` (libFuzzer; `make fuzz`) and `tests/fuzz_like.rs` (a deterministic PRNG,
//! and the regression corpus `fuzz/corpus-min/`, on stable, in every `cargo test`).
//!
//! - [`config_blob`]: any bytes into `Config::from_fdt`; an accepted configuration must hold
//!   every invariant the engine and the DT writers rely on, and its DT nodes must read back as
//!   documented.
//! - [`config_mutated`]: a real host DT (QEMU's, and one written here) with byte, cell and
//!   length mutations.
//! - [`syndrome`]: any syndrome into `decode`, and the decoded access's value helpers.
//! - [`engine_ops`] and [`doorbell_ops`] (`model.rs`): operation sequences against the engine
//!   and the strict fake, every step checked against a model of the request state machine,
//!   held slots, broken devices, dead and destroyed domains and the doorbell.
//! - [`dt_nodes`] (`dt.rs`): host trees built from the input; the DT nodes written from an
//!   accepted configuration are read back from a real blob and compared with the documents.

mod dt;
mod model;

// Each test binary uses a different subset.
#[allow(unused_imports)]
pub use dt::dt_nodes;
#[allow(unused_imports)]
pub use model::{doorbell_ops, engine_ops, transport_ops};

use rust_ioreq::abi::backend_layout;
use rust_ioreq::config::{Config, MAX_FRONTENDS_PER_BACKEND, NAME_MAX};
use rust_ioreq::engine::Builder;
use rust_ioreq::syndrome::{decode, Decoded, XenDecode, XZR};
use rust_ioreq::types::{DomId, Gpa, GpaRange, Spi};

use super::hostdt::{host_dtb, GIC_SPIS};
use super::rig::{domid, standard};

/// The blob QEMU hands to Xen in the boot-smoke scenario (NOP tokens included).
pub const QEMU_BLOB: &[u8] = include_bytes!("../fixtures/qemu-boot-smoke.dtb");

/// Reads fuzz input as a stream of numbers; past the end it yields zeros, so every input is a
/// complete run.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Tells whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Returns the next byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Returns the next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Returns the next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Returns the next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Returns true once in `n` times, roughly (`n > 0`).
    pub fn one_in(&mut self, n: u8) -> bool {
        self.u8().is_multiple_of(n)
    }

    /// Returns a number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n
    }

    /// Picks one of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Checks what the engine and the DT writers assume of an accepted configuration, then freezes
/// an engine from it and writes every domain's nodes.
pub fn check_config(config: Box<Config>) {
    let domains = config.domains();
    let devices = config.devices();
    for (i, d) in devices.iter().enumerate() {
        let fe = &domains[usize::from(d.frontend)];
        let be = domains[usize::from(d.backend)]
            .backend
            .expect("a device's backend serves");
        assert_ne!(d.frontend, d.backend);
        assert!(fe.vcpus <= 128);
        assert_eq!(d.mmio.start().0 % 0x200, 0);
        assert_eq!(d.mmio.size() % 0x200, 0);
        assert!(d.mmio.start().checked_add(d.mmio.size()).is_some());
        assert!(Spi::new(d.spi.0).is_some() && d.spi.0 < 32u32.saturating_add(fe.nr_spis));
        assert!(!(fe.vpl011 && d.spi.0 == 32));
        if let Some(own) = fe.backend {
            assert_ne!(own.notify_spi, d.spi);
            let pages = GpaRange::new(Gpa(0x3e00_0000), 0x9000).expect("backend pages");
            assert!(!d.mmio.overlaps(&pages), "{d:?} on its own backend pages");
        }
        assert_eq!(
            be.frontends.as_slice().get(usize::from(d.frontend_index)),
            Some(&d.frontend)
        );
        let before = devices[..i]
            .iter()
            .filter(|o| o.backend == d.backend)
            .count();
        assert_eq!(usize::from(d.index_in_backend), before);
        for o in &devices[..i] {
            if o.frontend == d.frontend {
                assert!(!o.mmio.overlaps(&d.mmio), "{o:?} / {d:?}");
                assert_ne!(o.spi, d.spi);
            }
        }
        for (start, len) in [
            (0x4000_0000, 0xc000_0000),
            (0x2_0000_0000, 0xfe_0000_0000),
            (0x0300_1000, 0x1_0000),
            (0x0302_0000, 0x100_0000),
            (0x3800_0000, 0x100_0000),
            (0x3900_0000, 0x100_0000),
        ] {
            let r = GpaRange::new(Gpa(start), len).expect("reserved range");
            assert!(!d.mmio.overlaps(&r), "{d:?} overlaps {r}");
        }
    }
    for (i, d) in domains.iter().enumerate() {
        // Names are identities: whole, and unique.
        assert!(d.name.as_str().len() <= NAME_MAX);
        assert!(domains[..i].iter().all(|o| o.name != d.name), "{d:?}");
        assert!(d.vcpus > 0);
        if devices.iter().any(|x| usize::from(x.frontend) == i) {
            assert!(d.ram_end() <= backend_layout::WINDOW_SIZE, "{d:?}");
        }
        if let Some(b) = d.backend {
            if !b.frontends.is_empty() {
                assert!(d.ram_end() <= backend_layout::window(0), "{d:?}");
                let top = backend_layout::window(b.frontends.len());
                assert!(u128::from(top) <= 1u128 << config.ipa_bits(), "{d:?}");
            }
            // No domain waits on itself through its backends.
            assert!(b.frontends.iter().all(|&f| usize::from(f) != i));
            assert!(b.frontends.len() <= MAX_FRONTENDS_PER_BACKEND);
            assert!(b.notify_spi.0 < 32u32.saturating_add(d.nr_spis));
            assert!(!(d.vpl011 && b.notify_spi.0 == 32));
        }
    }
    dt::check_writers(&config, &|d| Some(DomId(d as u16 + 1)), domains.len() * 7);
    let names: Vec<String> = domains.iter().map(|d| d.name.to_string()).collect();
    let mut b = Builder::new(config);
    for (i, n) in names.iter().enumerate() {
        // A second binding of the same entry (duplicate names) is refused, never overwritten.
        let index = b.config().domain_index(n);
        let first = index.and_then(|x| b.domid(x));
        match b.domain_created(&format!("/chosen/{n}"), domid(i)) {
            Ok(got) => assert!(got == index && first.is_none()),
            Err(e) => assert_eq!(
                e,
                rust_ioreq::engine::BindError::AlreadyBound {
                    index: index.expect("bound"),
                    first: first.expect("bound first"),
                }
            ),
        }
    }
    let _ = b.freeze();
}

/// Feeds any bytes to the configuration parser.
pub fn config_blob(data: &[u8]) {
    let mut gic = Input::new(data.get(..4).unwrap_or_default());
    let gic_spis = match gic.u8() % 4 {
        0 => GIC_SPIS,
        1 => 0,
        2 => 988,
        _ => u32::MAX,
    };
    if let Ok(config) = Config::from_fdt(data, gic_spis) {
        check_config(config);
    }
}

thread_local! {
    static GENERATED: Vec<u8> = host_dtb(&standard());
}

/// Mutates a real host DT as `data` says and parses the result.
pub fn config_mutated(data: &[u8]) {
    let mut input = Input::new(data);
    let mut blob = if input.one_in(2) {
        QEMU_BLOB.to_vec()
    } else {
        GENERATED.with(|g| g.clone())
    };
    let mutations = input.below(8) + 1;
    for _ in 0..mutations {
        if blob.is_empty() {
            break;
        }
        let at = input.below(blob.len());
        match input.u8() % 8 {
            // One byte.
            0 | 1 => blob[at] = input.u8(),
            // One aligned cell, with a value a parser is likely to trip over.
            2 | 3 => {
                let at = at & !3;
                let any = input.u32();
                let v: u32 = input.pick(&[
                    0,
                    1,
                    2,
                    3,
                    4,
                    9,
                    0x20,
                    0x200,
                    0x7fff_ffff,
                    0x8000_0000,
                    0xffff_fffc,
                    u32::MAX,
                    blob.len() as u32,
                    any,
                ]);
                if let Some(cell) = blob.get_mut(at..at + 4) {
                    cell.copy_from_slice(&v.to_be_bytes());
                }
            }
            // A header field (offsets, sizes, version).
            4 => {
                let field = 4 + 4 * input.below(9);
                let any = input.u32();
                let v = input.pick(&[0u32, 1, 0x28, 0x38, blob.len() as u32, u32::MAX, any]);
                if let Some(cell) = blob.get_mut(field..field + 4) {
                    cell.copy_from_slice(&v.to_be_bytes());
                }
            }
            // Truncate.
            5 => blob.truncate(at),
            // Remove or duplicate a run of 4 bytes (shifts every later token).
            6 => {
                let at = at & !3;
                if input.one_in(2) {
                    blob.drain(at..(at + 4).min(blob.len()));
                } else {
                    let run: Vec<u8> = blob[at..(at + 4).min(blob.len())].to_vec();
                    blob.splice(at..at, run);
                }
            }
            // Flip one bit.
            _ => blob[at] ^= 1 << (input.u8() % 8),
        }
    }
    config_blob(&blob);
}

// ---------------------------------------------------------------------------------------------
// Syndrome

/// Decodes any syndrome; a decoded access must be self-consistent.
pub fn syndrome(data: &[u8]) {
    let mut input = Input::new(data);
    let hsr = match input.u8() % 4 {
        // Mostly data aborts, so the decoder gets past the class check.
        0..=2 => (0x24 << 26) | (input.u32() & 0x03ff_ffff),
        _ => input.u32(),
    };
    let xen_dabt = input.u32();
    let xen = match input.u8() % 3 {
        0 => XenDecode::Syndrome,
        1 => XenDecode::PostIndexed {
            rn: input.u8(),
            imm9: input.u16() as i16,
        },
        _ => XenDecode::CacheMaintenance,
    };
    let value = input.u64();
    match decode(hsr, xen_dabt, xen) {
        Err(_) => {}
        Ok(Decoded::CacheMaintenance) => assert_eq!(xen, XenDecode::CacheMaintenance),
        Ok(Decoded::Access(a)) => {
            assert_eq!(hsr >> 26, 0x24);
            assert!(a.reg <= 31);
            let stored = a.store_value(value);
            assert_eq!(stored & !a.width.mask(), 0);
            if a.reg == XZR {
                assert_eq!(stored, 0);
            }
            let loaded = a.load_value(value);
            if !a.sixty_four {
                assert_eq!(loaded >> 32, 0);
            }
            if !a.sign_extend {
                assert_eq!(loaded & !a.width.mask(), 0);
            }
            assert_eq!(
                loaded & a.width.mask() & 0xffff_ffff,
                value & a.width.mask() & 0xffff_ffff
            );
            match (hsr >> 24 & 1, xen) {
                (1, _) => assert_eq!(a.post_index, None),
                (_, XenDecode::PostIndexed { rn, imm9 }) => {
                    assert_eq!(a.post_index, Some((rn, imm9)));
                    assert!(rn <= 31 && (-256..=255).contains(&imm9));
                }
                _ => panic!("an access decoded from an invalid syndrome"),
            }
        }
    }
}
