//! Teams, user roles and scoped role grants, in Octopus's shapes (`/api/teams`,
//! `/api/{space}/teams`, `/api/userroles`, `/api/scopeduserroles`), and a user's effective
//! permissions (`/api/users/{id}/permissions`). The decisions are in `crate::authz`; see
//! `docs/permissions.md`.
//!
//! Nobody can give more than they hold: changing the members or grants of the administrators
//! team, granting a role with system permissions, or a system-level grant, needs
//! `AdministerSystem`; a space grant needs every permission of its role in that space.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_store::{DocQuery, DocRow, StoreError, Tx};
use serde_json::{Value, json};

use super::*;
use crate::authz::{
    self, RoleDoc, ScopedRoleDoc, TEAM_ADMINISTRATORS, TEAM_EVERYONE, Target, TeamDoc,
    space_managers_team,
};
use crate::input::Body;
use crate::roles::{self, RoleDef};
use crate::routes::{Permission, Routes};

const TEAMS: &str = "Teams";
const GRANTS: &str = "ScopedUserRoles";
const ROLES: &str = "UserRoles";

/// This module's routes.
pub fn routes(r: Routes) -> Routes {
    use Permission as P;
    use axum::http::Method as M;
    r.add(
        M::GET,
        "/api/userroles",
        P::Authenticated,
        "List user roles",
        list_roles,
    )
    .add(
        M::POST,
        "/api/userroles",
        P::UserRoleEdit,
        "Create a custom user role",
        create_role,
    )
    .add(
        M::GET,
        "/api/userroles/{id}",
        P::Authenticated,
        "Get a user role",
        get_role,
    )
    .add(
        M::PUT,
        "/api/userroles/{id}",
        P::UserRoleEdit,
        "Change a custom user role",
        update_role,
    )
    .add(
        M::DELETE,
        "/api/userroles/{id}",
        P::UserRoleEdit,
        "Delete a custom user role",
        delete_role,
    )
    .add(
        M::GET,
        "/api/teams",
        P::TeamView,
        "List teams (system teams and those of every space)",
        list_all_teams,
    )
    .add(
        M::POST,
        "/api/teams",
        P::TeamCreate,
        "Create a team",
        create_team_system,
    )
    .add(
        M::GET,
        "/api/teams/{id}",
        P::TeamView,
        "Get a team",
        get_team,
    )
    .add(
        M::PUT,
        "/api/teams/{id}",
        P::TeamEdit,
        "Change a team (members, name)",
        update_team,
    )
    .add(
        M::DELETE,
        "/api/teams/{id}",
        P::TeamDelete,
        "Delete a team",
        delete_team,
    )
    .add(
        M::GET,
        "/api/teams/{id}/scopeduserroles",
        P::TeamView,
        "A team's role grants",
        team_grants,
    )
    .add(
        M::GET,
        "/api/{space_id}/teams",
        P::TeamView,
        "List a space's teams (and the system teams)",
        list_space_teams,
    )
    .add(
        M::POST,
        "/api/{space_id}/teams",
        P::TeamCreate,
        "Create a team in a space",
        create_team_space,
    )
    .add(
        M::GET,
        "/api/{space_id}/teams/{id}",
        P::TeamView,
        "Get a team",
        get_team_space,
    )
    .add(
        M::PUT,
        "/api/{space_id}/teams/{id}",
        P::TeamEdit,
        "Change a team",
        update_team_space,
    )
    .add(
        M::DELETE,
        "/api/{space_id}/teams/{id}",
        P::TeamDelete,
        "Delete a team",
        delete_team_space,
    )
    .add(
        M::GET,
        "/api/{space_id}/teams/{id}/scopeduserroles",
        P::TeamView,
        "A team's role grants",
        team_grants_space,
    )
    .add(
        M::POST,
        "/api/scopeduserroles",
        P::TeamEdit,
        "Grant a role to a team",
        create_grant_system,
    )
    .add(
        M::POST,
        "/api/{space_id}/scopeduserroles",
        P::TeamEdit,
        "Grant a role to a team in a space",
        create_grant_space,
    )
    .add(
        M::GET,
        "/api/scopeduserroles/{id}",
        P::TeamView,
        "Get a role grant",
        get_grant,
    )
    .add(
        M::PUT,
        "/api/scopeduserroles/{id}",
        P::TeamEdit,
        "Change a role grant's scope",
        update_grant,
    )
    .add(
        M::DELETE,
        "/api/scopeduserroles/{id}",
        P::TeamEdit,
        "Remove a role grant",
        delete_grant,
    )
    .add(
        M::GET,
        "/api/{space_id}/scopeduserroles/{id}",
        P::TeamView,
        "Get a role grant",
        get_grant_space,
    )
    .add(
        M::PUT,
        "/api/{space_id}/scopeduserroles/{id}",
        P::TeamEdit,
        "Change a role grant's scope",
        update_grant_space,
    )
    .add(
        M::DELETE,
        "/api/{space_id}/scopeduserroles/{id}",
        P::TeamEdit,
        "Remove a role grant",
        delete_grant_space,
    )
    .add(
        M::GET,
        "/api/users/{id}/permissions",
        P::Authenticated,
        "A user's effective permissions (and the teams they come from)",
        user_permissions,
    )
    .add(
        M::GET,
        "/api/users/{id}/teams",
        P::Authenticated,
        "The teams a user is a member of",
        user_teams,
    )
    .add(
        M::GET,
        "/api/permissions/all",
        P::Authenticated,
        "Every permission, with its level and scope dimensions",
        all_permissions,
    )
}

