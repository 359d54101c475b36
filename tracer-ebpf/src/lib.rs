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
/// Name of the entry program's sleepable twin, loaded for uprobe-multi links where the
/// kernel allows: its reads fault untouched pages in.
pub const ENTRY_SLEEPABLE_PROGRAM: &str = "koolkit_entry_sleepable";
/// Name of the return program (a uretprobe) in the eBPF object.
pub const RETURN_PROGRAM: &str = "koolkit_return";
/// Name of the program on every way out of a function (its `ret`s and the jumps that leave it):
/// a uprobe, not a uretprobe. A uretprobe's foreign return address makes the Go runtime crash
/// when it moves a stack, and makes an unwinder give up (a C++ exception, a Rust panic).
pub const RET_SITE_PROGRAM: &str = "koolkit_ret_site";
/// Names of the entry, return and way-out programs for kernels without BPF attach cookies
/// (before 5.15): the entry and a way out find their probe by the instruction pointer in
/// [`maps::PROBE_ADDRESSES`]; a return by the frame its entry left in the thread's shadow.
pub const ENTRY_BY_ADDRESS_PROGRAM: &str = "koolkit_entry_by_address";
pub const RETURN_BY_SHADOW_PROGRAM: &str = "koolkit_return_by_shadow";
pub const RET_SITE_BY_ADDRESS_PROGRAM: &str = "koolkit_ret_site_by_address";
/// Name of the program on the `sched:sched_process_fork` tracepoint that adds the children of
/// selected processes to [`maps::TGIDS`] (`--children`).
pub const FORK_PROGRAM: &str = "koolkit_fork";
/// Name of the program on `sched:sched_process_exit` that drops exited tasks from
/// [`maps::TGIDS`].
pub const EXIT_PROGRAM: &str = "koolkit_exit";

/// Names of the maps in the eBPF object; user space opens them by these names.
pub mod maps {
    /// Ring buffer of finished calls: [`EventHeader`](super::EventHeader) + payload.
    pub const EVENTS: &str = "EVENTS";
    /// `Array<CapturePlan>` indexed by probe id (the BPF cookie of every attach point).
    pub const PLANS: &str = "PLANS";
    /// LRU hash of calls that entered and have not returned yet: [`InflightKey`](super::InflightKey)
    /// → [`InFlightCall`](super::InFlightCall). Bounded and LRU so missed returns cannot fill it.
    pub const INFLIGHT: &str = "INFLIGHT";
    /// Per-CPU `u64` counters indexed by [`Counter`](super::Counter).
    pub const COUNTERS: &str = "COUNTERS";
    /// `Array<Config>` with one element.
    pub const CONFIG: &str = "CONFIG";
    /// `HashMap<u32, u8>`: the processes (TGIDs) traced when
    /// [`config_flags::SELECT_TGIDS`](super::config_flags::SELECT_TGIDS) is set.
    pub const TGIDS: &str = "TGIDS";
    /// LRU hash `pid_tgid` → [`ThreadCalls`](super::ThreadCalls): each thread's parked
    /// calls, which tell abandoned calls (longjmp, exceptions) from running ones.
    pub const THREADS: &str = "THREADS";
    /// `HashMap<u32, u32>`: the traced processes whose death is watched, TGID → how it died
    /// (`u32::MAX` while alive; then the wait status: a signal number in the low 7 bits, or
    /// the exit status in bits 8..16).
    pub const EXITS: &str = "EXITS";
    /// Per-CPU array, one `u64` per probe id: its calls filtered out by the latency bounds
    /// or sampling.
    pub const FILTERED: &str = "FILTERED";
    /// Per-CPU array, one `u64` per probe id: its calls that passed the latency bounds, the
    /// count `--sample` picks from.
    pub const SAMPLED: &str = "SAMPLED";
    /// Per-CPU hash, [`HistogramKey`](super::HistogramKey) → calls: with
    /// [`config_flags::AGGREGATE`], each probe's calls by the power of two of their latency
    /// (and by one argument's value with [`config_flags::BY_ARGUMENT`]).
    pub const HISTOGRAMS: &str = "HISTOGRAMS";
    /// Per-CPU array of [`LatencyStats`](super::LatencyStats), one per probe id: with
    /// [`config_flags::AGGREGATE`], each probe's count, total, fastest and slowest call.
    pub const STATS: &str = "STATS";
    /// Per-CPU hash, [`HistogramKey`](super::HistogramKey) (bucket 0) →
    /// [`LatencyStats`](super::LatencyStats): the same by one argument's value
    /// ([`config_flags::BY_ARGUMENT`], `--by-arg`).
    pub const STATS_BY_ARGUMENT: &str = "STATS_BY_ARGUMENT";
    /// Hash, probe id → [`Predicate`](super::Predicate): with
    /// [`config_flags::PREDICATES`], only calls that meet their probe's predicate go on
    /// (`--where`, `--errors`); a probe without one lets every call through.
    pub const PREDICATES: &str = "PREDICATES";
    /// Array of [`RateBucket`](super::RateBucket), one per probe id: with
    /// [`Config::rate_interval_ns`] set, each probe's token bucket (`--rate`).
    pub const RATE_BUCKETS: &str = "RATE_BUCKETS";
    /// Stack-trace map: the user stacks of calls whose plans have a
    /// [`value::STACK_ID`](super::value::STACK_ID) step, by stack id (`--stack`).
    pub const STACKS: &str = "STACKS";
    /// LRU hash [`AddressKey`](super::AddressKey) → the cookie of the probe there, for
    /// kernels without attach cookies: user space writes each traced process's probe
    /// addresses (its load address of each file plus the probe's offset).
    pub const PROBE_ADDRESSES: &str = "PROBE_ADDRESSES";
    /// `HashMap<u32, u8>`: processes a probe fired in at an address
    /// [`PROBE_ADDRESSES`] does not have yet (a new process, an exec, a library loaded
    /// later), for user space to read their maps and fill it.
    pub const UNIDENTIFIED: &str = "UNIDENTIFIED";
}

