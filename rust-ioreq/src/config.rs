//! Boot configuration: the virtio-mmio devices, frontends and backends described under
//! `/chosen` in the host device tree (binding: `docs/binding.md`), parsed once and validated.
//!
//! Every error names the node and the property, because the person reading it is an
//! integrator looking at their DT source, not at this code.
//!
//! Only the domains *involved* in the binding are parsed strictly and tracked: a `xen,domain`
//! node with a `xen,virtio-mmio-device` child (a frontend) or with `xen,ioreq-server` (a
//! backend). Any other domain node is left to Xen: whatever it holds never stops the boot here
//! (its `cpus` count only for the `sched=null` check, read as Xen reads it).
//!
//! The checks run in this order, and the first error found is reported:
//! 1. the blob and `/chosen`;
//! 2. each involved domain node, in `/chosen` order (name, cells, SPIs, memory layout);
//! 3. duplicate domain node names and duplicate phandles;
//! 4. each device, in DT order (region, SPI, backend reference, capacities);
//! 5. cycles of backends;
//! 6. guest-physical memory: RAM against the windows, the IPA size, the P2M pool, overlaps in
//!    each frontend's and each backend's address space (`config/memory.rs`);
//! 7. `sched=null` against the number of pCPUs (`config/host.rs`).

// A `ConfigError` carries whole node names (up to 2 x 64 bytes) so that the message Xen prints
// is exact; it is built once, on the boot path, and ends the boot: its size on the stack is no
// cost worth a heap allocation.
#![allow(clippy::result_large_err)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::abi::{backend_layout, SLOTS_PER_PAGE};
use crate::fdtcheck;
use crate::fixed::{FixedStr, Table};
use crate::types::{Gpa, GpaRange, Spi};

mod graph;
mod host;
mod memory;
mod tree;

pub use host::{HostFacts, ModuleReader, DEFAULT_IPA_BITS};
pub use memory::{ram_p2m_pages, xen_default_p2m_pages};

/// Compatible string of a device node under a frontend's `xen,domain` node.
pub const DEVICE_COMPATIBLE: &str = "xen,virtio-mmio-device";
/// Compatible string of a dom0less domain node.
pub const DOMAIN_COMPATIBLE: &str = "xen,domain";
/// Most domains the component tracks: frontends and backends only, other domains do not count.
pub const MAX_DOMAINS: usize = 16;
/// Most virtio-mmio devices in the whole system.
pub const MAX_DEVICES: usize = 32;
/// Most frontends one backend serves (one ioreq page and RAM window each).
pub const MAX_FRONTENDS_PER_BACKEND: usize = 8;
/// Longest `xen,backend-args` string, in bytes.
pub const ARGS_MAX: usize = 96;
/// Longest node name (with its `@unit-address`) of a domain or device, in bytes.
///
/// The DT specification allows 31 characters before the `@` and leaves the unit address
/// unbounded; names are identities here (Xen finds a domain by its full node name), so a longer
/// one is refused rather than cut.
pub const NAME_MAX: usize = 63;
/// Xen's `DOMAIN_CAPS_HARDWARE` (public/bootfdt.h, Xen 4.21+): the `capabilities` bit that makes
/// a dom0less domain the hardware domain.
const DOMAIN_CAPS_HARDWARE: u32 = 1 << 1;

