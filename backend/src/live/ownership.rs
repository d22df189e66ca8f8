//! This node's right to run a live session: the fencing token every durable
//! write of the session's chat and timer carries, and how long the right is
//! known to last. A single node holds its sessions for as long as it runs; in
//! a cluster the right is a lease in Redis that the owner renews, and a node
//! that cannot renew in time gives the session up before anyone else may take
//! it. The database refuses a write with an older token, so even a node that
//! was paused past its lease cannot write after the new owner started.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// A node's hold on one live session. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fence: i64,
    /// Wall-clock milliseconds until which the hold is known to last.
    valid_until_ms: AtomicI64,
    lost: AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Ownership {
    /// A hold that lasts until it is lost (a single node).
    pub fn lasting(fence: i64) -> Self {
        Self::until(fence, i64::MAX)
    }

    /// A hold that lasts until `valid_until_ms` unless renewed (a lease).
    pub fn until(fence: i64, valid_until_ms: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                fence,
                valid_until_ms: AtomicI64::new(valid_until_ms),
                lost: AtomicBool::new(false),
            }),
        }
    }

    /// The fencing token of this hold.
    pub fn fence(&self) -> i64 {
        self.inner.fence
    }

    /// Whether the session may still be run here now.
    pub fn held(&self) -> bool {
        !self.inner.lost.load(Ordering::SeqCst)
            && now_ms() < self.inner.valid_until_ms.load(Ordering::SeqCst)
    }

    /// The lease was renewed until `valid_until_ms`.
    pub fn renewed(&self, valid_until_ms: i64) {
        self.inner
            .valid_until_ms
            .fetch_max(valid_until_ms, Ordering::SeqCst);
    }

    /// The hold is gone (a fenced write, or the lease went to another node).
    pub fn lose(&self) {
        self.inner.lost.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lapses_unless_renewed_and_a_lost_hold_stays_lost() {
        let now = now_ms();
        let lease = Ownership::until(3, now - 1);
        assert!(!lease.held(), "lapsed");
        lease.renewed(now + 60_000);
        assert!(lease.held());
        lease.renewed(now - 5);
        assert!(lease.held(), "a renewal never shortens the hold");
        lease.clone().lose();
        assert!(!lease.held(), "clones share the hold");
        assert_eq!(lease.fence(), 3);
        assert!(Ownership::lasting(1).held());
    }
}
