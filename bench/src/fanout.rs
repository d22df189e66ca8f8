//! `fanout`: N viewers in one session, one sender (or several, sharing the
//! rate) at R messages/s, or as fast as the server acknowledges, for T
//! seconds. Reports connect time,
//! delivered messages/s, end-to-end latency, lost and duplicated messages,
//! the server's memory, and the CPU of the server and of the tool itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::members::{connect_viewers, scene, Joined, LoadArgs, Viewer};
use crate::raw;
#[cfg(target_os = "linux")]
use crate::raw::{uring, RawMember};
use crate::setup::{self, now_us, CpuWindow};
use crate::stats::{ms, Buckets, Histogram};

/// The server samples one chat message in this many for its fan-out
/// histogram (`FANOUT_SAMPLE_EVERY` in the backend's metrics).
const FANOUT_SAMPLE_EVERY: u64 = 8;

/// Options of the `fanout` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages per second from the senders together; 0 = as fast as
    /// acknowledged.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Senders: the host and `senders - 1` guests, each an SDK client of
    /// its own with an equal share of `--rate` (a chat flood from many
    /// people, not one fast client). With `--rate 0` each keeps `--window`
    /// sends in flight.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Sends in flight at once per sender when `--rate 0`.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Keep one of the tool's threads polling its sockets instead of
    /// sleeping between reads (a task that only yields). On loopback the
    /// server's core otherwise wakes the tool's thread for nearly every
    /// delivery, an inter-processor interrupt that traps to the hypervisor
    /// on a VM: work that members on other machines would not give it. The
    /// tool then takes all of its core: use with the tool pinned to its own.
    #[arg(long)]
    pub busy_poll: bool,
    /// Read the raw members through io_uring (Linux 6.1 or later): a
    /// reader thread per core of the tool (one with `--busy-poll`) reaps
    /// every delivery since its last look in one system call, where each
    /// otherwise costs an `epoll` event, a task and a `read`. With
    /// `--busy-poll` the reader never sleeps.
    #[arg(long, requires = "raw_members")]
    pub uring: bool,
    /// Seconds between the senders' join and the first message. The
    /// server's work for a ramp of joins (presence frames to every member
    /// already there, the joins' own replies) goes on for a moment after
    /// the last member is in; with 0 the first messages share the server
    /// with it, and at 5,000 members their fan-out takes two to four times
    /// as long as the rest. A pause measures the chat once the session has
    /// settled.
    #[arg(long, default_value_t = 0.0)]
    pub settle: f64,
}

/// What every viewer counts, together.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    max_latency_us: AtomicU64,
    histogram: Histogram,
}

