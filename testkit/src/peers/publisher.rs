//! The host's side: a WHIP publisher and the two ways it sends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use uuid::Uuid;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::{closed_on_error, peer, Leg, Rtcp};
use crate::{lock, now_us};

/// Frames a second of [`Publisher::send_stamped`].
const FPS: u64 = 30;
/// The largest video payload [`Publisher::send_stamped`] puts in a packet.
const MAX_PAYLOAD: usize = 1100;
/// Marks a keyframe in a stamped payload (byte 1); see
/// [`Publisher::send_stamped`].
pub(super) const KEYFRAME: u8 = 0x4b;

/// When the publisher got keyframe requests and sent keyframes: a slow late
/// joiner is explained against it.
#[derive(Debug, Clone, Default)]
pub struct PublisherLog {
    /// When keyframe requests (PLI) arrived.
    pub plis: Vec<Instant>,
    /// When [`Publisher::send_stamped`] sent a keyframe.
    pub keyframes: Vec<Instant>,
}

/// A host publishing over WHIP. Signalling does not wait for the connection
/// ([`Publisher::wait_connected`]); nothing is sent until it is told to
/// ([`Publisher::send_for`], [`Publisher::send_stamped`]).
pub struct Publisher {
    /// Its connection and WHIP resource.
    leg: Leg,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    /// Keyframe requests (PLI) received.
    plis: Arc<AtomicU64>,
    /// Set by a keyframe request, taken by the next stamped frame.
    keyframe_wanted: Arc<AtomicBool>,
    log: Arc<Mutex<PublisherLog>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Publisher").field(&self.leg).finish()
    }
}

/// The connection, the resource and what a publisher and a viewer do alike
/// (`wait_connected`, `end`, `close`, ...).
impl std::ops::Deref for Publisher {
    type Target = Leg;

    fn deref(&self) -> &Leg {
        &self.leg
    }
}

impl Publisher {
    /// Publishes VP8 video and Opus audio to `session` at the server at
    /// `address`, or says why the server refused.
    pub async fn publish(
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: Uuid,
    ) -> anyhow::Result<Self> {
        Self::publish_codec(http, address, token, session, MIME_TYPE_VP8).await
    }

    /// Publishes video in the codec `mime_type` (e.g. `video/VP9`).
    pub async fn publish_codec(
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: Uuid,
        mime_type: &str,
    ) -> anyhow::Result<Self> {
        let pc = peer(Rtcp::Full, None).await?;
        let signalled = Self::signal_on(pc.clone(), http, address, token, session, mime_type).await;
        closed_on_error(&pc, signalled).await
    }

