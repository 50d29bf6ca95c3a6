//! Fuzz bodies: plain functions from bytes to a run that must not panic, shared by the cargo-fuzz
//! targets in `fuzz/` (libFuzzer, nightly) and `tests/fuzz_like.rs` (a deterministic PRNG,
//! stable, in every `cargo test`).
//!
//! - [`config_blob`]: any bytes into `Config::from_fdt`; an accepted configuration must hold
//!   every invariant the engine and the DT writers rely on.
//! - [`config_mutated`]: a real host DT (QEMU's, and one written here) with byte, cell and
//!   length mutations.
//! - [`syndrome`]: any syndrome into `decode`, and the decoded access's value helpers.
//! - [`engine_ops`]: a sequence of frontend traps, backend slot writes (well-behaved and
//!   hostile), doorbell accesses, completions, timeouts and backend deaths against the strict
//!   fake, checked step by step against a model of the per-vCPU state machine, the broken
//!   devices and the slots held by timed-out requests.

use std::collections::BTreeMap;

use rust_ioreq::abi::{
    backend_layout, doorbell, IoReq, STATE_IOREQ_INPROCESS, STATE_IOREQ_NONE, STATE_IOREQ_READY,
    STATE_IORESP_READY,
};
use rust_ioreq::config::{Config, MAX_FRONTENDS_PER_BACKEND, NAME_MAX};
use rust_ioreq::dt::{write_backend_node, write_frontend_nodes, DtWriter};
use rust_ioreq::engine::{
    Builder, Discarded, DoorbellError, DoorbellEvent, Engine, MmioError, MmioOutcome, Trap,
    Unavailable, Work,
};
use rust_ioreq::platform::{PageId, Platform};
use rust_ioreq::syndrome::{decode, Decoded, XenDecode, XZR};
use rust_ioreq::types::{DomId, Gpa, GpaRange, Spi, VcpuId, Width};

use super::fake::{Event, FakeXen};
use super::hostdt::{host_dtb, GIC_SPIS};
use super::rig::{domid, rig, standard};
use super::trap::{hsr, Iss};

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

/// A DT writer that discards everything but checks balance.
#[derive(Debug, Default)]
struct Sink {
    depth: usize,
}

impl DtWriter for Sink {
    type Error = ();
    fn begin_node(&mut self, name: &str) -> Result<(), ()> {
        assert!(!name.is_empty() && name.len() <= 48, "node name {name:?}");
        self.depth += 1;
        Ok(())
    }
    fn property(&mut self, _: &str, value: &[u8]) -> Result<(), ()> {
        assert!(self.depth > 0 && value.len() <= 128);
        Ok(())
    }
    fn end_node(&mut self) -> Result<(), ()> {
        self.depth = self
            .depth
            .checked_sub(1)
            .expect("end_node without begin_node");
        Ok(())
    }
}

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
    for i in 0..domains.len() + 1 {
        let mut sink = Sink::default();
        write_frontend_nodes(&config, i, &mut sink).expect("sink");
        write_backend_node(&config, i, |d| Some(DomId(d as u16 + 1)), &mut sink).expect("sink");
        assert_eq!(sink.depth, 0);
    }
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

// ---------------------------------------------------------------------------------------------
// Engine

/// The model of one frontend vCPU's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    Idle,
    /// Posted to `page`: a load into `reg` (or a store) of `width`.
    Pending {
        page: PageId,
        backend: usize,
    },
    Answered {
        page: PageId,
        backend: usize,
    },
    Vanished,
}

#[derive(Clone, Copy, Debug)]
struct Loaded {
    reg: Option<u8>,
    sign_extend: bool,
    sixty_four: bool,
    width: Width,
}

