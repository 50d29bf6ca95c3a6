//! Host tests of the nodes Xen adds to the guests' device trees (`dt.rs`): the frontend's
//! `virtio,mmio` nodes (Linux's virtio/mmio.yaml binding) and the backend's
//! `rust-ioreq,backend-v2` node, checked against the example in `docs/backend-abi.md` itself.

// Test data: indices and cells are small. The helpers below are test code too: a failed
// unwrap is a failed test, as in the #[test] functions clippy.toml already exempts.
#![allow(clippy::cast_possible_truncation, clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;

use common::hostdt::{host_dtb, Dev, Dom, GIC_SPIS};
use common::rig::{standard, BE, BE2, FE, FE2, IDLE};
use rust_ioreq::config::Config;
use rust_ioreq::dt::{write_backend_node, write_frontend_nodes, DtWriter, GUEST_PHANDLE_GIC};
use rust_ioreq::platform::DomainIndex;
use rust_ioreq::types::DomId;

/// A node as written: name, properties in order, children in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    name: String,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<Node>,
}

/// Records what is written as a tree under an unnamed top node; optionally fails the n-th call.
#[derive(Debug, Default)]
struct Recorder {
    stack: Vec<Node>,
    calls: usize,
    fail_at: Option<usize>,
    calls_after_failure: usize,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            stack: vec![Node::default()],
            ..Recorder::default()
        }
    }

    fn failing_at(n: usize) -> Recorder {
        Recorder {
            fail_at: Some(n),
            ..Recorder::new()
        }
    }

    fn call(&mut self) -> Result<(), &'static str> {
        self.calls += 1;
        match self.fail_at {
            Some(n) if self.calls > n + 1 => {
                self.calls_after_failure += 1;
                Err("called again after a failure")
            }
            Some(n) if self.calls == n + 1 => Err("libfdt: -FDT_ERR_NOSPACE"),
            _ => Ok(()),
        }
    }

    /// Returns the top-level nodes written, checking every node was closed.
    fn into_nodes(mut self) -> Vec<Node> {
        assert_eq!(self.stack.len(), 1, "unbalanced begin_node/end_node");
        self.stack.pop().unwrap().children
    }
}

impl DtWriter for Recorder {
    type Error = &'static str;

    fn begin_node(&mut self, name: &str) -> Result<(), Self::Error> {
        self.call()?;
        self.stack.push(Node {
            name: name.to_string(),
            ..Node::default()
        });
        Ok(())
    }

    fn property(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.call()?;
        let node = self.stack.last_mut().unwrap();
        assert!(
            node.children.is_empty(),
            "property {name} after a child node"
        );
        assert!(
            node.props.iter().all(|(n, _)| n != name),
            "property {name} written twice"
        );
        node.props.push((name.to_string(), value.to_vec()));
        Ok(())
    }

    fn end_node(&mut self) -> Result<(), Self::Error> {
        self.call()?;
        assert!(self.stack.len() > 1, "end_node without begin_node");
        let node = self.stack.pop().unwrap();
        self.stack.last_mut().unwrap().children.push(node);
        Ok(())
    }
}

