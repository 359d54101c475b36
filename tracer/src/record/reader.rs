//! Reading trace files, whole or broken: every whole frame before a torn tail is read, a frame
//! whose checksum fails is skipped with a warning, and the reader says what it skipped.

use std::{borrow::Cow, fs::File, path::Path};

use memmap2::Mmap;

use super::file_format::{
    CountersRecord, EndRecord, FILE_HEADER, FRAME_HEADER, FRAME_MAGIC, FrameKind, MAGIC,
    MAX_FRAME_BYTES, TraceHeader, VERSION, checksum, decode_events, frame_flags,
};
use super::filter::CallFilter;
use crate::{
    error::{Error, Result},
    events::{CallEvent, probe_table::ProbeInfo},
    sys,
};

/// What reading a file found besides the calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    pub events: u64,
    pub frames: u64,
    /// Problems met and skipped, each a sentence.
    pub warnings: Vec<String>,
    /// Offset and size of an incomplete last frame (a killed tracer, a full disk).
    pub torn_tail: Option<(u64, u64)>,
    /// The last drop counters written.
    pub counters: Option<CountersRecord>,
    /// Present when the trace ended cleanly.
    pub end: Option<EndRecord>,
}

impl ReadOutcome {
    /// Every warning and the torn tail, as lines for stderr.
    pub fn notes(&self, path: &Path) -> Vec<String> {
        let mut notes: Vec<String> = self
            .warnings
            .iter()
            .map(|w| format!("{}: {w}", path.display()))
            .collect();
        if let Some(counters) = &self.counters {
            let dropped: Vec<String> = counters
                .kernel
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(what, n)| format!("{n} {what}"))
                .chain(
                    (counters.undecodable > 0)
                        .then(|| format!("{} undecodable records", counters.undecodable)),
                )
                .collect();
            if !dropped.is_empty() {
                notes.push(format!(
                    "{}: while recording: {}",
                    path.display(),
                    dropped.join(", ")
                ));
            }
        }
        if self.end.is_none() && self.torn_tail.is_none() {
            notes.push(format!(
                "{}: no end frame: the recording was stopped abruptly (or is still going on)",
                path.display()
            ));
        }
        if let Some((offset, bytes)) = self.torn_tail {
            notes.push(format!(
                "{}: the file ends inside a frame at offset {offset} ({bytes} bytes): the \
                 tracer was stopped abruptly; everything before it was read",
                path.display()
            ));
        }
        notes
    }
}

/// One frame, its payload decompressed.
struct Frame<'a> {
    kind: FrameKind,
    offset: u64,
    payload: Cow<'a, [u8]>,
}

/// An open trace file.
pub struct TraceReader {
    data: Mmap,
    header: TraceHeader,
    /// Where the frames after the header start.
    body: usize,
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Walks the frames of `data` from `start`.
struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    report: ReadOutcome,
}

impl<'a> Frames<'a> {
    /// The next whole, valid frame; records what it skips.
    fn next_frame(&mut self) -> Option<Frame<'a>> {
        let data = self.data;
        loop {
            let pos = self.pos;
            if pos >= data.len() {
                return None;
            }
            let left = data.len() - pos;
            if left < FRAME_HEADER {
                self.torn(pos, left);
                return None;
            }
            if data[pos..pos + 4] != FRAME_MAGIC {
                self.resync(pos, "no frame starts here");
                continue;
            }
            let kind = FrameKind::from_u8(data[pos + 4]);
            let flags = data[pos + 5];
            let stored = u32_at(data, pos + 8) as usize;
            let raw = u32_at(data, pos + 12) as usize;
            let crc = u32_at(data, pos + 16);
            if stored > MAX_FRAME_BYTES || raw > MAX_FRAME_BYTES {
                self.resync(pos, "impossible frame length");
                continue;
            }
            let end = pos + FRAME_HEADER + stored;
            if end > data.len() {
                // The length is not covered by the checksum: a frame further on means this
                // one's length is corrupt, not that the file was cut short.
                if data[pos + 1..]
                    .windows(FRAME_MAGIC.len())
                    .any(|w| w == FRAME_MAGIC)
                {
                    self.resync(pos, "a frame length past the end of the file");
                    continue;
                }
                self.torn(pos, left);
                return None;
            }
            let stored_bytes = &data[pos + FRAME_HEADER..end];
            if checksum(stored_bytes) != crc {
                // Trust the length only if the next frame (or the end) is where it says.
                let next_is_frame = end == data.len() || data[end..].starts_with(&FRAME_MAGIC);
                self.report
                    .warnings
                    .push(format!("frame at offset {pos}: checksum mismatch; skipped"));
                if next_is_frame {
                    self.pos = end;
                } else {
                    self.resync(pos, "after a corrupt frame");
                }
                continue;
            }
            self.pos = end;
            let Some(kind) = kind else {
                self.report.warnings.push(format!(
                    "frame at offset {pos}: unknown kind {}; skipped",
                    data[pos + 4]
                ));
                continue;
            };
            let Some(payload) = self.payload(pos, flags, stored_bytes, raw) else {
                continue;
            };
            self.report.frames += 1;
            return Some(Frame {
                kind,
                offset: pos as u64,
                payload,
            });
        }
    }

    /// The payload of the frame at `pos` as stored, decompressed when its flags say so; `None`
    /// (with a warning) when it does not decompress.
    fn payload(
        &mut self,
        pos: usize,
        flags: u8,
        stored: &'a [u8],
        raw: usize,
    ) -> Option<Cow<'a, [u8]>> {
        if flags & frame_flags::ZSTD == 0 {
            return Some(Cow::Borrowed(stored));
        }
        match zstd::bulk::decompress(stored, raw) {
            Ok(bytes) => Some(Cow::Owned(bytes)),
            Err(err) => {
                self.report.warnings.push(format!(
                    "frame at offset {pos}: does not decompress ({err}); skipped"
                ));
                None
            }
        }
    }

    fn torn(&mut self, pos: usize, left: usize) {
        self.report.torn_tail = Some((pos as u64, left as u64));
        self.pos = self.data.len();
    }

    /// Skips to the next frame magic after `pos`.
    fn resync(&mut self, pos: usize, why: &str) {
        let next = self.data[pos + 1..]
            .windows(FRAME_MAGIC.len())
            .position(|w| w == FRAME_MAGIC)
            .map(|at| pos + 1 + at);
        let skipped = next.unwrap_or(self.data.len()) - pos;
        self.report
            .warnings
            .push(format!("{skipped} bytes at offset {pos} skipped ({why})"));
        self.pos = next.unwrap_or(self.data.len());
    }
}

