//! Connecting to the database (SQLite or PostgreSQL) and migrating it.
//!
//! A database that cannot be opened is one clear error naming it (the
//! SQLite path, or PostgreSQL's host:port/database, never the password) and
//! the operating system's reason. The SQLite file is private to the user
//! that runs `simmer` (0600, whatever the umask); its `-wal` and `-shm`
//! files inherit that mode from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use simmer_migration::Migrator;

use crate::config::Settings;

mod busy;

/// How long to try to reach the database at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a database URL points at, for messages (no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A SQLite file; `create` when the URL allows creating it (`mode=rwc`),
    /// `read_only` for `mode=ro`.
    SqliteFile {
        path: PathBuf,
        create: bool,
        read_only: bool,
    },
    SqliteMemory,
    /// PostgreSQL at `host:port/database`.
    Postgres {
        host: String,
        port: u16,
        database: String,
    },
    Other {
        scheme: String,
    },
}

impl Target {
    fn of(url: &str) -> Self {
        let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        match scheme {
            "sqlite" if location.is_empty() || location == ":memory:" => Target::SqliteMemory,
            "sqlite" => {
                let mode = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("mode="))
                    .unwrap_or("rw");
                if mode == "memory" {
                    return Target::SqliteMemory;
                }
                Target::SqliteFile {
                    path: PathBuf::from(location),
                    create: mode == "rwc",
                    read_only: mode == "ro",
                }
            }
            "postgres" | "postgresql" => {
                let (authority, database) = location.split_once('/').unwrap_or((location, ""));
                // user:password@host:port — only what follows the last '@'.
                let host_port = authority.rsplit('@').next().unwrap_or_default();
                let (host, port) = match host_port.strip_prefix('[') {
                    // [v6 address]:port
                    Some(v6) => {
                        let (host, port) = v6.split_once(']').unwrap_or((v6, ""));
                        (host, port.strip_prefix(':').and_then(|p| p.parse().ok()))
                    }
                    None => match host_port.rsplit_once(':') {
                        Some((host, port)) => (host, port.parse().ok()),
                        None => (host_port, None),
                    },
                };
                let port = port.unwrap_or(5432);
                Target::Postgres {
                    host: if host.is_empty() { "localhost" } else { host }.to_owned(),
                    port,
                    database: database.to_owned(),
                }
            }
            _ => Target::Other {
                scheme: scheme.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::SqliteFile { path, .. } => write!(f, "SQLite database {}", path.display()),
            Target::SqliteMemory => f.write_str("in-memory SQLite database"),
            Target::Postgres {
                host,
                port,
                database,
            } => write!(f, "PostgreSQL database {host}:{port}/{database}"),
            Target::Other { scheme } => write!(f, "{scheme} database"),
        }
    }
}

/// Opens the pool. For SQLite, first opens (or creates) the file itself, so
/// that a failure carries the OS's reason, and keeps it private; then turns
/// on write-ahead logging (readers never wait for the writer).
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url.expose();
    let target = Target::of(url);
    if let Target::SqliteFile {
        path,
        create,
        read_only,
    } = &target
    {
        prepare_sqlite_file(path, *create, *read_only)
            .with_context(|| format!("cannot open the {target}"))?;
    }
    let db = match open_pool(url, &target, settings).await {
        Ok(db) => db,
        Err(e) => {
            let reason = why_not_connected(&target, &*e).await;
            return Err(anyhow!("cannot open the {target}: {reason}"));
        }
    };
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL;")
            .await
            .with_context(|| format!("enabling write-ahead logging on the {target}"))?;
    }
    Ok(db)
}

