//! `Sessions`: the one handle to the node's live sessions. Every command to a
//! live session (chat, timer, media, presence, watch snapshots) goes through
//! it as a typed [`Call`], with one timeout policy ([`Patience`]); nothing
//! outside `live/` holds an actor address. Where the session runs is decided
//! here, so that a cluster is a second route, not edits in every handler.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix::MailboxError;
use mobile_bridge::protocol::Author;
use sea_orm::DatabaseConnection;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::calls::Call;
use super::chat::ChatLimits;
use super::chat_actor::GetHistory;
use super::chat_writer::ChatWriter;
use super::frames;
use super::ownership::Ownership;
use super::presence::Presence;
use super::session::LiveSnapshot;
use super::supervisor::{lock, ActorDeps, LocalSessions};
use super::timer_actor::{ControlTimer, GetTimer, GetWatchSnapshot, TimerError, WatchSnapshot};
use crate::bus::{Bus, BusEvent, Followers, Topic};
use crate::cluster::{Cluster, Incoming};
use crate::media::engine::Sfu;
use crate::media::room::EndGuests;
use crate::metrics::Metrics;
use crate::store::sessions as store;
use crate::watch::{DeviceControl, WatchHub};
use placement::Control;

mod placement;

/// How often dead actors are looked for and presence is published.
pub const PRESENCE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest a drain waits for other nodes to take its sessions before it
/// tells its clients to go anyway.
const HAND_OFF_WAIT: Duration = Duration::from_secs(2);
/// After the take-over, time for the new owners' first frames to reach this
/// node's followers through Redis.
const HAND_OFF_SETTLE: Duration = Duration::from_millis(100);

/// Why a live session could not answer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum SessionError {
    #[error("session is not live")]
    NotLive,
    #[error("session is temporarily unavailable")]
    Unavailable,
}

/// The node's live sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: LocalSessions,
    /// This node's link to the other nodes, in a cluster.
    cluster: Option<Cluster>,
    /// Sessions this node ran until another holder took them over (another
    /// process on the same database): asked, they are unavailable here, not
    /// over. At most one entry per session this node ever ran.
    superseded: Mutex<HashSet<Uuid>>,
    presence: Presence,
    /// Held by the placement loop for each of its turns, and by a hand-off
    /// before it lets leases go: a renewal in flight would take a released
    /// lease back (a renewal re-takes a lease that vanished from Redis).
    placement_turn: tokio::sync::Mutex<()>,
    /// Sessions this node is taking now: a second claim of the same session
    /// (a `released` message and the orphan look at once) would raise the
    /// fence over this node's own new actors and then let the lease go.
    claiming: Mutex<HashSet<Uuid>>,
    /// The watch feeds open on this node, per device.
    watch_hub: WatchHub,
    bus: Arc<dyn Bus>,
    db: DatabaseConnection,
    metrics: Metrics,
}

impl Sessions {
    /// Creates the handle and its actor threads. Needs a running actix
    /// `System`.
    pub fn new(
        db: DatabaseConnection,
        chat_writer: ChatWriter,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        chat_limits: ChatLimits,
        sfu: Sfu,
        cluster: Option<(Cluster, mpsc::Receiver<Incoming>)>,
    ) -> anyhow::Result<Self> {
        let local = LocalSessions::new(ActorDeps {
            db: db.clone(),
            chat_writer,
            bus: bus.clone(),
            metrics: metrics.clone(),
            chat_limits,
            sfu,
        })?;
        let sessions = Self {
            inner: Arc::new(Inner {
                local,
                cluster: cluster.as_ref().map(|(c, _)| c.clone()),
                metrics,
                superseded: Mutex::default(),
                presence: Presence::default(),
                placement_turn: tokio::sync::Mutex::new(()),
                claiming: Mutex::default(),
                watch_hub: WatchHub::default(),
                bus,
                db,
            }),
        };
        sessions.spawn_watchdog();
        if let Some((cluster, incoming)) = cluster {
            sessions.spawn_placement(cluster, incoming);
        }
        Ok(sessions)
    }

    /// This node's link to the cluster, if it is in one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// The watch feeds open on this node.
    pub fn watch_hub(&self) -> &WatchHub {
        &self.inner.watch_hub
    }

    /// Tells a device's open feeds, on every node, to go or to follow
    /// another session; how many feeds on this node heard it.
    pub async fn tell_device(&self, device: Uuid, control: DeviceControl) -> usize {
        if let Some(cluster) = &self.inner.cluster {
            let message = Control::Device { device, control }.to_json();
            if cluster.broadcast(&message).await.is_ok() {
                // Every node hears it, this one included.
                return self.inner.watch_hub.connected_feeds(device);
            }
        }
        self.inner.watch_hub.tell(device, control)
    }

