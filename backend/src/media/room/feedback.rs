//! What viewers send back: keyframe requests, forwarded to the host at
//! most once per [`KEYFRAME_INTERVAL`] (folded, never dropped); NACKs and
//! receiver reports, counted (the interceptors answer the NACKs).

use super::*;

impl RoomCore {
    /// Asks the host for a keyframe, at most once per [`KEYFRAME_INTERVAL`]:
    /// a request inside the interval is not dropped but folded into one sent
    /// when the interval ends, so every viewer that asks gets a keyframe soon.
    pub(super) fn request_keyframe(self: &Arc<Self>) {
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

    pub(super) async fn send_keyframe_request(&self) {
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

    /// What a viewer's RTCP says about the stream of `ssrc`: keyframe
    /// requests go on to the host, NACKs and reported loss are counted (the
    /// NACK responder interceptor has already answered them). `reported`
    /// holds the highest cumulative loss this viewer reported so far.
    pub(super) fn viewer_rtcp(
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
}
