//! A session's chat, without I/O: sequence numbers, the recent-history ring,
//! idempotent sends. The `ChatChannel` actor persists what this accepts and
//! tells it when a batch is durable.

use std::collections::{HashMap, VecDeque};

use bytestring::ByteString;
use mobile_bridge::protocol::{Author, ChatMessage, Role, ServerMsg};
use mobile_bridge::{ErrorCode, SessionId, UserId};
use serde::{Deserialize, Serialize};

use super::rate::TokenBucket;
use crate::auth::guest;
use crate::bus::Pressure;

/// Chat limits (configurable).
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Longest message, in characters.
    pub max_chars: usize,
    /// Messages kept in memory for resume.
    pub ring: usize,
    /// Recent sends remembered for idempotency, per session.
    pub dedupe: usize,
    /// Messages per second one user may send to one session, on average.
    pub rate_per_s: f64,
    /// Messages one user may send at once.
    pub burst: u32,
    /// Events the session's fan-out on this node may have waiting before
    /// new sends from anyone but the host are refused (0: never refused
    /// for the fan-out's sake).
    pub max_fanout_queue: usize,
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatReject {
    pub code: ErrorCode,
    pub message: String,
}

/// What became of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Seen before and durable as this sequence number: answer with the
    /// stored message (whatever the resend's text).
    Duplicate(u64),
    /// Seen before and still being written: wait for this sequence number.
    InFlight(u64),
    /// New: persist this message.
    New(ChatMessage),
}

type SendKey = (UserId, String);

/// A durable chat message as its members are sent it: the `chat.message`
/// frame, encoded once for all of them, live or replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
    pub frame: ByteString,
}

impl Recorded {
    pub fn new(message: &ChatMessage) -> Self {
        Self {
            seq: message.seq,
            frame: ServerMsg::ChatMessage(message.clone()).encode().into(),
        }
    }

    /// The message itself, for the few that need its fields (the answer to
    /// a resend, a deletion); `None` only if the frame is not one.
    pub fn message(&self) -> Option<ChatMessage> {
        match serde_json::from_str(&self.frame) {
            Ok(ServerMsg::ChatMessage(message)) => Some(message),
            _ => None,
        }
    }
}

/// A stored send, for the idempotency window: who, their `client_msg_id`,
/// and the sequence number it got.
pub type Sent = (UserId, String, u64);

/// One session's chat state.
#[derive(Debug)]
pub struct ChatLog {
    session_id: SessionId,
    limits: ChatLimits,
    /// Next sequence number to hand out.
    next_seq: u64,
    /// Highest durable (persisted and published) sequence number.
    durable_seq: u64,
    /// Durable messages, oldest first, at most `limits.ring`.
    ring: VecDeque<Recorded>,
    /// The last `limits.dedupe` durable sends and their numbers.
    acks: HashMap<SendKey, u64>,
    ack_order: VecDeque<SendKey>,
    in_flight: HashMap<SendKey, u64>,
    /// Muted users and until when (milliseconds since the epoch).
    mutes: HashMap<UserId, i64>,
    /// Send rate per user.
    buckets: HashMap<UserId, TokenBucket>,
}

/// Buckets kept before full (idle) ones are forgotten.
const BUCKETS_PRUNE_ABOVE: usize = 10_000;

