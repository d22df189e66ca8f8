//! WebRTC peers on the `webrtc` crate, on loopback only: a WHIP [`Publisher`]
//! (video, VP8 unless told otherwise, and Opus RTP) and a WHEP [`Viewer`]
//! that records what it receives, optionally behind a [`LossyLink`].
//!
//! Every peer connection gathers host candidates on loopback only (IPv4,
//! UDP, no mDNS): the tests and the media benchmarks run inside a network
//! namespace with nothing but `lo`, and must not reach anything else.

mod ice_only;
mod lossy;
mod publisher;
mod reception;
mod viewer;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

pub use ice_only::IceOnlyPublisher;
pub use lossy::LossyLink;
pub use publisher::{Publisher, PublisherLog, Sending};
pub use viewer::{Viewer, ViewerOptions};
pub use webrtc::api::media_engine::MIME_TYPE_VP8;

/// What a peer runs besides RTP. Both offer the default codecs with their
/// usual feedback, so the relay does the same work for either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rtcp {
    /// The crate's default interceptors (NACK, RTCP reports, TWCC), as a
    /// browser has.
    #[default]
    Full,
    /// None: the peer sends no RTCP at all (a load tool that does not
    /// decode).
    None,
}

/// A peer connection on loopback; with `link`, its incoming video goes
/// through the link first.
async fn peer(rtcp: Rtcp, link: Option<LossyLink>) -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let mut registry = Registry::new();
    let mut engine = SettingEngine::default();
    if let Some(link) = link {
        // First in the chain, so the NACK generator and the receiver
        // reports see what a lossy network would leave; retransmissions
        // repeat an SRTP index, so replay protection must let them in (as
        // browsers do, receiving them on RTX).
        registry.add(Box::new(link));
        engine.disable_srtp_replay_protection(true);
    }
    let registry = match rtcp {
        Rtcp::Full => register_default_interceptors(registry, &mut media)?,
        Rtcp::None => registry,
    };
    engine.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    engine.set_include_loopback_candidate(true);
    engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    engine.set_network_types(vec![NetworkType::Udp4]);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(engine)
        .build();
    Ok(Arc::new(
        api.new_peer_connection(RTCConfiguration::default()).await?,
    ))
}

/// `signalled`; when it is an error, after closing `pc` (a peer the server
/// refused must not linger).
async fn closed_on_error<T>(
    pc: &RTCPeerConnection,
    signalled: anyhow::Result<T>,
) -> anyhow::Result<T> {
    if signalled.is_err() {
        let _ = pc.close().await;
    }
    signalled
}

/// What a publisher and a viewer have alike: a peer connection signalled at
/// a server (WHIP or WHEP), and the resource the server made for it. Each
/// derefs to its `Leg`.
pub struct Leg {
    pc: Arc<RTCPeerConnection>,
    state: ConnectionState,
    /// "publisher" or "viewer", for errors.
    who: &'static str,
    /// The server it signalled at (`http://host:port`).
    address: String,
    /// The resource, as `Location` gave it (`/whip/{session}/{resource}`,
    /// `/whep/...`).
    pub resource: String,
    /// The server's UDP ports for this connection.
    pub server_ports: Vec<u16>,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("who", &self.who)
            .field("address", &self.address)
            .field("resource", &self.resource)
            .field("server_ports", &self.server_ports)
            .finish_non_exhaustive()
    }
}

impl Leg {
    /// Offers `pc` (tracks and handlers already set) at `{address}{path}`
    /// and applies the answer (see [`closed_on_error`] for a refusal).
    async fn signal(
        pc: Arc<RTCPeerConnection>,
        who: &'static str,
        http: &reqwest::Client,
        address: &str,
        path: &str,
        token: &str,
    ) -> anyhow::Result<Self> {
        let state = ConnectionState::follow(&pc);
        let offer = complete_offer(&pc).await?;
        let signalled = signal(http, address, path, token, offer).await?;
        let server_ports = candidate_ports(&signalled.answer);
        pc.set_remote_description(RTCSessionDescription::answer(signalled.answer)?)
            .await?;
        Ok(Self {
            pc,
            state,
            who,
            address: address.to_owned(),
            resource: signalled.resource,
            server_ports,
        })
    }

    /// Waits up to 10 s for the connection.
    pub async fn wait_connected(&self) -> anyhow::Result<()> {
        self.state.wait_connected(self.who).await
    }

