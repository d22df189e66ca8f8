//! Connecting to the database (SQLite or PostgreSQL) and migrating it.

use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use simmer_migration::Migrator;

use crate::config::Settings;

/// Opens the pool. For SQLite, turns on write-ahead logging (readers never
/// wait for the writer).
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url.expose();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && *p != ":memory:")
    {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.db_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .context("connecting to the database (check DATABASE_URL)")?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL;")
            .await
            .context("enabling SQLite WAL")?;
    }
    Ok(db)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("applying database migrations")
}

/// The backend's name for logs.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        DbBackend::MySql => "mysql",
    }
}
