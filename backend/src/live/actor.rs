//! `CookingSession`: the supervised actor of one live session's lifecycle. It
//! checks on (re)start that the session is still live; chat and the recipe
//! timer are its sibling actors under the registry, and the media room joins
//! it in a later issue.

use std::time::Duration;

use actix::prelude::*;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::store::sessions::{self, SessionState};

const LOAD_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LOAD_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the actor's state stands.
#[derive(Debug)]
enum Phase {
    /// Reading the session from the database (messages wait, or are refused
    /// while a retry is pending).
    Loading,
    /// Serving.
    Ready,
    /// The session is not live any more; the registry will let this actor go.
    Gone,
}

/// One live session's actor. Started under an `actix::Supervisor`: when its
/// context stops it is restarted and reloads its state from the database.
#[derive(Debug)]
pub struct CookingSession {
    id: Uuid,
    db: DatabaseConnection,
    metrics: Metrics,
    phase: Phase,
    failed_loads: u32,
    shutting_down: bool,
}

impl CookingSession {
    pub fn new(id: Uuid, db: DatabaseConnection, metrics: Metrics) -> Self {
        Self {
            id,
            db,
            metrics,
            phase: Phase::Loading,
            failed_loads: 0,
            shutting_down: false,
        }
    }

    /// Loads the session; mailbox processing waits until this is done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Loading;
        let db = self.db.clone();
        let id = self.id;
        let fut = async move {
            let Some(model) = sessions::find(&db, id).await? else {
                return Ok(None);
            };
            let (state, _) = sessions::decode(&model)?;
            Ok::<_, sea_orm::DbErr>((state == SessionState::Live).then_some(()))
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(Some(())) => {
                act.failed_loads = 0;
                act.phase = Phase::Ready;
                tracing::debug!(session_id = %act.id, "session actor ready");
            }
            Ok(None) => {
                act.phase = Phase::Gone;
                tracing::info!(session_id = %act.id, "session is no longer live");
            }
            Err(e) => {
                act.failed_loads = act.failed_loads.saturating_add(1);
                let backoff = LOAD_BACKOFF_MIN
                    .saturating_mul(2u32.saturating_pow(act.failed_loads.min(10)))
                    .min(LOAD_BACKOFF_MAX);
                tracing::warn!(
                    session_id = %act.id,
                    error.cause_chain = ?e,
                    error.message = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "loading session failed"
                );
                ctx.run_later(backoff, |act, ctx| act.load(ctx));
            }
        }));
    }
}

impl Actor for CookingSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Brought back after it was told to stop for good (a sender still
        // held its address): stay idle, no query that could outlive the
        // actor's thread.
        if !self.shutting_down {
            self.load(ctx);
        }
    }
}

impl Supervised for CookingSession {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.shutting_down {
            self.metrics.actor_restarted("stopped", "session", self.id);
        }
        self.phase = Phase::Loading;
    }
}

/// Tells the actor that its session ended: stop for good.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for CookingSession {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.shutting_down = true;
        ctx.stop();
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<crate::faults::InjectFault> for CookingSession {
    type Result = ();

    fn handle(&mut self, msg: crate::faults::InjectFault, ctx: &mut Context<Self>) {
        msg.0.apply("session", self.id, ctx);
    }
}
