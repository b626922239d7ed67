//! The dashboard's current state (migration 3): one row per (project, environment, tenant)
//! naming the latest deployment queued there and the latest successful deployment older than
//! it. Maintained as deployments are queued (`Tx::dashboard_deployment_queued`, in the
//! deployment's transaction) and finish (`Db::finish_task`, in the same transaction as the
//! outcome), and rebuilt for a project from its remaining deployments when releases are deleted
//! (`Tx::rebuild_dashboard_project`). Reading it joins each cell with its task by primary key:
//! no scan of the task history. See `docs/dashboard.md`.

use std::collections::BTreeMap;

use sqlx::FromRow;

use crate::{Db, Param, Result, StoreError, Tx, bind_all, db_read, tx_run};

/// A deployment just queued, as its dashboard cell records it. `tenant_id` is `""` when the
/// deployment is untenanted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DashboardQueued {
    pub space_id: String,
    pub project_id: String,
    pub environment_id: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub task_id: String,
    /// The task's `seq`: the order of deployments within a cell.
    pub task_seq: i64,
    pub release_id: String,
    pub release_version: String,
    pub channel_id: String,
    /// Epoch milliseconds.
    pub created: i64,
}

/// A cell as read for the dashboard: the current deployment with its task's state and times,
/// and the previous successful deployment (all `prev_*` are `None` when there is none).
#[derive(Clone, Debug, PartialEq)]
pub struct DashboardCell {
    pub project_id: String,
    pub environment_id: String,
    /// `""` for untenanted deployments.
    pub tenant_id: String,
    pub space_id: String,
    pub deployment_id: String,
    pub task_id: String,
    pub task_seq: i64,
    pub release_id: String,
    pub release_version: String,
    pub channel_id: String,
    pub created: i64,
    pub state: String,
    pub queue_time: i64,
    pub start_time: Option<i64>,
    pub completed_time: Option<i64>,
    pub error_message: String,
    pub has_warnings_or_errors: i64,
    pub prev_deployment_id: Option<String>,
    pub prev_task_id: Option<String>,
    pub prev_task_seq: Option<i64>,
    pub prev_release_id: Option<String>,
    pub prev_release_version: Option<String>,
    pub prev_channel_id: Option<String>,
    pub prev_created: Option<i64>,
    pub prev_state: Option<String>,
    pub prev_queue_time: Option<i64>,
    pub prev_start_time: Option<i64>,
    pub prev_completed_time: Option<i64>,
    pub prev_has_warnings_or_errors: Option<i64>,
}

/// Which cells to read. Empty lists mean "no filter".
#[derive(Clone, Debug, Default)]
pub struct DashboardQuery {
    pub space_id: String,
    pub project_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    /// `None`: every cell, tenanted or not. `Some(ids)`: untenanted cells plus the cells of
    /// these tenants (`Some(vec![])` is untenanted cells only).
    pub tenant_ids: Option<Vec<String>>,
}

/// At most this many values in one `IN (…)` list; longer project lists are read in chunks.
const IN_CHUNK: usize = 500;

/// The cell query. It returns **one row**: every cell packed into one text by `string_agg`
/// (SQLite ≥ 3.44, which sqlx bundles, and PostgreSQL spell it the same). The SQLite driver
/// hands each row from its worker thread to the reader through a channel and copies every
/// value of it, which cost more than the query itself for a page of thousands of cells.
/// Cells are separated by `RS` (U+001E) and fields by `US` (U+001F); the user text among them
/// (release versions, the error message) has both characters replaced by spaces in SQL. NULL
/// becomes an empty field. The order is restored in Rust.
const CELL_SELECT: &str = "SELECT COALESCE(string_agg(
    c.project_id || '\u{1f}' || c.environment_id || '\u{1f}' || c.tenant_id || '\u{1f}' || c.space_id
    || '\u{1f}' || c.deployment_id || '\u{1f}' || c.task_id || '\u{1f}' || CAST(c.task_seq AS TEXT)
    || '\u{1f}' || c.release_id || '\u{1f}' || c.channel_id || '\u{1f}' || CAST(c.created AS TEXT)
    || '\u{1f}' || t.state || '\u{1f}' || CAST(t.queue_time AS TEXT)
    || '\u{1f}' || COALESCE(CAST(t.start_time AS TEXT), '') || '\u{1f}' || COALESCE(CAST(t.completed_time AS TEXT), '')
    || '\u{1f}' || CAST(t.has_warnings_or_errors AS TEXT)
    || '\u{1f}' || COALESCE(c.prev_deployment_id, '') || '\u{1f}' || COALESCE(c.prev_task_id, '')
    || '\u{1f}' || COALESCE(CAST(c.prev_task_seq AS TEXT), '') || '\u{1f}' || COALESCE(c.prev_release_id, '')
    || '\u{1f}' || COALESCE(c.prev_channel_id, '') || '\u{1f}' || COALESCE(CAST(c.prev_created AS TEXT), '')
    || '\u{1f}' || COALESCE(p.state, '') || '\u{1f}' || COALESCE(CAST(p.queue_time AS TEXT), '')
    || '\u{1f}' || COALESCE(CAST(p.start_time AS TEXT), '') || '\u{1f}' || COALESCE(CAST(p.completed_time AS TEXT), '')
    || '\u{1f}' || COALESCE(CAST(p.has_warnings_or_errors AS TEXT), '')
    || '\u{1f}' || REPLACE(REPLACE(c.release_version, '\u{1e}', ' '), '\u{1f}', ' ')
    || '\u{1f}' || REPLACE(REPLACE(COALESCE(c.prev_release_version, ''), '\u{1e}', ' '), '\u{1f}', ' ')
    || '\u{1f}' || REPLACE(REPLACE(t.error_message, '\u{1e}', ' '), '\u{1f}', ' '),
    '\u{1e}'), '')
  FROM dashboard_cells c
  JOIN tasks t ON t.id = c.task_id
  LEFT JOIN tasks p ON p.id = c.prev_task_id";

