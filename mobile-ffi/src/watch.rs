//! The smartwatch side: pair (show a code, wait until the user claims it),
//! then follow the watch feed and show the countdown. A thin shell on
//! `mobile_bridge::watch_client`: a task reads the feed all the time, so the
//! display is current whether or not the app reads frames, and the display
//! getters answer at once, never waiting on the network.

use std::sync::Arc;
use std::time::Duration;

use mobile_bridge::watch_client::{self, WatchClient, WatchConfig, WatchError};
use tokio::sync::{broadcast, mpsc, oneshot};
use watch_sync::{ClockSync, WatchDisplay};

use crate::error::SimmerError;
use crate::rest::{check_roots, http_base, Server};
use crate::timer::{RecipeStep, RecipeTimer};
use crate::{lock, now_ms};

/// Frames kept for `next_frame` when the app reads none: beyond this the
/// oldest are dropped (the display has taken them in already). A minute of
/// ticks.
const FRAME_BACKLOG: usize = 64;

/// Most `ping`s one `sync_clock` sends.
const MAX_CLOCK_SAMPLES: u32 = 50;

/// Asks the server for a pairing code (`POST /api/v1/watch/pairings`, no
/// account needed): show `code()` on the watch, then `wait_claimed`.
#[uniffi::export(async_runtime = "tokio")]
pub async fn request_pairing(
    base_url: String,
    device_name: String,
    tls_roots: Vec<String>,
) -> Result<Arc<WatchPairing>, SimmerError> {
    let server = Server::new(&base_url, tls_roots)?;
    let pairing =
        watch_client::request_pairing(&server.client, &server.http, &device_name, None).await?;
    Ok(Arc::new(WatchPairing { pairing, server }))
}

/// A pairing code waiting for a user to claim it on their phone or in the
/// browser ("Pair a watch").
#[derive(uniffi::Object)]
pub struct WatchPairing {
    pairing: watch_client::WatchPairing,
    server: Server,
}

impl std::fmt::Debug for WatchPairing {
    // Without the poll secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchPairing")
            .field("pairing_id", &self.pairing.pairing_id)
            .field("code", &self.pairing.code)
            .finish_non_exhaustive()
    }
}

/// A paired watch's credentials: keep `device_token` (secure storage) and
/// connect with it from now on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WatchDevice {
    /// The watch's id (the user can remove it: `DELETE /watch/devices/{id}`).
    pub device_id: String,
    /// The watch's bearer token for `WatchFeed.connect`.
    pub device_token: String,
    /// The session the user paired it with.
    pub session_id: String,
}

#[uniffi::export(async_runtime = "tokio")]
impl WatchPairing {
    /// The code to show, 6 characters, easy to type.
    pub fn code(&self) -> String {
        self.pairing.code.clone()
    }

    /// The pairing's id.
    pub fn pairing_id(&self) -> String {
        self.pairing.pairing_id.to_string()
    }

    /// Polls until a user claims the code; fails with `PairingExpired` when
    /// the code expires or `timeout_ms` passes first.
    pub async fn wait_claimed(&self, timeout_ms: u64) -> Result<WatchDevice, SimmerError> {
        let device = self
            .pairing
            .wait_claimed(&self.server.client, Duration::from_millis(timeout_ms))
            .await?;
        Ok(WatchDevice {
            device_id: device.device_id.to_string(),
            device_token: device.token,
            session_id: device.session_id.to_string(),
        })
    }
}

/// The result of a clock sync: how far the server's clock is from the
/// watch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct ClockOffset {
    /// Server clock minus the watch's clock, milliseconds.
    pub offset_ms: i64,
    /// The round trip of the sample kept (the fastest), milliseconds; the
    /// offset is off by at most half of it.
    pub rtt_ms: i64,
}

impl From<watch_sync::ClockSample> for ClockOffset {
    fn from(sample: watch_sync::ClockSample) -> Self {
        let watch_sync::ClockSample { rtt_ms, offset_ms } = sample;
        Self { offset_ms, rtt_ms }
    }
}

