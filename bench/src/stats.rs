//! Percentiles of recorded samples.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sorted samples (microseconds).
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn new(mut v: Vec<u64>) -> Self {
        v.sort_unstable();
        Self(v)
    }

    /// The `p`-th percentile (0–100), or 0 without samples.
    pub fn pct(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank.min(self.0.len() - 1)]
    }

    pub fn max(&self) -> u64 {
        self.0.last().copied().unwrap_or(0)
    }

    /// "p50 …, p99 …, max …" in milliseconds: how every scenario reports.
    pub fn summary(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {}",
            ms(self.pct(50.0)),
            ms(self.pct(99.0)),
            ms(self.max())
        )
    }
}

/// Formats microseconds as milliseconds.
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// A latency histogram many tasks record into at once: 10 µs buckets below
/// 10 ms, 100 µs up to 100 ms (a p99 of 12–16 ms, as on some machines at
/// 1,000 × 20, is told apart from the floor's to a tenth of a millisecond),
/// 1 ms up to 10 s.
#[derive(Debug)]
pub struct Histogram(Vec<AtomicU64>);

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self(
            (0..=Self::bucket(u64::MAX))
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    fn bucket(us: u64) -> usize {
        let bucket = if us < 10_000 {
            us / 10
        } else if us < 100_000 {
            1000 + (us - 10_000) / 100
        } else {
            1900 + (us.min(9_999_999) - 100_000) / 1000
        };
        bucket as usize
    }

    fn value(bucket: usize) -> u64 {
        let bucket = bucket as u64;
        if bucket < 1000 {
            bucket * 10 + 5
        } else if bucket < 1900 {
            10_000 + (bucket - 1000) * 100 + 50
        } else {
            100_000 + (bucket - 1900) * 1000 + 500
        }
    }

    pub fn record(&self, us: u64) {
        self.0[Self::bucket(us).min(self.0.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `p`-th percentile (0–100), as its bucket's middle.
    pub fn pct(&self, p: f64) -> u64 {
        let total: u64 = self.0.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let target = ((p / 100.0) * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.0.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target.max(1) {
                return Self::value(i);
            }
        }
        0
    }
}

/// A Prometheus histogram's cumulative bucket counts (upper bound in
/// seconds, count), read from `/metrics` text: the series named `name`
/// whose labels contain `labels` (e.g. `edge="last"`; "" for any).
#[derive(Debug, Clone, Default)]
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    pub fn parse(text: &str, name: &str, labels: &str) -> Self {
        let prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (labelset, value) = rest.split_once("} ")?;
                if !labelset.contains(labels) {
                    return None;
                }
                let le = labelset.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, value.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self(buckets)
    }

    /// What was observed between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, b)| *b);
                    (le, n - before)
                })
                .collect(),
        )
    }

    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, n)| *n)
    }

    /// The `p`-th percentile in microseconds, interpolated inside its
    /// bucket (a bucket-wide estimate: say so where it is reported).
    pub fn pct(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = total * p / 100.0;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, n) in &self.0 {
            if n >= rank {
                if le.is_infinite() {
                    return Some((lower * 1e6) as u64);
                }
                let share = if n > below {
                    (rank - below) / (n - below)
                } else {
                    1.0
                };
                return Some(((lower + (le - lower) * share) * 1e6) as u64);
            }
            (lower, below) = (le, n);
        }
        None
    }

    /// "p50 …, p99 … (n …)" in milliseconds.
    pub fn summary(&self) -> String {
        match (self.pct(50.0), self.pct(99.0)) {
            (Some(p50), Some(p99)) => format!(
                "p50 {}, p99 {} ({} observed)",
                ms(p50),
                ms(p99),
                self.count()
            ),
            _ => "nothing observed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_difference_of_two_scrapes() {
        let before =
            "x_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.01\"} 10\nx_bucket{le=\"+Inf\"} 10\n";
        let after = "# HELP x\nx_bucket{le=\"0.001\"} 60\nx_bucket{le=\"0.01\"} 110\nx_bucket{le=\"+Inf\"} 110\nx_sum 1\n";
        let window = Buckets::parse(after, "x", "").since(&Buckets::parse(before, "x", ""));
        assert_eq!(window.count(), 100.0);
        // Half below 1 ms; the 99th in the 1–10 ms bucket, 98 % of its way.
        assert_eq!(window.pct(50.0), Some(1000));
        assert_eq!(window.pct(99.0), Some(9820));
        let labelled = "y_bucket{edge=\"first\",le=\"1\"} 3\ny_bucket{edge=\"last\",le=\"1\"} 7\n";
        assert_eq!(Buckets::parse(labelled, "y", "edge=\"last\"").count(), 7.0);
    }

    #[test]
    fn a_latency_is_reported_as_its_buckets_middle_at_each_resolution() {
        for (us, middle) in [
            (0, 5),
            (9_999, 9_995),
            (10_000, 10_050),
            (13_460, 13_450),
            (99_999, 99_950),
            (100_000, 100_500),
            (9_999_999, 9_999_500),
            (u64::MAX, 9_999_500),
        ] {
            let histogram = Histogram::new();
            histogram.record(us);
            assert_eq!(histogram.pct(99.0), middle, "{us} µs");
        }
    }
}