impl ChatLog {
    /// Rebuilds the state from the newest stored messages (oldest first, at
    /// most `limits.ring`), the newest stored sends (oldest first, at most
    /// `limits.dedupe`: the idempotency window outlives the ring and a
    /// restart) and the highest stored sequence number.
    pub fn restore(
        session_id: SessionId,
        recent: Vec<ChatMessage>,
        sent: Vec<Sent>,
        last_seq: u64,
        limits: ChatLimits,
    ) -> Self {
        let mut log = Self {
            session_id,
            limits,
            next_seq: last_seq + 1,
            durable_seq: last_seq,
            ring: VecDeque::with_capacity(limits.ring.min(4096)),
            acks: HashMap::new(),
            ack_order: VecDeque::new(),
            in_flight: HashMap::new(),
            mutes: HashMap::new(),
            buckets: HashMap::new(),
        };
        for (author, client_msg_id, seq) in sent {
            log.remember_send((author, client_msg_id), seq);
        }
        for message in &recent {
            log.remember(message);
        }
        log
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Mutes `user` until `until_ms` (milliseconds since the epoch). For a
    /// guest the mute covers its network too (`auth::guest`), so a new guest
    /// token from the same place is muted as well.
    pub fn mute(&mut self, user: UserId, until_ms: i64) {
        self.mutes.insert(user, until_ms);
        self.mutes.insert(UserId(guest::net_key(user.0)), until_ms);
    }

    /// Why `author` may not send at `now_ms`, if muted: themselves, or (a
    /// guest) with any guest of their network.
    fn muted(&self, author: &Author, now_ms: i64) -> Option<ChatReject> {
        let network = (author.role == Role::Guest).then(|| UserId(guest::net_key(author.id.0)));
        let until = [Some(author.id), network]
            .into_iter()
            .flatten()
            .filter_map(|id| self.mutes.get(&id).copied())
            .filter(|until| *until > now_ms)
            .max()?;
        Some(ChatReject {
            code: ErrorCode::Forbidden,
            message: format!(
                "you are muted in this session for {} more seconds",
                (until - now_ms + 999) / 1000
            ),
        })
    }

    /// A guest's network as one sender: all its guests together within
    /// `guest::NETWORK_SHARE` times one sender's rate (so that minting
    /// tokens buys no extra sends; muted together: [`Self::muted`]).
    fn check_guest_network(&mut self, author: &Author, now_ms: i64) -> Result<(), ChatReject> {
        if author.role != Role::Guest {
            return Ok(());
        }
        let net = UserId(guest::net_key(author.id.0));
        let limits = self.limits;
        let share = f64::from(guest::NETWORK_SHARE);
        let bucket = self.buckets.entry(net).or_insert_with(|| {
            TokenBucket::new(
                limits.rate_per_s * share,
                limits.burst.saturating_mul(guest::NETWORK_SHARE),
                now_ms,
            )
        });
        bucket.take(now_ms).map_err(|wait_ms| ChatReject {
            code: ErrorCode::RateLimited,
            message: format!("guests at this address are sending too fast; retry in {wait_ms} ms"),
        })
    }

    /// A durable message, if the ring still holds it.
    pub fn stored(&self, seq: u64) -> Option<ChatMessage> {
        let index = self.ring.binary_search_by_key(&seq, |m| m.seq).ok()?;
        self.ring[index].message()
    }

    /// Redacts a message in the ring (it was deleted).
    pub fn delete(&mut self, seq: u64) {
        let Ok(index) = self.ring.binary_search_by_key(&seq, |m| m.seq) else {
            return;
        };
        if let Some(mut redacted) = self.ring[index].message() {
            redacted.text.clear();
            redacted.deleted = true;
            self.ring[index] = Recorded::new(&redacted);
        }
    }

    /// Whether the session has room for a send from `author`, given how far
    /// its fan-out is behind (on the worst node, [`Pressure::worse`]): none
    /// while `max_fanout_queue` events wait for the fan-out, or while more
    /// than half of its members there (of at least
    /// [`CROWD`](crate::bus::CROWD)) are behind for want of pace (their
    /// sockets backed up): accepted, such a message would only be delivered later,
    /// and everything after it too. Members behind for a join, a gap or a
    /// resync (a take-over puts them all there at once) do not count.
    /// The host's sends always have room (the session is theirs), and so
    /// has a resend of a known send (it is answered with what is stored,
    /// not sent again). A refusal costs the sender none of its rate; a
    /// muted sender is told it is muted, not to retry.
    pub fn room_for(
        &self,
        author: &Author,
        client_msg_id: &str,
        fanout: Pressure,
        now_ms: i64,
    ) -> Result<(), ChatReject> {
        let bound = self.limits.max_fanout_queue;
        if bound == 0
            || (fanout.queued < bound && !fanout.crowd_behind())
            || author.role == Role::Host
        {
            return Ok(());
        }
        let key = (author.id, client_msg_id.to_owned());
        if self.acks.contains_key(&key) || self.in_flight.contains_key(&key) {
            return Ok(());
        }
        if let Some(reject) = self.muted(author, now_ms) {
            return Err(reject);
        }
        Err(ChatReject {
            code: ErrorCode::RateLimited,
            message: "this session's chat is busier than it can be sent out; retry in 1000 ms"
                .into(),
        })
    }

    /// Checks and numbers a send at `now_ms`.
    pub fn accept(
        &mut self,
        author: Author,
        text: &str,
        client_msg_id: &str,
        sent_at: String,
        now_ms: i64,
    ) -> Result<Accepted, ChatReject> {
        let key = (author.id, client_msg_id.to_owned());
        if let Some(seq) = self.acks.get(&key) {
            return Ok(Accepted::Duplicate(*seq));
        }
        if let Some(seq) = self.in_flight.get(&key) {
            return Ok(Accepted::InFlight(*seq));
        }
        if let Some(reject) = self.muted(&author, now_ms) {
            return Err(reject);
        }
        if self
            .mutes
            .get(&author.id)
            .is_some_and(|until| *until <= now_ms)
        {
            self.mutes.remove(&author.id);
        }
        let id_len = client_msg_id.chars().count();
        if id_len == 0 || id_len > 64 {
            return Err(reject("client_msg_id must be 1 to 64 characters"));
        }
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > self.limits.max_chars {
            return Err(reject(format!(
                "text must be 1 to {} characters",
                self.limits.max_chars
            )));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(reject("text must not contain control characters"));
        }
        if let Some(why) = crate::text::refusal(text) {
            return Err(reject(format!("text {why}")));
        }
        if self.buckets.len() > BUCKETS_PRUNE_ABOVE {
            self.buckets.retain(|_, b| !b.is_full(now_ms));
        }
        self.check_guest_network(&author, now_ms)?;
        let limits = self.limits;
        let bucket = self
            .buckets
            .entry(author.id)
            .or_insert_with(|| TokenBucket::new(limits.rate_per_s, limits.burst, now_ms));
        if let Err(wait_ms) = bucket.take(now_ms) {
            return Err(ChatReject {
                code: ErrorCode::RateLimited,
                message: format!("sending too fast; retry in {wait_ms} ms"),
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(key, seq);
        Ok(Accepted::New(ChatMessage {
            session_id: self.session_id,
            seq,
            author,
            text: text.to_owned(),
            sent_at,
            client_msg_id: Some(client_msg_id.to_owned()),
            deleted: false,
        }))
    }

    /// Records that a batch (in sequence order) is durable; answers it as
    /// its members are to be sent it.
    pub fn committed<'a>(
        &mut self,
        batch: impl IntoIterator<Item = &'a ChatMessage>,
    ) -> Vec<Recorded> {
        batch
            .into_iter()
            .map(|m| {
                self.durable_seq = self.durable_seq.max(m.seq);
                self.remember(m)
            })
            .collect()
    }

    fn remember(&mut self, message: &ChatMessage) -> Recorded {
        if let Some(id) = &message.client_msg_id {
            self.remember_send((message.author.id, id.clone()), message.seq);
        }
        let recorded = Recorded::new(message);
        self.ring.push_back(recorded.clone());
        while self.ring.len() > self.limits.ring {
            self.ring.pop_front();
        }
        recorded
    }

    fn remember_send(&mut self, key: SendKey, seq: u64) {
        self.in_flight.remove(&key);
        if self.acks.insert(key.clone(), seq).is_none() {
            self.ack_order.push_back(key);
        }
        while self.ack_order.len() > self.limits.dedupe {
            if let Some(old) = self.ack_order.pop_front() {
                self.acks.remove(&old);
            }
        }
    }

    /// Durable messages with `seq > after`, up to `limit`, when the ring still
    /// holds all of them; `None` when older ones must come from the database.
    pub fn after(&self, after: u64, limit: usize) -> Option<Vec<Recorded>> {
        if after >= self.durable_seq {
            return Some(Vec::new());
        }
        let oldest = self.ring.front()?.seq;
        if oldest > after + 1 {
            return None;
        }
        // (In sequence order: found, not scanned, for each member replaying.)
        let from = self.ring.partition_point(|m| m.seq <= after);
        Some(self.ring.range(from..).take(limit).cloned().collect())
    }
}

fn reject(message: impl Into<String>) -> ChatReject {
    ChatReject {
        code: ErrorCode::ValidationFailed,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::CROWD;
    use mobile_bridge::protocol::Role;
    use uuid::Uuid;

    const LIMITS: ChatLimits = ChatLimits {
        max_chars: 10,
        ring: 3,
        dedupe: 100,
        rate_per_s: 1000.0,
        burst: 1000,
        max_fanout_queue: 100,
    };

    fn author(n: u128) -> Author {
        Author {
            id: UserId(Uuid::from_u128(n)),
            name: format!("u{n}"),
            role: Role::Viewer,
        }
    }

    fn new(log: &mut ChatLog, who: u128, id: &str) -> ChatMessage {
        match log.accept(author(who), "hi", id, "t".into(), 0).unwrap() {
            Accepted::New(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_are_gap_free_and_resends_are_idempotent() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let a = new(&mut log, 1, "a");
        let b = new(&mut log, 2, "a");
        assert_eq!((a.seq, b.seq), (1, 2));
        // In flight: same sequence number, no new message.
        assert_eq!(
            log.accept(author(1), "hi", "a", "t".into(), 0).unwrap(),
            Accepted::InFlight(1)
        );
        log.committed(&[a, b]);
        // Durable: the stored message answers, whatever the resend says.
        assert_eq!(
            log.accept(author(1), "hi again", "a", "t".into(), 0)
                .unwrap(),
            Accepted::Duplicate(1)
        );
        assert_eq!(log.stored(1).unwrap().text, "hi");
        assert_eq!(new(&mut log, 1, "b").seq, 3);
    }

    #[test]
    fn bad_text_is_refused_without_using_a_number() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 5, LIMITS);
        for text in [
            "",
            "   ",
            "01234567890",
            "a\u{0}b",
            "\u{202E}olleh",
            "\u{200B}\u{200D}",
            "\u{3164}",
        ] {
            assert!(
                log.accept(author(1), text, text, "t".into(), 0).is_err(),
                "{text:?}"
            );
        }
        assert!(log.accept(author(1), "ok", "", "t".into(), 0).is_err());
        assert_eq!(new(&mut log, 1, "x").seq, 6);
    }

    #[test]
    fn emoji_sequences_are_chat() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let accepted = log.accept(author(1), "👩‍🍳", "a", "t".into(), 0).unwrap();
        assert!(matches!(accepted, Accepted::New(m) if m.text == "👩‍🍳"));
    }

    #[test]
    fn the_idempotency_window_is_restored_beyond_the_ring() {
        let sent: Vec<Sent> = (1..=50)
            .map(|seq| (author(1).id, format!("m{seq}"), seq))
            .collect();
        let limits = ChatLimits {
            dedupe: 40,
            ..LIMITS
        };
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), sent, 50, limits);
        // Older than the ring (3), inside the window (40): a duplicate.
        assert_eq!(
            log.accept(author(1), "hi", "m11", "t".into(), 0).unwrap(),
            Accepted::Duplicate(11)
        );
        // Outside the window: a new message, as documented.
        assert!(matches!(
            log.accept(author(1), "hi", "m10", "t".into(), 0).unwrap(),
            Accepted::New(m) if m.seq == 51
        ));
    }

    fn queued(queued: usize) -> Pressure {
        Pressure {
            queued,
            ..Pressure::default()
        }
    }

    #[test]
    fn a_busy_fanout_refuses_new_sends_but_the_hosts_and_resends() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let host = Author {
            role: Role::Host,
            ..author(9)
        };
        assert!(log.room_for(&author(1), "a", queued(99), 0).is_ok());
        let first = new(&mut log, 1, "a");
        // Still being written, then durable: a resend is answered either way.
        assert!(log.room_for(&author(1), "a", queued(100), 0).is_ok());
        log.committed([&first]);
        assert!(log.room_for(&author(1), "a", queued(100), 0).is_ok());
        let busy = log.room_for(&author(1), "b", queued(100), 0).unwrap_err();
        assert_eq!(busy.code, ErrorCode::RateLimited);
        assert!(busy.message.contains("busier"), "{}", busy.message);
        assert!(log.room_for(&author(2), "a", queued(500), 0).is_err());
        assert!(
            log.room_for(&host, "x", queued(500), 0).is_ok(),
            "the host is heard"
        );
        // The refusal took none of the sender's rate: the next send, once
        // there is room, is numbered next.
        assert!(log.room_for(&author(1), "b", queued(99), 0).is_ok());
        assert!(matches!(
            log.accept(author(1), "again", "b", "t".into(), 0).unwrap(),
            Accepted::New(m) if m.seq == 2
        ));
    }

