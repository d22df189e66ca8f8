//! `watch`: W paired watches over S live sessions whose timers run, for T
//! seconds. Every watch pairs the way a real one does (code, claim, poll),
//! follows the feed with the SDK's reference watch client, and records for
//! each tick how long after its whole second it arrived. A subset of
//! "accuracy" watches has a skewed clock (up to ±`skew_ms`) and a delayed
//! link; they sync their clock NTP-style and record how far the countdown
//! they display is from the server's at each tick. Reports both
//! distributions, the ticks lost, and the server's CPU and memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use mobile_bridge::watch_client::{request_pairing, WatchClient, WatchConfig};
use serde_json::json;
use simmer_testkit::rest;
use uuid::Uuid;
use watch_sync::WatchFrame;

use crate::setup::{self, cpu_seconds, now_us, post};
use crate::stats::Samples;

/// Options of the `watch` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Live sessions, each with a running timer.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Watches, spread evenly over the sessions.
    #[arg(long, default_value_t = 20_000)]
    pub watches: usize,
    /// Of those, watches with a skewed clock and a delayed link that measure
    /// the accuracy of what they display.
    #[arg(long, default_value_t = 100)]
    pub accuracy_watches: usize,
    /// Largest clock skew of an accuracy watch, either way (ms).
    #[arg(long, default_value_t = 5000)]
    pub skew_ms: i64,
    /// Link delay of an accuracy watch, each way (ms)...
    #[arg(long, default_value_t = 20)]
    pub link_delay_ms: u64,
    /// ...plus up to this much random jitter per frame and leg (ms).
    #[arg(long, default_value_t = 10)]
    pub link_jitter_ms: u64,
    /// Seconds of measuring once every watch is connected.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Spread sockets over this many source addresses 127.0.0.1..N.
    #[arg(long, default_value_t = 4)]
    pub source_ips: u8,
    /// Requests or connections in flight at once while setting up.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The server's process id, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

fn system_us() -> i64 {
    now_us() as i64
}

fn system_ms() -> i64 {
    system_us() / 1000
}