/// Most RAM banks of a direct-mapped domain (`xen,static-mem` entries).
pub const MAX_RAM_BANKS: usize = 8;
/// Default notify SPI of a backend: the first one after Xen's virtio-mmio range.
pub const DEFAULT_NOTIFY_SPI: u32 = 44;
/// Default `xen,ioreq-timeout-ms` of a backend: how long a frontend vCPU waits for an answer
/// before the access completes as on a vanished device. Generous, because under emulation (and
/// on a loaded host) a backend's vCPU may not run for tens of milliseconds; 0 = wait forever.
pub const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// Largest `xen,ioreq-poll-us`: Xen spins that long on a frontend's pCPU for a polling backend's
/// answer before blocking the vCPU, with nothing else running there (KVM's halt-polling default
/// is 200 µs).
pub const MAX_POLL_US: u32 = 1000;
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
///
/// A direct-mapped domain has its RAM, vGIC and vpl011 at host addresses instead
/// (`config/memory.rs` checks those); these stay refused for it too, which costs nothing and
/// keeps one rule for every frontend.
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
/// What the doorbell and ioreq pages are called in messages.
const BACKEND_PAGES_WHAT: &str = "the backend interface (doorbell, ioreq, transport, notify pages)";
/// The doorbell, ioreq, transport and notify pages of a backend (`docs/backend-abi.md`): only
/// for domains with `xen,ioreq-server`, whose devices (as a frontend of another backend) must
/// avoid them.
const BACKEND_PAGES: (&str, u64, u64) = (
    BACKEND_PAGES_WHAT,
    backend_layout::DOORBELL_GPA,
    backend_layout::NOTIFY_PAGE_GPA + 0x1000 - backend_layout::DOORBELL_GPA,
);
const _: () = assert!(
    backend_layout::IOREQ_PAGES_GPA + 0x1000 * MAX_FRONTENDS_PER_BACKEND as u64
        <= backend_layout::TRANSPORT_PAGE_GPA
);

/// A domain's or device's node name, unit address included (at most [`NAME_MAX`] bytes).
pub type Name = FixedStr<NAME_MAX>;
/// A node path or a short list of names, for messages only (cut if longer).
pub type Text = FixedStr<120>;

/// One dom0less domain node that serves or uses a device.
#[derive(Clone, Copy, Debug, Default)]
pub struct Domain {
    /// Full node name under `/chosen`, unit address included (`be@1`).
    pub name: Name,
    /// Position among all the `xen,domain` nodes of `/chosen`, involved or not: Xen 4.17 gives
    /// dom0less domains domids from 1 in that order (`create_domUs()`), so this is domid - 1.
    pub chosen_position: usize,
    /// `phandle` (or `linux,phandle`), if the node has one.
    pub phandle: Option<u32>,
    /// `cpus`.
    pub vcpus: u32,
    /// `vpl011` is present.
    pub vpl011: bool,
    /// SPIs the domain's vGIC has (`nr_spis`, or Xen's default).
    pub nr_spis: u32,
    /// `memory`, in KiB.
    pub memory_kib: u64,
    /// `direct-map` is present (with `xen,static-mem`: guest addresses are host addresses).
    pub direct_map: bool,
    /// `xen,domain-p2m-mem-mb`, if the node sets it.
    pub p2m_mem_mb: Option<u32>,
    /// The guest-physical RAM, as Xen lays it out (see [`Domain::ram`]).
    ram: Table<GpaRange, MAX_RAM_BANKS>,
    /// Present when the node has `xen,ioreq-server`.
    pub backend: Option<Backend>,
}

/// Xen 4.17's `GUEST_RAM0_BASE`/`_SIZE` and `GUEST_RAM1_BASE`/`_SIZE` (`public/arch-arm.h`).
pub const GUEST_RAM_BANKS: [(u64, u64); 2] =
    [(0x4000_0000, 0xc000_0000), (0x2_0000_0000, 0xfe_0000_0000)];

impl Domain {
    /// Returns the guest-physical RAM of a domU that is not direct-mapped, as Xen 4.17's
    /// `allocate_memory()` (and, for `xen,static-mem`, `allocate_static_memory()`) lays it
    /// out: bank 0 first, the rest in bank 1.
    pub fn ram_banks(&self) -> [Option<GpaRange>; 2] {
        let mut left = self.memory_kib.saturating_mul(1024);
        GUEST_RAM_BANKS.map(|(base, size)| {
            let here = left.min(size);
            left -= here;
            GpaRange::new(Gpa(base), here)
        })
    }

    /// Returns the domain's guest-physical RAM, in address order: [`Domain::ram_banks`], or
    /// for a direct-mapped domain its `xen,static-mem` banks at their host addresses
    /// (`assign_static_memory_11()`). This is what a backend's window onto the domain maps.
    pub fn ram(&self) -> &[GpaRange] {
        self.ram.as_slice()
    }

