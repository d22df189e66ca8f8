//! The node's one pub/sub connection to Redis: the bus channels followed
//! here, this node's `rpc` channel and the `ctl` channel. It reconnects with
//! backoff when Redis goes away and subscribes again to everything followed;
//! events published meanwhile are lost to this node, which its followers
//! notice (a gap in chat `seq`) and fill from history.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::key;
use super::rpc::{Envelope, Incoming, Rpc};
use crate::bus::LocalBus;
use crate::metrics::Metrics;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

enum Command {
    Follow(String),
    Unfollow(Vec<String>),
    Close,
}

/// The handle of the subscriber task.
pub(super) struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
    /// Every bus channel followed now (subscribed again after a reconnect).
    wanted: Arc<Mutex<HashSet<String>>>,
}

struct Task {
    client: redis::Client,
    node: String,
    local: Arc<LocalBus>,
    rpc: Rpc,
    incoming: mpsc::Sender<Incoming>,
    subscribed: Arc<AtomicBool>,
    metrics: Metrics,
    wanted: Arc<Mutex<HashSet<String>>>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Subscriber {
    pub(super) fn start(
        client: redis::Client,
        node: String,
        local: Arc<LocalBus>,
        rpc: Rpc,
        incoming: mpsc::Sender<Incoming>,
        subscribed: Arc<AtomicBool>,
        metrics: Metrics,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let wanted = Arc::new(Mutex::new(HashSet::new()));
        let task = Task {
            client,
            node,
            local,
            rpc,
            incoming,
            subscribed,
            metrics,
            wanted: wanted.clone(),
            commands: rx,
        };
        tokio::spawn(task.run());
        Self {
            commands: tx,
            wanted,
        }
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn follow(&self, channel: String) {
        if self.wanted().insert(channel.clone()) {
            let _ = self.commands.send(Command::Follow(channel));
        }
    }

    pub(super) fn unfollow(&self, channels: Vec<String>) {
        let gone: Vec<String> = {
            let mut wanted = self.wanted();
            channels.into_iter().filter(|c| wanted.remove(c)).collect()
        };
        if !gone.is_empty() {
            let _ = self.commands.send(Command::Unfollow(gone));
        }
    }

    pub(super) fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

impl Task {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.serve().await {
                Served::Closed => return,
                Served::Subscribed => backoff = BACKOFF_MIN,
                Served::Failed => {}
            }
            self.subscribed.store(false, Ordering::SeqCst);
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                command = self.commands.recv() => {
                    if matches!(command, None | Some(Command::Close)) {
                        return;
                    }
                    // Follow/unfollow while down: `wanted` has it already.
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection, from subscribing until it drops.
    async fn serve(&mut self) -> Served {
        let connect = tokio::time::timeout(Duration::from_secs(1), self.client.get_async_pubsub());
        let Ok(Ok(pubsub)) = connect.await else {
            return Served::Failed;
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut channels: Vec<String> = self
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        channels.push(self.rpc.own_channel());
        channels.push(key(format_args!("ctl")));
        let subscribe = tokio::time::timeout(Duration::from_secs(2), sink.subscribe(&channels));
        if !matches!(subscribe.await, Ok(Ok(()))) {
            return Served::Failed;
        }
        self.subscribed.store(true, Ordering::SeqCst);
        tracing::info!(node = %self.node, channels = channels.len(), "redis subscription up");
        // Whatever was published while this node was not subscribed is lost
        // to it: its followers check what they missed.
        for channel in &channels {
            crate::bus::redis::resync_followers(&self.local, channel);
        }
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.dispatch(&message),
                    None => {
                        tracing::warn!(node = %self.node, "redis subscription lost; reconnecting");
                        return Served::Subscribed;
                    }
                },
                command = self.commands.recv() => {
                    let done = match command {
                        Some(Command::Follow(channel)) => sink.subscribe(&channel).await,
                        Some(Command::Unfollow(channels)) => sink.unsubscribe(&channels).await,
                        None | Some(Command::Close) => return Served::Closed,
                    };
                    if done.is_err() {
                        return Served::Subscribed;
                    }
                }
            }
        }
    }

    fn dispatch(&self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        let payload = message.get_payload_bytes();
        if channel.starts_with("simmer:ev:") {
            crate::bus::redis::deliver(&self.local, &self.node, channel, payload, &self.metrics);
        } else if channel == self.rpc.own_channel() {
            match serde_json::from_slice::<Envelope>(payload) {
                Ok(Envelope::Reply { id, body }) => self.rpc.on_reply(id, body),
                Ok(Envelope::Request { id, from, body }) => {
                    if self
                        .incoming
                        .try_send(Incoming::Request { id, from, body })
                        .is_err()
                    {
                        // The caller times out and retries.
                        self.metrics
                            .cluster
                            .served
                            .with_label_values(&["dropped"])
                            .inc();
                    }
                }
                Err(e) => tracing::warn!(error.message = %e, "unreadable rpc message"),
            }
        } else if let Ok(value) = serde_json::from_slice(payload) {
            let _ = self.incoming.try_send(Incoming::Control(value));
        }
    }
}

enum Served {
    /// The node stops.
    Closed,
    /// It was up, then dropped.
    Subscribed,
    /// It never came up.
    Failed,
}
