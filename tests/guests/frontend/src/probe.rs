//! Probing a `virtio,mmio` node (virtio 1.2 §4.2.2, §4.2.3.1.1): MagicValue first through the
//! expected-fault facility, so a window nothing answers gives a FAIL line with the abort's
//! syndrome instead of a crash, then virtio-drivers' `MmioTransport` reads MagicValue, Version and
//! DeviceID itself.

use core::ptr::NonNull;

use guest_common::exception;
use guest_common::scenario;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::dt::VirtioNode;
use crate::name;

/// MagicValue: "virt" little endian.
pub const MAGIC: u32 = 0x7472_6976;
/// Smallest window that holds the registers and some configuration space (0x100 + 4).
const MIN_WINDOW: usize = 0x104;

/// Returns the short name of a device type (`blk`, `rng`, ...), as `frontend.expect` uses it.
pub fn kind(t: DeviceType) -> &'static str {
    match t {
        DeviceType::Block => "blk",
        DeviceType::EntropySource => "rng",
        DeviceType::Network => "net",
        DeviceType::Console => "console",
        _ => "other",
    }
}

/// Probes `node`; reports `probe@<base>` PASS with what it found, or FAIL with why, and returns
/// the transport of a device that answered.
pub fn probe(node: &VirtioNode) -> Option<MmioTransport<'static>> {
    let check = name!("probe@{:x}", node.base);
    let check = check.as_str();
    if node.size < MIN_WINDOW || !node.base.is_multiple_of(0x200) {
        scenario::check(
            check,
            false,
            format_args!(
                "bad register window {node}: want 0x200-aligned and >= {MIN_WINDOW:#x} bytes"
            ),
        );
        return None;
    }
    // SAFETY: `node.base` is the register window the device tree gives this guest for a
    // virtio-mmio device, 4-byte aligned (checked above); reading MagicValue has no side effect,
    // and if nothing answers the fault is caught and returned.
    match unsafe { exception::try_read_u32(node.base) } {
        Err(fault) => {
            scenario::check(
                check,
                false,
                format_args!(
                    "reading MagicValue at {:#x} took an exception: {fault}",
                    node.base
                ),
            );
            return None;
        }
        Ok(magic) if magic != MAGIC => {
            scenario::check(
                check,
                false,
                format_args!("MagicValue {magic:#010x}, want {MAGIC:#010x}"),
            );
            return None;
        }
        Ok(_) => {}
    }
    let header = NonNull::new(node.base as *mut VirtIOHeader)?;
    // SAFETY: the device tree says `[base, base + size)` is a virtio-mmio register window of this
    // guest, 0x200-aligned, and it answered with the magic value; nothing else in the guest
    // accesses it (each node is probed once and its transport owned by one driver).
    match unsafe { MmioTransport::new(header, node.size) } {
        Ok(transport) => {
            let device = transport.device_type();
            scenario::check(
                check,
                true,
                format_args!(
                    "virtio-mmio version {:?}, device id {} ({}), vendor {:#x}, {node}",
                    transport.version(),
                    device as u8,
                    kind(device),
                    transport.vendor_id()
                ),
            );
            Some(transport)
        }
        Err(e) => {
            scenario::check(check, false, format_args!("MmioTransport::new: {e}"));
            None
        }
    }
}