/// A probe's address in one process, as the programs see it in `rip` (the kernel sets it to
/// the probed instruction before the handlers run).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressKey {
    pub tgid: u32,
    /// [`ADDRESS_OF_ENTRY`] or [`ADDRESS_OF_WAY_OUT`]: a thunk's one instruction is both.
    pub kind: u32,
    pub address: u64,
}

/// [`AddressKey::kind`] of an entry probe.
pub const ADDRESS_OF_ENTRY: u32 = 0;
/// [`AddressKey::kind`] of a probe on a way out of a function.
pub const ADDRESS_OF_WAY_OUT: u32 = 1;
const _: () = assert!(size_of::<AddressKey>() == 16);

/// Capacity of [`maps::PROBE_ADDRESSES`]: probes times the processes they are in.
pub const MAX_PROBE_ADDRESSES: u32 = 262_144;
/// Capacity of [`maps::UNIDENTIFIED`].
pub const MAX_UNIDENTIFIED: u32 = 1024;

/// Capacity of [`maps::STACKS`] with `--stack` (user space shrinks it to one entry without).
pub const STACK_ENTRIES: u32 = 16384;

/// One probe's calls in aggregation mode, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyStats {
    pub calls: u64,
    pub total_ns: u64,
    /// The fastest call; meaningful only when `calls > 0` (the programs start it at 0 and
    /// take the first call's latency).
    pub min_ns: u64,
    pub max_ns: u64,
}
const _: () = assert!(size_of::<LatencyStats>() == 32);

/// A probe's `--rate` token bucket, as a theoretical arrival time (GCRA): a call may pass
/// while `next_ns` is at most one burst ahead of now, and each call that passes moves it one
/// token interval on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateBucket {
    pub next_ns: u64,
}
const _: () = assert!(size_of::<RateBucket>() == 8);

/// Conditions one probe's predicate can hold (all must hold: `&&`).
pub const MAX_CONDITIONS: usize = 4;
/// Longest text a condition compares a string with. A power of two.
pub const MAX_CONDITION_TEXT: usize = 64;

/// What a condition reads. Never renumber.
pub mod operand {
    /// A slot of the captured payload: an integer of [`Condition::width`] bytes, or a string
    /// (a `u32` or `u64` length of `width` bytes, then its bytes), valid when step
    /// [`Condition::step`]'s status is OK.
    pub const SLOT: u8 = 1;
    /// The return register, an integer of `width` bytes.
    pub const RETURN: u8 = 2;
}

/// How a condition compares. Never renumber.
pub mod compare {
    pub const EQ: u8 = 1;
    pub const NE: u8 = 2;
    pub const LT: u8 = 3;
    pub const GT: u8 = 4;
    pub const LE: u8 = 5;
    pub const GE: u8 = 6;
    /// The string equals [`Condition::text`](super::Condition::text).
    pub const TEXT_EQ: u8 = 7;
    /// The string starts with the text.
    pub const TEXT_PREFIX: u8 = 8;
}

/// One comparison of a [`Predicate`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// An [`operand`] constant.
    pub operand: u8,
    /// A [`compare`] constant.
    pub compare: u8,
    /// The capture step whose status byte says the slot is valid ([`operand::SLOT`]).
    pub step: u8,
    /// Bytes of the integer (1, 2, 4, 8), or of a string's length prefix (4, 8).
    pub width: u8,
    /// The integer is signed (sign-extended from `width` bytes before comparing).
    pub signed: u8,
    /// Bytes of `text` in use.
    pub text_len: u8,
    /// Where the slot starts in the payload; below [`MAX_PAYLOAD`].
    pub offset: u16,
    /// The integer compared with (as `i64` when `signed`).
    pub value: u64,
    pub text: [u8; MAX_CONDITION_TEXT],
}
const _: () = assert!(size_of::<Condition>() == 16 + MAX_CONDITION_TEXT);
const _: () = assert!(MAX_CONDITION_TEXT.is_power_of_two() && MAX_CONDITION_TEXT < 256);
// A string compared starts below MAX_PAYLOAD plus its 8-byte length; its text stays inside
// the kernel's buffer.
const _: () = assert!(MAX_PAYLOAD + 8 + MAX_CONDITION_TEXT <= PAYLOAD_BUFFER);

impl Condition {
    pub const NONE: Self = Self {
        operand: 0,
        compare: 0,
        step: 0,
        width: 0,
        signed: 0,
        text_len: 0,
        offset: 0,
        value: 0,
        text: [0; MAX_CONDITION_TEXT],
    };
}