/// Renders a value the way a .dts writes it: a string, cells, or nothing.
fn value(v: &[u8]) -> String {
    let printable = |b: &[u8]| !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c));
    if v.is_empty() {
        String::new()
    } else if v.last() == Some(&0) && v[..v.len() - 1].split(|&c| c == 0).all(printable) {
        let strings: Vec<String> = v[..v.len() - 1]
            .split(|&c| c == 0)
            .map(|b| format!("\"{}\"", std::str::from_utf8(b).unwrap()))
            .collect();
        format!(" = {}", strings.join(", "))
    } else if v.len().is_multiple_of(4) {
        let cells: Vec<String> = v
            .chunks(4)
            .map(|c| format!("{:#x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        format!(" = <{}>", cells.join(" "))
    } else {
        format!(" = [{v:02x?}]")
    }
}

fn render(nodes: &[Node]) -> String {
    fn go(n: &Node, depth: usize, out: &mut String) {
        let pad = "    ".repeat(depth);
        writeln!(out, "{pad}{} {{", n.name).unwrap();
        for (name, v) in &n.props {
            writeln!(out, "{pad}    {name}{};", value(v)).unwrap();
        }
        for c in &n.children {
            go(c, depth + 1, out);
        }
        writeln!(out, "{pad}}};").unwrap();
    }
    let mut out = String::new();
    for n in nodes {
        go(n, 0, &mut out);
    }
    out
}

/// Parses the subset of .dts the doc uses: nodes, `name;`, `name = <cells>;`,
/// `name = "string";`, `name = "string", "string";`, C comments.
fn parse_dts(text: &str) -> Vec<Node> {
    let mut s = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        s.push_str(&rest[..i]);
        rest = &rest[rest[i..].find("*/").expect("unterminated comment") + i + 2..];
    }
    s.push_str(rest);

    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        Str(String),
        Cells(Vec<u32>),
        Open,
        Close,
        Semi,
        Eq,
    }
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' | '}' | ';' | '=' => {
                chars.next();
                toks.push(match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ';' => Tok::Semi,
                    _ => Tok::Eq,
                });
            }
            '"' => {
                chars.next();
                let text: String = chars.by_ref().take_while(|&c| c != '"').collect();
                toks.push(Tok::Str(text));
            }
            '<' => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|&c| c != '>').collect();
                let cells = inner
                    .split_whitespace()
                    .map(|n| match n.strip_prefix("0x") {
                        Some(h) => u32::from_str_radix(h, 16).unwrap(),
                        None => n.parse().unwrap(),
                    })
                    .collect();
                toks.push(Tok::Cells(cells));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || ",._+-#@".contains(c) {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                assert!(!w.is_empty(), "unexpected {c:?} in the doc's dts");
                toks.push(Tok::Word(w));
            }
        }
    }

    fn node(toks: &[Tok], i: &mut usize, name: String) -> Node {
        let mut n = Node {
            name,
            ..Node::default()
        };
        loop {
            match &toks[*i] {
                Tok::Close => {
                    assert_eq!(toks[*i + 1], Tok::Semi);
                    *i += 2;
                    return n;
                }
                Tok::Word(w) => {
                    let w = w.clone();
                    *i += 1;
                    match &toks[*i] {
                        Tok::Open => {
                            *i += 1;
                            let child = node(toks, i, w);
                            n.children.push(child);
                        }
                        Tok::Semi => {
                            *i += 1;
                            n.props.push((w, Vec::new()));
                        }
                        Tok::Eq => {
                            // One value, or a list of strings separated by commas.
                            let mut v = Vec::new();
                            *i += 1;
                            loop {
                                match &toks[*i] {
                                    Tok::Str(s) => v.extend([s.as_bytes(), &[0]].concat()),
                                    Tok::Cells(c) => {
                                        v.extend(c.iter().flat_map(|c| c.to_be_bytes()))
                                    }
                                    t => panic!("unexpected {t:?}"),
                                }
                                *i += 1;
                                if toks[*i] != Tok::Word(",".into()) {
                                    break;
                                }
                                *i += 1;
                            }
                            assert_eq!(toks[*i], Tok::Semi);
                            *i += 1;
                            n.props.push((w, v));
                        }
                        t => panic!("unexpected {t:?} after {w}"),
                    }
                }
                t => panic!("unexpected {t:?}"),
            }
        }
    }
    toks.push(Tok::Close);
    toks.push(Tok::Semi);
    let mut i = 0;
    node(&toks, &mut i, String::new()).children
}

fn config(doms: &[Dom]) -> Box<Config> {
    Config::from_fdt(&host_dtb(doms), GIC_SPIS).expect("valid configuration")
}

fn frontend(config: &Config, domain: DomainIndex) -> Vec<Node> {
    let mut w = Recorder::new();
    write_frontend_nodes(config, domain, GUEST_PHANDLE_GIC, &mut w).expect("recorder never fails");
    w.into_nodes()
}

fn backend(
    config: &Config,
    domain: DomainIndex,
    domid_of: impl Fn(DomainIndex) -> Option<DomId>,
) -> Vec<Node> {
    let mut w = Recorder::new();
    write_backend_node(config, domain, GUEST_PHANDLE_GIC, domid_of, &mut w)
        .expect("recorder never fails");
    w.into_nodes()
}

fn all_domids(i: DomainIndex) -> Option<DomId> {
    Some(DomId(i as u16 + 1))
}

