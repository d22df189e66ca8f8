//! Accounts.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set, SqlErr,
};
use simmer_entity::user;
use uuid::Uuid;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username taken")]
    UsernameTaken,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Inserts a user; a taken username (checked by the unique index, so two
/// concurrent sign-ups cannot both win) is its own error.
pub async fn create(
    db: &DatabaseConnection,
    username: &str,
    display_name: &str,
    password_hash: String,
) -> Result<user::Model, CreateUserError> {
    let now = Utc::now();
    let result = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(username.to_owned()),
        display_name: Set(display_name.to_owned()),
        password_hash: Set(password_hash),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await;
    match result {
        Ok(model) => Ok(model),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(CreateUserError::UsernameTaken)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn by_username(
    db: &DatabaseConnection,
    username: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await
}

pub async fn by_id(db: &DatabaseConnection, id: Uuid) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).one(db).await
}

/// Loads several users at once (for the `owner`/`host` of a page of items).
pub async fn by_ids(
    db: &DatabaseConnection,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, user::Model>, DbErr> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect())
}
