//! `rooms`: S live sessions of one host, a sender in each at R messages/s
//! for T seconds, and no one else. A node holds many small sessions more
//! often than one large one; their chat channels then write at the same
//! time, each its own batches. Reports the time to each sender's ack (the
//! time to make its message durable, with every other session writing
//! too), the server's own accepted → durable histogram, and the CPU of the
//! server and of the tool itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{StreamExt, TryStreamExt};
use mobile_bridge::client::{Client, ClientConfig};
use mobile_bridge::SessionId;
use serde_json::json;
use simmer_testkit::rest;

use crate::fanout::{send_until, Acks, Breakdown};
use crate::setup::{self, CpuWindow};
use crate::stats::{ms, Histogram};

/// Options of the `rooms` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct RoomsArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Live sessions, each with one sender.
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Messages per second in each session.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Sessions set up (and senders connected) at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The server's process id, to report its CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

pub async fn run(args: RoomsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let senders = senders(&http, &args).await?;
    println!(
        "{} live sessions, a sender joined in each, in {:.1} s",
        senders.len(),
        started.elapsed().as_secs_f64()
    );

    let breakdown_before = Breakdown::scrape(&http, &args.url, &[]).await;
    let acked = Arc::new(Histogram::default());
    let sending = CpuWindow::start(args.server_pid);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, (sender, session))| {
            // Each session starts at its own point of the period, spread
            // over it, as independent sessions would.
            let phase = period.mul_f64(spread(n));
            let (sender, session, acked) = (sender.clone(), *session, acked.clone());
            let rate = args.rate;
            tokio::spawn(async move {
                tokio::time::sleep(phase).await;
                send_until(sender, session, rate, 1, deadline, acked).await
            })
        })
        .collect();
    let mut acks = Acks::default();
    for task in tasks {
        acks.merge(task.await?);
    }
    let sending_cpu = sending.report();
    let breakdown = match breakdown_before {
        Some(before) => Breakdown::scrape(&http, &args.url, &[])
            .await
            .map(|after| after.since(&before)),
        None => None,
    };
    for (sender, _) in senders {
        sender.close().await;
    }

    println!(
        "sent {} messages acked ({} refused rate_limited, {} failed) in {} s = {:.0} msgs/s over all sessions",
        acks.count,
        acks.refused,
        acks.failed,
        args.duration,
        acks.count as f64 / args.duration.max(1) as f64
    );
    println!(
        "time to the sender's ack: p50 {}, p90 {}, p99 {}, max {}",
        ms(acked.pct(50.0)),
        ms(acked.pct(90.0)),
        ms(acked.pct(99.0)),
        ms(acked.pct(100.0))
    );
    if let Some(b) = breakdown {
        println!(
            "server, accepted -> durable (histogram buckets, interpolated): {}",
            b.durable.summary()
        );
    }
    println!("CPU while sending: {sending_cpu}");
    Ok(())
}

/// Where the `n`th session starts within the period, as a
/// share of it: the low-discrepancy sequence of the golden ratio, so the
/// starts are spread but not evenly spaced.
fn spread(n: usize) -> f64 {
    (n as f64 * 0.618_033_988_749_895).fract()
}

/// A host, its sessions, and a sender joined in each.
async fn senders(
    http: &reqwest::Client,
    args: &RoomsArgs,
) -> anyhow::Result<Vec<(Client, SessionId)>> {
    let scene = setup::live_session(http, &args.url).await?;
    let token = scene.host_token;
    let recipe = rest::create_recipe(
        http,
        &args.url,
        &token,
        json!({"title": "Bench soup", "steps": [{"text": "Stir", "duration_s": 60}]}),
    )
    .await?;
    let ws_url = format!("{}/ws", args.url.replacen("http", "ws", 1));
    let first = scene.session_id;
    let senders = futures_util::stream::iter(0..args.sessions)
        .map(|n| {
            let (http, base, token, ws_url) = (http, &args.url, &token, ws_url.clone());
            async move {
                let session = if n == 0 {
                    first
                } else {
                    let id = rest::create_session(http, base, token, recipe, "Bench").await?;
                    rest::start_session(http, base, token, id).await?;
                    id
                };
                let mut config = ClientConfig::new(ws_url, token.clone());
                config.request_timeout = Duration::from_secs(30);
                let (sender, _events) = Client::connect(config).await?;
                sender.join(SessionId(session)).await?;
                anyhow::Ok((sender, SessionId(session)))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect()
        .await?;
    Ok(senders)
}