// ---- built-in teams -----------------------------------------------------------------------

fn team_row(t: &TeamDoc) -> ApiResult<DocRow> {
    doc_row(
        TEAMS,
        &t.id,
        t.space_id.as_deref().unwrap_or(""),
        "",
        &t.name,
        "",
        0,
        id_seq(&t.id),
        t,
    )
}

fn grant_row(g: &ScopedRoleDoc) -> ApiResult<DocRow> {
    doc_row(
        GRANTS,
        &g.id,
        g.space_id.as_deref().unwrap_or(""),
        &g.team_id,
        &g.id,
        "",
        0,
        id_seq(&g.id),
        g,
    )
}

fn internal(e: ApiError) -> StoreError {
    StoreError::Corrupt(e.message)
}

/// Inserts a document unless one with its id exists.
async fn insert_missing(tx: &mut Tx, row: DocRow) -> Result<(), StoreError> {
    if tx.get_doc(&row.id).await?.is_none() {
        tx.insert_doc(&row).await?;
    }
    Ok(())
}

/// The space managers team of a new space, with its grant (inside the space's transaction).
pub async fn create_space_team(tx: &mut Tx, space: &str) -> Result<(), StoreError> {
    let team = TeamDoc {
        id: space_managers_team(space),
        name: "Space Managers".to_string(),
        description: "Members may do everything in this space.".to_string(),
        space_id: Some(space.to_string()),
        ..TeamDoc::default()
    };
    insert_missing(tx, team_row(&team).map_err(internal)?).await?;
    let grant = ScopedRoleDoc {
        id: format!("scopeduserroles-spacemanagers-{space}"),
        team_id: team.id.clone(),
        user_role_id: roles::SPACE_MANAGER.to_string(),
        space_id: Some(space.to_string()),
        ..ScopedRoleDoc::default()
    };
    insert_missing(tx, grant_row(&grant).map_err(internal)?).await
}

