//! The built-in feed's rows: packages (one row per package id and version in a space, pointing
//! at a content-addressed blob) and build information (one record per package id and version).
//!
//! Uniqueness and order are decided by keys computed here in Rust, never by SQL functions, so
//! both backends agree: [`package_key`] (the id lower-cased), [`version_key`] (the normalised
//! version) and [`version_sort_key`] (a string whose byte order is the order of
//! `ferry_domain::version::Version`). PostgreSQL declares those columns `COLLATE "C"`, SQLite
//! compares text byte-wise.

use std::fmt::Write as _;

use ferry_domain::version::Version;
use sqlx::FromRow;

use crate::{Db, Param, Result, Tx, bind_all, db_read, like_escape, tx_run};

// ---------------------------------------------------------------------------------------------
// Keys

/// The case-insensitive key of a package id.
pub fn package_key(package_id: &str) -> String {
    package_id.trim().to_lowercase()
}

/// The normalised form of a version, which decides whether two versions are the same package:
/// `Version::normalized` lower-cased (`1.0` = `1.0.0` = `1.0.0.0`, `1.0.0-RC.01` = `1.0.0-rc.1`,
/// build metadata dropped).
pub fn version_key(v: &Version) -> String {
    v.normalized().to_lowercase()
}

/// A string whose byte-wise order is the order of `Version` (numeric parts compared as numbers,
/// a release after its pre-releases, pre-release identifiers compared numerically when both are
/// numbers, numbers before words, words case-insensitively, fewer identifiers first).
///
/// Layout: the four numeric parts as 20-digit zero-padded numbers; then `~` for a release, or
/// per pre-release identifier `#` followed by `0` + four-digit length + digits (numeric) or `1` +
/// the lower-cased word, and a final `!`. `!` < `#` < every character of an identifier (`-`,
/// digits, letters) < `~`, which gives "shorter first" and "pre-release before release".
pub fn version_sort_key(v: &Version) -> String {
    let mut s = String::with_capacity(96);
    for i in 0..4 {
        let _ = write!(s, "{:020}", v.part(i));
    }
    if !v.is_pre_release() {
        s.push('~');
        return s;
    }
    for ident in v.pre_release.split('.') {
        s.push('#');
        if !ident.is_empty() && ident.bytes().all(|b| b.is_ascii_digit()) {
            // Numbers of any size: by length without leading zeros, then digit by digit.
            let t = ident.trim_start_matches('0');
            let digits = if t.is_empty() { "0" } else { t };
            let _ = write!(s, "0{:04}{digits}", digits.len().min(9999));
        } else {
            s.push('1');
            s.push_str(&ident.to_ascii_lowercase());
        }
    }
    s.push('!');
    s
}

// ---------------------------------------------------------------------------------------------
// Packages

/// A package in the built-in feed. The file itself is a blob named by `sha256`.
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct PackageRow {
    /// `packages-<PackageId>.<Version>`, as Octopus names it.
    pub id: String,
    pub space_id: String,
    pub feed_id: String,
    /// As given in the file name.
    pub package_id: String,
    pub package_key: String,
    /// As given in the file name.
    pub version: String,
    pub version_key: String,
    pub version_sort: String,
    pub is_pre_release: i64,
    /// Hex SHA-256 of the file: its blob's address.
    pub sha256: String,
    /// Hex SHA-1 of the file (Octopus's `Hash`).
    pub sha1: String,
    pub size_bytes: i64,
    /// With the dot: `.zip`, `.tar.gz`, `.nupkg`.
    pub file_extension: String,
    pub title: String,
    pub summary: String,
    pub description: String,
    pub release_notes: String,
    /// Epoch milliseconds.
    pub published: i64,
}

const PACKAGE_COLUMNS: &str = "id, space_id, feed_id, package_id, package_key, version, version_key, version_sort, is_pre_release, sha256, sha1, size_bytes, file_extension, title, summary, description, release_notes, published";

impl PackageRow {
    /// Fills the id and the key columns from a package id and its version (`given` as written,
    /// `version` parsed from it).
    pub fn keyed(
        space_id: &str,
        feed_id: &str,
        package_id: &str,
        given: &str,
        version: &Version,
    ) -> Self {
        let shown = given.trim().to_string();
        PackageRow {
            id: format!("packages-{package_id}.{shown}"),
            space_id: space_id.to_string(),
            feed_id: feed_id.to_string(),
            package_id: package_id.to_string(),
            package_key: package_key(package_id),
            version: shown,
            version_key: version_key(version),
            version_sort: version_sort_key(version),
            is_pre_release: i64::from(version.is_pre_release()),
            sha256: String::new(),
            sha1: String::new(),
            size_bytes: 0,
            file_extension: String::new(),
            title: String::new(),
            summary: String::new(),
            description: String::new(),
            release_notes: String::new(),
            published: 0,
        }
    }
}