/// Separates cells, and fields of a cell, in `CELL_SELECT`'s answer.
const RS: char = '\u{1e}';
const US: char = '\u{1f}';
const FIELDS: usize = 29;

fn unpack(packed: &str) -> Result<DashboardCell> {
    let f: Vec<&str> = packed.split(US).collect();
    if f.len() != FIELDS {
        return Err(StoreError::Corrupt(format!(
            "a dashboard cell has {} fields, not {FIELDS}",
            f.len()
        )));
    }
    let int = |i: usize| -> Result<i64> {
        f[i].parse().map_err(|_| {
            StoreError::Corrupt(format!("dashboard field {i} is not a number: '{}'", f[i]))
        })
    };
    let opt_int = |i: usize| -> Result<Option<i64>> {
        if f[i].is_empty() {
            Ok(None)
        } else {
            int(i).map(Some)
        }
    };
    let opt_str = |i: usize| (!f[i].is_empty()).then(|| f[i].to_string());
    let has_prev = !f[15].is_empty();
    Ok(DashboardCell {
        project_id: f[0].to_string(),
        environment_id: f[1].to_string(),
        tenant_id: f[2].to_string(),
        space_id: f[3].to_string(),
        deployment_id: f[4].to_string(),
        task_id: f[5].to_string(),
        task_seq: int(6)?,
        release_id: f[7].to_string(),
        release_version: f[26].to_string(),
        channel_id: f[8].to_string(),
        created: int(9)?,
        state: f[10].to_string(),
        queue_time: int(11)?,
        start_time: opt_int(12)?,
        completed_time: opt_int(13)?,
        error_message: f[28].to_string(),
        has_warnings_or_errors: int(14)?,
        prev_deployment_id: opt_str(15),
        prev_task_id: opt_str(16),
        prev_task_seq: opt_int(17)?,
        prev_release_id: opt_str(18),
        prev_release_version: has_prev.then(|| f[27].to_string()),
        prev_channel_id: opt_str(19),
        prev_created: opt_int(20)?,
        prev_state: opt_str(21),
        prev_queue_time: opt_int(22)?,
        prev_start_time: opt_int(23)?,
        prev_completed_time: opt_int(24)?,
        prev_has_warnings_or_errors: opt_int(25)?,
    })
}

fn in_list(col: &str, vals: &[String], params: &mut Vec<Param>, sql: &mut String) {
    sql.push_str(&format!(" AND {col} IN ("));
    for (i, v) in vals.iter().enumerate() {
        params.push(Param::Text(v.clone()));
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", params.len()));
    }
    sql.push(')');
}

impl Db {
    /// Reads the dashboard cells of a space, ordered by project, environment and tenant.
    pub async fn dashboard_cells(&self, q: &DashboardQuery) -> Result<Vec<DashboardCell>> {
        let chunks: Vec<&[String]> = if q.project_ids.is_empty() {
            vec![&[]]
        } else {
            q.project_ids.chunks(IN_CHUNK).collect()
        };
        let mut out = Vec::new();
        for projects in chunks {
            let mut params = vec![Param::Text(q.space_id.clone())];
            let mut sql = format!("{CELL_SELECT} WHERE c.space_id = $1");
            if !projects.is_empty() {
                in_list("c.project_id", projects, &mut params, &mut sql);
            }
            if !q.environment_ids.is_empty() {
                in_list(
                    "c.environment_id",
                    &q.environment_ids,
                    &mut params,
                    &mut sql,
                );
            }
            if let Some(tenants) = &q.tenant_ids {
                if tenants.is_empty() {
                    sql.push_str(" AND c.tenant_id = ''");
                } else {
                    let mut ors = String::new();
                    in_list("c.tenant_id", tenants, &mut params, &mut ors);
                    // `ors` is " AND c.tenant_id IN (…)": keep the list, make it an alternative.
                    let list = ors.trim_start_matches(" AND ");
                    sql.push_str(&format!(" AND (c.tenant_id = '' OR {list})"));
                }
            }
            let packed: (String,) = db_read!(self, c => {
                bind_all!(sqlx::query_as(safe(&sql)), params).fetch_one(c).await?
            });
            for cell in packed.0.split(RS).filter(|c| !c.is_empty()) {
                out.push(unpack(cell)?);
            }
        }
        out.sort_by(|a, b| {
            (&a.project_id, &a.environment_id, &a.tenant_id).cmp(&(
                &b.project_id,
                &b.environment_id,
                &b.tenant_id,
            ))
        });
        Ok(out)
    }

