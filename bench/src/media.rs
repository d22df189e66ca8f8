//! `media`: one WHIP publisher (about `bitrate` kbit/s of VP8-shaped video
//! plus Opus-sized audio) to N WHEP subscribers, all on the `webrtc` crate.
//! Each video frame carries its send time; subscribers measure one-way frame
//! delay (first packet of a frame), count packets and sequence gaps (loss),
//! and late joiners measure the time from their offer to the first keyframe.
//! Reports those and the server's CPU and memory. Run it inside a network
//! namespace with only loopback (`scripts/bench-media.sh`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
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

use crate::setup::{self, cpu_seconds, now_us};
use crate::stats::Samples;

/// Options of the `media` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WHEP subscribers from the start.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Subscribers that join mid-stream (time to first keyframe).
    #[arg(long, default_value_t = 20)]
    pub late_joiners: usize,
    /// Video bitrate of the publisher, kbit/s.
    #[arg(long, default_value_t = 1500)]
    pub bitrate: u64,
    /// Seconds of publishing once everyone is connected.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Connections set up at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The server's process id, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

const FPS: u64 = 30;
const MAX_PAYLOAD: usize = 1100;
/// Marks a keyframe in the synthetic payload (byte 1).
const KEYFRAME: u8 = 0x4b;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn peer() -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
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

/// Offer (complete), POST, apply the answer.
async fn negotiate(
    http: &reqwest::Client,
    pc: &RTCPeerConnection,
    url: String,
    token: &str,
) -> anyhow::Result<()> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = gathered.recv().await;
    let sdp = pc.local_description().await.context("no offer")?.sdp;
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await?;
    let status = resp.status();
    let answer = resp.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "POST {url}: {status} {answer}");
    pc.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok(())
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Unwrapped sequence positions of video packets (all of them).
    seqs: BTreeSet<u64>,
    last: Option<u16>,
    position: u64,
    /// One-way delay of each frame's first packet, µs.
    delays: Vec<u64>,
    first_packet: Option<Instant>,
    first_keyframe: Option<Instant>,
    /// When this subscriber asked for a keyframe (PLI).
    plis_sent: Vec<Instant>,
}

/// When the publisher got keyframe requests and sent keyframes: a slow late
/// joiner is explained against it.
#[derive(Default)]
struct PublisherLog {
    plis: Vec<Instant>,
    keyframes: Vec<Instant>,
}

struct Subscriber {
    pc: Arc<RTCPeerConnection>,
    seen: Arc<Mutex<Seen>>,
    asked: Instant,
    /// How long the offer took to answer (and apply).
    connected_after: Duration,
}

async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: uuid::Uuid,
    measuring: Arc<AtomicBool>,
) -> anyhow::Result<Subscriber> {
    let pc = peer().await?;
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
    let sink = seen.clone();
    let weak = Arc::downgrade(&pc);
    pc.on_track(Box::new(move |track, _, _| {
        let sink = sink.clone();
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
                    let arrived = now_us();
                    let payload = &packet.payload;
                    let keyframe = payload.len() >= 10 && payload[1] == KEYFRAME;
                    let waiting = {
                        let mut s = lock(&sink);
                        if s.first_packet.is_none() {
                            s.first_packet = Some(Instant::now());
                        }
                        if keyframe && s.first_keyframe.is_none() {
                            s.first_keyframe = Some(Instant::now());
                        }
                        s.first_keyframe.is_none()
                    };
                    // Like a decoder without a keyframe: ask for one (PLI),
                    // every 200 ms until it comes.
                    if waiting && last_pli.is_none_or(|t| t.elapsed() > Duration::from_millis(200))
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
                        s.delays.push(arrived.saturating_sub(sent));
                    }
                }
            });
        })
    }));
    let asked = Instant::now();
    negotiate(http, &pc, format!("{base}/whep/{session}"), token).await?;
    Ok(Subscriber {
        pc,
        seen,
        asked,
        connected_after: asked.elapsed(),
    })
}

