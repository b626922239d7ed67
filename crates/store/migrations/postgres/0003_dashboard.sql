-- Ferry schema, version 3 (PostgreSQL): the dashboard's current state, maintained as deployments are
-- queued and finish. Keep in step with migrations/sqlite/0003_dashboard.sql.
--
-- One row per (project, environment, tenant); `tenant_id` is '' for untenanted deployments. The
-- row names the latest deployment queued there (its task gives the state and times, joined by
-- primary key) and the latest *successful* deployment older than it (`prev_*`, NULL when there
-- is none), which Octopus shows as the previous item. The project group is not stored: it is
-- read from the project when the dashboard is built, so moving a project needs no maintenance.

CREATE TABLE dashboard_cells (
    project_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL DEFAULT '',
    space_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_seq BIGINT NOT NULL,
    release_id TEXT NOT NULL,
    release_version TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    created BIGINT NOT NULL,
    prev_deployment_id TEXT,
    prev_task_id TEXT,
    prev_task_seq BIGINT,
    prev_release_id TEXT,
    prev_release_version TEXT,
    prev_channel_id TEXT,
    prev_created BIGINT,
    PRIMARY KEY (project_id, environment_id, tenant_id)
);
CREATE INDEX dashboard_cells_space ON dashboard_cells (space_id, project_id);

-- Rebuilding a project's cells reads its deployment tasks in order.
CREATE INDEX tasks_project ON tasks (project_id, seq);
