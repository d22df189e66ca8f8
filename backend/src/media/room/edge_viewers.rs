//! Viewers who play from the relay's own edge (`media::edge`): the offer is
//! answered by the edge, the viewer sits in a lane like any other, and what
//! it sends back (keyframe requests, NACKs, receiver reports) comes here.

use webrtc::rtcp::packet::Packet as RtcpPacket;

use super::*;

impl RoomCore {
    pub(super) async fn subscribe_edge(
        self: Arc<Self>,
        edge: edge::Edge,
        viewer: Holder,
        guest: bool,
        offer: String,
    ) -> Result<Answer, MediaError> {
        let settings = self.sfu.settings();
        let offer = sdp::filter_candidates(&offer, |ip| self.sfu.allowed_remote(ip));
        let offer = edge::Offer::parse(&offer).map_err(MediaError::BadOffer)?;
        let id = Uuid::now_v7();
        let (slot, seat) = self.place_viewer(id, viewer)?;
        let events = Arc::new(EdgeViewer {
            core: Arc::downgrade(&self),
            id,
            lane: Arc::downgrade(&seat.lane),
            reported: Mutex::new([0; 2]),
        });
        let (sdp, peer) = edge.accept(&offer, events, settings.viewer_limits.connect_timeout);
        let (readers, gone) = tokio::sync::watch::channel(());
        seat.lane.add_edge_peer(peer.clone());
        lock(&self.subscribers).insert(
            id,
            Subscriber {
                user: viewer.user,
                guest,
                viewer: Viewer::Edge(peer),
                seat,
                _readers: readers,
            },
        );
        slot.keep();
        self.metrics.media_subscribers.inc();
        self.reclaim_if_unconnected(id, gone);
        Ok(Answer { resource: id, sdp })
    }
}

/// What an edge viewer's events do in its room.
struct EdgeViewer {
    core: std::sync::Weak<RoomCore>,
    id: Uuid,
    /// Weak: the lane holds the viewer's peer, which holds this.
    lane: std::sync::Weak<Lane>,
    /// Per leg, the highest cumulative loss the viewer reported.
    reported: Mutex<[u32; 2]>,
}

impl edge::PeerEvents for EdgeViewer {
    fn connected(&self) {
        if let Some(core) = self.core.upgrade() {
            tracing::debug!(session_id = %core.session_id, viewer = %self.id, "edge viewer connected");
            // A new viewer starts on a fresh keyframe.
            core.request_keyframe();
        }
    }

    fn rtcp(&self, peer: &Arc<edge::Peer>, packets: &[Box<dyn RtcpPacket + Send + Sync>]) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        for (kind, leg) in [(Kind::Video, &peer.video), (Kind::Audio, &peer.audio)] {
            let Some(leg) = leg else { continue };
            let mut reported = lock(&self.reported)[kind as usize];
            core.viewer_rtcp(leg.ssrc, packets, &mut reported);
            lock(&self.reported)[kind as usize] = reported;
            self.resend(&core, peer, kind, leg.ssrc, packets);
        }
    }

    fn closed(&self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let gone = lock(&core.subscribers).remove(&self.id);
        if gone.is_some() {
            let id = self.id;
            let runtime = core.sfu.runtime().clone();
            runtime.spawn(async move { core.end_subscriber(id, gone).await });
        }
    }
}

impl EdgeViewer {
    /// Sends again what the viewer's NACKs for `ssrc` ask for, from the
    /// lane's history.
    fn resend(
        &self,
        core: &Arc<RoomCore>,
        peer: &Arc<edge::Peer>,
        kind: Kind,
        ssrc: u32,
        packets: &[Box<dyn RtcpPacket + Send + Sync>],
    ) {
        let (Some(edge), Some(lane)) = (core.sfu.edge().cloned(), self.lane.upgrade()) else {
            return;
        };
        let codec = match kind {
            Kind::Video => lane.video().codec(),
            Kind::Audio => lane.audio().codec(),
        };
        let Some(pt) = peer.payload_type(kind as usize, &codec.mime_type, &codec.sdp_fmtp_line)
        else {
            return;
        };
        let mut batch = edge::Batch::default();
        let mut resent = 0;
        for packet in packets {
            let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() else {
                continue;
            };
            if nack.media_ssrc != ssrc {
                continue;
            }
            let asked: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
            let allowed = peer.resend_budget(asked.len());
            let history = lock(&lane.history[kind as usize]);
            for seq in &asked[..allowed] {
                if let Some(kept) = history.get(*seq) {
                    peer.seal(kind as usize, pt, kept, &mut batch);
                    resent += 1;
                }
            }
        }
        core.counters.resent.fetch_add(resent, Ordering::Relaxed);
        if !batch.is_empty() {
            core.sfu
                .runtime()
                .spawn(async move { edge.send(&mut batch).await });
        }
    }
}
