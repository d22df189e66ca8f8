//! Stopping explicitly (mini-redis `shutdown.rs`): one signal that every
//! connection task selects on, and a way to wait until they have all said
//! goodbye; a panic while stopping is remembered so the process can exit
//! non-zero instead of pretending all went well.
//!
//! A drain has two moments. [`Shutdown::request_drain`] (a signal, the admin
//! endpoint, a successor process) makes the node not ready at once and wakes
//! whoever runs the drain. [`Shutdown::begin`] then tells the connections:
//! each one hears it at its own random moment within the spread window, so
//! that thousands of clients do not reconnect in the same instant. The
//! window is the configured spread or what the grace period has left for
//! it, whichever is shorter: a connection told at its very end still has
//! time to say goodbye before the node stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether this process began to stop (for the panic hook).
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Whether something panicked after that.
static PANICKED_WHILE_STOPPING: AtomicBool = AtomicBool::new(false);

/// The node's shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// When the connections were told to go, and over how long (`None`:
    /// not yet).
    tx: Arc<watch::Sender<Option<Window>>>,
    /// Why a drain was asked for (`None`: nobody asked).
    drain: Arc<watch::Sender<Option<&'static str>>>,
    /// Whether the drain is done: every connection gone.
    drained: Arc<watch::Sender<bool>>,
    spread: Duration,
}

/// The span over which the connections are told to go.
#[derive(Debug, Clone, Copy)]
struct Window {
    began: Instant,
    length: Duration,
}

