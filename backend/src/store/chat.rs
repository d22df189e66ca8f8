//! Chat messages: written in batches (group commit), read by sequence.

use chrono::{DateTime, SecondsFormat, Utc};
use mobile_bridge::protocol::{Author, ChatMessage, Role};
use mobile_bridge::{SessionId, UserId};
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use simmer_entity::chat_message;
use uuid::Uuid;

/// RFC 3339 with milliseconds, as every `*_at` of the protocol.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Viewer => "viewer",
        Role::Guest => "guest",
    }
}

fn role_of(s: &str) -> Role {
    match s {
        "host" => Role::Host,
        "guest" => Role::Guest,
        _ => Role::Viewer,
    }
}

/// A row as a protocol message.
pub fn to_message(row: chat_message::Model) -> ChatMessage {
    let deleted = row.deleted_at.is_some();
    ChatMessage {
        session_id: SessionId(row.session_id),
        seq: u64::try_from(row.seq).unwrap_or_default(),
        author: Author {
            id: UserId(row.author_id),
            name: row.author_name,
            role: role_of(&row.author_role),
        },
        text: if deleted { String::new() } else { row.text },
        sent_at: rfc3339(row.sent_at),
        client_msg_id: row.client_msg_id,
        deleted,
    }
}

/// Inserts a batch of messages of one session, if `fence` still holds the
/// session; returns `false` (nothing written) when it does not.
///
/// One statement, committed on its own: `INSERT … SELECT … FROM (VALUES …)
/// WHERE EXISTS (the session with this fence)`. A transaction around a check
/// and an insert would cost four round trips to the database's worker
/// (BEGIN, check, INSERT, COMMIT) on the path of every chat ack; this is one.
/// It keeps the fence's guarantee: SQLite has one writer, so a take-over
/// comes wholly before or after the statement; PostgreSQL reads the
/// session's row `FOR SHARE`, so a take-over waits for this write to commit,
/// and a write that waited for a take-over finds the raised fence and inserts
/// nothing.
pub async fn insert_batch(
    db: &DatabaseConnection,
    session_id: Uuid,
    fence: i64,
    batch: &[(ChatMessage, DateTime<Utc>)],
) -> Result<bool, DbErr> {
    use sea_orm::ConnectionTrait;
    if batch.is_empty() {
        return Ok(true);
    }
    let insert = fenced_insert(db.get_database_backend(), session_id, fence, batch)?;
    Ok(db.execute(insert).await?.rows_affected() > 0)
}

/// One session's batch for [`insert_batches`].
#[derive(Debug)]
pub struct Batch {
    pub session_id: Uuid,
    pub fence: i64,
    pub rows: Vec<(ChatMessage, DateTime<Utc>)>,
}

/// Inserts the batches of several sessions of a SQLite database in one
/// transaction on `conn`, each under its own fence as [`insert_batch`] does:
/// one commit, so one sync of the log for all of them. For each batch,
/// whether it was written (`false`: its fence no longer holds), or the
/// error of its statement (on SQLite a failed statement is undone alone and
/// the others still commit). `Err` when the transaction itself failed: then
/// none is known to be written. A lone batch is one statement, committed on
/// its own.
pub async fn insert_batches(
    conn: &mut SqliteConnection,
    batches: &[Batch],
) -> Result<Vec<Result<bool, DbErr>>, DbErr> {
    use sea_orm::sqlx::Connection as _;
    if let [one] = batches {
        return Ok(vec![insert_on(conn, one).await]);
    }
    let mut txn = conn.begin().await.map_err(exec_err)?;
    let mut written = Vec::with_capacity(batches.len());
    for batch in batches {
        written.push(insert_on(&mut txn, batch).await);
    }
    txn.commit().await.map_err(exec_err)?;
    Ok(written)
}

