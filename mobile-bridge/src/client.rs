//! The async Rust client SDK (feature `client`): connect, authenticate, join,
//! send with acknowledgement futures, a stream of events, and automatic
//! reconnection with backoff that resumes every joined session from the last
//! sequence number seen, and resends unacknowledged messages with their
//! original `client_msg_id` (so nothing is lost and nothing is doubled).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mobile_bridge::client::ClientError> {
//! use mobile_bridge::client::{Client, ClientConfig, Event};
//! let (client, mut events) = Client::connect(ClientConfig::new("ws://127.0.0.1:8080/ws", "TOKEN")).await?;
//! let session = "0192f0e0-0000-7000-8000-000000000000".parse().unwrap();
//! client.join(session).await?;
//! client.send_chat(session, "hello").await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Chat(message) = event {
//!         println!("{}: {}", message.author.name, message.text);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::protocol::{ChatAck, ChatMessage, ClientMsg, JoinSnapshot, ServerMsg, SUBPROTOCOL};
use crate::{ErrorCode, SessionId};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How to reach the server and how to behave when the link drops.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/ws`, or `wss://` behind TLS.
    pub url: String,
    /// Roots trusted for `wss://` beside the web's (PEM certificates: a
    /// private CA, a test server).
    pub tls_roots: Vec<String>,
    /// An access token (user or guest).
    pub token: String,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a request waits for its reply on one connection.
    pub request_timeout: Duration,
    /// How often to send `ping` while idle.
    pub ping_interval: Duration,
    /// Local address to connect from (load tools spread sockets over
    /// 127.0.0.x to pass the ~60k ports of one source address).
    pub bind: Option<std::net::IpAddr>,
    /// The socket read buffer. Chat frames are small: a small buffer keeps
    /// memory (and the cost of clearing it) low for many connections.
    pub read_buffer_size: usize,
}

impl ClientConfig {
    /// Defaults: backoff 100 ms – 5 s, requests time out after 10 s, ping
    /// every 10 s.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            tls_roots: Vec::new(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            bind: None,
            read_buffer_size: 8 * 1024,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an error.
    Server { code: ErrorCode, message: String },
    /// The server (or a proxy in front of it) refused the WebSocket
    /// handshake with an HTTP status: 401 (the token is bad or expired: get
    /// a fresh one), 403, 429 or 503 (try later). `code` is the problem
    /// body's, when Simmer sent one.
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// Could not connect: no route, refused, TLS failed, no `hello`.
    Connect(String),
    /// The client was closed.
    Closed,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Server { code, message } => write!(f, "{code}: {message}"),
            ClientError::Refused {
                status, message, ..
            } => write!(f, "refused ({status}): {message}"),
            ClientError::Connect(why) => write!(f, "cannot connect: {why}"),
            ClientError::Closed => f.write_str("client closed"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What the server tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A chat message, in order, each once (also across reconnects).
    Chat(ChatMessage),
    /// The host deleted a message.
    ChatDeleted { session_id: SessionId, seq: u64 },
    /// The number of viewers changed.
    Presence {
        session_id: SessionId,
        viewer_count: u32,
    },
    /// The recipe timer changed.
    Timer {
        session_id: SessionId,
        timer: watch_sync::TimerView,
    },
    /// The session's live video changed (see `MediaState`).
    Media {
        session_id: SessionId,
        state: crate::protocol::MediaState,
    },
    /// The host ended a joined session.
    SessionEnded { session_id: SessionId },
    /// The link dropped; reconnecting (attempt counts from 1).
    Reconnecting { attempt: u32 },
    /// A reconnect was refused for its token: 401 (it expired, or was
    /// revoked) or 403 (it may no longer connect, e.g. a guest whose session
    /// stopped letting guests in). Retrying the same token cannot help, so
    /// the client waits, its joined sessions and unacknowledged sends kept,
    /// until [`Client::set_token`] hands it a fresh one (or it is closed).
    TokenRefused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// Connected again, sessions re-joined and resumed.
    Reconnected,
}

enum Command {
    Join(
        SessionId,
        oneshot::Sender<Result<JoinSnapshot, ClientError>>,
    ),
    Leave(SessionId, oneshot::Sender<Result<(), ClientError>>),
    Chat {
        session_id: SessionId,
        text: String,
        client_msg_id: String,
        reply: oneshot::Sender<Result<ChatAck, ClientError>>,
    },
    SetToken(String),
    DropConnection,
    Close,
}

/// A request waiting for its reply; resent after a reconnect.
enum Pending {
    Join(
        SessionId,
        oneshot::Sender<Result<JoinSnapshot, ClientError>>,
    ),
    Leave(SessionId, oneshot::Sender<Result<(), ClientError>>),
    Chat(Value, oneshot::Sender<Result<ChatAck, ClientError>>),
}

/// A connected client. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

/// The events of a client, in order.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Client {
    /// Connects (once, failing fast if the server refuses) and starts the
    /// background task that keeps the connection alive.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let socket = open(&config).await?;
        let (commands, commands_rx) = mpsc::channel(1024);
        let (events_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Driver {
                config,
                events: events_tx,
                joined: BTreeMap::new(),
                pending: HashMap::new(),
                next_ref: 0,
                retry_soon: Vec::new(),
                reconnect_after: None,
            }
            .run(socket, commands_rx),
        );
        Ok((Client { commands }, Events { rx }))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Joins a session; from now on its events arrive, and after any
    /// reconnect it is re-joined and resumed.
    pub async fn join(&self, session_id: SessionId) -> Result<JoinSnapshot, ClientError> {
        self.call(|tx| Command::Join(session_id, tx)).await
    }

