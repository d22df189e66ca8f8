//! `fanout`: N viewers in one session, one sender at R messages/s (or as
//! fast as the server acknowledges) for T seconds. Reports connect time,
//! delivered messages/s, end-to-end latency, lost and duplicated messages,
//! and the server's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;

use crate::setup::{self, now_us};
use crate::stats::{ms, Samples};

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
    /// (about 60k connections fit on one).
    #[arg(long, default_value_t = 4)]
    pub source_ips: u8,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Connect only, without joining the session (to tell the cost of a
    /// connection from the cost of a membership).
    #[arg(long)]
    pub no_join: bool,
    /// The server's process id, to report its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Options of the `fanout` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages per second from the sender; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Sends in flight at once when `--rate 0`.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
}

/// Latency histogram shared by all viewers: 10 µs buckets below 10 ms, 1 ms
/// buckets up to 10 s.
struct Histogram(Vec<AtomicU64>);

impl Histogram {
    fn new() -> Self {
        Self((0..11_000).map(|_| AtomicU64::new(0)).collect())
    }
    fn bucket(us: u64) -> usize {
        if us < 10_000 {
            (us / 10) as usize
        } else {
            (1000 + (us / 1000).min(9_999)) as usize
        }
    }
    fn value(bucket: usize) -> u64 {
        if bucket < 1000 {
            bucket as u64 * 10 + 5
        } else {
            (bucket as u64 - 1000) * 1000 + 500
        }
    }
    fn record(&self, us: u64) {
        self.0[Self::bucket(us).min(self.0.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }
    fn pct(&self, p: f64) -> u64 {
        let total: u64 = self.0.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let target = ((p / 100.0) * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.0.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target.max(1) {
                return Self::value(i);
            }
        }
        0
    }
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    max_latency_us: AtomicU64,
}

/// Connects `n` viewers (guest tokens), joined to the session.
pub async fn connect_viewers(
    args: &LoadArgs,
    http: &reqwest::Client,
    session: SessionId,
) -> anyhow::Result<(
    Vec<(Client, mobile_bridge::client::Events)>,
    Samples,
    Duration,
)> {
    let bases: Vec<String> = if args.viewer_urls.is_empty() {
        vec![args.url.clone()]
    } else {
        args.viewer_urls.clone()
    };
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
            let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
            let ips = args.source_ips.max(1);
            let no_join = args.no_join;
            pending.push(async move {
                let token =
                    setup::guest_token(&http, &base, session.0, &format!("viewer {n}")).await?;
                let t0 = Instant::now();
                let mut config = ClientConfig::new(ws_url, token);
                config.bind = Some(std::net::IpAddr::from([
                    127,
                    0,
                    0,
                    1 + (n % usize::from(ips)) as u8,
                ]));
                config.ping_interval = Duration::from_secs(20);
                let (client, events) = Client::connect(config).await?;
                if !no_join {
                    client.join(session).await?;
                }
                Ok::<_, anyhow::Error>((client, events, t0.elapsed()))
            });
        }
        match pending.next().await {
            Some(Ok((client, events, took))) => {
                connect_us.push(took.as_micros() as u64);
                viewers.push((client, events));
            }
            Some(Err(e)) => anyhow::bail!("viewer {} failed to connect: {e}", viewers.len()),
            None => break,
        }
    }
    Ok((viewers, Samples::new(connect_us), started.elapsed()))
}