/// Makes sure the built-in teams exist: Everyone, the administrators (with `admin_id` as its
/// first member and the System administrator role) and each space's managers.
pub async fn ensure_built_in(
    db: &ferry_store::Db,
    admin_id: &str,
    spaces: &[String],
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    // Nodes starting at the same moment seed the same rows. On PostgreSQL the node that loses
    // the race sees the unique-key conflict on an INSERT (not at commit), so a conflict at any
    // step means another node seeded them.
    let seeded: Result<(), StoreError> = async {
        let everyone = TeamDoc {
            id: TEAM_EVERYONE.to_string(),
            name: "Everyone".to_string(),
            description: "Every user is a member. It has no roles unless you grant some."
                .to_string(),
            ..TeamDoc::default()
        };
        insert_missing(&mut tx, team_row(&everyone).map_err(internal)?).await?;
        let admins = TeamDoc {
            id: TEAM_ADMINISTRATORS.to_string(),
            name: "Octopus Administrators".to_string(),
            description: "Members may do everything, in every space.".to_string(),
            member_user_ids: vec![admin_id.to_string()],
            ..TeamDoc::default()
        };
        insert_missing(&mut tx, team_row(&admins).map_err(internal)?).await?;
        let grant = ScopedRoleDoc {
            id: "scopeduserroles-administrators".to_string(),
            team_id: TEAM_ADMINISTRATORS.to_string(),
            user_role_id: roles::SYSTEM_ADMINISTRATOR.to_string(),
            ..ScopedRoleDoc::default()
        };
        insert_missing(&mut tx, grant_row(&grant).map_err(internal)?).await?;
        for s in spaces {
            create_space_team(&mut tx, s).await?;
        }
        Ok(())
    }
    .await;
    let committed = match seeded {
        Ok(()) => tx.commit().await,
        Err(e) => Err(e),
    };
    match committed {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

// ---- rendering ----------------------------------------------------------------------------

fn render_team(t: &TeamDoc) -> Value {
    let built_in = t.id == TEAM_EVERYONE
        || t.id == TEAM_ADMINISTRATORS
        || t.id.starts_with("teams-spacemanagers-");
    let mut v = with_links(
        t,
        links(
            format!("/api/teams/{}", t.id),
            &[(
                "ScopedUserRoles",
                format!("/api/teams/{}/scopeduserroles", t.id),
            )],
        ),
    );
    if let Some(o) = v.as_object_mut() {
        o.insert("CanBeDeleted".into(), json!(!built_in));
        o.insert("CanBeRenamed".into(), json!(!built_in));
        o.insert("CanChangeMembers".into(), json!(t.id != TEAM_EVERYONE));
        o.insert("CanChangeRoles".into(), json!(true));
    }
    v
}

fn render_role(r: &RoleDef) -> Value {
    let names = |ps: &[Permission]| -> Vec<String> {
        let mut v: Vec<String> = ps.iter().map(|p| p.name()).collect();
        v.sort();
        v
    };
    json!({
        "Id": r.id,
        "Name": r.name,
        "Description": r.description,
        "SupportedRestrictions": ["Projects", "ProjectGroups", "Environments", "Tenants"],
        "SpacePermissionDescriptions": [],
        "SystemPermissionDescriptions": [],
        "GrantedSpacePermissions": names(&r.space),
        "GrantedSystemPermissions": names(&r.system),
        "CanBeDeleted": !r.built_in,
        "Links": {"Self": format!("/api/userroles/{}", r.id)},
    })
}

fn render_grant(g: &ScopedRoleDoc) -> Value {
    with_links(g, links(format!("/api/scopeduserroles/{}", g.id), &[]))
}

fn page_of(item_type: &str, items: Vec<Value>, base: &str, raw: Option<&str>) -> Value {
    let params = crate::query::Params::parse(raw);
    let (skip, take) = (params.skip(), params.take());
    let (page, total) = crate::query::keep_page(items, |_| true, skip, take, false);
    crate::query::page(
        item_type,
        page,
        total,
        skip,
        take,
        base,
        &list_template(base),
    )
}

// ---- roles --------------------------------------------------------------------------------

pub async fn list_roles(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let model = authz::model(&st).await?;
    let params = crate::query::Params::parse(raw.as_deref());
    let partial = params.get("partialName").map(str::to_lowercase);
    let items = model
        .roles()
        .into_iter()
        .filter(|r| {
            partial
                .as_ref()
                .is_none_or(|p| r.name.to_lowercase().contains(p))
        })
        .map(render_role)
        .collect();
    Ok(Json(page_of(
        "UserRole",
        items,
        "/api/userroles",
        raw.as_deref(),
    )))
}

async fn find_role(st: &AppState, id: &str) -> ApiResult<RoleDef> {
    let model = authz::model(st).await?;
    model
        .roles()
        .into_iter()
        .find(|r| r.id == id || r.name.eq_ignore_ascii_case(id))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("User role '{id}' was not found")))
}

pub async fn get_role(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(render_role(&find_role(&st, &id).await?)))
}

