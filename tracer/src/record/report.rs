//! `koolkit-trace report`: what a trace file says per function: calls, return values (and how
//! many look like errors), latency percentiles, a log2 latency histogram drawn in the terminal
//! (BCC funclatency's shape) and the slowest calls with their arguments.

use std::convert::Infallible;
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    fmt::Write as _,
};

use serde_json::{Value, json};

use super::{
    filter::CallFilter,
    reader::{ReadOutcome, TraceReader},
};
use crate::{
    events::{
        CallEvent,
        payload::{Decoded, decode_return, sign_extend},
        probe_table::ProbeInfo,
    },
    plan::{Family, Render, ReturnValue},
    sinks::{
        clock::WallClock,
        histogram::{Histogram, draw_log2, log2_json, log2_ranges},
        line::{JsonCall, Style, human_line},
        units::{count, format_duration_ns},
    },
};

/// Slowest calls kept per function.
const SLOWEST: usize = 5;
/// Distinct return values counted per function; beyond, they are "other".
const DISTINCT_RETURNS: usize = 256;
/// Return values shown per function.
const SHOWN_RETURNS: usize = 5;
/// Stacks shown per function, the most frequent first.
const SHOWN_STACKS: usize = 3;

/// Everything the report says about one function.
#[derive(Debug, Clone, Default)]
pub struct FunctionReport {
    pub latency: Histogram,
    /// Return value → calls.
    returns: HashMap<Returned, u64>,
    other_returns: u64,
    /// Calls whose return reads as an error: negative for signed integers, NULL for pointers.
    pub errors: u64,
    slowest: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slowest_calls: Vec<CallEvent>,
    /// `--stack`: calls by the stack they were called through.
    stacks: HashMap<std::rc::Rc<[String]>, u64>,
    /// `--histogram`, `--stats`: the calls the kernel counted, not recorded one by one (one
    /// entry per argument value with `--by-arg`).
    pub kernel: Vec<super::AggregatedProbe>,
}

/// A return value as the report counts it: the raw register (its type's bytes), or the text of
/// a value read at the return (a struct, a string, an `Option`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Returned {
    Register(u64),
    Read(String),
}

impl Returned {
    /// How the report shows it, for a function that returns `how`.
    fn render(&self, how: Option<&ReturnValue>) -> String {
        match self {
            Self::Register(value) => render_return(*value, how),
            Self::Read(text) => text.clone(),
        }
    }
}

impl FunctionReport {
    fn record(&mut self, event: &CallEvent, ret: Option<&ReturnValue>, sequence: u64) {
        let latency = event.latency_ns();
        self.latency.record(latency);
        // A call that left by a tail call returned its callee's value, never seen.
        let ret = ret.filter(|_| !event.ended_by_tail_call());
        // Only the bytes the return type has: the rest of the register is left over.
        let value = match ret {
            Some(ReturnValue::Register {
                render:
                    Render::Int { size, .. } | Render::Enum { size, .. } | Render::Char { size, .. },
            }) if *size < 8 => {
                Returned::Register(event.ret & ((1u64 << (u32::from(*size) * 8)) - 1))
            }
            Some(ReturnValue::Register {
                render: Render::Bool,
            }) => Returned::Register(u64::from(event.ret & 0xff != 0)),
            Some(how @ ReturnValue::Captured { .. }) => {
                let mut text = String::new();
                event.return_value(how).write_human(&mut text);
                Returned::Read(text)
            }
            _ => Returned::Register(event.ret),
        };
        if self.returns.len() < DISTINCT_RETURNS || self.returns.contains_key(&value) {
            *self.returns.entry(value).or_default() += 1;
        } else {
            self.other_returns += 1;
        }
        if is_error(event, ret) {
            self.errors += 1;
        }
        // A min-heap of the slowest, ties broken by arrival so reports are stable.
        if self.slowest.len() < SLOWEST {
            self.slowest_calls.push(event.clone());
            self.slowest
                .push(Reverse((latency, sequence, self.slowest_calls.len() - 1)));
        } else if let Some(Reverse((fastest, _, slot))) = self.slowest.peek().copied()
            && latency > fastest
        {
            self.slowest.pop();
            self.slowest_calls[slot] = event.clone();
            self.slowest.push(Reverse((latency, sequence, slot)));
        }
    }

