//! The built-in feed (`feeds-builtin`): pushing packages (multipart, streamed to a temporary
//! file and hashed on the way, in constant memory), listing and searching them, downloading,
//! deleting, and the feed endpoints the Go CLI uses to find versions.
//!
//! A package row points at a blob named by the file's SHA-256 (`ferry_store::blobs`). Blob
//! lifetimes are serialised per address by [`PackageStorage::lock`]: a push holds the lock from
//! storing the blob until its row is committed, and a removal holds it while it checks that no
//! row points at the blob any more, so a blob is never removed under a row that needs it.
//! See `docs/feed.md`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_domain::BUILTIN_FEED_ID;
use ferry_domain::time::{format_ms, now_ms};
use ferry_domain::version::Version;
use ferry_packages::filename::{self, PackageFileName, PackageFormat};
use ferry_store::blobs::{BlobStore, Staged};
use ferry_store::{PackageQuery, PackageRow, StoreError, package_key, version_key};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use super::*;
use crate::query::Params;
use crate::routes::Permission;

// ---------------------------------------------------------------------------------------------
// Storage and its locks

/// How many locks blob addresses are spread over.
const LOCK_STRIPES: usize = 64;

/// The feed's file storage and the per-address locks that keep blob removal and pushes apart.
#[derive(Debug)]
pub struct PackageStorage {
    pub blobs: Arc<dyn BlobStore>,
    /// The policy the periodic retention job applies (shown on the feed resource).
    pub retention: super::retention::Policy,
    locks: Vec<Mutex<()>>,
}

