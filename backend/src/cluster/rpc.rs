//! A request to another node and its reply, over Redis pub/sub: each node
//! subscribes to its own channel `rpc:{node}`, where requests for it and
//! replies to its requests arrive. The bodies are opaque JSON (`crate::live`
//! sends session commands and their answers). A request to a node that is
//! not subscribed fails at once (PUBLISH reached nobody); one that gets no
//! reply fails at its deadline; a late reply is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::key;
use crate::metrics::Metrics;

/// What travels on a node's `rpc` channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Envelope {
    Request {
        id: u64,
        from: String,
        body: serde_json::Value,
    },
    Reply {
        id: u64,
        body: serde_json::Value,
    },
}

/// What other nodes ask of this one.
#[derive(Debug)]
pub enum Incoming {
    /// Answer with [`super::Cluster::reply`]`(from, id, ..)`.
    Request {
        id: u64,
        from: String,
        body: serde_json::Value,
    },
    /// A message for every node.
    Control(serde_json::Value),
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("no such node is listening")]
    Unreachable,
    #[error("the node did not answer in time")]
    Timeout,
    #[error("redis is unavailable")]
    Redis,
}

/// How often a caller waiting for a reply checks that the node still listens.
const LISTENING_PROBE: Duration = Duration::from_millis(250);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<serde_json::Value>>>>;

/// Requests of this node waiting for replies. Cheap to clone.
#[derive(Clone)]
pub(super) struct Rpc {
    node: String,
    redis: ConnectionManager,
    pending: Pending,
    next: Arc<AtomicU64>,
    metrics: Metrics,
}

fn channel(node: &str) -> String {
    key(format_args!("rpc:{node}"))
}

impl Rpc {
    pub(super) fn new(node: String, redis: ConnectionManager, metrics: Metrics) -> Self {
        Self {
            node,
            redis,
            pending: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            metrics,
        }
    }

    /// This node's channel.
    pub(super) fn own_channel(&self) -> String {
        channel(&self.node)
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<serde_json::Value>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn publish(
        &self,
        node: &str,
        envelope: &Envelope,
        timeout: Duration,
    ) -> Result<i64, RpcError> {
        let payload = serde_json::to_vec(envelope).map_err(|_| RpcError::Redis)?;
        let mut redis = self.redis.clone();
        match tokio::time::timeout(timeout, redis.publish::<_, _, i64>(channel(node), payload))
            .await
        {
            Ok(Ok(receivers)) => Ok(receivers),
            Ok(Err(_)) => Err(RpcError::Redis),
            Err(_) => Err(RpcError::Timeout),
        }
    }

    /// Sends `body` to `node` and waits for its reply; while `lease` (a
    /// key) names `node`, if given.
    pub(super) async fn request(
        &self,
        node: &str,
        lease: Option<String>,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let envelope = Envelope::Request {
            id,
            from: self.node.clone(),
            body,
        };
        let outcome = match self.publish(node, &envelope, timeout).await {
            Ok(0) => Err(RpcError::Unreachable),
            Ok(_) => self.await_reply(node, lease.as_deref(), rx, timeout).await,
            Err(e) => Err(e),
        };
        self.pending().remove(&id);
        let label = match &outcome {
            Ok(_) => "ok",
            Err(RpcError::Unreachable) => "unreachable",
            Err(RpcError::Timeout) => "timeout",
            Err(RpcError::Redis) => "redis",
        };
        self.metrics
            .cluster
            .forwarded
            .with_label_values(&[label])
            .inc();
        outcome
    }

    /// Waits for the reply; gives up early when the node stops listening
    /// (it died: Redis dropped its subscription) or `lease` moves to another
    /// node (it was paused or cut off past its lease), so that a caller whose
    /// request was in flight hears so at once, not at its deadline.
    async fn await_reply(
        &self,
        node: &str,
        lease: Option<&str>,
        mut rx: oneshot::Receiver<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut probe = tokio::time::interval(LISTENING_PROBE);
        probe.reset();
        loop {
            tokio::select! {
                reply = &mut rx => return reply.map_err(|_| RpcError::Timeout),
                () = &mut deadline => return Err(RpcError::Timeout),
                _ = probe.tick() => {
                    if !self.listening(node, lease).await {
                        return Err(RpcError::Unreachable);
                    }
                }
            }
        }
    }

    /// Whether `node` is subscribed to its channel now and still holds
    /// `lease` (a Redis error counts as yes: the deadline decides then).
    async fn listening(&self, node: &str, lease: Option<&str>) -> bool {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel(node));
        pipe.cmd("GET").arg(lease.unwrap_or("simmer:-"));
        let probe = pipe.query_async::<((String, i64), Option<String>)>(&mut redis);
        match tokio::time::timeout(Duration::from_millis(500), probe).await {
            Ok(Ok(((_, subscribers), holder))) => {
                subscribers > 0 && (lease.is_none() || holder.as_deref() == Some(node))
            }
            _ => true,
        }
    }

    pub(super) async fn reply(&self, to: &str, id: u64, body: serde_json::Value) {
        let envelope = Envelope::Reply { id, body };
        let outcome = match self.publish(to, &envelope, Duration::from_secs(1)).await {
            Ok(n) if n > 0 => "ok",
            Ok(_) => "caller_gone",
            Err(_) => "redis",
        };
        self.metrics
            .cluster
            .served
            .with_label_values(&[outcome])
            .inc();
    }

    /// A reply arrived.
    pub(super) fn on_reply(&self, id: u64, body: serde_json::Value) {
        if let Some(waiter) = self.pending().remove(&id) {
            let _ = waiter.send(body);
        }
    }
}