struct Model<'a> {
    engine: &'a Engine,
    xen: &'a FakeXen,
    reqs: BTreeMap<(usize, u32), (Req, Option<Loaded>, u32)>,
    dead: Vec<bool>,
    /// Devices whose request timed out.
    broken: Vec<bool>,
    /// Slots (page, vCPU) still held by a timed-out request.
    held: std::collections::BTreeSet<(usize, usize, u32)>,
    /// The device of each pending request, by (frontend, vCPU).
    device_of: BTreeMap<(usize, u32), usize>,
}

impl Model<'_> {
    fn req(&self, d: usize, v: u32) -> Req {
        self.reqs.get(&(d, v)).map_or(Req::Idle, |r| r.0)
    }

    fn set(&mut self, d: usize, v: u32, r: Req) {
        self.reqs.entry((d, v)).or_insert((Req::Idle, None, 0)).0 = r;
    }
}

/// Addresses worth trapping on: every region's edges and middle, plus neighbours.
fn interesting_gpas(engine: &Engine) -> Vec<u64> {
    let mut v = vec![0, u64::MAX, 0x2200_0000, 0x4000_0000];
    for d in engine.config().devices() {
        let s = d.mmio.start().0;
        let e = s + d.mmio.size();
        v.extend([s, s + 1, s + 4, s + 0x70, e - 1, e - 4, e, s - 1]);
    }
    v
}

fn random_syndrome(input: &mut Input<'_>) -> (u32, u32, XenDecode) {
    match input.u8() % 8 {
        // Valid loads and stores of every shape.
        0..=5 => {
            let iss = Iss {
                sas: u32::from(input.u8() % 4),
                sse: input.one_in(2),
                srt: u32::from(input.u8() % 32),
                sf: input.one_in(2),
                ar: input.one_in(4),
                wnr: input.one_in(2),
            };
            let h = hsr(true, iss);
            (h, h, XenDecode::Syndrome)
        }
        6 => {
            let h = hsr(false, Iss::default());
            let dabt = hsr(
                true,
                Iss {
                    sas: u32::from(input.u8() % 4),
                    srt: u32::from(input.u8() % 31),
                    wnr: input.one_in(2),
                    ..Iss::default()
                },
            );
            let xen = match input.u8() % 3 {
                0 => XenDecode::PostIndexed {
                    rn: input.u8() % 40,
                    imm9: input.u16() as i16 % 300,
                },
                1 => XenDecode::CacheMaintenance,
                _ => XenDecode::Syndrome,
            };
            (h, dabt, xen)
        }
        _ => (input.u32(), input.u32(), XenDecode::Syndrome),
    }
}

