//! One frontend vCPU's request record: which request is in flight, for which device, in which
//! state, packed into one atomic word so that every transition compares the whole identity.
//!
//! Why one word: a backend's `COMPLETE`, a backend's death and a timeout all run on other pCPUs
//! and decide from what they read *before* they act. If they compared only the state, a request
//! completed and replaced in between (same state, another device, maybe another backend) would
//! be settled by a stale decision: the ABA of issue 7, defect 1. The generation counts every
//! request the vCPU ever posted, so a compare-exchange from a snapshot can only succeed on the
//! very request the snapshot saw.
//!
//! Transitions (owner = the frontend vCPU itself, others = any pCPU):
//!
//! | from | to | by | how |
//! |---|---|---|---|
//! | `Idle` | `Pending` (generation + 1) | owner, at its trap | [`VcpuRecord::publish`] |
//! | `Pending` | `Answered` | the backend's `COMPLETE` | [`VcpuRecord::settle`] |
//! | `Pending` | `Vanished` | backend death, timeout, broken device | [`VcpuRecord::settle`] |
//! | `Answered`, `Vanished` | `Idle` | owner, completing the access | [`VcpuRecord::retire`] |

use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::syndrome::Access;
use crate::types::Width;

/// Where one frontend vCPU's request stands.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// Nothing in flight.
    Idle = 0,
    /// Posted (or about to be); the vCPU waits.
    Pending = 1,
    /// The backend answered; the vCPU completes from the slot.
    Answered = 2,
    /// Nobody will answer (backend gone, timeout, broken device): reads see all ones.
    Vanished = 3,
}

impl RecordState {
    fn from_bits(bits: u8) -> RecordState {
        match bits {
            1 => RecordState::Pending,
            2 => RecordState::Answered,
            3 => RecordState::Vanished,
            // Only `Snapshot::pack` writes the word, with one of the four values.
            _ => RecordState::Idle,
        }
    }
}

/// A copy of a record's word: state, device and generation, compared as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The state.
    pub state: RecordState,
    /// The device (configuration index) of the request, meaningful unless `Idle`.
    pub device: u8,
    /// How many requests the vCPU had posted when this one was (48 bits, wrapping).
    pub generation: u64,
}

const GENERATION_BITS: u32 = 48;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;

impl Snapshot {
    fn pack(self) -> u64 {
        (self.generation & GENERATION_MASK) << 16 | u64::from(self.device) << 8 | self.state as u64
    }

    fn unpack(word: u64) -> Snapshot {
        Snapshot {
            state: RecordState::from_bits(word as u8),
            device: (word >> 8) as u8,
            generation: word >> 16,
        }
    }

    /// Returns the same request in another state.
    fn with_state(self, state: RecordState) -> Snapshot {
        Snapshot { state, ..self }
    }
}

/// What the owner vCPU wrote next to the word when it posted: read back at completion, by the
/// timeout, and in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Posted {
    /// The decoded access.
    pub access: Access,
    /// ESR_EL2 at the trap (its instruction length is needed to advance the PC).
    pub hsr: u32,
    /// Offset of the access in its device's region (for messages).
    pub offset: u32,
    /// When a backend that has not answered is given up (Xen's system time, ns); 0 = never.
    pub deadline: u64,
}

/// One frontend vCPU's request in flight.
///
/// `access`, `hsr` and `deadline` are written by the owner only while the record is `Idle`,
/// before `publish` releases the new word; everyone else reads them after acquiring a word of
/// that generation, and a compare-exchange on that word tells them whether what they read still
/// belongs to it.
#[derive(Debug)]
pub(crate) struct VcpuRecord {
    word: AtomicU64,
    access: AtomicU64,
    hsr: AtomicU32,
    deadline: AtomicU64,
}

impl VcpuRecord {
    pub(crate) fn new() -> Self {
        VcpuRecord {
            word: AtomicU64::new(0),
            access: AtomicU64::new(0),
            hsr: AtomicU32::new(0),
            deadline: AtomicU64::new(0),
        }
    }

