//! `RecipeTimer`: the supervised actor of one session's recipe timer. A thin
//! shell around [`TimerMachine`]: it applies host actions, writes the timer's
//! record before it answers or announces anything, sleeps until the next
//! deadline (never ticking a counter), and publishes `timer` events on the
//! bus. After a crash or a restart it reloads the record and catches up with
//! the time that passed, so the deadline is the same one.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mobile_bridge::protocol::ServerMsg;
use mobile_bridge::SessionId;
use sea_orm::DatabaseConnection;
use uuid::Uuid;
use watch_sync::{
    next_tick, TimerAction, TimerEvent, TimerMachine, TimerRefusal, TimerView, WatchFrame,
    WatchTimer,
};

use serde::{Deserialize, Serialize};

use super::ownership::Ownership;
use super::session::timer_steps;
use super::sessions::SessionError;
use crate::bus::{Bus, BusEvent, EventKind, Topic};
use crate::metrics::Metrics;
use crate::store::sessions::{self, Fenced, SessionState};

/// How long to wait before retrying a failed load or write.
const RETRY: Duration = Duration::from_millis(500);

/// Why a timer action was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TimerError {
    /// The action does not apply to the timer as it is.
    #[error("{0}")]
    Refused(TimerRefusal),
    #[error(transparent)]
    Session(#[from] SessionError),
}

#[derive(Debug)]
enum Phase {
    Loading,
    Ready(TimerMachine),
    /// The session is not live any more.
    Gone,
    /// Another node took the session over: this actor answers nothing more.
    Superseded,
}

