//! Builds host device trees (the blob Xen boots with) for the configuration tests, with the
//! `vm-fdt` writer: a QEMU-virt-like root, and `/chosen` holding dom0less `xen,domain` nodes with
//! `xen,virtio-mmio-device` children (binding: DESIGN.md §3, `docs/backend-abi.md`).
//!
//! Every property is kept as raw bytes in order, so a test can replace or drop any of them to
//! build exactly the malformed tree it wants.

use vm_fdt::FdtWriter;

/// SPIs of a domain without `nr_spis` on QEMU's virt GICv3 (288 lines).
pub const GIC_SPIS: u32 = 256;
/// Phandle of the host GIC node (not a domain: a `xen,backend` naming it is dangling).
pub const HOST_GIC_PHANDLE: u32 = 0x8001;

/// Encodes big-endian cells.
pub fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Encodes a NUL-terminated string.
pub fn string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Splits `value` into `n` big-endian cells (most significant first).
pub fn split(value: u64, n: u32) -> Vec<u32> {
    (0..n)
        .rev()
        .map(|i| {
            if i >= 2 {
                0
            } else {
                (value >> (32 * i)) as u32
            }
        })
        .collect()
}

/// An ordered property list.
#[derive(Clone, Debug, Default)]
pub struct Props(Vec<(String, Vec<u8>)>);

impl Props {
    /// Sets `name` (replacing it in place if present).
    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn write(&self, w: &mut FdtWriter) {
        for (name, value) in &self.0 {
            w.property(name, value).expect("property");
        }
    }
}

/// Where a device's `reg` comes from.
#[derive(Clone, Debug)]
enum Reg {
    /// No `reg`: the default region.
    Default,
    /// Base and size, encoded with the domain node's `#address-cells`/`#size-cells`.
    At(u64, u64),
    /// These exact cells.
    Raw(Vec<u32>),
}

/// A `xen,virtio-mmio-device` node.
#[derive(Clone, Debug)]
pub struct Dev {
    name: String,
    reg: Reg,
    props: Props,
}

impl Dev {
    /// A device served by the backend with `phandle`, default region and SPI, `xen,backend-args
    /// = "virtio-blk"`.
    pub fn new(name: &str, backend_phandle: u32) -> Dev {
        let mut props = Props::default();
        props.set("compatible", string("xen,virtio-mmio-device"));
        props.set("xen,backend", cells(&[backend_phandle]));
        props.set("xen,backend-args", string("virtio-blk"));
        Dev {
            name: name.to_string(),
            reg: Reg::Default,
            props,
        }
    }

    /// Places the region at `base`, `size` bytes.
    pub fn at(mut self, base: u64, size: u64) -> Dev {
        self.reg = Reg::At(base, size);
        self
    }

    /// Gives `reg` as these exact cells.
    pub fn raw_reg(mut self, cells: &[u32]) -> Dev {
        self.reg = Reg::Raw(cells.to_vec());
        self
    }

    /// Sets the one-cell `interrupts`.
    pub fn irq(mut self, spi: u32) -> Dev {
        self.props.set("interrupts", cells(&[spi]));
        self
    }

    /// Sets `xen,backend-args`.
    pub fn args(mut self, args: &str) -> Dev {
        self.props.set("xen,backend-args", string(args));
        self
    }

    /// Sets any property to raw bytes.
    pub fn prop(mut self, name: &str, value: Vec<u8>) -> Dev {
        self.props.set(name, value);
        self
    }

    /// Drops a property.
    pub fn without(mut self, name: &str) -> Dev {
        self.props.remove(name);
        self
    }
}

/// Any other node: a name, properties and children.
#[derive(Clone, Debug, Default)]
pub struct Node {
    name: String,
    props: Props,
    children: Vec<Node>,
}

impl Node {
    /// A node with no property.
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            ..Node::default()
        }
    }

    /// Sets any property to raw bytes.
    pub fn prop(mut self, name: &str, value: Vec<u8>) -> Node {
        self.props.set(name, value);
        self
    }

    /// Adds a child node.
    pub fn child(mut self, child: Node) -> Node {
        self.children.push(child);
        self
    }

    fn write(&self, w: &mut FdtWriter) {
        let node = w.begin_node(&self.name).expect("node");
        self.props.write(w);
        for c in &self.children {
            c.write(w);
        }
        w.end_node(node).expect("end node");
    }
}