    /// Follows a topic's events from now on.
    pub fn subscribe(&self, topic: Topic) -> broadcast::Receiver<BusEvent> {
        self.inner.bus.subscribe_to(topic)
    }

    /// The record a session's fan-out on this node keeps of its members.
    pub fn followers(&self, session_id: Uuid) -> Arc<Followers> {
        self.inner.bus.followers(session_id)
    }

    /// Starts the actors of every live session in the database (at
    /// start-up).
    /// In a cluster they are only marked live: the nodes share them out.
    pub async fn restore(&self) -> Result<usize, sea_orm::DbErr> {
        let ids = store::live_ids(&self.inner.db).await?;
        if let Some(cluster) = &self.inner.cluster {
            if let Err(e) = cluster.add_live(&ids).await {
                tracing::warn!(error.message = %e, "marking live sessions in redis failed; retrying later");
            }
            return Ok(ids.len());
        }
        let mut restored = 0;
        for id in ids {
            restored += usize::from(self.take_over(id).await?);
        }
        Ok(restored)
    }

    /// A session just went live: its actors start.
    /// In a cluster this node takes it, unless another node did already.
    pub async fn activate(&self, id: Uuid) -> Result<(), sea_orm::DbErr> {
        let Some(cluster) = &self.inner.cluster else {
            return self.take_over(id).await.map(drop);
        };
        // Redis trouble is not the caller's: the nodes mark live sessions
        // from the database every few seconds and take them then.
        if let Err(e) = cluster.add_live(&[id]).await {
            tracing::warn!(session_id = %id, error.message = %e, "marking the session live in redis failed");
            return Ok(());
        }
        self.claim(cluster, id).await;
        Ok(())
    }

    /// Raises the session's fencing token and starts its actors under it
    /// (for as long as this node runs); `false` when it is not live.
    async fn take_over(&self, id: Uuid) -> Result<bool, sea_orm::DbErr> {
        let Some(fence) = store::take_over(&self.inner.db, id).await? else {
            return Ok(false);
        };
        self.inner.local.start(id, Ownership::lasting(fence));
        Ok(true)
    }

    /// A session ended: its actors stop, its followers are told.
    pub fn deactivate(&self, id: Uuid) {
        if let Some(cluster) = self.inner.cluster.clone() {
            // No node takes it any more, and its owner lets it go.
            tokio::spawn(async move {
                let _ = cluster.remove_live(id).await;
                let _ = cluster.broadcast(&Control::Ended(id).to_json()).await;
            });
        }
        self.end_here(id);
    }

    /// Stops following an ended session on this node: frames to its
    /// followers, its actors (if they run here) stopped.
    fn end_here(&self, id: Uuid) {
        lock(&self.inner.superseded).remove(&id);
        self.inner.presence.forget(id);
        let bus = &self.inner.bus;
        bus.publish(id, frames::session_ended(id));
        bus.publish_to(Topic::Watches(id), frames::watch_bye("session_ended"));
        bus.close(id);
        self.inner.local.stop(id);
    }

    /// The host turned guest access off: connected guests are told and
    /// disconnected (their frames say why), members see nothing, and guests'
    /// playback ends.
    pub async fn guests_revoked(&self, id: Uuid) {
        self.inner.bus.publish(id, frames::guests_revoked());
        // Not live: nobody plays.
        let _ = self.ask(id, EndGuests).await;
    }

    /// Asks a live session: its actor's answer, or why there is none. In a
    /// cluster, a session that runs on another node is asked there.
    pub async fn ask<C: Call>(&self, id: Uuid, call: C) -> Result<C::Output, SessionError> {
        match &self.inner.cluster {
            Some(cluster) if !self.inner.local.runs(id) => self.forward(cluster, id, call).await,
            _ => self.ask_here(id, call).await,
        }
    }

    /// Asks a session that runs on this node. A dead actor is re-created and
    /// asked again, once.
    pub(super) async fn ask_here<C: Call>(
        &self,
        id: Uuid,
        call: C,
    ) -> Result<C::Output, SessionError> {
        for _ in 0..2 {
            let Some(actors) = self.inner.local.actors(id) else {
                return Err(self.not_running(id));
            };
            let answer = call.clone().send_to(&actors);
            match tokio::time::timeout(C::PATIENCE.limit(), answer).await {
                Ok(Ok(output)) => return Ok(output),
                Ok(Err(MailboxError::Closed)) => continue,
                Ok(Err(MailboxError::Timeout)) | Err(_) => return Err(SessionError::Unavailable),
            }
        }
        Err(SessionError::Unavailable)
    }

