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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

use super::engine::Sfu;
use super::rewrite::{LossCounter, Rewriter};
use super::sdp;
use crate::live::bus::{Bus, BusEvent};
use crate::metrics::Metrics;

/// Keyframe requests forwarded to the host, at most one per this interval;
/// requests within it are answered by one deferred request at its end.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);

/// Why a WHIP/WHEP request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("{0}")]
    BadOffer(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the room is full ({0} viewers)")]
    Full(usize),
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
#[derive(Debug, Clone)]
pub struct Answer {
    pub resource: Uuid,
    pub sdp: String,
}

/// What `GET /sessions/{id}/media` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MediaStats {
    /// `publishing`, `connecting` or `not_publishing`.
    pub publisher: String,
    /// The codecs being relayed (e.g. `video/VP8`, `audio/opus`).
    pub codecs: Vec<String>,
    pub subscribers: usize,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets written to viewers (one per viewer per packet in).
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Bits per second in and out, averaged since the last publish.
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
}

struct Publisher {
    id: Uuid,
    user: Uuid,
    pc: Arc<RTCPeerConnection>,
    since: Instant,
}

struct Subscriber {
    user: Uuid,
    pc: Arc<RTCPeerConnection>,
    video: Arc<RTCRtpSender>,
}

/// The shared state of one room, reached from the crate's callbacks.
struct RoomCore {
    session_id: Uuid,
    sfu: Sfu,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    video: Mutex<Arc<TrackLocalStaticRTP>>,
    audio: Arc<TrackLocalStaticRTP>,
    rewrite: [Mutex<Rewriter>; 2],
    publisher: Mutex<Option<Publisher>>,
    /// The host's video SSRC, for keyframe requests.
    video_ssrc: AtomicU32,
    subscribers: Mutex<HashMap<Uuid, Subscriber>>,
    counters: Counters,
    last_keyframe_request: Mutex<Option<Instant>>,
    codecs: Mutex<Vec<String>>,
    /// Counted in the `media_publishers` gauge.
    publishing: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn local_track(codec: RTCRtpCodecCapability, kind: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        codec,
        kind.to_owned(),
        "simmer".to_owned(),
    ))
}

impl RoomCore {
    fn new(session_id: Uuid, sfu: Sfu, bus: Arc<dyn Bus>, metrics: Metrics) -> Arc<Self> {
        let video = local_track(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            "video",
        );
        let audio = local_track(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                ..Default::default()
            },
            "audio",
        );
        Arc::new(Self {
            session_id,
            sfu,
            bus,
            metrics,
            video: Mutex::new(video),
            audio,
            rewrite: [Mutex::default(), Mutex::default()],
            publisher: Mutex::new(None),
            video_ssrc: AtomicU32::new(0),
            subscribers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            last_keyframe_request: Mutex::new(None),
            codecs: Mutex::new(Vec::new()),
            publishing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Counts this room in the `media_publishers` gauge (once) or not.
    fn set_publishing(&self, on: bool) {
        if self.publishing.swap(on, Ordering::SeqCst) != on {
            if on {
                self.metrics.media_publishers.inc();
            } else {
                self.metrics.media_publishers.dec();
            }
        }
    }

    /// Tells the session's `/ws` members about the media.
    fn announce(&self, state: MediaState) {
        let frame = ServerMsg::Media {
            session_id: SessionId(self.session_id),
            state,
        }
        .encode();
        self.bus
            .publish(self.session_id, BusEvent::new(frame, None));
    }

    fn publisher_state(&self) -> &'static str {
        match lock(&self.publisher)
            .as_ref()
            .map(|p| p.pc.connection_state())
        {
            Some(RTCPeerConnectionState::Connected) => "publishing",
            Some(RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting) => "connecting",
            _ => "not_publishing",
        }
    }

    /// Asks the host for a keyframe, at most once per [`KEYFRAME_INTERVAL`]:
    /// a request inside the interval is not dropped but folded into one sent
    /// when the interval ends, so every viewer that asks gets a keyframe soon.
    fn request_keyframe(self: &Arc<Self>) {
        self.counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .media_keyframe_requests
            .with_label_values(&["received"])
            .inc();
        let wait = {
            let mut last = lock(&self.last_keyframe_request);
            match *last {
                // Already sent or scheduled within the interval: covered.
                Some(t) if t > Instant::now() => return,
                Some(t) if t.elapsed() < KEYFRAME_INTERVAL => {
                    let at = t + KEYFRAME_INTERVAL;
                    *last = Some(at);
                    at.saturating_duration_since(Instant::now())
                }
                _ => {
                    *last = Some(Instant::now());
                    Duration::ZERO
                }
            }
        };
        let core = self.clone();
        self.sfu.runtime().spawn(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            core.send_keyframe_request().await;
        });
    }

