//! The node's local session actors and their second line of supervision.
//!
//! `actix::Supervisor` restarts an actor whose context stopped, but a panic in
//! a handler kills the actor's task outright (actix/actix#158): nothing is
//! restarted and its address goes dead. So the supervisor checks addresses on
//! every use and on a short watchdog interval ([`LocalSessions::revive`]), and
//! re-creates a dead actor, which then reloads its state from the database.
//! Other sessions live on other tasks and never notice.
//!
//! Addresses never leave `live/`: callers go through
//! [`super::Sessions`], which sends them [`super::Call`]s.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle, System};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::actor::{CookingSession, Shutdown};
use super::chat::ChatLimits;
use super::chat_actor::{ChatChannel, StopChat};
use super::chat_writer::ChatWriter;
use super::frames;
use super::ownership::Ownership;
use super::timer_actor::{RecipeTimer, StopTimer};
use crate::bus::Bus;
use crate::media::engine::Sfu;
use crate::media::room::{MediaRoom, StopMedia};
use crate::metrics::Metrics;

/// The actors of one live session.
#[derive(Debug, Clone)]
pub struct Actors {
    pub(super) session: Addr<CookingSession>,
    pub(super) chat: Addr<ChatChannel>,
    pub(super) timer: Addr<RecipeTimer>,
    pub(super) media: Addr<MediaRoom>,
    /// This node's hold on the session, shared by its actors.
    pub(super) ownership: Ownership,
    arbiter: usize,
}

