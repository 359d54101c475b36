//! Where a live trace's ring-buffer items go: decoded into calls, counted into per-function
//! latency statistics, recorded to the trace file, and printed as human or JSON lines, up to
//! `--max-events`. Knows nothing of the kernel: it is fed item bytes, so it is tested without
//! one.

use std::collections::HashSet;

use bytes::Bytes;

use super::{
    line_output::{LineOutput, LinesWritten},
    summary::{CallStats, StopReason},
};
use crate::{
    error::{Error, Result},
    events::{CallEvent, decode, probe_table::ProbeTable},
    record::{ProcessInfo, file_format::CountersRecord, writer::TraceWriter},
    sinks::{
        clock::WallClock,
        line::{HumanLines, Origin, json_line_labelled, json_running_line},
    },
    target::pods::Workloads,
};

/// How calls are shown live.
#[derive(Debug, Clone)]
pub enum LiveLines {
    Human(HumanLines),
    Json,
    /// `--quiet`: none.
    Off,
}

/// Turns ring-buffer items into output lines, statistics and recorded calls.
pub struct Sink<'a> {
    out: LineOutput,
    buffer: String,
    /// Lines in `buffer`.
    buffered_lines: u64,
    lines: LiveLines,
    clock: WallClock,
    table: &'a ProbeTable,
    pub stats: CallStats,
    max_events: Option<u64>,
    /// Calls taken (shown, counted and recorded).
    pub shown: u64,
    /// Calls that arrived after `--max-events` was reached.
    pub not_shown: u64,
    /// Items that did not decode or named no known probe.
    pub undecodable: u64,
    pub recorder: Option<TraceWriter>,
    /// Why recording stopped before the end (the trace file could not be written); the trace
    /// then stops too, cleanly, and says so.
    pub recording_failed: Option<Error>,
    /// The pods and containers of the traced processes, for `--pod`.
    workloads: Workloads,
    /// `--stack`: where the calls' user stacks are read and symbolized.
    pub stacks: Option<super::stacks::Stacks>,
    /// The processes the trace file names so far, and the host they run on.
    named: HashSet<u32>,
    host: String,
}

impl<'a> Sink<'a> {
    pub fn new(
        out: LineOutput,
        lines: LiveLines,
        clock: WallClock,
        table: &'a ProbeTable,
        max_events: Option<u64>,
        recorder: Option<TraceWriter>,
    ) -> Self {
        Self {
            out,
            buffer: String::new(),
            buffered_lines: 0,
            lines,
            clock,
            table,
            stats: CallStats::new(table.len()),
            max_events,
            shown: 0,
            not_shown: 0,
            undecodable: 0,
            recorder,
            recording_failed: None,
            workloads: Workloads::default(),
            stacks: None,
            named: HashSet::new(),
            host: crate::record::host_name(),
        }
    }

