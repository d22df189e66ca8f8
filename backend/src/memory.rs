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
use std::time::Duration;

/// How long after a session ends the trim waits: the peers' own tasks end
/// and free their memory shortly after the room closes them, and sessions
/// that end together (a host's several, a drain) share one trim.
const SETTLE: Duration = Duration::from_secs(2);

/// Gives the memory freed by now and over the next [`SETTLE`] back to the
/// system, on a blocking thread of `runtime`. However many callers ask, at
/// most one trim is pending: it walks and locks every arena in turn, so it
/// is not something to run per event.
pub fn release_freed_soon(runtime: &tokio::runtime::Handle) {
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let blocking = runtime.clone();
    runtime.spawn(async move {
        tokio::time::sleep(SETTLE).await;
        PENDING.store(false, Ordering::Release);
        let released = blocking.spawn_blocking(release_freed).await;
        tracing::debug!(?released, "freed memory given back to the system");
    });
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
