//! Where live sessions run in a cluster: every node renews the leases of the
//! sessions it runs, takes the sessions nobody holds (the node that rendezvous
//! hashing prefers first, any node a little later), answers the commands
//! other nodes forward to it, and forwards its own callers' commands to the
//! node that runs the session.
//!
//! Timing, for a lease TTL `T`: a tick every `T/10` (at most 500 ms); leases
//! renewed every `T/3`; a hold counts as valid until 90% of `T` after the
//! renewal was sent, so a node that cannot renew stops the session's actors
//! before its lease can lapse in Redis and another node take it. A dead
//! node's sessions are taken within `T` plus a tick or two.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::super::calls::{Call, Command};
use super::super::frames;
use super::super::ownership::Ownership;
use super::{SessionError, Sessions};
use crate::bus::Pressure;
use crate::cluster::{preferred_node, Cluster, Incoming, Renewal};
use crate::store::sessions as store;

/// Extra wait for a forwarded command, over its own patience: two hops.
const FORWARD_MARGIN: Duration = Duration::from_millis(500);
/// How often the live set is brought up to date from the database.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

/// A message for every node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::live) enum Control {
    /// The session ended: its owner stops its actors.
    Ended(Uuid),
    /// A draining node let these sessions go: the node that rendezvous
    /// hashing prefers among the others takes each at once.
    Released { from: String, sessions: Vec<Uuid> },
    /// A watch was revoked or re-targeted: its feeds, wherever they are,
    /// hear it.
    Device {
        device: Uuid,
        control: crate::watch::DeviceControl,
    },
}

impl Control {
    pub(in crate::live) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// This node is taking a session: at most one claim per session at a time.
struct Claiming<'a> {
    set: &'a std::sync::Mutex<HashSet<Uuid>>,
    id: Uuid,
}

impl<'a> Claiming<'a> {
    fn begin(set: &'a std::sync::Mutex<HashSet<Uuid>>, id: Uuid) -> Option<Self> {
        let fresh = super::super::supervisor::lock(set).insert(id);
        fresh.then_some(Self { set, id })
    }
}

impl Drop for Claiming<'_> {
    fn drop(&mut self) {
        super::super::supervisor::lock(self.set).remove(&self.id);
    }
}

/// A command on its way to the node that runs the session.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    session: Uuid,
    command: Command,
    /// Nodes it went through before this one: a node that no longer runs
    /// the session (it was just handed over) passes it on once.
    #[serde(default)]
    hops: u8,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Until when a hold renewed (or taken) at `sent_ms` counts as valid.
fn valid_until(sent_ms: i64, ttl: Duration) -> i64 {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    sent_ms.saturating_add(ttl_ms / 10 * 9)
}

impl Sessions {
    /// Starts the placement loop and the server of forwarded commands.
    pub(super) fn spawn_placement(&self, cluster: Cluster, incoming: mpsc::Receiver<Incoming>) {
        tokio::spawn(self.clone().serve(cluster.clone(), incoming));
        tokio::spawn(self.clone().share_presence(cluster.clone()));
        tokio::spawn(self.clone().place(cluster));
    }

    /// The placement loop: heartbeat, renew, take what nobody holds.
    async fn place(self, cluster: Cluster) {
        let ttl = cluster.lease_ttl();
        let tick = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let renew_every = (ttl / 3).max(tick);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renewal = tokio::time::Instant::now();
        let mut last_reconcile: Option<tokio::time::Instant> = None;
        let mut redis_was_down = false;
        // Sessions seen without a holder, since which tick.
        let mut orphans: HashMap<Uuid, u64> = HashMap::new();
        let mut ticks: u64 = 0;
        tracing::info!(
            node = cluster.node_id(),
            lease_ttl_ms = ttl.as_millis() as u64,
            "cluster node up"
        );
        loop {
            interval.tick().await;
            ticks += 1;
            let _turn = self.inner.placement_turn.lock().await;
            if self.inner.local.is_closed() {
                return;
            }
            let running = self.inner.local.running();
            let metrics = &self.inner.metrics.cluster;
            metrics
                .leases_held
                .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
            if cluster.heartbeat().await.is_err() {
                redis_was_down = true;
                continue; // Redis trouble: holds lapse by themselves.
            }
            if redis_was_down {
                // Redis is back, perhaps empty (restarted): list the live
                // sessions again now, not at the next reconcile.
                redis_was_down = false;
                last_reconcile = None;
                let now = tokio::time::Instant::now();
                last_renewal = now.checked_sub(renew_every).unwrap_or(now);
            }
            if last_renewal.elapsed() >= renew_every {
                last_renewal = tokio::time::Instant::now();
                self.renew(&cluster, &running).await;
            }
            if last_reconcile.is_none_or(|at| at.elapsed() >= RECONCILE_EVERY) {
                last_reconcile = Some(tokio::time::Instant::now());
                if let Ok(ids) = store::live_ids(&self.inner.db).await {
                    let _ = cluster.add_live(&ids).await;
                }
            }
            self.claim_orphans(&cluster, &mut orphans, ticks).await;
        }
    }

