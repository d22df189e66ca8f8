//! The peer connections: the host's (WHIP) and the viewers' (WHEP), offer
//! in and complete answer out, and ending them.

use super::*;

impl RoomCore {
    pub(super) async fn publish(
        self: Arc<Self>,
        user: Uuid,
        offer: String,
    ) -> Result<Answer, MediaError> {
        sdp::check_offer(&offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let claim = {
            // Checked and claimed under the publisher's lock: of two
            // concurrent publishes one wins, the other gets 409.
            let current = lock(&self.publisher);
            if let Some(current) = current.as_ref() {
                let alive = matches!(
                    current.pc.connection_state(),
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Connecting
                ) || (current.pc.connection_state() == RTCPeerConnectionState::New
                    && current.since.elapsed() < self.sfu.settings().ice_timeout);
                if current.user != user || alive {
                    return Err(MediaError::Conflict(
                        "the session is being published; stop that first (DELETE its resource)"
                            .into(),
                    ));
                }
            }
            PublishClaim::take(&self.publish_pending)?
        };
        let pc = self.sfu.peer().await.map_err(unavailable)?;
        let id = Uuid::now_v7();
        let weak = Arc::downgrade(&self);
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            let core = weak.upgrade();
            Box::pin(async move {
                if let Some(core) = core {
                    let runtime = core.sfu.runtime().clone();
                    runtime.spawn(core.forward(track, id));
                }
            })
        }));
        let weak = Arc::downgrade(&self);
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let core = weak.upgrade();
            Box::pin(async move {
                let Some(core) = core else { return };
                let current = lock(&core.publisher).as_ref().is_some_and(|p| p.id == id);
                if !current {
                    return;
                }
                tracing::info!(session_id = %core.session_id, ?state, "publisher connection");
                match state {
                    RTCPeerConnectionState::Connected => {
                        core.set_publishing(true);
                        core.announce(MediaState::Publishing);
                    }
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed => {
                        core.set_publishing(false);
                        core.announce(MediaState::NotPublishing);
                    }
                    _ => {}
                }
            })
        }));
        let sdp = self.negotiate(&pc, offer).await?;
        let old = lock(&self.publisher).replace(Publisher {
            id,
            user,
            pc,
            since: Instant::now(),
        });
        // The new publisher is in place: the next publish checks it.
        drop(claim);
        if let Some(old) = old {
            let _ = old.pc.close().await;
        }
        tracing::info!(session_id = %self.session_id, resource = %id, "publishing");
        self.reclaim_publish_if_unconnected(id);
        Ok(Answer { resource: id, sdp })
    }

    /// Ends publisher `id` if it has not connected (ICE and DTLS) within the
    /// connect timeout. A host whose handshake never finishes (its ICE alive,
    /// its DTLS silent) would otherwise hold the session's publish, and its
    /// sockets, until it sent `DELETE`: its own republish would get 409.
    fn reclaim_publish_if_unconnected(self: &Arc<Self>, id: Uuid) {
        let weak = Arc::downgrade(self);
        let timeout = self.sfu.settings().viewer_limits.connect_timeout;
        self.sfu.runtime().spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(core) = weak.upgrade() else { return };
            let stuck = lock(&core.publisher).take_if(|p| {
                p.id == id
                    && matches!(
                        p.pc.connection_state(),
                        RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting
                    )
            });
            if let Some(publisher) = stuck {
                tracing::info!(session_id = %core.session_id, resource = %id, "publisher never connected; the publish is freed");
                core.end_publisher(publisher).await;
            }
        });
    }

    /// A publisher taken out of `publisher` stops: its connection closed,
    /// the session's members told.
    async fn end_publisher(&self, publisher: Publisher) {
        self.set_publishing(false);
        let _ = publisher.pc.close().await;
        self.announce(MediaState::NotPublishing);
    }

    /// Remote offer in, complete answer (all candidates gathered) out; a
    /// connection whose offer is refused is closed.
    pub(super) async fn negotiate(
        &self,
        pc: &RTCPeerConnection,
        offer: String,
    ) -> Result<String, MediaError> {
        let answer = self.answer(pc, offer).await;
        if answer.is_err() {
            // Refused: nothing will use this connection.
            let _ = pc.close().await;
        }
        answer
    }

    async fn answer(&self, pc: &RTCPeerConnection, offer: String) -> Result<String, MediaError> {
        let sfu = &self.sfu;
        let offer = sdp::filter_candidates(&offer, |ip| sfu.allowed_remote(ip));
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        pc.set_remote_description(offer)
            .await
            .map_err(|e| MediaError::BadOffer(format!("cannot use the offer: {e}")))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| MediaError::BadOffer(format!("cannot answer the offer: {e}")))?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(answer)
            .await
            .map_err(unavailable)?;
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
        pc.local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| unavailable("no local description"))
    }

    pub(super) async fn subscribe(
        self: Arc<Self>,
        viewer: Holder,
        guest: bool,
        offer: String,
    ) -> Result<Answer, MediaError> {
        sdp::check_offer(&offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        if let Some(edge) = self.sfu.edge().cloned() {
            return self.subscribe_edge(edge, viewer, guest, offer).await;
        }
        let id = Uuid::now_v7();
        let (slot, seat) = self.place_viewer(id, viewer)?;
        let pc = self.sfu.peer().await.map_err(unavailable)?;
        let video_track: Arc<dyn TrackLocal + Send + Sync> = seat.lane.video();
        let audio_track: Arc<dyn TrackLocal + Send + Sync> = seat.lane.audio();
        let added = async {
            let video = pc.add_track(video_track).await?;
            let audio = pc.add_track(audio_track).await?;
            Ok::<_, webrtc::Error>((video, audio))
        };
        let (video, audio) = match added.await {
            Ok(senders) => senders,
            Err(e) => {
                // Nothing else holds the connection yet: close it here.
                let _ = pc.close().await;
                return Err(unavailable(e));
            }
        };
        let (readers, subscriber_gone) = tokio::sync::watch::channel(());
        for sender in [video.clone(), audio] {
            // Read the viewer's RTCP: the interceptors answer NACKs from it,
            // and keyframe requests go on to the host.
            let weak = Arc::downgrade(&self);
            let mut gone = subscriber_gone.clone();
            self.sfu.runtime().spawn(async move {
                let ssrc = sender
                    .get_parameters()
                    .await
                    .encodings
                    .first()
                    .map_or(0, |e| e.ssrc);
                let mut reported = 0;
                loop {
                    let read = tokio::select! {
                        read = sender.read_rtcp() => read,
                        // Only ever an error: nothing is sent on it.
                        _ = gone.changed() => break,
                    };
                    let Some(core) = weak.upgrade() else { break };
                    match read {
                        Ok((packets, _)) => core.viewer_rtcp(ssrc, &packets, &mut reported),
                        // Closed: the viewer is gone.
                        Err(webrtc::Error::ErrClosedPipe) => break,
                        // One bad packet (or a read before the sender
                        // started) must not end the reading: without it
                        // this viewer's NACKs and keyframe requests would
                        // go unanswered for good.
                        Err(e) => {
                            tracing::debug!(session_id = %core.session_id, error = %e, "viewer RTCP");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            });
        }
        let weak = Arc::downgrade(&self);
        let since = Instant::now();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let core = weak.upgrade();
            Box::pin(async move {
                let Some(core) = core else { return };
                tracing::debug!(session_id = %core.session_id, viewer = %id, ?state, after_ms = since.elapsed().as_millis(), "viewer connection");
                match state {
                    // A new viewer starts on a fresh keyframe (many arriving
                    // at once share one request).
                    RTCPeerConnectionState::Connected => core.request_keyframe(),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        let gone = lock(&core.subscribers).remove(&id);
                        core.end_subscriber(id, gone).await;
                    }
                    _ => {}
                }
            })
        }));
        let sdp = self.negotiate(&pc, offer).await?;
        let user = viewer.user;
        lock(&self.subscribers).insert(
            id,
            Subscriber {
                user,
                guest,
                viewer: Viewer::Crate { pc, video },
                seat,
                _readers: readers,
            },
        );
        slot.keep();
        self.metrics.media_subscribers.inc();
        self.reclaim_if_unconnected(id, subscriber_gone);
        Ok(Answer { resource: id, sdp })
    }

    /// A viewer slot (under the room's and the per-viewer limits) and a
    /// seat in a lane for viewer `id`. The slot is taken before anything
    /// awaits, and given back if the offer fails (the reservation's drop).
    pub(super) fn place_viewer(
        &self,
        id: Uuid,
        viewer: Holder,
    ) -> Result<(Reservation<'_>, Seat), MediaError> {
        let settings = self.sfu.settings();
        let slot = Reservation::take(
            &self.slots,
            id,
            viewer,
            settings.max_subscribers,
            &settings.viewer_limits,
        )?;
        let seat = Seat::take(&self.lanes).ok_or_else(|| unavailable("the room has no lanes"))?;
        Ok((slot, seat))
    }

    /// Ends viewer `id` after the connect timeout unless it connected (or
    /// ended: `gone` then says so).
    pub(super) fn reclaim_if_unconnected(
        self: &Arc<Self>,
        id: Uuid,
        mut gone: tokio::sync::watch::Receiver<()>,
    ) {
        let weak = Arc::downgrade(self);
        let timeout = self.sfu.settings().viewer_limits.connect_timeout;
        self.sfu.runtime().spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {}
                // Ended before: nothing to reclaim (and no task left behind).
                _ = gone.changed() => return,
            }
            if let Some(core) = weak.upgrade() {
                core.reclaim_unconnected(id).await;
            }
        });
    }

    /// Ends viewer `id` if it has not reached ICE connected (an offer that
    /// was answered and never used, or a peer that vanished at once): its
    /// slot is free for someone who will watch.
    async fn reclaim_unconnected(&self, id: Uuid) {
        let gone = {
            let mut subscribers = lock(&self.subscribers);
            let connected = subscribers.get(&id).map(|s| s.viewer.connected());
            match connected {
                Some(false) => subscribers.remove(&id),
                _ => None,
            }
        };
        if gone.is_some() {
            tracing::info!(session_id = %self.session_id, viewer = %id, "viewer never connected; its slot is freed");
        }
        self.end_subscriber(id, gone).await;
    }

    /// Every guest stops playing (the host turned guests off).
    pub(super) async fn end_guests(self: Arc<Self>) {
        let guests: Vec<(Uuid, Subscriber)> = {
            let mut subscribers = lock(&self.subscribers);
            let ids: Vec<Uuid> = subscribers
                .iter()
                .filter(|(_, s)| s.guest)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| subscribers.remove(&id).map(|s| (id, s)))
                .collect()
        };
        for (id, gone) in guests {
            self.end_subscriber(id, Some(gone)).await;
        }
    }

    /// A viewer taken out of `subscribers` leaves: its slot is freed, its
    /// connection closed, the gauge counts it out (once, whoever removed it).
    pub(super) async fn end_subscriber(&self, id: Uuid, gone: Option<Subscriber>) {
        let Some(gone) = gone else { return };
        lock(&self.slots).release(id);
        self.metrics.media_subscribers.dec();
        if let Viewer::Edge(peer) = &gone.viewer {
            gone.seat.lane.remove_edge_peer(peer);
        }
        gone.viewer.close().await;
    }

    pub(super) async fn unpublish(
        self: Arc<Self>,
        resource: Uuid,
        user: Uuid,
    ) -> Result<(), MediaError> {
        let publisher = {
            let mut current = lock(&self.publisher);
            match current.as_ref() {
                Some(p) if p.id == resource && p.user == user => current.take(),
                Some(p) if p.id == resource => return Err(MediaError::Forbidden),
                _ => return Err(MediaError::NotFound),
            }
        };
        if let Some(p) = publisher {
            self.end_publisher(p).await;
        }
        Ok(())
    }

    pub(super) async fn unsubscribe(
        self: Arc<Self>,
        resource: Uuid,
        user: Uuid,
    ) -> Result<(), MediaError> {
        let subscriber = {
            let mut subscribers = lock(&self.subscribers);
            match subscribers.get(&resource) {
                Some(s) if s.user == user => subscribers.remove(&resource),
                Some(_) => return Err(MediaError::Forbidden),
                None => return Err(MediaError::NotFound),
            }
        };
        self.end_subscriber(resource, subscriber).await;
        Ok(())
    }
}
