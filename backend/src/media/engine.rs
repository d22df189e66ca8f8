//! The configured WebRTC stack: codecs, interceptors (NACK, RTCP reports,
//! TWCC) and the network rules (which addresses, which ports, no mDNS), and
//! the runtime the peer connections run on.

use std::net::IpAddr;
use std::sync::Arc;

use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls_transport::dtls_role::DTLSRole;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::nack::generator::Generator;
use webrtc::interceptor::nack::responder::Responder;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::RTCPFeedback;

use super::edge::Edge;
use super::MediaSettings;

/// Builds peer connections that follow the media settings. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    api: Arc<API>,
    settings: Arc<MediaSettings>,
    /// Peer connections and their tasks run here, on every core, away from
    /// the HTTP workers and the session actors.
    runtime: tokio::runtime::Handle,
    /// Where viewers play, if from the relay's own edge.
    edge: Option<Edge>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Packets kept per outgoing stream to answer NACKs: 2^9 = 512, about three
/// seconds of 1.5 Mbit/s video, far more than a retransmission can use. (The
/// crate's default, 8192 per stream, grows to ~9 MiB per viewer.)
const NACK_BUFFER_LOG2: u8 = 9;

/// NACK (generate and answer, with a bounded buffer), RTCP sender and
/// receiver reports, TWCC feedback: what browsers expect of a peer.
fn interceptors(media: &mut MediaEngine) -> anyhow::Result<Registry> {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RTPCodecType::Video,
        );
    }
    let mut registry = Registry::new();
    registry.add(Box::new(
        Responder::builder().with_log2_size(NACK_BUFFER_LOG2),
    ));
    registry.add(Box::new(Generator::builder()));
    let registry = configure_rtcp_reports(registry);
    Ok(configure_twcc_receiver_only(registry, media)?)
}

impl Sfu {
    pub fn new(settings: MediaSettings, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let interceptors = interceptors(&mut media)?;

        let mut engine = SettingEngine::default();
        let allowed = settings.bind_ips.clone();
        engine.set_ip_filter(Box::new(move |ip: IpAddr| allowed.contains(&ip)));
        engine.set_include_loopback_candidate(settings.bind_ips.iter().any(IpAddr::is_loopback));
        engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        // ICE lite (RFC 8445 2.5): the relay, always reachable at its host
        // candidates, only answers checks. A full agent would also send
        // checks as soon as it has the offer; one that reaches the client
        // before the client has applied the answer makes the relay a
        // peer-reflexive candidate there, and clients (the `webrtc` crate
        // among them) wait a second before nominating one: a viewer's first
        // frame a second late. Measured: 1 in 20 late joiners without it,
        // none with it.
        engine.set_lite(true);
        // DTLS client (`a=setup:active`, as RFC 5763 recommends for the
        // answerer). The DTLS server sends the handshake's last flight, and
        // the `dtls` crate's server never sends it again: when it is lost,
        // the client's own last flight, sent again, goes unanswered and the
        // host has ICE and no DTLS for good (4 to 6 publishes in 40 from
        // Chromium at 10 % UDP loss). The crate's client sends its last
        // flight again until the server's arrives, and browsers' servers
        // answer it. Same time to connected as passive without loss
        // (Chromium and the crate's peers, docs/benchmarks.md). The edge
        // stays the server; it answers a repeated last flight itself
        // (`edge/flight.rs`).
        engine.set_answering_dtls_role(DTLSRole::Client)?;
        let mut networks = Vec::new();
        if settings.bind_ips.iter().any(IpAddr::is_ipv4) {
            networks.push(NetworkType::Udp4);
        }
        if settings.bind_ips.iter().any(IpAddr::is_ipv6) {
            networks.push(NetworkType::Udp6);
        }
        engine.set_network_types(networks);
        if settings.udp_ports != (0, 0) {
            let (min, max) = settings.udp_ports;
            engine.set_udp_network(UDPNetwork::Ephemeral(EphemeralUDP::new(min, max)?));
        }
        if !settings.public_ips.is_empty() {
            engine.set_nat_1to1_ips(
                settings
                    .public_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                RTCIceCandidateType::Host,
            );
        }
        let timeout = settings.ice_timeout;
        engine.set_ice_timeouts(
            Some(timeout / 2),
            Some(timeout),
            Some(std::time::Duration::from_secs(2)),
        );

        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(interceptors)
            .with_setting_engine(engine)
            .build();
        let edge = if settings.relay.edge {
            Some(Edge::bind(
                &settings.bind_ips,
                &settings.public_ips,
                settings.udp_ports.0,
                settings.ice_timeout,
                runtime.clone(),
            )?)
        } else {
            None
        };
        Ok(Self {
            api: Arc::new(api),
            settings: Arc::new(settings),
            runtime,
            edge,
        })
    }

    /// The relay's own viewer side, when viewers play from it.
    pub fn edge(&self) -> Option<&Edge> {
        self.edge.as_ref()
    }

    pub fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// A new peer connection (on the media runtime). The relay is the ICE
    /// server side of every connection: it needs no STUN/TURN itself.
    pub async fn peer(&self) -> anyhow::Result<Arc<RTCPeerConnection>> {
        let api = self.api.clone();
        let pc = self
            .runtime
            .spawn(async move { api.new_peer_connection(RTCConfiguration::default()).await })
            .await??;
        Ok(Arc::new(pc))
    }

    /// Whether a remote candidate's address may be sent to.
    pub fn allowed_remote(&self, ip: IpAddr) -> bool {
        // Loopback relays talk only to loopback; others to anything routable.
        if self.settings.bind_ips.iter().all(IpAddr::is_loopback) {
            ip.is_loopback()
        } else {
            !ip.is_unspecified() && !ip.is_multicast()
        }
    }
}
