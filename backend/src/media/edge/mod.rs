//! The edge: the relay's own viewer side, where the packets that cost go
//! out. Writing a packet to a viewer through the `webrtc` crate's peer
//! connection cost ~19 µs (a profile at 150 viewers: 39 % kernel `sendto`,
//! 23 % the crate's write layers, 16 % tokio wake-ups and semaphores, 7 %
//! AES-GCM, the rest hashing, allocation and its stats interceptor). Here
//! the relay owns that path, as mediasoup and Janus do: one UDP port per
//! address for every viewer (ICE lite, viewers told apart by their checks'
//! username and then by address), the DTLS handshake from the `dtls` crate,
//! and per packet only the viewer's SSRC and payload type written into the
//! header, AES-GCM, and one `sendmmsg` for a batch of viewers.
//!
//! Hosts still publish through the crate (one stream in, its cost is not
//! per viewer).

pub(crate) mod answer;
mod flight;
mod ice;
mod peer;
mod send;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;

pub(crate) use answer::Offer;
pub(crate) use peer::{Peer, PeerEvents};
pub(crate) use send::{bare, Batch};

use ice::Datagram;

/// Addresses one viewer's checks may come from (its candidates): a bound on
/// the edge's address table per viewer.
const MAX_PATHS_PER_PEER: usize = 8;

use super::lock;

/// The edge of one node. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("candidates", &self.inner.candidates)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Peers {
    by_ufrag: HashMap<String, Arc<Peer>>,
    by_addr: HashMap<(usize, SocketAddr), Arc<Peer>>,
}

pub(crate) struct Inner {
    sockets: Vec<Arc<UdpSocket>>,
    /// The host candidates announced (the bound address, or the public one).
    candidates: Vec<SocketAddr>,
    certificate: webrtc::dtls::crypto::Certificate,
    /// `sha-256 AB:CD:..` of `certificate`.
    fingerprint: String,
    peers: Mutex<Peers>,
    /// No check from a viewer for this long: it is gone.
    ice_timeout: Duration,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Dropped with the edge: its tasks end and its sockets close.
    stop: tokio::sync::watch::Sender<()>,
}

impl Edge {
    /// Binds one UDP socket per address in `bind_ips` at `port` (0: any)
    /// and starts reading them on `runtime`. `public_ips`, if given, are
    /// announced instead of the bound addresses (1:1 NAT).
    pub fn bind(
        bind_ips: &[IpAddr],
        public_ips: &[IpAddr],
        port: u16,
        ice_timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let _in_runtime = runtime.enter();
        let mut sockets = Vec::new();
        let mut candidates = Vec::new();
        for (n, ip) in bind_ips.iter().enumerate() {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(*ip, port))?;
            socket.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(socket)?;
            let local = socket.local_addr()?;
            let announced = public_ips.get(n).or(public_ips.first()).copied();
            candidates.push(SocketAddr::new(
                announced.unwrap_or(local.ip()),
                local.port(),
            ));
            sockets.push(Arc::new(socket));
        }
        let certificate =
            webrtc::dtls::crypto::Certificate::generate_self_signed(vec!["simmer".to_owned()])?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| anyhow::anyhow!("no certificate"))?;
        use sha2::Digest;
        let hex: Vec<String> = sha2::Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let inner = Arc::new(Inner {
            sockets,
            candidates,
            certificate,
            fingerprint: format!("sha-256 {}", hex.join(":")),
            peers: Mutex::new(Peers::default()),
            ice_timeout,
            runtime: runtime.clone(),
            stop: tokio::sync::watch::channel(()).0,
        });
        for n in 0..inner.sockets.len() {
            runtime.spawn(read(
                Arc::downgrade(&inner),
                inner.sockets[n].clone(),
                n,
                inner.stop.subscribe(),
            ));
        }
        runtime.spawn(sweep(Arc::downgrade(&inner), inner.stop.subscribe()));
        Ok(Self { inner })
    }

    /// Where viewers reach the edge.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.inner.candidates
    }

    /// The UDP ports the edge listens on.
    pub fn ports(&self) -> Vec<u16> {
        self.inner
            .sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| a.port())
            .collect()
    }

    /// Viewers the edge holds (answered and not yet closed), and addresses
    /// it knows them by.
    pub fn viewers(&self) -> (usize, usize) {
        let peers = lock(&self.inner.peers);
        (peers.by_ufrag.len(), peers.by_addr.len())
    }

    /// A new viewer for `offer`: its answer, and the viewer (told to
    /// `events`). It waits for checks until `connect_timeout`.
    pub(crate) fn accept(
        &self,
        offer: &Offer,
        events: Arc<dyn PeerEvents>,
        connect_timeout: Duration,
    ) -> (String, Arc<Peer>) {
        let peer = Arc::new(Peer::new(offer, events, Arc::downgrade(&self.inner)));
        let answer = offer.answer(
            &peer.ufrag,
            peer.pwd(),
            &self.inner.fingerprint,
            &self.inner.candidates,
        );
        lock(&self.inner.peers)
            .by_ufrag
            .insert(peer.ufrag.clone(), peer.clone());
        self.inner.runtime.spawn(
            peer.clone()
                .handshake(self.inner.certificate.clone(), connect_timeout),
        );
        (answer, peer)
    }

    /// Sends a batch of packets (each to its viewer's path).
    pub(crate) async fn send(&self, batch: &mut Batch) {
        send::flush(&self.inner, batch).await;
    }
}

