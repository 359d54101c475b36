//! The end-of-trace summary: calls and latency percentiles per function, and every drop the
//! kernel or the decoder counted. Nothing is silent: a lost event shows up here.

use std::{fmt::Write as _, time::Duration};

use tracer_ebpf::Counter;

use crate::{
    events::{CallEvent, probe_table::ProbeTable},
    sinks::{
        histogram::Histogram,
        units::{count, count_irregular, format_bytes, format_duration_ns},
    },
};

/// Why tracing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    Terminated,
    DurationElapsed,
    MaxEvents,
    TargetExited {
        pid: u32,
        /// How it died, where the kernel told.
        status: Option<TargetStatus>,
    },
    OutputClosed,
    /// SIGHUP: the terminal went away.
    HungUp,
    /// The trace file could not be written (a full disk); what it holds stays readable.
    RecordingFailed,
    /// Its owner stopped it (an agent: the request was removed, the pod went, or the agent
    /// is shutting down).
    Stopped {
        why: String,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Interrupted => f.write_str("interrupted"),
            Self::Stopped { why } => f.write_str(why),
            Self::Terminated => f.write_str("terminated"),
            Self::DurationElapsed => f.write_str("duration elapsed"),
            Self::MaxEvents => f.write_str("max events reached"),
            Self::TargetExited { pid, status: None } => write!(f, "process {pid} exited"),
            Self::TargetExited {
                pid,
                status: Some(TargetStatus::Exited(code)),
            } => write!(f, "process {pid} exited with status {code}"),
            Self::TargetExited {
                pid,
                status: Some(TargetStatus::Killed { signal, core }),
            } => write!(
                f,
                "target killed by {} (process {pid}{})",
                signal_name(*signal),
                if *core { ", core dumped" } else { "" }
            ),
            Self::OutputClosed => f.write_str("output closed"),
            Self::HungUp => f.write_str("hung up"),
            Self::RecordingFailed => f.write_str("the trace file could not be written"),
        }
    }
}

impl StopReason {
    /// Whether the traced process died of a signal while traced (the trace then exits 1).
    pub fn target_killed(&self) -> bool {
        matches!(
            self,
            Self::TargetExited {
                status: Some(TargetStatus::Killed { .. }),
                ..
            }
        )
    }
}

/// How a traced process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    Exited(u8),
    Killed { signal: u8, core: bool },
}

impl TargetStatus {
    /// From a wait status (`waitpid(2)`): the signal in the low 7 bits (0x80: core dumped),
    /// else the exit status in bits 8..16.
    pub fn from_wait_status(status: u32) -> Self {
        match status & 0x7f {
            0 => Self::Exited((status >> 8) as u8),
            signal => Self::Killed {
                signal: signal as u8,
                core: status & 0x80 != 0,
            },
        }
    }
}

/// `SIGABRT` for 6; the number for signals without a common name.
fn signal_name(signal: u8) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(usize::from(signal)) {
        Some(name) if !name.is_empty() => (*name).to_string(),
        _ => format!("signal {signal}"),
    }
}

/// Per-probe latency statistics, indexed by probe id.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    per_probe: Vec<Histogram>,
    /// The processes that made calls.
    callers: std::collections::HashSet<u32>,
}

impl CallStats {
    pub fn new(probes: usize) -> Self {
        Self {
            per_probe: vec![Histogram::default(); probes],
            callers: Default::default(),
        }
    }

    /// How many processes made calls.
    pub fn processes(&self) -> usize {
        self.callers.len()
    }

    /// Records `n` calls of `probe` that took about `latency_ns` (counted in the kernel).
    pub fn record_counted(&mut self, probe: u32, latency_ns: u64, n: u64) {
        if let Some(histogram) = self.per_probe.get_mut(probe as usize) {
            histogram.record_n(latency_ns, n);
        }
    }

    pub fn record(&mut self, event: &CallEvent) {
        self.callers.insert(event.pid);
        if let Some(histogram) = self.per_probe.get_mut(event.probe_id as usize) {
            histogram.record(event.latency_ns());
        }
    }

    pub fn total_calls(&self) -> u64 {
        self.per_probe.iter().map(Histogram::count).sum()
    }

    pub fn probe(&self, id: u32) -> Option<&Histogram> {
        self.per_probe.get(id as usize)
    }
}