impl PackageStorage {
    pub fn new(blobs: Arc<dyn BlobStore>, retention: super::retention::Policy) -> Self {
        PackageStorage {
            blobs,
            retention,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Locks the blob address `sha256` (and the others sharing its stripe).
    pub async fn lock(&self, sha256: &str) -> MutexGuard<'_, ()> {
        let stripe = u8::from_str_radix(sha256.get(..2).unwrap_or("00"), 16).unwrap_or(0) as usize
            % LOCK_STRIPES;
        match self.locks.get(stripe) {
            Some(m) => m.lock().await,
            // Unreachable (the index is reduced modulo the length); lock the first stripe.
            None => self.locks[0].lock().await,
        }
    }

    /// Removes the blob when no package row points at it any more. Returns whether it did.
    pub async fn remove_if_unreferenced(&self, db: &ferry_store::Db, sha256: &str) -> bool {
        let _guard = self.lock(sha256).await;
        match db.count_package_blob_refs(sha256).await {
            Ok(0) => match self.blobs.remove(sha256).await {
                Ok(removed) => removed,
                Err(e) => {
                    tracing::warn!(error = %e, sha256, "could not remove an unreferenced package file");
                    false
                }
            },
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, sha256, "could not count the references to a package file");
                false
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Overwrite modes and permissions

/// What a push does when the package (or build information) already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteMode {
    /// 409 (the default).
    FailIfExists,
    /// Replace it (needs the Administer permission).
    OverwriteExisting,
    /// Keep it and answer 200 with it.
    IgnoreIfExists,
}

impl OverwriteMode {
    pub fn parse(s: &str) -> Option<OverwriteMode> {
        [
            ("FailIfExists", OverwriteMode::FailIfExists),
            ("OverwriteExisting", OverwriteMode::OverwriteExisting),
            ("IgnoreIfExists", OverwriteMode::IgnoreIfExists),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
        .map(|(_, m)| m)
    }

    /// From `overwriteMode=…`, else the legacy `replace=true`, else `FailIfExists`.
    pub fn from_params(p: &Params) -> ApiResult<OverwriteMode> {
        if let Some(m) = p.get("overwriteMode") {
            return OverwriteMode::parse(m).ok_or_else(|| bad_mode(m));
        }
        Ok(if p.bool("replace") == Some(true) {
            OverwriteMode::OverwriteExisting
        } else {
            OverwriteMode::FailIfExists
        })
    }
}

pub fn bad_mode(m: &str) -> ApiError {
    ApiError::bad_request(format!(
        "'{m}' is not an overwrite mode: use FailIfExists, OverwriteExisting or IgnoreIfExists"
    ))
}

/// Checks a permission that depends on the request rather than the route (overwriting needs
/// `BuiltInFeedAdminister` where pushing needs `BuiltInFeedPush`). Until teams and roles exist
/// every active user holds every permission (see `auth.rs`), so this only names the rule.
pub fn require_permission(_ctx: &Ctx, _permission: Permission) -> ApiResult<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn is_builtin(feed_id: &str) -> bool {
    feed_id.eq_ignore_ascii_case(BUILTIN_FEED_ID)
}

fn package_path(space: &str, id: &str) -> String {
    format!("/api/{space}/packages/{id}")
}

/// A package as Octopus shows it (`PackageUploadResponse` / `PackageFromBuiltInFeedResource`).
/// `ReleaseNotes` is always `null`: the Go SDK decodes it into a time, so a string breaks
/// `octopus package list`.
pub fn render(space: &str, p: &PackageRow) -> Value {
    let base = package_path(space, &p.id);
    json!({
        "Id": p.id,
        "SpaceId": p.space_id,
        "PackageId": p.package_id,
        "Version": p.version,
        "FeedId": p.feed_id,
        "NuGetPackageId": p.package_id,
        "NuGetFeedId": p.feed_id,
        "Title": p.title,
        "Summary": p.summary,
        "Description": p.description,
        "Published": format_ms(p.published),
        "ReleaseNotes": null,
        "FileExtension": p.file_extension,
        "PackageSizeBytes": p.size_bytes,
        "Hash": p.sha1,
        "PackageVersionBuildInformation": null,
        "Links": {
            "Self": base,
            "Raw": format!("{base}/raw"),
            "Feed": format!("/api/{space}/feeds/{}", p.feed_id),
        },
    })
}

const LIST_TEMPLATE: &str = "{?nuGetPackageId,filter,latest,skip,take,includeNotes}";

// ---------------------------------------------------------------------------------------------
// Push

/// Names what is wrong with a file name, more precisely than "not a package file name" where it
/// can: no version at all, or a version that does not parse.
fn file_name_problem(name: &str, err: filename::FileNameError) -> ApiError {
    if let filename::FileNameError::NotAPackageFileName(_) = &err {
        let lower = name.to_ascii_lowercase();
        let ext = [".tar.gz", ".nupkg", ".tgz", ".zip", ".jar", ".tar"]
            .into_iter()
            .find(|e| lower.ends_with(e));
        if let Some(ext) = ext {
            let stem = &name[..name.len() - ext.len()];
            let first_version = stem
                .char_indices()
                .find(|(i, c)| {
                    *c == '.'
                        && stem[i + 1..]
                            .chars()
                            .next()
                            .is_some_and(|d| d.is_ascii_digit())
                })
                .map(|(i, _)| i);
            return match first_version {
                None => ApiError::bad_request(format!(
                    "'{name}' has no version: name the file PackageId.Version{ext}, e.g. MyApp.1.2.3{ext}"
                )),
                Some(i) if filename::is_valid_id(&stem[..i]) => ApiError::bad_request(format!(
                    "'{}' in '{name}' is not a valid version: expected 1 to 4 numbers separated by dots, optionally followed by -prerelease and +metadata (e.g. 1.2.3 or 2.0.0-beta.1)",
                    &stem[i + 1..]
                )),
                Some(i) => ApiError::bad_request(format!(
                    "'{}' in '{name}' is not a valid package id: use letters, digits and '_', with single '.', '-' or '_' between them (e.g. Acme.Web-Api)",
                    &stem[..i]
                )),
            };
        }
    }
    ApiError::bad_request(err.to_string())
}

/// What the content check found in a package file (metadata only for `.nupkg`).
#[derive(Debug, Default, Clone)]
pub struct ContentMetadata {
    pub title: String,
    pub summary: String,
    pub description: String,
    pub release_notes: String,
}

/// Checks that the file is what its extension says and reads a `.nupkg`'s metadata.
async fn check_content(
    path: PathBuf,
    name: String,
    format: PackageFormat,
) -> ApiResult<ContentMetadata> {
    tokio::task::spawn_blocking(move || content::check(&path, &name, format))
        .await
        .map_err(ApiError::internal)?
}

fn upload_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("The upload did not complete: {}", e.body_text()))
}

/// Reads and discards the rest of a part.
async fn drain_field(mut field: Field<'_>) {
    while let Ok(Some(_)) = field.chunk().await {}
}

/// Reads and discards the rest of the body, so a client still sending gets the answer
/// instead of a reset connection.
async fn drain(mp: &mut Multipart) {
    while let Ok(Some(f)) = mp.next_field().await {
        drain_field(f).await;
    }
}

/// The outcome of writing a package row.
enum Written {
    Created(PackageRow),
    Replaced { row: PackageRow, old_sha256: String },
    Ignored(PackageRow),
}

/// `POST /api/{space}/packages/raw{?overwriteMode,replace}`: multipart, the first file part
/// whatever its field name (`fileToUpload` from TS, `file` from Go), streamed. 201 when the
/// file was stored, 200 with the existing package under `IgnoreIfExists`, 409 when it exists
/// under `FailIfExists`.
pub async fn push(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
    ctx: Ctx,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let mode = OverwriteMode::from_params(&Params::parse(raw.as_deref()))?;
    if mode == OverwriteMode::OverwriteExisting {
        require_permission(&ctx, Permission::BuiltInFeedAdminister)?;
    }
    let mut mp = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "Send the package as multipart/form-data with one file part: {}",
            e.body_text()
        ))
    })?;
    let mut field = loop {
        match mp.next_field().await.map_err(upload_error)? {
            Some(f) if f.file_name().is_some() => break f,
            Some(_) => continue,
            None => {
                return Err(ApiError::bad_request(
                    "The request holds no file: send the package as a multipart file part (field fileToUpload or file)",
                ));
            }
        }
    };
    // Only the last component: a client may send a path.
    let name = field
        .file_name()
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_string();
    let parsed: PackageFileName = match filename::parse(&name) {
        Ok(p) => p,
        Err(e) => {
            drain_field(field).await;
            drain(&mut mp).await;
            return Err(file_name_problem(&name, e));
        }
    };
    let (pkey, vkey) = (package_key(&parsed.id), version_key(&parsed.version));
    if let Some(existing) = st.db.find_package(&space, &pkey, &vkey).await? {
        match mode {
            OverwriteMode::FailIfExists => {
                drain_field(field).await;
                drain(&mut mp).await;
                return Err(exists(&existing));
            }
            OverwriteMode::IgnoreIfExists => {
                drain_field(field).await;
                drain(&mut mp).await;
                return Ok((StatusCode::OK, Json(render(&space, &existing))));
            }
            OverwriteMode::OverwriteExisting => {}
        }
    }

    // Stream the file into a temporary file; dropped (and removed) on any early return.
    let mut upload = st
        .packages
        .blobs
        .begin()
        .await
        .map_err(ApiError::internal)?;
    while let Some(chunk) = field.chunk().await.map_err(upload_error)? {
        upload.write(&chunk).await.map_err(ApiError::internal)?;
    }
    drop(field);
    drain(&mut mp).await;
    let staged = upload.finish().await.map_err(ApiError::internal)?;
    if staged.info().size == 0 {
        return Err(ApiError::bad_request(format!("'{name}' is empty")));
    }
    let meta = check_content(staged.path().to_path_buf(), name.clone(), parsed.format).await?;

    let mut row = PackageRow::keyed(
        &space,
        BUILTIN_FEED_ID,
        &parsed.id,
        &parsed.version_text,
        &parsed.version,
    );
    row.sha256 = staged.info().sha256.clone();
    row.sha1 = staged.info().sha1.clone();
    row.size_bytes = i64::try_from(staged.info().size).unwrap_or(i64::MAX);
    row.file_extension = parsed.extension.clone();
    row.title = meta.title;
    row.summary = meta.summary;
    row.description = meta.description;
    row.release_notes = meta.release_notes;
    row.published = now_ms();

    match store(&st, &ctx, mode, row, staged).await? {
        Written::Created(row) => {
            // The built-in package repository trigger: a new version may create releases.
            super::releases::on_package_pushed(&st, &space, &ctx, &row.package_id, &row.version)
                .await;
            Ok((StatusCode::CREATED, Json(render(&space, &row))))
        }
        Written::Replaced { row, old_sha256 } => {
            if old_sha256 != row.sha256 {
                st.packages
                    .remove_if_unreferenced(&st.db, &old_sha256)
                    .await;
            }
            Ok((StatusCode::CREATED, Json(render(&space, &row))))
        }
        Written::Ignored(existing) => Ok((StatusCode::OK, Json(render(&space, &existing)))),
    }
}

