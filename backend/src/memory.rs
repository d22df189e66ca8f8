//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a thread freed in that thread's arena for its
//! next allocations, and gives pages back only from an arena's top. A live
//! session's peers, lanes and chat are allocated on several runtime threads,
//! so once the session ends most of its memory is free but stays resident
//! for the life of the process. Measured (`docs/benchmarks.md`, churn): a
//! 2,000-viewer session left +3.0 MiB of anonymous memory, under 1 MiB of it
//! still allocated; `malloc_trim(0)` brought it back to within 0.1 MiB of
//! where the session began.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long after a session ends the trim waits: the peers' own tasks end
/// and free their memory shortly after the room closes them, and sessions
/// that end together (a host's several, a drain) share one trim.
const SETTLE: Duration = Duration::from_secs(2);

/// A trim keeps at least this many times its own length between it and the
/// next one: at most 2 % of a core goes to trimming however large the heap.
/// A trim walks every free chunk of every arena and gives back the pages
/// inside each, so it costs what the heap is, not what the session freed.
/// Measured with a C stand-in (`bench/c/malloc_trim.c`, glibc 2.36, 1 to 4
/// GiB of 256 B to 4 KiB blocks, three in four freed): the first trim took
/// 0.8 s per GiB and a second right after it 70 ms per GiB, and on 4 GiB a
/// `malloc` on another thread once waited 72 ms for an arena's lock. On a
/// heap of 64 MiB: 72 ms when it gave back 48 MiB, 5 ms right after. So on
/// a node's usual heap a trim still runs [`SETTLE`] after a session ends,
/// unless one ran in the last few seconds.
const SPACING: u32 = 50;

/// The last trim: when it ended, and how long it took.
type Last = Option<(Instant, Duration)>;

/// Gives the memory freed by now and over the next [`SETTLE`] back to the
/// system, on a blocking thread of `runtime`, spaced by [`SPACING`].
/// However many callers ask, at most one trim is pending and one running.
pub fn release_freed_soon(runtime: &tokio::runtime::Handle) {
    static PENDING: AtomicBool = AtomicBool::new(false);
    static RUNNING: AtomicBool = AtomicBool::new(false);
    static LAST: Mutex<Last> = Mutex::new(None);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let blocking = runtime.clone();
    runtime.spawn(async move {
        let asked = Instant::now();
        loop {
            // Looked at again after each wait: a trim that ended meanwhile
            // pushes this one back.
            let last = *LAST.lock().unwrap_or_else(PoisonError::into_inner);
            let at = next_trim(asked, last);
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            } else if RUNNING.load(Ordering::Acquire) {
                tokio::time::sleep(SETTLE).await;
            } else {
                break;
            }
        }
        RUNNING.store(true, Ordering::Release);
        PENDING.store(false, Ordering::Release);
        let trimmed = blocking
            .spawn_blocking(|| {
                let started = Instant::now();
                let released = release_freed();
                let took = started.elapsed();
                *LAST.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), took));
                RUNNING.store(false, Ordering::Release);
                (released, took)
            })
            .await;
        tracing::debug!(?trimmed, "freed memory given back to the system");
    });
}

/// When a trim asked for at `now` runs.
fn next_trim(now: Instant, last: Last) -> Instant {
    let settled = now + SETTLE;
    last.map_or(settled, |(ended, took)| settled.max(ended + took * SPACING))
}

/// Whether the allocator gave any memory back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_freed() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches only the
    // allocator's own free lists, under the arenas' locks (glibc documents
    // it MT-Safe); live allocations are not moved or freed.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl's, macOS's) keep no per-thread arenas of this
/// kind and have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_waits_for_the_session_to_settle_and_for_its_turn() {
        let now = Instant::now();
        assert_eq!(next_trim(now, None), now + SETTLE);
        // A few ms on a small heap: every session end gets its trim.
        let small = Some((now, Duration::from_millis(5)));
        assert_eq!(next_trim(now, small), now + SETTLE);
        // Seconds on a large one: the next waits 50 times as long.
        let ended = now.checked_sub(Duration::from_secs(10)).unwrap();
        let large = Some((ended, Duration::from_secs(1)));
        assert_eq!(next_trim(now, large), ended + Duration::from_secs(50));
    }
}