    /// Returns the current word.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::unpack(self.word.load(Ordering::Acquire))
    }

    /// Owner only: moves an `Idle` record to `Pending` for `device`, as a new generation.
    /// Returns the published snapshot, or `None` if the record was not `idle` any more.
    pub(crate) fn publish(&self, idle: Snapshot, device: u8, posted: &Posted) -> Option<Snapshot> {
        if idle.state != RecordState::Idle {
            return None;
        }
        self.access.store(
            pack_access(&posted.access, posted.offset),
            Ordering::Relaxed,
        );
        self.hsr.store(posted.hsr, Ordering::Relaxed);
        self.deadline.store(posted.deadline, Ordering::Relaxed);
        let pending = Snapshot {
            state: RecordState::Pending,
            device,
            generation: idle.generation.wrapping_add(1) & GENERATION_MASK,
        };
        // `Engine::handle_mmio` fences after this before it reads the backend's `dead` flag.
        self.word
            .compare_exchange(
                idle.pack(),
                pending.pack(),
                Ordering::SeqCst,
                Ordering::Acquire,
            )
            .ok()
            .map(|_| pending)
    }

    /// Moves the `Pending` request `pending` to `to` (`Answered` or `Vanished`), if it is still
    /// exactly that request. Returns whether this call made the transition.
    pub(crate) fn settle(&self, pending: Snapshot, to: RecordState) -> bool {
        debug_assert!(matches!(to, RecordState::Answered | RecordState::Vanished));
        pending.state == RecordState::Pending
            && self
                .word
                .compare_exchange(
                    pending.pack(),
                    pending.with_state(to).pack(),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Owner only: returns a settled request's record to `Idle`, keeping its generation.
    pub(crate) fn retire(&self, settled: Snapshot) {
        debug_assert!(matches!(
            settled.state,
            RecordState::Answered | RecordState::Vanished
        ));
        // Nobody else moves a settled record: a plain store is enough.
        self.word.store(
            settled.with_state(RecordState::Idle).pack(),
            Ordering::Release,
        );
    }

    /// Returns the access and its region offset posted with the request whose word was last
    /// acquired (one load: what a `COMPLETE` needs).
    pub(crate) fn posted_access(&self) -> (Access, u32) {
        unpack_access(self.access.load(Ordering::Relaxed))
    }

    /// Returns what the owner posted with the request whose word was last acquired.
    pub(crate) fn posted(&self) -> Posted {
        let (access, offset) = unpack_access(self.access.load(Ordering::Relaxed));
        Posted {
            access,
            offset,
            hsr: self.hsr.load(Ordering::Relaxed),
            deadline: self.deadline.load(Ordering::Relaxed),
        }
    }
}

/// Packs an [`Access`] and the region offset into 64 bits (offset in the high half).
fn pack_access(a: &Access, offset: u32) -> u64 {
    let (post, rn, imm) = match a.post_index {
        Some((rn, imm)) => (1u64, u64::from(rn), u64::from(imm as u16 & 0x1ff)),
        None => (0, 0, 0),
    };
    u64::from(a.reg)
        | u64::from(a.width.log2()) << 5
        | u64::from(a.write) << 7
        | u64::from(a.sign_extend) << 8
        | u64::from(a.sixty_four) << 9
        | post << 10
        | rn << 11
        | imm << 16
        | u64::from(offset) << 32
}

fn unpack_access(v: u64) -> (Access, u32) {
    let imm = ((v >> 16) & 0x1ff) as i16;
    let access = Access {
        reg: (v & 0x1f) as u8,
        width: Width::from_log2(((v >> 5) & 3) as u32).unwrap_or(Width::Byte),
        write: v >> 7 & 1 != 0,
        sign_extend: v >> 8 & 1 != 0,
        sixty_four: v >> 9 & 1 != 0,
        // Sign-extend the 9-bit immediate.
        post_index: (v >> 10 & 1 != 0).then_some((((v >> 11) & 0x1f) as u8, (imm << 7) >> 7)),
    };
    (access, (v >> 32) as u32)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn posted(offset: u32) -> Posted {
        Posted {
            access: Access {
                width: Width::Word,
                write: false,
                reg: 3,
                sign_extend: false,
                sixty_four: false,
                post_index: None,
            },
            hsr: 0x9300_0007,
            offset,
            deadline: 77,
        }
    }

    #[test]
    fn access_records_round_trip() {
        for post_index in [None, Some((3u8, -256i16)), Some((30, 255)), Some((0, -1))] {
            for width in [Width::Byte, Width::Half, Width::Word, Width::Double] {
                let a = Access {
                    width,
                    write: true,
                    reg: 31,
                    sign_extend: true,
                    sixty_four: false,
                    post_index,
                };
                assert_eq!(unpack_access(pack_access(&a, 0x1fc)), (a, 0x1fc));
                let b = Access {
                    write: false,
                    sign_extend: false,
                    sixty_four: true,
                    reg: 0,
                    ..a
                };
                assert_eq!(unpack_access(pack_access(&b, u32::MAX)), (b, u32::MAX));
            }
        }
    }

    #[test]
    fn a_settle_from_an_old_snapshot_fails_once_the_request_was_replaced() {
        let r = VcpuRecord::new();
        let first = r.publish(r.snapshot(), 4, &posted(8)).unwrap();
        let stale = r.snapshot();
        assert!(r.settle(first, RecordState::Answered));
        r.retire(r.snapshot());
        // Same state and same device again: only the generation tells them apart.
        let second = r.publish(r.snapshot(), 4, &posted(8)).unwrap();
        assert_eq!((second.state, second.device), (stale.state, stale.device));
        assert!(!r.settle(stale, RecordState::Answered));
        assert!(!r.settle(stale, RecordState::Vanished));
        assert_eq!(r.snapshot(), second);
        assert!(r.settle(second, RecordState::Vanished));
        assert!(!r.settle(second, RecordState::Answered), "settled twice");
    }

    #[test]
    fn publish_needs_idle_and_generations_wrap() {
        let r = VcpuRecord::new();
        let p = r.publish(r.snapshot(), 1, &posted(0)).unwrap();
        assert_eq!(r.publish(p, 2, &posted(0)), None);
        assert_eq!(r.publish(r.snapshot(), 2, &posted(0)), None);
        let top = Snapshot {
            state: RecordState::Idle,
            device: 0,
            generation: GENERATION_MASK,
        };
        let wrapped = Snapshot::unpack(top.pack());
        assert_eq!(wrapped, top);
        let r = VcpuRecord::new();
        r.word.store(top.pack(), Ordering::Relaxed);
        let p = r.publish(top, 9, &posted(4)).unwrap();
        assert_eq!((p.generation, p.device), (0, 9));
        assert_eq!(r.posted(), posted(4));
    }
}