impl Actors {
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

/// What the actors of a session are made with.
#[derive(Debug, Clone)]
pub(super) struct ActorDeps {
    pub(super) db: DatabaseConnection,
    /// The chat channels' writes, grouped across sessions on SQLite.
    pub(super) chat_writer: ChatWriter,
    pub(super) bus: Arc<dyn Bus>,
    pub(super) metrics: Metrics,
    pub(super) chat_limits: ChatLimits,
    pub(super) sfu: Sfu,
}

/// The sessions whose actors run on this node. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct LocalSessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Mutex<HashMap<Uuid, Actors>>,
    /// Session actors run on these threads, spread by session id, away from
    /// the HTTP workers.
    arbiters: Vec<ArbiterHandle>,
    /// The threads themselves, joined at shutdown.
    threads: Mutex<Vec<Arbiter>>,
    /// Set at shutdown: no session is started any more.
    closed: AtomicBool,
    deps: ActorDeps,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it;
    // the maps are always consistent (single inserts and removes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalSessions {
    /// Creates the actor threads. Needs a running actix `System`.
    pub(super) fn new(deps: ActorDeps) -> anyhow::Result<Self> {
        anyhow::ensure!(
            System::try_current().is_some(),
            "the session supervisor needs a running actix System"
        );
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let threads: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                sessions: Mutex::new(HashMap::new()),
                arbiters: threads.iter().map(Arbiter::handle).collect(),
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                deps,
            }),
        })
    }

    /// A thread for work that is not a session's (the watchdog).
    pub(super) fn first_arbiter(&self) -> Option<ArbiterHandle> {
        self.inner.arbiters.first().cloned()
    }

    fn arbiter_for(&self, id: Uuid) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        usize::try_from(hasher.finish() % self.inner.arbiters.len() as u64).unwrap_or_default()
    }

    fn spawn_session(&self, id: Uuid, arbiter: usize) -> Addr<CookingSession> {
        let d = self.inner.deps.clone();
        let handle = &self.inner.arbiters[arbiter];
        start_actor(handle, move || CookingSession::new(id, d.db, d.metrics))
    }

    fn spawn_chat(&self, id: Uuid, arbiter: usize, hold: &Ownership) -> Addr<ChatChannel> {
        let d = self.inner.deps.clone();
        let hold = hold.clone();
        let handle = &self.inner.arbiters[arbiter];
        start_actor(handle, move || {
            ChatChannel::new(
                id,
                d.db,
                d.chat_writer,
                d.bus,
                d.metrics,
                d.chat_limits,
                hold,
            )
        })
    }

    fn spawn_timer(&self, id: Uuid, arbiter: usize, hold: &Ownership) -> Addr<RecipeTimer> {
        let d = self.inner.deps.clone();
        let hold = hold.clone();
        let handle = &self.inner.arbiters[arbiter];
        start_actor(handle, move || {
            RecipeTimer::new(id, d.db, d.bus, d.metrics, hold)
        })
    }

    fn spawn_media(&self, id: Uuid, arbiter: usize) -> Addr<MediaRoom> {
        let d = self.inner.deps.clone();
        let handle = &self.inner.arbiters[arbiter];
        start_actor(handle, move || MediaRoom::new(id, d.sfu, d.bus, d.metrics))
    }

    fn update_gauge(&self, map: &HashMap<Uuid, Actors>) {
        self.inner
            .deps
            .metrics
            .live_sessions
            .set(i64::try_from(map.len()).unwrap_or(i64::MAX));
    }

    /// Starts the actors of a session (it went live, or this node took it
    /// over) under `ownership`. Returns whether they were started now.
    pub(super) fn start(&self, id: Uuid, ownership: Ownership) -> bool {
        let mut map = lock(&self.inner.sessions);
        if map.contains_key(&id) || self.inner.closed.load(Ordering::SeqCst) {
            return false;
        }
        let arbiter = self.arbiter_for(id);
        let actors = Actors {
            session: self.spawn_session(id, arbiter),
            chat: self.spawn_chat(id, arbiter, &ownership),
            timer: self.spawn_timer(id, arbiter, &ownership),
            media: self.spawn_media(id, arbiter),
            ownership,
            arbiter,
        };
        map.insert(id, actors);
        self.update_gauge(&map);
        true
    }

    /// Stops a session's actors for good (it ended); returns whether it ran
    /// here.
    pub(super) fn stop(&self, id: Uuid) -> bool {
        let actors = {
            let mut map = lock(&self.inner.sessions);
            let actors = map.remove(&id);
            self.update_gauge(&map);
            actors
        };
        actors.map(|a| a.stop()).is_some()
    }

    /// The actors of a session running here, re-created first if one died.
    pub(super) fn actors(&self, id: Uuid) -> Option<Actors> {
        let mut map = lock(&self.inner.sessions);
        let actors = map.get_mut(&id)?;
        let metrics = &self.inner.deps.metrics;
        if !actors.session.connected() {
            metrics.actor_restarted("panic", "session", id);
            actors.session = self.spawn_session(id, actors.arbiter);
        }
        if !actors.chat.connected() {
            metrics.actor_restarted("panic", "chat", id);
            actors.chat = self.spawn_chat(id, actors.arbiter, &actors.ownership);
        }
        if !actors.timer.connected() {
            metrics.actor_restarted("panic", "timer", id);
            actors.timer = self.spawn_timer(id, actors.arbiter, &actors.ownership);
        }
        if !actors.media.connected() {
            metrics.actor_restarted("panic", "media", id);
            actors.media = self.spawn_media(id, actors.arbiter);
            // Its peer connections died with it: players and the host
            // must set up their WHIP/WHEP sessions again.
            self.inner.deps.bus.publish(id, frames::media_reconnect(id));
        }
        Some(actors.clone())
    }

    /// Forgets a session whose actors found it not live any more (ended
    /// elsewhere), if these are still its actors.
    pub(super) fn forget(&self, id: Uuid, session: &Addr<CookingSession>) {
        let mut map = lock(&self.inner.sessions);
        if map
            .get(&id)
            .is_some_and(|current| &current.session == session)
        {
            map.remove(&id);
        }
        self.update_gauge(&map);
    }

    /// Whether this node runs the session.
    pub(super) fn runs(&self, id: Uuid) -> bool {
        lock(&self.inner.sessions).contains_key(&id)
    }

    /// The sessions running here.
    pub(super) fn running(&self) -> Vec<Uuid> {
        lock(&self.inner.sessions).keys().copied().collect()
    }

    /// This node's hold on a session running here.
    pub(super) fn ownership(&self, id: Uuid) -> Option<Ownership> {
        lock(&self.inner.sessions)
            .get(&id)
            .map(|a| a.ownership.clone())
    }

    /// Whether new sessions are refused (the node stops).
    pub(super) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The sessions running here whose hold lapsed or was lost.
    pub(super) fn not_held(&self) -> Vec<Uuid> {
        lock(&self.inner.sessions)
            .iter()
            .filter(|(_, a)| !a.ownership.held())
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many sessions run here.
    pub(super) fn count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Re-creates dead actors even when nobody asks for them (the watchdog).
    pub(super) fn revive(&self) {
        let dead: Vec<Uuid> = lock(&self.inner.sessions)
            .iter()
            .filter(|(_, a)| !a.all_connected())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            // `actors` re-creates them (and counts the restarts).
            drop(self.actors(id));
        }
    }

    /// Refuses new sessions from now on (the node stops).
    pub(super) fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    /// Stops every session actor and waits, at most `timeout`, until their
    /// durable writes are done.
    pub(super) async fn stop_all(&self, timeout: Duration) {
        self.close();
        let all: Vec<Actors> = {
            let mut map = lock(&self.inner.sessions);
            let all = map.drain().map(|(_, actors)| actors).collect();
            self.update_gauge(&map);
            all
        };
        let count = all.len();
        let stopped = futures_util::future::join_all(all.into_iter().map(Actors::stopped));
        if tokio::time::timeout(timeout, stopped).await.is_err() {
            tracing::warn!(
                sessions = count,
                timeout_s = timeout.as_secs(),
                "session actors did not stop in time"
            );
        }
        tracing::info!(sessions = count, "session actors stopped");
    }

    /// Ends the actor threads and waits for them, at most `timeout`.
    pub(super) async fn join_threads(&self, timeout: Duration) {
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

    /// Tasks alive on the media runtime.
    pub(super) fn media_tasks(&self) -> usize {
        self.inner.deps.sfu.runtime().metrics().num_alive_tasks()
    }

    /// The node's media edge, if viewers play from it.
    pub(super) fn media_edge(&self) -> Option<crate::media::edge::Edge> {
        self.inner.deps.sfu.edge().cloned()
    }
}

/// Starts an actor under `actix::Supervisor` on a session thread.
fn start_actor<A, F>(handle: &ArbiterHandle, make: F) -> Addr<A>
where
    A: Actor<Context = Context<A>> + actix::Supervised,
    F: FnOnce() -> A + Send + 'static,
{
    actix::Supervisor::start_in_arbiter(handle, move |_| make())
}