/// One batch as [`insert_batch`] writes it, on `conn`.
async fn insert_on(conn: &mut SqliteConnection, batch: &Batch) -> Result<bool, DbErr> {
    if batch.rows.is_empty() {
        return Ok(true);
    }
    let insert = fenced_insert(
        sea_orm::DbBackend::Sqlite,
        batch.session_id,
        batch.fence,
        &batch.rows,
    )?;
    let values = sea_query_binder::SqlxValues(insert.values.unwrap_or(sea_orm::Values(Vec::new())));
    let done = sea_orm::sqlx::query_with(&insert.sql, values)
        .execute(conn)
        .await
        .map_err(exec_err)?;
    Ok(done.rows_affected() > 0)
}

fn exec_err(e: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
}

/// `INSERT … SELECT … FROM (VALUES …) WHERE EXISTS (the session with this
/// fence)` for a non-empty batch: with its text as kept ([`kept_text`]) and
/// its values bound in the order of its placeholders, or else as sea-query
/// builds it (and its text kept).
fn fenced_insert(
    backend: sea_orm::DbBackend,
    session_id: Uuid,
    fence: i64,
    batch: &[(ChatMessage, DateTime<Utc>)],
) -> Result<sea_orm::Statement, DbErr> {
    let kept = kept_text(backend, batch.len());
    if let Some(sql) = kept.and_then(std::sync::OnceLock::get) {
        let mut values = Vec::with_capacity(batch.len() * COLUMNS.len() + 3);
        for (m, sent_at) in batch {
            values.extend(row_values(m, *sent_at));
        }
        values.extend(fence_values(session_id, fence));
        return Ok(sea_orm::Statement::from_sql_and_values(
            backend,
            sql.clone(),
            values,
        ));
    }
    let built = built_fenced_insert(backend, session_id, fence, batch)?;
    if let Some(kept) = kept {
        let _ = kept.set(built.sql.clone());
    }
    Ok(built)
}

const COLUMNS: [chat_message::Column; 8] = {
    use chat_message::Column as C;
    [
        C::SessionId,
        C::Seq,
        C::AuthorId,
        C::AuthorName,
        C::AuthorRole,
        C::Text,
        C::ClientMsgId,
        C::SentAt,
    ]
};

/// One row's values, in the order of [`COLUMNS`].
fn row_values(m: &ChatMessage, sent_at: DateTime<Utc>) -> [sea_orm::Value; 8] {
    use sea_orm::Value;
    [
        Value::from(m.session_id.0),
        Value::from(i64::try_from(m.seq).unwrap_or(i64::MAX)),
        Value::from(m.author.id.0),
        Value::from(m.author.name.clone()),
        Value::from(role_str(m.author.role)),
        Value::from(m.text.clone()),
        Value::from(m.client_msg_id.clone()),
        Value::from(sent_at),
    ]
}

/// The values of the fence's check, after the rows': `SELECT 1 FROM session
/// WHERE id = … AND fence = …`.
fn fence_values(session_id: Uuid, fence: i64) -> [sea_orm::Value; 3] {
    [
        sea_orm::Value::from(1),
        sea_orm::Value::from(session_id),
        sea_orm::Value::from(fence),
    ]
}

/// Batches of up to this many rows have their statement's text built once
/// per database and kept; a larger batch, rarer and shared by more
/// messages, has it built each time. Bounded: at most twice this many texts
/// (SQLite's and PostgreSQL's), the longest a few KiB.
const KEPT_TEXTS: usize = 32;

/// Where the text of [`fenced_insert`]'s statement for `rows` rows is
/// kept, if it is. Built with sea-query, it took ~0.25 ms of the chat
/// actor's thread per message on a 2-core VM, on the path of every ack
/// before the write could begin (docs/benchmarks.md, "The chat's statement
/// built once"); the text depends only on the database and the number of
/// rows, so it is built once.
fn kept_text(
    backend: sea_orm::DbBackend,
    rows: usize,
) -> Option<&'static std::sync::OnceLock<String>> {
    static KEPT: [std::sync::OnceLock<String>; 2 * KEPT_TEXTS] =
        [const { std::sync::OnceLock::new() }; 2 * KEPT_TEXTS];
    let first = match backend {
        sea_orm::DbBackend::Sqlite => 0,
        sea_orm::DbBackend::Postgres => KEPT_TEXTS,
        _ => return None,
    };
    (1..=KEPT_TEXTS)
        .contains(&rows)
        .then(|| &KEPT[first + rows - 1])
}

