//! The trace file format, version 1 (documented in `docs/trace-format.md`).
//!
//! ```text
//! file   := MAGIC "KOOLKTRC" | version u32 LE | frame*        (the first frame is the header)
//! frame  := "KTCK" | kind u8 | flags u8 | 0u16 | stored_len u32 | raw_len u32 | crc32c u32
//!           | stored_len bytes (zstd-compressed when flags has ZSTD)
//! ```
//! Header, counters and end frames carry JSON; event frames carry a columnar, varint-encoded
//! batch of calls (see [`encode_events`]). Every frame has its own magic, length and checksum,
//! so a reader recovers every whole frame before a torn tail, skips a corrupt one, and finds
//! the next by its magic.
//!
//! Must never: trust a length or count read from a file without bounding it.

use serde::{Deserialize, Serialize};

use crate::{
    events::{CallEvent, probe_table::ProbeTable},
    sinks::clock::WallClock,
};

pub const MAGIC: [u8; 8] = *b"KOOLKTRC";
/// The format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;
pub const FILE_HEADER: usize = 12;
pub const FRAME_MAGIC: [u8; 4] = *b"KTCK";
pub const FRAME_HEADER: usize = 20;
/// No frame is larger, stored or raw: a bound on what a corrupt length can make us allocate.
pub const MAX_FRAME_BYTES: usize = 32 << 20;

/// What a frame holds. Never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// JSON [`TraceHeader`]; first in every file.
    Header = 1,
    /// A batch of calls.
    Events = 2,
    /// JSON [`CountersRecord`]: drops so far.
    Counters = 3,
    /// JSON [`EndRecord`]: the trace ended cleanly.
    End = 4,
    /// JSON [`ProcessesRecord`]: processes whose calls follow, first seen since the last one.
    Processes = 5,
    /// JSON [`StacksRecord`]: the user stacks of calls that follow (`--stack`), symbolized.
    Stacks = 6,
    /// JSON [`AggregatesRecord`]: calls counted in the kernel (`--histogram`, `--stats`) so far.
    Aggregates = 7,
}

impl FrameKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Header,
            2 => Self::Events,
            3 => Self::Counters,
            4 => Self::End,
            5 => Self::Processes,
            6 => Self::Stacks,
            7 => Self::Aggregates,
            _ => return None,
        })
    }
}

/// Bits of a frame's flags.
pub mod frame_flags {
    /// The payload is zstd-compressed.
    pub const ZSTD: u8 = 1;
}

/// CRC-32C (Castagnoli) of frame payloads.
pub fn checksum(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32, crc::Table<16>> =
        crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
    CRC.checksum(bytes)
}

/// The 20-byte header of a frame.
pub fn frame_header(
    kind: FrameKind,
    flags: u8,
    stored_len: u32,
    raw_len: u32,
    crc: u32,
) -> [u8; FRAME_HEADER] {
    let mut header = [0u8; FRAME_HEADER];
    header[..4].copy_from_slice(&FRAME_MAGIC);
    header[4] = kind as u8;
    header[5] = flags;
    header[8..12].copy_from_slice(&stored_len.to_le_bytes());
    header[12..16].copy_from_slice(&raw_len.to_le_bytes());
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Who and what was traced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `process` or `binary`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// The process's command name, when a process was traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The first frame of a trace file: everything needed to read the events on another machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub tool: String,
    pub hostname: String,
    pub kernel: String,
    /// `CLOCK_REALTIME` and `CLOCK_MONOTONIC` read together when tracing started: events carry
    /// monotonic times, this anchor turns them into wall-clock times.
    pub start_realtime_ns: u64,
    pub start_monotonic_ns: u64,
    pub target: TargetInfo,
    pub probes: ProbeTable,
    /// For merged traces: the traces this one was made from (their headers without probes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// For a recording the agent made: which request, on which node, of which pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RecordedRequest>,
}

