//! Rows and the queries over them: documents, id sequences, tasks and their logs, events,
//! users and API keys, server metadata.

use sqlx::FromRow;

use crate::{Db, Param, Result, Tx, bind_all, db_read, db_write, like_escape, tx_run};

// ---------------------------------------------------------------------------------------------
// Server metadata and ids

impl Db {
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = db_read!(self, c => {
            sqlx::query_as("SELECT value FROM server_meta WHERE key = $1").bind(key).fetch_optional(c).await?
        });
        Ok(row.map(|r| r.0))
    }
}

impl Tx {
    /// Sets a metadata value if it is not set yet; returns the value now stored.
    pub async fn init_meta(&mut self, key: &str, value: &str) -> Result<String> {
        tx_run!(self, c => {
            sqlx::query("INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key).bind(value).execute(&mut *c).await?;
            let r: (String,) = sqlx::query_as("SELECT value FROM server_meta WHERE key = $1")
                .bind(key).fetch_one(&mut *c).await?;
            Ok(r.0)
        })
    }

    /// Takes the next number of a collection's id sequence (1, 2, 3, …).
    pub async fn next_seq(&mut self, collection: &str) -> Result<i64> {
        let r: (i64,) = tx_run!(self, c => {
            sqlx::query_as(
                "INSERT INTO id_sequences (collection, next_value) VALUES ($1, 1)
                 ON CONFLICT (collection) DO UPDATE SET next_value = id_sequences.next_value + 1
                 RETURNING next_value",
            )
            .bind(collection)
            .fetch_one(&mut *c)
            .await?
        });
        Ok(r.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Documents

/// A stored document: an API resource as JSON plus the columns it is found by.
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct DocRow {
    pub id: String,
    pub collection: String,
    pub space_id: String,
    pub owner_id: String,
    pub name: String,
    pub name_key: String,
    pub slug: String,
    pub sort_order: i64,
    /// Generic indexed references (e.g. a deployment's environment and release).
    pub ref1: String,
    pub ref2: String,
    pub seq: i64,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A query over one collection of documents.
#[derive(Clone, Debug, Default)]
pub struct DocQuery {
    pub collection: String,
    pub space_id: Option<String>,
    pub owner_id: Option<String>,
    pub ids: Vec<String>,
    /// Case-insensitive substring of the name.
    pub partial_name: Option<String>,
    /// Exact name, case-insensitive.
    pub name: Option<String>,
    /// Any of these values in `ref1` / `ref2`.
    pub ref1_in: Vec<String>,
    pub ref2_in: Vec<String>,
    /// Any of these owners (in addition to `owner_id`).
    pub owner_in: Vec<String>,
    pub skip: i64,
    /// `None` means all.
    pub take: Option<i64>,
    /// Newest first instead of (sort order, creation).
    pub newest_first: bool,
}

const DOC_COLUMNS: &str = "id, collection, space_id, owner_id, name, name_key, slug, sort_order, ref1, ref2, seq, body, created_at, updated_at";

impl DocQuery {
    pub fn new(collection: &str) -> Self {
        DocQuery {
            collection: collection.to_string(),
            ..DocQuery::default()
        }
    }

    fn where_clause(&self) -> (String, Vec<Param>) {
        let mut sql = String::from(" WHERE collection = $1");
        let mut params = vec![Param::Text(self.collection.clone())];
        let push = |cond: &str, p: Param, params: &mut Vec<Param>, sql: &mut String| {
            params.push(p);
            sql.push_str(&cond.replace("$?", &format!("${}", params.len())));
        };
        if let Some(s) = &self.space_id {
            push(
                " AND space_id = $?",
                Param::Text(s.clone()),
                &mut params,
                &mut sql,
            );
        }
        if let Some(o) = &self.owner_id {
            push(
                " AND owner_id = $?",
                Param::Text(o.clone()),
                &mut params,
                &mut sql,
            );
        }
        if let Some(n) = &self.name {
            push(
                " AND name_key = $?",
                Param::Text(crate::name_key(n)),
                &mut params,
                &mut sql,
            );
        }
        if let Some(p) = &self.partial_name {
            let pat = format!("%{}%", like_escape(&p.to_lowercase()));
            push(
                " AND name_key LIKE $? ESCAPE '\\'",
                Param::Text(pat),
                &mut params,
                &mut sql,
            );
        }
        for (col, vals) in [
            ("id", &self.ids),
            ("ref1", &self.ref1_in),
            ("ref2", &self.ref2_in),
            ("owner_id", &self.owner_in),
        ] {
            if vals.is_empty() {
                continue;
            }
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
        (sql, params)
    }
}

impl Db {
    pub async fn get_doc(&self, id: &str) -> Result<Option<DocRow>> {
        let sql = format!("SELECT {DOC_COLUMNS} FROM documents WHERE id = $1");
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(c).await?))
    }

    /// Finds a document by id, slug or name (case-insensitive), in that order.
    pub async fn find_doc(
        &self,
        collection: &str,
        space_id: Option<&str>,
        owner_id: Option<&str>,
        key: &str,
    ) -> Result<Option<DocRow>> {
        if let Some(d) = self.get_doc(key).await? {
            if d.collection == collection
                && space_id.is_none_or(|s| s == d.space_id)
                && owner_id.is_none_or(|o| o == d.owner_id)
            {
                return Ok(Some(d));
            }
        }
        let mut q = DocQuery::new(collection);
        q.space_id = space_id.map(str::to_string);
        q.owner_id = owner_id.map(str::to_string);
        let (mut sql, mut params) = q.where_clause();
        params.push(Param::Text(key.to_lowercase()));
        sql.push_str(&format!(
            " AND (slug = ${n} OR name_key = ${n})",
            n = params.len()
        ));
        let sql = format!("SELECT {DOC_COLUMNS} FROM documents{sql} ORDER BY seq LIMIT 1");
        Ok(
            db_read!(self, c => bind_all!(sqlx::query_as(safe(&sql)), params).fetch_optional(c).await?),
        )
    }

    /// Lists documents; returns the page and the total count of matches.
    pub async fn list_docs(&self, q: &DocQuery) -> Result<(Vec<DocRow>, i64)> {
        let (filter, params) = q.where_clause();
        let count_sql = format!("SELECT COUNT(*) FROM documents{filter}");
        let total: (i64,) = db_read!(self, c => bind_all!(sqlx::query_as(safe(&count_sql)), params).fetch_one(c).await?);
        let order = if q.newest_first {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY sort_order, seq"
        };
        let mut sql = format!("SELECT {DOC_COLUMNS} FROM documents{filter}{order}");
        let mut params = params;
        if let Some(take) = q.take {
            params.push(Param::Int(take.max(0)));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
            params.push(Param::Int(q.skip.max(0)));
            sql.push_str(&format!(" OFFSET ${}", params.len()));
        } else if q.skip > 0 {
            params.push(Param::Int(i64::MAX));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
            params.push(Param::Int(q.skip));
            sql.push_str(&format!(" OFFSET ${}", params.len()));
        }
        let rows: Vec<DocRow> =
            db_read!(self, c => bind_all!(sqlx::query_as(safe(&sql)), params).fetch_all(c).await?);
        Ok((rows, total.0))
    }
}

impl Tx {
    pub async fn get_doc(&mut self, id: &str) -> Result<Option<DocRow>> {
        let sql = format!("SELECT {DOC_COLUMNS} FROM documents WHERE id = $1");
        Ok(tx_run!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(&mut *c).await?))
    }

    /// Inserts a document. A duplicate (collection, space, owner, name) is `StoreError::Conflict`.
    pub async fn insert_doc(&mut self, d: &DocRow) -> Result<()> {
        tx_run!(self, c => {
            sqlx::query(
                "INSERT INTO documents (id, collection, space_id, owner_id, name, name_key, slug, sort_order, ref1, ref2, seq, body, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&d.id).bind(&d.collection).bind(&d.space_id).bind(&d.owner_id).bind(&d.name)
            .bind(&d.name_key).bind(&d.slug).bind(d.sort_order).bind(&d.ref1).bind(&d.ref2).bind(d.seq).bind(&d.body)
            .bind(d.created_at).bind(d.updated_at)
            .execute(&mut *c).await?;
        });
        self.note_changed(&d.collection);
        Ok(())
    }

    /// Replaces a document's searchable columns and body. Returns false if it does not exist.
    pub async fn update_doc(&mut self, d: &DocRow) -> Result<bool> {
        let r = tx_run!(self, c => {
            sqlx::query(
                "UPDATE documents SET name = $2, name_key = $3, slug = $4, sort_order = $5, body = $6, updated_at = $7,
                   ref1 = $8, ref2 = $9
                 WHERE id = $1",
            )
            .bind(&d.id).bind(&d.name).bind(&d.name_key).bind(&d.slug).bind(d.sort_order)
            .bind(&d.body).bind(d.updated_at).bind(&d.ref1).bind(&d.ref2)
            .execute(&mut *c).await?.rows_affected()
        });
        if r == 1 {
            self.note_changed(&d.collection);
        }
        Ok(r == 1)
    }

    pub async fn delete_doc(&mut self, id: &str) -> Result<bool> {
        let gone: Option<(String,)> = tx_run!(self, c => {
            sqlx::query_as("DELETE FROM documents WHERE id = $1 RETURNING collection").bind(id).fetch_optional(&mut *c).await?
        });
        if let Some((collection,)) = &gone {
            self.note_changed(collection);
        }
        Ok(gone.is_some())
    }

    /// Deletes every document owned by `owner_id` (e.g. a project's channels).
    pub async fn delete_docs_owned_by(&mut self, owner_id: &str) -> Result<u64> {
        let gone: Vec<(String,)> = tx_run!(self, c => {
            sqlx::query_as("DELETE FROM documents WHERE owner_id = $1 RETURNING collection").bind(owner_id).fetch_all(&mut *c).await?
        });
        for (collection,) in &gone {
            self.note_changed(collection);
        }
        Ok(gone.len() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// A server task row.
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub seq: i64,
    pub space_id: String,
    pub name: String,
    pub description: String,
    pub state: String,
    pub arguments: String,
    pub project_id: Option<String>,
    pub environment_id: Option<String>,
    pub tenant_id: Option<String>,
    pub deployment_id: Option<String>,
    pub release_id: Option<String>,
    pub queue_time: i64,
    pub queue_time_expiry: Option<i64>,
    pub start_time: Option<i64>,
    pub completed_time: Option<i64>,
    pub last_updated: i64,
    pub error_message: String,
    pub has_warnings_or_errors: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub epoch: i64,
    pub attempts: i64,
    pub queue_after: i64,
    pub cancel_requested: i64,
    pub created_by: String,
}

const TASK_COLUMNS: &str = "id, seq, space_id, name, description, state, arguments, project_id, environment_id, tenant_id, deployment_id, release_id, queue_time, queue_time_expiry, start_time, completed_time, last_updated, error_message, has_warnings_or_errors, lease_owner, lease_expires_at, epoch, attempts, queue_after, cancel_requested, created_by";

/// Filters for listing tasks.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    pub space_id: Option<String>,
    pub ids: Vec<String>,
    pub states: Vec<String>,
    pub name: Option<String>,
    pub project_id: Option<String>,
    pub environment_id: Option<String>,
    pub release_id: Option<String>,
    pub active_only: bool,
    pub skip: i64,
    pub take: Option<i64>,
}

/// A claimed task: the row plus the lease this node now holds.
#[derive(Clone, Debug)]
pub struct Claim {
    pub task: TaskRow,
    pub node: String,
    pub epoch: i64,
}

impl Tx {
    pub async fn insert_task(&mut self, t: &TaskRow) -> Result<()> {
        tx_run!(self, c => {
            sqlx::query(safe(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"
            )))
            .bind(&t.id).bind(t.seq).bind(&t.space_id).bind(&t.name).bind(&t.description)
            .bind(&t.state).bind(&t.arguments).bind(&t.project_id).bind(&t.environment_id)
            .bind(&t.tenant_id).bind(&t.deployment_id).bind(&t.release_id).bind(t.queue_time).bind(t.queue_time_expiry)
            .bind(t.start_time).bind(t.completed_time).bind(t.last_updated).bind(&t.error_message)
            .bind(t.has_warnings_or_errors).bind(&t.lease_owner).bind(t.lease_expires_at).bind(t.epoch)
            .bind(t.attempts).bind(t.queue_after).bind(t.cancel_requested).bind(&t.created_by)
            .execute(&mut *c).await?;
        });
        self.note_changed(crate::TASKS_GENERATION);
        Ok(())
    }

    pub async fn get_task(&mut self, id: &str) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        Ok(tx_run!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(&mut *c).await?))
    }

    /// Asks a task to stop. A queued task becomes `Canceled` at once; an executing one becomes
    /// `Cancelling` and its executor stops it. Returns the task after the change.
    pub async fn request_cancel(&mut self, id: &str, now: i64) -> Result<Option<TaskRow>> {
        tx_run!(self, c => {
            sqlx::query(
                "UPDATE tasks SET state = 'Canceled', completed_time = $2, last_updated = $2, cancel_requested = 1,
                   error_message = 'The task was canceled before it started'
                 WHERE id = $1 AND state = 'Queued'",
            ).bind(id).bind(now).execute(&mut *c).await?;
            sqlx::query(
                "UPDATE tasks SET state = 'Cancelling', last_updated = $2, cancel_requested = 1
                 WHERE id = $1 AND state = 'Executing'",
            ).bind(id).bind(now).execute(&mut *c).await?;
        });
        self.note_changed(crate::TASKS_GENERATION);
        self.get_task(id).await
    }
}

impl Db {
    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(c).await?))
    }

    /// Lists tasks newest first; returns the page and the total count.
    pub async fn list_tasks(&self, q: &TaskQuery) -> Result<(Vec<TaskRow>, i64)> {
        let mut sql = String::from(" WHERE 1 = 1");
        let mut params: Vec<Param> = Vec::new();
        let eq = |col: &str, v: &Option<String>, params: &mut Vec<Param>, sql: &mut String| {
            if let Some(v) = v {
                params.push(Param::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = ${}", params.len()));
            }
        };
        eq("space_id", &q.space_id, &mut params, &mut sql);
        eq("name", &q.name, &mut params, &mut sql);
        eq("project_id", &q.project_id, &mut params, &mut sql);
        eq("environment_id", &q.environment_id, &mut params, &mut sql);
        eq("release_id", &q.release_id, &mut params, &mut sql);
        let in_list = |col: &str, vals: &[String], params: &mut Vec<Param>, sql: &mut String| {
            if vals.is_empty() {
                return;
            }
            sql.push_str(&format!(" AND {col} IN ("));
            for (i, v) in vals.iter().enumerate() {
                params.push(Param::Text(v.clone()));
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", params.len()));
            }
            sql.push(')');
        };
        in_list("id", &q.ids, &mut params, &mut sql);
        in_list("state", &q.states, &mut params, &mut sql);
        if q.active_only {
            sql.push_str(" AND state IN ('Queued', 'Executing', 'Cancelling')");
        }
        let count_sql = format!("SELECT COUNT(*) FROM tasks{sql}");
        let total: (i64,) = db_read!(self, c => bind_all!(sqlx::query_as(safe(&count_sql)), params).fetch_one(c).await?);
        let mut list_sql = format!("SELECT {TASK_COLUMNS} FROM tasks{sql} ORDER BY seq DESC");
        if let Some(take) = q.take {
            params.push(Param::Int(take.max(0)));
            list_sql.push_str(&format!(" LIMIT ${}", params.len()));
            params.push(Param::Int(q.skip.max(0)));
            list_sql.push_str(&format!(" OFFSET ${}", params.len()));
        }
        let rows: Vec<TaskRow> = db_read!(self, c => bind_all!(sqlx::query_as(safe(&list_sql)), params).fetch_all(c).await?);
        Ok((rows, total.0))
    }

    /// Counts tasks by state (for metrics).
    pub async fn count_tasks_by_state(&self) -> Result<Vec<(String, i64)>> {
        Ok(db_read!(self, c => {
            sqlx::query_as("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetch_all(c).await?
        }))
    }

    /// Claims the oldest runnable queued task for `node`, with a lease until `lease_until`.
    /// The claim increments the task's epoch (the fencing token every later write must show).
    pub async fn claim_task(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<Claim>> {
        let sql_sqlite = format!(
            "UPDATE tasks SET state = 'Executing', lease_owner = $1, lease_expires_at = $2, epoch = epoch + 1,
               attempts = attempts + 1, start_time = COALESCE(start_time, $3), last_updated = $3
             WHERE id = (SELECT id FROM tasks WHERE state = 'Queued' AND queue_after <= $3 ORDER BY seq LIMIT 1)
             RETURNING {TASK_COLUMNS}"
        );
        let sql_pg = format!(
            "UPDATE tasks SET state = 'Executing', lease_owner = $1, lease_expires_at = $2, epoch = epoch + 1,
               attempts = attempts + 1, start_time = COALESCE(start_time, $3), last_updated = $3
             WHERE id = (SELECT id FROM tasks WHERE state = 'Queued' AND queue_after <= $3 ORDER BY seq LIMIT 1
                         FOR UPDATE SKIP LOCKED)
             RETURNING {TASK_COLUMNS}"
        );
        let row: Option<TaskRow> = match self {
            Db::Sqlite { write, .. } => {
                sqlx::query_as(safe(&sql_sqlite))
                    .bind(node)
                    .bind(lease_until)
                    .bind(now)
                    .fetch_optional(write)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(safe(&sql_pg))
                    .bind(node)
                    .bind(lease_until)
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
            }
        };
        if row.is_some() {
            crate::bump_generation(crate::TASKS_GENERATION);
        }
        Ok(row.map(|t| Claim {
            node: node.to_string(),
            epoch: t.epoch,
            task: t,
        }))
    }

    /// Renews a lease. Returns the task's current state and whether cancellation was asked, or
    /// `None` when this node no longer holds the lease (it must stop: it has been fenced off).
    pub async fn renew_lease(
        &self,
        id: &str,
        node: &str,
        epoch: i64,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<(String, bool)>> {
        let row: Option<(String, i64)> = db_write!(self, c => {
            sqlx::query_as(
                "UPDATE tasks SET lease_expires_at = $4, last_updated = $5
                 WHERE id = $1 AND lease_owner = $2 AND epoch = $3 AND state IN ('Executing', 'Cancelling')
                 RETURNING state, cancel_requested",
            )
            .bind(id).bind(node).bind(epoch).bind(lease_until).bind(now)
            .fetch_optional(c).await?
        });
        Ok(row.map(|(s, c)| (s, c != 0)))
    }

    /// Records the end of a task, fenced by (node, epoch). Returns false when the lease was lost.
    /// A deployment task that ends `Success` updates its dashboard cell in the same transaction
    /// (`docs/dashboard.md`).
    pub async fn finish_task(
        &self,
        id: &str,
        node: &str,
        epoch: i64,
        state: &str,
        error_message: &str,
        has_warnings_or_errors: bool,
        now: i64,
    ) -> Result<bool> {
        type Finished = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let mut tx = self.begin().await?;
        let row: Option<Finished> = tx_run!(&mut tx, c => {
            sqlx::query_as(
                "UPDATE tasks SET state = $4, error_message = $5, has_warnings_or_errors = $6, completed_time = $7,
                   last_updated = $7, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_owner = $2 AND epoch = $3 AND state IN ('Executing', 'Cancelling')
                 RETURNING seq, deployment_id, project_id, environment_id, tenant_id, release_id",
            )
            .bind(id).bind(node).bind(epoch).bind(state).bind(error_message)
            .bind(i64::from(has_warnings_or_errors)).bind(now)
            .fetch_optional(&mut *c).await?
        });
        let Some((seq, deployment, project, environment, tenant, release)) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        if state == "Success" {
            if let (Some(d), Some(p), Some(e), Some(r)) =
                (deployment, project, environment, release)
            {
                tx.dashboard_deployment_succeeded(
                    seq,
                    id,
                    &d,
                    &p,
                    &e,
                    tenant.as_deref().unwrap_or(""),
                    &r,
                )
                .await?;
            }
        }
        tx.note_changed(crate::TASKS_GENERATION);
        tx.commit().await?;
        Ok(true)
    }

    /// Ends every executing task whose lease holder is `node` (this node's previous life) or whose
    /// lease has expired. Returns the ids of the tasks ended, which are marked `Failed` with
    /// `reason`, so nothing is left stuck.
    pub async fn fail_orphaned_tasks(
        &self,
        node: Option<&str>,
        now: i64,
        reason: &str,
    ) -> Result<Vec<TaskRow>> {
        let rows: Vec<TaskRow> = db_write!(self, c => {
            sqlx::query_as(safe(&format!(
                "UPDATE tasks SET state = CASE WHEN state = 'Cancelling' THEN 'Canceled' ELSE 'Failed' END,
                   error_message = $3, completed_time = $2, last_updated = $2, has_warnings_or_errors = 1,
                   lease_owner = NULL, lease_expires_at = NULL
                 WHERE state IN ('Executing', 'Cancelling')
                   AND (lease_owner = $1 OR lease_expires_at < $2 OR lease_owner IS NULL)
                 RETURNING {TASK_COLUMNS}"
            )))
            .bind(node.unwrap_or("")).bind(now).bind(reason)
            .fetch_all(c).await?
        });
        if !rows.is_empty() {
            crate::bump_generation(crate::TASKS_GENERATION);
        }
        Ok(rows)
    }
}

// ---------------------------------------------------------------------------------------------
// Task log

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct ActivityRow {
    pub task_id: String,
    pub activity_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub status: String,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    pub sort_order: i64,
}

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub task_id: String,
    pub activity_id: String,
    pub occurred_at: i64,
    pub category: String,
    pub message: String,
}

/// A log line to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLogLine {
    pub activity_id: String,
    pub occurred_at: i64,
    pub category: String,
    pub message: String,
}

impl Db {
    /// Writes activity changes and log lines of one task in one transaction.
    pub async fn write_task_log(
        &self,
        task_id: &str,
        activities: &[ActivityRow],
        lines: &[NewLogLine],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx_run!(&mut tx, c => {
            for a in activities {
                sqlx::query(
                    "INSERT INTO task_activities (task_id, activity_id, parent_id, name, status, started, ended, sort_order)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (task_id, activity_id) DO UPDATE SET status = $5, started = $6, ended = $7, name = $4",
                )
                .bind(task_id).bind(&a.activity_id).bind(&a.parent_id).bind(&a.name).bind(&a.status)
                .bind(a.started).bind(a.ended).bind(a.sort_order)
                .execute(&mut *c).await?;
            }
            for l in lines {
                sqlx::query(
                    "INSERT INTO task_log (task_id, activity_id, occurred_at, category, message) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(task_id).bind(&l.activity_id).bind(l.occurred_at).bind(&l.category).bind(&l.message)
                .execute(&mut *c).await?;
            }
        });
        tx.commit().await
    }

    pub async fn task_activities(&self, task_id: &str) -> Result<Vec<ActivityRow>> {
        Ok(db_read!(self, c => {
            sqlx::query_as(
                "SELECT task_id, activity_id, parent_id, name, status, started, ended, sort_order
                 FROM task_activities WHERE task_id = $1 ORDER BY sort_order",
            ).bind(task_id).fetch_all(c).await?
        }))
    }

    /// Log lines of a task with id greater than `after`, oldest first, at most `limit`.
    pub async fn task_log(&self, task_id: &str, after: i64, limit: i64) -> Result<Vec<LogRow>> {
        Ok(db_read!(self, c => {
            sqlx::query_as(
                "SELECT id, task_id, activity_id, occurred_at, category, message FROM task_log
                 WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            ).bind(task_id).bind(after).bind(limit).fetch_all(c).await?
        }))
    }

    /// Marks every still-running activity of a task as ended with `status`.
    pub async fn close_open_activities(&self, task_id: &str, status: &str, now: i64) -> Result<()> {
        db_write!(self, c => {
            sqlx::query(
                "UPDATE task_activities SET status = $2, ended = $3
                 WHERE task_id = $1 AND status IN ('Running', 'Pending')",
            ).bind(task_id).bind(status).bind(now).execute(c).await?;
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Events (audit log)

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct EventRow {
    pub id: String,
    pub seq: i64,
    pub space_id: String,
    pub category: String,
    pub message: String,
    pub username: String,
    pub user_id: String,
    pub occurred: i64,
    /// Comma-separated ids.
    pub related_document_ids: String,
    /// JSON.
    pub details: String,
    pub ip_address: String,
}

const EVENT_COLUMNS: &str = "id, seq, space_id, category, message, username, user_id, occurred, related_document_ids, details, ip_address";

#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub space_id: Option<String>,
    pub regarding: Option<String>,
    pub category: Option<String>,
    pub user_id: Option<String>,
    /// Any of these categories.
    pub categories: Vec<String>,
    /// Any of these users.
    pub users: Vec<String>,
    /// Occurred at or after / before (epoch ms).
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Each group: related to any of its ids; every group must match (projects, environments,
    /// tenants, …).
    pub regarding_any: Vec<Vec<String>>,
    pub skip: i64,
    pub take: Option<i64>,
}

impl Tx {
    /// Appends an audit event; its id is taken from the `Events` sequence.
    pub async fn insert_event(&mut self, e: &EventRow) -> Result<String> {
        let seq = self.next_seq("Events").await?;
        let id = format!("Events-{seq}");
        tx_run!(self, c => {
            sqlx::query(safe(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )))
            .bind(&id).bind(seq).bind(&e.space_id).bind(&e.category).bind(&e.message).bind(&e.username)
            .bind(&e.user_id).bind(e.occurred).bind(&e.related_document_ids).bind(&e.details).bind(&e.ip_address)
            .execute(&mut *c).await?;
        });
        Ok(id)
    }
}

impl Db {
    /// Appends an audit event in its own transaction.
    pub async fn insert_event(&self, e: &EventRow) -> Result<String> {
        let mut tx = self.begin().await?;
        let id = tx.insert_event(e).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn get_event(&self, id: &str) -> Result<Option<EventRow>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(c).await?))
    }

    /// Lists events newest first; returns the page and the total count.
    pub async fn list_events(&self, q: &EventQuery) -> Result<(Vec<EventRow>, i64)> {
        let mut sql = String::from(" WHERE 1 = 1");
        let mut params: Vec<Param> = Vec::new();
        if let Some(s) = &q.space_id {
            params.push(Param::Text(s.clone()));
            sql.push_str(&format!(
                " AND (space_id = ${} OR space_id = '')",
                params.len()
            ));
        }
        if let Some(r) = &q.regarding {
            params.push(Param::Text(format!("%,{},%", like_escape(r))));
            sql.push_str(&format!(
                " AND (',' || related_document_ids || ',') LIKE ${} ESCAPE '\\'",
                params.len()
            ));
        }
        if let Some(c) = &q.category {
            params.push(Param::Text(c.clone()));
            sql.push_str(&format!(" AND category = ${}", params.len()));
        }
        if let Some(u) = &q.user_id {
            params.push(Param::Text(u.clone()));
            sql.push_str(&format!(" AND user_id = ${}", params.len()));
        }
        for (col, list) in [("category", &q.categories), ("user_id", &q.users)] {
            if list.is_empty() {
                continue;
            }
            let mut alts = Vec::new();
            for v in list {
                params.push(Param::Text(v.clone()));
                alts.push(format!("${}", params.len()));
            }
            sql.push_str(&format!(" AND {col} IN ({})", alts.join(", ")));
        }
        if let Some(f) = q.from {
            params.push(Param::Int(f));
            sql.push_str(&format!(" AND occurred >= ${}", params.len()));
        }
        if let Some(t) = q.to {
            params.push(Param::Int(t));
            sql.push_str(&format!(" AND occurred < ${}", params.len()));
        }
        for group in q.regarding_any.iter().filter(|g| !g.is_empty()) {
            let mut alts = Vec::new();
            for r in group {
                params.push(Param::Text(format!("%,{},%", like_escape(r))));
                alts.push(format!(
                    "(',' || related_document_ids || ',') LIKE ${} ESCAPE '\\'",
                    params.len()
                ));
            }
            sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
        }
        let count_sql = format!("SELECT COUNT(*) FROM events{sql}");
        let total: (i64,) = db_read!(self, c => bind_all!(sqlx::query_as(safe(&count_sql)), params).fetch_one(c).await?);
        let mut list_sql = format!("SELECT {EVENT_COLUMNS} FROM events{sql} ORDER BY seq DESC");
        if let Some(take) = q.take {
            params.push(Param::Int(take.max(0)));
            list_sql.push_str(&format!(" LIMIT ${}", params.len()));
            params.push(Param::Int(q.skip.max(0)));
            list_sql.push_str(&format!(" OFFSET ${}", params.len()));
        }
        let rows: Vec<EventRow> = db_read!(self, c => bind_all!(sqlx::query_as(safe(&list_sql)), params).fetch_all(c).await?);
        Ok((rows, total.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Users and API keys

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub username_key: String,
    pub display_name: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub is_service: i64,
    pub is_active: i64,
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, username, username_key, display_name, email, password_hash, is_service, is_active, created_at";

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub key_hash: String,
    pub purpose: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl Tx {
    pub async fn insert_user(&mut self, u: &UserRow) -> Result<()> {
        tx_run!(self, c => {
            sqlx::query(safe(&format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")))
                .bind(&u.id).bind(&u.username).bind(&u.username_key).bind(&u.display_name).bind(&u.email)
                .bind(&u.password_hash).bind(u.is_service).bind(u.is_active).bind(u.created_at)
                .execute(&mut *c).await?;
        });
        Ok(())
    }

    pub async fn insert_api_key(&mut self, k: &ApiKeyRow) -> Result<()> {
        tx_run!(self, c => {
            sqlx::query(
                "INSERT INTO api_keys (id, user_id, key_hash, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&k.id).bind(&k.user_id).bind(&k.key_hash).bind(&k.purpose).bind(k.created_at).bind(k.expires_at)
            .execute(&mut *c).await?;
        });
        Ok(())
    }

    pub async fn find_user_by_username(&mut self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1");
        Ok(
            tx_run!(self, c => sqlx::query_as(safe(&sql)).bind(crate::name_key(username)).fetch_optional(&mut *c).await?),
        )
    }
}

impl Db {
    pub async fn get_user(&self, id: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql)).bind(id).fetch_optional(c).await?))
    }

    pub async fn find_user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1");
        Ok(
            db_read!(self, c => sqlx::query_as(safe(&sql)).bind(crate::name_key(username)).fetch_optional(c).await?),
        )
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql)).fetch_all(c).await?))
    }

    /// Finds the API key with this hash together with its user.
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<(ApiKeyRow, UserRow)>> {
        let key: Option<ApiKeyRow> = db_read!(self, c => {
            sqlx::query_as("SELECT id, user_id, key_hash, purpose, created_at, expires_at FROM api_keys WHERE key_hash = $1")
                .bind(key_hash).fetch_optional(c).await?
        });
        let Some(key) = key else { return Ok(None) };
        Ok(self.get_user(&key.user_id).await?.map(|u| (key, u)))
    }
}

/// Marks a query string built in this module as audited: dynamic SQL here is assembled only from
/// constant fragments and numbered placeholders; values are always bound, never spliced.
fn safe(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_string())
}
