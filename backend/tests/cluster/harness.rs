//! N `simmer` nodes on one fresh PostgreSQL database and one Redis database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use uuid::Uuid;

use crate::simmer_process::{Rest, Simmer};

/// The lease TTL the test clusters run with (ms): short, so failovers are
/// quick; the production default is 5000.
pub const LEASE_TTL_MS: u64 = 2000;

const SECRET: &str = "cluster-test-secret-0123456789abcdef0123456789";

/// Redis databases 1..=15, one per test in turn (keys apart; pub/sub is
/// shared, and every channel name is unique to its nodes or sessions).
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

pub fn redis_base() -> String {
    std::env::var("SIMMER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh Redis database on the test server, emptied.
pub async fn fresh_redis() -> String {
    let n = NEXT_DB.fetch_add(1, Ordering::SeqCst) % 15 + 1;
    let url = format!("{}/{n}", redis_base().trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    url
}

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
    pub redis_url: String,
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `n` nodes, named `n0`, `n1`, ...
    pub async fn start(n: usize) -> Self {
        let database_url = fresh_postgres().await;
        let redis_url = fresh_redis().await;
        Self::start_on(n, database_url, redis_url).await
    }

    pub async fn start_on(n: usize, database_url: String, redis_url: String) -> Self {
        let mut cluster = Self {
            nodes: Vec::new(),
            database_url,
            redis_url,
            dirs: Vec::new(),
        };
        for i in 0..n {
            let redis_url = cluster.redis_url.clone();
            let node = cluster.boot(i, &redis_url);
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
        Simmer::start(
            self.dirs[i].path(),
            &[
                ("DATABASE_URL", &self.database_url),
                ("REDIS_URL", redis_url),
                ("SIMMER_NODE_ID", &name),
                ("SIMMER_LEASE_TTL_MS", &ttl),
                ("SIMMER_JWT_SECRET", SECRET),
                ("SIMMER_SHUTDOWN_TIMEOUT_S", "2"),
                // Bursts of test messages are not abuse.
                ("SIMMER_CHAT_RATE_PER_S", "1000"),
                ("SIMMER_CHAT_BURST", "1000"),
            ],
        )
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
                let name = owner["node_id"].as_str().unwrap();
                return name[1..].parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no node owns {session}: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        self.node(i).signal(signal);
    }
}
