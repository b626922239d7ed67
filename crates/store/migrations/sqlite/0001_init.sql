-- Ferry schema, version 1 (SQLite). Keep in step with migrations/postgres/0001_init.sql.
-- Timestamps are epoch milliseconds; booleans are 0/1 integers; documents hold API-shaped JSON.

CREATE TABLE server_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE id_sequences (
    collection TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);

CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    space_id TEXT NOT NULL DEFAULT '',
    owner_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    slug TEXT NOT NULL DEFAULT '',
    sort_order BIGINT NOT NULL DEFAULT 0,
    ref1 TEXT NOT NULL DEFAULT '',
    ref2 TEXT NOT NULL DEFAULT '',
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX documents_name_unique ON documents (collection, space_id, owner_id, name_key);
CREATE INDEX documents_list ON documents (collection, space_id, owner_id, sort_order, seq);
CREATE INDEX documents_slug ON documents (collection, space_id, slug);
CREATE INDEX documents_ref1 ON documents (collection, ref1);
CREATE INDEX documents_ref2 ON documents (collection, ref2);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    arguments TEXT NOT NULL,
    project_id TEXT,
    environment_id TEXT,
    tenant_id TEXT,
    deployment_id TEXT,
    release_id TEXT,
    queue_time BIGINT NOT NULL,
    queue_time_expiry BIGINT,
    start_time BIGINT,
    completed_time BIGINT,
    last_updated BIGINT NOT NULL,
    error_message TEXT NOT NULL DEFAULT '',
    has_warnings_or_errors BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    epoch BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    queue_after BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tasks_queue ON tasks (state, queue_after, seq);
CREATE INDEX tasks_space ON tasks (space_id, seq);
CREATE INDEX tasks_lease ON tasks (lease_owner);
CREATE INDEX tasks_release ON tasks (release_id);

CREATE TABLE task_activities (
    task_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started BIGINT,
    ended BIGINT,
    sort_order BIGINT NOT NULL,
    PRIMARY KEY (task_id, activity_id)
);

CREATE TABLE task_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    category TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX task_log_task ON task_log (task_id, id);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL,
    message TEXT NOT NULL,
    username TEXT NOT NULL,
    user_id TEXT NOT NULL,
    occurred BIGINT NOT NULL,
    related_document_ids TEXT NOT NULL,
    details TEXT NOT NULL,
    ip_address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_seq ON events (seq);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    is_service BIGINT NOT NULL DEFAULT 0,
    is_active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
