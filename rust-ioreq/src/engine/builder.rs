//! The engine's boot phase: collects the domids Xen gives the configured domains while it
//! creates them, then freezes everything into an [`Engine`].

use alloc::boxed::Box;
use core::fmt;

use crate::config::{Config, MAX_DEVICES, MAX_DOMAINS};
use crate::fixed::Table;
use crate::platform::DomainIndex;
use crate::types::DomId;

use super::{Engine, Region, MAX_FRONTEND_VCPUS, NO_VCPU_BASE};

/// Why a domain Xen created cannot be bound to its configuration entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The entry was already bound to another domain: two nodes resolved to the same entry.
    AlreadyBound {
        /// The entry.
        index: DomainIndex,
        /// The domain bound first.
        first: DomId,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::AlreadyBound { first, .. } => {
                write!(f, "already bound to domain d{}", first.0)
            }
        }
    }
}

/// Why the engine cannot be frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// A domain of the configuration was never created by Xen.
    DomainNotCreated(DomainIndex),
    /// More frontend vCPUs than [`MAX_FRONTEND_VCPUS`].
    TooManyVcpus,
}

/// Collects what Xen tells at domain creation, then freezes into an [`Engine`].
#[derive(Debug)]
pub struct Builder {
    config: Box<Config>,
    domids: [Option<DomId>; MAX_DOMAINS],
}

impl Builder {
    /// Starts from a validated configuration.
    pub fn new(config: Box<Config>) -> Builder {
        Builder {
            config,
            domids: [None; MAX_DOMAINS],
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records that the domain whose node has the full path `path` (`/chosen/<name@unit>`, as
    /// Xen's `dt_node_full_name()` gives it) got `domid`. Returns its index, `None` for a
    /// domain the component has nothing to do with, or an error if its entry is taken.
    pub fn domain_created(
        &mut self,
        path: &str,
        domid: DomId,
    ) -> Result<Option<DomainIndex>, BindError> {
        let Some(index) = self.config.domain_index_by_path(path) else {
            return Ok(None);
        };
        if let Some(first) = self.domids[index] {
            return Err(BindError::AlreadyBound { index, first });
        }
        self.domids[index] = Some(domid);
        Ok(Some(index))
    }

    /// Returns the domid recorded for `index`.
    pub fn domid(&self, index: DomainIndex) -> Option<DomId> {
        self.domids.get(index).copied().flatten()
    }

    /// Freezes the tables. Every domain that serves or uses a device must have been created.
    pub fn freeze(self) -> Result<Box<Engine>, BuildError> {
        let mut regions: Table<Region, MAX_DEVICES> = Table::new();
        for (i, dev) in self.config.devices().iter().enumerate() {
            for d in [dev.frontend, dev.backend] {
                if self.domids[usize::from(d)].is_none() {
                    return Err(BuildError::DomainNotCreated(usize::from(d)));
                }
            }
            // Capacity matches MAX_DEVICES, which the configuration already enforces.
            let _ = regions.push(Region {
                frontend: dev.frontend,
                start: dev.mmio.start().0,
                end: dev.mmio.start().0 + dev.mmio.size(),
                device: i as u8,
            });
        }
        regions
            .as_mut_slice()
            .sort_unstable_by_key(|r| (r.frontend, r.start));

        let mut vcpu_base = [NO_VCPU_BASE; MAX_DOMAINS];
        let mut next = 0usize;
        for (i, dom) in self.config.domains().iter().enumerate() {
            if self
                .config
                .devices()
                .iter()
                .any(|d| usize::from(d.frontend) == i)
            {
                vcpu_base[i] = next as u16;
                next += dom.vcpus as usize;
                if next > MAX_FRONTEND_VCPUS {
                    return Err(BuildError::TooManyVcpus);
                }
            }
        }
        Ok(Box::new(Engine::new(
            self.config,
            &self.domids,
            regions,
            vcpu_base,
        )))
    }
}
