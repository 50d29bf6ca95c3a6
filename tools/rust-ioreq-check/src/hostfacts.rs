//! The two host facts Xen knows and a device tree does not state, derived from the tree when
//! the command line does not give them: how many SPIs a domain without `nr_spis` gets
//! (`gic_number_lines() - 32`, from the GIC's GICD_TYPER) and Xen's `p2m_ipa_bits` (the
//! smallest PARange of the CPUs Xen brings up).
//!
//! What is derived is a value Xen cannot go below on that host, so a configuration accepted
//! with it is accepted by Xen; each value comes with the reason, which the checker prints.

use fdt::node::FdtNode;
use fdt::Fdt;

/// SPIs of a domain on QEMU's `virt` machine (QEMU 7.2, `gic-version=3`): Xen reads 256
/// lines from its GICD_TYPER ("GICv3: 256 lines" at boot), so a domain gets 256 - 32.
pub const QEMU_VIRT_SPIS: u32 = 224;

/// PARange of the CPU cores the project has met (Arm's technical reference manuals,
/// ID_AA64MMFR0_EL1.PARange), in bits. Xen takes the smallest among the CPUs it brings up.
const CORE_PA_BITS: [(&str, u32); 5] = [
    ("arm,cortex-a35", 40),
    ("arm,cortex-a53", 40),
    ("arm,cortex-a55", 40),
    ("arm,cortex-a57", 44),
    ("arm,cortex-a72", 44),
];

/// IPA size assumed for a core the table does not know: the smallest of the table's.
const UNKNOWN_CORE_PA_BITS: u32 = 40;

/// GIC compatibles Xen 4.17 drives, with the most lines the implementation can have:
/// GIC-400 has at most 480 SPIs (512 lines); the architecture allows INTIDs up to 1019.
const GICS: [(&str, u32); 5] = [
    ("arm,gic-v3", 1020),
    ("arm,gic-400", 512),
    ("arm,cortex-a15-gic", 1020),
    ("arm,cortex-a7-gic", 1020),
    ("arm,cortex-a9-gic", 1020),
];

/// A derived value and why it is that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub value: u32,
    pub why: String,
}

fn u32s(value: &[u8]) -> Vec<u32> {
    value
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn prop_u32(node: &FdtNode<'_, '_>, name: &str) -> Option<u32> {
    u32s(node.property(name)?.value).first().copied()
}

/// Returns the GIC compatibles of `node` that Xen drives.
fn gic_compatible(node: &FdtNode<'_, '_>) -> Vec<&'static str> {
    let Some(c) = node.compatible() else {
        return Vec::new();
    };
    c.all()
        .filter_map(|s| GICS.iter().find(|(g, _)| *g == s).map(|(g, _)| *g))
        .collect()
}

/// Walks every node with the `interrupt-parent` in force there.
fn walk<'b, 'a>(
    node: FdtNode<'b, 'a>,
    parent: Option<u32>,
    f: &mut impl FnMut(FdtNode<'b, 'a>, Option<u32>),
) {
    let parent = prop_u32(&node, "interrupt-parent").or(parent);
    f(node, parent);
    for child in node.children() {
        walk(child, parent, f);
    }
}

