//! `floor`: a minimal tokio WebSocket broadcast server to measure Simmer
//! against. **Not the product**: no accounts, no tokens checked, no storage,
//! no history, no limits, no heartbeat, one session. It is the floor: what
//! accepting, parsing, sequencing and fanning out chat costs with nothing
//! else, so that the docs can report Simmer's numbers as a ratio to it,
//! measured by the same load tool in the same sitting.
//!
//! It speaks just enough of docs/protocol.md, with Simmer's own frame types
//! (`mobile-bridge`), for `fanout` and `idle` to run against it with
//! `--floor` (which skips their REST setup: the floor has no REST API):
//! `GET /ws` (offering `simmer.v1` is answered in kind), `hello`, `join`
//! (a full snapshot, so the SDK accepts it), `leave`, `chat.send` (the next
//! sequence number; the reply's body is the message, as Simmer's is) and
//! `ping`. Every session id names the same one session.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use mobile_bridge::protocol::{
    Author, ChatMessage, ClientFrame, ClientMsg, JoinSnapshot, Role, ServerMsg, PROTOCOL_VERSION,
    SUBPROTOCOL,
};
use mobile_bridge::{ErrorCode, SessionId, UserId};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

/// Options of the `floor` server.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on (loopback or a private address only; port 0 picks one, printed on
    /// the first line of output).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: SocketAddr,
}

/// The session id the scenarios join with `--floor` (any id would do).
pub const SESSION: SessionId =
    SessionId(Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_f100));

/// Events a member may lag behind, as Simmer's default
/// `SIMMER_FANOUT_BUFFER`. Lag policy: a member that falls further behind
/// skips what it missed (the load tool counts it as lost); there is no
/// history to resync from.
const FANOUT_BUFFER: usize = 1024;
/// Connections waiting to be accepted (the kernel caps it at somaxconn).
const LISTEN_BACKLOG: u32 = 4096;
/// Chat frames queued to one socket before they are flushed in one write.
const MAX_BATCH: usize = 64;
/// What `hello` announces (Simmer's defaults; the floor enforces none).
const HEARTBEAT_INTERVAL_MS: u64 = 15_000;
const MAX_FRAME_BYTES: usize = 16 * 1024;
const MAX_MESSAGE_CHARS: usize = 1000;

/// The one session: a sequence counter and the channel every member reads.
#[derive(Debug)]
struct Session {
    /// The newest sequence number. Held while a message is broadcast, so
    /// messages enter the channel in sequence order, and while a member
    /// subscribes, so its snapshot's `last_seq` is exactly what precedes
    /// its first event.
    last_seq: Mutex<u64>,
    events: broadcast::Sender<Utf8Bytes>,
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    // No auth, no limits: loopback, or a private address (the veth pair
    // between the benchmark's own network namespaces), nothing routable.
    let private = match args.bind.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private(),
        std::net::IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !private {
        bail!(
            "the floor listens on loopback or a private address only, not {}",
            args.bind
        );
    }
    let socket = if args.bind.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.bind)?;
    // `TcpListener::bind` listens with a backlog of 128: thousands of
    // viewers connecting at once overflowed it and waited a second for the
    // SYN to be retried. Simmer's server (actix) listens with 2048.
    let listener = socket.listen(LISTEN_BACKLOG)?;
    println!(
        "floor listening on {} (reference server, not Simmer)",
        listener.local_addr()?
    );
    serve(listener).await
}

