//! The event ABI: every layout that the eBPF programs and user space share.
//!
//! This file is the single definition of those layouts. Both sides compile it: the eBPF
//! programs of `main.rs` for `bpfel-unknown-none`, the `tracer` crate for the host. Everything
//! here is `#[repr(C)]` plain old data with its size pinned by a compile-time assertion, so a
//! change on one side cannot silently disagree with the other. Constants are never renumbered:
//! trace files written by older versions carry them.
//!
//! Nothing here may allocate, panic or depend on `std`.
#![no_std]

use core::mem::{offset_of, size_of};

/// Name of the entry program (a uprobe) in the eBPF object.
pub const ENTRY_PROGRAM: &str = "koolkit_entry";
/// Name of the return program (a uretprobe) in the eBPF object.
pub const RETURN_PROGRAM: &str = "koolkit_return";

/// Names of the maps in the eBPF object; user space opens them by these names.
pub mod maps {
    /// Ring buffer of finished calls: [`EventHeader`](super::EventHeader) + payload.
    pub const EVENTS: &str = "EVENTS";
    /// `Array<CapturePlan>` indexed by probe id (the BPF cookie of every attach point).
    pub const PLANS: &str = "PLANS";
    /// LRU hash of calls that entered and have not returned yet: [`InflightKey`](super::InflightKey)
    /// → [`CallRecord`](super::CallRecord). Bounded and LRU so missed returns cannot fill it.
    pub const INFLIGHT: &str = "INFLIGHT";
    /// Per-CPU [`CallRecord`](super::CallRecord) the entry program builds before parking it in
    /// [`INFLIGHT`]: the BPF stack (512 bytes) is too small for a record.
    pub const SCRATCH: &str = "SCRATCH";
    /// Per-CPU `u64` counters indexed by [`Counter`](super::Counter).
    pub const COUNTERS: &str = "COUNTERS";
    /// `Array<Config>` with one element.
    pub const CONFIG: &str = "CONFIG";
}

/// Capacity of [`maps::PLANS`]: the highest probe id is `MAX_PROBES - 1`.
pub const MAX_PROBES: u32 = 16384;
/// Default capacity of [`maps::INFLIGHT`] (user space may size it differently at load time).
pub const INFLIGHT_ENTRIES: u32 = 16384;
/// Default size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const RING_BYTES: u32 = 8 << 20;
/// Steps a capture plan can hold.
pub const MAX_STEPS: usize = 8;
/// Bytes of captured argument data one call can carry. A power of two.
pub const MAX_PAYLOAD: usize = 256;

/// What a ring-buffer record is. Explicit discriminants: never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A function call that entered and returned: entry and exit time, arguments, return value.
    Call = 1,
}

impl EventKind {
    /// The kind for a raw value read from the ring buffer.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Call),
            _ => None,
        }
    }
}

/// The fixed start of every ring-buffer record.
///
/// Times are `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`). `payload_len` bytes of captured
/// argument data follow the header; user space checks it against [`MAX_PAYLOAD`] and the record
/// length before reading them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// The probe that fired: the BPF cookie of its attach point.
    pub probe_id: u32,
    /// Process id (kernel TGID) as seen from the initial pid namespace.
    pub pid: u32,
    /// Thread id (kernel PID) as seen from the initial pid namespace.
    pub tid: u32,
    /// CPU the return was observed on.
    pub cpu: u32,
    /// Bytes of payload following this header.
    pub payload_len: u32,
    /// Monotonic time at function entry.
    pub entry_ns: u64,
    /// Monotonic time at function return.
    pub exit_ns: u64,
    /// The return register (RAX) at return.
    pub ret: u64,
}

/// Size of [`EventHeader`] in bytes.
pub const EVENT_HEADER_SIZE: usize = 48;
const _: () = assert!(size_of::<EventHeader>() == EVENT_HEADER_SIZE);
const _: () = assert!(offset_of!(EventHeader, entry_ns) == 24);
const _: () = assert!(offset_of!(EventHeader, ret) == 40);

