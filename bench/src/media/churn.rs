//! `media --churn N`: viewers who come and go. One publisher publishes; N
//! WHEP viewers, `--concurrency` at a time, each connect, wait for their
//! first video packet, end their resource (`DELETE` on its `Location`) and
//! close. The server's memory (VmRSS, RssAnon) and open files are sampled
//! with the publisher alone, after a warm-up, every N/10 viewers (with no
//! viewer connected) and a few seconds after the session has ended. A leak
//! like the one the `webrtc` 0.17 line documents (about 111 KiB per peer
//! connection) would be a steady climb: over 100 MiB in 1,000 viewers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use simmer_testkit::peers::Viewer;

use super::{start_publishing, MediaArgs};
use crate::setup;
use crate::stats::Samples;

/// A viewer that has not received video by then has failed.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(10);
/// The most one viewer's whole visit may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time after the session ends for the server to let go of it.
const SETTLE: Duration = Duration::from_secs(5);

/// The server's footprint at one moment (and the load tool's own memory).
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: Option<u64>,
    anon_kib: Option<u64>,
    fds: Option<usize>,
    tool_kib: Option<u64>,
}

impl Footprint {
    fn now(pid: Option<u32>) -> Self {
        Self {
            rss_kib: setup::status_kib(pid, "VmRSS"),
            anon_kib: setup::status_kib(pid, "RssAnon"),
            fds: setup::open_fds(pid),
            tool_kib: setup::rss_kib(Some(std::process::id())),
        }
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// `after - before` in MiB, signed.
fn delta_mib(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:+.1} MiB", (a as f64 - b as f64) / 1024.0),
        _ => "-".to_owned(),
    }
}

/// One row of the curve; `base` is the post-warm-up sample and its cycles.
fn row(label: &str, now: &Footprint, subscribers: &str, base: Option<(usize, &Footprint)>) {
    let (mut pct, mut per_1000) = ("-".to_owned(), "-".to_owned());
    if let Some((base_cycles, base)) = base {
        if let (Some(b), Some(r)) = (base.rss_kib, now.rss_kib) {
            let grown = r as f64 - b as f64;
            pct = format!("{:+.1}", grown * 100.0 / b as f64);
            if let Some(cycles) = label.parse::<usize>().ok().filter(|c| *c > base_cycles) {
                per_1000 = format!("{:+.0}", grown * 1000.0 / (cycles - base_cycles) as f64);
            }
        }
    }
    println!(
        "{label:>10} {:>8} {:>8} {:>5} {:>5} {:>8} {pct:>8} {per_1000:>10}",
        mib(now.rss_kib),
        mib(now.anon_kib),
        now.fds.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        subscribers,
        mib(now.tool_kib),
    );
}

/// The cycles after which to sample: the warm-up's end, every tenth, the end.
fn checkpoints(viewers: usize) -> (usize, Vec<usize>) {
    let warm_up = (viewers / 20).max(100).min(viewers / 2);
    let mut at: Vec<usize> = (1..=10).map(|k| k * viewers / 10).collect();
    at.push(warm_up);
    at.retain(|c| *c >= warm_up && *c > 0);
    at.sort_unstable();
    at.dedup();
    (warm_up, at)
}

pub async fn run(args: &MediaArgs, viewers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(viewers >= 2, "--churn: at least 2 viewers");
    let http = reqwest::Client::new();
    let first = settled(&http, args).await;
    println!(
        "churn: {viewers} {:?} viewers, {} at a time, in each of {} session(s); server RSS {} MiB before",
        args.viewer_mode,
        args.concurrency.max(1),
        args.sessions.max(1),
        mib(first.rss_kib)
    );
    for round in 1..=args.sessions.max(1) {
        let before = Footprint::now(args.server_pid);
        let ended = session(args, &http, viewers).await?;
        println!(
            "session {round} ended {} s ago: RSS {} vs before it, {} vs before the first; anon {} vs before it; fds {:?} -> {:?}",
            SETTLE.as_secs(),
            delta_mib(before.rss_kib, ended.rss_kib),
            delta_mib(first.rss_kib, ended.rss_kib),
            delta_mib(before.anon_kib, ended.anon_kib),
            before.fds,
            ended.fds,
        );
    }
    Ok(())
}

/// The footprint once the server has started up: it answers, `--rest` has
/// passed, and its RSS holds still (it allocates tens of MiB in its first
/// moments after it accepts connections).
async fn settled(http: &reqwest::Client, args: &MediaArgs) -> Footprint {
    let _ = http
        .get(format!("{}/api/v1/sessions?limit=1", args.url))
        .send()
        .await;
    tokio::time::sleep(Duration::from_secs(args.rest)).await;
    let mut last = Footprint::now(args.server_pid);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Footprint::now(args.server_pid);
        let still = match (last.rss_kib, now.rss_kib) {
            (Some(a), Some(b)) => a.abs_diff(b) < 256,
            _ => true,
        };
        last = now;
        if still {
            break;
        }
    }
    last
}

