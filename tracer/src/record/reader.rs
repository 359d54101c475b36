//! Reading trace files, whole or broken: every whole frame before a torn tail is read, a frame
//! whose checksum fails is skipped with a warning, and the reader says what it skipped. Files
//! are read, not mapped, so one that changes under the reader cannot kill it.

use std::{
    fs::{self, File},
    io::{self, Read as _},
    os::unix::fs::FileExt as _,
    path::Path,
};

use super::file_format::{
    CountersRecord, EndRecord, FILE_HEADER, FRAME_HEADER, FRAME_MAGIC, FrameKind, MAGIC,
    MAX_FRAME_BYTES, ProcessInfo, ProcessesRecord, StacksRecord, TraceHeader, VERSION, checksum,
    decode_events, frame_flags,
};
use super::filter::CallFilter;
use crate::{
    error::{Error, Result},
    events::{CallEvent, probe_table::ProbeInfo},
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
    /// The processes the file names (host, pod), by the pid its calls carry.
    pub processes: std::collections::BTreeMap<u32, ProcessInfo>,
    /// The last record of calls counted in the kernel (`--histogram`, `--stats`): the totals.
    pub aggregates: Option<super::AggregatesRecord>,
    /// The stacks the file holds (`--stack`), by process, stack id and caller.
    pub stacks: std::collections::HashMap<StackKey, std::rc::Rc<[String]>>,
}

/// What names a recorded stack: the process, the kernel's stack id and the caller word.
pub type StackKey = (u32, u64, Option<u64>);

/// The key of the stack `event` (a call of `probe`) was called through, if the probe took
/// stacks and the kernel stored this one.
pub fn stack_key(event: &CallEvent, probe: &ProbeInfo) -> Option<StackKey> {
    use crate::events::payload::decode_word;
    let id = decode_word(&event.payload, probe.stack.as_ref()?)?;
    let caller = probe
        .caller
        .as_ref()
        .and_then(|slot| decode_word(&event.payload, slot));
    Some((event.pid, id, caller))
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
            let filtered: u64 = counters.filtered.iter().sum();
            if filtered > 0 {
                notes.push(format!(
                    "{}: {filtered} calls outside the trace's latency bounds were left out in \
                     the kernel (not in the file)",
                    path.display()
                ));
            }
        }
        // The program traced died of a signal (`target killed by SIGABRT (process 42)`).
        if let Some(end) = self
            .end
            .as_ref()
            .filter(|end| end.stop.starts_with("target killed"))
        {
            notes.push(format!("{}: {}", path.display(), end.stop));
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
struct Frame {
    kind: FrameKind,
    offset: u64,
    payload: Vec<u8>,
}

/// The bytes of a trace file, read with positioned reads (never mapped): a file truncated,
/// rewritten or still being written while it is read gives short reads, which read as a torn
/// tail, never a fault that kills the reader.
struct Source {
    file: File,
    /// The file's length when it was opened; frames appended later are not read.
    len: u64,
}

impl Source {
    /// Up to `len` bytes at `pos`: fewer at the end of the file, or where it shrank or failed
    /// to read.
    fn read(&self, pos: u64, len: usize) -> Vec<u8> {
        let available = self.len.saturating_sub(pos).min(len as u64) as usize;
        let mut buffer = vec![0; available];
        let mut got = 0;
        while got < buffer.len() {
            match self.file.read_at(&mut buffer[got..], pos + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("reading at offset {}: {err}", pos + got as u64);
                    break;
                }
            }
        }
        buffer.truncate(got);
        buffer
    }

    /// The offset of the first frame magic at or after `from`.
    fn find_magic(&self, from: u64) -> Option<u64> {
        const WINDOW: usize = 64 << 10;
        let mut at = from;
        while at < self.len {
            let window = self.read(at, WINDOW + FRAME_MAGIC.len() - 1);
            if let Some(found) = window
                .windows(FRAME_MAGIC.len())
                .position(|w| w == FRAME_MAGIC)
            {
                return Some(at + found as u64);
            }
            if window.len() < WINDOW + FRAME_MAGIC.len() - 1 {
                return None;
            }
            at += WINDOW as u64;
        }
        None
    }
}

