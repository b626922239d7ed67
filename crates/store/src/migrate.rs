//! A small embedded migrator: numbered SQL files per backend, applied in order, each in its own
//! transaction, recorded in `ferry_migrations`. On PostgreSQL an advisory lock serialises nodes
//! that start at the same time.

use crate::{Db, Result, StoreError};

/// (version, name, sqlite sql, postgres sql). Append-only: never edit a landed migration.
pub(crate) const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "packages",
        include_str!("../migrations/sqlite/0002_packages.sql"),
        include_str!("../migrations/postgres/0002_packages.sql"),
    ),
    (
        3,
        "dashboard",
        include_str!("../migrations/sqlite/0003_dashboard.sql"),
        include_str!("../migrations/postgres/0003_dashboard.sql"),
    ),
    (
        4,
        "sessions",
        include_str!("../migrations/sqlite/0004_sessions.sql"),
        include_str!("../migrations/postgres/0004_sessions.sql"),
    ),
    (
        5,
        "documents_owner",
        include_str!("../migrations/sqlite/0005_documents_owner.sql"),
        include_str!("../migrations/postgres/0005_documents_owner.sql"),
    ),
];

/// The migration versions compiled into this binary (for the tidy test).
pub fn versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.0).collect()
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ferry_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Arbitrary constant key for `pg_advisory_lock`.
const PG_LOCK_KEY: i64 = 0x4665_7272_794d_6967; // "FerryMig"

pub(crate) async fn run(db: &Db) -> Result<()> {
    match db {
        Db::Sqlite { write, .. } => {
            let mut conn = write.acquire().await?;
            sqlx::query(CREATE_TABLE).execute(&mut *conn).await?;
            for (version, name, sql, _) in MIGRATIONS {
                let done: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM ferry_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if done.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::raw_sql(*sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::Migration(format!("{version} {name}: {e}")))?;
                sqlx::query(
                    "INSERT INTO ferry_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(version)
                .bind(name)
                .bind(ferry_domain::time::now_ms())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok(())
        }
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            let result = run_pg(&mut conn).await;
            let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            result?;
            unlock?;
            Ok(())
        }
    }
}

async fn run_pg(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query(CREATE_TABLE).execute(&mut *conn).await?;
    for (version, name, _, sql) in MIGRATIONS {
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM ferry_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Migration(format!("{version} {name}: {e}")))?;
        sqlx::query("INSERT INTO ferry_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(ferry_domain::time::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidy: both migration folders hold the same numbered files, and every file is compiled in.
    #[test]
    fn migration_folders_match() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let list = |sub: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|n| n.ends_with(".sql"))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let sqlite = list("sqlite");
        let postgres = list("postgres");
        assert_eq!(
            sqlite, postgres,
            "migrations/sqlite and migrations/postgres differ"
        );
        let numbers: Vec<i64> = sqlite
            .iter()
            .filter_map(|n| n.split('_').next().and_then(|d| d.parse().ok()))
            .collect();
        assert_eq!(
            numbers,
            versions(),
            "a migration file is not listed in MIGRATIONS"
        );
    }
}
