//! Relaying the host's tracks: each RTP packet read once, rewritten
//! ([`Rewriter`]) and written to every viewer through the room's local
//! track; a codec switch moves viewers to a new track first.

use super::*;

/// Every this many packets in, the byte counters are sampled for the rates
/// (at most once a second: about that often at 1.5 Mbit/s).
const RATE_SAMPLE_PACKETS: u64 = 128;

impl RoomCore {
    /// The local track for the host's `kind`, switched to its codec if the
    /// host sends another one than the room had. Viewers are moved to the
    /// new track before it returns, so they miss none of its packets.
    pub(super) async fn track_for(
        self: &Arc<Self>,
        remote: &TrackRemote,
    ) -> Arc<TrackLocalStaticRTP> {
        let codec = remote.codec().capability;
        lock(&self.codecs).push(rate::canonical_codec(&codec.mime_type));
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
    pub(super) async fn forward(self: Arc<Self>, remote: Arc<TrackRemote>, publisher: Uuid) {
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