/// A frame of the watch feed, for the app to react to (buzz on `Alert`).
/// The display follows every frame by itself.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum WatchFrame {
    /// On connect, and when the watch is moved to another session: the
    /// whole timer.
    Snapshot {
        /// The timer now.
        timer: RecipeTimer,
    },
    /// The timer changed (started, paused, next step, time added...).
    TimerChanged {
        /// The timer now.
        timer: RecipeTimer,
    },
    /// A whole second of a running countdown.
    Tick {
        /// The server's clock when it was sent.
        server_time_ms: i64,
        /// The step counting down.
        step_index: u32,
        /// When it reaches zero, server time.
        deadline_ms: i64,
        /// Left at `server_time_ms`.
        remaining_ms: i64,
    },
    /// A step's countdown reached zero: buzz. Once per alert, also across
    /// reconnects.
    Alert {
        /// The server's clock when it was sent.
        server_time_ms: i64,
        /// The step that finished.
        step_index: u32,
        /// When it reached zero, server time.
        due_ms: i64,
        /// Counts the session's alerts.
        alert_seq: u64,
    },
}

impl WatchFrame {
    /// The app's view of a feed frame; `None` for what the SDK handles
    /// itself (`pong`: clock sync; `bye`: the end of the feed).
    fn from_feed(frame: watch_sync::WatchFrame) -> Option<Self> {
        use watch_sync::WatchFrame as F;
        match frame {
            F::Snapshot {
                server_time_ms,
                timer,
            } => Some(WatchFrame::Snapshot {
                timer: RecipeTimer::from_watch(timer, server_time_ms),
            }),
            F::Timer {
                server_time_ms,
                timer,
            } => Some(WatchFrame::TimerChanged {
                timer: RecipeTimer::from_watch(timer, server_time_ms),
            }),
            F::Tick {
                server_time_ms,
                step_index,
                deadline_ms,
                remaining_ms,
            } => Some(WatchFrame::Tick {
                server_time_ms,
                step_index,
                deadline_ms,
                remaining_ms,
            }),
            F::Alert {
                server_time_ms,
                step_index,
                due_ms,
                alert_seq,
            } => Some(WatchFrame::Alert {
                server_time_ms,
                step_index,
                due_ms,
                alert_seq,
            }),
            F::Pong { .. } | F::Bye { .. } => None,
        }
    }
}

/// What the watch shows, as of the latest frame.
#[derive(Debug, Default)]
struct Shown {
    display: WatchDisplay,
    clock: ClockSync,
}

enum Command {
    SyncClock(u32, oneshot::Sender<Result<ClockOffset, SimmerError>>),
    Disconnect,
}

/// A paired watch following its session's timer (`/watch/ws`): reconnects
/// by itself when a server node drains. Render `displayed_remaining_ms()`
/// and `current_step()` as often as the screen needs; read `next_frame()`
/// in a loop to react to alerts.
#[derive(uniffi::Object)]
pub struct WatchFeed {
    shown: Arc<std::sync::Mutex<Shown>>,
    frames: tokio::sync::Mutex<broadcast::Receiver<WatchFrame>>,
    commands: mpsc::Sender<Command>,
    /// Why the feed ended, once it has.
    ended: Arc<std::sync::Mutex<Option<SimmerError>>>,
}

