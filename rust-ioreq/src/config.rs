//! Boot configuration: the virtio-mmio devices, frontends and backends described under
//! `/chosen` in the host device tree (binding: `docs/binding.md`), parsed once and validated.
//!
//! Every error names the node and the property, because the person reading it is an
//! integrator looking at their DT source, not at this code.

use alloc::boxed::Box;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::abi::{backend_layout, SLOTS_PER_PAGE};
use crate::fdtcheck;
use crate::fixed::{FixedStr, Table};
use crate::types::{Gpa, GpaRange, Spi};

/// Compatible string of a device node under a frontend's `xen,domain` node.
pub const DEVICE_COMPATIBLE: &str = "xen,virtio-mmio-device";
/// Compatible string of a dom0less domain node.
pub const DOMAIN_COMPATIBLE: &str = "xen,domain";
/// Most domains the component tracks.
pub const MAX_DOMAINS: usize = 16;
/// Most virtio-mmio devices in the whole system.
pub const MAX_DEVICES: usize = 32;
/// Most frontends one backend serves (one ioreq page and RAM window each).
pub const MAX_FRONTENDS_PER_BACKEND: usize = 8;
/// Longest `xen,backend-args` string, in bytes.
pub const ARGS_MAX: usize = 96;
/// Default notify SPI of a backend: the first one after Xen's virtio-mmio range.
pub const DEFAULT_NOTIFY_SPI: u32 = 44;
/// Default `xen,ioreq-timeout-ms` of a backend: how long a frontend vCPU waits for an answer
/// before the access completes as on a vanished device. Generous, because under emulation (and
/// on a loaded host) a backend's vCPU may not run for tens of milliseconds; 0 = wait forever.
pub const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// Xen's `GUEST_VIRTIO_MMIO_BASE`: where default device regions start.
pub const GUEST_VIRTIO_MMIO_BASE: u64 = 0x0200_0000;
/// Xen's `GUEST_VIRTIO_MMIO_SPI_FIRST`/`_LAST`: the default device SPIs.
pub const GUEST_VIRTIO_MMIO_SPIS: (u32, u32) = (33, 43);
/// Xen's `GUEST_VPL011_SPI`.
pub const GUEST_VPL011_SPI: u32 = 32;
/// Size and alignment unit of a device region (the virtio-mmio register file).
pub const DEVICE_REGION_UNIT: u64 = 0x200;

/// Guest-physical regions of Xen 4.17's Arm guest memory map (`public/arch-arm.h`) that a
/// device must not overlap. The vpl011 region only counts for domains with `vpl011`.
const RESERVED: [(&str, u64, u64); 6] = [
    ("guest RAM bank 0 (GUEST_RAM0)", 0x4000_0000, 0xc000_0000),
    (
        "guest RAM bank 1 (GUEST_RAM1)",
        0x2_0000_0000,
        0xfe_0000_0000,
    ),
    ("the GICv3 distributor", 0x0300_1000, 0x1_0000),
    ("the GICv3 redistributors", 0x0302_0000, 0x100_0000),
    ("the grant table (GUEST_GNTTAB)", 0x3800_0000, 0x100_0000),
    ("the magic pages (GUEST_MAGIC)", 0x3900_0000, 0x100_0000),
];
const VPL011: (&str, u64, u64) = ("the vpl011 UART", 0x2200_0000, 0x1000);
/// The doorbell and the ioreq pages of a backend (`docs/backend-abi.md`): only for domains with
/// `xen,ioreq-server`, whose devices (as a frontend of another backend) must avoid them.
const BACKEND_PAGES: (&str, u64, u64) = (
    "the backend interface (doorbell, ioreq pages)",
    backend_layout::DOORBELL_GPA,
    backend_layout::IOREQ_PAGES_GPA + 0x1000 * MAX_FRONTENDS_PER_BACKEND as u64
        - backend_layout::DOORBELL_GPA,
);

