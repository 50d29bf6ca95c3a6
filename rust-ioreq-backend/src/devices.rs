//! The device models this daemon serves and how a device's `rust-ioreq,args` (the layout's
//! `args=`) and the command line's `--disk` select them: `virtio-blk [size=<n>[K|M|G]]
//! [id=<text>]` over the file or block device `--disk <index>=<path>[:ro]` names (`size=`, when
//! given, must be the disk's size), and `virtio-rng [seed=<n>]` fed by `getrandom()` (a seed is
//! accepted for compatibility with the reference backend's args, and unused). A device that
//! `--vhost-user <index>=<socket>` names is served by that vhost-user backend daemon instead
//! (`vhost.rs`): `virtio-rng`, or `virtio-vsock`, which only a vhost-user daemon serves.

use virtio_device::queue::Queue;
use virtio_device::{Blk, Entropy, GuestMemory, Logger, QueueError, Rng, VirtioDevice};

use crate::disk::FileDisk;
use crate::layout::{self, number};
use crate::vhost::{self, VhostUser};

/// Longest GET_ID string.
const ID_LEN: usize = 20;

/// A `--disk` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskArg {
    /// The device index it backs.
    pub index: u32,
    /// File or block device.
    pub path: String,
    /// `:ro`.
    pub read_only: bool,
}

/// What a device's args ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A disk, of this size if given, answering GET_ID with `id`.
    Blk {
        /// `size=` in bytes.
        size: Option<u64>,
        /// `id=`.
        id: Option<String>,
    },
    /// An entropy device.
    Rng,
    /// A socket device (only through a vhost-user backend daemon).
    Vsock,
}

/// Parses `<n>[K|M|G]` (binary units) into bytes.
fn size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    number(digits)?.checked_mul(1 << shift)
}

/// Parses a device's args, or says what is wrong with them.
pub fn parse(args: &str) -> Result<Spec, String> {
    let mut words = args.split_ascii_whitespace();
    match words.next() {
        Some("virtio-blk") => {
            let (mut disk, mut id) = (None, None);
            for w in words {
                if let Some(v) = w.strip_prefix("size=") {
                    disk = Some(size(v).ok_or_else(|| format!("size={v} is not <n>[K|M|G]"))?);
                } else if let Some(v) = w.strip_prefix("id=") {
                    if v.len() > ID_LEN {
                        return Err(format!("id={v} is longer than {ID_LEN} bytes"));
                    }
                    id = Some(v.to_string());
                } else {
                    return Err(format!("unknown virtio-blk option {w:?} (size=, id=)"));
                }
            }
            Ok(Spec::Blk { size: disk, id })
        }
        Some("virtio-rng") => {
            for w in words {
                let seed = w.strip_prefix("seed=").and_then(number);
                if seed.is_none() {
                    return Err(format!("unknown virtio-rng option {w:?} (seed=)"));
                }
            }
            Ok(Spec::Rng)
        }
        Some("virtio-vsock") => match words.next() {
            None => Ok(Spec::Vsock),
            Some(w) => Err(format!("unknown virtio-vsock option {w:?} (none)")),
        },
        Some(kind) => Err(format!(
            "unknown device kind {kind:?} (this daemon serves virtio-blk, virtio-rng and, through vhost-user, virtio-vsock)"
        )),
        None => Err("empty args".into()),
    }
}

/// A device model.
#[derive(Debug)]
pub enum Model {
    /// virtio-blk over a disk file; `what` describes the disk for messages.
    Blk {
        /// The device.
        blk: Blk<'static>,
        /// "<path> (<n> sectors, read-only|read-write)".
        what: String,
    },
    /// virtio-rng.
    Rng(Rng<Box<dyn EntropyDebug>>),
    /// A device served by a vhost-user backend daemon.
    VhostUser(VhostUser),
}

/// An [`Entropy`] source that can be printed (so that [`Model`] can derive `Debug`).
pub trait EntropyDebug: Entropy + std::fmt::Debug {}
impl<T: Entropy + std::fmt::Debug> EntropyDebug for T {}

