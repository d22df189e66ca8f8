//! `MediaRoom`: one live session's relay. The host's peer connection
//! (WHIP) feeds one local track per kind; every viewer's peer connection
//! (WHEP) is bound to those tracks, so each RTP packet is read once and
//! written to every viewer (the crate rewrites SSRC and payload type per
//! viewer; [`Rewriter`] keeps sequence numbers and timestamps continuous
//! across republishing). Viewers' keyframe requests reach the host,
//! rate-limited; a viewer that connects asks for one so it starts fast.
//!
//! The actor serialises commands; the peer connections and their tasks run on
//! the media runtime (all cores). The actor is supervised: when it restarts,
//! every peer connection of the old room is closed and clients are told over
//! `/ws` (`media {state: "reconnect"}`) to redo their WHIP/WHEP sessions.
//!
//! Here: the room's types and the actor. `RoomCore`, the state the crate's
//! callbacks reach, is worked on in `state` (creation, numbers, closing),
//! `peers` (WHIP/WHEP connections), `relay` (forwarding the host's tracks)
//! and `feedback` (keyframe requests, NACKs and receiver reports).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use mobile_bridge::protocol::{MediaState, ServerMsg};
use mobile_bridge::SessionId;
use uuid::Uuid;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};
use webrtc::track::track_remote::TrackRemote;

mod edge_viewers;
mod feedback;
mod lanes;
mod peers;
mod rate;
mod relay;
mod renumber;
mod slots;
mod state;

use lanes::{Kind, Lane, Seat};
pub use slots::Holder;
use slots::{PublishClaim, Reservation, Slots};

use super::edge;
use super::engine::Sfu;
use super::rewrite::{LossCounter, Rewriter};
use super::sdp;
use crate::bus::{Bus, BusEvent};
use crate::metrics::Metrics;

/// Keyframe requests forwarded to the host, at most one per this interval;
/// requests within it are answered by one deferred request at its end.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);

/// Why a WHIP/WHEP request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MediaError {
    #[error("{0}")]
    BadOffer(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the room is full ({0} viewers)")]
    Full(usize),
    /// One viewer or one address holds as many viewer slots as it may.
    #[error("{detail}")]
    TooMany {
        detail: String,
        retry_after: Duration,
    },
    #[error("no such media session")]
    NotFound,
    #[error("not your media session")]
    Forbidden,
    #[error("media relay unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> MediaError {
    MediaError::Unavailable(e.to_string())
}

/// The answer to an offer, and the resource that now stands for it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub resource: Uuid,
    pub sdp: String,
}

/// Where the host's video is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PublisherState {
    /// Video is arriving.
    Publishing,
    /// A publish was offered; the connection is being set up.
    Connecting,
    NotPublishing,
}

/// What `GET /sessions/{id}/media` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MediaStats {
    pub publisher: PublisherState,
    /// The codecs being relayed (e.g. `video/VP8`, `audio/opus`).
    pub codecs: Vec<String>,
    pub subscribers: usize,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets written to viewers (one per viewer per packet in).
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Bits per second in and out over the last few seconds (zero soon after
    /// the host stops).
    pub bitrate_in: u64,
    pub bitrate_out: u64,
    /// Keyframe requests from viewers, and how many were sent on to the host
    /// (the rest were within the rate limit).
    pub keyframe_requests: u64,
    pub keyframe_requests_forwarded: u64,
    /// Packets the host sent that have not reached the relay (gaps in its
    /// sequence numbers not filled by retransmission).
    pub packets_lost_in: u64,
    /// Packets viewers report lost in their receiver reports (cumulative,
    /// summed over viewers and over those who left).
    pub packets_lost_out: u64,
    /// Packets viewers asked the relay to send again (NACK); the relay
    /// answers from its per-viewer buffer.
    pub nack_requests: u64,
    /// Packets not sent to viewers because they waited longer than
    /// `SIMMER_MEDIA_MAX_QUEUE_MS` (one per viewer per packet): the relay
    /// fell behind and skipped ahead to live. (Absent from a node of an
    /// older release during a rolling upgrade: 0.)
    #[serde(default)]
    pub packets_dropped: u64,
    /// Packets sent again to viewers on their NACKs, from the relay's own
    /// history: at most 512 a second per viewer, so what was asked beyond
    /// that is not sent. (Viewers on the edge; the `SIMMER_MEDIA_EDGE=false`
    /// path resends inside the `webrtc` crate, uncounted. Absent from a node
    /// of an older release: 0.)
    #[serde(default)]
    pub packets_resent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    keyframe_requests: AtomicU64,
    keyframes_forwarded: AtomicU64,
    lost_in: AtomicU64,
    lost_out: AtomicU64,
    nacks: AtomicU64,
    dropped: AtomicU64,
    resent: AtomicU64,
    rates: rate::RateMeter,
}