#[test]
fn frontend_nodes_are_standard_virtio_mmio_nodes() {
    let config = config(&standard());
    assert_eq!(GUEST_PHANDLE_GIC, 65000);
    assert_eq!(
        render(&frontend(&config, FE)),
        "\
virtio_mmio@2000000 {
    compatible = \"virtio,mmio\";
    reg = <0x0 0x2000000 0x0 0x200>;
    interrupts = <0x0 0x1 0x1>;
    interrupt-parent = <0xfde8>;
    dma-coherent;
};
virtio_mmio@2000200 {
    compatible = \"virtio,mmio\";
    reg = <0x0 0x2000200 0x0 0x200>;
    interrupts = <0x0 0x2 0x1>;
    interrupt-parent = <0xfde8>;
    dma-coherent;
};
"
    );
    let names: Vec<String> = frontend(&config, FE2).into_iter().map(|n| n.name).collect();
    assert_eq!(
        names,
        [
            "virtio_mmio@2000000",
            "virtio_mmio@a000000",
            "virtio_mmio@a002000"
        ]
    );
    let con = &frontend(&config, FE2)[1];
    assert_eq!(
        con.props[1..3],
        [
            ("reg".to_string(), cells(&[0, 0x0a00_0000, 0, 0x1000])),
            ("interrupts".to_string(), cells(&[0, 40 - 32, 1])),
        ]
    );
}

fn cells(v: &[u32]) -> Vec<u8> {
    common::hostdt::cells(v)
}

#[test]
fn frontend_nodes_carry_high_addresses_and_the_last_spi() {
    let config = config(&[
        Dom::new("fe")
            .nr_spis(988)
            .device(Dev::new("far", 1).at(0x1_8000_0000, 0x10_0000).irq(1019)),
        Dom::backend("be", 1),
    ]);
    let nodes = frontend(&config, 0);
    assert_eq!(
        render(&nodes),
        "\
virtio_mmio@180000000 {
    compatible = \"virtio,mmio\";
    reg = <0x1 0x80000000 0x0 0x100000>;
    interrupts = <0x0 0x3db 0x1>;
    interrupt-parent = <0xfde8>;
    dma-coherent;
};
"
    );
}

/// A passthrough DT that brings its own GIC changes the phandle Xen gives the guest's GIC
/// (`kinfo->phandle_gic`, `phandle_intc` from 4.21): every interrupt the component describes
/// must name the GIC in force, not Xen's usual constant.
#[test]
fn interrupts_name_the_gic_phandle_xen_gives() {
    let config = config(&standard());
    let passthrough_gic = 0x2a;
    let mut w = Recorder::new();
    write_frontend_nodes(&config, FE, passthrough_gic, &mut w).unwrap();
    write_backend_node(&config, BE, passthrough_gic, all_domids, &mut w).unwrap();
    let nodes = w.into_nodes();
    let parents: Vec<&[u8]> = nodes
        .iter()
        .map(|n| {
            n.props
                .iter()
                .find(|(name, _)| name == "interrupt-parent")
                .map(|(_, v)| v.as_slice())
                .expect("every node has an interrupt-parent")
        })
        .collect();
    assert_eq!(parents.len(), 3, "two devices and the backend node");
    for p in parents {
        assert_eq!(p, cells(&[passthrough_gic]));
    }
}

/// A direct-mapped frontend may have up to `MAX_RAM_BANKS` static memory banks: the backend
/// must be told of every one (a bank left out would make its buffers there unreachable).
#[test]
fn the_backend_node_lists_all_eight_ram_banks_of_a_direct_mapped_frontend() {
    let banks: Vec<(u64, u64)> = (0..8u64)
        .map(|i| (0x6000_0000 + i * 0x200_0000, 0x100_0000))
        .collect();
    let static_mem: Vec<u32> = banks
        .iter()
        .flat_map(|&(b, s)| [(b >> 32) as u32, b as u32, (s >> 32) as u32, s as u32])
        .collect();
    let total_kib = banks.iter().map(|&(_, s)| s / 1024).sum::<u64>() as u32;
    let config = config(&[
        Dom::new("fe")
            .prop("xen,static-mem", cells(&static_mem))
            .prop("direct-map", vec![])
            .prop("memory", cells(&[0, total_kib]))
            .device(Dev::new("d", 0x10)),
        Dom::backend("be", 0x10),
    ]);
    assert_eq!(config.domains()[0].ram().len(), 8);
    let nodes = backend(&config, 1, all_domids);
    let frontend = nodes[0]
        .children
        .iter()
        .find(|n| n.name.starts_with("frontend@"))
        .expect("a frontend node");
    let ram = frontend
        .props
        .iter()
        .find(|(name, _)| name == "rust-ioreq,ram")
        .map(|(_, v)| v.clone())
        .expect("rust-ioreq,ram");
    let want: Vec<u32> = banks
        .iter()
        .flat_map(|&(b, s)| [(b >> 32) as u32, b as u32, (s >> 32) as u32, s as u32])
        .collect();
    assert_eq!(ram, cells(&want), "every bank, in order");
}

