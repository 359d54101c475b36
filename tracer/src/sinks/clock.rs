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

/// `HH:MM:SS.micros` in local time.
pub fn format_time_of_day(wall_ns: u64) -> String {
    let secs = (wall_ns / 1_000_000_000) as i64;
    let micros = (wall_ns % 1_000_000_000) / 1_000;
    let (h, m, s) = sys::local_time_of_day(secs);
    format!("{h:02}:{m:02}:{s:02}.{micros:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_applies_the_anchor_offset() {
        let clock = WallClock::from_anchor(10_000, 4_000);
        assert_eq!(clock.wall_ns(5_000), 11_000);
        assert_eq!(WallClock::from_anchor(0, 10).wall_ns(5), 0);
    }
}