/// A call in the kernel: filled at entry, parked in [`maps::INFLIGHT`], completed at return and
/// emitted into the ring buffer as its first `EVENT_HEADER_SIZE + header.payload_len` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CallRecord {
    pub header: EventHeader,
    pub payload: [u8; MAX_PAYLOAD],
}

/// Largest ring-buffer record.
pub const MAX_RECORD_SIZE: usize = EVENT_HEADER_SIZE + MAX_PAYLOAD;
const _: () = assert!(size_of::<CallRecord>() == MAX_RECORD_SIZE);
const _: () = assert!(MAX_PAYLOAD.is_power_of_two());

/// Key of an in-flight call.
///
/// A call is identified by its thread, the stack pointer at entry and its probe. The stack
/// pointer tells recursive calls apart; the probe id tells apart a function and the function
/// it tail-calls (both see the same stack pointer, and the kernel fires both returns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InflightKey {
    /// `bpf_get_current_pid_tgid()`: TGID in the high half, thread id in the low half.
    pub pid_tgid: u64,
    /// Stack pointer at entry (the return address is at `[frame]`).
    pub frame: u64,
    pub probe_id: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<InflightKey>() == 24);

/// A return probe sees the stack pointer after `ret` popped the return address: the entry's
/// stack pointer plus this.
pub const RETURN_SP_ADJUST: u64 = 8;

/// General registers a plan can read, as indexes (not `pt_regs` offsets: the eBPF side maps
/// each to its field with a constant offset, which the verifier requires for context reads).
pub mod reg {
    pub const RDI: u8 = 0;
    pub const RSI: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RCX: u8 = 3;
    pub const R8: u8 = 4;
    pub const R9: u8 = 5;
    pub const RAX: u8 = 6;
    pub const RBX: u8 = 7;
    pub const R10: u8 = 8;
    pub const R11: u8 = 9;
    pub const R12: u8 = 10;
    pub const R13: u8 = 11;
    pub const R14: u8 = 12;
    pub const R15: u8 = 13;
    pub const RBP: u8 = 14;
    pub const RSP: u8 = 15;
    /// The System V AMD64 integer argument registers, in order.
    pub const SYSV_ARGS: [u8; 6] = [RDI, RSI, RDX, RCX, R8, R9];
}

/// Where a capture step finds its value. Never renumber.
pub mod location {
    /// A general register, [`CaptureStep::reg`](super::CaptureStep::reg).
    pub const REGISTER: u8 = 1;
}

/// What a capture step copies into the payload. Never renumber.
pub mod value {
    /// The raw 8-byte value of the location.
    pub const WORD: u8 = 1;
}

/// One step of a capture plan: read a location, copy `size` bytes of it to `out_offset` of the
/// payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStep {
    /// A [`location`] constant.
    pub location: u8,
    /// A [`reg`] index, for [`location::REGISTER`].
    pub reg: u8,
    /// A [`value`] constant.
    pub value: u8,
    pub _pad: u8,
    /// Bytes this step writes into the payload.
    pub size: u16,
    /// Where in the payload this step's bytes go.
    pub out_offset: u16,
}
const _: () = assert!(size_of::<CaptureStep>() == 8);

/// What the entry program captures for one probe: a bounded list of steps, interpreted in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapturePlan {
    /// Steps in use, at most [`MAX_STEPS`].
    pub step_count: u32,
    /// Payload bytes a call of this probe carries (the end of the furthest step).
    pub payload_len: u32,
    pub steps: [CaptureStep; MAX_STEPS],
}
const _: () = assert!(size_of::<CapturePlan>() == 8 + 8 * MAX_STEPS);

/// Global settings of the programs, element 0 of [`maps::CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`config_flags`] bits.
    pub flags: u32,
    /// Wake the ring-buffer reader only once this many bytes are pending; below it, events are
    /// submitted without a wake-up and user space drains them on its timer.
    pub wakeup_bytes: u32,
}
const _: () = assert!(size_of::<Config>() == 8);

