//! One viewer on the edge: its ICE lite state (where it is, when it last
//! checked), its DTLS handshake (the edge is the server), and the SRTP
//! contexts the handshake keys: one to encrypt what the relay sends, one to
//! decrypt the viewer's RTCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;
use tokio::sync::mpsc;
use webrtc::dtls::config::{ClientAuthType, Config as DtlsConfig, ExtendedMasterSecretType};
use webrtc::dtls::conn::DTLSConn;
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::srtp::context::Context;
use webrtc::srtp::protection_profile::ProtectionProfile;
use webrtc::util::Conn;

use super::answer::{Fingerprint, Leg, Offer};
use super::flight::LastFlight;
use super::{ice, Inner};
use crate::media::lock;

/// DTLS records queued for a viewer's handshake (a flight is a few).
const DTLS_INBOX: usize = 64;

/// Packets sent again on a viewer's NACKs, at most, per second: a lane's
/// whole history (about three seconds of video), so one viewer's NACKs
/// cannot make the relay send more than three times its stream.
const RESEND_PER_SECOND: u32 = 512;

/// What happens to a viewer, told to the room.
pub(crate) trait PeerEvents: Send + Sync {
    /// DTLS is up: media flows from now on.
    fn connected(&self);
    /// RTCP from the viewer, decrypted.
    fn rtcp(
        &self,
        peer: &Arc<Peer>,
        packets: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>],
    );
    /// The viewer is gone (ICE timed out, DTLS failed or closed).
    fn closed(&self);
}

/// Where the viewer is: the socket (by index) and address its checks came
/// from, the nominated one once there is one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Path {
    pub(super) socket: usize,
    pub(super) addr: SocketAddr,
    nominated: bool,
}

/// One outgoing stream's numbers, for sender reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) packets: u32,
    pub(crate) octets: u32,
    pub(crate) last_timestamp: u32,
    pub(crate) last_at: Option<Instant>,
}

/// The keyed state: SRTP out (RTP and RTCP) and what was sent per leg.
pub(crate) struct Keyed {
    pub(crate) out: Context,
    pub(crate) sent: [Sent; 2],
}

/// A viewer of the edge.
pub(crate) struct Peer {
    pub(super) ufrag: String,
    pwd: String,
    remote_ufrag: String,
    remote_pwd: String,
    remote_fingerprint: Fingerprint,
    pub(crate) video: Option<Leg>,
    pub(crate) audio: Option<Leg>,
    path: Mutex<Option<Path>>,
    /// The addresses (socket, address) the edge knows this viewer by.
    pub(super) addrs: Mutex<Vec<(usize, SocketAddr)>>,
    last_check: Mutex<Instant>,
    created: Instant,
    dtls_in: mpsc::Sender<Bytes>,
    dtls_rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    pub(crate) keyed: Mutex<Option<Keyed>>,
    rtcp_in: Mutex<Option<Context>>,
    dtls: Mutex<Option<Arc<DTLSConn>>>,
    /// The handshake's last flight, for a viewer that did not get it.
    last_flight: Mutex<LastFlight>,
    events: Arc<dyn PeerEvents>,
    closed: AtomicBool,
    /// Set when the viewer closes: a handshake still running stops.
    closing: tokio::sync::watch::Sender<bool>,
    /// Since when, and how many packets were sent again on NACKs.
    resent: Mutex<(Instant, u32)>,
    edge: Weak<Inner>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("ufrag", &self.ufrag)
            .field("path", &*lock(&self.path))
            .finish_non_exhaustive()
    }
}

fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

fn srtp_profile(p: SrtpProtectionProfile) -> Option<ProtectionProfile> {
    Some(match p {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
            ProtectionProfile::Aes128CmHmacSha1_80
        }
        _ => return None,
    })
}

fn digest(algorithm: &str, der: &[u8]) -> Vec<u8> {
    match algorithm {
        "sha-384" => sha2::Sha384::digest(der).to_vec(),
        "sha-512" => sha2::Sha512::digest(der).to_vec(),
        _ => sha2::Sha256::digest(der).to_vec(),
    }
}

impl Peer {
    pub(super) fn new(offer: &Offer, events: Arc<dyn PeerEvents>, edge: Weak<Inner>) -> Self {
        let (dtls_in, dtls_rx) = mpsc::channel(DTLS_INBOX);
        Self {
            ufrag: random_token(16),
            pwd: random_token(32),
            remote_ufrag: offer.ice_ufrag.clone(),
            remote_pwd: offer.ice_pwd.clone(),
            remote_fingerprint: offer.fingerprint.clone(),
            video: offer.video.clone(),
            audio: offer.audio.clone(),
            path: Mutex::new(None),
            addrs: Mutex::new(Vec::new()),
            last_check: Mutex::new(Instant::now()),
            created: Instant::now(),
            dtls_in,
            dtls_rx: Mutex::new(Some(dtls_rx)),
            keyed: Mutex::new(None),
            rtcp_in: Mutex::new(None),
            dtls: Mutex::new(None),
            last_flight: Mutex::default(),
            events,
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            resent: Mutex::new((Instant::now(), 0)),
            edge,
        }
    }

