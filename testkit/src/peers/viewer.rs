//! The viewer's side: a WHEP player that records what it receives.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;

use super::reception::{read_track, Received, ORIGIN};
use super::{closed_on_error, peer, Leg, LossyLink, Rtcp};
use crate::lock;

/// How a [`Viewer`] behaves. The default is a browser that does not ask for
/// keyframes itself, with a clean link and no delays recorded.
#[derive(Debug, Clone, Default)]
pub struct ViewerOptions {
    /// Its RTCP machinery.
    pub rtcp: Rtcp,
    /// Like a decoder without a keyframe: a keyframe request (PLI) every
    /// 200 ms from its first video packet until a stamped keyframe comes.
    pub asks_for_keyframes: bool,
    /// A lossy network in front of its incoming video.
    pub link: Option<LossyLink>,
    /// While set, the one-way delay of each stamped frame is recorded.
    pub measuring: Option<Arc<AtomicBool>>,
}

/// A viewer playing over WHEP.
pub struct Viewer {
    /// Its connection and WHEP resource.
    leg: Leg,
    received: Arc<Mutex<Received>>,
    /// Notified once, at the first video packet.
    first_video: Arc<Notify>,
    /// When it started its offer.
    asked: Instant,
    /// How long the offer took to answer (and apply).
    answered_after: Duration,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Viewer").field(&self.leg).finish()
    }
}

/// The connection, the resource and what a viewer and a publisher do alike
/// (`wait_connected`, `end`, `close`, ...).
impl std::ops::Deref for Viewer {
    type Target = Leg;

    fn deref(&self) -> &Leg {
        &self.leg
    }
}

impl Viewer {
    /// Plays `session` from the server at `address` (e.g. a load
    /// balancer), or says why the server refused.
    pub async fn play(
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: Uuid,
        options: ViewerOptions,
    ) -> anyhow::Result<Self> {
        let pc = peer(options.rtcp, options.link.clone()).await?;
        let signalled = Self::signal_on(pc.clone(), http, address, token, session, options).await;
        closed_on_error(&pc, signalled).await
    }

    async fn signal_on(
        pc: Arc<RTCPeerConnection>,
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: Uuid,
        options: ViewerOptions,
    ) -> anyhow::Result<Self> {
        for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    send_encodings: vec![],
                }),
            )
            .await?;
        }
        let received = Arc::new(Mutex::new(Received::default()));
        let first_video = Arc::new(Notify::new());
        let (sink, arrived) = (received.clone(), first_video.clone());
        let weak = Arc::downgrade(&pc);
        pc.on_track(Box::new(move |track, _, _| {
            let reading = read_track(
                track,
                sink.clone(),
                arrived.clone(),
                options.measuring.clone(),
                options.asks_for_keyframes.then(|| weak.clone()),
            );
            Box::pin(async move {
                tokio::spawn(reading);
            })
        }));
        let asked = Instant::now();
        let path = format!("/whep/{session}");
        let leg = Leg::signal(pc, "viewer", http, address, &path, token).await?;
        Ok(Self {
            leg,
            received,
            first_video,
            asked,
            answered_after: asked.elapsed(),
        })
    }

    /// Returns once the first video packet has arrived.
    pub async fn first_video(&self) {
        self.first_video.notified().await;
    }

    /// Video and audio packets received so far.
    pub fn received(&self) -> (u64, u64) {
        let r = lock(&self.received);
        (r.video, r.audio)
    }

    /// Missing sequence numbers between the first and last received, per
    /// kind (video, audio).
    pub fn gaps(&self) -> [u64; 2] {
        let r = lock(&self.received);
        [r.positions[0].gaps(), r.positions[1].gaps()]
    }

    /// Whether no sequence number is missing, in video or audio.
    pub fn sequence_is_continuous(&self) -> bool {
        self.gaps() == [0, 0]
    }

    /// Of the video packets a [`send_stamped`](super::Publisher::send_stamped)
    /// publisher sent as its `from`-th up to before its `to`-th, how many
    /// arrived.
    pub fn video_packets_between(&self, from: u64, to: u64) -> u64 {
        let r = lock(&self.received);
        r.positions[0]
            .seen
            .range(ORIGIN + from..ORIGIN + to)
            .count() as u64
    }

    /// When the first video packet arrived (`None`: none yet).
    pub fn first_video_at(&self) -> Option<Instant> {
        lock(&self.received).first_video
    }

    /// When the latest video packet arrived (`None`: none yet).
    pub fn last_video_at(&self) -> Option<Instant> {
        lock(&self.received).last_video
    }

    /// When the first stamped keyframe arrived (`None`: none yet).
    pub fn first_keyframe_at(&self) -> Option<Instant> {
        lock(&self.received).first_keyframe
    }

    /// The one-way delays of the stamped frames received while measuring,
    /// µs.
    pub fn delays(&self) -> Vec<u64> {
        lock(&self.received).delays.clone()
    }

    /// When this viewer asked for a keyframe (PLI).
    pub fn keyframe_requests_sent(&self) -> Vec<Instant> {
        lock(&self.received).plis_sent.clone()
    }

    /// How much later than the first video packet's pace (its RTP clock)
    /// any video packet arrived, at most.
    pub fn most_late(&self) -> Duration {
        lock(&self.received).most_late
    }

    /// The codec of the last video packet received.
    pub fn video_codec(&self) -> Option<String> {
        lock(&self.received)
            .video_codec
            .as_ref()
            .map(|(_, codec)| codec.clone())
    }

    /// When it started its offer.
    pub fn asked_at(&self) -> Instant {
        self.asked
    }

    /// How long the offer took to answer (and apply).
    pub fn answered_after(&self) -> Duration {
        self.answered_after
    }

    /// Asks the relay (one NACK) to send again the 272 video packets up to
    /// the last one received; false before any video came.
    pub async fn ask_again(&self) -> bool {
        let (ssrc, last) = {
            let r = lock(&self.received);
            match (r.video_ssrc, r.positions[0].last) {
                (Some(ssrc), Some(last)) => (ssrc, last),
                _ => return false,
            }
        };
        // 16 pairs of 17 (a packet id and the 16 after it).
        let nacks = (0..16u16)
            .map(|pair| NackPair {
                packet_id: last.wrapping_sub(271).wrapping_add(pair * 17),
                lost_packets: 0xFFFF,
            })
            .collect();
        let nack = TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc: ssrc,
            nacks,
        };
        self.leg.pc.write_rtcp(&[Box::new(nack)]).await.is_ok()
    }
}
