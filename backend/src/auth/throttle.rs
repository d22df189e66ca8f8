//! Counts failures per key within a window (failed logins, wrong pairing
//! codes, pairings asked for); at the limit, further attempts get
//! `429 rate_limited` until the window passes. A single node counts in
//! memory (a restart forgets: acceptable, the Argon2 cost already bounds
//! guessing speed); a cluster counts in Redis, for every node at once, and
//! falls back to each node's own count while Redis does not answer.
//!
//! Keys come from clients, so the map is bounded twice: callers pass keys of
//! bounded length (checked names, addresses), and at most `MAX_ENTRIES` are
//! kept: expired windows go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;

/// Most keys one counter keeps (each well under 100 bytes: ~10 MiB at most).
pub const MAX_ENTRIES: usize = 100_000;

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
    max_entries: usize,
    failures: Arc<Mutex<HashMap<String, Window>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, MAX_ENTRIES)
    }

    /// A counter that keeps at most `max_entries` keys.
    pub fn with_capacity(max_failures: u32, window: Duration, max_entries: usize) -> Self {
        Self {
            max_failures,
            window,
            max_entries: max_entries.max(1),
            failures: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        if map.len() >= self.max_entries && !map.contains_key(username) {
            let window = self.window;
            map.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if map.len() >= self.max_entries {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
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

/// A failure counter of the node, or of the whole cluster.
#[derive(Debug, Clone)]
pub struct Throttle {
    local: LoginThrottle,
    /// In a cluster: the counter's name in Redis.
    shared: Option<(Cluster, &'static str)>,
    max_failures: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(
        kind: &'static str,
        max_failures: u32,
        window: Duration,
        cluster: Option<&Cluster>,
    ) -> Self {
        Self {
            local: LoginThrottle::new(max_failures, window),
            shared: cluster.map(|c| (c.clone(), kind)),
            max_failures,
            window,
        }
    }

    /// `Some(wait)` when `key` is locked out now.
    pub async fn check(&self, key: &str, now: Instant) -> Option<Duration> {
        if let Some((cluster, kind)) = &self.shared {
            if let Ok((failures, left)) = cluster.failures(kind, key).await {
                return (failures >= self.max_failures).then(|| left.max(Duration::from_millis(1)));
            }
        }
        self.local.check(key, now)
    }

    /// Counts a failed attempt.
    pub async fn failed(&self, key: &str, now: Instant) {
        self.local.failed(key, now);
        if let Some((cluster, kind)) = &self.shared {
            let _ = cluster.count_failure(kind, key, self.window).await;
        }
    }

    /// Forgets the failures of `key`.
    pub async fn succeeded(&self, key: &str) {
        self.local.succeeded(key);
        if let Some((cluster, kind)) = &self.shared {
            let _ = cluster.forget_failures(kind, key).await;
        }
    }

    /// Keys held in this node's memory.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether this node's memory holds no key.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }
}

/// Every throttle of what anonymous or guessing clients may try, built from
/// the settings.
#[derive(Debug, Clone)]
pub struct Throttles {
    /// Failed logins per (username, address) and per address.
    pub logins: LoginGuard,
    /// Wrong pairing codes per user and per address.
    pub claims: Throttle,
    /// Guest tokens minted per address.
    pub guest_tokens: Throttle,
    /// Pairings asked for per address.
    pub pairings: Throttle,
}

impl Throttles {
    /// Per node, or (with `cluster`) for the whole cluster.
    pub fn new(settings: &crate::config::Settings, cluster: Option<&Cluster>) -> Self {
        Self {
            logins: LoginGuard::new(
                settings.login_max_failures,
                settings.login_max_failures_per_address,
                settings.login_lockout,
                cluster,
            ),
            claims: Throttle::new(
                "claims",
                settings.watch_claim_max_failures,
                settings.watch_claim_window,
                cluster,
            ),
            guest_tokens: Throttle::new(
                "guest_tokens",
                settings.guest_tokens_per_address,
                settings.guest_token_window,
                cluster,
            ),
            pairings: Throttle::new(
                "pairings",
                settings.watch_pairings_per_window,
                settings.watch_claim_window,
                cluster,
            ),
        }
    }
}

/// Password guessing, throttled as OWASP recommends: failures count per
/// (username, client address), so that nobody can lock a host out from
/// another address, and per address over every username, so that one
/// address cannot guess across many accounts.
#[derive(Debug, Clone)]
pub struct LoginGuard {
    by_user: Throttle,
    by_address: Throttle,
}

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// Too many failures for this username from this address.
    User(Duration),
    /// Too many failures from this address.
    Address(Duration),
}

impl LoginGuard {
    /// `per_user` failures per (username, address), `per_address` per
    /// address, within `window`.
    pub fn new(
        per_user: u32,
        per_address: u32,
        window: Duration,
        cluster: Option<&Cluster>,
    ) -> Self {
        Self {
            by_user: Throttle::new("logins", per_user, window, cluster),
            by_address: Throttle::new("login_addresses", per_address, window, cluster),
        }
    }

    /// The key of a username that could exist (registration's rules), or
    /// `None`: an impossible name is counted only against the address.
    fn user_key(username: &str, addr: IpAddr) -> Option<String> {
        let plausible = (3..=32).contains(&username.len())
            && username
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        plausible.then(|| format!("{username} {addr}"))
    }

    /// `Some` when a login for `username` from `addr` must wait.
    pub async fn check(&self, username: &str, addr: IpAddr, now: Instant) -> Option<Lockout> {
        if let Some(wait) = self.by_address.check(&addr.to_string(), now).await {
            return Some(Lockout::Address(wait));
        }
        let key = Self::user_key(username, addr)?;
        self.by_user.check(&key, now).await.map(Lockout::User)
    }

    /// Counts a failed login.
    pub async fn failed(&self, username: &str, addr: IpAddr, now: Instant) {
        self.by_address.failed(&addr.to_string(), now).await;
        if let Some(key) = Self::user_key(username, addr) {
            self.by_user.failed(&key, now).await;
        }
    }

    /// Forgets this username's failures from this address (the address's
    /// own count stays: a valid account must not reset an attacker's).
    pub async fn succeeded(&self, username: &str, addr: IpAddr) {
        if let Some(key) = Self::user_key(username, addr) {
            self.by_user.succeeded(&key).await;
        }
    }

    /// Keys held, for the bounded-memory tests.
    pub fn entries(&self) -> usize {
        self.by_user.len() + self.by_address.len()
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

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        let throttle = LoginThrottle::with_capacity(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..1_000 {
            throttle.failed(&format!("user{i}"), t0 + Duration::from_millis(i));
        }
        assert_eq!(throttle.len(), 100);
        // The newest are kept, the oldest went.
        throttle.failed("user999", t0 + Duration::from_secs(1));
        throttle.failed("user999", t0 + Duration::from_secs(1));
        assert!(throttle
            .check("user999", t0 + Duration::from_secs(1))
            .is_some());
        assert!(throttle.check("user0", t0).is_none());
    }

    #[tokio::test]
    async fn an_attacker_elsewhere_cannot_lock_the_owner_out() {
        let guard = LoginGuard::new(3, 50, Duration::from_secs(60), None);
        let t0 = Instant::now();
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let owner: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            guard.failed("anna", attacker, t0).await;
        }
        assert!(matches!(
            guard.check("anna", attacker, t0).await,
            Some(Lockout::User(_))
        ));
        assert_eq!(guard.check("anna", owner, t0).await, None);
    }

    #[tokio::test]
    async fn one_address_guessing_many_names_is_stopped() {
        let guard = LoginGuard::new(3, 50, Duration::from_secs(60), None);
        let t0 = Instant::now();
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        for i in 0..50 {
            guard.failed(&format!("user{i}"), attacker, t0).await;
        }
        assert!(matches!(
            guard.check("someone", attacker, t0).await,
            Some(Lockout::Address(_))
        ));
    }

    #[tokio::test]
    async fn impossible_names_are_not_stored() {
        let guard = LoginGuard::new(3, 1_000, Duration::from_secs(60), None);
        let t0 = Instant::now();
        let addr: IpAddr = "203.0.113.9".parse().unwrap();
        for i in 0..100 {
            guard
                .failed(&format!("{}{i}", "x".repeat(100_000)), addr, t0)
                .await;
            guard.failed(&format!("bad name {i}"), addr, t0).await;
        }
        // Only the address is counted.
        assert_eq!(guard.entries(), 1);
    }
}