#[test]
fn domains_that_are_no_frontend_get_no_virtio_nodes() {
    let config = config(&standard());
    for d in [BE, BE2, IDLE, 5, 1000] {
        let mut w = Recorder::new();
        write_frontend_nodes(&config, d, GUEST_PHANDLE_GIC, &mut w).unwrap();
        assert_eq!(w.calls, 0, "domain {d}");
    }
}

/// Returns the example node of `docs/backend-abi.md`.
fn doc_example() -> Vec<Node> {
    let doc = include_str!("../../docs/backend-abi.md");
    let start = doc.find("```dts\n").expect("a dts block in the doc") + 7;
    let len = doc[start..].find("```").expect("end of the dts block");
    parse_dts(&doc[start..start + len])
}

#[test]
fn the_backend_node_is_the_one_the_doc_shows() {
    // The doc's example: frontend domU1 (domid 1, two vCPUs) first in /chosen, one device with
    // the default region, served by the backend with the default notify SPI 44.
    let config = config(&[
        Dom::new("domU1")
            .cpus(2)
            .device(Dev::new("virtio-blk", 7).args("virtio-blk size=4M")),
        Dom::backend("domU2", 7),
    ]);
    let written = backend(&config, 1, all_domids);
    let doc = doc_example();
    // The parse found the whole example: the node, its frontend and its device.
    assert_eq!(doc.len(), 1);
    assert_eq!(doc[0].props.len(), 8);
    assert_eq!(doc[0].children[0].props.len(), 9);
    assert_eq!(doc[0].children[0].children[0].props.len(), 3);
    assert_eq!(
        written,
        doc,
        "\nwritten:\n{}\ndoc:\n{}",
        render(&written),
        render(&doc)
    );
}

#[test]
fn a_frontend_created_after_its_backend_has_no_domain_id_yet() {
    // As the doc says: rust-ioreq,domain-id only when the frontend precedes the backend.
    let config = config(&[
        Dom::backend("be", 7),
        Dom::new("late").device(Dev::new("d", 7)),
    ]);
    let created_so_far = |i: DomainIndex| (i == 0).then_some(DomId(1));
    let nodes = backend(&config, 0, created_so_far);
    let fe = &nodes[0].children[0];
    let names: Vec<&str> = fe.props.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "reg",
            "rust-ioreq,domain-name",
            "rust-ioreq,vcpus",
            "rust-ioreq,ioreq-page",
            "rust-ioreq,ram-window",
            "rust-ioreq,ram",
            "#address-cells",
            "#size-cells"
        ]
    );
    assert_eq!(fe.props[1].1, b"late\0");
}

#[test]
fn the_backend_node_lists_every_frontend_and_device_in_order() {
    let config = config(&standard());
    assert_eq!(
        render(&backend(&config, BE2, all_domids)),
        "\
ioreq-backend@3e000000 {
    compatible = \"rust-ioreq,backend-v2\", \"rust-ioreq,backend-v1\";
    reg = <0x0 0x3e000000 0x0 0x1000>;
    interrupts = <0x0 0x12 0x1>;
    interrupt-parent = <0xfde8>;
    rust-ioreq,transport-page = <0x0 0x3e009000>;
    rust-ioreq,notify-page = <0x0 0x3e00a000>;
    #address-cells = <0x1>;
    #size-cells = <0x0>;
    frontend@0 {
        reg = <0x0>;
        rust-ioreq,domain-id = <0x1>;
        rust-ioreq,domain-name = \"fe\";
        rust-ioreq,vcpus = <0x2>;
        rust-ioreq,ioreq-page = <0x0 0x3e001000>;
        rust-ioreq,ram-window = <0x10 0x0 0x10 0x0>;
        rust-ioreq,ram = <0x0 0x40000000 0x0 0x8000000>;
        #address-cells = <0x1>;
        #size-cells = <0x0>;
        device@0 {
            reg = <0x0>;
            rust-ioreq,mmio = <0x0 0x2000200 0x0 0x200>;
            rust-ioreq,args = \"virtio-net\";
        };
    };
    frontend@1 {
        reg = <0x1>;
        rust-ioreq,domain-id = <0x3>;
        rust-ioreq,domain-name = \"fe2\";
        rust-ioreq,vcpus = <0x1>;
        rust-ioreq,ioreq-page = <0x0 0x3e002000>;
        rust-ioreq,ram-window = <0x20 0x0 0x10 0x0>;
        rust-ioreq,ram = <0x0 0x40000000 0x0 0x8000000>;
        #address-cells = <0x1>;
        #size-cells = <0x0>;
        device@1 {
            reg = <0x1>;
            rust-ioreq,mmio = <0x0 0xa000000 0x0 0x1000>;
            rust-ioreq,args = \"virtio-blk\";
        };
        device@2 {
            reg = <0x2>;
            rust-ioreq,mmio = <0x0 0xa002000 0x0 0x200>;
            rust-ioreq,args = \"virtio-blk\";
        };
    };
};
"
    );
}

