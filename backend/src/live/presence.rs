//! Who is connected to each live session, counted incrementally, and what
//! changed since the last `presence` frame.

use std::collections::HashMap;
use std::sync::Mutex;

use mobile_bridge::protocol::{Author, Role};
use mobile_bridge::UserId;
use uuid::Uuid;

use super::supervisor::lock;

/// Names per `presence` frame, each way.
const PRESENCE_NAMES_MAX: usize = 50;

/// Who is connected to one session. Counts are kept incrementally: a join or
/// leave costs O(1) however many are watching.
#[derive(Debug, Default)]
pub(super) struct SessionPresence {
    /// Connection id -> who is on it.
    connections: HashMap<u64, Author>,
    /// Open connections per user (any role).
    per_user: HashMap<UserId, u32>,
    /// Distinct users other than the host.
    viewers: u32,
    published: Option<u32>,
    /// Arrivals and departures since the last `presence` frame.
    joined: Vec<Author>,
    left: Vec<Author>,
    /// The set of users changed since the cluster last heard of it.
    changed: bool,
}

impl SessionPresence {
    pub(super) fn add(&mut self, connection: u64, who: Author) {
        if self.connections.contains_key(&connection) {
            return;
        }
        let open = self.per_user.entry(who.id).or_insert(0);
        *open += 1;
        if *open == 1 {
            self.changed = true;
            if who.role != Role::Host {
                self.viewers += 1;
            }
            if let Some(i) = self.left.iter().position(|a| a.id == who.id) {
                self.left.remove(i); // left and came back: no news
            } else if self.joined.len() < PRESENCE_NAMES_MAX {
                self.joined.push(who.clone());
            }
        }
        self.connections.insert(connection, who);
    }

    pub(super) fn remove(&mut self, connection: u64) {
        let Some(who) = self.connections.remove(&connection) else {
            return;
        };
        let Some(open) = self.per_user.get_mut(&who.id) else {
            return;
        };
        *open -= 1;
        if *open == 0 {
            self.changed = true;
            self.per_user.remove(&who.id);
            if who.role != Role::Host {
                self.viewers = self.viewers.saturating_sub(1);
            }
            if let Some(i) = self.joined.iter().position(|a| a.id == who.id) {
                self.joined.remove(i); // came and went: no news
            } else if self.left.len() < PRESENCE_NAMES_MAX {
                self.left.push(who);
            }
        }
    }

    pub(super) fn viewer_count(&self) -> u32 {
        self.viewers
    }

    /// Each connected user once.
    fn members(&self) -> Vec<Author> {
        let mut seen = std::collections::HashSet::new();
        self.connections
            .values()
            .filter(|a| seen.insert(a.id))
            .cloned()
            .collect()
    }

    /// The frame to publish, if anything changed since the last one.
    pub(super) fn take_update(&mut self) -> Option<PresenceUpdate> {
        let count = self.viewer_count();
        if unchanged(self.published, count, &self.joined, &self.left) {
            return None;
        }
        self.published = Some(count);
        Some((
            count,
            std::mem::take(&mut self.joined),
            std::mem::take(&mut self.left),
        ))
    }
}

/// Whether a `presence` frame would say nothing new. Before the first one,
/// the count members were told (in their join's reply, or by not being
/// there yet) is 0: an empty session is no news.
fn unchanged(published: Option<u32>, count: u32, joined: &[Author], left: &[Author]) -> bool {
    published.unwrap_or(0) == count && joined.is_empty() && left.is_empty()
}

/// Who is connected to each session through this node. Kept outside the
/// actors, so that an actor's crash does not forget who is watching.
#[derive(Debug, Default)]
pub(super) struct Presence {
    sessions: Mutex<HashMap<Uuid, SessionPresence>>,
    /// In a cluster: the merged members of the sessions this node runs.
    merged: Mutex<HashMap<Uuid, Merged>>,
}

/// The members of a session on every node, as its owner last merged them.
#[derive(Debug, Default)]
struct Merged {
    members: HashMap<UserId, Author>,
    published: Option<u32>,
}

/// A `presence` frame to publish: the count, who joined, who left.
pub(super) type PresenceUpdate = (u32, Vec<Author>, Vec<Author>);

impl Presence {
    pub(super) fn joined(&self, id: Uuid, connection: u64, who: Author) {
        lock(&self.sessions)
            .entry(id)
            .or_default()
            .add(connection, who);
    }

    pub(super) fn left(&self, id: Uuid, connection: u64) {
        if let Some(p) = lock(&self.sessions).get_mut(&id) {
            p.remove(connection);
        }
    }

    pub(super) fn viewer_count(&self, id: Uuid) -> u32 {
        lock(&self.sessions)
            .get(&id)
            .map(SessionPresence::viewer_count)
            .unwrap_or(0)
    }

    /// The session ended: nobody is counted any more.
    pub(super) fn forget(&self, id: Uuid) {
        lock(&self.sessions).remove(&id);
        lock(&self.merged).remove(&id);
    }