impl Inner {
    /// Drops `peer` from the address tables.
    fn forget(&self, peer: &Peer) {
        let mut peers = lock(&self.peers);
        peers.by_ufrag.remove(&peer.ufrag);
        for addr in lock(&peer.addrs).drain(..) {
            peers.by_addr.remove(&addr);
        }
    }

    /// One datagram from `from` on socket `n`.
    async fn datagram(&self, n: usize, packet: &[u8], from: SocketAddr) {
        let known = lock(&self.peers).by_addr.get(&(n, from)).cloned();
        match Datagram::of(packet) {
            Datagram::Stun => {
                // Every check names its viewer (so an address a departed
                // viewer used can be taken over by a new one at once).
                let Some(peer) = ice::local_ufrag(packet)
                    .and_then(|ufrag| lock(&self.peers).by_ufrag.get(&ufrag).cloned())
                else {
                    return;
                };
                let Some((response, ours)) = peer.check(packet, n, from) else {
                    return;
                };
                if known.as_ref().is_none_or(|k| !Arc::ptr_eq(k, &peer)) {
                    // A new address for this viewer: known from now on,
                    // up to MAX_PATHS_PER_PEER of them.
                    let mut peers = lock(&self.peers);
                    if let Some(old) = known {
                        lock(&old.addrs).retain(|a| *a != (n, from));
                        peers.by_addr.remove(&(n, from));
                    }
                    let mut addrs = lock(&peer.addrs);
                    if addrs.len() < MAX_PATHS_PER_PEER && !peer.is_closed() {
                        addrs.push((n, from));
                        peers.by_addr.insert((n, from), peer.clone());
                    }
                }
                let _ = self.sockets[n].send_to(&response, from).await;
                if let Some(ours) = ours {
                    let _ = self.sockets[n].send_to(&ours, from).await;
                }
            }
            Datagram::Dtls => {
                if let Some(peer) = known {
                    for datagram in peer.last_flight_again(packet) {
                        let _ = self.sockets[n].send_to(&datagram, from).await;
                    }
                    peer.dtls_record(Bytes::copy_from_slice(packet));
                }
            }
            Datagram::Rtp => {
                if let Some(peer) = known {
                    peer.srtcp(packet);
                }
            }
            Datagram::Other => {}
        }
    }
}

/// Reads socket `n` until the edge is gone.
async fn read(
    edge: std::sync::Weak<Inner>,
    socket: Arc<UdpSocket>,
    n: usize,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let read = tokio::select! {
            read = socket.recv_from(&mut buf) => read,
            // Only ever an error: the edge is gone.
            _ = stop.changed() => return,
        };
        let (len, from) = match read {
            Ok(read) => read,
            // ICMP errors from earlier sends surface here: keep reading.
            Err(_) => continue,
        };
        let Some(edge) = edge.upgrade() else { return };
        edge.datagram(n, &buf[..len], from).await;
    }
}

