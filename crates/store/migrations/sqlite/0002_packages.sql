-- Ferry schema, version 2 (SQLite): the built-in package feed and build information.
-- Keep in step with migrations/postgres/0002_packages.sql.
--
-- Keys are computed in Rust: `package_key` is the package id lower-cased, `version_key` the
-- normalised version (NuGet style: 1.0 = 1.0.0 = 1.0.0.0, metadata dropped, pre-release
-- lower-cased) and `version_sort` a string whose byte order is the version order of
-- ferry_domain::version (so `ORDER BY version_sort` needs no parsing in SQL). SQLite compares
-- text byte-wise; PostgreSQL declares these columns COLLATE "C" to do the same.

CREATE TABLE packages (
    id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    feed_id TEXT NOT NULL,
    package_id TEXT NOT NULL,
    package_key TEXT NOT NULL,
    version TEXT NOT NULL,
    version_key TEXT NOT NULL,
    version_sort TEXT NOT NULL,
    is_pre_release BIGINT NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    file_extension TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    release_notes TEXT NOT NULL DEFAULT '',
    published BIGINT NOT NULL,
    PRIMARY KEY (space_id, package_key, version_key)
);
CREATE INDEX packages_id ON packages (space_id, id);
CREATE INDEX packages_order ON packages (space_id, package_key, version_sort);
CREATE INDEX packages_sha256 ON packages (sha256);
CREATE INDEX packages_published ON packages (published);

CREATE TABLE build_information (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT NOT NULL,
    package_id TEXT NOT NULL,
    package_key TEXT NOT NULL,
    version TEXT NOT NULL,
    version_key TEXT NOT NULL,
    version_sort TEXT NOT NULL,
    body TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE UNIQUE INDEX build_information_unique ON build_information (space_id, package_key, version_key);
CREATE INDEX build_information_order ON build_information (space_id, package_key, version_sort);
