//! The one test kit of Simmer, shared by the backend's integration tests and
//! `simmer-bench`: the REST setup of a scene (accounts, recipes, live
//! sessions, guest tokens: [`rest`]) and WebRTC peers on the `webrtc` crate
//! that publish over WHIP and play over WHEP the way an app would, on
//! loopback only ([`peers`]).
//!
//! Library code: it returns errors and leaves the panicking to its callers
//! (a test unwraps, the load tool reports).

pub mod peers;
pub mod rest;

use std::sync::{Mutex, MutexGuard};

/// Wall-clock time in microseconds since the Unix epoch (the load tool, the
/// tests and the server share the machine's clock, so send and receive
/// stamps compare).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Locks `m`, also after a panic elsewhere while it was held: what it guards
/// is only ever counters and logs, still worth reading.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