fn validate_role(r: &mut RoleDoc) -> ApiResult<()> {
    r.name = require_name(&r.name, "user role", 200)?;
    let mut errors = Vec::new();
    let mut check = |names: &mut Vec<String>, system: bool| {
        let mut out = Vec::new();
        for n in names.iter() {
            match Permission::parse(n) {
                Some(p) if p.is_system() == system => {
                    if !out.contains(&p.name()) {
                        out.push(p.name());
                    }
                }
                Some(p) => errors.push(format!(
                    "{} is a {} permission; list it under {}",
                    p.name(),
                    if system { "space" } else { "system" },
                    if system {
                        "GrantedSpacePermissions"
                    } else {
                        "GrantedSystemPermissions"
                    }
                )),
                None => errors.push(format!("'{n}' is not a permission")),
            }
        }
        *names = out;
    };
    check(&mut r.granted_space_permissions, false);
    check(&mut r.granted_system_permissions, true);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "There was a problem with your request.".to_string(),
            errors,
        })
    }
}

pub async fn create_role(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(mut r): Body<RoleDoc>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate_role(&mut r)?;
    if roles::built_in()
        .iter()
        .any(|b| b.name.eq_ignore_ascii_case(&r.name))
    {
        return Err(ApiError::conflict(format!(
            "A built-in user role is called '{}'",
            r.name
        )));
    }
    let seq = next_seq(&st, ROLES).await?;
    r.id = format!("UserRoles-{seq}");
    let row = doc_row(ROLES, &r.id, "", "", &r.name, "", 0, seq, &r)?;
    let name = r.name.clone();
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "user role",
            name: &name,
        },
        row,
        &r,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(render_role(&find_role(&st, &r.id).await?)),
    ))
}

async fn load_custom_role(st: &AppState, id: &str) -> ApiResult<(DocRow, RoleDoc)> {
    if roles::built_in().iter().any(|b| b.id == id) {
        return Err(ApiError::bad_request(format!(
            "'{id}' is a built-in user role; built-in roles cannot be changed or deleted"
        )));
    }
    load(st, ROLES, "", id, "User role").await
}

pub async fn update_role(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
    Body(mut r): Body<RoleDoc>,
) -> ApiResult<Json<Value>> {
    let (row, old) = load_custom_role(&st, &id).await?;
    validate_role(&mut r)?;
    r.id = old.id.clone();
    let new_row = doc_row(ROLES, &r.id, "", "", &r.name, "", 0, row.seq, &r)?;
    let name = r.name.clone();
    update_audited(
        &st,
        &ctx,
        Named {
            what: "user role",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &r,
    )
    .await?;
    Ok(Json(render_role(&find_role(&st, &id).await?)))
}

pub async fn delete_role(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    let (_, old) = load_custom_role(&st, &id).await?;
    let (grants, _) = st.db.list_docs(&DocQuery::new(GRANTS)).await?;
    let users: Vec<String> = grants
        .iter()
        .filter_map(|g| parse_body::<ScopedRoleDoc>(g).ok())
        .filter(|g| g.user_role_id == id)
        .map(|g| g.team_id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::bad_request(format!(
            "The user role '{}' is granted to {}; remove those grants first",
            old.name,
            users.join(", ")
        )));
    }
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "user role",
            name: &old.name,
        },
        "",
        &id,
        &old,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- teams --------------------------------------------------------------------------------

async fn load_team(st: &AppState, id: &str) -> ApiResult<(DocRow, TeamDoc)> {
    match st.db.get_doc(id).await? {
        Some(d) if d.collection == TEAMS => {
            let t = parse_body(&d)?;
            Ok((d, t))
        }
        _ => Err(ApiError::not_found(format!("Team '{id}' was not found"))),
    }
}

/// The permission to act on a team: in its space, or (system teams) `UserEdit`, and
/// `AdministerSystem` for the administrators team.
async fn require_on_team(
    st: &AppState,
    ctx: &Ctx,
    team: &TeamDoc,
    permission: Permission,
) -> ApiResult<()> {
    if team.id == TEAM_ADMINISTRATORS && permission != Permission::TeamView {
        return authz::require_system(st, ctx, Permission::AdministerSystem).await;
    }
    match team.space_id.as_deref() {
        Some(s) => authz::require(st, ctx, Some(s), permission, &Target::ANY).await,
        None if permission == Permission::TeamView => Ok(()),
        None => authz::require_system(st, ctx, Permission::UserEdit).await,
    }
}

