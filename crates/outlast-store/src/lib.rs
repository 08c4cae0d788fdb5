//! Durable records: an embedded SQLite file under `data_dir` by default, or PostgreSQL when
//! `database_url` is set (replicas share it). One schema, applied by the migrations in
//! `crates/outlast-store/migrations` (SQLite) and `migrations-pg` (PostgreSQL) at startup.
//!
//! Each concern owns a module (keys, usage ledger, status history, notification outbox) that
//! takes a [`Db`]; nothing outside this crate writes SQL.

pub mod keys;
pub mod status;
pub mod usage;

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Db {
    /// Open (creating if needed) the embedded database `outlast.db` in `data_dir`, in WAL
    /// mode, and apply the schema.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("outlast.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL loses at most the last transactions on power loss, never on a
            // process crash; each batch is one transaction.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db::Sqlite(pool))
    }

    /// Connect to PostgreSQL and apply the schema.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations-pg").run(&pool).await?;
        Ok(Db::Postgres(pool))
    }

    /// An in-memory SQLite database with the schema, for tests.
    pub async fn open_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every connection to :memory: is a database of its own.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Db::Sqlite(pool))
    }
}
