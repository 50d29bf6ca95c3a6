//! The DT node writer fuzz body: from a configuration the parser accepted, the nodes
//! `rust_ioreq::dt` writes for each domain (frontend `virtio,mmio` nodes, the backend's
//! `rust-ioreq,backend-v2` node) are written through a [`DtWriter`] over `vm-fdt` into a real
//! guest tree blob, read back with the `fdt` crate, and compared node by node and byte by byte
//! with what `docs/binding.md` and `docs/backend-abi.md` say they hold, computed here from the
//! generated host tree and the configuration. The tree must also be well-formed as a device
//! tree: sibling names unique, every `reg` sized by its parent's cell counts, every unit address
//! equal to the first address of its `reg`. A writer that fails at any call gets no call after
//! the failure, and the error comes back.
//!
//! [`dt_nodes`] builds the host tree from the input (names long and short, unit addresses,
//! any `xen,backend-args`, memory sizes spanning both RAM banks, vCPUs, SPIs, timeouts), so
//! most inputs are accepted configurations; [`check_writers`] is also run on every
//! configuration the other configuration targets get accepted.

use rust_ioreq::config::Config;
use rust_ioreq::dt::{write_backend_node, write_frontend_nodes, DtWriter};
use rust_ioreq::platform::DomainIndex;
use rust_ioreq::types::DomId;
use vm_fdt::{FdtWriter, FdtWriterNode};

use super::super::hostdt::{cells, host_dtb, string, Dev, Dom, GIC_SPIS};
use super::Input;

/// A node as written or read back: name, properties in order, children in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    name: String,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<Node>,
}

impl Node {
    fn new(name: String) -> Node {
        Node {
            name,
            ..Node::default()
        }
    }

