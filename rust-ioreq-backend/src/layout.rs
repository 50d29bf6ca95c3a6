//! The layout the kernel module publishes in /sys/class/misc/rust-ioreq-be/layout
//! (docs/backend-abi.md, "Linux backend"): the ABI line, the regions userspace may mmap, the
//! frontends and the devices, one per line, parsed and checked once at start.
//!
//! Lines of other kinds, and keys this parser does not know, are skipped (a newer module may
//! add some); a line of a known kind without a field it needs, or with a malformed one, is an
//! error naming the line.

use std::fmt;

/// Slots in an ioreq page: 32-byte `ioreq_t`s in 4 KiB.
pub const MAX_VCPUS: u32 = 128;
/// Frontends per backend (docs/backend-abi.md: k = 0..7).
pub const MAX_FRONTENDS: u32 = 8;

/// What a region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The doorbell page (Device memory).
    Doorbell,
    /// A frontend's ioreq page.
    Ioreq,
    /// The transport page (version 2).
    Transport,
    /// The notify page (version 2).
    Notify,
    /// A RAM bank of a frontend, inside its window.
    Ram,
}

/// One mmap-able range of the backend's guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// What it is.
    pub kind: RegionKind,
    /// The frontend it belongs to (`None` for the backend-wide pages).
    pub frontend: Option<u32>,
    /// Backend guest-physical address: the mmap offset.
    pub phys: u64,
    /// Size in bytes.
    pub size: u64,
    /// For RAM: the frontend GPA of the first byte.
    pub gpa: u64,
    /// Mapped Device (the doorbell) rather than Normal Write-Back.
    pub device_memory: bool,
}

/// One frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// Index k (the `COMPLETE` value's high half).
    pub index: u32,
    /// Slots in its ioreq page.
    pub vcpus: u32,
    /// Backend guest-physical address of its ioreq page.
    pub ioreq: u64,
    /// Its domain name, for messages.
    pub name: String,
}

/// One device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Device index (`RAISE_IRQ`, the transport record, the notify counts).
    pub index: u32,
    /// Frontend index.
    pub frontend: u32,
    /// Frontend GPA of its register window.
    pub mmio: u64,
    /// Size of the register window.
    pub size: u64,
    /// `rust-ioreq,classic`: every access a round trip.
    pub classic: bool,
    /// `rust-ioreq,args`.
    pub args: String,
}

/// Everything the layout file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Backend ABI version the module read from the doorbell.
    pub version: u32,
    /// Doorbell `FEATURES`.
    pub features: u32,
    /// The regions.
    pub regions: Vec<Region>,
    /// The frontends, by index.
    pub frontends: Vec<Frontend>,
    /// The devices.
    pub devices: Vec<Device>,
}

/// Why a layout was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError {
    /// 1-based line number, 0 for the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.what)
        } else {
            write!(f, "line {}: {}", self.line, self.what)
        }
    }
}

/// The `key=value` words of one line (the first word is the line kind).
struct Fields<'a> {
    line: usize,
    words: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    fn err(&self, what: impl Into<String>) -> LayoutError {
        LayoutError {
            line: self.line,
            what: what.into(),
        }
    }

    fn get(&self, key: &str) -> Result<&'a str, LayoutError> {
        self.words
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.err(format!("no {key}=")))
    }

    fn num(&self, key: &str) -> Result<u64, LayoutError> {
        let v = self.get(key)?;
        number(v).ok_or_else(|| self.err(format!("{key}={v} is not a number")))
    }

    fn u32(&self, key: &str) -> Result<u32, LayoutError> {
        let n = self.num(key)?;
        u32::try_from(n).map_err(|_| self.err(format!("{key}={n} is too large")))
    }
}

/// Parses a number in decimal or with a `0x` prefix.
pub fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Splits `key=value` words; a word without `=` is kept with an empty value.
fn fields(line: usize, words: &str) -> Fields<'_> {
    Fields {
        line,
        words: words
            .split_ascii_whitespace()
            .map(|w| w.split_once('=').unwrap_or((w, "")))
            .collect(),
    }
}

