//! A rolling restart under load (issue 13): three `simmer` processes on one
//! PostgreSQL and one Redis, behind a round-robin TCP balancer that every
//! client goes through: 200 members on `/ws` (the Rust SDK, guests) with
//! chat at 5 messages a second, 20 watches (the reference watch client), a
//! running recipe timer, a WHIP publisher and three WHEP viewers. Every node
//! in turn gets SIGTERM, exits 0 and comes back on its port. Then: every
//! acknowledged message is stored and reached every member exactly once and
//! in order; every watch shows the timer's step and countdown within 50 ms;
//! the viewers received video again within 2 s of the session's node going
//! away; no client saw an error besides the reconnects it was told about.
//!
//! Runs in a private network namespace with a PostgreSQL of its own
//! (`scripts/with-private-postgres.sh`), like `signalling_at_any_node`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::protocol::MediaState;
use mobile_bridge::watch_client::{WatchClient, WatchConfig};
use mobile_bridge::SessionId;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use watch_sync::{ClockSync, WatchDisplay};

use crate::harness::{fresh_postgres, RedisServer};
use crate::peers::{Publisher, Viewer, ViewerOptions};
use crate::simmer_process::{Rest, Simmer};

const NODES: usize = 3;
const MEMBERS: usize = 200;
const WATCHES: usize = 20;
const VIEWERS: usize = 3;
/// 5 chat messages a second, for the whole test.
const CHAT_EVERY: Duration = Duration::from_millis(200);
/// The first step's countdown: it runs through the whole test.
const STEP_S: u64 = 600;
const SHUTDOWN_TIMEOUT_S: u64 = 10;
const SECRET: &str = "rolling-restart-secret-0123456789abcdef0123456789";
/// A peer connection the server closed is set up again after this long
/// unless a `media {state: "reconnect"}` came first (the pages back off too).
const CLOSED_GRACE: Duration = Duration::from_millis(500);
/// A player whose video stops for this long (the host sends 30 frames a
/// second) plays again.
const STALL: Duration = Duration::from_millis(300);
/// What the issue asks of WHEP playback after its node goes away.
const VIDEO_BACK_WITHIN: Duration = Duration::from_secs(2);
const WATCH_TOLERANCE_MS: i64 = 50;

