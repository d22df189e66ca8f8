//! A room's state: creating it, telling `/ws` members, its numbers, and
//! closing every connection when the room goes.

use super::*;

impl RoomCore {
    pub(super) fn new(
        session_id: Uuid,
        sfu: Sfu,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let video = RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        };
        let audio = RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            ..Default::default()
        };
        let lanes = (0..sfu.settings().relay.lanes)
            .map(|_| {
                Arc::new(Lane::new(
                    local_track(video.clone(), "video"),
                    local_track(audio.clone(), "audio"),
                ))
            })
            .collect();
        Arc::new(Self {
            session_id,
            sfu,
            bus,
            metrics,
            lanes,
            video_codec: Mutex::new(video),
            rewrite: [Mutex::default(), Mutex::default()],
            publisher: Mutex::new(None),
            video_ssrc: AtomicU32::new(0),
            subscribers: Mutex::new(HashMap::new()),
            slots: Mutex::new(Slots::default()),
            publish_pending: std::sync::atomic::AtomicBool::new(false),
            counters: Counters::default(),
            last_keyframe_request: Mutex::new(None),
            codecs: Mutex::new(Vec::new()),
            publishing: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "test-hooks")]
            stalled_until: Mutex::new(None),
        })
    }

    /// Counts this room in the `media_publishers` gauge (once) or not.
    pub(super) fn set_publishing(&self, on: bool) {
        if self.publishing.swap(on, Ordering::SeqCst) != on {
            if on {
                self.metrics.media_publishers.inc();
            } else {
                self.metrics.media_publishers.dec();
            }
        }
    }

    /// Tells the session's `/ws` members about the media.
    pub(super) fn announce(&self, state: MediaState) {
        let frame = ServerMsg::Media {
            session_id: SessionId(self.session_id),
            state,
        }
        .encode();
        self.bus
            .publish(self.session_id, BusEvent::new(frame, None));
    }

    pub(super) fn publisher_state(&self) -> PublisherState {
        match lock(&self.publisher)
            .as_ref()
            .map(|p| p.pc.connection_state())
        {
            Some(RTCPeerConnectionState::Connected) => PublisherState::Publishing,
            Some(RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting) => {
                PublisherState::Connecting
            }
            _ => PublisherState::NotPublishing,
        }
    }

    /// Closes every peer connection of the room.
    pub(super) async fn close_all(self: Arc<Self>) {
        let publisher = lock(&self.publisher).take();
        let subscribers: Vec<_> = lock(&self.subscribers).drain().map(|(_, s)| s).collect();
        lock(&self.slots).clear();
        self.metrics
            .media_subscribers
            .sub(i64::try_from(subscribers.len()).unwrap_or(0));
        if let Some(p) = publisher {
            self.set_publishing(false);
            let _ = p.pc.close().await;
        }
        for s in subscribers {
            if let Viewer::Edge(peer) = &s.viewer {
                s.seat.lane.remove_edge_peer(peer);
            }
            s.viewer.close().await;
        }
        crate::memory::release_freed_soon(self.sfu.runtime());
    }

    pub(super) fn stats(&self) -> MediaStats {
        let c = &self.counters;
        let bytes_in = c.bytes_in.load(Ordering::Relaxed);
        let bytes_out = c.bytes_out.load(Ordering::Relaxed);
        let (bitrate_in, bitrate_out) = c.rates.rates(Instant::now(), bytes_in, bytes_out);
        let mut codecs = lock(&self.codecs).clone();
        codecs.sort();
        codecs.dedup();
        MediaStats {
            publisher: self.publisher_state(),
            codecs,
            subscribers: lock(&self.subscribers).len(),
            packets_in: c.packets_in.load(Ordering::Relaxed),
            bytes_in,
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_out,
            bitrate_in,
            bitrate_out,
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
            keyframe_requests_forwarded: c.keyframes_forwarded.load(Ordering::Relaxed),
            packets_lost_in: c.lost_in.load(Ordering::Relaxed),
            packets_lost_out: c.lost_out.load(Ordering::Relaxed),
            nack_requests: c.nacks.load(Ordering::Relaxed),
            packets_dropped: c.dropped.load(Ordering::Relaxed),
            packets_resent: c.resent.load(Ordering::Relaxed),
        }
    }
}
