//! The viewers of `fanout` and `idle`: the scene they join (a Simmer
//! session set up over REST, or the floor's one session) and how they
//! connect (SDK clients, or raw sockets that cost the tool less CPU).

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use mobile_bridge::client::{Client, ClientConfig, Events};
use mobile_bridge::SessionId;

use crate::raw::{RawMember, Target};
use crate::setup::{self, Scene};
use crate::stats::Samples;

/// Options of the `fanout` and `idle` scenarios.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Server base URL (the host, and the viewers unless `--viewer-urls`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Base URLs of the cluster nodes to spread the viewers over, round
    /// robin (comma-separated); default: `--url` only.
    #[arg(long, value_delimiter = ',')]
    pub viewer_urls: Vec<String>,
    /// Viewers to connect.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Spread client sockets over this many source addresses 127.0.0.1..N
    /// (about 60k connections fit on one); 0: let the system pick (a server
    /// across a veth pair, not on loopback).
    #[arg(long, default_value_t = 4)]
    pub source_ips: u8,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Connect only, without joining the session (to tell the cost of a
    /// connection from the cost of a membership).
    #[arg(long)]
    pub no_join: bool,
    /// The server is `simmer-bench floor`, the reference to compare Simmer
    /// with: no REST setup (no accounts, no guest tokens), its one session.
    #[arg(long)]
    pub floor: bool,
    /// Viewers as raw WebSocket sockets (handshake, join, then count chat
    /// by substring) instead of SDK clients, so that the tool spends less
    /// CPU than the server it measures. The sender stays an SDK client.
    #[arg(long)]
    pub raw_members: bool,
    /// The server's process id, to report its memory and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The token the floor gets: it checks none.
const FLOOR_TOKEN: &str = "floor";

/// The session to load: a fresh live one on Simmer, the one on the floor.
pub async fn scene(args: &LoadArgs, http: &reqwest::Client) -> anyhow::Result<Scene> {
    if args.floor {
        return Ok(Scene {
            session_id: crate::floor::SESSION.0,
            host_token: FLOOR_TOKEN.into(),
        });
    }
    setup::live_session(http, &args.url).await
}

/// A connected viewer.
#[derive(Debug)]
pub enum Viewer {
    Sdk { client: Client, events: Events },
    Raw(RawMember),
}

impl Viewer {
    pub async fn close(self) {
        match self {
            Viewer::Sdk { client, .. } => client.close().await,
            Viewer::Raw(member) => member.close().await,
        }
    }
}

/// A viewer and where its chat starts.
#[derive(Debug)]
pub struct Joined {
    pub viewer: Viewer,
    /// The newest sequence number at its join (`None` with `--no-join`):
    /// the first message it should see is the next one.
    pub last_seq: Option<u64>,
}

/// Connects `args.viewers` viewers, joined to the session unless
/// `--no-join`: the viewers, the connect-and-join time of each, and the
/// whole ramp's.
pub async fn connect_viewers(
    args: &LoadArgs,
    http: &reqwest::Client,
    session: SessionId,
) -> anyhow::Result<(Vec<Joined>, Samples, Duration)> {
    let bases: Vec<String> = if args.viewer_urls.is_empty() {
        vec![args.url.clone()]
    } else {
        args.viewer_urls.clone()
    };
    let mut targets = Vec::new();
    if args.raw_members {
        for base in &bases {
            targets.push(Target::of_base(base).await?);
        }
    }
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut viewers = Vec::with_capacity(args.viewers);
    let mut connect_us = Vec::with_capacity(args.viewers);
    let mut next = 0;
    while viewers.len() < args.viewers {
        while next < args.viewers && pending.len() < args.connect_concurrency {
            let n = next;
            next += 1;
            let http = http.clone();
            let base = bases[n % bases.len()].clone();
            let target = targets.get(n % bases.len().max(1)).cloned();
            let bind = (args.source_ips > 0).then(|| {
                std::net::IpAddr::from([127, 0, 0, 1 + (n % usize::from(args.source_ips)) as u8])
            });
            let (floor, no_join) = (args.floor, args.no_join);
            pending.push(async move {
                let token = if floor {
                    FLOOR_TOKEN.to_owned()
                } else {
                    setup::guest_token(&http, &base, session.0, &format!("viewer {n}")).await?
                };
                let t0 = Instant::now();
                let joined = match target {
                    Some(target) => {
                        let mut member = RawMember::connect(&target, bind, &token).await?;
                        let last_seq = if no_join {
                            None
                        } else {
                            Some(member.join(session).await?)
                        };
                        Joined {
                            viewer: Viewer::Raw(member),
                            last_seq,
                        }
                    }
                    None => {
                        let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
                        let mut config = ClientConfig::new(ws_url, token);
                        config.bind = bind;
                        config.ping_interval = Duration::from_secs(20);
                        let (client, events) = Client::connect(config).await?;
                        let last_seq = if no_join {
                            None
                        } else {
                            Some(client.join(session).await?.last_seq)
                        };
                        Joined {
                            viewer: Viewer::Sdk { client, events },
                            last_seq,
                        }
                    }
                };
                Ok::<_, anyhow::Error>((joined, t0.elapsed()))
            });
        }
        match pending.next().await {
            Some(Ok((joined, took))) => {
                connect_us.push(took.as_micros() as u64);
                viewers.push(joined);
            }
            Some(Err(e)) => anyhow::bail!("viewer {} failed to connect: {e}", viewers.len()),
            None => break,
        }
    }
    Ok((viewers, Samples::new(connect_us), started.elapsed()))
}
