//! The device models this backend offers and how `rust-ioreq,args` selects them
//! (docs/binding.md `xen,backend-args`): `virtio-blk [size=<n>[K|M|G]] [id=<text>]` is a RAM
//! disk (virtio 1.2 §5.2; default 4 MiB), `virtio-rng [seed=<n>]` an entropy device (§5.4) fed
//! by a seeded, *non-cryptographic* generator (default seed: the counter at boot, mixed with the
//! device index).
//!
//! RAM disks are carved from this guest's free RAM: the part of its first memory bank after the
//! image (code, data, .bss, stacks) and before the device tree Xen placed there.

use virtio_device::queue::Queue;
use virtio_device::{Blk, GuestMemory, Logger, QueueError, Rng, VirtioDevice};

/// The default RAM disk size.
const DEFAULT_DISK: usize = 4 << 20;
/// Longest GET_ID string.
const ID_LEN: usize = 20;

/// A device model, chosen by the device's args.
#[derive(Debug)]
pub enum Model {
    /// virtio-blk over a RAM disk.
    Blk(Blk<'static>),
    /// virtio-rng.
    Rng(Rng),
}

impl Model {
    /// Returns the kind's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Blk(_) => "virtio-blk",
            Model::Rng(_) => "virtio-rng",
        }
    }
}

impl VirtioDevice for Model {
    fn device_id(&self) -> u32 {
        match self {
            Model::Blk(d) => d.device_id(),
            Model::Rng(d) => d.device_id(),
        }
    }

    fn features(&self) -> u64 {
        match self {
            Model::Blk(d) => d.features(),
            Model::Rng(d) => d.features(),
        }
    }

    fn num_queues(&self) -> usize {
        match self {
            Model::Blk(d) => d.num_queues(),
            Model::Rng(d) => d.num_queues(),
        }
    }

    fn queue_max_size(&self, index: usize) -> u16 {
        match self {
            Model::Blk(d) => d.queue_max_size(index),
            Model::Rng(d) => d.queue_max_size(index),
        }
    }

    fn config_len(&self) -> usize {
        match self {
            Model::Blk(d) => d.config_len(),
            Model::Rng(d) => d.config_len(),
        }
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        match self {
            Model::Blk(d) => d.read_config(offset, data),
            Model::Rng(d) => d.read_config(offset, data),
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) -> bool {
        match self {
            Model::Blk(d) => d.write_config(offset, data),
            Model::Rng(d) => d.write_config(offset, data),
        }
    }

    fn activate(&mut self, features: u64) {
        match self {
            Model::Blk(d) => d.activate(features),
            Model::Rng(d) => d.activate(features),
        }
    }

    fn reset(&mut self) {
        match self {
            Model::Blk(d) => d.reset(),
            Model::Rng(d) => d.reset(),
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
            Model::Blk(d) => d.process_queue(index, queue, mem, log),
            Model::Rng(d) => d.process_queue(index, queue, mem, log),
        }
    }
}

/// What a device's args ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A RAM disk of `size` bytes answering GET_ID with `id`.
    Blk {
        /// Disk size in bytes (a non-zero multiple of 512).
        size: usize,
        /// GET_ID answer, if given.
        id: Option<&'static str>,
    },
    /// An entropy device with this seed, if given.
    Rng {
        /// Generator seed.
        seed: Option<u64>,
    },
}

/// Parses a number in decimal or with a `0x` prefix.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses `<n>[K|M|G]` (binary units) into bytes.
fn size(s: &str) -> Option<usize> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    usize::try_from(number(digits)?)
        .ok()?
        .checked_mul(1 << shift)
}