/// Accepts connections until Ctrl-C (the scripts stop it by PID).
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let (events, _) = broadcast::channel(FANOUT_BUFFER);
    let session = Arc::new(Session {
        last_seq: Mutex::new(0),
        events,
    });
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, session.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The upgrade: `/ws` only; the subprotocol echoed when offered (the SDK
/// offers it and requires the answer).
// The signature is tungstenite's `Callback`: its error type is not ours to box.
#[allow(clippy::result_large_err)]
fn upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != "/ws" {
        let mut refused = ErrorResponse::new(Some("only /ws".into()));
        *refused.status_mut() = StatusCode::NOT_FOUND;
        return Err(refused);
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if offered {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(response)
}

/// One member's connection: its frames in, the session's events out.
async fn connection(stream: TcpStream, session: Arc<Session>) {
    // Small read buffers, as Simmer's: client frames are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(MAX_FRAME_BYTES));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, upgrade, Some(config)).await
    else {
        return;
    };
    let hello = ServerMsg::Hello {
        protocol: PROTOCOL_VERSION,
        server_time_ms: now_ms(),
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        max_frame_bytes: MAX_FRAME_BYTES,
        max_message_chars: MAX_MESSAGE_CHARS,
    };
    if ws.send(Message::text(hello.encode())).await.is_err() {
        return;
    }
    let mut member = Member {
        session,
        joined: None,
    };
    loop {
        tokio::select! {
            inbound = ws.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    if let Some(answer) = member.on_text(&text) {
                        if ws.send(Message::text(answer.encode())).await.is_err() {
                            return;
                        }
                    }
                }
                // tungstenite answers pings by itself.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            event = member.next_event() => match event {
                Ok(frame) => {
                    // Whatever else is queued goes out in the same write.
                    let mut batch = vec![frame];
                    while batch.len() < MAX_BATCH {
                        match member.try_next_event() {
                            Some(frame) => batch.push(frame),
                            None => break,
                        }
                    }
                    for frame in batch {
                        if ws.feed(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {} // skipped: see FANOUT_BUFFER
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// What a connection knows: the session, and whether it joined it.
struct Member {
    session: Arc<Session>,
    joined: Option<(SessionId, broadcast::Receiver<Utf8Bytes>)>,
}

impl Member {
    /// The next event of the joined session; never, if not joined.
    async fn next_event(&mut self) -> Result<Utf8Bytes, broadcast::error::RecvError> {
        match &mut self.joined {
            Some((_, events)) => events.recv().await,
            None => std::future::pending().await,
        }
    }

    fn try_next_event(&mut self) -> Option<Utf8Bytes> {
        self.joined.as_mut()?.1.try_recv().ok()
    }

    /// Handles a client frame; the answer to send, if any.
    fn on_text(&mut self, text: &str) -> Option<ServerMsg> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                return Some(ServerMsg::Error {
                    code: ErrorCode::InvalidFrame,
                    message: e.to_string(),
                })
            }
        };
        let reference = frame.reference;
        Some(match frame.msg {
            ClientMsg::Ping => ServerMsg::Pong {
                server_time_ms: now_ms(),
            },
            ClientMsg::Join { session_id, .. } => {
                if self.joined.is_some() {
                    return Some(ServerMsg::err(
                        reference,
                        ErrorCode::Conflict,
                        "already joined",
                    ));
                }
                let (events, last_seq) = {
                    let last_seq = self.lock_seq();
                    (self.session.events.subscribe(), *last_seq)
                };
                self.joined = Some((session_id, events));
                let snapshot = JoinSnapshot {
                    session_id,
                    title: "floor".into(),
                    state: "live".into(),
                    role: Role::Viewer,
                    viewer_count: u32::try_from(self.session.events.receiver_count())
                        .unwrap_or(u32::MAX),
                    timer: watch_sync::TimerView::idle(&[], now_ms()),
                    last_seq,
                };
                ServerMsg::ok(
                    reference,
                    serde_json::to_value(snapshot).unwrap_or_default(),
                )
            }
            ClientMsg::Leave { .. } => {
                self.joined = None;
                ServerMsg::ok(reference, serde_json::json!({}))
            }
            ClientMsg::ChatSend {
                session_id,
                text,
                client_msg_id,
            } => {
                if self.joined.is_none() {
                    return Some(ServerMsg::err(
                        reference,
                        ErrorCode::NotJoined,
                        "join the session first",
                    ));
                }
                let message = self.post(session_id, text, client_msg_id);
                ServerMsg::ok(reference, serde_json::to_value(message).unwrap_or_default())
            }
            ClientMsg::TimerControl { .. } | ClientMsg::Auth { .. } => {
                let why = "the floor server does join, leave, chat.send and ping only";
                match reference {
                    Some(_) => ServerMsg::err(reference, ErrorCode::InvalidFrame, why),
                    None => ServerMsg::Error {
                        code: ErrorCode::InvalidFrame,
                        message: why.into(),
                    },
                }
            }
        })
    }

    /// Gives a message the next sequence number and broadcasts it, encoded
    /// once for every member.
    fn post(&self, session_id: SessionId, text: String, client_msg_id: String) -> ChatMessage {
        let mut last_seq = self.lock_seq();
        *last_seq += 1;
        let message = ChatMessage {
            session_id,
            seq: *last_seq,
            author: Author {
                id: UserId(Uuid::nil()),
                name: "floor".into(),
                role: Role::Host,
            },
            text,
            sent_at: rfc3339_ms(now_ms()),
            client_msg_id: Some(client_msg_id),
            deleted: false,
        };
        let frame = ServerMsg::ChatMessage(message.clone()).encode();
        // No receivers is not an error: nobody is watching.
        let _ = self.session.events.send(Utf8Bytes::from(frame));
        message
    }

    fn lock_seq(&self) -> std::sync::MutexGuard<'_, u64> {
        // A panic while holding it leaves a valid counter behind.
        self.session
            .last_seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_ms() -> i64 {
    i64::try_from(crate::setup::now_us() / 1000).unwrap_or(i64::MAX)
}

/// `2026-11-26T17:20:00.123Z` (UTC, milliseconds), as Simmer's `sent_at`.
fn rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let (days, day_s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_s / 3600,
        day_s % 3600 / 60,
        day_s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{chat_of, RawMember, Target};
    use mobile_bridge::client::{Client, ClientConfig};

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339_ms(1_795_712_410_123), "2026-11-26T17:00:10.123Z");
    }

    /// An SDK client sends; a raw member and the SDK sender both see the
    /// message, numbered after the join's `last_seq`.
    #[tokio::test]
    async fn the_sdk_and_raw_members_speak_to_the_floor() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener));

        let mut raw = RawMember::connect(&Target::of_base(&base).await.unwrap(), None, "x")
            .await
            .unwrap();
        assert_eq!(raw.join(SESSION).await.unwrap(), 0);

        let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
        let (sender, mut events) = Client::connect(ClientConfig::new(ws_url, "x"))
            .await
            .unwrap();
        let snapshot = sender.join(SESSION).await.unwrap();
        assert_eq!((snapshot.last_seq, snapshot.viewer_count), (0, 2));
        let ack = sender.send_chat(SESSION, "t=123").await.unwrap();
        assert_eq!((ack.session_id, ack.seq), (SESSION, 1));
        assert!(ack.sent_at.ends_with('Z'));

        let mut seen = Vec::new();
        while seen.is_empty() {
            assert!(raw
                .read(&mut |text| seen.extend(chat_of(text)))
                .await
                .unwrap());
        }
        assert_eq!((seen[0].seq, seen[0].sent_us), (1, Some(123)));
        match events.recv().await {
            Some(mobile_bridge::client::Event::Chat(m)) => assert_eq!(m.text, "t=123"),
            other => panic!("expected the chat message, got {other:?}"),
        }
        raw.close().await;
        sender.close().await;
    }
}