/// Longest domain node name, unit address included, in bytes.
pub const NAME_MAX: usize = 31;

/// A node name as the DT has it (a device's is cut at [`NAME_MAX`] bytes for messages; a
/// domain's must fit, since Xen binds domains by full name).
pub type Name = FixedStr<NAME_MAX>;

/// One dom0less domain node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Domain {
    /// Node name under `/chosen`.
    pub name: Name,
    /// `phandle`, if the node has one.
    pub phandle: Option<u32>,
    /// `cpus`.
    pub vcpus: u32,
    /// `vpl011` is present.
    pub vpl011: bool,
    /// SPIs the domain's vGIC has (`nr_spis`, or Xen's default).
    pub nr_spis: u32,
    /// `memory`, in KiB.
    pub memory_kib: u64,
    /// Present when the node has `xen,ioreq-server`.
    pub backend: Option<Backend>,
}

/// Xen 4.17's `GUEST_RAM0_BASE`/`_SIZE` and `GUEST_RAM1_BASE`/`_SIZE` (`public/arch-arm.h`).
pub const GUEST_RAM_BANKS: [(u64, u64); 2] =
    [(0x4000_0000, 0xc000_0000), (0x2_0000_0000, 0xfe_0000_0000)];

impl Domain {
    /// Returns the guest-physical RAM of a dom0less domU without static memory, as Xen 4.17's
    /// `allocate_memory()` lays it out: bank 0 first, the rest in bank 1.
    pub fn ram_banks(&self) -> [Option<GpaRange>; 2] {
        let mut left = self.memory_kib.saturating_mul(1024);
        GUEST_RAM_BANKS.map(|(base, size)| {
            let here = left.min(size);
            left -= here;
            GpaRange::new(Gpa(base), here)
        })
    }
}

/// What a backend domain serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backend {
    /// SPI Xen raises in the backend when a request is posted.
    pub notify_spi: Spi,
    /// `xen,ioreq-timeout-ms`: how long a request may wait for this backend; 0 = forever.
    pub timeout_ms: u32,
    /// Frontends served, as domain indices; position = frontend index `k`.
    pub frontends: Table<u8, MAX_FRONTENDS_PER_BACKEND>,
}

/// One virtio-mmio device.
#[derive(Clone, Copy, Debug, Default)]
pub struct Device {
    /// Node name.
    pub name: Name,
    /// Index of the frontend domain.
    pub frontend: u8,
    /// Index of the backend domain.
    pub backend: u8,
    /// Register region in the frontend's guest-physical space.
    pub mmio: GpaRange,
    /// Frontend SPI.
    pub spi: Spi,
    /// `xen,backend-args`, handed to the backend unchanged.
    pub args: FixedStr<ARGS_MAX>,
    /// Index of this device among its backend's devices (the doorbell's `RAISE_IRQ` value).
    pub index_in_backend: u16,
    /// Index `k` of the frontend among the backend's frontends.
    pub frontend_index: u8,
}

/// The validated configuration; frozen once built.
#[derive(Clone, Debug, Default)]
pub struct Config {
    domains: Table<Domain, MAX_DOMAINS>,
    devices: Table<Device, MAX_DEVICES>,
}