/// One session's timer actor.
#[derive(Debug)]
pub struct RecipeTimer {
    session_id: Uuid,
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    /// This node's hold on the session: every write carries its fencing
    /// token, and ticks go out only while it holds.
    ownership: Ownership,
    phase: Phase,
    /// The pending wake-up at the next deadline.
    wake: Option<SpawnHandle>,
    /// The pending tick for the watches.
    tick: Option<SpawnHandle>,
    shutting_down: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RecipeTimer {
    pub fn new(
        session_id: Uuid,
        db: DatabaseConnection,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        ownership: Ownership,
    ) -> Self {
        Self {
            session_id,
            db,
            bus,
            metrics,
            ownership,
            phase: Phase::Loading,
            wake: None,
            tick: None,
            shutting_down: false,
        }
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Loading;
        let db = self.db.clone();
        let id = self.session_id;
        let fut = async move {
            let Some(model) = sessions::find(&db, id).await? else {
                return Ok(None);
            };
            let (state, recipe) = sessions::decode(&model)?;
            if state != SessionState::Live {
                return Ok(None);
            }
            let steps = timer_steps(&recipe);
            let machine = match sessions::timer_record(&model) {
                Some(record) => TimerMachine::restore(steps, model.auto_advance, record),
                None => TimerMachine::new(steps, model.auto_advance),
            };
            Ok::<_, sea_orm::DbErr>(Some(machine))
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(Some(machine)) => {
                act.phase = Phase::Ready(machine);
                // Catch up with whatever came due while nobody was running it.
                act.on_wake(ctx);
                act.schedule_tick(ctx);
            }
            Ok(None) => act.phase = Phase::Gone,
            Err(e) => {
                tracing::warn!(session_id = %act.session_id, error.message = %e, "loading timer failed; retrying");
                ctx.run_later(RETRY, |act, ctx| act.load(ctx));
            }
        }));
    }

    /// Another node took the session over: no write, tick or alert from
    /// here any more.
    fn superseded(&mut self) {
        tracing::warn!(session_id = %self.session_id, fence = self.ownership.fence(), "timer write refused: the session was taken over");
        self.ownership.lose();
        self.phase = Phase::Superseded;
    }

    fn ready(&self) -> Result<&TimerMachine, SessionError> {
        match &self.phase {
            Phase::Ready(machine) => Ok(machine),
            Phase::Loading => Err(SessionError::Unavailable),
            Phase::Gone => Err(SessionError::NotLive),
            Phase::Superseded => Err(SessionError::Unavailable),
        }
    }

    /// Takes a changed timer whose record is durable: announces it and sleeps
    /// until its next deadline.
    fn commit(
        &mut self,
        machine: TimerMachine,
        events: Vec<TimerEvent>,
        now: i64,
        ctx: &mut Context<Self>,
    ) {
        let view = machine.view(now);
        self.phase = Phase::Ready(machine);
        let watches = Topic::Watches(self.session_id);
        for event in &events {
            if let TimerEvent::Alert {
                step_index,
                due_ms,
                alert_seq,
            } = *event
            {
                tracing::info!(session_id = %self.session_id, step_index, "step due");
                let frame = WatchFrame::Alert {
                    server_time_ms: now,
                    step_index,
                    due_ms,
                    alert_seq,
                };
                self.bus.publish_to(
                    watches,
                    BusEvent::new(frame.encode(), None).of_kind(EventKind::Alert { alert_seq }),
                );
            }
        }
        if events.contains(&TimerEvent::Changed) {
            let frame = WatchFrame::Timer {
                server_time_ms: now,
                timer: WatchTimer::from(view.clone()),
            };
            self.bus
                .publish_to(watches, BusEvent::new(frame.encode(), None));
            let frame = ServerMsg::Timer {
                session_id: SessionId(self.session_id),
                timer: view,
            }
            .encode();
            self.bus
                .publish(self.session_id, BusEvent::new(frame, None));
        }
        self.schedule(ctx);
        self.schedule_tick(ctx);
    }

    /// Schedules the next tick of a running countdown: on the next whole
    /// second of remaining time, one frame for all the session's watches.
    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.tick.take() {
            ctx.cancel_future(handle);
        }
        let Ok(Some(deadline)) = self.ready().map(TimerMachine::deadline_ms) else {
            return;
        };
        let Some((at, _)) = next_tick(deadline, now_ms()) else {
            return;
        };
        let delay = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
        self.tick = Some(ctx.run_later(delay, move |act, ctx| {
            act.tick = None;
            act.send_tick(deadline);
            act.schedule_tick(ctx);
        }));
    }

    fn send_tick(&self, deadline: i64) {
        let Ok(machine) = self.ready() else {
            return;
        };
        // A lapsed hold (a node paused past its lease): the new owner ticks.
        if !self.ownership.held() {
            return;
        }
        // The countdown changed meanwhile: its own frame said so.
        if machine.deadline_ms() != Some(deadline) {
            return;
        }
        let now = now_ms();
        let remaining_ms = (deadline - now).max(0);
        let frame = WatchFrame::Tick {
            server_time_ms: now,
            step_index: machine.step_index(),
            deadline_ms: deadline,
            remaining_ms,
        };
        // Whole seconds left, rounded to the nearest (the tick fires at most
        // a few milliseconds late).
        let remaining_s = (remaining_ms + 500) / 1000;
        self.metrics.watch_ticks.inc();
        self.bus.publish_to(
            Topic::Watches(self.session_id),
            BusEvent::new(frame.encode(), None).of_kind(EventKind::Tick { remaining_s }),
        );
    }

    /// Sleeps until the next deadline, if any.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let Ok(Some(at)) = self.ready().map(TimerMachine::next_wake_ms) else {
            return;
        };
        let delay = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
        self.wake = Some(ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.on_wake(ctx);
        }));
    }

    /// Lets time pass: alerts (and auto-advance) of deadlines that came due,
    /// written before they are announced.
    fn on_wake(&mut self, ctx: &mut Context<Self>) {
        let Ok(machine) = self.ready() else {
            return;
        };
        let now = now_ms();
        let mut next = machine.clone();
        let events = next.advance(now);
        if events.is_empty() {
            self.schedule(ctx);
            return;
        }
        let record = next.record().clone();
        let db = self.db.clone();
        let (id, fence) = (self.session_id, self.ownership.fence());
        // `wait`: no action is applied between the change and its write.
        ctx.wait(
            async move { sessions::save_timer(&db, id, fence, &record).await }
                .into_actor(self)
                .map(move |saved, act, ctx| match saved {
                    Ok(Fenced::Written) => act.commit(next, events, now, ctx),
                    Ok(Fenced::NotLive) => act.phase = Phase::Gone,
                    Ok(Fenced::Superseded) => act.superseded(),
                    Err(e) => {
                        tracing::warn!(session_id = %act.session_id, error.message = %e, "writing timer failed; retrying");
                        act.wake = Some(ctx.run_later(RETRY, |act, ctx| {
                            act.wake = None;
                            act.on_wake(ctx);
                        }));
                    }
                }),
        );
    }
}