    /// The slowest calls, slowest first.
    pub fn slowest(&self) -> Vec<&CallEvent> {
        let mut entries: Vec<(u64, u64, usize)> =
            self.slowest.iter().map(|Reverse(e)| *e).collect();
        entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        entries
            .iter()
            .map(|&(_, _, slot)| &self.slowest_calls[slot])
            .collect()
    }

    /// The stacks the function was called through most, most frequent first.
    pub fn top_stacks(&self) -> Vec<(&[String], u64)> {
        let mut stacks: Vec<(&[String], u64)> =
            self.stacks.iter().map(|(s, &n)| (&s[..], n)).collect();
        stacks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        stacks.truncate(SHOWN_STACKS);
        stacks
    }

    /// The most frequent return values, most frequent first.
    pub fn top_returns(&self) -> Vec<(Returned, u64)> {
        let mut returns: Vec<(Returned, u64)> =
            self.returns.iter().map(|(v, &n)| (v.clone(), n)).collect();
        returns.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        returns.truncate(SHOWN_RETURNS);
        returns
    }
}

/// Whether `event` failed, by its return `how`: a negative signed integer, a NULL pointer, a
/// Rust `Err`.
fn is_error(event: &CallEvent, how: Option<&ReturnValue>) -> bool {
    let ret = event.ret;
    match how {
        Some(ReturnValue::Register {
            render: Render::Int { size, signed: true },
        }) => sign_extend(ret, *size) < 0,
        Some(ReturnValue::Register {
            render: Render::Pointer,
        }) => ret == 0,
        Some(how @ ReturnValue::Captured { .. }) => matches!(
            event.return_value(how),
            Decoded::Variant { family: Family::Result, name, .. } if name == "Err"
        ),
        _ => false,
    }
}

/// A whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub functions: Vec<(ProbeInfo, FunctionReport)>,
    pub calls: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub read: ReadOutcome,
    /// For an agent's recording: the request, node and pod it was made for.
    pub request: Option<super::file_format::RecordedRequest>,
}

impl Report {
    /// Reads `reader` through `filter` into a report.
    pub fn build(reader: &TraceReader, filter: &CallFilter) -> Report {
        let table = &reader.header().probes;
        let mut per_probe: Vec<FunctionReport> = vec![FunctionReport::default(); table.len()];
        let (mut calls, mut first, mut last) = (0u64, None::<u64>, None::<u64>);
        let visited = reader.try_for_each_call(filter, |event, probe, _process, stack| {
            let function = &mut per_probe[event.probe_id as usize];
            function.record(event, probe.ret.as_ref(), calls);
            if let Some(stack) = stack {
                // The callers matter, not the function itself (the first frame).
                let callers: std::rc::Rc<[String]> = stack.iter().skip(1).cloned().collect();
                *function.stacks.entry(callers).or_default() += 1;
            }
            calls += 1;
            first = Some(first.map_or(event.entry_ns, |f| f.min(event.entry_ns)));
            last = Some(last.map_or(event.exit_ns, |l| l.max(event.exit_ns)));
            Ok::<(), Infallible>(())
        });
        let Ok(read) = visited;
        for counted in read.aggregates.iter().flat_map(|r| &r.functions) {
            if filter.accepts_function(table.get(counted.probe))
                && let Some(function) = per_probe.get_mut(counted.probe as usize)
            {
                calls += counted.calls;
                function.kernel.push(counted.clone());
            }
        }
        let mut functions: Vec<(ProbeInfo, FunctionReport)> = table
            .iter()
            .cloned()
            .zip(per_probe)
            .filter(|(_, report)| report.latency.count() > 0 || !report.kernel.is_empty())
            .collect();
        // Most time spent first: where a developer should look.
        functions.sort_by_key(|(_, report)| {
            let recorded = report.latency.mean() as u128 * u128::from(report.latency.count());
            let counted: u128 = report.kernel.iter().map(|k| u128::from(k.total_ns)).sum();
            Reverse(recorded + counted)
        });
        Report {
            functions,
            calls,
            first_ns: first,
            last_ns: last,
            read,
            request: reader.header().request.clone(),
        }
    }
}

