//! The nodes Xen adds to the guests' generated device trees: a standard `virtio,mmio` node per
//! device in a frontend (Linux's `Documentation/devicetree/bindings/virtio/mmio.yaml`), and the
//! `rust-ioreq,backend-v1` node in a backend (`docs/backend-abi.md`).
//!
//! Written through [`DtWriter`], which `arch/` implements over libfdt's sequential-write API.

use core::fmt::Write;

use crate::abi::{backend_layout, doorbell};
use crate::config::{Config, MAX_RAM_BANKS};
use crate::fixed::FixedStr;
use crate::platform::DomainIndex;
use crate::types::{DomId, Spi};

/// Xen's `GUEST_PHANDLE_GIC`: the phandle of the GIC node in a domU's generated DT, unless a
/// passthrough DT brings its own GIC (Xen then uses that one's: `kinfo->phandle_gic`, named
/// `phandle_intc` from 4.21). Xen passes the phandle in force to `rust_ioreq_make_dt_nodes()`.
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// GIC binding: SPI interrupt type cell.
const GIC_SPI: u32 = 0;
/// GIC binding: rising edge. Xen injects one edge per event and never lowers a line, so a
/// level-sensitive description would leave the interrupt pending forever on Xen's new vGIC;
/// libxl describes its virtio-mmio interrupts the same way.
const IRQ_TYPE_EDGE_RISING: u32 = 1;

