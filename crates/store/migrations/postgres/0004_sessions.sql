-- Ferry schema, version 4 (postgres): sign-in sessions of the portal. Keep in step with the other
-- backend's 0004_sessions.sql.
--
-- Only hashes are stored: the session token (the OctopusIdentificationToken cookie) and its CSRF
-- token are SHA-256 hashed, so a copy of the database signs nobody in.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    csrf_hash TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX api_keys_user ON api_keys (user_id);