async fn visible_teams(st: &AppState, ctx: &Ctx, space: Option<&str>) -> ApiResult<Vec<TeamDoc>> {
    let (rows, _) = st.db.list_docs(&DocQuery::new(TEAMS)).await?;
    let checker = authz::checker(st, &ctx.principal).await?;
    let mut out = Vec::new();
    for row in &rows {
        let t: TeamDoc = parse_body(row)?;
        let in_scope = match (space, t.space_id.as_deref()) {
            (Some(s), Some(ts)) => s == ts,
            (Some(_), None) => true,
            (None, _) => true,
        };
        let visible = match t.space_id.as_deref() {
            None => true,
            Some(ts) => checker.can(Some(ts), Permission::TeamView, &Target::ANY),
        };
        if in_scope && visible {
            out.push(t);
        }
    }
    Ok(out)
}

fn filter_teams(teams: Vec<TeamDoc>, raw: Option<&str>) -> Vec<Value> {
    let params = crate::query::Params::parse(raw);
    let partial = params.get("partialName").map(str::to_lowercase);
    let ids = params.list("ids");
    teams
        .iter()
        .filter(|t| {
            partial
                .as_ref()
                .is_none_or(|p| t.name.to_lowercase().contains(p))
        })
        .filter(|t| ids.is_empty() || ids.contains(&t.id))
        .map(render_team)
        .collect()
}

pub async fn list_all_teams(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let teams = visible_teams(&st, &ctx, None).await?;
    Ok(Json(page_of(
        "Team",
        filter_teams(teams, raw.as_deref()),
        "/api/teams",
        raw.as_deref(),
    )))
}

pub async fn list_space_teams(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let teams = visible_teams(&st, &ctx, Some(&space)).await?;
    let base = format!("/api/{space}/teams");
    Ok(Json(page_of(
        "Team",
        filter_teams(teams, raw.as_deref()),
        &base,
        raw.as_deref(),
    )))
}

async fn check_members(st: &AppState, members: &mut Vec<String>) -> ApiResult<()> {
    let mut seen = HashSet::new();
    members.retain(|m| seen.insert(m.clone()));
    let mut unknown = Vec::new();
    for m in members.iter() {
        if st.db.get_user(m).await?.is_none() {
            unknown.push(m.clone());
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "These users do not exist: {}",
            unknown.join(", ")
        )))
    }
}

async fn create_team(
    st: &AppState,
    ctx: &Ctx,
    space: Option<String>,
    mut t: TeamDoc,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let Some(s) = &space {
        require_space(st, s).await?;
    }
    t.space_id = space;
    t.name = require_name(&t.name, "team", 200)?;
    check_members(st, &mut t.member_user_ids).await?;
    require_on_team(st, ctx, &t, Permission::TeamCreate).await?;
    let seq = next_seq(st, TEAMS).await?;
    t.id = format!("Teams-{seq}");
    let row = team_row(&t)?;
    let name = t.name.clone();
    insert_audited(
        st,
        ctx,
        Named {
            what: "team",
            name: &name,
        },
        row,
        &t,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render_team(&t))))
}

/// `POST /api/teams`: a system team, or a space team when the body names `SpaceId`.
pub async fn create_team_system(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(t): Body<TeamDoc>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let space = t.space_id.clone().filter(|s| !s.is_empty());
    create_team(&st, &ctx, space, t).await
}

pub async fn create_team_space(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(t): Body<TeamDoc>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create_team(&st, &ctx, Some(space), t).await
}

async fn get_team_in(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    space: Option<&str>,
) -> ApiResult<Json<Value>> {
    let (_, t) = load_team(st, id).await?;
    if space.is_some_and(|s| t.space_id.as_deref().is_some_and(|ts| ts != s)) {
        return Err(ApiError::not_found(format!("Team '{id}' was not found")));
    }
    require_on_team(st, ctx, &t, Permission::TeamView).await?;
    Ok(Json(render_team(&t)))
}

pub async fn get_team(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    get_team_in(&st, &ctx, &id, None).await
}

pub async fn get_team_space(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    get_team_in(&st, &ctx, &id, Some(&space)).await
}

