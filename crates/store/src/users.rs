//! Users, API keys and sign-in sessions beyond what `rows.rs` has: changing and deleting users,
//! listing and revoking keys, and sessions (tokens stored only as SHA-256 hashes).

use sqlx::FromRow;

use crate::{ApiKeyRow, Db, Result, Tx, UserRow, db_read, db_write, tx_run};

const USER_COLUMNS: &str = "id, username, username_key, display_name, email, password_hash, is_service, is_active, created_at";
const KEY_COLUMNS: &str = "id, user_id, key_hash, purpose, created_at, expires_at";
const SESSION_COLUMNS: &str = "id, token_hash, csrf_hash, user_id, created_at, expires_at";

/// A sign-in session of the portal.
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct SessionRow {
    pub id: String,
    /// SHA-256 of the session token (the `OctopusIdentificationToken` cookie).
    pub token_hash: String,
    /// SHA-256 of the CSRF token the session's state-changing requests must carry.
    pub csrf_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    // Assembled from the constant column lists above; values are always bound.
    sqlx::AssertSqlSafe(s)
}

impl Db {
    /// The user whose normalised user name (`username_key`) is `key`.
    pub async fn find_user_by_key(&self, key: &str) -> Result<Option<UserRow>> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1");
        Ok(db_read!(self, c => sqlx::query_as(sql(q)).bind(key).fetch_optional(c).await?))
    }

    /// A user's API keys, oldest first.
    pub async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRow>> {
        let q = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at, id"
        );
        Ok(db_read!(self, c => sqlx::query_as(sql(q)).bind(user_id).fetch_all(c).await?))
    }

    /// The session with this token hash, with its user.
    pub async fn find_session(&self, token_hash: &str) -> Result<Option<(SessionRow, UserRow)>> {
        let q = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        let s: Option<SessionRow> =
            db_read!(self, c => sqlx::query_as(sql(q)).bind(token_hash).fetch_optional(c).await?);
        let Some(s) = s else { return Ok(None) };
        Ok(self.get_user(&s.user_id).await?.map(|u| (s, u)))
    }

    /// Removes sessions that expired before `now`; returns how many.
    pub async fn purge_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(db_write!(self, c => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(c).await?.rows_affected()
        }))
    }
}

impl Tx {
    /// Writes a user's changeable fields (names, email, password hash, active flag).
    pub async fn update_user(&mut self, u: &UserRow) -> Result<bool> {
        let r = tx_run!(self, c => {
            sqlx::query("UPDATE users SET username = $2, username_key = $3, display_name = $4, email = $5, password_hash = $6, is_active = $7 WHERE id = $1")
                .bind(&u.id).bind(&u.username).bind(&u.username_key).bind(&u.display_name).bind(&u.email)
                .bind(&u.password_hash).bind(u.is_active)
                .execute(&mut *c).await?.rows_affected()
        });
        Ok(r == 1)
    }

    /// Deletes a user with its API keys and sessions.
    pub async fn delete_user(&mut self, id: &str) -> Result<bool> {
        let r = tx_run!(self, c => {
            sqlx::query("DELETE FROM api_keys WHERE user_id = $1").bind(id).execute(&mut *c).await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&mut *c).await?;
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
        });
        Ok(r == 1)
    }

    /// One API key of a user.
    pub async fn get_api_key(&mut self, user_id: &str, id: &str) -> Result<Option<ApiKeyRow>> {
        let q = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2");
        Ok(
            tx_run!(self, c => sqlx::query_as(sql(q)).bind(id).bind(user_id).fetch_optional(&mut *c).await?),
        )
    }

    /// Revokes one API key of a user.
    pub async fn delete_api_key(&mut self, user_id: &str, id: &str) -> Result<bool> {
        let r = tx_run!(self, c => {
            sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2").bind(id).bind(user_id)
                .execute(&mut *c).await?.rows_affected()
        });
        Ok(r == 1)
    }

    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<()> {
        let q = format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
        tx_run!(self, c => {
            sqlx::query(sql(q))
                .bind(&s.id).bind(&s.token_hash).bind(&s.csrf_hash).bind(&s.user_id).bind(s.created_at).bind(s.expires_at)
                .execute(&mut *c).await?;
        });
        Ok(())
    }

    /// Ends the session with this token hash.
    pub async fn delete_session_by_hash(&mut self, token_hash: &str) -> Result<bool> {
        let r = tx_run!(self, c => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&mut *c).await?.rows_affected()
        });
        Ok(r == 1)
    }

    /// Ends every session of a user except the one with the token hash `keep` (if any);
    /// returns how many ended.
    pub async fn delete_sessions_of(&mut self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let keep = keep.unwrap_or("");
        Ok(tx_run!(self, c => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2").bind(user_id).bind(keep)
                .execute(&mut *c).await?.rows_affected()
        }))
    }
}
