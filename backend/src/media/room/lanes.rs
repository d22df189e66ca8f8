//! The room's fan-out over lanes. Writing one packet to a viewer costs the
//! `webrtc` crate ~20 µs (interceptors, SRTP, `sendto`), so one task writing
//! to every viewer holds one core at ~200 viewers of 1.5 Mbit/s and falls
//! behind; the backlog then builds in the crate's receive buffers, seconds
//! deep. Here viewers are spread over lanes, each a pair of local tracks
//! written by its own task, so a room writes on every core of the media
//! runtime; the host's packets are read by a task that never waits on
//! viewers, stamped and queued to every lane. A lane that finds a packet
//! older than `max_queue` drops it instead of delaying it (a packet seconds
//! late is worthless live), renumbers so its viewers see no gap to ask
//! again for, and asks the host for a keyframe once caught up.

use std::sync::atomic::AtomicUsize;

use tokio::sync::mpsc;
use webrtc::rtp::packet::Packet;

use super::renumber::Renumber;
use super::*;

/// Packets queued per lane and kind: ~5 s of 1.5 Mbit/s video, far more
/// than `max_queue` lets a lane keep; a full queue drops like a late packet.
const QUEUE_PACKETS: usize = 1024;

/// A lane's edge viewers, as one snapshot (replaced when one comes or goes).
type EdgePeers = Arc<Vec<Arc<edge::Peer>>>;

/// Packets kept per lane and kind to answer edge viewers' NACKs: about
/// three seconds of 1.5 Mbit/s video, once per lane rather than per viewer.
const HISTORY: usize = 512;

/// The last [`HISTORY`] packets a lane wrote, by sequence number.
pub(super) struct History {
    slots: Vec<Option<Packet>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            slots: vec![None; HISTORY],
        }
    }
}

impl History {
    fn put(&mut self, packet: Packet) {
        let slot = usize::from(packet.header.sequence_number) % HISTORY;
        self.slots[slot] = Some(packet);
    }

    /// Packet `seq`, if still kept.
    pub(super) fn get(&self, seq: u16) -> Option<&Packet> {
        self.slots[usize::from(seq) % HISTORY]
            .as_ref()
            .filter(|p| p.header.sequence_number == seq)
    }
}

/// Video or audio, as an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Video = 0,
    Audio = 1,
}

impl Kind {
    pub(super) fn of(kind: RTPCodecType) -> Self {
        if kind == RTPCodecType::Audio {
            Self::Audio
        } else {
            Self::Video
        }
    }
}

/// One lane: the tracks its viewers are bound to.
pub(super) struct Lane {
    video: Mutex<Arc<TrackLocalStaticRTP>>,
    audio: Arc<TrackLocalStaticRTP>,
    viewers: AtomicUsize,
    /// Per kind, how the lane numbers its packets around the ones it
    /// dropped, so that its stream has no gap. Kept across publishes (the
    /// room's [`Rewriter`] continues from what it forwarded, which counts
    /// the dropped ones).
    renumber: [Mutex<Renumber>; 2],
    /// The lane's viewers on the edge (copied when one comes or goes, read
    /// once per packet).
    edge: Mutex<EdgePeers>,
    /// What the lane wrote lately, per kind, for edge viewers' NACKs.
    pub(super) history: [Mutex<History>; 2],
}

impl Lane {
    pub(super) fn new(video: Arc<TrackLocalStaticRTP>, audio: Arc<TrackLocalStaticRTP>) -> Self {
        Self {
            video: Mutex::new(video),
            audio,
            viewers: AtomicUsize::new(0),
            renumber: Default::default(),
            edge: Mutex::default(),
            history: Default::default(),
        }
    }

    /// The lane's edge viewers now.
    pub(super) fn edge_peers(&self) -> EdgePeers {
        lock(&self.edge).clone()
    }

    pub(super) fn add_edge_peer(&self, peer: Arc<edge::Peer>) {
        let mut peers = lock(&self.edge);
        let mut next = peers.as_ref().clone();
        next.push(peer);
        *peers = Arc::new(next);
    }

