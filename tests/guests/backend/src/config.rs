//! The backend's configuration, read once from the `rust-ioreq,backend-v1` node Xen puts in its
//! device tree (docs/backend-abi.md "Device-tree node added to the backend's DT"; a version-2
//! node is also compatible with `rust-ioreq,backend-v1`, and adds the transport and notify
//! pages, the optional poll time and each device's `rust-ioreq,classic`), checked, and frozen.
//! Cells are big-endian (Devicetree Specification v0.4 §2.2.4).
//!
//! The node is found by walking the children of `/` (fdt 0.1.5 can miss nodes looked up by
//! path). Its `frontend@k` and `device@n` children use one address cell and no size cells, so
//! their `reg` is read as one raw cell rather than through the `fdt` crate's `reg()`.

use core::fmt;

use fdt::node::FdtNode;
use guest_common::gic::{IntId, Trigger};
use guest_common::DeviceTree;

/// The compatible string of the backend node (a version-2 node lists it after
/// `rust-ioreq,backend-v2`).
pub const COMPATIBLE: &str = "rust-ioreq,backend-v1";
/// Device records in the transport page: offset `0x40 + i * 0x40` must stay inside the page.
pub const MAX_RECORD_INDEX: u32 = 62;
/// Frontends one backend can serve (docs/backend-abi.md: k = 0..7).
pub const MAX_FRONTENDS: usize = 8;
/// Devices one backend can serve (the host binding's system-wide limit).
pub const MAX_DEVICES: usize = 32;
/// RAM banks of one frontend this backend can be told about.
pub const MAX_BANKS: usize = 4;
/// Slots in a 4 KiB ioreq page of 32-byte `ioreq_t`.
pub const MAX_VCPUS: u32 = 128;
/// The smallest register window a virtio-mmio device can have (registers up to 0x100).
const MIN_MMIO: u64 = 0x100;
/// Page size of the ioreq pages and the doorbell.
const PAGE: u64 = 0x1000;

/// A guest-physical range `[base, base + size)` (checked not to wrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Range {
    /// Returns the range, or `None` if it is empty or wraps.
    fn new(base: u64, size: u64) -> Option<Self> {
        (size > 0 && base.checked_add(size).is_some()).then_some(Self { base, size })
    }

    /// Returns the first address after the range.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Tells whether the two ranges share an address.
    fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// One frontend served by this backend (`frontend@k`).
#[derive(Clone, Copy, Debug)]
pub struct Frontend {
    /// The frontend index k (`reg`), used in `COMPLETE`.
    pub index: u32,
    /// Its domain ID, when Xen knew it (`rust-ioreq,domain-id`).
    pub domid: Option<u32>,
    /// Its node name in the host device tree (`rust-ioreq,domain-name`).
    pub name: &'static str,
    /// Slots in its ioreq page: its number of vCPUs (`rust-ioreq,vcpus`).
    pub vcpus: u32,
    /// Backend guest-physical address of its ioreq page (`rust-ioreq,ioreq-page`).
    pub ioreq_page: u64,
    /// Backend guest-physical range through which its RAM is reachable (`rust-ioreq,ram-window`).
    pub window: Range,
    /// Its RAM banks in its own guest-physical space (`rust-ioreq,ram`, optional; an empty list
    /// means "not given": then only the window bounds apply, and a buffer in a hole of the
    /// window is caught by the fault-tolerant accesses of `window.rs`).
    pub ram: [Range; MAX_BANKS],
    /// Number of valid entries in `ram`.
    pub ram_banks: usize,
}

/// One device served by this backend (`device@n`).
#[derive(Clone, Copy, Debug)]
pub struct Device {
    /// The device index n (`reg`), unique in this backend, used in `RAISE_IRQ`.
    pub index: u32,
    /// Position of its frontend in [`Config::frontends`].
    pub frontend: usize,
    /// Its register window in the frontend's guest-physical space (`rust-ioreq,mmio`).
    pub mmio: Range,
    /// What to emulate (`rust-ioreq,args`, the host DT's `xen,backend-args`).
    pub args: &'static str,
    /// `rust-ioreq,classic`: Xen forwards every access of this device, as in version 1, and
    /// the backend publishes no record for it (the host DT's `xen,virtio-classic`).
    pub classic: bool,
}

