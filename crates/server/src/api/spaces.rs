//! Spaces (system level) and the space root document, whose `Links` the Go CLI discovers
//! everything from.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::Space;
use ferry_domain::ids::slugify;
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

const C: &str = "Spaces";

fn render(s: &Space) -> Value {
    let base = format!("/api/spaces/{}", s.id);
    with_links(
        s,
        links(
            base,
            &[
                ("SpaceHome", format!("/api/{}", s.id)),
                ("Web", format!("/app#/{}", s.id)),
            ],
        ),
    )
}

pub async fn list(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let base = "/api/spaces";
    Ok(Json(
        list_page(
            &st,
            DocQuery::new(C),
            &Params::parse(raw.as_deref()),
            "Space",
            base,
            "/api/spaces{/id}{?skip,ids,take,partialName}",
            |d| Ok(render(&parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn all(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(
        list_all(&st, DocQuery::new(C), |d| Ok(render(&parse_body(d)?))).await?,
    ))
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    match st.db.find_doc(C, None, None, &id).await? {
        Some(d) => Ok(Json(render(&parse_body(&d)?))),
        None => Err(ApiError::not_found(format!("Space '{id}' was not found"))),
    }
}

pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(s): Body<Space>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = require_name(&s.name, "space", 50)?;
    let space = crate::bootstrap::create_space(&st.db, &name, &s.description, false, Some(&ctx))
        .await
        .map_err(|e| name_conflict(e, "space", &name))?;
    Ok((StatusCode::CREATED, Json(render(&space))))
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
    Body(mut s): Body<Space>,
) -> ApiResult<Json<Value>> {
    let Some(row) = st.db.find_doc(C, None, None, &id).await? else {
        return Err(ApiError::not_found(format!("Space '{id}' was not found")));
    };
    let old: Space = parse_body(&row)?;
    let name = require_name(&s.name, "space", 50)?;
    s.id = old.id.clone();
    s.name = name.clone();
    s.slug = slugify(&name);
    s.is_default = old.is_default;
    let mut tx = st.db.begin().await?;
    let mut r = doc_row(C, &s.id, "", "", &s.name, &s.slug, 0, row.seq, &s)?;
    r.created_at = row.created_at;
    tx.update_doc(&r)
        .await
        .map_err(|e| name_conflict(e, "space", &name))?;
    audit(
        &mut tx,
        &ctx,
        &s.id,
        "Modified",
        format!("Space {} was modified", s.name),
        &[&s.id],
        json!({"Before": old, "After": s}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&s)))
}

/// `GET /api/{spaceId}`: the space and its links.
pub async fn home(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    if !ferry_domain::ids::is_space_id(&space) {
        return Err(ApiError::not_found(format!("'{space}' is not a space id")));
    }
    let s = require_space(&st, &space).await?;
    let b = format!("/api/{}", s.id);
    let l = json!({
        "Self": b,
        "Projects": format!("{b}/projects{{/id}}{{?name,skip,ids,clone,take,partialName,clonedFromProjectId}}"),
        "ProjectsAll": format!("{b}/projects/all"),
        "ProjectGroups": format!("{b}/projectgroups{{/id}}{{?skip,take,ids,partialName}}"),
        "Releases": format!("{b}/releases{{/id}}{{?skip,ignoreChannelRules,take,ids}}"),
        "Channels": format!("{b}/channels{{/id}}{{?skip,take,ids,partialName}}"),
        "Environments": format!("{b}/environments{{/id}}{{?name,skip,ids,take,partialName}}"),
        "EnvironmentsAll": format!("{b}/environments/all"),
        "Tasks": format!("{b}/tasks{{/id}}{{?skip,active,environment,tenant,runbook,project,name,node,running,states,hasPendingInterruptions,hasWarningsOrErrors,take,ids,partialName,spaces,includeSystem}}"),
        "Spaces": "/api/spaces{/id}{?skip,ids,take,partialName}",
        "Deployments": format!("{b}/deployments{{/id}}{{?skip,take,ids,projects,environments,tenants,channels,taskState,partialName}}"),
        "Tenants": format!("{b}/tenants{{/id}}{{?skip,projectId,tags,take,ids,clone,partialName,clonedFromTenantId}}"),
        "TenantsAll": format!("{b}/tenants/all"),
        "TenantVariablesMissing": format!("{b}/tenants/variables-missing{{?tenantId,projectId,environmentId}}"),
        "TagSets": format!("{b}/tagsets{{/id}}{{?skip,take,ids,partialName}}"),
        "TagSetsAll": format!("{b}/tagsets/all"),
        "Feeds": format!("{b}/feeds{{/id}}{{?skip,take,ids,partialName,feedType,name}}"),
        "Packages": format!("{b}/packages{{/id}}{{?nuGetPackageId,filter,latest,skip,take,includeNotes}}"),
        "PackageUpload": format!("{b}/packages/raw{{?replace,overwriteMode}}"),
        "BuildInformation": format!("{b}/build-information{{/id}}{{?packageId,filter,latest,skip,take,overwriteMode}}"),
        "Lifecycles": format!("{b}/lifecycles{{/id}}{{?skip,take,ids,partialName}}"),
        "DeploymentProcesses": format!("{b}/deploymentprocesses{{/id}}{{?skip,take,ids}}"),
        "Machines": format!("{b}/machines{{/id}}{{?skip,take,name,ids,partialName,roles,isDisabled,healthStatuses,commStyles,tenantIds,tenantTags,environmentIds,thumbprint,deploymentId,shellNames}}"),
        "Variables": format!("{b}/variables{{/id}}{{?ids}}"),
        "WorkerPools": format!("{b}/workerpools{{/id}}{{?skip,take,ids,partialName,name}}"),
        "WorkerPoolsAll": format!("{b}/workerpools/all"),
        "Workers": format!("{b}/workers{{/id}}{{?skip,take,name,ids,partialName,isDisabled,healthStatuses,commStyles,thumbprint,workerPoolIds}}"),
        "LibraryVariables": format!("{b}/libraryvariablesets{{/id}}{{?skip,contentType,take,ids,partialName}}"),
        "Events": format!("{b}/events{{/id}}{{?skip,regarding,regardingAny,user,users,projects,environments,eventGroups,eventCategories,tags,tenants,from,to,internal,fromAutoId,toAutoId,documentTypes,take,ids,spaces,includeSystem,excludeDifference}}"),
        "Runbooks": format!("{b}/runbooks{{/id}}{{?skip,take,ids,partialName,clone,projectIds}}"),
        "RunbookRuns": format!("{b}/runbookRuns{{/id}}{{?skip,take,ids,projects,environments,tenants,runbooks,taskState,partialName}}"),
        "Web": format!("/app#/{}", s.id),
    });
    Ok(Json(with_links(&s, l)))
}