    #[test]
    fn a_crowd_mostly_behind_refuses_new_sends_a_small_session_never() {
        let log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let behind = |members, slow| Pressure {
            queued: 0,
            members,
            slow,
        };
        assert!(log.room_for(&author(1), "a", behind(1000, 500), 0).is_ok());
        assert!(log.room_for(&author(1), "a", behind(1000, 501), 0).is_err());
        assert!(log
            .room_for(&author(1), "a", behind(CROWD, CROWD), 0)
            .is_err());
        assert!(log
            .room_for(&author(1), "a", behind(CROWD - 1, CROWD - 1), 0)
            .is_ok());
    }

    #[test]
    fn a_muted_sender_is_told_so_when_the_fanout_is_busy_too() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        log.mute(author(1).id, 10_000);
        let refused = log.room_for(&author(1), "a", queued(500), 0).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{}", refused.message);
        assert!(
            refused.message.contains("10 more seconds"),
            "{}",
            refused.message
        );
        // Once the mute is over: busy.
        let refused = log
            .room_for(&author(1), "a", queued(500), 10_000)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
    }

    #[test]
    fn a_fast_sender_is_rate_limited_without_using_a_number() {
        let limits = ChatLimits {
            rate_per_s: 1.0,
            burst: 2,
            ..LIMITS
        };
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, limits);
        assert!(log.accept(author(1), "a", "1", "t".into(), 0).is_ok());
        assert!(log.accept(author(1), "b", "2", "t".into(), 0).is_ok());
        let err = log.accept(author(1), "c", "3", "t".into(), 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert!(log.accept(author(2), "d", "1", "t".into(), 0).is_ok());
        match log.accept(author(1), "c", "3", "t".into(), 1_000).unwrap() {
            Accepted::New(m) => assert_eq!(m.seq, 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn muted_users_cannot_post_until_the_mute_ends() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        log.mute(author(1).id, 1_000);
        let err = log
            .accept(author(1), "hi", "a", "t".into(), 500)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(log.accept(author(2), "hi", "a", "t".into(), 500).is_ok());
        assert!(log.accept(author(1), "hi", "a", "t".into(), 1_000).is_ok());
    }

    #[test]
    fn deleted_messages_are_redacted_in_the_ring() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let m = new(&mut log, 1, "a");
        let recorded = log.committed([&m]);
        // The frame members are sent, live and replayed alike.
        assert_eq!(recorded, [Recorded::new(&m)]);
        assert_eq!(
            *recorded[0].frame,
            ServerMsg::ChatMessage(m.clone()).encode()
        );
        log.delete(1);
        let replay = log.after(0, 10).unwrap();
        let redacted = replay[0].message().unwrap();
        assert!(redacted.deleted);
        assert!(redacted.text.is_empty());
        assert!(
            !replay[0].frame.contains("\"hi\""),
            "the text is gone from the frame"
        );
        assert_eq!(log.stored(1), Some(redacted));
    }

    #[test]
    fn the_ring_answers_recent_history_and_defers_older() {
        let mut log = ChatLog::restore(SessionId(Uuid::nil()), Vec::new(), Vec::new(), 0, LIMITS);
        let batch: Vec<_> = (0..5).map(|i| new(&mut log, 1, &format!("m{i}"))).collect();
        log.committed(&batch);
        assert_eq!(log.durable_seq(), 5);
        let seqs: Vec<u64> = log.after(2, 10).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert!(log.after(1, 10).is_none(), "seq 2 left the ring");
        assert_eq!(log.after(5, 10).unwrap().len(), 0);
    }
}