/// Filters for listing packages. Results are ordered by package id, then version descending.
#[derive(Clone, Debug, Default)]
pub struct PackageQuery {
    /// `None` lists every space (retention).
    pub space_id: Option<String>,
    /// Exact package id, case-insensitive.
    pub package_id: Option<String>,
    /// Case-insensitive substring of the package id.
    pub filter: Option<String>,
    /// Case-insensitive substring of the normalised version.
    pub version_filter: Option<String>,
    /// Only the highest version of each package id (among the rows the other filters keep).
    pub latest_only: bool,
    /// Leave pre-release versions out.
    pub exclude_pre_release: bool,
    pub skip: i64,
    /// `None` means all.
    pub take: Option<i64>,
}

impl PackageQuery {
    fn where_clause(&self, table: &str) -> (String, Vec<Param>) {
        let mut sql = String::from(" WHERE 1 = 1");
        let mut params = Vec::new();
        let mut push = |cond: &str, p: Param, sql: &mut String| {
            params.push(p);
            sql.push_str(&cond.replace("$?", &format!("${}", params.len())));
        };
        if let Some(s) = &self.space_id {
            push(" AND p.space_id = $?", Param::Text(s.clone()), &mut sql);
        }
        if let Some(id) = &self.package_id {
            push(
                " AND p.package_key = $?",
                Param::Text(package_key(id)),
                &mut sql,
            );
        }
        if let Some(f) = &self.filter {
            let pat = format!("%{}%", like_escape(&f.to_lowercase()));
            push(
                " AND p.package_key LIKE $? ESCAPE '\\'",
                Param::Text(pat),
                &mut sql,
            );
        }
        if let Some(f) = &self.version_filter {
            let pat = format!("%{}%", like_escape(&f.to_lowercase()));
            push(
                " AND p.version_key LIKE $? ESCAPE '\\'",
                Param::Text(pat),
                &mut sql,
            );
        }
        if self.exclude_pre_release {
            sql.push_str(" AND p.is_pre_release = 0");
        }
        if self.latest_only {
            // No higher version of the same id among the rows the same filters keep.
            let inner_pre = if self.exclude_pre_release {
                " AND q.is_pre_release = 0"
            } else {
                ""
            };
            let inner_version = match &self.version_filter {
                Some(f) => {
                    let pat = format!("%{}%", like_escape(&f.to_lowercase()));
                    params.push(Param::Text(pat));
                    format!(" AND q.version_key LIKE ${} ESCAPE '\\'", params.len())
                }
                None => String::new(),
            };
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {table} q WHERE q.space_id = p.space_id
                   AND q.package_key = p.package_key AND q.version_sort > p.version_sort{inner_pre}{inner_version})"
            ));
        }
        (sql, params)
    }
}

fn page_sql(base: String, skip: i64, take: Option<i64>, params: &mut Vec<Param>) -> String {
    let mut sql = base;
    if let Some(take) = take {
        params.push(Param::Int(take.max(0)));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
        params.push(Param::Int(skip.max(0)));
        sql.push_str(&format!(" OFFSET ${}", params.len()));
    } else if skip > 0 {
        params.push(Param::Int(i64::MAX));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
        params.push(Param::Int(skip));
        sql.push_str(&format!(" OFFSET ${}", params.len()));
    }
    sql
}

impl Db {
    /// A package by its `packages-<PackageId>.<Version>` id within a space.
    pub async fn get_package(&self, space_id: &str, id: &str) -> Result<Option<PackageRow>> {
        let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE space_id = $1 AND id = $2");
        Ok(
            db_read!(self, c => sqlx::query_as(safe(&sql)).bind(space_id).bind(id).fetch_optional(c).await?),
        )
    }

