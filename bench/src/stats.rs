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
/// 10 ms, 1 ms buckets up to 10 s.
#[derive(Debug)]
pub struct Histogram(Vec<AtomicU64>);

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self((0..11_000).map(|_| AtomicU64::new(0)).collect())
    }

    fn bucket(us: u64) -> usize {
        if us < 10_000 {
            (us / 10) as usize
        } else {
            (1000 + (us / 1000).min(9_999)) as usize
        }
    }

    fn value(bucket: usize) -> u64 {
        if bucket < 1000 {
            bucket as u64 * 10 + 5
        } else {
            (bucket as u64 - 1000) * 1000 + 500
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