/// Everything the summary reports.
#[derive(Debug)]
pub struct Summary {
    pub stats: CallStats,
    pub kernel_counters: Vec<(Counter, u64)>,
    /// Ring-buffer items that did not decode.
    pub undecodable: u64,
    /// Calls read after `--max-events` was reached, not shown.
    pub not_shown: u64,
    /// Calls that had entered but not returned when the probes were detached.
    pub unfinished: u64,
    pub elapsed: Duration,
    pub detach_time: Duration,
    pub stop: StopReason,
    /// The trace file written, and what went into it.
    pub recorded: Option<(std::path::PathBuf, crate::record::writer::WriterStats)>,
    /// Why recording stopped early; the caller reports it after the summary.
    pub recording_failed: Option<crate::error::Error>,
    /// Live lines written, and left out because the reader fell behind.
    pub lines: super::line_output::LinesWritten,
    /// Why writing live lines failed, if it did; the caller reports it after the summary.
    pub output_failed: Option<crate::error::Error>,
    /// For a container's, pods' or pid namespace's processes: how many were traced.
    pub group: Option<GroupTraced>,
    /// With filters after the return: the calls each probe had left out in the kernel.
    pub filtered: Option<FilteredCalls>,
    /// The lines of calls still running at stop (the first [`RUNNING_SHOWN`]).
    pub running: Vec<String>,
    /// What else the user should know (stacks cut short by missing frame pointers).
    pub notes: Vec<String>,
}

/// Calls still running at stop shown in the summary, at most.
pub const RUNNING_SHOWN: usize = 20;

/// Calls the kernel left out as asked (`--min-latency`, `--where`, `--rate`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilteredCalls {
    /// By probe id.
    pub per_probe: Vec<u64>,
    /// Why they were left out: `faster than 5ms or over --rate 100/s`.
    pub reason: String,
}

/// How many processes of a group (a container's, pods') were traced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTraced {
    /// Every process that was a member at some point.
    pub processes: usize,
    /// Of those, the ones that joined while tracing (restarted, forked, scaled up).
    pub joined: usize,
}

impl Summary {
    /// The summary as text for stderr: a headline, a table of calls and latency per
    /// function, every drop, and what else the user should know.
    pub fn render(&self, table: &ProbeTable) -> String {
        let mut out = String::new();
        let functions = table
            .iter()
            .filter(|p| self.stats.probe(p.id).is_some_and(|h| h.count() > 0))
            .count();
        let calls = match self.stats.total_calls() {
            0 => "no calls".to_string(),
            n => format!(
                "{} of {}",
                count(n, "call"),
                count(functions as u64, "function")
            ),
        };
        let _ = writeln!(
            out,
            "\n{calls} in {:.2}s; stopped: {}",
            self.elapsed.as_secs_f64(),
            self.stop
        );
        if let Some(group) = self.group {
            let _ = writeln!(
                out,
                "processes: {} traced ({} joined while tracing), {} with calls",
                group.processes,
                group.joined,
                self.stats.processes()
            );
        }
        self.render_table(table, &mut out);
        if let Some(filtered) = &self.filtered {
            let total: u64 = filtered.per_probe.iter().sum();
            let of: Vec<String> = table
                .iter()
                .filter_map(|p| {
                    let n = *filtered.per_probe.get(p.id as usize)?;
                    (n > 0).then(|| format!("{} {n}", p.function))
                })
                .collect();
            let _ = writeln!(
                out,
                "not shown: {} {} (counted in the kernel{})",
                count(total, "call"),
                filtered.reason,
                if of.is_empty() {
                    String::new()
                } else {
                    format!(": {}", of.join(", "))
                }
            );
        }
        let _ = writeln!(out, "drops: {}", self.drops());
        self.render_notes(&mut out);
        let _ = writeln!(
            out,
            "detached {} in {}",
            count(table.len() as u64, "probe"),
            format_duration_ns(self.detach_time.as_nanos() as u64)
        );
        out
    }

    /// One row per function: calls, p50, p99, max. Of a long table (a glob over a library),
    /// only the functions that were called, and how many were not.
    fn render_table(&self, table: &ProbeTable, out: &mut String) {
        const ALL_ROWS_UP_TO: usize = 20;
        let called = |id: u32| self.stats.probe(id).is_some_and(|h| h.count() > 0);
        let long = table.len() > ALL_ROWS_UP_TO;
        let width = table
            .iter()
            .map(|p| p.function.len())
            .max()
            .unwrap_or(8)
            .clamp(8, 60);
        let _ = writeln!(
            out,
            "{:<width$} {:>10} {:>10} {:>10} {:>10}",
            "FUNCTION", "CALLS", "P50", "P99", "MAX"
        );
        for probe in table.iter().filter(|p| !long || called(p.id)) {
            let Some(h) = self.stats.probe(probe.id) else {
                continue;
            };
            let [p50, p99, max] = if h.count() == 0 {
                ["-".to_string(), "-".to_string(), "-".to_string()]
            } else {
                [h.quantile(0.5), h.quantile(0.99), h.max()].map(format_duration_ns)
            };
            let _ = writeln!(
                out,
                "{:<width$} {:>10} {p50:>10} {p99:>10} {max:>10}",
                probe.function,
                h.count(),
            );
        }
        let silent = table.iter().filter(|p| !called(p.id)).count();
        if long && silent > 0 {
            let _ = writeln!(
                out,
                "({} without calls not shown)",
                count(silent as u64, "function")
            );
        }
    }

