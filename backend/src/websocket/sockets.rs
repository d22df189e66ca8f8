//! How many upgraded sockets a node holds: realtime `/ws` connections and
//! watch feeds together, at most [`Sockets::max`]. An upgraded socket runs
//! as its own task, outside the HTTP server's connection count, so this is
//! the node's bound on them; a client past it gets 503 with `Retry-After`
//! before the handshake is answered (a load balancer tries another node).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The node's upgraded sockets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sockets {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One counted socket; uncounted when dropped.
#[derive(Debug)]
pub struct SocketSlot {
    open: Arc<AtomicUsize>,
}

impl Sockets {
    /// At most `max` sockets at once.
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts one more socket, unless the node holds [`Self::max`] already.
    pub fn take(&self) -> Option<SocketSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| SocketSlot {
                open: self.open.clone(),
            })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_max_and_a_closed_socket_frees_its_place() {
        let sockets = Sockets::new(2);
        let first = sockets.take().unwrap();
        let _second = sockets.take().unwrap();
        assert!(sockets.take().is_none());
        assert_eq!(sockets.open(), 2);
        drop(first);
        assert_eq!(sockets.open(), 1);
        assert!(sockets.take().is_some());
    }
}
