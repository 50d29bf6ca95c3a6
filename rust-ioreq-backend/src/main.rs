//! rust-ioreq-backend: the daemon's entry point: command line, set-up (device node, layout,
//! disks, mappings, doorbell check, transport records, `ONLINE`), then the serving loop; any
//! set-up failure is one `rust-ioreq-backend: error: ...` line and exit status 1.

use std::process::ExitCode;
use std::time::Duration;

use rust_ioreq_backend::args::{Options, USAGE};
use rust_ioreq_backend::devices::{self, EntropyDebug};
use rust_ioreq_backend::fast::{NotifyPage, TransportPage};
use rust_ioreq_backend::ioreq::{reg, Doorbell, DOORBELL_MAGIC};
use rust_ioreq_backend::layout::{self, Layout, RegionKind};
use rust_ioreq_backend::server::{FastPages, Mapped, Server, Stdout, PREFIX};
use rust_ioreq_backend::sys::{BackendDevice, GetRandom, MmioDoorbell};
use rust_ioreq_backend::vhost::{self, VhostUser};
use rust_ioreq_backend::window::Bank;

/// How long the loop waits for the notify interrupt before looking at every slot anyway (a
/// lost interrupt costs at most this) and printing statistics that are due.
const IDLE_MS: i32 = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PREFIX}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let opts = Options::parse(std::env::args().skip(1)).map_err(|e| format!("{e}\n{USAGE}"))?;
    let dev = BackendDevice::open(&opts.dev)?;
    let text = std::fs::read_to_string(&opts.layout)
        .map_err(|e| format!("cannot read the layout {}: {e}", opts.layout))?;
    let layout = Layout::parse(&text).map_err(|e| format!("layout {}: {e}", opts.layout))?;
    if layout.version < 1 {
        return Err(format!(
            "backend ABI version {}: this daemon speaks version 1 and later (docs/backend-abi.md)",
            layout.version
        ));
    }
    let entropy = || -> Box<dyn EntropyDebug> { Box::new(GetRandom) };
    let connect = |d: &layout::Device, kind: vhost::Kind, socket: &str| {
        let regions = layout
            .ram(d.frontend)
            .map(|bank| vhost::MemoryRegion {
                gpa: bank.gpa,
                size: bank.size,
                offset: bank.phys,
            })
            .collect();
        let fd = BackendDevice::reopen_restricted(&opts.dev, d.frontend).map_err(|e| {
            format!(
                "cannot open {} again restricted to frontend {}'s RAM: {e}",
                opts.dev, d.frontend
            )
        })?;
        VhostUser::connect(kind, socket, fd, regions)
    };
    let models = devices::build(
        &layout.devices,
        &opts.disks,
        &opts.vhost_users,
        &entropy,
        &connect,
    )?;

    let map = |kind: RegionKind, frontend: Option<u32>| {
        let r = layout
            .region(kind, frontend)
            .ok_or_else(|| format!("no {kind:?} region in the layout"))?;
        dev.map(r)
            .map_err(|e| format!("mmap of {kind:?} at {:#x} (+{:#x}): {e}", r.phys, r.size))
    };
    let doorbell_region = map(RegionKind::Doorbell, None)?;
    // SAFETY: the layout's doorbell region, just mapped (Device memory), used only here.
    let doorbell = unsafe { MmioDoorbell::new(doorbell_region) };
    let (magic, version) = (doorbell.read(reg::MAGIC), doorbell.read(reg::VERSION));
    if magic != DOORBELL_MAGIC || version != layout.version {
        return Err(format!(
            "doorbell MAGIC {magic:#x} VERSION {version}: want {DOORBELL_MAGIC:#x} and the layout's version {}",
            layout.version
        ));
    }
    let mut mapped = Mapped {
        ioreq: Vec::new(),
        banks: Vec::new(),
        fast: None,
    };
    for f in &layout.frontends {
        mapped
            .ioreq
            .push((f.index, map(RegionKind::Ioreq, Some(f.index))?));
        for bank in layout.ram(f.index) {
            let region = dev.map(bank).map_err(|e| {
                format!(
                    "mmap of frontend {}'s RAM at {:#x}: {e}",
                    f.index, bank.phys
                )
            })?;
            mapped.banks.push((
                f.index,
                Bank {
                    gpa: bank.gpa,
                    region,
                },
            ));
        }
    }
    let has_pages = layout.region(RegionKind::Transport, None).is_some()
        && layout.region(RegionKind::Notify, None).is_some();
    if opts.fast && has_pages {
        mapped.fast = Some(FastPages {
            transport: TransportPage(map(RegionKind::Transport, None)?),
            notify: NotifyPage(map(RegionKind::Notify, None)?),
        });
    }

    let mut console = Stdout;
    let stats_every = (opts.stats_ms > 0).then(|| Duration::from_millis(opts.stats_ms));
    let mut server = Server::new(
        &layout,
        mapped,
        models,
        &doorbell,
        &mut console,
        stats_every,
    );
    println!(
        "{PREFIX}: ABI version {} features {:#x}: {}",
        layout.version,
        layout.features,
        if server.fast() {
            "fast transport in use"
        } else {
            "round trips only"
        }
    );
    let mut fast = 0;
    for d in &server.devices {
        let f = layout.frontends.iter().find(|f| f.index == d.desc.frontend);
        println!(
            "{PREFIX}:   dev{} ({} at {:#x}): {}: {}",
            d.desc.index,
            f.map_or("?", |f| f.name.as_str()),
            d.desc.mmio,
            d.transport.device().describe(),
            d.path
        );
        fast += usize::from(matches!(
            d.path,
            rust_ioreq_backend::server::Path::Fast { .. }
        ));
    }
    doorbell.write(reg::ONLINE, 1);
    println!(
        "{PREFIX}: serving {} device(s) of {} frontend(s), {fast} on the fast transport",
        server.devices.len(),
        layout.frontends.len()
    );
    loop {
        // The first wait returns at once: the scan at start the ABI asks for.
        dev.wait(IDLE_MS, &server.vhost_user_fds())
            .map_err(|e| format!("waiting for the notify interrupt: {e}"))?;
        server.serve_until_idle();
        server.handle_vhost_user_events();
        if let Some(every) = stats_every {
            server.print_stats_when_due(every);
        }
    }
}
