//! The watch feed: `GET /watch/ws` (WebSocket) and `GET /watch/events`
//! (server-sent events, for watches without WebSockets). Both run the same
//! [`Feed`]: a snapshot on connect, the session's compact timer frames, ticks
//! filtered to the watch's interval, each alert once, `bye` at the end.
//!
//! Ticks are not made here: the session's timer actor publishes one tick per
//! whole second for all its watches (encoded once); a feed only passes it on
//! or skips it.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use bytestring::ByteString;
use serde::Deserialize;
use simmer_entity::watch_device;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;
use watch_sync::{WatchClientFrame, WatchFrame, WatchTimer};

use super::hub::{Attachment, DeviceControl};
use crate::auth::{request_token, secret_hash};
use crate::bus::{BusEvent, EventKind, Topic};
use crate::error::ApiError;
use crate::live::rate::TokenBucket;
use crate::live::{self, SessionError};
use crate::state::AppState;
use crate::store::sessions::{self, SessionState};
use crate::store::watch as store;
use crate::websocket::{Limits, Message, WebSocket, WsError};

/// Longest tick interval a watch may ask for, in seconds.
const MAX_TICK_INTERVAL_S: u32 = 3600;
/// How often an SSE stream sends a comment to keep proxies from closing it.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Frames queued for a slow SSE client before it is cut off.
const SSE_QUEUE: usize = 64;

/// Query parameters of the watch feed.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    /// The device token, for watches that cannot set headers.
    pub token: Option<String>,
    /// Seconds between ticks for this connection (0 = changes only; default:
    /// the device's setting).
    pub tick: Option<u32>,
}