/// The statement as sea-query builds it, text and values.
fn built_fenced_insert(
    backend: sea_orm::DbBackend,
    session_id: Uuid,
    fence: i64,
    batch: &[(ChatMessage, DateTime<Utc>)],
) -> Result<sea_orm::Statement, DbErr> {
    use sea_orm::sea_query::{Alias, Expr, Query, SimpleExpr, ValueTuple};
    use simmer_entity::session;

    let rows = batch
        .iter()
        .map(|(m, sent_at)| ValueTuple::Many(row_values(m, *sent_at).into()));
    // VALUES names its columns column1, column2, … on both databases.
    let values = Alias::new("v");
    let picked = (1..=COLUMNS.len()).map(|i| {
        SimpleExpr::from(Expr::col((
            values.clone(),
            Alias::new(format!("column{i}")),
        )))
    });
    let fence_holds = Query::select()
        .expr(Expr::val(1))
        .from(session::Entity)
        .and_where(Expr::col(session::Column::Id).eq(session_id))
        .and_where(Expr::col(session::Column::Fence).eq(fence))
        .lock_shared()
        .to_owned();
    let select = Query::select()
        .exprs(picked)
        .from_values(rows, values)
        .and_where(Expr::exists(fence_holds))
        .to_owned();
    let insert = Query::insert()
        .into_table(chat_message::Entity)
        .columns(COLUMNS)
        .select_from(select)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned();
    Ok(backend.build(&insert))
}

/// The newest `limit` messages of a session, oldest first.
pub async fn newest(
    db: &DatabaseConnection,
    session_id: Uuid,
    limit: u64,
) -> Result<Vec<ChatMessage>, DbErr> {
    let mut rows = chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .order_by_desc(chat_message::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows.into_iter().map(to_message).collect())
}

/// The newest `limit` sends with a `client_msg_id`, oldest first: the
/// idempotency window a restarted channel starts from. Only three narrow
/// columns, read through the (session_id, seq) key.
pub async fn sent_window(
    db: &DatabaseConnection,
    session_id: Uuid,
    limit: u64,
) -> Result<Vec<crate::live::chat::Sent>, DbErr> {
    let mut rows: Vec<(Uuid, Option<String>, i64)> = chat_message::Entity::find()
        .select_only()
        .column(chat_message::Column::AuthorId)
        .column(chat_message::Column::ClientMsgId)
        .column(chat_message::Column::Seq)
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::ClientMsgId.is_not_null())
        .order_by_desc(chat_message::Column::Seq)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows
        .into_iter()
        .filter_map(|(author, id, seq)| Some((UserId(author), id?, u64::try_from(seq).ok()?)))
        .collect())
}

/// One message by its sequence number.
pub async fn by_seq(
    db: &DatabaseConnection,
    session_id: Uuid,
    seq: u64,
) -> Result<Option<ChatMessage>, DbErr> {
    Ok(
        chat_message::Entity::find_by_id((session_id, i64::try_from(seq).unwrap_or(i64::MAX)))
            .one(db)
            .await?
            .map(to_message),
    )
}

/// Up to `limit` messages with `seq > after`, oldest first.
pub async fn after(
    db: &DatabaseConnection,
    session_id: Uuid,
    after: u64,
    limit: u64,
) -> Result<Vec<ChatMessage>, DbErr> {
    let rows = chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::Seq.gt(i64::try_from(after).unwrap_or(i64::MAX)))
        .order_by_asc(chat_message::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(to_message).collect())
}