/// A plain L4 balancer: each new connection goes to the next node in turn
/// that accepts; a draining or stopped node refuses, so the one after it
/// gets the connection. No health checks, no stickiness.
struct RoundRobin {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(backends: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let from = next;
                next = next.wrapping_add(1);
                let backends = backends.clone();
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let target = &backends[(from + i) % backends.len()];
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            // No Nagle delays on small frames (pongs, acks).
                            let _ = inbound.set_nodelay(true);
                            let _ = outbound.set_nodelay(true);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Self { port, accept }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The three nodes: fixed ports (a restarted node comes back on its own),
/// one data directory each, ended on drop (Simmer's own `Drop`).
struct Fleet {
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    processes: Vec<Option<Simmer>>,
    env: Vec<(String, String)>,
}

impl Fleet {
    fn new(database_url: &str, redis_url: &str) -> Self {
        let ports = (0..NODES)
            .map(|_| {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                probe.local_addr().unwrap().port()
            })
            .collect();
        let env = [
            ("DATABASE_URL", database_url),
            ("REDIS_URL", redis_url),
            ("SIMMER_JWT_SECRET", SECRET),
            ("SIMMER_LEASE_TTL_MS", "2000"),
            ("SIMMER_SHUTDOWN_TIMEOUT_S", &SHUTDOWN_TIMEOUT_S.to_string()),
            ("SIMMER_DRAIN_SPREAD_MS", "2000"),
            // Load from one address (the balancer's) is not abuse here.
            ("SIMMER_CHAT_RATE_PER_S", "1000"),
            ("SIMMER_CHAT_BURST", "1000"),
            ("SIMMER_WS_MAX_CONNECTIONS_PER_USER", "1000"),
            ("SIMMER_GUEST_TOKENS_PER_ADDRESS", "1000"),
            ("SIMMER_WATCH_PAIRINGS_PER_WINDOW", "1000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        Self {
            ports,
            dirs: (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect(),
            processes: (0..NODES).map(|_| None).collect(),
            env,
        }
    }

    fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Starts node `i` (again) and waits until `/readyz` says 200.
    async fn boot(&mut self, i: usize) {
        let dir = self.dirs[i].path().to_owned();
        let mut env = self.env.clone();
        env.push(("SIMMER_NODE_ID".into(), format!("n{i}")));
        env.push(("SIMMER_BIND".into(), self.address(i)));
        // `start` blocks on the log until the node listens.
        let process = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            Simmer::start(&dir, &env)
        })
        .await
        .unwrap();
        self.processes[i] = Some(process);
        let url = format!("http://{}/readyz", self.address(i));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {i} never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn node(&mut self, i: usize) -> &mut Simmer {
        self.processes[i].as_mut().unwrap()
    }
}

/// REST through the balancer for the test's own reads while nodes come and
/// go: a new connection per request (a pooled one may lead to a node that
/// has drained since), retried on a refused or cut connection or a 503.
struct Api {
    base: String,
    client: reqwest::Client,
    retries: AtomicU64,
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = self
                .client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .await;
            if let Ok(resp) = resp {
                let status = resp.status();
                assert!(
                    status.is_success() || status == 503,
                    "{path}: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
                if status.is_success() {
                    if let Ok(body) = resp.json().await {
                        return body;
                    }
                }
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            assert!(Instant::now() < deadline, "{path}: no answer for 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node that runs `session` now (waiting until one does).
    async fn owner(&self, token: &str, session: Uuid) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let view = self.get("/api/v1/cluster", token).await;
            let owner = view["nodes"].as_array().unwrap().iter().find(|n| {
                n["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s.as_str() == Some(&session.to_string()))
            });
            if let Some(owner) = owner {
                return owner["node_id"].as_str().unwrap()[1..].parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no node runs {session}: {view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The whole chat history, oldest first: `(seq, text, client_msg_id)`.
    async fn history(&self, token: &str, session: Uuid) -> Vec<(u64, String, String)> {
        let mut items = Vec::new();
        let mut before = String::new();
        loop {
            let path = format!("/api/v1/sessions/{session}/messages?limit=100{before}");
            let page = self.get(&path, token).await;
            for m in page["items"].as_array().unwrap() {
                items.push((
                    m["seq"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_owned(),
                    m["client_msg_id"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            match page["next_before_seq"].as_u64() {
                Some(seq) => before = format!("&before_seq={seq}"),
                None => break,
            }
        }
        items.reverse();
        items
    }
}

/// What one member's app saw.
#[derive(Default)]
struct Seen {
    chats: Vec<u64>,
    kinds: BTreeMap<&'static str, u64>,
    /// When each reconnect attempt began, and which attempt it was.
    reconnecting: Vec<(Instant, u32)>,
}

#[derive(Default)]
struct MemberLog {
    seen: Mutex<Seen>,
    /// `media {state: "reconnect"}` frames heard: WHIP/WHEP must be redone.
    media_reconnects: AtomicU64,
    /// Times the SDK resumed after a reconnect.
    resumed: AtomicU64,
}

/// An SDK client through the balancer, joined to `session`, whose events
/// are recorded until the client closes.
async fn member(ws_url: &str, token: &str, session: Uuid) -> (Client, Arc<MemberLog>) {
    let (client, mut events) = Client::connect(ClientConfig::new(ws_url, token))
        .await
        .unwrap();
    let snapshot = client.join(SessionId(session)).await.unwrap();
    assert_eq!(
        snapshot.last_seq, 0,
        "members join before the first message"
    );
    let log = Arc::new(MemberLog::default());
    let sink = log.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let mut seen = sink.seen.lock().unwrap();
            let kind = match event {
                Event::Chat(m) => {
                    seen.chats.push(m.seq);
                    "chat"
                }
                Event::ChatDeleted { .. } => "chat_deleted",
                Event::Presence { .. } => "presence",
                Event::Timer { .. } => "timer",
                Event::Media { state, .. } => {
                    if state == MediaState::Reconnect {
                        sink.media_reconnects.fetch_add(1, Ordering::SeqCst);
                        "media_reconnect"
                    } else {
                        "media"
                    }
                }
                Event::SessionEnded { .. } => "session_ended",
                Event::Reconnecting { attempt } => {
                    seen.reconnecting.push((Instant::now(), attempt));
                    "reconnecting"
                }
                Event::Reconnected => {
                    sink.resumed.fetch_add(1, Ordering::SeqCst);
                    "reconnected"
                }
                Event::TokenRefused { .. } => "token_refused",
            };
            *seen.kinds.entry(kind).or_default() += 1;
        }
    });
    (client, log)
}

/// What a watch shows, kept after every frame: its display and its clock
/// estimate are what `WatchClient::displayed_remaining_ms` computes from
/// (the client itself stays inside its task, which must not be interrupted
/// in the middle of reopening a feed).
struct WatchView {
    display: WatchDisplay,
    clock: ClockSync,
    reconnects: u32,
    /// When the latest frame came (ticks come every second).
    last_frame: Instant,
    error: Option<String>,
}

impl WatchView {
    /// `WatchClient::displayed_remaining_ms` at this moment (no skew).
    fn remaining_ms(&self) -> Option<i64> {
        let local = chrono::Utc::now().timestamp_millis();
        self.display.remaining_ms(self.clock.server_now(local))
    }
}

async fn follow_watch(base_url: String, device: String) -> Arc<Mutex<WatchView>> {
    let mut watch = WatchClient::connect(WatchConfig::new(&base_url, &device))
        .await
        .unwrap();
    watch.sync_clock(5).await.unwrap();
    let view = Arc::new(Mutex::new(WatchView {
        display: watch.display().clone(),
        clock: watch.clock().clone(),
        reconnects: 0,
        last_frame: Instant::now(),
        error: None,
    }));
    let shared = view.clone();
    tokio::spawn(async move {
        loop {
            let frame = watch.next_frame().await;
            let mut view = shared.lock().unwrap();
            view.display = watch.display().clone();
            view.clock = watch.clock().clone();
            view.reconnects = watch.reconnects();
            view.last_frame = Instant::now();
            if let Err(e) = frame {
                view.error = Some(e.to_string());
                return;
            }
        }
    });
    view
}

/// One peer connection of a media client: the host's publication (with
/// the task that sends on it) or a player.
enum Peer {
    Publishing(Publisher, tokio::task::JoinHandle<()>),
    Playing(Arc<Viewer>),
}

impl Peer {
    fn closed_by_server(&self) -> bool {
        match self {
            Peer::Publishing(p, _) => p.closed_by_server(),
            Peer::Playing(v) => v.closed_by_server(),
        }
    }

    fn resource(&self) -> &str {
        match self {
            Peer::Publishing(p, _) => &p.resource,
            Peer::Playing(v) => &v.resource,
        }
    }

    async fn close(self) {
        match self {
            Peer::Publishing(p, sending) => {
                sending.abort();
                p.close().await;
            }
            Peer::Playing(v) => v.close().await,
        }
    }
}

/// Every connection a media client made, and the refusals on the way.
#[derive(Default)]
struct MediaLog {
    /// When each connection was answered; the player, to read its video.
    made: Vec<(Instant, Option<Arc<Viewer>>)>,
    refused: Vec<String>,
    /// Why connections were set up again, and how often.
    redone: BTreeMap<&'static str, u32>,
}

/// Keeps a WHIP publication (`publish`) or a WHEP player up through the
/// balancer as the pages do: set up again at once on `media {state:
/// "reconnect"}` (heard by the same user's `/ws`), or when the server
/// closed it and no such frame came within [`CLOSED_GRACE`]; the old
/// resource deleted first (it may hold the room's only publisher slot).
///
/// A `/ws` that was told to reconnect before the session's new node sent
/// that frame never hears it (a resume replays chat only), and the server's
/// close reaches a `webrtc` peer only as ICE silence, about 5 s later. So,
/// as a careful app would, a player also plays again when its video stalls
/// for [`STALL`], and the host asks `GET .../media` after each resume of
/// its `/ws` whether it still publishes.
async fn keep_media_up(
    base: String,
    token: String,
    session: Uuid,
    publish: bool,
    hints: Arc<MemberLog>,
    log: Arc<Mutex<MediaLog>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut current: Option<Peer> = None;
    let (mut hinted, mut resumed) = (0, 0);
    let mut closed_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let frames = hints.media_reconnects.load(Ordering::SeqCst);
        let resumes = hints.resumed.load(Ordering::SeqCst);
        let why = match &current {
            None => Some("first"),
            Some(_) if frames > hinted => Some("frame"),
            Some(peer) if peer.closed_by_server() => {
                let since = closed_since.get_or_insert_with(Instant::now);
                (since.elapsed() >= CLOSED_GRACE).then_some("closed")
            }
            Some(Peer::Playing(v)) if v.last_video_at().is_some_and(|at| at.elapsed() > STALL) => {
                Some("stalled")
            }
            Some(Peer::Publishing(..)) if resumes > resumed => {
                resumed = resumes;
                let stats = http
                    .get(format!("{base}/api/v1/sessions/{session}/media"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let stats: Value = match stats {
                    Ok(resp) => resp.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                (stats["publisher"] == "not_publishing").then_some("not_publishing")
            }
            Some(_) => None,
        };
        let Some(why) = why else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if let Some(old) = current.take() {
            *log.lock().unwrap().redone.entry(why).or_default() += 1;
            let _ = http
                .delete(format!("{base}{}", old.resource()))
                .bearer_auth(&token)
                .send()
                .await;
            old.close().await;
        }
        (hinted, resumed) = (frames, resumes);
        closed_since = None;
        let peer = if publish {
            Publisher::publish(&reqwest::Client::new(), &base, &token, session)
                .await
                .map(|p| {
                    let sending = p.send_for(Duration::from_secs(STEP_S));
                    Peer::Publishing(p, sending)
                })
        } else {
            Viewer::play(
                &reqwest::Client::new(),
                &base,
                &token,
                session,
                ViewerOptions::default(),
            )
            .await
            .map(|v| Peer::Playing(Arc::new(v)))
        };
        match peer {
            Ok(peer) => {
                let viewer = match &peer {
                    Peer::Playing(v) => Some(v.clone()),
                    Peer::Publishing(..) => None,
                };
                log.lock().unwrap().made.push((Instant::now(), viewer));
                current = Some(peer);
            }
            Err(e) => {
                log.lock().unwrap().refused.push(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if let Some(peer) = current {
        peer.close().await;
    }
}

/// When a player first received video on a connection made after `since`.
fn video_back(log: &MediaLog, since: Instant) -> Option<Instant> {
    log.made
        .iter()
        .filter(|(made, _)| *made >= since)
        .filter_map(|(_, v)| v.as_ref()?.first_video_at())
        .min()
}

/// A recipe whose first step runs for [`STEP_S`], live, through `rest`.
async fn live_session(rest: &Rest, host: &str) -> Uuid {
    let post = reqwest::Method::POST;
    let steps = json!([
        {"text": "Simmer", "duration_s": STEP_S, "label": "simmer"},
        {"text": "Serve", "duration_s": 60, "label": "serve"},
    ]);
    let recipe =
        json!({"title": "Long stew", "description": "Slow", "servings": 4, "steps": steps});
    let recipe = rest
        .call(post.clone(), "/api/v1/recipes", Some(host), Some(recipe))
        .await;
    let session = json!({"recipe_id": recipe["id"], "title": "Rolling restart"});
    let session = rest
        .call(post.clone(), "/api/v1/sessions", Some(host), Some(session))
        .await;
    let id: Uuid = session["id"].as_str().unwrap().parse().unwrap();
    let start = format!("/api/v1/sessions/{id}/start");
    rest.call(post, &start, Some(host), Some(json!({}))).await;
    id
}

/// One SIGTERM: which node, whether it ran the session, and what followed.
struct Restart {
    node: usize,
    signalled: Instant,
    owned: bool,
    exit: Duration,
    moved_after: Option<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarts_in_turn_and_no_client_notices_more_than_a_reconnect() {
    assert_eq!(
        std::env::var("SIMMER_TEST_DATABASE").as_deref(),
        Ok("postgres"),
        "a cluster needs PostgreSQL (scripts/with-private-postgres.sh)"
    );
    let began = Instant::now();
    let redis = RedisServer::start().await;
    let mut fleet = Fleet::new(&fresh_postgres().await, &redis.url());
    for i in 0..NODES {
        fleet.boot(i).await;
    }
    let balancer = RoundRobin::start((0..NODES).map(|i| fleet.address(i)).collect()).await;
    let base = balancer.url();
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let rest = Rest {
        address: base.clone(),
        client: reqwest::Client::new(),
    };
    let api = Api {
        base: base.clone(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        retries: AtomicU64::new(0),
    };

    // The host, its session and the timer.
    let host = rest.register().await;
    let session = live_session(&rest, &host).await;
    let timer_path = format!("/api/v1/sessions/{session}/timer");
    let started = rest
        .call(
            reqwest::Method::POST,
            &timer_path,
            Some(&host),
            Some(json!({"action": "start"})),
        )
        .await;
    let deadline_ms = started["deadline_ms"].as_i64().unwrap();

    // 200 guests on /ws (the first three are also the players), the host too.
    let guest_path = format!("/api/v1/sessions/{session}/guest-tokens");
    let mut guests = Vec::new();
    for i in 0..MEMBERS {
        let token = rest
            .call(
                reqwest::Method::POST,
                &guest_path,
                None,
                Some(json!({"display_name": format!("Guest {i}")})),
            )
            .await;
        guests.push(token["access_token"].as_str().unwrap().to_owned());
    }
    let mut members = Vec::new();
    for chunk in guests.chunks(25) {
        members.extend(join_all(chunk.iter().map(|t| member(&ws_url, t, session))).await);
    }
    let (host_client, host_log) = member(&ws_url, &host, session).await;

    // 20 watches.
    let mut watches = Vec::new();
    for _ in 0..WATCHES {
        let device = rest.pair_watch(&host, session).await;
        watches.push(follow_watch(base.clone(), device).await);
    }

    // The host publishes, three guests play.
    let stop_media = Arc::new(AtomicBool::new(false));
    let media = |token: String, publish: bool, hints: Arc<MemberLog>| {
        let log = Arc::new(Mutex::new(MediaLog::default()));
        let task = tokio::spawn(keep_media_up(
            base.clone(),
            token,
            session,
            publish,
            hints,
            log.clone(),
            stop_media.clone(),
        ));
        (log, task)
    };
    let publishing = media(host.clone(), true, host_log.clone());
    let players: Vec<_> = (0..VIEWERS)
        .map(|i| media(guests[i].clone(), false, members[i].1.clone()))
        .collect();
    let video_from = Instant::now();
    let until = video_from + Duration::from_secs(15);
    while !players
        .iter()
        .all(|(log, _)| video_back(&log.lock().unwrap(), video_from).is_some())
    {
        assert!(Instant::now() < until, "no video before the restarts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "rolling restart: set up in {:?} ({MEMBERS} members, {WATCHES} watches, {VIEWERS} players)",
        began.elapsed()
    );

    // Chat at 5 a second through random members, for the whole test.
    let stop_chat = Arc::new(AtomicBool::new(false));
    let chatting = tokio::spawn({
        let clients: Vec<Client> = members.iter().map(|(c, _)| c.clone()).collect();
        let stop = stop_chat.clone();
        async move {
            let mut tick = tokio::time::interval(CHAT_EVERY);
            let mut sends = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let client = clients[rand::thread_rng().gen_range(0..clients.len())].clone();
                sends.push(tokio::spawn(async move {
                    let ack = client.send_chat(SessionId(session), format!("m{n}")).await;
                    (n, ack)
                }));
            }
            let mut results = Vec::new();
            for send in sends {
                let outcome = tokio::time::timeout(Duration::from_secs(30), send).await;
                results.push(outcome.expect("a send never finished").unwrap());
            }
            results
        }
    });
    let chat_began = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every node in turn.
    let mut restarts = Vec::new();
    for i in 0..NODES {
        let owned = api.owner(&host, session).await == i;
        let signalled = Instant::now();
        fleet.node(i).signal("TERM");
        let moved = owned.then(|| {
            let api = Api {
                base: base.clone(),
                client: api.client.clone(),
                retries: AtomicU64::new(0),
            };
            let host = host.clone();
            tokio::spawn(async move {
                while api.owner(&host, session).await == i {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                signalled.elapsed()
            })
        });
        let within = Duration::from_secs(SHUTDOWN_TIMEOUT_S + 3);
        let (status, exit) = fleet.node(i).wait_exit(within).await;
        let stderr = fleet.node(i).stderr();
        assert!(status.success(), "node {i}: {status:?}; stderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "node {i}:\n{stderr}");
        fleet.boot(i).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let moved_after = match moved {
            Some(task) => Some(task.await.unwrap()),
            None => None,
        };
        restarts.push(Restart {
            node: i,
            signalled,
            owned,
            exit,
            moved_after,
        });
    }

    // The last messages, then what everyone saw.
    stop_chat.store(true, Ordering::SeqCst);
    let chatted = chat_began.elapsed();
    let results = chatting.await.unwrap();
    let mut acked = Vec::new();
    let mut failed_sends = Vec::new();
    for (n, ack) in results {
        match ack {
            Ok(ack) => acked.push((ack.seq, n, ack.client_msg_id)),
            Err(e) => failed_sends.push(format!("m{n}: {e}")),
        }
    }
    acked.sort();
    let last = acked.len() as u64;
    let logs: Vec<&Arc<MemberLog>> = members
        .iter()
        .map(|(_, log)| log)
        .chain([&host_log])
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until
        && !logs
            .iter()
            .all(|log| log.seen.lock().unwrap().chats.last() == Some(&last))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = api.history(&host, session).await;
    let timer = api.get(&timer_path, &host).await;

    // The watches, against the timer's truth.
    let truth_at = chrono::Utc::now().timestamp_millis();
    let mut watch_errors = Vec::new();
    let mut worst_watch_ms = 0i64;
    let mut watch_reconnects = 0;
    for (i, watch) in watches.iter().enumerate() {
        let view = watch.lock().unwrap();
        watch_reconnects += view.reconnects;
        // Every watch was on a node that restarted, and follows a live feed.
        if view.reconnects == 0 {
            watch_errors.push(format!("watch {i}: never reopened its feed"));
        }
        if view.last_frame.elapsed() > Duration::from_secs(2) {
            watch_errors.push(format!(
                "watch {i}: no frame for {:?}",
                view.last_frame.elapsed()
            ));
        }
        let truth = timer["deadline_ms"].as_i64().unwrap() - truth_at;
        match (view.remaining_ms(), view.display.timer(), &view.error) {
            (_, _, Some(e)) => watch_errors.push(format!("watch {i}: {e}")),
            (Some(shown), Some(shown_timer), None) => {
                worst_watch_ms = worst_watch_ms.max((shown - truth).abs());
                if u64::from(shown_timer.step_index) != timer["step_index"].as_u64().unwrap() {
                    watch_errors.push(format!("watch {i}: step {}", shown_timer.step_index));
                }
            }
            (shown, _, None) => watch_errors.push(format!("watch {i}: shows {shown:?}")),
        }
    }

    // Video back after each move, measured from the SIGTERM.
    let mut recoveries = Vec::new();
    for restart in restarts.iter().filter(|r| r.owned) {
        let back: Vec<Option<Duration>> = players
            .iter()
            .map(|(log, _)| {
                video_back(&log.lock().unwrap(), restart.signalled).map(|at| at - restart.signalled)
            })
            .collect();
        recoveries.push((restart.node, back));
    }
    // And it still flows now, on each player's latest connection.
    let flowing: Vec<Option<Duration>> = players
        .iter()
        .map(|(log, _)| {
            let log = log.lock().unwrap();
            let (_, viewer) = log.made.last()?;
            Some(viewer.as_ref()?.last_video_at()?.elapsed())
        })
        .collect();
    stop_media.store(true, Ordering::SeqCst);

    // Reconnects: each began while a node drained (its SIGTERM to its exit
    // plus the reconnect's own wait), and the first attempt worked.
    let drains: Vec<(Instant, Instant)> = restarts
        .iter()
        .map(|r| (r.signalled, r.signalled + r.exit + Duration::from_secs(1)))
        .collect();
    let mut sdk_reconnects = 0;
    let mut unexplained = 0;
    let mut retried = 0;
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut member_faults = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let seen = log.seen.lock().unwrap();
        for (kind, count) in &seen.kinds {
            *kinds.entry(kind).or_default() += count;
        }
        for (at, attempt) in &seen.reconnecting {
            if *attempt == 1 {
                sdk_reconnects += 1;
            } else {
                retried += 1;
            }
            if !drains.iter().any(|(from, to)| from <= at && at <= to) {
                unexplained += 1;
            }
        }
        // Every member was on a node that restarted; each reconnect resumed.
        let began = seen.reconnecting.iter().filter(|(_, a)| *a == 1).count();
        let resumed = log.resumed.load(Ordering::SeqCst) as usize;
        if began == 0 || resumed != began {
            member_faults.push(format!("member {i}: {began} reconnects, {resumed} resumed"));
        }
        if seen.chats != (1..=last).collect::<Vec<_>>() {
            let dupes = seen.chats.len() - {
                let mut unique = seen.chats.clone();
                unique.sort();
                unique.dedup();
                unique.len()
            };
            member_faults.push(format!(
                "member {i}: {} messages, first {:?}, last {:?}, {dupes} repeated, in order: {}",
                seen.chats.len(),
                seen.chats.first(),
                seen.chats.last(),
                seen.chats.windows(2).all(|w| w[0] < w[1])
            ));
        }
    }
    // Per media client: connections made, and why they were made again.
    let media_made: Vec<(usize, BTreeMap<&'static str, u32>)> = std::iter::once(&publishing)
        .chain(&players)
        .map(|(log, _)| {
            let log = log.lock().unwrap();
            (log.made.len(), log.redone.clone())
        })
        .collect();
    // Members that were joined throughout but did not hear a move's frame.
    let moves = restarts.iter().filter(|r| r.owned).count() as u64;
    let missed_frames: u64 = logs
        .iter()
        .map(|log| moves.saturating_sub(log.media_reconnects.load(Ordering::SeqCst)))
        .sum();
    // When those members' links went, counted from each move's SIGTERM.
    let missed_when: Vec<Vec<Duration>> = logs
        .iter()
        .filter(|log| log.media_reconnects.load(Ordering::SeqCst) < moves)
        .map(|log| {
            let seen = log.seen.lock().unwrap();
            restarts
                .iter()
                .filter(|r| r.owned)
                .flat_map(|r| {
                    let drained = r.signalled..=r.signalled + r.exit;
                    seen.reconnecting
                        .iter()
                        .filter(move |(at, _)| drained.contains(at))
                        .map(move |(at, _)| *at - r.signalled)
                })
                .collect()
        })
        .collect();
    let media_refused: Vec<String> = std::iter::once(&publishing)
        .chain(&players)
        .flat_map(|(log, _)| log.lock().unwrap().refused.clone())
        .collect();

    eprintln!(
        "rolling restart: {last} messages acknowledged, {} failed sends, {} in history",
        failed_sends.len(),
        history.len()
    );
    for r in &restarts {
        eprintln!(
            "rolling restart: node {} {} exited 0 {:?} after SIGTERM; session moved after {:?}",
            r.node,
            if r.owned {
                "(ran the session)"
            } else {
                "(did not run it)"
            },
            r.exit,
            r.moved_after
        );
    }
    eprintln!(
        "rolling restart: SDK reconnects {sdk_reconnects} (retried attempts {retried}, \
         outside a drain {unexplained}); events {kinds:?}; members with faults {}",
        member_faults.len()
    );
    eprintln!(
        "rolling restart: watches reopened {watch_reconnects} feeds, worst error {worst_watch_ms} ms, \
         {} watch errors; timer step {} deadline {} (started {deadline_ms})",
        watch_errors.len(),
        timer["step_index"],
        timer["deadline_ms"]
    );
    for (node, back) in &recoveries {
        eprintln!(
            "rolling restart: node {node} went away; video back at each player after {back:?}"
        );
    }
    eprintln!("rolling restart: at the end, latest video at each player {flowing:?} ago");
    eprintln!(
        "rolling restart: {missed_frames} of {} `media reconnect` frames never reached \
         their member (told to reconnect {missed_when:?} after the move's SIGTERM); \
         media connections (made, why made again) of the publisher and \
         the players {media_made:?}; \
         refused attempts {}: {:?}; REST retries {}; took {:?}",
        moves * logs.len() as u64,
        media_refused.len(),
        media_refused.iter().take(5).collect::<Vec<_>>(),
        api.retries.load(Ordering::Relaxed),
        began.elapsed()
    );

    // The checks.
    assert!(failed_sends.is_empty(), "failed sends: {failed_sends:?}");
    let seqs: Vec<u64> = acked.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "acks: each seq once");
    let expected = chatted.as_millis() / CHAT_EVERY.as_millis();
    assert!(
        u128::from(last) * 10 >= expected * 9,
        "{last} messages in {chatted:?}: the sender fell behind"
    );
    let stored: Vec<(u64, String, String)> = acked
        .iter()
        .map(|(seq, n, id)| (*seq, format!("m{n}"), id.clone()))
        .collect();
    assert_eq!(
        history, stored,
        "history holds exactly the acknowledged messages"
    );
    assert!(member_faults.is_empty(), "{member_faults:#?}");
    assert_eq!(kinds.get("session_ended"), None);
    assert_eq!(retried, 0, "a reconnect attempt failed");
    assert_eq!(unexplained, 0, "a member lost its link outside a drain");
    assert!(watch_errors.is_empty(), "{watch_errors:?}");
    assert!(
        worst_watch_ms <= WATCH_TOLERANCE_MS,
        "a watch is {worst_watch_ms} ms off"
    );
    assert_eq!(timer["state"], "running");
    assert_eq!(
        timer["deadline_ms"].as_i64(),
        Some(deadline_ms),
        "the deadline moved"
    );
    assert!(
        restarts.iter().any(|r| r.owned),
        "the session's node was restarted"
    );
    for (player, last) in flowing.iter().enumerate() {
        assert!(
            last.is_some_and(|ago| ago < Duration::from_secs(1)),
            "player {player}: latest video {last:?} ago"
        );
    }
    for (node, back) in &recoveries {
        for (player, took) in back.iter().enumerate() {
            let took =
                took.unwrap_or_else(|| panic!("player {player}: no video after node {node}"));
            assert!(
                took <= VIDEO_BACK_WITHIN,
                "player {player}: video back {took:?} after node {node}'s SIGTERM"
            );
        }
    }

    // Stop every client, then (on drop) the nodes and Redis.
    for (client, _) in &members {
        client.close().await;
    }
    host_client.close().await;
    for (_, task) in std::iter::once(publishing).chain(players) {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(fleet);
    drop(redis);
}
