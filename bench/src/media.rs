//! `media`: one WHIP publisher (about `bitrate` kbit/s of VP8-shaped video
//! plus Opus-sized audio) to N WHEP subscribers, all on the `webrtc` crate.
//! Each video frame carries its send time; subscribers measure one-way frame
//! delay (first packet of a frame), count packets and sequence gaps (loss),
//! and late joiners measure the time from their offer to the first keyframe.
//! Reports those and the server's CPU and memory. With `--churn N`, instead:
//! N viewers that come and go one after another, and the server's memory
//! and open files along the way (`churn`). Run it inside a network
//! namespace with only loopback (`scripts/bench-media.sh`).

mod churn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simmer_testkit::peers::{Publisher, PublisherLog, Rtcp, Sending, Viewer, ViewerOptions};
use uuid::Uuid;

use crate::setup::{self, cpu_seconds};
use crate::stats::Samples;

/// Options of the `media` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WHEP subscribers from the start.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Subscribers that join mid-stream (time to first keyframe).
    #[arg(long, default_value_t = 20)]
    pub late_joiners: usize,
    /// Video bitrate of the publisher, kbit/s.
    #[arg(long, default_value_t = 1500)]
    pub bitrate: u64,
    /// Seconds of publishing once everyone is connected.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Connections set up at once (with `--churn`: viewers coming and going
    /// at once).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How viewers behave.
    #[arg(long, value_enum, default_value_t = ViewerMode::Full)]
    pub viewer_mode: ViewerMode,
    /// Instead of the scenario above: N viewers, `--concurrency` at a time,
    /// each connecting, receiving a packet, then ending its WHEP resource and
    /// closing; the server's memory and open files every N/10 viewers and
    /// after the session ends.
    #[arg(long, value_name = "N")]
    pub churn: Option<usize>,
    /// With `--churn`: live sessions one after another, each with its
    /// publisher and N viewers (what stays after the first is code paged in
    /// once, or a leak).
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// With `--churn`: seconds to leave the idle server alone before the
    /// first sample. glibc gives startup's memory back at once; an allocator
    /// that purges on a timer (jemalloc: 10 s) holds it until then, and a
    /// first sample taken earlier would credit that to the session.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub rest: u64,
    /// The server's process id, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// How WHEP viewers behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewerMode {
    /// Like a browser: NACK, RTCP receiver reports and TWCC feedback, a
    /// keyframe request every 200 ms until the first keyframe; they join
    /// `--concurrency` at a time.
    Full,
    /// Like an independent load tool that does not decode: no interceptors
    /// (so no NACK and no RTCP at all), no keyframe requests; they join
    /// 20 ms apart and only count packets and gaps and measure delay.
    Plain,
}

impl ViewerMode {
    /// The test kit's viewer for this mode; delays are recorded while
    /// `measuring` is set.
    fn options(self, measuring: Arc<AtomicBool>) -> ViewerOptions {
        let full = self == ViewerMode::Full;
        ViewerOptions {
            rtcp: if full { Rtcp::Full } else { Rtcp::None },
            asks_for_keyframes: full,
            link: None,
            measuring: Some(measuring),
        }
    }
}

/// Time between two plain viewers' offers.
const PLAIN_JOIN_GAP: Duration = Duration::from_millis(20);

/// The host: publishes to `session` over WHIP and, once connected, sends a
/// stamped stream of about `bitrate` kbit/s until it is stopped.
async fn start_publishing(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: Uuid,
    bitrate: u64,
) -> anyhow::Result<(Publisher, Sending)> {
    let publisher = Publisher::publish(http, base, token, session).await?;
    if let Err(e) = publisher.wait_connected().await {
        publisher.close().await;
        return Err(e);
    }
    let sending = publisher.send_stamped(bitrate);
    Ok((publisher, sending))
}