/// The pages of interface version 2 (docs/backend-abi.md "Version 2: the fast transport"), as
/// the node names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPages {
    /// Backend GPA of the transport page (`rust-ioreq,transport-page`), written by the backend.
    pub transport: u64,
    /// Backend GPA of the notify page (`rust-ioreq,notify-page`), read-only here.
    pub notify: u64,
    /// `rust-ioreq,poll-us`: how long Xen spins for a polling backend's answer, if set.
    pub poll_us: Option<u32>,
}

/// Everything the backend node says, checked.
#[derive(Debug)]
pub struct Config {
    /// Guest-physical address of the doorbell page.
    pub doorbell: u64,
    /// The notify SPI.
    pub notify: IntId,
    /// Its trigger, from the device tree flags.
    pub trigger: Trigger,
    /// The version-2 pages, if the node has them.
    pub fast: Option<FastPages>,
    frontends: [Option<Frontend>; MAX_FRONTENDS],
    devices: [Option<Device>; MAX_DEVICES],
}

impl Config {
    /// Returns the frontends, in device-tree order.
    pub fn frontends(&self) -> impl Iterator<Item = &Frontend> {
        self.frontends.iter().flatten()
    }

    /// Returns the devices, in device-tree order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().flatten()
    }

    /// Returns frontend number `i` of [`frontends`](Self::frontends).
    pub fn frontend(&self, i: usize) -> Option<&Frontend> {
        self.frontends.get(i).and_then(Option::as_ref)
    }
}

/// Why the backend node cannot be used; every variant names the node and property.
#[derive(Clone, Copy, Debug)]
pub enum ConfigError {
    /// No node with compatible `rust-ioreq,backend-v1` under `/`.
    NoNode,
    /// A required property is missing.
    Missing(&'static str, &'static str),
    /// A property has the wrong size or an impossible value.
    Bad(&'static str, &'static str, &'static str),
    /// More frontends or devices than this backend supports.
    TooMany(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoNode => write!(
                f,
                "no '{COMPATIBLE}' node in the device tree (Xen without the rust-ioreq backend \
                 interface, or a domain without xen,ioreq-server)"
            ),
            ConfigError::Missing(node, prop) => write!(f, "{node}: property '{prop}' missing"),
            ConfigError::Bad(node, prop, why) => write!(f, "{node}: property '{prop}': {why}"),
            ConfigError::TooMany(what) => write!(f, "more {what} than this backend supports"),
        }
    }
}

/// Iterates over the big-endian 32-bit cells of a property value (a trailing partial cell is
/// dropped; callers check the cell count).
fn cells(value: &[u8]) -> impl Iterator<Item = u32> + '_ {
    value
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// Returns the raw value of `prop` of `node`, or a `Missing` error naming `what`.
fn raw<'a>(
    node: &FdtNode<'_, 'a>,
    what: &'static str,
    prop: &'static str,
) -> Result<&'a [u8], ConfigError> {
    node.property(prop)
        .map(|p| p.value)
        .ok_or(ConfigError::Missing(what, prop))
}

/// Reads `prop` as exactly `N` cells.
fn read_cells<const N: usize>(
    node: &FdtNode<'_, '_>,
    what: &'static str,
    prop: &'static str,
) -> Result<[u32; N], ConfigError> {
    let value = raw(node, what, prop)?;
    if value.len() != 4 * N {
        return Err(ConfigError::Bad(what, prop, "wrong number of cells"));
    }
    let mut out = [0u32; N];
    for (o, c) in out.iter_mut().zip(cells(value)) {
        *o = c;
    }
    Ok(out)
}

