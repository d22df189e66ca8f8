//! The bus between nodes: every event is delivered to this node's followers
//! at once (through the [`LocalBus`]) and written to Redis for the others.
//!
//! - **Order**: one writer task sends a node's events in publishing order, in
//!   pipelined batches on one connection; Redis delivers a channel's messages
//!   in that order. A session's events are published by the node that runs
//!   it, so every node sees them in the owner's order.
//! - **No echo**: each event names its origin node; a node drops its own.
//! - **Never blocks**: publishing puts the event on a bounded queue
//!   (`capacity`); when the queue is full, or Redis refuses a batch, the
//!   events are dropped for the other nodes and counted
//!   (`simmer_cluster_bus_dropped_total`). Followers elsewhere resync: a gap
//!   in chat `seq` is filled from history; timer, presence and media frames
//!   carry whole state, and the next one corrects the view.
//! - **Interest**: a node subscribes to a session's channel while it has
//!   followers of it, and lets go once it has none (checked every few
//!   seconds).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::{Bus, BusEvent, EventKind, LocalBus, Pressure, Topic};
use crate::cluster::{key, Cluster};
use crate::metrics::Metrics;

/// Most events per pipelined write.
const BATCH: usize = 256;
/// How often unfollowed topics are let go.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// The Redis channel of a topic.
fn channel(topic: Topic) -> String {
    match topic {
        Topic::Members(id) => key(format_args!("ev:m:{id}")),
        Topic::Watches(id) => key(format_args!("ev:w:{id}")),
    }
}

/// The topic of a Redis channel.
fn topic_of(channel: &str) -> Option<Topic> {
    let rest = channel.strip_prefix("simmer:ev:")?;
    let (kind, id) = rest.split_once(':')?;
    let id: Uuid = id.parse().ok()?;
    match kind {
        "m" => Some(Topic::Members(id)),
        "w" => Some(Topic::Watches(id)),
        _ => None,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `origin \t published_ms \t kind \t seq \t last \n frame`.
fn encode(origin: &str, event: &BusEvent) -> Vec<u8> {
    let kind = match event.kind {
        EventKind::Frame => "F".to_owned(),
        EventKind::Tick { remaining_s } => format!("T{remaining_s}"),
        EventKind::Alert { alert_seq } => format!("A{alert_seq}"),
        EventKind::GuestsRevoked => "G".to_owned(),
        EventKind::Resync => "R".to_owned(),
    };
    let seq = event.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    let mut out = format!(
        "{origin}\t{}\t{kind}\t{seq}\t{}\n",
        now_ms(),
        u8::from(event.last)
    )
    .into_bytes();
    out.extend_from_slice(event.frame.as_bytes());
    out
}

/// The origin, publishing time and event of a payload.
fn decode(payload: &[u8]) -> Option<(&str, i64, BusEvent)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (header, frame) = text.split_once('\n')?;
    let mut fields = header.split('\t');
    let origin = fields.next()?;
    let published_ms: i64 = fields.next()?.parse().ok()?;
    let kind = match fields.next()? {
        "F" => EventKind::Frame,
        "G" => EventKind::GuestsRevoked,
        "R" => EventKind::Resync,
        k if k.starts_with('T') => EventKind::Tick {
            remaining_s: k[1..].parse().ok()?,
        },
        k if k.starts_with('A') => EventKind::Alert {
            alert_seq: k[1..].parse().ok()?,
        },
        _ => return None,
    };
    let seq = match fields.next()? {
        "-" => None,
        n => Some(n.parse().ok()?),
    };
    let last = fields.next()? == "1";
    let event = BusEvent {
        seq,
        frame: ByteString::from(frame.to_owned()),
        last,
        kind,
        clock: None,
    };
    Some((origin, published_ms, event))
}

/// Delivers an event from Redis to this node's followers (unless it is this
/// node's own).
pub(crate) fn deliver(
    local: &LocalBus,
    node: &str,
    channel: &str,
    payload: &[u8],
    metrics: &Metrics,
) {
    let (Some(topic), Some((origin, published_ms, event))) = (topic_of(channel), decode(payload))
    else {
        tracing::warn!(channel, "unreadable bus event");
        return;
    };
    if origin == node {
        return;
    }
    metrics.cluster.bus_received.inc();
    let lag_ms = (now_ms() - published_ms).max(0);
    metrics.cluster.bus_lag.observe(lag_ms as f64 / 1000.0);
    let last = event.last;
    local.publish_to(topic, event);
    if last {
        local.close(topic.session_id());
    }
}

/// Tells this node's followers of `channel` to check what they missed.
pub(crate) fn resync_followers(local: &LocalBus, channel: &str) {
    if let Some(topic) = topic_of(channel) {
        if local.subscribers(topic) > 0 {
            local.publish_to(topic, BusEvent::resync());
        }
    }
}

/// The bus of a cluster node.
#[derive(Debug)]
pub struct RedisBus {
    local: Arc<LocalBus>,
    cluster: Cluster,
    queue: mpsc::Sender<(String, Vec<u8>)>,
    /// Channels with events the other nodes did not get (dropped): a resync
    /// marker follows once Redis takes events again.
    dropped: Dropped,
    /// Topics whose Redis channel this node subscribes to.
    followed: Mutex<HashSet<Topic>>,
    /// The fan-out of the sessions this node runs on the other nodes, as
    /// the presence loop last heard it (at most one entry per session run
    /// here).
    elsewhere: Mutex<HashMap<Uuid, Pressure>>,
}

impl RedisBus {
    /// A bus over `local` whose queue to Redis holds `capacity` events.
    /// Starts its writer and its pruner (needs a Tokio runtime).
    pub fn new(local: Arc<LocalBus>, cluster: Cluster, capacity: usize) -> Arc<Self> {
        let (queue, events) = mpsc::channel(capacity.max(64));
        let dropped = Dropped::default();
        let bus = Arc::new(Self {
            local,
            cluster: cluster.clone(),
            queue,
            dropped: dropped.clone(),
            followed: Mutex::new(HashSet::new()),
            elsewhere: Mutex::new(HashMap::new()),
        });
        tokio::spawn(write(cluster, events, dropped));
        let weak = Arc::downgrade(&bus);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PRUNE_EVERY).await;
                let Some(bus) = weak.upgrade() else { return };
                bus.prune();
            }
        });
        bus
    }

    fn followed(&self) -> std::sync::MutexGuard<'_, HashSet<Topic>> {
        self.followed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets go of the channels nobody here follows any more.
    fn prune(&self) {
        let gone: Vec<Topic> = {
            let mut followed = self.followed();
            let gone: Vec<Topic> = followed
                .iter()
                .copied()
                .filter(|t| self.local.subscribers(*t) == 0)
                .collect();
            for topic in &gone {
                followed.remove(topic);
            }
            gone
        };
        if !gone.is_empty() {
            self.cluster
                .unfollow(gone.into_iter().map(channel).collect());
        }
    }
}