/// The conditions a call of one probe must meet to go on (`--where`, `--errors`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Predicate {
    /// Conditions in use, at most [`MAX_CONDITIONS`].
    pub count: u32,
    pub _pad: u32,
    pub conditions: [Condition; MAX_CONDITIONS],
}
const _: () = assert!(size_of::<Predicate>() == 8 + MAX_CONDITIONS * size_of::<Condition>());

impl Predicate {
    pub const NONE: Self = Self {
        count: 0,
        _pad: 0,
        conditions: [Condition::NONE; MAX_CONDITIONS],
    };
}

/// Capacity of [`maps::HISTOGRAMS`]: 64 buckets for each of 1,024 probes (a probe's calls
/// fill a few).
pub const HISTOGRAM_ENTRIES: u32 = 65536;

/// Log2 buckets of a latency histogram: bucket 0 holds 0 ns, bucket k `2^(k-1)..2^k - 1`.
pub const HISTOGRAM_BUCKETS: u32 = 65;

/// The bucket of `latency_ns`: the number of bits it takes.
#[inline(always)]
pub const fn histogram_bucket(latency_ns: u64) -> u32 {
    64 - latency_ns.leading_zeros()
}

/// The key of a probe's bucket in [`maps::HISTOGRAMS`]: the probe, the log2 bucket of the
/// latency and, with `--by-arg`, the argument's value (sign-extended; 0 without).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistogramKey {
    pub probe: u32,
    pub bucket: u32,
    pub argument: u64,
}
const _: () = assert!(size_of::<HistogramKey>() == 16);

/// The value [`HistogramKey::argument`] takes for a call whose argument could not be read.
pub const UNREADABLE_ARGUMENT: u64 = 0x8000_0000_0000_0000;

/// Capacity of [`maps::EXITS`].
pub const MAX_WATCHED_EXITS: u32 = 64;
/// [`maps::EXITS`]' value for a process that has not died yet.
pub const STILL_ALIVE: u32 = u32::MAX;

/// Capacity of [`maps::PLANS`]: the highest probe id is `MAX_PROBES - 1`.
pub const MAX_PROBES: u32 = 16384;
/// Default capacity of [`maps::INFLIGHT`] (user space may size it differently at load time).
pub const INFLIGHT_ENTRIES: u32 = 8192;
/// Capacity of [`maps::TGIDS`] (the threads of selected processes pass through it too).
pub const MAX_TGIDS: u32 = 65536;
/// Capacity of [`maps::THREADS`]: threads with calls in flight at once.
pub const MAX_THREADS: u32 = 4096;
/// Parked calls per thread that [`ThreadCalls`] remembers (deeper ones are still traced, but
/// cannot be told abandoned).
pub const THREAD_DEPTH: usize = 32;

/// Marks in an in-flight call's `exit_ns`, which its return overwrites with the real time.
pub mod inflight_marks {
    /// Its thread's [`ThreadCalls`](super::ThreadCalls) holds it.
    pub const TRACKED: u64 = 1;
    /// Its thread left its frame without it returning: counted abandoned (a return that
    /// comes after all takes the count back).
    pub const ABANDONED: u64 = 2;
}
/// Default size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const RING_BYTES: u32 = 8 << 20;
/// Steps a capture plan can hold.
pub const MAX_STEPS: usize = 16;
/// Pointers a capture step can follow before its final read (`req->user->name` is 2).
pub const MAX_DEREFS: usize = 4;
/// Size of a page of user memory: reads split at page ends to save what comes before an
/// unreadable page.
pub const PAGE_SIZE: u64 = 4096;
/// Bytes of captured argument data one call can carry. A power of two: the programs mask
/// offsets with it.
pub const MAX_PAYLOAD: usize = 512;
/// Largest single copy (bytes, string) a step makes. A power of two.
pub const MAX_CHUNK: usize = 256;
/// Bytes reserved for a call's payload in the kernel: every slot starts below [`MAX_PAYLOAD`],
/// and the slack lets the verifier see that a copy of up to [`MAX_CHUNK`] bytes plus its
/// 8-byte length prefix never leaves the record.
pub const PAYLOAD_BUFFER: usize = MAX_PAYLOAD + MAX_CHUNK + 8;
/// The first bytes of every non-empty payload: one [`step_status`] byte per step.
pub const STATUS_BYTES: usize = MAX_STEPS;

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
    /// CPU the return was observed on; [`ENDED_BY_TAIL_CALL`] set when the call left by a
    /// jump to another function (its return value is that function's, not seen).
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

/// The bit of [`EventHeader::cpu`] that says the call ended by a tail call.
pub const ENDED_BY_TAIL_CALL: u32 = 1 << 31;

/// Size of [`EventHeader`] in bytes.
pub const EVENT_HEADER_SIZE: usize = 48;
const _: () = assert!(size_of::<EventHeader>() == EVENT_HEADER_SIZE);
const _: () = assert!(offset_of!(EventHeader, entry_ns) == 24);
const _: () = assert!(offset_of!(EventHeader, ret) == 40);

