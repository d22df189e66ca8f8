//! Limits that hold for the whole cluster, not per node: failure counters
//! (logins, pairing codes, guest tokens, pairings asked for) and open
//! connections per user. Keys from clients are hashed (bounded length, and
//! no usernames or addresses in Redis). When Redis does not answer, callers
//! fall back to their node's own counters: the limits stay, per node.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{key, Cluster};

/// KEYS[1]: the counter. ARGV[1]: its window (ms). Returns the count.
static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
",
    )
});

/// KEYS[1]: a user's open connections (field: node instance -> count).
/// ARGV[1]: instance record prefix, ARGV[2]: this instance, ARGV[3]: the
/// most. Counts the connections of instances that are alive (forgetting the
/// others); takes one more for this instance if under the most: 1, else 0.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local open = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] == ARGV[2] or redis.call('EXISTS', ARGV[1] .. fields[i]) == 1 then
    open = open + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if open >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
",
    )
});

/// KEYS[1]: a user's open connections. ARGV[1]: this instance.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
",
    )
});

fn hashed(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn counter_key(kind: &str, client_key: &str) -> String {
    key(format_args!("thr:{kind}:{}", hashed(client_key)))
}

fn connections_key(user: Uuid) -> String {
    key(format_args!("conns:{user}"))
}

impl Cluster {
    /// Counts a failure of `client_key` in counter `kind`, within `window`.
    pub async fn count_failure(
        &self,
        kind: &str,
        client_key: &str,
        window: Duration,
    ) -> anyhow::Result<u32> {
        let mut call = COUNT.key(counter_key(kind, client_key));
        call.arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let mut redis = self.redis();
        self.run(async move { call.invoke_async(&mut redis).await })
            .await
    }

    /// The failures of `client_key` in counter `kind`, and how long its
    /// window has left.
    pub async fn failures(&self, kind: &str, client_key: &str) -> anyhow::Result<(u32, Duration)> {
        let key = counter_key(kind, client_key);
        let mut pipe = redis::pipe();
        pipe.get(&key).pttl(&key);
        let mut redis = self.redis();
        let (count, left_ms): (Option<u32>, i64) = self
            .run(async move { pipe.query_async(&mut redis).await })
            .await?;
        Ok((
            count.unwrap_or(0),
            Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
        ))
    }

    /// Forgets the failures of `client_key` in counter `kind`.
    pub async fn forget_failures(&self, kind: &str, client_key: &str) -> anyhow::Result<()> {
        let key = counter_key(kind, client_key);
        let mut redis = self.redis();
        self.run(async move { redis.del::<_, i64>(key).await })
            .await
            .map(drop)
    }

    /// Counts one more open connection of `user`, unless the cluster holds
    /// `max` already.
    pub async fn acquire_connection(&self, user: Uuid, max: u32) -> anyhow::Result<bool> {
        let mut call = ACQUIRE.key(connections_key(user));
        call.arg(key(format_args!("inst:")))
            .arg(&self.inner.instance)
            .arg(max);
        let mut redis = self.redis();
        let taken: i64 = self
            .run(async move { call.invoke_async(&mut redis).await })
            .await?;
        Ok(taken == 1)
    }

    /// One open connection of `user` closed.
    pub async fn release_connection(&self, user: Uuid) -> anyhow::Result<()> {
        let mut call = RELEASE.key(connections_key(user));
        call.arg(&self.inner.instance);
        let mut redis = self.redis();
        self.run(async move { call.invoke_async::<i64>(&mut redis).await })
            .await
            .map(drop)
    }
}