    /// Returns where the RAM ends (0 without RAM).
    pub fn ram_end(&self) -> u64 {
        self.ram()
            .iter()
            .map(|r| r.start().0 + r.size())
            .max()
            .unwrap_or(0)
    }

    /// Returns the property that places the domain's RAM: what an error about it names.
    fn ram_property(&self) -> &'static str {
        if self.direct_map {
            "xen,static-mem"
        } else {
            "memory"
        }
    }
}

/// What a backend domain serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backend {
    /// SPI Xen raises in the backend when a request is posted.
    pub notify_spi: Spi,
    /// `xen,ioreq-timeout-ms`: how long a request may wait for this backend; 0 = forever.
    pub timeout_ms: u32,
    /// `xen,ioreq-poll-us`: how long Xen spins for this backend's answer while it polls; 0 =
    /// never.
    pub poll_us: u32,
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
    /// `xen,virtio-classic`: every access is a round trip to the backend, which keeps the
    /// whole transport (no register answered in Xen, no posted notify).
    pub classic: bool,
}

/// The validated configuration; frozen once built.
#[derive(Clone, Debug, Default)]
pub struct Config {
    domains: Table<Domain, MAX_DOMAINS>,
    devices: Table<Device, MAX_DEVICES>,
    /// The IPA size the configuration was checked against ([`HostFacts::ipa_bits`]).
    ipa_bits: u32,
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
    /// The region overlaps a region of this domain's own configuration (static memory, the
    /// host GIC or UART of a direct-mapped domain, shared memory, a passthrough range, its own
    /// RAM windows).
    OverlapsRegion {
        /// What the other region is.
        what: &'static str,
        /// The node that defines it, if any (a shared-memory or partial-DT node).
        node: Name,
        /// Where it is.
        range: GpaRange,
    },
    /// Something in a backend's address space overlaps its interface pages or a RAM window.
    BackendSpaceOverlap {
        /// What the offending range is.
        what: &'static str,
        /// Where it is.
        range: GpaRange,
        /// The interface pages or the window it overlaps.
        ours: GpaRange,
        /// `None`: the interface pages; `Some(frontend)`: the RAM window onto that frontend.
        window_of: Option<Name>,
    },
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
    /// More involved domains than [`MAX_DOMAINS`].
    TooManyDomains,
    /// A frontend with more vCPUs than an ioreq page has slots.
    TooManyVcpus(u32),
    /// `cpus = <0>`.
    NoVcpus,
    /// `capabilities` with `DOMAIN_CAPS_HARDWARE` (Xen 4.21+) on a frontend or backend.
    HardwareDomain,
    /// `xen,backend-args` longer than [`ARGS_MAX`].
    ArgsTooLong,
    /// A node name longer than [`NAME_MAX`].
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Two `xen,domain` nodes in `/chosen` with the same full name.
    DuplicateName,
    /// Another node of the tree carries the same phandle.
    DuplicatePhandle {
        /// The phandle.
        phandle: u32,
        /// Another node carrying it.
        other: Text,
    },
    /// Domains serve each other in a cycle.
    Cycle(Text),
    /// A frontend's RAM ends past [`backend_layout::WINDOW_SIZE`].
    RamPastWindow {
        /// Where the RAM ends.
        end: u64,
    },
    /// A backend's RAM reaches its first RAM window.
    RamReachesWindows {
        /// Where the RAM ends.
        end: u64,
    },
    /// A RAM window ends past the backend's stage-2 address space.
    WindowPastIpa {
        /// The frontend of that window.
        frontend: Name,
        /// Where the window ends.
        end: u64,
        /// Xen's `p2m_ipa_bits`.
        ipa_bits: u32,
    },
    /// An explicit `xen,domain-p2m-mem-mb` too small for the RAM and the windows.
    P2mPoolTooSmall {
        /// The value given, in MiB.
        mb: u32,
        /// Pages of P2M tables needed.
        need_pages: u64,
    },
    /// More than [`MAX_RAM_BANKS`] static memory banks on a direct-mapped domain.
    TooManyRamBanks,
    /// A `multiboot,device-tree` module that is not a readable device tree.
    BadPartialDt {
        /// Where the module is.
        addr: u64,
    },
    /// `xen,ioreq-poll-us` above [`MAX_POLL_US`].
    PollTooLong {
        /// The value given.
        us: u32,
    },
    /// `sched=null` with more vCPUs than pCPUs.
    SchedNullOvercommit {
        /// vCPUs of all domains.
        vcpus: u64,
        /// pCPUs Xen brings up.
        pcpus: u32,
    },
}

