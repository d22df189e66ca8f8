//! How a SQLite connection waits for another's write to end.
//!
//! SQLite has one writer at a time; a write that finds the lock taken asks
//! the connection's busy handler whether to try again. SQLite's own handler
//! (what sqlx's `busy_timeout` installs) sleeps 1, 2, 5, 10, 15, 20, 25, 25,
//! 25, 50, 50 and then 100 ms between tries, however soon the lock is free.
//! Under chat load the chat writer commits every millisecond or so, so a
//! REST write that met the lock woke up to find it taken again and slept
//! longer each time: at 1,000 chat messages/s over 200 sessions, 50 recipe
//! creations/s had p99 5.5–55 ms and a worst of 80–631 ms; with this
//! handler 2.0–5.0 and 4.3–6.7 ms, the chat unchanged (docs/benchmarks.md,
//! "Other writes beside the chat").
//!
//! Here a connection tries again after 50 µs, doubling to at most 1 ms, and
//! gives up (SQLite's `SQLITE_BUSY`, answered 503) after the node's
//! `db_busy_timeout` (5 s by default, sqlx's). The chat's own batches do
//! not meet each other at the lock (they take turns in
//! `live::chat_writer`), so this is for the writes beside them: REST and
//! the timer.

use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::sqlite::SqliteConnection;

/// The first pause; each next one is twice as long, up to [`LONGEST`].
const FIRST: Duration = Duration::from_micros(50);
const LONGEST: Duration = Duration::from_millis(1);

/// Tries again made by [`busy`] in this process (for the tests).
static RETRIES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When the wait that is going on on this thread began. sqlx runs each
    /// SQLite connection on a thread of its own, and a connection waits for
    /// one lock at a time.
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs [`busy`] on `conn`, in place of sqlx's `busy_timeout`: a write
/// waits at most `timeout` for the lock.
pub async fn install(
    conn: &mut SqliteConnection,
    timeout: Duration,
) -> Result<(), sea_orm::sqlx::Error> {
    // The handler's argument carries the timeout, in milliseconds, in the
    // pointer's value: nothing to allocate or free, never dereferenced.
    let millis = usize::try_from(timeout.as_millis()).unwrap_or(usize::MAX);
    let mut handle = conn.lock_handle().await?;
    let arg = std::ptr::without_provenance_mut::<c_void>(millis);
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the open connection's handle, held locked out of
    // sqlx's worker thread by `handle` for the duration of the call (what
    // `lock_handle` is for). `busy` is a plain function that lives as long
    // as the program and reads its argument as a number, never through it.
    // One of the crate's two `unsafe` blocks (the other is
    // `memory::release_freed`): SQLite has no other way to set a busy
    // handler.
    #[allow(unsafe_code)]
    let status = unsafe { libsqlite3_sys::sqlite3_busy_handler(db, Some(busy), arg) };
    if status == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sea_orm::sqlx::Error::Protocol(format!(
            "setting the SQLite busy handler failed (code {status})"
        )))
    }
}

/// SQLite's busy handler: non-zero to try again, zero to give up. `count`
/// is how many times it was called for this wait (0 on the first call).
extern "C" fn busy(timeout_ms: *mut c_void, count: c_int) -> c_int {
    let timeout = Duration::from_millis(timeout_ms.addr() as u64);
    let now = Instant::now();
    let since = WAITING_SINCE.with(|since| {
        if count == 0 {
            since.set(Some(now));
        }
        since.get().unwrap_or(now)
    });
    if now.duration_since(since) >= timeout {
        return 0;
    }
    // On sqlx's own thread for this connection, never an async one: the
    // handler runs inside SQLite's call, as SQLite's own handler sleeps.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(pause(u32::try_from(count).unwrap_or(0)));
    RETRIES.fetch_add(1, Ordering::Relaxed);
    1
}

/// The pause before try `count + 1`: 50 µs, doubling to at most 1 ms.
fn pause(count: u32) -> Duration {
    FIRST
        .saturating_mul(1u32.checked_shl(count).unwrap_or(u32::MAX))
        .min(LONGEST)
}

/// Tries again made in this process so far.
#[cfg(test)]
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_50_microseconds_to_a_millisecond() {
        let pauses: Vec<u128> = (0..8).map(|n| pause(n).as_micros()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(pause(31), LONGEST);
        assert_eq!(
            pause(u32::MAX),
            LONGEST,
            "no overflow however long the wait"
        );
    }
}
