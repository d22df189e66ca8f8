//! How the chat channels of a node write their batches: on SQLite, grouped
//! across sessions.
//!
//! Each session's channel groups its own messages (while one batch is
//! written, the next accumulates). SQLite has one writer at a time, and
//! with many sessions on a node their batches met at its lock: a write that
//! found it taken slept in SQLite's busy handler (1, 2, 5, 10 … 100 ms),
//! however soon the lock was free again. At 2,000 messages/s over 1,000
//! sessions that made the sender's ack p99 55–80 ms and its worst 630–730
//! ms, with the server at 77 % of a core (now 2.5–4 ms, 10–40 ms, 61 %;
//! docs/benchmarks.md, "Many sessions chatting at once").
//!
//! Here a write waits for its turn instead, and whoever's turn comes writes
//! every batch queued by then, all sessions' in one transaction, one sync of
//! the log for all (a leader and its followers, as a database's own group
//! commit). The leader is the caller that got the turn, on its own thread:
//! no thread of its own, and a lone write pays no extra hop. On PostgreSQL,
//! which takes concurrent writers and groups their commits itself, each
//! batch is written as it comes.
//!
//! The queue holds at most one batch per chat channel of the node (a channel
//! writes one batch at a time), so it is bounded by the node's sessions.
//!
//! On a SQLite file the batches are written on a connection of the writer's
//! own, not one of the pool's: the pool checks every connection given back
//! with one more round trip to the connection's thread, and the check's
//! answers and the write's woke the chat's thread by turns before it could
//! publish (docs/benchmarks.md, "The chat's writes on a connection of their
//! own").

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use mobile_bridge::protocol::ChatMessage;
use sea_orm::sqlx::sqlite::{SqliteConnection, SqlitePool};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::db::SqliteOpener;
use crate::store::chat::{self as store, Batch};

/// Whether a batch was written (`false`: its fence no longer holds), or
/// why it is not known to be.
pub type Written = Result<bool, Arc<DbErr>>;

/// Writes chat batches: cheap to clone, one per node.
#[derive(Debug, Clone)]
pub struct ChatWriter(Way);

#[derive(Debug, Clone)]
enum Way {
    /// Each batch as it comes (PostgreSQL).
    Direct(DatabaseConnection),
    /// Batches queued, written together by whoever's turn it is (SQLite).
    Grouped(Arc<Group>),
}

#[derive(Debug)]
struct Group {
    queue: Mutex<Vec<Queued>>,
    /// Held by the leader while it writes, with what it writes on.
    turn: Arc<tokio::sync::Mutex<WriteOn>>,
}

/// What a group's batches are written on.
#[derive(Debug)]
struct WriteOn {
    /// The node's pool.
    pool: SqlitePool,
    /// How to open a connection of the writer's own; `None`: a connection of
    /// the pool for each write (an in-memory database, which is another
    /// database on every connection).
    own: Option<SqliteOpener>,
    /// The writer's own connection, opened at the first write and again
    /// after a write that failed.
    conn: Option<SqliteConnection>,
}

impl WriteOn {
    async fn write(&mut self, batches: &[Batch]) -> Result<Vec<Result<bool, DbErr>>, DbErr> {
        let conn_err = |e| DbErr::Conn(RuntimeErr::SqlxError(e));
        let Some(opener) = &self.own else {
            let mut pooled = self.pool.acquire().await.map_err(conn_err)?;
            return store::insert_batches(&mut pooled, batches).await;
        };
        let mut open = match self.conn.take() {
            Some(open) => open,
            None => opener.open().await.map_err(conn_err)?,
        };
        let written = store::insert_batches(&mut open, batches).await;
        // After any failure the connection is dropped (SQLite undoes what
        // it held) and the next write opens another: one left in a
        // transaction, or whose thread is gone, would fail every write after.
        if matches!(&written, Ok(each) if each.iter().all(Result::is_ok)) {
            self.conn = Some(open);
        }
        written
    }
}

#[derive(Debug)]
struct Queued {
    batch: Batch,
    done: oneshot::Sender<Written>,
}

impl ChatWriter {
    /// Writes on `db`; on SQLite grouped, on a connection opened by `own`
    /// when there is one ([`SqliteOpener::for_settings`]).
    pub fn new(db: DatabaseConnection, own: Option<SqliteOpener>) -> Self {
        match &db {
            DatabaseConnection::SqlxSqlitePoolConnection(_) => {
                let on = WriteOn {
                    pool: db.get_sqlite_connection_pool().clone(),
                    own,
                    conn: None,
                };
                Self(Way::Grouped(Arc::new(Group {
                    queue: Mutex::new(Vec::new()),
                    turn: Arc::new(tokio::sync::Mutex::new(on)),
                })))
            }
            _ => Self(Way::Direct(db)),
        }
    }

