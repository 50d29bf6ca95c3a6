//! Guest-physical memory of the involved domains: where their RAM is (Xen 4.17
//! `allocate_memory()`, `allocate_static_memory()`, `assign_static_memory_11()`), the RAM
//! windows a backend gets onto its frontends (`docs/backend-abi.md`), the stage-2 (P2M) tables
//! those need, and what must not overlap in each frontend's and each backend's address space.
//!
//! Property encodings, from Xen 4.17 (`docs/misc/arm/device-tree/booting.txt`,
//! `arch/arm/bootfdt.c`, `arch/arm/domain_build.c`):
//! - `xen,static-mem = <addr size>...` on the domain node, in `/chosen`'s cells (the domain
//!   node's parent); with `direct-map` guest addresses are those host addresses, without it the
//!   memory is placed at GUEST_RAM0 then GUEST_RAM1 like allocated memory.
//! - `xen,shared-mem = <host-addr guest-addr size>` on a `xen,domain-shared-memory-v1` child,
//!   addresses in the domain node's `#address-cells`, the size in its `#size-cells` (the code,
//!   `process_shm()`, reads it in this order; booting.txt's prose says "address, size, guest
//!   address" in one place).
//! - `xen,reg = <host-addr size guest-addr>...` on the nodes under `/passthrough` of the
//!   domain's `multiboot,device-tree` module, in the cells of each node's parent (2 and 1 when
//!   absent; no inheritance), read only through a [`ModuleReader`](super::ModuleReader).
//! - `xen,domain-p2m-mem-mb = <MiB>` on the domain node: the whole P2M pool.

use alloc::vec::Vec;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::host::{self, HostFacts, HostRegion};
use super::tree;
use super::{
    err, is_compatible, join, read_u32_lenient, Config, ConfigError, Domain, ErrorKind, Name, Path,
    BACKEND_PAGES, MAX_RAM_BANKS,
};
use crate::abi::backend_layout::{self, WINDOW_SIZE};
use crate::fixed::Table;
use crate::types::{Gpa, GpaRange};

/// Compatible string of a static shared memory node.
const SHM_COMPATIBLE: &str = "xen,domain-shared-memory-v1";
/// Compatible string of a passthrough partial device tree module.
const PARTIAL_DT_COMPATIBLE: &str = "multiboot,device-tree";
/// A 4 KiB stage-2 page.
const PAGE_SHIFT: u32 = 12;
/// Pages in a MiB.
const PAGES_PER_MB: u64 = 1 << (20 - PAGE_SHIFT);

/// `#address-cells` and `#size-cells` that apply to a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cells {
    address: usize,
    size: usize,
}

impl Cells {
    /// Returns the cells Xen's `dt_n_addr_cells()`/`dt_n_size_cells()` give a child of `/chosen`
    /// (a domain node): `/chosen`'s own, else the root's, else 2 and 1.
    pub fn of_chosen(fdt: &Fdt<'_>, chosen: FdtNode<'_, '_>) -> Cells {
        let root = fdt.find_node("/");
        let read = |name, default| {
            read_u32_lenient(&chosen, name)
                .or_else(|| root.and_then(|r| read_u32_lenient(&r, name)))
                .map_or(default, |v| v as usize)
        };
        Cells {
            address: read("#address-cells", 2),
            size: read("#size-cells", 1),
        }
    }

    /// Returns the cells for a child of domain `node`: the node's own, else `inherited`.
    fn of_domain(node: &FdtNode<'_, '_>, inherited: Cells) -> Cells {
        let read =
            |name, default: usize| read_u32_lenient(node, name).map_or(default, |v| v as usize);
        Cells {
            address: read("#address-cells", inherited.address),
            size: read("#size-cells", inherited.size),
        }
    }
}

