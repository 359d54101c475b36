//! Writing trace files: calls are encoded into columns as they come, and written as one
//! compressed, checksummed frame every [`CHUNK_EVENTS`] calls or whenever the caller flushes
//! (the live loop does on its timer, so a killed tracer loses at most that much). Files rotate
//! by size, each rotated file whole and self-describing.

use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use super::file_format::{
    AggregatesRecord, CountersRecord, EndRecord, EventColumns, FILE_HEADER, FRAME_HEADER,
    FrameKind, MAGIC, MAX_FRAME_BYTES, ProcessInfo, ProcessesRecord, StackInfo, StacksRecord,
    TraceHeader, VERSION, checksum, frame_flags, frame_header,
};
use crate::{
    error::{Error, Result},
    events::CallEvent,
};

/// Calls per events frame, at most.
pub const CHUNK_EVENTS: u64 = 32 * 1024;
/// zstd level: fast enough for millions of calls a second on one core.
const ZSTD_LEVEL: i32 = 1;

/// How files rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file once the current one reaches this many bytes.
    pub size: u64,
    /// Rotated files kept besides the current one (`trace.1.kt` is the newest).
    pub keep: u32,
}

/// Writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    pub compress: bool,
    pub rotation: Option<Rotation>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            compress: true,
            rotation: None,
        }
    }
}

/// What a writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Calls in frames written (pushed calls count once their frame is written).
    pub events: u64,
    pub bytes: u64,
    /// Files written, rotated ones included.
    pub files: u32,
    /// Of those, the oldest ones rotation removed (beyond `keep`).
    pub removed: u32,
}

/// A trace file being written.
pub struct TraceWriter {
    path: PathBuf,
    out: BufWriter<File>,
    header: Vec<u8>,
    columns: EventColumns,
    options: WriterOptions,
    /// Bytes in the current file.
    file_bytes: u64,
    /// Calls in the current file's frames.
    file_events: u64,
    stats: WriterStats,
    last_counters: Option<CountersRecord>,
    /// Every process named so far (each rotated file names them all again).
    processes: Vec<ProcessInfo>,
    /// Of those, the ones the current file has not named yet.
    unnamed: usize,
    /// Every stack seen so far, and how many of the last the current file lacks.
    stacks: Vec<StackInfo>,
    unwritten_stacks: usize,
}

fn create_file(path: &Path) -> Result<BufWriter<File>> {
    let file = File::create(path).map_err(|source| Error::write(path, source))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

/// `trace.kt` → `trace.3.kt`.
pub fn rotated_path(path: &Path, index: u32) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("trace");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}.{index}.{ext}"),
        None => format!("{stem}.{index}"),
    };
    path.with_file_name(name)
}

