//! Latency statistics per function: a log-linear histogram with bounded error, constant memory
//! and O(1) inserts, good for percentiles over millions of calls.

/// Sub-buckets per power of two. 16 keeps every percentile within 1/16 (6.25%) of the truth.
const SUB_BUCKETS: u32 = 16;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Values below this are counted exactly, one bucket each.
const LINEAR_LIMIT: u64 = SUB_BUCKETS as u64 * 2;
const BUCKETS: usize =
    (LINEAR_LIMIT as usize) + (64 - SUB_BITS as usize - 1) * SUB_BUCKETS as usize;

/// A latency histogram in nanoseconds.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR_LIMIT {
        return value as usize;
    }
    // `value` has its top bit at `exponent` >= SUB_BITS + 1; the next SUB_BITS bits pick the
    // sub-bucket.
    let exponent = 63 - value.leading_zeros();
    let sub = (value >> (exponent - SUB_BITS)) & (SUB_BUCKETS as u64 - 1);
    LINEAR_LIMIT as usize + ((exponent - SUB_BITS - 1) * SUB_BUCKETS) as usize + sub as usize
}

/// The largest value that falls in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < LINEAR_LIMIT as usize {
        return bucket as u64;
    }
    let rest = bucket - LINEAR_LIMIT as usize;
    let exponent = (rest / SUB_BUCKETS as usize) as u32 + SUB_BITS + 1;
    let sub = (rest % SUB_BUCKETS as usize) as u64;
    let low = (1u64 << exponent) | (sub << (exponent - SUB_BITS));
    low.saturating_add((1u64 << (exponent - SUB_BITS)) - 1)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `value` `n` times (a bucket of a histogram counted elsewhere).
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.counts[bucket_of(value)] += n;
        self.count += n;
        self.sum += u128::from(value) * u128::from(n);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.count == 0 { 0 } else { self.min }
    }

    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }

    /// The value at quantile `q` (0.0..=1.0): an upper bound within 6.25%, never above the
    /// maximum seen.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Counts per power of two, like BCC's funclatency: `(low, high, count)` for every bucket
    /// from the lowest to the highest non-empty one; `low..=high` is `2^k..=2^(k+1)-1`.
    pub fn log2_buckets(&self) -> Vec<(u64, u64, u64)> {
        let mut powers = [0u64; 65];
        for (bucket, &n) in self.counts.iter().enumerate() {
            if n > 0 {
                let value = bucket_high(bucket);
                let power = if value == 0 {
                    0
                } else {
                    64 - value.leading_zeros() as usize
                };
                powers[power] += n;
            }
        }
        log2_ranges(&powers)
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The `(low, high, count)` of each power-of-two bucket from the first non-empty one to the
/// last, from counts by bucket (bucket 0: 0; bucket k: `2^(k-1)..=2^k - 1`), as
/// [`Histogram::log2_buckets`] gives them.
pub fn log2_ranges(counts: &[u64]) -> Vec<(u64, u64, u64)> {
    let Some(first) = counts.iter().position(|&n| n > 0) else {
        return Vec::new();
    };
    let last = counts.iter().rposition(|&n| n > 0).unwrap_or(first);
    (first..=last)
        .map(|power| {
            let (low, high) = match power {
                0 => (0, 0),
                64 => (1 << 63, u64::MAX),
                p => (1u64 << (p - 1), (1u64 << p) - 1),
            };
            (low, high, counts[power])
        })
        .collect()
}

/// Power-of-two buckets as the JSON of `--histogram`, `report --json` and their kin:
/// `[{"low_ns", "high_ns", "count"}]`.
pub fn log2_json(buckets: &[(u64, u64, u64)]) -> Vec<serde_json::Value> {
    buckets
        .iter()
        .map(|&(low, high, count)| {
            serde_json::json!({"low_ns": low, "high_ns": high, "count": count})
        })
        .collect()
}

/// Draws power-of-two buckets as BCC's funclatency does.
pub fn draw_log2(buckets: &[(u64, u64, u64)], out: &mut String) {
    use std::fmt::Write as _;
    const WIDTH: u64 = 40;
    let peak = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1);
    let _ = writeln!(out, "  {:>24} : {:<10} distribution", "latency", "count");
    for &(low, high, count) in buckets {
        let stars = (count * WIDTH).div_ceil(peak) as usize;
        let range = format!(
            "{} -> {}",
            super::units::format_duration_ns(low),
            super::units::format_duration_ns(high)
        );
        let _ = writeln!(
            out,
            "  {range:>24} : {count:<10} |{:<40}|",
            "*".repeat(stars)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut previous_high = None;
        for bucket in 0..BUCKETS {
            let high = bucket_high(bucket);
            if let Some(prev) = previous_high {
                assert!(high > prev, "bucket {bucket}");
                assert_eq!(
                    bucket_of(prev + 1),
                    bucket,
                    "first value of bucket {bucket}"
                );
            }
            assert_eq!(bucket_of(high), bucket);
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(u64::MAX));
    }

    #[test]
    fn quantiles_are_within_the_error_bound() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, exact) in [(0.5, 500_000u64), (0.9, 900_000), (0.99, 990_000)] {
            let got = h.quantile(q);
            assert!(got >= exact, "q{q}: {got} < {exact}");
            assert!(
                (got - exact) as f64 <= exact as f64 / 16.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.min(), 10);
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.mean(), 500_005);
    }

    #[test]
    fn small_values_are_exact_and_empty_is_zero() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in [3, 3, 7] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(0.99), 7);
    }

    #[test]
    fn log2_buckets_cover_every_value_once() {
        let mut h = Histogram::default();
        for v in [0, 1, 2, 3, 900, 1000, 1023, 1024, 5_000_000] {
            h.record(v);
        }
        let buckets = h.log2_buckets();
        assert_eq!(buckets.iter().map(|b| b.2).sum::<u64>(), 9);
        assert_eq!(buckets[0], (0, 0, 1));
        assert_eq!(buckets[1], (1, 1, 1));
        assert_eq!(buckets[2], (2, 3, 2));
        let of = |v: u64| buckets.iter().find(|b| b.0 <= v && v <= b.1).unwrap().2;
        assert_eq!(of(1000), 3, "900, 1000, 1023 share 512..=1023");
        assert_eq!(of(1024), 1);
        assert!(
            buckets.windows(2).all(|w| w[0].1 + 1 == w[1].0),
            "contiguous"
        );
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..1000u64 {
            let v = v * v;
            if v % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert!(a == all);
    }
}