/// One connection's view of the signal; while it lives, the connection
/// counts as open.
#[derive(Debug)]
pub struct Listener {
    rx: watch::Receiver<Option<Window>>,
    /// This connection's place in the window, as a share of its length
    /// (`0.0..1.0`): the same place however long the window turns out.
    share: f64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl Shutdown {
    /// A signal whose listeners hear it within `spread` of [`Self::begin`].
    pub fn new(spread: Duration) -> Self {
        Self {
            tx: Arc::new(watch::channel(None).0),
            drain: Arc::new(watch::channel(None).0),
            drained: Arc::new(watch::channel(false).0),
            spread,
        }
    }

    /// A listener for a new connection task: it hears the signal, and the
    /// connection counts as open until the listener is dropped.
    pub fn listen(&self) -> Listener {
        Listener {
            rx: self.tx.subscribe(),
            share: rand::thread_rng().gen_range(0.0..1.0),
        }
    }

    /// Asks for a drain (`why` names who asked): from now on the node is not
    /// ready. Returns whether this was the first request.
    pub fn request_drain(&self, why: &'static str) -> bool {
        STOPPING.store(true, Ordering::SeqCst);
        self.drain.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(why);
            true
        })
    }

    /// Completes once a drain was asked for, with who asked.
    pub async fn drain_requested(&self) -> &'static str {
        let mut rx = self.drain.subscribe();
        // An error is unreachable while `self` holds the sender.
        let why = rx.wait_for(Option::is_some).await.ok().and_then(|why| *why);
        why.unwrap_or("drain")
    }

    /// Whether a drain was asked for (the node is not ready).
    pub fn is_draining(&self) -> bool {
        self.drain.borrow().is_some()
    }

    /// Records that the drain is done (every connection gone or cut).
    pub fn mark_drained(&self) {
        self.drained.send_replace(true);
    }

    /// Completes once the drain is done.
    pub async fn drained(&self) {
        let mut rx = self.drained.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Tells every connection to say goodbye and close, each at its moment
    /// in the spread window, which ends within `within` (the window
    /// shrinks to fit; every connection keeps its place in it). Only the
    /// first call counts. Returns the window's length.
    pub fn begin(&self, within: Duration) -> Duration {
        STOPPING.store(true, Ordering::SeqCst);
        let mut length = self.spread.min(within);
        self.tx.send_if_modified(|window| {
            if let Some(window) = window {
                length = window.length;
                return false;
            }
            *window = Some(Window {
                began: Instant::now(),
                length,
            });
            true
        });
        length
    }

    /// Tells the connections that are still open to go now, without waiting
    /// for their turn in the spread window (begins, if nothing had).
    pub fn hurry(&self) {
        STOPPING.store(true, Ordering::SeqCst);
        self.tx.send_replace(Some(Window {
            began: Instant::now(),
            length: Duration::ZERO,
        }));
    }

    /// Whether [`Shutdown::begin`] was called.
    pub fn is_stopping(&self) -> bool {
        self.tx.borrow().is_some()
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
    /// Completes at this connection's moment to go: once shutdown has begun,
    /// after its random share of the spread window (at once if that moment
    /// has passed). Cancel-safe, so it can sit in a `select!` loop.
    pub async fn recv(&mut self) {
        loop {
            // An error means the sender is gone: the app is gone, stop too.
            let window = match self.rx.wait_for(Option::is_some).await {
                Ok(window) => *window,
                Err(_) => return,
            };
            let Some(Window { began, length }) = window else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(began + length.mul_f64(self.share)) => return,
                // Hurried: the moment moved.
                changed = self.rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C): both mean "drain and stop"; SIGUSR2 means
/// "a successor takes over" (`crate::handoff`): drain and stop at once.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    usr2: tokio::signal::unix::Signal,
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
                usr2: signal(SignalKind::user_defined2())?,
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
                _ = self.usr2.recv() => "SIGUSR2",
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

/// Whether this process began to stop (a drain was asked for).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
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
        shutdown.begin(Duration::MAX);
        early.recv().await;
        let mut late = shutdown.listen();
        late.recv().await;
        drop((early, late));
        shutdown.connections_closed().await;
        assert_eq!(shutdown.open_connections(), 0);
    }

    #[tokio::test]
    async fn listeners_go_spread_over_the_window_unless_hurried() {
        // Each listener's place is drawn when it starts listening.
        let spread = Duration::from_secs(10);
        let shutdown = Shutdown::new(spread);
        let listeners: Vec<Listener> = (0..200).map(|_| shutdown.listen()).collect();
        assert!(listeners.iter().all(|l| (0.0..1.0).contains(&l.share)));
        let early = listeners.iter().filter(|l| l.share < 0.5).count();
        assert!(
            (50..150).contains(&early),
            "half the window, {early} of 200"
        );

        // A listener hears the drain at its moment, not before.
        let mut timed = shutdown.listen();
        timed.share = 0.015;
        let mut slow = shutdown.listen();
        slow.share = 0.999;
        let began = Instant::now();
        shutdown.begin(Duration::MAX);
        timed.recv().await;
        let heard = began.elapsed();
        assert!(
            heard >= Duration::from_millis(150) && heard < spread,
            "{heard:?}"
        );
        // Hurried: everyone at once.
        shutdown.hurry();
        tokio::time::timeout(Duration::from_secs(1), slow.recv())
            .await
            .expect("hurried: heard at once");
        drop(listeners);
    }

    #[tokio::test]
    async fn the_window_shrinks_to_what_the_grace_period_left() {
        // Spread over 10 s, but the node must be gone in 400 ms: the last
        // listener hears within them, and each keeps its place.
        let shutdown = Shutdown::new(Duration::from_secs(10));
        let mut last = shutdown.listen();
        last.share = 0.999;
        let mut middle = shutdown.listen();
        middle.share = 0.5;
        let began = Instant::now();
        assert_eq!(
            shutdown.begin(Duration::from_millis(400)),
            Duration::from_millis(400)
        );
        middle.recv().await;
        assert!(began.elapsed() >= Duration::from_millis(200));
        // Asked again with a longer bound: the window stays as it was.
        assert_eq!(
            shutdown.begin(Duration::from_secs(10)),
            Duration::from_millis(400)
        );
        last.recv().await;
        let heard = began.elapsed();
        assert!(
            heard < Duration::from_secs(2),
            "{heard:?}: not the 10 s spread"
        );
    }

    #[tokio::test]
    async fn a_drain_is_asked_for_once() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.is_draining());
        assert!(shutdown.request_drain("admin"));
        assert!(!shutdown.request_drain("SIGTERM"));
        assert!(shutdown.is_draining());
        assert_eq!(shutdown.drain_requested().await, "admin");
    }
}
