//! Several `simmer` nodes as one cluster, with Redis as the only coordination
//! service (docs/cluster.md). This module is the transport and the shared
//! records; what runs where is decided in `crate::live`.
//!
//! ```text
//! Cluster (one per node)
//! ├── ConnectionManager     commands: leases, live set, node records, PUBLISH
//! ├── subscriber            one pub/sub connection: session events of the
//! │                         topics followed here, this node's requests and
//! │                         replies, cluster-wide control messages
//! ├── leases                who runs each live session (Lua, compare-and-set)
//! └── rpc                   a command to the node that runs a session
//! ```
//! Redis keys (all under `simmer:`): `live` (the set of live session ids),
//! `lease:{session}` (the owner's node id, with a TTL), `node:{id}` (a node's
//! record, with a TTL), `nodes` (every node id seen). Channels: `ev:m:{id}` and
//! `ev:w:{id}` (a session's member and watch events), `rpc:{node}` (requests
//! and replies for a node), `ctl` (control messages for every node).

mod leases;
mod presence;
mod rpc;
mod shared;
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::bus::LocalBus;
use crate::config::Settings;
use crate::metrics::Metrics;

pub use leases::Renewal;
pub use rpc::{Incoming, RpcError};

/// How long one Redis command may take before the node treats Redis as gone.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// A node as the cluster sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NodeRecord {
    pub node_id: String,
    pub advertise_url: String,
    /// Live sessions whose lease it holds.
    pub sessions: Vec<Uuid>,
}

/// This node's link to the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

struct Inner {
    node: String,
    /// This process: the node id and a random suffix (a restarted node is a
    /// new instance; counts of the old one are forgotten).
    instance: String,
    advertise_url: String,
    lease_ttl: Duration,
    redis: ConnectionManager,
    subscriber: subscriber::Subscriber,
    rpc: rpc::Rpc,
    metrics: Metrics,
    /// The last Redis command failed (and why), until one succeeds.
    trouble: Mutex<Option<String>>,
    /// The pub/sub connection is up and subscribed.
    subscribed: Arc<AtomicBool>,
}

/// A key or channel name.
pub(crate) fn key(parts: std::fmt::Arguments<'_>) -> String {
    format!("simmer:{parts}")
}

