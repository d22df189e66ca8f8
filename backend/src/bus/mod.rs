//! The node event bus: how a session's events reach every connection that
//! follows it. Fan-out goes through this interface only, never through calls
//! wired to sockets: [`LocalBus`] in one process, [`redis::RedisBus`] between
//! the nodes of a cluster.
//!
//! Lag policy: each session has one bounded broadcast ring
//! (`capacity` events). Publishing never waits. A subscriber that falls more
//! than `capacity` events behind gets `Lagged` and must resync (the gateway
//! replays missed chat from history); it never slows the publisher or the
//! other subscribers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::metrics::FanoutClock;

pub mod redis;

/// Who follows a session's events: its `/ws` members, or its paired watches
/// (which get compact frames of their own, ticks and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Members(Uuid),
    Watches(Uuid),
}

impl Topic {
    pub fn session_id(self) -> Uuid {
        match self {
            Topic::Members(id) | Topic::Watches(id) => id,
        }
    }
}

/// What a watch-feed event is, so a feed can filter without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Anything to pass on as it is.
    Frame,
    /// A tick with this many whole seconds left.
    Tick { remaining_s: i64 },
    /// A step came due; each watch gets each alert once.
    Alert { alert_seq: u64 },
    /// The host turned guest access off: for guests only, who must go.
    GuestsRevoked,
    /// Events of this topic may have been lost on the way between nodes
    /// (Redis was unreachable, or the session changed hands): followers
    /// check what they missed (chat from history, the timer from a fresh
    /// snapshot). Never sent to clients as it is.
    Resync,
}

/// One event of a session, encoded once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct BusEvent {
    /// The chat sequence number, for `chat.message` events (so subscribers can
    /// drop what a replay already delivered without parsing the frame).
    pub seq: Option<u64>,
    /// The frame as sent to clients.
    pub frame: ByteString,
    /// The session is over: subscribers stop following it after this frame.
    pub last: bool,
    pub kind: EventKind,
    /// For a sampled chat message: when it reached its members' sockets on
    /// this node (the fan-out part of the latency breakdown).
    pub clock: Option<Arc<FanoutClock>>,
}

impl BusEvent {
    /// An event with its frame encoded once, for every subscriber.
    pub fn new(frame: impl Into<ByteString>, seq: Option<u64>) -> Self {
        Self {
            seq,
            frame: frame.into(),
            last: false,
            kind: EventKind::Frame,
            clock: None,
        }
    }

    /// The event with a clock of its fan-out.
    #[must_use]
    pub fn timed(mut self, clock: FanoutClock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// A watch-feed event of this kind.
    pub fn of_kind(mut self, kind: EventKind) -> Self {
        self.kind = kind;
        self
    }

    /// The marker that tells followers to check what they missed.
    pub fn resync() -> Self {
        Self::new(String::new(), None).of_kind(EventKind::Resync)
    }

    /// Marks the session's last event.
    pub fn last(mut self) -> Self {
        self.last = true;
        self
    }
}

/// How a session's members on this node keep up with its events, counted
/// by its fan-out: what the chat weighs before it takes more.
#[derive(Debug, Default)]
pub struct Followers {
    members: AtomicUsize,
    slow: AtomicUsize,
}

impl Followers {
    pub fn joined(&self) {
        self.members.fetch_add(1, Ordering::Relaxed);
    }

    pub fn left(&self) {
        self.members.fetch_sub(1, Ordering::Relaxed);
    }

    /// A member fell behind for want of pace: its socket backed up, or it
    /// fell off its hub's backlog.
    pub fn fell_behind(&self) {
        self.slow.fetch_add(1, Ordering::Relaxed);
    }

    pub fn caught_up(&self) {
        self.slow.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How far a session's fan-out on this node is behind its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Events published that a hub (one per worker) has not taken yet.
    pub queued: usize,
    /// Members on this node.
    pub members: usize,
    /// Of them, those behind for want of pace (a socket that backed up, a
    /// place that fell off the backlog): the session sends faster than
    /// they read.
    pub slow: usize,
}

/// Members a session needs on a node before their pace can refuse its
/// chat: one slow phone in a small session is not the audience.
pub const CROWD: usize = 8;

impl Pressure {
    /// Whether more than half of a crowd ([`CROWD`] or more members) is
    /// behind for want of pace.
    pub fn crowd_behind(&self) -> bool {
        self.members >= CROWD && self.slow * 2 > self.members
    }

