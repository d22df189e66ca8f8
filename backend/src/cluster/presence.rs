//! Who is connected to a session, across nodes. Each node writes the members
//! it serves to `pres:{session}:{node}` (a hash: user id -> member as JSON)
//! and names itself in `pres:{session}:nodes`; both with the lease TTL,
//! refreshed while it has members. The session's owner merges the hashes of
//! the nodes that are alive (a dead node's members are gone once its node
//! record lapses) and publishes the count and who came and went.
//!
//! The same hash carries the node's fan-out pressure of the session (field
//! [`FANOUT`]: events queued, members behind, members), so that the owner's
//! chat admits sends by how every node keeps up, not by its own share of
//! the members alone.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{key, Cluster};
use crate::bus::Pressure;

/// The field of a node's member hash that holds its fan-out pressure (not
/// a user id: those are UUIDs).
const FANOUT: &str = "~fanout";

/// KEYS[1]: the session's node set. ARGV[1]: node record prefix, ARGV[2]:
/// member hash prefix, ARGV[3]: the pressure field, ARGV[4]: the asking
/// node. Returns field/value pairs of every live node's hash, each user
/// once, and the pressure field of every other live node.
static MERGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
local seen = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. node) == 1 then
    local members = redis.call('HGETALL', ARGV[2] .. node)
    for i = 1, #members, 2 do
      if members[i] == ARGV[3] then
        if node ~= ARGV[4] then
          out[#out + 1] = members[i]
          out[#out + 1] = members[i + 1]
        end
      elseif not seen[members[i]] then
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

/// KEYS[1]: a node's member hash. ARGV[1]: the pressure field, ARGV[2]:
/// its value. Sets it if the hash exists.
static SET_FANOUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
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

fn encode(fanout: Pressure) -> String {
    format!("{} {} {}", fanout.queued, fanout.slow, fanout.members)
}

fn decode(text: &str) -> Option<Pressure> {
    let mut numbers = text.split(' ').map(str::parse::<usize>);
    let (Some(Ok(queued)), Some(Ok(slow)), Some(Ok(members)), None) = (
        numbers.next(),
        numbers.next(),
        numbers.next(),
        numbers.next(),
    ) else {
        return None;
    };
    Some(Pressure {
        queued,
        members,
        slow,
    })
}

/// A session's members on every live node, as its owner merges them.
#[derive(Debug, Default)]
pub struct Merged {
    /// User id, member JSON: each user once.
    pub members: Vec<(String, String)>,
    /// The worst of the other nodes' fan-out pressure ([`Pressure::worse`]).
    pub elsewhere: Pressure,
}

impl Cluster {
    /// Replaces this node's members of `session` (user id, member JSON),
    /// with its fan-out pressure of the session.
    pub async fn write_members(
        &self,
        session: Uuid,
        members: &[(String, String)],
        fanout: Pressure,
    ) -> anyhow::Result<()> {
        let ttl = self.ttl_ms();
        let own = members_key(session, &self.inner.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&own).ignore();
        if !members.is_empty() {
            pipe.hset_multiple(&own, members)
                .ignore()
                .hset(&own, FANOUT, encode(fanout))
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

    /// Replaces this node's fan-out pressure of `session` in the hash its
    /// members made (one that lapsed or was emptied stays gone).
    pub async fn write_fanout(&self, session: Uuid, fanout: Pressure) -> anyhow::Result<()> {
        let mut call = SET_FANOUT.key(members_key(session, &self.inner.node));
        call.arg(FANOUT).arg(encode(fanout));
        let mut redis = self.redis();
        self.run(async move { call.invoke_async::<()>(&mut redis).await })
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

    /// Every member of `session` on the nodes that are alive, each user
    /// once, and the other nodes' fan-out pressure.
    pub async fn merged_members(&self, session: Uuid) -> anyhow::Result<Merged> {
        let mut call = MERGE.key(nodes_key(session));
        call.arg(key(format_args!("node:")))
            .arg(key(format_args!("pres:{session}:")))
            .arg(FANOUT)
            .arg(&self.inner.node);
        let mut redis = self.redis();
        let flat: Vec<String> = self
            .run(async move { call.invoke_async(&mut redis).await })
            .await?;
        let mut merged = Merged {
            members: Vec::with_capacity(flat.len() / 2),
            elsewhere: Pressure::default(),
        };
        let mut it = flat.into_iter();
        while let (Some(field), Some(value)) = (it.next(), it.next()) {
            if field == FANOUT {
                if let Some(there) = decode(&value) {
                    merged.elsewhere = merged.elsewhere.worse(there);
                }
            } else {
                merged.members.push((field, value));
            }
        }
        Ok(merged)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pressure_reads_back_as_written_and_nothing_else_reads() {
        let fanout = Pressure {
            queued: 3,
            members: 5_000,
            slow: 2_600,
        };
        assert_eq!(decode(&encode(fanout)), Some(fanout));
        for bad in ["", "1 2", "1 2 3 4", "a 2 3", "-1 2 3", "1  2 3"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