/// One timestamped message.
async fn send_one(
    sender: Client,
    session: SessionId,
) -> Result<mobile_bridge::protocol::ChatAck, mobile_bridge::client::ClientError> {
    sender.send_chat(session, format!("t={}", now_us())).await
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let scene = setup::live_session(&http, &args.load.url).await?;
    let session = SessionId(scene.session_id);
    println!(
        "session {session}; connecting {} viewers",
        args.load.viewers
    );
    let rss_before = setup::rss_kib(args.load.server_pid);
    let (viewers, connect, ramp) = connect_viewers(&args.load, &http, session).await?;
    println!(
        "connected and joined {} viewers in {:.1} s (per viewer {})",
        viewers.len(),
        ramp.as_secs_f64(),
        connect.summary()
    );
    let rss_joined = setup::rss_kib(args.load.server_pid);

    let histogram = Arc::new(Histogram::new());
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut readers = Vec::new();
    for (client, mut events) in viewers {
        let histogram = histogram.clone();
        let counters = counters.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut expected = 0u64;
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    event = events.recv() => match event {
                        Some(Event::Chat(m)) => {
                            if expected == 0 { expected = m.seq; }
                            if m.seq < expected {
                                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            if m.seq > expected {
                                counters.lost.fetch_add(m.seq - expected, Ordering::Relaxed);
                            }
                            expected = m.seq + 1;
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                            if let Some(t) = m.text.strip_prefix("t=").and_then(|t| t.parse::<u64>().ok()) {
                                let lat = now_us().saturating_sub(t);
                                histogram.record(lat);
                                counters.max_latency_us.fetch_max(lat, Ordering::Relaxed);
                            }
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            (client, expected)
        }));
    }

    let mut sender_config = ClientConfig::new(
        format!("{}/ws", args.load.url.replacen("http", "ws", 1)),
        scene.host_token,
    );
    sender_config.request_timeout = Duration::from_secs(30);
    let (sender, _events) = Client::connect(sender_config).await?;
    sender.join(session).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut acked = 0u64;
    let mut failed = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let window = if args.rate > 0.0 {
        usize::MAX
    } else {
        args.window.max(1)
    };
    let mut tick = tokio::time::interval(if args.rate > 0.0 {
        Duration::from_secs_f64(1.0 / args.rate)
    } else {
        Duration::from_micros(1)
    });
    while Instant::now() < deadline {
        if in_flight.len() >= window {
            match in_flight.next().await {
                Some(Ok(_)) => acked += 1,
                Some(Err(_)) => failed += 1,
                None => {}
            }
            continue;
        }
        if args.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {
                    in_flight.push(send_one(sender.clone(), session));
                }
                Some(r) = in_flight.next() => if r.is_ok() { acked += 1 } else { failed += 1 },
            }
        } else {
            in_flight.push(send_one(sender.clone(), session));
        }
    }
    while let Some(r) = in_flight.next().await {
        if r.is_ok() {
            acked += 1
        } else {
            failed += 1
        }
    }
    let send_time = started.elapsed();
    // Let the last messages arrive.
    let expected_total = acked * readers.len() as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while counters.delivered.load(Ordering::Relaxed) < expected_total
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_time = started.elapsed();
    stop.notify_waiters();
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let rss_after = setup::rss_kib(args.load.server_pid);
    let mut missing_tail = 0;
    let viewer_count = readers.len() as u64;
    for reader in readers {
        if let Ok((client, expected)) = reader.await {
            // Messages never seen at the end count as lost too.
            let last_acked = acked; // a fresh session: the last seq is `acked`
            if expected <= last_acked {
                missing_tail += last_acked + 1 - expected.max(1);
            }
            client.close().await;
        }
    }
    sender.close().await;

    println!(
        "sent {acked} messages acked ({failed} failed) in {:.1} s = {:.0} msgs/s",
        send_time.as_secs_f64(),
        acked as f64 / send_time.as_secs_f64()
    );
    println!(
        "delivered {delivered} of {expected_total} to {viewer_count} viewers in {:.1} s = {:.0} deliveries/s",
        total_time.as_secs_f64(),
        delivered as f64 / total_time.as_secs_f64()
    );
    println!(
        "latency send->receive: p50 {}, p95 {}, p99 {}, max {}",
        ms(histogram.pct(50.0)),
        ms(histogram.pct(95.0)),
        ms(histogram.pct(99.0)),
        ms(counters.max_latency_us.load(Ordering::Relaxed))
    );
    println!(
        "lost {} (gaps {}, missing at the end {}), duplicated {}",
        counters.lost.load(Ordering::Relaxed) + missing_tail,
        counters.lost.load(Ordering::Relaxed),
        missing_tail,
        counters.duplicated.load(Ordering::Relaxed)
    );
    if let Some(cpu) = setup::cpu_seconds(Some(std::process::id())) {
        println!("load tool CPU: {cpu:.1} s");
    }
    if let (Some(before), Some(joined), Some(after)) = (rss_before, rss_joined, rss_after) {
        println!(
            "server RSS: {before} KiB before, {joined} KiB with viewers joined, {after} KiB after the run ({:.1} KiB per connection)",
            (joined.saturating_sub(before)) as f64 / viewer_count.max(1) as f64
        );
    }
    Ok(())
}