/// Channels whose events did not all reach Redis.
#[derive(Debug, Clone, Default)]
struct Dropped(Arc<Mutex<HashSet<String>>>);

impl Dropped {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends queued events to Redis in order, in batches. After events were
/// dropped, a resync marker follows on their channels once Redis takes
/// events again.
async fn write(cluster: Cluster, mut events: mpsc::Receiver<(String, Vec<u8>)>, dropped: Dropped) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = events.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let resyncs: Vec<String> = dropped.lock().drain().collect();
        let marker = encode(cluster.node_id(), &BusEvent::resync());
        batch.extend(resyncs.into_iter().map(|c| (c, marker.clone())));
        let metrics = &cluster.metrics().cluster;
        match cluster.publish_batch(&batch).await {
            Ok(()) => metrics.bus_published.inc_by(n),
            Err(_) => {
                metrics.bus_dropped.with_label_values(&["redis"]).inc_by(n);
                dropped
                    .lock()
                    .extend(batch.drain(..).map(|(channel, _)| channel));
            }
        }
        batch.clear();
    }
}

impl Bus for RedisBus {
    fn publish_to(&self, topic: Topic, event: BusEvent) {
        let payload = encode(self.cluster.node_id(), &event);
        self.local.publish_to(topic, event);
        if let Err(e) = self.queue.try_send((channel(topic), payload)) {
            let (channel, _) = e.into_inner();
            self.dropped.lock().insert(channel);
            self.cluster
                .metrics()
                .cluster
                .bus_dropped
                .with_label_values(&["queue_full"])
                .inc();
        }
    }

    fn subscribe_to(&self, topic: Topic) -> broadcast::Receiver<BusEvent> {
        let receiver = self.local.subscribe_to(topic);
        if self.followed().insert(topic) {
            self.cluster.follow(channel(topic));
        }
        receiver
    }

    fn followers(&self, session_id: Uuid) -> Arc<super::Followers> {
        Bus::followers(&*self.local, session_id)
    }

    fn pressure(&self, session_id: Uuid) -> Pressure {
        self.local.pressure(session_id)
    }

    fn weighed(&self, session_id: Uuid) -> Pressure {
        let here = self.local.pressure(session_id);
        let elsewhere = self
            .elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session_id)
            .copied();
        elsewhere.map_or(here, |there| here.worse(there))
    }

    fn weigh_elsewhere(&self, elsewhere: HashMap<Uuid, Pressure>) {
        *self.elsewhere.lock().unwrap_or_else(|p| p.into_inner()) = elsewhere;
    }

    fn close(&self, session_id: Uuid) {
        self.local.close(session_id);
        let topics = [Topic::Members(session_id), Topic::Watches(session_id)];
        let gone: Vec<String> = {
            let mut followed = self.followed();
            topics
                .into_iter()
                .filter(|t| followed.remove(t))
                .map(channel)
                .collect()
        };
        self.cluster.unfollow(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_whole() {
        let id = Uuid::now_v7();
        for (kind, seq, last) in [
            (EventKind::Frame, Some(7), false),
            (EventKind::Tick { remaining_s: 42 }, None, false),
            (EventKind::Alert { alert_seq: 3 }, None, true),
            (EventKind::GuestsRevoked, None, false),
            (EventKind::Resync, None, false),
        ] {
            let event = BusEvent {
                seq,
                frame: ByteString::from("{\"type\":\"x\",\n\"tab\":\"\\t\"}"),
                last,
                kind,
                clock: None,
            };
            let payload = encode("node-a", &event);
            let (origin, at, back) = decode(&payload).unwrap();
            assert_eq!(origin, "node-a");
            assert!((now_ms() - at).abs() < 1000);
            assert_eq!(back.seq, seq);
            assert_eq!(back.kind, kind);
            assert_eq!(back.last, last);
            assert_eq!(back.frame, event.frame);
        }
        assert_eq!(
            topic_of(&channel(Topic::Watches(id))),
            Some(Topic::Watches(id))
        );
        assert_eq!(
            topic_of(&channel(Topic::Members(id))),
            Some(Topic::Members(id))
        );
        assert_eq!(topic_of("simmer:ev:x:1"), None);
    }
}
