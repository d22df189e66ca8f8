//! A paired watch: it belongs to a user and follows one session's timer.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "watch_devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The session whose timer it shows.
    pub session_id: Uuid,
    pub name: String,
    /// SHA-256 of the device token; `None` until the watch collected one.
    pub token_hash: Option<String>,
    /// Seconds between ticks (0 = changes only).
    pub tick_interval_s: i32,
    /// The newest alert this watch was sent (alerts are sent once).
    pub last_alert_seq: i64,
    pub created_at: DateTimeUtc,
    pub last_seen_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
