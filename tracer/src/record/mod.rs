//! Trace files: record calls while tracing, review them later anywhere, without the binaries.
//! [`file_format`] is the layout, [`writer`] and [`reader`] move calls in and out, and
//! [`replay`], [`report`], [`export`] and [`merge`] are what users do with a file; [`filter`]
//! picks the calls they look at.

pub(crate) mod export;
pub(crate) mod file_format;
pub(crate) mod filter;
pub(crate) mod merge;
pub(crate) mod output;
pub(crate) mod reader;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod writer;

pub use file_format::{
    AggregatedProbe, AggregatesRecord, CountersRecord, EndRecord, FILE_HEADER, ProcessInfo,
    ProcessesRecord, StackInfo, StacksRecord, TargetInfo, TraceHeader,
};
pub use filter::CallFilter;
pub use merge::merge;
pub use reader::TraceReader;
pub use report::Report;
pub use writer::{CHUNK_EVENTS, Rotation, TraceWriter, WriterOptions};

use std::fs;

use crate::{events::probe_table::ProbeTable, target::Target};

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A recorded call as its host saw it: the pid it had there (a merge may renumber it), and
/// where it ran (the host, for a trace merged from several; the pod).
pub(crate) struct Placed<'a> {
    pub event: std::borrow::Cow<'a, crate::CallEvent>,
    labels: Option<crate::target::pods::PodLabels>,
    host: Option<&'a str>,
    stack: Option<&'a [String]>,
}

impl<'a> Placed<'a> {
    /// `event` of `process` (as the file names it) in a trace that is `merged` or not.
    pub fn new(
        event: &'a crate::CallEvent,
        process: Option<&'a ProcessInfo>,
        merged: bool,
    ) -> Self {
        let event = match process.and_then(|p| p.host_pid) {
            Some(pid) => std::borrow::Cow::Owned(crate::CallEvent {
                pid,
                ..event.clone()
            }),
            None => std::borrow::Cow::Borrowed(event),
        };
        Self {
            event,
            labels: process.and_then(ProcessInfo::labels),
            host: process.filter(|_| merged).map(|p| p.host.as_str()),
            stack: None,
        }
    }

    /// With the stack the call was called through (`--stack`).
    pub fn with_stack(mut self, stack: Option<&'a [String]>) -> Self {
        self.stack = stack;
        self
    }

    pub fn origin(&self) -> crate::sinks::line::Origin<'_> {
        crate::sinks::line::Origin {
            host: self.host,
            labels: self.labels.as_ref(),
            stack: self.stack,
        }
    }
}

/// This machine's host name, as trace files name where they were made.
pub fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// `koolkit-trace 0.1.0`: which tool wrote a trace file.
fn tool_version() -> String {
    format!("koolkit-trace {}", env!("CARGO_PKG_VERSION"))
}

/// The header of a trace of `target` with `probes`, anchored at `start` (realtime, monotonic).
pub fn header_for(target: &Target, probes: &ProbeTable, start: (u64, u64)) -> TraceHeader {
    let target = match target {
        Target::Process { pid } => TargetInfo {
            kind: "process".into(),
            pid: Some(*pid),
            binary: fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string()),
            command: Some(read_trimmed(&format!("/proc/{pid}/comm"))).filter(|c| !c.is_empty()),
        },
        Target::Processes { pids } => TargetInfo {
            kind: "processes".into(),
            pid: pids.first().copied(),
            binary: pids
                .first()
                .and_then(|pid| fs::read_link(format!("/proc/{pid}/exe")).ok())
                .map(|p| p.display().to_string()),
            command: pids
                .first()
                .map(|pid| read_trimmed(&format!("/proc/{pid}/comm")))
                .filter(|c| !c.is_empty()),
        },
        Target::Binary { path } => TargetInfo {
            kind: "binary".into(),
            pid: None,
            binary: Some(path.display().to_string()),
            command: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        },
    };
    TraceHeader {
        tool: tool_version(),
        hostname: host_name(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        start_realtime_ns: start.0,
        start_monotonic_ns: start.1,
        target,
        probes: probes.clone(),
        merged_from: Vec::new(),
        request: None,
    }
}