fn exists(p: &PackageRow) -> ApiError {
    ApiError::conflict(format!(
        "The package {} version {} already exists in the built-in feed; push with overwriteMode=OverwriteExisting to replace it or IgnoreIfExists to keep it",
        p.package_id, p.version
    ))
}

/// Stores the blob and writes the row with its audit event, holding the blob's lock. A blob that
/// ends up unreferenced (a conflict, an ignored duplicate, a failure) is removed again.
async fn store(
    st: &AppState,
    ctx: &Ctx,
    mode: OverwriteMode,
    row: PackageRow,
    staged: Staged,
) -> ApiResult<Written> {
    let sha = row.sha256.clone();
    let _guard = st.packages.lock(&sha).await;
    st.packages
        .blobs
        .commit(staged)
        .await
        .map_err(ApiError::internal)?;
    // On PostgreSQL a concurrent push of the same package can make the insert conflict after
    // the existence check; the second attempt sees the committed row.
    let mut result = write_row(st, ctx, mode, &row).await;
    if matches!(&result, Ok(None)) {
        result = write_row(st, ctx, mode, &row).await;
    }
    let keeps_blob = matches!(
        &result,
        Ok(Some(Written::Created(_))) | Ok(Some(Written::Replaced { .. }))
    );
    if !keeps_blob && st.db.count_package_blob_refs(&sha).await.unwrap_or(1) == 0 {
        if let Err(e) = st.packages.blobs.remove(&sha).await {
            tracing::warn!(error = %e, sha256 = %sha, "could not remove an unused package file");
        }
    }
    match result? {
        Some(w) => Ok(w),
        None => match st
            .db
            .find_package(&row.space_id, &row.package_key, &row.version_key)
            .await?
        {
            Some(existing) if mode == OverwriteMode::IgnoreIfExists => {
                Ok(Written::Ignored(existing))
            }
            Some(existing) => Err(exists(&existing)),
            None => Err(ApiError::conflict(
                "Another push of the same package was in progress; try again",
            )),
        },
    }
}