    /// A package by its keys (see [`package_key`] and [`version_key`]).
    pub async fn find_package(
        &self,
        space_id: &str,
        package_key: &str,
        version_key: &str,
    ) -> Result<Option<PackageRow>> {
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE space_id = $1 AND package_key = $2 AND version_key = $3"
        );
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql))
            .bind(space_id).bind(package_key).bind(version_key).fetch_optional(c).await?))
    }

    /// Lists packages by package id, then version descending; returns the page and the total.
    pub async fn list_packages(&self, q: &PackageQuery) -> Result<(Vec<PackageRow>, i64)> {
        let (filter, params) = q.where_clause("packages");
        let count_sql = format!("SELECT COUNT(*) FROM packages p{filter}");
        let total: (i64,) = db_read!(self, c => bind_all!(sqlx::query_as(safe(&count_sql)), params).fetch_one(c).await?);
        let mut params = params;
        let sql = page_sql(
            format!(
                "SELECT {} FROM packages p{filter} ORDER BY p.package_key, p.version_sort DESC, p.space_id",
                prefixed(PACKAGE_COLUMNS)
            ),
            q.skip,
            q.take,
            &mut params,
        );
        let rows: Vec<PackageRow> =
            db_read!(self, c => bind_all!(sqlx::query_as(safe(&sql)), params).fetch_all(c).await?);
        Ok((rows, total.0))
    }

    /// How many package rows (in any space) point at this blob.
    pub async fn count_package_blob_refs(&self, sha256: &str) -> Result<i64> {
        let r: (i64,) = db_read!(self, c => sqlx::query_as("SELECT COUNT(*) FROM packages WHERE sha256 = $1")
            .bind(sha256).fetch_one(c).await?);
        Ok(r.0)
    }

    /// Every blob address some package row points at (for the orphan sweep).
    pub async fn package_blob_addresses(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = db_read!(self, c => sqlx::query_as("SELECT DISTINCT sha256 FROM packages ORDER BY sha256")
            .fetch_all(c).await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

impl Tx {
    /// A package by its keys, inside the transaction.
    pub async fn find_package(
        &mut self,
        space_id: &str,
        package_key: &str,
        version_key: &str,
    ) -> Result<Option<PackageRow>> {
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE space_id = $1 AND package_key = $2 AND version_key = $3"
        );
        Ok(tx_run!(self, c => sqlx::query_as(safe(&sql))
            .bind(space_id).bind(package_key).bind(version_key).fetch_optional(&mut *c).await?))
    }

    /// Inserts a package. The same (space, package id, version) again is `StoreError::Conflict`.
    pub async fn insert_package(&mut self, p: &PackageRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO packages ({PACKAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        tx_run!(self, c => {
            sqlx::query(safe(&sql))
                .bind(&p.id).bind(&p.space_id).bind(&p.feed_id).bind(&p.package_id).bind(&p.package_key)
                .bind(&p.version).bind(&p.version_key).bind(&p.version_sort).bind(p.is_pre_release)
                .bind(&p.sha256).bind(&p.sha1).bind(p.size_bytes).bind(&p.file_extension).bind(&p.title)
                .bind(&p.summary).bind(&p.description).bind(&p.release_notes).bind(p.published)
                .execute(&mut *c).await?;
        });
        Ok(())
    }

    /// Replaces the package with the same keys (its file, metadata and the spelling of its id and
    /// version). Returns false when there is none.
    pub async fn replace_package(&mut self, p: &PackageRow) -> Result<bool> {
        let n = tx_run!(self, c => {
            sqlx::query(
                "UPDATE packages SET id = $4, feed_id = $5, package_id = $6, version = $7, version_sort = $8,
                   is_pre_release = $9, sha256 = $10, sha1 = $11, size_bytes = $12, file_extension = $13,
                   title = $14, summary = $15, description = $16, release_notes = $17, published = $18
                 WHERE space_id = $1 AND package_key = $2 AND version_key = $3",
            )
            .bind(&p.space_id).bind(&p.package_key).bind(&p.version_key).bind(&p.id).bind(&p.feed_id)
            .bind(&p.package_id).bind(&p.version).bind(&p.version_sort).bind(p.is_pre_release)
            .bind(&p.sha256).bind(&p.sha1).bind(p.size_bytes).bind(&p.file_extension).bind(&p.title)
            .bind(&p.summary).bind(&p.description).bind(&p.release_notes).bind(p.published)
            .execute(&mut *c).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Deletes a package by id within a space; returns the row that was deleted.
    pub async fn delete_package(&mut self, space_id: &str, id: &str) -> Result<Option<PackageRow>> {
        let sql = format!(
            "DELETE FROM packages WHERE space_id = $1 AND id = $2 RETURNING {PACKAGE_COLUMNS}"
        );
        Ok(
            tx_run!(self, c => sqlx::query_as(safe(&sql)).bind(space_id).bind(id).fetch_optional(&mut *c).await?),
        )
    }

    /// How many package rows (in any space) point at this blob, inside the transaction.
    pub async fn count_package_blob_refs(&mut self, sha256: &str) -> Result<i64> {
        let r: (i64,) = tx_run!(self, c => sqlx::query_as("SELECT COUNT(*) FROM packages WHERE sha256 = $1")
            .bind(sha256).fetch_one(&mut *c).await?);
        Ok(r.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Build information

/// Build information for a package id and version (which need not have been pushed).
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct BuildInfoRow {
    /// `BuildInformation-<n>`.
    pub id: String,
    pub seq: i64,
    pub space_id: String,
    pub package_id: String,
    pub package_key: String,
    pub version: String,
    pub version_key: String,
    pub version_sort: String,
    /// The API-shaped JSON (branch, build, VCS, commits, work items).
    pub body: String,
    pub created: i64,
    pub updated: i64,
}

const BUILD_INFO_COLUMNS: &str = "id, seq, space_id, package_id, package_key, version, version_key, version_sort, body, created, updated";

/// Filters for listing build information; ordered like packages.
#[derive(Clone, Debug, Default)]
pub struct BuildInfoQuery {
    pub space_id: Option<String>,
    pub package_id: Option<String>,
    pub filter: Option<String>,
    pub latest_only: bool,
    pub skip: i64,
    pub take: Option<i64>,
}

impl Db {
    pub async fn get_build_information(
        &self,
        space_id: &str,
        id: &str,
    ) -> Result<Option<BuildInfoRow>> {
        let sql = format!(
            "SELECT {BUILD_INFO_COLUMNS} FROM build_information WHERE space_id = $1 AND id = $2"
        );
        Ok(
            db_read!(self, c => sqlx::query_as(safe(&sql)).bind(space_id).bind(id).fetch_optional(c).await?),
        )
    }

    pub async fn find_build_information(
        &self,
        space_id: &str,
        package_key: &str,
        version_key: &str,
    ) -> Result<Option<BuildInfoRow>> {
        let sql = format!(
            "SELECT {BUILD_INFO_COLUMNS} FROM build_information WHERE space_id = $1 AND package_key = $2 AND version_key = $3"
        );
        Ok(db_read!(self, c => sqlx::query_as(safe(&sql))
            .bind(space_id).bind(package_key).bind(version_key).fetch_optional(c).await?))
    }

    /// Lists build information by package id, then version descending; page and total.
    pub async fn list_build_information(
        &self,
        q: &BuildInfoQuery,
    ) -> Result<(Vec<BuildInfoRow>, i64)> {
        let pq = PackageQuery {
            space_id: q.space_id.clone(),
            package_id: q.package_id.clone(),
            filter: q.filter.clone(),
            latest_only: q.latest_only,
            ..PackageQuery::default()
        };
        let (filter, params) = pq.where_clause("build_information");
        let count_sql = format!("SELECT COUNT(*) FROM build_information p{filter}");
        let total: (i64,) = db_read!(self, c => bind_all!(sqlx::query_as(safe(&count_sql)), params).fetch_one(c).await?);
        let mut params = params;
        let sql = page_sql(
            format!(
                "SELECT {} FROM build_information p{filter} ORDER BY p.package_key, p.version_sort DESC, p.space_id",
                prefixed(BUILD_INFO_COLUMNS)
            ),
            q.skip,
            q.take,
            &mut params,
        );
        let rows: Vec<BuildInfoRow> =
            db_read!(self, c => bind_all!(sqlx::query_as(safe(&sql)), params).fetch_all(c).await?);
        Ok((rows, total.0))
    }
}

impl Tx {
    pub async fn find_build_information(
        &mut self,
        space_id: &str,
        package_key: &str,
        version_key: &str,
    ) -> Result<Option<BuildInfoRow>> {
        let sql = format!(
            "SELECT {BUILD_INFO_COLUMNS} FROM build_information WHERE space_id = $1 AND package_key = $2 AND version_key = $3"
        );
        Ok(tx_run!(self, c => sqlx::query_as(safe(&sql))
            .bind(space_id).bind(package_key).bind(version_key).fetch_optional(&mut *c).await?))
    }

    /// Inserts build information; the same (space, package id, version) again is `Conflict`.
    pub async fn insert_build_information(&mut self, b: &BuildInfoRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO build_information ({BUILD_INFO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        tx_run!(self, c => {
            sqlx::query(safe(&sql))
                .bind(&b.id).bind(b.seq).bind(&b.space_id).bind(&b.package_id).bind(&b.package_key)
                .bind(&b.version).bind(&b.version_key).bind(&b.version_sort).bind(&b.body)
                .bind(b.created).bind(b.updated)
                .execute(&mut *c).await?;
        });
        Ok(())
    }

    /// Replaces the body (and the spelling of id and version) of the record with `b.id`; keeps
    /// its id, sequence and creation time. Returns false when there is none.
    pub async fn update_build_information(&mut self, b: &BuildInfoRow) -> Result<bool> {
        let n = tx_run!(self, c => {
            sqlx::query(
                "UPDATE build_information SET package_id = $2, version = $3, version_sort = $4, body = $5, updated = $6
                 WHERE id = $1",
            )
            .bind(&b.id).bind(&b.package_id).bind(&b.version).bind(&b.version_sort).bind(&b.body).bind(b.updated)
            .execute(&mut *c).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Deletes build information by id within a space; returns what was deleted.
    pub async fn delete_build_information(
        &mut self,
        space_id: &str,
        id: &str,
    ) -> Result<Option<BuildInfoRow>> {
        let sql = format!(
            "DELETE FROM build_information WHERE space_id = $1 AND id = $2 RETURNING {BUILD_INFO_COLUMNS}"
        );
        Ok(
            tx_run!(self, c => sqlx::query_as(safe(&sql)).bind(space_id).bind(id).fetch_optional(&mut *c).await?),
        )
    }
}

/// `a, b` → `p.a, p.b`.
fn prefixed(columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks a query string built in this module as audited: dynamic SQL here is assembled only from
/// constant fragments and numbered placeholders; values are always bound, never spliced.
fn safe(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::cmp::Ordering;

    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} is a version"))
    }

    const VERSIONS: &[&str] = &[
        "0.9.9.9",
        "1",
        "1.0",
        "1.0.0",
        "1.0.0.0",
        "1.0.0.1",
        "1.0.0-alpha",
        "1.0.0-Alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-alpha-1",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.10",
        "1.0.0-beta.010",
        "1.0.0-beta2",
        "1.0.0-rc.1",
        "1.0.0-rc-1",
        "1.0.0-1",
        "1.0.0-99999999999999999999999",
        "1.0.0-099999999999999999999999",
        "1.0.0-100000000000000000000000",
        "1.0.0+build.5",
        "1.0.0-rc.1+x",
        "1.0.1",
        "1.10.0",
        "1.9.0",
        "2.0.0-0",
        "999999999999999999.0.0",
        "10.0.0.5-x",
    ];

    /// The sort key orders exactly as `Version::cmp`, for every pair (equal included).
    #[test]
    fn sort_key_orders_like_the_domain() {
        for a in VERSIONS {
            for b in VERSIONS {
                let (va, vb) = (v(a), v(b));
                let by_domain = va.cmp(&vb);
                let by_key = version_sort_key(&va).cmp(&version_sort_key(&vb));
                assert_eq!(by_domain, by_key, "{a} vs {b}");
                // The normalised key is equal exactly when the versions are equal.
                assert_eq!(
                    by_domain == Ordering::Equal,
                    version_key(&va) == version_key(&vb),
                    "{a} vs {b}: {} / {}",
                    version_key(&va),
                    version_key(&vb)
                );
            }
        }
    }

    #[test]
    fn normalised_versions() {
        for (given, key) in [
            ("1", "1.0.0"),
            ("1.2", "1.2.0"),
            ("1.2.3.0", "1.2.3"),
            ("1.2.3.4", "1.2.3.4"),
            ("01.002.3", "1.2.3"),
            ("1.0.0-RC.007", "1.0.0-rc.7"),
            ("1.0.0-RC.01+meta", "1.0.0-rc.1"),
        ] {
            assert_eq!(version_key(&v(given)), key, "{given}");
        }
        let row = PackageRow::keyed(
            "Spaces-1",
            "feeds-builtin",
            "Hello.App",
            "1.0.0-Beta+x",
            &v("1.0.0-Beta+x"),
        );
        assert_eq!(row.id, "packages-Hello.App.1.0.0-Beta+x");
        assert_eq!(row.package_key, "hello.app");
        assert_eq!(row.version, "1.0.0-Beta+x");
        assert_eq!(row.is_pre_release, 1);
    }
}
