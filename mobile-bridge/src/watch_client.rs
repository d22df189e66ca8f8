//! A reference smartwatch client (feature `client`): it pairs (shows a code,
//! polls until a user claims it), follows the watch feed, estimates its clock
//! offset from `ping`/`pong` (keeping the lowest round trip) and computes the
//! countdown to display. Its clock can be skewed and its link delayed, to
//! show that the display stays right anyway.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mobile_bridge::watch_client::WatchError> {
//! use mobile_bridge::watch_client::{request_pairing, WatchClient, WatchConfig};
//! let http = reqwest::Client::new();
//! let pairing = request_pairing(&http, "http://127.0.0.1:8080", "Kitchen watch", None).await?;
//! println!("type {} on your phone", pairing.code);
//! let device = pairing.wait_claimed(&http, std::time::Duration::from_secs(300)).await?;
//! let mut watch = WatchClient::connect(WatchConfig::new("http://127.0.0.1:8080", &device.token)).await?;
//! watch.sync_clock(5).await?;
//! loop {
//!     let frame = watch.next_frame().await?;
//!     println!("{} -> {:?} ms left", frame.kind(), watch.displayed_remaining_ms());
//! }
//! # }
//! ```

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use watch_sync::{ClockSample, ClockSync, WatchDisplay, WatchFrame};

use crate::client::{dial, Socket};

/// What went wrong.
#[derive(Debug)]
pub enum WatchError {
    /// The server answered with an error (status and problem body).
    Http(String),
    /// The pairing expired before anyone claimed it.
    Expired,
    /// Could not connect, or the feed closed (with the `bye` reason if any).
    Feed(String),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Http(why) => write!(f, "request failed: {why}"),
            WatchError::Expired => f.write_str("the pairing expired"),
            WatchError::Feed(why) => write!(f, "watch feed: {why}"),
        }
    }
}

impl std::error::Error for WatchError {}

fn http_error(e: impl std::fmt::Display) -> WatchError {
    WatchError::Http(e.to_string())
}

/// A pairing the watch asked for: show `code`, then wait for the claim.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchPairing {
    pub pairing_id: Uuid,
    pub code: String,
    pub poll_secret: String,
    pub poll_interval_ms: u64,
    #[serde(skip)]
    base_url: String,
}

/// A paired watch's credentials.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceToken {
    pub device_id: Uuid,
    #[serde(rename = "device_token")]
    pub token: String,
    pub session_id: Uuid,
}

#[derive(Debug, Deserialize)]
struct PairingState {
    status: String,
    device_id: Option<Uuid>,
    device_token: Option<String>,
    session_id: Option<Uuid>,
}

/// Asks the server (`http://host:port`) for a pairing code.
pub async fn request_pairing(
    http: &reqwest::Client,
    base_url: &str,
    device_name: &str,
    tick_interval_s: Option<u32>,
) -> Result<WatchPairing, WatchError> {
    let mut body = json!({ "device_name": device_name });
    if let Some(tick) = tick_interval_s {
        body["tick_interval_s"] = json!(tick);
    }
    let resp = http
        .post(format!("{base_url}/api/v1/watch/pairings"))
        .json(&body)
        .send()
        .await
        .map_err(http_error)?;
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(WatchError::Http(format!(
            "{status}: {}",
            resp.text().await.unwrap_or_default()
        )));
    }
    let mut pairing: WatchPairing = resp.json().await.map_err(http_error)?;
    pairing.base_url = base_url.trim_end_matches('/').to_owned();
    Ok(pairing)
}

impl WatchPairing {
    /// Polls until a user claims the code (or it expires, or `timeout`).
    pub async fn wait_claimed(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<DeviceToken, WatchError> {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            let resp = http
                .get(format!(
                    "{}/api/v1/watch/pairings/{}",
                    self.base_url, self.pairing_id
                ))
                .header("X-Poll-Secret", &self.poll_secret)
                .send()
                .await
                .map_err(http_error)?;
            if !resp.status().is_success() {
                return Err(WatchError::Http(resp.status().to_string()));
            }
            let state: PairingState = resp.json().await.map_err(http_error)?;
            match (
                state.status.as_str(),
                state.device_id,
                state.device_token,
                state.session_id,
            ) {
                ("claimed", Some(device_id), Some(token), Some(session_id)) => {
                    return Ok(DeviceToken {
                        device_id,
                        token,
                        session_id,
                    })
                }
                ("expired", ..) => return Err(WatchError::Expired),
                _ => {}
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(WatchError::Expired);
            }
            tokio::time::sleep(Duration::from_millis(self.poll_interval_ms.max(100))).await;
        }
    }
}