/// Splits `value` into entries of `layout` cells each and reads every cell group as a number;
/// `None` if the length is not a whole number of entries or a number does not fit 64 bits.
fn entries<const N: usize>(value: &[u8], layout: [usize; N]) -> Option<Vec<[u64; N]>> {
    let entry: usize = layout.iter().sum::<usize>() * 4;
    if entry == 0 || value.is_empty() || !value.len().is_multiple_of(entry) {
        return None;
    }
    value
        .chunks_exact(entry)
        .map(|chunk| {
            let mut it = chunk
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            let mut out = [0u64; N];
            for (slot, &cells) in out.iter_mut().zip(layout.iter()) {
                *slot = join(&mut it, cells)?;
            }
            Some(out)
        })
        .collect()
}

/// Fills `domain.ram` (and `direct_map`) from the domain node.
pub(super) fn lay_out_ram(
    domain: &mut Domain,
    node: &FdtNode<'_, '_>,
    path: &Path,
    static_cells: Cells,
) -> Result<(), ConfigError> {
    let static_mem = node.property("xen,static-mem");
    // Xen refuses `direct-map` without static memory itself ("direct-map is not valid for
    // domain ... without static allocation").
    domain.direct_map = static_mem.is_some() && node.property("direct-map").is_some();
    if let (true, Some(p)) = (domain.direct_map, static_mem) {
        let banks = entries(p.value, [static_cells.address, static_cells.size]).ok_or(err(
            path,
            "xen,static-mem",
            ErrorKind::Malformed,
        ))?;
        if banks.len() > MAX_RAM_BANKS {
            return Err(err(path, "xen,static-mem", ErrorKind::TooManyRamBanks));
        }
        let mut ranges: Vec<GpaRange> = Vec::new();
        for [addr, size] in banks {
            let r = GpaRange::new(Gpa(addr), size).ok_or(err(
                path,
                "xen,static-mem",
                ErrorKind::Malformed,
            ))?;
            ranges.push(r);
        }
        ranges.sort_unstable_by_key(|r| r.start());
        for r in ranges {
            let _ = domain.ram.push(r);
        }
    } else {
        for r in domain.ram_banks().into_iter().flatten() {
            let _ = domain.ram.push(r);
        }
    }
    Ok(())
}

/// Returns the root level of Xen 4.17's stage-2 tables for `ipa_bits` (4 KiB granule,
/// `pa_range_info` in `arch/arm/p2m.c`): level 1 (3 levels, root of 1, 2 or 8 concatenated
/// pages) up to 42 bits, level 0 (4 levels) above.
fn root_level(ipa_bits: u32) -> u32 {
    if ipa_bits > 42 {
        0
    } else {
        1
    }
}

/// Returns the pages of stage-2 tables below the root needed to map `ranges` with 4 KiB
/// pages: one level-3 table per 2 MiB block touched, one level-2 table per 1 GiB block
/// touched, and (with a level-0 root) one level-1 table per 512 GiB block touched. Blocks
/// shared by two ranges count once. The root is not counted: Xen allocates it with the domain,
/// outside the P2M pool (`p2m_allocate_root()`).
fn table_pages(ranges: &mut [GpaRange], ipa_bits: u32) -> u64 {
    ranges.sort_unstable_by_key(|r| r.start());
    let mut pages = 0;
    // A table at level L covers 2^(12 + 9 * (4 - L)) bytes: 2 MiB, 1 GiB, 512 GiB.
    for level in (root_level(ipa_bits) + 1)..=3 {
        let shift = PAGE_SHIFT + 9 * (4 - level);
        let mut last: Option<u64> = None;
        for r in ranges.iter() {
            let mut first = r.start().0 >> shift;
            let end = (r.start().0 + r.size() - 1) >> shift;
            if let Some(prev) = last {
                first = first.max(prev + 1);
            }
            if first <= end {
                pages += end - first + 1;
            }
            last = Some(last.map_or(end, |p| p.max(end)));
        }
    }
    pages
}