/// Runs the operations `data` describes against the standard topology and the strict fake,
/// checking the engine against the model after each.
pub fn engine_ops(data: &[u8]) {
    let (engine, xen) = rig(&standard());
    let config = engine.config();
    let ndom = config.domains().len();
    let gpas = interesting_gpas(&engine);
    let pages = xen.page_ids();
    let mut model = Model {
        engine: &engine,
        xen: &xen,
        reqs: BTreeMap::new(),
        dead: vec![false; ndom],
        broken: vec![false; config.devices().len()],
        held: std::collections::BTreeSet::new(),
        device_of: BTreeMap::new(),
    };
    let mut input = Input::new(data);
    let mut steps = 0;
    while !input.is_empty() && steps < 4096 {
        steps += 1;
        xen.take_posts();
        xen.take_events();
        match input.u8() % 16 {
            0..=3 => op_trap(&mut model, &mut input, &gpas),
            4..=6 => {
                // A well-behaved backend answers a request in flight.
                let pg = input.pick(&pages);
                let v = u32::from(input.u8() % 3);
                if v < slots(&xen, pg) && matches!(xen.slot(pg, v).state(), 1 | 2) {
                    xen.answer(pg, v, input.u64());
                }
            }
            7 => {
                // Any backend writes any state into any slot.
                let pg = input.pick(&pages);
                let v = u32::from(input.u8() % 3);
                if v < slots(&xen, pg) {
                    let any = input.u8();
                    let s = input.pick(&[
                        STATE_IOREQ_NONE,
                        STATE_IOREQ_READY,
                        STATE_IOREQ_INPROCESS,
                        STATE_IORESP_READY,
                        any,
                    ]);
                    xen.set_state(pg, v, s);
                    if input.one_in(4) {
                        let r = xen.slot(pg, v);
                        xen.set_slot(
                            pg,
                            v,
                            IoReq {
                                data: input.u64(),
                                ..r
                            },
                        );
                    }
                }
            }
            8..=10 => op_complete(&mut model, &mut input, &pages),
            11 => op_doorbell(&mut model, &mut input),
            12 | 13 => op_vcpu_work(&mut model, &mut input),
            14 => op_expire(&mut model, &mut input),
            _ => {
                if input.one_in(8) {
                    let d = input.below(ndom + 1);
                    engine.domain_shutdown(&xen, domid(d));
                    let events = xen.take_events();
                    if d < ndom && config.domains()[d].backend.is_some() {
                        model.dead[d] = true;
                        let mut woken = Vec::new();
                        for (&(f, v), r) in model.reqs.iter_mut() {
                            if matches!(r.0, Req::Pending { backend, .. } if backend == d) {
                                r.0 = Req::Vanished;
                                woken.push(Event::Wake { domain: f, vcpu: v });
                            }
                        }
                        assert_eq!(events, woken);
                    } else {
                        assert!(events.is_empty());
                    }
                }
            }
        }
    }
    // Drain: a well-behaved backend answers everything, every vCPU completes.
    for (&(f, v), &(r, _, _)) in model.reqs.clone().iter() {
        if let Req::Pending { page, backend } = r {
            if !model.dead[backend] {
                xen.set_state(page, v, STATE_IOREQ_READY);
                xen.answer(page, v, 0);
                let k = page.frontend_index as u32;
                let got = engine.doorbell_write(
                    &xen,
                    domid(backend),
                    doorbell::COMPLETE,
                    Width::Word,
                    k << 16 | v,
                );
                assert!(got.is_ok(), "{got:?}");
                model.set(f, v, Req::Answered { page, backend });
            }
        }
        let _ = r;
    }
    for (&(f, v), _) in model.reqs.clone().iter() {
        let r = model.req(f, v);
        let w = engine.vcpu_work(&xen, domid(f), VcpuId(v));
        match r {
            Req::Idle => assert_eq!(w, Work::Idle),
            Req::Pending { .. } => assert_eq!(w, Work::Waiting),
            Req::Answered { .. } | Req::Vanished => assert!(matches!(w, Work::Complete(_))),
        }
    }
}

fn slots(xen: &FakeXen, pg: PageId) -> u32 {
    xen.slots(pg)
}