/// Up to `limit` messages with `seq < before` (or the newest), newest first.
pub async fn page_before(
    db: &DatabaseConnection,
    session_id: Uuid,
    before: Option<u64>,
    limit: u64,
) -> Result<Vec<ChatMessage>, DbErr> {
    let mut query =
        chat_message::Entity::find().filter(chat_message::Column::SessionId.eq(session_id));
    if let Some(before) = before {
        query =
            query.filter(chat_message::Column::Seq.lt(i64::try_from(before).unwrap_or(i64::MAX)));
    }
    let rows = query
        .order_by_desc(chat_message::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(to_message).collect())
}

/// Marks a message deleted (its text is no longer shown). Returns whether
/// such a message exists.
pub async fn mark_deleted(
    db: &DatabaseConnection,
    session_id: Uuid,
    seq: u64,
) -> Result<bool, DbErr> {
    use sea_orm::sea_query::Expr;
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    chat_message::Entity::update_many()
        .col_expr(chat_message::Column::DeletedAt, Expr::value(Utc::now()))
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::Seq.eq(seq))
        .filter(chat_message::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::Seq.eq(seq))
        .one(db)
        .await?
        .is_some())
}

/// Mutes a user in a session until `until` (replacing an earlier mute).
pub async fn mute(
    db: &DatabaseConnection,
    session_id: Uuid,
    user_id: Uuid,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    use simmer_entity::chat_mute;
    chat_mute::Entity::insert(chat_mute::ActiveModel {
        session_id: Set(session_id),
        user_id: Set(user_id),
        until: Set(until),
    })
    .on_conflict(
        OnConflict::columns([chat_mute::Column::SessionId, chat_mute::Column::UserId])
            .update_column(chat_mute::Column::Until)
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

/// The mutes of a session still in force.
pub async fn mutes(
    db: &DatabaseConnection,
    session_id: Uuid,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, DbErr> {
    use simmer_entity::chat_mute;
    Ok(chat_mute::Entity::find()
        .filter(chat_mute::Column::SessionId.eq(session_id))
        .filter(chat_mute::Column::Until.gt(Utc::now()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.user_id, m.until))
        .collect())
}

/// The highest sequence number of a session (0 when it has no messages).
pub async fn last_seq(db: &DatabaseConnection, session_id: Uuid) -> Result<u64, DbErr> {
    let row = chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .order_by_desc(chat_message::Column::Seq)
        .one(db)
        .await?;
    Ok(row
        .map(|r| u64::try_from(r.seq).unwrap_or_default())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: usize) -> Vec<(ChatMessage, DateTime<Utc>)> {
        (0..rows)
            .map(|i| {
                let message = ChatMessage {
                    session_id: SessionId(Uuid::from_u128(7)),
                    seq: u64::try_from(i).unwrap_or_default() + 1,
                    author: Author {
                        id: UserId(Uuid::from_u128(u128::try_from(i).unwrap_or_default())),
                        name: format!("viewer {i}"),
                        role: if i % 2 == 0 { Role::Viewer } else { Role::Host },
                    },
                    text: format!("it's {i}'s turn to stir"),
                    sent_at: String::new(),
                    client_msg_id: (i % 3 != 0).then(|| format!("c-{i}")),
                    deleted: false,
                };
                (message, Utc::now())
            })
            .collect()
    }

    #[test]
    fn the_kept_statement_is_the_one_sea_query_builds_on_both_databases() {
        let session = Uuid::from_u128(7);
        for backend in [sea_orm::DbBackend::Sqlite, sea_orm::DbBackend::Postgres] {
            for rows in [1, 2, 3, KEPT_TEXTS, KEPT_TEXTS + 1, 100] {
                let batch = batch(rows);
                let built = built_fenced_insert(backend, session, 42, &batch).unwrap();
                // The first call builds and keeps the text, the second reads it.
                for _ in 0..2 {
                    assert_eq!(
                        fenced_insert(backend, session, 42, &batch).unwrap(),
                        built,
                        "{backend:?}, {rows} rows"
                    );
                }
            }
        }
    }
}