pub async fn run(args: MediaArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let scene = setup::live_session(&http, &args.url).await?;
    let (session, token) = (scene.session_id, scene.host_token);
    let rss_before = setup::rss_kib(args.server_pid);

    // The publisher.
    let pc = peer().await?;
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
    negotiate(&http, &pc, format!("{}/whip/{session}", args.url), &token).await?;
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

    // Publish: 30 frames a second, the bitrate split into packets; a
    // keyframe every 2 s and whenever the relay asks.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_packets = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (video, audio, stop, wanted, sent, log) = (
            video.clone(),
            audio.clone(),
            stop.clone(),
            keyframe_wanted.clone(),
            sent_packets.clone(),
            log.clone(),
        );
        let frame_bytes = (args.bitrate * 1000 / 8 / FPS) as usize;
        tokio::spawn(async move {
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
        })
    };

    // Subscribers.
    let measuring = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for chunk in (0..args.subscribers)
        .collect::<Vec<_>>()
        .chunks(args.concurrency.max(1))
    {
        let joins = chunk
            .iter()
            .map(|_| subscribe(&http, &args.url, &token, session, measuring.clone()));
        for s in futures_util::future::join_all(joins).await {
            subscribers.push(s?);
        }
    }
    println!(
        "{} subscribers connected in {:.1} s",
        subscribers.len(),
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_with = setup::rss_kib(args.server_pid);

    // Measure.
    let cpu_before = cpu_seconds(args.server_pid);
    let own_cpu_before = cpu_seconds(Some(std::process::id()));
    let wall = Instant::now();
    let sent_before = sent_packets.load(Ordering::Relaxed);
    measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(args.duration / 2)).await;
    // Late joiners, mid-stream.
    let mut late = Vec::with_capacity(args.late_joiners);
    for _ in 0..args.late_joiners {
        late.push(
            subscribe(
                &http,
                &args.url,
                &token,
                session,
                Arc::new(AtomicBool::new(false)),
            )
            .await?,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.duration - args.duration / 2)).await;
    measuring.store(false, Ordering::SeqCst);
    let sent_after = sent_packets.load(Ordering::Relaxed);
    let sent = sent_after - sent_before;
    let cores = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(a), Some(b)) => Some((b - a) / wall.elapsed().as_secs_f64()),
        _ => None,
    };
    let cpu = cores(cpu_before, cpu_seconds(args.server_pid));
    let own_cpu = cores(own_cpu_before, cpu_seconds(Some(std::process::id())));
    stop.store(true, Ordering::SeqCst);
    let _ = publishing.await;
    // Packets sent while measuring may still be on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut received, mut lost, mut delays, mut worst_loss) = (0u64, 0u64, Vec::new(), 0f64);
    for s in &subscribers {
        let seen = lock(&s.seen);
        // Of the packets sent while measuring, those that never arrived.
        let got = seen.seqs.range(sent_before..sent_after).count() as u64;
        received += got;
        let missing = sent - got;
        lost += missing;
        worst_loss = worst_loss.max(missing as f64 / sent.max(1) as f64);
        delays.extend_from_slice(&seen.delays);
    }
    let first_keyframe: Vec<u64> = late
        .iter()
        .filter_map(|s| {
            let seen = lock(&s.seen);
            seen.first_keyframe
                .map(|t| t.duration_since(s.asked).as_micros() as u64)
        })
        .collect();
    let joined_late = first_keyframe.len();
    let connect_ms: Vec<u64> = late
        .iter()
        .map(|s| s.connected_after.as_millis() as u64)
        .collect();
    let first_packet_ms: Vec<u64> = late
        .iter()
        .map(|s| {
            let seen = lock(&s.seen);
            seen.first_packet
                .map_or(0, |t| t.duration_since(s.asked).as_millis() as u64)
        })
        .collect();
    println!(
        "late joiners: offer answered after (ms) {connect_ms:?}; first packet after (ms) {first_packet_ms:?}; first keyframe after (ms) {:?}",
        first_keyframe
            .iter()
            .map(|us| us / 1000)
            .collect::<Vec<_>>()
    );
    explain_slow_joiners(&late, &lock(&log));
    let delays = Samples::new(delays);
    let first_keyframe = Samples::new(first_keyframe);
    let expected = sent * subscribers.len() as u64;
    println!(
        "video packets: {sent} sent, {received} received by {} subscribers ({:.3} % lost overall, worst subscriber {:.3} %)",
        subscribers.len(),
        lost as f64 * 100.0 / expected.max(1) as f64,
        worst_loss * 100.0
    );
    println!("one-way frame delay: {}", delays.summary());
    println!(
        "late joiners: {joined_late} of {}; first keyframe after the offer {}",
        args.late_joiners,
        first_keyframe.summary()
    );
    println!(
        "keyframe requests the publisher got: {}",
        plis.load(Ordering::Relaxed)
    );
    if let Some(cores) = cpu {
        println!(
            "server CPU: {:.2} cores ({:.2} % of a core per subscriber)",
            cores,
            cores * 100.0 / subscribers.len().max(1) as f64
        );
    }
    if let Some(cores) = own_cpu {
        // On two cores, a load tool near one core means the delays it
        // measures include its own queueing.
        println!("load tool CPU: {cores:.2} cores");
    }
    if let (Some(before), Some(with)) = (rss_before, rss_with) {
        println!(
            "server RSS: {before} KiB before, {with} KiB with {} subscribers ({:.1} KiB each)",
            subscribers.len(),
            with.saturating_sub(before) as f64 / subscribers.len().max(1) as f64
        );
    }
    if let Ok(resp) = http
        .get(format!("{}/api/v1/sessions/{session}/media", args.url))
        .bearer_auth(&token)
        .send()
        .await
    {
        println!("relay's numbers: {}", resp.text().await.unwrap_or_default());
    }
    for s in subscribers.iter().chain(late.iter()) {
        let _ = s.pc.close().await;
    }
    let _ = pc.close().await;
    Ok(())
}

/// For each late joiner whose first keyframe took over 300 ms: its own
/// keyframe requests, and the publisher's requests and keyframes meanwhile
/// (ms after its offer), to tell a request that never arrived from a
/// keyframe that was sent but not delivered.
fn explain_slow_joiners(late: &[Subscriber], log: &PublisherLog) {
    let after = |asked: Instant, times: &mut dyn Iterator<Item = &Instant>, until: Instant| {
        times
            .filter(|t| **t >= asked && **t <= until)
            .map(|t| t.duration_since(asked).as_millis() as u64)
            .collect::<Vec<_>>()
    };
    for s in late {
        let seen = lock(&s.seen);
        let until = seen
            .first_keyframe
            .unwrap_or_else(|| s.asked + Duration::from_secs(5));
        if until.duration_since(s.asked) <= Duration::from_millis(300) {
            continue;
        }
        println!(
            "slow joiner (ms after its offer): first packet {:?}, its PLIs {:?}, publisher got PLIs {:?}, sent keyframes {:?}, first keyframe {:?}",
            seen.first_packet.map(|t| t.duration_since(s.asked).as_millis()),
            after(s.asked, &mut seen.plis_sent.iter(), until),
            after(s.asked, &mut log.plis.iter(), until),
            after(s.asked, &mut log.keyframes.iter(), until),
            seen.first_keyframe.map(|t| t.duration_since(s.asked).as_millis()),
        );
    }
}
