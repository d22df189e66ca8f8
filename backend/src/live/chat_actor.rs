//! `ChatChannel`: the supervised actor of one session's chat. It numbers
//! messages ([`ChatLog`]), writes them in batches (group commit: while one
//! batch is being written, the next accumulates; on SQLite the node's
//! [`ChatWriter`] also puts the batches of its sessions in one transaction),
//! acknowledges a sender only once its message is durable, and then
//! publishes it on the bus, encoded once.
//! A resend answers with the stored message: from the ring, or for an older
//! one (the idempotency window is longer than the ring) one keyed read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use mobile_bridge::protocol::{Author, ChatMessage, ServerMsg};
use mobile_bridge::{ErrorCode, SessionId};
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use uuid::Uuid;

use serde::{Deserialize, Serialize};

use super::chat::{Accepted, ChatLimits, ChatLog, ChatReject, Recorded};
use super::chat_writer::ChatWriter;
use super::ownership::Ownership;
use crate::bus::{Bus, BusEvent};
use crate::metrics::{FanoutClock, Metrics, FANOUT_SAMPLE_EVERY};
use crate::store::chat as store;

/// Most messages written in one batch.
const MAX_BATCH: usize = 512;

/// Why a chat request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ChatError {
    #[error("{}", .0.message)]
    Rejected(ChatReject),
    #[error("chat is temporarily unavailable")]
    Unavailable,
}

type Waiter = oneshot::Sender<Result<Arc<ChatMessage>, ChatError>>;

/// One session's chat actor.
#[derive(Debug)]
pub struct ChatChannel {
    session_id: Uuid,
    db: DatabaseConnection,
    writer: ChatWriter,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    limits: ChatLimits,
    /// This node's hold on the session: every batch is written with its
    /// fencing token.
    ownership: Ownership,
    log: Option<ChatLog>,
    /// Accepted (and when), not yet being written.
    pending: Vec<(ChatMessage, Instant)>,
    /// Senders waiting for their message (by seq) to be durable.
    waiters: HashMap<u64, Vec<Waiter>>,
    writing: bool,
    /// Those waiting for the channel to stop (told once all is written).
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// Stopped for good (the session ended or the node stops): if the
    /// supervisor brings it back meanwhile (a sender still held its address),
    /// it must not load, or the query may outlive the actor's thread.
    stopped_for_good: bool,
}

