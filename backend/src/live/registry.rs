//! `SessionRegistry`: the node's map from session id to its actors, and the
//! second line of supervision.
//!
//! `actix::Supervisor` restarts an actor whose context stopped, but a panic in
//! a handler kills the actor's task outright (actix/actix#158): nothing is
//! restarted and its address goes dead. So the registry checks addresses on
//! every use and on a short watchdog interval, and re-creates a dead actor,
//! which then reloads its state from the database. Other sessions live on
//! other tasks and never notice.
//!
//! It also keeps presence (who is connected to which session), outside the
//! actors so that a crash does not forget who is watching, and publishes it
//! coalesced: at most one `presence` frame per session per
//! [`PRESENCE_INTERVAL`], and only when the count changed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle, System};
use mobile_bridge::protocol::{Author, ServerMsg};
use mobile_bridge::SessionId;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::actor::{CookingSession, Shutdown};
use super::bus::{Bus, BusEvent, Topic};
use super::chat::ChatLimits;
use super::chat_actor::{ChatChannel, StopChat};
use super::presence::SessionPresence;
use super::session::LiveSnapshot;
use super::timer_actor::{
    ControlTimer, GetTimer, GetWatchSnapshot, RecipeTimer, StopTimer, TimerError, WatchSnapshot,
};
use crate::media::engine::Sfu;
use crate::media::room::{MediaRoom, StopMedia};
use crate::metrics::Metrics;
use crate::store::sessions;

/// How long a caller waits for a session actor to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the watchdog looks for dead actors and publishes presence.
pub const PRESENCE_INTERVAL: Duration = Duration::from_millis(250);

/// Why a live session could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session is not live")]
    NotLive,
    #[error("session is temporarily unavailable")]
    Unavailable,
}

/// The actors of one live session.
#[derive(Debug, Clone)]
struct Entry {
    session: Addr<CookingSession>,
    chat: Addr<ChatChannel>,
    timer: Addr<RecipeTimer>,
    media: Addr<MediaRoom>,
    arbiter: usize,
}

impl Entry {
    /// Stops the actors for good.
    fn stop(&self) {
        self.session.do_send(Shutdown);
        self.chat.do_send(StopChat);
        self.timer.do_send(StopTimer);
        self.media.do_send(StopMedia);
    }

    /// Stops the actors for good; completes once each has handled its stop
    /// (the chat's once its accepted messages are written; the timer's and
    /// the session's writes hold their mailboxes, so theirs come after any
    /// write in flight). The addresses are dropped first: a supervisor
    /// restarts an actor that stops while someone holds its address, and a
    /// restarted actor would start reading the database again.
    fn stopped(self) -> impl std::future::Future<Output = ()> {
        let session = self.session.send(Shutdown);
        let chat = self.chat.send(StopChat);
        let timer = self.timer.send(StopTimer);
        let media = self.media.send(StopMedia);
        drop(self);
        async move {
            let _ = futures_util::join!(session, chat, timer, media);
        }
    }

    fn all_connected(&self) -> bool {
        self.session.connected()
            && self.chat.connected()
            && self.timer.connected()
            && self.media.connected()
    }
}