struct Publisher {
    id: Uuid,
    user: Uuid,
    pc: Arc<RTCPeerConnection>,
    since: Instant,
}

/// How a viewer is connected.
enum Viewer {
    /// A peer connection of the `webrtc` crate, bound to its lane's tracks.
    Crate {
        pc: Arc<RTCPeerConnection>,
        video: Arc<RTCRtpSender>,
    },
    /// A viewer of the relay's own edge.
    Edge(Arc<edge::Peer>),
}

impl Viewer {
    /// ICE is up (or was, and may come back).
    fn connected(&self) -> bool {
        match self {
            Self::Crate { pc, .. } => matches!(
                pc.connection_state(),
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Disconnected
            ),
            Self::Edge(peer) => peer.is_connected(),
        }
    }

    async fn close(&self) {
        match self {
            Self::Crate { pc, .. } => {
                let _ = pc.close().await;
            }
            Self::Edge(peer) => peer.close(),
        }
    }
}

struct Subscriber {
    user: Uuid,
    guest: bool,
    viewer: Viewer,
    seat: Seat,
    /// Dropped with the subscriber: that ends its RTCP readers. The crate's
    /// own stop signal wakes only a read that is waiting at that instant, so a
    /// reader between two reads would wait for good.
    _readers: tokio::sync::watch::Sender<()>,
}

/// The shared state of one room, reached from the crate's callbacks.
struct RoomCore {
    session_id: Uuid,
    sfu: Sfu,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    /// Viewers are spread over these (see `lanes`).
    lanes: Vec<Arc<Lane>>,
    /// The codec of the lanes' video tracks.
    video_codec: Mutex<RTCRtpCodecCapability>,
    rewrite: [Mutex<Rewriter>; 2],
    publisher: Mutex<Option<Publisher>>,
    /// The host's video SSRC, for keyframe requests.
    video_ssrc: AtomicU32,
    /// Viewers whose offer was answered (each holds a slot).
    subscribers: Mutex<HashMap<Uuid, Subscriber>>,
    /// Viewer slots, taken before an offer is negotiated.
    slots: Mutex<Slots>,
    /// A publish is being negotiated (one at a time).
    publish_pending: std::sync::atomic::AtomicBool,
    counters: Counters,
    last_keyframe_request: Mutex<Option<Instant>>,
    codecs: Mutex<Vec<String>>,
    /// Counted in the `media_publishers` gauge.
    publishing: std::sync::atomic::AtomicBool,
    /// Lanes write nothing until then (`Fault::Stall`).
    #[cfg(feature = "test-hooks")]
    stalled_until: Mutex<Option<Instant>>,
}

use super::lock;

fn local_track(codec: RTCRtpCodecCapability, kind: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        codec,
        kind.to_owned(),
        "simmer".to_owned(),
    ))
}

/// One live session's media relay actor.
pub struct MediaRoom {
    session_id: Uuid,
    sfu: Sfu,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    core: Arc<RoomCore>,
    shutting_down: bool,
}