impl Entropy for Box<dyn EntropyDebug> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), i32> {
        (**self).fill(buf)
    }
}

impl Model {
    /// Returns the kind's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Blk { .. } => "virtio-blk",
            Model::Rng(_) => "virtio-rng",
            Model::VhostUser(v) => v.kind().name(),
        }
    }

    /// Describes the model for the start-up lines.
    pub fn describe(&self) -> String {
        match self {
            Model::Blk { what, .. } => format!("virtio-blk, disk {what}"),
            Model::Rng(_) => "virtio-rng, getrandom()".into(),
            Model::VhostUser(v) => v.describe(),
        }
    }
}

/// Connects device `.0` (of this type) to the vhost-user backend daemon at socket `.2`.
pub type Connect<'c> = dyn Fn(&layout::Device, vhost::Kind, &str) -> Result<VhostUser, String> + 'c;

/// Builds the model of every device of the layout, in layout order, opening the disks and
/// connecting to the vhost-user sockets the command line names; the first problem is the
/// error (naming the device).
pub fn build(
    devices: &[layout::Device],
    disks: &[DiskArg],
    vhost_users: &[(u32, String)],
    entropy: &dyn Fn() -> Box<dyn EntropyDebug>,
    connect: &Connect<'_>,
) -> Result<Vec<Model>, String> {
    for (index, _) in vhost_users {
        if !devices.iter().any(|dev| dev.index == *index) {
            return Err(format!(
                "--vhost-user {index}=...: no device {index} in the layout"
            ));
        }
    }
    for d in disks {
        match devices.iter().find(|dev| dev.index == d.index) {
            None => {
                return Err(format!(
                    "--disk {}=...: no device {} in the layout",
                    d.index, d.index
                ))
            }
            Some(dev) if !matches!(parse(&dev.args), Ok(Spec::Blk { .. })) => {
                return Err(format!(
                    "--disk {}=...: device {} is not a virtio-blk (args {:?})",
                    d.index, d.index, dev.args
                ))
            }
            Some(_) => {}
        }
    }
    devices
        .iter()
        .map(|dev| {
            let spec = parse(&dev.args)
                .map_err(|e| format!("device {}: args {:?}: {e}", dev.index, dev.args))?;
            let socket = vhost_users.iter().find(|(i, _)| *i == dev.index);
            match (spec, socket) {
                (Spec::Blk { .. }, Some(_)) => Err(format!(
                    "device {}: --vhost-user bridges virtio-rng and virtio-vsock, not virtio-blk",
                    dev.index
                )),
                (Spec::Rng, Some((_, path))) => connect(dev, vhost::Kind::Rng, path)
                    .map(Model::VhostUser)
                    .map_err(|e| format!("device {}: {e}", dev.index)),
                (Spec::Vsock, Some((_, path))) => connect(dev, vhost::Kind::Vsock, path)
                    .map(Model::VhostUser)
                    .map_err(|e| format!("device {}: {e}", dev.index)),
                (Spec::Vsock, None) => Err(format!(
                    "device {} is a virtio-vsock: this daemon serves it only through a vhost-user backend daemon (--vhost-user {}=<socket>)",
                    dev.index, dev.index
                )),
                (Spec::Blk { size, id }, None) => blk(dev.index, size, id, disks),
                (Spec::Rng, None) => Ok(Model::Rng(Rng::with_source(entropy()))),
            }
        })
        .collect()
}

