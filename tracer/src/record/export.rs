//! `koolkit-trace export`: a trace file as Chrome trace-event JSON (what Perfetto and
//! chrome://tracing open: one track per thread, each call a complete event with its arguments
//! and return value) or as JSON Lines (the live `--json` records). Streams: the output is
//! written as the file is read, whatever its size.

use std::{collections::BTreeSet, io::Write};

use serde_json::json;

use super::{
    filter::CallFilter,
    reader::{ReadOutcome, TraceReader},
};
use crate::sinks::line::{json_args, json_line, json_return};

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Chrome,
    JsonLines,
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
    let mut threads = BTreeSet::new();
    if format == ExportFormat::Chrome {
        out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
    }
    let mut line = String::new();
    let report = reader.try_for_each_call(filter, |event, probe| {
        line.clear();
        match format {
            ExportFormat::JsonLines => json_line(&mut line, event, probe, &clock),
            ExportFormat::Chrome => {
                threads.insert((event.pid, event.tid));
                let mut args = json_args(event, probe);
                if probe.ret.is_some() {
                    args.insert("return".into(), json_return(event, probe));
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
                    "tid": event.tid,
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
    if format == ExportFormat::Chrome {
        // Name the tracks: processes by the traced command, threads by their ids.
        let command = header
            .target
            .command
            .clone()
            .unwrap_or_else(|| "process".into());
        let mut named = BTreeSet::new();
        for (pid, tid) in threads {
            if named.insert(pid) {
                let process = json!({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                    "args": {"name": format!("{command} {pid}")}});
                write!(out, "{}{process}", if first { "" } else { ",\n" })?;
                first = false;
            }
            let thread = json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": {"name": format!("thread {tid}")}});
            write!(out, "{}{thread}", if first { "" } else { ",\n" })?;
            first = false;
        }
        out.write_all(b"\n]}\n")?;
    }
    out.flush()?;
    Ok(report)
}