impl std::fmt::Debug for MediaRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRoom")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl MediaRoom {
    pub fn new(session_id: Uuid, sfu: Sfu, bus: Arc<dyn Bus>, metrics: Metrics) -> Self {
        let core = RoomCore::new(session_id, sfu.clone(), bus.clone(), metrics.clone());
        Self {
            session_id,
            sfu,
            bus,
            metrics,
            core,
            shutting_down: false,
        }
    }

    /// Runs `work` on the media runtime.
    fn on_media<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, MediaError>> + Send + 'static,
    ) -> ResponseFuture<Result<T, MediaError>> {
        let handle = self.sfu.runtime().spawn(work);
        Box::pin(async move { handle.await.map_err(unavailable)? })
    }

    /// Closes the current room's connections and starts a fresh one.
    fn reset(&mut self) {
        let old = std::mem::replace(
            &mut self.core,
            RoomCore::new(
                self.session_id,
                self.sfu.clone(),
                self.bus.clone(),
                self.metrics.clone(),
            ),
        );
        self.sfu.runtime().spawn(old.close_all());
    }
}

impl Actor for MediaRoom {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.sfu.runtime().spawn(self.core.clone().close_all());
    }
}

impl Supervised for MediaRoom {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.metrics
            .actor_restarted("stopped", "media", self.session_id);
        self.reset();
        self.core.announce(MediaState::Reconnect);
    }
}

impl Drop for MediaRoom {
    fn drop(&mut self) {
        // A panicked actor is dropped without `stopped`: free its
        // connections anyway.
        let core = self.core.clone();
        drop(self.sfu.runtime().spawn(core.close_all()));
    }
}

/// The host publishes (WHIP offer in, answer out).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<Answer, MediaError>")]
pub struct Publish {
    pub user: Uuid,
    pub offer: String,
}

impl Handler<Publish> for MediaRoom {
    type Result = ResponseFuture<Result<Answer, MediaError>>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        self.on_media(self.core.clone().publish(msg.user, msg.offer))
    }
}

/// A viewer plays (WHEP offer in, answer out).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<Answer, MediaError>")]
pub struct Subscribe {
    /// The viewer and its client address, for the per-viewer limits.
    pub viewer: Holder,
    /// A guest (sent away when the host turns guests off).
    pub guest: bool,
    pub offer: String,
}

impl Handler<Subscribe> for MediaRoom {
    type Result = ResponseFuture<Result<Answer, MediaError>>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.on_media(
            self.core
                .clone()
                .subscribe(msg.viewer, msg.guest, msg.offer),
        )
    }
}

/// Ends a WHIP (`publisher: true`) or WHEP resource of `user`.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), MediaError>")]
pub struct EndResource {
    pub resource: Uuid,
    pub user: Uuid,
    pub publisher: bool,
}

impl Handler<EndResource> for MediaRoom {
    type Result = ResponseFuture<Result<(), MediaError>>;

    fn handle(&mut self, msg: EndResource, _: &mut Context<Self>) -> Self::Result {
        let core = self.core.clone();
        if msg.publisher {
            self.on_media(core.unpublish(msg.resource, msg.user))
        } else {
            self.on_media(core.unsubscribe(msg.resource, msg.user))
        }
    }
}

/// Ends every guest's playback: the host turned guests off.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
pub struct EndGuests;

impl Handler<EndGuests> for MediaRoom {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: EndGuests, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.core.clone().end_guests())
    }
}

/// The room's numbers now.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "MediaStats")]
pub struct GetMediaStats;

impl Handler<GetMediaStats> for MediaRoom {
    type Result = MessageResult<GetMediaStats>;

    fn handle(&mut self, _: GetMediaStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.stats())
    }
}

/// The session ended: close everything and stop for good.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopMedia;

impl Handler<StopMedia> for MediaRoom {
    type Result = ();

    fn handle(&mut self, _: StopMedia, ctx: &mut Context<Self>) {
        self.shutting_down = true;
        ctx.stop();
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<crate::faults::InjectFault> for MediaRoom {
    type Result = ();

    fn handle(&mut self, msg: crate::faults::InjectFault, ctx: &mut Context<Self>) {
        match msg.0 {
            crate::faults::Fault::Stall(d) => {
                *lock(&self.core.stalled_until) = Some(Instant::now() + d);
            }
            fault => fault.apply("media room", self.session_id, ctx),
        }
    }
}