/// Sequential device-tree writer (libfdt's `fdt_begin_node`/`fdt_property`/`fdt_end_node`).
pub trait DtWriter {
    /// Error of the underlying writer (libfdt's negative codes).
    type Error;
    /// Opens a child node of the current node.
    fn begin_node(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Adds a property to the current node.
    fn property(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Closes the current node.
    fn end_node(&mut self) -> Result<(), Self::Error>;
}

/// The longest property value written: `rust-ioreq,ram`, an address and a size (2 + 2 cells) for
/// each of a frontend's RAM banks, at most `MAX_RAM_BANKS` (a direct-mapped domain's static
/// memory banks).
const CELLS_BYTES: usize = MAX_RAM_BANKS * 16;

/// Big-endian cells for a property value, built without allocation; room for the longest one
/// written ([`CELLS_BYTES`]), so nothing is ever left out.
struct Cells {
    bytes: [u8; CELLS_BYTES],
    len: usize,
}

impl Cells {
    fn new() -> Self {
        Cells {
            bytes: [0; CELLS_BYTES],
            len: 0,
        }
    }

    fn u32(mut self, v: u32) -> Self {
        if let Some(dst) = self.bytes.get_mut(self.len..self.len + 4) {
            dst.copy_from_slice(&v.to_be_bytes());
            self.len += 4;
        }
        self
    }

    fn u64(self, v: u64) -> Self {
        self.u32((v >> 32) as u32).u32(v as u32)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn str_prop(s: &str) -> FixedStr<128> {
    let mut f = FixedStr::<128>::new();
    f.push(s);
    f.push("\0");
    f
}

fn node_name(prefix: &str, unit: u64) -> FixedStr<48> {
    let mut n = FixedStr::<48>::new();
    let _ = write!(n, "{prefix}@{unit:x}");
    n
}

impl core::fmt::Write for FixedStr<48> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s);
        Ok(())
    }
}

/// Writes `interrupts` (one SPI of the guest's GIC, edge-rising) and `interrupt-parent` (the
/// guest's GIC node, phandle `gic`).
fn write_spi<W: DtWriter>(w: &mut W, spi: Spi, gic: u32) -> Result<(), W::Error> {
    let irq = Cells::new()
        .u32(GIC_SPI)
        .u32(spi.0 - 32)
        .u32(IRQ_TYPE_EDGE_RISING);
    w.property("interrupts", irq.as_bytes())?;
    w.property("interrupt-parent", Cells::new().u32(gic).as_bytes())
}

/// Writes one `virtio,mmio` node per device of frontend `domain` under the current node (the
/// root of its generated DT, with 2 address and 2 size cells), their interrupts on the GIC
/// whose phandle is `gic`.
pub fn write_frontend_nodes<W: DtWriter>(
    config: &Config,
    domain: DomainIndex,
    gic: u32,
    w: &mut W,
) -> Result<(), W::Error> {
    for dev in config
        .devices()
        .iter()
        .filter(|d| usize::from(d.frontend) == domain)
    {
        let base = dev.mmio.start().0;
        w.begin_node(node_name("virtio_mmio", base).as_str())?;
        w.property("compatible", b"virtio,mmio\0")?;
        w.property(
            "reg",
            Cells::new().u64(base).u64(dev.mmio.size()).as_bytes(),
        )?;
        write_spi(w, dev.spi, gic)?;
        // The backend reaches the frontend's RAM through a cache-coherent mapping.
        w.property("dma-coherent", &[])?;
        w.end_node()?;
    }
    Ok(())
}

/// Writes the `rust-ioreq,backend-v2` node (also compatible with `-v1`) of backend `domain` under the current node.
///
/// `domid_of` gives a frontend's domid when Xen has already created it; a frontend placed
/// after its backend in `/chosen` has none yet, and its node then carries only its name.
pub fn write_backend_node<W: DtWriter>(
    config: &Config,
    domain: DomainIndex,
    gic: u32,
    domid_of: impl Fn(DomainIndex) -> Option<DomId>,
    w: &mut W,
) -> Result<(), W::Error> {
    let Some(backend) = config.domains().get(domain).and_then(|d| d.backend) else {
        return Ok(());
    };
    w.begin_node(node_name("ioreq-backend", backend_layout::DOORBELL_GPA).as_str())?;
    w.property(
        "compatible",
        b"rust-ioreq,backend-v2\0rust-ioreq,backend-v1\0",
    )?;
    w.property(
        "reg",
        Cells::new()
            .u64(backend_layout::DOORBELL_GPA)
            .u64(doorbell::SIZE)
            .as_bytes(),
    )?;
    write_spi(w, backend.notify_spi, gic)?;
    w.property(
        "rust-ioreq,transport-page",
        Cells::new()
            .u64(backend_layout::TRANSPORT_PAGE_GPA)
            .as_bytes(),
    )?;
    w.property(
        "rust-ioreq,notify-page",
        Cells::new().u64(backend_layout::NOTIFY_PAGE_GPA).as_bytes(),
    )?;
    if backend.poll_us > 0 {
        w.property(
            "rust-ioreq,poll-us",
            Cells::new().u32(backend.poll_us).as_bytes(),
        )?;
    }
    w.property("#address-cells", Cells::new().u32(1).as_bytes())?;
    w.property("#size-cells", Cells::new().u32(0).as_bytes())?;
    for (k, &frontend) in backend.frontends.iter().enumerate() {
        let fe = &config.domains()[usize::from(frontend)];
        w.begin_node(node_name("frontend", k as u64).as_str())?;
        w.property("reg", Cells::new().u32(k as u32).as_bytes())?;
        if let Some(domid) = domid_of(usize::from(frontend)) {
            w.property(
                "rust-ioreq,domain-id",
                Cells::new().u32(u32::from(domid.0)).as_bytes(),
            )?;
        }
        w.property(
            "rust-ioreq,domain-name",
            str_prop(fe.name.as_str()).as_str().as_bytes(),
        )?;
        w.property("rust-ioreq,vcpus", Cells::new().u32(fe.vcpus).as_bytes())?;
        w.property(
            "rust-ioreq,ioreq-page",
            Cells::new().u64(backend_layout::ioreq_page(k)).as_bytes(),
        )?;
        let window = Cells::new()
            .u64(backend_layout::window(k))
            .u64(backend_layout::WINDOW_SIZE);
        w.property("rust-ioreq,ram-window", window.as_bytes())?;
        // The frontend's RAM, in its own addresses: what the window actually maps.
        let ram = fe.ram().iter().fold(Cells::new(), |c, bank| {
            c.u64(bank.start().0).u64(bank.size())
        });
        w.property("rust-ioreq,ram", ram.as_bytes())?;
        w.property("#address-cells", Cells::new().u32(1).as_bytes())?;
        w.property("#size-cells", Cells::new().u32(0).as_bytes())?;
        for dev in config
            .devices()
            .iter()
            .filter(|d| usize::from(d.backend) == domain && d.frontend == frontend)
        {
            w.begin_node(node_name("device", u64::from(dev.index_in_backend)).as_str())?;
            w.property(
                "reg",
                Cells::new().u32(u32::from(dev.index_in_backend)).as_bytes(),
            )?;
            w.property(
                "rust-ioreq,mmio",
                Cells::new()
                    .u64(dev.mmio.start().0)
                    .u64(dev.mmio.size())
                    .as_bytes(),
            )?;
            w.property(
                "rust-ioreq,args",
                str_prop(dev.args.as_str()).as_str().as_bytes(),
            )?;
            if dev.classic {
                w.property("rust-ioreq,classic", &[])?;
            }
            w.end_node()?;
        }
        w.end_node()?;
    }
    w.end_node()
}