    /// This node's hold on a session lapsed or went to another node: its
    /// actors stop (what they wrote is durable; what they could not write was
    /// not acknowledged).
    fn lost(&self, id: Uuid) {
        tracing::warn!(session_id = %id, "this node lost the session; stopping its actors");
        self.inner.metrics.cluster.leases_lost.inc();
        lock(&self.inner.superseded).insert(id);
        self.inner.local.stop(id);
        if let Some(cluster) = self.inner.cluster.clone() {
            tokio::spawn(async move {
                let _ = cluster.release(id).await;
            });
        }
    }

    /// Why a session that does not run here cannot answer.
    fn not_running(&self, id: Uuid) -> SessionError {
        // In a cluster it runs elsewhere, or is about to.
        if self.inner.cluster.is_some() || lock(&self.inner.superseded).contains(&id) {
            SessionError::Unavailable
        } else {
            SessionError::NotLive
        }
    }

    /// What a client sees of a live session now: its viewers and its timer.
    pub async fn snapshot(&self, id: Uuid) -> Result<LiveSnapshot, SessionError> {
        match self.ask(id, GetTimer).await? {
            Ok(timer) => Ok(LiveSnapshot {
                viewer_count: self.viewer_count(id).await,
                timer,
            }),
            Err(SessionError::NotLive) => {
                // Its actors found it over (ended elsewhere): let them go.
                if let Some(actors) = self.inner.local.actors(id) {
                    self.inner.local.forget(id, &actors.session);
                }
                Err(SessionError::NotLive)
            }
            Err(e) => Err(e),
        }
    }

    /// What a watch needs on connect (the timer and a pending alert).
    pub async fn watch_snapshot(&self, id: Uuid) -> Result<WatchSnapshot, SessionError> {
        self.ask(id, GetWatchSnapshot).await?
    }

    /// Applies a host's timer action; answers once it is durable.
    pub async fn control_timer(
        &self,
        id: Uuid,
        action: watch_sync::TimerAction,
    ) -> Result<watch_sync::TimerView, TimerError> {
        // Refused before it reaches the actor (the machine checks again).
        action.check().map_err(TimerError::Refused)?;
        self.ask(id, ControlTimer { action }).await?
    }

    /// The newest durable chat sequence number of a live session.
    pub async fn durable_seq(&self, id: Uuid) -> Result<u64, SessionError> {
        let history = GetHistory {
            after: u64::MAX,
            limit: 0,
        };
        self.ask(id, history)
            .await?
            .map(|h| h.durable_seq)
            .map_err(|_| SessionError::Unavailable)
    }

