//! N `simmer` nodes on one fresh PostgreSQL database and a `redis-server` of
//! the test's own (never the machine's shared Redis), ended by PID.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use uuid::Uuid;

use crate::simmer_process::{Rest, Simmer};

/// The lease TTL the test clusters run with (ms): short, so failovers are
/// quick; the production default is 5000.
pub const LEASE_TTL_MS: u64 = 2000;

const SECRET: &str = "cluster-test-secret-0123456789abcdef0123456789";

/// A fresh PostgreSQL database.
pub async fn fresh_postgres() -> String {
    let admin = std::env::var("SIMMER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("simmer_t_{}", Uuid::new_v4().simple());
    let conn = Database::connect(&admin).await.unwrap();
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    conn.close().await.ok();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A cluster of nodes.
pub struct Cluster {
    pub nodes: Vec<Option<Simmer>>,
    pub database_url: String,
    dirs: Vec<tempfile::TempDir>,
    /// The test's own Redis, when the cluster started it.
    redis: Option<RedisServer>,
    /// Settings every node starts with, over the harness's own.
    settings: Vec<(String, String)>,
}

impl Cluster {
    /// `n` nodes, named `n0`, `n1`, ..., on a fresh database and a Redis of
    /// their own.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, &[]).await
    }

    /// Like [`Self::start`], every node with these settings (environment
    /// variables) too.
    pub async fn start_with(n: usize, settings: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start().await;
        let urls = vec![redis.url(); n];
        let mut cluster = Self::boot_all(fresh_postgres().await, &urls, settings);
        cluster.redis = Some(redis);
        cluster
    }

    pub async fn start_on(n: usize, database_url: String, redis_url: String) -> Self {
        let urls = vec![redis_url; n];
        Self::start_each(database_url, &urls)
    }

    /// A node per Redis URL (a node may reach Redis through a proxy).
    pub fn start_each(database_url: String, urls: &[String]) -> Self {
        Self::boot_all(database_url, urls, &[])
    }

    fn boot_all(database_url: String, urls: &[String], settings: &[(&str, &str)]) -> Self {
        let mut cluster = Self {
            nodes: Vec::new(),
            database_url,
            dirs: Vec::new(),
            redis: None,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for (i, url) in urls.iter().enumerate() {
            let node = cluster.boot(i, url);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// Starts node `i` (again) with its own Redis URL.
    pub fn boot(&mut self, i: usize, redis_url: &str) -> Simmer {
        while self.dirs.len() <= i {
            self.dirs.push(tempfile::tempdir().unwrap());
        }
        let ttl = LEASE_TTL_MS.to_string();
        let name = format!("n{i}");
        let mut env = vec![
            ("DATABASE_URL", self.database_url.as_str()),
            ("REDIS_URL", redis_url),
            ("SIMMER_NODE_ID", &name),
            ("SIMMER_LEASE_TTL_MS", &ttl),
            ("SIMMER_JWT_SECRET", SECRET),
            ("SIMMER_SHUTDOWN_TIMEOUT_S", "2"),
            // Bursts of test messages are not abuse.
            ("SIMMER_CHAT_RATE_PER_S", "1000"),
            ("SIMMER_CHAT_BURST", "1000"),
        ];
        env.extend(self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Simmer::start(self.dirs[i].path(), &env)
    }

    pub fn node(&self, i: usize) -> &Simmer {
        self.nodes[i].as_ref().unwrap()
    }

    pub fn rest(&self, i: usize) -> Rest {
        self.node(i).rest()
    }

    /// The node that owns `session` now, by `GET /api/v1/cluster` on node
    /// `via`, waiting (up to `within`) until some node does.
    pub async fn owner(&self, via: usize, token: &str, session: Uuid, within: Duration) -> usize {
        self.owner_other_than(via, token, session, None, within)
            .await
    }

    /// Like [`Self::owner`], but waits until the owner is not node `not`
    /// (the session moved away from it); polls every 10 ms, so the wait
    /// measures a hand-over.
    pub async fn owner_other_than(
        &self,
        via: usize,
        token: &str,
        session: Uuid,
        not: Option<usize>,
        within: Duration,
    ) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let view = self
                .rest(via)
                .call(reqwest::Method::GET, "/api/v1/cluster", Some(token), None)
                .await;
            let owner = view["nodes"].as_array().unwrap().iter().find(|n| {
                n["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == &Value::String(session.to_string()))
            });
            if let Some(owner) = owner {
                let i: usize = owner["node_id"].as_str().unwrap()[1..].parse().unwrap();
                if Some(i) != not {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no node other than {not:?} owns {session}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts chat message `n` (text `m{n}`, id `c{n}`) through node `via`,
    /// retrying while the answer is 503 (a take-over under way), for at
    /// most `within`; its `seq`.
    pub async fn post_chat(
        &self,
        via: usize,
        token: &str,
        session: Uuid,
        n: u64,
        within: Duration,
    ) -> u64 {
        let rest = self.rest(via);
        let url = format!("{}/api/v1/sessions/{session}/messages", rest.address);
        let body = serde_json::json!({"text": format!("m{n}"), "client_msg_id": format!("c{n}")});
        let deadline = Instant::now() + within;
        loop {
            let resp = rest
                .client
                .post(&url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await;
            if let Ok(resp) = resp {
                let status = resp.status().as_u16();
                let reply: Value = resp.json().await.unwrap_or(Value::Null);
                if status == 201 {
                    return reply["seq"].as_u64().unwrap();
                }
                assert_eq!(status, 503, "message {n} through node {via}: {reply}");
            }
            assert!(
                Instant::now() < deadline,
                "message {n} never got through node {via}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the session's timer through node `via`; the timer.
    pub async fn start_timer(&self, via: usize, token: &str, session: Uuid) -> Value {
        self.rest(via)
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/sessions/{session}/timer"),
                Some(token),
                Some(serde_json::json!({"action": "start"})),
            )
            .await
    }

    /// The session's timer, read through node `via`.
    pub async fn timer(&self, via: usize, session: Uuid) -> Value {
        self.rest(via)
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{session}/timer"),
                None,
                None,
            )
            .await
    }

    /// The chat history of `session` through node `via`, oldest first:
    /// `(seq, text)`.
    pub async fn history(&self, via: usize, token: &str, session: Uuid) -> Vec<(u64, String)> {
        let history = self
            .rest(via)
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{session}/messages?limit=100"),
                Some(token),
                None,
            )
            .await;
        let mut items: Vec<(u64, String)> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["seq"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        items.reverse();
        items
    }

    /// Waits until node `i`'s `/readyz` answers `status` (200 or 503); the
    /// body.
    pub async fn ready(&self, i: usize, status: u16, within: Duration) -> Value {
        let rest = self.rest(i);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(resp) = rest
                .client
                .get(format!("{}/readyz", rest.address))
                .send()
                .await
            {
                if resp.status().as_u16() == status {
                    return resp.json().await.unwrap_or(Value::Null);
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {i} never answered {status} on /readyz"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One series of node `i`'s `/metrics` (its name and labels as
    /// scraped, e.g. `simmer_cluster_takeovers_total{reason="orphaned"}`);
    /// `None` when the node does not report it.
    pub async fn metric(&self, i: usize, series: &str) -> Option<f64> {
        let rest = self.rest(i);
        let text = rest
            .client
            .get(format!("{}/metrics", rest.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    }

    /// Sessions the given nodes took over, added up: (handed over by a
    /// draining node, found orphaned).
    pub async fn takeovers(&self, nodes: &[usize]) -> (u64, u64) {
        let mut taken = (0, 0);
        for &i in nodes {
            let count = |reason| format!("simmer_cluster_takeovers_total{{reason=\"{reason}\"}}");
            taken.0 += self.metric(i, &count("handed_over")).await.unwrap() as u64;
            taken.1 += self.metric(i, &count("orphaned")).await.unwrap() as u64;
        }
        taken
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        self.node(i).signal(signal);
    }
}

/// A `redis-server` of the test's own, on a free port, that the test can
/// kill and start again (nothing kept on disk: it comes back empty).
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of Redis for one node, which the test can cut (every
/// connection dropped, new ones refused) and restore: the node is cut off
/// from Redis while the others go on.
pub struct Proxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let target = target.to_owned();
        let accepting = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                // Only cuts from now on close this connection.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cut }
    }

    pub fn url(&self, db: &str) -> String {
        format!("redis://127.0.0.1:{}{db}", self.port)
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// A load balancer as clients meet it in production, in its simplest form:
/// each new connection goes to the first node in its order that accepts
/// (a draining node refuses, so the next one gets it). No sticky routing.
pub struct Balancer {
    pub port: u16,
    first: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Balancer {
    pub async fn start(backends: Vec<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = first.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backends = backends.clone();
                let from = start.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let target = &backends[(from + i) % backends.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Self { port, first }
    }

    /// New connections try node `i` first.
    pub fn prefer(&self, i: usize) {
        self.first.store(i, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
