//! Reading a board's device tree blob for the facts the load plan and its checks need: RAM
//! banks, `/reserved-memory`, `/memreserve/`, the regions of devices, aliases, `/chosen`'s
//! modules and anything that would give a domain a host device.
//!
//! Addresses are read with the `#address-cells`/`#size-cells` of each node's parent (DT spec
//! v0.4 §2.3.5, defaults 2 and 1) and translated to CPU addresses only through identity
//! (`ranges;`) buses; a node under a bus that remaps is reported as skipped, not guessed.

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::board::Range;

/// One node's `reg` entry, with the node's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub path: String,
    pub range: Range,
}

/// Everything read from one tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeFacts {
    /// Root `compatible` strings.
    pub compatible: Vec<String>,
    /// `/memory` banks (nodes with `device_type = "memory"` directly under the root).
    pub memory: Vec<Range>,
    /// Children of `/reserved-memory` with a `reg`.
    pub reserved_memory: Vec<Region>,
    /// `/memreserve/` entries of the blob's header.
    pub memreserve: Vec<Range>,
    /// `reg` of every other node outside `/chosen` reachable through identity buses.
    pub devices: Vec<Region>,
    /// Nodes whose `reg` could not be placed (a bus with non-empty `ranges`), by path.
    pub untranslated: Vec<String>,
    /// `/aliases` entries: (name, path).
    pub aliases: Vec<(String, String)>,
    /// `/chosen/stdout-path`.
    pub stdout_path: Option<String>,
    /// Boot modules under `/chosen` (dom0's) and in its `xen,domain` nodes: node path,
    /// compatible strings and the range.
    pub modules: Vec<(String, Vec<String>, Range)>,
    /// Paths of nodes that hand a host device to a domain: `xen,passthrough` outside
    /// `/chosen`, `multiboot,device-tree` modules, and domains with `direct-map` or
    /// `xen,static-mem` (which tie guest addresses or RAM to the host's).
    pub passthrough: Vec<String>,
}