impl ChatChannel {
    pub fn new(
        session_id: Uuid,
        db: DatabaseConnection,
        writer: ChatWriter,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        limits: ChatLimits,
        ownership: Ownership,
    ) -> Self {
        Self {
            session_id,
            db,
            writer,
            bus,
            metrics,
            limits,
            ownership,
            log: None,
            pending: Vec::new(),
            waiters: HashMap::new(),
            writing: false,
            stop_waiters: Vec::new(),
            stopped_for_good: false,
        }
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let id = self.session_id;
        let ring = u64::try_from(self.limits.ring).unwrap_or(u64::MAX);
        let dedupe = u64::try_from(self.limits.dedupe).unwrap_or(u64::MAX);
        let fut = async move {
            let last = store::last_seq(&db, id).await?;
            let recent = store::newest(&db, id, ring).await?;
            let sent = store::sent_window(&db, id, dedupe).await?;
            let mutes = store::mutes(&db, id).await?;
            Ok::<_, sea_orm::DbErr>((last, recent, sent, mutes))
        };
        ctx.wait(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok((last, recent, sent, mutes)) => {
                let mut log =
                    ChatLog::restore(SessionId(act.session_id), recent, sent, last, act.limits);
                for (user, until) in mutes {
                    log.mute(mobile_bridge::UserId(user), until.timestamp_millis());
                }
                act.log = Some(log);
            }
            Err(e) => {
                tracing::warn!(session_id = %act.session_id, error.message = %e, "loading chat failed; retrying");
                ctx.run_later(std::time::Duration::from_millis(500), |act, ctx| {
                    act.load(ctx)
                });
            }
        }));
    }

    /// Starts writing the pending messages unless a write is under way.
    fn write_pending(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        self.writing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let batch: Vec<(ChatMessage, Instant)> = self.pending.drain(..take).collect();
        let writer = self.writer.clone();
        let (id, fence) = (self.session_id, self.ownership.fence());
        let now = Utc::now();
        let fut = async move {
            // Stored with the `sent_at` it was acknowledged with, so history
            // and resends after a restart show the same time.
            let rows: Vec<_> = batch
                .iter()
                .map(|(m, _)| {
                    let sent_at = chrono::DateTime::parse_from_rfc3339(&m.sent_at)
                        .map_or(now, |t| t.with_timezone(&Utc));
                    (m.clone(), sent_at)
                })
                .collect();
            let result = writer.write(id, fence, rows).await;
            (batch, result)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(|(batch, result), act, ctx| match result {
                    Ok(true) => {
                        act.writing = false;
                        act.durable(&batch);
                        act.write_pending(ctx);
                    }
                    Ok(false) => {
                        // Another node took the session over: nothing of
                        // this batch was written or acknowledged. Its senders
                        // retry (same `client_msg_id`) and reach the new
                        // owner; this channel stops for good.
                        tracing::warn!(
                            session_id = %act.session_id,
                            fence = act.ownership.fence(),
                            messages = batch.len(),
                            "chat write refused: the session was taken over; stopping"
                        );
                        let unwritten: Vec<u64> = batch
                            .iter()
                            .chain(&act.pending)
                            .map(|(m, _)| m.seq)
                            .collect();
                        act.pending.clear();
                        for seq in unwritten {
                            act.answer(seq, Err(ChatError::Unavailable));
                        }
                        act.ownership.lose();
                        act.writing = false;
                        act.stopped_for_good = true;
                        for waiter in act.stop_waiters.drain(..) {
                            let _ = waiter.send(());
                        }
                        ctx.stop();
                    }
                    Err(e) => {
                        tracing::error!(
                            session_id = %act.session_id,
                            error.cause_chain = ?e,
                            error.message = %e,
                            messages = batch.len(),
                            "writing chat failed; restarting the channel"
                        );
                        for (m, _) in &batch {
                            act.answer(m.seq, Err(ChatError::Unavailable));
                        }
                        // Unrecoverable here: stop, and let the supervisor
                        // restart us from what is in the database (the
                        // numbers of unwritten messages are handed out again,
                        // so the sequence stays gap-free).
                        ctx.stop();
                    }
                }),
        );
    }

    fn durable(&mut self, batch: &[(ChatMessage, Instant)]) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let recorded = log.committed(batch.iter().map(|(m, _)| m));
        self.metrics
            .chat_messages
            .inc_by(u64::try_from(batch.len()).unwrap_or_default());
        let mut events = Vec::with_capacity(batch.len());
        for ((message, accepted), recorded) in batch.iter().zip(recorded) {
            self.metrics
                .chat_durable
                .observe(accepted.elapsed().as_secs_f64());
            self.answer(message.seq, Ok(Arc::new(message.clone())));
            let mut event = BusEvent::new(recorded.frame, Some(message.seq));
            if message.seq.is_multiple_of(FANOUT_SAMPLE_EVERY) {
                event = event.timed(FanoutClock::start(&self.metrics));
            }
            events.push(event);
        }
        self.publish_after_answers(events);
    }

    /// Publishes once the answers given so far are on their way. An answer
    /// reaches its sender's connection through a task on this thread
    /// (actix's `ResponseFuture`), queued when it was given; a task queued
    /// after it publishes. So the worker that runs a sender's connection
    /// is asked to run it before its fan-out, and the ack does not wait
    /// behind a flush to thousands of members (published at once, the
    /// fan-out went first). Tasks on this thread run in the order queued,
    /// so every event this channel publishes keeps its order.
    fn publish_after_answers(&self, events: Vec<BusEvent>) {
        let (bus, id) = (self.bus.clone(), self.session_id);
        actix_rt::spawn(async move {
            for event in events {
                bus.publish(id, event);
            }
        });
    }

    /// Stops once no write is pending, so acknowledged work always lands.
    fn stop_when_written(&mut self, ctx: &mut Context<Self>) {
        if self.writing || !self.pending.is_empty() {
            ctx.run_later(std::time::Duration::from_millis(20), |act, ctx| {
                act.stop_when_written(ctx)
            });
        } else {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
            self.stopped_for_good = true;
            ctx.stop();
        }
    }

    /// A durable message, from the ring or else the database.
    fn stored(&self, seq: u64) -> ResponseFuture<Result<Arc<ChatMessage>, ChatError>> {
        if let Some(message) = self.log.as_ref().and_then(|log| log.stored(seq)) {
            return Box::pin(async move { Ok(Arc::new(message)) });
        }
        let db = self.db.clone();
        let id = self.session_id;
        Box::pin(async move {
            match store::by_seq(&db, id, seq).await {
                Ok(Some(message)) => Ok(Arc::new(message)),
                Ok(None) => Err(ChatError::Unavailable),
                Err(e) => {
                    tracing::warn!(session_id = %id, seq, error.message = %e, "reading a resent chat message failed");
                    Err(ChatError::Unavailable)
                }
            }
        })
    }

    fn answer(&mut self, seq: u64, result: Result<Arc<ChatMessage>, ChatError>) {
        for waiter in self.waiters.remove(&seq).unwrap_or_default() {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Actor for ChatChannel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.stopped_for_good {
            self.load(ctx);
        }
    }
}

impl Supervised for ChatChannel {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.log = None;
        self.pending.clear();
        for (_, waiters) in self.waiters.drain() {
            for w in waiters {
                let _ = w.send(Err(ChatError::Unavailable));
            }
        }
        self.writing = false;
        // A stop waiter is answered by the drop: nothing is being written.
        self.stop_waiters.clear();
    }
}

/// Posts a message; answers with the stored message once it is durable (for
/// a resend of a `client_msg_id`: the message first stored under it).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Arc<ChatMessage>, ChatError>")]
pub struct PostChat {
    pub author: Author,
    pub text: String,
    pub client_msg_id: String,
}

