//! Chat messages: written in batches (group commit), read by sequence.

use chrono::{DateTime, SecondsFormat, Utc};
use mobile_bridge::protocol::{Author, ChatMessage, Role};
use mobile_bridge::{SessionId, UserId};
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
    ChatMessage {
        session_id: SessionId(row.session_id),
        seq: u64::try_from(row.seq).unwrap_or_default(),
        author: Author {
            id: UserId(row.author_id),
            name: row.author_name,
            role: role_of(&row.author_role),
        },
        text: row.text,
        sent_at: rfc3339(row.sent_at),
        client_msg_id: row.client_msg_id,
    }
}

/// Inserts a batch of messages in one statement (one transaction).
pub async fn insert_batch(
    db: &DatabaseConnection,
    batch: &[(ChatMessage, DateTime<Utc>)],
) -> Result<(), DbErr> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows = batch.iter().map(|(m, sent_at)| chat_message::ActiveModel {
        session_id: Set(m.session_id.0),
        seq: Set(i64::try_from(m.seq).unwrap_or(i64::MAX)),
        author_id: Set(m.author.id.0),
        author_name: Set(m.author.name.clone()),
        author_role: Set(role_str(m.author.role).to_owned()),
        text: Set(m.text.clone()),
        client_msg_id: Set(m.client_msg_id.clone()),
        sent_at: Set(*sent_at),
        deleted_at: Set(None),
    });
    chat_message::Entity::insert_many(rows).exec(db).await?;
    Ok(())
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
