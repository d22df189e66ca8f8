//! Stopping explicitly (mini-redis `shutdown.rs`): one signal that every
//! connection task selects on, and a way to wait until they have all said
//! goodbye; a panic while stopping is remembered so the process can exit
//! non-zero instead of pretending all went well.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Whether this process began to stop (for the panic hook).
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Whether something panicked after that.
static PANICKED_WHILE_STOPPING: AtomicBool = AtomicBool::new(false);

/// The node's shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

/// One connection's view of the signal; while it lives, the connection
/// counts as open.
#[derive(Debug)]
pub struct Listener {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// A listener for a new connection task: it hears the signal, and the
    /// connection counts as open until the listener is dropped.
    pub fn listen(&self) -> Listener {
        Listener {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells every connection to say goodbye and close.
    pub fn begin(&self) {
        STOPPING.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::begin`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once every listener is gone (every connection closed).
    pub async fn connections_closed(&self) {
        self.tx.closed().await;
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Listener {
    /// Completes once shutdown has begun (at once if it already has).
    /// Cancel-safe, so it can sit in a `select!` loop.
    pub async fn recv(&mut self) {
        // An error means the sender is gone: the app is gone, stop too.
        let _ = self.rx.wait_for(|stopping| *stopping).await;
    }
}

/// SIGTERM and SIGINT (Ctrl-C): both mean "drain and stop".
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening (from now on these signals no longer kill the
    /// process).
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

/// Remembers panics that happen once stopping began (the default hook still
/// prints them). Install once, in `main`.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if STOPPING.load(Ordering::SeqCst) {
            PANICKED_WHILE_STOPPING.store(true, Ordering::SeqCst);
        }
        default(info);
    }));
}

/// Whether a panic happened after stopping began.
pub fn panicked_while_stopping() -> bool {
    PANICKED_WHILE_STOPPING.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_hear_the_signal_and_count_until_dropped() {
        let shutdown = Shutdown::default();
        let mut early = shutdown.listen();
        assert_eq!(shutdown.open_connections(), 1);
        shutdown.begin();
        early.recv().await;
        let mut late = shutdown.listen();
        late.recv().await;
        drop((early, late));
        shutdown.connections_closed().await;
        assert_eq!(shutdown.open_connections(), 0);
    }
}