impl Handler<PostChat> for ChatChannel {
    type Result = ResponseFuture<Result<Arc<ChatMessage>, ChatError>>;

    fn handle(&mut self, msg: PostChat, ctx: &mut Context<Self>) -> Self::Result {
        let Some(log) = self.log.as_mut() else {
            return Box::pin(async { Err(ChatError::Unavailable) });
        };
        let now = Utc::now();
        if let Err(reject) = log.room_for(
            &msg.author,
            &msg.client_msg_id,
            self.bus.weighed(self.session_id),
            now.timestamp_millis(),
        ) {
            if reject.code == ErrorCode::RateLimited {
                self.metrics.chat_refused_busy.inc();
            }
            return Box::pin(async move { Err(ChatError::Rejected(reject)) });
        }
        let sent_at = store::rfc3339(now);
        let seq = match log.accept(
            msg.author,
            &msg.text,
            &msg.client_msg_id,
            sent_at,
            now.timestamp_millis(),
        ) {
            Err(reject) => return Box::pin(async move { Err(ChatError::Rejected(reject)) }),
            Ok(Accepted::Duplicate(seq)) => return self.stored(seq),
            Ok(Accepted::InFlight(seq)) => seq,
            Ok(Accepted::New(message)) => {
                let seq = message.seq;
                self.pending.push((message, Instant::now()));
                seq
            }
        };
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(seq).or_default().push(tx);
        self.write_pending(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(ChatError::Unavailable)) })
    }
}

/// Asks for durable messages after a sequence number (for resume), and the
/// newest durable number.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<History, ChatError>")]
pub struct GetHistory {
    pub after: u64,
    pub limit: usize,
}

/// Messages after a point, oldest first, as members are sent them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub messages: Vec<Recorded>,
    /// The newest durable sequence number when this was read.
    pub durable_seq: u64,
}

impl Handler<GetHistory> for ChatChannel {
    type Result = ResponseFuture<Result<History, ChatError>>;

    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        let Some(log) = self.log.as_ref() else {
            return Box::pin(async { Err(ChatError::Unavailable) });
        };
        let durable_seq = log.durable_seq();
        if let Some(messages) = log.after(msg.after, msg.limit) {
            return Box::pin(async move {
                Ok(History {
                    messages,
                    durable_seq,
                })
            });
        }
        let db = self.db.clone();
        let id = self.session_id;
        Box::pin(async move {
            let limit = u64::try_from(msg.limit).unwrap_or(u64::MAX);
            let rows = store::after(&db, id, msg.after, limit)
                .await
                .map_err(|_| ChatError::Unavailable)?;
            Ok(History {
                messages: rows
                    .into_iter()
                    .filter(|m| m.seq <= durable_seq)
                    .map(|m| Recorded::new(&m))
                    .collect(),
                durable_seq,
            })
        })
    }
}

/// Deletes a message: its text is gone from history and members get
/// `chat.deleted`. Answers whether the message exists.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<bool, ChatError>")]
pub struct DeleteChat {
    pub seq: u64,
}

impl Handler<DeleteChat> for ChatChannel {
    type Result = ResponseActFuture<Self, Result<bool, ChatError>>;

    fn handle(&mut self, msg: DeleteChat, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let id = self.session_id;
        Box::pin(
            async move { store::mark_deleted(&db, id, msg.seq).await }
                .into_actor(self)
                .map(move |result, act, _| {
                    let found = result.map_err(|_| ChatError::Unavailable)?;
                    if found {
                        if let Some(log) = act.log.as_mut() {
                            log.delete(msg.seq);
                        }
                        let frame = ServerMsg::ChatDeleted {
                            session_id: SessionId(act.session_id),
                            seq: msg.seq,
                        }
                        .encode();
                        act.publish_after_answers(vec![BusEvent::new(frame, None)]);
                    }
                    Ok(found)
                }),
        )
    }
}

/// Mutes a user until a time.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), ChatError>")]
pub struct MuteUser {
    pub user: Uuid,
    pub until: chrono::DateTime<Utc>,
}

impl Handler<MuteUser> for ChatChannel {
    type Result = ResponseActFuture<Self, Result<(), ChatError>>;

    fn handle(&mut self, msg: MuteUser, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let id = self.session_id;
        Box::pin(
            async move { store::mute(&db, id, msg.user, msg.until).await }
                .into_actor(self)
                .map(move |result, act, _| {
                    result.map_err(|_| ChatError::Unavailable)?;
                    if let Some(log) = act.log.as_mut() {
                        log.mute(
                            mobile_bridge::UserId(msg.user),
                            msg.until.timestamp_millis(),
                        );
                    }
                    Ok(())
                }),
        )
    }
}

/// Stops the channel for good (its session ended, or the node stops);
/// answered once every accepted message is written.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopChat;

impl Handler<StopChat> for ChatChannel {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopChat, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        self.stop_when_written(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<crate::faults::InjectFault> for ChatChannel {
    type Result = ();

    fn handle(&mut self, msg: crate::faults::InjectFault, ctx: &mut Context<Self>) {
        msg.0.apply("chat", self.session_id, ctx);
    }
}