/// A node: the root, `/chosen`, `/chosen/<domain>`, `/chosen/<domain>/<child>`, or any other
/// node of the host tree by its path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// `/`.
    #[default]
    Root,
    /// `/chosen`.
    Chosen,
    /// `/chosen/<domain>`.
    Domain(Name),
    /// `/chosen/<domain>/<child>`: a device, shared-memory or module node.
    Child(Name, Name),
    /// Another node, by its full path (the host GIC, the UART).
    Other(Text),
}

impl Path {
    /// Returns the domain node's path.
    pub fn domain(name: &str) -> Path {
        Path::Domain(Name::from_str(name))
    }

    /// Returns the path of child `child` of domain `domain`.
    pub fn child(domain: &str, child: &str) -> Path {
        Path::Child(Name::from_str(domain), Name::from_str(child))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("/"),
            Path::Chosen => f.write_str("/chosen"),
            Path::Domain(d) => write!(f, "/chosen/{d}"),
            Path::Child(d, n) => write!(f, "/chosen/{d}/{n}"),
            Path::Other(p) => f.write_str(p.as_str()),
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
        self.describe(f)
    }
}

impl ConfigError {
    /// Writes what is wrong (the part after the node and property).
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: u64 = 1 << 30;
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
            ErrorKind::OverlapsRegion { what, node, range } if node.as_str().is_empty() => {
                write!(f, "region overlaps {what} {range}")
            }
            ErrorKind::OverlapsRegion { what, node, range } => {
                write!(f, "region overlaps {what} of {node} {range}")
            }
            ErrorKind::BackendSpaceOverlap {
                what,
                range,
                ours,
                window_of,
            } => {
                write!(f, "{what} {range} overlaps ")?;
                match window_of {
                    None => write!(f, "{BACKEND_PAGES_WHAT} {ours}"),
                    Some(fe) => write!(f, "the RAM window onto {fe} {ours}"),
                }
            }
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
            ErrorKind::TooManyDomains => write!(
                f,
                "more than {MAX_DOMAINS} domains use virtio devices (frontends and backends \
                 count, other domains do not)"
            ),
            ErrorKind::TooManyVcpus(n) => {
                write!(f, "{n} vCPUs: a frontend has at most {SLOTS_PER_PAGE}")
            }
            ErrorKind::NoVcpus => f.write_str("0 vCPUs: a domain needs at least one"),
            ErrorKind::HardwareDomain => f.write_str(
                "the hardware domain (DOMAIN_CAPS_HARDWARE) cannot be a frontend or a backend: \
                 Xen gives it the host's layout, whose in-Xen devices (vGIC, vITS, vUART) the \
                 regions of rust-ioreq could shadow",
            ),
            ErrorKind::ArgsTooLong => write!(f, "longer than {ARGS_MAX} bytes"),
            ErrorKind::NameTooLong { len } => write!(
                f,
                "node name of {len} bytes, longer than {NAME_MAX} (shown cut here; Xen finds \
                 domains by their full node name, which must not be cut)"
            ),
            ErrorKind::DuplicateName => f.write_str(
                "another xen,domain node in /chosen has the same name (Xen finds domains by \
                 their full node name)",
            ),
            ErrorKind::DuplicatePhandle { phandle, other } => {
                write!(f, "phandle {phandle:#x} is also carried by {other}")
            }
            ErrorKind::Cycle(chain) => write!(
                f,
                "backends serve each other in a cycle ({chain}): a vCPU blocked on its backend \
                 can wait on itself and deadlock them all"
            ),
            ErrorKind::RamPastWindow { end } => write!(
                f,
                "RAM ends at {end:#x}, past {} GiB: its backend's RAM window onto it is {} GiB, \
                 the rest would land in the next frontend's window",
                backend_layout::WINDOW_SIZE / GIB,
                backend_layout::WINDOW_SIZE / GIB
            ),
            ErrorKind::RamReachesWindows { end } => write!(
                f,
                "RAM ends at {end:#x}, past {:#x} where the backend's RAM windows start",
                backend_layout::window(0)
            ),
            ErrorKind::WindowPastIpa {
                frontend,
                end,
                ipa_bits,
            } => write!(
                f,
                "the RAM window onto {frontend} ends at {end:#x}, past the {ipa_bits}-bit \
                 guest-physical address space ({:#x}): serve fewer frontends from this backend",
                1u128 << ipa_bits
            ),
            ErrorKind::P2mPoolTooSmall { mb, need_pages } => write!(
                f,
                "{mb} MiB is too small: the domain's RAM and its RAM windows need {need_pages} \
                 pages of P2M tables ({} MiB)",
                need_pages.div_ceil(256)
            ),
            ErrorKind::TooManyRamBanks => {
                write!(
                    f,
                    "more than {MAX_RAM_BANKS} banks on a direct-mapped domain"
                )
            }
            ErrorKind::BadPartialDt { addr } => {
                write!(f, "the module at {addr:#x} is not a readable device tree")
            }
            ErrorKind::PollTooLong { us } => write!(
                f,
                "{us} us is more than {MAX_POLL_US} us of spinning on a frontend's pCPU per access"
            ),
            ErrorKind::SchedNullOvercommit { vcpus, pcpus } => write!(
                f,
                "sched=null with {vcpus} vCPUs on {pcpus} pCPUs: the null scheduler gives each \
                 vCPU a pCPU of its own, so {} vCPU(s) never run, and a frontend waiting on a \
                 backend that never runs blocks forever",
                vcpus - u64::from(pcpus)
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

/// Reads a property as Xen's `dt_property_read_u32()` does: the first cell of any value of at
/// least 4 bytes. For nodes only Xen reads (domains not involved here).
fn read_u32_lenient(node: &FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let v = node.property(name)?.value;
    let b = v.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
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

/// Tells whether a domain node takes part in the binding: it has a device or serves devices.
fn is_involved(node: &FdtNode<'_, '_>) -> bool {
    node.property("xen,ioreq-server").is_some()
        || node
            .children()
            .any(|c| is_compatible(&c, DEVICE_COMPATIBLE))
}

/// Returns the phandle of a node as Xen's unflattening reads it (`phandle`, else
/// `linux,phandle`), leniently.
fn phandle_lenient(node: &FdtNode<'_, '_>) -> Option<u32> {
    read_u32_lenient(node, "phandle").or_else(|| read_u32_lenient(node, "linux,phandle"))
}

/// Iterates the `xen,domain` children of `/chosen`.
fn domain_nodes<'b, 'a>(chosen: FdtNode<'b, 'a>) -> impl Iterator<Item = FdtNode<'b, 'a>> {
    chosen
        .children()
        .filter(|n| is_compatible(n, DOMAIN_COMPATIBLE))
}

impl Config {
    /// Parses and validates the configuration in the host device tree.
    ///
    /// `host` says what Xen knows and the tree does not ([`HostFacts`]); a bare `u32` is taken
    /// as the GIC's SPI count with the defaults of this platform for the rest (see
    /// [`HostFacts::from`]). The result is boxed: it is several KiB, and Xen's stacks are
    /// 32 KiB.
    pub fn from_fdt<'m>(
        blob: &[u8],
        host: impl Into<HostFacts<'m>>,
    ) -> Result<Box<Config>, ConfigError> {
        let host = host.into();
        let root = Path::Root;
        // fdt 0.1.5 panics on a malformed structure block: check it first.
        fdtcheck::check(blob).map_err(|_| err(&root, "", ErrorKind::BadBlob))?;
        let fdt = Fdt::new(blob).map_err(|_| err(&root, "", ErrorKind::BadBlob))?;
        let chosen = chosen(&fdt).ok_or(err(&root, "", ErrorKind::NoChosen))?;
        let mut config = Box::<Config>::default();
        config.ipa_bits = host.ipa_bits;

        // The involved domain nodes, index = domain index.
        let mut nodes: Vec<FdtNode<'_, '_>> = Vec::new();
        let static_cells = memory::Cells::of_chosen(&fdt, chosen);
        let involved = domain_nodes(chosen)
            .enumerate()
            .filter(|(_, n)| is_involved(n));
        for (position, node) in involved {
            let path = Path::domain(node.name);
            if node.name.len() > NAME_MAX {
                let kind = ErrorKind::NameTooLong {
                    len: node.name.len(),
                };
                return Err(err(&path, "", kind));
            }
            let mut domain = parse_domain(&node, &path, host.gic_spis, static_cells)?;
            domain.chosen_position = position;
            config
                .domains
                .push(domain)
                .map_err(|_| err(&path, "", ErrorKind::TooManyDomains))?;
            nodes.push(node);
        }
        config.check_identities(&fdt, chosen)?;
        for (index, node) in nodes.iter().enumerate() {
            let devices = node
                .children()
                .filter(|n| is_compatible(n, DEVICE_COMPATIBLE));
            for (nth, dev) in devices.enumerate() {
                let path = Path::child(node.name, dev.name);
                if dev.name.len() > NAME_MAX {
                    let kind = ErrorKind::NameTooLong {
                        len: dev.name.len(),
                    };
                    return Err(err(&path, "", kind));
                }
                let device = config.parse_device(chosen, node, &dev, &path, index as u8, nth)?;
                config.add_device(device, &path)?;
            }
        }
        graph::check_cycles(&config)?;
        memory::check(&config, &fdt, chosen, &nodes, &host)?;
        host::check_sched_null(&fdt, chosen)?;
        Ok(config)
    }

    /// Returns the domains in `/chosen` order (index = domain index): the frontends and
    /// backends only.
    pub fn domains(&self) -> &[Domain] {
        self.domains.as_slice()
    }

    /// Returns the devices in DT order.
    pub fn devices(&self) -> &[Device] {
        self.devices.as_slice()
    }

    /// Returns the IPA size the configuration was checked against.
    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits
    }

    /// Returns the index of the domain whose node is named `name` (full name, unit address
    /// included: `be@1`).
    pub fn domain_index(&self, name: &str) -> Option<usize> {
        self.domains().iter().position(|d| d.name.as_str() == name)
    }

    /// Returns the index of the domain whose node is at `path`, as Xen's
    /// `dt_node_full_name()` writes it (`/chosen/be@1`).
    pub fn domain_index_by_path(&self, path: &str) -> Option<usize> {
        self.domain_index(path.strip_prefix("/chosen/")?)
    }

    /// Returns the pages of P2M (stage-2) tables backend `backend` (a domain index) needs for
    /// its ioreq pages and RAM windows, on top of what its own RAM needs; 0 for a domain that
    /// serves nothing. Xen grows the backend's P2M pool by this much before it maps them.
    ///
    /// The mappings: the ioreq pages (one 4 KiB page per frontend at 0x3e001000), and each
    /// frontend `k`'s RAM ([`Domain::ram`]) at `window(k) + GPA`, all with 4 KiB pages. With
    /// Xen 4.17, a 4 KiB granule and up to 42 IPA bits (`VTCR_EL2.SL0 = 1`: 3 levels, the
    /// level-1 root two concatenated pages that `p2m_allocate_root()` takes outside the pool),
    /// every 2 MiB block touched needs one level-3 table page and every 1 GiB block touched
    /// one level-2 table page; a block shared by two ranges counts once, and partial blocks
    /// round up to whole ones. A window is 64 GiB-aligned, so a frontend's RAM keeps its
    /// alignment there: 64 MiB at GPA 0x40000000 is 32 + 1 pages, 1 GiB is 512 + 1, 4 GiB
    /// (3 GiB in GUEST_RAM0, 1 GiB in GUEST_RAM1) 2048 + 4; the ioreq pages add 1 + 1. Above
    /// 42 IPA bits Xen uses 4 levels with a level-0 root, and each 512 GiB block touched adds
    /// a level-1 page.
    pub fn window_p2m_pages(&self, backend: usize) -> u64 {
        memory::window_p2m_pages(self, backend)
    }

    /// Refuses two involved domains with the same node name (or one sharing its name with any
    /// other `xen,domain` node), and a phandle of an involved domain that another node carries.
    fn check_identities(&self, fdt: &Fdt<'_>, chosen: FdtNode<'_, '_>) -> Result<(), ConfigError> {
        for d in self.domains() {
            let same = domain_nodes(chosen)
                .filter(|n| n.name == d.name.as_str())
                .count();
            if same > 1 {
                return Err(err(&Path::Domain(d.name), "", ErrorKind::DuplicateName));
            }
        }
        tree::check_phandles(self, fdt)
    }

    fn parse_device(
        &self,
        chosen: FdtNode<'_, '_>,
        domain: &FdtNode<'_, '_>,
        dev: &FdtNode<'_, '_>,
        path: &Path,
        frontend: u8,
        nth: usize,
    ) -> Result<Device, ConfigError> {
        let fe = &self.domains()[usize::from(frontend)];
        // The cell counts are the domain node's properties: name it, not the device, in errors.
        let domain_path = Path::Domain(fe.name);
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
        let Some(backend) = self
            .domains()
            .iter()
            .position(|d| d.phandle == Some(phandle))
        else {
            // A domain that serves nothing is not tracked: name it if that is what the
            // phandle points at.
            let kind = match domain_nodes(chosen).find(|n| phandle_lenient(n) == Some(phandle)) {
                Some(n) => ErrorKind::NotABackend(Name::from_str(n.name)),
                None => ErrorKind::DanglingPhandle(phandle),
            };
            return Err(err(path, "xen,backend", kind));
        };
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
            classic: dev.property("xen,virtio-classic").is_some(),
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
        let fe = &self.domains()[usize::from(device.frontend)];
        if fe.vcpus > SLOTS_PER_PAGE {
            let kind = ErrorKind::TooManyVcpus(fe.vcpus);
            return Err(err(&Path::Domain(fe.name), "cpus", kind));
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

fn parse_domain(
    node: &FdtNode<'_, '_>,
    path: &Path,
    gic_spis: u32,
    static_cells: memory::Cells,
) -> Result<Domain, ConfigError> {
    let vcpus = read_u32(node, path, "cpus")?.unwrap_or(1);
    if vcpus == 0 {
        return Err(err(path, "cpus", ErrorKind::NoVcpus));
    }
    // Xen 4.21+ builds a dom0less hardware domain with the host's memory layout and its own
    // emulated devices there (domain_use_host_layout()); the checks here know only the
    // direct-map layout. Older Xen panics on no such bit: it ignores the property.
    if read_u32(node, path, "capabilities")?.is_some_and(|c| c & DOMAIN_CAPS_HARDWARE != 0) {
        return Err(err(path, "capabilities", ErrorKind::HardwareDomain));
    }
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
    let p2m_mem_mb = read_u32(node, path, "xen,domain-p2m-mem-mb")?;
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
        let poll_us = read_u32(node, path, "xen,ioreq-poll-us")?.unwrap_or(0);
        if poll_us > MAX_POLL_US {
            return Err(err(
                path,
                "xen,ioreq-poll-us",
                ErrorKind::PollTooLong { us: poll_us },
            ));
        }
        Some(Backend {
            notify_spi,
            timeout_ms,
            poll_us,
            frontends: Table::new(),
        })
    } else {
        None
    };
    let mut domain = Domain {
        name: Name::from_str(node.name),
        chosen_position: 0,
        phandle,
        vcpus,
        vpl011,
        nr_spis,
        memory_kib,
        direct_map: false,
        p2m_mem_mb,
        ram: Table::new(),
        backend,
    };
    memory::lay_out_ram(&mut domain, node, path, static_cells)?;
    Ok(domain)
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