/// Returns the SPIs a domain without `nr_spis` gets: QEMU virt's known count, else the least
/// the host GIC can have given the highest SPI the tree routes to it.
pub fn gic_spis(blob: &[u8]) -> Option<Derived> {
    let fdt = Fdt::new(blob).ok()?;
    let root = fdt.find_node("/")?;
    if root
        .compatible()
        .is_some_and(|c| c.all().any(|s| s == "linux,dummy-virt"))
    {
        return Some(Derived {
            value: QEMU_VIRT_SPIS,
            why: "QEMU virt's GICv3 has 256 lines (Xen prints \"GICv3: 256 lines\")".to_owned(),
        });
    }
    // The GIC: an interrupt controller Xen drives.
    let mut gic = None;
    walk(root, None, &mut |n, _| {
        if gic.is_none() && n.property("interrupt-controller").is_some() {
            if let Some(&c) = gic_compatible(&n).first() {
                gic = Some((
                    c,
                    prop_u32(&n, "phandle"),
                    prop_u32(&n, "#interrupt-cells").unwrap_or(3),
                ));
            }
        }
    });
    let (gic_compat, phandle, cells) = gic?;
    let cells = cells.max(2) as usize;
    let mut max_intid: Option<u32> = None;
    let mut note = |spec: &[u32]| {
        // Specifier: type (0 = SPI), number, flags[, partition].
        if spec.first() == Some(&0) {
            if let Some(&n) = spec.get(1) {
                max_intid = Some(max_intid.map_or(n + 32, |m: u32| m.max(n + 32)));
            }
        }
    };
    walk(root, None, &mut |n, parent| {
        if let Some(p) = n.property("interrupts") {
            if parent.is_some() && parent == phandle {
                for spec in u32s(p.value).chunks_exact(cells) {
                    note(spec);
                }
            }
        }
        if let Some(p) = n.property("interrupts-extended") {
            let v = u32s(p.value);
            // Only specifiers aimed at the GIC are read; another controller's length is not
            // known here, so reading stops at the first one.
            let mut at = 0;
            while at < v.len() && Some(v[at]) == phandle {
                if let Some(spec) = v.get(at + 1..at + 1 + cells) {
                    note(spec);
                }
                at += 1 + cells;
            }
        }
    });
    let max_lines = GICS
        .iter()
        .find(|(g, _)| *g == gic_compat)
        .map_or(1020, |g| g.1);
    let Some(intid) = max_intid else {
        return Some(Derived {
            value: QEMU_VIRT_SPIS,
            why: "assumed: the tree routes no SPI to the GIC".to_owned(),
        });
    };
    let lines = (intid + 1).div_ceil(32) * 32;
    let exact = lines >= max_lines;
    let lines = lines.min(max_lines);
    Some(Derived {
        value: lines.min(992) - 32,
        why: if exact {
            format!(
                "the tree routes INTID {intid} to its {gic_compat}, which has at most {max_lines} \
                 lines: exactly {lines}"
            )
        } else {
            format!(
                "at least: the tree routes INTID {intid} to its {gic_compat}, so it has {lines} lines \
                 or more (Xen prints the real count at boot; give it with --gic-spis)"
            )
        },
    })
}