    /// The worse of two nodes' pressure, so that the chat refuses what
    /// either node alone would: the longer queue, and the members of the
    /// node whose crowd is behind. Not their sum: one node's crowd behind
    /// (the owner's, busiest with the chat's own work, or a remote one
    /// starved of CPU) would be hidden among the healthy members of the
    /// others, and the flood it cannot keep up with let in.
    #[must_use]
    pub fn worse(self, other: Pressure) -> Pressure {
        let crowd = if other.crowd_behind() && !self.crowd_behind() {
            other
        } else {
            self
        };
        Pressure {
            queued: self.queued.max(other.queued),
            ..crowd
        }
    }
}

/// Carries session events to subscribers.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Publishes an event on a topic (never waits).
    fn publish_to(&self, topic: Topic, event: BusEvent);
    /// Follows a topic's events from now on.
    fn subscribe_to(&self, topic: Topic) -> broadcast::Receiver<BusEvent>;
    /// Forgets a session's topics (after their last events).
    fn close(&self, session_id: Uuid);

    /// The record a session's fan-out on this node keeps of its members.
    fn followers(&self, session_id: Uuid) -> Arc<Followers>;

    /// How far the session's fan-out on this node is behind.
    fn pressure(&self, session_id: Uuid) -> Pressure;

    /// How far the session's fan-out is behind on every node: this node's
    /// [`Bus::pressure`] with the other nodes' as last heard (see
    /// [`Bus::weigh_elsewhere`]). What the chat admits sends by.
    fn weighed(&self, session_id: Uuid) -> Pressure {
        self.pressure(session_id)
    }

    /// The other nodes' pressure of the sessions this node runs, the worst
    /// of them per session ([`Pressure::worse`]). Replaces what was heard
    /// before: a session left out is weighed by this node alone. A bus
    /// without other nodes ignores it.
    fn weigh_elsewhere(&self, _elsewhere: HashMap<Uuid, Pressure>) {}

    /// Publishes an event to a session's members.
    fn publish(&self, session_id: Uuid, event: BusEvent) {
        self.publish_to(Topic::Members(session_id), event);
    }

    /// Follows a session's member events from now on.
    fn subscribe(&self, session_id: Uuid) -> broadcast::Receiver<BusEvent> {
        self.subscribe_to(Topic::Members(session_id))
    }
}

/// The in-process bus of a single node.
#[derive(Debug)]
pub struct LocalBus {
    capacity: usize,
    channels: Mutex<HashMap<Topic, Channel>>,
}

/// One topic's ring, and how its members keep up.
#[derive(Debug)]
struct Channel {
    sender: broadcast::Sender<BusEvent>,
    followers: Arc<Followers>,
}

impl LocalBus {
    /// A bus whose per-session rings hold `capacity` events.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(16),
            channels: Mutex::new(HashMap::new()),
        })
    }

    fn with_channel<T>(&self, topic: Topic, f: impl FnOnce(&Channel) -> T) -> T {
        let mut map = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(map.entry(topic).or_insert_with(|| Channel {
            sender: broadcast::channel(self.capacity).0,
            followers: Arc::default(),
        }))
    }

    fn sender(&self, topic: Topic) -> broadcast::Sender<BusEvent> {
        self.with_channel(topic, |channel| channel.sender.clone())
    }
}

impl LocalBus {
    /// How many subscribers follow a topic on this node now.
    pub fn subscribers(&self, topic: Topic) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&topic)
            .map_or(0, |channel| channel.sender.receiver_count())
    }
}

impl Bus for LocalBus {
    fn publish_to(&self, topic: Topic, event: BusEvent) {
        let clock = event.clock.clone();
        // No subscriber is not an error: nobody is watching.
        if let (Ok(subscribers), Some(clock)) = (self.sender(topic).send(event), clock) {
            clock.published_to(subscribers);
        }
    }

    fn subscribe_to(&self, topic: Topic) -> broadcast::Receiver<BusEvent> {
        self.sender(topic).subscribe()
    }