    fn prop(mut self, name: &str, value: Vec<u8>) -> Node {
        self.props.push((name.to_string(), value));
        self
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

fn be32(values: &[u32]) -> Vec<u8> {
    cells(values)
}

fn be64(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `DtWriter` over `vm-fdt`'s sequential writer: a real blob.
struct VmFdt {
    w: FdtWriter,
    open: Vec<FdtWriterNode>,
}

impl DtWriter for VmFdt {
    type Error = vm_fdt::Error;

    fn begin_node(&mut self, name: &str) -> Result<(), Self::Error> {
        let node = self.w.begin_node(name)?;
        self.open.push(node);
        Ok(())
    }

    fn property(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.w.property(name, value)
    }

    fn end_node(&mut self) -> Result<(), Self::Error> {
        let node = self.open.pop().expect("end_node without begin_node");
        self.w.end_node(node)
    }
}

/// Counts calls and fails the `fail_at`-th; counts calls made after a failure.
struct Failing {
    calls: usize,
    fail_at: usize,
    after_failure: usize,
}

impl Failing {
    fn call(&mut self) -> Result<(), ()> {
        self.calls += 1;
        match self.calls.cmp(&(self.fail_at + 1)) {
            std::cmp::Ordering::Less => Ok(()),
            std::cmp::Ordering::Equal => Err(()),
            std::cmp::Ordering::Greater => {
                self.after_failure += 1;
                Err(())
            }
        }
    }
}

impl DtWriter for Failing {
    type Error = ();
    fn begin_node(&mut self, _: &str) -> Result<(), ()> {
        self.call()
    }
    fn property(&mut self, _: &str, _: &[u8]) -> Result<(), ()> {
        self.call()
    }
    fn end_node(&mut self) -> Result<(), ()> {
        self.call()
    }
}

/// Writes, for each domain index, the nodes its guest tree gets (frontend nodes, then the
/// backend node) under a node `guest-<index>` with 2 address and 2 size cells, as the root of
/// Xen's generated domU trees: one real blob, read back with the `fdt` crate.
fn write_and_read(
    config: &Config,
    domains: usize,
    domid_of: &dyn Fn(DomainIndex) -> Option<DomId>,
) -> Vec<Node> {
    let mut w = VmFdt {
        w: FdtWriter::new().expect("writer"),
        open: Vec::new(),
    };
    let root = w.w.begin_node("").expect("root");
    for i in 0..domains {
        let guest = w.w.begin_node(&format!("guest-{i}")).expect("guest");
        w.w.property("#address-cells", &be32(&[2])).expect("cells");
        w.w.property("#size-cells", &be32(&[2])).expect("cells");
        write_frontend_nodes(config, i, gic_phandle(i), &mut w)
            .and_then(|()| write_backend_node(config, i, gic_phandle(i), domid_of, &mut w))
            .unwrap_or_else(|e| panic!("vm-fdt refused what rust_ioreq::dt wrote: {e}"));
        assert!(w.open.is_empty(), "a node left open");
        w.w.end_node(guest).expect("end guest");
    }
    w.w.end_node(root).expect("end root");
    let blob = w.w.finish().expect("finish");
    let fdt = fdt::Fdt::new(&blob).expect("the blob reads back");
    let root = fdt.find_node("/").expect("a root");
    let tree = read(&root);
    for guest in &tree.children {
        check_well_formed(guest);
    }
    tree.children
}

fn read(node: &fdt::node::FdtNode<'_, '_>) -> Node {
    Node {
        name: node.name.to_string(),
        props: node
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect(),
        children: node.children().map(|c| read(&c)).collect(),
    }
}

/// Device-tree rules the `fdt` crate does not check: unique sibling names, `reg` sized by the
/// parent's `#address-cells`/`#size-cells`, unit address = first `reg` address.
fn check_well_formed(node: &Node) {
    let mut names: Vec<&str> = node.children.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(
        names.len(),
        before,
        "duplicate child names under {}",
        node.name
    );
    let cell = |name: &str, default: usize| {
        node.get(name).map_or(default, |v| {
            assert_eq!(v.len(), 4, "{name} of {}", node.name);
            u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize
        })
    };
    let (ac, sc) = (cell("#address-cells", 2), cell("#size-cells", 1));
    for child in &node.children {
        if let Some(reg) = child.get("reg") {
            let entry = 4 * (ac + sc);
            assert!(
                !reg.is_empty() && reg.len() % entry == 0,
                "reg of {} is {} bytes, entries of {entry}",
                child.name,
                reg.len()
            );
            let address = reg[..4 * ac].chunks(4).fold(0u128, |a, c| {
                a << 32 | u128::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            });
            let unit = child.name.split_once('@').map(|(_, u)| u);
            assert_eq!(
                unit,
                Some(format!("{address:x}").as_str()),
                "unit address of {}",
                child.name
            );
        }
        check_well_formed(child);
    }
}

fn interrupts(spi: u32) -> Vec<u8> {
    // GIC SPI, number - 32, edge rising; the guest GIC's phandle.
    be32(&[0, spi - 32, 1])
}

/// The phandle of guest `domain`'s GIC: Xen's constant for most, the phandle a passthrough DT
/// brought for others (Xen hands the writers whichever is in force).
fn gic_phandle(domain: DomainIndex) -> u32 {
    if domain.is_multiple_of(2) {
        rust_ioreq::dt::GUEST_PHANDLE_GIC
    } else {
        0x8000 + domain as u32
    }
}

/// The `virtio,mmio` nodes frontend `domain` must get (`docs/binding.md`).
fn expected_frontend(config: &Config, domain: DomainIndex) -> Vec<Node> {
    config
        .devices()
        .iter()
        .filter(|d| usize::from(d.frontend) == domain)
        .map(|d| {
            let base = d.mmio.start().0;
            Node::new(format!("virtio_mmio@{base:x}"))
                .prop("compatible", string("virtio,mmio"))
                .prop("reg", be64(&[base, d.mmio.size()]))
                .prop("interrupts", interrupts(d.spi.0))
                .prop("interrupt-parent", be32(&[gic_phandle(domain)]))
                .prop("dma-coherent", Vec::new())
        })
        .collect()
}

/// The RAM of a dom0less domU of `kib` KiB: bank 0 (3 GiB at 1 GiB) first, then bank 1
/// (1016 GiB at 8 GiB).
fn ram(kib: u64) -> Vec<u8> {
    let bytes = kib.saturating_mul(1024);
    let bank0 = bytes.min(0xc000_0000);
    let bank1 = (bytes - bank0).min(0xfe_0000_0000);
    let mut v = Vec::new();
    if bank0 > 0 {
        v.extend(be64(&[0x4000_0000, bank0]));
    }
    if bank1 > 0 {
        v.extend(be64(&[0x2_0000_0000, bank1]));
    }
    v
}

/// The `rust-ioreq,backend-v2` node backend `domain` must get (`docs/backend-abi.md`).
fn expected_backend(
    config: &Config,
    domain: DomainIndex,
    domid_of: &dyn Fn(DomainIndex) -> Option<DomId>,
) -> Vec<Node> {
    let Some(backend) = config.domains().get(domain).and_then(|d| d.backend) else {
        return Vec::new();
    };
    let mut node = Node::new("ioreq-backend@3e000000".to_string())
        .prop(
            "compatible",
            b"rust-ioreq,backend-v2\0rust-ioreq,backend-v1\0".to_vec(),
        )
        .prop("reg", be64(&[0x3e00_0000, 0x1000]))
        .prop("interrupts", interrupts(backend.notify_spi.0))
        .prop("interrupt-parent", be32(&[gic_phandle(domain)]))
        .prop("rust-ioreq,transport-page", be64(&[0x3e00_9000]))
        .prop("rust-ioreq,notify-page", be64(&[0x3e00_a000]));
    if backend.poll_us > 0 {
        node = node.prop("rust-ioreq,poll-us", be32(&[backend.poll_us]));
    }
    node = node
        .prop("#address-cells", be32(&[1]))
        .prop("#size-cells", be32(&[0]));
    for (k, &f) in backend.frontends.iter().enumerate() {
        let fe = &config.domains()[usize::from(f)];
        let mut child = Node::new(format!("frontend@{k:x}")).prop("reg", be32(&[k as u32]));
        if let Some(id) = domid_of(usize::from(f)) {
            child = child.prop("rust-ioreq,domain-id", be32(&[u32::from(id.0)]));
        }
        child = child
            .prop("rust-ioreq,domain-name", string(fe.name.as_str()))
            .prop("rust-ioreq,vcpus", be32(&[fe.vcpus]))
            .prop(
                "rust-ioreq,ioreq-page",
                be64(&[0x3e00_1000 + 0x1000 * k as u64]),
            )
            .prop(
                "rust-ioreq,ram-window",
                be64(&[0x10_0000_0000 * (k as u64 + 1), 0x10_0000_0000]),
            )
            .prop("rust-ioreq,ram", ram(fe.memory_kib))
            .prop("#address-cells", be32(&[1]))
            .prop("#size-cells", be32(&[0]));
        for d in config
            .devices()
            .iter()
            .filter(|d| usize::from(d.backend) == domain && d.frontend == f)
        {
            let index = u32::from(d.index_in_backend);
            let mut device = Node::new(format!("device@{index:x}"))
                .prop("reg", be32(&[index]))
                .prop("rust-ioreq,mmio", be64(&[d.mmio.start().0, d.mmio.size()]))
                .prop("rust-ioreq,args", string(d.args.as_str()));
            if d.classic {
                device = device.prop("rust-ioreq,classic", Vec::new());
            }
            child.children.push(device);
        }
        node.children.push(child);
    }
    vec![node]
}

/// Runs `write` with a writer that fails at call `fail_at`: the error must come back, and no
/// call may follow the failure.
fn check_failing(fail_at: usize, write: impl Fn(&mut Failing) -> Result<(), ()>) {
    let mut count = Failing {
        calls: 0,
        fail_at: usize::MAX - 1,
        after_failure: 0,
    };
    assert_eq!(write(&mut count), Ok(()));
    let mut f = Failing {
        calls: 0,
        fail_at,
        after_failure: 0,
    };
    assert_eq!(write(&mut f).is_err(), fail_at < count.calls);
    assert_eq!(f.after_failure, 0, "writer called again after it failed");
}

/// Writes every domain's nodes (and those of one index past the last) into a real blob, reads
/// them back and compares; then fails a writer at call `fail_at` of each.
pub fn check_writers(
    config: &Config,
    domid_of: &dyn Fn(DomainIndex) -> Option<DomId>,
    fail_at: usize,
) {
    let domains = config.domains().len() + 1;
    let got = write_and_read(config, domains, domid_of);
    assert_eq!(got.len(), domains);
    for (i, guest) in got.iter().enumerate() {
        let mut expected = expected_frontend(config, i);
        expected.extend(expected_backend(config, i, domid_of));
        assert_eq!(guest.children, expected, "nodes of domain {i}");
    }
    for i in 0..domains {
        check_failing(fail_at, |w| {
            write_frontend_nodes(config, i, gic_phandle(i), w)
        });
        check_failing(fail_at, |w| {
            write_backend_node(config, i, gic_phandle(i), domid_of, w)
        });
    }
}

/// A node name: 1 to 31 characters of the spec's set, unique by `i`, maybe a unit address.
fn node_name(input: &mut Input<'_>, i: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789,._+-";
    let len = match input.u8() % 4 {
        0 => 31,
        1 => 1 + input.below(31),
        _ => 2 + input.below(6),
    };
    let mut name = String::new();
    if len > 1 {
        // Starts with a letter.
        name.push('d');
        for _ in 0..len - 2 {
            name.push(char::from(CHARS[input.below(CHARS.len())]));
        }
    }
    // Unique among the domains: the last character is the index.
    name.push(char::from(b'a' + i as u8));
    if input.one_in(3) {
        name.push_str(&format!("@{:x}", input.u32()));
    }
    name
}

/// `xen,backend-args`: any printable text, sometimes past the limit, sometimes UTF-8 or a
/// string list.
fn args(input: &mut Input<'_>) -> String {
    let len = match input.u8() % 8 {
        0 => 96,
        1 => 97,
        2 => 0,
        _ => input.below(24),
    };
    (0..len)
        .map(|_| match input.u8() % 64 {
            0 => '\0',
            1 => 'é',
            n => char::from(b' ' + n % 95),
        })
        .collect()
}

/// Builds a host tree from `data` and, if the configuration is accepted, checks that every
/// domain keeps its node's name and that the DT writers write exactly the documented nodes.
pub fn dt_nodes(data: &[u8]) {
    let mut input = Input::new(data);
    let ndom = 2 + input.below(5);
    let backend = |i: usize| 0x10 + i as u32;
    let mut names = Vec::new();
    let mut doms = Vec::new();
    let mut args_of = Vec::new();
    let backends: Vec<bool> = (0..ndom).map(|i| i == 1 || input.one_in(3)).collect();
    for (i, &is_backend) in backends.iter().enumerate() {
        let name = node_name(&mut input, i);
        let mut d = Dom::new(&name).cpus(match input.u8() % 8 {
            0 => 128,
            1 => 129,
            n => u32::from(n % 4) + 1,
        });
        if is_backend {
            d = d.phandle(backend(i)).ioreq_server();
            if input.one_in(2) {
                d = d.notify_spi(44 + u32::from(input.u8() % 16));
            }
            if input.one_in(2) {
                d = d.prop("xen,ioreq-timeout-ms", cells(&[input.u32()]));
            }
        }
        let memory = match input.u8() % 6 {
            0 => None,
            1 => Some(cells(&[input.u32()])),
            2 => Some(cells(&[0, 0x30_0000 + input.u32() % 0x10_0000])),
            3 => Some(cells(&[input.u32(), input.u32()])),
            _ => Some(cells(&[0, 0x2_0000])),
        };
        d = match memory {
            Some(m) => d.prop("memory", m),
            None => d.without("memory"),
        };
        if input.one_in(8) {
            d = d.vpl011();
        }
        if input.one_in(8) {
            d = d.nr_spis(input.u32() % 64);
        }
        for n in 0..input.below(4) {
            let served_by = if input.one_in(4) {
                input.below(ndom)
            } else {
                1
            };
            let mut dev = Dev::new(&format!("dev{n}"), backend(served_by));
            if input.one_in(3) {
                let base = input.pick(&[0x0200_0000, 0x0a00_0000, 0x1000_0000, 0x3e00_0000]);
                let size = input.pick(&[0x200, 0x1000, 0x400]);
                dev = dev.at(base + 0x1000 * u64::from(n as u32), size);
            }
            if input.one_in(3) {
                dev = dev.irq(33 + u32::from(input.u8() % 40));
            }
            let a = args(&mut input);
            dev = dev.prop("xen,backend-args", string(&a));
            args_of.push(a);
            d = d.device(dev);
        }
        names.push(name);
        doms.push(d);
    }
    let Ok(config) = rust_ioreq::config::Config::from_fdt(&host_dtb(&doms), GIC_SPIS) else {
        return;
    };
    // Every domain that serves or uses a device is known by its node's full name (Xen binds
    // them by `dt_node_full_name`), and the backend's DT names its frontends the same way;
    // the others are not tracked.
    assert!(config.domains().len() <= ndom);
    for (i, d) in config.domains().iter().enumerate() {
        let n = d.name.as_str();
        assert!(names.iter().any(|x| x == n), "domain {i} is named {n}");
        assert_eq!(
            config.domain_index_by_path(&format!("/chosen/{n}")),
            Some(i),
            "/chosen/{n}"
        );
    }
    // `xen,backend-args` reaches the backend unchanged (a trailing NUL is the terminator).
    assert_eq!(config.devices().len(), args_of.len());
    for (d, a) in config.devices().iter().zip(&args_of) {
        assert_eq!(d.args.as_str(), a.trim_end_matches('\0'));
    }
    let domids: Vec<Option<DomId>> = (0..config.domains().len())
        .map(|_| (!input.one_in(3)).then(|| DomId(input.u16())))
        .collect();
    let fail_at = input.below(64);
    check_writers(&config, &|d| domids.get(d).copied().flatten(), fail_at);
}
