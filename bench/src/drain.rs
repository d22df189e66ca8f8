//! A drain under load: M members in S live sessions, all on one node, reach
//! it through a small balancer (as behind nginx: each new connection goes to
//! the first node in order that accepts). The node gets SIGTERM; measured:
//! how long until each session runs on another node (`GET /api/v1/cluster`
//! through another node, every 10 ms), the reconnect storm (when each member
//! was connected and resumed again), and SIGTERM to exit. Chat goes on
//! through another node all the while; every member must get every message
//! of its session once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures_util::stream::{FuturesUnordered, StreamExt};
use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::setup;
use crate::stats::Samples;

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node to drain: the sessions start there and the members connect
    /// there first.
    #[arg(long)]
    pub url: String,
    /// Its process id (sent SIGTERM).
    #[arg(long)]
    pub pid: u32,
    /// The other nodes, comma-separated: the balancer's next choices.
    #[arg(long, value_delimiter = ',')]
    pub other_urls: Vec<String>,
    /// Members in all.
    #[arg(long, default_value_t = 5000)]
    pub members: usize,
    /// Live sessions they are spread over.
    #[arg(long, default_value_t = 50)]
    pub sessions: usize,
    /// Source addresses 127.0.0.1..N for the members' sockets.
    #[arg(long, default_value_t = 4)]
    pub source_ips: u8,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
}

