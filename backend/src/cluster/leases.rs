//! Who runs each live session: a lease per session in Redis (the owner's node
//! id with a TTL), taken only when free and renewed only by its holder, each
//! as one Lua script (a compare-and-set on Redis). The fencing token is not
//! here: it lives with the session in the database, raised by each new
//! holder, so that it keeps increasing even when Redis loses its keys.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{key, Cluster};

/// Takes a free lease (or extends one this node holds): 1 when held.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Renews every lease of this node: per key, 1 renewed, 0 another node holds
/// it, 2 renewed but the session is not in the live set (ended, or Redis lost
/// its keys: the caller asks the database). A lease that is gone (Redis
/// restarted empty) is taken again: nobody else holds it, and the fencing
/// token in the database still stops this node if another took the session
/// meanwhile.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i, lease in ipairs(KEYS) do
  local current = redis.call('GET', lease)
  if current == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[2])
  elseif current == false then
    redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
  end
  if current ~= false and current ~= ARGV[1] then
    out[i] = 0
  elseif redis.call('SISMEMBER', ARGV[3], ARGV[3 + i]) == 0 then
    out[i] = 2
  else
    out[i] = 1
  end
end
return out
",
    )
});

/// Lets go of a lease this node holds.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

pub(super) fn lease_key(session: Uuid) -> String {
    key(format_args!("lease:{session}"))
}

fn live_key() -> String {
    key(format_args!("live"))
}

/// What became of a lease at renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Another node holds it.
    Lost,
    /// Renewed, but the session is not in the live set: it ended, or Redis
    /// lost its keys.
    NotListed,
}

impl Cluster {
    pub(super) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.lease_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes the lease of `session` if nobody holds it.
    pub async fn acquire(&self, session: Uuid) -> anyhow::Result<bool> {
        let mut redis = self.redis();
        let mut call = ACQUIRE.key(lease_key(session));
        call.arg(&self.inner.node).arg(self.ttl_ms());
        let held: i64 = self
            .run(async move { call.invoke_async(&mut redis).await })
            .await?;
        Ok(held == 1)
    }

    /// Renews the leases of `sessions`, in one round trip.
    pub async fn renew(&self, sessions: &[Uuid]) -> anyhow::Result<Vec<Renewal>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = RENEW.prepare_invoke();
        for session in sessions {
            call.key(lease_key(*session));
        }
        call.arg(&self.inner.node)
            .arg(self.ttl_ms())
            .arg(live_key());
        for session in sessions {
            call.arg(session.to_string());
        }
        let mut redis = self.redis();
        let out: Vec<i64> = self
            .run(async move { call.invoke_async(&mut redis).await })
            .await?;
        Ok(out
            .into_iter()
            .map(|n| match n {
                1 => Renewal::Renewed,
                2 => Renewal::NotListed,
                _ => Renewal::Lost,
            })
            .collect())
    }

    /// Lets go of the lease of `session` (after its actors stopped).
    pub async fn release(&self, session: Uuid) -> anyhow::Result<()> {
        let mut redis = self.redis();
        let mut call = RELEASE.key(lease_key(session));
        call.arg(&self.inner.node);
        self.run(async move { call.invoke_async::<i64>(&mut redis).await })
            .await
            .map(drop)
    }

    /// The node that holds the lease of `session`, if any.
    pub async fn owner_of(&self, session: Uuid) -> anyhow::Result<Option<String>> {
        let mut redis = self.redis();
        self.run(async move { redis.get(lease_key(session)).await })
            .await
    }

    /// The holders of these sessions' leases, in order.
    pub async fn owners_of(&self, sessions: &[Uuid]) -> anyhow::Result<Vec<Option<String>>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = sessions.iter().map(|s| lease_key(*s)).collect();
        let mut redis = self.redis();
        self.run(async move { redis::cmd("MGET").arg(&keys).query_async(&mut redis).await })
            .await
    }

    /// Marks sessions live (at go-live, and from the database now and then).
    pub async fn add_live(&self, sessions: &[Uuid]) -> anyhow::Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = sessions.iter().map(Uuid::to_string).collect();
        let mut redis = self.redis();
        self.run(async move { redis.sadd::<_, _, i64>(live_key(), ids).await })
            .await
            .map(drop)
    }

    /// A session ended: no node takes it any more.
    pub async fn remove_live(&self, session: Uuid) -> anyhow::Result<()> {
        let mut redis = self.redis();
        self.run(async move {
            redis
                .srem::<_, _, i64>(live_key(), session.to_string())
                .await
        })
        .await
        .map(drop)
    }

    /// Whether a session is in the live set.
    pub async fn is_live(&self, session: Uuid) -> anyhow::Result<bool> {
        let mut redis = self.redis();
        self.run(async move { redis.sismember(live_key(), session.to_string()).await })
            .await
    }

    /// Every session in the live set.
    pub async fn live(&self) -> anyhow::Result<Vec<Uuid>> {
        let mut redis = self.redis();
        let ids: Vec<String> = self
            .run(async move { redis.smembers(live_key()).await })
            .await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }
}