async fn update_team_in(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    mut t: TeamDoc,
) -> ApiResult<Json<Value>> {
    let (row, old) = load_team(st, id).await?;
    require_on_team(st, ctx, &old, Permission::TeamEdit).await?;
    t.id = old.id.clone();
    t.space_id = old.space_id.clone();
    t.name = require_name(&t.name, "team", 200)?;
    if t.name != old.name
        && (old.id == TEAM_EVERYONE
            || old.id == TEAM_ADMINISTRATORS
            || old.id.starts_with("teams-spacemanagers-"))
    {
        return Err(ApiError::bad_request(format!(
            "The built-in team '{}' cannot be renamed",
            old.name
        )));
    }
    if old.id == TEAM_EVERYONE && !t.member_user_ids.is_empty() {
        return Err(ApiError::bad_request(
            "Everyone is a member of the Everyone team; it has no member list",
        ));
    }
    check_members(st, &mut t.member_user_ids).await?;
    if old.id == TEAM_ADMINISTRATORS && t.member_user_ids.is_empty() {
        return Err(ApiError::bad_request(
            "The administrators team must keep at least one member",
        ));
    }
    let new_row = team_row(&t)?;
    let name = t.name.clone();
    update_audited(
        st,
        ctx,
        Named {
            what: "team",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &t,
    )
    .await?;
    Ok(Json(render_team(&t)))
}

pub async fn update_team(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
    Body(t): Body<TeamDoc>,
) -> ApiResult<Json<Value>> {
    update_team_in(&st, &ctx, &id, t).await
}

pub async fn update_team_space(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(t): Body<TeamDoc>,
) -> ApiResult<Json<Value>> {
    let (_, old) = load_team(&st, &id).await?;
    if old.space_id.as_deref().is_some_and(|s| s != space) {
        return Err(ApiError::not_found(format!("Team '{id}' was not found")));
    }
    update_team_in(&st, &ctx, &id, t).await
}

async fn delete_team_in(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<StatusCode> {
    let (_, old) = load_team(st, id).await?;
    if old.id == TEAM_EVERYONE
        || old.id == TEAM_ADMINISTRATORS
        || old.id.starts_with("teams-spacemanagers-")
    {
        return Err(ApiError::bad_request(format!(
            "The built-in team '{}' cannot be deleted",
            old.name
        )));
    }
    require_on_team(st, ctx, &old, Permission::TeamDelete).await?;
    let mut tx = st.db.begin().await?;
    tx.delete_docs_owned_by(id).await?;
    tx.delete_doc(id).await?;
    audit(
        &mut tx,
        ctx,
        old.space_id.as_deref().unwrap_or(""),
        "Deleted",
        format!("Deleted team {} and its role grants", old.name),
        &[id],
        json!({"Before": old}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_team(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    delete_team_in(&st, &ctx, &id).await
}

pub async fn delete_team_space(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    let (_, old) = load_team(&st, &id).await?;
    if old.space_id.as_deref().is_some_and(|s| s != space) {
        return Err(ApiError::not_found(format!("Team '{id}' was not found")));
    }
    delete_team_in(&st, &ctx, &id).await
}

async fn grants_of(st: &AppState, team: &str) -> ApiResult<Vec<ScopedRoleDoc>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            owner_id: Some(team.to_string()),
            ..DocQuery::new(GRANTS)
        })
        .await?;
    rows.iter().map(parse_body).collect()
}

async fn team_grants_in(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    raw: Option<&str>,
) -> ApiResult<Json<Value>> {
    let (_, t) = load_team(st, id).await?;
    require_on_team(st, ctx, &t, Permission::TeamView).await?;
    let items = grants_of(st, id).await?.iter().map(render_grant).collect();
    Ok(Json(page_of(
        "ScopedUserRole",
        items,
        &format!("/api/teams/{id}/scopeduserroles"),
        raw,
    )))
}

pub async fn team_grants(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    team_grants_in(&st, &ctx, &id, raw.as_deref()).await
}

pub async fn team_grants_space(
    State(st): State<AppState>,
    Path((_space, id)): Path<(String, String)>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    team_grants_in(&st, &ctx, &id, raw.as_deref()).await
}

// ---- grants -------------------------------------------------------------------------------

/// Checks a grant and that the caller may give it.
async fn validate_grant(st: &AppState, ctx: &Ctx, g: &mut ScopedRoleDoc) -> ApiResult<()> {
    let (_, team) = load_team(st, &g.team_id)
        .await
        .map_err(|_| ApiError::bad_request(format!("Team '{}' does not exist", g.team_id)))?;
    let role = find_role(st, &g.user_role_id).await.map_err(|_| {
        ApiError::bad_request(format!("User role '{}' does not exist", g.user_role_id))
    })?;
    g.user_role_id = role.id.clone();
    g.space_id = g.space_id.clone().filter(|s| !s.is_empty());
    if let Some(ts) = &team.space_id {
        match &g.space_id {
            None => g.space_id = Some(ts.clone()),
            Some(s) if s != ts => {
                return Err(ApiError::bad_request(format!(
                    "Team '{}' belongs to {ts}; its roles can only be granted in that space",
                    team.name
                )));
            }
            _ => {}
        }
    }
    let mut errors = Vec::new();
    match &g.space_id {
        None => {
            if role.system.is_empty() {
                errors.push(format!(
                    "The user role '{}' has no system permissions; grant it in a space (SpaceId)",
                    role.name
                ));
            }
            if !(g.project_ids.is_empty()
                && g.project_group_ids.is_empty()
                && g.environment_ids.is_empty()
                && g.tenant_ids.is_empty())
            {
                errors.push("A system-level grant cannot be restricted to projects, environments or tenants".to_string());
            }
        }
        Some(space) => {
            require_space(st, space).await?;
            for (ids, collection, what) in [
                (&g.project_ids, "Projects", "project"),
                (&g.project_group_ids, "ProjectGroups", "project group"),
                (&g.environment_ids, "Environments", "environment"),
                (&g.tenant_ids, "Tenants", "tenant"),
            ] {
                for id in ids {
                    match st.db.get_doc(id).await? {
                        Some(d) if d.collection == collection && d.space_id == *space => {}
                        _ => errors.push(format!("There is no {what} '{id}' in {space}")),
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "There was a problem with your request.".to_string(),
            errors,
        });
    }
    // Nobody gives more than they hold.
    let checker = authz::checker(st, &ctx.principal).await?;
    if team.id == TEAM_ADMINISTRATORS || g.space_id.is_none() || !role.system.is_empty() {
        checker.require(None, Permission::AdministerSystem, &Target::ANY)?;
    }
    if let Some(space) = &g.space_id {
        checker.require(Some(space), Permission::TeamEdit, &Target::ANY)?;
        for p in &role.space {
            checker.require(Some(space), *p, &Target::ANY)?;
        }
    }
    Ok(())
}

async fn create_grant(
    st: &AppState,
    ctx: &Ctx,
    space: Option<String>,
    mut g: ScopedRoleDoc,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let Some(s) = space {
        g.space_id = Some(s);
    }
    validate_grant(st, ctx, &mut g).await?;
    let seq = next_seq(st, GRANTS).await?;
    g.id = format!("ScopedUserRoles-{seq}");
    let row = grant_row(&g)?;
    let mut tx = st.db.begin().await?;
    tx.insert_doc(&row).await?;
    audit(
        &mut tx,
        ctx,
        g.space_id.as_deref().unwrap_or(""),
        "Created",
        format!("Granted {} to team {}", g.user_role_id, g.team_id),
        &[&g.id, &g.team_id],
        json!({"After": g}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render_grant(&g))))
}

pub async fn create_grant_system(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(g): Body<ScopedRoleDoc>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create_grant(&st, &ctx, None, g).await
}

pub async fn create_grant_space(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(g): Body<ScopedRoleDoc>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    create_grant(&st, &ctx, Some(space), g).await
}

async fn load_grant(st: &AppState, id: &str) -> ApiResult<(DocRow, ScopedRoleDoc)> {
    match st.db.get_doc(id).await? {
        Some(d) if d.collection == GRANTS => {
            let g = parse_body(&d)?;
            Ok((d, g))
        }
        _ => Err(ApiError::not_found(format!(
            "Scoped user role '{id}' was not found"
        ))),
    }
}

pub async fn get_grant(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, g) = load_grant(&st, &id).await?;
    let (_, team) = load_team(&st, &g.team_id).await?;
    require_on_team(&st, &ctx, &team, Permission::TeamView).await?;
    Ok(Json(render_grant(&g)))
}

pub async fn get_grant_space(
    State(st): State<AppState>,
    Path((_space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    get_grant(State(st), Path(id), ctx).await
}

pub async fn update_grant(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
    Body(mut g): Body<ScopedRoleDoc>,
) -> ApiResult<Json<Value>> {
    let (row, old) = load_grant(&st, &id).await?;
    // The caller must be able to give both the old grant (to take it away) and the new one.
    let mut before = old.clone();
    validate_grant(&st, &ctx, &mut before).await?;
    g.id = old.id.clone();
    g.team_id = old.team_id.clone();
    validate_grant(&st, &ctx, &mut g).await?;
    let mut new_row = grant_row(&g)?;
    new_row.seq = row.seq;
    new_row.created_at = row.created_at;
    let mut tx = st.db.begin().await?;
    tx.update_doc(&new_row).await?;
    audit(
        &mut tx,
        &ctx,
        g.space_id.as_deref().unwrap_or(""),
        "Modified",
        format!(
            "Changed the grant of {} to team {}",
            g.user_role_id, g.team_id
        ),
        &[&g.id, &g.team_id],
        json!({"Before": old, "After": g}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render_grant(&g)))
}

pub async fn update_grant_space(
    State(st): State<AppState>,
    Path((_space, id)): Path<(String, String)>,
    ctx: Ctx,
    body: Body<ScopedRoleDoc>,
) -> ApiResult<Json<Value>> {
    update_grant(State(st), Path(id), ctx, body).await
}

pub async fn delete_grant(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    let (_, old) = load_grant(&st, &id).await?;
    let mut check = old.clone();
    validate_grant(&st, &ctx, &mut check).await?;
    if old.team_id == TEAM_ADMINISTRATORS && old.user_role_id == roles::SYSTEM_ADMINISTRATOR {
        let others = grants_of(&st, TEAM_ADMINISTRATORS)
            .await?
            .iter()
            .filter(|g| g.id != old.id && g.user_role_id == roles::SYSTEM_ADMINISTRATOR)
            .count();
        if others == 0 {
            return Err(ApiError::bad_request(
                "The administrators team must keep the System administrator role",
            ));
        }
    }
    let mut tx = st.db.begin().await?;
    tx.delete_doc(&id).await?;
    audit(
        &mut tx,
        &ctx,
        old.space_id.as_deref().unwrap_or(""),
        "Deleted",
        format!(
            "Removed the grant of {} from team {}",
            old.user_role_id, old.team_id
        ),
        &[&old.id, &old.team_id],
        json!({"Before": old}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_grant_space(
    State(st): State<AppState>,
    Path((_space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    delete_grant(State(st), Path(id), ctx).await
}

// ---- a user's permissions -----------------------------------------------------------------

async fn user_principal(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<crate::auth::Principal> {
    let id = if id.eq_ignore_ascii_case("me") {
        ctx.principal.user_id.clone()
    } else {
        id.to_string()
    };
    if id != ctx.principal.user_id {
        authz::require_system(st, ctx, Permission::UserView).await?;
    }
    let Some(u) = st.db.get_user(&id).await? else {
        return Err(ApiError::not_found(format!("User '{id}' was not found")));
    };
    Ok(crate::auth::Principal {
        user_id: u.id,
        username: u.username,
        display_name: u.display_name,
        is_service: u.is_service != 0,
        api_key_id: None,
        credential_expires_at: None,
        internal: false,
    })
}

pub async fn user_permissions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let p = user_principal(&st, &ctx, &id).await?;
    let checker = authz::checker(&st, &p).await?;
    Ok(Json(checker.permission_set(&p.user_id)))
}

pub async fn user_teams(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let p = user_principal(&st, &ctx, &id).await?;
    let (rows, _) = st.db.list_docs(&DocQuery::new(TEAMS)).await?;
    let mut out = Vec::new();
    for row in &rows {
        let t: TeamDoc = parse_body(row)?;
        if t.id == TEAM_EVERYONE || t.member_user_ids.contains(&p.user_id) {
            out.push(json!({"Id": t.id, "Name": t.name, "SpaceId": t.space_id}));
        }
    }
    Ok(Json(Value::Array(out)))
}

pub async fn all_permissions() -> Json<Value> {
    let mut out = serde_json::Map::new();
    for p in Permission::ALL {
        let d = p.dims();
        let mut restrictions = Vec::new();
        if d.project {
            restrictions.push("Projects");
            restrictions.push("ProjectGroups");
        }
        if d.environment {
            restrictions.push("Environments");
        }
        if d.tenant {
            restrictions.push("Tenants");
        }
        out.insert(
            p.name(),
            json!({
                "Description": p.name(),
                "SupportedRestrictions": restrictions,
                "CanApplyAtSystemLevel": p.is_system(),
                "CanApplyAtSpaceLevel": !p.is_system(),
            }),
        );
    }
    Json(Value::Object(out))
}