/// A call in the kernel: parked zeroed in [`maps::INFLIGHT`] at entry and filled in place there
/// (never in a per-CPU buffer: uprobe programs can be preempted), completed at return and
/// emitted into the ring buffer as its first `EVENT_HEADER_SIZE + header.payload_len` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InFlightCall {
    pub header: EventHeader,
    pub payload: [u8; PAYLOAD_BUFFER],
    /// Where the Go program's `runtime.types` is in the process, found at the entry for the
    /// steps its returns run (not emitted).
    pub go_types: u64,
}

impl InFlightCall {
    /// The all-zero record every in-flight call starts from.
    pub const ZERO: Self = Self {
        header: EventHeader {
            kind: 0,
            probe_id: 0,
            pid: 0,
            tid: 0,
            cpu: 0,
            payload_len: 0,
            entry_ns: 0,
            exit_ns: 0,
            ret: 0,
        },
        payload: [0; PAYLOAD_BUFFER],
        go_types: 0,
    };
}

const _: () = assert!(size_of::<InFlightCall>() == EVENT_HEADER_SIZE + PAYLOAD_BUFFER + 8);
const _: () = assert!(MAX_PAYLOAD.is_power_of_two() && MAX_CHUNK.is_power_of_two());
const _: () = assert!(PAYLOAD_BUFFER.is_multiple_of(8));
// The ring buffer rounds records to 8 bytes; capture steps write 8-byte words.
const _: () = assert!(EVENT_HEADER_SIZE.is_multiple_of(8) && MAX_PAYLOAD.is_multiple_of(8));
// Every capture step's offset and size fit their u16 fields.
const _: () = assert!(MAX_PAYLOAD <= u16::MAX as usize);
// A slot starting anywhere below MAX_PAYLOAD, with its length prefix and a full chunk, stays
// inside the kernel's buffer.
const _: () = assert!((MAX_PAYLOAD - 1) + 8 + MAX_CHUNK <= PAYLOAD_BUFFER);
const _: () = assert!(STATUS_BYTES >= MAX_STEPS);

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

/// One thread's (or Go goroutine's) parked calls, outermost first: `frames[i]` is the entry
/// stack pointer of the call of probe `probes[i]` (for a goroutine, `u64::MAX` minus its
/// distance below the top of the goroutine's stack), and frames only get deeper (smaller)
/// towards `depth - 1`.
///
/// A new call at frame F, or a return to F, proves that every parked call deeper than F has
/// ended without its return probe firing (`longjmp`, an exception unwinding, a Go panic
/// recovered above it, a killed thread):
/// those are abandoned. A return whose entry is not here was entered before tracing started.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCalls {
    pub depth: u32,
    /// Calls parked in the in-flight map beyond `THREAD_DEPTH`, which these arrays miss.
    pub untracked: u32,
    pub frames: [u64; THREAD_DEPTH],
    pub probes: [u32; THREAD_DEPTH],
    /// When each parked call was entered, under [`config_flags::SKIP_CAPTURE`] only: then a
    /// call counted in the kernel needs nothing else, and is parked here alone, not in the
    /// in-flight map (whose 800-byte values cost a third of a traced call).
    pub entries: [u64; THREAD_DEPTH],
}
const _: () = assert!(size_of::<ThreadCalls>() == 8 + 20 * THREAD_DEPTH);
// The programs mask indexes with `THREAD_DEPTH - 1`.
const _: () = assert!(THREAD_DEPTH.is_power_of_two());

impl ThreadCalls {
    /// No call parked.
    pub const EMPTY: Self = Self {
        depth: 0,
        untracked: 0,
        frames: [0; THREAD_DEPTH],
        probes: [0; THREAD_DEPTH],
        entries: [0; THREAD_DEPTH],
    };
}

/// Set in the [`maps::THREADS`] key of a goroutine's shadow (its `g`; a thread's is its
/// `pid_tgid`): a user address never has it, so the two never meet.
pub const GOROUTINE_SHADOW: u64 = 1 << 63;

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

/// Where a capture step starts. Never renumber.
pub mod location {
    /// A general register, [`CaptureStep::reg`](super::CaptureStep::reg). Stack arguments
    /// are read through `RSP`.
    pub const REGISTER: u8 = 1;
}

