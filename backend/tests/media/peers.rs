//! WebRTC peers for the tests, built on the `webrtc` crate the way an app
//! would (loopback only): a WHIP publisher that sends video (VP8 unless told
//! otherwise) and Opus RTP, and a WHEP viewer that counts what it receives,
//! optionally behind a lossy link.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use crate::helpers::TestApp;

/// A peer connection that uses loopback only.
pub async fn peer() -> Arc<RTCPeerConnection> {
    peer_behind(None).await
}

/// A peer connection whose incoming video goes through `link` first.
async fn peer_behind(link: Option<LossyLink>) -> Arc<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let mut registry = Registry::new();
    let mut engine = SettingEngine::default();
    if let Some(link) = link {
        // First in the chain, so the NACK generator and the receiver
        // reports see what a lossy network would leave; retransmissions
        // repeat an SRTP index, so replay protection must let them in (as
        // browsers do, receiving them on RTX).
        registry.add(Box::new(link));
        engine.disable_srtp_replay_protection(true);
    }
    let registry = register_default_interceptors(registry, &mut media).unwrap();
    engine.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    engine.set_include_loopback_candidate(true);
    engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    engine.set_network_types(vec![NetworkType::Udp4]);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(engine)
        .build();
    Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    )
}

/// A lossy network in front of a viewer: every `every`-th video packet is
/// dropped before the viewer's stack sees it, and with `for_good` so are its
/// retransmissions.
#[derive(Clone)]
pub struct LossyLink {
    every: u64,
    for_good: bool,
    seen: Arc<AtomicU64>,
    dropped: Arc<Mutex<BTreeSet<u16>>>,
}

impl LossyLink {
    pub fn new(every: u64, for_good: bool) -> Self {
        Self {
            every,
            for_good,
            seen: Arc::default(),
            dropped: Arc::default(),
        }
    }

    /// The sequence numbers dropped at least once.
    pub fn dropped(&self) -> usize {
        self.dropped.lock().unwrap().len()
    }
}