impl TraceReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::io(path, source))?;
        // Trace files are not rewritten in place: a live writer only appends, and a torn tail
        // is handled.
        let data = sys::map_read_only(&file).map_err(|source| Error::io(path, source))?;
        let not_a_trace = || Error::bad_trace_file(path, "not a koolkit-trace file");
        if data.len() < FILE_HEADER || data[..8] != MAGIC {
            return Err(not_a_trace());
        }
        let version = u32_at(&data, 8);
        if version > VERSION || version == 0 {
            return Err(Error::bad_trace_file(
                path,
                format!(
                    "trace format version {version}; this koolkit-trace reads up to version \
                     {VERSION}: read it with a newer koolkit-trace"
                ),
            ));
        }
        let (header, body) = {
            let mut frames = Frames {
                data: &data,
                pos: FILE_HEADER,
                report: ReadOutcome::default(),
            };
            let damaged = || Error::bad_trace_file(path, "the trace header is missing or damaged");
            let frame = frames.next_frame().ok_or_else(damaged)?;
            if frame.kind != FrameKind::Header || frame.offset != FILE_HEADER as u64 {
                return Err(damaged());
            }
            let header: TraceHeader = serde_json::from_slice(&frame.payload).map_err(|e| {
                Error::bad_trace_file(path, format!("the trace header does not parse: {e}"))
            })?;
            (header, frames.pos)
        };
        Ok(Self { data, header, body })
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The batches of calls in the file, in file order.
    pub fn batches(&self) -> Batches<'_> {
        Batches {
            frames: Frames {
                data: &self.data,
                pos: self.body,
                report: ReadOutcome::default(),
            },
        }
    }

    /// Visits every call of the file that `filter` accepts, with its probe, in file order, and
    /// stops at the first error `visit` returns; otherwise returns what was found besides them.
    pub fn try_for_each_call<E>(
        &self,
        filter: &CallFilter,
        mut visit: impl FnMut(&CallEvent, &ProbeInfo) -> Result<(), E>,
    ) -> Result<ReadOutcome, E> {
        let table = &self.header.probes;
        let mut batches = self.batches();
        for batch in batches.by_ref() {
            for event in &batch {
                let Some(probe) = table.get(event.probe_id) else {
                    continue;
                };
                if filter.accepts(event, probe) {
                    visit(event, probe)?;
                }
            }
        }
        Ok(batches.finish())
    }

    /// Every call in the file, and the read report.
    pub fn read_all(&self) -> (Vec<CallEvent>, ReadOutcome) {
        let mut batches = self.batches();
        let all = batches.by_ref().flatten().collect();
        (all, batches.finish())
    }
}

/// The batches of calls of a file; [`Batches::finish`] tells what else was found.
pub struct Batches<'a> {
    frames: Frames<'a>,
}

impl Batches<'_> {
    pub fn finish(self) -> ReadOutcome {
        self.frames.report
    }
}

impl Iterator for Batches<'_> {
    type Item = Vec<CallEvent>;

    fn next(&mut self) -> Option<Vec<CallEvent>> {
        loop {
            let frame = self.frames.next_frame()?;
            let report = &mut self.frames.report;
            let offset = frame.offset;
            match frame.kind {
                FrameKind::Events => match decode_events(&frame.payload) {
                    Ok(events) => {
                        report.events += events.len() as u64;
                        return Some(events);
                    }
                    Err(err) => report
                        .warnings
                        .push(format!("frame at offset {offset}: {err}; skipped")),
                },
                FrameKind::Counters => match serde_json::from_slice(&frame.payload) {
                    Ok(counters) => report.counters = Some(counters),
                    Err(err) => report
                        .warnings
                        .push(format!("frame at offset {offset}: {err}")),
                },
                FrameKind::End => match serde_json::from_slice(&frame.payload) {
                    Ok(end) => report.end = Some(end),
                    Err(err) => report
                        .warnings
                        .push(format!("frame at offset {offset}: {err}")),
                },
                FrameKind::Header => report.warnings.push(format!(
                    "frame at offset {offset}: a second header; skipped"
                )),
            }
        }
    }
}
