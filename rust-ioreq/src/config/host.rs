//! What the configuration needs to know of the host: the facts Xen passes in ([`HostFacts`]),
//! and what the host tree itself says about Xen's command line, the pCPUs, dom0, the host GIC
//! and the console UART (Xen 4.17: `boot_fdt_cmdline()`, `dt_smp_init()`, `create_dom0()`,
//! `vgic_v3_domain_init()`/`vgic_v2_domain_init()` and `domain_vpl011_init()` for direct-mapped
//! domains).

use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::tree::{self, Visit};
use super::{err, is_compatible, read_u32_lenient, ConfigError, ErrorKind, Path};
use crate::fixed::Table;
use crate::types::{Gpa, GpaRange};

/// Xen's `p2m_ipa_bits` on the platform this project runs on: Xen 4.17 on QEMU virt with
/// Cortex-A57, whose PARange is 44 bits ("P2M: 44-bit IPA" at boot). The value
/// [`HostFacts::from`] assumes when the caller gives only the SPI count.
pub const DEFAULT_IPA_BITS: u32 = 44;

/// Reads boot modules (the partial device trees of passthrough, `multiboot,device-tree`) from
/// host memory.
pub trait ModuleReader {
    /// Returns the `size` bytes of the module loaded at host physical address `addr`, or
    /// `None` if they cannot be read.
    fn read(&self, addr: u64, size: u64) -> Option<&[u8]>;
}

/// What Xen knows of the host and the device tree does not say, passed to
/// [`Config::from_fdt`](super::Config::from_fdt).
#[derive(Clone, Copy)]
pub struct HostFacts<'m> {
    /// SPIs of a domain whose node has no `nr_spis`: Xen's `gic_number_lines() - 32`.
    pub gic_spis: u32,
    /// Bits of guest-physical (IPA) address space of every domain: Xen's `p2m_ipa_bits` after
    /// `setup_virt_paging()` (44 on QEMU virt with Cortex-A57). RAM windows must fit below
    /// `1 << ipa_bits`, and the number of stage-2 table levels follows from it (3 levels with a
    /// concatenated level-1 root up to 42 bits, 4 levels above: Xen 4.17 `pa_range_info`).
    pub ipa_bits: u32,
    /// Reads the passthrough partial device trees, whose `xen,reg` ranges are then checked
    /// against the devices and windows; `None`: those ranges are not checked.
    pub modules: Option<&'m dyn ModuleReader>,
}

impl fmt::Debug for HostFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFacts")
            .field("gic_spis", &self.gic_spis)
            .field("ipa_bits", &self.ipa_bits)
            .field("modules", &self.modules.is_some())
            .finish()
    }
}

impl From<u32> for HostFacts<'static> {
    /// Takes `gic_spis` alone, with [`DEFAULT_IPA_BITS`] and no module reader: the call
    /// `Config::from_fdt(blob, gic_spis)` of callers that know only the SPI count.
    fn from(gic_spis: u32) -> Self {
        HostFacts {
            gic_spis,
            ipa_bits: DEFAULT_IPA_BITS,
            modules: None,
        }
    }
}

impl<'m> From<&HostFacts<'m>> for HostFacts<'m> {
    fn from(facts: &HostFacts<'m>) -> Self {
        *facts
    }
}

/// Most `maxcpus`/vCPU counts Xen 4.17 on Arm handles per domain (`MAX_VIRT_CPUS`).
const MAX_VIRT_CPUS: u32 = 128;

/// Xen's command line and the `/chosen` property it came from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cmdline<'a> {
    pub text: &'a str,
    pub property: &'static str,
}

impl<'a> Cmdline<'a> {
    /// Returns the value of the last `name=value` option, as Xen's parser keeps the last one.
    pub fn option(&self, name: &str) -> Option<&'a str> {
        self.text
            .split_ascii_whitespace()
            .filter_map(|t| t.strip_prefix(name)?.strip_prefix('='))
            .next_back()
    }

    /// Returns a numeric option (decimal or `0x` hexadecimal).
    pub fn number(&self, name: &str) -> Option<u32> {
        let v = self.option(name)?;
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }
}

/// Returns dom0's kernel module: a `multiboot,kernel` (or `xen,linux-zimage`) node directly in
/// `/chosen` (modules of dom0less domains are in their domain node).
fn dom0_kernel<'b, 'a>(chosen: FdtNode<'b, 'a>) -> Option<FdtNode<'b, 'a>> {
    chosen
        .children()
        .find(|n| is_compatible(n, "multiboot,kernel") || is_compatible(n, "xen,linux-zimage"))
}