fn op_trap(m: &mut Model<'_>, input: &mut Input<'_>, gpas: &[u64]) {
    let ndom = m.engine.config().domains().len();
    let d = input.below(ndom + 1);
    let v = u32::from(input.u8() % 3);
    let gpa = if input.one_in(8) {
        input.u64()
    } else {
        input.pick(gpas)
    };
    let (h, dabt, xen_decode) = random_syndrome(input);
    let t = Trap {
        domid: domid(d),
        vcpu: VcpuId(v),
        gpa: Gpa(gpa),
        hsr: h,
        xen_dabt: dabt,
        xen_decode,
    };
    let reg_value = input.u64();
    let mut read = None;
    let out = m.engine.handle_mmio(m.xen, &t, |r| {
        assert_ne!(r, XZR, "read_reg(XZR)");
        assert!(read.replace(r).is_none(), "read_reg called twice");
        reg_value
    });
    let posts = m.xen.take_posts();
    let events = m.xen.take_events();
    let device = if d < ndom {
        m.engine.lookup(d, Gpa(gpa)).copied()
    } else {
        None
    };
    let decoded = decode(h, dabt, xen_decode);
    match out {
        MmioOutcome::NotMine => {
            assert!(device.is_none());
            assert!(posts.is_empty() && events.is_empty());
        }
        MmioOutcome::Handled => {
            assert!(device.is_some());
            assert_eq!(decoded, Ok(Decoded::CacheMaintenance));
            assert!(posts.is_empty() && events.is_empty());
        }
        MmioOutcome::Abort(e) => {
            assert!(device.is_some());
            assert!(posts.is_empty() && events.is_empty() && read.is_none());
            match e {
                MmioError::Syndrome(s) => assert_eq!(decoded, Err(s)),
                MmioError::UnknownVcpu(u) => {
                    assert_eq!(u, VcpuId(v));
                    assert!(v >= m.engine.config().domains()[d].vcpus);
                }
                MmioError::Busy(u) => {
                    assert_eq!(u, VcpuId(v));
                    assert_ne!(m.req(d, v), Req::Idle);
                }
            }
        }
        MmioOutcome::Retry | MmioOutcome::Unavailable(_) => {
            let devices = m.engine.config().devices();
            let device_index = m
                .engine
                .lookup(d, Gpa(gpa))
                .and_then(|r| devices.iter().position(|x| std::ptr::eq(x, r)))
                .expect("a device");
            let device = device.expect("a device");
            let Ok(Decoded::Access(a)) = decoded else {
                panic!("Retry for {decoded:?}")
            };
            assert_eq!(m.req(d, v), Req::Idle, "Retry on a busy vCPU");
            assert_eq!(read.is_some(), a.write && a.reg != XZR);
            let backend = usize::from(device.backend);
            let page = PageId {
                backend,
                frontend_index: usize::from(device.frontend_index),
            };
            let loaded = (!a.write).then_some(Loaded {
                reg: (a.reg != XZR).then_some(a.reg),
                sign_extend: a.sign_extend,
                sixty_four: a.sixty_four,
                width: a.width,
            });
            let held = m.held.contains(&(backend, page.frontend_index, v));
            if let MmioOutcome::Unavailable(why) = out {
                assert!(posts.is_empty(), "{why:?} but posted {posts:?}");
                let crashed = events.contains(&Event::Crash { domain: backend });
                match why {
                    Unavailable::BackendGone { device } => {
                        assert!(m.dead[backend] && !crashed);
                        assert_eq!(device, device_index);
                    }
                    Unavailable::Broken { device } => {
                        assert!(!m.dead[backend] && m.broken[device] && !crashed);
                        assert_eq!(device, device_index);
                    }
                    Unavailable::SlotHeld { .. } => {
                        assert!(held && !crashed && !m.broken[device_index]);
                        assert!(matches!(
                            m.xen.slot(page, v).state(),
                            STATE_IOREQ_READY | STATE_IOREQ_INPROCESS
                        ));
                    }
                    Unavailable::BackendFault { .. } => {
                        // The backend wrote a slot nobody posted: crashed (Xen's shutdown hook,
                        // not part of this fake, would then tell the engine it died).
                        assert!(crashed && !m.dead[backend], "{events:?}");
                    }
                }
                m.reqs.insert((d, v), (Req::Vanished, loaded, h));
            } else {
                assert!(!m.dead[backend] && !m.broken[device_index]);
                if held {
                    m.held.remove(&(backend, page.frontend_index, v));
                }
                m.device_of.insert((d, v), device_index);
                assert_eq!(posts.len(), 1);
                let (pg, slot, req) = posts[0];
                assert_eq!((pg, slot), (page, v));
                assert_eq!(req.addr, gpa);
                assert_eq!(req.size, a.width.bytes());
                assert_eq!(req.is_read(), !a.write);
                if a.write {
                    assert_eq!(req.data, a.store_value(reg_value));
                }
                let notify = m.engine.config().domains()[backend]
                    .backend
                    .unwrap_or_default()
                    .notify_spi;
                assert_eq!(
                    events,
                    [Event::Inject {
                        domain: backend,
                        spi: notify.0
                    }]
                );
                assert!(m.xen.armed(d, v).is_some(), "no timeout armed");
                m.reqs
                    .insert((d, v), (Req::Pending { page, backend }, loaded, h));
            }
        }
    }
}