/// A dom0less `xen,domain` node.
#[derive(Clone, Debug)]
pub struct Dom {
    name: String,
    props: Props,
    address_cells: u32,
    size_cells: u32,
    devices: Vec<Dev>,
    children: Vec<Node>,
}

impl Dom {
    /// A domain with `cpus = <1>`, 2+2 cells, 128 MiB and a kernel module, serving nothing.
    pub fn new(name: &str) -> Dom {
        let mut props = Props::default();
        props.set("compatible", string("xen,domain"));
        props.set("#address-cells", cells(&[2]));
        props.set("#size-cells", cells(&[2]));
        props.set("memory", cells(&[0, 0x2_0000]));
        props.set("cpus", cells(&[1]));
        Dom {
            name: name.to_string(),
            props,
            address_cells: 2,
            size_cells: 2,
            devices: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A backend: `phandle` and `xen,ioreq-server`.
    pub fn backend(name: &str, phandle: u32) -> Dom {
        Dom::new(name).phandle(phandle).ioreq_server()
    }

    /// Sets `phandle`.
    pub fn phandle(mut self, phandle: u32) -> Dom {
        self.props.set("phandle", cells(&[phandle]));
        self
    }

    /// Sets `cpus`.
    pub fn cpus(mut self, n: u32) -> Dom {
        self.props.set("cpus", cells(&[n]));
        self
    }

    /// Adds `vpl011`.
    pub fn vpl011(mut self) -> Dom {
        self.props.set("vpl011", Vec::new());
        self
    }

    /// Sets `nr_spis`.
    pub fn nr_spis(mut self, n: u32) -> Dom {
        self.props.set("nr_spis", cells(&[n]));
        self
    }

    /// Adds `xen,ioreq-server`.
    pub fn ioreq_server(mut self) -> Dom {
        self.props.set("xen,ioreq-server", Vec::new());
        self
    }

    /// Sets `xen,ioreq-notify-spi`.
    pub fn notify_spi(mut self, spi: u32) -> Dom {
        self.props.set("xen,ioreq-notify-spi", cells(&[spi]));
        self
    }

    /// Sets `#address-cells` and `#size-cells` (and encodes device regions with them).
    pub fn cells(mut self, address: u32, size: u32) -> Dom {
        self.props.set("#address-cells", cells(&[address]));
        self.props.set("#size-cells", cells(&[size]));
        self.address_cells = address;
        self.size_cells = size;
        self
    }

    /// Sets any property to raw bytes.
    pub fn prop(mut self, name: &str, value: Vec<u8>) -> Dom {
        self.props.set(name, value);
        self
    }

    /// Drops a property.
    pub fn without(mut self, name: &str) -> Dom {
        self.props.remove(name);
        self
    }

    /// Adds a device node.
    pub fn device(mut self, dev: Dev) -> Dom {
        self.devices.push(dev);
        self
    }

    /// Adds another child node (after the devices).
    pub fn child(mut self, node: Node) -> Dom {
        self.children.push(node);
        self
    }

    fn write(&self, w: &mut FdtWriter) {
        let node = w.begin_node(&self.name).expect("domain node");
        self.props.write(w);
        // A kernel module child, as every real dom0less domain has: not a device.
        let module = w.begin_node("module@4a000000").expect("module");
        w.property(
            "compatible",
            &[string("multiboot,kernel"), string("multiboot,module")].concat(),
        )
        .expect("compatible");
        w.property(
            "reg",
            &cells(
                &[
                    split(0x4a00_0000, self.address_cells),
                    split(0x1000, self.size_cells),
                ]
                .concat(),
            ),
        )
        .expect("reg");
        w.end_node(module).expect("end module");
        for dev in &self.devices {
            let node = w.begin_node(&dev.name).expect("device node");
            match &dev.reg {
                Reg::Default => {}
                Reg::At(base, size) => w
                    .property(
                        "reg",
                        &cells(
                            &[
                                split(*base, self.address_cells),
                                split(*size, self.size_cells),
                            ]
                            .concat(),
                        ),
                    )
                    .expect("reg"),
                Reg::Raw(raw) => w.property("reg", &cells(raw)).expect("reg"),
            }
            dev.props.write(w);
            w.end_node(node).expect("end device");
        }
        for c in &self.children {
            c.write(w);
        }
        w.end_node(node).expect("end domain");
    }
}

/// Xen's command line in the trees written here, unless a test sets another.
pub const BOOTARGS: &str = "console=dtuart dtuart=/pl011@9000000 bootscrub=0";

/// What a host tree holds besides the domains.
#[derive(Clone, Debug)]
pub struct Host {
    /// `/chosen/xen,xen-bootargs`; `None` omits it.
    pub bootargs: Option<String>,
    /// Number of `/cpus/cpu@N` nodes.
    pub cpus: u32,
    /// Other `/chosen` children, written before the domains (dom0's kernel, cpupools).
    pub chosen_extra: Vec<Node>,
    /// Whether there is a `/chosen` node at all.
    pub chosen: bool,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            bootargs: Some(BOOTARGS.to_string()),
            cpus: 2,
            chosen_extra: Vec::new(),
            chosen: true,
        }
    }
}