impl std::fmt::Debug for WatchFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchFeed")
            .field("shown", &self.shown)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl WatchFeed {
    /// Opens the watch feed with a paired watch's `device_token`. The first
    /// frame is a `Snapshot`; call `sync_clock` next.
    #[uniffi::constructor]
    pub async fn connect(
        base_url: String,
        device_token: String,
        tls_roots: Vec<String>,
    ) -> Result<Arc<Self>, SimmerError> {
        check_roots(&tls_roots)?;
        let mut config = WatchConfig::new(&http_base(&base_url)?, &device_token);
        config.tls_roots = tls_roots;
        let watch = WatchClient::connect(config).await.map_err(|e| match e {
            // Opening failed: the network, TLS, or a refused token.
            WatchError::Feed(why) => SimmerError::Network { reason: why },
            other => other.into(),
        })?;
        let shown = Arc::new(std::sync::Mutex::new(Shown::default()));
        let ended = Arc::new(std::sync::Mutex::new(None));
        let (frames_tx, frames) = broadcast::channel(FRAME_BACKLOG);
        let (commands, commands_rx) = mpsc::channel(8);
        tokio::spawn(follow(
            watch,
            Arc::clone(&shown),
            frames_tx,
            commands_rx,
            Arc::clone(&ended),
        ));
        Ok(Arc::new(Self {
            shown,
            frames: tokio::sync::Mutex::new(frames),
            commands,
            ended,
        }))
    }

    /// Estimates the watch's clock offset from `samples` ping/pong exchanges
    /// (5 is plenty; at most 50), keeping the fastest. Until then the display
    /// trusts the latest frame's stamp (off by the one-way delay).
    pub async fn sync_clock(&self, samples: u32) -> Result<ClockOffset, SimmerError> {
        let (reply, answer) = oneshot::channel();
        let samples = samples.clamp(1, MAX_CLOCK_SAMPLES);
        if self
            .commands
            .send(Command::SyncClock(samples, reply))
            .await
            .is_err()
        {
            return Err(self.end_reason());
        }
        answer.await.unwrap_or_else(|_| Err(self.end_reason()))
    }

    /// The next frame; waits until there is one. Fails once the feed has
    /// ended, with `FeedClosed` (the server's `bye` reason) or `Closed`.
    pub async fn next_frame(&self) -> Result<WatchFrame, SimmerError> {
        let mut frames = self.frames.lock().await;
        loop {
            match frames.recv().await {
                Ok(frame) => return Ok(frame),
                // The app fell behind: the oldest were dropped.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Err(self.end_reason()),
            }
        }
    }

    /// The countdown to show now, in milliseconds: from the running step's
    /// deadline and the watch's clock corrected by the offset, so it is right
    /// between frames and whatever the watch's clock says. As told by the
    /// server when paused or idle; `None` on a manual step or before the
    /// first frame.
    pub fn displayed_remaining_ms(&self) -> Option<i64> {
        let shown = lock(&self.shown);
        shown.display.remaining_ms(shown.clock.server_now(now_ms()))
    }

    /// The timer as of the latest frame (`server_time_ms` is that frame's).
    pub fn timer(&self) -> Option<RecipeTimer> {
        let shown = lock(&self.shown);
        let as_of = shown.display.as_of_ms();
        shown
            .display
            .timer()
            .map(|t| RecipeTimer::from_watch(t.clone(), as_of))
    }

    /// The step shown: its label (short) or text, and its duration.
    pub fn current_step(&self) -> Option<RecipeStep> {
        let shown = lock(&self.shown);
        shown
            .display
            .timer()
            .and_then(|t| t.step.clone())
            .map(Into::into)
    }

    /// The current estimate of the server's clock minus the watch's, ms.
    pub fn clock_offset_ms(&self) -> i64 {
        lock(&self.shown).clock.offset_ms()
    }

    /// Closes the feed; `next_frame` then fails with `Closed`.
    pub async fn disconnect(&self) {
        let _ = self.commands.send(Command::Disconnect).await;
    }
}

impl WatchFeed {
    fn end_reason(&self) -> SimmerError {
        lock(&self.ended).clone().unwrap_or(SimmerError::Closed)
    }
}

/// Reads the feed until it ends (or the app disconnects or drops the
/// `WatchFeed`), keeping `shown` current; runs a clock sync when asked.
async fn follow(
    mut watch: WatchClient,
    shown: Arc<std::sync::Mutex<Shown>>,
    frames: broadcast::Sender<WatchFrame>,
    mut commands: mpsc::Receiver<Command>,
    ended: Arc<std::sync::Mutex<Option<SimmerError>>>,
) {
    let show = |watch: &WatchClient| {
        let mut shown = lock(&shown);
        shown.display.clone_from(watch.display());
        shown.clock.clone_from(watch.clock());
    };
    let why = loop {
        tokio::select! {
            // A command stops a `next_frame` that is waiting for the socket
            // (where it is cancel-safe), or, rarely, one that is opening the
            // feed again after a drain: then the next read finds the old
            // socket closed and the feed ends, as a lost link would.
            command = commands.recv() => match command {
                Some(Command::SyncClock(samples, reply)) => {
                    let samples = usize::try_from(samples).unwrap_or(1);
                    let result = watch.sync_clock(samples).await;
                    show(&watch);
                    match result {
                        Ok(sample) => {
                            let _ = reply.send(Ok(sample.into()));
                        }
                        Err(e) => {
                            let e = SimmerError::from(e);
                            let _ = reply.send(Err(e.clone()));
                            break e;
                        }
                    }
                }
                Some(Command::Disconnect) | None => break SimmerError::Closed,
            },
            frame = watch.next_frame() => {
                show(&watch);
                match frame {
                    Ok(frame) => {
                        if let Some(frame) = WatchFrame::from_feed(frame) {
                            // No receiver only when the WatchFeed is gone,
                            // and then `commands` ends the loop.
                            let _ = frames.send(frame);
                        }
                    }
                    Err(e) => break e.into(),
                }
            }
        }
    };
    *lock(&ended) = Some(why);
}