    /// Leaves a session.
    pub async fn leave(&self, session_id: SessionId) -> Result<(), ClientError> {
        self.call(|tx| Command::Leave(session_id, tx)).await
    }

    /// Sends a chat message; resolves once the server has made it durable,
    /// retrying across reconnects with the same `client_msg_id`.
    pub async fn send_chat(
        &self,
        session_id: SessionId,
        text: impl Into<String>,
    ) -> Result<ChatAck, ClientError> {
        let client_msg_id = Uuid::new_v4().to_string();
        let text = text.into();
        self.call(|reply| Command::Chat {
            session_id,
            text,
            client_msg_id,
            reply,
        })
        .await
    }

    /// Hands the client a fresh access token of the same user (after a
    /// refresh): it is sent on the open connection (an `auth` frame), so the
    /// server keeps the connection open past the old token's expiry, and it
    /// is used for every reconnect from now on.
    pub async fn set_token(&self, token: impl Into<String>) {
        let _ = self.commands.send(Command::SetToken(token.into())).await;
    }

    /// Drops the connection as a network failure would (for tests and
    /// demos); the client reconnects and resumes by itself.
    pub async fn drop_connection(&self) {
        let _ = self.commands.send(Command::DropConnection).await;
    }

    /// Closes the client; pending calls fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

async fn open(config: &ClientConfig) -> Result<Socket, DialError> {
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(0);
    let mut socket = dial(
        &config.url,
        &config.token,
        Some(SUBPROTOCOL),
        config.bind,
        &config.tls_roots,
        ws_config,
    )
    .await?;
    // The first frame is `hello`.
    match tokio::time::timeout(config.request_timeout, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) if text.contains("\"hello\"") => Ok(socket),
        _ => Err(DialError::Failed("no hello from the server".into())),
    }
}

/// Why a WebSocket could not be opened.
#[derive(Debug)]
pub(crate) enum DialError {
    /// An HTTP answer instead of the upgrade.
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
        /// The answer's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Anything else: the network, TLS, a bad URL.
    Failed(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Refused {
                status, message, ..
            } => write!(f, "refused ({status}): {message}"),
            DialError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<DialError> for ClientError {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Refused {
                status,
                code,
                message,
                ..
            } => ClientError::Refused {
                status,
                code,
                message,
            },
            DialError::Failed(why) => ClientError::Connect(why),
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for DialError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        let tokio_tungstenite::tungstenite::Error::Http(response) = e else {
            return DialError::Failed(e.to_string());
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Simmer answers problem+json; a proxy may answer anything.
        let problem = response
            .body()
            .as_deref()
            .and_then(|body| serde_json::from_slice::<Value>(body).ok());
        let code = problem
            .as_ref()
            .and_then(|p| serde_json::from_value::<ErrorCode>(p["code"].clone()).ok());
        let message = problem
            .as_ref()
            .and_then(|p| p["detail"].as_str().or(p["title"].as_str()))
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        DialError::Refused {
            status: status.as_u16(),
            code,
            message,
            retry_after,
        }
    }
}

/// Opens a WebSocket to `url` with a bearer token, from a chosen local
/// address if `bind` is set; `wss://` trusts the web's roots and `tls_roots`.
pub(crate) async fn dial(
    url: &str,
    token: &str,
    subprotocol: Option<&'static str>,
    bind: Option<std::net::IpAddr>,
    tls_roots: &[String],
    ws_config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
) -> Result<Socket, DialError> {
    let failed = |e: &dyn std::fmt::Display| DialError::Failed(e.to_string());
    let mut request = url.into_client_request().map_err(|e| failed(&e))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| failed(&e))?;
    request.headers_mut().insert("authorization", auth);
    if let Some(protocol) = subprotocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    let connector = match request.uri().scheme_str() {
        Some("wss") => Some(crate::tls::ws_connector(tls_roots).map_err(DialError::Failed)?),
        _ => None,
    };
    let (socket, _) = match bind {
        None => {
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(ws_config),
                true,
                connector,
            )
            .await?
        }
        Some(ip) => {
            let uri = request.uri();
            let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
            let port = uri
                .port_u16()
                .unwrap_or(if connector.is_some() { 443 } else { 80 });
            let server: std::net::SocketAddr = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| failed(&e))?
                .next()
                .ok_or_else(|| DialError::Failed(format!("cannot resolve {host}")))?;
            let tcp = if server.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .map_err(|e| failed(&e))?;
            tcp.bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| failed(&e))?;
            let stream = tcp.connect(server).await.map_err(|e| failed(&e))?;
            let _ = stream.set_nodelay(true);
            tokio_tungstenite::client_async_tls_with_config(
                request,
                stream,
                Some(ws_config),
                connector,
            )
            .await?
        }
    };
    Ok(socket)
}