/// What is wrong, for [`ConfigError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The blob is not a flattened device tree.
    BadBlob,
    /// No `/chosen` node.
    NoChosen,
    /// A required property is absent.
    Missing,
    /// A property has the wrong length or shape.
    Malformed,
    /// The region is empty, not a multiple of 0x200, or wraps.
    BadSize(u64),
    /// The region base is not 0x200-aligned.
    BadAlignment(u64),
    /// The region overlaps a region of the guest memory map.
    Overlaps(&'static str),
    /// The region overlaps another device of the same frontend.
    OverlapsDevice(Name),
    /// The SPI is outside `32..32 + nr_spis`.
    SpiOutOfRange {
        /// The SPI asked for.
        spi: u32,
        /// First SPI past the domain's vGIC.
        limit: u32,
    },
    /// The SPI is already used in that domain.
    SpiReused {
        /// The SPI.
        spi: u32,
        /// Its other user.
        by: Name,
    },
    /// No property left for a default: more than 11 devices without `reg`/`interrupts`.
    NoDefaultLeft,
    /// `xen,backend` names no `xen,domain` node.
    DanglingPhandle(u32),
    /// `xen,backend` names a domain without `xen,ioreq-server`.
    NotABackend(Name),
    /// `xen,backend` names the frontend itself.
    ServesItself,
    /// More devices than [`MAX_DEVICES`].
    TooManyDevices,
    /// More frontends on one backend than [`MAX_FRONTENDS_PER_BACKEND`].
    TooManyFrontends,
    /// More domains than [`MAX_DOMAINS`].
    TooManyDomains,
    /// A frontend with more vCPUs than an ioreq page has slots.
    TooManyVcpus(u32),
    /// `xen,backend-args` longer than [`ARGS_MAX`].
    ArgsTooLong,
    /// A domain node name (unit address included) longer than a [`Name`] holds: kept cut, it
    /// would never match the full path Xen binds the domain by.
    NameTooLong,
}

/// A node: `/chosen/<domain>` or `/chosen/<domain>/<device>` (or `/` when both are empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Path {
    /// Domain node name.
    pub domain: Name,
    /// Device node name, empty for the domain node itself.
    pub device: Name,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.domain.as_str(), self.device.as_str()) {
            ("", _) => f.write_str("/"),
            (d, "") => write!(f, "/chosen/{d}"),
            (d, n) => write!(f, "/chosen/{d}/{n}"),
        }
    }
}

/// A configuration error: node, property and what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending node.
    pub node: Path,
    /// The offending property (or `""` for the node itself).
    pub property: &'static str,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.node)?;
        if !self.property.is_empty() {
            write!(f, ": property '{}'", self.property)?;
        }
        f.write_str(": ")?;
        match self.kind {
            ErrorKind::BadBlob => f.write_str("not a valid flattened device tree"),
            ErrorKind::NoChosen => f.write_str("no /chosen node"),
            ErrorKind::Missing => f.write_str("missing"),
            ErrorKind::Malformed if self.property == "xen,backend-args" => {
                f.write_str("malformed (not UTF-8 text)")
            }
            ErrorKind::Malformed => f.write_str("malformed (wrong number of cells?)"),
            // A non-zero multiple of the unit can only be refused because the region wraps.
            ErrorKind::BadSize(s) if s != 0 && s % DEVICE_REGION_UNIT == 0 => {
                write!(
                    f,
                    "region of size {s:#x} wraps past the end of the address space"
                )
            }
            ErrorKind::BadSize(s) => write!(f, "size {s:#x} is not a non-zero multiple of 0x200"),
            ErrorKind::BadAlignment(a) => write!(f, "address {a:#x} is not 0x200-aligned"),
            ErrorKind::Overlaps(what) => write!(f, "region overlaps {what}"),
            ErrorKind::OverlapsDevice(other) => write!(f, "region overlaps device {other}"),
            ErrorKind::SpiOutOfRange { spi, limit } => {
                write!(f, "SPI {spi} is outside the domain's SPIs 32..{limit}")
            }
            ErrorKind::SpiReused { spi, by } => write!(f, "SPI {spi} is already used by {by}"),
            ErrorKind::NoDefaultLeft => {
                f.write_str("no default left (SPIs 33..43 taken): give 'reg' and 'interrupts'")
            }
            ErrorKind::DanglingPhandle(p) => write!(f, "phandle {p:#x} is no xen,domain node"),
            ErrorKind::NotABackend(n) => write!(f, "domain {n} has no 'xen,ioreq-server'"),
            ErrorKind::ServesItself => f.write_str("a domain cannot be its own backend"),
            ErrorKind::TooManyDevices => write!(f, "more than {MAX_DEVICES} devices"),
            ErrorKind::TooManyFrontends => {
                write!(
                    f,
                    "backend serves more than {MAX_FRONTENDS_PER_BACKEND} frontends"
                )
            }
            ErrorKind::TooManyDomains => write!(f, "more than {MAX_DOMAINS} domains"),
            ErrorKind::TooManyVcpus(n) => {
                write!(f, "{n} vCPUs: a frontend has at most {SLOTS_PER_PAGE}")
            }
            ErrorKind::ArgsTooLong => write!(f, "longer than {ARGS_MAX} bytes"),
            ErrorKind::NameTooLong => write!(
                f,
                "node name longer than {NAME_MAX} bytes (unit address included)"
            ),
        }
    }
}