/// The pool behind sea-orm, built here for its check of idle connections.
/// sqlx's default pings every connection it hands out, and every one it
/// takes back: the first ping put one more round trip to the database
/// (sqlx's worker thread for SQLite, the network for PostgreSQL) in front
/// of every query, the chat's durable write included. A connection is
/// checked as it comes back, so one handed out again within
/// [`CHECK_IF_IDLE_FOR`] is used as is; one idle longer (the database may
/// have restarted meanwhile) is pinged first and replaced if it does not
/// answer.
async fn open_pool(
    url: &str,
    target: &Target,
    settings: &Settings,
) -> Result<DatabaseConnection, Box<dyn std::error::Error + Send + Sync>> {
    use sea_orm::sqlx::ConnectOptions as _;
    use sea_orm::sqlx::{postgres::PgConnectOptions, sqlite::SqliteConnectOptions};
    use sea_orm::{SqlxPostgresConnector, SqlxSqliteConnector};
    let max_connections = settings.db_max_connections;
    Ok(match target {
        Target::SqliteFile { .. } | Target::SqliteMemory => {
            let options: SqliteConnectOptions = url.parse()?;
            let timeout = settings.db_busy_timeout;
            let pool = pool_options(max_connections)
                .after_connect(move |conn, _| Box::pin(busy::install(conn, timeout)))
                .connect_with(options.disable_statement_logging())
                .await?;
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        }
        Target::Postgres { .. } => {
            let options: PgConnectOptions = url.parse()?;
            let pool = pool_options(max_connections)
                .connect_with(options.disable_statement_logging())
                .await?;
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        }
        // sea-orm's own answer for a URL it does not take.
        Target::Other { .. } => Database::connect(url).await?,
    })
}

/// How long a pooled connection may sit unused and still be handed out
/// without a ping (HikariCP's `aliveBypassWindowMs` is the same idea).
const CHECK_IF_IDLE_FOR: Duration = Duration::from_millis(500);

fn pool_options<DB: sea_orm::sqlx::Database>(
    max_connections: u32,
) -> sea_orm::sqlx::pool::PoolOptions<DB> {
    use sea_orm::sqlx::Connection as _;
    sea_orm::sqlx::pool::PoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Creates the SQLite file's directory and the file (0600) when allowed,
/// checks that it opens as the URL asks, and takes group and world access
/// away from the database and its `-wal`/`-shm` files.
fn prepare_sqlite_file(path: &Path, create: bool, read_only: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if create && !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .write(!read_only)
        .create(create && !read_only);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            return Err(anyhow!(
                "{e} (the URL does not allow creating it; add ?mode=rwc)"
            ))
        }
        Err(e) => return Err(e.into()),
    }
    #[cfg(unix)]
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        make_private(&file)?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes group and world access away from an existing file (one made by an
/// older version, or by hand, with a lax umask).
#[cfg(unix)]
fn make_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // not there (yet): SQLite creates it with the database's mode
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("making {} private (chmod 600)", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{:o}", mode & 0o777),
            "database file was readable by others; made it private"
        );
    }
    Ok(())
}