impl Counters {
    /// Adds a viewer's counts since the last call (once per read, not per
    /// message: thousands of viewers on two threads would otherwise fight
    /// over these cache lines).
    fn add(&self, tally: &mut Tally) {
        for (shared, local) in [
            (&self.delivered, &mut tally.delivered),
            (&self.lost, &mut tally.lost),
            (&self.duplicated, &mut tally.duplicated),
        ] {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
        if tally.max_latency_us > 0 {
            self.max_latency_us
                .fetch_max(std::mem::take(&mut tally.max_latency_us), Ordering::Relaxed);
        }
    }
}

/// One viewer's counts.
#[derive(Debug, Default)]
struct Tally {
    /// The sequence number it should see next (0: unknown, take the first
    /// one seen).
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    max_latency_us: u64,
}

impl Tally {
    /// Chat message `seq` arrived; `sent_us`: the stamp in its text.
    fn chat(&mut self, histogram: &Histogram, seq: u64, sent_us: Option<u64>) {
        if self.expected == 0 {
            self.expected = seq;
        }
        if seq < self.expected {
            self.duplicated += 1;
            return;
        }
        self.lost += seq - self.expected;
        self.expected = seq + 1;
        self.delivered += 1;
        if let Some(t) = sent_us {
            let latency = now_us().saturating_sub(t);
            histogram.record(latency);
            self.max_latency_us = self.max_latency_us.max(latency);
        }
    }
}

/// Reads one viewer's chat until `stop`; the viewer, and the sequence
/// number it expected next.
async fn read_chat(
    joined: Joined,
    counters: Arc<Counters>,
    mut stop: oneshot::Receiver<()>,
) -> Stopped {
    let mut tally = Tally {
        expected: joined.last_seq.map_or(0, |s| s + 1),
        ..Tally::default()
    };
    let viewer = match joined.viewer {
        Viewer::Sdk { client, mut events } => {
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    event = events.recv() => match event {
                        Some(Event::Chat(m)) => {
                            let sent = m.text.strip_prefix("t=").and_then(|t| t.parse().ok());
                            tally.chat(&counters.histogram, m.seq, sent);
                            counters.add(&mut tally);
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            Viewer::Sdk { client, events }
        }
        Viewer::Raw(mut member) => {
            loop {
                let mut on_text = |text: &[u8]| {
                    if let Some(c) = raw::chat_of(text) {
                        tally.chat(&counters.histogram, c.seq, c.sent_us);
                    }
                };
                let open = tokio::select! {
                    _ = &mut stop => break,
                    open = member.read(&mut on_text) => open,
                };
                counters.add(&mut tally);
                if !matches!(open, Ok(true)) {
                    break;
                }
            }
            Viewer::Raw(member)
        }
    };
    (viewer, tally.expected)
}

/// A viewer whose reading stopped, and the sequence number it expected
/// next.
type Stopped = (Viewer, u64);

/// The viewers being read: a task each, or a few io_uring readers.
enum Readers {
    Tasks {
        /// One oneshot per viewer: a shared `Notify` or `watch` would take
        /// a lock at every wake-up.
        stops: Vec<oneshot::Sender<()>>,
        tasks: Vec<JoinHandle<Stopped>>,
    },
    #[cfg(target_os = "linux")]
    Rings {
        stop: Arc<AtomicBool>,
        readers: Vec<JoinHandle<anyhow::Result<Vec<Stopped>>>>,
    },
}

impl Readers {
    /// Starts reading `viewers` into `counters`, through io_uring if
    /// `uring` (and then never sleeping if `poll`).
    fn start(
        viewers: Vec<Joined>,
        counters: &Arc<Counters>,
        uring: bool,
        poll: bool,
    ) -> anyhow::Result<Self> {
        if !uring {
            let (stops, tasks) = viewers
                .into_iter()
                .map(|joined| {
                    let (stop, stopped) = oneshot::channel();
                    (
                        stop,
                        tokio::spawn(read_chat(joined, counters.clone(), stopped)),
                    )
                })
                .unzip();
            return Ok(Self::Tasks { stops, tasks });
        }
        #[cfg(target_os = "linux")]
        {
            uring::check().map_err(|e| anyhow::anyhow!("--uring: no io_uring here: {e}"))?;
            let threads = if poll {
                1
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            };
            let mut groups: Vec<Vec<(RawMember, Tally)>> =
                (0..threads).map(|_| Vec::new()).collect();
            for (n, joined) in viewers.into_iter().enumerate() {
                let Viewer::Raw(member) = joined.viewer else {
                    anyhow::bail!("--uring reads raw members only");
                };
                let tally = Tally {
                    expected: joined.last_seq.map_or(0, |s| s + 1),
                    ..Tally::default()
                };
                groups[n % threads].push((member, tally));
            }
            let stop = Arc::new(AtomicBool::new(false));
            let readers = groups
                .into_iter()
                .map(|group| {
                    let (stop, counters) = (stop.clone(), counters.clone());
                    tokio::task::spawn_blocking(move || {
                        let (members, mut tallies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                        let members = uring::read_until(members, &stop, poll, |i, text| {
                            if let (Some(c), Some(tally)) = (raw::chat_of(text), tallies.get_mut(i))
                            {
                                tally.chat(&counters.histogram, c.seq, c.sent_us);
                                counters.add(tally);
                            }
                        })?;
                        Ok(members
                            .into_iter()
                            .zip(tallies)
                            .map(|(member, tally)| (Viewer::Raw(member), tally.expected))
                            .collect())
                    })
                })
                .collect();
            Ok(Self::Rings { stop, readers })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = poll;
            anyhow::bail!("--uring needs Linux")
        }
    }

    /// Stops reading and gives the viewers back.
    async fn stop(self) -> Vec<Stopped> {
        let mut stopped = Vec::new();
        match self {
            Self::Tasks { stops, tasks } => {
                for stop in stops {
                    let _ = stop.send(());
                }
                for task in tasks {
                    stopped.extend(task.await.ok());
                }
            }
            #[cfg(target_os = "linux")]
            Self::Rings { stop, readers } => {
                stop.store(true, Ordering::Relaxed);
                for reader in readers {
                    match reader.await {
                        Ok(Ok(viewers)) => stopped.extend(viewers),
                        Ok(Err(e)) => eprintln!("an io_uring reader failed: {e:#}"),
                        Err(e) => eprintln!("an io_uring reader failed: {e}"),
                    }
                }
            }
        }
        stopped
    }
}

/// One timestamped message; the time to its acknowledgement goes into
/// `acked`.
async fn send_one(
    sender: Client,
    session: SessionId,
    acked: Arc<Histogram>,
) -> Result<mobile_bridge::protocol::ChatAck, mobile_bridge::client::ClientError> {
    let sent = now_us();
    let ack = sender.send_chat(session, format!("t={sent}")).await;
    acked.record(now_us().saturating_sub(sent));
    ack
}

/// The server's own histograms of the latency breakdown (`/metrics`), and
/// its counters of history reads.
pub(crate) struct Breakdown {
    pub(crate) durable: Buckets,
    first: Buckets,
    last: Buckets,
    /// Members' replays from history, by cause, on every node.
    replays: Vec<(String, f64)>,
    /// Holes a hub filled from history once for all its members, by cause,
    /// on every node.
    refills: Vec<(String, f64)>,
}

/// The values of a counter's series, by their labels.
fn counter(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Two nodes' series of a counter, added up by their labels.
fn summed(mut ours: Vec<(String, f64)>, theirs: Vec<(String, f64)>) -> Vec<(String, f64)> {
    for (labels, n) in theirs {
        match ours.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, m)) => *m += n,
            None => ours.push((labels, n)),
        }
    }
    ours
}

/// A node's `/metrics` text.
async fn metrics(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A counter's series now, less what they were at `earlier`.
fn counted_since(now: &[(String, f64)], earlier: &[(String, f64)]) -> Vec<(String, f64)> {
    now.iter()
        .map(|(labels, n)| {
            let before = earlier
                .iter()
                .find(|(l, _)| l == labels)
                .map_or(0.0, |(_, b)| *b);
            (labels.clone(), n - before)
        })
        .collect()
}

/// A counter's series as `labels value`, comma-separated (or `none`).
fn listed(series: &[(String, f64)]) -> String {
    if series.is_empty() {
        return "none".to_owned();
    }
    let listed: Vec<String> = series
        .iter()
        .map(|(labels, n)| format!("{labels} {n}"))
        .collect();
    listed.join(", ")
}

impl Breakdown {
    /// The histograms of `url` (the node the host and senders use), and
    /// the counters of it and every other node in `nodes` added up: in a
    /// cluster, members replay on the nodes they are connected to.
    pub(crate) async fn scrape(
        http: &reqwest::Client,
        url: &str,
        nodes: &[String],
    ) -> Option<Self> {
        let text = metrics(http, url).await?;
        let mut replays = counter(&text, "simmer_ws_chat_replays_total");
        let mut refills = counter(&text, "simmer_fanout_refills_total");
        for node in nodes.iter().filter(|node| node.as_str() != url) {
            let text = metrics(http, node).await?;
            replays = summed(replays, counter(&text, "simmer_ws_chat_replays_total"));
            refills = summed(refills, counter(&text, "simmer_fanout_refills_total"));
        }
        Some(Self {
            durable: Buckets::parse(&text, "simmer_chat_durable_seconds", ""),
            first: Buckets::parse(&text, "simmer_chat_fanout_seconds", "edge=\"first\""),
            last: Buckets::parse(&text, "simmer_chat_fanout_seconds", "edge=\"last\""),
            replays,
            refills,
        })
    }

    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self {
            durable: self.durable.since(&earlier.durable),
            first: self.first.since(&earlier.first),
            last: self.last.since(&earlier.last),
            replays: counted_since(&self.replays, &earlier.replays),
            refills: counted_since(&self.refills, &earlier.refills),
        }
    }
}

/// Yields until `on` is cleared. A yielded task makes its worker look for
/// I/O without blocking (`epoll_wait` with no timeout) before running it
/// again, so the worker never sleeps and a socket that becomes readable
/// has no one to wake.
async fn busy_poll(on: Arc<AtomicBool>) {
    while on.load(Ordering::Relaxed) {
        tokio::task::yield_now().await;
    }
}

/// The acknowledged sends: how many, and the range of their sequence
/// numbers.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    pub(crate) count: u64,
    /// Refused with `rate_limited` (the server's own limits at work).
    pub(crate) refused: u64,
    pub(crate) failed: u64,
    first_seq: Option<u64>,
    last_seq: u64,
}

impl Acks {
    fn record(
        &mut self,
        result: Result<mobile_bridge::protocol::ChatAck, mobile_bridge::client::ClientError>,
    ) {
        match result {
            Ok(ack) => {
                self.count += 1;
                self.first_seq = Some(self.first_seq.map_or(ack.seq, |s| s.min(ack.seq)));
                self.last_seq = self.last_seq.max(ack.seq);
            }
            Err(mobile_bridge::client::ClientError::Server {
                code: mobile_bridge::ErrorCode::RateLimited,
                ..
            }) => self.refused += 1,
            Err(_) => self.failed += 1,
        }
    }