/// Returns Xen's IPA size: the smallest PARange among the CPUs of the boot CPU's type (Xen
/// leaves CPUs of another type offline unless its command line says `hmp-unsafe`), from the
/// table of known cores.
pub fn ipa_bits(blob: &[u8]) -> Option<Derived> {
    let fdt = Fdt::new(blob).ok()?;
    let cpus = fdt.find_node("/cpus")?;
    let cores: Vec<(Option<u32>, Vec<&str>)> = cpus
        .children()
        .filter(|n| {
            n.property("device_type")
                .and_then(|p| p.as_str())
                .is_some_and(|t| t == "cpu")
        })
        .map(|n| {
            (
                prop_u32(&n, "reg"),
                n.compatible().map_or_else(Vec::new, |c| c.all().collect()),
            )
        })
        .collect();
    let boot = cores
        .iter()
        .find(|(reg, _)| *reg == Some(0))
        .or(cores.first())?;
    let hmp_unsafe = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("xen,xen-bootargs"))
        .and_then(|p| p.as_str())
        .is_some_and(|a| {
            a.split_ascii_whitespace().any(|w| {
                matches!(
                    w,
                    "hmp-unsafe"
                        | "hmp-unsafe=1"
                        | "hmp-unsafe=yes"
                        | "hmp-unsafe=on"
                        | "hmp-unsafe=true"
                )
            })
        });
    let mut value = u32::MAX;
    let mut why = Vec::new();
    for (_, compat) in cores
        .iter()
        .filter(|(_, c)| hmp_unsafe || c.first() == boot.1.first())
    {
        let core = compat.first().copied().unwrap_or("?");
        let bits = CORE_PA_BITS
            .iter()
            .find(|(c, _)| compat.contains(c))
            .map(|(_, b)| *b);
        let b = bits.unwrap_or(UNKNOWN_CORE_PA_BITS);
        let text = match bits {
            Some(b) => format!("{core}: {b}"),
            None => format!("{core}: unknown core, assumed {b} (give it with --ipa-bits)"),
        };
        if !why.contains(&text) {
            why.push(text);
        }
        value = value.min(b);
    }
    let scope = if hmp_unsafe {
        "every CPU (hmp-unsafe)"
    } else {
        "the boot CPU's type"
    };
    Some(Derived {
        value,
        why: format!("smallest PARange of {scope}: {}", why.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn dtb(dts: &str) -> Vec<u8> {
        // One directory per call: the tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ioreq-check-host-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let src = dir.join("t.dts");
        std::fs::write(&src, dts).expect("write");
        let out = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb"])
            .arg(&src)
            .output()
            .expect("dtc (make setup installs it)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn tree(gic: &str, spi: u32, cpus: &str, bootargs: &str) -> Vec<u8> {
        dtb(&format!(
            r#"/dts-v1/;
/ {{
	#address-cells = <2>;
	#size-cells = <2>;
	compatible = "x,board";
	interrupt-parent = <&gic>;
	chosen {{ xen,xen-bootargs = "{bootargs}"; }};
	cpus {{
		#address-cells = <1>;
		#size-cells = <0>;
		{cpus}
	}};
	gic: interrupt-controller@1000 {{
		compatible = "{gic}";
		interrupt-controller;
		#interrupt-cells = <3>;
		reg = <0 0x1000 0 0x1000>;
	}};
	soc {{
		uart {{ interrupts = <0 {spi} 4>, <1 9 4>; }};
		other {{ interrupts-extended = <&gic 0 40 4>; }};
	}};
}};
"#
        ))
    }

    const BIG_LITTLE: &str = r#"cpu@0 { device_type = "cpu"; compatible = "arm,cortex-a57"; reg = <0>; };
		cpu@100 { device_type = "cpu"; compatible = "arm,cortex-a53"; reg = <0x100>; };"#;

    #[test]
    fn spis_from_the_highest_routed_intid() {
        let d = gic_spis(&tree("arm,gic-400", 477, BIG_LITTLE, "")).expect("derived");
        assert_eq!(d.value, 480);
        assert!(d.why.contains("exactly 512"), "{}", d.why);
        let d = gic_spis(&tree("arm,gic-v3", 231, BIG_LITTLE, "")).expect("derived");
        assert_eq!(d.value, 256);
        assert!(d.why.starts_with("at least"), "{}", d.why);
        // interrupts-extended counts too; the PPI does not.
        let d = gic_spis(&tree("arm,gic-v3", 3, BIG_LITTLE, "")).expect("derived");
        assert_eq!(d.value, 64, "INTID 72 from interrupts-extended: 96 lines");
    }

    #[test]
    fn ipa_from_the_boot_cpus_type() {
        let d = ipa_bits(&tree("arm,gic-400", 1, BIG_LITTLE, "console=dtuart")).expect("cpus");
        assert_eq!(d.value, 44, "{}", d.why);
        let d = ipa_bits(&tree("arm,gic-400", 1, BIG_LITTLE, "hmp-unsafe=true")).expect("cpus");
        assert_eq!(d.value, 40, "{}", d.why);
        let odd = r#"cpu@0 { device_type = "cpu"; compatible = "x,core"; reg = <0>; };"#;
        let d = ipa_bits(&tree("arm,gic-v3", 1, odd, "")).expect("cpus");
        assert_eq!(d.value, 40);
        assert!(d.why.contains("unknown core"), "{}", d.why);
    }
}