/// Reads a big-endian number of `cells` 32-bit cells from `bytes` at `*at`, advancing it.
fn read_cells(bytes: &[u8], at: &mut usize, cells: usize) -> Option<u64> {
    if cells > 2 {
        return None;
    }
    let mut v: u64 = 0;
    for _ in 0..cells {
        let c = bytes.get(*at..*at + 4)?;
        v = (v << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        *at += 4;
    }
    Some(v)
}

/// Returns a node's `u32` property.
fn prop_u32(node: &FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let v = node.property(name)?.value;
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// Returns a node's string-list property.
pub fn prop_strings(node: &FdtNode<'_, '_>, name: &str) -> Vec<String> {
    node.property(name).map_or_else(Vec::new, |p| {
        p.value
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    })
}

/// Returns the `(address, size)` cells a node gives its children.
fn child_cells(node: &FdtNode<'_, '_>) -> (usize, usize) {
    (
        prop_u32(node, "#address-cells").map_or(2, |v| v as usize),
        prop_u32(node, "#size-cells").map_or(1, |v| v as usize),
    )
}

/// Reads `node`'s `reg` with the parent's cells; `None` if it has none or it is malformed.
fn reg(node: &FdtNode<'_, '_>, cells: (usize, usize)) -> Option<Vec<Range>> {
    let value = node.property("reg")?.value;
    let entry = (cells.0 + cells.1) * 4;
    if entry == 0 || value.is_empty() || value.len() % entry != 0 {
        return None;
    }
    let mut at = 0;
    let mut out = Vec::new();
    while at < value.len() {
        let addr = read_cells(value, &mut at, cells.0)?;
        let size = read_cells(value, &mut at, cells.1)?;
        if let Some(r) = Range::sized(addr, size) {
            out.push(r);
        }
    }
    Some(out)
}

/// Joins a parent path and a child name.
fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Reads the facts of the blob `dtb`; `Err` with the reason when it is not a device tree.
pub fn read_facts(dtb: &[u8]) -> Result<TreeFacts, String> {
    let fdt = Fdt::new(dtb).map_err(|e| format!("not a device tree blob: {e:?}"))?;
    let root = fdt.find_node("/").ok_or("no root node")?;
    let mut f = TreeFacts {
        compatible: prop_strings(&root, "compatible"),
        memreserve: memreserve(dtb),
        ..TreeFacts::default()
    };
    let root_cells = child_cells(&root);
    for child in root.children() {
        let path = join("/", child.name);
        let base = child.name.split('@').next().unwrap_or("");
        match base {
            "chosen" => read_chosen(&child, &path, &mut f),
            "aliases" => {
                for p in child.properties() {
                    let value = String::from_utf8_lossy(p.value);
                    f.aliases
                        .push((p.name.to_owned(), value.trim_end_matches('\0').to_owned()));
                }
            }
            "reserved-memory" => {
                let cells = child_cells(&child);
                for r in child.children() {
                    for range in reg(&r, cells).unwrap_or_default() {
                        f.reserved_memory.push(Region {
                            path: join(&path, r.name),
                            range,
                        });
                    }
                }
            }
            "cpus" => {}
            _ if prop_strings(&child, "device_type")
                .iter()
                .any(|t| t == "memory") =>
            {
                f.memory.extend(reg(&child, root_cells).unwrap_or_default());
            }
            _ => walk_devices(&child, &path, root_cells, &mut f),
        }
    }
    f.memory.sort();
    Ok(f)
}

/// Collects the `reg` of `node` and its descendants, descending only through identity buses.
fn walk_devices(node: &FdtNode<'_, '_>, path: &str, cells: (usize, usize), f: &mut TreeFacts) {
    if node.property("xen,passthrough").is_some() {
        f.passthrough.push(path.to_owned());
    }
    for range in reg(node, cells).unwrap_or_default() {
        f.devices.push(Region {
            path: path.to_owned(),
            range,
        });
    }
    let identity = node.property("ranges").is_some_and(|p| p.value.is_empty());
    for child in node.children() {
        let child_path = join(path, child.name);
        if identity {
            walk_devices(&child, &child_path, child_cells(node), f);
        } else if child.property("reg").is_some() {
            f.untranslated.push(child_path);
        }
    }
}

/// Reads `/chosen`: its stdout path, dom0's modules and each domain's modules.
fn read_chosen(chosen: &FdtNode<'_, '_>, path: &str, f: &mut TreeFacts) {
    f.stdout_path = chosen
        .property("stdout-path")
        .and_then(|p| p.as_str())
        .map(str::to_owned);
    let cells = child_cells(chosen);
    let collect = |node: &FdtNode<'_, '_>, node_path: &str, cells, f: &mut TreeFacts| {
        let compatible = prop_strings(node, "compatible");
        if compatible.iter().any(|c| c == "multiboot,device-tree") {
            f.passthrough.push(node_path.to_owned());
        }
        for range in reg(node, cells).unwrap_or_default() {
            f.modules
                .push((node_path.to_owned(), compatible.clone(), range));
        }
    };
    for child in chosen.children() {
        let child_path = join(path, child.name);
        let compatible = prop_strings(&child, "compatible");
        if compatible.iter().any(|c| c == "xen,domain") {
            if child.property("direct-map").is_some() || child.property("xen,static-mem").is_some()
            {
                f.passthrough.push(child_path.clone());
            }
            let domain_cells = child_cells(&child);
            for m in child.children() {
                let m_compatible = prop_strings(&m, "compatible");
                if m_compatible.iter().any(|c| c.starts_with("multiboot,")) {
                    collect(&m, &join(&child_path, m.name), domain_cells, f);
                }
            }
        } else if compatible.iter().any(|c| c.starts_with("multiboot,")) {
            collect(&child, &child_path, cells, f);
        }
    }
}

/// Reads the `/memreserve/` entries from the blob header's memory reservation block (DT spec
/// v0.4 §5.3: `off_mem_rsvmap` at header offset 16, (address, size) pairs of big-endian u64
/// ending with a zero pair).
pub fn memreserve(dtb: &[u8]) -> Vec<Range> {
    let Some(off) = dtb
        .get(16..20)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = off as usize;
    while let (Some(a), Some(s)) = (dtb.get(at..at + 8), dtb.get(at + 8..at + 16)) {
        let addr = u64::from_be_bytes(a.try_into().unwrap_or_default());
        let size = u64::from_be_bytes(s.try_into().unwrap_or_default());
        if addr == 0 && size == 0 {
            break;
        }
        if let Some(r) = Range::sized(addr, size) {
            out.push(r);
        }
        at += 16;
    }
    out
}

impl TreeFacts {
    /// Returns the path an alias names.
    pub fn alias(&self, name: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_str())
    }

    /// Returns the node path `dtuart=` names: a path as it is, an alias resolved.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if name.starts_with('/') {
            self.devices
                .iter()
                .find(|d| d.path == name)
                .map(|d| d.path.as_str())
        } else {
            self.alias(name)
        }
    }

    /// Tells whether the tree has a device node with a `reg` at `path`.
    pub fn has_device(&self, path: &str) -> bool {
        self.devices.iter().any(|d| d.path == path)
    }
}