fn render_return(value: u64, how: Option<&ReturnValue>) -> String {
    let mut text = String::new();
    match how {
        Some(how) => decode_return(value, &[], how).write_human(&mut text),
        None => text.push_str("void"),
    }
    text
}

/// Draws `histogram` as BCC's funclatency does.
pub fn draw_histogram(histogram: &Histogram, out: &mut String) {
    draw_log2(&histogram.log2_buckets(), out);
}

/// The report as text.
impl Report {
    /// The report as text: per function, calls, percentiles, histogram, returns, slowest calls.
    pub fn render_text(&self, clock: &WallClock) -> String {
        let report = self;
        let mut out = String::new();
        let span = match (report.first_ns, report.last_ns) {
            (Some(first), Some(last)) => format_duration_ns(last.saturating_sub(first)),
            _ => "-".into(),
        };
        if let Some(request) = &report.request {
            let _ = writeln!(
                out,
                "Recorded by the agent on node {} for request {}: pod {}/{}{}",
                request.node,
                request.name,
                request.namespace,
                request.pod,
                request
                    .container
                    .as_ref()
                    .map_or(String::new(), |c| format!(", container {c}"))
            );
        }
        let _ = writeln!(
            out,
            "{} of {} over {span}",
            count(report.calls, "call"),
            count(report.functions.len() as u64, "function")
        );
        for (probe, function) in &report.functions {
            let h = &function.latency;
            let _ = writeln!(out, "\n{} ({})", probe.function, probe.object_name());
            if let Some(source) = &probe.source {
                let _ = writeln!(out, "  defined at {source}");
            }
            for kernel in &function.kernel {
                let by = kernel
                    .by
                    .as_ref()
                    .map(|by| format!(" with {by}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  counted in the kernel{by}: calls {}   avg {}   min {}   max {}   total {}",
                    kernel.calls,
                    format_duration_ns(kernel.total_ns / kernel.calls.max(1)),
                    format_duration_ns(kernel.min_ns),
                    format_duration_ns(kernel.max_ns),
                    format_duration_ns(kernel.total_ns)
                );
                draw_log2(&log2_ranges(&kernel.counts()), &mut out);
            }
            if h.count() == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "  calls {}   p50 {}   p90 {}   p99 {}   max {}",
                h.count(),
                format_duration_ns(h.quantile(0.5)),
                format_duration_ns(h.quantile(0.9)),
                format_duration_ns(h.quantile(0.99)),
                format_duration_ns(h.max())
            );
            if probe.ret.is_some() {
                let returns: Vec<String> = function
                    .top_returns()
                    .iter()
                    .map(|(value, n)| {
                        format!(
                            "{} ×{n} ({:.1}%)",
                            value.render(probe.ret.as_ref()),
                            *n as f64 * 100.0 / h.count() as f64
                        )
                    })
                    .collect();
                let _ = writeln!(out, "  returns {}", returns.join(", "));
                if function.errors > 0 {
                    let _ = writeln!(
                        out,
                        "  errors {} ({:.1}%: negative, NULL or Err returns)",
                        function.errors,
                        function.errors as f64 * 100.0 / h.count() as f64
                    );
                }
            }
            draw_histogram(h, &mut out);
            let stacks = function.top_stacks();
            if !stacks.is_empty() {
                let _ = writeln!(out, "  called from (most frequent stacks):");
                for (stack, n) in stacks {
                    let _ = writeln!(
                        out,
                        "    {} ({:.1}%)",
                        count(n, "call"),
                        n as f64 * 100.0 / h.count() as f64
                    );
                    for frame in stack {
                        let _ = writeln!(out, "      {frame}");
                    }
                }
            }
            let _ = writeln!(out, "  slowest calls:");
            for call in function.slowest() {
                let mut line = String::new();
                human_line(&mut line, call, probe, clock, Style::default());
                let _ = write!(out, "    {line}");
            }
        }
        out
    }