impl Cluster {
    /// Connects to Redis (lazily: a node starts while Redis is down, and says
    /// so on `/readyz`) and starts the subscriber. Requests from other nodes
    /// and control messages arrive on the returned channel; session events
    /// from other nodes are delivered to `local`.
    pub fn connect(
        settings: &Settings,
        local: Arc<LocalBus>,
        metrics: Metrics,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Incoming>)> {
        let url = settings
            .redis_url
            .as_ref()
            .context("cluster mode needs REDIS_URL")?;
        let client = redis::Client::open(url.expose()).context("parsing REDIS_URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("setting up the Redis connection")?;
        let node = settings.node_id.clone();
        let (incoming_tx, incoming) = mpsc::channel(1024);
        let rpc = rpc::Rpc::new(node.clone(), redis.clone(), metrics.clone());
        let subscribed = Arc::new(AtomicBool::new(false));
        let subscriber = subscriber::Subscriber::start(
            client,
            node.clone(),
            local,
            rpc.clone(),
            incoming_tx,
            subscribed.clone(),
            metrics.clone(),
        );
        let cluster = Self {
            inner: Arc::new(Inner {
                instance: format!("{node}.{}", &Uuid::new_v4().simple().to_string()[..8]),
                node,
                advertise_url: settings.advertise_url.clone(),
                lease_ttl: settings.lease_ttl,
                redis,
                subscriber,
                rpc,
                metrics,
                trouble: Mutex::new(None),
                subscribed,
            }),
        };
        Ok((cluster, incoming))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A Redis connection for one command (a cheap handle).
    fn redis(&self) -> ConnectionManager {
        self.inner.redis.clone()
    }

    /// Notes how a Redis command went, for `/readyz`.
    fn note<T>(&self, result: redis::RedisResult<T>) -> anyhow::Result<T> {
        let mut trouble = self.inner.trouble.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(value) => {
                if trouble.take().is_some() {
                    tracing::info!("redis answers again");
                }
                Ok(value)
            }
            Err(e) => {
                if trouble.is_none() {
                    tracing::warn!(error.message = %e, "redis command failed");
                }
                *trouble = Some(e.to_string());
                Err(anyhow::anyhow!("redis: {e}"))
            }
        }
    }

    /// Runs a Redis command future within [`REDIS_TIMEOUT`].
    async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        let result = match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))),
        };
        self.note(result)
    }

    /// Why the node is not ready, if Redis is in trouble.
    pub async fn trouble(&self) -> Option<String> {
        let mut redis = self.redis();
        if let Err(e) = self
            .run(async move { redis::cmd("PING").query_async::<String>(&mut redis).await })
            .await
        {
            return Some(format!("redis does not answer: {e}"));
        }
        if !self.inner.subscribed.load(Ordering::SeqCst) {
            return Some("the redis subscription is down; reconnecting".into());
        }
        None
    }

    /// Follows a bus channel (its events arrive on the local bus).
    pub(crate) fn follow(&self, channel: String) {
        self.inner.subscriber.follow(channel);
    }

    /// Stops following bus channels.
    pub(crate) fn unfollow(&self, channels: Vec<String>) {
        self.inner.subscriber.unfollow(channels);
    }

    /// Publishes payloads in order on one connection (the bus's writer).
    pub(crate) async fn publish_batch(&self, batch: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for (channel, payload) in batch {
            pipe.publish(channel, payload.as_slice()).ignore();
        }
        let mut redis = self.redis();
        self.run(async move { pipe.query_async::<()>(&mut redis).await })
            .await
    }

    /// Sends a control message to every node (this one included).
    pub async fn broadcast(&self, message: &serde_json::Value) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(message)?;
        let mut redis = self.redis();
        let channel = key(format_args!("ctl"));
        self.run(async move { redis.publish::<_, _, i64>(channel, payload).await })
            .await
            .map(drop)
    }

    /// Asks `node`, the owner of `session` (see [`rpc`]); `body` comes back
    /// answered. Gives up early when the node stops listening or the
    /// session's lease moves to another node (the node was paused or cut
    /// off, and the session taken over).
    pub async fn request_owner(
        &self,
        node: &str,
        session: Uuid,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        self.inner
            .rpc
            .request(node, Some(leases::lease_key(session)), body, timeout)
            .await
    }

    /// Answers a request of another node.
    pub async fn reply(&self, to: &str, id: u64, body: serde_json::Value) {
        self.inner.rpc.reply(to, id, body).await;
    }

    /// Writes this node's record (with the lease TTL: a node that stops
    /// writing it is gone for the others after that long).
    pub async fn heartbeat(&self) -> anyhow::Result<()> {
        let record = NodeRecord {
            node_id: self.inner.node.clone(),
            advertise_url: self.inner.advertise_url.clone(),
            sessions: Vec::new(),
        };
        let json = serde_json::to_string(&record)?;
        let ttl = u64::try_from(self.inner.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key(format_args!("node:{}", self.inner.node)))
            .arg(json)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .sadd(key(format_args!("nodes")), &self.inner.node)
            .ignore()
            .cmd("SET")
            .arg(key(format_args!("inst:{}", self.inner.instance)))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore();
        let mut redis = self.redis();
        self.run(async move { pipe.query_async::<()>(&mut redis).await })
            .await
    }

    /// Takes this node out of the membership now (a drain), instead of when
    /// its record lapses: the others stop counting on it at once.
    pub async fn leave(&self) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        pipe.del(key(format_args!("node:{}", self.inner.node)))
            .ignore()
            .srem(key(format_args!("nodes")), &self.inner.node)
            .ignore();
        let mut redis = self.redis();
        self.run(async move { pipe.query_async::<()>(&mut redis).await })
            .await
    }

    /// Every node whose record is current, by id, each with the live
    /// sessions whose lease it holds now (for operators).
    pub async fn nodes(&self) -> anyhow::Result<Vec<NodeRecord>> {
        let mut nodes = self.alive_nodes().await?;
        let live = self.live().await?;
        let owners = self.owners_of(&live).await?;
        for node in &mut nodes {
            node.sessions = live
                .iter()
                .zip(&owners)
                .filter(|(_, owner)| owner.as_deref() == Some(node.node_id.as_str()))
                .map(|(id, _)| *id)
                .collect();
        }
        Ok(nodes)
    }

    /// Every node whose record is current, by id (without their sessions).
    pub async fn alive_nodes(&self) -> anyhow::Result<Vec<NodeRecord>> {
        let mut redis = self.redis();
        let ids: Vec<String> = self
            .run(async { redis.smembers(key(format_args!("nodes"))).await })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| key(format_args!("node:{id}")))
            .collect();
        let mut redis = self.redis();
        let records: Vec<Option<String>> = self
            .run(async move { redis::cmd("MGET").arg(&keys).query_async(&mut redis).await })
            .await?;
        let mut nodes: Vec<NodeRecord> = records
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        // Forget the ids of nodes whose records lapsed long ago.
        let gone: Vec<&String> = ids
            .iter()
            .filter(|id| !nodes.iter().any(|n| &n.node_id == *id))
            .collect();
        if !gone.is_empty() {
            let mut redis = self.redis();
            let set = key(format_args!("nodes"));
            let _ = self
                .run(async move { redis.srem::<_, _, i64>(set, gone).await })
                .await;
        }
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// Stops following everything (the node stops).
    pub fn close(&self) {
        self.inner.subscriber.close();
    }
}

/// Rendezvous hashing: the node that should take `session` when its owner is
/// gone, among `nodes` (each node computes the same answer, so take-overs
/// spread evenly without talking).
pub fn preferred_node(session: Uuid, nodes: &[String]) -> Option<&str> {
    use sha2::{Digest, Sha256};
    nodes
        .iter()
        .max_by_key(|node| {
            let mut hasher = Sha256::new();
            hasher.update(session.as_bytes());
            hasher.update(node.as_bytes());
            let digest = hasher.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            u64::from_be_bytes(first)
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_overs_spread_over_the_nodes_and_agree() {
        let nodes: Vec<String> = (0..3).map(|n| format!("node-{n}")).collect();
        let mut counts = [0usize; 3];
        for n in 0..3000u128 {
            let session = Uuid::from_u128(n * 7919);
            let first = preferred_node(session, &nodes).unwrap();
            let mut reversed = nodes.clone();
            reversed.reverse();
            assert_eq!(preferred_node(session, &reversed).unwrap(), first);
            counts[nodes.iter().position(|x| x == first).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
