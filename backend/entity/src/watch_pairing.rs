//! A watch asking to be paired: it shows `code`, polls with its secret, and
//! gets a device token once a signed-in user claimed the code.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "watch_pairings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Six characters without look-alikes; unique among pending pairings.
    pub code: String,
    /// SHA-256 of the watch's poll secret.
    pub poll_secret_hash: String,
    pub device_name: Option<String>,
    /// Ticks the watch wants (seconds between them; 0 = changes only).
    pub tick_interval_s: i32,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Set once claimed (single use).
    pub claimed_at: Option<DateTimeUtc>,
    /// The device the claim created.
    pub device_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
