//! Decoding ring-buffer records into calls.
//!
//! Records come from the kernel, so every length is checked before it is trusted: a record
//! that does not parse is counted and skipped, never a panic.

pub(crate) mod payload;
pub(crate) mod probe_table;

use std::mem::offset_of;

use bytes::Bytes;
use tracer_ebpf::{EVENT_HEADER_SIZE, EventHeader, EventKind, MAX_PAYLOAD};

/// One finished call, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    pub probe_id: u32,
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    /// Monotonic nanoseconds at entry and return.
    pub entry_ns: u64,
    pub exit_ns: u64,
    /// The raw return register.
    pub ret: u64,
    /// Captured argument bytes, laid out by the probe's plan.
    pub payload: Bytes,
}

impl CallEvent {
    pub fn latency_ns(&self) -> u64 {
        self.exit_ns.saturating_sub(self.entry_ns)
    }

    /// Whether the call left by a jump to another function (a tail call): its latency ends
    /// at the jump, and its return value is the other function's, not seen.
    pub fn ended_by_tail_call(&self) -> bool {
        self.cpu & tracer_ebpf::ENDED_BY_TAIL_CALL != 0
    }

    /// The return value, as `how` shows it; `<tail call>` for a call that left by one.
    pub fn return_value(&self, how: &crate::plan::ReturnValue) -> payload::Decoded {
        if self.ended_by_tail_call() {
            return payload::Decoded::Missing("tail call".into());
        }
        payload::decode_return(self.ret, &self.payload, how)
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("payload of {claimed} bytes does not fit a record of {len} bytes (max {MAX_PAYLOAD})")]
    BadPayloadLength { claimed: u32, len: usize },
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Reads the header at the start of `record` (which must be at least a header long).
fn read_header(record: &[u8]) -> EventHeader {
    EventHeader {
        kind: u32_at(record, offset_of!(EventHeader, kind)),
        probe_id: u32_at(record, offset_of!(EventHeader, probe_id)),
        pid: u32_at(record, offset_of!(EventHeader, pid)),
        tid: u32_at(record, offset_of!(EventHeader, tid)),
        cpu: u32_at(record, offset_of!(EventHeader, cpu)),
        payload_len: u32_at(record, offset_of!(EventHeader, payload_len)),
        entry_ns: u64_at(record, offset_of!(EventHeader, entry_ns)),
        exit_ns: u64_at(record, offset_of!(EventHeader, exit_ns)),
        ret: u64_at(record, offset_of!(EventHeader, ret)),
    }
}

/// Decodes one record. `record` is a [`Bytes`] so the payload is shared, not copied.
pub fn decode(record: &Bytes) -> Result<CallEvent, DecodeError> {
    if record.len() < EVENT_HEADER_SIZE {
        return Err(DecodeError::Short(record.len()));
    }
    let header = read_header(record);
    if EventKind::from_u32(header.kind) != Some(EventKind::Call) {
        return Err(DecodeError::UnknownKind(header.kind));
    }
    let payload_len = header.payload_len as usize;
    if payload_len > MAX_PAYLOAD || EVENT_HEADER_SIZE + payload_len > record.len() {
        return Err(DecodeError::BadPayloadLength {
            claimed: header.payload_len,
            len: record.len(),
        });
    }
    Ok(CallEvent {
        probe_id: header.probe_id,
        pid: header.pid,
        tid: header.tid,
        cpu: header.cpu,
        entry_ns: header.entry_ns,
        exit_ns: header.exit_ns,
        ret: header.ret,
        payload: record.slice(EVENT_HEADER_SIZE..EVENT_HEADER_SIZE + payload_len),
    })
}

/// A call still in flight (parked by the entry program, not returned), as an event whose
/// "return" is `now_ns`: its latency is how long it has been running. None for a record the
/// entry program has not finished filling.
pub fn running_call(call: &tracer_ebpf::InFlightCall, now_ns: u64) -> Option<CallEvent> {
    let header = &call.header;
    let payload_len = header.payload_len as usize;
    if EventKind::from_u32(header.kind) != Some(EventKind::Call)
        || header.entry_ns == 0
        || payload_len > MAX_PAYLOAD.min(call.payload.len())
    {
        return None;
    }
    Some(CallEvent {
        probe_id: header.probe_id,
        pid: header.pid,
        tid: header.tid,
        cpu: header.cpu,
        entry_ns: header.entry_ns,
        exit_ns: now_ns.max(header.entry_ns),
        ret: 0,
        payload: Bytes::copy_from_slice(&call.payload[..payload_len]),
    })
}

#[cfg(test)]
pub(crate) fn encode(header: &EventHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_HEADER_SIZE + payload.len());
    for word in [
        header.kind,
        header.probe_id,
        header.pid,
        header.tid,
        header.cpu,
        header.payload_len,
    ] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    for word in [header.entry_ns, header.exit_ns, header.ret] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(payload_len: u32) -> EventHeader {
        EventHeader {
            kind: EventKind::Call as u32,
            probe_id: 3,
            pid: 4242,
            tid: 4243,
            cpu: 1,
            payload_len,
            entry_ns: 1_000,
            exit_ns: 13_300,
            ret: 49010,
        }
    }

    #[test]
    fn decodes_a_record_laid_out_like_the_abi() {
        let payload: Vec<u8> = (0..16).collect();
        let record = Bytes::from(encode(&header(16), &payload));
        // The hand-written encoder agrees with the ABI struct's in-memory layout.
        assert_eq!(record.len(), std::mem::size_of::<EventHeader>() + 16);
        let event = decode(&record).unwrap();
        assert_eq!(event.probe_id, 3);
        assert_eq!((event.pid, event.tid, event.cpu), (4242, 4243, 1));
        assert_eq!(event.latency_ns(), 12_300);
        assert_eq!(event.ret, 49010);
        assert_eq!(&event.payload[..], &payload[..]);
    }

    #[test]
    fn the_ring_buffer_may_pad_records() {
        let mut bytes = encode(&header(8), &[1; 8]);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&Bytes::from(bytes)).unwrap().payload.len(), 8);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        assert_eq!(
            decode(&Bytes::from_static(&[0; 10])),
            Err(DecodeError::Short(10))
        );
        let mut bad_kind = header(0);
        bad_kind.kind = 99;
        assert_eq!(
            decode(&Bytes::from(encode(&bad_kind, &[]))),
            Err(DecodeError::UnknownKind(99))
        );
        let lying = Bytes::from(encode(&header(64), &[0; 8]));
        assert!(matches!(
            decode(&lying),
            Err(DecodeError::BadPayloadLength { claimed: 64, .. })
        ));
        let huge = Bytes::from(encode(&header(u32::MAX), &[]));
        assert!(matches!(
            decode(&huge),
            Err(DecodeError::BadPayloadLength { .. })
        ));
    }
}