struct Driver {
    config: ClientConfig,
    events: mpsc::UnboundedSender<Event>,
    /// Joined sessions and the newest chat sequence number seen in each.
    joined: BTreeMap<SessionId, u64>,
    pending: HashMap<u64, Pending>,
    next_ref: u64,
    /// Sends to repeat shortly (the server was briefly unavailable).
    retry_soon: Vec<u64>,
    /// When the server asked to be reconnected to (a `reconnect` frame: the
    /// node drains): the first attempt waits this long, not the backoff.
    reconnect_after: Option<Duration>,
}

/// How soon a send refused as unavailable is repeated.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// The longest `Retry-After` of a refused reconnect that is obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

enum Outcome {
    Lost,
    Closed,
}

/// A command taken while connected or not.
enum Step {
    /// A request, registered as pending: send this frame.
    Send(Value),
    /// A fresh token, already kept for reconnects: send it (`auth`).
    Token(String),
    /// Drop the connection (tests, demos).
    Drop,
    /// Close the client.
    Close,
}

impl Driver {
    async fn run(mut self, mut socket: Socket, mut commands: mpsc::Receiver<Command>) {
        loop {
            match self.serve(&mut socket, &mut commands).await {
                Outcome::Closed => break,
                Outcome::Lost => {}
            }
            match self.reconnect(&mut commands).await {
                Some(fresh) => socket = fresh,
                None => break,
            }
        }
        for (_, pending) in self.pending.drain() {
            fail(pending, ClientError::Closed);
        }
    }