/// The reason a connection failed, in the operating system's words where
/// there are any. The pool retries a refused connection until it times out
/// and then says only that, so for a timeout the server is dialled once more
/// to learn why.
async fn why_not_connected(target: &Target, error: &(dyn std::error::Error + 'static)) -> String {
    let innermost = innermost_message(error);
    if let Target::Postgres { host, port, .. } = target {
        if innermost.contains("timed out") {
            let (host, port) = (host.clone(), *port);
            let dialled = tokio::task::spawn_blocking(move || dial(&host, port)).await;
            return match dialled {
                Ok(Err(e)) => e.to_string(),
                _ => innermost,
            };
        }
    }
    innermost
}

/// Opens (and closes) a TCP connection to `host:port`.
fn dial(host: &str, port: u16) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host");
    for addr in (host, port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The last message of an error's cause chain (the one closest to the OS).
fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// How to open a SQLite connection beside the pool, as the pool opens its
/// own (same URL, same busy handler): for a writer that keeps one for
/// itself (`live::chat_writer`). Only for a SQLite file; an in-memory
/// database is another database on every connection.
#[derive(Debug, Clone)]
pub struct SqliteOpener {
    options: sea_orm::sqlx::sqlite::SqliteConnectOptions,
    busy_timeout: Duration,
}

impl SqliteOpener {
    /// `None` unless the node's database is a writable SQLite file.
    pub fn for_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        use sea_orm::sqlx::ConnectOptions as _;
        let url = settings.database_url.expose();
        match Target::of(url) {
            Target::SqliteFile {
                read_only: false, ..
            } => {
                let options: sea_orm::sqlx::sqlite::SqliteConnectOptions =
                    url.parse().context("parsing the SQLite URL")?;
                Ok(Some(Self {
                    options: options.disable_statement_logging(),
                    busy_timeout: settings.db_busy_timeout,
                }))
            }
            _ => Ok(None),
        }
    }

    /// A new connection.
    pub async fn open(
        &self,
    ) -> Result<sea_orm::sqlx::sqlite::SqliteConnection, sea_orm::sqlx::Error> {
        use sea_orm::sqlx::ConnectOptions as _;
        let mut conn = self.options.connect().await?;
        busy::install(&mut conn, self.busy_timeout).await?;
        Ok(conn)
    }
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

/// A node's settings on a new SQLite file in `dir` (the rest defaults), and
/// the file's URL, for tests that also open the database beside the node.
#[cfg(test)]
pub(crate) fn sqlite_test_settings(
    dir: &std::path::Path,
    busy_timeout_ms: Option<u64>,
) -> (Settings, String) {
    use crate::config::{ConfigArgs, Secret};
    let url = crate::config::sqlite_url(&dir.join("simmer.db"));
    let settings = Settings::resolve(ConfigArgs {
        data_dir: Some(dir.to_path_buf()),
        database_url: Some(Secret::new(url.clone())),
        jwt_secret: Some(Secret::new("a-test-secret-of-at-least-32-bytes-long")),
        db_busy_timeout_ms: busy_timeout_ms,
        ..ConfigArgs::default()
    })
    .expect("valid test settings");
    (settings, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_database_without_credentials() {
        let pg = Target::of("postgres://simmer:hunter2@db.internal:6543/simmer?sslmode=require");
        assert_eq!(
            pg.to_string(),
            "PostgreSQL database db.internal:6543/simmer"
        );
        let pg = Target::of("postgresql://u@127.0.0.1/app");
        assert_eq!(pg.to_string(), "PostgreSQL database 127.0.0.1:5432/app");
        assert_eq!(
            Target::of("sqlite://./data/simmer.db?mode=rwc"),
            Target::SqliteFile {
                path: PathBuf::from("./data/simmer.db"),
                create: true,
                read_only: false
            }
        );
        assert_eq!(Target::of("sqlite::memory:"), Target::SqliteMemory);
        assert_eq!(Target::of("sqlite://:memory:"), Target::SqliteMemory);
        assert!(matches!(
            Target::of("sqlite:///var/lib/simmer.db?mode=ro"),
            Target::SqliteFile {
                read_only: true,
                create: false,
                ..
            }
        ));
    }

    /// A write that meets another's lock is retried by our handler (not
    /// SQLite's, which sleeps up to 100 ms between tries), goes through once
    /// the lock is free, and is refused with 503 when the lock is held for
    /// longer than `db_busy_timeout`.
    #[tokio::test]
    async fn a_write_waits_for_the_lock_then_is_refused_after_the_timeout() {
        use actix_web::ResponseError;
        use sea_orm::TransactionTrait;

        let dir = tempfile::tempdir().unwrap();
        let (settings, url) = sqlite_test_settings(dir.path(), Some(300));
        let db = connect(&settings).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();

        // Another connection's write holds the lock.
        let other = Database::connect(&url).await.unwrap();
        let held = other.begin().await.unwrap();
        held.execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap();

        let before = busy::retries();
        let refused = db
            .execute_unprepared("INSERT INTO t VALUES (2)")
            .await
            .unwrap_err();
        assert!(busy::retries() > before, "our handler was asked");
        let answer = crate::error::ApiError::from(refused);
        assert_eq!(answer.status_code().as_u16(), 503, "{answer:?}");

        let waiting = tokio::spawn({
            let db = db.clone();
            async move { db.execute_unprepared("INSERT INTO t VALUES (3)").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.commit().await.unwrap();
        waiting
            .await
            .unwrap()
            .expect("written once the lock is free");
        let rows = db
            .query_all(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "SELECT x FROM t ORDER BY x",
            ))
            .await
            .unwrap();
        let xs: Vec<i64> = rows.iter().map(|r| r.try_get("", "x").unwrap()).collect();
        assert_eq!(xs, [1, 3], "the refused write left nothing");
    }
}