/// How a watch connects, and how far off its clock and link are.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// `http://host:port` of the server (or `https://`).
    pub base_url: String,
    pub token: String,
    /// Roots trusted for `https://` beside the web's (PEM certificates).
    pub tls_roots: Vec<String>,
    /// Seconds between ticks (`None`: the device's setting; 0: changes only).
    pub tick: Option<u32>,
    /// The watch's clock runs this far ahead (negative: behind).
    pub skew_ms: i64,
    /// Each way, every frame spends this long on the link...
    pub link_delay: Duration,
    /// ...plus a random extra of up to this much (each way independently, so
    /// the two legs of a `ping` differ).
    pub link_jitter: Duration,
    /// Local address to connect from.
    pub bind: Option<std::net::IpAddr>,
}

impl WatchConfig {
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            tls_roots: Vec::new(),
            tick: None,
            skew_ms: 0,
            link_delay: Duration::ZERO,
            link_jitter: Duration::ZERO,
            bind: None,
        }
    }
}

/// A connected watch.
#[derive(Debug)]
pub struct WatchClient {
    config: WatchConfig,
    socket: Socket,
    sync: ClockSync,
    display: WatchDisplay,
    /// Frames read while waiting for a `pong`, for `next_frame`.
    queued: VecDeque<WatchFrame>,
    /// State of the jitter's random numbers.
    rng: u64,
    /// Feeds opened again after a drain.
    reconnects: u32,
}