fn op_complete(m: &mut Model<'_>, input: &mut Input<'_>, pages: &[PageId]) {
    // Mostly a COMPLETE naming a real page and slot.
    let pg = input.pick(pages);
    let (backend, k, v) = match input.u8() % 8 {
        0 => (
            input.below(6),
            u32::from(input.u16()),
            u32::from(input.u16()),
        ),
        _ => (
            pg.backend,
            pg.frontend_index as u32,
            u32::from(input.u8() % 3),
        ),
    };
    let got = m.engine.doorbell_write(
        m.xen,
        domid(backend),
        doorbell::COMPLETE,
        Width::Word,
        k << 16 | v,
    );
    let events = m.xen.take_events();
    match got {
        Ok(DoorbellEvent::Completed { frontend, vcpu }) => {
            assert_eq!(vcpu, VcpuId(v));
            let page = PageId {
                backend,
                frontend_index: k as usize,
            };
            assert_eq!(m.req(frontend, v), Req::Pending { page, backend });
            assert_eq!(m.xen.slot(page, v).state(), STATE_IORESP_READY);
            assert_eq!(
                events,
                [Event::Wake {
                    domain: frontend,
                    vcpu: v
                }]
            );
            m.set(frontend, v, Req::Answered { page, backend });
        }
        Ok(DoorbellEvent::Discarded(Discarded::LateAnswer)) => {
            assert!(events.is_empty());
            assert!(m.held.contains(&(backend, k as usize, v)));
        }
        Ok(other) => panic!("COMPLETE gave {other:?}"),
        Err(e) => {
            assert!(events.is_empty(), "{e:?} with {events:?}");
            // Refused although the model says the backend's COMPLETE is legal?
            let frontend = m
                .engine
                .config()
                .domains()
                .get(backend)
                .and_then(|d| d.backend)
                .and_then(|b| b.frontends.as_slice().get(k as usize).copied());
            if let Some(f) = frontend {
                let page = PageId {
                    backend,
                    frontend_index: k as usize,
                };
                if m.req(usize::from(f), v) == (Req::Pending { page, backend }) {
                    let state = m.xen.slot(page, v).state();
                    assert_ne!(state, STATE_IORESP_READY, "legal COMPLETE refused: {e:?}");
                    assert_eq!(e, DoorbellError::NotAnswered(state));
                }
            }
        }
    }
}

fn op_doorbell(m: &mut Model<'_>, input: &mut Input<'_>) {
    let ndom = m.engine.config().domains().len();
    let d = input.below(ndom + 1);
    let any = u64::from(input.u16());
    let offset = input.pick(&[0u64, 4, 8, 0x10, 0x14, 0x18, 0x1c, 0xc, any]);
    let width = input.pick(&[
        Width::Word,
        Width::Word,
        Width::Byte,
        Width::Half,
        Width::Double,
    ]);
    let any = input.u32();
    let value = input.pick(&[0, 1, 2, 3, 4, 5, any]);
    if input.one_in(2) {
        let _ = m.engine.doorbell_read(domid(d), offset, width);
        return;
    }
    if offset == doorbell::COMPLETE {
        return; // op_complete keeps the model for those
    }
    let got = m
        .engine
        .doorbell_write(m.xen, domid(d), offset, width, value);
    let events = m.xen.take_events();
    match got {
        Ok(DoorbellEvent::Raised { device }) => {
            let dev = m.engine.config().devices()[device];
            assert_eq!(usize::from(dev.backend), d);
            assert_eq!(u32::from(dev.index_in_backend), value);
            assert_eq!(
                events,
                [Event::Inject {
                    domain: usize::from(dev.frontend),
                    spi: dev.spi.0
                }]
            );
        }
        Ok(DoorbellEvent::Online | DoorbellEvent::OnlineAgain) => assert!(events.is_empty()),
        Ok(other) => panic!("{other:?}"),
        Err(_) => assert!(events.is_empty()),
    }
}