    async fn send_keyframe_request(&self) {
        let ssrc = self.video_ssrc.load(Ordering::Relaxed);
        let Some(pc) = lock(&self.publisher).as_ref().map(|p| p.pc.clone()) else {
            return;
        };
        if ssrc == 0 {
            return;
        }
        self.counters
            .keyframes_forwarded
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .media_keyframe_requests
            .with_label_values(&["forwarded"])
            .inc();
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        let _ = pc.write_rtcp(&[Box::new(pli)]).await;
    }

    /// The local track for the host's `kind`, switched to its codec if the
    /// host sends another one than the room had. Viewers are moved to the
    /// new track before it returns, so they miss none of its packets.
    async fn track_for(self: &Arc<Self>, remote: &TrackRemote) -> Arc<TrackLocalStaticRTP> {
        let codec = remote.codec().capability;
        lock(&self.codecs).push(codec.mime_type.clone());
        if remote.kind() == RTPCodecType::Audio {
            return self.audio.clone();
        }
        let (track, senders) = {
            let mut video = lock(&self.video);
            if video
                .codec()
                .mime_type
                .eq_ignore_ascii_case(&codec.mime_type)
            {
                return video.clone();
            }
            // Another codec: viewers move to a new track (where their answer
            // allows it; the others are told to reconnect).
            tracing::info!(session_id = %self.session_id, codec = %codec.mime_type, "video codec changes");
            let track = local_track(codec, "video");
            *video = track.clone();
            let senders: Vec<_> = lock(&self.subscribers)
                .values()
                .map(|s| s.video.clone())
                .collect();
            (track, senders)
        };
        let mut failed = false;
        for sender in senders {
            let new: Arc<dyn TrackLocal + Send + Sync> = track.clone();
            failed |= sender.replace_track(Some(new)).await.is_err();
        }
        if failed {
            self.announce(MediaState::Reconnect);
        }
        track
    }

    /// Relays one of the host's tracks until it ends.
    async fn forward(self: Arc<Self>, remote: Arc<TrackRemote>, publisher: Uuid) {
        let kind = remote.kind();
        let local = self.track_for(&remote).await;
        let slot = usize::from(kind == RTPCodecType::Audio);
        if kind == RTPCodecType::Video {
            self.video_ssrc.store(remote.ssrc(), Ordering::Relaxed);
            // Start viewers who are already waiting.
            *lock(&self.last_keyframe_request) = None;
            self.request_keyframe();
        }
        let (mut loss, mut lost) = (LossCounter::default(), 0);
        while let Ok((mut packet, _)) = remote.read_rtp().await {
            let size = packet.payload.len() as u64 + 12;
            lost = self.count_loss_in(lost, loss.packet(packet.header.sequence_number));
            let (seq, ts) = lock(&self.rewrite[slot]).rewrite(
                packet.header.ssrc,
                packet.header.sequence_number,
                packet.header.timestamp,
            );
            packet.header.sequence_number = seq;
            packet.header.timestamp = ts;
            self.counters.packets_in.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes_in.fetch_add(size, Ordering::Relaxed);
            let viewers = lock(&self.subscribers).len() as u64;
            if local.write_rtp(&packet).await.is_ok() {
                self.counters
                    .packets_out
                    .fetch_add(viewers, Ordering::Relaxed);
                self.counters
                    .bytes_out
                    .fetch_add(viewers * size, Ordering::Relaxed);
                self.metrics.media_packets_in.inc();
                self.metrics.media_packets_out.inc_by(viewers);
                self.metrics.media_bytes_in.inc_by(size);
                self.metrics.media_bytes_out.inc_by(viewers * size);
            }
        }
        tracing::debug!(session_id = %self.session_id, %publisher, ?kind, "host track ended");
    }

