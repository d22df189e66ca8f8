//! Rotating refresh tokens, stored hashed. Each exchange marks the token used
//! and issues its successor in the same family; presenting a used token again
//! means it leaked (or a client raced itself), so the whole family is revoked
//! and the user must sign in again (OAuth 2.0 Security BCP, section 4.14).

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, TransactionTrait,
};
use simmer_entity::refresh_token;
use uuid::Uuid;

use super::secret::{new_secret, secret_hash};
use crate::error::ApiError;

/// What an exchange of a refresh token came to.
#[derive(Debug)]
pub enum RotateOutcome {
    /// The token was good: here is its successor, for this user.
    Rotated { user_id: Uuid, token: String },
    /// Unknown, expired, revoked, or reused (the family is now revoked).
    Rejected,
}

/// The refresh-token store.
#[derive(Debug, Clone)]
pub struct RefreshTokens {
    db: DatabaseConnection,
    ttl: Duration,
}

impl RefreshTokens {
    pub fn new(db: DatabaseConnection, ttl: Duration) -> Self {
        Self { db, ttl }
    }

    /// Starts a new family (a sign-in) and returns its first token.
    pub async fn issue(&self, user_id: Uuid) -> Result<String, ApiError> {
        self.insert(&self.db, user_id, Uuid::now_v7()).await
    }

    async fn insert(
        &self,
        conn: &impl ConnectionTrait,
        user_id: Uuid,
        family_id: Uuid,
    ) -> Result<String, ApiError> {
        let token = new_secret();
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("refresh ttl: {e}")))?;
        refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            family_id: Set(family_id),
            token_hash: Set(secret_hash(&token)),
            created_at: Set(now),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok(token)
    }

    /// Exchanges a token for its successor.
    pub async fn rotate(&self, token: &str) -> Result<RotateOutcome, ApiError> {
        let Some(row) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(secret_hash(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(RotateOutcome::Rejected);
        };
        if row.revoked_at.is_some() || row.expires_at <= Utc::now() {
            return Ok(RotateOutcome::Rejected);
        }
        if row.used_at.is_some() {
            self.revoke_reused(&row).await?;
            return Ok(RotateOutcome::Rejected);
        }
        let txn = self.db.begin().await?;
        // Claim the token atomically: of two concurrent exchanges, one wins and
        // the other is treated as reuse.
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(Utc::now()))
            .filter(refresh_token::Column::Id.eq(row.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            txn.rollback().await?;
            self.revoke_reused(&row).await?;
            return Ok(RotateOutcome::Rejected);
        }
        let token = self.insert(&txn, row.user_id, row.family_id).await?;
        txn.commit().await?;
        Ok(RotateOutcome::Rotated {
            user_id: row.user_id,
            token,
        })
    }

    async fn revoke_reused(&self, row: &refresh_token::Model) -> Result<(), ApiError> {
        tracing::warn!(
            user_id = %row.user_id,
            family_id = %row.family_id,
            "refresh token reused; revoking its family"
        );
        self.revoke_family(row.family_id).await
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<(), ApiError> {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Signs out: revokes the family of `token` if it belongs to `user_id`.
    /// Unknown tokens are ignored (RFC 7009: revoking is idempotent).
    pub async fn revoke(&self, user_id: Uuid, token: &str) -> Result<(), ApiError> {
        let row = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(secret_hash(token)))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .one(&self.db)
            .await?;
        if let Some(row) = row {
            self.revoke_family(row.family_id).await?;
        }
        Ok(())
    }
}