impl Actor for RecipeTimer {
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

impl Supervised for RecipeTimer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.shutting_down {
            self.metrics
                .actor_restarted("stopped", "timer", self.session_id);
        }
        self.wake = None;
        self.tick = None;
        self.phase = Phase::Loading;
    }
}

/// The timer as a client sees it now.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<TimerView, SessionError>")]
pub struct GetTimer;

impl Handler<GetTimer> for RecipeTimer {
    type Result = Result<TimerView, SessionError>;

    fn handle(&mut self, _: GetTimer, _: &mut Context<Self>) -> Self::Result {
        Ok(self.ready()?.view(now_ms()))
    }
}

/// What a watch needs on connect: the timer, and the alert of a step that is
/// due and still waiting for the host, if any.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<WatchSnapshot, SessionError>")]
pub struct GetWatchSnapshot;

/// The answer to [`GetWatchSnapshot`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchSnapshot {
    pub timer: TimerView,
    /// `(step_index, due_ms, alert_seq)`.
    pub pending_alert: Option<(u32, i64, u64)>,
}

impl Handler<GetWatchSnapshot> for RecipeTimer {
    type Result = Result<WatchSnapshot, SessionError>;

    fn handle(&mut self, _: GetWatchSnapshot, _: &mut Context<Self>) -> Self::Result {
        let machine = self.ready()?;
        let now = now_ms();
        Ok(WatchSnapshot {
            timer: machine.view(now),
            pending_alert: machine.pending_alert(now),
        })
    }
}

/// The host drives the timer; answered once the change is durable.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<TimerView, TimerError>")]
pub struct ControlTimer {
    pub action: TimerAction,
}

impl Handler<ControlTimer> for RecipeTimer {
    type Result = AtomicResponse<Self, Result<TimerView, TimerError>>;

    fn handle(&mut self, msg: ControlTimer, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let applied = self.ready().map_err(TimerError::from).and_then(|machine| {
            let mut next = machine.clone();
            let events = next.apply(msg.action, now).map_err(TimerError::Refused)?;
            Ok((next, events))
        });
        let (next, events) = match applied {
            Ok(applied) => applied,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        tracing::info!(session_id = %self.session_id, action = msg.action.name(), "timer action");
        let record = next.record().clone();
        let db = self.db.clone();
        let (id, fence) = (self.session_id, self.ownership.fence());
        // Atomic: the next action waits until this one is written.
        AtomicResponse::new(Box::pin(
            async move { sessions::save_timer(&db, id, fence, &record).await }
                .into_actor(self)
                .map(move |saved, act, ctx| match saved {
                    Ok(Fenced::Written) => {
                        let view = next.view(now);
                        act.commit(next, events, now, ctx);
                        Ok(view)
                    }
                    Ok(Fenced::NotLive) => {
                        act.phase = Phase::Gone;
                        Err(SessionError::NotLive.into())
                    }
                    Ok(Fenced::Superseded) => {
                        act.superseded();
                        Err(SessionError::Unavailable.into())
                    }
                    Err(e) => {
                        tracing::warn!(session_id = %act.session_id, error.message = %e, "writing timer failed");
                        Err(SessionError::Unavailable.into())
                    }
                }),
        ))
    }
}

/// Stop for good: the session ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopTimer;

impl Handler<StopTimer> for RecipeTimer {
    type Result = ();

    fn handle(&mut self, _: StopTimer, ctx: &mut Context<Self>) {
        self.shutting_down = true;
        ctx.stop();
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<crate::faults::InjectFault> for RecipeTimer {
    type Result = ();

    fn handle(&mut self, msg: crate::faults::InjectFault, ctx: &mut Context<Self>) {
        msg.0.apply("timer", self.session_id, ctx);
    }
}