    fn followers(&self, session_id: Uuid) -> Arc<Followers> {
        self.with_channel(Topic::Members(session_id), |channel| {
            Arc::clone(&channel.followers)
        })
    }

    fn pressure(&self, session_id: Uuid) -> Pressure {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&Topic::Members(session_id))
            .map_or_else(Pressure::default, |channel| Pressure {
                queued: channel.sender.len(),
                members: channel.followers.members.load(Ordering::Relaxed),
                slow: channel.followers.slow.load(Ordering::Relaxed),
            })
    }

    fn close(&self, session_id: Uuid) {
        let mut map = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(&Topic::Members(session_id));
        map.remove(&Topic::Watches(session_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> BusEvent {
        BusEvent {
            seq: Some(n),
            frame: ByteString::from(format!("{n}")),
            last: false,
            kind: EventKind::Frame,
            clock: None,
        }
    }

    #[test]
    fn of_two_nodes_the_worse_keeps_the_longer_queue_and_the_crowd_behind() {
        let pressure = |queued, members, slow| Pressure {
            queued,
            members,
            slow,
        };
        // A crowd behind on either node stays behind, however many healthy
        // members the other has (their sum would hide it: 2,100 of 6,000).
        let owner = pressure(2, 2_000, 1_500);
        let other = pressure(9, 4_000, 600);
        assert_eq!(owner.worse(other), pressure(9, 2_000, 1_500));
        assert_eq!(other.worse(owner), pressure(9, 2_000, 1_500));
        assert!(owner.worse(other).crowd_behind());
        // Fewer than a crowd behind is nobody's crowd.
        let few = pressure(0, CROWD - 1, CROWD - 1);
        assert!(!few.crowd_behind());
        assert!(!other.worse(few).crowd_behind());
        assert_eq!(owner.worse(Pressure::default()), owner);
    }

    #[tokio::test]
    async fn subscribers_get_events_published_after_they_subscribed() {
        let bus = LocalBus::new(16);
        let id = Uuid::now_v7();
        bus.publish(id, event(1));
        let mut rx = bus.subscribe(id);
        bus.publish(id, event(2));
        assert_eq!(rx.recv().await.unwrap().seq, Some(2));
    }

    #[tokio::test]
    async fn members_and_watches_are_separate_topics() {
        let bus = LocalBus::new(16);
        let id = Uuid::now_v7();
        let mut members = bus.subscribe(id);
        let mut watches = bus.subscribe_to(Topic::Watches(id));
        bus.publish_to(Topic::Watches(id), event(1));
        bus.publish(id, event(2));
        assert_eq!(watches.recv().await.unwrap().seq, Some(1));
        assert_eq!(members.recv().await.unwrap().seq, Some(2));
        assert!(watches.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_pressure_counts_what_the_furthest_behind_has_not_taken_and_who_is_behind() {
        let bus = LocalBus::new(16);
        let id = Uuid::now_v7();
        let queued = |bus: &LocalBus| bus.pressure(id).queued;
        assert_eq!(bus.pressure(id), Pressure::default());
        let mut fast = bus.subscribe(id);
        let mut slow = bus.subscribe(id);
        for n in 0..3 {
            bus.publish(id, event(n));
        }
        while fast.try_recv().is_ok() {}
        assert_eq!(queued(&bus), 3);
        slow.recv().await.unwrap();
        assert_eq!(queued(&bus), 2);
        drop(slow);
        assert_eq!(queued(&bus), 0);
        bus.publish_to(Topic::Watches(id), event(9));
        assert_eq!(queued(&bus), 0, "members only");

        let followers = bus.followers(id);
        followers.joined();
        followers.joined();
        followers.fell_behind();
        let pressure = bus.pressure(id);
        assert_eq!((pressure.members, pressure.slow), (2, 1));
        followers.caught_up();
        followers.left();
        let pressure = bus.pressure(id);
        assert_eq!((pressure.members, pressure.slow), (1, 0));
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_blocking_the_publisher() {
        let bus = LocalBus::new(16);
        let id = Uuid::now_v7();
        let mut slow = bus.subscribe(id);
        for n in 0..100 {
            bus.publish(id, event(n));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
