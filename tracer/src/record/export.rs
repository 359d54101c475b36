//! `koolkit-trace export`: a trace file as Chrome trace-event JSON (what Perfetto and
//! chrome://tracing open: one track per thread, or per goroutine for Go calls, each call a
//! complete event with its arguments, return value, results and goroutine) or as JSON Lines
//! (the live `--json` records). Streams: the output is written as the file is read, whatever
//! its size.

use std::{collections::BTreeSet, io::Write};

use serde_json::json;

use super::{
    filter::CallFilter,
    reader::{ReadOutcome, TraceReader},
};
use crate::sinks::line::{goroutine, json_args, json_line_labelled, json_results, json_return};

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Chrome,
    /// Chrome trace-event JSON with a track per goroutine for Go calls (a goroutine moves
    /// between threads; its calls nest on its own track).
    ChromeByGoroutine,
    JsonLines,
}

/// Goroutine tracks are numbered from here, above every Linux thread id (`pid_max` is at
/// most 2^22), so they never share a thread's track. Perfetto reads track ids as 32 bits.
const GOROUTINE_TRACKS: u64 = 1 << 22;

/// The track of a call: its thread's, or with goroutine tracks its goroutine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Track {
    Thread(u32),
    Goroutine(u64),
}

impl Track {
    fn id(self) -> u64 {
        match self {
            Self::Thread(tid) => u64::from(tid),
            Self::Goroutine(goid) => GOROUTINE_TRACKS.saturating_add(goid),
        }
    }

    fn name(self) -> String {
        match self {
            Self::Thread(tid) => format!("thread {tid}"),
            Self::Goroutine(goid) => format!("goroutine {goid}"),
        }
    }
}

/// Writes the calls of `reader` accepted by `filter` to `out`; returns the read report.
pub fn export(
    reader: &TraceReader,
    filter: &CallFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> std::io::Result<ReadOutcome> {
    let header = reader.header();
    let clock = header.clock();
    let mut first = true;
    let mut tracks = BTreeSet::new();
    let chrome = format != ExportFormat::JsonLines;
    if chrome {
        out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
    }
    let mut line = String::new();
    let merged = !header.merged_from.is_empty();
    let report = reader.try_for_each_call(filter, |event, probe, process, stack| {
        line.clear();
        match format {
            ExportFormat::JsonLines => {
                let placed = super::Placed::new(event, process, merged).with_stack(stack);
                json_line_labelled(&mut line, &placed.event, probe, &clock, placed.origin());
            }
            ExportFormat::Chrome | ExportFormat::ChromeByGoroutine => {
                let goid = goroutine(event, probe);
                let track = match goid {
                    Some(goid) if format == ExportFormat::ChromeByGoroutine => {
                        Track::Goroutine(goid)
                    }
                    _ => Track::Thread(event.tid),
                };
                tracks.insert((event.pid, track));
                let mut args = json_args(event, probe);
                if probe.ret.is_some() {
                    args.insert("return".into(), json_return(event, probe));
                }
                let results = json_results(event, probe);
                if !results.is_empty() {
                    args.insert("results".into(), results.into());
                }
                if let Some(goid) = goid {
                    args.insert("goid".into(), goid.into());
                    args.insert("thread".into(), event.tid.into());
                }
                let record = json!({
                    "name": probe.function,
                    "cat": probe.object_name(),
                    "ph": "X",
                    // Microseconds since the trace started: relative times keep nanosecond
                    // precision in an f64.
                    "ts": event.entry_ns.saturating_sub(header.start_monotonic_ns) as f64 / 1e3,
                    "dur": event.latency_ns() as f64 / 1e3,
                    "pid": event.pid,
                    "tid": track.id(),
                    "args": args,
                });
                if !first {
                    line.push_str(",\n");
                }
                line.push_str(&record.to_string());
                first = false;
            }
        }
        out.write_all(line.as_bytes())
    })?;
    if chrome {
        // Name the tracks: processes by the traced command, threads and goroutines by their
        // ids.
        let command = header
            .target
            .command
            .clone()
            .unwrap_or_else(|| "process".into());
        let mut named = BTreeSet::new();
        for (pid, track) in tracks {
            if named.insert(pid) {
                let process = json!({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                    "args": {"name": format!("{command} {pid}")}});
                write!(out, "{}{process}", if first { "" } else { ",\n" })?;
                first = false;
            }
            let thread = json!({"name": "thread_name", "ph": "M", "pid": pid,
                "tid": track.id(), "args": {"name": track.name()}});
            write!(out, "{}{thread}", if first { "" } else { ",\n" })?;
            first = false;
        }
        out.write_all(b"\n]}\n")?;
    }
    out.flush()?;
    Ok(report)
}