/// One transaction: decide by the row that exists now, write, audit. `None` when the package
/// exists and may not be replaced, or a concurrent push won the race.
async fn write_row(
    st: &AppState,
    ctx: &Ctx,
    mode: OverwriteMode,
    row: &PackageRow,
) -> ApiResult<Option<Written>> {
    let mut tx = st.db.begin().await?;
    let existing = tx
        .find_package(&row.space_id, &row.package_key, &row.version_key)
        .await?;
    let written = match (existing, mode) {
        (Some(_), OverwriteMode::FailIfExists) => {
            tx.rollback().await?;
            return Ok(None);
        }
        (Some(e), OverwriteMode::IgnoreIfExists) => {
            tx.rollback().await?;
            return Ok(Some(Written::Ignored(e)));
        }
        (Some(e), OverwriteMode::OverwriteExisting) => {
            tx.replace_package(row).await?;
            Written::Replaced {
                row: row.clone(),
                old_sha256: e.sha256,
            }
        }
        (None, _) => match tx.insert_package(row).await {
            Ok(()) => Written::Created(row.clone()),
            Err(StoreError::Conflict) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
    };
    let (category, verb) = match &written {
        Written::Replaced { .. } => ("Modified", "replaced in"),
        _ => ("Created", "pushed to"),
    };
    audit(
        &mut tx,
        ctx,
        &row.space_id,
        category,
        format!(
            "Package {} {} was {verb} the built-in feed",
            row.package_id, row.version
        ),
        &[&row.id, BUILTIN_FEED_ID],
        json!({
            "PackageId": row.package_id,
            "Version": row.version,
            "FileExtension": row.file_extension,
            "PackageSizeBytes": row.size_bytes,
            "Hash": row.sha1,
            "Sha256": row.sha256,
        }),
    )
    .await?;
    match tx.commit().await {
        Ok(()) => Ok(Some(written)),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/{space}/packages/{packageId}/{version}/delta-signature`: delta uploads are not
/// offered; the Go CLI then uploads the whole file.
pub async fn delta_signature(
    Path((_space, package_id, version)): Path<(String, String, String)>,
) -> ApiError {
    ApiError::not_found(format!(
        "No delta signature is available for {package_id} {version}: this server takes whole uploads only"
    ))
}

// ---------------------------------------------------------------------------------------------
// Reads

/// `GET /api/{space}/packages{?nuGetPackageId,filter,latest,skip,take,includeNotes}`: ordered
/// by package id, then version descending.
pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let p = Params::parse(raw.as_deref());
    let (skip, take) = (p.skip(), p.take());
    let q = PackageQuery {
        space_id: Some(space.clone()),
        package_id: p.get("nuGetPackageId").map(str::to_string),
        filter: p.get("filter").map(str::to_string),
        latest_only: p.bool("latest") == Some(true),
        skip,
        take: Some(take),
        ..PackageQuery::default()
    };
    let (rows, total) = st.db.list_packages(&q).await?;
    let base = format!("/api/{space}/packages");
    Ok(Json(crate::query::page(
        "Package",
        rows.iter().map(|r| render(&space, r)).collect(),
        total,
        skip,
        take,
        &base,
        &format!("{base}{{/id}}{LIST_TEMPLATE}"),
    )))
}

/// `GET /api/{space}/packages/all`: every package as a bare array (the Go SDK's `GetAll`).
pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let (rows, _) = st
        .db
        .list_packages(&PackageQuery {
            space_id: Some(space.clone()),
            ..PackageQuery::default()
        })
        .await?;
    Ok(Json(Value::Array(
        rows.iter().map(|r| render(&space, r)).collect(),
    )))
}

/// A package by its id as returned (`packages-Hello.1.0.0`), else by the id and version that
/// id names in any spelling (`packages-hello.1.0`).
async fn load_package(st: &AppState, space: &str, id: &str) -> ApiResult<PackageRow> {
    require_space(st, space).await?;
    if let Some(p) = st.db.get_package(space, id).await? {
        return Ok(p);
    }
    let named = id
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("packages-"))
        .and_then(|_| filename::parse(&format!("{}.zip", &id[9..])).ok());
    if let Some(n) = named {
        if let Some(p) = st
            .db
            .find_package(space, &package_key(&n.id), &version_key(&n.version))
            .await?
        {
            return Ok(p);
        }
    }
    Err(ApiError::not_found(format!("Package '{id}' was not found")))
}

/// `GET /api/{space}/packages/{id}` (`packages-<PackageId>.<Version>`), with its build
/// information when there is some.
pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let p = load_package(&st, &space, &id).await?;
    let mut v = render(&space, &p);
    if let Some(b) = st
        .db
        .find_build_information(&space, &p.package_key, &p.version_key)
        .await?
    {
        v["PackageVersionBuildInformation"] = super::buildinfo::render(&space, &b)?;
    }
    Ok(Json(v))
}

/// `GET /api/{space}/packages/{id}/raw`: the file, streamed.
pub async fn raw(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let p = load_package(&st, &space, &id).await?;
    let Some((reader, len)) = st
        .packages
        .blobs
        .open(&p.sha256)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal(format!(
            "the file {} of package {} is missing from the feed's storage",
            p.sha256, p.id
        )));
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    let file_name = format!("{}.{}{}", p.package_id, p.version, p.file_extension);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /api/{space}/packages/{id}`: removes the row (with an audit event), then the file
/// when no other row points at it.
pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let deleted = delete_package(&st, &ctx, &space, &id, "was deleted from").await?;
    match deleted {
        Some(_) => Ok(Json(json!({}))),
        None => Err(ApiError::not_found(format!("Package '{id}' was not found"))),
    }
}

/// Deletes one package row with its audit event, then its blob if unreferenced. `None` when
/// there was no such package.
pub async fn delete_package(
    st: &AppState,
    ctx: &Ctx,
    space: &str,
    id: &str,
    how: &str,
) -> ApiResult<Option<PackageRow>> {
    let mut tx = st.db.begin().await?;
    let Some(row) = tx.delete_package(space, id).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    audit(
        &mut tx,
        ctx,
        space,
        "Deleted",
        format!(
            "Package {} {} {how} the built-in feed",
            row.package_id, row.version
        ),
        &[&row.id, BUILTIN_FEED_ID],
        json!({"PackageId": row.package_id, "Version": row.version, "Hash": row.sha1, "Sha256": row.sha256}),
    )
    .await?;
    tx.commit().await?;
    st.packages
        .remove_if_unreferenced(&st.db, &row.sha256)
        .await;
    Ok(Some(row))
}

// ---------------------------------------------------------------------------------------------
// Feed endpoints (what the Go CLI and Octopus.Client call)

fn require_builtin(feed_id: &str) -> ApiResult<()> {
    if is_builtin(feed_id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "Feed '{feed_id}' was not found"
        )))
    }
}