impl InterceptorBuilder for LossyLink {
    fn build(
        &self,
        _: &str,
    ) -> Result<Arc<dyn Interceptor + Send + Sync>, webrtc::interceptor::Error> {
        Ok(Arc::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl Interceptor for LossyLink {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        _: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        writer
    }

    async fn unbind_local_stream(&self, _: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        if info.mime_type.starts_with("video/") {
            Arc::new(LossyReader {
                inner: reader,
                link: self.clone(),
            })
        } else {
            reader
        }
    }

    async fn unbind_remote_stream(&self, _: &StreamInfo) {}

    async fn close(&self) -> Result<(), webrtc::interceptor::Error> {
        Ok(())
    }
}

struct LossyReader {
    inner: Arc<dyn RTPReader + Send + Sync>,
    link: LossyLink,
}

#[async_trait::async_trait]
impl RTPReader for LossyReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(webrtc::rtp::packet::Packet, Attributes), webrtc::interceptor::Error> {
        loop {
            let (packet, attributes) = self.inner.read(buf, attributes).await?;
            let seq = packet.header.sequence_number;
            let n = self.link.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let mut dropped = self.link.dropped.lock().unwrap();
            let again = dropped.contains(&seq);
            if (again && self.link.for_good) || (!again && n.is_multiple_of(self.link.every)) {
                dropped.insert(seq);
                continue;
            }
            return Ok((packet, attributes));
        }
    }
}

/// The local description once every candidate is in (no trickle).
async fn complete_offer(pc: &RTCPeerConnection) -> String {
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    pc.local_description().await.unwrap().sdp
}

/// Posts an offer to the server at `address`; returns the resource path and
/// the answer, or what went wrong (a refused connection, a status other than
/// 201, a reply without what WHIP/WHEP requires).
async fn try_signal_at(
    address: &str,
    path: &str,
    token: &str,
    offer: String,
) -> Result<(String, String), String> {
    let resp = reqwest::Client::new()
        .post(format!("{address}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, etag, content_type) =
        (header("location"), header("etag"), header("content-type"));
    let body = resp.text().await.map_err(|e| format!("{path}: {e}"))?;
    if status != 201 {
        return Err(format!("{path}: {status} {body}"));
    }
    if etag.is_none() {
        return Err(format!("{path}: no ETag"));
    }
    if content_type.as_deref() != Some("application/sdp") {
        return Err(format!("{path}: content type {content_type:?}"));
    }
    Ok((
        location.ok_or_else(|| format!("{path}: no Location"))?,
        body,
    ))
}

/// The UDP ports of the candidates in an SDP.
pub fn candidate_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

/// An offer that the server would accept (for error tests).
pub async fn sample_offer() -> String {
    let pc = peer().await;
    pc.add_transceiver_from_kind(RTPCodecType::Video, None)
        .await
        .unwrap();
    let sdp = complete_offer(&pc).await;
    pc.close().await.unwrap();
    sdp
}

fn state_flag(pc: &RTCPeerConnection) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let connected = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let (c, d) = (connected.clone(), closed.clone());
    pc.on_peer_connection_state_change(Box::new(move |state| {
        match state {
            RTCPeerConnectionState::Connected => c.store(true, Ordering::SeqCst),
            RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Closed => d.store(true, Ordering::SeqCst),
            _ => {}
        }
        Box::pin(async {})
    }));
    (connected, closed)
}

/// A host publishing over WHIP.
pub struct Publisher {
    pc: Arc<RTCPeerConnection>,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    connected: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    plis: Arc<AtomicU64>,
    /// `/whip/{session}/{resource}`.
    pub resource: String,
    /// The server's UDP ports for this connection.
    pub server_ports: Vec<u16>,
}

impl Publisher {
    pub async fn publish(app: &TestApp, token: &str, session: Uuid) -> Publisher {
        Self::publish_at(&app.address, token, session).await
    }

    /// Publishes to the server at `address` (from any runtime).
    pub async fn publish_at(address: &str, token: &str, session: Uuid) -> Publisher {
        Self::publish_codec(address, token, session, MIME_TYPE_VP8).await
    }

    /// Publishes video in the codec `mime_type` (e.g. `video/VP9`).
    pub async fn publish_codec(
        address: &str,
        token: &str,
        session: Uuid,
        mime_type: &str,
    ) -> Publisher {
        Self::try_publish_codec(address, token, session, mime_type)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Publishes VP8 at `address`, or says why the server refused (a client
    /// that retries, e.g. while a session moves to another node).
    #[cfg_attr(not(feature = "cluster-tests"), allow(dead_code))]
    pub async fn try_publish_at(
        address: &str,
        token: &str,
        session: Uuid,
    ) -> Result<Publisher, String> {
        Self::try_publish_codec(address, token, session, MIME_TYPE_VP8).await
    }

    async fn try_publish_codec(
        address: &str,
        token: &str,
        session: Uuid,
        mime_type: &str,
    ) -> Result<Publisher, String> {
        let pc = peer().await;
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
        let plis = Arc::new(AtomicU64::new(0));
        for track in [video.clone(), audio.clone()] {
            let sender = pc
                .add_transceiver_from_track(
                    track,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap()
                .sender()
                .await;
            let plis = plis.clone();
            tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    for p in packets {
                        if p.as_any().is::<PictureLossIndication>() {
                            plis.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        let (connected, closed) = state_flag(&pc);
        let offer = complete_offer(&pc).await;
        let (resource, answer) =
            match try_signal_at(address, &format!("/whip/{session}"), token, offer).await {
                Ok(signalled) => signalled,
                Err(e) => {
                    let _ = pc.close().await;
                    return Err(e);
                }
            };
        let server_ports = candidate_ports(&answer);
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        Ok(Publisher {
            pc,
            video,
            audio,
            connected,
            closed,
            plis,
            resource,
            server_ports,
        })
    }

    pub async fn wait_connected(&self) {
        for _ in 0..200 {
            if self.connected.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the publisher did not connect");
    }

    /// Sends 30 video frames and 50 audio packets a second for `duration`.
    pub fn send_for(&self, duration: Duration) -> tokio::task::JoinHandle<()> {
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

    /// Ends the publication (`DELETE` on its resource), as a host's app does.
    pub async fn unpublish(&self, app: &TestApp, token: &str) {
        let reply = app
            .request(reqwest::Method::DELETE, &self.resource, Some(token), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    pub fn keyframe_requests(&self) -> u64 {
        self.plis.load(Ordering::SeqCst)
    }

    pub fn closed_by_server(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

#[derive(Default)]
struct Received {
    video: u64,
    audio: u64,
    /// Sequence numbers seen, per kind (0 video, 1 audio).
    seqs: [BTreeMap<u64, ()>; 2],
    last: [Option<u16>; 2],
    /// Unwrapped sequence position per kind.
    position: [u64; 2],
    /// The codec of the last video packet.
    video_codec: Option<String>,
    /// When the first and the latest video packet arrived.
    first_video: Option<Instant>,
    last_video: Option<Instant>,
    /// The first video packet's arrival and RTP timestamp, and how much
    /// later than that pace (90 kHz) any video packet arrived at most.
    video_clock: Option<(Instant, u32)>,
    most_late: Duration,
    /// The SSRC the video comes with.
    video_ssrc: Option<u32>,
}

/// A viewer playing over WHEP.
pub struct Viewer {
    pc: Arc<RTCPeerConnection>,
    received: Arc<Mutex<Received>>,
    connected: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    /// `/whep/{session}/{resource}`.
    #[cfg_attr(not(feature = "cluster-tests"), allow(dead_code))]
    pub resource: String,
    /// The server's UDP ports for this connection.
    pub server_ports: Vec<u16>,
}

impl Viewer {
    pub async fn play(app: &TestApp, token: &str, session: Uuid) -> Viewer {
        Self::play_behind(app, token, session, None).await
    }

    /// Plays with the incoming video going through `link`.
    pub async fn play_behind(
        app: &TestApp,
        token: &str,
        session: Uuid,
        link: Option<LossyLink>,
    ) -> Viewer {
        Self::try_play_behind_at(&app.address, token, session, link)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Plays from the server at `address` (e.g. a load balancer), or says
    /// why the server refused.
    #[cfg_attr(not(feature = "cluster-tests"), allow(dead_code))]
    pub async fn try_play_at(address: &str, token: &str, session: Uuid) -> Result<Viewer, String> {
        Self::try_play_behind_at(address, token, session, None).await
    }

    async fn try_play_behind_at(
        address: &str,
        token: &str,
        session: Uuid,
        link: Option<LossyLink>,
    ) -> Result<Viewer, String> {
        let pc = peer_behind(link).await;
        for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap();
        }
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = received.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let sink = sink.clone();
            Box::pin(async move {
                tokio::spawn(async move {
                    let slot = usize::from(track.kind() == RTPCodecType::Audio);
                    while let Ok((packet, _)) = track.read_rtp().await {
                        let mut r = sink.lock().unwrap();
                        if slot == 0 {
                            r.video += 1;
                            r.video_codec = Some(track.codec().capability.mime_type);
                            r.video_ssrc = Some(packet.header.ssrc);
                            let now = Instant::now();
                            r.first_video.get_or_insert(now);
                            r.last_video = Some(now);
                            let ts = packet.header.timestamp;
                            let (t0, ts0) = *r.video_clock.get_or_insert((now, ts));
                            let media = ts.wrapping_sub(ts0) as i32;
                            if media >= 0 {
                                let due = t0 + Duration::from_micros(media as u64 * 100 / 9);
                                let late = now.saturating_duration_since(due);
                                r.most_late = r.most_late.max(late);
                            }
                        } else {
                            r.audio += 1;
                        }
                        let seq = packet.header.sequence_number;
                        let position = match r.last[slot] {
                            None => 1 << 32,
                            Some(last) => {
                                let delta = seq.wrapping_sub(last) as i16 as i64;
                                (r.position[slot] as i64 + delta) as u64
                            }
                        };
                        r.last[slot] = Some(seq);
                        r.position[slot] = position;
                        r.seqs[slot].insert(position, ());
                    }
                });
            })
        }));
        let (connected, closed) = state_flag(&pc);
        let offer = complete_offer(&pc).await;
        let (resource, answer) =
            match try_signal_at(address, &format!("/whep/{session}"), token, offer).await {
                Ok(signalled) => signalled,
                Err(e) => {
                    let _ = pc.close().await;
                    return Err(e);
                }
            };
        let server_ports = candidate_ports(&answer);
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        Ok(Viewer {
            pc,
            received,
            connected,
            closed,
            resource,
            server_ports,
        })
    }

    /// Video and audio packets received so far.
    pub fn received(&self) -> (u64, u64) {
        let r = self.received.lock().unwrap();
        (r.video, r.audio)
    }

    /// Missing sequence numbers between the first and last received, per kind.
    pub fn gaps(&self) -> [u64; 2] {
        let r = self.received.lock().unwrap();
        let gap = |seqs: &BTreeMap<u64, ()>| match (seqs.keys().next(), seqs.keys().last()) {
            (Some(first), Some(last)) => (last - first + 1) - seqs.len() as u64,
            _ => 0,
        };
        [gap(&r.seqs[0]), gap(&r.seqs[1])]
    }

    /// When the first video packet arrived (`None`: none yet).
    #[cfg_attr(not(feature = "cluster-tests"), allow(dead_code))]
    pub fn first_video_at(&self) -> Option<Instant> {
        self.received.lock().unwrap().first_video
    }

    /// When the latest video packet arrived (`None`: none yet).
    #[cfg_attr(not(feature = "cluster-tests"), allow(dead_code))]
    pub fn last_video_at(&self) -> Option<Instant> {
        self.received.lock().unwrap().last_video
    }

    /// How much later than the first video packet's pace (its RTP clock)
    /// any video packet arrived, at most.
    pub fn most_late(&self) -> Duration {
        self.received.lock().unwrap().most_late
    }

    /// The codec of the last video packet received.
    pub fn video_codec(&self) -> Option<String> {
        self.received.lock().unwrap().video_codec.clone()
    }

    /// Asks the relay (one NACK) to send again the 272 video packets up to
    /// the last one received; false before any video came.
    pub async fn ask_again(&self) -> bool {
        let (ssrc, last) = {
            let r = self.received.lock().unwrap();
            match (r.video_ssrc, r.last[0]) {
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
        self.pc.write_rtcp(&[Box::new(nack)]).await.is_ok()
    }

    pub fn sequence_is_continuous(&self) -> bool {
        self.gaps() == [0, 0]
    }

    pub fn closed_by_server(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub async fn wait_connected(&self) {
        for _ in 0..200 {
            if self.connected.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the viewer did not connect");
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}
