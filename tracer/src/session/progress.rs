//! The line a live trace writes to the status stream while it runs, when there is news the
//! calls themselves do not show: calls the filters left out in the kernel (a `--min-latency
//! 5ms` trace that prints nothing is otherwise indistinguishable from one that sees nothing),
//! calls lost, and under `--quiet -o` the calls recorded. At most one line per
//! [`PROGRESS_INTERVAL`], and none when nothing changed.

use std::time::{Duration, Instant};

use crate::sinks::units::count;

/// How often the progress line may be written.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// What the trace has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls taken by the sink (shown or recorded).
    pub taken: u64,
    /// Calls the filters in the kernel left out.
    pub left_out: u64,
    /// Calls lost (the drop counters).
    pub lost: u64,
}

/// What the progress line says of the calls taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Shown live: the line says how many, but their own lines are the news.
    Shown,
    /// `--quiet -o`: nothing else says the trace is working.
    Recorded,
    /// `--histogram`, `--stats`: counted in the kernel, printed every interval.
    Aggregated,
}

pub struct Progress {
    last: Instant,
    said: Tally,
    taken: Taken,
    /// Why the filters leave calls out (`faster than 5ms`), when they do.
    why_left_out: Option<String>,
}

impl Progress {
    pub fn new(taken: Taken, why_left_out: Option<String>) -> Self {
        Self {
            last: Instant::now(),
            said: Tally::default(),
            taken,
            why_left_out,
        }
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= PROGRESS_INTERVAL
    }

    /// The line to write for `now`, if anything worth saying changed since the last one.
    pub fn line(&mut self, now: Tally) -> Option<String> {
        self.last = Instant::now();
        let news = now.left_out != self.said.left_out
            || now.lost != self.said.lost
            || (self.taken == Taken::Recorded && now.taken != self.said.taken);
        if !news {
            return None;
        }
        self.said = now;
        Some(progress_line(now, self.taken, self.why_left_out.as_deref()))
    }
}

/// `so far: 1204 calls shown, 58310 left out (faster than 5ms), 12 lost`.
fn progress_line(now: Tally, taken: Taken, why_left_out: Option<&str>) -> String {
    let mut parts = Vec::new();
    match taken {
        Taken::Shown => parts.push(format!("{} shown", count(now.taken, "call"))),
        Taken::Recorded => parts.push(format!("{} recorded", count(now.taken, "call"))),
        Taken::Aggregated => {}
    }
    if let Some(why) = why_left_out {
        let left_out = if parts.is_empty() {
            count(now.left_out, "call")
        } else {
            now.left_out.to_string()
        };
        parts.push(format!("{left_out} left out ({why})"));
    }
    if now.lost > 0 {
        parts.push(format!("{} lost (the summary says why)", now.lost));
    }
    format!("so far: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(taken: u64, left_out: u64, lost: u64) -> Tally {
        Tally {
            taken,
            left_out,
            lost,
        }
    }

    #[test]
    fn the_line_says_what_was_shown_left_out_and_lost() {
        let why = Some("faster than 5ms");
        assert_eq!(
            progress_line(tally(1204, 58310, 0), Taken::Shown, why),
            "so far: 1204 calls shown, 58310 left out (faster than 5ms)"
        );
        assert_eq!(
            progress_line(tally(1, 2, 12), Taken::Recorded, why),
            "so far: 1 call recorded, 2 left out (faster than 5ms), 12 lost (the summary says \
             why)"
        );
        assert_eq!(
            progress_line(tally(0, 3, 0), Taken::Aggregated, Some("over --rate 100/s")),
            "so far: 3 calls left out (over --rate 100/s)"
        );
    }

    #[test]
    fn a_line_is_written_only_on_news() {
        let mut progress = Progress::new(Taken::Shown, Some("faster than 5ms".into()));
        assert!(progress.line(tally(0, 0, 0)).is_none());
        // More calls shown are their own news: their lines.
        assert!(progress.line(tally(5, 0, 0)).is_none());
        assert!(progress.line(tally(5, 7, 0)).is_some());
        assert!(progress.line(tally(9, 7, 0)).is_none());
        assert!(progress.line(tally(9, 7, 1)).is_some());

        let mut quiet = Progress::new(Taken::Recorded, None);
        assert_eq!(
            quiet.line(tally(5, 0, 0)).as_deref(),
            Some("so far: 5 calls recorded")
        );
        assert!(quiet.line(tally(5, 0, 0)).is_none());
    }
}