/// Once a second: viewers not heard from for the ICE timeout are closed,
/// and connected ones get their sender reports.
async fn sweep(edge: std::sync::Weak<Inner>, mut stop: tokio::sync::watch::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(edge) = edge.upgrade() else { return };
        let peers: Vec<Arc<Peer>> = lock(&edge.peers).by_ufrag.values().cloned().collect();
        let mut batch = Batch::default();
        for peer in peers {
            if peer.timed_out(edge.ice_timeout) {
                tracing::debug!(peer = ?peer, "edge: viewer timed out");
                peer.close();
            } else {
                peer.sender_reports(&mut batch);
            }
        }
        send::flush(&edge, &mut batch).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use webrtc::stun::agent::TransactionId;
    use webrtc::stun::attributes::ATTR_USERNAME;
    use webrtc::stun::fingerprint::FINGERPRINT;
    use webrtc::stun::integrity::MessageIntegrity;
    use webrtc::stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use webrtc::stun::textattrs::TextAttribute;

    use super::*;

    #[derive(Default)]
    struct Counted {
        connected: AtomicUsize,
        closed: AtomicUsize,
    }

    impl PeerEvents for Counted {
        fn connected(&self) {
            self.connected.fetch_add(1, Ordering::SeqCst);
        }
        fn rtcp(&self, _: &Arc<Peer>, _: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>]) {}
        fn closed(&self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:view\r\na=ice-pwd:viewerpasswordviewerpassword\r\n\
a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:0\r\na=recvonly\r\n\
a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n";

    fn check(username: &str, pwd: &str) -> Vec<u8> {
        let mut m = Message::new();
        let setters: [Box<dyn Setter>; 5] = [
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
            Box::new(MessageIntegrity::new_short_term_integrity(pwd.to_owned())),
            Box::new(FINGERPRINT),
        ];
        m.build(&setters).unwrap();
        m.raw
    }

    fn answer_attr<'a>(answer: &'a str, key: &str) -> &'a str {
        answer
            .lines()
            .find_map(|l| l.strip_prefix(&format!("a={key}:")))
            .unwrap()
    }

    async fn response(socket: &UdpSocket) -> Message {
        let mut buf = [0u8; 1500];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let mut m = Message::new();
            m.unmarshal_binary(&buf[..n]).unwrap();
            // The edge's own check (before nomination) is not the answer.
            if m.typ != BINDING_REQUEST {
                return m;
            }
        }
    }

    /// An edge on 127.0.0.1, any port.
    fn loopback_edge() -> Edge {
        Edge::bind(
            &["127.0.0.1".parse().unwrap()],
            &[],
            0,
            Duration::from_secs(10),
            tokio::runtime::Handle::current(),
        )
        .unwrap()
    }

    /// What strangers send is dropped without a trace; a viewer is known
    /// by at most `MAX_PATHS_PER_PEER` addresses; closing forgets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_edge_holds_nothing_for_strangers_and_a_bounded_table_per_viewer() {
        let edge = loopback_edge();
        let to = edge.candidates()[0];
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for junk in [
            &[22u8, 254, 253, 0, 0][..],
            &[0x80, 200, 0, 1],
            b"hello",
            &check("nobody:view", "x"),
        ] {
            stranger.send_to(junk, to).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(edge.viewers(), (0, 0));

        let runtime = tokio::runtime::Handle::current();
        let tasks_before = runtime.metrics().num_alive_tasks();
        let events = Arc::new(Counted::default());
        let offer = Offer::parse(OFFER).unwrap();
        let (answer, peer) = edge.accept(&offer, events.clone(), Duration::from_secs(10));
        let ufrag = answer_attr(&answer, "ice-ufrag");
        let pwd = answer_attr(&answer, "ice-pwd");
        assert!(answer.contains(&format!("{} {} typ host", to.ip(), to.port())));
        assert_eq!(edge.viewers(), (1, 0));

        // A check with the wrong password: no answer, no entry.
        stranger
            .send_to(&check(&format!("{ufrag}:view"), "guess"), to)
            .await
            .unwrap();
        // Signed checks from many addresses: each answered, a few kept.
        let mut sockets = Vec::new();
        for _ in 0..(MAX_PATHS_PER_PEER + 4) {
            let from = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            from.send_to(&check(&format!("{ufrag}:view"), pwd), to)
                .await
                .unwrap();
            assert_eq!(response(&from).await.typ, BINDING_SUCCESS);
            sockets.push(from);
        }
        assert_eq!(edge.viewers(), (1, MAX_PATHS_PER_PEER));
        assert!(peer.path().is_some());

        // Another viewer checks from an address the first one used (a
        // port reused): the address is the new viewer's from then on.
        let (answer2, peer2) = edge.accept(&offer, events.clone(), Duration::from_secs(10));
        let (ufrag2, pwd2) = (
            answer_attr(&answer2, "ice-ufrag"),
            answer_attr(&answer2, "ice-pwd"),
        );
        sockets[0]
            .send_to(&check(&format!("{ufrag2}:view"), pwd2), to)
            .await
            .unwrap();
        assert_eq!(response(&sockets[0]).await.typ, BINDING_SUCCESS);
        assert_eq!(peer2.path().unwrap().addr, sockets[0].local_addr().unwrap());
        assert_eq!(edge.viewers(), (2, MAX_PATHS_PER_PEER));
        peer2.close();
        assert_eq!(edge.viewers(), (1, MAX_PATHS_PER_PEER - 1));

        // Its DTLS handshake is waiting for a ClientHello that never comes.
        assert!(runtime.metrics().num_alive_tasks() > tasks_before);
        peer.close();
        assert_eq!(edge.viewers(), (0, 0));
        assert_eq!(
            events.closed.load(Ordering::SeqCst),
            2,
            "closed is told once each"
        );
        peer.close();
        assert_eq!(events.closed.load(Ordering::SeqCst), 2);
        // Closing ends the handshake and its tasks at once, not at its
        // timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while runtime.metrics().num_alive_tasks() > tasks_before {
            assert!(
                std::time::Instant::now() < deadline,
                "the handshake outlived its viewer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A test viewer's DTLS path to the edge: the edge's STUN is skipped,
    /// and the first datagram of the edge's last flight is lost.
    struct LosesTheLastFlight {
        socket: UdpSocket,
        to: SocketAddr,
        seen: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl webrtc::util::Conn for LosesTheLastFlight {
        async fn connect(&self, _: SocketAddr) -> webrtc::util::Result<()> {
            Ok(())
        }

        async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
            loop {
                let (n, _) = self.socket.recv_from(buf).await?;
                if Datagram::of(&buf[..n]) != Datagram::Dtls {
                    continue;
                }
                if flight::ends_handshake(&buf[..n])
                    && self.seen.fetch_add(1, Ordering::SeqCst) == 0
                {
                    continue;
                }
                return Ok(n);
            }
        }

        async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
            Ok((self.recv(buf).await?, self.to))
        }

        async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
            Ok(self.socket.send_to(buf, self.to).await?)
        }

        async fn send_to(&self, buf: &[u8], _: SocketAddr) -> webrtc::util::Result<usize> {
            self.send(buf).await
        }

        fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
            Ok(self.socket.local_addr()?)
        }

        fn remote_addr(&self) -> Option<SocketAddr> {
            Some(self.to)
        }

        async fn close(&self) -> webrtc::util::Result<()> {
            Ok(())
        }

        fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
            self
        }
    }

    /// The edge's last handshake flight is lost on its way: the viewer
    /// sends its own last flight again, and the edge answers with its own
    /// again (the crate's server alone would not, and the viewer would
    /// wait for good).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_that_misses_the_last_flight_gets_it_again() {
        use sha2::Digest;
        use webrtc::dtls::config::{Config, ExtendedMasterSecretType};
        use webrtc::dtls::conn::DTLSConn;
        use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;

        let edge = loopback_edge();
        let to = edge.candidates()[0];
        let certificate =
            webrtc::dtls::crypto::Certificate::generate_self_signed(vec!["viewer".to_owned()])
                .unwrap();
        let fingerprint = sha2::Sha256::digest(certificate.certificate[0].as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let offer = Offer::parse(&OFFER.replace("AA:BB", &fingerprint)).unwrap();
        let events = Arc::new(Counted::default());
        let (answer, peer) = edge.accept(&offer, events.clone(), Duration::from_secs(10));
        let (ufrag, pwd) = (
            answer_attr(&answer, "ice-ufrag"),
            answer_attr(&answer, "ice-pwd"),
        );
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&check(&format!("{ufrag}:view"), pwd), to)
            .await
            .unwrap();
        assert_eq!(response(&socket).await.typ, BINDING_SUCCESS);

        let path = Arc::new(LosesTheLastFlight {
            socket,
            to,
            seen: AtomicUsize::new(0),
        });
        let config = Config {
            certificates: vec![certificate],
            insecure_skip_verify: true,
            srtp_protection_profiles: vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm],
            extended_master_secret: ExtendedMasterSecretType::Require,
            // The viewer sends its last flight again after 100 ms.
            flight_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let handshake = tokio::time::timeout(
            Duration::from_secs(5),
            DTLSConn::new(path.clone(), config, true, None),
        )
        .await;
        assert!(
            path.seen.load(Ordering::SeqCst) >= 2,
            "the edge's last flight came once (lost) and then again"
        );
        let dtls = handshake
            .expect("the viewer's handshake ends though the edge's last flight was lost")
            .unwrap();
        assert_eq!(events.connected.load(Ordering::SeqCst), 1);
        assert!(peer.is_connected());
        dtls.close().await.unwrap();
        peer.close();
    }
}
