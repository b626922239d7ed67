//! Ferry's store: one API over SQLite (the embedded default) and PostgreSQL (for several server
//! nodes). Queries are written once with `$n` placeholders and run on either backend through the
//! `db_run!` macro; the few dialect-specific queries (the task claim) have one arm per backend.
//!
//! Architecture invariant: every query in this crate runs on both backends in the contract suite
//! (`crates/ferry/tests/it/store_contract.rs`).

mod migrate;
pub use migrate::versions as migration_versions;
pub mod blobs;
pub mod dashboard;
mod event_archive;
pub mod packages;
pub mod purge;
mod rows;
mod subscriptions;
mod users;
pub use dashboard::{DashboardCell, DashboardQuery, DashboardQueued};
pub use packages::*;
pub use users::SessionRow;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

pub use rows::*;

/// Store errors. `Conflict` is a unique-key violation (a duplicate name); everything else is
/// an internal failure whose cause is logged, never shown to API callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with the same unique key already exists")]
    Conflict,
    #[error("unsupported database URL: {0}")]
    BadUrl(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                return StoreError::Conflict;
            }
        }
        StoreError::Db(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database handle. SQLite keeps a one-connection pool for writes (one writer, no busy
/// retries) and a small pool for reads; PostgreSQL has one pool.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// A write transaction on either backend. It notes which document collections it changed;
/// their generations (`doc_generation`) move on when it commits.
pub struct Tx {
    inner: TxInner,
    changed: Vec<String>,
}

pub(crate) enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// Per collection, how many committed transactions of this process changed its documents.
static GENERATIONS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, u64>>> =
    std::sync::LazyLock::new(Default::default);

/// The generation key that moves when a task row's state or times change (with
/// `doc_generation`).
pub const TASKS_GENERATION: &str = "@tasks";
/// The generation key that moves when a dashboard cell changes.
pub const CELLS_GENERATION: &str = "@dashboard_cells";

/// Moves a generation at once (after an autocommitted statement).
pub(crate) fn bump_generation(key: &str) {
    let mut g = GENERATIONS.lock().unwrap_or_else(|e| e.into_inner());
    *g.entry(key.to_string()).or_default() += 1;
}

/// A token that changes whenever a transaction of this process that changed documents of one of
/// `collections` has committed (the sum of their generations, which only grow). Caches of
/// documents compare it before use. Other server nodes' writes do not move it: a cache on
/// PostgreSQL also needs an age limit.
pub fn doc_generation(collections: &[&str]) -> u64 {
    let g = GENERATIONS.lock().unwrap_or_else(|e| e.into_inner());
    collections
        .iter()
        .map(|c| g.get(*c).copied().unwrap_or(0))
        .sum()
}

/// Runs `$body` with `$conn` bound to the backend's read executor.
macro_rules! db_read {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite { read, .. } => {
                let $conn = read;
                $body
            }
            $crate::Db::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the backend's write executor (outside a transaction).
macro_rules! db_write {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite { write, .. } => {
                let $conn = write;
                $body
            }
            $crate::Db::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's connection.
macro_rules! tx_run {
    ($tx:expr, $conn:ident => $body:expr) => {
        match &mut $tx.inner {
            $crate::TxInner::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::TxInner::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

pub(crate) use {db_read, db_write, tx_run};

/// A bind parameter for dynamically built queries.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params.iter() {
            q = match p {
                $crate::Param::Text(s) => q.bind(s.clone()),
                $crate::Param::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// Options for opening a store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub url: String,
    pub max_connections: u32,
}

impl Db {
    /// Opens a database by URL: `sqlite://path` (or `sqlite:path`) or `postgres://…` /
    /// `postgresql://…`. Any other scheme is refused with a message that says what is accepted.
    pub async fn open(url: &str) -> Result<Db> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect_with(opts.clone())
                .await?;
            // Readers may return thousands of rows (the dashboard): a deeper row buffer lets the
            // SQLite worker thread run ahead instead of waking the reader for every row.
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.read_only(false).row_buffer_size(1024))
                .await?;
            Ok(Db::Sqlite { write, read })
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact_url(url))))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::BadUrl(format!(
                "'{}' has an unknown scheme; use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations. Safe when several nodes start at once on PostgreSQL: the
    /// migrator holds an advisory lock while it runs.
    pub async fn migrate(&self) -> Result<()> {
        migrate::run(self).await
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match self {
            Db::Sqlite { write, .. } => TxInner::Sqlite(write.begin().await?),
            Db::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        };
        Ok(Tx {
            inner,
            changed: Vec::new(),
        })
    }

    /// Closes every connection (used at shutdown so SQLite checkpoints the WAL).
    pub async fn close(&self) {
        match self {
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Runs SQLite's integrity check (PostgreSQL: always "ok").
    pub async fn integrity_check(&self) -> Result<String> {
        match self {
            Db::Sqlite { read, .. } => {
                let r: (String,) = sqlx::query_as("PRAGMA integrity_check")
                    .fetch_one(read)
                    .await?;
                Ok(r.0)
            }
            Db::Postgres(_) => Ok("ok".to_string()),
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        if !self.changed.is_empty() {
            let mut g = GENERATIONS.lock().unwrap_or_else(|e| e.into_inner());
            for c in self.changed {
                *g.entry(c).or_default() += 1;
            }
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await?,
            TxInner::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Notes that documents of `collection` were changed (see `doc_generation`).
    pub(crate) fn note_changed(&mut self, collection: &str) {
        if !self.changed.iter().any(|c| c == collection) {
            self.changed.push(collection.to_string());
        }
    }
}

/// Hides the password of a database URL, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The key used for case-insensitive unique names and lookups.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://ferry:s3cret@db:5432/ferry"),
            "postgres://ferry:***@db:5432/ferry"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn like_escapes() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