    /// Connects again, with exponential backoff (and jitter) or the
    /// server's hint, and resumes. Commands are taken meanwhile: requests
    /// wait for the connection, a new token is used at once, `close` ends
    /// it. `None`: the client was closed.
    async fn reconnect(&mut self, commands: &mut mpsc::Receiver<Command>) -> Option<Socket> {
        let mut attempt = 0u32;
        // The server's hint (a drain) is already spread over its clients.
        let mut wait = self.reconnect_after.take();
        let mut token_refused = false;
        loop {
            if token_refused {
                // The same token would be refused again: wait for another.
                match commands.recv().await.map(|c| self.take(c)) {
                    None | Some(Step::Close) => return None,
                    Some(Step::Token(_)) => token_refused = false,
                    Some(Step::Send(_) | Step::Drop) => continue,
                }
                // A fresh token: try it at once.
                attempt = 0;
                wait = Some(Duration::ZERO);
                continue;
            } else {
                attempt += 1;
                let _ = self.events.send(Event::Reconnecting { attempt });
                let exp = self
                    .config
                    .min_backoff
                    .saturating_mul(2u32.saturating_pow(attempt.min(16) - 1))
                    .min(self.config.max_backoff);
                let jitter = Duration::from_millis(u64::from(Uuid::new_v4().as_bytes()[0]) % 50);
                let sleep = tokio::time::sleep(wait.take().unwrap_or(exp + jitter));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        command = commands.recv() => match command.map(|c| self.take(c)) {
                            None | Some(Step::Close) => return None,
                            Some(Step::Token(_)) => break, // try it now
                            Some(Step::Send(_) | Step::Drop) => {}
                        },
                    }
                }
            }
            let config = self.config.clone();
            let dial = tokio::time::timeout(config.request_timeout, open(&config));
            tokio::pin!(dial);
            let dialled = loop {
                tokio::select! {
                    dialled = &mut dial => break dialled,
                    command = commands.recv() => match command.map(|c| self.take(c)) {
                        None | Some(Step::Close) => return None,
                        Some(Step::Token(_) | Step::Send(_) | Step::Drop) => {}
                    },
                }
            };
            match dialled {
                Ok(Ok(mut socket)) => {
                    if self.resume(&mut socket).await.is_ok() {
                        let _ = self.events.send(Event::Reconnected);
                        return Some(socket);
                    }
                }
                Ok(Err(DialError::Refused {
                    status: status @ (401 | 403),
                    code,
                    message,
                    ..
                })) if self.config.token == config.token => {
                    token_refused = true;
                    let _ = self.events.send(Event::TokenRefused {
                        status,
                        code,
                        message,
                    });
                }
                Ok(Err(DialError::Refused {
                    retry_after: Some(after),
                    ..
                })) => wait = Some(after.min(MAX_RETRY_AFTER)),
                Ok(Err(_)) | Err(_) => {}
            }
        }
    }

    /// Takes a command: a request becomes pending (its frame is sent now,
    /// or by `resume` after a reconnect), a token is kept for reconnects.
    fn take(&mut self, command: Command) -> Step {
        let r = self.take_ref();
        match command {
            Command::Join(sid, tx) => {
                self.pending.insert(r, Pending::Join(sid, tx));
                Step::Send(json!({"type": "join", "session_id": sid, "ref": r}))
            }
            Command::Leave(sid, tx) => {
                self.pending.insert(r, Pending::Leave(sid, tx));
                Step::Send(json!({"type": "leave", "session_id": sid, "ref": r}))
            }
            Command::Chat {
                session_id,
                text,
                client_msg_id,
                reply,
            } => {
                let frame = json!({"type": "chat.send", "session_id": session_id, "text": text, "client_msg_id": client_msg_id, "ref": r});
                self.pending.insert(r, Pending::Chat(frame.clone(), reply));
                Step::Send(frame)
            }
            Command::SetToken(token) => {
                self.config.token.clone_from(&token);
                Step::Token(token)
            }
            Command::DropConnection => Step::Drop,
            Command::Close => Step::Close,
        }
    }

    fn take_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    /// Re-joins every session from its last sequence number and resends
    /// every request still waiting for a reply.
    async fn resume(&mut self, socket: &mut Socket) -> Result<(), ()> {
        let sessions: Vec<(SessionId, u64)> = self.joined.iter().map(|(k, v)| (*k, *v)).collect();
        for (session_id, last_seq) in sessions {
            let r = self.take_ref();
            let frame =
                json!({"type": "join", "session_id": session_id, "last_seq": last_seq, "ref": r});
            send(socket, &frame).await?;
        }
        let frames: Vec<Value> = self
            .pending
            .iter()
            .map(|(r, p)| match p {
                Pending::Join(sid, _) => json!({"type": "join", "session_id": sid, "ref": r}),
                Pending::Leave(sid, _) => json!({"type": "leave", "session_id": sid, "ref": r}),
                Pending::Chat(frame, _) => frame.clone(),
            })
            .collect();
        for frame in frames {
            send(socket, &frame).await?;
        }
        Ok(())
    }

    async fn serve(
        &mut self,
        socket: &mut Socket,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Outcome {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let mut retry = tokio::time::interval(RETRY_DELAY);
        loop {
            tokio::select! {
                _ = retry.tick(), if !self.retry_soon.is_empty() => {
                    for r in std::mem::take(&mut self.retry_soon) {
                        if let Some(Pending::Chat(frame, _)) = self.pending.get(&r) {
                            let frame = frame.clone();
                            if send(socket, &frame).await.is_err() {
                                return Outcome::Lost;
                            }
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return Outcome::Closed };
                    match self.command(socket, command).await {
                        Ok(None) => {}
                        Ok(Some(outcome)) => return outcome,
                        Err(()) => return Outcome::Lost,
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.frame(&text),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Outcome::Lost,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if send(socket, &json!({"type": "ping"})).await.is_err() {
                        return Outcome::Lost;
                    }
                }
            }
        }
    }

    async fn command(
        &mut self,
        socket: &mut Socket,
        command: Command,
    ) -> Result<Option<Outcome>, ()> {
        let frame = match self.take(command) {
            Step::Send(frame) => frame,
            Step::Token(token) => {
                // The reply needs no waiting: a refused token only means the
                // server closes the connection at the old expiry, and the
                // reconnect then uses this one.
                let mut frame = serde_json::to_value(ClientMsg::Auth { token }).unwrap_or_default();
                frame["ref"] = json!(self.take_ref());
                frame
            }
            Step::Drop => {
                let _ = socket.close(None).await;
                return Ok(Some(Outcome::Lost));
            }
            Step::Close => {
                let _ = socket.close(None).await;
                return Ok(Some(Outcome::Closed));
            }
        };
        send(socket, &frame).await?;
        Ok(None)
    }

    fn frame(&mut self, text: &str) {
        let Ok(msg) = serde_json::from_str::<ServerMsg>(text) else {
            return;
        };
        match msg {
            ServerMsg::Reply {
                reference,
                status,
                body,
                error,
            } => {
                let r = match reference {
                    Some(crate::protocol::Ref::Number(r)) => r,
                    _ => return,
                };
                let Some(pending) = self.pending.remove(&r) else {
                    return; // the reply to a resume join
                };
                if status == crate::protocol::ReplyStatus::Error {
                    let e = error.map_or(
                        ClientError::Server {
                            code: ErrorCode::Internal,
                            message: "error without a body".into(),
                        },
                        |e| ClientError::Server {
                            code: e.code,
                            message: e.message,
                        },
                    );
                    // The server could not make it durable (a restart under
                    // way): keep it and resend the same frame shortly.
                    if let (
                        Pending::Chat(..),
                        ClientError::Server {
                            code: ErrorCode::Unavailable,
                            ..
                        },
                    ) = (&pending, &e)
                    {
                        self.pending.insert(r, pending);
                        self.retry_soon.push(r);
                        return;
                    }
                    fail(pending, e);
                    return;
                }
                let body = body.unwrap_or(Value::Null);
                match pending {
                    Pending::Join(sid, tx) => {
                        let snapshot = serde_json::from_value::<JoinSnapshot>(body);
                        if let Ok(s) = &snapshot {
                            self.joined.entry(sid).or_insert(s.last_seq);
                        }
                        let _ = tx.send(snapshot.map_err(|e| ClientError::Server {
                            code: ErrorCode::InvalidFrame,
                            message: e.to_string(),
                        }));
                    }
                    Pending::Leave(sid, tx) => {
                        self.joined.remove(&sid);
                        let _ = tx.send(Ok(()));
                    }
                    Pending::Chat(_, tx) => {
                        let ack = serde_json::from_value::<ChatAck>(body);
                        let _ = tx.send(ack.map_err(|e| ClientError::Server {
                            code: ErrorCode::InvalidFrame,
                            message: e.to_string(),
                        }));
                    }
                }
            }
            ServerMsg::ChatMessage(message) => {
                if let Some(last) = self.joined.get_mut(&message.session_id) {
                    if message.seq <= *last {
                        return; // already delivered before a reconnect
                    }
                    *last = message.seq;
                }
                let _ = self.events.send(Event::Chat(message));
            }
            ServerMsg::ChatDeleted { session_id, seq } => {
                let _ = self.events.send(Event::ChatDeleted { session_id, seq });
            }
            ServerMsg::Presence {
                session_id,
                viewer_count,
                ..
            } => {
                let _ = self.events.send(Event::Presence {
                    session_id,
                    viewer_count,
                });
            }
            ServerMsg::Timer { session_id, timer } => {
                let _ = self.events.send(Event::Timer { session_id, timer });
            }
            ServerMsg::Media { session_id, state } => {
                let _ = self.events.send(Event::Media { session_id, state });
            }
            ServerMsg::SessionEnded { session_id } => {
                self.joined.remove(&session_id);
                let _ = self.events.send(Event::SessionEnded { session_id });
            }
            ServerMsg::Reconnect { after_ms, .. } => {
                // The close follows; the next connection (through the same
                // URL, to a node that is ready) waits this long.
                self.reconnect_after = Some(Duration::from_millis(after_ms));
            }
            ServerMsg::Hello { .. } | ServerMsg::Pong { .. } | ServerMsg::Error { .. } => {}
        }
    }
}

fn fail(pending: Pending, error: ClientError) {
    match pending {
        Pending::Join(_, tx) => {
            let _ = tx.send(Err(error));
        }
        Pending::Leave(_, tx) => {
            let _ = tx.send(Err(error));
        }
        Pending::Chat(_, tx) => {
            let _ = tx.send(Err(error));
        }
    }
}

async fn send(socket: &mut Socket, frame: &Value) -> Result<(), ()> {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|_| ())
}
