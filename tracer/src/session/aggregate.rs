//! `--histogram`: calls counted in the kernel by the power of two of their latency, per
//! function, with no event per call. Printed every interval (the calls of that interval, in
//! BCC funclatency's shape, or one JSON object per function) and in total at the end.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde_json::json;
use tokio::time::Instant;

use crate::{
    events::probe_table::ProbeTable,
    sinks::{
        clock::{WallClock, rfc3339},
        histogram::{draw_log2, log2_ranges},
        units::{count, format_duration_ns},
    },
    sys,
};

/// Counts by probe id, each by log2 bucket.
pub(super) type Counts = BTreeMap<u32, Vec<u64>>;

pub(super) struct Histograms {
    interval: Duration,
    last: Instant,
    /// What the kernel had counted at the last print.
    previous: Counts,
}

impl Histograms {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Instant::now(),
            previous: Counts::new(),
        }
    }

    /// Whether an interval has passed since the last print.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    /// The lines of the calls counted since the last print (`now`: the kernel's counts).
    pub fn interval_lines(
        &mut self,
        now: &Counts,
        table: &ProbeTable,
        clock: &WallClock,
        json: bool,
    ) -> String {
        let elapsed = self.last.elapsed();
        let since: Counts = now
            .iter()
            .map(|(probe, counts)| {
                let before = self.previous.get(probe);
                let delta = counts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n - before.map_or(0, |b| b[i]).min(*n))
                    .collect();
                (*probe, delta)
            })
            .collect();
        self.previous = now.clone();
        self.last = Instant::now();
        let wall_ns = clock.wall_ns(sys::monotonic_ns());
        let heading = format!(
            "{} ({} interval)",
            &rfc3339(wall_ns)[11..19],
            format_duration_ns(elapsed.as_nanos() as u64)
        );
        lines(&since, table, json, wall_ns, Some(elapsed), &heading)
    }
}

/// The lines of the calls counted in total (at the end of the trace).
pub(super) fn total_lines(
    now: &Counts,
    table: &ProbeTable,
    clock: &WallClock,
    json: bool,
    elapsed: Duration,
) -> String {
    let wall_ns = clock.wall_ns(sys::monotonic_ns());
    let heading = format!(
        "In total, over {}",
        format_duration_ns(elapsed.as_nanos() as u64)
    );
    lines(now, table, json, wall_ns, None, &heading)
}

/// Per function with calls: a heading and its histogram, or one JSON object (with
/// `interval_ns` for an interval, `"total": true` for the total).
fn lines(
    counts: &Counts,
    table: &ProbeTable,
    json: bool,
    wall_ns: u64,
    interval: Option<Duration>,
    heading: &str,
) -> String {
    let mut out = String::new();
    let called: Vec<(&crate::events::probe_table::ProbeInfo, &Vec<u64>)> = table
        .iter()
        .filter_map(|probe| {
            let counts = counts.get(&probe.id)?;
            (counts.iter().sum::<u64>() > 0).then_some((probe, counts))
        })
        .collect();
    if json {
        for (probe, counts) in called {
            let buckets: Vec<serde_json::Value> = log2_ranges(counts)
                .into_iter()
                .map(|(low, high, n)| json!({"low_ns": low, "high_ns": high, "count": n}))
                .collect();
            let mut line = json!({
                "ts_ns": wall_ns,
                "time": rfc3339(wall_ns),
                "fn": probe.function,
                "object": probe.object,
                "calls": counts.iter().sum::<u64>(),
                "histogram": buckets,
            });
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
    for (probe, counts) in called {
        let _ = writeln!(
            out,
            "{}: {}",
            probe.function,
            count(counts.iter().sum(), "call")
        );
        draw_log2(&log2_ranges(counts), &mut out);
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
        let mut histograms = Histograms::new(Duration::from_secs(1));
        let mut counts = vec![0u64; 65];
        counts[10] = 7; // 512..1023 ns
        let first = Counts::from([(0, counts.clone())]);
        let text = histograms.interval_lines(&first, &table(), &clock, false);
        assert!(text.contains("compute: 7 calls"), "{text}");
        assert!(!text.contains("sleepy"), "{text}");
        counts[10] = 9;
        counts[22] = 1; // 2..4 ms
        let second = Counts::from([(0, counts.clone())]);
        let text = histograms.interval_lines(&second, &table(), &clock, true);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["calls"], 3, "only the new calls: {line}");
        let buckets = line["histogram"].as_array().unwrap();
        assert_eq!(buckets.first().unwrap()["count"], 2);
        assert_eq!(buckets.last().unwrap()["count"], 1);
        assert_eq!(buckets.first().unwrap()["low_ns"], 512);
        let total = total_lines(&second, &table(), &clock, false, Duration::from_secs(2));
        assert!(total.contains("compute: 10 calls"), "{total}");
    }
}