/// Parses a device's args, or says what is wrong with them.
pub fn parse(args: &'static str) -> Result<Spec, &'static str> {
    let mut words = args.split_ascii_whitespace();
    match words.next() {
        Some("virtio-blk") => {
            let (mut disk, mut id) = (DEFAULT_DISK, None);
            for w in words {
                if let Some(v) = w.strip_prefix("size=") {
                    disk = size(v).ok_or("size= is not <n>[K|M|G]")?;
                } else if let Some(v) = w.strip_prefix("id=") {
                    id = Some(v);
                } else {
                    return Err("unknown virtio-blk option");
                }
            }
            if disk == 0 || disk % 512 != 0 {
                return Err("disk size is not a non-zero multiple of 512");
            }
            if id.is_some_and(|i| i.len() > ID_LEN) {
                return Err("id= longer than 20 bytes");
            }
            Ok(Spec::Blk { size: disk, id })
        }
        Some("virtio-rng") => {
            let mut seed = None;
            for w in words {
                match w.strip_prefix("seed=") {
                    Some(v) => seed = Some(number(v).ok_or("seed= is not a number")?),
                    None => return Err("unknown virtio-rng option"),
                }
            }
            Ok(Spec::Rng { seed })
        }
        Some(_) => Err("unknown device kind (this backend has virtio-blk and virtio-rng)"),
        None => Err("empty args"),
    }
}

/// Free RAM of this guest, handed out once and never returned.
#[derive(Debug)]
pub struct Pool {
    next: usize,
    end: usize,
}

impl Pool {
    /// Creates the pool over `[start, end)`.
    ///
    /// # Safety
    /// `[start, end)` must be RAM of this guest that nothing else uses for the rest of its life:
    /// not its image, .bss or stacks, not the device tree, not anything Xen placed there.
    pub unsafe fn new(start: usize, end: usize) -> Self {
        Self {
            next: start,
            end: end.max(start),
        }
    }

    /// Returns the bytes left.
    pub fn left(&self) -> usize {
        self.end - self.next
    }

    /// Takes `len` zeroed bytes, 4 KiB aligned, or `None` if too few are left.
    pub fn take(&mut self, len: usize) -> Option<&'static mut [u8]> {
        let start = self.next.checked_add(0xfff)? & !0xfff;
        let end = start.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        // SAFETY: `[start, end)` is inside the range `Pool::new` was promised nothing else uses,
        // and the pool never hands out the same byte twice, so this is the only reference to it.
        let bytes = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, len) };
        // Xen does not scrub a domain's RAM at boot (bootscrub=0): start from zeros.
        bytes.fill(0);
        Some(bytes)
    }
}

/// Builds the model `spec` asks for; `index` and `boot_ticks` make the default seed and ID.
pub fn build(
    spec: Spec,
    index: u32,
    boot_ticks: u64,
    pool: &mut Pool,
) -> Result<Model, &'static str> {
    match spec {
        Spec::Blk { size, id } => {
            let disk = pool
                .take(size)
                .ok_or("not enough free RAM in the backend for the disk")?;
            // Blk copies the ID, so a local buffer will do.
            let mut id_buf = [0u8; ID_LEN];
            let id: &[u8] = match id {
                Some(id) => id.as_bytes(),
                None => {
                    // "rust-ioreq-dev<n>"
                    let prefix = b"rust-ioreq-dev";
                    id_buf[..prefix.len()].copy_from_slice(prefix);
                    let mut len = prefix.len();
                    let mut digits = [0u8; 10];
                    let mut n = index;
                    let mut d = 0;
                    loop {
                        digits[d] = b'0' + (n % 10) as u8;
                        d += 1;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    while d > 0 && len < ID_LEN {
                        d -= 1;
                        id_buf[len] = digits[d];
                        len += 1;
                    }
                    &id_buf[..len]
                }
            };
            Blk::new(disk, id)
                .map(Model::Blk)
                .map_err(|_| "bad disk size")
        }
        Spec::Rng { seed } => {
            let seed = seed.unwrap_or(boot_ticks ^ (u64::from(index) << 56));
            Ok(Model::Rng(Rng::new(seed)))
        }
    }
}
