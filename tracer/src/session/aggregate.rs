//! `--histogram` and `--stats`: calls counted in the kernel, by the power of two of their
//! latency and as count, total, fastest and slowest, per function, with no event per call.
//! Printed every interval (the calls of that interval: BCC funclatency's shape, a line per
//! function, or one JSON object per function) and in total at the end.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde_json::json;
use tokio::time::Instant;
use tracer_ebpf::LatencyStats;

use crate::{
    events::probe_table::ProbeTable,
    sinks::{
        clock::{WallClock, rfc3339},
        histogram::{draw_log2, log2_json, log2_ranges},
        units::{count, format_duration_ns},
    },
    sys,
};

/// Counts by probe id and argument value (`--by-arg`; 0 without), each by log2 bucket.
pub(super) type Counts = BTreeMap<(u32, u64), Vec<u64>>;
/// Latency statistics by probe id and argument value (those with calls only).
pub(super) type Stats = BTreeMap<(u32, u64), LatencyStats>;

/// `--by-arg NAME`: the argument calls are grouped by, and where each probe's plan holds it
/// (which also says how it is shown).
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    pub name: String,
    /// By probe id.
    pub slots: BTreeMap<u32, crate::predicate::IntegerSlot>,
}

impl Grouping {
    /// `status=404`, or `None` without grouping.
    fn label(&self, probe: u32, argument: u64) -> Option<(String, serde_json::Value)> {
        let slot = self.slots.get(&probe)?;
        if argument == tracer_ebpf::UNREADABLE_ARGUMENT {
            return Some((
                format!("{}=<unreadable>", self.name),
                serde_json::Value::Null,
            ));
        }
        let bytes = argument.to_le_bytes();
        let width = usize::from(slot.width).clamp(1, 8);
        let decoded = crate::events::payload::decode_scalar(&bytes[..width], &slot.render);
        let mut text = format!("{}=", self.name);
        decoded.write_human(&mut text);
        Some((text, decoded.to_json()))
    }
}

/// What the kernel had counted at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub counts: Counts,
    pub stats: Stats,
}

/// How aggregated calls are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    /// How often the calls of the last interval are printed.
    pub interval: Duration,
    /// A histogram per function (`--histogram`), or one line each (`--stats`).
    pub histogram: bool,
}

/// How aggregated calls are printed: their shape and grouping.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    pub shape: Aggregation,
    pub grouping: Option<Grouping>,
}

pub(super) struct Aggregates {
    shown: Shown,
    last: Instant,
    /// What the kernel had counted at the last print.
    previous: Snapshot,
}

impl Aggregates {
    pub fn new(shown: Shown) -> Self {
        Self {
            shown,
            last: Instant::now(),
            previous: Snapshot::default(),
        }
    }

    /// Whether an interval has passed since the last print.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.shown.shape.interval
    }

    /// The lines of the calls counted since the last print (`now`: the kernel's counts).
    pub fn interval_lines(
        &mut self,
        now: &Snapshot,
        table: &ProbeTable,
        clock: &WallClock,
        json: bool,
    ) -> String {
        let elapsed = self.last.elapsed();
        let since = since(&self.previous, now);
        self.previous = now.clone();
        self.last = Instant::now();
        let wall_ns = clock.wall_ns(sys::monotonic_ns());
        let heading = format!(
            "{} ({} interval)",
            &rfc3339(wall_ns)[11..19],
            format_duration_ns(elapsed.as_nanos() as u64)
        );
        lines(
            &since,
            table,
            json,
            &self.shown,
            wall_ns,
            Some(elapsed),
            &heading,
        )
    }
}

/// What the kernel counted up to `now`, as trace files keep it (read at `at_ns`).
pub(super) fn record_of(
    now: &Snapshot,
    grouping: Option<&Grouping>,
    at_ns: u64,
) -> crate::record::AggregatesRecord {
    let keys: std::collections::BTreeSet<(u32, u64)> =
        now.counts.keys().chain(now.stats.keys()).copied().collect();
    let functions = keys
        .into_iter()
        .filter_map(|key| {
            let stats = now.stats.get(&key).copied().unwrap_or_default();
            let buckets: Vec<(u32, u64)> = now
                .counts
                .get(&key)
                .map(|counts| {
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(bucket, n)| (bucket as u32, *n))
                        .collect()
                })
                .unwrap_or_default();
            (stats.calls > 0).then(|| crate::record::AggregatedProbe {
                probe: key.0,
                by: grouping.and_then(|g| g.label(key.0, key.1)).map(|l| l.0),
                calls: stats.calls,
                total_ns: stats.total_ns,
                min_ns: stats.min_ns,
                max_ns: stats.max_ns,
                buckets,
            })
        })
        .collect();
    crate::record::AggregatesRecord { at_ns, functions }
}