/// Bits of [`Config::flags`].
pub mod config_flags {
    /// The programs record calls. Cleared before detaching, so nothing new is emitted while
    /// links are being torn down.
    pub const ENABLED: u32 = 1;
}

/// Per-CPU counters of everything the programs could not do, indexes of [`maps::COUNTERS`].
/// Explicit discriminants: never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A finished call could not be written: the ring buffer was full.
    RingFull = 0,
    /// A return had no matching entry (its in-flight record was evicted or never parked).
    LostEntry = 1,
    /// An entry could not be parked in the in-flight map.
    InflightFull = 2,
    /// A probe fired whose id has no plan (a bug, never expected).
    NoPlan = 3,
}

/// Capacity of [`maps::COUNTERS`].
pub const COUNTER_SLOTS: u32 = 8;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Self; 4] = [
        Self::RingFull,
        Self::LostEntry,
        Self::InflightFull,
        Self::NoPlan,
    ];

    /// What the counter means, for summaries.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::RingFull => "dropped: ring buffer full",
            Self::LostEntry => "returns without a recorded entry",
            Self::InflightFull => "entries not recorded: in-flight map full",
            Self::NoPlan => "probes without a plan",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and arrays of integers,
    // with explicit padding fields, so every bit pattern is valid and there are no holes.
    unsafe impl aya::Pod for super::EventHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CapturePlan {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InflightKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_header_layout_is_the_documented_one() {
        // The decoder and the trace-file format rely on these offsets.
        assert_eq!(offset_of!(EventHeader, kind), 0);
        assert_eq!(offset_of!(EventHeader, probe_id), 4);
        assert_eq!(offset_of!(EventHeader, pid), 8);
        assert_eq!(offset_of!(EventHeader, tid), 12);
        assert_eq!(offset_of!(EventHeader, cpu), 16);
        assert_eq!(offset_of!(EventHeader, payload_len), 20);
        assert_eq!(offset_of!(EventHeader, entry_ns), 24);
        assert_eq!(offset_of!(EventHeader, exit_ns), 32);
        assert_eq!(offset_of!(EventHeader, ret), 40);
        assert_eq!(size_of::<EventHeader>(), EVENT_HEADER_SIZE);
        assert_eq!(offset_of!(CallRecord, payload), EVENT_HEADER_SIZE);
    }

    #[test]
    fn ring_records_stay_8_byte_aligned() {
        // The ring buffer rounds records to 8 bytes; capture steps write 8-byte words.
        assert_eq!(EVENT_HEADER_SIZE % 8, 0);
        assert_eq!(MAX_PAYLOAD % 8, 0);
        assert_eq!(core::mem::align_of::<CallRecord>(), 8);
    }

    #[test]
    fn plan_and_key_layouts() {
        assert_eq!(offset_of!(CaptureStep, size), 4);
        assert_eq!(offset_of!(CaptureStep, out_offset), 6);
        assert_eq!(offset_of!(CapturePlan, steps), 8);
        assert_eq!(offset_of!(InflightKey, frame), 8);
        assert_eq!(offset_of!(InflightKey, probe_id), 16);
        assert_eq!(offset_of!(Config, wakeup_bytes), 4);
        // Every capture step's offset fits its u16 field.
        assert!(MAX_PAYLOAD <= u16::MAX as usize);
    }

    #[test]
    fn counters_fit_their_map_and_keep_their_numbers() {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, index);
            assert!((*counter as u32) < COUNTER_SLOTS);
            assert!(!counter.describe().is_empty());
        }
        assert_eq!(Counter::RingFull as u32, 0);
        assert_eq!(Counter::LostEntry as u32, 1);
    }

    #[test]
    fn event_kinds_round_trip() {
        assert_eq!(
            EventKind::from_u32(EventKind::Call as u32),
            Some(EventKind::Call)
        );
        assert_eq!(EventKind::Call as u32, 1);
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(EventKind::from_u32(u32::MAX), None);
    }
}