/// Returns Xen's command line as `boot_fdt_cmdline()` picks it: `xen,xen-bootargs`, else
/// `bootargs` when `xen,dom0-bootargs` is present or dom0's kernel module has a command line.
pub(super) fn cmdline<'a>(chosen: FdtNode<'_, 'a>) -> Option<Cmdline<'a>> {
    if let Some(p) = chosen.property("xen,xen-bootargs") {
        return Some(Cmdline {
            text: p.as_str()?,
            property: "xen,xen-bootargs",
        });
    }
    let dom0_args = dom0_kernel(chosen)
        .and_then(|k| k.property("bootargs"))
        .and_then(|p| p.as_str())
        .is_some_and(|s| !s.is_empty());
    if chosen.property("xen,dom0-bootargs").is_some() || dom0_args {
        return Some(Cmdline {
            text: chosen.property("bootargs")?.as_str()?,
            property: "bootargs",
        });
    }
    None
}

/// Counts the pCPUs Xen brings up: the `/cpus` children with `device_type = "cpu"`, at most
/// `maxcpus`.
fn pcpus(fdt: &Fdt<'_>, cmdline: Option<Cmdline<'_>>) -> u32 {
    let Some(cpus) = fdt
        .find_node("/")
        .and_then(|r| r.children().find(|n| n.name == "cpus"))
    else {
        return 0;
    };
    let found = cpus
        .children()
        .filter(|n| {
            n.property("device_type")
                .and_then(|p| p.as_str())
                .is_some_and(|t| t == "cpu")
        })
        .count() as u32;
    match cmdline.and_then(|c| c.number("maxcpus")) {
        Some(max) if max > 0 => found.min(max),
        _ => found,
    }
}

/// Refuses `sched=null` when the domains have more vCPUs than there are pCPUs: the null
/// scheduler runs each vCPU on a pCPU of its own and leaves the others waiting for one.
///
/// Counted: `cpus` of every `xen,domain` node (as Xen reads it), and dom0's vCPUs when `/chosen`
/// has a dom0 kernel (`dom0_max_vcpus`, or one per pCPU). Not checked with cpupools
/// (`xen,cpupool` nodes), whose pools each have their own CPUs and scheduler.
pub(super) fn check_sched_null(fdt: &Fdt<'_>, chosen: FdtNode<'_, '_>) -> Result<(), ConfigError> {
    let Some(cmdline) = cmdline(chosen) else {
        return Ok(());
    };
    if cmdline.option("sched") != Some("null") {
        return Ok(());
    }
    if chosen.children().any(|n| is_compatible(&n, "xen,cpupool")) {
        return Ok(());
    }
    let pcpus = pcpus(fdt, Some(cmdline));
    if pcpus == 0 {
        return Ok(());
    }
    let mut vcpus: u64 = super::domain_nodes(chosen)
        .map(|n| u64::from(read_u32_lenient(&n, "cpus").unwrap_or(0)))
        .sum();
    if dom0_kernel(chosen).is_some() {
        let dom0 = match cmdline.number("dom0_max_vcpus") {
            Some(n) if n > 0 => n,
            _ => pcpus,
        };
        vcpus += u64::from(dom0.min(MAX_VIRT_CPUS));
    }
    if vcpus > u64::from(pcpus) {
        return Err(err(
            &Path::Chosen,
            cmdline.property,
            ErrorKind::SchedNullOvercommit { vcpus, pcpus },
        ));
    }
    Ok(())
}

/// A host region a direct-mapped domain sees at its host address.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HostRegion {
    pub what: &'static str,
    pub range: GpaRange,
}

/// Reads the `reg` entries of `node` with its parent's cells (DT spec defaults 2 and 1).
fn reg_entries(
    visit_parent: Option<FdtNode<'_, '_>>,
    node: FdtNode<'_, '_>,
    path: &Path,
) -> Result<Table<GpaRange, 8>, ConfigError> {
    let cells = |name, default| {
        visit_parent
            .and_then(|p| read_u32_lenient(&p, name))
            .map_or(default, |v| v as usize)
    };
    let (a, s) = (cells("#address-cells", 2), cells("#size-cells", 1));
    let malformed = || err(path, "reg", ErrorKind::Malformed);
    let p = node
        .property("reg")
        .ok_or(err(path, "reg", ErrorKind::Missing))?;
    let entry = (a + s) * 4;
    if entry == 0 || p.value.is_empty() || !p.value.len().is_multiple_of(entry) {
        return Err(malformed());
    }
    let mut out = Table::new();
    for chunk in p.value.chunks_exact(entry).take(8) {
        let mut it = chunk
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        let base = super::join(&mut it, a).ok_or_else(malformed)?;
        let size = super::join(&mut it, s).ok_or_else(malformed)?;
        let range = GpaRange::new(Gpa(base), size).ok_or_else(malformed)?;
        // At most 8 entries are taken, the table's capacity.
        let _ = out.push(range);
    }
    Ok(out)
}