    /// Moves the room's incoming loss from `before` to `now` (one host
    /// track's count); returns `now`.
    fn count_loss_in(&self, before: u64, now: u64) -> u64 {
        if now > before {
            self.counters
                .lost_in
                .fetch_add(now - before, Ordering::Relaxed);
            self.metrics
                .media_packets_lost
                .with_label_values(&["in"])
                .inc_by(now - before);
        } else if now < before {
            self.counters
                .lost_in
                .fetch_sub(before - now, Ordering::Relaxed);
        }
        now
    }

    /// What a viewer's RTCP says about the stream of `ssrc`: keyframe
    /// requests go on to the host, NACKs and reported loss are counted (the
    /// NACK responder interceptor has already answered them). `reported`
    /// holds the highest cumulative loss this viewer reported so far.
    fn viewer_rtcp(
        self: &Arc<Self>,
        ssrc: u32,
        packets: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>],
        reported: &mut u32,
    ) {
        for packet in packets {
            let any = packet.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                self.request_keyframe();
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                if nack.media_ssrc == ssrc {
                    let asked: u64 = nack
                        .nacks
                        .iter()
                        .map(|pair| pair.packet_list().len() as u64)
                        .sum();
                    self.counters.nacks.fetch_add(asked, Ordering::Relaxed);
                    self.metrics.media_nack_packets.inc_by(asked);
                }
            } else {
                let blocks = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports
                } else {
                    continue;
                };
                for block in blocks.iter().filter(|b| b.ssrc == ssrc) {
                    if block.total_lost > *reported {
                        let more = u64::from(block.total_lost - *reported);
                        *reported = block.total_lost;
                        self.counters.lost_out.fetch_add(more, Ordering::Relaxed);
                        self.metrics
                            .media_packets_lost
                            .with_label_values(&["out"])
                            .inc_by(more);
                    }
                }
            }
        }
    }

    async fn publish(self: Arc<Self>, user: Uuid, offer: String) -> Result<Answer, MediaError> {
        sdp::check_offer(&offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        if let Some(current) = lock(&self.publisher).as_ref() {
            let alive = matches!(
                current.pc.connection_state(),
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Connecting
            ) || (current.pc.connection_state() == RTCPeerConnectionState::New
                && current.since.elapsed() < self.sfu.settings().ice_timeout);
            if current.user != user || alive {
                return Err(MediaError::Conflict(
                    "the session is being published; stop that first (DELETE its resource)".into(),
                ));
            }
        }
        let pc = self.sfu.peer().await.map_err(unavailable)?;
        let id = Uuid::now_v7();
        let weak = Arc::downgrade(&self);
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            let core = weak.upgrade();
            Box::pin(async move {
                if let Some(core) = core {
                    let runtime = core.sfu.runtime().clone();
                    runtime.spawn(core.forward(track, id));
                }
            })
        }));
        let weak = Arc::downgrade(&self);
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let core = weak.upgrade();
            Box::pin(async move {
                let Some(core) = core else { return };
                let current = lock(&core.publisher).as_ref().is_some_and(|p| p.id == id);
                if !current {
                    return;
                }
                tracing::info!(session_id = %core.session_id, ?state, "publisher connection");
                match state {
                    RTCPeerConnectionState::Connected => {
                        core.set_publishing(true);
                        core.announce(MediaState::Publishing);
                    }
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed => {
                        core.set_publishing(false);
                        core.announce(MediaState::NotPublishing);
                    }
                    _ => {}
                }
            })
        }));
        let sdp = match self.negotiate(&pc, offer).await {
            Ok(sdp) => sdp,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let old = lock(&self.publisher).replace(Publisher {
            id,
            user,
            pc,
            since: Instant::now(),
        });
        if let Some(old) = old {
            let _ = old.pc.close().await;
        }
        tracing::info!(session_id = %self.session_id, resource = %id, "publishing");
        Ok(Answer { resource: id, sdp })
    }

    /// Remote offer in, complete answer (all candidates gathered) out.
    async fn negotiate(&self, pc: &RTCPeerConnection, offer: String) -> Result<String, MediaError> {
        let sfu = &self.sfu;
        let offer = sdp::filter_candidates(&offer, |ip| sfu.allowed_remote(ip));
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        pc.set_remote_description(offer)
            .await
            .map_err(|e| MediaError::BadOffer(format!("cannot use the offer: {e}")))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| MediaError::BadOffer(format!("cannot answer the offer: {e}")))?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(answer)
            .await
            .map_err(unavailable)?;
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
        pc.local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| unavailable("no local description"))
    }

    async fn subscribe(self: Arc<Self>, user: Uuid, offer: String) -> Result<Answer, MediaError> {
        sdp::check_offer(&offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let max = self.sfu.settings().max_subscribers;
        if lock(&self.subscribers).len() >= max {
            return Err(MediaError::Full(max));
        }
        let pc = self.sfu.peer().await.map_err(unavailable)?;
        let id = Uuid::now_v7();
        let video_track: Arc<dyn TrackLocal + Send + Sync> = lock(&self.video).clone();
        let audio_track: Arc<dyn TrackLocal + Send + Sync> = self.audio.clone();
        let video = pc.add_track(video_track).await.map_err(unavailable)?;
        let audio = pc.add_track(audio_track).await.map_err(unavailable)?;
        for sender in [video.clone(), audio] {
            // Read the viewer's RTCP: the interceptors answer NACKs from it,
            // and keyframe requests go on to the host.
            let weak = Arc::downgrade(&self);
            self.sfu.runtime().spawn(async move {
                let ssrc = sender
                    .get_parameters()
                    .await
                    .encodings
                    .first()
                    .map_or(0, |e| e.ssrc);
                let mut reported = 0;
                loop {
                    let read = sender.read_rtcp().await;
                    let Some(core) = weak.upgrade() else { break };
                    match read {
                        Ok((packets, _)) => core.viewer_rtcp(ssrc, &packets, &mut reported),
                        // Closed: the viewer is gone.
                        Err(webrtc::Error::ErrClosedPipe) => break,
                        // One bad packet (or a read before the sender
                        // started) must not end the reading: without it
                        // this viewer's NACKs and keyframe requests would
                        // go unanswered for good.
                        Err(e) => {
                            tracing::debug!(session_id = %core.session_id, error = %e, "viewer RTCP");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            });
        }
        let weak = Arc::downgrade(&self);
        let since = Instant::now();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let core = weak.upgrade();
            Box::pin(async move {
                let Some(core) = core else { return };
                tracing::debug!(session_id = %core.session_id, viewer = %id, ?state, after_ms = since.elapsed().as_millis(), "viewer connection");
                match state {
                    // A new viewer starts on a fresh keyframe (many arriving
                    // at once share one request).
                    RTCPeerConnectionState::Connected => core.request_keyframe(),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        let gone = lock(&core.subscribers).remove(&id);
                        if let Some(gone) = gone {
                            core.metrics.media_subscribers.dec();
                            let _ = gone.pc.close().await;
                        }
                    }
                    _ => {}
                }
            })
        }));
        let sdp = match self.negotiate(&pc, offer).await {
            Ok(sdp) => sdp,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        lock(&self.subscribers).insert(id, Subscriber { user, pc, video });
        self.metrics.media_subscribers.inc();
        Ok(Answer { resource: id, sdp })
    }

    async fn unpublish(self: Arc<Self>, resource: Uuid, user: Uuid) -> Result<(), MediaError> {
        let publisher = {
            let mut current = lock(&self.publisher);
            match current.as_ref() {
                Some(p) if p.id == resource && p.user == user => current.take(),
                Some(p) if p.id == resource => return Err(MediaError::Forbidden),
                _ => return Err(MediaError::NotFound),
            }
        };
        if let Some(p) = publisher {
            self.set_publishing(false);
            let _ = p.pc.close().await;
            self.announce(MediaState::NotPublishing);
        }
        Ok(())
    }

    async fn unsubscribe(self: Arc<Self>, resource: Uuid, user: Uuid) -> Result<(), MediaError> {
        let subscriber = {
            let mut subscribers = lock(&self.subscribers);
            match subscribers.get(&resource) {
                Some(s) if s.user == user => subscribers.remove(&resource),
                Some(_) => return Err(MediaError::Forbidden),
                None => return Err(MediaError::NotFound),
            }
        };
        if let Some(s) = subscriber {
            self.metrics.media_subscribers.dec();
            let _ = s.pc.close().await;
        }
        Ok(())
    }

    /// Closes every peer connection of the room.
    async fn close_all(self: Arc<Self>) {
        let publisher = lock(&self.publisher).take();
        let subscribers: Vec<_> = lock(&self.subscribers).drain().map(|(_, s)| s).collect();
        self.metrics
            .media_subscribers
            .sub(i64::try_from(subscribers.len()).unwrap_or(0));
        if let Some(p) = publisher {
            self.set_publishing(false);
            let _ = p.pc.close().await;
        }
        for s in subscribers {
            let _ = s.pc.close().await;
        }
    }

    fn stats(&self) -> MediaStats {
        let c = &self.counters;
        let secs = lock(&self.publisher)
            .as_ref()
            .map(|p| p.since.elapsed().as_secs_f64())
            .unwrap_or(0.0)
            .max(1.0);
        let bytes_in = c.bytes_in.load(Ordering::Relaxed);
        let bytes_out = c.bytes_out.load(Ordering::Relaxed);
        let mut codecs = lock(&self.codecs).clone();
        codecs.sort();
        codecs.dedup();
        MediaStats {
            publisher: self.publisher_state().to_owned(),
            codecs,
            subscribers: lock(&self.subscribers).len(),
            packets_in: c.packets_in.load(Ordering::Relaxed),
            bytes_in,
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_out,
            bitrate_in: (bytes_in as f64 * 8.0 / secs) as u64,
            bitrate_out: (bytes_out as f64 * 8.0 / secs) as u64,
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
            keyframe_requests_forwarded: c.keyframes_forwarded.load(Ordering::Relaxed),
            packets_lost_in: c.lost_in.load(Ordering::Relaxed),
            packets_lost_out: c.lost_out.load(Ordering::Relaxed),
            nack_requests: c.nacks.load(Ordering::Relaxed),
        }
    }
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
#[derive(Debug, Message)]
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
#[derive(Debug, Message)]
#[rtype(result = "Result<Answer, MediaError>")]
pub struct Subscribe {
    pub user: Uuid,
    pub offer: String,
}

impl Handler<Subscribe> for MediaRoom {
    type Result = ResponseFuture<Result<Answer, MediaError>>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.on_media(self.core.clone().subscribe(msg.user, msg.offer))
    }
}

/// Ends a WHIP (`publisher: true`) or WHEP resource of `user`.
#[derive(Debug, Message)]
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

/// The room's numbers now.
#[derive(Debug, Message)]
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
impl Handler<crate::live::InjectFault> for MediaRoom {
    type Result = ();

    fn handle(&mut self, msg: crate::live::InjectFault, ctx: &mut Context<Self>) {
        msg.0.apply("media room", self.session_id, ctx);
    }
}