/// Returns the pages of P2M tables that mapping `domain`'s own RAM with 4 KiB pages needs at
/// most (Xen maps it with larger blocks when it can, and needs fewer).
pub fn ram_p2m_pages(domain: &Domain, ipa_bits: u32) -> u64 {
    let mut ram: Vec<GpaRange> = domain.ram().to_vec();
    table_pages(&mut ram, ipa_bits)
}

/// Returns Xen 4.17's default P2M pool of a dom0less domU without `xen,domain-p2m-mem-mb`
/// (`domain_p2m_pages()`): 1 MiB per vCPU, 4 KiB per MiB of RAM and 512 KiB for extended
/// regions, rounded up to whole MiB, in pages.
pub fn xen_default_p2m_pages(memory_kib: u64, vcpus: u32) -> u64 {
    let kib = 4 * (256 * u64::from(vcpus) + memory_kib / 1024 + 128);
    kib.div_ceil(1024) * PAGES_PER_MB
}

/// Returns the ranges of backend `backend`'s address space that Xen maps for the binding:
/// the ioreq, transport and notify pages, and each frontend's RAM at its window (`window(k) + GPA`). The doorbell is
/// an MMIO handler, not a mapping.
fn interface_mappings(config: &Config, backend: usize) -> Vec<GpaRange> {
    let mut out = Vec::new();
    let Some(be) = config.domains().get(backend).and_then(|d| d.backend) else {
        return out;
    };
    let n = be.frontends.len() as u64;
    if let Some(pages) = GpaRange::new(Gpa(backend_layout::IOREQ_PAGES_GPA), 0x1000 * n) {
        out.push(pages);
    }
    if let Some(pages) = GpaRange::new(Gpa(backend_layout::TRANSPORT_PAGE_GPA), 0x2000) {
        out.push(pages);
    }
    for (k, &f) in be.frontends.iter().enumerate() {
        for r in config.domains()[usize::from(f)].ram() {
            if let Some(w) = r
                .start()
                .checked_add(backend_layout::window(k))
                .and_then(|s| GpaRange::new(s, r.size()))
            {
                out.push(w);
            }
        }
    }
    out
}

/// Returns the pages of P2M tables backend `backend` needs for its ioreq pages and its RAM
/// windows (the arithmetic: [`Config::window_p2m_pages`]).
pub(super) fn window_p2m_pages(config: &Config, backend: usize) -> u64 {
    let mut ranges = interface_mappings(config, backend);
    table_pages(&mut ranges, config.ipa_bits())
}

/// A range of a domain's guest-physical space that the domain's configuration reserves, and
/// the node and property that reserve it (for the messages).
#[derive(Clone, Copy, Debug)]
struct Region {
    what: &'static str,
    /// The child node defining it (shared memory, partial DT node), or empty.
    node: Name,
    range: GpaRange,
    path: Path,
    property: &'static str,
}

/// Host regions a direct-mapped domain sees at their host addresses, read once.
#[derive(Default)]
struct HostLayout {
    gic: Option<Table<HostRegion, 8>>,
    uart: Option<Option<HostRegion>>,
}

/// Collects the reserved regions of domain `index`.
fn regions(
    config: &Config,
    index: usize,
    node: &FdtNode<'_, '_>,
    cells: Cells,
    host: &HostFacts<'_>,
    layout: &HostLayout,
) -> Result<Vec<Region>, ConfigError> {
    let d = &config.domains()[index];
    let dom = Path::Domain(d.name);
    let mut out = Vec::new();
    if d.direct_map {
        for &range in d.ram() {
            out.push(Region {
                what: "its static memory (xen,static-mem, direct-map)",
                node: Name::new(),
                range,
                path: dom,
                property: "xen,static-mem",
            });
        }
        for r in layout.gic.iter().flat_map(|t| t.iter()) {
            out.push(Region {
                what: r.what,
                node: Name::new(),
                range: r.range,
                path: dom,
                property: "direct-map",
            });
        }
        if let (true, Some(Some(r))) = (d.vpl011, layout.uart) {
            out.push(Region {
                what: r.what,
                node: Name::new(),
                range: r.range,
                path: dom,
                property: "vpl011",
            });
        }
    }
    let cells = Cells::of_domain(node, cells);
    for child in node.children() {
        if is_compatible(&child, SHM_COMPATIBLE) {
            shared_mem(&mut out, d, &child, cells)?;
        }
        if is_compatible(&child, PARTIAL_DT_COMPATIBLE) {
            if let Some(reader) = host.modules {
                passthrough(&mut out, d, &child, cells, reader)?;
            }
        }
    }
    Ok(out)
}

