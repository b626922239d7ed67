//! Build information: what CI says about a package version (branch, build, VCS commit, commits,
//! work items), pushed with the package or before it, one record per package id and version.
//! The overwrite mode comes from the query (TS) or the body (Go); camelCase `spaceId` and
//! `spaceName` in the body are ignored (the URL's space is authoritative).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::time::{format_ms, now_ms};
use ferry_store::{
    BuildInfoQuery, BuildInfoRow, StoreError, package_key, version_key, version_sort_key,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::packages::{OverwriteMode, bad_mode, parse_version, require_permission};
use super::*;
use crate::input::Body;
use crate::query::Params;
use crate::routes::Permission;

const C: &str = "BuildInformation";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Commit {
    pub id: String,
    pub comment: String,
    pub link_url: String,
}

/// `OctopusBuildInformation` as clients send it, and the stored details.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Details {
    pub branch: String,
    pub build_environment: String,
    pub build_number: String,
    pub build_url: String,
    pub vcs_type: String,
    pub vcs_root: String,
    pub vcs_commit_number: String,
    pub vcs_commit_url: String,
    pub issue_tracker_name: String,
    pub incomplete_data_warning: String,
    pub commits: Vec<Commit>,
    pub work_items: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PushBody {
    pub package_id: String,
    pub version: String,
    pub overwrite_mode: Option<String>,
    pub octopus_build_information: Details,
}

/// What was stored with the record besides the details.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
struct Stored {
    #[serde(flatten)]
    details: Details,
    last_modified_by: String,
}

/// A web link to a commit for Git repositories served over HTTP (GitHub, GitLab, Gitea and
/// Bitbucket all answer `<root>/commit/<sha>`).
fn commit_url(d: &Details, sha: &str) -> String {
    let root = d.vcs_root.trim().trim_end_matches('/');
    let root = root.strip_suffix(".git").unwrap_or(root);
    if sha.is_empty()
        || !d.vcs_type.eq_ignore_ascii_case("git")
        || !(root.starts_with("https://") || root.starts_with("http://"))
    {
        return String::new();
    }
    format!("{root}/commit/{sha}")
}

fn complete(mut d: Details) -> Details {
    if d.vcs_commit_url.is_empty() {
        d.vcs_commit_url = commit_url(&d, &d.vcs_commit_number);
    }
    let links: Vec<String> = d.commits.iter().map(|c| commit_url(&d, &c.id)).collect();
    for (c, link) in d.commits.iter_mut().zip(links) {
        if c.link_url.is_empty() {
            c.link_url = link;
        }
    }
    d
}

/// A build information record as Octopus shows it.
pub fn render(space: &str, b: &BuildInfoRow) -> ApiResult<Value> {
    let stored: Stored = serde_json::from_str(&b.body).map_err(|e| {
        ApiError::internal(format!("build information {} is unreadable: {e}", b.id))
    })?;
    let mut v = serde_json::to_value(&stored.details).map_err(ApiError::internal)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("Id".into(), json!(b.id));
        o.insert("SpaceId".into(), json!(b.space_id));
        o.insert("PackageId".into(), json!(b.package_id));
        o.insert("Version".into(), json!(b.version));
        o.insert("Created".into(), json!(format_ms(b.created)));
        o.insert("LastModifiedOn".into(), json!(format_ms(b.updated)));
        o.insert("LastModifiedBy".into(), json!(stored.last_modified_by));
        o.insert(
            "Links".into(),
            json!({"Self": format!("/api/{space}/build-information/{}", b.id)}),
        );
    }
    Ok(v)
}

/// `POST /api/{space}/build-information{?overwriteMode}`: 201 when written, 200 with the
/// existing record under `IgnoreIfExists`, 409 under `FailIfExists`.
pub async fn push(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
    ctx: Ctx,
    Body(body): Body<PushBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let mode = match (params.get("overwriteMode"), body.overwrite_mode.as_deref()) {
        (Some(m), _) => OverwriteMode::parse(m).ok_or_else(|| bad_mode(m))?,
        (None, Some(m)) if !m.trim().is_empty() => {
            OverwriteMode::parse(m).ok_or_else(|| bad_mode(m))?
        }
        _ => OverwriteMode::from_params(&params)?,
    };
    if mode == OverwriteMode::OverwriteExisting {
        require_permission(&ctx, Permission::BuildInformationAdminister)?;
    }
    let package_id = body.package_id.trim().to_string();
    if package_id.is_empty() {
        return Err(ApiError::bad_request(
            "Please provide a value for PackageId",
        ));
    }
    if !ferry_packages::filename::is_valid_id(&package_id) {
        return Err(ApiError::bad_request(format!(
            "'{package_id}' is not a valid package id: use letters, digits and '_', with single '.', '-' or '_' between them (e.g. Acme.Web-Api)"
        )));
    }
    let version_text = body.version.trim().to_string();
    if version_text.is_empty() {
        return Err(ApiError::bad_request("Please provide a value for Version"));
    }
    let version = parse_version(&version_text)?;
    let now = now_ms();
    let stored = Stored {
        details: complete(body.octopus_build_information),
        last_modified_by: ctx.principal.username.clone(),
    };
    let mut row = BuildInfoRow {
        id: String::new(),
        seq: 0,
        space_id: space.clone(),
        package_id: package_id.clone(),
        package_key: package_key(&package_id),
        version: version_text.clone(),
        version_key: version_key(&version),
        version_sort: version_sort_key(&version),
        body: serde_json::to_string(&stored).map_err(ApiError::internal)?,
        created: now,
        updated: now,
    };
    // A concurrent push of the same record can conflict at the insert (PostgreSQL); the second
    // attempt sees it.
    for _ in 0..2 {
        match write(&st, &ctx, mode, &mut row).await? {
            Some((status, r)) => return Ok((status, Json(render(&space, &r)?))),
            None if mode == OverwriteMode::FailIfExists => break,
            None => continue,
        }
    }
    Err(ApiError::conflict(format!(
        "Build information for {package_id} {version_text} already exists; push with overwriteMode=OverwriteExisting to replace it or IgnoreIfExists to keep it"
    )))
}