impl TraceWriter {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, header: &TraceHeader, options: WriterOptions) -> Result<Self> {
        let header = serde_json::to_vec(header)
            .map_err(|e| Error::internal(format!("trace header: {e}")))?;
        if header.len() > MAX_FRAME_BYTES {
            return Err(Error::Usage(format!(
                "the probe table takes {} MiB, more than a trace file holds ({} MiB): trace \
                 fewer functions",
                header.len() >> 20,
                MAX_FRAME_BYTES >> 20
            )));
        }
        let mut writer = Self {
            path: path.to_path_buf(),
            out: create_file(path)?,
            header,
            columns: EventColumns::default(),
            options,
            file_bytes: 0,
            file_events: 0,
            stats: WriterStats::default(),
            last_counters: None,
            processes: Vec::new(),
            unnamed: 0,
            stacks: Vec::new(),
            unwritten_stacks: 0,
        };
        writer.start_file()?;
        // On disk before anything is traced: a reader or a tracer killed early sees a trace
        // of no calls, not an empty file.
        writer.flush_to_disk()?;
        Ok(writer)
    }

    fn start_file(&mut self) -> Result<()> {
        let mut preamble = [0u8; FILE_HEADER];
        preamble[..8].copy_from_slice(&MAGIC);
        preamble[8..].copy_from_slice(&VERSION.to_le_bytes());
        self.write_bytes(&preamble)?;
        let header = std::mem::take(&mut self.header);
        let result = self.write_frame(FrameKind::Header, &header, false);
        self.header = header;
        self.stats.files += 1;
        // Each file carries its own counters and names its processes.
        self.last_counters = None;
        self.unnamed = self.processes.len();
        self.unwritten_stacks = self.stacks.len();
        result
    }

    /// Adds a stack that calls to follow were called through: written before the next frame
    /// of calls.
    pub fn add_stack(&mut self, stack: StackInfo) {
        self.stacks.push(stack);
        self.unwritten_stacks += 1;
    }

    fn write_unwritten_stacks(&mut self) -> Result<()> {
        if self.unwritten_stacks == 0 {
            return Ok(());
        }
        let record = StacksRecord {
            stacks: self.stacks[self.stacks.len() - self.unwritten_stacks..].to_vec(),
        };
        let raw = serde_json::to_vec(&record)
            .map_err(|e| Error::internal(format!("stacks record: {e}")))?;
        self.write_frame(FrameKind::Stacks, &raw, self.options.compress)?;
        self.unwritten_stacks = 0;
        Ok(())
    }

    /// Names a process whose calls follow: written before the next frame of calls.
    pub fn add_process(&mut self, process: ProcessInfo) {
        self.processes.push(process);
        self.unnamed += 1;
    }

    fn write_unnamed_processes(&mut self) -> Result<()> {
        if self.unnamed == 0 {
            return Ok(());
        }
        let record = ProcessesRecord {
            processes: self.processes[self.processes.len() - self.unnamed..].to_vec(),
        };
        self.write_json(FrameKind::Processes, &record)?;
        self.unnamed = 0;
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|source| Error::write(&self.path, source))?;
        self.file_bytes += bytes.len() as u64;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    fn write_frame(&mut self, kind: FrameKind, raw: &[u8], compress: bool) -> Result<()> {
        let compressed;
        let (stored, flags) = if compress {
            compressed = zstd::bulk::compress(raw, ZSTD_LEVEL)
                .map_err(|source| Error::write(&self.path, source))?;
            (&compressed[..], frame_flags::ZSTD)
        } else {
            (raw, 0)
        };
        let header = frame_header(
            kind,
            flags,
            stored.len() as u32,
            raw.len() as u32,
            checksum(stored),
        );
        self.write_bytes(&header)?;
        self.write_bytes(stored)?;
        debug_assert!(FRAME_HEADER == header.len());
        Ok(())
    }

    /// Adds a call; writes a frame when the batch is full.
    pub fn push(&mut self, event: &CallEvent) -> Result<()> {
        self.columns.push(event);
        // With rotation, frames stay a small part of a file, so a file ends close to its size.
        let frame_limit = self
            .options
            .rotation
            .map_or(usize::MAX, |r| (r.size / 8) as usize);
        if self.columns.len() >= CHUNK_EVENTS || self.columns.encoded_len() >= frame_limit {
            self.write_events()?;
        }
        Ok(())
    }

    fn write_events(&mut self) -> Result<()> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let calls = self.columns.len();
        let raw = self.columns.take_encoded();
        // A frame that would take the file past its size starts the next file instead.
        if let Some(rotation) = self.options.rotation
            && self.file_events > 0
            && self.file_bytes + (FRAME_HEADER + raw.len()) as u64 > rotation.size
        {
            self.rotate()?;
        }
        self.write_unnamed_processes()?;
        self.write_unwritten_stacks()?;
        self.write_frame(FrameKind::Events, &raw, self.options.compress)?;
        self.stats.events += calls;
        self.file_events += calls;
        Ok(())
    }

    fn flush_to_disk(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|source| Error::write(&self.path, source))
    }

    /// Ends the current file cleanly and starts the next: `trace.kt` becomes `trace.1.kt`.
    fn rotate(&mut self) -> Result<()> {
        let Some(rotation) = self.options.rotation else {
            return Ok(());
        };
        if let Some(counters) = self.last_counters.clone() {
            self.write_json(FrameKind::Counters, &counters)?;
        }
        let end = EndRecord {
            stop: format!("rotated: continued in {}", self.path.display()),
            events: self.file_events,
            unfinished: 0,
        };
        self.write_json(FrameKind::End, &end)?;
        self.out
            .flush()
            .map_err(|source| Error::write(&self.path, source))?;
        // trace.{keep}.kt drops off; every other file moves one up; the current becomes .1.
        if rotation.keep == 0 {
            let _ = fs::remove_file(&self.path);
            self.stats.removed += 1;
        } else {
            if fs::remove_file(rotated_path(&self.path, rotation.keep)).is_ok() {
                self.stats.removed += 1;
            }
            for index in (1..rotation.keep).rev() {
                let _ = fs::rename(
                    rotated_path(&self.path, index),
                    rotated_path(&self.path, index + 1),
                );
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))
                .map_err(|source| Error::write(&self.path, source))?;
        }
        self.out = create_file(&self.path)?;
        self.file_bytes = 0;
        self.file_events = 0;
        self.start_file()
    }

    fn write_json(&mut self, kind: FrameKind, value: &impl serde::Serialize) -> Result<()> {
        let raw =
            serde_json::to_vec(value).map_err(|e| Error::internal(format!("trace record: {e}")))?;
        self.write_frame(kind, &raw, false)
    }

    /// Writes what the kernel has counted so far (`--histogram`, `--stats`).
    pub fn write_aggregates(&mut self, record: &AggregatesRecord) -> Result<()> {
        self.write_events()?;
        self.write_json(FrameKind::Aggregates, record)
    }

    /// Writes the pending calls and the drop counters, and pushes it all to the file.
    pub fn flush(&mut self, counters: Option<&CountersRecord>) -> Result<()> {
        self.write_events()?;
        if let Some(counters) = counters
            && self.last_counters.as_ref() != Some(counters)
        {
            self.write_json(FrameKind::Counters, counters)?;
            self.last_counters = Some(counters.clone());
        }
        self.out
            .flush()
            .map_err(|source| Error::write(&self.path, source))
    }

    /// Ends the trace cleanly.
    pub fn finish(mut self, counters: &CountersRecord, end: &EndRecord) -> Result<WriterStats> {
        self.flush(Some(counters))?;
        self.write_json(FrameKind::End, end)?;
        self.out
            .flush()
            .map_err(|source| Error::write(&self.path, source))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|source| Error::write(&self.path, source))?;
        Ok(self.stats)
    }

    pub fn stats(&self) -> WriterStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension() {
        assert_eq!(
            rotated_path(Path::new("/tmp/trace.kt"), 3),
            Path::new("/tmp/trace.3.kt")
        );
        assert_eq!(rotated_path(Path::new("out"), 1), Path::new("out.1"));
    }
}