/// Adds the guest range of a static shared memory node.
fn shared_mem(
    out: &mut Vec<Region>,
    d: &Domain,
    child: &FdtNode<'_, '_>,
    cells: Cells,
) -> Result<(), ConfigError> {
    let path = Path::Child(d.name, Name::from_str(child.name));
    let Some(p) = child.property("xen,shared-mem") else {
        // Xen's early scan stops the boot on it ("-ENOENT").
        return Err(err(&path, "xen,shared-mem", ErrorKind::Missing));
    };
    let malformed = err(&path, "xen,shared-mem", ErrorKind::Malformed);
    let [[_host, guest, size]] = entries(p.value, [cells.address, cells.address, cells.size])
        .ok_or(malformed)?
        .try_into()
        .map_err(|_| malformed)?;
    out.push(Region {
        what: "the shared memory",
        node: Name::from_str(child.name),
        range: GpaRange::new(Gpa(guest), size).ok_or(malformed)?,
        path,
        property: "xen,shared-mem",
    });
    Ok(())
}

/// Adds the `xen,reg` guest ranges of the passthrough partial DT module `child`.
fn passthrough(
    out: &mut Vec<Region>,
    d: &Domain,
    child: &FdtNode<'_, '_>,
    cells: Cells,
    reader: &dyn super::ModuleReader,
) -> Result<(), ConfigError> {
    let path = Path::Child(d.name, Name::from_str(child.name));
    let reg = child
        .property("reg")
        .and_then(|p| entries(p.value, [cells.address, cells.size]))
        .and_then(|e| e.first().copied())
        .ok_or(err(&path, "reg", ErrorKind::Malformed))?;
    let [addr, size] = reg;
    let bad = err(&path, "reg", ErrorKind::BadPartialDt { addr });
    let blob = reader.read(addr, size).ok_or(bad)?;
    crate::fdtcheck::check(blob).map_err(|_| bad)?;
    let fdt = Fdt::new(blob).map_err(|_| bad)?;
    let Some(pt) = fdt
        .find_node("/")
        .and_then(|r| r.children().find(|n| n.name == "passthrough"))
    else {
        return Ok(());
    };
    tree::walk(pt, |v| {
        let Some(p) = v.node.property("xen,reg") else {
            return Ok(());
        };
        // Xen reads each node's `xen,reg` with its parent's cells, 2 and 1 by default, and
        // takes as many whole entries as fit.
        let parent_cells = |name, default: usize| {
            v.parent
                .and_then(|n| read_u32_lenient(&n, name))
                .map_or(default, |c| c as usize)
        };
        let (a, s) = (
            parent_cells("#address-cells", 2),
            parent_cells("#size-cells", 1),
        );
        let entry = (2 * a + s) * 4;
        if entry == 0 {
            return Ok(());
        }
        let whole = p.value.len() / entry * entry;
        for [_host, size, guest] in entries(&p.value[..whole], [a, s, a]).unwrap_or_default() {
            if let Some(range) = GpaRange::new(Gpa(guest), size) {
                out.push(Region {
                    what: "the passthrough xen,reg range",
                    node: Name::from_str(v.node.name),
                    range,
                    path,
                    property: "xen,reg",
                });
            }
        }
        Ok::<(), ConfigError>(())
    })
}

