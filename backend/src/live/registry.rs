//! `SessionRegistry`: the node's map from session id to its actor, and the
//! second line of supervision.
//!
//! `actix::Supervisor` restarts an actor whose context stopped, but a panic in
//! a handler kills the actor's task outright (actix/actix#158): nothing is
//! restarted and its address goes dead. So the registry checks the address on
//! every use and on a short watchdog interval, and re-creates a dead actor,
//! which then reloads its state from the database. Other sessions live on
//! other tasks and never notice.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, System};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::actor::{CookingSession, GetSnapshot, Shutdown};
use super::session::LiveSnapshot;
use crate::metrics::Metrics;
use crate::store::sessions;

/// How long a caller waits for a session actor to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the watchdog looks for dead session actors.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(250);

/// Why a live session could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session is not live")]
    NotLive,
    #[error("session is temporarily unavailable")]
    Unavailable,
}

/// The node's live sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Mutex<HashMap<Uuid, Addr<CookingSession>>>,
    /// Session actors run on these threads, spread by session id, away from
    /// the HTTP workers.
    arbiters: Vec<Arbiter>,
    db: DatabaseConnection,
    metrics: Metrics,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl SessionRegistry {
    /// Creates the registry and its actor threads. Needs a running actix
    /// `System`.
    pub fn new(db: DatabaseConnection, metrics: Metrics) -> anyhow::Result<Self> {
        anyhow::ensure!(
            System::try_current().is_some(),
            "the session registry needs a running actix System"
        );
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let registry = Self {
            inner: Arc::new(Inner {
                sessions: Mutex::new(HashMap::new()),
                arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
                db,
                metrics,
            }),
        };
        registry.spawn_watchdog();
        Ok(registry)
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<Uuid, Addr<CookingSession>>> {
        // A poisoned lock only means another thread panicked while holding it;
        // the map itself is always consistent (single inserts and removes).
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn_actor(&self, id: Uuid) -> Addr<CookingSession> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        let index =
            usize::try_from(hasher.finish() % self.inner.arbiters.len() as u64).unwrap_or_default();
        let db = self.inner.db.clone();
        let metrics = self.inner.metrics.clone();
        let handle = self.inner.arbiters[index].handle();
        Supervisor::start_in_arbiter(&handle, move |_| CookingSession::new(id, db, metrics))
    }

    fn update_gauge(&self, map: &HashMap<Uuid, Addr<CookingSession>>) {
        self.inner
            .metrics
            .live_sessions
            .set(i64::try_from(map.len()).unwrap_or(i64::MAX));
    }

    /// Re-creates the actor of every live session in the database (at start-up).
    pub async fn restore(&self) -> Result<usize, sea_orm::DbErr> {
        let ids = sessions::live_ids(&self.inner.db).await?;
        for id in &ids {
            self.activate(*id);
        }
        Ok(ids.len())
    }

    /// Starts the actor of a session that just went live.
    pub fn activate(&self, id: Uuid) {
        let mut map = self.sessions();
        if map.get(&id).is_some_and(|addr| addr.connected()) {
            return;
        }
        let addr = self.spawn_actor(id);
        map.insert(id, addr);
        self.update_gauge(&map);
    }

    /// Stops the actor of a session that ended.
    pub fn deactivate(&self, id: Uuid) {
        let mut map = self.sessions();
        if let Some(addr) = map.remove(&id) {
            addr.do_send(Shutdown);
        }
        self.update_gauge(&map);
    }

    /// The actor of a live session, re-created first if it died.
    fn addr(&self, id: Uuid) -> Option<Addr<CookingSession>> {
        let mut map = self.sessions();
        let addr = map.get(&id)?;
        if addr.connected() {
            return Some(addr.clone());
        }
        tracing::warn!(session_id = %id, "session actor died (panic); re-creating it");
        self.inner
            .metrics
            .session_actor_restarts
            .with_label_values(&["panic"])
            .inc();
        let addr = self.spawn_actor(id);
        map.insert(id, addr.clone());
        Some(addr)
    }

    fn forget(&self, id: Uuid, addr: &Addr<CookingSession>) {
        let mut map = self.sessions();
        if map.get(&id).is_some_and(|current| current == addr) {
            map.remove(&id);
        }
        self.update_gauge(&map);
    }

    /// Asks a live session's actor for its snapshot. A dead actor is
    /// re-created and asked again, once.
    pub async fn snapshot(&self, id: Uuid) -> Result<LiveSnapshot, SessionError> {
        for _ in 0..2 {
            let addr = self.addr(id).ok_or(SessionError::NotLive)?;
            match addr.send(GetSnapshot).timeout(ASK_TIMEOUT).await {
                Ok(Err(SessionError::NotLive)) => {
                    self.forget(id, &addr);
                    return Err(SessionError::NotLive);
                }
                Ok(answer) => return answer,
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => return Err(SessionError::Unavailable),
            }
        }
        Err(SessionError::Unavailable)
    }

    /// How many sessions this node runs.
    pub fn live_count(&self) -> usize {
        self.sessions().len()
    }

    /// Stops every session actor (graceful shutdown; their state is durable).
    pub fn shutdown(&self) {
        let mut map = self.sessions();
        for (_, addr) in map.drain() {
            addr.do_send(Shutdown);
        }
        self.update_gauge(&map);
    }

    /// Re-creates dead actors even when nobody asks for them, so that a
    /// session's own timers keep running after a panic.
    fn spawn_watchdog(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let Some(arbiter) = self.inner.arbiters.first() else {
            return;
        };
        arbiter.spawn(async move {
            let mut interval = tokio::time::interval(WATCHDOG_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let registry = SessionRegistry { inner };
                let dead: Vec<Uuid> = registry
                    .sessions()
                    .iter()
                    .filter(|(_, addr)| !addr.connected())
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    // `addr` re-creates it (and counts the restart).
                    drop(registry.addr(id));
                }
            }
        });
    }

    /// Breaks a session's actor (tests only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_fault(&self, id: Uuid, fault: super::actor::Fault) -> bool {
        let Some(addr) = self.addr(id) else {
            return false;
        };
        // A panicking handler never answers; a stopping one may not either.
        let _ = addr.send(super::actor::InjectFault(fault)).await;
        true
    }
}
