//! A host that does ICE and nothing else: it publishes over WHIP, answers
//! the relay's connectivity checks and keeps the pair alive, and never says
//! a word of DTLS. To the relay it is a host whose handshake never ends (a
//! broken client, or one that means to hold the session's publish).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use webrtc::ice::agent::agent_config::{AgentConfig, IpFilterFn};
use webrtc::ice::agent::Agent;
use webrtc::ice::candidate::candidate_base::unmarshal_candidate;
use webrtc::ice::candidate::Candidate;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::state::ConnectionState as IceState;
use webrtc::util::Conn;

use super::{candidate_ports, sample_offer, signal};

/// The ICE-only host (see the module's doc).
pub struct IceOnlyPublisher {
    agent: Arc<Agent>,
    conn: Arc<dyn Conn + Send + Sync>,
    ice: watch::Receiver<IceState>,
    /// The resource, as `Location` gave it.
    pub resource: String,
    /// The relay's UDP ports for this connection.
    pub server_ports: Vec<u16>,
}

impl std::fmt::Debug for IceOnlyPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceOnlyPublisher")
            .field("resource", &self.resource)
            .field("server_ports", &self.server_ports)
            .field("ice", &self.ice_state())
            .finish_non_exhaustive()
    }
}

impl IceOnlyPublisher {
    /// Publishes at `{address}/whip/{session}` and waits until ICE has
    /// connected (10 s at most).
    pub async fn publish(
        http: &reqwest::Client,
        address: &str,
        token: &str,
        session: uuid::Uuid,
    ) -> anyhow::Result<Self> {
        let agent = Arc::new(
            Agent::new(AgentConfig {
                network_types: vec![NetworkType::Udp4],
                include_loopback: true,
                ip_filter: Arc::new(Some(Box::new(|ip: IpAddr| ip.is_loopback()) as IpFilterFn)),
                multicast_dns_mode: MulticastDnsMode::Disabled,
                // The relay closing the connection shows within seconds.
                disconnected_timeout: Some(Duration::from_secs(2)),
                failed_timeout: Some(Duration::from_secs(4)),
                keepalive_interval: Some(Duration::from_millis(500)),
                ..AgentConfig::default()
            })
            .await?,
        );
        let (state_tx, ice) = watch::channel(IceState::New);
        agent.on_connection_state_change(Box::new(move |state| {
            let _ = state_tx.send(state);
            Box::pin(async {})
        }));
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        agent.on_candidate(Box::new(move |c| {
            let _ = gathered_tx.send(c.is_none());
            Box::pin(async {})
        }));
        agent.gather_candidates()?;
        while gathered.recv().await == Some(false) {}
        let offer = offer_for(&agent).await?;
        let signalled = signal(http, address, &format!("/whip/{session}"), token, offer).await?;
        let (ufrag, pwd) = ice_credentials(&signalled.answer)?;
        for line in signalled.answer.lines() {
            if let Some(raw) = line.trim().strip_prefix("a=candidate:") {
                let c: Arc<dyn Candidate + Send + Sync> = Arc::new(unmarshal_candidate(raw)?);
                agent.add_remote_candidate(&c)?;
            }
        }
        let (_cancel, cancel_rx) = mpsc::channel(1);
        let conn = tokio::time::timeout(Duration::from_secs(10), agent.dial(cancel_rx, ufrag, pwd))
            .await
            .context("ICE did not connect in 10 s")??;
        Ok(Self {
            agent,
            conn,
            ice,
            server_ports: candidate_ports(&signalled.answer),
            resource: signalled.resource,
        })
    }

    /// The first non-STUN datagram the relay sent over the pair (10 s at
    /// most): the relay's first DTLS flight, which is never answered.
    pub async fn first_datagram(&self) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0; 1500];
        let n = tokio::time::timeout(Duration::from_secs(10), self.conn.recv(&mut buf))
            .await
            .context("nothing but STUN from the relay in 10 s")??;
        buf.truncate(n);
        Ok(buf)
    }

    /// ICE's state now.
    pub fn ice_state(&self) -> IceState {
        *self.ice.borrow()
    }

    /// Waits up to `within` for ICE to leave `Connected` (the relay stopped
    /// answering its checks); the state it went to.
    pub async fn wait_ice_lost(&self, within: Duration) -> anyhow::Result<IceState> {
        let mut ice = self.ice.clone();
        let lost = ice
            .wait_for(|s| !matches!(s, IceState::New | IceState::Checking | IceState::Connected));
        let state = tokio::time::timeout(within, lost)
            .await
            .with_context(|| format!("ICE still {} after {within:?}", self.ice_state()))??;
        Ok(*state)
    }

    /// Stops the agent (its sockets closed).
    pub async fn close(&self) {
        let _ = self.agent.close().await;
    }
}

/// An offer the relay accepts (a real peer's, for its media sections and
/// fingerprint) with this agent's ICE credentials and candidates instead of
/// that peer's.
async fn offer_for(agent: &Agent) -> anyhow::Result<String> {
    let (ufrag, pwd) = agent.get_local_user_credentials().await;
    let candidates: Vec<String> = agent
        .get_local_candidates()
        .await?
        .iter()
        .map(|c| format!("a=candidate:{}", c.marshal()))
        .collect();
    anyhow::ensure!(!candidates.is_empty(), "no loopback candidate gathered");
    let mut offer = String::new();
    for line in sample_offer().await?.lines() {
        if line.starts_with("a=candidate:") {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            offer.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if line.starts_with("a=ice-pwd:") {
            offer.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
            for c in &candidates {
                offer.push_str(c);
                offer.push_str("\r\n");
            }
        } else {
            offer.push_str(line);
            offer.push_str("\r\n");
        }
    }
    Ok(offer)
}

/// The answer's `a=ice-ufrag` and `a=ice-pwd`.
fn ice_credentials(answer: &str) -> anyhow::Result<(String, String)> {
    let value = |name: &str| {
        answer
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::to_owned)
            .with_context(|| format!("no {name} in the answer"))
    };
    Ok((value("a=ice-ufrag:")?, value("a=ice-pwd:")?))
}
