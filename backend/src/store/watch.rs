//! Watch pairings and paired watches.

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};
use simmer_entity::{watch_device, watch_pairing};
use uuid::Uuid;

/// Pairing-code characters: no look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B).
pub const CODE_ALPHABET: &[u8] = b"ACDEFGHJKMNPQRTUVWXY34679";
/// Characters in a pairing code.
pub const CODE_LEN: usize = 6;

/// A fresh random code.
fn new_code() -> String {
    let mut rng = rand::thread_rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// A code as typed (any case, spaces or dashes), normalised; `None` when it
/// cannot be a code.
pub fn normalise_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// What a new pairing needs.
#[derive(Debug, Clone)]
pub struct NewPairing {
    pub poll_secret_hash: String,
    pub device_name: Option<String>,
    pub tick_interval_s: i32,
    pub ttl: chrono::Duration,
}

/// Creates a pairing with a code no other pending pairing has.
pub async fn create_pairing(
    db: &DatabaseConnection,
    new: NewPairing,
) -> Result<watch_pairing::Model, DbErr> {
    let now = Utc::now();
    for _ in 0..8 {
        let code = new_code();
        let taken = watch_pairing::Entity::find()
            .filter(watch_pairing::Column::Code.eq(code.as_str()))
            .filter(watch_pairing::Column::ClaimedAt.is_null())
            .filter(watch_pairing::Column::ExpiresAt.gt(now))
            .one(db)
            .await?
            .is_some();
        if taken {
            continue;
        }
        return watch_pairing::ActiveModel {
            id: Set(Uuid::now_v7()),
            code: Set(code),
            poll_secret_hash: Set(new.poll_secret_hash.clone()),
            device_name: Set(new.device_name.clone()),
            tick_interval_s: Set(new.tick_interval_s),
            created_at: Set(now),
            expires_at: Set(now + new.ttl),
            claimed_at: Set(None),
            device_id: Set(None),
        }
        .insert(db)
        .await;
    }
    Err(DbErr::Custom("no free pairing code after 8 tries".into()))
}

pub async fn pairing(
    db: &DatabaseConnection,
    id: Uuid,
) -> Result<Option<watch_pairing::Model>, DbErr> {
    watch_pairing::Entity::find_by_id(id).one(db).await
}

/// The newest pairing that showed `code`.
pub async fn pairing_by_code(
    db: &DatabaseConnection,
    code: &str,
) -> Result<Option<watch_pairing::Model>, DbErr> {
    watch_pairing::Entity::find()
        .filter(watch_pairing::Column::Code.eq(code))
        .order_by_desc(watch_pairing::Column::CreatedAt)
        .one(db)
        .await
}

/// Claims a pending pairing for `user_id`, creating its device. `None` when
/// it was claimed (or expired) meanwhile: a code is used once.
pub async fn claim(
    db: &DatabaseConnection,
    pairing: &watch_pairing::Model,
    user_id: Uuid,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<watch_device::Model>, DbErr> {
    let txn = db.begin().await?;
    let device_id = Uuid::now_v7();
    let claimed = watch_pairing::Entity::update_many()
        .col_expr(watch_pairing::Column::ClaimedAt, Expr::value(now))
        .col_expr(watch_pairing::Column::DeviceId, Expr::value(device_id))
        .filter(watch_pairing::Column::Id.eq(pairing.id))
        .filter(watch_pairing::Column::ClaimedAt.is_null())
        .filter(watch_pairing::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let device = watch_device::ActiveModel {
        id: Set(device_id),
        user_id: Set(user_id),
        session_id: Set(session_id),
        name: Set(pairing
            .device_name
            .clone()
            .unwrap_or_else(|| "Watch".to_owned())),
        token_hash: Set(None),
        tick_interval_s: Set(pairing.tick_interval_s),
        last_alert_seq: Set(0),
        created_at: Set(now),
        last_seen_at: Set(None),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(Some(device))
}

/// Gives a device a new token (the old one stops working).
pub async fn set_token(
    db: &DatabaseConnection,
    device_id: Uuid,
    token_hash: &str,
) -> Result<bool, DbErr> {
    let result = watch_device::Entity::update_many()
        .col_expr(watch_device::Column::TokenHash, Expr::value(token_hash))
        .filter(watch_device::Column::Id.eq(device_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn device(
    db: &DatabaseConnection,
    id: Uuid,
) -> Result<Option<watch_device::Model>, DbErr> {
    watch_device::Entity::find_by_id(id).one(db).await
}

pub async fn device_by_token(
    db: &DatabaseConnection,
    token_hash: &str,
) -> Result<Option<watch_device::Model>, DbErr> {
    watch_device::Entity::find()
        .filter(watch_device::Column::TokenHash.eq(token_hash))
        .one(db)
        .await
}

/// A user's watches, newest first.
pub async fn devices_of(
    db: &DatabaseConnection,
    user_id: Uuid,
) -> Result<Vec<watch_device::Model>, DbErr> {
    watch_device::Entity::find()
        .filter(watch_device::Column::UserId.eq(user_id))
        .order_by_desc(watch_device::Column::Id)
        .all(db)
        .await
}

/// Removes a user's watch; `false` if it is not theirs.
pub async fn delete_device(
    db: &DatabaseConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, DbErr> {
    let result = watch_device::Entity::delete_many()
        .filter(watch_device::Column::Id.eq(id))
        .filter(watch_device::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Points a user's watch at another session (alerts count afresh there).
pub async fn retarget(
    db: &DatabaseConnection,
    user_id: Uuid,
    id: Uuid,
    session_id: Uuid,
) -> Result<Option<watch_device::Model>, DbErr> {
    let result = watch_device::Entity::update_many()
        .col_expr(watch_device::Column::SessionId, Expr::value(session_id))
        .col_expr(watch_device::Column::LastAlertSeq, Expr::value(0i64))
        .filter(watch_device::Column::Id.eq(id))
        .filter(watch_device::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(None);
    }
    device(db, id).await
}

/// Records that a watch was sent an alert (never moves backwards).
pub async fn alerted(db: &DatabaseConnection, id: Uuid, alert_seq: u64) -> Result<(), DbErr> {
    let seq = i64::try_from(alert_seq).unwrap_or(i64::MAX);
    watch_device::Entity::update_many()
        .col_expr(watch_device::Column::LastAlertSeq, Expr::value(seq))
        .filter(watch_device::Column::Id.eq(id))
        .filter(watch_device::Column::LastAlertSeq.lt(seq))
        .exec(db)
        .await?;
    Ok(())
}

/// Records when a watch last connected.
pub async fn seen(db: &DatabaseConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), DbErr> {
    watch_device::Entity::update_many()
        .col_expr(watch_device::Column::LastSeenAt, Expr::value(now))
        .filter(watch_device::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_no_look_alikes_and_are_typed_loosely() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LEN);
            assert!(!code.contains(['0', 'O', '1', 'I', 'L', '5', 'S', '2', 'Z', '8', 'B']));
            assert_eq!(normalise_code(&code.to_lowercase()), Some(code.clone()));
        }
        assert_eq!(normalise_code("ac3-d4ef"), None, "7 characters");
        assert_eq!(normalise_code("ac3 d4e").as_deref(), Some("AC3D4E"));
        assert_eq!(normalise_code("ac3-4de").as_deref(), Some("AC34DE"));
        assert_eq!(normalise_code("AC34D0"), None, "0 is not in the alphabet");
    }
}
