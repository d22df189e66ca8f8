//! Slows password guessing: after too many failed logins for one username
//! within a window, further attempts get `429 rate_limited` until the window
//! passes. Counted per node, in memory; a restart forgets (acceptable: the
//! Argon2 cost already bounds guessing speed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries kept before old ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed-login counter per username.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Arc<Mutex<HashMap<String, Window>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Some(wait)` when `username` is locked out at `now`.
    pub fn check(&self, username: &str, now: Instant) -> Option<Duration> {
        let map = self.map();
        let w = map.get(username)?;
        let elapsed = now.saturating_duration_since(w.started);
        (w.failures >= self.max_failures && elapsed < self.window).then(|| self.window - elapsed)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, username: &str, now: Instant) {
        let mut map = self.map();
        if map.len() > PRUNE_ABOVE {
            let window = self.window;
            map.retain(|_, w| now.saturating_duration_since(w.started) < window);
        }
        let w = map.entry(username.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Forgets the failures after a successful login.
    pub fn succeeded(&self, username: &str) {
        self.map().remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_until_the_window_passes() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(throttle.check("anna", t0).is_none());
            throttle.failed("anna", t0);
        }
        let wait = throttle
            .check("anna", t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(throttle.check("bob", t0).is_none());
        assert!(throttle
            .check("anna", t0 + Duration::from_secs(61))
            .is_none());
        throttle.failed("anna", t0 + Duration::from_secs(61));
        assert!(throttle
            .check("anna", t0 + Duration::from_secs(62))
            .is_none());
    }

    #[test]
    fn success_resets() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        throttle.failed("anna", t0);
        throttle.succeeded("anna");
        throttle.failed("anna", t0);
        assert!(throttle.check("anna", t0).is_none());
    }
}