/// `n` live sessions of one host, each timer started on a long step.
async fn running_sessions(
    http: &reqwest::Client,
    args: &WatchArgs,
) -> anyhow::Result<(String, Vec<Uuid>)> {
    let scene = setup::live_session(http, &args.url).await?;
    let token = scene.host_token;
    let recipe = rest::create_recipe(
        http,
        &args.url,
        &token,
        json!({"title": "Slow stock", "steps": [
            {"text": "Simmer the stock", "duration_s": 86400, "label": "Simmer"},
            {"text": "Strain", "label": "Strain"}
        ]}),
    )
    .await?;
    let sessions = futures_util::stream::iter(0..args.sessions)
        .map(|_| {
            let (base, token) = (&args.url, &token);
            async move {
                let id = rest::create_session(http, base, token, recipe, "Bench stock").await?;
                rest::start_session(http, base, token, id).await?;
                post(
                    http,
                    format!("{base}/api/v1/sessions/{id}/timer"),
                    Some(token),
                    json!({"action": "start"}),
                )
                .await?;
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect()
        .await?;
    Ok((token, sessions))
}

/// Pairs a watch as a real one does: ask, claim (as the user), poll.
async fn pair(
    http: &reqwest::Client,
    base: &str,
    user_token: &str,
    session: Uuid,
    name: String,
) -> anyhow::Result<String> {
    let pairing = request_pairing(http, base, &name, Some(1)).await?;
    post(
        http,
        format!("{base}/api/v1/watch/pairings/claim"),
        Some(user_token),
        json!({"code": pairing.code, "session_id": session}),
    )
    .await?;
    let device = pairing.wait_claimed(http, Duration::from_secs(30)).await?;
    Ok(device.token)
}

#[derive(Default)]
struct Results {
    /// Tick arrival after its whole second (µs), load watches.
    delivery_us: Vec<u64>,
    /// |displayed - server's| remaining (µs), accuracy watches.
    error_us: Vec<u64>,
    ticks: u64,
    gaps: u64,
    ended_early: u64,
}

/// Reads a watch's feed until the measuring window closes; records its
/// ticks inside the window.
async fn follow_ticks(
    mut watch: WatchClient,
    accuracy: bool,
    mut window: tokio::sync::watch::Receiver<Option<(i64, i64)>>,
    results: Arc<Mutex<Results>>,
) {
    let mut delivery = Vec::new();
    let mut errors = Vec::new();
    let (mut ticks, mut gaps) = (0u64, 0u64);
    let mut last_second: Option<i64> = None;
    let mut ended_early = false;
    loop {
        let bounds = *window.borrow();
        let wait = match bounds {
            Some((_, until)) => {
                let left = until - system_ms();
                if left <= 0 {
                    break;
                }
                Duration::from_millis(left as u64)
            }
            None => Duration::from_secs(3600),
        };
        let frame = tokio::select! {
            frame = tokio::time::timeout(wait, watch.next_frame()) => match frame {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => {
                    ended_early = true;
                    break;
                }
                Err(_) => break,
            },
            // The window was set: recompute the wait.
            _ = window.changed(), if bounds.is_none() => continue,
        };
        let (
            Some((from, _)),
            WatchFrame::Tick {
                deadline_ms,
                remaining_ms,
                ..
            },
        ) = (bounds, frame)
        else {
            continue;
        };
        let now_us = system_us();
        if now_us / 1000 < from {
            continue;
        }
        let second = (remaining_ms + 500) / 1000;
        if let Some(last) = last_second {
            gaps += u64::try_from(last - second - 1).unwrap_or(0);
        }
        last_second = Some(second);
        ticks += 1;
        if accuracy {
            // What the watch shows now, against the server's truth now.
            if let Some(shown) = watch.displayed_remaining_ms() {
                let truth_us = deadline_ms * 1000 - system_us();
                errors.push((shown * 1000 - truth_us).unsigned_abs());
            }
        } else {
            let whole_second_us = (deadline_ms - second * 1000) * 1000;
            delivery.push(u64::try_from(now_us - whole_second_us).unwrap_or(0));
        }
    }
    let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
    r.delivery_us.extend(delivery);
    r.error_us.extend(errors);
    r.ticks += ticks;
    r.gaps += gaps;
    r.ended_early += u64::from(ended_early);
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let t0 = Instant::now();
    let (user_token, sessions) = running_sessions(&http, &args).await?;
    println!(
        "{} live sessions with running timers in {:.1} s",
        sessions.len(),
        t0.elapsed().as_secs_f64()
    );

    // Pair every watch first, then connect them all: the server's RSS
    // between the two, divided by the feeds, is what one open feed costs.
    let t0 = Instant::now();
    let mut tokens = Vec::with_capacity(args.watches);
    {
        let mut pending = FuturesUnordered::new();
        let mut next = 0;
        while tokens.len() < args.watches {
            while next < args.watches && pending.len() < args.concurrency {
                let n = next;
                next += 1;
                let session = sessions[n % sessions.len()];
                let (http, base, user_token) = (http.clone(), args.url.clone(), user_token.clone());
                pending.push(async move {
                    let token =
                        pair(&http, &base, &user_token, session, format!("watch {n}")).await?;
                    Ok::<_, anyhow::Error>((n, token))
                });
            }
            match pending.next().await {
                Some(result) => tokens.push(result?),
                None => break,
            }
        }
    }
    tokens.sort_unstable_by_key(|(n, _)| *n);
    println!(
        "paired {} watches in {:.1} s",
        tokens.len(),
        t0.elapsed().as_secs_f64()
    );
    // Let the pairing's requests and connections settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_paired = setup::rss_kib(args.server_pid);

    let results = Arc::new(Mutex::new(Results::default()));
    let (window_tx, window) = tokio::sync::watch::channel::<Option<(i64, i64)>>(None);
    let t0 = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut watches = Vec::with_capacity(args.watches);
    let mut tokens = tokens.into_iter();
    while watches.len() < args.watches {
        while pending.len() < args.concurrency {
            let Some((n, token)) = tokens.next() else {
                break;
            };
            let base = args.url.clone();
            let accuracy = n < args.accuracy_watches;
            let ips = args.source_ips.max(1);
            let skew_ms = if accuracy && args.accuracy_watches > 1 {
                // Spread evenly over [-skew, +skew].
                -args.skew_ms + (2 * args.skew_ms * n as i64) / (args.accuracy_watches as i64 - 1)
            } else {
                0
            };
            let (link_delay, link_jitter) = if accuracy {
                (
                    Duration::from_millis(args.link_delay_ms),
                    Duration::from_millis(args.link_jitter_ms),
                )
            } else {
                (Duration::ZERO, Duration::ZERO)
            };
            let window = window.clone();
            let results = results.clone();
            pending.push(async move {
                let mut config = WatchConfig::new(&base, &token);
                config.skew_ms = skew_ms;
                config.link_delay = link_delay;
                config.link_jitter = link_jitter;
                config.bind = Some(std::net::IpAddr::from([
                    127,
                    0,
                    0,
                    1 + (n % usize::from(ips)) as u8,
                ]));
                let mut watch = WatchClient::connect(config).await?;
                if accuracy {
                    watch.sync_clock(8).await?;
                }
                // Read from now on (a watch that stops reading stops
                // answering pings and is rightly closed as idle), recording
                // only inside the measuring window.
                Ok::<_, anyhow::Error>(tokio::spawn(follow_ticks(watch, accuracy, window, results)))
            });
        }
        match pending.next().await {
            Some(result) => watches.push(result?),
            None => break,
        }
    }
    println!(
        "connected {} watches ({} with skewed clocks up to ±{} ms and a {}–{} ms link) in {:.1} s",
        watches.len(),
        args.accuracy_watches.min(watches.len()),
        args.skew_ms,
        args.link_delay_ms,
        args.link_delay_ms + args.link_jitter_ms,
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(before), Some(after)) = (rss_paired, setup::rss_kib(args.server_pid)) {
        println!(
            "server RSS: {before} KiB paired, {after} KiB with {} feeds open: {:.2} KiB per feed",
            watches.len(),
            after.saturating_sub(before) as f64 / watches.len().max(1) as f64
        );
    }

    let measure_from = system_ms() + 1000;
    let measure_until = measure_from + i64::try_from(args.duration * 1000).unwrap_or(i64::MAX);
    let _ = window_tx.send(Some((measure_from, measure_until)));
    let cpu_before = cpu_seconds(args.server_pid);
    let wall_before = Instant::now();
    for task in watches {
        let _ = task.await;
    }
    let wall = wall_before.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_seconds(args.server_pid)) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };
    let results = Arc::try_unwrap(results)
        .map_err(|_| anyhow::anyhow!("results still shared"))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let delivery = Samples::new(results.delivery_us);
    let errors = Samples::new(results.error_us);
    let expected = (args.watches as u64) * args.duration;
    println!(
        "{} of ~{expected} ticks in {} s ({} missed between received ones; {} feeds ended early)",
        results.ticks, args.duration, results.gaps, results.ended_early
    );
    println!(
        "tick delivery after the whole second: {}",
        delivery.summary()
    );
    println!(
        "displayed countdown vs the server's (skewed watches): {}",
        errors.summary()
    );
    if let Some(cores) = cpu {
        println!("server CPU while measuring: {cores:.2} cores");
    }
    if let Some(rss) = setup::rss_kib(args.server_pid) {
        println!("server RSS: {rss} KiB");
    }
    Ok(())
}

/// Options of `watch-follow`.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The watch's name in the user's list.
    #[arg(long, default_value = "simmer-bench watch")]
    pub name: String,
    /// Seconds between ticks (0: changes only; the watch counts down itself).
    #[arg(long, default_value_t = 1)]
    pub tick: u32,
    /// Run the watch's clock this far ahead (negative: behind), in ms.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub skew_ms: i64,
    /// Delay every frame on the link by this much each way, in ms.
    #[arg(long, default_value_t = 0)]
    pub link_delay_ms: u64,
    /// Stop after this many seconds of following (0: until the feed ends).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
}