/// One transaction. `None` when the record exists and may not be replaced, or a concurrent push
/// won the race.
async fn write(
    st: &AppState,
    ctx: &Ctx,
    mode: OverwriteMode,
    row: &mut BuildInfoRow,
) -> ApiResult<Option<(StatusCode, BuildInfoRow)>> {
    let mut tx = st.db.begin().await?;
    let existing = tx
        .find_build_information(&row.space_id, &row.package_key, &row.version_key)
        .await?;
    let (category, verb) = match (existing, mode) {
        (Some(_), OverwriteMode::FailIfExists) => {
            tx.rollback().await?;
            return Ok(None);
        }
        (Some(e), OverwriteMode::IgnoreIfExists) => {
            tx.rollback().await?;
            return Ok(Some((StatusCode::OK, e)));
        }
        (Some(e), OverwriteMode::OverwriteExisting) => {
            row.id = e.id.clone();
            row.seq = e.seq;
            row.created = e.created;
            tx.update_build_information(row).await?;
            ("Modified", "replaced")
        }
        (None, _) => {
            row.seq = tx.next_seq(C).await?;
            row.id = format!("{C}-{}", row.seq);
            match tx.insert_build_information(row).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            ("Created", "pushed")
        }
    };
    audit(
        &mut tx,
        ctx,
        &row.space_id,
        category,
        format!(
            "Build information for {} {} was {verb}",
            row.package_id, row.version
        ),
        &[&row.id],
        json!({"PackageId": row.package_id, "Version": row.version}),
    )
    .await?;
    match tx.commit().await {
        Ok(()) => Ok(Some((StatusCode::CREATED, row.clone()))),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/{space}/build-information{?packageId,filter,latest,skip,take}`.
pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let p = Params::parse(raw.as_deref());
    let (skip, take) = (p.skip(), p.take());
    let q = BuildInfoQuery {
        space_id: Some(space.clone()),
        package_id: p.get("packageId").map(str::to_string),
        filter: p.get("filter").map(str::to_string),
        latest_only: p.bool("latest") == Some(true),
        skip,
        take: Some(take),
    };
    let (rows, total) = st.db.list_build_information(&q).await?;
    let items = rows
        .iter()
        .map(|r| render(&space, r))
        .collect::<ApiResult<Vec<_>>>()?;
    let base = format!("/api/{space}/build-information");
    Ok(Json(crate::query::page(
        C,
        items,
        total,
        skip,
        take,
        &base,
        &format!("{base}{{/id}}{{?packageId,filter,latest,skip,take,overwriteMode}}"),
    )))
}

/// `GET /api/{space}/build-information/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    match st.db.get_build_information(&space, &id).await? {
        Some(b) => Ok(Json(render(&space, &b)?)),
        None => Err(ApiError::not_found(format!(
            "Build information '{id}' was not found"
        ))),
    }
}

/// `DELETE /api/{space}/build-information/{id}`.
pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let mut tx = st.db.begin().await?;
    let Some(row) = tx.delete_build_information(&space, &id).await? else {
        tx.rollback().await?;
        return Err(ApiError::not_found(format!(
            "Build information '{id}' was not found"
        )));
    };
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!(
            "Build information for {} {} was deleted",
            row.package_id, row.version
        ),
        &[&row.id],
        json!({"PackageId": row.package_id, "Version": row.version}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_links_for_http_git_roots() {
        let d = Details {
            vcs_type: "Git".into(),
            vcs_root: "https://github.com/o/r.git".into(),
            vcs_commit_number: "abc123".into(),
            commits: vec![Commit {
                id: "def".into(),
                ..Commit::default()
            }],
            ..Details::default()
        };
        let d = complete(d);
        assert_eq!(d.vcs_commit_url, "https://github.com/o/r/commit/abc123");
        assert_eq!(d.commits[0].link_url, "https://github.com/o/r/commit/def");
        let ssh = complete(Details {
            vcs_type: "Git".into(),
            vcs_root: "git@github.com:o/r.git".into(),
            vcs_commit_number: "abc".into(),
            ..Details::default()
        });
        assert_eq!(ssh.vcs_commit_url, "");
    }
}