impl Layout {
    /// Parses and checks the layout text.
    pub fn parse(text: &str) -> Result<Self, LayoutError> {
        let mut abi = None;
        let (mut regions, mut frontends, mut devices) = (Vec::new(), Vec::new(), Vec::new());
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let raw = raw.trim_end();
            let (kind, rest) = raw.split_once(' ').unwrap_or((raw, ""));
            match kind {
                "abi" => {
                    let f = fields(line, rest);
                    if abi.is_some() {
                        return Err(f.err("a second abi line"));
                    }
                    abi = Some((f.u32("version")?, f.u32("features")?));
                }
                "region" => regions.push(parse_region(line, rest)?),
                "frontend" => frontends.push(parse_frontend(line, rest)?),
                "device" => devices.push(parse_device(line, rest)?),
                _ => {}
            }
        }
        let (version, features) = abi.ok_or(LayoutError {
            line: 0,
            what: "no abi line".into(),
        })?;
        frontends.sort_by_key(|f: &Frontend| f.index);
        let layout = Layout {
            version,
            features,
            regions,
            frontends,
            devices,
        };
        layout.check()?;
        Ok(layout)
    }

    /// Checks what no single line can: one doorbell, every frontend's ioreq page mapped, every
    /// device's frontend known, device indices unique.
    fn check(&self) -> Result<(), LayoutError> {
        let whole = |what: String| LayoutError { line: 0, what };
        let doorbells = self
            .regions
            .iter()
            .filter(|r| r.kind == RegionKind::Doorbell)
            .count();
        if doorbells != 1 || self.region(RegionKind::Doorbell, None).is_none() {
            return Err(whole(format!(
                "{doorbells} doorbell regions (want one, type=device, 4 KiB or more)"
            )));
        }
        for (i, f) in self.frontends.iter().enumerate() {
            if self.frontends[..i].iter().any(|g| g.index == f.index) {
                return Err(whole(format!("frontend {} listed twice", f.index)));
            }
            let page = self.regions.iter().any(|r| {
                r.kind == RegionKind::Ioreq && r.frontend == Some(f.index) && r.phys == f.ioreq
            });
            if !page {
                return Err(whole(format!(
                    "frontend {}: no ioreq region at {:#x}",
                    f.index, f.ioreq
                )));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].iter().any(|e| e.index == d.index) {
                return Err(whole(format!("device {} listed twice", d.index)));
            }
            if !self.frontends.iter().any(|f| f.index == d.frontend) {
                return Err(whole(format!(
                    "device {}: frontend {} is not in the layout",
                    d.index, d.frontend
                )));
            }
        }
        Ok(())
    }

    /// Returns the region of `kind` (and frontend), the first if several.
    pub fn region(&self, kind: RegionKind, frontend: Option<u32>) -> Option<&Region> {
        self.regions.iter().find(|r| {
            r.kind == kind
                && r.frontend == frontend
                && r.size >= 0x1000
                && r.device_memory == (kind == RegionKind::Doorbell)
        })
    }

    /// Returns frontend `index`'s RAM banks.
    pub fn ram(&self, frontend: u32) -> impl Iterator<Item = &Region> {
        self.regions
            .iter()
            .filter(move |r| r.kind == RegionKind::Ram && r.frontend == Some(frontend))
    }
}

fn parse_region(line: usize, rest: &str) -> Result<Region, LayoutError> {
    let (kind_word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let f = fields(line, rest);
    let kind = match kind_word {
        "doorbell" => RegionKind::Doorbell,
        "ioreq" => RegionKind::Ioreq,
        "transport" => RegionKind::Transport,
        "notify" => RegionKind::Notify,
        "ram" => RegionKind::Ram,
        other => return Err(f.err(format!("unknown region kind {other:?}"))),
    };
    let frontend = match f.get("frontend")? {
        "-1" => None,
        v => Some(
            number(v)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n < MAX_FRONTENDS)
                .ok_or_else(|| f.err(format!("frontend={v} is not -1 or 0..7")))?,
        ),
    };
    let (phys, size, gpa) = (f.num("phys")?, f.num("size")?, f.num("gpa")?);
    let device_memory = match f.get("type")? {
        "device" => true,
        "wb" | "ram" => false,
        other => return Err(f.err(format!("type={other} is not device or wb"))),
    };
    if size == 0 || phys % 0x1000 != 0 || size % 0x1000 != 0 || phys.checked_add(size).is_none() {
        return Err(f.err(format!("[{phys:#x}, +{size:#x}) is not whole pages")));
    }
    if gpa.checked_add(size).is_none() {
        return Err(f.err(format!("gpa={gpa:#x} + size wraps")));
    }
    if (kind == RegionKind::Ioreq || kind == RegionKind::Ram) != frontend.is_some() {
        return Err(f.err(format!("a {kind_word} region with frontend={frontend:?}")));
    }
    Ok(Region {
        kind,
        frontend,
        phys,
        size,
        gpa,
        device_memory,
    })
}

fn parse_frontend(line: usize, rest: &str) -> Result<Frontend, LayoutError> {
    let (index, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let f = fields(line, rest);
    let index = number(index)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n < MAX_FRONTENDS)
        .ok_or_else(|| f.err(format!("frontend index {index:?} is not 0..7")))?;
    let vcpus = f.u32("vcpus")?;
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(f.err(format!("vcpus={vcpus} is not 1..{MAX_VCPUS}")));
    }
    Ok(Frontend {
        index,
        vcpus,
        ioreq: f.num("ioreq")?,
        name: f.get("name").unwrap_or("?").to_string(),
    })
}