    /// Rebuilds a project's cells in its own transaction (see `Tx::rebuild_dashboard_project`).
    pub async fn rebuild_dashboard_project(&self, project_id: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = tx.rebuild_dashboard_project(project_id).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// A deployment task of a project, for a rebuild.
#[derive(Clone, Debug, FromRow)]
struct RebuildRow {
    task_id: String,
    task_seq: i64,
    state: String,
    space_id: String,
    deployment_id: String,
    environment_id: String,
    tenant_id: String,
    release_id: String,
    release_version: String,
    channel_id: String,
    created: i64,
}

impl Tx {
    /// Records a newly queued deployment as its cell's current one. If the deployment it
    /// replaces had succeeded, that one becomes the cell's previous (successful) deployment; if
    /// it is still running, `finish_task` moves it there should it succeed. A deployment older
    /// than the cell's current one changes nothing.
    pub async fn dashboard_deployment_queued(&mut self, d: &DashboardQueued) -> Result<()> {
        self.note_changed(crate::CELLS_GENERATION);
        tx_run!(self, c => {
            // Lock the cell's row first (a no-op update; PostgreSQL holds the row lock to the end
            // of the transaction). A deployment queued and a task finished on two nodes at once
            // then take turns, and the next statement's snapshot sees the other's commit: the
            // previous deployment is never missed (see `docs/dashboard.md`).
            sqlx::query(
                "UPDATE dashboard_cells SET task_seq = task_seq
                 WHERE project_id = $1 AND environment_id = $2 AND tenant_id = $3",
            )
            .bind(&d.project_id).bind(&d.environment_id).bind(&d.tenant_id)
            .execute(&mut *c).await?;
            sqlx::query(
                "UPDATE dashboard_cells SET prev_deployment_id = deployment_id, prev_task_id = task_id,
                   prev_task_seq = task_seq, prev_release_id = release_id, prev_release_version = release_version,
                   prev_channel_id = channel_id, prev_created = created
                 WHERE project_id = $1 AND environment_id = $2 AND tenant_id = $3 AND task_seq < $4
                   AND EXISTS (SELECT 1 FROM tasks WHERE tasks.id = dashboard_cells.task_id AND tasks.state = 'Success')",
            )
            .bind(&d.project_id).bind(&d.environment_id).bind(&d.tenant_id).bind(d.task_seq)
            .execute(&mut *c).await?;
            sqlx::query(
                "INSERT INTO dashboard_cells (project_id, environment_id, tenant_id, space_id, deployment_id, task_id,
                   task_seq, release_id, release_version, channel_id, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (project_id, environment_id, tenant_id) DO UPDATE SET
                   space_id = excluded.space_id, deployment_id = excluded.deployment_id, task_id = excluded.task_id,
                   task_seq = excluded.task_seq, release_id = excluded.release_id,
                   release_version = excluded.release_version, channel_id = excluded.channel_id,
                   created = excluded.created
                 WHERE dashboard_cells.task_seq < excluded.task_seq",
            )
            .bind(&d.project_id).bind(&d.environment_id).bind(&d.tenant_id).bind(&d.space_id)
            .bind(&d.deployment_id).bind(&d.task_id).bind(d.task_seq).bind(&d.release_id)
            .bind(&d.release_version).bind(&d.channel_id).bind(d.created)
            .execute(&mut *c).await?;
        });
        Ok(())
    }

    /// A deployment task finished `Success`: if its cell has moved on to a newer deployment and
    /// this one is newer than the cell's previous one, it becomes the previous one. (When it is
    /// still the current deployment, nothing changes: the task row carries its state.)
    pub(crate) async fn dashboard_deployment_succeeded(
        &mut self,
        task_seq: i64,
        task_id: &str,
        deployment_id: &str,
        project_id: &str,
        environment_id: &str,
        tenant_id: &str,
        release_id: &str,
    ) -> Result<()> {
        self.note_changed(crate::CELLS_GENERATION);
        tx_run!(self, c => {
            // Lock the row first, as `dashboard_deployment_queued` does.
            sqlx::query(
                "UPDATE dashboard_cells SET task_seq = task_seq
                 WHERE project_id = $1 AND environment_id = $2 AND tenant_id = $3",
            )
            .bind(project_id).bind(environment_id).bind(tenant_id)
            .execute(&mut *c).await?;
            sqlx::query(
                "UPDATE dashboard_cells SET prev_deployment_id = $5, prev_task_id = $6, prev_task_seq = $4,
                   prev_release_id = $7,
                   prev_release_version = COALESCE((SELECT name FROM documents WHERE id = $7), ''),
                   prev_channel_id = COALESCE((SELECT ref1 FROM documents WHERE id = $7), ''),
                   prev_created = COALESCE((SELECT created_at FROM documents WHERE id = $5), 0)
                 WHERE project_id = $1 AND environment_id = $2 AND tenant_id = $3 AND task_seq > $4
                   AND (prev_task_seq IS NULL OR prev_task_seq < $4)",
            )
            .bind(project_id).bind(environment_id).bind(tenant_id).bind(task_seq)
            .bind(deployment_id).bind(task_id).bind(release_id)
            .execute(&mut *c).await?;
        });
        Ok(())
    }

    /// Recomputes every cell of a project from its deployment tasks whose deployment and release
    /// documents still exist (used after releases are deleted): per (environment, tenant) the
    /// newest deployment is current and the newest other successful one is previous. Returns
    /// the number of cells written.
    pub async fn rebuild_dashboard_project(&mut self, project_id: &str) -> Result<u64> {
        self.note_changed(crate::CELLS_GENERATION);
        let rows: Vec<RebuildRow> = tx_run!(self, c => {
            sqlx::query_as(
                "SELECT t.id AS task_id, t.seq AS task_seq, t.state, t.space_id, t.deployment_id,
                   t.environment_id, COALESCE(t.tenant_id, '') AS tenant_id, t.release_id,
                   r.name AS release_version, r.ref1 AS channel_id, d.created_at AS created
                 FROM tasks t
                 JOIN documents d ON d.id = t.deployment_id
                 JOIN documents r ON r.id = t.release_id
                 WHERE t.project_id = $1 AND t.deployment_id IS NOT NULL AND t.environment_id IS NOT NULL
                 ORDER BY t.seq",
            )
            .bind(project_id)
            .fetch_all(&mut *c).await?
        });
        // (environment, tenant) → (current, previous success), in task order.
        let mut cells: BTreeMap<(String, String), (RebuildRow, Option<RebuildRow>)> =
            BTreeMap::new();
        for r in rows {
            let key = (r.environment_id.clone(), r.tenant_id.clone());
            match cells.remove(&key) {
                None => {
                    cells.insert(key, (r, None));
                }
                Some((cur, prev)) => {
                    let prev = if cur.state == "Success" {
                        Some(cur)
                    } else {
                        prev
                    };
                    cells.insert(key, (r, prev));
                }
            }
        }
        tx_run!(self, c => {
            sqlx::query("DELETE FROM dashboard_cells WHERE project_id = $1")
                .bind(project_id).execute(&mut *c).await?;
        });
        let mut n = 0;
        for (cur, prev) in cells.into_values() {
            tx_run!(self, c => {
                sqlx::query(
                    "INSERT INTO dashboard_cells (project_id, environment_id, tenant_id, space_id, deployment_id, task_id,
                       task_seq, release_id, release_version, channel_id, created, prev_deployment_id, prev_task_id,
                       prev_task_seq, prev_release_id, prev_release_version, prev_channel_id, prev_created)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                )
                .bind(project_id).bind(&cur.environment_id).bind(&cur.tenant_id).bind(&cur.space_id)
                .bind(&cur.deployment_id).bind(&cur.task_id).bind(cur.task_seq).bind(&cur.release_id)
                .bind(&cur.release_version).bind(&cur.channel_id).bind(cur.created)
                .bind(prev.as_ref().map(|p| p.deployment_id.clone()))
                .bind(prev.as_ref().map(|p| p.task_id.clone()))
                .bind(prev.as_ref().map(|p| p.task_seq))
                .bind(prev.as_ref().map(|p| p.release_id.clone()))
                .bind(prev.as_ref().map(|p| p.release_version.clone()))
                .bind(prev.as_ref().map(|p| p.channel_id.clone()))
                .bind(prev.as_ref().map(|p| p.created))
                .execute(&mut *c).await?;
            });
            n += 1;
        }
        Ok(n)
    }
}

/// Marks a query string built in this module as audited: it is assembled only from constant
/// fragments and numbered placeholders; values are always bound, never spliced.
fn safe(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_string())
}