/// What a capture step copies into the payload. Never renumber.
///
/// Every step first takes its register's value and follows `derefs` pointers (adding
/// `deref_offsets[i]` before each read), giving a *value*. Then:
pub mod value {
    /// The value itself, 8 bytes.
    pub const WORD: u8 = 1;
    /// `size` bytes of memory at `value + offset`.
    pub const BYTES: u8 = 2;
    /// A NUL-terminated string at `value + offset`: a `u32` length (without the NUL), then at
    /// most `size` bytes.
    pub const C_STRING: u8 = 3;
    /// A pointer at `value + offset` and a length at `len_field` bytes from it (a Rust `&str`
    /// field, a `std::string`, a `Vec<T>`), the length counting elements of `element_size`
    /// bytes: the `u64` length in bytes, then at most `size` bytes of what it points to.
    pub const PTR_LEN_IN_MEMORY: u8 = 4;
    /// A (pointer, length) pair in registers (a Rust `&str` or `&[T]` argument): the pointer
    /// is `value + offset`, the length (in elements of `element_size` bytes) is register
    /// `len_reg`. Written like [`PTR_LEN_IN_MEMORY`].
    pub const PTR_LEN_IN_REGISTERS: u8 = 5;
    /// The name of the Go runtime type descriptor (`*_type`, `*abi.Type`) at `value + offset`,
    /// as the `reflect` package spells it (`*errors.errorString`): read through its name
    /// offset from the process's type data (see [`CapturePlan::go_types`](super::CapturePlan)),
    /// written like [`PTR_LEN_IN_MEMORY`]; a nil descriptor writes the length `u64::MAX`.
    pub const GO_TYPE_NAME: u8 = 6;
    /// The id of the calling thread's user stack in [`maps::STACKS`](super::maps::STACKS)
    /// (`bpf_get_stackid`, frame pointers), 8 bytes; the step faults when the kernel could
    /// not store it (the map's bucket holds another stack).
    pub const STACK_ID: u8 = 7;
    /// A begin pointer at `value + offset` and an end pointer at `len_field` bytes from it (a
    /// `std::vector`): written like [`PTR_LEN_IN_MEMORY`], the length being end minus begin.
    pub const BEGIN_END_IN_MEMORY: u8 = 8;
}

/// Values of a step's status byte at the start of the payload. Never renumber.
pub mod step_status {
    pub const OK: u8 = 0;
    /// A read of user memory faulted (bad pointer, or a page not present): the step's slot
    /// holds nothing meaningful.
    pub const FAULT: u8 = 1;
    /// A string ran into a page that cannot be read: its length field holds how many bytes
    /// before that page were copied, and the value is cut short there.
    pub const PARTIAL: u8 = 2;
    /// A step that runs at the return has not run: the call has not returned through a
    /// probe that reads it (it left by a tail call, or is still running).
    pub const AT_RETURN: u8 = 3;
}

/// One step of a capture plan (see [`value`] for what each kind does).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStep {
    /// A [`location`] constant.
    pub location: u8,
    /// A [`reg`] index.
    pub reg: u8,
    /// A [`value`] constant.
    pub value: u8,
    /// Pointers to follow, at most [`MAX_DEREFS`].
    pub derefs: u8,
    /// Bytes to copy (the cap for strings), at most [`MAX_CHUNK`].
    pub size: u16,
    /// Where in the payload this step's slot starts; below [`MAX_PAYLOAD`].
    pub out_offset: u16,
    /// The length register of [`value::PTR_LEN_IN_REGISTERS`].
    pub len_reg: u8,
    /// The bytes of one element a length counts (0 means 1: a length in bytes).
    pub element_size: u8,
    /// Where the length (or end pointer) of [`value::PTR_LEN_IN_MEMORY`] and
    /// [`value::BEGIN_END_IN_MEMORY`] is, in bytes from the pointer (0 means 8: the word after
    /// it, as in a Rust `&str`).
    pub len_field: i16,
    /// Added to the value before the final read.
    pub offset: i32,
    /// Added to the value before each pointer is followed.
    pub deref_offsets: [i32; MAX_DEREFS],
}
const _: () = assert!(size_of::<CaptureStep>() == 32);

/// What the entry program captures for one probe: a bounded list of steps, interpreted in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapturePlan {
    /// [`plan_flags`] bits.
    pub flags: u32,
    /// Steps in use, at most [`MAX_STEPS`].
    pub step_count: u32,
    /// Payload bytes a call of this probe carries (the end of the furthest step).
    pub payload_len: u32,
    /// A Go function's results: the return program copies the first `go_results >> 16`
    /// words of Go's result registers into the payload at offset `go_results & 0xffff`
    /// (zero: none).
    pub go_results: u32,
    /// The steps that run at the function's returns instead of at its entry (a Go
    /// function's results, a return value read from RAX and RDX or through the memory RAX
    /// points to): indexes `return_steps & 0xffff` up to (not including) `return_steps >> 16`.
    pub return_steps: u32,
    /// Bytes the instructions before the entry probe took off the stack pointer (it moved
    /// past `sub $N,%rsp`, for a function whose returns are probed on its ways out): the
    /// call's frame, the slot of its return address, is this far above the stack pointer.
    pub entry_sp_adjust: u32,
    /// `--by-arg`: where the payload holds the integer calls are grouped by: its offset,
    /// the step that read it, its width in bytes (0: no grouping) and whether it is signed.
    pub by_argument_offset: u16,
    pub by_argument_step: u8,
    pub by_argument_width: u8,
    pub by_argument_signed: u8,
    pub _pad: [u8; 3],
    /// A Go program's `runtime.types` as the file has it (0: none): the names of its type
    /// descriptors are offsets from there ([`value::GO_TYPE_NAME`]).
    pub go_types: u64,
    /// The file's address of the entry probe: the probe's address in the process minus this is
    /// how far the object was loaded from its file's addresses (PIE), for `go_types`.
    pub entry_address: u64,
    pub steps: [CaptureStep; MAX_STEPS],
}

