//! Queries of audit event retention: the oldest events before a time, and deleting archived
//! ones.

use crate::{Db, EventRow, Result, Tx, db_read, tx_run};

const COLUMNS: &str = "id, seq, space_id, category, message, username, user_id, occurred, related_document_ids, details, ip_address";

impl Db {
    /// At most `limit` events that occurred before `cutoff` (epoch ms), oldest first.
    pub async fn events_before(&self, cutoff: i64, limit: i64) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE occurred < $1 ORDER BY occurred ASC, seq ASC LIMIT $2"
        );
        Ok(db_read!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(cutoff)
            .bind(limit.max(0))
            .fetch_all(c)
            .await?))
    }
}

impl Tx {
    /// Deletes events by id (after they were archived). Returns how many were deleted.
    pub async fn delete_events(&mut self, ids: &[String]) -> Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("DELETE FROM events WHERE id IN ({})", marks.join(", "));
            n += tx_run!(self, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for id in chunk {
                    q = q.bind(id.clone());
                }
                q.execute(&mut *c).await?.rows_affected()
            });
        }
        Ok(n)
    }
}