/// An open trace file.
pub struct TraceReader {
    source: Source,
    header: TraceHeader,
    /// Where the frames after the header start.
    body: u64,
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Walks the frames of a file from `pos`.
struct Frames<'a> {
    source: &'a Source,
    pos: u64,
    report: ReadOutcome,
}

impl Frames<'_> {
    /// The next whole, valid frame; records what it skips.
    fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let pos = self.pos;
            if pos >= self.source.len {
                return None;
            }
            let head = self.source.read(pos, FRAME_HEADER);
            if head.len() < FRAME_HEADER {
                self.torn(pos);
                return None;
            }
            if head[..4] != FRAME_MAGIC {
                self.resync(pos, "no frame starts here");
                continue;
            }
            let (kind, flags) = (head[4], head[5]);
            let stored = u32_at(&head, 8) as usize;
            let raw = u32_at(&head, 12) as usize;
            let crc = u32_at(&head, 16);
            if stored > MAX_FRAME_BYTES || raw > MAX_FRAME_BYTES {
                self.resync(pos, "impossible frame length");
                continue;
            }
            let end = pos + (FRAME_HEADER + stored) as u64;
            let stored_bytes = self.source.read(pos + FRAME_HEADER as u64, stored);
            if stored_bytes.len() < stored {
                // The length is not covered by the checksum: a frame further on means this
                // one's length is corrupt, not that the file was cut short.
                if self.source.find_magic(pos + 1).is_some() {
                    self.resync(pos, "a frame length past the end of the file");
                    continue;
                }
                self.torn(pos);
                return None;
            }
            if checksum(&stored_bytes) != crc {
                // Trust the length only if the next frame (or the end) is where it says.
                let next_is_frame = end == self.source.len
                    || self.source.read(end, FRAME_MAGIC.len()) == FRAME_MAGIC;
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
            let Some(kind) = FrameKind::from_u8(kind) else {
                self.report.warnings.push(format!(
                    "frame at offset {pos}: unknown kind {kind}; skipped"
                ));
                continue;
            };
            let Some(payload) = self.payload(pos, flags, stored_bytes, raw) else {
                continue;
            };
            self.report.frames += 1;
            return Some(Frame {
                kind,
                offset: pos,
                payload,
            });
        }
    }

    /// The payload of the frame at `pos` as stored, decompressed when its flags say so; `None`
    /// (with a warning) when it does not decompress to the size its header claims.
    fn payload(&mut self, pos: u64, flags: u8, stored: Vec<u8>, raw: usize) -> Option<Vec<u8>> {
        if flags & frame_flags::ZSTD == 0 {
            return Some(stored);
        }
        match decompress(&stored, raw) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                self.report.warnings.push(format!(
                    "frame at offset {pos}: does not decompress ({err}); skipped"
                ));
                None
            }
        }
    }

    fn torn(&mut self, pos: u64) {
        self.report.torn_tail = Some((pos, self.source.len - pos));
        self.pos = self.source.len;
    }

    /// Skips to the next frame magic after `pos`.
    fn resync(&mut self, pos: u64, why: &str) {
        let next = self.source.find_magic(pos + 1);
        let skipped = next.unwrap_or(self.source.len) - pos;
        self.report
            .warnings
            .push(format!("{skipped} bytes at offset {pos} skipped ({why})"));
        self.pos = next.unwrap_or(self.source.len);
    }
}

/// Decompresses a zstd frame payload that claims `raw` bytes. Memory grows with what really
/// comes out, never with the claim, and never past it: a crafted frame cannot make the reader
/// allocate more than [`MAX_FRAME_BYTES`].
fn decompress(stored: &[u8], raw: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(stored)?
        .take(raw as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() != raw {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes, not the {raw} its header says", out.len()),
        ));
    }
    Ok(out)
}

