//! The "uses a device of" graph between domains: a frontend's vCPU blocks until its backend
//! answers, so backends that use each other's devices in a cycle can end up all waiting.

use super::{err, Config, ConfigError, ErrorKind, Path, Text, MAX_DOMAINS};

/// Returns, for each domain, the set of domains it uses devices of (bit `b` of entry `f`).
fn edges(config: &Config) -> [u32; MAX_DOMAINS] {
    let mut uses = [0u32; MAX_DOMAINS];
    for d in config.devices() {
        uses[usize::from(d.frontend)] |= 1 << d.backend;
    }
    uses
}

/// Returns the shortest chain `from -> ... -> to` over `uses`, as domain indices, if any.
fn chain(uses: &[u32; MAX_DOMAINS], from: usize, to: usize) -> Option<([u8; MAX_DOMAINS], usize)> {
    // Breadth-first from `from`; `came_from[n]` is the node `n` was reached from.
    let mut came_from = [u8::MAX; MAX_DOMAINS];
    let mut queue = [0u8; MAX_DOMAINS];
    let (mut head, mut tail) = (0, 1);
    queue[0] = from as u8;
    came_from[from] = from as u8;
    while head < tail {
        let n = usize::from(queue[head]);
        head += 1;
        if n == to {
            let mut out = [0u8; MAX_DOMAINS];
            let mut len = 0;
            let mut at = to;
            loop {
                out[len] = at as u8;
                len += 1;
                if at == from {
                    break;
                }
                at = usize::from(came_from[at]);
            }
            out[..len].reverse();
            return Some((out, len));
        }
        for (next, from) in came_from.iter_mut().enumerate() {
            if uses[n] & (1 << next) != 0 && *from == u8::MAX {
                *from = n as u8;
                queue[tail] = next as u8;
                tail += 1;
            }
        }
    }
    None
}

/// Refuses domains that use each other's devices in a cycle (`a` uses `b`, `b` uses `a`, or
/// longer), on the first device in DT order whose link closes one. A domain serving itself is
/// refused earlier.
pub(super) fn check_cycles(config: &Config) -> Result<(), ConfigError> {
    let uses = edges(config);
    for dev in config.devices() {
        let (f, b) = (usize::from(dev.frontend), usize::from(dev.backend));
        let Some((back, len)) = chain(&uses, b, f) else {
            continue;
        };
        // f uses b, and b (through back[1..]) uses f.
        let name = |i: u8| config.domains()[usize::from(i)].name;
        let mut text = Text::new();
        let mut prev = dev.frontend;
        for &next in &back[..len] {
            if !text.as_str().is_empty() {
                text.push(", ");
            }
            text.push(name(prev).as_str());
            text.push(" uses ");
            text.push(name(next).as_str());
            prev = next;
        }
        let fe = name(dev.frontend);
        return Err(err(
            &Path::Child(fe, dev.name),
            "xen,backend",
            ErrorKind::Cycle(text),
        ));
    }
    Ok(())
}