/// Each new connection to the first of `backends` that accepts.
async fn balancer(backends: Vec<String>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for target in &backends {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
    Ok(address)
}

fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// What one member saw.
#[derive(Debug, Default)]
struct Seen {
    chats: HashMap<u64, u32>,
    reconnected_at: Option<Instant>,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.other_urls.is_empty(), "--other-urls is needed");
    let http = reqwest::Client::new();
    let mut backends = vec![authority(&args.url)];
    backends.extend(args.other_urls.iter().map(|u| authority(u)));
    let front = balancer(backends).await?;
    let other = args.other_urls[0].clone();

    // S sessions, live on the node to drain.
    let mut scenes = Vec::new();
    for _ in 0..args.sessions {
        scenes.push(setup::live_session(&http, &args.url).await?);
    }
    let host = scenes[0].host_token.clone();
    let drained_node = node_of(&http, &other, &host, scenes[0].session_id)
        .await?
        .context("the first session has no owner")?;

    // M members through the balancer (so onto the node to drain).
    let started = Instant::now();
    let ws_url = format!("{}/ws", front.replacen("http", "ws", 1));
    let mut pending = FuturesUnordered::new();
    let mut members = Vec::with_capacity(args.members);
    for n in 0..args.members {
        let session = scenes[n % scenes.len()].session_id;
        let (http, base, ws_url) = (http.clone(), args.url.clone(), ws_url.clone());
        let ips = args.source_ips.max(1);
        pending.push(async move {
            let token = setup::guest_token(&http, &base, session, &format!("member {n}")).await?;
            let mut config = ClientConfig::new(ws_url, token);
            config.bind = Some(std::net::IpAddr::from([
                127,
                0,
                0,
                1 + (n % usize::from(ips)) as u8,
            ]));
            config.ping_interval = Duration::from_secs(20);
            let (client, events) = Client::connect(config).await?;
            client.join(SessionId(session)).await?;
            Ok::<_, anyhow::Error>((session, client, events))
        });
        if pending.len() >= 64 {
            members.push(pending.next().await.context("member")??);
        }
    }
    while let Some(member) = pending.next().await {
        members.push(member?);
    }
    println!(
        "{} members in {} sessions connected and joined in {:.1} s",
        members.len(),
        scenes.len(),
        started.elapsed().as_secs_f64()
    );

    // Every member counts its chat messages and notes when it came back.
    let mut seen = Vec::new();
    let mut clients = Vec::new();
    for (session, client, mut events) in members {
        let record = Arc::new(Mutex::new(Seen::default()));
        seen.push((session, record.clone()));
        clients.push(client);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Event::Chat(m) => *record.chats.entry(m.seq).or_default() += 1,
                    Event::Reconnected => {
                        record.reconnected_at.get_or_insert_with(Instant::now);
                    }
                    _ => {}
                }
            }
        });
    }

    // Chat through another node, one message per session every 500 ms.
    let sent = Arc::new(AtomicU64::new(0));
    let sending = tokio::spawn({
        let (http, other, sent) = (http.clone(), other.clone(), sent.clone());
        let scenes: Vec<(Uuid, String)> = scenes
            .iter()
            .map(|s| (s.session_id, s.host_token.clone()))
            .collect();
        async move {
            let mut round = 0u64;
            loop {
                round += 1;
                for (session, token) in &scenes {
                    let url = format!("{other}/api/v1/sessions/{session}/messages");
                    let body = json!({"text": format!("round {round}"), "client_msg_id": format!("r{round}")});
                    loop {
                        match http.post(&url).bearer_auth(token).json(&body).send().await {
                            Ok(r) if r.status().as_u16() == 201 => break,
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                }
                sent.store(round, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // SIGTERM, then watch the sessions move, the members come back, the exit.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &args.pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", args.pid);
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(args.timeout);
    let mut moved: HashMap<Uuid, Duration> = HashMap::new();
    let mut exited = None;
    while moved.len() < scenes.len() || exited.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the drain did not finish in time"
        );
        if exited.is_none() && !std::path::Path::new(&format!("/proc/{}", args.pid)).exists() {
            exited = Some(signalled.elapsed());
        }
        if moved.len() < scenes.len() {
            let view = cluster_view(&http, &other, &host).await.unwrap_or_default();
            let at = signalled.elapsed();
            for node in view["nodes"].as_array().into_iter().flatten() {
                if node["node_id"].as_str() == Some(drained_node.as_str()) {
                    continue;
                }
                for id in node["sessions"].as_array().into_iter().flatten() {
                    if let Some(id) = id.as_str().and_then(|s| s.parse().ok()) {
                        moved.entry(id).or_insert(at);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = exited.unwrap_or_default();
    // Everyone back, and a few more rounds after that.
    loop {
        let back = seen
            .iter()
            .filter(|(_, r)| {
                r.lock()
                    .map(|r| r.reconnected_at.is_some())
                    .unwrap_or(false)
            })
            .count();
        if back == seen.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{back} of {} members came back",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sending.abort();
    let rounds = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut lost, mut duplicated) = (0u64, 0u64);
    let mut back_us = Vec::new();
    for (_, record) in &seen {
        let record = record.lock().unwrap_or_else(|p| p.into_inner());
        for round in 1..=rounds {
            match record.chats.get(&round).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                n => duplicated += u64::from(n - 1),
            }
        }
        if let Some(at) = record.reconnected_at {
            back_us.push(at.duration_since(signalled).as_micros() as u64);
        }
    }
    let moved = Samples::new(moved.values().map(|d| d.as_micros() as u64).collect());
    let back = Samples::new(back_us);
    let storm_ms = back.max().saturating_sub(back.pct(0.0)) / 1000;
    println!("drained node: {drained_node}");
    println!(
        "sessions on another node after SIGTERM: {}",
        moved.summary()
    );
    println!("members resumed after SIGTERM: {}", back.summary());
    println!("reconnect storm: first to last resume {storm_ms} ms");
    println!("SIGTERM to exit: {} ms", exit.as_millis());
    println!(
        "chat: {rounds} rounds x {} sessions sent; {lost} lost, {duplicated} duplicated deliveries",
        scenes.len()
    );
    if let Some(cpu) = setup::cpu_seconds(Some(std::process::id())) {
        println!("load tool (members, balancer, sender) used {cpu:.1} CPU s in all");
    }
    for client in clients {
        client.close().await;
    }
    anyhow::ensure!(lost == 0 && duplicated == 0, "messages lost or duplicated");
    Ok(())
}

async fn cluster_view(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{base}/api/v1/cluster"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .json()
        .await?)
}

/// The node that holds `session`'s lease now.
async fn node_of(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: Uuid,
) -> anyhow::Result<Option<String>> {
    let view = cluster_view(http, base, token).await?;
    let wanted = session.to_string();
    Ok(view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| {
            n["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s.as_str() == Some(wanted.as_str()))
        })
        .and_then(|n| n["node_id"].as_str().map(str::to_owned)))
}