/// Xen 4.17's GIC drivers, by compatible string: `true` for GICv3.
const GIC_COMPATIBLES: [(&str, bool); 5] = [
    ("arm,gic-v3", true),
    ("arm,gic-400", false),
    ("arm,cortex-a15-gic", false),
    ("arm,cortex-a7-gic", false),
    ("arm,cortex-a9-gic", false),
];

/// Size of the GICv2 CPU interface a direct-mapped domU gets (`GUEST_GICC_SIZE`).
const GUEST_GICC_SIZE: u64 = 0x2000;

/// Returns the host GIC's distributor and redistributor (GICv3) or CPU interface (GICv2)
/// regions: where a direct-mapped domain's vGIC is.
pub(super) fn gic_regions(fdt: &Fdt<'_>) -> Result<Table<HostRegion, 8>, ConfigError> {
    let mut found = None;
    let root = fdt
        .find_node("/")
        .ok_or(err(&Path::Root, "", ErrorKind::BadBlob))?;
    tree::walk(root, |v: &Visit<'_, '_, '_>| {
        if found.is_none() && v.node.property("interrupt-controller").is_some() {
            if let Some(&(_, v3)) = GIC_COMPATIBLES
                .iter()
                .find(|(c, _)| is_compatible(&v.node, c))
            {
                found = Some((v.node, v.parent, v.path(), v3));
            }
        }
        Ok::<(), ConfigError>(())
    })?;
    let mut out = Table::new();
    let Some((node, parent, path, v3)) = found else {
        return Ok(out);
    };
    let path = Path::Other(path);
    let reg = reg_entries(parent, node, &path)?;
    let regs = reg.as_slice();
    let Some(&dist) = regs.first() else {
        return Ok(out);
    };
    let _ = out.push(HostRegion {
        what: "the host GIC distributor (direct-map)",
        range: dist,
    });
    if v3 {
        let rdist = read_u32_lenient(&node, "#redistributor-regions").unwrap_or(1) as usize;
        for &r in regs.iter().skip(1).take(rdist) {
            let _ = out.push(HostRegion {
                what: "the host GIC redistributors (direct-map)",
                range: r,
            });
        }
    } else if let Some(cpu) = regs
        .get(1)
        .and_then(|c| GpaRange::new(c.start(), GUEST_GICC_SIZE))
    {
        let _ = out.push(HostRegion {
            what: "the host GIC CPU interface (direct-map)",
            range: cpu,
        });
    }
    Ok(out)
}

/// Size of the vpl011 region (`GUEST_PL011_SIZE`).
const PL011_SIZE: u64 = 0x1000;

/// Returns where a direct-mapped domain's vpl011 is: at Xen's console UART (`dtuart=`, else
/// `/chosen/stdout-path`; a path or an alias), or `None` if it cannot be found in the tree.
pub(super) fn uart_region(
    fdt: &Fdt<'_>,
    chosen: FdtNode<'_, '_>,
) -> Result<Option<HostRegion>, ConfigError> {
    let spec = match cmdline(chosen).and_then(|c| c.option("dtuart")) {
        Some(s) => Some(s),
        None => chosen.property("stdout-path").and_then(|p| p.as_str()),
    };
    let Some(spec) = spec else { return Ok(None) };
    let name = spec.split(':').next().unwrap_or("");
    let path = if name.starts_with('/') {
        Some(name)
    } else {
        fdt.find_node("/")
            .and_then(|r| r.children().find(|n| n.name == "aliases"))
            .and_then(|a| a.property(name))
            .and_then(|p| p.as_str())
    };
    let Some(found) = path.and_then(|p| tree::find_by_path(fdt, p)) else {
        return Ok(None);
    };
    let reg = reg_entries(found.parent, found.node, &Path::Other(found.path))?;
    Ok(reg.as_slice().first().and_then(|r| {
        Some(HostRegion {
            what: "the host UART its vpl011 takes over (direct-map)",
            range: GpaRange::new(r.start(), PL011_SIZE)?,
        })
    }))
}
