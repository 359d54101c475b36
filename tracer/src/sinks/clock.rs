//! Wall-clock time for the kernel's monotonic timestamps: one anchor reading of both clocks,
//! taken when tracing starts and stored in every trace file, converts every event.

use crate::sys;

/// Converts the kernel's monotonic timestamps to wall-clock time, from one anchor reading of
/// both clocks taken when tracing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// Both clocks read together at the anchor, in nanoseconds.
    realtime_ns: u64,
    monotonic_ns: u64,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn anchor_now() -> Self {
        let mono = sys::monotonic_ns();
        let real = sys::realtime_ns();
        Self::from_anchor(real, mono)
    }

    pub fn from_anchor(realtime_ns: u64, monotonic_ns: u64) -> Self {
        Self {
            realtime_ns,
            monotonic_ns,
        }
    }

    /// The anchor: (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`), as trace files record it.
    pub fn anchor(&self) -> (u64, u64) {
        (self.realtime_ns, self.monotonic_ns)
    }

    /// Nanoseconds since the Unix epoch for a monotonic timestamp.
    pub fn wall_ns(&self, monotonic_ns: u64) -> u64 {
        let offset = i128::from(self.realtime_ns) - i128::from(self.monotonic_ns);
        (i128::from(monotonic_ns) + offset).clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// How the time of a call starts its human line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// `12:04:05.123456`, local time of day (the zone is said once, in the start line).
    #[default]
    Local,
    /// `2026-12-01T12:04:05.123456+01:00`: date, time and offset (RFC 3339).
    Iso,
    /// `+3.141593`: seconds since the trace started.
    Relative,
}

/// `+01:00`, `-05:30`, `+00:00`.
fn offset_text(utc_offset: i64) -> String {
    let sign = if utc_offset < 0 { '-' } else { '+' };
    let minutes = utc_offset.abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The local zone as the start line names it: `UTC+01:00 (CET)`.
pub fn local_zone(wall_ns: u64) -> String {
    let local = sys::local_time((wall_ns / 1_000_000_000) as i64);
    format!("UTC{} ({})", offset_text(local.utc_offset), local.zone)
}

/// Writes call times, caching the local date and time of the last whole second: converting
/// each timestamp through the time zone would cost more than the rest of the line.
#[derive(Debug, Clone, Default)]
pub struct TimeWriter {
    format: TimeFormat,
    /// The second last converted, its text up to the fraction, and what follows it (the
    /// offset, for ISO times).
    cached: Option<(u64, String, String)>,
}

impl TimeWriter {
    pub fn new(format: TimeFormat) -> Self {
        Self {
            format,
            cached: None,
        }
    }

    /// Appends the time of `monotonic_ns` on `clock` in this writer's format.
    pub fn write(&mut self, out: &mut String, clock: &WallClock, monotonic_ns: u64) {
        use std::fmt::Write as _;
        if self.format == TimeFormat::Relative {
            let since = monotonic_ns.saturating_sub(clock.monotonic_ns);
            let _ = write!(
                out,
                "+{}.{:06}",
                since / 1_000_000_000,
                since % 1_000_000_000 / 1_000
            );
            return;
        }
        let wall_ns = clock.wall_ns(monotonic_ns);
        let second = wall_ns / 1_000_000_000;
        if self.cached.as_ref().is_none_or(|(s, _, _)| *s != second) {
            let t = sys::local_time(second as i64);
            let (text, after) = match self.format {
                TimeFormat::Iso => (
                    format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                        t.year, t.month, t.day, t.hour, t.minute, t.second
                    ),
                    offset_text(t.utc_offset),
                ),
                _ => (
                    format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
                    String::new(),
                ),
            };
            self.cached = Some((second, text, after));
        }
        let (_, text, after) = self.cached.as_ref().expect("just cached");
        out.push_str(text);
        let _ = write!(out, ".{:06}", wall_ns % 1_000_000_000 / 1_000);
        out.push_str(after);
    }
}

/// RFC 3339 with nanoseconds and the local offset: `2026-12-01T12:04:05.123456789+01:00`.
pub fn rfc3339(wall_ns: u64) -> String {
    let t = sys::local_time((wall_ns / 1_000_000_000) as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        wall_ns % 1_000_000_000,
        offset_text(t.utc_offset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_each_format() {
        let clock = WallClock::from_anchor(1_700_000_000_000_000_000, 1_000);
        let mut out = String::new();
        TimeWriter::new(TimeFormat::Relative).write(&mut out, &clock, 3_141_593_000 + 1_000);
        assert_eq!(out, "+3.141593");
        let mut local = String::new();
        TimeWriter::new(TimeFormat::Local).write(&mut local, &clock, 1_000 + 123_456_000);
        assert_eq!(local.len(), "22:13:20.123456".len(), "{local}");
        assert!(local.ends_with(".123456"));
        let mut iso = String::new();
        TimeWriter::new(TimeFormat::Iso).write(&mut iso, &clock, 1_000);
        assert!(iso.starts_with("2023-11-1"), "{iso}");
        assert_eq!(iso.len(), "2023-11-14T22:13:20.000000+00:00".len(), "{iso}");
        let full = rfc3339(1_700_000_000_123_456_789);
        assert!(full.contains(".123456789"), "{full}");
        assert_eq!(offset_text(3600), "+01:00");
        assert_eq!(offset_text(-19_800), "-05:30");
        assert!(local_zone(1_700_000_000_000_000_000).starts_with("UTC"));
    }

    #[test]
    fn wall_clock_applies_the_anchor_offset() {
        let clock = WallClock::from_anchor(10_000, 4_000);
        assert_eq!(clock.wall_ns(5_000), 11_000);
        assert_eq!(WallClock::from_anchor(0, 10).wall_ns(5), 0);
    }
}