    /// The sessions whose set of users here changed since the last call,
    /// with their users now (empty: nobody here any more).
    pub(super) fn changed_members(&self) -> Vec<(Uuid, Vec<Author>)> {
        let mut sessions = lock(&self.sessions);
        let changed = sessions
            .iter_mut()
            .filter(|(_, p)| p.changed)
            .map(|(id, p)| {
                p.changed = false;
                (*id, p.members())
            })
            .collect();
        changed
    }

    /// The cluster did not hear of a session's users: tell it again.
    pub(super) fn mark_changed(&self, id: Uuid) {
        if let Some(p) = lock(&self.sessions).get_mut(&id) {
            p.changed = true;
        }
    }

    /// The sessions with someone connected here.
    pub(super) fn followed(&self) -> Vec<Uuid> {
        lock(&self.sessions)
            .iter()
            .filter(|(_, p)| !p.connections.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Takes the members of a session on every node (its owner merged them):
    /// the frame to publish, if the count or the names changed.
    pub(super) fn merge(&self, id: Uuid, members: Vec<Author>) -> Option<PresenceUpdate> {
        let mut merged = lock(&self.merged);
        let entry = merged.entry(id).or_default();
        let now: HashMap<UserId, Author> = members.into_iter().map(|a| (a.id, a)).collect();
        let joined: Vec<Author> = now
            .values()
            .filter(|a| !entry.members.contains_key(&a.id))
            .take(PRESENCE_NAMES_MAX)
            .cloned()
            .collect();
        let left: Vec<Author> = entry
            .members
            .values()
            .filter(|a| !now.contains_key(&a.id))
            .take(PRESENCE_NAMES_MAX)
            .cloned()
            .collect();
        let count = u32::try_from(now.values().filter(|a| a.role != Role::Host).count())
            .unwrap_or(u32::MAX);
        entry.members = now;
        let unchanged = unchanged(entry.published, count, &joined, &left);
        entry.published = Some(count);
        (!unchanged).then_some((count, joined, left))
    }

    /// The merged viewer count of a session this node runs.
    pub(super) fn merged_count(&self, id: Uuid) -> Option<u32> {
        lock(&self.merged).get(&id).and_then(|m| m.published)
    }

    /// Forgets the merged view of sessions this node no longer runs.
    pub(super) fn keep_merged(&self, running: &[Uuid]) {
        let running: std::collections::HashSet<&Uuid> = running.iter().collect();
        lock(&self.merged).retain(|id, _| running.contains(id));
    }

    /// The sessions whose count or names changed since their last frame.
    pub(super) fn updates(&self) -> Vec<(Uuid, PresenceUpdate)> {
        lock(&self.sessions)
            .iter_mut()
            .filter_map(|(id, p)| p.take_update().map(|update| (*id, update)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn who(n: u128, role: Role) -> Author {
        Author {
            id: UserId(Uuid::from_u128(n)),
            name: format!("u{n}"),
            role,
        }
    }

    #[test]
    fn presence_counts_distinct_viewers_not_connections_or_the_host() {
        let mut p = SessionPresence::default();
        p.add(1, who(1, Role::Viewer));
        p.add(2, who(1, Role::Viewer));
        p.add(3, who(2, Role::Guest));
        p.add(4, who(3, Role::Host));
        assert_eq!(p.viewer_count(), 2);
        let (count, joined, left) = p.take_update().unwrap();
        assert_eq!(count, 2);
        assert_eq!(joined.len(), 3, "each user once, the host too");
        assert!(left.is_empty());
        assert!(p.take_update().is_none(), "nothing new");
        p.remove(1);
        assert_eq!(p.viewer_count(), 2, "u1 still has a connection");
        assert!(p.take_update().is_none());
        p.remove(2);
        p.remove(4);
        p.remove(99);
        assert_eq!(p.viewer_count(), 1);
        let (_, joined, left) = p.take_update().unwrap();
        assert!(joined.is_empty());
        assert_eq!(left.len(), 2);
    }

    #[test]
    fn a_session_nobody_is_in_yet_is_no_news() {
        let presence = Presence::default();
        let id = Uuid::now_v7();
        assert!(presence.merge(id, Vec::new()).is_none(), "no empty frame");
        assert_eq!(presence.merged_count(id), Some(0));
        let (count, joined, left) = presence
            .merge(id, vec![who(1, Role::Host)])
            .expect("the host came");
        assert_eq!((count, joined.len(), left.len()), (0, 1, 0));
        let (count, joined, _) = presence
            .merge(id, vec![who(1, Role::Host), who(2, Role::Viewer)])
            .expect("a viewer came");
        assert_eq!((count, joined.len()), (1, 1));
        assert!(presence
            .merge(id, vec![who(2, Role::Viewer), who(1, Role::Host)])
            .is_none());
    }

    #[test]
    fn coming_and_going_between_frames_is_no_news() {
        let mut p = SessionPresence::default();
        p.take_update();
        p.add(1, who(1, Role::Viewer));
        p.remove(1);
        assert!(p.take_update().is_none());
    }
}