/// What the agent recorded a file for: its request, node, pod and container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The request's name.
    pub name: String,
    pub node: String,
    pub namespace: String,
    pub pod: String,
    /// The container the request names; `None`: every container of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl TraceHeader {
    /// The wall clock of the traced machine, from the anchor taken when recording started.
    pub fn clock(&self) -> WallClock {
        WallClock::from_anchor(self.start_realtime_ns, self.start_monotonic_ns)
    }
}

/// A process whose calls a trace holds: where it ran (the host, and its pod), so that the
/// traces of several nodes, merged, keep their processes apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The id the file's calls carry.
    pub pid: u32,
    pub host: String,
    /// Its id on its host, where a merge gave it another (two nodes' pid 4242).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl ProcessInfo {
    /// Its pid on its host.
    pub fn host_pid(&self) -> u32 {
        self.host_pid.unwrap_or(self.pid)
    }

    /// Its pod and container, where it ran in one.
    pub fn labels(&self) -> Option<crate::target::pods::PodLabels> {
        Some(crate::target::pods::PodLabels {
            namespace: self.namespace.clone()?,
            pod: self.pod.clone()?,
            container: self.container.clone().unwrap_or_else(|| "?".into()),
        })
    }
}

/// Processes first seen since the last record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessesRecord {
    pub processes: Vec<ProcessInfo>,
}

/// One user stack of a process, symbolized while tracing: what the calls whose payload holds
/// `stack_id` and `caller` (the probe's `stack` and `caller` slots) were called through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    pub pid: u32,
    pub stack_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<u64>,
    /// Innermost first: `function+offset (object)`.
    pub frames: Vec<String>,
}

/// Stacks first seen since the last record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StacksRecord {
    pub stacks: Vec<StackInfo>,
}

/// Calls counted in the kernel instead of recorded one by one (`--histogram`, `--stats`),
/// cumulative since the trace started: the last record read holds the totals, and two
/// records' difference the calls between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatesRecord {
    /// When the kernel's counts were read (`CLOCK_MONOTONIC`, like event times).
    pub at_ns: u64,
    pub functions: Vec<AggregatedProbe>,
}

/// One probe's calls counted in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatedProbe {
    pub probe: u32,
    /// `--by-arg`: the argument value these calls had, as shown (`status=404`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub calls: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// (log2 bucket, calls): bucket 0 holds 0 ns, bucket k `2^(k-1)..2^k - 1` ns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<(u32, u64)>,
}

impl AggregatedProbe {
    /// Calls by bucket index, all 65 buckets.
    pub fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0; tracer_ebpf::HISTOGRAM_BUCKETS as usize];
        for &(bucket, n) in &self.buckets {
            if let Some(slot) = counts.get_mut(bucket as usize) {
                *slot += n;
            }
        }
        counts
    }
}

/// Drops counted so far (cumulative), written periodically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersRecord {
    /// Kernel counters of lost calls, by their description.
    pub kernel: Vec<(String, u64)>,
    pub undecodable: u64,
    /// Calls that ended without returning (`longjmp`, exceptions): not lost, not drops.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned: u64,
    /// Calls each probe (by id) had filtered out in the kernel by the latency bounds
    /// (`--min-latency`, `--max-latency`): not drops, not in the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filtered: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The last frame of a trace that ended cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    pub stop: String,
    pub events: u64,
    #[serde(default)]
    pub unfinished: u64,
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over bytes that never reads past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
}

/// Columns of an event batch, filled one call at a time.
#[derive(Debug, Default)]
pub struct EventColumns {
    count: u64,
    probe: Vec<u8>,
    pid: Vec<u8>,
    tid: Vec<u8>,
    cpu: Vec<u8>,
    entry: Vec<u8>,
    latency: Vec<u8>,
    ret: Vec<u8>,
    payload_len: Vec<u8>,
    payload: Vec<u8>,
    last_pid: u32,
    last_entry: u64,
}

