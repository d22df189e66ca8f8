//! Who is connected to a session, across nodes. Each node writes the members
//! it serves to `pres:{session}:{node}` (a hash: user id -> member as JSON)
//! and names itself in `pres:{session}:nodes`; both with the lease TTL,
//! refreshed while it has members. The session's owner merges the hashes of
//! the nodes that are alive (a dead node's members are gone once its node
//! record lapses) and publishes the count and who came and went.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{key, Cluster};

/// KEYS[1]: the session's node set. ARGV[1]: node record prefix, ARGV[2]:
/// member hash prefix. Returns field/value pairs of every live node's hash.
static MERGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
local seen = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. node) == 1 then
    local members = redis.call('HGETALL', ARGV[2] .. node)
    for i = 1, #members, 2 do
      if not seen[members[i]] then
        seen[members[i]] = true
        out[#out + 1] = members[i]
        out[#out + 1] = members[i + 1]
      end
    end
  else
    redis.call('SREM', KEYS[1], node)
  end
end
return out
",
    )
});

fn nodes_key(session: Uuid) -> String {
    key(format_args!("pres:{session}:nodes"))
}

fn members_key(session: Uuid, node: &str) -> String {
    key(format_args!("pres:{session}:{node}"))
}

fn count_key(session: Uuid) -> String {
    key(format_args!("pres:{session}:count"))
}

impl Cluster {
    /// Replaces this node's members of `session` (user id, member JSON).
    pub async fn write_members(
        &self,
        session: Uuid,
        members: &[(String, String)],
    ) -> anyhow::Result<()> {
        let ttl = self.ttl_ms();
        let own = members_key(session, &self.inner.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&own).ignore();
        if !members.is_empty() {
            pipe.hset_multiple(&own, members)
                .ignore()
                .pexpire(&own, i64::try_from(ttl).unwrap_or(i64::MAX))
                .ignore()
                .sadd(nodes_key(session), &self.inner.node)
                .ignore()
                .pexpire(nodes_key(session), i64::try_from(ttl).unwrap_or(i64::MAX))
                .ignore();
        }
        let mut redis = self.redis();
        self.run(async move { pipe.query_async::<()>(&mut redis).await })
            .await
    }

    /// Keeps this node's members of `sessions` from lapsing.
    pub async fn refresh_members(&self, sessions: &[Uuid]) -> anyhow::Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let ttl = i64::try_from(self.ttl_ms()).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for session in sessions {
            pipe.pexpire(members_key(*session, &self.inner.node), ttl)
                .ignore()
                .sadd(nodes_key(*session), &self.inner.node)
                .ignore()
                .pexpire(nodes_key(*session), ttl)
                .ignore();
        }
        let mut redis = self.redis();
        self.run(async move { pipe.query_async::<()>(&mut redis).await })
            .await
    }

    /// Every member of `session` on the nodes that are alive (user id,
    /// member JSON), each user once.
    pub async fn merged_members(&self, session: Uuid) -> anyhow::Result<Vec<(String, String)>> {
        let mut call = MERGE.key(nodes_key(session));
        call.arg(key(format_args!("node:")))
            .arg(key(format_args!("pres:{session}:")));
        let mut redis = self.redis();
        let flat: Vec<String> = self
            .run(async move { call.invoke_async(&mut redis).await })
            .await?;
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(user), Some(member)) = (it.next(), it.next()) {
            pairs.push((user, member));
        }
        Ok(pairs)
    }

    /// The owner's viewer count of `session`, for the other nodes.
    pub async fn set_viewer_count(&self, session: Uuid, count: u32) -> anyhow::Result<()> {
        let ttl = self.ttl_ms();
        let mut redis = self.redis();
        self.run(async move {
            redis
                .pset_ex::<_, _, ()>(count_key(session), count, ttl)
                .await
        })
        .await
    }

    /// The viewer count the owner of `session` wrote last.
    pub async fn viewer_count(&self, session: Uuid) -> anyhow::Result<Option<u32>> {
        let mut redis = self.redis();
        self.run(async move { redis.get(count_key(session)).await })
            .await
    }
}