/// Runs the memory checks (see the module documentation); `nodes[i]` is domain `i`'s node.
pub(super) fn check(
    config: &Config,
    fdt: &Fdt<'_>,
    chosen: FdtNode<'_, '_>,
    nodes: &[FdtNode<'_, '_>],
    host: &HostFacts<'_>,
) -> Result<(), ConfigError> {
    check_windows(config)?;
    check_p2m(config)?;
    let mut layout = HostLayout::default();
    if config.domains().iter().any(|d| d.direct_map) {
        layout.gic = Some(host::gic_regions(fdt)?);
        layout.uart = Some(host::uart_region(fdt, chosen)?);
    }
    let cells = Cells::of_chosen(fdt, chosen);
    for (index, node) in nodes.iter().enumerate() {
        let regions = regions(config, index, node, cells, host, &layout)?;
        check_frontend_space(config, index, &regions)?;
        check_backend_space(config, index, &regions)?;
    }
    Ok(())
}

/// Refuses RAM that does not fit the window scheme and windows past the IPA size.
fn check_windows(config: &Config) -> Result<(), ConfigError> {
    let domains = config.domains();
    for (i, d) in domains.iter().enumerate() {
        let path = Path::Domain(d.name);
        let is_frontend = config
            .devices()
            .iter()
            .any(|x| usize::from(x.frontend) == i);
        if is_frontend && d.ram_end() > WINDOW_SIZE {
            let kind = ErrorKind::RamPastWindow { end: d.ram_end() };
            return Err(err(&path, d.ram_property(), kind));
        }
        let Some(be) = d.backend.filter(|b| !b.frontends.is_empty()) else {
            continue;
        };
        if d.ram_end() > backend_layout::window(0) {
            let kind = ErrorKind::RamReachesWindows { end: d.ram_end() };
            return Err(err(&path, d.ram_property(), kind));
        }
        let limit = 1u128 << config.ipa_bits().min(64);
        for (k, &f) in be.frontends.iter().enumerate() {
            let end = u128::from(backend_layout::window(k)) + u128::from(WINDOW_SIZE);
            if end > limit {
                let kind = ErrorKind::WindowPastIpa {
                    frontend: domains[usize::from(f)].name,
                    end: end as u64,
                    ipa_bits: config.ipa_bits(),
                };
                return Err(err(&path, "xen,ioreq-server", kind));
            }
        }
    }
    Ok(())
}

/// Refuses an explicit P2M pool that cannot hold the tables of the backend's own RAM (at
/// 4 KiB granularity) plus those of its windows and ioreq pages.
fn check_p2m(config: &Config) -> Result<(), ConfigError> {
    for (i, d) in config.domains().iter().enumerate() {
        let (Some(mb), Some(be)) = (d.p2m_mem_mb, d.backend) else {
            continue;
        };
        if be.frontends.is_empty() {
            continue;
        }
        let need = ram_p2m_pages(d, config.ipa_bits()) + window_p2m_pages(config, i);
        if u64::from(mb) * PAGES_PER_MB < need {
            return Err(err(
                &Path::Domain(d.name),
                "xen,domain-p2m-mem-mb",
                ErrorKind::P2mPoolTooSmall {
                    mb,
                    need_pages: need,
                },
            ));
        }
    }
    Ok(())
}

/// Refuses a device region of frontend `index` that overlaps one of its reserved regions.
fn check_frontend_space(
    config: &Config,
    index: usize,
    regions: &[Region],
) -> Result<(), ConfigError> {
    let fe = &config.domains()[index];
    for dev in config
        .devices()
        .iter()
        .filter(|d| usize::from(d.frontend) == index)
    {
        if let Some(r) = regions.iter().find(|r| r.range.overlaps(&dev.mmio)) {
            let kind = ErrorKind::OverlapsRegion {
                what: r.what,
                node: r.node,
                range: r.range,
            };
            return Err(err(&Path::Child(fe.name, dev.name), "reg", kind));
        }
    }
    Ok(())
}

