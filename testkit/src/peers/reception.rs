//! What a viewer receives: each incoming track read to its end and
//! recorded (counts, sequence gaps, timing, stamped delays), and the
//! keyframe requests of a viewer that acts like a decoder.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;

use super::publisher::KEYFRAME;
use crate::{lock, now_us};

/// Where the unwrapped sequence positions of a stream start: the first
/// packet's sequence number above this, so a reordered packet from before
/// it still has a position, and video positions minus this name the
/// packets a [`send_stamped`](super::Publisher::send_stamped) publisher
/// sent (its sequence numbers count from 0).
pub(super) const ORIGIN: u64 = 1 << 32;
/// How often a viewer that asks for keyframes asks while it has none.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(200);

/// The unwrapped sequence positions of one stream.
#[derive(Debug, Default)]
pub(super) struct Positions {
    pub(super) seen: BTreeSet<u64>,
    pub(super) last: Option<u16>,
    position: u64,
}

impl Positions {
    fn record(&mut self, seq: u16) {
        let position = match self.last {
            None => ORIGIN + u64::from(seq),
            Some(last) => {
                let delta = i64::from(seq.wrapping_sub(last) as i16);
                self.position.saturating_add_signed(delta)
            }
        };
        self.last = Some(seq);
        self.position = position;
        self.seen.insert(position);
    }

    /// Positions missing between the first and the last seen.
    pub(super) fn gaps(&self) -> u64 {
        match (self.seen.first(), self.seen.last()) {
            (Some(first), Some(last)) => (last - first + 1) - self.seen.len() as u64,
            _ => 0,
        }
    }
}

/// What a viewer received.
#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) video: u64,
    pub(super) audio: u64,
    /// Per kind: 0 video, 1 audio.
    pub(super) positions: [Positions; 2],
    /// The codec of the last video packet, and the payload type it was
    /// looked up for (it changes only with that).
    pub(super) video_codec: Option<(u8, String)>,
    /// When the first and the latest video packet arrived.
    pub(super) first_video: Option<Instant>,
    pub(super) last_video: Option<Instant>,
    /// When the first stamped keyframe arrived.
    pub(super) first_keyframe: Option<Instant>,
    /// The first video packet's arrival and RTP timestamp, and how much
    /// later than that pace (90 kHz) any video packet arrived at most.
    pub(super) video_clock: Option<(Instant, u32)>,
    pub(super) most_late: Duration,
    /// The SSRC the video comes with.
    pub(super) video_ssrc: Option<u32>,
    /// One-way delay of each stamped frame's first packet, µs.
    pub(super) delays: Vec<u64>,
    /// When this viewer asked for a keyframe (PLI).
    pub(super) plis_sent: Vec<Instant>,
}

/// Reads one incoming track until it ends, recording into `sink`. With
/// `asker` (the viewer's connection), video without a keyframe yet is
/// answered with a keyframe request every 200 ms.
pub(super) async fn read_track(
    track: Arc<TrackRemote>,
    sink: Arc<Mutex<Received>>,
    arrived: Arc<Notify>,
    measuring: Option<Arc<AtomicBool>>,
    asker: Option<Weak<RTCPeerConnection>>,
) {
    if track.kind() == RTPCodecType::Audio {
        while let Ok((packet, _)) = track.read_rtp().await {
            let mut r = lock(&sink);
            r.audio += 1;
            r.positions[1].record(packet.header.sequence_number);
        }
        return;
    }
    let mut last_pli: Option<Instant> = None;
    while let Ok((packet, _)) = track.read_rtp().await {
        let arrived_us = now_us();
        let now = Instant::now();
        let payload = &packet.payload;
        let keyframe = payload.len() >= 10 && payload[1] == KEYFRAME;
        let waiting = {
            let mut r = lock(&sink);
            r.video += 1;
            let pt = packet.header.payload_type;
            if r.video_codec.as_ref().is_none_or(|(seen, _)| *seen != pt) {
                r.video_codec = Some((pt, track.codec().capability.mime_type));
            }
            r.video_ssrc = Some(packet.header.ssrc);
            if r.first_video.is_none() {
                r.first_video = Some(now);
                arrived.notify_one();
            }
            r.last_video = Some(now);
            if keyframe && r.first_keyframe.is_none() {
                r.first_keyframe = Some(now);
            }
            let ts = packet.header.timestamp;
            let (t0, ts0) = *r.video_clock.get_or_insert((now, ts));
            let media = ts.wrapping_sub(ts0) as i32;
            if media >= 0 {
                let due = t0 + Duration::from_micros(media as u64 * 100 / 9);
                let late = now.saturating_duration_since(due);
                r.most_late = r.most_late.max(late);
            }
            r.positions[0].record(packet.header.sequence_number);
            // The first packet of a stamped frame carries its send time.
            if measuring
                .as_ref()
                .is_some_and(|m| m.load(Ordering::Relaxed))
                && payload.len() >= 10
                && payload[0] & 0x10 != 0
            {
                let mut stamp = [0u8; 8];
                stamp.copy_from_slice(&payload[2..10]);
                let sent = u64::from_be_bytes(stamp);
                r.delays.push(arrived_us.saturating_sub(sent));
            }
            r.first_keyframe.is_none()
        };
        // Like a decoder without a keyframe: ask for one (PLI), every
        // 200 ms until it comes.
        let Some(asker) = &asker else { continue };
        if waiting && last_pli.is_none_or(|t| t.elapsed() > KEYFRAME_REQUEST_INTERVAL) {
            last_pli = Some(Instant::now());
            lock(&sink).plis_sent.push(Instant::now());
            if let Some(pc) = asker.upgrade() {
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
    }
}