impl CaptureStep {
    /// Whether the step reads memory a process may not have touched yet: what a pointer
    /// leads to (its own stack and a goroutine's `g` are in use). Only such reads need the
    /// sleepable entry, which costs a few hundred nanoseconds a call more than the plain one.
    pub const fn reads_untouched_memory(&self) -> bool {
        let resident = self.derefs == 0 && (self.reg == reg::RSP || self.reg == reg::R14);
        self.derefs > 0 || (!resident && self.value != value::WORD && self.value != value::STACK_ID)
    }
}

impl CapturePlan {
    /// Whether any step the entry runs [reads untouched memory](CaptureStep::reads_untouched_memory)
    /// (the steps of the return run in the return program, which never faults pages in).
    pub fn reads_untouched_memory(&self) -> bool {
        let count = (self.step_count as usize).min(MAX_STEPS);
        self.steps[..count]
            .iter()
            .enumerate()
            .any(|(index, step)| !self.at_return(index) && step.reads_untouched_memory())
    }

    /// Whether step `index` runs at the return (a Go result), not at the entry.
    pub const fn at_return(&self, index: usize) -> bool {
        let first = (self.return_steps & 0xffff) as usize;
        let end = (self.return_steps >> 16) as usize;
        first <= index && index < end
    }
}

/// Go's register ABI returns its results in the registers it passes arguments in; the
/// return program copies at most this many.
pub const GO_RESULT_WORDS: usize = 9;
const _: () = assert!(size_of::<CapturePlan>() == 48 + 32 * MAX_STEPS);

/// Bits of [`CapturePlan::flags`].
pub mod plan_flags {
    /// User space wrote this plan: an all-zero slot of the plans array is no plan.
    pub const PRESENT: u32 = 1;
    /// A Go function: calls are paired by goroutine, not thread (the runtime moves goroutines
    /// between threads and copies their stacks), and its returns are probed at its `ret`
    /// instructions by [`RET_SITE_PROGRAM`](super::RET_SITE_PROGRAM), never by a uretprobe.
    pub const GO: u32 = 2;
}

/// The `g` of the running goroutine is in R14 (Go's register ABI, 1.17+); its first field is
/// the goroutine's stack, `{lo, hi uintptr}`: `stack.hi` is at this offset in every Go release.
pub const GO_G_STACK_HI: u64 = 8;

/// Where the Go runtime keeps what names a dynamic type, the same from Go 1.17 through 1.27
/// (the Go tests check them against the DWARF of every fixture release). An interface with
/// methods holds an `itab`, whose `_type` is at [`GO_ITAB_TYPE`]; an empty one holds the type
/// descriptor itself.
pub mod go_type {
    /// `itab._type` (`abi.ITab.Type`).
    pub const ITAB_TYPE: i32 = 8;
    /// `_type.tflag` (`abi.Type.TFlag`), a byte.
    pub const TFLAG: u64 = 20;
    /// `_type.str` (`abi.Type.Str`): an `int32` offset of the name from `runtime.types`.
    pub const STR: u64 = 40;
    /// The `tflag` bit saying the name carries a `*` that is not part of it (the name is
    /// shared with the pointer type's).
    pub const TFLAG_EXTRA_STAR: u8 = 2;
}

/// The BPF cookie of an attach point: the probe id in its low half, and for a way out of a
/// function that leaves only when a condition holds (a conditional tail call, `jne f`), that
/// condition in bits 32..40: the x86 condition code plus one (0: always).
pub mod exit_condition {
    /// Where the condition sits in the cookie.
    pub const SHIFT: u32 = 32;
    /// Set in the cookie of a way out that is a jump to another function (a tail call), not
    /// a `ret`.
    pub const TAIL_CALL: u64 = 1 << 40;
    const CF: u64 = 1 << 0;
    const PF: u64 = 1 << 2;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const OF: u64 = 1 << 11;

    /// Whether the jump with `condition` is taken with these `eflags` (an unconditional way
    /// out always is).
    #[inline(always)]
    pub fn holds(condition: u8, eflags: u64) -> bool {
        if condition == 0 {
            return true;
        }
        let code = condition - 1;
        let set = |flag: u64| eflags & flag != 0;
        let sign_differs = set(SF) != set(OF);
        let base = match code >> 1 {
            0 => set(OF),
            1 => set(CF),
            2 => set(ZF),
            3 => set(CF) || set(ZF),
            4 => set(SF),
            5 => set(PF),
            6 => sign_differs,
            _ => set(ZF) || sign_differs,
        };
        base != (code & 1 != 0)
    }
}