    /// Writes one session's batch under `fence`.
    pub async fn write(
        &self,
        session_id: Uuid,
        fence: i64,
        rows: Vec<(ChatMessage, DateTime<Utc>)>,
    ) -> Written {
        match &self.0 {
            Way::Direct(db) => store::insert_batch(db, session_id, fence, &rows)
                .await
                .map_err(Arc::new),
            Way::Grouped(group) => {
                group
                    .clone()
                    .write(Batch {
                        session_id,
                        fence,
                        rows,
                    })
                    .await
            }
        }
    }
}

impl Group {
    async fn write(self: Arc<Self>, batch: Batch) -> Written {
        let (done, mut answer) = oneshot::channel();
        self.queue().push(Queued { batch, done });
        let mut turn = self.turn.clone().lock_owned().await;
        match answer.try_recv() {
            // A leader before us wrote it.
            Ok(written) => return written,
            // A leader took it and was stopped before it answered: whether
            // it was written is not known (the sender's retry finds out).
            Err(oneshot::error::TryRecvError::Closed) => return Err(Arc::new(gone())),
            // Still queued: ours to write, with everything queued since.
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let queued = std::mem::take(&mut *self.queue());
        // A task of its own (on this thread), holding the turn: if this
        // caller is dropped midway (its actor stopped), the others' batches
        // are still written and answered.
        tokio::spawn(async move {
            let (batches, dones): (Vec<Batch>, Vec<_>) =
                queued.into_iter().map(|q| (q.batch, q.done)).unzip();
            match turn.write(&batches).await {
                Ok(written) => {
                    for (done, result) in dones.into_iter().zip(written) {
                        let _ = done.send(result.map_err(Arc::new));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for done in dones {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
            drop(turn);
        });
        answer.await.unwrap_or_else(|_| Err(Arc::new(gone())))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // Pushes and takes only: consistent even after a panic elsewhere.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn gone() -> DbErr {
    DbErr::Custom("the chat write was abandoned before it was answered".into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mobile_bridge::protocol::{Author, Role};
    use mobile_bridge::{SessionId, UserId};
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};

    use super::*;
    use crate::store::sessions::{self, NewSession, RecipeCopy};

    fn message(session_id: Uuid, author: Uuid, seq: u64) -> (ChatMessage, DateTime<Utc>) {
        let now = Utc::now();
        let message = ChatMessage {
            session_id: SessionId(session_id),
            seq,
            author: Author {
                id: UserId(author),
                name: "Host".into(),
                role: Role::Host,
            },
            text: format!("message {seq}"),
            sent_at: now.to_rfc3339(),
            client_msg_id: Some(format!("m{seq}")),
            deleted: false,
        };
        (message, now)
    }

    /// A node's database with a host and two of its sessions, and a table
    /// for other writers; the database's URL and its settings.
    struct Node {
        db: DatabaseConnection,
        url: String,
        settings: crate::config::Settings,
        host: Uuid,
        sessions: [Uuid; 2],
        _dir: tempfile::TempDir,
    }

    async fn node(busy_timeout_ms: Option<u64>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (settings, url) = crate::db::sqlite_test_settings(dir.path(), busy_timeout_ms);
        let db = crate::db::connect(&settings).await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        let host = crate::store::users::create(&db, "host", "Host", "-".into())
            .await
            .unwrap()
            .id;
        let mut ids = Vec::new();
        for title in ["first", "second"] {
            let session = sessions::insert(
                &db,
                NewSession {
                    host_id: host,
                    title: title.into(),
                    allow_guests: false,
                    auto_advance: false,
                    recipe: RecipeCopy {
                        id: None,
                        title: title.into(),
                        description: None,
                        servings: None,
                        steps: Vec::new(),
                    },
                },
            )
            .await
            .unwrap();
            ids.push(session.id);
        }
        db.execute_unprepared("CREATE TABLE elsewhere (x INTEGER)")
            .await
            .unwrap();
        Node {
            db,
            url,
            settings,
            host,
            sessions: [ids[0], ids[1]],
            _dir: dir,
        }
    }

    impl Node {
        /// The node's writer: on a connection of its own, or on the pool's.
        fn writer(&self, own: bool) -> ChatWriter {
            let opener = own.then(|| {
                crate::db::SqliteOpener::for_settings(&self.settings)
                    .unwrap()
                    .expect("a SQLite file")
            });
            ChatWriter::new(self.db.clone(), opener)
        }
    }

    #[tokio::test]
    async fn the_leaders_followers_are_answered_when_its_caller_goes_away_midway() {
        followers_are_answered_when_the_leaders_caller_goes_away(true).await;
    }

    #[tokio::test]
    async fn on_the_pools_connections_too_the_followers_are_answered() {
        followers_are_answered_when_the_leaders_caller_goes_away(false).await;
    }

    /// The leader writes the batches queued behind it on a task of its own:
    /// when its caller goes away midway (its chat channel stopped), its own
    /// batch and its followers' are still written, and the followers are
    /// answered. Written in the caller instead, the write would be dropped
    /// with it and every follower told "not known to be written".
    async fn followers_are_answered_when_the_leaders_caller_goes_away(own: bool) {
        let node = node(None).await;
        let (db, host, [first, second]) = (&node.db, node.host, node.sessions);
        let writer = node.writer(own);
        let Way::Grouped(group) = &writer.0 else {
            panic!("SQLite's writes are grouped");
        };
        // Both batches queue while the turn is taken, so that the first
        // caller's turn writes both. A caller queues its batch and asks for
        // the turn in one step: the leader is in line for it first.
        let turn = group.turn.clone().lock_owned().await;
        let mut callers = Vec::new();
        for (id, queued) in [(first, 1), (second, 2)] {
            callers.push(tokio::spawn({
                let writer = writer.clone();
                async move { writer.write(id, 0, vec![message(id, host, 1)]).await }
            }));
            while group.queue().len() < queued {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let (leader, follower) = (callers.remove(0), callers.remove(0));
        // Another connection holds SQLite's lock: the grouped write waits
        // for it, in flight, after the leader took both batches.
        let other = Database::connect(&node.url).await.unwrap();
        let held = other.begin().await.unwrap();
        held.execute_unprepared("INSERT INTO elsewhere VALUES (1)")
            .await
            .unwrap();
        drop(turn);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !group.queue().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the leader took the queued batches");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!follower.is_finished(), "the write waits for the lock");

        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        held.commit().await.unwrap();

        let written = tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower is answered")
            .unwrap();
        assert!(matches!(written, Ok(true)), "{written:?}");
        for id in [first, second] {
            let stored = store::newest(db, id, 10).await.unwrap();
            assert_eq!(stored.len(), 1, "session {id}: {stored:?}");
            assert_eq!(stored[0].text, "message 1");
        }
    }

    /// On a SQLite file the batches go through the writer's own connection
    /// (kept between writes), under the fence as on the pool's; a write that
    /// fails (here: another writer holds the lock past the busy timeout)
    /// gives the connection up, and the next write opens another and lands.
    #[tokio::test]
    async fn the_writers_own_connection_writes_fences_and_is_opened_again_after_a_failure() {
        let node = node(Some(300)).await;
        let (db, host, [first, second]) = (&node.db, node.host, node.sessions);
        let writer = node.writer(true);
        let Way::Grouped(group) = &writer.0 else {
            panic!("SQLite's writes are grouped");
        };
        let holds_its_own = || async { group.turn.lock().await.conn.is_some() };
        assert!(!holds_its_own().await, "opened at the first write");

        let written = writer.write(first, 0, vec![message(first, host, 1)]).await;
        assert!(matches!(written, Ok(true)), "{written:?}");
        assert!(holds_its_own().await, "kept for the next write");
        // A fence that no longer holds: nothing written.
        let refused = writer
            .write(second, 7, vec![message(second, host, 1)])
            .await;
        assert!(matches!(refused, Ok(false)), "{refused:?}");

        // Another connection holds SQLite's lock past the busy timeout.
        let other = Database::connect(&node.url).await.unwrap();
        let held = other.begin().await.unwrap();
        held.execute_unprepared("INSERT INTO elsewhere VALUES (1)")
            .await
            .unwrap();
        let failed = writer.write(first, 0, vec![message(first, host, 2)]).await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(!holds_its_own().await, "given up after the failure");
        held.commit().await.unwrap();

        let written = writer.write(first, 0, vec![message(first, host, 2)]).await;
        assert!(matches!(written, Ok(true)), "{written:?}");
        assert!(holds_its_own().await);
        let texts: Vec<String> = store::newest(db, first, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["message 1", "message 2"]);
        assert!(store::newest(db, second, 10).await.unwrap().is_empty());
    }
}