/// First wait before opening the feed again without a hint from the server.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long a watch keeps trying to open its feed again.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl WatchClient {
    /// Connects to the watch feed (`/watch/ws`).
    pub async fn connect(config: WatchConfig) -> Result<Self, WatchError> {
        let socket = Self::dial(&config).await?;
        Ok(Self {
            config,
            socket,
            sync: ClockSync::new(),
            display: WatchDisplay::new(),
            queued: VecDeque::new(),
            rng: u64::try_from(system_ms()).unwrap_or(1) | 1,
            reconnects: 0,
        })
    }

    async fn dial(config: &WatchConfig) -> Result<Socket, WatchError> {
        let ws_base = config.base_url.replacen("http", "ws", 1);
        let url = match config.tick {
            Some(tick) => format!("{ws_base}/watch/ws?tick={tick}"),
            None => format!("{ws_base}/watch/ws"),
        };
        let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        dial(
            &url,
            &config.token,
            None,
            config.bind,
            &config.tls_roots,
            ws_config,
        )
        .await
        .map_err(|e| WatchError::Feed(e.to_string()))
    }

    /// One leg's time on the simulated link.
    fn link_leg(&mut self) -> Duration {
        let jitter = u64::try_from(self.config.link_jitter.as_micros()).unwrap_or(0);
        if jitter == 0 {
            return self.config.link_delay;
        }
        // xorshift64: cheap, good enough to vary the legs.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.config.link_delay + Duration::from_micros(self.rng % (jitter + 1))
    }

    /// The watch's own clock (skewed as configured), milliseconds.
    pub fn local_now(&self) -> i64 {
        system_ms() + self.config.skew_ms
    }

    /// Opens the feed again after `wait` (then with a doubling backoff), for
    /// at most [`RECONNECT_FOR`]; the display and the clock estimate carry
    /// on, and the new feed starts with a `snapshot`.
    async fn reconnect(&mut self, wait: Duration) -> Result<(), WatchError> {
        let give_up = tokio::time::Instant::now() + RECONNECT_FOR;
        let mut wait = wait;
        loop {
            tokio::time::sleep(wait).await;
            match Self::dial(&self.config).await {
                Ok(socket) => {
                    self.socket = socket;
                    self.queued.clear();
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() >= give_up => return Err(e),
                Err(_) => wait = (wait * 2).clamp(FIRST_RETRY, MAX_RETRY),
            }
        }
    }

    /// How many times the feed was opened again (a drain's `bye`).
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The next frame of the feed (pongs included), applied to the display
    /// and the clock estimate. A `bye` ends the feed with its reason, except
    /// `unavailable` (a draining node): then the feed is opened again after
    /// the server's `after_ms`, and the next frame is the new `snapshot`.
    pub async fn next_frame(&mut self) -> Result<WatchFrame, WatchError> {
        if let Some(frame) = self.queued.pop_front() {
            return Ok(frame);
        }
        self.read_frame().await
    }

    async fn read_frame(&mut self) -> Result<WatchFrame, WatchError> {
        loop {
            let msg = self
                .socket
                .next()
                .await
                .ok_or_else(|| WatchError::Feed("closed".into()))?
                .map_err(|e| WatchError::Feed(e.to_string()))?;
            let Message::Text(text) = msg else {
                if let Message::Close(close) = msg {
                    // 1001 without a `bye` first: the node went away; come
                    // back as a `bye unavailable` says.
                    let away = close.as_ref().is_some_and(|c| u16::from(c.code) == 1001);
                    if away {
                        self.reconnect(FIRST_RETRY).await?;
                        continue;
                    }
                    return Err(WatchError::Feed(format!("closed: {close:?}")));
                }
                continue;
            };
            let leg = self.link_leg();
            if !leg.is_zero() {
                tokio::time::sleep(leg).await;
            }
            let received = self.local_now();
            let frame: WatchFrame = serde_json::from_str(&text)
                .map_err(|e| WatchError::Feed(format!("bad frame {text}: {e}")))?;
            match &frame {
                WatchFrame::Pong {
                    server_time_ms,
                    client_time_ms,
                } => {
                    self.sync
                        .on_pong(*client_time_ms, *server_time_ms, received);
                }
                WatchFrame::Bye {
                    reason, after_ms, ..
                } if reason == "unavailable" => {
                    // The node drains (or cannot reach the session now):
                    // reconnect after its hint, through the same URL.
                    let wait = after_ms.map_or(FIRST_RETRY, Duration::from_millis);
                    self.reconnect(wait).await?;
                    continue;
                }
                WatchFrame::Bye { reason, .. } => {
                    return Err(WatchError::Feed(format!("bye: {reason}")));
                }
                WatchFrame::Snapshot { server_time_ms, .. }
                | WatchFrame::Timer { server_time_ms, .. }
                | WatchFrame::Tick { server_time_ms, .. }
                | WatchFrame::Alert { server_time_ms, .. } => {
                    if self.sync.best().is_none() {
                        self.sync.on_frame(*server_time_ms, received);
                    }
                }
            }
            self.display.apply(&frame);
            return Ok(frame);
        }
    }

    /// Sends `samples` pings one after another and keeps the best estimate
    /// (lowest round trip); returns it. Frames that arrive meanwhile are kept
    /// for [`WatchClient::next_frame`].
    pub async fn sync_clock(&mut self, samples: usize) -> Result<ClockSample, WatchError> {
        for _ in 0..samples.max(1) {
            let sent = self.local_now();
            let ping = json!({"type": "ping", "client_time_ms": sent}).to_string();
            // The ping spends the link delay on its way out.
            let leg = self.link_leg();
            if !leg.is_zero() {
                tokio::time::sleep(leg).await;
            }
            self.socket
                .send(Message::Text(ping.into()))
                .await
                .map_err(|e| WatchError::Feed(e.to_string()))?;
            loop {
                let frame = self.read_frame().await?;
                if matches!(frame, WatchFrame::Pong { client_time_ms, .. } if client_time_ms == sent)
                {
                    break;
                }
                self.queued.push_back(frame);
            }
        }
        self.sync
            .best()
            .ok_or_else(|| WatchError::Feed("no pong".into()))
    }

    /// The countdown the watch shows now (from its own clock, corrected by
    /// the estimated offset); `None` on a manual step or before a snapshot.
    pub fn displayed_remaining_ms(&self) -> Option<i64> {
        self.display
            .remaining_ms(self.sync.server_now(self.local_now()))
    }

    pub fn clock(&self) -> &ClockSync {
        &self.sync
    }

    pub fn display(&self) -> &WatchDisplay {
        &self.display
    }
}