pub async fn run(args: MediaArgs) -> anyhow::Result<()> {
    if let Some(viewers) = args.churn {
        return churn::run(&args, viewers).await;
    }
    let http = reqwest::Client::new();
    let scene = setup::live_session(&http, &args.url).await?;
    let (session, token) = (scene.session_id, scene.host_token);
    let rss_before = setup::rss_kib(args.server_pid);
    let (publisher, mut sending) =
        start_publishing(&http, &args.url, &token, session, args.bitrate).await?;

    // Subscribers.
    let measuring = Arc::new(AtomicBool::new(false));
    let mode = args.viewer_mode;
    let join = |measuring: Arc<AtomicBool>| {
        Viewer::play(&http, &args.url, &token, session, mode.options(measuring))
    };
    let t0 = Instant::now();
    let mut subscribers = Vec::with_capacity(args.subscribers);
    match mode {
        ViewerMode::Full => {
            for chunk in (0..args.subscribers)
                .collect::<Vec<_>>()
                .chunks(args.concurrency.max(1))
            {
                let joins = chunk.iter().map(|_| join(measuring.clone()));
                for s in futures_util::future::join_all(joins).await {
                    subscribers.push(s?);
                }
            }
        }
        ViewerMode::Plain => {
            let joins = (0..args.subscribers).map(|i| {
                let joining = join(measuring.clone());
                async move {
                    tokio::time::sleep(PLAIN_JOIN_GAP * i as u32).await;
                    joining.await
                }
            });
            for s in futures_util::future::join_all(joins).await {
                subscribers.push(s?);
            }
        }
    }
    println!(
        "{} {mode:?} subscribers connected in {:.1} s",
        subscribers.len(),
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_with = setup::rss_kib(args.server_pid);

    // Measure.
    let cpu_before = cpu_seconds(args.server_pid);
    let own_cpu_before = cpu_seconds(Some(std::process::id()));
    let wall = Instant::now();
    let sent_before = sending.sent_packets();
    measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(args.duration / 2)).await;
    // Late joiners, mid-stream.
    let mut late = Vec::with_capacity(args.late_joiners);
    for _ in 0..args.late_joiners {
        late.push(join(Arc::new(AtomicBool::new(false))).await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.duration - args.duration / 2)).await;
    measuring.store(false, Ordering::SeqCst);
    let sent_after = sending.sent_packets();
    let sent = sent_after - sent_before;
    let cores = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(a), Some(b)) => Some((b - a) / wall.elapsed().as_secs_f64()),
        _ => None,
    };
    let cpu = cores(cpu_before, cpu_seconds(args.server_pid));
    let own_cpu = cores(own_cpu_before, cpu_seconds(Some(std::process::id())));
    sending.stop().await;
    // Packets sent while measuring may still be on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut received, mut lost, mut delays, mut worst_loss) = (0u64, 0u64, Vec::new(), 0f64);
    for s in &subscribers {
        // Of the packets sent while measuring, those that never arrived.
        let got = s.video_packets_between(sent_before, sent_after);
        received += got;
        let missing = sent - got;
        lost += missing;
        worst_loss = worst_loss.max(missing as f64 / sent.max(1) as f64);
        delays.extend(s.delays());
    }
    let first_keyframe: Vec<u64> = late
        .iter()
        .filter_map(|s| {
            s.first_keyframe_at()
                .map(|t| t.duration_since(s.asked_at()).as_micros() as u64)
        })
        .collect();
    let joined_late = first_keyframe.len();
    let connect_ms: Vec<u64> = late
        .iter()
        .map(|s| s.answered_after().as_millis() as u64)
        .collect();
    let first_packet_ms: Vec<u64> = late
        .iter()
        .map(|s| {
            s.first_video_at()
                .map_or(0, |t| t.duration_since(s.asked_at()).as_millis() as u64)
        })
        .collect();
    println!(
        "late joiners: offer answered after (ms) {connect_ms:?}; first packet after (ms) {first_packet_ms:?}; first keyframe after (ms) {:?}",
        first_keyframe
            .iter()
            .map(|us| us / 1000)
            .collect::<Vec<_>>()
    );
    explain_slow_joiners(&late, &publisher.log());
    let delays = Samples::new(delays);
    let first_keyframe = Samples::new(first_keyframe);
    let expected = sent * subscribers.len() as u64;
    println!(
        "video packets: {sent} sent, {received} received by {} subscribers ({:.3} % lost overall, worst subscriber {:.3} %)",
        subscribers.len(),
        lost as f64 * 100.0 / expected.max(1) as f64,
        worst_loss * 100.0
    );
    println!("one-way frame delay: {}", delays.summary());
    println!(
        "late joiners: {joined_late} of {}; first keyframe after the offer {}",
        args.late_joiners,
        first_keyframe.summary()
    );
    println!(
        "keyframe requests the publisher got: {}",
        publisher.keyframe_requests()
    );
    if let Some(cores) = cpu {
        println!(
            "server CPU: {:.2} cores ({:.2} % of a core per subscriber)",
            cores,
            cores * 100.0 / subscribers.len().max(1) as f64
        );
    }
    if let Some(cores) = own_cpu {
        // On two cores, a load tool near one core means the delays it
        // measures include its own queueing.
        println!("load tool CPU: {cores:.2} cores");
    }
    if let (Some(before), Some(with)) = (rss_before, rss_with) {
        println!(
            "server RSS: {before} KiB before, {with} KiB with {} subscribers ({:.1} KiB each)",
            subscribers.len(),
            with.saturating_sub(before) as f64 / subscribers.len().max(1) as f64
        );
    }
    if let Ok(resp) = http
        .get(format!("{}/api/v1/sessions/{session}/media", args.url))
        .bearer_auth(&token)
        .send()
        .await
    {
        println!("relay's numbers: {}", resp.text().await.unwrap_or_default());
    }
    for s in subscribers.iter().chain(late.iter()) {
        s.close().await;
    }
    publisher.close().await;
    Ok(())
}

/// For each late joiner whose first keyframe took over 300 ms: its own
/// keyframe requests, and the publisher's requests and keyframes meanwhile
/// (ms after its offer), to tell a request that never arrived from a
/// keyframe that was sent but not delivered.
fn explain_slow_joiners(late: &[Viewer], log: &PublisherLog) {
    let after = |asked: Instant, times: &mut dyn Iterator<Item = &Instant>, until: Instant| {
        times
            .filter(|t| **t >= asked && **t <= until)
            .map(|t| t.duration_since(asked).as_millis() as u64)
            .collect::<Vec<_>>()
    };
    for s in late {
        let (asked, first_keyframe) = (s.asked_at(), s.first_keyframe_at());
        let until = first_keyframe.unwrap_or_else(|| asked + Duration::from_secs(5));
        if until.duration_since(asked) <= Duration::from_millis(300) {
            continue;
        }
        println!(
            "slow joiner (ms after its offer): first packet {:?}, its PLIs {:?}, publisher got PLIs {:?}, sent keyframes {:?}, first keyframe {:?}",
            s.first_video_at().map(|t| t.duration_since(asked).as_millis()),
            after(asked, &mut s.keyframe_requests_sent().iter(), until),
            after(asked, &mut log.plis.iter(), until),
            after(asked, &mut log.keyframes.iter(), until),
            first_keyframe.map(|t| t.duration_since(asked).as_millis()),
        );
    }
}
