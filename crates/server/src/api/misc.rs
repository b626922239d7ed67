//! The root document, health, metrics, OpenAPI, capabilities and feeds.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use ferry_domain::Feed;
use serde_json::{Value, json};

use super::*;
use crate::OCTOPUS_COMPAT_VERSION;

/// `GET /api`: what the clients read first (`Version` must be semver ≥ 2022.3.5512,
/// `InstallationId` a UUID) and the links the Go CLI discovers routes from.
pub async fn root(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "Application": "Octopus Deploy",
        "Version": OCTOPUS_COMPAT_VERSION,
        "ApiVersion": "3.0.0",
        "InstallationId": st.installation_id.as_ref(),
        "IsEarlyAccessProgram": false,
        "HasLongTermSupport": false,
        "FerryVersion": env!("CARGO_PKG_VERSION"),
        "Links": {
            "Self": "/api",
            "Spaces": "/api/spaces{/id}{?skip,ids,take,partialName}",
            "SpaceHome": "/api/{spaceId}",
            "CurrentUser": "/api/users/me",
            "Users": "/api/users{/id}{?skip,take,ids,filter}",
            "Tasks": "/api/tasks{/id}{?skip,active,environment,tenant,runbook,project,name,node,running,states,hasPendingInterruptions,hasWarningsOrErrors,take,ids,partialName,spaces,includeSystem}",
            "Events": "/api/events{/id}{?skip,regarding,user,eventCategories,take,spaces}",
            "Capabilities": "/api/capabilities",
            "OpenApi": "/api/openapi.json",
            "Web": "/app",
        }
    }))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"Status": "Healthy"}))
}

pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let counts = st.db.count_tasks_by_state().await.unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&counts),
    )
}

pub async fn openapi(State(st): State<AppState>) -> Json<Value> {
    Json(st.routes.openapi())
}

/// `GET /api/certificates/certificate-global`: the thumbprint agents pin, read over the
/// authenticated API by `ferry agent register` (no trust on first use).
pub async fn certificate_global(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "Id": "certificate-global",
        "Name": "Ferry server certificate",
        "Thumbprint": st.config.server_thumbprint,
        "SignatureAlgorithm": "ecdsa-with-SHA256",
        "PollingPort": st.config.polling_port,
        "Links": {"Self": "/api/certificates/certificate-global"}
    }))
}

pub async fn capabilities() -> Json<Value> {
    Json(json!({"Capabilities": [], "Links": {}}))
}

/// The built-in feed of a space, with the links clients search it through.
/// `DeleteUnreleasedPackagesAfterDays` shows the periodic retention's age rule (0: none).
fn builtin_feed(st: &AppState, space: &str) -> Value {
    let f = Feed {
        space_id: space.to_string(),
        delete_unreleased_packages_after_days: st
            .packages
            .retention
            .older_than_days
            .map(i64::from)
            .unwrap_or(0),
        ..Feed::default()
    };
    let base = format!("/api/{space}/feeds/{}", f.id);
    with_links(
        &f,
        links(
            base.clone(),
            &[
                (
                    "Packages",
                    format!(
                        "{base}/packages{{?packageId,partialMatch,includeMultipleVersions,includeNotes,includePreRelease,versionRange,preReleaseTag,take,skip}}"
                    ),
                ),
                (
                    "SearchTemplate",
                    format!(
                        "{base}/packages{{?packageId,partialMatch,includeMultipleVersions,includeNotes,includePreRelease,versionRange,preReleaseTag,take,skip}}"
                    ),
                ),
                (
                    "SearchPackagesTemplate",
                    format!("{base}/packages/search{{?term,skip,take}}"),
                ),
                (
                    "SearchPackageVersionsTemplate",
                    format!(
                        "{base}/packages/versions{{?packageId,take,skip,includePreRelease,versionRange,preReleaseTag,filter,includeReleaseNotes}}"
                    ),
                ),
            ],
        ),
    )
}

/// `GET /api/{space}/feeds{?ids,feedType,name,partialName,skip,take}`: the built-in feed is
/// the only one; the filters decide whether it is listed (the Go CLI asks
/// `feeds?feedType=BuiltIn&take=1`).
pub async fn feeds(
    State(st): State<AppState>,
    Path(space): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let p = crate::query::Params::parse(raw.as_deref());
    let f = Feed::default();
    let ids = p.list("ids");
    let matches = (ids.is_empty() || ids.iter().any(|i| i.eq_ignore_ascii_case(&f.id)))
        && p.list("feedType")
            .iter()
            .all(|t| t.eq_ignore_ascii_case(&f.feed_type))
        && p.get("name")
            .is_none_or(|n| n.eq_ignore_ascii_case(&f.name))
        && p.get("partialName")
            .is_none_or(|n| f.name.to_lowercase().contains(&n.to_lowercase()));
    let (skip, take) = (p.skip(), p.take());
    let items = if matches && skip == 0 && take > 0 {
        vec![builtin_feed(&st, &space)]
    } else {
        Vec::new()
    };
    Ok(Json(crate::query::page(
        "Feed",
        items,
        i64::from(matches),
        skip,
        take,
        &format!("/api/{space}/feeds"),
        &format!("/api/{space}/feeds{{/id}}{{?skip,take,ids,partialName,feedType,name}}"),
    )))
}

pub async fn feed(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    if id.eq_ignore_ascii_case(ferry_domain::BUILTIN_FEED_ID) {
        Ok(Json(builtin_feed(&st, &space)))
    } else {
        Err(ApiError::not_found(format!("Feed '{id}' was not found")))
    }
}
