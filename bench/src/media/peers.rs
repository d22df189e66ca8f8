//! The `media` scenarios' peers, on the `webrtc` crate with loopback only:
//! the WHIP publisher (synthetic VP8-shaped video with send stamps, Opus-sized
//! audio) and WHEP subscribers that record what they receive.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::ViewerMode;
use crate::setup::now_us;

const FPS: u64 = 30;
const MAX_PAYLOAD: usize = 1100;
/// Marks a keyframe in the synthetic payload (byte 1).
const KEYFRAME: u8 = 0x4b;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer connection on loopback. `Full` has the crate's default
/// interceptors (NACK, RTCP reports, TWCC), as a browser would; `Plain` has
/// none, so it sends no RTCP at all. Both offer the default codecs with
/// their usual feedback, so the relay does the same work for either.
async fn peer(mode: ViewerMode) -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = match mode {
        ViewerMode::Full => register_default_interceptors(Registry::new(), &mut media)?,
        ViewerMode::Plain => Registry::new(),
    };
    let mut engine = SettingEngine::default();
    engine.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    engine.set_include_loopback_candidate(true);
    engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    engine.set_network_types(vec![NetworkType::Udp4]);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(engine)
        .build();
    Ok(Arc::new(
        api.new_peer_connection(RTCConfiguration::default()).await?,
    ))
}

/// Offer (complete), POST, apply the answer; the resource's URL (from
/// `Location`, which may be relative to `base`).
async fn negotiate(
    http: &reqwest::Client,
    pc: &RTCPeerConnection,
    base: &str,
    path: String,
    token: &str,
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = gathered.recv().await;
    let sdp = pc.local_description().await.context("no offer")?.sdp;
    let url = format!("{base}{path}");
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = resp.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "POST {url}: {status} {answer}");
    let location = location.with_context(|| format!("POST {url}: no Location"))?;
    pc.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok(if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    })
}