    /// Whether the connection ended (disconnected, failed or closed) after
    /// it was set up.
    pub fn closed_by_server(&self) -> bool {
        self.state.ended()
    }

    /// Where the connection stands, for an error: the resource and the
    /// ICE and peer connection states.
    pub fn describe(&self) -> String {
        format!(
            "{} {}, ICE {}, connection {}",
            self.who,
            self.resource,
            self.pc.ice_connection_state(),
            self.pc.connection_state()
        )
    }

    /// The resource's URL.
    pub fn resource_url(&self) -> String {
        resource_url(&self.address, &self.resource)
    }

    /// Ends the publication or the playback (`DELETE` on its resource, 200
    /// expected), as an app does; the connection stays open until
    /// [`Leg::close`].
    pub async fn end(&self, http: &reqwest::Client, token: &str) -> anyhow::Result<()> {
        end_resource(http, &self.resource_url(), token).await
    }

    /// Closes the peer connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// The local description once every candidate is in (no trickle).
async fn complete_offer(pc: &RTCPeerConnection) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = gathered.recv().await;
    Ok(pc.local_description().await.context("no offer")?.sdp)
}

/// What the server answered to an offer.
struct Signalled {
    /// The resource, as `Location` gives it (`/whip/{session}/{resource}`).
    resource: String,
    /// The answer's SDP.
    answer: String,
}

/// Posts `offer` to `{address}{path}`; the resource and the answer, or what
/// went wrong (a refused connection, a status other than 201, a reply
/// without what WHIP/WHEP requires: `Location`, `ETag`, an SDP body).
async fn signal(
    http: &reqwest::Client,
    address: &str,
    path: &str,
    token: &str,
    offer: String,
) -> anyhow::Result<Signalled> {
    let url = format!("{address}{path}");
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, etag, content_type) =
        (header("location"), header("etag"), header("content-type"));
    let answer = resp.text().await.with_context(|| format!("POST {url}"))?;
    anyhow::ensure!(status.as_u16() == 201, "POST {url}: {status} {answer}");
    anyhow::ensure!(etag.is_some(), "POST {url}: no ETag");
    anyhow::ensure!(
        content_type.as_deref() == Some("application/sdp"),
        "POST {url}: content type {content_type:?}"
    );
    Ok(Signalled {
        resource: location.with_context(|| format!("POST {url}: no Location"))?,
        answer,
    })
}

/// The URL of a resource whose `Location` was `resource`, which may be
/// relative to the server at `address`.
fn resource_url(address: &str, resource: &str) -> String {
    if resource.starts_with("http") {
        resource.to_owned()
    } else {
        format!("{address}{resource}")
    }
}

/// Ends a WHIP or WHEP resource at `url` (`DELETE`, 200 expected).
pub async fn end_resource(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let resp = http.delete(url).bearer_auth(token).send().await?;
    let status = resp.status();
    anyhow::ensure!(
        status.as_u16() == 200,
        "DELETE {url}: {status} {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// The UDP ports of the candidates in an SDP.
pub fn candidate_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

/// An offer that the server would accept (for tests of signalling errors).
pub async fn sample_offer() -> anyhow::Result<String> {
    let pc = peer(Rtcp::Full, None).await?;
    pc.add_transceiver_from_kind(RTPCodecType::Video, None)
        .await?;
    let sdp = complete_offer(&pc).await?;
    pc.close().await?;
    Ok(sdp)
}

/// Whether a peer connection has connected, and whether it has ended
/// (disconnected, failed or closed) since.
#[derive(Debug, Clone, Default)]
struct ConnectionState {
    connected: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
}

impl ConnectionState {
    /// Follows `pc`'s state from now on.
    fn follow(pc: &RTCPeerConnection) -> Self {
        let state = Self::default();
        let (connected, ended) = (state.connected.clone(), state.ended.clone());
        pc.on_peer_connection_state_change(Box::new(move |s| {
            match s {
                RTCPeerConnectionState::Connected => connected.store(true, Ordering::SeqCst),
                RTCPeerConnectionState::Disconnected
                | RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed => ended.store(true, Ordering::SeqCst),
                _ => {}
            }
            Box::pin(async {})
        }));
        state
    }

    /// Waits up to 10 s (200 looks, 50 ms apart) for the connection;
    /// `who` names the peer in the error.
    async fn wait_connected(&self, who: &str) -> anyhow::Result<()> {
        for _ in 0..200 {
            if self.connected.load(Ordering::SeqCst) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the {who} did not connect")
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}
