//! One WebSocket connection: a single `select!` loop over inbound frames,
//! the events of the sessions it joined that the fan-out handed to it (it
//! writes caught-up members' chat itself, see [`super::fanout`]), the
//! answers of its requests in
//! flight (futures polled by the loop itself), a
//! heartbeat, the expiry of its access token (close 4001 unless an `auth`
//! frame brought a fresh one) and the node's shutdown (`reconnect`, then
//! close 1001). Nothing a client sends can panic it; a bad frame gets an
//! `error` frame (or an error reply when it carried a `ref`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use mobile_bridge::protocol::{
    Author, ClientMsg, JoinSnapshot, Ref, Role, ServerMsg, PROTOCOL_VERSION,
};
use mobile_bridge::{ErrorCode, SessionId};
use prometheus::IntCounterVec;
use rand::Rng;
use std::rc::Rc;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;
use watch_sync::TimerControl;

use crate::auth::Principal;
use crate::auth::CLOCK_LEEWAY_S;
use crate::bus::{BusEvent, EventKind, Topic};
use crate::live::chat::Recorded;
use crate::live::chat_actor::{ChatError, GetHistory, PostChat};
use crate::live::rate::TokenBucket;
use crate::live::timer_actor::TimerError;
use crate::live::{SessionError, Sessions};
use crate::state::AppState;
use crate::store::sessions::{self, SessionState};
use crate::websocket::{Message, WebSocket, WsError};
use actix_web::web;

use super::fanout::{self, Inbox, Membership};

/// Messages per page when replaying history after a `join` or a lag.
const REPLAY_PAGE: usize = 500;
/// Close codes of RFC 6455 this loop uses.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_AGAIN: u16 = 1013;
/// How long the close frame may take to leave.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Close code for a guest whose session stopped letting guests in.
const CLOSE_GUESTS_REVOKED: u16 = 4003;
/// Handed events written in one go after a wake-up, at most.
const COALESCE_FRAMES: usize = 64;
/// Close code when the access token expired (an HTTP 401's counterpart).
const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// When the node drains, each client is told to reconnect after a random
/// delay in this range (ms), on top of its random moment in the spread
/// window: clients told at the same moment do not all come back at once.
pub const RECONNECT_AFTER_MS: std::ops::Range<u64> = 250..1_000;

/// Who is on a connection, and until when.
#[derive(Debug)]
pub struct Credentials {
    pub principal: Principal,
    /// The access token's `exp` (unix seconds).
    pub expires_at_s: i64,
}

/// A session this connection follows.
#[derive(Debug)]
struct Joined {
    /// This connection's user as the session's members see it.
    author: Author,
    /// Its place in the session's fan-out (which keeps the newest chat
    /// sequence number delivered on this connection).
    member: Membership,
}

/// The sessions a connection joined: a handful at most, in a vector sized
/// exactly (every idle member holds one; a one-entry hash map would take
/// four entries' room).
#[derive(Debug, Default)]
struct Joins(Vec<(Uuid, Joined)>);

impl Joins {
    fn get(&self, id: &Uuid) -> Option<&Joined> {
        self.0.iter().find(|(k, _)| k == id).map(|(_, j)| j)
    }

    fn get_mut(&mut self, id: &Uuid) -> Option<&mut Joined> {
        self.0.iter_mut().find(|(k, _)| k == id).map(|(_, j)| j)
    }