    async fn signal_on(
        pc: Arc<RTCPeerConnection>,
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: Uuid,
        mime_type: &str,
    ) -> anyhow::Result<Self> {
        let video = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: mime_type.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            "video".into(),
            "host".into(),
        ));
        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "audio".into(),
            "host".into(),
        ));
        let keyframe_wanted = Arc::new(AtomicBool::new(true));
        let plis = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(PublisherLog::default()));
        for track in [video.clone(), audio.clone()] {
            let sender = pc
                .add_transceiver_from_track(
                    track,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        send_encodings: vec![],
                    }),
                )
                .await?
                .sender()
                .await;
            let (wanted, plis, log) = (keyframe_wanted.clone(), plis.clone(), log.clone());
            tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let asked = packets
                        .iter()
                        .filter(|p| p.as_any().is::<PictureLossIndication>())
                        .count() as u64;
                    if asked > 0 {
                        plis.fetch_add(asked, Ordering::SeqCst);
                        lock(&log).plis.push(Instant::now());
                        wanted.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        let path = format!("/whip/{session}");
        let leg = Leg::signal(pc, "publisher", http, address, &path, token).await?;
        Ok(Self {
            leg,
            video,
            audio,
            plis,
            keyframe_wanted,
            log,
        })
    }

    /// Sends 30 video frames (a small keyframe-looking VP8 payload in two
    /// packets, sequence numbers from 1000) and 50 audio packets a second
    /// for `duration`, on a 10 ms tick: a steady stream whose sequence
    /// numbers the tests check.
    pub fn send_for(&self, duration: Duration) -> JoinHandle<()> {
        let (video, audio) = (self.video.clone(), self.audio.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let (mut vseq, mut aseq) = (1000u16, 7u16);
            let start = tokio::time::Instant::now();
            let mut n = 0u32;
            while start.elapsed() < duration {
                tick.tick().await;
                n += 1;
                if n.is_multiple_of(2) {
                    let packet = Packet {
                        header: Header {
                            version: 2,
                            sequence_number: aseq,
                            timestamp: n * 480,
                            marker: false,
                            ..Default::default()
                        },
                        payload: vec![0xfc; 80].into(),
                    };
                    aseq = aseq.wrapping_add(1);
                    let _ = audio.write_rtp(&packet).await;
                }
                if n.is_multiple_of(3) {
                    // A keyframe-looking VP8 payload, in two packets.
                    for part in 0..2u8 {
                        let packet = Packet {
                            header: Header {
                                version: 2,
                                sequence_number: vseq,
                                timestamp: n * 900,
                                marker: part == 1,
                                ..Default::default()
                            },
                            payload: vec![0x10, 0x00, 0x9d, 0x01, 0x2a, part, 0, 0].into(),
                        };
                        vseq = vseq.wrapping_add(1);
                        let _ = video.write_rtp(&packet).await;
                    }
                }
            }
        })
    }

    /// Sends until [`Sending::stop`]: 30 frames a second of about
    /// `bitrate` kbit/s of VP8-shaped video split into packets (sequence
    /// numbers from 0), a keyframe every 2 s and whenever a viewer asks;
    /// audio in 20 ms packets. Each frame's first packet carries its send
    /// time (µs since the epoch, bytes 2..10) and keyframes a mark (byte 1),
    /// which a [`Viewer`](super::Viewer) reads.
    pub fn send_stamped(&self, bitrate: u64) -> Sending {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(send_stamped(
            self.video.clone(),
            self.audio.clone(),
            (bitrate * 1000 / 8 / FPS) as usize,
            stop.clone(),
            self.keyframe_wanted.clone(),
            sent.clone(),
            self.log.clone(),
        ));
        Sending {
            stop,
            task: Some(task),
            sent,
        }
    }

    /// Keyframe requests (PLI) received so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.plis.load(Ordering::SeqCst)
    }

    /// When keyframe requests came and keyframes went out so far.
    pub fn log(&self) -> PublisherLog {
        lock(&self.log).clone()
    }
}

/// A publisher's stamped stream ([`Publisher::send_stamped`]), until
/// [`Sending::stop`].
#[derive(Debug)]
pub struct Sending {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
    sent: Arc<AtomicU64>,
}

impl Sending {
    /// Video packets sent so far (their sequence numbers count from 0).
    pub fn sent_packets(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending (returns once the last packet is out).
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The loop of [`Publisher::send_stamped`].
async fn send_stamped(
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    frame_bytes: usize,
    stop: Arc<AtomicBool>,
    wanted: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    log: Arc<Mutex<PublisherLog>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / FPS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut vseq, mut aseq, mut frame) = (0u16, 0u16, 0u64);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        frame += 1;
        let keyframe = frame % (2 * FPS) == 1 || wanted.swap(false, Ordering::Relaxed);
        if keyframe {
            lock(&log).keyframes.push(Instant::now());
        }
        let ts = (frame * 90_000 / FPS) as u32;
        let mut left = frame_bytes.max(20);
        let mut first = true;
        while left > 0 {
            let size = left.min(MAX_PAYLOAD);
            left -= size;
            let mut payload = vec![0u8; size.max(10)];
            payload[0] = if first { 0x10 } else { 0x00 };
            payload[1] = if keyframe { KEYFRAME } else { 0 };
            payload[2..10].copy_from_slice(&now_us().to_be_bytes());
            let packet = Packet {
                header: Header {
                    version: 2,
                    sequence_number: vseq,
                    timestamp: ts,
                    marker: left == 0,
                    ..Default::default()
                },
                payload: payload.into(),
            };
            vseq = vseq.wrapping_add(1);
            first = false;
            let _ = video.write_rtp(&packet).await;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        // Audio: 20 ms packets, so three every two frames.
        for _ in 0..(if frame % 2 == 0 { 2 } else { 1 }) {
            let packet = Packet {
                header: Header {
                    version: 2,
                    sequence_number: aseq,
                    timestamp: u32::from(aseq).wrapping_mul(960),
                    ..Default::default()
                },
                payload: vec![0xfc; 120].into(),
            };
            aseq = aseq.wrapping_add(1);
            let _ = audio.write_rtp(&packet).await;
        }
    }
}