    /// Distinct viewers (not the host) connected to a session now (in a
    /// cluster: on every node, as its owner last merged them).
    pub async fn viewer_count(&self, id: Uuid) -> u32 {
        let Some(cluster) = &self.inner.cluster else {
            return self.inner.presence.viewer_count(id);
        };
        if let Some(count) = self.inner.presence.merged_count(id) {
            return count;
        }
        cluster
            .viewer_count(id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// A connection joined a session.
    pub fn joined(&self, id: Uuid, connection: u64, who: Author) {
        self.inner.presence.joined(id, connection, who);
    }

    /// A connection left a session (or closed).
    pub fn left(&self, id: Uuid, connection: u64) {
        self.inner.presence.left(id, connection);
    }

    /// Publishes a `presence` frame for every session whose count changed.
    fn publish_presence(&self) {
        for (id, (count, joined, left)) in self.inner.presence.updates() {
            self.inner
                .bus
                .publish(id, frames::presence(id, count, joined, left));
        }
    }

    /// The sessions this node runs.
    pub fn running(&self) -> Vec<Uuid> {
        self.inner.local.running()
    }

    /// How many sessions this node runs.
    pub fn live_count(&self) -> usize {
        self.inner.local.count()
    }

    /// Stops every session actor and waits, at most `timeout`, until their
    /// durable writes are done (graceful shutdown; their state is durable).
    /// Their threads keep running until [`Self::join_threads`]: close the
    /// database in between, so that no query is still in flight on a thread
    /// that ends (a query dropped outside any runtime panics inside sqlx).
    pub async fn stop_actors(&self, timeout: Duration) {
        match &self.inner.cluster {
            Some(cluster) => {
                // Written and stopped: the other nodes take them at once
                // (after a drain there is nothing left to hand over).
                self.hand_off(timeout).await;
                cluster.close();
            }
            None => self.inner.local.stop_all(timeout).await,
        }
    }

    /// Hands this node's sessions to the other nodes of the cluster (a
    /// drain): their actors stop once their writes are durable, this node
    /// leaves the membership and lets every lease go, and the other nodes
    /// are told, so the preferred one takes each session at once instead of
    /// after the lease TTL. Meanwhile and after, this node's clients are
    /// served by forwarding. Nothing to do on a single node (its sessions
    /// stop with it); how many sessions were handed over.
    pub async fn hand_off(&self, timeout: Duration) -> usize {
        let Some(cluster) = &self.inner.cluster else {
            return 0;
        };
        let started = std::time::Instant::now();
        let running = self.inner.local.running();
        self.inner.local.stop_all(timeout).await;
        let stopped_ms = started.elapsed().as_millis() as u64;
        // Closed now: the placement loop ends at its next turn, and no turn
        // is under way while the leases go.
        let _turn = self.inner.placement_turn.lock().await;
        if let Err(e) = cluster.leave().await {
            tracing::warn!(error.message = %e, "leaving the cluster's membership failed");
        }
        for id in &running {
            let _ = cluster.release(*id).await;
        }
        if running.is_empty() {
            return 0;
        }
        let released = Control::Released {
            from: cluster.node_id().to_owned(),
            sessions: running.clone(),
        };
        if let Err(e) = cluster.broadcast(&released.to_json()).await {
            // The other nodes find them without a holder within a tick.
            tracing::warn!(error.message = %e, "telling the other nodes failed");
        }
        let released_ms = started.elapsed().as_millis() as u64;
        self.until_held_elsewhere(cluster, &running).await;
        tracing::info!(
            sessions = running.len(),
            stopped_ms,
            released_ms,
            taken_ms = started.elapsed().as_millis() as u64,
            "sessions handed over"
        );
        running.len()
    }

    /// This node's media rooms go away with it (a single node handing over
    /// to a successor process): publishers and players are told to set
    /// WHIP/WHEP up again, which they do once the successor answers.
    pub fn media_going_away(&self) {
        for id in self.inner.local.running() {
            self.inner.bus.publish(id, frames::media_reconnect(id));
        }
    }

    /// Waits (at most [`HAND_OFF_WAIT`]) until other nodes hold `sessions`,
    /// and a moment more: their new owners' first frames (`media
    /// reconnect`, the resync) then reach this node's clients before any of
    /// them is told to go.
    async fn until_held_elsewhere(&self, cluster: &Cluster, sessions: &[Uuid]) {
        let deadline = tokio::time::Instant::now() + HAND_OFF_WAIT;
        loop {
            let held = cluster.owners_of(sessions).await.is_ok_and(|owners| {
                owners
                    .iter()
                    .all(|o| o.as_deref().is_some_and(|o| o != cluster.node_id()))
            });
            if held {
                tokio::time::sleep(HAND_OFF_SETTLE).await;
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    sessions = sessions.len(),
                    "not every session was taken over in time; telling clients anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends the actor threads and waits for them, at most `timeout` (after
    /// [`Self::stop_actors`] and after the database closed).
    pub async fn join_threads(&self, timeout: Duration) {
        self.inner.local.join_threads(timeout).await;
    }

    /// Re-creates dead actors even when nobody asks for them, and publishes
    /// presence.
    fn spawn_watchdog(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let Some(arbiter) = self.inner.local.first_arbiter() else {
            return;
        };
        arbiter.spawn(async move {
            let mut interval = tokio::time::interval(PRESENCE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let sessions = Sessions { inner };
                sessions.inner.local.revive();
                // In a cluster the owner publishes presence for every node.
                for id in sessions.inner.local.not_held() {
                    sessions.lost(id);
                }
                if sessions.inner.cluster.is_none() {
                    sessions.publish_presence();
                }
            }
        });
    }

    /// Tasks alive on the media runtime (every peer connection's work runs
    /// there), for tests and diagnostics.
    pub fn media_tasks(&self) -> usize {
        self.inner.local.media_tasks()
    }

    /// The node's media edge, if viewers play from it (tests and
    /// diagnostics: its port and tasks are the node's, not a room's).
    pub fn media_edge(&self) -> Option<crate::media::edge::Edge> {
        self.inner.local.media_edge()
    }

    /// Breaks one of a session's actors (tests only): `what` is `session`,
    /// `chat`, `timer` or `media`.
    #[cfg(feature = "test-hooks")]
    pub async fn inject_fault(&self, id: Uuid, what: &str, fault: crate::faults::Fault) -> bool {
        use crate::faults::InjectFault;
        let Some(actors) = self.inner.local.actors(id) else {
            return false;
        };
        // A panicking handler never answers; a stopping one may not either.
        let _ = match what {
            "chat" => actors.chat.send(InjectFault(fault)).await,
            "timer" => actors.timer.send(InjectFault(fault)).await,
            "media" => actors.media.send(InjectFault(fault)).await,
            _ => actors.session.send(InjectFault(fault)).await,
        };
        true
    }
}