fn err(node: &Path, property: &'static str, kind: ErrorKind) -> ConfigError {
    ConfigError {
        node: *node,
        property,
        kind,
    }
}

fn is_compatible(node: &FdtNode<'_, '_>, wanted: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == wanted))
}

/// Reads a property as big-endian cells.
fn cells<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<impl Iterator<Item = u32> + 'a> {
    let p = node.property(name)?;
    Some(
        p.value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
    )
}

/// Returns the number of cells of a property, or `None` if it is absent or not a whole number
/// of cells.
fn cell_count(node: &FdtNode<'_, '_>, name: &str) -> Option<usize> {
    let p = node.property(name)?;
    (p.value.len() % 4 == 0).then_some(p.value.len() / 4)
}

fn read_u32(
    node: &FdtNode<'_, '_>,
    path: &Path,
    name: &'static str,
) -> Result<Option<u32>, ConfigError> {
    match node.property(name) {
        None => Ok(None),
        Some(p) if p.value.len() == 4 => Ok(Some(u32::from_be_bytes([
            p.value[0], p.value[1], p.value[2], p.value[3],
        ]))),
        Some(_) => Err(err(path, name, ErrorKind::Malformed)),
    }
}

/// Joins `cells` big-endian 32-bit cells into one number, or `None` if it does not fit 64 bits
/// (more than two cells are fine while the extra leading ones are zero).
fn join(it: &mut impl Iterator<Item = u32>, cells: usize) -> Option<u64> {
    let mut v: u64 = 0;
    for _ in 0..cells {
        if v >> 32 != 0 {
            return None;
        }
        v = (v << 32) | u64::from(it.next()?);
    }
    Some(v)
}

/// Finds `/chosen` by walking the root's children.
///
/// `Fdt::chosen()` / `find_node("/chosen")` of fdt 0.1.5 stop at the NOP tokens QEMU leaves
/// where it removed the old `/memory` node, so the lookup is done by hand.
fn chosen<'b, 'a>(fdt: &'b Fdt<'a>) -> Option<FdtNode<'b, 'a>> {
    fdt.find_node("/")?.children().find(|n| n.name == "chosen")
}

fn path2(domain: &str, device: &str) -> Path {
    Path {
        domain: Name::from_str(domain),
        device: Name::from_str(device),
    }
}

impl Config {
    /// Parses and validates the configuration in the host device tree.
    ///
    /// `gic_spis` is the number of SPIs of a domain whose node has no `nr_spis` (Xen's
    /// default: the host GIC's lines minus 32). The result is boxed: it is several KiB, and
    /// Xen's stacks are 32 KiB.
    pub fn from_fdt(blob: &[u8], gic_spis: u32) -> Result<Box<Config>, ConfigError> {
        let root = Path::default();
        // fdt 0.1.5 panics on a malformed structure block: check it first.
        fdtcheck::check(blob).map_err(|_| err(&root, "", ErrorKind::BadBlob))?;
        let fdt = Fdt::new(blob).map_err(|_| err(&root, "", ErrorKind::BadBlob))?;
        let chosen = chosen(&fdt).ok_or(err(&root, "", ErrorKind::NoChosen))?;
        let mut config = Box::<Config>::default();

        for node in chosen
            .children()
            .filter(|n| is_compatible(n, DOMAIN_COMPATIBLE))
        {
            let path = path2(node.name, "");
            let domain = parse_domain(&node, &path, gic_spis)?;
            config
                .domains
                .push(domain)
                .map_err(|_| err(&path, "", ErrorKind::TooManyDomains))?;
        }
        for (index, node) in chosen
            .children()
            .filter(|n| is_compatible(n, DOMAIN_COMPATIBLE))
            .enumerate()
        {
            let devices = node
                .children()
                .filter(|n| is_compatible(n, DEVICE_COMPATIBLE));
            for (nth, dev) in devices.enumerate() {
                let path = path2(node.name, dev.name);
                let device = config.parse_device(&node, &dev, &path, index as u8, nth)?;
                config.add_device(device, &path)?;
            }
        }
        Ok(config)
    }