    /// Every drop the kernel or the decoder counted, or `none`.
    fn drops(&self) -> String {
        let mut drops: Vec<String> = self
            .kernel_counters
            .iter()
            .filter(|(counter, n)| counter.is_drop() && *n > 0)
            .map(|(counter, n)| format!("{n} {}", counter.describe()))
            .collect();
        if self.undecodable > 0 {
            drops.push(format!("{} undecodable records", self.undecodable));
        }
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(", ")
        }
    }

    /// Calls abandoned and still running, calls not shown, and the trace file written.
    fn render_notes(&self, out: &mut String) {
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        let abandoned = self
            .kernel_counters
            .iter()
            .find(|(counter, _)| *counter == Counter::Abandoned)
            .map_or(0, |(_, n)| *n);
        if abandoned > 0 {
            let _ = writeln!(
                out,
                "{} (left by an exception, a panic or longjmp, never returned)",
                count_irregular(abandoned, "call was unwound", "calls were unwound"),
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "{} still running at stop (entered, never returned while traced){}",
                count_irregular(self.unfinished, "call was", "calls were"),
                if self.running.is_empty() { "" } else { ":" }
            );
            for line in &self.running {
                let _ = write!(out, "  {line}");
            }
            if self.unfinished as usize > self.running.len() && !self.running.is_empty() {
                let _ = writeln!(
                    out,
                    "  ... and {} more",
                    self.unfinished as usize - self.running.len()
                );
            }
        }
        if self.not_shown > 0 {
            let _ = writeln!(
                out,
                "{} after --max-events and {} not shown",
                count_irregular(self.not_shown, "more call arrived", "more calls arrived"),
                if self.not_shown == 1 { "was" } else { "were" }
            );
        }
        // After a reader closed the pipe (`| head`), nobody missed the lines.
        if self.lines.skipped > 0 && self.stop != StopReason::OutputClosed {
            let rate = self.lines.written as f64 / self.elapsed.as_secs_f64().max(1e-3);
            let _ = writeln!(
                out,
                "{} not shown: the output took {rate:.0} lines/s, fewer than the calls came (every \
                 call is counted above; -o FILE records them all)",
                count(self.lines.skipped, "line"),
            );
        }
        if let Some((path, stats)) = &self.recorded {
            let kept = stats.files - stats.removed;
            let files = match (kept, stats.removed) {
                (1, 0) => String::new(),
                (_, 0) => format!(" in {kept} files"),
                (_, removed) => format!(
                    " in {kept} files kept; the {} rotated out",
                    count_irregular(u64::from(removed), "oldest was", "oldest were")
                ),
            };
            let _ = writeln!(
                out,
                "recorded {} to {} ({} written{files})",
                count(stats.events, "call"),
                path.display(),
                format_bytes(stats.bytes),
            );
        }
        if self.recording_failed.is_some() {
            out.push_str(
                "recording stopped early: the trace file holds the calls up to then, and reads \
                 back whole\n",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{plan::raw_register_args, record::writer::WriterStats, symbols::ProbeSite};
    use bytes::Bytes;

    fn table() -> ProbeTable {
        let site = |name: &str| ProbeSite::named(name, "/bin/demo");
        let plans = vec![raw_register_args(0).unwrap(); 2];
        ProbeTable::new(&[site("compute"), site("sleepy")], &plans)
    }

    fn call(probe_id: u32, latency: u64) -> CallEvent {
        CallEvent {
            probe_id,
            pid: 1,
            tid: 1,
            cpu: 0,
            entry_ns: 0,
            exit_ns: latency,
            ret: 0,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn a_long_table_shows_only_what_was_called() {
        let sites: Vec<ProbeSite> = (0..25)
            .map(|i| ProbeSite::named(&format!("f{i}"), "/lib/x.so"))
            .collect();
        let plans = vec![raw_register_args(0).unwrap(); sites.len()];
        let table = ProbeTable::new(&sites, &plans);
        let mut stats = CallStats::new(25);
        stats.record(&call(7, 1_000));
        let text = Summary {
            stats,
            kernel_counters: Vec::new(),
            undecodable: 0,
            not_shown: 0,
            unfinished: 0,
            elapsed: Duration::from_secs(1),
            detach_time: Duration::from_millis(1),
            stop: StopReason::Interrupted,
            recorded: None,
            recording_failed: None,
            lines: Default::default(),
            output_failed: None,
            group: None,
            filtered: None,
            running: Vec::new(),
            notes: Vec::new(),
        }
        .render(&table);
        assert!(text.lines().any(|l| l.starts_with("f7 ")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("f8 ")), "{text}");
        assert!(
            text.contains("(24 functions without calls not shown)"),
            "{text}"
        );
    }

    #[test]
    fn counts_read_as_english() {
        let summary = |calls: u64, not_shown: u64, recorded: Option<WriterStats>| {
            let mut stats = CallStats::new(2);
            for _ in 0..calls {
                stats.record(&call(0, 1_000));
            }
            Summary {
                stats,
                kernel_counters: Vec::new(),
                undecodable: 0,
                not_shown,
                unfinished: 0,
                elapsed: Duration::from_secs(1),
                detach_time: Duration::from_millis(1),
                stop: StopReason::Interrupted,
                recorded: recorded.map(|s| (std::path::PathBuf::from("t.kt"), s)),
                recording_failed: None,
                lines: Default::default(),
                output_failed: None,
                group: None,
                filtered: None,
                running: Vec::new(),
                notes: Vec::new(),
            }
            .render(&table())
        };
        assert!(summary(0, 0, None).contains("\nno calls in 1.00s;"));
        let one = summary(1, 1, None);
        assert!(one.contains("\n1 call of 1 function in"), "{one}");
        assert!(one.contains("1 more call arrived after --max-events and was not shown"));
        let rotated = WriterStats {
            events: 1,
            bytes: 812,
            files: 15,
            removed: 12,
        };
        let text = summary(2, 3, Some(rotated));
        assert!(text.contains("3 more calls arrived after --max-events and were not shown"));
        assert!(
            text.contains("recorded 1 call to t.kt (812 B written in 3 files kept; the 12 oldest were rotated out)"),
            "{text}"
        );
        assert!(text.contains("detached 2 probes in"), "{text}");
    }

    #[test]
    fn renders_counts_percentiles_and_drops() {
        let mut stats = CallStats::new(2);
        for _ in 0..99 {
            stats.record(&call(0, 1_000));
        }
        stats.record(&call(0, 50_000));
        stats.record(&call(7, 1)); // unknown probe id: ignored, not a panic
        let summary = Summary {
            stats,
            kernel_counters: vec![(Counter::RingFull, 3), (Counter::LostEntry, 0)],
            undecodable: 1,
            not_shown: 0,
            unfinished: 2,
            elapsed: Duration::from_secs(2),
            detach_time: Duration::from_millis(3),
            stop: StopReason::MaxEvents,
            recorded: None,
            recording_failed: None,
            lines: super::super::line_output::LinesWritten {
                written: 90,
                skipped: 10,
            },
            output_failed: None,
            group: Some(GroupTraced {
                processes: 3,
                joined: 1,
            }),
            filtered: Some(FilteredCalls {
                per_probe: vec![0, 7],
                reason: "faster than 5.0ms".into(),
            }),
            notes: Vec::new(),
            running: vec![
                "12:00:00.000000 4242/4243 sleepy(ms=9000) still running after 6.00s\n".into(),
            ],
        };
        let text = summary.render(&table());
        assert!(
            text.contains("100 calls of 1 function in 2.00s; stopped: max events reached"),
            "{text}"
        );
        assert!(
            text.contains("processes: 3 traced (1 joined while tracing), 1 with calls"),
            "{text}"
        );
        assert!(
            text.contains("not shown: 7 calls faster than 5.0ms (counted in the kernel: sleepy 7)"),
            "{text}"
        );
        let compute = text.lines().find(|l| l.starts_with("compute")).unwrap();
        let cols: Vec<&str> = compute.split_whitespace().collect();
        assert_eq!(cols, ["compute", "100", "1.0µs", "1.0µs", "50.0µs"]);
        let sleepy = text.lines().find(|l| l.starts_with("sleepy")).unwrap();
        assert_eq!(
            sleepy.split_whitespace().collect::<Vec<_>>(),
            ["sleepy", "0", "-", "-", "-"]
        );
        assert!(
            text.contains("drops: 3 dropped: ring buffer full, 1 undecodable records"),
            "{text}"
        );
    }
}
