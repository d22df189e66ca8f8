//! Simmer's client SDK for mobile apps, through UniFFI: the same Rust code
//! as `mobile-bridge`'s client (chat with acknowledgements, ordered events,
//! automatic reconnect with resume) and its watch client (pairing, clock
//! sync, the displayed countdown), behind a small API that UniFFI turns into
//! Kotlin, Swift and Python. See `docs/mobile.md`.
//!
//! Every exported call that waits on the network is `async` (a Kotlin
//! `suspend fun`, a Swift `async` function, a Python coroutine) and runs on a
//! tokio runtime that the library brings along; nothing blocks the caller's
//! thread. Ids cross the boundary as UUID strings, times as milliseconds.

mod client;
mod error;
mod rest;
mod timer;
mod types;
mod watch;

pub use client::SimmerClient;
pub use error::SimmerError;
pub use timer::{RecipeStep, RecipeTimer, TimerState};
pub use types::{
    Account, Author, ChatAck, ChatMessage, Credentials, JoinSnapshot, MediaState, Role, SimmerEvent,
};
pub use watch::{request_pairing, ClockOffset, WatchDevice, WatchFeed, WatchFrame, WatchPairing};

uniffi::setup_scaffolding!();

/// Locks a mutex; a panic elsewhere while it was held leaves plain data
/// behind, still usable.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The device's clock, milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