/// The reference watch, interactively: shows a pairing code, waits for a
/// user to claim it, then prints what the watch would show.
pub async fn follow(args: FollowArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let pairing = request_pairing(&http, &args.url, &args.name, Some(args.tick)).await?;
    println!("pairing code: {}", pairing.code);
    println!(
        "claim it from a signed-in account:\n  curl -X POST {}/api/v1/watch/pairings/claim -H \"Authorization: Bearer $TOKEN\" \\\n       -H 'Content-Type: application/json' -d '{{\"code\":\"{}\",\"session_id\":\"<session id>\"}}'",
        args.url, pairing.code
    );
    let device = pairing
        .wait_claimed(&http, Duration::from_secs(300))
        .await?;
    println!(
        "paired: device {} follows session {}",
        device.device_id, device.session_id
    );
    let mut config = WatchConfig::new(&args.url, &device.token);
    config.skew_ms = args.skew_ms;
    config.link_delay = Duration::from_millis(args.link_delay_ms);
    let mut watch = WatchClient::connect(config).await?;
    let sample = watch.sync_clock(5).await?;
    println!(
        "clock: offset {} ms (round trip {} ms)",
        sample.offset_ms, sample.rtt_ms
    );
    let stop = (args.duration > 0).then(|| Instant::now() + Duration::from_secs(args.duration));
    loop {
        let wait = stop.map_or(Duration::from_secs(3600), |s| {
            s.saturating_duration_since(Instant::now())
        });
        let frame = match tokio::time::timeout(wait, watch.next_frame()).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => {
                println!("{e}");
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let shown = watch
            .displayed_remaining_ms()
            .map_or("--:--".to_owned(), |left| {
                let s = (left + 999) / 1000;
                format!("{:02}:{:02}", s / 60, s % 60)
            });
        let step = watch
            .display()
            .timer()
            .and_then(|t| t.step.as_ref())
            .map(|s| s.label.clone().unwrap_or_else(|| s.text.clone()))
            .unwrap_or_default();
        match frame {
            WatchFrame::Alert { step_index, .. } => {
                println!("*** BZZZ: step {step_index} is done ***")
            }
            WatchFrame::Pong { .. } => {}
            other => println!("{:<8} {shown}  {step}", other.kind()),
        }
    }
}