    /// Returns the domains in `/chosen` order (index = domain index).
    pub fn domains(&self) -> &[Domain] {
        self.domains.as_slice()
    }

    /// Returns the devices in DT order.
    pub fn devices(&self) -> &[Device] {
        self.devices.as_slice()
    }

    /// Returns the index of the domain whose node is named `name` (unit address included).
    pub fn domain_index(&self, name: &str) -> Option<usize> {
        self.domains().iter().position(|d| d.name.as_str() == name)
    }

    /// Returns the index of the domain whose node has the full path `path`, as Xen's
    /// `dt_node_full_name()` gives it (`/chosen/<name@unit>`).
    pub fn domain_index_by_path(&self, path: &str) -> Option<usize> {
        self.domain_index(path.strip_prefix("/chosen/")?)
    }

    fn parse_device(
        &self,
        domain: &FdtNode<'_, '_>,
        dev: &FdtNode<'_, '_>,
        path: &Path,
        frontend: u8,
        nth: usize,
    ) -> Result<Device, ConfigError> {
        let fe = &self.domains()[usize::from(frontend)];
        // The cell counts are the domain node's properties: name it, not the device, in errors.
        let domain_path = Path {
            domain: path.domain,
            device: Name::new(),
        };
        let addr_cells = read_u32(domain, &domain_path, "#address-cells")?.unwrap_or(2) as usize;
        let size_cells = read_u32(domain, &domain_path, "#size-cells")?.unwrap_or(1) as usize;
        let (first_spi, last_spi) = GUEST_VIRTIO_MMIO_SPIS;

        let (base, size) = match cells(dev, "reg") {
            None => {
                if nth > (last_spi - first_spi) as usize {
                    return Err(err(path, "reg", ErrorKind::NoDefaultLeft));
                }
                (
                    GUEST_VIRTIO_MMIO_BASE + DEVICE_REGION_UNIT * nth as u64,
                    DEVICE_REGION_UNIT,
                )
            }
            Some(mut it) => {
                if cell_count(dev, "reg") != Some(addr_cells + size_cells) {
                    return Err(err(path, "reg", ErrorKind::Malformed));
                }
                let base =
                    join(&mut it, addr_cells).ok_or(err(path, "reg", ErrorKind::Malformed))?;
                let size =
                    join(&mut it, size_cells).ok_or(err(path, "reg", ErrorKind::Malformed))?;
                (base, size)
            }
        };
        if size == 0 || size % DEVICE_REGION_UNIT != 0 {
            return Err(err(path, "reg", ErrorKind::BadSize(size)));
        }
        if base % DEVICE_REGION_UNIT != 0 {
            return Err(err(path, "reg", ErrorKind::BadAlignment(base)));
        }
        let mmio =
            GpaRange::new(Gpa(base), size).ok_or(err(path, "reg", ErrorKind::BadSize(size)))?;
        let optional = [
            fe.vpl011.then_some(&VPL011),
            fe.backend.is_some().then_some(&BACKEND_PAGES),
        ];
        for (what, start, len) in RESERVED.iter().chain(optional.into_iter().flatten()) {
            let reserved = GpaRange::new(Gpa(*start), *len).unwrap_or_default();
            if mmio.overlaps(&reserved) {
                return Err(err(path, "reg", ErrorKind::Overlaps(what)));
            }
        }

        let spi = match read_u32(dev, path, "interrupts")? {
            Some(n) => n,
            None if nth <= (last_spi - first_spi) as usize => first_spi + nth as u32,
            None => return Err(err(path, "interrupts", ErrorKind::NoDefaultLeft)),
        };
        let limit = Spi::FIRST.saturating_add(fe.nr_spis);
        let spi = match Spi::new(spi) {
            Some(s) if s.0 < limit => s,
            _ => {
                return Err(err(
                    path,
                    "interrupts",
                    ErrorKind::SpiOutOfRange { spi, limit },
                ))
            }
        };
        if fe.vpl011 && spi.0 == GUEST_VPL011_SPI {
            let by = Name::from_str("vpl011");
            return Err(err(
                path,
                "interrupts",
                ErrorKind::SpiReused { spi: spi.0, by },
            ));
        }
        if let Some(be) = fe.backend {
            if be.notify_spi == spi {
                let by = Name::from_str("its own xen,ioreq-notify-spi");
                return Err(err(
                    path,
                    "interrupts",
                    ErrorKind::SpiReused { spi: spi.0, by },
                ));
            }
        }

        let phandle = read_u32(dev, path, "xen,backend")?.ok_or(err(
            path,
            "xen,backend",
            ErrorKind::Missing,
        ))?;
        let backend = self
            .domains()
            .iter()
            .position(|d| d.phandle == Some(phandle))
            .ok_or(err(
                path,
                "xen,backend",
                ErrorKind::DanglingPhandle(phandle),
            ))?;
        if backend == usize::from(frontend) {
            return Err(err(path, "xen,backend", ErrorKind::ServesItself));
        }
        if self.domains()[backend].backend.is_none() {
            let name = self.domains()[backend].name;
            return Err(err(path, "xen,backend", ErrorKind::NotABackend(name)));
        }

        let args = dev.property("xen,backend-args").ok_or(err(
            path,
            "xen,backend-args",
            ErrorKind::Missing,
        ))?;
        let args = args
            .as_str()
            .ok_or(err(path, "xen,backend-args", ErrorKind::Malformed))?;
        let args = FixedStr::try_from_str(args).ok_or(err(
            path,
            "xen,backend-args",
            ErrorKind::ArgsTooLong,
        ))?;

        Ok(Device {
            name: Name::from_str(dev.name),
            frontend,
            backend: backend as u8,
            mmio,
            spi,
            args,
            index_in_backend: 0,
            frontend_index: 0,
        })
    }