    pub(crate) fn merge(&mut self, other: Acks) {
        self.count += other.count;
        self.refused += other.refused;
        self.failed += other.failed;
        self.first_seq = match (self.first_seq, other.first_seq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seq = self.last_seq.max(other.last_seq);
    }
}

/// One sender's sends until `deadline`: `rate` a second, or with `rate`
/// 0 as fast as acknowledged with `window` in flight; waits for the last
/// answers.
pub(crate) async fn send_until(
    sender: Client,
    session: SessionId,
    rate: f64,
    window: usize,
    deadline: Instant,
    acked: Arc<Histogram>,
) -> Acks {
    let mut acks = Acks::default();
    let mut in_flight = FuturesUnordered::new();
    let window = if rate > 0.0 {
        usize::MAX
    } else {
        window.max(1)
    };
    let mut tick = tokio::time::interval(if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_micros(1)
    });
    while Instant::now() < deadline {
        if in_flight.len() >= window {
            if let Some(r) = in_flight.next().await {
                acks.record(r);
            }
            continue;
        }
        if rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {
                    in_flight.push(send_one(sender.clone(), session, acked.clone()));
                }
                Some(r) = in_flight.next() => acks.record(r),
            }
        } else {
            in_flight.push(send_one(sender.clone(), session, acked.clone()));
        }
    }
    while let Some(r) = in_flight.next().await {
        acks.record(r);
    }
    acks
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let whole_run = CpuWindow::start(args.load.server_pid);
    let http = reqwest::Client::new();
    let scene = scene(&args.load, &http).await?;
    let session = SessionId(scene.session_id);
    println!(
        "session {session}; connecting {} viewers ({}{})",
        args.load.viewers,
        if args.load.raw_members {
            "raw sockets"
        } else {
            "SDK clients"
        },
        if args.load.floor {
            ", to the floor server"
        } else {
            ""
        }
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

    let counters = Arc::new(Counters::default());
    let viewer_count = viewers.len() as u64;
    let readers = Readers::start(viewers, &counters, args.uring, args.busy_poll)?;

    let ws_url = format!("{}/ws", args.load.url.replacen("http", "ws", 1));
    let mut senders = Vec::with_capacity(args.senders.max(1));
    for n in 0..args.senders.max(1) {
        let token = if n == 0 || args.load.floor {
            scene.host_token.clone()
        } else {
            setup::guest_token(&http, &args.load.url, session.0, &format!("sender {n}")).await?
        };
        let mut config = ClientConfig::new(ws_url.clone(), token);
        config.request_timeout = Duration::from_secs(30);
        let (sender, _events) = Client::connect(config).await?;
        sender.join(session).await?;
        senders.push(sender);
    }
    let breakdown_before = if args.load.floor {
        None
    } else {
        Breakdown::scrape(&http, &args.load.url, &args.load.viewer_urls).await
    };
    let polling = Arc::new(AtomicBool::new(args.busy_poll));
    // An io_uring reader polls on its own thread.
    if args.busy_poll && !args.uring {
        tokio::spawn(busy_poll(polling.clone()));
    }
    let acked = Arc::new(Histogram::default());
    if args.settle > 0.0 {
        let pause = Duration::try_from_secs_f64(args.settle)
            .map_err(|e| anyhow::anyhow!("--settle {}: {e}", args.settle))?;
        println!("waiting {} s for the session to settle", args.settle);
        tokio::time::sleep(pause).await;
    }
    let sending = CpuWindow::start(args.load.server_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let share = args.rate / senders.len() as f64;
    let sending_tasks: Vec<_> = senders
        .iter()
        .map(|sender| {
            tokio::spawn(send_until(
                sender.clone(),
                session,
                share,
                args.window,
                deadline,
                acked.clone(),
            ))
        })
        .collect();
    let mut acks = Acks::default();
    for task in sending_tasks {
        acks.merge(task.await?);
    }
    let send_time = started.elapsed();
    // Let the last messages arrive.
    let expected_total = acks.count * viewer_count;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while counters.delivered.load(Ordering::Relaxed) < expected_total
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_time = started.elapsed();
    let sending_cpu = sending.report();
    polling.store(false, Ordering::Relaxed);
    let breakdown = match breakdown_before {
        Some(before) => Breakdown::scrape(&http, &args.load.url, &args.load.viewer_urls)
            .await
            .map(|after| after.since(&before)),
        None => None,
    };
    let stopped = readers.stop().await;
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let rss_after = setup::rss_kib(args.load.server_pid);
    let mut missing_tail = 0;
    for (viewer, expected) in stopped {
        // Messages never seen at the end count as lost too.
        let from = match (expected, acks.first_seq) {
            (0, Some(first)) => first,
            (0, None) => continue,
            (next, _) => next,
        };
        missing_tail += (acks.last_seq + 1).saturating_sub(from);
        viewer.close().await;
    }
    for sender in senders {
        sender.close().await;
    }

    println!(
        "sent {} messages acked ({} refused rate_limited, {} failed) in {:.1} s = {:.0} msgs/s",
        acks.count,
        acks.refused,
        acks.failed,
        send_time.as_secs_f64(),
        acks.count as f64 / send_time.as_secs_f64()
    );
    println!(
        "delivered {delivered} of {expected_total} to {viewer_count} viewers in {:.1} s = {:.0} deliveries/s",
        total_time.as_secs_f64(),
        delivered as f64 / total_time.as_secs_f64()
    );
    println!(
        "latency send->receive: p50 {}, p95 {}, p99 {}, max {}",
        ms(counters.histogram.pct(50.0)),
        ms(counters.histogram.pct(95.0)),
        ms(counters.histogram.pct(99.0)),
        ms(counters.max_latency_us.load(Ordering::Relaxed))
    );
    println!(
        "lost {} (gaps {}, missing at the end {}), duplicated {}",
        counters.lost.load(Ordering::Relaxed) + missing_tail,
        counters.lost.load(Ordering::Relaxed),
        missing_tail,
        counters.duplicated.load(Ordering::Relaxed)
    );
    println!(
        "time to the sender's ack: p50 {}, p99 {}",
        ms(acked.pct(50.0)),
        ms(acked.pct(99.0))
    );
    if let Some(b) = breakdown {
        println!(
            "server, accepted -> durable (histogram buckets, interpolated): {}",
            b.durable.summary()
        );
        println!(
            "server, published -> first member's socket (1 in {} messages): {}",
            FANOUT_SAMPLE_EVERY,
            b.first.summary()
        );
        println!(
            "server, published -> last member's socket (1 in {} messages): {}",
            FANOUT_SAMPLE_EVERY,
            b.last.summary()
        );
        println!(
            "members' chat replays from history (every node): {}",
            listed(&b.replays)
        );
        println!(
            "holes the hubs filled from history (once for their members; every node): {}",
            listed(&b.refills)
        );
    }
    println!("CPU while sending and draining: {sending_cpu}");
    println!("CPU over the whole run: {}", whole_run.report());
    if let (Some(before), Some(joined), Some(after)) = (rss_before, rss_joined, rss_after) {
        println!(
            "server RSS: {before} KiB before, {joined} KiB with viewers joined, {after} KiB after the run ({:.1} KiB per connection)",
            (joined.saturating_sub(before)) as f64 / viewer_count.max(1) as f64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_counters_add_up_by_their_labels() {
        let series = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(l, n)| ((*l).to_owned(), *n)).collect()
        };
        let one = series(&[("{cause=\"lagged\"}", 3.0)]);
        let other = series(&[("{cause=\"lagged\"}", 4.0), ("{cause=\"gap\"}", 1.0)]);
        assert_eq!(
            summed(one, other),
            series(&[("{cause=\"lagged\"}", 7.0), ("{cause=\"gap\"}", 1.0)])
        );
    }
}