#[test]
fn device_unit_addresses_are_hex_like_their_reg() {
    // Twelve devices on one backend: device@a and device@b have reg <10> and <11>.
    let mut fe = Dom::new("fe");
    for i in 0..12u64 {
        fe = fe.device(
            Dev::new(&format!("d{i}"), 7)
                .at(0x0a00_0000 + 0x200 * i, 0x200)
                .irq(40 + i as u32),
        );
    }
    let config = config(&[fe, Dom::backend("be", 7)]);
    let nodes = backend(&config, 1, all_domids);
    let devices = &nodes[0].children[0].children;
    assert_eq!(devices.len(), 12);
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d.name, format!("device@{i:x}"));
        assert_eq!(d.props[0], ("reg".to_string(), cells(&[i as u32])));
    }
}

#[test]
fn eight_frontends_get_eight_pages_and_windows() {
    let mut doms = vec![Dom::backend("be", 7).notify_spi(1019).nr_spis(988)];
    for k in 0..8 {
        doms.push(
            Dom::new(&format!("fe{k}"))
                .cpus(k + 1)
                .device(Dev::new("d", 7)),
        );
    }
    let config = config(&doms);
    let nodes = backend(&config, 0, all_domids);
    assert_eq!(nodes[0].props[2].1, cells(&[0, 1019 - 32, 1]));
    let fes = &nodes[0].children;
    assert_eq!(fes.len(), 8);
    for (k, fe) in fes.iter().enumerate() {
        let k = k as u64;
        let prop = |name: &str| fe.props.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(fe.name, format!("frontend@{k}"));
        assert_eq!(prop("rust-ioreq,domain-id"), cells(&[k as u32 + 2]));
        assert_eq!(prop("rust-ioreq,vcpus"), cells(&[k as u32 + 1]));
        let page = 0x3e00_1000 + 0x1000 * k;
        assert_eq!(prop("rust-ioreq,ioreq-page"), cells(&[0, page as u32]));
        let window = 0x10_0000_0000 * (k + 1);
        assert_eq!(
            prop("rust-ioreq,ram-window"),
            cells(&[(window >> 32) as u32, 0, 0x10, 0])
        );
    }
}

#[test]
fn a_domain_that_serves_nothing_gets_no_backend_node() {
    let config = config(&standard());
    for d in [FE, FE2, IDLE, 5, usize::MAX] {
        let mut w = Recorder::new();
        write_backend_node(&config, d, GUEST_PHANDLE_GIC, all_domids, &mut w).unwrap();
        assert_eq!(w.calls, 0, "domain {d}");
    }
    // A backend nobody uses still gets its node (doorbell, notify SPI), with no frontends.
    let config = self::config(&[Dom::backend("lonely", 7)]);
    let nodes = backend(&config, 0, all_domids);
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].children.is_empty());
}

/// One of the node writers, bound to its configuration and domain.
type WriteFn<'a> = dyn Fn(&mut Recorder) -> Result<(), &'static str> + 'a;

#[test]
fn a_writer_error_stops_the_writing_and_is_returned() {
    let config = config(&standard());
    let total = |f: &WriteFn| {
        let mut w = Recorder::new();
        f(&mut w).unwrap();
        w.calls
    };
    let writers: [&WriteFn; 2] = [
        &|w| write_frontend_nodes(&config, FE2, GUEST_PHANDLE_GIC, w),
        &|w| write_backend_node(&config, BE2, GUEST_PHANDLE_GIC, all_domids, w),
    ];
    for f in writers {
        let n = total(f);
        assert!(n > 10);
        for fail in 0..n {
            let mut w = Recorder::failing_at(fail);
            assert_eq!(
                f(&mut w),
                Err("libfdt: -FDT_ERR_NOSPACE"),
                "failure at call {fail}"
            );
            assert_eq!(
                w.calls_after_failure, 0,
                "kept writing after failure at call {fail}"
            );
        }
    }
}

#[test]
fn the_dts_parser_used_above_reads_what_render_writes() {
    let config = config(&standard());
    let nodes = backend(&config, BE, all_domids);
    assert_eq!(parse_dts(&render(&nodes)), nodes);
}