fn op_vcpu_work(m: &mut Model<'_>, input: &mut Input<'_>) {
    let ndom = m.engine.config().domains().len();
    let d = input.below(ndom + 1);
    let v = u32::from(input.u8() % 3);
    let (r, loaded, h) = m.reqs.get(&(d, v)).copied().unwrap_or((Req::Idle, None, 0));
    let slot_before = match r {
        Req::Answered { page, .. } => Some(m.xen.slot(page, v)),
        _ => None,
    };
    let w = m.engine.vcpu_work(m.xen, domid(d), VcpuId(v));
    let events = m.xen.take_events();
    match (r, w) {
        (Req::Idle, Work::Idle) | (Req::Pending { .. }, Work::Waiting) => {
            assert!(events.is_empty());
        }
        (Req::Answered { page, backend }, Work::Complete(c)) => {
            let slot = slot_before.expect("slot");
            let data = if slot.state() == STATE_IORESP_READY {
                assert!(events.is_empty());
                slot.data
            } else {
                assert_eq!(events, [Event::Crash { domain: backend }]);
                u64::MAX
            };
            assert_eq!(m.xen.slot(page, v).state(), STATE_IOREQ_NONE);
            check_completion(c.write_reg, loaded, data);
            assert_eq!(c.hsr, h);
            m.set(d, v, Req::Idle);
        }
        (Req::Vanished, Work::Complete(c)) => {
            assert!(events.is_empty());
            check_completion(c.write_reg, loaded, u64::MAX);
            assert_eq!(c.hsr, h);
            m.set(d, v, Req::Idle);
        }
        (r, w) => panic!("model {r:?} but vcpu_work {w:?}"),
    }
}

/// Lets time pass and fires a vCPU's timeout.
fn op_expire(m: &mut Model<'_>, input: &mut Input<'_>) {
    let ndom = m.engine.config().domains().len();
    let d = input.below(ndom + 1);
    let v = u32::from(input.u8() % 3);
    m.xen.advance(u64::from(input.u32()) * 4096);
    let due = m.xen.armed(d, v).is_some_and(|t| m.xen.now() >= t);
    let got = m.engine.expire(m.xen, d, VcpuId(v));
    let events = m.xen.take_events();
    match (m.req(d, v), got) {
        (Req::Pending { page, backend }, Some(e)) => {
            assert!(due && !m.dead[backend]);
            assert_eq!((e.frontend, e.vcpu), (d, VcpuId(v)));
            assert_eq!(Some(&e.device), m.device_of.get(&(d, v)));
            assert_eq!(events, [Event::Wake { domain: d, vcpu: v }]);
            m.broken[e.device] = true;
            m.held.insert((backend, page.frontend_index, v));
            m.set(d, v, Req::Vanished);
        }
        (Req::Pending { .. }, None) => {
            assert!(!due, "a due request did not expire");
            assert!(events.is_empty());
        }
        (_, None) => assert!(events.is_empty()),
        (r, Some(e)) => panic!("{r:?} expired: {e:?}"),
    }
}

fn check_completion(write_reg: Option<(u8, u64)>, loaded: Option<Loaded>, data: u64) {
    let expected = loaded.and_then(|l| {
        let r = l.reg?;
        let v = data & l.width.mask();
        let v = if l.sign_extend {
            l.width.sign_extend(v)
        } else {
            v
        };
        Some((r, if l.sixty_four { v } else { v & 0xffff_ffff }))
    });
    assert_eq!(write_reg, expected);
}