/// `GET /api/{space}/feeds/{feedId}/packages/versions{?packageId,take,skip,includePreRelease,
/// filter,…}`: the versions of one package, highest first, as `PackageVersion` items.
/// Pre-releases are included unless `includePreRelease=false`; `filter` is a substring of the
/// version.
pub async fn feed_versions(
    State(st): State<AppState>,
    Path((space, feed_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    require_builtin(&feed_id)?;
    let p = Params::parse(raw.as_deref());
    let Some(package_id) = p.get("packageId").map(str::to_string) else {
        return Err(ApiError::bad_request(
            "Give the package whose versions to list: packageId=…",
        ));
    };
    let (skip, take) = (p.skip(), p.take());
    let q = PackageQuery {
        space_id: Some(space.clone()),
        package_id: Some(package_id),
        version_filter: p.get("filter").map(str::to_string),
        exclude_pre_release: p.bool("includePreRelease") == Some(false),
        skip,
        take: Some(take),
        ..PackageQuery::default()
    };
    let (rows, total) = st.db.list_packages(&q).await?;
    let items = rows
        .iter()
        .map(|r| {
            json!({
                "Id": r.id,
                "PackageId": r.package_id,
                "Version": r.version,
                "FeedId": r.feed_id,
                "Published": format_ms(r.published),
                "ReleaseNotes": null,
                "SizeBytes": r.size_bytes,
                "Title": r.title,
                "Links": {"Self": package_path(&space, &r.id)},
            })
        })
        .collect();
    let base = format!("/api/{space}/feeds/{BUILTIN_FEED_ID}/packages/versions");
    Ok(Json(crate::query::page(
        "PackageVersion",
        items,
        total,
        skip,
        take,
        &base,
        &format!(
            "{base}{{?packageId,take,skip,includePreRelease,versionRange,preReleaseTag,filter,includeReleaseNotes}}"
        ),
    )))
}

/// `GET /api/{space}/feeds/{feedId}/packages{?packageId,partialMatch,includeMultipleVersions,
/// includePreRelease,take,skip}`: the legacy search, a bare array of packages (the latest
/// version of each unless `includeMultipleVersions=true`).
pub async fn feed_packages(
    State(st): State<AppState>,
    Path((space, feed_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    require_builtin(&feed_id)?;
    let p = Params::parse(raw.as_deref());
    let id = p.get("packageId").map(str::to_string);
    let partial = p.bool("partialMatch") == Some(true);
    let q = PackageQuery {
        space_id: Some(space.clone()),
        package_id: if partial { None } else { id.clone() },
        filter: if partial { id } else { None },
        latest_only: p.bool("includeMultipleVersions") != Some(true),
        exclude_pre_release: p.bool("includePreRelease") == Some(false),
        skip: p.skip(),
        take: Some(p.take()),
        ..PackageQuery::default()
    };
    let (rows, _) = st.db.list_packages(&q).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|r| render(&space, r)).collect(),
    )))
}