    pub(super) fn pwd(&self) -> &str {
        &self.pwd
    }

    /// Where media goes now (`None`: no check has passed yet).
    pub(super) fn path(&self) -> Option<Path> {
        *lock(&self.path)
    }

    pub(crate) fn is_connected(&self) -> bool {
        lock(&self.keyed).is_some() && !self.is_closed()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// A connectivity check came from `addr` on socket `socket`: answers
    /// it if it is signed for this viewer. Returns the response to send
    /// back and, for the first check from an address before the viewer
    /// nominated, a check of our own to send there too.
    pub(super) fn check(
        &self,
        packet: &[u8],
        socket: usize,
        addr: SocketAddr,
    ) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let check = ice::answer(packet, &self.ufrag, &self.remote_ufrag, &self.pwd, addr)?;
        *lock(&self.last_check) = Instant::now();
        let mut path = lock(&self.path);
        let first_here = path.is_none_or(|p| p.addr != addr || p.socket != socket);
        let ours = (first_here && !check.nominated && path.is_none_or(|p| !p.nominated))
            .then(|| ice::triggered_check(&self.ufrag, &self.remote_ufrag, &self.remote_pwd))
            .flatten();
        // The nominated path wins; before a nomination, the latest that
        // passed (so a DTLS ClientHello that comes first has an answer).
        if check.nominated || path.is_none_or(|p| !p.nominated) {
            *path = Some(Path {
                socket,
                addr,
                nominated: check.nominated,
            });
        }
        Some((check.response, ours))
    }

    /// How many of `asked` packets may be sent again now (see
    /// [`RESEND_PER_SECOND`]); they are counted as sent.
    pub(crate) fn resend_budget(&self, asked: usize) -> usize {
        let mut resent = lock(&self.resent);
        if resent.0.elapsed() >= Duration::from_secs(1) {
            *resent = (Instant::now(), 0);
        }
        let allowed = (RESEND_PER_SECOND - resent.1).min(u32::try_from(asked).unwrap_or(u32::MAX));
        resent.1 += allowed;
        allowed as usize
    }

    /// Not checked for `timeout` (or never, `timeout` after its answer).
    pub(super) fn timed_out(&self, timeout: Duration) -> bool {
        lock(&self.last_check).elapsed() > timeout && self.created.elapsed() > timeout
    }

    /// A DTLS record from the viewer (dropped if the handshake task is
    /// that far behind: DTLS retransmits).
    pub(super) fn dtls_record(&self, packet: Bytes) {
        let _ = self.dtls_in.try_send(packet);
    }

    /// The edge's last handshake flight, to send back now, when `packet`
    /// shows the viewer missed it (see [`super::flight`]).
    pub(super) fn last_flight_again(&self, packet: &[u8]) -> Vec<Bytes> {
        lock(&self.last_flight).again(packet, Instant::now())
    }

    /// SRTCP from the viewer.
    pub(super) fn srtcp(self: &Arc<Self>, packet: &[u8]) {
        let plain = {
            let mut ctx = lock(&self.rtcp_in);
            let Some(ctx) = ctx.as_mut() else { return };
            match ctx.decrypt_rtcp(packet) {
                Ok(plain) => plain,
                Err(_) => return,
            }
        };
        let mut buf = plain;
        if let Ok(packets) = webrtc::rtcp::packet::unmarshal(&mut buf) {
            self.events.rtcp(self, &packets);
        }
    }