/// Global settings of the programs, element 0 of [`maps::CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`config_flags`] bits.
    pub flags: u32,
    /// Wake the ring-buffer reader only once this many bytes are pending; below it, events are
    /// submitted without a wake-up and user space drains them on its timer.
    pub wakeup_bytes: u32,
    /// The tracer's own process, never traced (it may map the very library it traces).
    pub self_tgid: u32,
    /// Where `child_pid` is in a `sched_process_fork` tracepoint record (the kernel's format
    /// file says; it moved across kernel versions).
    pub fork_child_pid_offset: u32,
    /// Where `group_dead` is in a `sched_process_exit` record; 0 on kernels without it (then
    /// a process counts as gone when its main thread exits).
    pub exit_group_dead_offset: u32,
    /// Where `exit_code` is in the kernel's `task_struct` (from its BTF); 0: unknown.
    pub task_exit_code_offset: u32,
    /// With [`config_flags::PID_NAMESPACE`]: the device and inode of the pid namespace whose
    /// process ids the programs use (`stat /proc/self/ns/pid`, device as the kernel encodes
    /// it), for a tracer that runs inside a container and knows no host pids.
    pub pid_ns_dev: u64,
    pub pid_ns_ino: u64,
    /// Calls that returned faster than this are not emitted, only counted
    /// ([`Counter::Filtered`], per probe in [`maps::FILTERED`]); 0: no bound.
    pub min_latency_ns: u64,
    /// Calls slower than this likewise; 0: no bound.
    pub max_latency_ns: u64,
    /// With [`config_flags::ONE_THREAD`]: only this thread's calls are traced.
    pub tid: u32,
    /// Above 1: one call in this many, per probe and CPU, is emitted (`--sample 1/N`); the
    /// others are counted as filtered out.
    pub sample_every: u32,
    /// With [`config_flags::ONE_COMMAND`]: only threads whose command name
    /// (`bpf_get_current_comm`, NUL-padded) is this are traced.
    pub comm: [u8; 16],
    /// `--rate N/s`: nanoseconds per token of each probe's bucket ([`maps::RATE_BUCKETS`]);
    /// 0: no limit.
    pub rate_interval_ns: u64,
    /// The bucket's depth, in nanoseconds ahead of now (burst × interval).
    pub rate_burst_ns: u64,
}
const _: () = assert!(size_of::<Config>() == 96);

/// Bits of [`Config::flags`].
pub mod config_flags {
    /// The entry program parks new calls. Cleared at stop so no new call starts while links
    /// are torn down; returns of calls already parked still complete and are emitted.
    pub const ENABLED: u32 = 1;
    /// Only processes in [`maps::TGIDS`](super::maps::TGIDS) are traced.
    pub const SELECT_TGIDS: u32 = 2;
    /// Children forked by processes in [`maps::TGIDS`](super::maps::TGIDS) join it.
    pub const FOLLOW_FORKS: u32 = 4;
    /// Process and thread ids are those of the pid namespace [`Config::pid_ns_ino`] names
    /// (the tracer's own): every id in maps and events, and processes of other namespaces
    /// are never traced. Forks are then not followed (the fork record's child id is the
    /// host's); user space selects new processes instead.
    pub const PID_NAMESPACE: u32 = 8;
    /// Only the thread [`Config::tid`] is traced (`--tid`).
    pub const ONE_THREAD: u32 = 16;
    /// Only threads named [`Config::comm`] are traced (`--comm`).
    pub const ONE_COMMAND: u32 = 32;
    /// Calls are not emitted: their latencies are counted in log2 buckets per probe
    /// ([`maps::HISTOGRAMS`]) (`--histogram`).
    pub const AGGREGATE: u32 = 64;
    /// Calls are checked against their probe's [`maps::PREDICATES`](super::maps::PREDICATES)
    /// entry when they return (`--where`, `--errors`).
    pub const PREDICATES: u32 = 128;
    /// Nothing reads the calls' arguments (`--histogram` or `--stats` without `--where`,
    /// `--errors`, `--by-arg` or `--stuck`): the entry program captures none, and parks a
    /// call in its thread's shadow only ([`ThreadCalls::entries`](super::ThreadCalls)), in
    /// the in-flight map only when the shadow has no room.
    pub const SKIP_CAPTURE: u32 = 256;
    /// Aggregated calls are grouped by one argument too (`--by-arg`): each plan's
    /// `by_argument_*` fields say where it is.
    pub const BY_ARGUMENT: u32 = 512;
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
    /// A call ended without its return probe firing: a newer call or a return of the same
    /// thread reached a shallower frame (`longjmp`, an exception). Not a drop.
    Abandoned = 4,
    /// A child could not join [`maps::TGIDS`]: the map was full.
    TgidsFull = 5,
    /// A Go function was entered where R14 held no readable goroutine (`g`): not paired.
    NoGoroutine = 6,
    /// A call returned outside `--min-latency`/`--max-latency`, did not meet `--where` or
    /// `--errors`, was over `--rate`, or `--sample` passed it over, and it was not emitted,
    /// as asked. Not a drop.
    Filtered = 7,
    /// A call's latency could not be counted: the histogram map was full.
    HistogramFull = 8,
    /// A probe fired at an address not yet known for its process, on a kernel without attach
    /// cookies: the process was new to the tracer (its maps are read within a tick).
    Unidentified = 9,
    /// On a kernel without attach cookies, an entry its thread's shadow had no room for (more
    /// than `THREAD_DEPTH` traced calls deep, or the threads map full): its return could not
    /// tell its probe, so the call was not parked.
    ShadowFull = 10,
}