/// Writes a host tree: QEMU-virt-like root nodes, then `/chosen` with `domains` (in order).
pub fn host_dtb(domains: &[Dom]) -> Vec<u8> {
    host_dtb_with(domains, true)
}

/// Writes a host tree, with or without a `/chosen` node.
pub fn host_dtb_with(domains: &[Dom], with_chosen: bool) -> Vec<u8> {
    host_dtb_full(
        domains,
        &Host {
            chosen: with_chosen,
            ..Host::default()
        },
    )
}

/// Writes a host tree as `host` says, with `domains` in `/chosen`.
pub fn host_dtb_full(domains: &[Dom], host: &Host) -> Vec<u8> {
    let mut w = FdtWriter::new().expect("writer");
    let root = w.begin_node("").expect("root");
    w.property("compatible", &string("linux,dummy-virt"))
        .expect("compatible");
    w.property("#address-cells", &cells(&[2])).expect("cells");
    w.property("#size-cells", &cells(&[2])).expect("cells");
    w.property("interrupt-parent", &cells(&[HOST_GIC_PHANDLE]))
        .expect("ip");

    let memory = w.begin_node("memory@40000000").expect("memory");
    w.property("device_type", &string("memory"))
        .expect("device_type");
    w.property("reg", &cells(&[0, 0x4000_0000, 0, 0x8000_0000]))
        .expect("reg");
    w.end_node(memory).expect("end memory");

    let cpus = w.begin_node("cpus").expect("cpus");
    w.property("#address-cells", &cells(&[1])).expect("cells");
    w.property("#size-cells", &cells(&[0])).expect("cells");
    for i in 0..host.cpus {
        let cpu = w.begin_node(&format!("cpu@{i}")).expect("cpu");
        w.property("device_type", &string("cpu")).expect("type");
        w.property("compatible", &string("arm,cortex-a57"))
            .expect("compatible");
        w.property("reg", &cells(&[i])).expect("reg");
        w.end_node(cpu).expect("end cpu");
    }
    w.end_node(cpus).expect("end cpus");

    // QEMU virt's GICv3: distributor and one redistributor region.
    let gic = w.begin_node("intc@8000000").expect("intc");
    w.property("compatible", &string("arm,gic-v3"))
        .expect("compatible");
    w.property("phandle", &cells(&[HOST_GIC_PHANDLE]))
        .expect("phandle");
    w.property("interrupt-controller", &[]).expect("ic");
    w.property("#redistributor-regions", &cells(&[1]))
        .expect("rdist");
    w.property(
        "reg",
        &cells(&[0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0xf6_0000]),
    )
    .expect("reg");
    w.end_node(gic).expect("end intc");

    if host.chosen {
        let chosen = w.begin_node("chosen").expect("chosen");
        w.property("#address-cells", &cells(&[2])).expect("cells");
        w.property("#size-cells", &cells(&[2])).expect("cells");
        if let Some(args) = &host.bootargs {
            w.property("xen,xen-bootargs", &string(args))
                .expect("bootargs");
        }
        for n in &host.chosen_extra {
            n.write(&mut w);
        }
        for d in domains {
            d.write(&mut w);
        }
        w.end_node(chosen).expect("end chosen");
    }

    let uart = w.begin_node("pl011@9000000").expect("uart");
    w.property(
        "compatible",
        &[string("arm,pl011"), string("arm,primecell")].concat(),
    )
    .expect("compatible");
    w.property("reg", &cells(&[0, 0x0900_0000, 0, 0x1000]))
        .expect("reg");
    w.end_node(uart).expect("end uart");
    w.end_node(root).expect("end root");
    w.finish().expect("finish")
}