/// What the feed has for its transport next.
#[derive(Debug)]
pub enum Step {
    /// Send this frame.
    Frame(ByteString),
    /// Send this frame (the session's last, a `bye`) and close.
    Last(ByteString),
    /// Record that this watch got alert `alert_seq` (before sending it, so a
    /// reconnect right after cannot buzz again), then send the frame.
    Alert { frame: ByteString, alert_seq: u64 },
    /// Send a fresh snapshot (after a lag or a re-target).
    Snapshot,
    /// Say `bye` with this reason and close.
    Bye(&'static str),
}

/// One open feed of one watch. Kept small: a server holds one per watch.
#[derive(Debug)]
pub struct Feed {
    state: web::Data<AppState>,
    device_id: Uuid,
    session_id: Uuid,
    tick_interval_s: i64,
    last_alert_seq: u64,
    events: broadcast::Receiver<BusEvent>,
    attachment: Attachment,
    shutdown: crate::shutdown::Listener,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn bye(reason: &str) -> ByteString {
    // A draining node's watches come back a little apart (the spread window
    // already set when each hears it).
    let after_ms = (reason == DRAINING)
        .then(|| rand::Rng::gen_range(&mut rand::thread_rng(), crate::gateway::RECONNECT_AFTER_MS));
    ByteString::from(
        WatchFrame::Bye {
            server_time_ms: now_ms(),
            reason: reason.into(),
            after_ms,
        }
        .encode(),
    )
}

/// The `bye` reason when the node drains: reconnect, to any node.
const DRAINING: &str = "unavailable";

/// The device a request's token belongs to; 401 before any upgrade.
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    query: &FeedQuery,
) -> Result<watch_device::Model, ApiError> {
    let token = match request_token(req)? {
        Some(token) => token,
        None => query.token.clone().ok_or_else(|| {
            ApiError::unauthorized("send the device token as `Authorization: Bearer` or `?token=`")
        })?,
    };
    store::device_by_token(&state.db, &secret_hash(&token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked device token"))
}

fn tick_interval(query: &FeedQuery, device: &watch_device::Model) -> Result<i64, ApiError> {
    match query.tick {
        Some(t) if t > MAX_TICK_INTERVAL_S => Err(ApiError::client(
            mobile_bridge::ErrorCode::InvalidQuery,
            format!("tick must be 0 to {MAX_TICK_INTERVAL_S} seconds"),
        )),
        Some(t) => Ok(i64::from(t)),
        None => Ok(i64::from(device.tick_interval_s.max(0))),
    }
}

impl Feed {
    fn open(
        state: web::Data<AppState>,
        device: &watch_device::Model,
        tick_interval_s: i64,
    ) -> Self {
        let attachment = state
            .sessions
            .watch_hub()
            .attach(device.id, state.settings.watch_max_feeds_per_device);
        let shutdown = state.shutdown.listen();
        let events = state.sessions.subscribe(Topic::Watches(device.session_id));
        state.metrics.watch_connections.inc();
        let last_alert_seq = u64::try_from(device.last_alert_seq).unwrap_or(0);
        Self {
            state,
            device_id: device.id,
            session_id: device.session_id,
            tick_interval_s,
            last_alert_seq,
            events,
            attachment,
            shutdown,
        }
    }

    /// The snapshot of the session the watch follows, then the alert of a
    /// due step it has not buzzed for; `Err` with a `bye` reason when the
    /// feed should end after these frames.
    pub async fn snapshot(&mut self) -> (Vec<ByteString>, Option<&'static str>) {
        let now = now_ms();
        let session_id = self.session_id;
        let model = match sessions::find(&self.state.db, session_id).await {
            Ok(Some(model)) => model,
            Ok(None) => return (Vec::new(), Some("session_gone")),
            Err(_) => return (Vec::new(), Some("unavailable")),
        };
        let Ok((session_state, recipe)) = sessions::decode(&model) else {
            return (Vec::new(), Some("unavailable"));
        };
        let (timer, pending, end) = match session_state {
            SessionState::Live => match self.state.sessions.watch_snapshot(session_id).await {
                Ok(snap) => (snap.timer, snap.pending_alert, None),
                Err(SessionError::NotLive) => (
                    live::timer_at_rest(&model, SessionState::Ended, &recipe, now),
                    None,
                    Some("session_ended"),
                ),
                Err(SessionError::Unavailable) => return (Vec::new(), Some("unavailable")),
            },
            SessionState::Scheduled => (
                live::timer_at_rest(&model, session_state, &recipe, now),
                None,
                None,
            ),
            SessionState::Ended => (
                live::timer_at_rest(&model, session_state, &recipe, now),
                None,
                Some("session_ended"),
            ),
        };
        let mut frames = vec![ByteString::from(
            WatchFrame::Snapshot {
                server_time_ms: timer.server_time_ms,
                timer: WatchTimer::from(timer),
            }
            .encode(),
        )];
        if let Some((step_index, due_ms, alert_seq)) = pending {
            if self.take_alert(alert_seq) {
                self.record_alert(alert_seq).await;
                frames.push(ByteString::from(
                    WatchFrame::Alert {
                        server_time_ms: now_ms(),
                        step_index,
                        due_ms,
                        alert_seq,
                    }
                    .encode(),
                ));
            }
        }
        (frames, end)
    }

    /// `true` once per alert on this feed.
    fn take_alert(&mut self, alert_seq: u64) -> bool {
        if alert_seq <= self.last_alert_seq {
            return false;
        }
        self.last_alert_seq = alert_seq;
        true
    }

    /// Stores that the watch got an alert, so no feed of it sends it again.
    /// When the write fails the alert is sent anyway: twice is better than
    /// never.
    pub async fn record_alert(&self, alert_seq: u64) {
        if let Err(e) = store::alerted(&self.state.db, self.device_id, alert_seq).await {
            tracing::warn!(device_id = %self.device_id, error.message = %e, "recording a watch alert failed");
        }
    }

    /// Waits for the next thing to send. Cancel-safe: it only receives.
    pub async fn next(&mut self) -> Step {
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Ok(event) => {
                        if let Some(step) = self.on_event(event) {
                            return step;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Step::Snapshot,
                    Err(broadcast::error::RecvError::Closed) => return Step::Bye("session_ended"),
                },
                control = self.attachment.control() => match control {
                    DeviceControl::Revoked => return Step::Bye("revoked"),
                    DeviceControl::Replaced => return Step::Bye("replaced"),
                    DeviceControl::Retarget(session_id) => {
                        self.session_id = session_id;
                        self.last_alert_seq = 0;
                        self.events = self
                            .state
                            .sessions
                            .subscribe(Topic::Watches(session_id));
                        return Step::Snapshot;
                    }
                },
                () = self.shutdown.recv() => return Step::Bye(DRAINING),
            }
        }
    }

    fn on_event(&mut self, event: BusEvent) -> Option<Step> {
        if event.last {
            return Some(Step::Last(event.frame));
        }
        match event.kind {
            EventKind::Frame => Some(Step::Frame(event.frame)),
            EventKind::Tick { remaining_s } => {
                let every = self.tick_interval_s;
                (every > 0 && remaining_s % every == 0).then_some(Step::Frame(event.frame))
            }
            EventKind::Alert { alert_seq } => self.take_alert(alert_seq).then_some(Step::Alert {
                frame: event.frame,
                alert_seq,
            }),
            // Watches belong to signed-in users, never to guests.
            EventKind::GuestsRevoked => None,
            // Something may have been missed: the whole state again.
            EventKind::Resync => Some(Step::Snapshot),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.state.metrics.watch_connections.dec();
    }
}

/// `GET /watch/ws`: the watch feed over a WebSocket.
pub async fn watch_ws(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let device = authenticate(&req, &state, &query).await?;
    let tick = tick_interval(&query, &device)?;
    let limits = Limits {
        max_message: WATCH_MAX_FRAME,
        max_backlog: state.settings.ws_max_backlog_bytes,
        send_buffer: state.settings.ws_send_buffer_bytes,
    };
    let sockets = state.websockets.clone();
    let response = crate::websocket::accept(&req, &sockets, None, limits, move |ws| async move {
        // Rare steps are boxed while they run: this future lives as long as
        // the watch is connected, sized for its largest step.
        let _ = Box::pin(store::seen(&state.db, device.id, chrono::Utc::now())).await;
        let feed = Feed::open(state, &device, tick);
        drop(device);
        run_ws(feed, ws).await;
    })?;
    Ok(response)
}

/// The largest frame a watch may send (its `ping`s are tiny).
const WATCH_MAX_FRAME: usize = 1024;
/// How long the close frame may take to leave.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a WebSocket feed closes after `bye`: 1008 when the watch must not
/// simply reconnect (revoked, or replaced by a newer feed), 1001 when the
/// server stops (reconnect), else 1000.
fn bye_close_code(reason: &str) -> u16 {
    match reason {
        "revoked" | "replaced" => 1008,
        DRAINING => 1001,
        _ => 1000,
    }
}

/// Why a feed's socket closes: code and reason.
type Close = Option<(u16, String)>;

/// What to say when the socket fails: nothing when the watch is gone.
fn failed(e: WsError) -> Close {
    e.close_code().map(|code| (code, e.to_string()))
}

async fn run_ws(mut feed: Feed, mut ws: WebSocket) {
    let idle_timeout = feed.state.settings.ws_idle_timeout;
    let mut heartbeat = tokio::time::interval(idle_timeout / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let per_s = feed.state.settings.ws_max_frames_per_s;
    let mut flood = TokenBucket::new(f64::from(per_s), per_s.saturating_mul(2), now_ms());

    // The whole state first, and again whenever something may have been
    // missed; then each change as it comes.
    let close: Close = 'feed: loop {
        {
            let (frames, end) = Box::pin(feed.snapshot()).await;
            for frame in frames {
                if let Err(e) = ws.queue_text(frame.into_bytes()) {
                    break 'feed failed(e);
                }
            }
            if let Some(reason) = end {
                let _ = ws.queue_text(bye(reason).into_bytes());
                break 'feed Some((1000, String::new()));
            }
            if let Err(e) = ws.flush_now() {
                break 'feed failed(e);
            }
            loop {
                let sent = tokio::select! {
                    step = feed.next(), if !ws.backlogged() => match step {
                        Step::Frame(frame) => ws.send_text(frame.into_bytes()),
                        Step::Last(frame) => {
                            let _ = ws.queue_text(frame.into_bytes());
                            break 'feed Some((1000, String::new()));
                        }
                        Step::Alert { frame, alert_seq } => {
                            Box::pin(feed.record_alert(alert_seq)).await;
                            ws.send_text(frame.into_bytes())
                        }
                        Step::Snapshot => continue 'feed,
                        Step::Bye(reason) => {
                            let _ = ws.queue_text(bye(reason).into_bytes());
                            break 'feed Some((bye_close_code(reason), reason.into()));
                        }
                    },
                    inbound = ws.recv() => {
                        last_heard = Instant::now();
                        if flood.take(now_ms()).is_err() {
                            break 'feed Some((1008, format!("flooding: more than {per_s} frames per second")));
                        }
                        match inbound {
                            // The only frame a watch sends is `ping`; anything
                            // else is ignored (a watch app cannot do much with
                            // errors).
                            Ok(Message::Text(text)) => match serde_json::from_str(&text) {
                                Ok(WatchClientFrame::Ping { client_time_ms }) => {
                                    let pong = WatchFrame::Pong { server_time_ms: now_ms(), client_time_ms };
                                    ws.send_text(Bytes::from(pong.encode()))
                                }
                                Err(_) => Ok(()),
                            },
                            Ok(Message::Ping(bytes)) => ws.pong(bytes),
                            Ok(Message::Close(_)) => break 'feed Some((1000, String::new())),
                            Ok(Message::Binary(_) | Message::Pong(_) | Message::Drained) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    _ = heartbeat.tick() => {
                        if last_heard.elapsed() > idle_timeout {
                            break 'feed Some((1001, "idle timeout: no frame or pong received".into()));
                        }
                        ws.ping(Bytes::new())
                    }
                };
                if let Err(e) = sent {
                    break 'feed failed(e);
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        Box::pin(ws.close(code, &reason, CLOSE_WRITE_TIMEOUT)).await;
    }
}

/// `GET /watch/events`: the watch feed as server-sent events. Each frame is
/// one `data:` line (its `type` is inside); a comment line every 15 s keeps
/// the stream open. Clock sync needs `ping`, so it is WebSocket-only; the
/// frames' `server_time_ms` still lets a watch estimate its offset.
pub async fn watch_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let device = authenticate(&req, &state, &query).await?;
    let tick = tick_interval(&query, &device)?;
    let _ = store::seen(&state.db, device.id, chrono::Utc::now()).await;
    let feed = Feed::open(state, &device, tick);
    let (tx, rx) = mpsc::channel::<Bytes>(SSE_QUEUE);
    actix_rt::spawn(run_sse(feed, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn sse(frame: &str) -> Bytes {
    Bytes::from(format!("data: {frame}\n\n"))
}

async fn run_sse(mut feed: Feed, tx: mpsc::Sender<Bytes>) {
    let mut keepalive = tokio::time::interval(SSE_KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    let mut snapshot_due = true;
    loop {
        if snapshot_due {
            snapshot_due = false;
            let (frames, end) = feed.snapshot().await;
            for frame in frames {
                if tx.send(sse(&frame)).await.is_err() {
                    return;
                }
            }
            if let Some(reason) = end {
                let _ = tx.send(sse(&bye(reason))).await;
                return;
            }
        }
        tokio::select! {
            step = feed.next() => match step {
                Step::Frame(frame) => {
                    // A client that does not keep up is cut off; it reconnects
                    // and gets a fresh snapshot.
                    if tx.try_send(sse(&frame)).is_err() {
                        return;
                    }
                }
                Step::Last(frame) => {
                    let _ = tx.send(sse(&frame)).await;
                    return;
                }
                Step::Alert { frame, alert_seq } => {
                    feed.record_alert(alert_seq).await;
                    if tx.send(sse(&frame)).await.is_err() {
                        return;
                    }
                }
                Step::Snapshot => snapshot_due = true,
                Step::Bye(reason) => {
                    let _ = tx.send(sse(&bye(reason))).await;
                    return;
                }
            },
            _ = keepalive.tick() => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}
