//! Simmer's schema, as ordered migrations that run the same on SQLite and
//! PostgreSQL. Applied at start-up by `simmer serve` and by `simmer migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_accounts_recipes_sessions;
mod m20261126_000002_chat_messages;
mod m20261126_000003_chat_mutes;
mod m20261126_000004_session_timer;
mod m20261126_000005_watches;
mod m20261203_000006_session_fence;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_accounts_recipes_sessions::Migration),
            Box::new(m20261126_000002_chat_messages::Migration),
            Box::new(m20261126_000003_chat_mutes::Migration),
            Box::new(m20261126_000004_session_timer::Migration),
            Box::new(m20261126_000005_watches::Migration),
            Box::new(m20261203_000006_session_fence::Migration),
        ]
    }
}
