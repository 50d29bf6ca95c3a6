//! The lines Xen prints about the configuration at boot, formatted once here so that Xen
//! (`arch/src/entry.rs`) and the host checker (`tools/rust-ioreq-check`) print the same text.
//!
//! Each type is the text after Xen's `(XEN) ` console prefix; all but [`Banner`] also come
//! after `arch/`'s `rust-ioreq: ` log prefix ([`LOG_PREFIX`]).

use core::fmt;

use crate::abi::backend_layout;
use crate::config::{Config, ConfigError, Device};
use crate::types::DomId;

/// What `arch/`'s `log!` puts before each line.
pub const LOG_PREFIX: &str = "rust-ioreq: ";
/// The text of Xen's panic after a configuration error (xen-patches, `start_xen()`).
pub const PANIC_TEXT: &str =
    "rust-ioreq: invalid configuration in the host device tree (see above)";

/// `rust-ioreq v<version> ready: <n> xen,virtio-mmio-device node(s) in /chosen`, printed once
/// the configuration is accepted (no log prefix: it starts with the component's name).
#[derive(Clone, Copy, Debug)]
pub struct Banner<'a>(pub &'a Config);

impl fmt::Display for Banner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rust-ioreq v{} ready: {} xen,virtio-mmio-device node(s) in /chosen",
            crate::VERSION,
            self.0.devices().len()
        )
    }
}

/// `<frontend>/<device>: <region> SPI <n> -> backend <backend> device <i> "<args>"`, one per
/// device after the banner.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLine<'a>(pub &'a Config, pub &'a Device);

impl fmt::Display for DeviceLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (config, d) = (self.0, self.1);
        let fe = &config.domains()[usize::from(d.frontend)];
        let be = &config.domains()[usize::from(d.backend)];
        write!(
            f,
            "{}/{}: {} SPI {} -> backend {} device {} \"{}\"{}",
            fe.name,
            d.name,
            d.mmio,
            d.spi.0,
            be.name,
            d.index_in_backend,
            d.args,
            if d.classic { " (classic)" } else { "" }
        )
    }
}

/// `<backend> (d<domid>) serves <n> frontend(s), notify SPI <n>, timeout <ms> ms`, when Xen
/// creates backend `index` (a domain index).
#[derive(Clone, Copy, Debug)]
pub struct BackendLine<'a>(pub &'a Config, pub usize, pub DomId);

impl fmt::Display for BackendLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0.domains()[self.1];
        let (frontends, spi, timeout, poll) = d.backend.map_or((0, 0, 0, 0), |b| {
            (b.frontends.len(), b.notify_spi.0, b.timeout_ms, b.poll_us)
        });
        write!(
            f,
            "{} (d{}) serves {} frontend(s), notify SPI {}, timeout {} ms",
            d.name, self.2 .0, frontends, spi, timeout
        )?;
        if poll > 0 {
            write!(f, ", spins up to {poll} us while it polls")?;
        }
        Ok(())
    }
}

/// `<backend>: RAM of <frontend> mapped at <window>`, when Xen maps frontend `k`'s RAM window
/// into backend `index` (a domain index).
#[derive(Clone, Copy, Debug)]
pub struct WindowLine<'a>(pub &'a Config, pub usize, pub usize);

impl fmt::Display for WindowLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (config, b, k) = (self.0, self.1, self.2);
        let be = &config.domains()[b];
        let fe = be
            .backend
            .and_then(|x| x.frontends.as_slice().get(k).copied())
            .map(|f| config.domains()[usize::from(f)].name);
        write!(
            f,
            "{}: RAM of {} mapped at {:#x}",
            be.name,
            fe.unwrap_or_default(),
            backend_layout::window(k)
        )
    }
}

/// `invalid configuration: <error>`, the line before Xen's panic.
#[derive(Clone, Copy, Debug)]
pub struct InvalidConfig<'a>(pub &'a ConfigError);

impl fmt::Display for InvalidConfig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}