/// One live session: publisher, the viewers' curve, the end. Returns the
/// footprint a few seconds after the session ended.
async fn session(
    args: &MediaArgs,
    http: &reqwest::Client,
    viewers: usize,
) -> anyhow::Result<Footprint> {
    let pid = args.server_pid;
    let before = Footprint::now(pid);
    let scene = setup::live_session(http, &args.url).await?;
    let (session, token) = (scene.session_id, scene.host_token);
    let (publisher, mut sending) =
        start_publishing(http, &args.url, &token, session, args.bitrate).await?;
    let (warm_up, checkpoints) = checkpoints(viewers);

    println!(
        "{:>10} {:>8} {:>8} {:>5} {:>5} {:>8} {:>8} {:>10}",
        "viewers", "RSS MiB", "anon MiB", "fds", "subs", "tool MiB", "growth %", "KiB/1000"
    );
    println!("(growth is from the sample after the {warm_up}-viewer warm-up; subs: the room's subscribers; tool: the load tool's own RSS)");
    row("before", &before, "-", None);
    let alone = Footprint::now(pid);
    row(
        "0",
        &alone,
        &subscribers(http, args, session, &token).await,
        None,
    );

    let mut done = 0;
    let mut base = None;
    let (mut first_packet, mut failures) = (Vec::with_capacity(viewers), Vec::new());
    let wall = Instant::now();
    for at in checkpoints {
        let visits = futures_util::stream::iter(done..at)
            .map(|_| come_and_go(http, args, session, &token))
            .buffer_unordered(args.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut failed = 0;
        for visit in visits {
            match visit {
                Ok(took) => first_packet.push(took.as_micros() as u64),
                Err(e) => {
                    failed += 1;
                    failures.push(format!("{e:#}"));
                }
            }
        }
        anyhow::ensure!(
            failed < at - done,
            "every viewer from {done} to {at} failed, e.g. {:?}",
            failures.last()
        );
        done = at;
        let now = Footprint::now(pid);
        let subs = subscribers(http, args, session, &token).await;
        row(
            &done.to_string(),
            &now,
            &subs,
            base.as_ref().map(|b| (warm_up, b)),
        );
        if done == warm_up {
            base = Some(now);
        }
    }
    let churned = wall.elapsed();
    let last = Footprint::now(pid);

    // As a host's app stops: the stream, the WHIP resource, the connection.
    sending.stop().await;
    let unpublished = publisher.end(http, &token).await;
    publisher.close().await;
    unpublished?;
    setup::post(
        http,
        format!("{}/api/v1/sessions/{session}/end", args.url),
        Some(&token),
        json!({}),
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let ended = Footprint::now(pid);
    row(&format!("ended+{}s", SETTLE.as_secs()), &ended, "-", None);

    println!(
        "{done} viewers in {:.0} s ({:.1} a second), {} failed{}; offer to first video packet {}",
        churned.as_secs_f64(),
        done as f64 / churned.as_secs_f64().max(1e-9),
        failures.len(),
        failures
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        Samples::new(first_packet).summary()
    );
    if let (Some(start), Some(end)) = (alone.rss_kib, last.rss_kib) {
        println!(
            "RSS with the publisher alone {} MiB, after {done} viewers {} MiB: {:+.1} %",
            mib(Some(start)),
            mib(Some(end)),
            (end as f64 - start as f64) * 100.0 / start as f64
        );
    }
    Ok(ended)
}

/// The room's subscriber count, as `GET /sessions/{id}/media` gives it.
async fn subscribers(
    http: &reqwest::Client,
    args: &MediaArgs,
    session: Uuid,
    token: &str,
) -> String {
    let stats: Option<serde_json::Value> = async {
        http.get(format!("{}/api/v1/sessions/{session}/media", args.url))
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await;
    stats
        .and_then(|s| s["subscribers"].as_u64())
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// One viewer's visit: connect, first video packet, `DELETE`, close. The
/// time from its offer to its first packet.
async fn come_and_go(
    http: &reqwest::Client,
    args: &MediaArgs,
    session: Uuid,
    token: &str,
) -> anyhow::Result<Duration> {
    let visit = async {
        let viewer = Viewer::play(
            http,
            &args.url,
            token,
            session,
            args.viewer_mode.options(Arc::new(AtomicBool::new(false))),
        )
        .await?;
        let got = tokio::time::timeout(FIRST_PACKET_TIMEOUT, viewer.first_video()).await;
        let took = viewer.asked_at().elapsed();
        // Before it ends: a viewer that got nothing says how far it came.
        let stood = got.is_err().then(|| viewer.describe());
        let ended = viewer.end(http, token).await;
        viewer.close().await;
        got.ok().with_context(|| {
            let stood = stood.unwrap_or_default();
            format!("no video within {FIRST_PACKET_TIMEOUT:?} ({stood})")
        })?;
        ended?;
        Ok(took)
    };
    tokio::time::timeout(CYCLE_TIMEOUT, visit)
        .await
        .with_context(|| format!("a visit took over {CYCLE_TIMEOUT:?}"))?
}