impl EventColumns {
    pub fn push(&mut self, event: &CallEvent) {
        self.count += 1;
        put_varint(&mut self.probe, u64::from(event.probe_id));
        put_varint(
            &mut self.pid,
            zigzag(i64::from(event.pid) - i64::from(self.last_pid)),
        );
        put_varint(
            &mut self.tid,
            zigzag(i64::from(event.tid) - i64::from(event.pid)),
        );
        put_varint(&mut self.cpu, u64::from(event.cpu));
        put_varint(
            &mut self.entry,
            zigzag(event.entry_ns.wrapping_sub(self.last_entry) as i64),
        );
        put_varint(
            &mut self.latency,
            event.exit_ns.saturating_sub(event.entry_ns),
        );
        put_varint(&mut self.ret, zigzag(event.ret as i64));
        put_varint(&mut self.payload_len, event.payload.len() as u64);
        self.payload.extend_from_slice(&event.payload);
        self.last_pid = event.pid;
        self.last_entry = event.entry_ns;
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Raw bytes this batch encodes to.
    pub fn encoded_len(&self) -> usize {
        self.columns().iter().map(|c| c.len() + 5).sum::<usize>() + 10
    }

    fn columns(&self) -> [&Vec<u8>; 9] {
        [
            &self.probe,
            &self.pid,
            &self.tid,
            &self.cpu,
            &self.entry,
            &self.latency,
            &self.ret,
            &self.payload_len,
            &self.payload,
        ]
    }

    /// The encoded batch: the count, then each column with its length. Empties the columns.
    pub fn take_encoded(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        put_varint(&mut out, self.count);
        for column in self.columns() {
            put_varint(&mut out, column.len() as u64);
            out.extend_from_slice(column);
        }
        *self = Self::default();
        out
    }
}

/// Why an event batch did not decode: the reader skips the frame and says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt event batch: {0}")]
pub struct CorruptBatch(&'static str);

fn bad(reason: &'static str) -> CorruptBatch {
    CorruptBatch(reason)
}

/// Decodes a batch made by [`EventColumns::take_encoded`].
pub fn decode_events(bytes: &[u8]) -> Result<Vec<CallEvent>, CorruptBatch> {
    let mut cursor = Cursor { bytes };
    let count = cursor.varint().ok_or_else(|| bad("count"))?;
    // Every call takes at least one byte in each of 8 columns: bound the count before
    // allocating anything for it.
    if count > bytes.len() as u64 / 8 {
        return Err(bad("count larger than the batch"));
    }
    let mut columns = Vec::with_capacity(9);
    for _ in 0..9 {
        let len = cursor.varint().ok_or_else(|| bad("column length"))?;
        let column = cursor
            .take(usize::try_from(len).map_err(|_| bad("column length"))?)
            .ok_or_else(|| bad("column past the end"))?;
        columns.push(Cursor { bytes: column });
    }
    let [
        probe,
        pid,
        tid,
        cpu,
        entry,
        latency,
        ret,
        payload_len,
        payload,
    ]: [Cursor<'_>; 9] = columns.try_into().map_err(|_| bad("columns"))?;
    let (mut probe, mut pid, mut tid, mut cpu, mut entry) = (probe, pid, tid, cpu, entry);
    let (mut latency, mut ret, mut payload_len, mut payload) = (latency, ret, payload_len, payload);
    let mut events = Vec::with_capacity((count as usize).min(1 << 16));
    let payload_all = bytes::Bytes::copy_from_slice(payload.bytes);
    let mut payload_at = 0usize;
    let (mut last_pid, mut last_entry) = (0i64, 0u64);
    for _ in 0..count {
        let missing = || bad("a column ends early");
        let probe_id =
            u32::try_from(probe.varint().ok_or_else(missing)?).map_err(|_| bad("probe id"))?;
        let pid_value = last_pid
            .checked_add(unzigzag(pid.varint().ok_or_else(missing)?))
            .ok_or_else(|| bad("pid"))?;
        let tid_value = pid_value
            .checked_add(unzigzag(tid.varint().ok_or_else(missing)?))
            .ok_or_else(|| bad("tid"))?;
        let cpu_value = cpu.varint().ok_or_else(missing)?;
        let entry_ns =
            last_entry.wrapping_add(unzigzag(entry.varint().ok_or_else(missing)?) as u64);
        let latency_ns = latency.varint().ok_or_else(missing)?;
        let ret_value = unzigzag(ret.varint().ok_or_else(missing)?) as u64;
        let len = usize::try_from(payload_len.varint().ok_or_else(missing)?)
            .map_err(|_| bad("payload"))?;
        if payload.take(len).is_none() {
            return Err(bad("payload past the end"));
        }
        let event = CallEvent {
            probe_id,
            pid: u32::try_from(pid_value).map_err(|_| bad("pid"))?,
            tid: u32::try_from(tid_value).map_err(|_| bad("tid"))?,
            cpu: u32::try_from(cpu_value).map_err(|_| bad("cpu"))?,
            entry_ns,
            exit_ns: entry_ns.saturating_add(latency_ns),
            ret: ret_value,
            payload: payload_all.slice(payload_at..payload_at + len),
        };
        payload_at += len;
        last_pid = pid_value;
        last_entry = entry_ns;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    pub(crate) fn event(i: u64) -> CallEvent {
        CallEvent {
            probe_id: (i % 3) as u32,
            pid: 4242 + (i % 2) as u32,
            tid: 4242 + (i % 5) as u32,
            cpu: (i % 2) as u32,
            entry_ns: 1_000_000_000 + i * 1_000 - (i % 4) * 700,
            exit_ns: 1_000_000_000 + i * 1_000 - (i % 4) * 700 + 50 + i,
            ret: if i.is_multiple_of(7) { u64::MAX } else { i * 3 },
            payload: Bytes::from((0..(i % 40) as u8).collect::<Vec<u8>>()),
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Cursor { bytes: &out }.varint(), Some(value));
        }
        for value in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(
            Cursor {
                bytes: &[0x80, 0x80]
            }
            .varint(),
            None
        );
        assert_eq!(Cursor { bytes: &[0xff; 11] }.varint(), None);
    }

    #[test]
    fn event_batches_round_trip() {
        let events: Vec<CallEvent> = (0..1000).map(event).collect();
        let mut columns = EventColumns::default();
        for e in &events {
            columns.push(e);
        }
        assert_eq!(columns.len(), 1000);
        let encoded = columns.take_encoded();
        assert!(columns.is_empty());
        assert_eq!(decode_events(&encoded).unwrap(), events);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let mut columns = EventColumns::default();
        for i in 0..50 {
            columns.push(&event(i));
        }
        let encoded = columns.take_encoded();
        for cut in 0..encoded.len() {
            let _ = decode_events(&encoded[..cut]);
        }
        let mut flipped = encoded.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x5a;
            let _ = decode_events(&flipped);
            flipped[i] ^= 0x5a;
        }
        assert!(decode_events(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn frame_headers_are_laid_out_as_documented() {
        let header = frame_header(FrameKind::Events, frame_flags::ZSTD, 10, 20, 0xdead_beef);
        assert_eq!(&header[..4], b"KTCK");
        assert_eq!((header[4], header[5]), (2, 1));
        assert_eq!(u32::from_le_bytes(header[8..12].try_into().unwrap()), 10);
        assert_eq!(u32::from_le_bytes(header[12..16].try_into().unwrap()), 20);
        assert_eq!(
            u32::from_le_bytes(header[16..20].try_into().unwrap()),
            0xdead_beef
        );
        assert_eq!(checksum(b"123456789"), 0xe306_9283);
    }
}