    /// Presence across nodes: writes who is connected here and how this
    /// node's fan-out keeps up, and for the sessions this node runs, merges
    /// every node's members and publishes the `presence` frame (when the
    /// count or the names changed), and weighs the other nodes' fan-out in
    /// the chat's admission.
    async fn share_presence(self, cluster: Cluster) {
        let mut interval = tokio::time::interval(super::PRESENCE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let refresh_every = cluster.lease_ttl() / 3;
        let mut last_refresh = tokio::time::Instant::now();
        // The fan-out pressure this node last wrote, per session followed.
        let mut told: HashMap<Uuid, Pressure> = HashMap::new();
        loop {
            interval.tick().await;
            if self.inner.local.is_closed() {
                return;
            }
            let presence = &self.inner.presence;
            for (id, members) in presence.changed_members() {
                let pairs: Vec<(String, String)> = members
                    .iter()
                    .filter_map(|a| Some((a.id.0.to_string(), serde_json::to_string(a).ok()?)))
                    .collect();
                let fanout = self.inner.bus.pressure(id);
                if cluster.write_members(id, &pairs, fanout).await.is_ok() {
                    told.insert(id, fanout);
                } else {
                    presence.mark_changed(id);
                }
            }
            let followed = presence.followed();
            let here: HashSet<Uuid> = followed.iter().copied().collect();
            told.retain(|id, _| here.contains(id));
            for id in &followed {
                let fanout = self.inner.bus.pressure(*id);
                if told.get(id) != Some(&fanout) && cluster.write_fanout(*id, fanout).await.is_ok()
                {
                    told.insert(*id, fanout);
                }
            }
            let refresh = last_refresh.elapsed() >= refresh_every;
            if refresh {
                last_refresh = tokio::time::Instant::now();
                let _ = cluster.refresh_members(&followed).await;
            }
            let running = self.inner.local.running();
            presence.keep_merged(&running);
            let mut elsewhere = HashMap::new();
            for id in running {
                let Ok(merged) = cluster.merged_members(id).await else {
                    continue;
                };
                if merged.elsewhere != Pressure::default() {
                    elsewhere.insert(id, merged.elsewhere);
                }
                let members = merged
                    .members
                    .iter()
                    .filter_map(|(_, json)| serde_json::from_str(json).ok())
                    .collect();
                if let Some((count, joined, left)) = presence.merge(id, members) {
                    self.inner
                        .bus
                        .publish(id, frames::presence(id, count, joined, left));
                    let _ = cluster.set_viewer_count(id, count).await;
                } else if let (true, Some(count)) = (refresh, presence.merged_count(id)) {
                    let _ = cluster.set_viewer_count(id, count).await;
                }
            }
            self.inner.bus.weigh_elsewhere(elsewhere);
        }
    }

    /// Renews this node's leases; a lost one stops its actors, an ended one
    /// too.
    async fn renew(&self, cluster: &Cluster, running: &[Uuid]) {
        let sent = now_ms();
        let Ok(renewals) = cluster.renew(running).await else {
            return;
        };
        for (id, renewal) in running.iter().zip(renewals) {
            match renewal {
                Renewal::Renewed => {
                    if let Some(hold) = self.inner.local.ownership(*id) {
                        hold.renewed(valid_until(sent, cluster.lease_ttl()));
                    }
                }
                Renewal::Lost => {
                    if let Some(hold) = self.inner.local.ownership(*id) {
                        hold.lose();
                    }
                }
                Renewal::NotListed => self.relist(cluster, *id, sent).await,
            }
        }
    }

    /// A session this node runs is missing from the live set: it ended
    /// (stop it here), or Redis lost its keys (list it again and go on).
    async fn relist(&self, cluster: &Cluster, id: Uuid, sent: i64) {
        match store::find(&self.inner.db, id).await {
            Ok(Some(model)) if model.state == store::SessionState::Live.as_str() => {
                if cluster.add_live(&[id]).await.is_ok() {
                    if let Some(hold) = self.inner.local.ownership(id) {
                        hold.renewed(valid_until(sent, cluster.lease_ttl()));
                    }
                }
            }
            Ok(_) => {
                self.end_here(id);
                let _ = cluster.release(id).await;
            }
            // The hold lapses unless a later renewal settles it.
            Err(_) => {}
        }
    }

    /// Takes the live sessions nobody holds: at once where this node is the
    /// preferred one, after two ticks otherwise (the preferred node may be
    /// slow or gone).
    async fn claim_orphans(&self, cluster: &Cluster, orphans: &mut HashMap<Uuid, u64>, tick: u64) {
        let Ok(live) = cluster.live().await else {
            return;
        };
        let candidates: Vec<Uuid> = live
            .into_iter()
            .filter(|id| !self.inner.local.runs(*id))
            .collect();
        let Ok(owners) = cluster.owners_of(&candidates).await else {
            return;
        };
        let wanted: HashSet<&Uuid> = candidates.iter().collect();
        orphans.retain(|id, _| wanted.contains(id));
        let orphaned: Vec<Uuid> = candidates
            .iter()
            .zip(owners)
            .filter(|(_, owner)| owner.is_none())
            .map(|(id, _)| *id)
            .collect();
        if orphaned.is_empty() {
            orphans.clear();
            return;
        }
        let Ok(nodes) = cluster.alive_nodes().await else {
            return;
        };
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.node_id).collect();
        for id in orphaned {
            let since = *orphans.entry(id).or_insert(tick);
            let preferred = preferred_node(id, &nodes) == Some(cluster.node_id());
            if (preferred || tick >= since + 2) && self.claim(cluster, id).await {
                self.taken_over(cluster, id, "orphaned");
                orphans.remove(&id);
            }
        }
    }

