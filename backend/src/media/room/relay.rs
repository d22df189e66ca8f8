//! Relaying the host's tracks: each RTP packet read once, rewritten
//! ([`Rewriter`]) and queued to the lanes, which write it to their viewers
//! (`lanes`); a codec switch moves viewers to new tracks first.

use super::*;

/// Every this many packets in, the byte counters are sampled for the rates
/// (at most once a second: about that often at 1.5 Mbit/s).
const RATE_SAMPLE_PACKETS: u64 = 128;

impl RoomCore {
    /// The lanes' local tracks for the host's `kind`, switched to its codec
    /// if the host sends another one than the room had. Viewers are moved to
    /// the new tracks before it returns, so they miss none of its packets.
    pub(super) async fn tracks_for(
        self: &Arc<Self>,
        remote: &TrackRemote,
    ) -> Vec<Arc<TrackLocalStaticRTP>> {
        let codec = remote.codec().capability;
        lock(&self.codecs).push(rate::canonical_codec(&codec.mime_type));
        if remote.kind() == RTPCodecType::Audio {
            return self.lanes.iter().map(|l| l.audio()).collect();
        }
        let (moves, edge_cannot) = {
            let mut current = lock(&self.video_codec);
            if current.mime_type.eq_ignore_ascii_case(&codec.mime_type) {
                return self.lanes.iter().map(|l| l.video()).collect();
            }
            // Another codec: viewers move to new tracks (where their answer
            // allows it; the others are told to reconnect).
            tracing::info!(session_id = %self.session_id, codec = %codec.mime_type, "video codec changes");
            *current = codec.clone();
            for lane in &self.lanes {
                lane.replace_video(local_track(codec.clone(), "video"));
            }
            let subscribers = lock(&self.subscribers);
            // An edge viewer gets the new codec on the payload type its
            // answer gave it, if it has one.
            let edge_cannot = subscribers.values().any(|s| match &s.viewer {
                Viewer::Edge(peer) => {
                    peer.payload_type(0, &codec.mime_type, &codec.sdp_fmtp_line)
                        .is_none()
                        && peer.video.is_some()
                }
                Viewer::Crate { .. } => false,
            });
            let moves = subscribers
                .values()
                .filter_map(|s| match &s.viewer {
                    Viewer::Crate { video, .. } => Some((video.clone(), s.seat.lane.video())),
                    Viewer::Edge(_) => None,
                })
                .collect::<Vec<_>>();
            (moves, edge_cannot)
        };
        let mut failed = edge_cannot;
        for (sender, track) in moves {
            let new: Arc<dyn TrackLocal + Send + Sync> = track;
            failed |= sender.replace_track(Some(new)).await.is_err();
        }
        if failed {
            self.announce(MediaState::Reconnect);
        }
        self.lanes.iter().map(|l| l.video()).collect()
    }

    /// Relays one of the host's tracks until it ends: reads, rewrites and
    /// counts each packet, and queues it to the lanes.
    pub(super) async fn forward(self: Arc<Self>, remote: Arc<TrackRemote>, publisher: Uuid) {
        let kind = Kind::of(remote.kind());
        let tracks = self.tracks_for(&remote).await;
        if kind == Kind::Video {
            self.video_ssrc.store(remote.ssrc(), Ordering::Relaxed);
            // Start viewers who are already waiting.
            *lock(&self.last_keyframe_request) = None;
            self.request_keyframe();
        }
        let mut fanout = self.start_lanes(kind, tracks);
        let (mut loss, mut lost) = (LossCounter::default(), 0);
        while let Ok((mut packet, _)) = remote.read_rtp().await {
            let size = packet.payload.len() as u64 + 12;
            lost = self.count_loss_in(lost, loss.packet(packet.header.sequence_number));
            let (seq, ts) = lock(&self.rewrite[kind as usize]).rewrite(
                packet.header.ssrc,
                packet.header.sequence_number,
                packet.header.timestamp,
            );
            packet.header.sequence_number = seq;
            packet.header.timestamp = ts;
            let packets = self.counters.packets_in.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes_in.fetch_add(size, Ordering::Relaxed);
            if packets.is_multiple_of(RATE_SAMPLE_PACKETS) {
                let c = &self.counters;
                c.rates.sample(
                    Instant::now(),
                    c.bytes_in.load(Ordering::Relaxed),
                    c.bytes_out.load(Ordering::Relaxed),
                );
            }
            self.metrics.media_packets_in.inc();
            self.metrics.media_bytes_in.inc_by(size);
            fanout.send(&self, &packet);
        }
        tracing::debug!(session_id = %self.session_id, %publisher, ?kind, "host track ended");
    }

    /// Moves the room's incoming loss from `before` to `now` (one host
    /// track's count); returns `now`.
    pub(super) fn count_loss_in(&self, before: u64, now: u64) -> u64 {
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
}