/// The calls counted between `before` and `now`. The fastest and slowest call of an interval
/// are not known (the kernel keeps them for the whole trace): an interval shows none.
fn since(before: &Snapshot, now: &Snapshot) -> Snapshot {
    let counts = now
        .counts
        .iter()
        .map(|(probe, counts)| {
            let before = before.counts.get(probe);
            let delta = counts
                .iter()
                .enumerate()
                .map(|(i, n)| n - before.map_or(0, |b| b[i]).min(*n))
                .collect();
            (*probe, delta)
        })
        .collect();
    let stats = now
        .stats
        .iter()
        .filter_map(|(probe, stats)| {
            let old = before.stats.get(probe).copied().unwrap_or_default();
            let calls = stats.calls.saturating_sub(old.calls);
            (calls > 0).then_some((
                *probe,
                LatencyStats {
                    calls,
                    total_ns: stats.total_ns.saturating_sub(old.total_ns),
                    min_ns: 0,
                    max_ns: 0,
                },
            ))
        })
        .collect();
    Snapshot { counts, stats }
}

/// The lines of the calls counted in total (at the end of the trace).
pub(super) fn total_lines(
    now: &Snapshot,
    table: &ProbeTable,
    clock: &WallClock,
    json: bool,
    shown: &Shown,
    elapsed: Duration,
) -> String {
    let wall_ns = clock.wall_ns(sys::monotonic_ns());
    let heading = format!(
        "In total, over {}",
        format_duration_ns(elapsed.as_nanos() as u64)
    );
    lines(now, table, json, shown, wall_ns, None, &heading)
}

/// `avg 1.20ms, total 12.0ms, min 1.00ms, max 2.10ms` (no min and max for an interval).
fn stats_text(stats: &LatencyStats, whole_trace: bool) -> String {
    let mut text = format!(
        "avg {}, total {}",
        format_duration_ns(stats.total_ns / stats.calls.max(1)),
        format_duration_ns(stats.total_ns)
    );
    if whole_trace {
        let _ = write!(
            text,
            ", min {}, max {}",
            format_duration_ns(stats.min_ns),
            format_duration_ns(stats.max_ns)
        );
    }
    text
}