    /// Checks `device` against the devices already accepted, numbers it within its backend and
    /// adds it.
    fn add_device(&mut self, mut device: Device, path: &Path) -> Result<(), ConfigError> {
        for other in self
            .devices()
            .iter()
            .filter(|o| o.frontend == device.frontend)
        {
            if other.mmio.overlaps(&device.mmio) {
                return Err(err(path, "reg", ErrorKind::OverlapsDevice(other.name)));
            }
            if other.spi == device.spi {
                let kind = ErrorKind::SpiReused {
                    spi: device.spi.0,
                    by: other.name,
                };
                return Err(err(path, "interrupts", kind));
            }
        }
        device.index_in_backend = self
            .devices()
            .iter()
            .filter(|o| o.backend == device.backend)
            .count() as u16;
        let frontend_vcpus = self.domains()[usize::from(device.frontend)].vcpus;
        if frontend_vcpus > SLOTS_PER_PAGE {
            let fe_path = path2(
                self.domains()[usize::from(device.frontend)].name.as_str(),
                "",
            );
            return Err(err(
                &fe_path,
                "cpus",
                ErrorKind::TooManyVcpus(frontend_vcpus),
            ));
        }
        let backend = self.domains.as_mut_slice()[usize::from(device.backend)]
            .backend
            .as_mut()
            .ok_or(err(path, "xen,backend", ErrorKind::Missing))?;
        device.frontend_index = match backend.frontends.iter().position(|&f| f == device.frontend) {
            Some(k) => k as u8,
            None => {
                backend
                    .frontends
                    .push(device.frontend)
                    .map_err(|_| err(path, "xen,backend", ErrorKind::TooManyFrontends))?;
                (backend.frontends.len() - 1) as u8
            }
        };
        self.devices
            .push(device)
            .map_err(|_| err(path, "", ErrorKind::TooManyDevices))
    }
}

