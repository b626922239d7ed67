//! Deleting finished tasks with their activities and log lines (release retention and release
//! deletion). Artifacts of a task are stored as documents owned by the task and go too.

use crate::{Result, Tx, tx_run};

impl Tx {
    /// Deletes a task, its activities, its log and the documents it owns. Returns whether the
    /// task existed. The caller checks the task is not running.
    pub async fn delete_task(&mut self, id: &str) -> Result<bool> {
        let n = tx_run!(self, c => {
            sqlx::query("DELETE FROM task_log WHERE task_id = $1").bind(id).execute(&mut *c).await?;
            sqlx::query("DELETE FROM task_activities WHERE task_id = $1").bind(id).execute(&mut *c).await?;
            sqlx::query("DELETE FROM tasks WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
        });
        self.delete_docs_owned_by(id).await?;
        self.note_changed(crate::TASKS_GENERATION);
        Ok(n == 1)
    }
}