/// `GET /api/{space}/feeds/{feedId}/packages/search{?term,skip,take}`: package ids containing
/// `term`, each with its latest version, as `PackageDescription` items.
pub async fn feed_search(
    State(st): State<AppState>,
    Path((space, feed_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    require_builtin(&feed_id)?;
    let p = Params::parse(raw.as_deref());
    let (skip, take) = (p.skip(), p.take());
    let q = PackageQuery {
        space_id: Some(space.clone()),
        filter: p.get("term").map(str::to_string),
        latest_only: true,
        skip,
        take: Some(take),
        ..PackageQuery::default()
    };
    let (rows, total) = st.db.list_packages(&q).await?;
    let items = rows
        .iter()
        .map(|r| {
            json!({
                "Id": r.package_id,
                "Name": r.package_id,
                "Description": r.description,
                "LatestVersion": r.version,
                "Links": {
                    "Versions": format!("/api/{space}/feeds/{BUILTIN_FEED_ID}/packages/versions?packageId={}", r.package_id),
                },
            })
        })
        .collect();
    let base = format!("/api/{space}/feeds/{BUILTIN_FEED_ID}/packages/search");
    Ok(Json(crate::query::page(
        "PackageDescription",
        items,
        total,
        skip,
        take,
        &base,
        &format!("{base}{{?term,skip,take}}"),
    )))
}

/// Parses a version for the API (400 naming it).
pub fn parse_version(v: &str) -> ApiResult<Version> {
    Version::parse(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "'{v}' is not a valid version: expected 1 to 4 numbers separated by dots, optionally followed by -prerelease and +metadata (e.g. 1.2.3 or 2.0.0-beta.1)"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Content checks

mod content {
    use std::io::Read;
    use std::path::Path;

    use ferry_packages::archive::{self, ExtractError};
    use ferry_packages::filename::PackageFormat;

    use super::ContentMetadata;
    use crate::ApiError;

    /// The most of a `.nuspec` read for metadata.
    const MAX_NUSPEC_BYTES: u64 = 1 << 20;

    /// Checks that `path` holds the format its extension names (and that a zip's directory
    /// reads), and reads a `.nupkg`'s title, summary, description and release notes.
    pub fn check(
        path: &Path,
        name: &str,
        format: PackageFormat,
    ) -> Result<ContentMetadata, ApiError> {
        match archive::check_format(path, format) {
            Ok(()) => {}
            Err(ExtractError::FormatMismatch {
                declared, found, ..
            }) => {
                return Err(ApiError::bad_request(format!(
                    "'{name}' is named as a {declared} package but its content is {found}"
                )));
            }
            Err(e) => return Err(ApiError::internal(e)),
        }
        if !format.is_zip() {
            return Ok(ContentMetadata::default());
        }
        let not_zip = |e: zip::result::ZipError| {
            ApiError::bad_request(format!("'{name}' is not a valid zip archive: {e}"))
        };
        let file = std::fs::File::open(path).map_err(ApiError::internal)?;
        let mut zip = zip::ZipArchive::new(file).map_err(not_zip)?;
        if format != PackageFormat::Nupkg {
            return Ok(ContentMetadata::default());
        }
        let nuspec = zip
            .file_names()
            .find(|n| !n.contains('/') && n.to_ascii_lowercase().ends_with(".nuspec"))
            .map(str::to_string);
        let Some(nuspec) = nuspec else {
            return Err(ApiError::bad_request(format!(
                "'{name}' is not a NuGet package: it has no .nuspec file at its root"
            )));
        };
        let mut text = String::new();
        zip.by_name(&nuspec)
            .map_err(not_zip)?
            .take(MAX_NUSPEC_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| {
                ApiError::bad_request(format!("'{name}': its {nuspec} cannot be read: {e}"))
            })?;
        Ok(ContentMetadata {
            title: element(&text, "title").unwrap_or_default(),
            summary: element(&text, "summary").unwrap_or_default(),
            description: element(&text, "description").unwrap_or_default(),
            release_notes: element(&text, "releaseNotes").unwrap_or_default(),
        })
    }

    /// The text of the first element `<tag …>…</tag>` (any namespace prefix), entities and
    /// CDATA decoded. A small reader for the few flat elements of a `.nuspec`'s metadata.
    pub fn element(xml: &str, tag: &str) -> Option<String> {
        let mut rest = xml;
        loop {
            let open = rest.find('<')?;
            rest = &rest[open + 1..];
            let name_end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
            let name = &rest[..name_end];
            let local = name.rsplit(':').next().unwrap_or(name);
            if local != tag {
                continue;
            }
            let close = rest.find('>')?;
            if rest[..close].ends_with('/') {
                return Some(String::new());
            }
            let body = &rest[close + 1..];
            let end = body.find(&format!("</{name}>"))?;
            return Some(decode(body[..end].trim()));
        }
    }

    fn decode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<![CDATA[") {
                let end = after.find("]]>").unwrap_or(after.len());
                out.push_str(&after[..end]);
                rest = after.get(end + 3..).unwrap_or("");
                continue;
            }
            if rest.starts_with('&') {
                if let Some(semi) = rest.find(';') {
                    let entity = &rest[1..semi];
                    let decoded = match entity {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        e => e
                            .strip_prefix("#x")
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                            .and_then(char::from_u32),
                    };
                    if let Some(c) = decoded {
                        out.push(c);
                        rest = &rest[semi + 1..];
                        continue;
                    }
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::element;

        #[test]
        fn nuspec_elements() {
            let xml = r#"<?xml version="1.0"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Hello</id><version>1.0.0</version>
    <title>Hello &amp; welcome</title>
    <description xml:space="preserve">Says &lt;hi&gt; &#x263A;</description>
    <releaseNotes><![CDATA[Fixed <things>]]></releaseNotes>
    <summary/>
  </metadata>
</package>"#;
            assert_eq!(element(xml, "title").as_deref(), Some("Hello & welcome"));
            assert_eq!(
                element(xml, "description").as_deref(),
                Some("Says <hi> \u{263A}")
            );
            assert_eq!(
                element(xml, "releaseNotes").as_deref(),
                Some("Fixed <things>")
            );
            assert_eq!(element(xml, "summary").as_deref(), Some(""));
            assert_eq!(element(xml, "authors"), None);
            // Broken input gives what it can, never a panic.
            for broken in [
                "<title",
                "<title>",
                "<title>x",
                "<title>&</title>",
                "<title>&#xZZ;&#99999999;&bogus; é</title>",
                "<title><![CDATA[open</title>",
                "<<<>>>",
                "",
            ] {
                let _ = element(broken, "title");
            }
            assert_eq!(
                element("<title>&#xZZ; é &amp</title>", "title").as_deref(),
                Some("&#xZZ; é &amp")
            );
        }
    }
}