    fn contains_key(&self, id: &Uuid) -> bool {
        self.get(id).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn insert(&mut self, id: Uuid, joined: Joined) {
        if let Some(slot) = self.get_mut(&id) {
            *slot = joined;
            return;
        }
        self.0.reserve_exact(1);
        self.0.push((id, joined));
    }

    fn remove(&mut self, id: &Uuid) -> Option<Joined> {
        let at = self.0.iter().position(|(k, _)| k == id)?;
        let (_, joined) = self.0.swap_remove(at);
        self.0.shrink_to_fit();
        Some(joined)
    }

    fn keys(&self) -> impl Iterator<Item = &Uuid> {
        self.0.iter().map(|(k, _)| k)
    }
}

struct Connection {
    id: u64,
    principal: Principal,
    /// When the connection's access token expires.
    expires_at: tokio::time::Instant,
    /// Shared, not copied: every idle connection holds its future.
    state: web::Data<AppState>,
    ws: WebSocket,
    joined: Joins,
    /// Events of the joined sessions that the fan-out did not write itself.
    inbox: Rc<Inbox>,
    /// The answers of requests in flight (`chat.send`, `timer.control`),
    /// which wait for a session's actor while the loop goes on reading and
    /// delivering; made on the first request, so connections that only
    /// watch do not pay for it.
    in_flight: Option<FuturesUnordered<LocalBoxFuture<'static, ServerMsg>>>,
    /// Sessions whose missed chat could not be checked yet (the session
    /// was changing hands), and when to try again.
    resync: Option<(std::collections::HashSet<Uuid>, tokio::time::Instant)>,
}

/// How long a connection waits before checking again for chat it missed.
const RESYNC_RETRY: Duration = Duration::from_millis(500);

/// Why the loop ended.
enum End {
    /// The client closed or went away.
    Gone,
    /// We close it, with this code and reason.
    Close(u16, String),
}

impl From<WsError> for End {
    fn from(e: WsError) -> Self {
        match e.close_code() {
            Some(code) => End::Close(code, e.to_string()),
            None => End::Gone,
        }
    }
}

/// The instant a connection authenticated by a token with this `exp` (unix
/// seconds) is closed: after the leeway that verification grants, so that a
/// client reconnecting with the same token is refused, not closed again.
fn deadline(expires_at_s: i64) -> tokio::time::Instant {
    // Verification counts whole seconds: a token is accepted until the end
    // of the second `exp + leeway`.
    let left_ms = expires_at_s
        .saturating_add(CLOCK_LEEWAY_S + 1)
        .saturating_mul(1000)
        .saturating_sub(chrono::Utc::now().timestamp_millis());
    tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

pub async fn run(
    id: u64,
    _slot: super::ConnectionSlot,
    credentials: Credentials,
    state: web::Data<AppState>,
    ws: WebSocket,
    mut shutdown: crate::shutdown::Listener,
) {
    state.metrics.ws_connections.inc();
    let idle_timeout = state.settings.ws_idle_timeout;
    let max_frame = state.settings.ws_max_frame_bytes;
    let inbox = Inbox::new();
    let mut conn = Connection {
        id,
        principal: credentials.principal,
        expires_at: deadline(credentials.expires_at_s),
        state,
        ws,
        joined: Joins::default(),
        inbox,
        in_flight: None,
        resync: None,
    };
    // One timer for both the heartbeat and the token's expiry, and the
    // shutdown signal's future, made once: futures made afresh in every
    // round of the loop below would register with (and leave) the timer
    // wheel and the signal's waiter list at every event of every connection.
    let beat = idle_timeout / 3;
    let mut next_beat = tokio::time::Instant::now() + beat;
    let mut timer = Box::pin(tokio::time::sleep_until(next_beat.min(conn.expires_at)));
    let mut stopping = std::pin::pin!(shutdown.recv());
    let mut last_heard = Instant::now();
    let frames_per_s = conn.state.settings.ws_max_frames_per_s;
    let mut flood = TokenBucket::new(
        f64::from(frames_per_s),
        frames_per_s.saturating_mul(2),
        chrono::Utc::now().timestamp_millis(),
    );

    let hello = ServerMsg::Hello {
        protocol: PROTOCOL_VERSION,
        server_time_ms: chrono::Utc::now().timestamp_millis(),
        heartbeat_interval_ms: u64::try_from((idle_timeout / 2).as_millis()).unwrap_or(u64::MAX),
        max_frame_bytes: max_frame,
        max_message_chars: conn.state.settings.chat_max_chars,
    };
    let mut end = if conn.send(&hello).await {
        None
    } else {
        Some(End::Gone)
    };

    while end.is_none() {
        tokio::select! {
            inbound = conn.ws.recv() => {
                last_heard = Instant::now();
                if flood.take(chrono::Utc::now().timestamp_millis()).is_err() {
                    end = Some(End::Close(
                        CLOSE_POLICY,
                        format!("flooding: more than {frames_per_s} frames per second"),
                    ));
                    continue;
                }
                end = match inbound {
                    // Boxed: handling a frame can go as deep as a database
                    // read, and that state should not live in every idle
                    // connection's future.
                    Ok(Message::Text(text)) => {
                        let expires_at = conn.expires_at;
                        let end = Box::pin(conn.on_text(&text)).await;
                        if conn.expires_at != expires_at {
                            // A fresh token (`auth`).
                            timer.as_mut().reset(next_beat.min(conn.expires_at));
                        }
                        end
                    }
                    Ok(Message::Binary(_)) => {
                        conn.error(ErrorCode::InvalidFrame, "frames are JSON text, not binary").await
                    }
                    Ok(Message::Ping(bytes)) => conn.ws.pong(bytes).err().map(End::from),
                    Ok(Message::Pong(_) | Message::Drained) => None,
                    // Answered with a close of our own.
                    Ok(Message::Close(_)) => Some(End::Close(CLOSE_NORMAL, String::new())),
                    Err(e) => Some(End::from(e)),
                };
            }
            // A client that does not read gets no new events until it has
            // read what waits; they wait in its inbox meanwhile.
            (session_id, event) = conn.inbox.next(), if !conn.ws.backlogged() => {
                end = conn.on_event(session_id, event).await;
                // Take whatever else is already queued before yielding, so
                // the socket gets one write for the batch, not one per frame.
                if end.is_none() {
                    end = conn.flush_queued().await;
                }
                if end.is_none() {
                    end = conn.ws.flush_now().err().map(End::from);
                }
            }
            () = resync_due(&conn.resync) => {
                let pending = conn.resync.take().map(|(ids, _)| ids).unwrap_or_default();
                for id in pending {
                    // Boxed, as every rare path here: what the loop's future
                    // holds is what each idle connection costs.
                    end = Box::pin(conn.resync(id)).await;
                    if end.is_some() {
                        break;
                    }
                }
            }
            Some(answer) = next_answer(&mut conn.in_flight) => {
                end = conn.reply(answer).await;
            }
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                if now >= conn.expires_at {
                    end = Some(End::Close(
                        CLOSE_TOKEN_EXPIRED,
                        "access token expired: reconnect with a fresh one".into(),
                    ));
                } else if now >= next_beat {
                    next_beat = now + beat;
                    if last_heard.elapsed() > idle_timeout {
                        end = Some(End::Close(
                            CLOSE_AWAY,
                            "idle timeout: no frame or pong received".into(),
                        ));
                    } else {
                        end = conn.ws.ping(Bytes::new()).err().map(End::from);
                    }
                }
                timer.as_mut().reset(next_beat.min(conn.expires_at));
            }
            () = &mut stopping => {
                // What is already queued goes first (a `media reconnect`
                // published just before the drain told this connection).
                end = conn.flush_queued().await;
                if end.is_some() {
                    continue;
                }
                let after_ms = rand::thread_rng().gen_range(RECONNECT_AFTER_MS);
                let reconnect = ServerMsg::Reconnect { reason: "shutdown".into(), after_ms };
                // Closed either way; a client that misses this frame still
                // gets the going-away close.
                let _ = conn.send(&reconnect).await;
                end = Some(End::Close(CLOSE_AWAY, "server shutting down: reconnect".into()));
            }
        }
        conn.settle();
    }

    for session_id in conn.joined.keys() {
        conn.state.sessions.left(*session_id, conn.id);
    }
    // Out of the fan-out before the close frame: nothing follows it.
    conn.joined = Joins::default();
    if let Some(End::Close(code, reason)) = end {
        Box::pin(conn.ws.close(code, &reason, CLOSE_WRITE_TIMEOUT)).await;
    }
    conn.state.metrics.ws_connections.dec();
}

/// When a pending resync is due; never, without one.
async fn resync_due(resync: &Option<(std::collections::HashSet<Uuid>, tokio::time::Instant)>) {
    match resync {
        Some((_, at)) => tokio::time::sleep_until(*at).await,
        None => std::future::pending().await,
    }
}

/// The next answer of a request in flight; `None` (the branch sits out this
/// turn of the loop) while none is.
async fn next_answer(
    in_flight: &mut Option<FuturesUnordered<LocalBoxFuture<'static, ServerMsg>>>,
) -> Option<ServerMsg> {
    match in_flight {
        Some(answers) if !answers.is_empty() => answers.next().await,
        _ => None,
    }
}

impl Connection {
    /// With every handed event taken and the socket not backed up, the
    /// fan-out writes this connection's chat itself again.
    fn settle(&self) {
        if self.inbox.is_empty() && !self.ws.backlogged() {
            for (_, joined) in &self.joined.0 {
                joined.member.settle();
            }
        }
    }