    /// Names process `pid` in the trace file, once, before its first call: its host, command
    /// and pod, which the file keeps when the process and this machine are long gone.
    fn name_process(&mut self, pid: u32) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        if !self.named.insert(pid) {
            return;
        }
        let labels = self.workloads.labels_of(pid).cloned();
        let command = std::fs::read(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| String::from_utf8_lossy(&c).trim_end().to_string())
            .filter(|c| !c.is_empty());
        recorder.add_process(ProcessInfo {
            pid,
            host: self.host.clone(),
            host_pid: None,
            command,
            namespace: labels.as_ref().map(|l| l.namespace.clone()),
            pod: labels.as_ref().map(|l| l.pod.clone()),
            container: labels.map(|l| l.container),
        });
    }

    /// The pods and containers calls are labelled with (processes join while tracing).
    pub fn workloads_mut(&mut self) -> &mut Workloads {
        &mut self.workloads
    }

    /// Labels each call with the pod and container of its process (`--pod`).
    pub fn with_workloads(mut self, workloads: Workloads) -> Self {
        self.workloads = workloads;
        self
    }

    /// Writes what the trace file holds back and the drop counters; a failure ends recording.
    pub fn flush_recording(&mut self, counters: &CountersRecord) {
        if let Some(recorder) = &mut self.recorder
            && let Err(err) = recorder.flush(Some(counters))
        {
            self.recording_failed(err);
        }
    }

    /// Writes what the kernel has counted so far into the trace file (`--histogram`,
    /// `--stats`); a failure ends recording.
    pub fn record_aggregates(&mut self, record: &crate::record::AggregatesRecord) {
        if let Some(recorder) = &mut self.recorder
            && let Err(err) = recorder.write_aggregates(record)
        {
            self.recording_failed(err);
        }
    }

    /// Recording ends here: what the file holds stays readable, and the trace stops.
    fn recording_failed(&mut self, err: Error) {
        log::debug!("recording stopped: {err}");
        self.recorder = None;
        self.recording_failed = Some(err);
    }

    /// Takes one ring-buffer item. What does not decode is counted, and a trace file that
    /// cannot be written ends recording: nothing here fails the trace.
    pub fn handle(&mut self, item: &Bytes) {
        let event = match decode(item) {
            Ok(event) => event,
            Err(err) => {
                self.undecodable += 1;
                log::debug!("undecodable ring-buffer item: {err}");
                return;
            }
        };
        let Some(probe) = self.table.get(event.probe_id) else {
            self.undecodable += 1;
            log::debug!("ring-buffer item for unknown probe {}", event.probe_id);
            return;
        };
        if self.max_events.is_some_and(|max| self.shown >= max) {
            self.not_shown += 1;
            return;
        }
        self.stats.record(&event);
        self.shown += 1;
        self.name_process(event.pid);
        let stack = match &mut self.stacks {
            Some(stacks) if probe.stack.is_some() => stacks.of(&event, probe),
            _ => None,
        };
        if let Some(recorder) = &mut self.recorder {
            // A stack goes into the file before the first call through it.
            if let Some(stacks) = &mut self.stacks {
                for fresh in stacks.fresh.drain(..) {
                    recorder.add_stack(fresh);
                }
            }
            if let Err(err) = recorder.push(&event) {
                self.recording_failed(err);
            }
        }
        if self.out.is_closed() || matches!(self.lines, LiveLines::Off) {
            return;
        }
        if self.out.skip_if_backed_up() {
            return;
        }
        let origin = Origin {
            host: None,
            labels: self.workloads.labels_of(event.pid),
            stack: stack.as_deref(),
        };
        match &mut self.lines {
            LiveLines::Human(lines) => {
                lines.write_labelled(&mut self.buffer, &event, probe, &self.clock, origin);
            }
            LiveLines::Json => {
                json_line_labelled(&mut self.buffer, &event, probe, &self.clock, origin);
            }
            LiveLines::Off => return,
        }
        self.buffered_lines += 1;
    }

    /// Writes `text` (whole lines) among the live lines: the histograms of `--histogram`.
    pub fn write_text(&mut self, text: &str) {
        if self.out.is_closed() || matches!(self.lines, LiveLines::Off) || text.is_empty() {
            return;
        }
        self.buffer.push_str(text);
        self.buffered_lines += text.lines().count() as u64;
        self.flush();
    }

    /// The probes, the clock and whether lines are JSON: what `--histogram` prints with.
    pub fn table_clock_json(&self) -> (&ProbeTable, &WallClock, bool) {
        (
            self.table,
            &self.clock,
            matches!(self.lines, LiveLines::Json),
        )
    }

    /// Shows a call still running (`--stuck`) among the live lines, as the mode says.
    pub fn running(&mut self, running: &CallEvent) {
        let Some(probe) = self.table.get(running.probe_id) else {
            return;
        };
        if self.out.is_closed() {
            return;
        }
        let origin = Origin {
            host: None,
            labels: self.workloads.labels_of(running.pid),
            stack: None,
        };
        match &mut self.lines {
            LiveLines::Human(lines) => {
                lines.write_running(&mut self.buffer, running, probe, &self.clock, origin);
            }
            LiveLines::Json => {
                json_running_line(&mut self.buffer, running, probe, &self.clock, origin);
            }
            LiveLines::Off => return,
        }
        self.buffered_lines += 1;
        self.flush();
    }

    /// The human line of a call still running at stop, for the summary.
    pub fn running_line(&self, running: &CallEvent) -> Option<String> {
        let probe = self.table.get(running.probe_id)?;
        let mut line = String::new();
        HumanLines::new(Default::default()).write_running(
            &mut line,
            running,
            probe,
            &self.clock,
            Origin::default(),
        );
        Some(line)
    }

    /// Hands what is buffered to the lines thread. A closed pipe ends the live lines
    /// quietly, like other CLI tools; a trace being recorded goes on into its file.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.buffered_lines);
        self.out.send(std::mem::take(&mut self.buffer), lines);
    }

    /// Ends the live lines: waits for the reader to take what was sent.
    pub fn finish_lines(&mut self) -> Result<LinesWritten> {
        self.flush();
        self.out
            .finish()
            .map_err(|err| Error::write("standard output", err))
    }

    /// Whether what the sink saw ends the trace.
    pub fn stop_reason(&self) -> Option<StopReason> {
        // A closed pipe ends a live trace; one being recorded goes on into its file.
        if self.recording_failed.is_some() {
            Some(StopReason::RecordingFailed)
        } else if self.out.is_closed() && self.recorder.is_none() {
            Some(StopReason::OutputClosed)
        } else if self.max_events.is_some_and(|max| self.shown >= max) {
            Some(StopReason::MaxEvents)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use tracer_ebpf::{EventHeader, EventKind, STATUS_BYTES};

    use super::*;
    use crate::{
        events::encode, plan::raw_register_args, session::line_output::tests::TestOutput,
        sinks::line::Style, symbols::ProbeSite,
    };

    fn table() -> ProbeTable {
        let plans = vec![raw_register_args(1).unwrap()];
        ProbeTable::new(&[ProbeSite::named("compute", "/bin/demo")], &plans)
    }

    fn item(probe_id: u32, arg: u64) -> Bytes {
        let mut payload = vec![0u8; STATUS_BYTES];
        payload.extend_from_slice(&arg.to_le_bytes());
        let header = EventHeader {
            kind: EventKind::Call as u32,
            probe_id,
            pid: 7,
            tid: 8,
            cpu: 0,
            payload_len: payload.len() as u32,
            entry_ns: 1_000,
            exit_ns: 3_500,
            ret: 42,
        };
        Bytes::from(encode(&header, &payload))
    }

    #[test]
    fn prints_counts_and_stops_at_max_events() {
        let table = table();
        let out = TestOutput::default();
        let clock = WallClock::from_anchor(0, 0);
        let lines = LineOutput::spawn(Box::new(out.clone())).unwrap();
        let mut sink = Sink::new(lines, LiveLines::Json, clock, &table, Some(2), None);
        for arg in [5, 6, 7] {
            sink.handle(&item(0, arg));
        }
        sink.handle(&item(9, 0)); // an unknown probe
        sink.handle(&Bytes::from_static(&[1, 2, 3])); // not an event
        assert_eq!((sink.shown, sink.not_shown, sink.undecodable), (2, 1, 2));
        assert_eq!(sink.stats.total_calls(), 2);
        assert_eq!(sink.stop_reason(), Some(StopReason::MaxEvents));
        let written = sink.finish_lines().unwrap();
        assert_eq!(
            written,
            LinesWritten {
                written: 2,
                skipped: 0
            }
        );
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["args"]["arg0"], 6);
        assert_eq!(lines[1]["ret"], 42);
        assert_eq!(lines[1]["latency_ns"], 2_500);
    }

    #[test]
    fn quiet_prints_nothing_and_a_closed_pipe_ends_a_live_trace() {
        let table = table();
        let clock = WallClock::from_anchor(0, 0);
        let out = TestOutput::default();
        let lines = LineOutput::spawn(Box::new(out.clone())).unwrap();
        let mut quiet = Sink::new(lines, LiveLines::Off, clock, &table, None, None);
        quiet.handle(&item(0, 1));
        quiet.flush();
        assert_eq!(quiet.shown, 1);
        assert_eq!(quiet.finish_lines().unwrap().written, 0);
        assert!(out.bytes.lock().unwrap().is_empty());

        let closed = TestOutput {
            closed: true,
            ..TestOutput::default()
        };
        let lines = LineOutput::spawn(Box::new(closed)).unwrap();
        let style = LiveLines::Human(HumanLines::new(Style::default()));
        let mut sink = Sink::new(lines, style, clock, &table, None, None);
        sink.handle(&item(0, 1));
        assert_eq!(sink.stop_reason(), None);
        sink.flush();
        // The lines thread finds the reader gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sink.stop_reason().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(sink.stop_reason(), Some(StopReason::OutputClosed));
    }
}
