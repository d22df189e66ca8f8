//! A token bucket, without I/O: `rate` tokens per second up to `burst`.

/// Allows `burst` events at once and `rate` per second on average.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate_per_s: f64, burst: u32, now_ms: i64) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            burst,
            per_ms: rate_per_s.max(0.001) / 1000.0,
            tokens: burst,
            last_ms: now_ms,
        }
    }

    /// Takes one token, or says how many milliseconds until one is there.
    pub fn take(&mut self, now_ms: i64) -> Result<(), u64> {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.per_ms).ceil() as u64)
        }
    }

    /// Whether the bucket is full at `now_ms` (nothing to remember).
    pub fn is_full(&self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens + elapsed * self.per_ms >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let mut bucket = TokenBucket::new(2.0, 3, 0);
        for _ in 0..3 {
            assert!(bucket.take(0).is_ok());
        }
        assert_eq!(bucket.take(0), Err(500));
        assert!(bucket.take(499).is_err());
        assert!(bucket.take(500).is_ok());
        assert!(!bucket.is_full(500));
        assert!(bucket.is_full(5_000));
    }
}