    /// Handles the events already handed over, at most [`COALESCE_FRAMES`],
    /// without waiting for more.
    async fn flush_queued(&mut self) -> Option<End> {
        for _ in 0..COALESCE_FRAMES {
            if self.ws.backlogged() {
                break;
            }
            let Some((session_id, event)) = self.inbox.pop() else {
                break;
            };
            if let Some(end) = self.on_event(session_id, event).await {
                return Some(end);
            }
        }
        None
    }

    /// Sends a frame; `false` when the socket is gone.
    async fn send(&mut self, msg: &ServerMsg) -> bool {
        self.ws.send_text(Bytes::from(msg.encode())).is_ok()
    }

    async fn reply(&mut self, msg: ServerMsg) -> Option<End> {
        self.ws
            .send_text(Bytes::from(msg.encode()))
            .err()
            .map(End::from)
    }

    async fn error(&mut self, code: ErrorCode, message: impl Into<String>) -> Option<End> {
        self.reply(ServerMsg::Error {
            code,
            message: message.into(),
        })
        .await
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .error(ErrorCode::InvalidFrame, format!("not JSON: {e}"))
                    .await
            }
        };
        let reference: Option<Ref> = value
            .get("ref")
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        let msg: ClientMsg = match serde_json::from_value(value) {
            Ok(m) => m,
            Err(e) => {
                let message = format!("invalid frame: {e}");
                return match reference {
                    Some(r) => {
                        self.reply(ServerMsg::err(Some(r), ErrorCode::InvalidFrame, message))
                            .await
                    }
                    None => self.error(ErrorCode::InvalidFrame, message).await,
                };
            }
        };
        match msg {
            ClientMsg::Auth { token } => self.reauthenticate(reference, &token).await,
            ClientMsg::Ping => {
                let now = chrono::Utc::now().timestamp_millis();
                self.reply(ServerMsg::Pong {
                    server_time_ms: now,
                })
                .await
            }
            ClientMsg::Join {
                session_id,
                last_seq,
            } => self.join(reference, session_id.0, last_seq).await,
            ClientMsg::Leave { session_id } => {
                let reply = if self.joined.remove(&session_id.0).is_some() {
                    self.state.sessions.left(session_id.0, self.id);
                    ServerMsg::ok(reference, serde_json::json!({"session_id": session_id}))
                } else {
                    ServerMsg::err(
                        reference,
                        ErrorCode::NotJoined,
                        "not joined to that session",
                    )
                };
                self.reply(reply).await
            }
            ClientMsg::ChatSend {
                session_id,
                text,
                client_msg_id,
            } => {
                self.chat_send(reference, session_id, text, client_msg_id)
                    .await
            }
            ClientMsg::TimerControl {
                session_id,
                action,
                step,
                seconds,
            } => {
                let control = TimerControl {
                    action,
                    step,
                    seconds,
                };
                self.timer_control(reference, session_id, control).await
            }
        }
    }

    /// Swaps the connection's token for a fresh one of the same user and
    /// moves the expiry with it.
    async fn reauthenticate(&mut self, reference: Option<Ref>, token: &str) -> Option<End> {
        let reply = match self.state.keys.verify(token) {
            Err(_) => ServerMsg::err(
                reference,
                ErrorCode::Unauthorized,
                "token is expired, forged or malformed",
            ),
            Ok(claims) if claims.sub != self.principal.id() => ServerMsg::err(
                reference,
                ErrorCode::Forbidden,
                "the token is another user's; open a new connection for it",
            ),
            Ok(claims)
                if claims.exp.saturating_mul(1000) <= chrono::Utc::now().timestamp_millis() =>
            {
                ServerMsg::err(reference, ErrorCode::Unauthorized, "token is expired")
            }
            Ok(claims) => {
                self.expires_at = deadline(claims.exp);
                ServerMsg::ok(reference, serde_json::json!({"expires_at": claims.exp}))
            }
        };
        self.reply(reply).await
    }

    /// A host's timer action; answered off the loop once it is durable.
    async fn timer_control(
        &mut self,
        reference: Option<Ref>,
        session_id: SessionId,
        control: TimerControl,
    ) -> Option<End> {
        let refused = match self.joined.get(&session_id.0) {
            None => Some((ErrorCode::NotJoined, "join the session first".to_owned())),
            Some(joined) if joined.author.role != Role::Host => Some((
                ErrorCode::Forbidden,
                "only the session's host drives the timer".to_owned(),
            )),
            Some(_) => None,
        };
        let action = match (refused, control.action()) {
            (Some((code, message)), _) => {
                return self.reply(ServerMsg::err(reference, code, message)).await
            }
            (None, Err(message)) => {
                return self
                    .reply(ServerMsg::err(
                        reference,
                        ErrorCode::ValidationFailed,
                        message,
                    ))
                    .await
            }
            (None, Ok(action)) => action,
        };
        let sessions = self.state.sessions.clone();
        self.answer_later(reference.clone(), async move {
            match sessions.control_timer(session_id.0, action).await {
                Ok(timer) => {
                    ServerMsg::ok(reference, serde_json::to_value(timer).unwrap_or_default())
                }
                Err(TimerError::Refused(refusal)) => {
                    ServerMsg::err(reference, refusal.code.into(), refusal.message)
                }
                Err(TimerError::Session(SessionError::NotLive)) => {
                    ServerMsg::err(reference, ErrorCode::Conflict, "session is not live")
                }
                Err(TimerError::Session(SessionError::Unavailable)) => ServerMsg::err(
                    reference,
                    ErrorCode::Unavailable,
                    "the timer did not answer; retry",
                ),
            }
        })
        .await
    }

    /// Waits for `answer` while the loop goes on, and replies with it; or,
    /// with as many requests in flight as the connection may have, refuses
    /// at once. Polled once here, so that the request reaches its actor now,
    /// even if the connection closes before the loop turns again.
    async fn answer_later(
        &mut self,
        reference: Option<Ref>,
        answer: impl std::future::Future<Output = ServerMsg> + 'static,
    ) -> Option<End> {
        let max = self.state.settings.ws_max_in_flight;
        if self.in_flight.as_ref().is_some_and(|a| a.len() >= max) {
            return self
                .reply(ServerMsg::err(
                    reference,
                    ErrorCode::RateLimited,
                    format!("{max} requests wait for their answer already; wait for one first"),
                ))
                .await;
        }
        let mut answer = answer.boxed_local();
        if let std::task::Poll::Ready(answer) = futures_util::poll!(&mut answer) {
            return self.reply(answer).await;
        }
        self.in_flight
            .get_or_insert_with(FuturesUnordered::new)
            .push(answer);
        None
    }

    async fn join(
        &mut self,
        reference: Option<Ref>,
        id: Uuid,
        last_seq: Option<u64>,
    ) -> Option<End> {
        match self.try_join(id, last_seq).await {
            Ok((snapshot, replay_from)) => {
                let durable = snapshot.last_seq;
                let body = serde_json::to_value(&snapshot).unwrap_or_default();
                if let Some(end) = self.reply(ServerMsg::ok(reference, body)).await {
                    return Some(end);
                }
                if let Some(from) = replay_from {
                    return self.replay(id, from, durable).await;
                }
                None
            }
            Err((code, message)) => self.reply(ServerMsg::err(reference, code, message)).await,
        }
    }

    /// Checks, subscribes, and snapshots; returns the snapshot and where a
    /// replay starts.
    async fn try_join(
        &mut self,
        id: Uuid,
        last_seq: Option<u64>,
    ) -> Result<(JoinSnapshot, Option<u64>), (ErrorCode, String)> {
        if !self.principal.may_view(id) {
            return Err((
                ErrorCode::Forbidden,
                "a guest token is good for its own session only".into(),
            ));
        }
        if self.joined.contains_key(&id) {
            return Err((ErrorCode::Conflict, "already joined".into()));
        }
        let max = self.state.settings.ws_max_joins;
        if self.joined.len() >= max {
            return Err((
                ErrorCode::RateLimited,
                format!("at most {max} sessions per connection"),
            ));
        }
        let unavailable = || (ErrorCode::Unavailable, "try again shortly".to_owned());
        let model = sessions::find(&self.state.db, id)
            .await
            .map_err(|_| unavailable())?
            .ok_or((ErrorCode::NotFound, "no such session".to_owned()))?;
        let (session_state, _) = sessions::decode(&model).map_err(|_| unavailable())?;
        if session_state != SessionState::Live {
            return Err((
                ErrorCode::Conflict,
                format!(
                    "session is {}; only live sessions can be joined",
                    session_state.as_str()
                ),
            ));
        }
        if !self.principal.may_view_session(&model) {
            return Err((
                ErrorCode::Forbidden,
                "this session does not let guests in".into(),
            ));
        }
        let author = self.principal.author_in(model.host_id);
        let role = author.role;
        let author_for_presence = author.clone();
        // Follow before reading history: whatever is published from now on
        // reaches the inbox, whatever was before is in the history.
        let sessions = &self.state.sessions;
        let member = fanout::join(
            id,
            || fanout::Source {
                ring: sessions.subscribe(Topic::Members(id)),
                followers: sessions.followers(id),
                history: Rc::new(SessionChat {
                    sessions: sessions.clone(),
                    id,
                    refills: self.state.metrics.fanout_refills.clone(),
                }),
            },
            self.state.settings.fanout_buffer,
            Rc::clone(self.ws.outlet()),
            Rc::clone(&self.inbox),
            matches!(self.principal, Principal::Guest { .. }),
        );
        let snapshot = self
            .state
            .sessions
            .snapshot(id)
            .await
            .map_err(|_| unavailable())?;
        let durable = self
            .state
            .sessions
            .durable_seq(id)
            .await
            .map_err(|_| unavailable())?;
        let from = last_seq.filter(|s| *s < durable);
        member.set_delivered_seq(from.unwrap_or(durable));
        self.joined.insert(id, Joined { author, member });
        self.state.sessions.joined(id, self.id, author_for_presence);
        Ok((
            JoinSnapshot {
                session_id: SessionId(id),
                title: model.title,
                state: session_state.as_str().into(),
                role,
                viewer_count: self.state.sessions.viewer_count(id).await,
                timer: snapshot.timer,
                last_seq: durable,
            },
            from,
        ))
    }

    /// Sends the chat messages after `from` up to (at least) `until`, oldest
    /// first, each once.
    async fn replay(&mut self, id: Uuid, from: u64, until: u64) -> Option<End> {
        let mut after = from;
        while after < until {
            let Some(page) = history_page(&self.state.sessions, id, after).await else {
                return Some(End::Close(
                    CLOSE_AGAIN,
                    "history unavailable; reconnect with last_seq".into(),
                ));
            };
            if page.is_empty() {
                break;
            }
            for message in page {
                after = message.seq;
                // The fan-out may have written newer chat itself while this
                // replay waited (a resync runs while the member is caught
                // up): it writes only the message after the one delivered,
                // so skipping what it wrote keeps each message once, in order.
                let Joined { member, .. } = self.joined.get(&id)?;
                if message.seq <= member.delivered_seq() {
                    continue;
                }
                member.set_delivered_seq(message.seq);
                if let Err(e) = self.ws.queue_text(message.frame.into_bytes()) {
                    return Some(End::from(e));
                }
                if self.ws.backlogged() {
                    // Written as fast as the client reads, not faster: a
                    // long replay holds at most the high-water mark.
                    let within = self.state.settings.ws_idle_timeout;
                    match tokio::time::timeout(within, self.ws.write_backlog()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Some(End::from(e)),
                        Err(_) => {
                            return Some(End::Close(
                                CLOSE_POLICY,
                                "too slow: the replay was not read".into(),
                            ))
                        }
                    }
                }
            }
        }
        self.ws.flush_now().err().map(End::from)
    }

    async fn on_event(
        &mut self,
        id: Uuid,
        event: Result<BusEvent, BroadcastStreamRecvError>,
    ) -> Option<End> {
        let event = match event {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                // Fell behind the session's ring: replay the chat we missed
                // from history, then carry on from the subscription.
                tracing::debug!(connection = self.id, session_id = %id, missed, "lagging; resyncing");
                self.replayed("lagged");
                // Boxed: rare, and deep; kept out of the connection's future.
                return Box::pin(self.catch_up(id)).await;
            }
        };
        // Not following it any more (a late event after `leave`): drop it.
        let joined = self.joined.get(&id)?;
        if event.kind == EventKind::Resync {
            return Box::pin(self.resync(id)).await;
        }
        if event.kind == EventKind::GuestsRevoked {
            if !matches!(self.principal, Principal::Guest { .. }) {
                return None;
            }
            // A guest token is good for this one session: the connection
            // has nothing left to do. Say why, then close.
            let _ = self.ws.queue_text(event.frame.into_bytes());
            return Some(End::Close(
                CLOSE_GUESTS_REVOKED,
                "the host turned guest access off".into(),
            ));
        }
        if let Some(seq) = event.seq {
            let delivered = joined.member.delivered_seq();
            if seq <= delivered {
                return None;
            }
            if seq > delivered + 1 {
                // A gap: events between were lost on the way (between nodes
                // of a cluster, dropped or published while a node was cut
                // off). Fill it from history first, each message once.
                let from = delivered;
                tracing::debug!(connection = self.id, session_id = %id, from, seq, "gap in chat; filling from history");
                self.replayed("gap");
                if let Some(end) = Box::pin(self.replay(id, from, seq - 1)).await {
                    return Some(end);
                }
            }
            let member = &self.joined.get(&id)?.member;
            if seq <= member.delivered_seq() {
                return None;
            }
            member.set_delivered_seq(seq);
        }
        if event.last {
            self.joined.remove(&id);
        }
        // Written with whatever else is queued (`flush_now` in the loop).
        let queued = self.ws.queue_text(event.frame.into_bytes());
        if let Some(clock) = &event.clock {
            clock.reached();
        }
        queued.err().map(End::from)
    }

    fn replayed(&self, cause: &'static str) {
        self.state
            .metrics
            .ws_chat_replays
            .with_label_values(&[cause])
            .inc();
    }

    /// Replays the chat a lagging connection missed, up to what is durable.
    async fn catch_up(&mut self, id: Uuid) -> Option<End> {
        let from = self.joined.get(&id).map(|j| j.member.delivered_seq())?;
        let until = self.state.sessions.durable_seq(id).await.ok()?;
        self.replay(id, from, until).await
    }

    /// Events may have been lost between nodes: replays the chat missed, if
    /// any, from history; tries again shortly when the session cannot say
    /// (it is changing hands).
    async fn resync(&mut self, id: Uuid) -> Option<End> {
        let from = self.joined.get(&id)?.member.delivered_seq();
        let Ok(until) = self.state.sessions.durable_seq(id).await else {
            let (ids, _) = self.resync.get_or_insert_with(|| {
                (
                    Default::default(),
                    tokio::time::Instant::now() + RESYNC_RETRY,
                )
            });
            ids.insert(id);
            return None;
        };
        if until <= from {
            return None;
        }
        self.replayed("resync");
        self.replay(id, from, until).await
    }

    async fn chat_send(
        &mut self,
        reference: Option<Ref>,
        session_id: SessionId,
        text: String,
        client_msg_id: String,
    ) -> Option<End> {
        let Some(joined) = self.joined.get(&session_id.0) else {
            return self
                .reply(ServerMsg::err(
                    reference,
                    ErrorCode::NotJoined,
                    "join the session first",
                ))
                .await;
        };
        let author = joined.author.clone();
        let sessions = self.state.sessions.clone();
        // Durability is waited for beside the loop, so this connection keeps
        // reading and delivering while its message is written.
        self.answer_later(reference.clone(), async move {
            let post = PostChat {
                author,
                text,
                client_msg_id,
            };
            match sessions.ask(session_id.0, post).await {
                // The stored message (a superset of the documented ack):
                // for a resend, the one first stored under its id.
                Ok(Ok(stored)) => ServerMsg::ok(
                    reference,
                    serde_json::to_value(&*stored).unwrap_or_default(),
                ),
                Ok(Err(ChatError::Rejected(r))) => ServerMsg::err(reference, r.code, r.message),
                Err(SessionError::NotLive) => {
                    ServerMsg::err(reference, ErrorCode::Conflict, "session is not live")
                }
                Ok(Err(ChatError::Unavailable)) | Err(SessionError::Unavailable) => ServerMsg::err(
                    reference,
                    ErrorCode::Unavailable,
                    "not sent; retry with the same client_msg_id",
                ),
            }
        })
        .await
    }
}

/// A page of a session's chat after `after`, oldest first, as members are
/// sent it; `None` when the session cannot say now.
async fn history_page(sessions: &Sessions, id: Uuid, after: u64) -> Option<Vec<Recorded>> {
    let history = GetHistory {
        after,
        limit: REPLAY_PAGE,
    };
    Some(sessions.ask(id, history).await.ok()?.ok()?.messages)
}

/// A session's chat history, as its fan-out on this worker reads it to
/// fill a hole for all its members at once.
struct SessionChat {
    sessions: Sessions,
    id: Uuid,
    refills: IntCounterVec,
}

impl fanout::History for SessionChat {
    fn after(&self, after: u64) -> LocalBoxFuture<'static, Option<Vec<BusEvent>>> {
        let (sessions, id) = (self.sessions.clone(), self.id);
        Box::pin(async move {
            let page = history_page(&sessions, id, after).await?;
            Some(
                page.into_iter()
                    .map(|message| BusEvent::new(message.frame, Some(message.seq)))
                    .collect(),
            )
        })
    }

    fn refilled(&self, cause: &'static str) {
        self.refills.with_label_values(&[cause]).inc();
    }
}
