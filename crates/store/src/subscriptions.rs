//! Queries the webhook delivery worker needs: the audit events after a position, in order.

use crate::{Db, EventRow, Result, db_read};

const COLUMNS: &str = "id, seq, space_id, category, message, username, user_id, occurred, related_document_ids, details, ip_address";

impl Db {
    /// At most `limit` events of `space_id` with `seq > after`, oldest first.
    pub async fn events_after(
        &self,
        space_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE seq > $1 AND space_id = $2 ORDER BY seq ASC LIMIT $3"
        );
        Ok(db_read!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(space_id)
            .bind(limit.max(0))
            .fetch_all(c)
            .await?))
    }

    /// The highest event `seq` (0 when there is none).
    pub async fn last_event_seq(&self) -> Result<i64> {
        let row: (Option<i64>,) = db_read!(self, c => sqlx::query_as("SELECT MAX(seq) FROM events")
            .fetch_one(c)
            .await?);
        Ok(row.0.unwrap_or(0))
    }
}
