//! Percentiles of recorded samples.

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