/// Opens device `index`'s disk and makes its virtio-blk.
fn blk(
    index: u32,
    size: Option<u64>,
    id: Option<String>,
    disks: &[DiskArg],
) -> Result<Model, String> {
    let arg = disks.iter().find(|d| d.index == index).ok_or_else(|| {
        format!("device {index} is a virtio-blk: name its disk with --disk {index}=<path>[:ro]")
    })?;
    let disk = FileDisk::open(&arg.path, arg.read_only)
        .map_err(|e| format!("device {index}: cannot use disk {}: {e}", arg.path))?;
    let len = virtio_device::Disk::size(&disk);
    if let Some(want) = size.filter(|&s| s != len) {
        return Err(format!(
            "device {index}: args say size={want} bytes but disk {} has {len}",
            arg.path
        ));
    }
    let what = format!(
        "{} ({} sectors, {})",
        arg.path,
        len / 512,
        if arg.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    let id = id.unwrap_or_else(|| format!("rust-ioreq-dev{index}"));
    // The device lives as long as the daemon: the disk is leaked on purpose.
    let disk: &'static mut FileDisk = Box::leak(Box::new(disk));
    let blk = Blk::with_disk(disk, id.as_bytes())
        .map_err(|e| format!("device {index}: disk {}: {e:?}", arg.path))?;
    Ok(Model::Blk { blk, what })
}

impl VirtioDevice for Model {
    fn device_id(&self) -> u32 {
        match self {
            Model::Blk { blk, .. } => blk.device_id(),
            Model::Rng(d) => d.device_id(),
            Model::VhostUser(v) => v.device_id(),
        }
    }

    fn features(&self) -> u64 {
        match self {
            Model::Blk { blk, .. } => blk.features(),
            Model::Rng(d) => d.features(),
            Model::VhostUser(v) => v.features(),
        }
    }

    fn num_queues(&self) -> usize {
        match self {
            Model::Blk { blk, .. } => blk.num_queues(),
            Model::Rng(d) => d.num_queues(),
            Model::VhostUser(v) => v.num_queues(),
        }
    }

    fn queue_max_size(&self, index: usize) -> u16 {
        match self {
            Model::Blk { blk, .. } => blk.queue_max_size(index),
            Model::Rng(d) => d.queue_max_size(index),
            Model::VhostUser(v) => v.queue_max_size(index),
        }
    }

    fn config_len(&self) -> usize {
        match self {
            Model::Blk { blk, .. } => blk.config_len(),
            Model::Rng(d) => d.config_len(),
            Model::VhostUser(v) => v.config_len(),
        }
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        match self {
            Model::Blk { blk, .. } => blk.read_config(offset, data),
            Model::Rng(d) => d.read_config(offset, data),
            Model::VhostUser(v) => v.read_config(offset, data),
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        match self {
            Model::Blk { blk, .. } => blk.write_config(offset, data),
            Model::Rng(d) => d.write_config(offset, data),
            Model::VhostUser(v) => v.write_config(offset, data),
        }
    }

    fn activate(&mut self, features: u64) {
        match self {
            Model::Blk { blk, .. } => blk.activate(features),
            Model::Rng(d) => d.activate(features),
            Model::VhostUser(v) => v.activate(features),
        }
    }

    fn driver_ok(&mut self, queues: &[Queue]) {
        if let Model::VhostUser(v) = self {
            v.driver_ok(queues);
        }
    }

    fn reset(&mut self) {
        match self {
            Model::Blk { blk, .. } => blk.reset(),
            Model::Rng(d) => d.reset(),
            Model::VhostUser(v) => v.reset(),
        }
    }

    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        log: &mut dyn Logger,
    ) -> Result<(), QueueError> {
        match self {
            Model::Blk { blk, .. } => blk.process_queue(index, queue, mem, log),
            Model::Rng(d) => d.process_queue(index, queue, mem, log),
            Model::VhostUser(v) => v.process_queue(index, queue, mem, log),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn args_are_parsed_or_refused_with_a_reason() {
        assert_eq!(
            parse("virtio-blk size=8M id=disk-a").unwrap(),
            Spec::Blk {
                size: Some(8 << 20),
                id: Some("disk-a".into())
            }
        );
        assert_eq!(parse("virtio-rng seed=0x12").unwrap(), Spec::Rng);
        assert_eq!(
            parse("virtio-net").unwrap_err(),
            "unknown device kind \"virtio-net\" (this daemon serves virtio-blk, virtio-rng and, through vhost-user, virtio-vsock)"
        );
        assert!(parse("virtio-blk size=8Q").unwrap_err().contains("size=8Q"));
        assert!(parse("virtio-blk cache=none")
            .unwrap_err()
            .contains("cache=none"));
        assert!(parse("virtio-rng seed=x").is_err());
        assert_eq!(parse("  ").unwrap_err(), "empty args");
    }
}
