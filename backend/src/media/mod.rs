//! Live video: a selective forwarding unit on the `webrtc` crate (pinned, see
//! `docs/media.md`). Hosts publish with WHIP, viewers play with WHEP; each
//! live session has a [`room::MediaRoom`] actor that relays RTP packet for
//! packet, never transcoding. Nothing outside this module touches the crate's
//! callbacks: the rest of Simmer speaks the room's messages.

pub mod edge;
pub mod engine;
pub mod rewrite;
pub mod room;
pub mod sdp;
pub mod turn;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;

/// A mutex's guard, poisoned or not (what it guards stays consistent: no
/// critical section here panics halfway).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the relay uses the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Addresses UDP binds to and offers as host candidates.
    pub bind_ips: Vec<IpAddr>,
    /// Addresses announced instead of the bound ones (1:1 NAT).
    pub public_ips: Vec<IpAddr>,
    /// UDP port range (`(0, 0)`: any).
    pub udp_ports: (u16, u16),
    /// STUN/TURN URLs for clients (`Link` headers).
    pub ice_servers: Vec<String>,
    /// Credentials announced with the `turn:` servers.
    pub turn: turn::TurnAuth,
    pub max_subscribers: usize,
    pub viewer_limits: ViewerLimits,
    pub relay: RelayLimits,
    pub max_sdp_bytes: usize,
    /// No ICE traffic for this long: the peer is gone.
    pub ice_timeout: Duration,
}

/// What one client may hold in a room, so that no one fills its
/// `max_subscribers` slots alone (with offers that never connect, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerLimits {
    /// WHEP sessions one viewer (a user's or a guest's id) may hold.
    pub per_viewer: usize,
    /// WHEP sessions one client address may hold.
    pub per_address: usize,
    /// An answered WHEP session not ICE-connected this long after its
    /// answer is closed and its slot freed. A host's WHIP session gets the
    /// same time to connect (ICE and DTLS), or is closed and the session's
    /// publish freed.
    pub connect_timeout: Duration,
}

/// How a room spreads and bounds its writes to viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Lanes per room: groups of viewers, each written by its own task.
    pub lanes: usize,
    /// A packet that waited this long for its lane is dropped, not sent.
    pub max_queue: Duration,
    /// Viewers play from the relay's own edge (`edge`), not from a crate
    /// peer connection each.
    pub edge: bool,
}

fn ip_list(name: &str, list: Option<&str>) -> anyhow::Result<Vec<IpAddr>> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .with_context(|| format!("{name}: `{s}` is not an IP address"))
        })
        .collect()
}

impl MediaSettings {
    /// Checks and fills in the media settings.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        bind_ips: Option<&str>,
        public_ips: Option<&str>,
        udp_ports: (u16, u16),
        ice_servers: Option<&str>,
        turn: turn::TurnAuth,
        max_subscribers: usize,
        max_sdp_bytes: usize,
        ice_timeout: Duration,
        viewer_limits: ViewerLimits,
        relay: RelayLimits,
    ) -> anyhow::Result<Self> {
        let mut bind = ip_list("media_bind_ips", bind_ips)?;
        if bind.is_empty() {
            bind.push(IpAddr::from([127, 0, 0, 1]));
        }
        anyhow::ensure!(
            bind.iter().all(|ip| !ip.is_unspecified()),
            "media_bind_ips: name the addresses to use; 0.0.0.0 and :: are not allowed"
        );
        let (min, max) = udp_ports;
        anyhow::ensure!(
            (min == 0 && max == 0) || (min > 0 && min <= max),
            "media_udp_port_min/max: give both, min <= max (or neither)"
        );
        let ice_servers: Vec<String> = ice_servers
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for url in &ice_servers {
            anyhow::ensure!(
                ["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| url.starts_with(p)),
                "media_ice_servers: `{url}` is not a stun:/turn: URL"
            );
        }
        Ok(Self {
            bind_ips: bind,
            public_ips: ip_list("media_public_ips", public_ips)?,
            udp_ports,
            ice_servers,
            turn,
            max_subscribers,
            viewer_limits,
            relay: RelayLimits {
                lanes: relay.lanes.clamp(1, 64),
                max_queue: relay.max_queue,
                edge: relay.edge,
            },
            max_sdp_bytes,
            ice_timeout,
        })
    }
}