/// Refuses a reserved region of backend `index` that overlaps its interface pages or one of
/// its RAM windows.
fn check_backend_space(
    config: &Config,
    index: usize,
    regions: &[Region],
) -> Result<(), ConfigError> {
    let d = &config.domains()[index];
    let Some(be) = d.backend else {
        return Ok(());
    };
    let pages = GpaRange::new(Gpa(BACKEND_PAGES.1), BACKEND_PAGES.2).unwrap_or_default();
    let windows = be.frontends.iter().enumerate().filter_map(|(k, &f)| {
        let w = GpaRange::new(Gpa(backend_layout::window(k)), WINDOW_SIZE)?;
        Some((w, Some(config.domains()[usize::from(f)].name)))
    });
    for (ours, window_of) in core::iter::once((pages, None)).chain(windows) {
        if let Some(r) = regions.iter().find(|r| r.range.overlaps(&ours)) {
            let kind = ErrorKind::BackendSpaceOverlap {
                what: r.what,
                range: r.range,
                ours,
                window_of,
            };
            return Err(err(&r.path, r.property, kind));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, size: u64) -> GpaRange {
        GpaRange::new(Gpa(start), size).unwrap()
    }

    #[test]
    fn tables_count_each_block_once() {
        // 64 MiB at 1 GiB: 32 L3 + 1 L2.
        assert_eq!(table_pages(&mut [range(0x4000_0000, 64 << 20)], 40), 33);
        // One page: 1 + 1. Two pages in the same 2 MiB block: still 1 + 1.
        assert_eq!(table_pages(&mut [range(0x3e00_1000, 0x1000)], 40), 2);
        assert_eq!(
            table_pages(
                &mut [range(0x3e00_2000, 0x1000), range(0x3e00_1000, 0x1000)],
                40
            ),
            2
        );
        // Straddling a 2 MiB boundary: 2 L3 tables; a 1 GiB boundary: 2 L2 tables too.
        assert_eq!(table_pages(&mut [range(0x1f_f000, 0x2000)], 40), 3);
        assert_eq!(table_pages(&mut [range(0x3fff_f000, 0x2000)], 40), 4);
        // 4 GiB in two banks: 1536 + 512 L3, 3 + 1 L2.
        assert_eq!(
            table_pages(
                &mut [
                    range(0x4000_0000, 0xc000_0000),
                    range(0x2_0000_0000, 1 << 30)
                ],
                40
            ),
            2048 + 4
        );
        // A 48-bit IPA has a level-0 root: one L1 table more per 512 GiB block.
        assert_eq!(table_pages(&mut [range(0x4000_0000, 64 << 20)], 48), 34);
    }

    #[test]
    fn xen_default_pool_matches_domain_p2m_pages() {
        // 64 MiB, 1 vCPU: 4 * (256 + 64 + 128) KiB = 1792 KiB -> 2 MiB = 512 pages.
        assert_eq!(xen_default_p2m_pages(64 * 1024, 1), 512);
        // 1 GiB, 2 vCPUs: 4 * (512 + 1024 + 128) = 6656 KiB -> 7 MiB.
        assert_eq!(xen_default_p2m_pages(1 << 20, 2), 7 * 256);
    }

    #[test]
    fn entries_need_whole_entries_that_fit() {
        assert_eq!(
            entries(&[0, 0, 0, 1, 0, 0, 0, 2], [1, 1]),
            Some(std::vec![[1, 2]])
        );
        assert_eq!(entries(&[0, 0, 0, 1, 0, 0, 0], [1, 1]), None);
        assert_eq!(entries(&[], [1, 1]), None);
        assert_eq!(entries(&[0, 0, 0, 1], [0, 0]), None);
        // A number that does not fit 64 bits.
        assert_eq!(entries(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], [3]), None);
    }
}
