//! Wire types shared by several endpoints.

use chrono::{DateTime, Utc};
use serde::Serialize;
use simmer_entity::user;
use utoipa::ToSchema;
use uuid::Uuid;

/// A user's own account.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    /// Unique, lower-case.
    pub username: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

impl From<&user::Model> for User {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            created_at: u.created_at,
        }
    }
}

/// Another user, as shown on a recipe or session.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

impl From<&user::Model> for UserSummary {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

impl UserSummary {
    /// Stands in for an account that no longer exists.
    pub fn deleted(id: Uuid) -> Self {
        Self {
            id,
            username: "deleted".into(),
            display_name: "Deleted user".into(),
        }
    }
}