/// Returns the compatible strings of the node at `path` in the blob `dtb`.
pub fn compatible_at(dtb: &[u8], path: &str) -> Vec<String> {
    Fdt::new(dtb)
        .ok()
        .and_then(|fdt| fdt.find_node(path).map(|n| prop_strings(&n, "compatible")))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Compiles DTS text with dtc (installed by `make setup`).
    fn dtb(dts: &str) -> Vec<u8> {
        // One directory per call: the tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("scenario-devtree-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let src = dir.join("t.dts");
        std::fs::write(&src, dts).expect("write");
        let out = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb"])
            .arg(&src)
            .output()
            .expect("dtc (make setup installs device-tree-compiler)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    const TREE: &str = r#"/dts-v1/;
/memreserve/ 0x10000000 0x1000;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	compatible = "vendor,board", "vendor,soc";
	aliases { serial0 = "/soc/serial@1000"; };
	chosen {
		#address-cells = <2>;
		#size-cells = <2>;
		stdout-path = "serial0:115200n8";
		fe {
			compatible = "xen,domain";
			#address-cells = <2>;
			#size-cells = <2>;
			module@50000000 {
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0 0x50000000 0 0x1234>;
			};
		};
	};
	memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x40000000>; };
	memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x10000000>; };
	reserved-memory {
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		tee@42000000 { reg = <0 0x42000000 0 0x100000>; no-map; };
	};
	soc {
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		serial@1000 { compatible = "x,uart"; reg = <0 0x1000 0 0x40>; };
		bus {
			#address-cells = <1>;
			#size-cells = <1>;
			ranges = <0 0 0x2000 0x1000>;
			dev@0 { reg = <0 0x10>; };
		};
	};
	gic@3000 { reg = <0 0x3000 0 0x1000 0 0x4000 0 0x2000>; xen,passthrough; };
};
"#;

    #[test]
    fn facts_of_a_tree() {
        let blob = dtb(TREE);
        let f = read_facts(&blob).expect("a tree");
        assert_eq!(f.compatible, ["vendor,board", "vendor,soc"]);
        assert_eq!(
            f.memory,
            [
                Range {
                    start: 0x4000_0000,
                    end: 0x5000_0000
                },
                Range {
                    start: 0x8000_0000,
                    end: 0xc000_0000
                }
            ]
        );
        assert_eq!(
            f.memreserve,
            [Range {
                start: 0x1000_0000,
                end: 0x1000_1000
            }]
        );
        assert_eq!(f.reserved_memory.len(), 1);
        assert_eq!(f.reserved_memory[0].path, "/reserved-memory/tee@42000000");
        assert_eq!(f.alias("serial0"), Some("/soc/serial@1000"));
        assert_eq!(f.stdout_path.as_deref(), Some("serial0:115200n8"));
        assert!(f.has_device("/soc/serial@1000"));
        assert_eq!(f.untranslated, ["/soc/bus/dev@0"]);
        let gic: Vec<&Region> = f.devices.iter().filter(|d| d.path == "/gic@3000").collect();
        assert_eq!(gic.len(), 2);
        assert_eq!(f.passthrough, ["/gic@3000"]);
        assert_eq!(
            f.modules,
            [(
                "/chosen/fe/module@50000000".to_owned(),
                vec!["multiboot,kernel".to_owned(), "multiboot,module".to_owned()],
                Range {
                    start: 0x5000_0000,
                    end: 0x5000_1234
                }
            )]
        );
        assert_eq!(compatible_at(&blob, "/soc/serial@1000"), ["x,uart"]);
        assert!(read_facts(b"not a tree").is_err());
    }
}