/// Capacity of [`maps::COUNTERS`].
pub const COUNTER_SLOTS: u32 = 16;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Self; 11] = [
        Self::RingFull,
        Self::LostEntry,
        Self::InflightFull,
        Self::NoPlan,
        Self::Abandoned,
        Self::TgidsFull,
        Self::NoGoroutine,
        Self::Filtered,
        Self::HistogramFull,
        Self::Unidentified,
        Self::ShadowFull,
    ];

    /// Whether the counter counts calls lost to the trace (a drop), not calls that ended in
    /// an unusual way or were filtered out as asked.
    pub const fn is_drop(self) -> bool {
        !matches!(self, Self::Abandoned | Self::Filtered)
    }

    /// What the counter means, for summaries.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::RingFull => "dropped: ring buffer full",
            Self::LostEntry => "returns without a recorded entry",
            Self::InflightFull => "entries not recorded: in-flight map full",
            Self::NoPlan => "probes without a plan",
            Self::Abandoned => "calls unwound (left by an exception, a panic or longjmp)",
            Self::TgidsFull => "child processes not traced: process set full",
            Self::NoGoroutine => "Go calls not traced: no goroutine in R14",
            Self::Filtered => "calls filtered out as asked, not emitted",
            Self::HistogramFull => "calls not counted: histogram map full",
            Self::Unidentified => "calls not told apart: probe address not yet known",
            Self::ShadowFull => "calls not traced: nested deeper than the thread's call shadow",
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
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AddressKey {}
    // SAFETY: as above: a header and a byte array.
    unsafe impl aya::Pod for super::InFlightCall {}
    // SAFETY: as above: integers and arrays of integers, padded explicitly.
    unsafe impl aya::Pod for super::ThreadCalls {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LatencyStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HistogramKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateBucket {}
    // SAFETY: as above: integers, byte arrays and explicit padding.
    unsafe impl aya::Pod for super::Predicate {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_through_pointers_need_the_faulting_entry() {
        let step = |reg: u8, value: u8, derefs: u8| CaptureStep {
            location: location::REGISTER,
            reg,
            value,
            derefs,
            ..Default::default()
        };
        // Registers, and the thread's own stack or goroutine: resident.
        assert!(!step(reg::RDI, value::WORD, 0).reads_untouched_memory());
        assert!(!step(reg::RSP, value::BYTES, 0).reads_untouched_memory());
        assert!(!step(reg::R14, value::BYTES, 0).reads_untouched_memory());
        assert!(!step(reg::RSP, value::STACK_ID, 0).reads_untouched_memory());
        // What a pointer leads to: maybe not.
        assert!(step(reg::RDI, value::C_STRING, 0).reads_untouched_memory());
        assert!(step(reg::RDI, value::WORD, 1).reads_untouched_memory());
        assert!(step(reg::RSP, value::WORD, 1).reads_untouched_memory());
        let mut plan = CapturePlan {
            step_count: 1,
            ..Default::default()
        };
        plan.steps[0] = step(reg::RDI, value::WORD, 0);
        plan.steps[1] = step(reg::RDI, value::C_STRING, 0);
        assert!(
            !plan.reads_untouched_memory(),
            "steps past the count do not count"
        );
        plan.step_count = 2;
        assert!(plan.reads_untouched_memory());
        // A step of the return runs in the return program: not the entry's concern.
        plan.return_steps = 1 | (2 << 16);
        assert!(!plan.reads_untouched_memory());
    }

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
        assert_eq!(offset_of!(InFlightCall, payload), EVENT_HEADER_SIZE);
    }

    #[test]
    fn records_are_8_byte_aligned() {
        assert_eq!(core::mem::align_of::<InFlightCall>(), 8);
    }

    #[test]
    fn plan_and_key_layouts() {
        assert_eq!(offset_of!(CaptureStep, size), 4);
        assert_eq!(offset_of!(CaptureStep, out_offset), 6);
        assert_eq!(offset_of!(CaptureStep, len_reg), 8);
        assert_eq!(offset_of!(CaptureStep, offset), 12);
        assert_eq!(offset_of!(CaptureStep, deref_offsets), 16);
        assert_eq!(offset_of!(CapturePlan, return_steps), 16);
        assert_eq!(offset_of!(CapturePlan, by_argument_offset), 24);
        assert_eq!(offset_of!(CapturePlan, go_types), 32);
        assert_eq!(offset_of!(CapturePlan, steps), 48);
        assert_eq!(offset_of!(InflightKey, frame), 8);
        assert_eq!(offset_of!(InflightKey, probe_id), 16);
        assert_eq!(offset_of!(Config, wakeup_bytes), 4);
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
    fn exit_conditions_follow_the_x86_condition_codes() {
        use exit_condition::holds;
        const ZF: u64 = 1 << 6;
        const SF: u64 = 1 << 7;
        const OF: u64 = 1 << 11;
        const CF: u64 = 1;
        // (code + 1, flags, taken)
        for (condition, flags, taken) in [
            (0, 0, true),
            (4 + 1, ZF, true),  // je
            (4 + 1, 0, false),  // je
            (5 + 1, ZF, false), // jne
            (5 + 1, 0, true),   // jne
            (2 + 1, CF, true),  // jb
            (7 + 1, 0, true),   // ja
            (7 + 1, ZF, false), // ja
            (12 + 1, SF, true), // jl: SF != OF
            (12 + 1, SF | OF, false),
            (15 + 1, 0, true), // jg: !ZF && SF == OF
            (15 + 1, ZF, false),
            (14 + 1, OF, true), // jle: ZF || SF != OF
        ] {
            assert_eq!(holds(condition, flags), taken, "{condition} {flags:#x}");
        }
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