    /// Takes the sessions a draining node let go that this node is the
    /// preferred one for (among the nodes that remain).
    async fn take_released(self, cluster: Cluster, from: String, sessions: Vec<Uuid>) {
        if from == cluster.node_id() {
            return;
        }
        let Ok(nodes) = cluster.alive_nodes().await else {
            return;
        };
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|n| n.node_id)
            .filter(|n| *n != from)
            .collect();
        for id in sessions {
            if preferred_node(id, &nodes) == Some(cluster.node_id())
                && self.claim(&cluster, id).await
            {
                self.taken_over(&cluster, id, "handed_over");
            }
        }
    }

    /// A session this node took from another (counted by `reason`, one of
    /// `cluster_takeovers_total`'s): its media room is new, so publishers
    /// and players set up WHIP/WHEP again (here or at any node).
    fn taken_over(&self, cluster: &Cluster, id: Uuid, reason: &'static str) {
        cluster
            .metrics()
            .cluster
            .takeovers
            .with_label_values(&[reason])
            .inc();
        self.inner.bus.publish(id, frames::media_reconnect(id));
    }

    /// Takes a session's lease if it is free, raises its fencing token and
    /// starts its actors here. Returns whether this node runs it now.
    pub(super) async fn claim(&self, cluster: &Cluster, id: Uuid) -> bool {
        if self.inner.local.is_closed() {
            return false;
        }
        let Some(_claiming) = Claiming::begin(&self.inner.claiming, id) else {
            return false; // already being taken here
        };
        if self.inner.local.runs(id) {
            return false; // taken here a moment ago
        }
        let sent = now_ms();
        match cluster.acquire(id).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return false,
        }
        let fence = match store::take_over(&self.inner.db, id).await {
            Ok(Some(fence)) => fence,
            Ok(None) => {
                // Ended meanwhile: nobody should take it.
                let _ = cluster.remove_live(id).await;
                let _ = cluster.release(id).await;
                return false;
            }
            Err(e) => {
                tracing::warn!(session_id = %id, error.message = %e, "taking a session over failed");
                let _ = cluster.release(id).await;
                return false;
            }
        };
        let hold = Ownership::until(fence, valid_until(sent, cluster.lease_ttl()));
        if !self.inner.local.start(id, hold) {
            let _ = cluster.release(id).await;
            return false;
        }
        tracing::info!(session_id = %id, fence, node = cluster.node_id(), "session taken");
        // Its last owner's last events may not have reached everyone.
        self.inner.bus.publish(id, crate::bus::BusEvent::resync());
        self.inner.bus.publish_to(
            crate::bus::Topic::Watches(id),
            crate::bus::BusEvent::resync(),
        );
        true
    }

    /// Sends a command to the node that runs the session, and its answer back.
    pub(super) async fn forward<C: Call>(
        &self,
        cluster: &Cluster,
        id: Uuid,
        call: C,
    ) -> Result<C::Output, SessionError> {
        let answer = self
            .forward_command(cluster, id, call.into_command(), 0)
            .await?;
        serde_json::from_value(answer).map_err(|_| SessionError::Unavailable)
    }

    /// Sends a command on to the node that holds the session's lease now;
    /// its answer as JSON.
    async fn forward_command(
        &self,
        cluster: &Cluster,
        id: Uuid,
        command: Command,
        hops: u8,
    ) -> Result<serde_json::Value, SessionError> {
        let owner = cluster
            .owner_of(id)
            .await
            .map_err(|_| SessionError::Unavailable)?;
        let Some(owner) = owner else {
            // Nobody holds it: a take-over is under way (Redis may even have
            // restarted empty), or it is over. The database knows which.
            return match store::find(&self.inner.db, id).await {
                Ok(Some(model)) if model.state != store::SessionState::Live.as_str() => {
                    Err(SessionError::NotLive)
                }
                Ok(None) => Err(SessionError::NotLive),
                _ => Err(SessionError::Unavailable),
            };
        };
        if owner == cluster.node_id() {
            // Taken here a moment ago; its actors are starting.
            return Err(SessionError::Unavailable);
        }
        let patience = command.patience().limit() + FORWARD_MARGIN;
        let forwarded = Forwarded {
            session: id,
            command,
            hops,
        };
        let body = serde_json::to_value(&forwarded).map_err(|_| SessionError::Unavailable)?;
        let reply = cluster
            .request_owner(&owner, id, body, patience)
            .await
            .map_err(|_| SessionError::Unavailable)?;
        let answer: Result<serde_json::Value, SessionError> =
            serde_json::from_value(reply).map_err(|_| SessionError::Unavailable)?;
        answer
    }

    /// Answers other nodes' commands, and control messages.
    async fn serve(self, cluster: Cluster, mut incoming: mpsc::Receiver<Incoming>) {
        while let Some(message) = incoming.recv().await {
            match message {
                Incoming::Request { id, from, body } => {
                    let sessions = self.clone();
                    let cluster = cluster.clone();
                    tokio::spawn(async move {
                        let answer = match serde_json::from_value::<Forwarded>(body) {
                            // Handed over since the caller looked: on to
                            // the new owner, once.
                            Ok(f) if f.hops == 0 && !sessions.inner.local.runs(f.session) => {
                                sessions
                                    .forward_command(&cluster, f.session, f.command, 1)
                                    .await
                            }
                            Ok(f) => f.command.run_here(&sessions, f.session).await,
                            Err(_) => Err(SessionError::Unavailable),
                        };
                        let body = serde_json::to_value(answer).unwrap_or_default();
                        cluster.reply(&from, id, body).await;
                    });
                }
                Incoming::Control(value) => match serde_json::from_value::<Control>(value) {
                    Ok(Control::Ended(id)) => {
                        if self.inner.local.runs(id) {
                            self.end_here(id);
                            let _ = cluster.release(id).await;
                        }
                    }
                    Ok(Control::Released { from, sessions }) => {
                        tokio::spawn(self.clone().take_released(cluster.clone(), from, sessions));
                    }
                    Ok(Control::Device { device, control }) => {
                        self.inner.watch_hub.tell(device, control);
                    }
                    Err(e) => tracing::debug!(error.message = %e, "unknown control message"),
                },
            }
        }
    }
}