/// Ends a WHIP or WHEP resource (`DELETE`, 200 expected).
pub async fn end_resource(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let resp = http.delete(url).bearer_auth(token).send().await?;
    let status = resp.status();
    anyhow::ensure!(
        status.as_u16() == 200,
        "DELETE {url}: {status} {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// When the publisher got keyframe requests and sent keyframes: a slow late
/// joiner is explained against it.
#[derive(Default)]
pub struct PublisherLog {
    pub plis: Vec<Instant>,
    pub keyframes: Vec<Instant>,
}

/// The host: publishes over WHIP until [`Publisher::stop`].
pub struct Publisher {
    pc: Arc<RTCPeerConnection>,
    /// The WHIP resource's URL.
    resource: String,
    stop: Arc<AtomicBool>,
    sending: Option<JoinHandle<()>>,
    /// Video packets sent so far (their sequence numbers count from 0).
    pub sent_packets: Arc<AtomicU64>,
    /// Keyframe requests (PLI) received.
    pub plis: Arc<AtomicU64>,
    pub log: Arc<Mutex<PublisherLog>>,
}

impl Publisher {
    /// Publishes to `session` once connected: 30 frames a second, about
    /// `bitrate` kbit/s split into packets, a keyframe every 2 s and
    /// whenever the relay asks; audio in 20 ms packets.
    pub async fn start(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        session: uuid::Uuid,
        bitrate: u64,
    ) -> anyhow::Result<Self> {
        let pc = peer(ViewerMode::Full).await?;
        let video = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            "video".into(),
            "bench".into(),
        ));
        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "audio".into(),
            "bench".into(),
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
                    if packets
                        .iter()
                        .any(|p| p.as_any().is::<PictureLossIndication>())
                    {
                        plis.fetch_add(1, Ordering::Relaxed);
                        lock(&log).plis.push(Instant::now());
                        wanted.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            if state == RTCPeerConnectionState::Connected {
                flag.store(true, Ordering::SeqCst);
            }
            Box::pin(async {})
        }));
        let resource = negotiate(http, &pc, base, format!("/whip/{session}"), token).await?;
        for _ in 0..200 {
            if connected.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(
            connected.load(Ordering::SeqCst),
            "the publisher did not connect"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let sent_packets = Arc::new(AtomicU64::new(0));
        let frame_bytes = (bitrate * 1000 / 8 / FPS) as usize;
        let sending = tokio::spawn(send(
            video,
            audio,
            frame_bytes,
            stop.clone(),
            keyframe_wanted,
            sent_packets.clone(),
            log.clone(),
        ));
        Ok(Self {
            pc,
            resource,
            stop,
            sending: Some(sending),
            sent_packets,
            plis,
            log,
        })
    }

    /// Stops sending (returns once the last packet is out).
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sending) = self.sending.take() {
            let _ = sending.await;
        }
    }

    /// Stops sending, ends the WHIP resource and closes the connection, as a
    /// host's app does.
    pub async fn unpublish(&mut self, http: &reqwest::Client, token: &str) -> anyhow::Result<()> {
        self.stop().await;
        let ended = end_resource(http, &self.resource, token).await;
        self.close().await;
        ended
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// The publisher's sending loop (see [`Publisher::start`]).
async fn send(
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

/// What one subscriber saw.
#[derive(Default)]
pub struct Seen {
    /// Unwrapped sequence positions of video packets (all of them).
    pub seqs: BTreeSet<u64>,
    last: Option<u16>,
    position: u64,
    /// One-way delay of each frame's first packet, µs.
    pub delays: Vec<u64>,
    pub first_packet: Option<Instant>,
    pub first_keyframe: Option<Instant>,
    /// When this subscriber asked for a keyframe (PLI).
    pub plis_sent: Vec<Instant>,
}

pub struct Subscriber {
    pub pc: Arc<RTCPeerConnection>,
    /// The WHEP resource's URL.
    pub resource: String,
    pub seen: Arc<Mutex<Seen>>,
    /// Notified once, at the first video packet.
    pub first_packet: Arc<Notify>,
    pub asked: Instant,
    /// How long the offer took to answer (and apply).
    pub connected_after: Duration,
}

/// A WHEP viewer of `session`. Delays are recorded while `measuring` is set.
/// A `Full` viewer asks for a keyframe (PLI) every 200 ms until one comes,
/// like a decoder; a `Plain` one never sends anything.
pub async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: uuid::Uuid,
    measuring: Arc<AtomicBool>,
    mode: ViewerMode,
) -> anyhow::Result<Subscriber> {
    let pc = peer(mode).await?;
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
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first_packet = Arc::new(Notify::new());
    let (sink, arrived) = (seen.clone(), first_packet.clone());
    let weak = Arc::downgrade(&pc);
    pc.on_track(Box::new(move |track, _, _| {
        let sink = sink.clone();
        let arrived = arrived.clone();
        let measuring = measuring.clone();
        let weak = weak.clone();
        Box::pin(async move {
            if track.kind() != RTPCodecType::Video {
                // Drain audio so its buffers do not fill.
                tokio::spawn(async move { while track.read_rtp().await.is_ok() {} });
                return;
            }
            tokio::spawn(async move {
                let mut last_pli: Option<Instant> = None;
                while let Ok((packet, _)) = track.read_rtp().await {
                    let arrived_us = now_us();
                    let payload = &packet.payload;
                    let keyframe = payload.len() >= 10 && payload[1] == KEYFRAME;
                    let waiting = {
                        let mut s = lock(&sink);
                        if s.first_packet.is_none() {
                            s.first_packet = Some(Instant::now());
                            arrived.notify_one();
                        }
                        if keyframe && s.first_keyframe.is_none() {
                            s.first_keyframe = Some(Instant::now());
                        }
                        s.first_keyframe.is_none()
                    };
                    // Like a decoder without a keyframe: ask for one (PLI),
                    // every 200 ms until it comes.
                    if mode == ViewerMode::Full
                        && waiting
                        && last_pli.is_none_or(|t| t.elapsed() > Duration::from_millis(200))
                    {
                        last_pli = Some(Instant::now());
                        lock(&sink).plis_sent.push(Instant::now());
                        if let Some(pc) = weak.upgrade() {
                            let pli = PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc: track.ssrc(),
                            };
                            // Off the read loop: reading never waits on it.
                            tokio::spawn(async move {
                                let _ = pc.write_rtcp(&[Box::new(pli)]).await;
                            });
                        }
                    }
                    let mut s = lock(&sink);
                    // Positions count from the publisher's first packet (its
                    // sequence starts at 0), so they name the packets sent.
                    let seq = packet.header.sequence_number;
                    let position = match s.last {
                        None => u64::from(seq),
                        Some(last) => s
                            .position
                            .saturating_add_signed(i64::from(seq.wrapping_sub(last) as i16)),
                    };
                    s.last = Some(seq);
                    s.position = position;
                    s.seqs.insert(position);
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    // The first packet of a frame carries its send time.
                    if payload.len() >= 10 && payload[0] & 0x10 != 0 {
                        let mut stamp = [0u8; 8];
                        stamp.copy_from_slice(&payload[2..10]);
                        let sent = u64::from_be_bytes(stamp);
                        s.delays.push(arrived_us.saturating_sub(sent));
                    }
                }
            });
        })
    }));
    let asked = Instant::now();
    let resource = match negotiate(http, &pc, base, format!("/whep/{session}"), token).await {
        Ok(resource) => resource,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    Ok(Subscriber {
        pc,
        resource,
        seen,
        first_packet,
        asked,
        connected_after: asked.elapsed(),
    })
}