fn parse_device(line: usize, rest: &str) -> Result<Device, LayoutError> {
    // args= is the rest of the line (it may hold spaces).
    let (head, args) = rest
        .split_once(" args=")
        .ok_or_else(|| fields(line, rest).err("no args="))?;
    let (index, rest) = head.split_once(' ').unwrap_or((head, ""));
    let f = fields(line, rest);
    let index = number(index)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| f.err(format!("device index {index:?} is not a number")))?;
    let (mmio, size) = (f.num("mmio")?, f.num("size")?);
    if size == 0 || mmio.checked_add(size).is_none() {
        return Err(f.err(format!("mmio=[{mmio:#x}, +{size:#x}) is empty or wraps")));
    }
    let classic = match f.get("classic")? {
        "0" => false,
        "1" => true,
        other => return Err(f.err(format!("classic={other} is not 0 or 1"))),
    };
    Ok(Device {
        index,
        frontend: f.u32("frontend")?,
        mmio,
        size,
        classic,
        args: args.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The module's output for linux-backend-probe (docs/backend-abi.md).
    pub const PROBE: &str = "\
abi version=2 features=0x1 irq=13
region doorbell frontend=-1 phys=0x3e000000 size=0x1000 gpa=0x0 type=device
region transport frontend=-1 phys=0x3e009000 size=0x1000 gpa=0x0 type=wb
region notify frontend=-1 phys=0x3e00a000 size=0x1000 gpa=0x0 type=wb
region ioreq frontend=0 phys=0x3e001000 size=0x1000 gpa=0x0 type=wb
region ram frontend=0 phys=0x1040000000 size=0x4000000 gpa=0x40000000 type=wb
frontend 0 vcpus=1 ioreq=0x3e001000 window=0x1000000000 window-size=0x1000000000 name=domU1
device 0 frontend=0 mmio=0x2000000 size=0x200 classic=1 args=virtio-blk size=4M id=a b
device 1 frontend=0 mmio=0x2000200 size=0x200 classic=0 args=virtio-rng
";

    #[test]
    fn parses_the_modules_output() {
        let l = Layout::parse(PROBE).unwrap();
        assert_eq!((l.version, l.features), (2, 1));
        assert_eq!(l.regions.len(), 5);
        let ram: Vec<_> = l.ram(0).collect();
        assert_eq!(ram.len(), 1);
        assert_eq!(
            (ram[0].phys, ram[0].size, ram[0].gpa),
            (0x10_4000_0000, 0x400_0000, 0x4000_0000)
        );
        assert_eq!(l.frontends[0].name, "domU1");
        assert_eq!(l.devices[0].args, "virtio-blk size=4M id=a b");
        assert!(l.devices[0].classic && !l.devices[1].classic);
        assert!(l.region(RegionKind::Doorbell, None).unwrap().device_memory);
        assert_eq!(
            l.region(RegionKind::Notify, None).unwrap().phys,
            0x3e00_a000
        );
    }

    #[test]
    fn unknown_lines_and_keys_are_skipped() {
        let text = format!("{PROBE}future thing=1\n").replace("irq=13", "irq=13 new=7");
        assert_eq!(Layout::parse(&text).unwrap(), Layout::parse(PROBE).unwrap());
    }

    fn refused(text: &str) -> LayoutError {
        Layout::parse(text).unwrap_err()
    }

    #[test]
    fn every_malformed_layout_is_refused_with_its_line() {
        let e = refused("");
        assert_eq!(e.to_string(), "no abi line");
        let e = refused(&PROBE.replace("version=2", "version=two"));
        assert_eq!(e.to_string(), "line 1: version=two is not a number");
        let e = refused(&PROBE.replace("size=0x4000000", "size=0x4000001"));
        assert_eq!(e.line, 6);
        assert!(e.what.contains("not whole pages"), "{e}");
        let e = refused(&PROBE.replace("type=device", "type=weird"));
        assert_eq!(e.to_string(), "line 2: type=weird is not device or wb");
        let e = refused(&PROBE.replace("vcpus=1", "vcpus=0"));
        assert_eq!(e.to_string(), "line 7: vcpus=0 is not 1..128");
        let e = refused(&PROBE.replace("classic=0 args", "classic=2 args"));
        assert_eq!(e.to_string(), "line 9: classic=2 is not 0 or 1");
        let e = refused(&PROBE.replace(" args=virtio-rng", ""));
        assert_eq!(e.to_string(), "line 9: no args=");
        let e = refused(&PROBE.replace("region doorbell", "region bell"));
        assert_eq!(e.to_string(), "line 2: unknown region kind \"bell\"");
        let e = refused(&PROBE.replace("phys=0x3e001000 size", "phys=0x3e002000 size"));
        assert_eq!(e.to_string(), "frontend 0: no ioreq region at 0x3e001000");
        let e = refused(&PROBE.replace("device 1 frontend=0", "device 1 frontend=3"));
        assert_eq!(e.to_string(), "device 1: frontend 3 is not in the layout");
        let e = refused(&PROBE.replace("device 1 ", "device 0 "));
        assert_eq!(e.to_string(), "device 0 listed twice");
        let e = refused(
            &PROBE
                .replace("region doorbell", "region doorbell x")
                .replace("type=device", "type=wb"),
        );
        assert!(e.what.contains("doorbell regions"), "{e}");
        let e = refused(&format!("{PROBE}abi version=1 features=0\n"));
        assert_eq!(e.to_string(), "line 10: a second abi line");
    }
}