/// The node's live sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Mutex<HashMap<Uuid, Entry>>,
    presence: Mutex<HashMap<Uuid, SessionPresence>>,
    /// Session actors run on these threads, spread by session id, away from
    /// the HTTP workers.
    arbiters: Vec<ArbiterHandle>,
    /// The threads themselves, joined at shutdown.
    threads: Mutex<Vec<Arbiter>>,
    /// Set at shutdown: no session is started any more.
    closed: AtomicBool,
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    chat_limits: ChatLimits,
    sfu: Sfu,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it;
    // the maps are always consistent (single inserts and removes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SessionRegistry {
    /// Creates the registry and its actor threads. Needs a running actix
    /// `System`.
    pub fn new(
        db: DatabaseConnection,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        chat_limits: ChatLimits,
        sfu: Sfu,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            System::try_current().is_some(),
            "the session registry needs a running actix System"
        );
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let threads: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let registry = Self {
            inner: Arc::new(Inner {
                sessions: Mutex::new(HashMap::new()),
                presence: Mutex::new(HashMap::new()),
                arbiters: threads.iter().map(Arbiter::handle).collect(),
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                db,
                bus,
                metrics,
                chat_limits,
                sfu,
            }),
        };
        registry.spawn_watchdog();
        Ok(registry)
    }

    /// The bus that session events travel on.
    pub fn bus(&self) -> Arc<dyn Bus> {
        self.inner.bus.clone()
    }

    fn arbiter_for(&self, id: Uuid) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        usize::try_from(hasher.finish() % self.inner.arbiters.len() as u64).unwrap_or_default()
    }

    fn spawn_session(&self, id: Uuid, arbiter: usize) -> Addr<CookingSession> {
        let db = self.inner.db.clone();
        let metrics = self.inner.metrics.clone();
        let handle = &self.inner.arbiters[arbiter];
        Supervisor::start_in_arbiter(handle, move |_| CookingSession::new(id, db, metrics))
    }

    fn spawn_chat(&self, id: Uuid, arbiter: usize) -> Addr<ChatChannel> {
        let db = self.inner.db.clone();
        let bus = self.inner.bus.clone();
        let metrics = self.inner.metrics.clone();
        let limits = self.inner.chat_limits;
        let handle = &self.inner.arbiters[arbiter];
        Supervisor::start_in_arbiter(handle, move |_| {
            ChatChannel::new(id, db, bus, metrics, limits)
        })
    }

    fn spawn_timer(&self, id: Uuid, arbiter: usize) -> Addr<RecipeTimer> {
        let db = self.inner.db.clone();
        let bus = self.inner.bus.clone();
        let metrics = self.inner.metrics.clone();
        let handle = &self.inner.arbiters[arbiter];
        Supervisor::start_in_arbiter(handle, move |_| RecipeTimer::new(id, db, bus, metrics))
    }

    fn spawn_media(&self, id: Uuid, arbiter: usize) -> Addr<MediaRoom> {
        let sfu = self.inner.sfu.clone();
        let bus = self.inner.bus.clone();
        let metrics = self.inner.metrics.clone();
        let handle = &self.inner.arbiters[arbiter];
        Supervisor::start_in_arbiter(handle, move |_| MediaRoom::new(id, sfu, bus, metrics))
    }

    fn update_gauge(&self, map: &HashMap<Uuid, Entry>) {
        self.inner
            .metrics
            .live_sessions
            .set(i64::try_from(map.len()).unwrap_or(i64::MAX));
    }

    /// Re-creates the actors of every live session in the database (at
    /// start-up).
    pub async fn restore(&self) -> Result<usize, sea_orm::DbErr> {
        let ids = sessions::live_ids(&self.inner.db).await?;
        for id in &ids {
            self.activate(*id);
        }
        Ok(ids.len())
    }

    /// Starts the actors of a session that just went live.
    pub fn activate(&self, id: Uuid) {
        let mut map = lock(&self.inner.sessions);
        if map.contains_key(&id) || self.inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let arbiter = self.arbiter_for(id);
        let entry = Entry {
            session: self.spawn_session(id, arbiter),
            chat: self.spawn_chat(id, arbiter),
            timer: self.spawn_timer(id, arbiter),
            media: self.spawn_media(id, arbiter),
            arbiter,
        };
        map.insert(id, entry);
        self.update_gauge(&map);
    }

    /// Stops the actors of a session that ended, and tells its followers.
    pub fn deactivate(&self, id: Uuid) {
        let entry = {
            let mut map = lock(&self.inner.sessions);
            let entry = map.remove(&id);
            self.update_gauge(&map);
            entry
        };
        lock(&self.inner.presence).remove(&id);
        let frame = ServerMsg::SessionEnded {
            session_id: SessionId(id),
        }
        .encode();
        self.inner
            .bus
            .publish(id, BusEvent::new(frame, None).last());
        let bye = watch_sync::WatchFrame::Bye {
            server_time_ms: chrono::Utc::now().timestamp_millis(),
            reason: "session_ended".into(),
        }
        .encode();
        self.inner
            .bus
            .publish_to(Topic::Watches(id), BusEvent::new(bye, None).last());
        self.inner.bus.close(id);
        if let Some(entry) = entry {
            entry.stop();
        }
    }

    /// The host turned guest access off: connected guests are told and
    /// disconnected (their frames say why), members see nothing.
    pub fn guests_revoked(&self, id: Uuid) {
        let frame = ServerMsg::Error {
            code: mobile_bridge::ErrorCode::Forbidden,
            message: "the host turned guest access off for this session".into(),
        }
        .encode();
        self.inner.bus.publish(
            id,
            BusEvent::new(frame, None).of_kind(super::bus::EventKind::GuestsRevoked),
        );
        if let Some(entry) = self.entry(id) {
            entry.media.do_send(crate::media::room::EndGuests);
        }
    }

    /// The actors of a live session, re-created first if one died.
    fn entry(&self, id: Uuid) -> Option<Entry> {
        let mut map = lock(&self.inner.sessions);
        let entry = map.get_mut(&id)?;
        let metrics = &self.inner.metrics;
        if !entry.session.connected() {
            metrics.actor_restarted("panic", "session", id);
            entry.session = self.spawn_session(id, entry.arbiter);
        }
        if !entry.chat.connected() {
            metrics.actor_restarted("panic", "chat", id);
            entry.chat = self.spawn_chat(id, entry.arbiter);
        }
        if !entry.timer.connected() {
            metrics.actor_restarted("panic", "timer", id);
            entry.timer = self.spawn_timer(id, entry.arbiter);
        }
        if !entry.media.connected() {
            metrics.actor_restarted("panic", "media", id);
            entry.media = self.spawn_media(id, entry.arbiter);
            // Its peer connections died with it: players and the host
            // must set up their WHIP/WHEP sessions again.
            let frame = ServerMsg::Media {
                session_id: SessionId(id),
                state: mobile_bridge::protocol::MediaState::Reconnect,
            }
            .encode();
            self.inner.bus.publish(id, BusEvent::new(frame, None));
        }
        Some(entry.clone())
    }

    fn forget(&self, id: Uuid, addr: &Addr<CookingSession>) {
        let mut map = lock(&self.inner.sessions);
        if map.get(&id).is_some_and(|current| &current.session == addr) {
            map.remove(&id);
        }
        self.update_gauge(&map);
    }

    /// Whether this node runs the session.
    pub fn is_live(&self, id: Uuid) -> bool {
        lock(&self.inner.sessions).contains_key(&id)
    }

    /// The chat actor of a live session.
    pub fn chat(&self, id: Uuid) -> Result<Addr<ChatChannel>, SessionError> {
        self.entry(id).map(|e| e.chat).ok_or(SessionError::NotLive)
    }

    /// What a client sees of a live session now: its viewers and its timer.
    /// A dead timer actor is re-created and asked again, once.
    pub async fn snapshot(&self, id: Uuid) -> Result<LiveSnapshot, SessionError> {
        match self.ask_timer(id, GetTimer).await? {
            Ok(timer) => Ok(LiveSnapshot {
                viewer_count: self.viewer_count(id),
                timer,
            }),
            Err(SessionError::NotLive) => {
                if let Some(entry) = self.entry(id) {
                    self.forget(id, &entry.session);
                }
                Err(SessionError::NotLive)
            }
            Err(e) => Err(e),
        }
    }

    /// What a watch needs on connect (the timer and a pending alert).
    pub async fn watch_snapshot(&self, id: Uuid) -> Result<WatchSnapshot, SessionError> {
        self.ask_timer(id, GetWatchSnapshot).await?
    }

    /// Applies a host's timer action; answers once it is durable.
    pub async fn control_timer(
        &self,
        id: Uuid,
        action: watch_sync::TimerAction,
    ) -> Result<watch_sync::TimerView, TimerError> {
        // Refused before it reaches the actor (the machine checks again).
        action.check().map_err(TimerError::Refused)?;
        self.ask_timer(id, ControlTimer { action }).await?
    }

    /// Asks a live session's timer actor; a dead one is re-created and asked
    /// again, once.
    async fn ask_timer<M>(&self, id: Uuid, msg: M) -> Result<M::Result, SessionError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        RecipeTimer: Handler<M>,
    {
        for _ in 0..2 {
            let entry = self.entry(id).ok_or(SessionError::NotLive)?;
            match entry.timer.send(msg.clone()).timeout(ASK_TIMEOUT).await {
                Ok(result) => return Ok(result),
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => return Err(SessionError::Unavailable),
            }
        }
        Err(SessionError::Unavailable)
    }

    /// Distinct viewers (not the host) connected to a session now.
    pub fn viewer_count(&self, id: Uuid) -> u32 {
        lock(&self.inner.presence)
            .get(&id)
            .map(SessionPresence::viewer_count)
            .unwrap_or(0)
    }

    /// A connection joined a session.
    pub fn joined(&self, id: Uuid, connection: u64, who: Author) {
        let mut presence = lock(&self.inner.presence);
        presence.entry(id).or_default().add(connection, who);
    }

    /// A connection left a session (or closed).
    pub fn left(&self, id: Uuid, connection: u64) {
        let mut presence = lock(&self.inner.presence);
        if let Some(p) = presence.get_mut(&id) {
            p.remove(connection);
        }
    }

    /// Publishes a `presence` frame for every session whose count changed.
    fn publish_presence(&self) {
        let changed: Vec<_> = lock(&self.inner.presence)
            .iter_mut()
            .filter_map(|(id, p)| p.take_update().map(|update| (*id, update)))
            .collect();
        for (id, (viewer_count, joined, left)) in changed {
            let frame = ServerMsg::Presence {
                session_id: SessionId(id),
                viewer_count,
                joined,
                left,
            }
            .encode();
            self.inner.bus.publish(id, BusEvent::new(frame, None));
        }
    }

    /// How many sessions this node runs.
    pub fn live_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Stops every session actor and waits, at most `timeout`, until their
    /// durable writes are done (graceful shutdown; their state is durable).
    /// Their threads keep running until [`Self::join_threads`]: close the
    /// database in between, so that no query is still in flight on a thread
    /// that ends (a query dropped outside any runtime panics inside sqlx).
    pub async fn stop_actors(&self, timeout: Duration) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let entries: Vec<Entry> = {
            let mut map = lock(&self.inner.sessions);
            let entries = map.drain().map(|(_, entry)| entry).collect();
            self.update_gauge(&map);
            entries
        };
        let count = entries.len();
        let stopped = futures_util::future::join_all(entries.into_iter().map(Entry::stopped));
        if tokio::time::timeout(timeout, stopped).await.is_err() {
            tracing::warn!(
                sessions = count,
                timeout_s = timeout.as_secs(),
                "session actors did not stop in time"
            );
        }
        tracing::info!(sessions = count, "session actors stopped");
    }

    /// Ends the actor threads and waits for them, at most `timeout` (after
    /// [`Self::stop_actors`] and after the database closed).
    pub async fn join_threads(&self, timeout: Duration) {
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for thread in &threads {
            thread.stop();
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        if tokio::time::timeout(timeout, joined).await.is_err() {
            tracing::warn!("session actor threads did not end in time");
        }
    }

    /// Re-creates dead actors even when nobody asks for them, and publishes
    /// presence.
    fn spawn_watchdog(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let Some(arbiter) = self.inner.arbiters.first() else {
            return;
        };
        arbiter.spawn(async move {
            let mut interval = tokio::time::interval(PRESENCE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let registry = SessionRegistry { inner };
                let dead: Vec<Uuid> = lock(&registry.inner.sessions)
                    .iter()
                    .filter(|(_, e)| !e.all_connected())
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    // `entry` re-creates them (and counts the restarts).
                    drop(registry.entry(id));
                }
                registry.publish_presence();
            }
        });
    }

    /// Breaks a session's actor (tests only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_fault(&self, id: Uuid, fault: super::actor::Fault) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        // A panicking handler never answers; a stopping one may not either.
        let _ = entry.session.send(super::actor::InjectFault(fault)).await;
        true
    }

    /// Tasks alive on the media runtime (every peer connection's work runs
    /// there), for tests and diagnostics.
    pub fn media_tasks(&self) -> usize {
        self.inner.sfu.runtime().metrics().num_alive_tasks()
    }

    /// The media room of a live session.
    pub fn media(&self, id: Uuid) -> Result<Addr<MediaRoom>, SessionError> {
        self.entry(id).map(|e| e.media).ok_or(SessionError::NotLive)
    }

    /// Breaks a session's media room (tests only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_media_fault(&self, id: Uuid, fault: super::actor::Fault) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        let _ = entry.media.send(super::actor::InjectFault(fault)).await;
        true
    }

    /// Breaks a session's timer actor (tests only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_timer_fault(&self, id: Uuid, fault: super::actor::Fault) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        let _ = entry.timer.send(super::actor::InjectFault(fault)).await;
        true
    }

    /// Breaks a session's chat actor (tests only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_chat_fault(&self, id: Uuid, fault: super::actor::Fault) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        let _ = entry.chat.send(super::actor::InjectFault(fault)).await;
        true
    }
}