/// Joins two cells into a 64-bit value.
fn u64_of(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads a page address property (two cells): page aligned, not 0, not the doorbell.
fn page_property(
    node: &FdtNode<'_, '_>,
    prop: &'static str,
    doorbell: u64,
) -> Result<u64, ConfigError> {
    const NODE: &str = "ioreq-backend";
    let [hi, lo] = read_cells::<2>(node, NODE, prop)?;
    let page = u64_of(hi, lo);
    if page == 0 || !page.is_multiple_of(PAGE) {
        return Err(ConfigError::Bad(NODE, prop, "not a page"));
    }
    if page == doorbell {
        return Err(ConfigError::Bad(NODE, prop, "is the doorbell page (reg)"));
    }
    Ok(page)
}

/// Reads the version-2 properties of the backend node: both pages or neither (a version-1
/// node), and `rust-ioreq,poll-us` only with them.
fn parse_fast_pages(
    node: &FdtNode<'_, '_>,
    doorbell: u64,
) -> Result<Option<FastPages>, ConfigError> {
    const NODE: &str = "ioreq-backend";
    const TRANSPORT: &str = "rust-ioreq,transport-page";
    const NOTIFY: &str = "rust-ioreq,notify-page";
    const POLL: &str = "rust-ioreq,poll-us";
    let has = |prop| node.property(prop).is_some();
    match (has(TRANSPORT), has(NOTIFY)) {
        (false, false) if has(POLL) => Err(ConfigError::Bad(
            NODE,
            POLL,
            "without rust-ioreq,transport-page",
        )),
        (false, false) => Ok(None),
        (true, false) => Err(ConfigError::Missing(NODE, NOTIFY)),
        (false, true) => Err(ConfigError::Missing(NODE, TRANSPORT)),
        (true, true) => {
            let transport = page_property(node, TRANSPORT, doorbell)?;
            let notify = page_property(node, NOTIFY, doorbell)?;
            if transport == notify {
                return Err(ConfigError::Bad(NODE, NOTIFY, "is the transport page"));
            }
            let poll_us = match node.property(POLL) {
                Some(_) => Some(read_cells::<1>(node, NODE, POLL)?[0]),
                None => None,
            };
            Ok(Some(FastPages {
                transport,
                notify,
                poll_us,
            }))
        }
    }
}

/// Finds and checks the backend node.
pub fn parse(dt: &DeviceTree) -> Result<Config, ConfigError> {
    let node = dt
        .root_children()
        .find(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == COMPATIBLE))
        })
        .ok_or(ConfigError::NoNode)?;
    const NODE: &str = "ioreq-backend";

    // `reg` uses the root's cells (2 and 2 in every Xen domU tree).
    let doorbell = node
        .reg()
        .and_then(|mut r| r.next())
        .ok_or(ConfigError::Missing(NODE, "reg"))?;
    let doorbell = doorbell.starting_address as u64;
    if !doorbell.is_multiple_of(PAGE) {
        return Err(ConfigError::Bad(NODE, "reg", "doorbell not page aligned"));
    }

    // interrupts = <0 spi flags>: a GIC SPI specifier (3 cells).
    let [kind, spi, flags] = read_cells::<3>(&node, NODE, "interrupts")?;
    if kind != 0 {
        return Err(ConfigError::Bad(NODE, "interrupts", "not an SPI"));
    }
    let notify = IntId::spi_from_dt(spi);
    if !notify.is_spi() {
        return Err(ConfigError::Bad(
            NODE,
            "interrupts",
            "SPI number out of range",
        ));
    }
    let trigger = match flags & 0xf {
        1 | 2 => Trigger::Edge,
        4 | 8 => Trigger::Level,
        _ => {
            return Err(ConfigError::Bad(
                NODE,
                "interrupts",
                "unknown trigger flags",
            ))
        }
    };

    let fast = parse_fast_pages(&node, doorbell)?;

    let mut config = Config {
        doorbell,
        notify,
        trigger,
        fast,
        frontends: [None; MAX_FRONTENDS],
        devices: [None; MAX_DEVICES],
    };
    let (mut nf, mut nd) = (0usize, 0usize);
    for fe_node in node.children() {
        const FE: &str = "frontend";
        let [index] = read_cells::<1>(&fe_node, FE, "reg")?;
        if usize::try_from(index).map_or(true, |i| i >= MAX_FRONTENDS) {
            return Err(ConfigError::Bad(FE, "reg", "frontend index beyond 7"));
        }
        if config.frontends().any(|f| f.index == index) {
            return Err(ConfigError::Bad(FE, "reg", "frontend index used twice"));
        }
        let domid = match fe_node.property("rust-ioreq,domain-id") {
            Some(_) => Some(read_cells::<1>(&fe_node, FE, "rust-ioreq,domain-id")?[0]),
            None => None,
        };
        let name = fe_node
            .property("rust-ioreq,domain-name")
            .and_then(|p| p.as_str())
            .unwrap_or("?");
        let [vcpus] = read_cells::<1>(&fe_node, FE, "rust-ioreq,vcpus")?;
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(ConfigError::Bad(FE, "rust-ioreq,vcpus", "not 1..=128"));
        }
        let [hi, lo] = read_cells::<2>(&fe_node, FE, "rust-ioreq,ioreq-page")?;
        let ioreq_page = u64_of(hi, lo);
        if !ioreq_page.is_multiple_of(PAGE) || ioreq_page == 0 {
            return Err(ConfigError::Bad(FE, "rust-ioreq,ioreq-page", "not a page"));
        }
        if fast.is_some_and(|f| ioreq_page == f.transport || ioreq_page == f.notify) {
            return Err(ConfigError::Bad(
                FE,
                "rust-ioreq,ioreq-page",
                "is the transport or notify page",
            ));
        }
        let [bh, bl, sh, sl] = read_cells::<4>(&fe_node, FE, "rust-ioreq,ram-window")?;
        let window = Range::new(u64_of(bh, bl), u64_of(sh, sl)).ok_or(ConfigError::Bad(
            FE,
            "rust-ioreq,ram-window",
            "empty or wraps",
        ))?;
        let mut ram = [Range::default(); MAX_BANKS];
        let mut ram_banks = 0;
        if let Some(p) = fe_node.property("rust-ioreq,ram") {
            if p.value.is_empty() || p.value.len() % 16 != 0 {
                return Err(ConfigError::Bad(
                    FE,
                    "rust-ioreq,ram",
                    "not (base, size) pairs",
                ));
            }
            let c: [u32; 4 * MAX_BANKS] = {
                let mut c = [0u32; 4 * MAX_BANKS];
                if p.value.len() > 16 * MAX_BANKS {
                    return Err(ConfigError::TooMany("RAM banks"));
                }
                for (o, v) in c.iter_mut().zip(cells(p.value)) {
                    *o = v;
                }
                c
            };
            ram_banks = p.value.len() / 16;
            for (i, bank) in ram.iter_mut().take(ram_banks).enumerate() {
                let r = Range::new(
                    u64_of(c[4 * i], c[4 * i + 1]),
                    u64_of(c[4 * i + 2], c[4 * i + 3]),
                )
                .ok_or(ConfigError::Bad(
                    FE,
                    "rust-ioreq,ram",
                    "empty or wrapping bank",
                ))?;
                if r.end() > window.size {
                    return Err(ConfigError::Bad(
                        FE,
                        "rust-ioreq,ram",
                        "bank beyond the window",
                    ));
                }
                *bank = r;
            }
        }
        let frontend_pos = nf;
        *config
            .frontends
            .get_mut(nf)
            .ok_or(ConfigError::TooMany("frontends"))? = Some(Frontend {
            index,
            domid,
            name,
            vcpus,
            ioreq_page,
            window,
            ram,
            ram_banks,
        });
        nf += 1;

        for dev_node in fe_node.children() {
            const DEV: &str = "device";
            let [index] = read_cells::<1>(&dev_node, DEV, "reg")?;
            if config.devices().any(|d| d.index == index) {
                return Err(ConfigError::Bad(DEV, "reg", "device index used twice"));
            }
            let [bh, bl, sh, sl] = read_cells::<4>(&dev_node, DEV, "rust-ioreq,mmio")?;
            let mmio = Range::new(u64_of(bh, bl), u64_of(sh, sl)).ok_or(ConfigError::Bad(
                DEV,
                "rust-ioreq,mmio",
                "empty or wraps",
            ))?;
            if mmio.size < MIN_MMIO {
                return Err(ConfigError::Bad(
                    DEV,
                    "rust-ioreq,mmio",
                    "smaller than 0x100",
                ));
            }
            if config
                .devices()
                .any(|d| d.frontend == frontend_pos && d.mmio.overlaps(&mmio))
            {
                return Err(ConfigError::Bad(
                    DEV,
                    "rust-ioreq,mmio",
                    "overlaps another device",
                ));
            }
            let args = dev_node
                .property("rust-ioreq,args")
                .ok_or(ConfigError::Missing(DEV, "rust-ioreq,args"))?
                .as_str()
                .ok_or(ConfigError::Bad(DEV, "rust-ioreq,args", "not a string"))?;
            let classic = dev_node.property("rust-ioreq,classic").is_some();
            *config
                .devices
                .get_mut(nd)
                .ok_or(ConfigError::TooMany("devices"))? = Some(Device {
                index,
                frontend: frontend_pos,
                mmio,
                args,
                classic,
            });
            nd += 1;
        }
    }
    if nf == 0 {
        return Err(ConfigError::Bad(NODE, "frontend@", "no frontend"));
    }
    Ok(config)
}