    /// The report as one JSON object.
    pub fn render_json(&self, clock: &WallClock) -> Value {
        let report = self;
        let functions: Vec<Value> = report
        .functions
        .iter()
        .map(|(probe, function)| {
            let h = &function.latency;
            let slowest: Vec<Value> = function
                .slowest()
                .into_iter()
                .map(|call| {
                    serde_json::to_value(JsonCall::new(call, probe, clock))
                        .expect("JSON of plain data")
                })
                .collect();
            json!({
                "fn": probe.function,
                "object": probe.object,
                "source": probe.source.as_ref().map(|s| s.to_string()),
                "calls": h.count(),
                "errors": function.errors,
                "latency_ns": {
                    "p50": h.quantile(0.5), "p90": h.quantile(0.9), "p99": h.quantile(0.99),
                    "max": h.max(), "min": h.min(), "mean": h.mean(),
                },
                "histogram": log2_json(&h.log2_buckets()),
                "returns": function.top_returns().iter()
                    .map(|(value, n)| json!({"value": value.render(probe.ret.as_ref()), "calls": n}))
                    .collect::<Vec<_>>(),
                "slowest": slowest,
                "kernel": function.kernel.iter().map(|k| json!({
                    "by": k.by, "calls": k.calls, "total_ns": k.total_ns, "min_ns": k.min_ns,
                    "max_ns": k.max_ns,
                    "histogram": log2_json(&log2_ranges(&k.counts())),
                })).collect::<Vec<_>>(),
                "stacks": function.top_stacks().iter()
                    .map(|(stack, n)| json!({"calls": n, "callers": stack}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
        json!({
            "request": report.request,
            "calls": report.calls,
            "functions": functions,
            "warnings": report.read.warnings,
            "torn_tail": report.read.torn_tail.map(|(offset, bytes)| json!({"offset": offset, "bytes": bytes})),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn call(latency: u64, ret: u64) -> CallEvent {
        CallEvent {
            probe_id: 0,
            pid: 1,
            tid: 1,
            cpu: 0,
            entry_ns: 1_000,
            exit_ns: 1_000 + latency,
            ret,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn keeps_the_slowest_calls_and_counts_returns_and_errors() {
        let ret = ReturnValue::Register {
            render: Render::Int {
                size: 4,
                signed: true,
            },
        };
        let mut report = FunctionReport::default();
        for i in 0..100u64 {
            let value = if i % 10 == 0 { 0xffff_ffff } else { i % 3 };
            report.record(&call(i * 10, value), Some(&ret), i);
        }
        let slowest: Vec<u64> = report.slowest().iter().map(|c| c.latency_ns()).collect();
        assert_eq!(slowest, [990, 980, 970, 960, 950]);
        assert_eq!(report.errors, 10, "-1 as a 32-bit int is an error");
        let top = report.top_returns();
        assert_eq!(top[0].1, 30, "{top:?}");
        assert_eq!(report.latency.count(), 100);
    }

    #[test]
    fn histogram_is_drawn_with_stars() {
        let mut h = Histogram::default();
        for v in [1_000, 1_500, 1_800, 3_000] {
            h.record(v);
        }
        let mut out = String::new();
        draw_histogram(&h, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("count") && lines[0].contains("distribution"));
        let peak = lines
            .iter()
            .find(|l| l.contains(": 2 "))
            .expect("a bucket with 2 calls");
        assert_eq!(peak.matches('*').count(), 40);
        let half = lines.iter().find(|l| l.contains(": 1 ")).unwrap();
        assert_eq!(half.matches('*').count(), 20);
    }
}