impl TraceReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        // Checked before opening: opening a named pipe would wait for a writer.
        let meta = fs::metadata(path).map_err(|source| Error::io(path, source))?;
        if meta.is_dir() {
            return Err(Error::bad_trace_file(path, "a directory, not a trace file"));
        }
        if !meta.is_file() {
            return Err(Error::bad_trace_file(
                path,
                "not a regular file (a pipe or a device): trace files are read from disk",
            ));
        }
        let file = File::open(path).map_err(|source| Error::io(path, source))?;
        let source = Source {
            file,
            len: meta.len(),
        };
        let preamble = source.read(0, FILE_HEADER);
        if preamble.len() < FILE_HEADER || preamble[..8] != MAGIC {
            return Err(Error::bad_trace_file(path, "not a koolkit-trace file"));
        }
        let version = u32_at(&preamble, 8);
        if version > VERSION || version == 0 {
            return Err(Error::bad_trace_file(
                path,
                format!(
                    "trace format version {version}; this koolkit-trace reads up to version \
                     {VERSION}: read it with a newer koolkit-trace"
                ),
            ));
        }
        let mut frames = Frames {
            source: &source,
            pos: FILE_HEADER as u64,
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
        let body = frames.pos;
        Ok(Self {
            source,
            header,
            body,
        })
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The batches of calls in the file, in file order.
    pub fn batches(&self) -> Batches<'_> {
        Batches {
            frames: Frames {
                source: &self.source,
                pos: self.body,
                report: ReadOutcome::default(),
            },
        }
    }

    /// Visits every call of the file that `filter` accepts, with its probe, its process and
    /// its stack where the file has them, in file order, and stops at the first error `visit`
    /// returns; otherwise returns what was found besides them.
    pub fn try_for_each_call<E>(
        &self,
        filter: &CallFilter,
        mut visit: impl FnMut(
            &CallEvent,
            &ProbeInfo,
            Option<&ProcessInfo>,
            Option<&[String]>,
        ) -> Result<(), E>,
    ) -> Result<ReadOutcome, E> {
        let table = &self.header.probes;
        let mut batches = self.batches();
        while let Some(batch) = batches.next() {
            for event in &batch {
                let Some(probe) = table.get(event.probe_id) else {
                    continue;
                };
                if filter.accepts(event, probe) {
                    let stack = batches.stack(event, probe);
                    visit(event, probe, batches.process(event.pid), stack.as_deref())?;
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

    /// The process of `pid`, as the file has named it so far (a writer names a process
    /// before its calls).
    pub fn process(&self, pid: u32) -> Option<&ProcessInfo> {
        self.frames.report.processes.get(&pid)
    }

    /// The recorded stack of `event` (a call of `probe`), if the probe took stacks and the
    /// file holds that one (a writer writes a stack before the calls that use it).
    pub fn stack(&self, event: &CallEvent, probe: &ProbeInfo) -> Option<std::rc::Rc<[String]>> {
        let key = stack_key(event, probe)?;
        self.frames.report.stacks.get(&key).cloned()
    }

    /// Every stack read so far.
    pub fn stacks(&self) -> &std::collections::HashMap<StackKey, std::rc::Rc<[String]>> {
        &self.frames.report.stacks
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
                FrameKind::Processes => {
                    match serde_json::from_slice::<ProcessesRecord>(&frame.payload) {
                        Ok(record) => report
                            .processes
                            .extend(record.processes.into_iter().map(|p| (p.pid, p))),
                        Err(err) => report
                            .warnings
                            .push(format!("frame at offset {offset}: {err}")),
                    }
                }
                FrameKind::Stacks => match serde_json::from_slice::<StacksRecord>(&frame.payload) {
                    Ok(record) => {
                        for stack in record.stacks {
                            let key = (stack.pid, stack.stack_id, stack.caller);
                            report.stacks.insert(key, stack.frames.into());
                        }
                    }
                    Err(err) => report
                        .warnings
                        .push(format!("frame at offset {offset}: {err}")),
                },
                FrameKind::Aggregates => match serde_json::from_slice(&frame.payload) {
                    Ok(record) => report.aggregates = Some(record),
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
