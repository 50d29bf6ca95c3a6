//! Serving the victim between attacks: find READY slots, answer reads with
//! [`contract::answer`], check that every store carries exactly [`contract::stored`] masked to
//! its width, ring `COMPLETE`. Attacks take requests out of this loop with [`Server::wait`] and
//! do something else with them.

use guest_common::gic::{self, IntId};
use guest_common::timer::{self, Deadline};

use crate::config::{Config, Device, Range};
use crate::contract;
use crate::doorbell::Doorbell;
use crate::slot::{Request, Slot, READY};

/// Longest sleep between two scans when nothing happens (a lost notify SPI costs this much).
const IDLE_MS: u64 = 20;

/// A request taken out of a slot.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    /// The frontend vCPU (= slot index).
    pub vcpu: u32,
    pub slot: Slot,
    pub req: Request,
    /// Index in this backend's device list of the device it is for, if any.
    pub device: Option<usize>,
    /// When it was found (virtual counter).
    pub seen: u64,
}

impl Taken {
    /// Returns the register offset in its device.
    pub fn offset(&self, server: &Server) -> u64 {
        self.device
            .map_or(0, |d| self.req.addr.wrapping_sub(server.devices[d].base))
    }
}

/// The first frontend of this backend and its devices.
pub struct Server {
    pub doorbell: Doorbell,
    pub notify: IntId,
    /// The frontend index k, its vCPUs and its ioreq page.
    pub k: u32,
    pub vcpus: u32,
    pub ioreq_page: u64,
    pub window: Range,
    pub ram: Range,
    /// Device register windows, in frontend address order.
    pub devices: [Range; 4],
    pub ndevices: usize,
    /// Device indices (`reg` of `device@n`), same order.
    pub indices: [u32; 4],
    /// Reads answered, stores checked, stores that carried the wrong value, per device.
    pub reads: [u64; 4],
    pub stores: [u64; 4],
    pub bad_stores: u64,
    pub first_bad_store: Option<(u64, u32, u64)>,
    /// Requests for no device, or malformed.
    pub strays: u64,
    /// COMPLETE writes Xen refused while serving normally.
    pub refused_completes: u64,
    /// Answer control reads with [`contract::DONE`], and whether one was.
    pub done_mode: bool,
    pub done_delivered: bool,
    /// Answer the next control read with [`contract::PAUSE`] and these milliseconds.
    pub pause_ms: Option<u16>,
}

impl Server {
    /// Builds the server of the first frontend in `config`.
    pub fn new(config: &Config, doorbell: Doorbell) -> Option<Server> {
        let fe = config.frontends().next()?;
        let mut devices = [Range::default(); 4];
        let mut indices = [0; 4];
        let mut mine: [Option<&Device>; 4] = [None; 4];
        let mut n = 0;
        for d in config.devices().filter(|d| d.frontend == 0) {
            *mine.get_mut(n)? = Some(d);
            n += 1;
        }
        // Sort by frontend address (insertion sort of a handful).
        for i in 1..n {
            let mut j = i;
            while j > 0 && mine[j - 1].map(|d| d.mmio.base) > mine[j].map(|d| d.mmio.base) {
                mine.swap(j - 1, j);
                j -= 1;
            }
        }
        for (i, d) in mine.iter().flatten().enumerate() {
            devices[i] = d.mmio;
            indices[i] = d.index;
        }
        Some(Server {
            doorbell,
            notify: config.notify,
            k: fe.index,
            vcpus: fe.vcpus,
            ioreq_page: fe.ioreq_page,
            window: fe.window,
            ram: fe.ram[0],
            devices,
            ndevices: n,
            indices,
            reads: [0; 4],
            stores: [0; 4],
            bad_stores: 0,
            first_bad_store: None,
            strays: 0,
            refused_completes: 0,
            done_mode: false,
            done_delivered: false,
            pause_ms: None,
        })
    }

    /// Returns slot `vcpu` of the frontend's ioreq page.
    pub fn slot(&self, vcpu: u32) -> Slot {
        // SAFETY: the ioreq page the device tree names for this frontend; `vcpu` is below its
        // slot count (at most 128, checked by config).
        unsafe { Slot::new(self.ioreq_page, vcpu) }
    }

    fn device_of(&self, req: &Request) -> Option<usize> {
        self.devices[..self.ndevices]
            .iter()
            .position(|d| req.addr >= d.base && req.addr - d.base + u64::from(req.size) <= d.size)
    }

    /// Answers `t` as the contract says and rings `COMPLETE`.
    pub fn serve(&mut self, t: &Taken) {
        let off = t.offset(self);
        let data = match (t.device, t.req.is_read()) {
            (Some(0), true) if off == contract::CONTROL && self.done_mode => {
                self.done_delivered = true;
                contract::DONE
            }
            (Some(0), true) if off == contract::CONTROL && self.pause_ms.is_some() => {
                contract::PAUSE | u64::from(self.pause_ms.take().unwrap_or(0))
            }
            (Some(d), true) => {
                self.reads[d] += 1;
                contract::answer(off)
            }
            (Some(d), false) => {
                self.stores[d] += 1;
                let mask = match t.req.size {
                    8 => u64::MAX,
                    s => (1u64 << (8 * s)) - 1,
                };
                if t.req.data != contract::stored(off) & mask {
                    self.bad_stores += 1;
                    self.first_bad_store
                        .get_or_insert((t.req.addr, t.req.size, t.req.data));
                }
                t.req.data
            }
            (None, _) => {
                self.strays += 1;
                0
            }
        };
        t.slot.respond(data);
        if self.doorbell.complete(self.k, t.vcpu).is_err() {
            self.refused_completes += 1;
        }
    }

    /// Looks at every slot once: returns the first READY request `want` accepts, serving the
    /// others.
    pub fn scan(&mut self, want: &mut dyn FnMut(&Taken) -> bool) -> Option<Taken> {
        for vcpu in 0..self.vcpus {
            let slot = self.slot(vcpu);
            if slot.flags() & 0xf != READY {
                continue;
            }
            let req = slot.read();
            let t = Taken {
                vcpu,
                slot,
                req,
                device: self.device_of(&req),
                seen: timer::now(),
            };
            if want(&t) {
                return Some(t);
            }
            self.serve(&t);
        }
        None
    }

    /// Serves requests until one `want` accepts (returned, unanswered) or `deadline`.
    pub fn wait(
        &mut self,
        deadline: Deadline,
        want: &mut dyn FnMut(&Taken) -> bool,
    ) -> Option<Taken> {
        loop {
            let seen = gic::irq_count(self.notify);
            if let Some(t) = self.scan(want) {
                return Some(t);
            }
            if deadline.expired() {
                return None;
            }
            let nap = Deadline::after_ms(IDLE_MS).min(deadline);
            gic::wait_for_irq(self.notify, seen, nap);
        }
    }
}