    pub(super) fn remove_edge_peer(&self, peer: &Arc<edge::Peer>) {
        let mut peers = lock(&self.edge);
        let next: Vec<_> = peers
            .iter()
            .filter(|p| !Arc::ptr_eq(p, peer))
            .cloned()
            .collect();
        *peers = Arc::new(next);
    }

    pub(super) fn video(&self) -> Arc<TrackLocalStaticRTP> {
        lock(&self.video).clone()
    }

    pub(super) fn audio(&self) -> Arc<TrackLocalStaticRTP> {
        self.audio.clone()
    }

    /// Puts `track` in place of the video track.
    pub(super) fn replace_video(&self, track: Arc<TrackLocalStaticRTP>) {
        *lock(&self.video) = track;
    }
}

/// A viewer's place in a lane, given back when dropped (with the viewer).
pub(super) struct Seat {
    pub(super) lane: Arc<Lane>,
}

impl Seat {
    /// A seat in the lane with the fewest viewers (`None`: no lanes).
    pub(super) fn take(lanes: &[Arc<Lane>]) -> Option<Self> {
        let lane = lanes
            .iter()
            .min_by_key(|l| l.viewers.load(Ordering::Relaxed))?
            .clone();
        lane.viewers.fetch_add(1, Ordering::Relaxed);
        Some(Self { lane })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.lane.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A packet from the host, when the relay read it, and how many before it
/// the lane missed (its queue was full).
struct Stamped {
    packet: Packet,
    read_at: Instant,
    missed: u16,
}

/// Where the reader hands one host track's packets to the lanes.
pub(super) struct Fanout {
    queues: Vec<mpsc::Sender<Stamped>>,
    /// Per lane, packets not queued since the last one that was.
    missed: Vec<u16>,
}

impl RoomCore {
    /// Starts one writer per lane for a host track of `kind` (written to
    /// `tracks`, one per lane); they end when the returned fan-out is
    /// dropped and they have written what was queued.
    pub(super) fn start_lanes(
        self: &Arc<Self>,
        kind: Kind,
        tracks: Vec<Arc<TrackLocalStaticRTP>>,
    ) -> Fanout {
        let queues = self
            .lanes
            .iter()
            .zip(tracks)
            .map(|(lane, track)| {
                let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
                let codec = track.codec();
                let writer = LaneWriter {
                    core: Arc::downgrade(self),
                    lane: lane.clone(),
                    kind,
                    track,
                    max_queue: self.sfu.settings().relay.max_queue,
                    late: false,
                    edge: self.sfu.edge().cloned(),
                    codec: (codec.mime_type, codec.sdp_fmtp_line),
                    payload_types: None,
                    batch: edge::Batch::default(),
                };
                self.sfu.runtime().spawn(writer.run(rx));
                tx
            })
            .collect::<Vec<_>>();
        Fanout {
            missed: vec![0; queues.len()],
            queues,
        }
    }
}

impl Fanout {
    /// Queues `packet` to every lane. A lane whose queue is full misses it
    /// (counted, and renumbered over like a late one).
    pub(super) fn send(&mut self, core: &RoomCore, packet: &Packet) {
        let read_at = Instant::now();
        for ((queue, missed), lane) in self.queues.iter().zip(&mut self.missed).zip(&core.lanes) {
            let stamped = Stamped {
                packet: packet.clone(),
                read_at,
                missed: *missed,
            };
            match queue.try_send(stamped) {
                Ok(()) => *missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *missed = missed.wrapping_add(1);
                    core.count_dropped(lane);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// Writes one host track's packets to one lane's viewers.
struct LaneWriter {
    core: std::sync::Weak<RoomCore>,
    lane: Arc<Lane>,
    kind: Kind,
    track: Arc<TrackLocalStaticRTP>,
    max_queue: Duration,
    /// Dropping late packets until one is within half of `max_queue`.
    late: bool,
    /// Where the lane's edge viewers are written.
    edge: Option<edge::Edge>,
    /// The track's codec: mime type and fmtp (for each edge viewer's
    /// payload type).
    codec: (String, String),
    /// The lane's edge viewers as last seen, and the payload type each gets
    /// this track's codec as (looked up again when the viewers change).
    payload_types: Option<(EdgePeers, Vec<Option<u8>>)>,
    batch: edge::Batch,
}

impl LaneWriter {
    async fn run(mut self, mut queue: mpsc::Receiver<Stamped>) {
        let lane = self.lane.clone();
        let renumber = &lane.renumber[self.kind as usize];
        while let Some(Stamped {
            mut packet,
            read_at,
            missed,
        }) = queue.recv().await
        {
            let Some(core) = self.core.upgrade() else {
                return;
            };
            #[cfg(feature = "test-hooks")]
            {
                let stalled = *lock(&core.stalled_until);
                if let Some(until) = stalled {
                    tokio::time::sleep_until(until.into()).await;
                }
            }
            let seq = packet.header.sequence_number;
            if missed > 0 {
                lock(renumber).missed(seq, missed);
                self.late = true;
            }
            let limit = if self.late {
                self.max_queue / 2
            } else {
                self.max_queue
            };
            if read_at.elapsed() > limit {
                self.late = true;
                lock(renumber).dropped(seq);
                core.count_dropped(&self.lane);
                continue;
            }
            let Some(seq) = lock(renumber).number(seq) else {
                continue; // dropped once already
            };
            if std::mem::take(&mut self.late) && self.kind == Kind::Video {
                // What the viewers got since the drop cannot be decoded.
                core.request_keyframe();
            }
            packet.header.sequence_number = seq;
            let viewers = self.lane.viewers.load(Ordering::Relaxed) as u64;
            let size = packet.payload.len() as u64 + 12;
            let written = match &self.edge {
                Some(edge) => {
                    self.write_edge(edge.clone(), &packet).await;
                    true
                }
                None => self.track.write_rtp(&packet).await.is_ok(),
            };
            if written && viewers > 0 {
                core.counters
                    .packets_out
                    .fetch_add(viewers, Ordering::Relaxed);
                core.counters
                    .bytes_out
                    .fetch_add(viewers * size, Ordering::Relaxed);
                core.metrics.media_packets_out.inc_by(viewers);
                core.metrics.media_bytes_out.inc_by(viewers * size);
            }
        }
    }
}

impl LaneWriter {
    /// Writes `packet` to the lane's edge viewers (and keeps it for their
    /// NACKs).
    async fn write_edge(&mut self, edge: edge::Edge, packet: &Packet) {
        let kind = self.kind as usize;
        let bare = edge::bare(packet);
        let peers = self.lane.edge_peers();
        if !matches!(&self.payload_types, Some((seen, _)) if Arc::ptr_eq(seen, &peers)) {
            let (mime, fmtp) = &self.codec;
            let types = peers
                .iter()
                .map(|p| p.payload_type(kind, mime, fmtp))
                .collect();
            self.payload_types = Some((peers, types));
        }
        if let Some((peers, types)) = &self.payload_types {
            for (peer, pt) in peers.iter().zip(types) {
                if let Some(pt) = pt {
                    peer.seal(kind, *pt, &bare, &mut self.batch);
                }
            }
        }
        lock(&self.lane.history[kind]).put(bare);
        if !self.batch.is_empty() {
            edge.send(&mut self.batch).await;
        }
    }
}

impl RoomCore {
    /// A lane did not send a packet to its viewers.
    fn count_dropped(&self, lane: &Lane) {
        let viewers = lane.viewers.load(Ordering::Relaxed) as u64;
        self.counters.dropped.fetch_add(viewers, Ordering::Relaxed);
        self.metrics
            .media_packets_lost
            .with_label_values(&["dropped"])
            .inc_by(viewers);
    }
}