    /// The DTLS handshake (server side), then the SRTP keys; the viewer is
    /// closed if it fails or is not done within `timeout`.
    pub(super) async fn handshake(
        self: Arc<Self>,
        certificate: webrtc::dtls::crypto::Certificate,
        timeout: Duration,
    ) {
        let Some(rx) = lock(&self.dtls_rx).take() else {
            return;
        };
        let conn: Arc<dyn Conn + Send + Sync> = Arc::new(DtlsPath {
            peer: Arc::downgrade(&self),
            rx: tokio::sync::Mutex::new(rx),
        });
        let config = DtlsConfig {
            certificates: vec![certificate],
            srtp_protection_profiles: vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ],
            client_auth: ClientAuthType::RequireAnyClientCert,
            // The viewer's certificate is self-signed: it is checked
            // against the offer's fingerprint below.
            insecure_skip_verify: true,
            extended_master_secret: ExtendedMasterSecretType::Request,
            ..Default::default()
        };
        let mut closing = self.closing.subscribe();
        if self.is_closed() {
            return;
        }
        let done = tokio::select! {
            done = tokio::time::timeout(timeout, DTLSConn::new(conn, config, false, None)) => done,
            // Closed meanwhile: the half-done association (and the tasks
            // it started) go with this future.
            _ = closing.wait_for(|closing| *closing) => return,
        };
        let dtls = match done {
            Ok(Ok(dtls)) => {
                lock(&self.last_flight).done();
                Arc::new(dtls)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "edge: viewer DTLS failed");
                return self.close();
            }
            Err(_) => {
                tracing::debug!("edge: viewer DTLS timed out");
                return self.close();
            }
        };
        match self.keys(&dtls).await {
            Ok((out, rtcp_in)) => {
                *lock(&self.rtcp_in) = Some(rtcp_in);
                *lock(&self.keyed) = Some(Keyed {
                    out,
                    sent: Default::default(),
                });
            }
            Err(e) => {
                tracing::info!(error = %e, "edge: viewer refused");
                let _ = dtls.close().await;
                return self.close();
            }
        }
        *lock(&self.dtls) = Some(dtls.clone());
        if self.is_closed() {
            let _ = dtls.close().await;
            return;
        }
        self.events.connected();
        // Keeps the association read (alerts, a close_notify) until it ends.
        let mut buf = vec![0u8; 1500];
        while dtls.read(&mut buf, None).await.is_ok() {}
        // The association ended (the viewer's close_notify, or ours):
        // nothing more is sent. The viewer itself stays a WHEP resource
        // until its DELETE or until its checks stop (the sweep), as with
        // the crate's peer connections: a page that closes its connection
        // and then DELETEs must not get 404.
        *lock(&self.keyed) = None;
    }

    /// Checks the viewer's certificate and derives the SRTP contexts.
    async fn keys(&self, dtls: &DTLSConn) -> anyhow::Result<(Context, Context)> {
        let state = dtls.connection_state().await;
        let cert = state
            .peer_certificates
            .first()
            .ok_or_else(|| anyhow::anyhow!("the viewer sent no certificate"))?;
        let fp = &self.remote_fingerprint;
        if digest(&fp.algorithm, cert) != fp.digest {
            anyhow::bail!("the viewer's certificate does not match its offer's fingerprint");
        }
        let profile = srtp_profile(dtls.selected_srtpprotection_profile())
            .ok_or_else(|| anyhow::anyhow!("no SRTP profile in common"))?;
        let mut config = webrtc::srtp::config::Config {
            profile,
            ..Default::default()
        };
        config.extract_session_keys_from_dtls(state, false).await?;
        let keys = &config.keys;
        let out = Context::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            profile,
            None,
            None,
        )?;
        let rtcp_in = Context::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            profile,
            None,
            None,
        )?;
        Ok((out, rtcp_in))
    }

    /// Ends the viewer (once): the room is told, the edge forgets it.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.closing.send_replace(true);
        *lock(&self.keyed) = None;
        if let Some(edge) = self.edge.upgrade() {
            edge.forget(self);
        }
        if let Some(dtls) = lock(&self.dtls).take() {
            if let Some(edge) = self.edge.upgrade() {
                edge.runtime.spawn(async move {
                    let _ = dtls.close().await;
                });
            }
        }
        self.events.closed();
    }
}

/// The DTLS association's datagram path: records routed to this viewer by
/// the edge in, the viewer's current path out.
struct DtlsPath {
    peer: Weak<Peer>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
}

impl DtlsPath {
    /// The viewer and its edge, while both exist.
    fn ends(&self) -> webrtc::util::Result<(Arc<Peer>, Arc<Inner>)> {
        let closed = || webrtc::util::Error::ErrClosedListener;
        let peer = self.peer.upgrade().ok_or_else(closed)?;
        let edge = peer.edge.upgrade().ok_or_else(closed)?;
        Ok((peer, edge))
    }
}

#[async_trait::async_trait]
impl Conn for DtlsPath {
    async fn connect(&self, _: SocketAddr) -> webrtc::util::Result<()> {
        Err(webrtc::util::Error::Other("not supported".into()))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        let packet = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(webrtc::util::Error::ErrClosedListener)?;
        let n = packet.len().min(buf.len());
        buf[..n].copy_from_slice(&packet[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        let addr = self
            .remote_addr()
            .ok_or(webrtc::util::Error::ErrClosedListener)?;
        Ok((n, addr))
    }

    async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
        let (peer, edge) = self.ends()?;
        lock(&peer.last_flight).sent(buf);
        let Some(path) = peer.path() else {
            return Ok(buf.len());
        };
        Ok(edge.sockets[path.socket].send_to(buf, path.addr).await?)
    }

    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> webrtc::util::Result<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        let (peer, edge) = self.ends()?;
        let socket = peer.path().map_or(0, |p| p.socket);
        Ok(edge.sockets[socket].local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.peer.upgrade()?.path().map(|p| p.addr)
    }

    async fn close(&self) -> webrtc::util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