/// Per function (and argument value) with calls: a heading and its histogram (or one line
/// of statistics), or one JSON object (with `interval_ns` for an interval, `"total": true` for
/// the total).
fn lines(
    now: &Snapshot,
    table: &ProbeTable,
    json: bool,
    shown: &Shown,
    wall_ns: u64,
    interval: Option<Duration>,
    heading: &str,
) -> String {
    let mut out = String::new();
    let histogram = shown.shape.histogram;
    let mut called = Vec::new();
    for probe in table.iter() {
        let keys: std::collections::BTreeSet<(u32, u64)> = now
            .counts
            .range((probe.id, 0)..=(probe.id, u64::MAX))
            .map(|(k, _)| *k)
            .chain(
                now.stats
                    .range((probe.id, 0)..=(probe.id, u64::MAX))
                    .map(|(k, _)| *k),
            )
            .collect();
        let mut groups: Vec<_> = keys
            .into_iter()
            .filter_map(|key| {
                let counts = now.counts.get(&key);
                let from_counts = counts.map_or(0, |c| c.iter().sum::<u64>());
                let stats = now.stats.get(&key).copied().unwrap_or(LatencyStats {
                    calls: from_counts,
                    ..LatencyStats::default()
                });
                let label = shown.grouping.as_ref().and_then(|g| g.label(key.0, key.1));
                (stats.calls > 0).then_some((probe, label, counts, stats))
            })
            .collect();
        // The most frequent value first.
        groups.sort_by_key(|group| std::cmp::Reverse(group.3.calls));
        called.extend(groups);
    }
    let whole_trace = interval.is_none();
    if json {
        for (probe, label, counts, stats) in called {
            let mut line = json!({
                "ts_ns": wall_ns,
                "time": rfc3339(wall_ns),
                "fn": probe.function,
                "object": probe.object,
                "calls": stats.calls,
                "total_ns": stats.total_ns,
                "avg_ns": stats.total_ns / stats.calls.max(1),
            });
            if let (Some((_, value)), Some(grouping)) = (label, &shown.grouping) {
                line["by"] = json!({ grouping.name.clone(): value });
            }
            if whole_trace {
                line["min_ns"] = json!(stats.min_ns);
                line["max_ns"] = json!(stats.max_ns);
            }
            if histogram {
                let buckets = log2_ranges(counts.map_or(&[][..], |c| c));
                line["histogram"] = json!(log2_json(&buckets));
            }
            match interval {
                Some(interval) => line["interval_ns"] = json!(interval.as_nanos() as u64),
                None => line["total"] = json!(true),
            }
            let _ = writeln!(out, "{line}");
        }
        return out;
    }
    let _ = writeln!(out, "{heading}:");
    if called.is_empty() {
        let _ = writeln!(out, "  no calls");
    }
    for (probe, label, counts, stats) in called {
        let name = match label {
            Some((label, _)) => format!("{} {label}", probe.function),
            None => probe.function.clone(),
        };
        if histogram {
            let _ = writeln!(
                out,
                "{name}: {} ({})",
                count(stats.calls, "call"),
                stats_text(&stats, whole_trace)
            );
            draw_log2(&log2_ranges(counts.map_or(&[][..], |c| c)), &mut out);
        } else {
            let _ = writeln!(
                out,
                "  {name}: {}, {}",
                count(stats.calls, "call"),
                stats_text(&stats, whole_trace)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{plan::raw_register_args, symbols::ProbeSite};

    fn table() -> ProbeTable {
        let plans = vec![raw_register_args(1).unwrap(); 2];
        ProbeTable::new(
            &[
                ProbeSite::named("compute", "/bin/demo"),
                ProbeSite::named("sleepy", "/bin/demo"),
            ],
            &plans,
        )
    }

    #[test]
    fn an_interval_shows_the_calls_since_the_last_one() {
        let clock = WallClock::from_anchor(0, 0);
        let shown = Shown {
            shape: Aggregation {
                interval: Duration::from_secs(1),
                histogram: true,
            },
            grouping: None,
        };
        let mut histograms = Aggregates::new(shown.clone());
        let snapshot = |counts: Counts| Snapshot {
            counts,
            stats: Stats::new(),
        };
        let mut counts = vec![0u64; 65];
        counts[10] = 7; // 512..1023 ns
        let first = Counts::from([((0, 0), counts.clone())]);
        let text = histograms.interval_lines(&snapshot(first), &table(), &clock, false);
        assert!(text.contains("compute: 7 calls"), "{text}");
        assert!(!text.contains("sleepy"), "{text}");
        counts[10] = 9;
        counts[22] = 1; // 2..4 ms
        let second = Counts::from([((0, 0), counts.clone())]);
        let text = histograms.interval_lines(&snapshot(second.clone()), &table(), &clock, true);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["calls"], 3, "only the new calls: {line}");
        let buckets = line["histogram"].as_array().unwrap();
        assert_eq!(buckets.first().unwrap()["count"], 2);
        assert_eq!(buckets.last().unwrap()["count"], 1);
        assert_eq!(buckets.first().unwrap()["low_ns"], 512);
        let total = total_lines(
            &snapshot(second),
            &table(),
            &clock,
            false,
            &shown,
            Duration::from_secs(2),
        );
        assert!(total.contains("compute: 10 calls"), "{total}");
    }

    #[test]
    fn statistics_show_the_interval_s_calls_and_the_whole_trace_s_extremes() {
        let clock = WallClock::from_anchor(0, 0);
        let shown = Shown {
            shape: Aggregation {
                interval: Duration::from_secs(1),
                histogram: false,
            },
            grouping: None,
        };
        let mut stats = Aggregates::new(shown.clone());
        let at = |calls, total_ns, min_ns, max_ns| Snapshot {
            counts: Counts::new(),
            stats: Stats::from([(
                (1, 0),
                LatencyStats {
                    calls,
                    total_ns,
                    min_ns,
                    max_ns,
                },
            )]),
        };
        let text = stats.interval_lines(&at(4, 4_000, 500, 2_000), &table(), &clock, false);
        assert!(
            text.contains("  sleepy: 4 calls, avg 1.0µs, total 4.0µs"),
            "{text}"
        );
        assert!(!text.contains("min"), "no extremes for an interval: {text}");
        let text = stats.interval_lines(&at(6, 10_000, 500, 5_000), &table(), &clock, true);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            (line["calls"].as_u64(), line["avg_ns"].as_u64()),
            (Some(2), Some(3_000))
        );
        assert!(line.get("histogram").is_none(), "{line}");
        let total = total_lines(
            &at(6, 10_000, 500, 5_000),
            &table(),
            &clock,
            false,
            &shown,
            Duration::from_secs(2),
        );
        assert!(
            total.contains("sleepy: 6 calls, avg 1.7µs, total 10.0µs, min 500ns, max 5.0µs"),
            "{total}"
        );
    }
}