fn parse_domain(node: &FdtNode<'_, '_>, path: &Path, gic_spis: u32) -> Result<Domain, ConfigError> {
    let vcpus = read_u32(node, path, "cpus")?.unwrap_or(1);
    let vpl011 = node.property("vpl011").is_some();
    let nr_spis = read_u32(node, path, "nr_spis")?.unwrap_or(gic_spis);
    // Xen reads `memory` as one 64-bit number of KiB; accept a single cell too.
    let memory_kib = match cell_count(node, "memory") {
        None => 0,
        Some(n @ (1 | 2)) => cells(node, "memory")
            .and_then(|mut it| join(&mut it, n))
            .ok_or(err(path, "memory", ErrorKind::Malformed))?,
        Some(_) => return Err(err(path, "memory", ErrorKind::Malformed)),
    };
    let phandle = match read_u32(node, path, "phandle")? {
        Some(p) => Some(p),
        None => read_u32(node, path, "linux,phandle")?,
    };
    let backend = if node.property("xen,ioreq-server").is_some() {
        let spi = read_u32(node, path, "xen,ioreq-notify-spi")?.unwrap_or(DEFAULT_NOTIFY_SPI);
        // `nr_spis` comes from the DT unchecked: 32 + nr_spis may overflow.
        let limit = Spi::FIRST.saturating_add(nr_spis);
        let notify_spi = match Spi::new(spi) {
            Some(s) if s.0 < limit => s,
            _ => {
                return Err(err(
                    path,
                    "xen,ioreq-notify-spi",
                    ErrorKind::SpiOutOfRange { spi, limit },
                ))
            }
        };
        if vpl011 && spi == GUEST_VPL011_SPI {
            let by = Name::from_str("vpl011");
            return Err(err(
                path,
                "xen,ioreq-notify-spi",
                ErrorKind::SpiReused { spi, by },
            ));
        }
        let timeout_ms =
            read_u32(node, path, "xen,ioreq-timeout-ms")?.unwrap_or(DEFAULT_TIMEOUT_MS);
        Some(Backend {
            notify_spi,
            timeout_ms,
            frontends: Table::new(),
        })
    } else {
        None
    };
    let name = Name::try_from_str(node.name).ok_or(err(path, "", ErrorKind::NameTooLong))?;
    Ok(Domain {
        name,
        phandle,
        vcpus,
        vpl011,
        nr_spis,
        memory_kib,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_fills_bank_0_then_bank_1() {
        let small = Domain {
            memory_kib: 64 * 1024,
            ..Domain::default()
        };
        let [b0, b1] = small.ram_banks();
        assert_eq!(
            b0.map(|b| (b.start().0, b.size())),
            Some((0x4000_0000, 64 << 20))
        );
        assert_eq!(b1, None);
        let big = Domain {
            memory_kib: 4 * 1024 * 1024,
            ..Domain::default()
        };
        let [b0, b1] = big.ram_banks();
        assert_eq!(b0.map(|b| b.size()), Some(0xc000_0000));
        assert_eq!(
            b1.map(|b| (b.start().0, b.size())),
            Some((0x2_0000_0000, 1 << 30))
        );
        assert_eq!(Domain::default().ram_banks(), [None, None]);
    }
}
