//! Authorisation: what the caller may do, where. See `docs/permissions.md`.
//!
//! Permissions come only from teams: a team has members and role grants (`ScopedUserRoles`), each
//! a role (built-in, `crate::roles`, or custom) in one space (or at system level), optionally
//! restricted to projects and project groups (their union), environments and tenants. A grant's
//! restrictions apply to the permissions that have that dimension (`Permission::dims`); others
//! are granted in the whole space. Holders of `AdministerSystem` may do everything. Everyone is a
//! member of `teams-everyone`.
//!
//! The security model (teams, grants, custom roles) is read once and kept until a transaction of
//! this process changes one of those collections (`ferry_store::doc_generation`); on PostgreSQL,
//! where another node may change it, it is also re-read when older than two seconds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ferry_store::{Backend, DocQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Ctx, Principal};
use crate::roles::{self, RoleDef};
use crate::routes::Permission;
use crate::{ApiError, ApiResult, AppState};

pub const TEAM_EVERYONE: &str = "teams-everyone";
pub const TEAM_ADMINISTRATORS: &str = "teams-administrators";

/// The space managers team of a space.
pub fn space_managers_team(space: &str) -> String {
    format!("teams-spacemanagers-{space}")
}

const COLLECTIONS: &[&str] = &["Teams", "ScopedUserRoles", "UserRoles"];
const MAX_AGE_SHARED: Duration = Duration::from_secs(2);

// ---- stored shapes ------------------------------------------------------------------------

/// A team document (collection `Teams`; system teams have no space).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TeamDoc {
    pub id: String,
    pub name: String,
    pub description: String,
    pub member_user_ids: Vec<String>,
    pub external_security_groups: Vec<Value>,
    pub space_id: Option<String>,
}

/// A role grant (collection `ScopedUserRoles`, owned by its team).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScopedRoleDoc {
    pub id: String,
    pub team_id: String,
    pub user_role_id: String,
    pub space_id: Option<String>,
    pub project_ids: Vec<String>,
    pub project_group_ids: Vec<String>,
    pub environment_ids: Vec<String>,
    pub tenant_ids: Vec<String>,
}

/// A custom role (collection `UserRoles`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RoleDoc {
    pub id: String,
    pub name: String,
    pub description: String,
    pub granted_space_permissions: Vec<String>,
    pub granted_system_permissions: Vec<String>,
}

// ---- targets ------------------------------------------------------------------------------

/// Which tenant an action concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantTarget {
    /// Not known or not relevant (coarse checks, lists before filtering).
    Any,
    /// An untenanted deployment or task.
    Untenanted,
    Tenant(String),
}

impl TenantTarget {
    pub fn of(tenant: Option<&str>) -> TenantTarget {
        match tenant.filter(|t| !t.is_empty()) {
            Some(t) => TenantTarget::Tenant(t.to_string()),
            None => TenantTarget::Untenanted,
        }
    }
}

/// A project and its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRef {
    pub id: String,
    pub group_id: String,
}

/// The object an action concerns, in the dimensions a grant can be restricted by. `None` (and
/// `TenantTarget::Any`) means "not known or not relevant": the check then asks whether the
/// permission is held for something in the space.
#[derive(Clone, Debug)]
pub struct Target {
    pub project: Option<ProjectRef>,
    /// Any of these (a target machine can be in several environments).
    pub environments: Option<Vec<String>>,
    pub tenant: TenantTarget,
}

impl Target {
    pub const ANY: Target = Target {
        project: None,
        environments: None,
        tenant: TenantTarget::Any,
    };

    pub fn project(id: &str, group_id: &str) -> Target {
        Target {
            project: Some(ProjectRef {
                id: id.to_string(),
                group_id: group_id.to_string(),
            }),
            ..Target::ANY
        }
    }

    pub fn environment(id: &str) -> Target {
        Target {
            environments: Some(vec![id.to_string()]),
            ..Target::ANY
        }
    }

    pub fn tenant(id: &str) -> Target {
        Target {
            tenant: TenantTarget::Tenant(id.to_string()),
            ..Target::ANY
        }
    }

    /// A deployment (or a task) of `project` to `environment` for `tenant` (`None`: untenanted).
    pub fn deployment(
        project: Option<ProjectRef>,
        environment: Option<&str>,
        tenant: Option<&str>,
    ) -> Target {
        Target {
            project,
            environments: environment.map(|e| vec![e.to_string()]),
            tenant: TenantTarget::of(tenant),
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.project {
            parts.push(format!("project {}", p.id));
        }
        if let Some(e) = &self.environments {
            if e.len() == 1 {
                parts.push(format!("environment {}", e[0]));
            } else if !e.is_empty() {
                parts.push(format!("environments {}", e.join(", ")));
            }
        }
        match &self.tenant {
            TenantTarget::Tenant(t) => parts.push(format!("tenant {t}")),
            TenantTarget::Untenanted => {}
            TenantTarget::Any => {}
        }
        parts.join(", ")
    }
}

// ---- the model ----------------------------------------------------------------------------

struct Grant {
    team: usize,
    role: String,
    /// `None`: a system-level grant.
    space: Option<String>,
    projects: HashSet<String>,
    groups: HashSet<String>,
    environments: HashSet<String>,
    tenants: HashSet<String>,
}

struct Team {
    id: String,
    name: String,
    space: Option<String>,
    members: HashSet<String>,
}

/// Teams, grants and roles, as read at one generation.
pub struct Model {
    generation: u64,
    built: Instant,
    teams: Vec<Team>,
    grants: Vec<Grant>,
    roles: HashMap<String, RoleDef>,
}

/// The kept model.
#[derive(Default)]
pub struct AuthzCache(Mutex<Option<Arc<Model>>>);

impl Model {
    fn role(&self, id: &str) -> Option<&RoleDef> {
        self.roles.get(id)
    }

    /// The roles, built-in first, then custom ones in id order.
    pub fn roles(&self) -> Vec<&RoleDef> {
        let mut out: Vec<&RoleDef> = self.roles.values().collect();
        let order: Vec<String> = roles::built_in().into_iter().map(|r| r.id).collect();
        out.sort_by_key(|r| {
            (
                order.iter().position(|o| *o == r.id).unwrap_or(usize::MAX),
                crate::api::id_seq(&r.id),
            )
        });
        out
    }
}

fn grants_perm(role: &RoleDef, permission: Permission, system: bool) -> bool {
    if system {
        role.system.contains(&permission)
    } else {
        role.space.contains(&permission)
    }
}

async fn load(st: &AppState, generation: u64) -> ApiResult<Model> {
    let (team_rows, _) = st.db.list_docs(&DocQuery::new("Teams")).await?;
    let (grant_rows, _) = st.db.list_docs(&DocQuery::new("ScopedUserRoles")).await?;
    let (role_rows, _) = st.db.list_docs(&DocQuery::new("UserRoles")).await?;
    let mut roles: HashMap<String, RoleDef> = roles::built_in()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for row in &role_rows {
        let r: RoleDoc = crate::api::parse_body(row)?;
        roles.insert(
            row.id.clone(),
            RoleDef {
                id: row.id.clone(),
                name: r.name,
                description: r.description,
                space: r
                    .granted_space_permissions
                    .iter()
                    .filter_map(|p| Permission::parse(p))
                    .collect(),
                system: r
                    .granted_system_permissions
                    .iter()
                    .filter_map(|p| Permission::parse(p))
                    .collect(),
                built_in: false,
            },
        );
    }
    let mut teams = Vec::with_capacity(team_rows.len());
    let mut team_index: HashMap<String, usize> = HashMap::new();
    for row in &team_rows {
        let t: TeamDoc = crate::api::parse_body(row)?;
        team_index.insert(row.id.clone(), teams.len());
        teams.push(Team {
            id: row.id.clone(),
            name: t.name,
            space: t.space_id.filter(|s| !s.is_empty()),
            members: t.member_user_ids.into_iter().collect(),
        });
    }
    let mut grants = Vec::with_capacity(grant_rows.len());
    for row in &grant_rows {
        let g: ScopedRoleDoc = crate::api::parse_body(row)?;
        let Some(&team) = team_index.get(&g.team_id) else {
            continue;
        };
        grants.push(Grant {
            team,
            role: g.user_role_id,
            space: g.space_id.filter(|s| !s.is_empty()),
            projects: g.project_ids.into_iter().collect(),
            groups: g.project_group_ids.into_iter().collect(),
            environments: g.environment_ids.into_iter().collect(),
            tenants: g.tenant_ids.into_iter().collect(),
        });
    }
    Ok(Model {
        generation,
        built: Instant::now(),
        teams,
        grants,
        roles,
    })
}

/// The current model.
pub async fn model(st: &AppState) -> ApiResult<Arc<Model>> {
    let generation = ferry_store::doc_generation(COLLECTIONS);
    let shared = st.db.backend() == Backend::Postgres;
    let kept = st.authz.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(m) = kept {
        if m.generation == generation && !(shared && m.built.elapsed() > MAX_AGE_SHARED) {
            return Ok(m);
        }
    }
    let m = Arc::new(load(st, generation).await?);
    *st.authz.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
    Ok(m)
}

// ---- checking -----------------------------------------------------------------------------

/// One principal's permissions, ready to check many times (list filtering).
pub struct Checker {
    model: Arc<Model>,
    /// Indexes into `model.grants` of the principal's teams' grants.
    grants: Vec<usize>,
    /// The server itself, or a holder of `AdministerSystem`.
    all: bool,
}

impl Checker {
    pub fn for_principal(model: Arc<Model>, principal: &Principal) -> Checker {
        let teams: HashSet<usize> = model
            .teams
            .iter()
            .enumerate()
            .filter(|(_, t)| t.id == TEAM_EVERYONE || t.members.contains(&principal.user_id))
            .map(|(i, _)| i)
            .collect();
        let grants: Vec<usize> = model
            .grants
            .iter()
            .enumerate()
            .filter(|(_, g)| teams.contains(&g.team))
            .map(|(i, _)| i)
            .collect();
        let all = principal.internal
            || grants.iter().any(|&i| {
                let g = &model.grants[i];
                g.space.is_none()
                    && model
                        .role(&g.role)
                        .is_some_and(|r| r.system.contains(&Permission::AdministerSystem))
            });
        Checker { model, grants, all }
    }

    /// Whether the principal holds every permission.
    pub fn is_all_powerful(&self) -> bool {
        self.all
    }

    /// Whether `permission` is held in `space` (`None`: at system level for a system
    /// permission; in any space for a space permission) for `target`.
    pub fn can(&self, space: Option<&str>, permission: Permission, target: &Target) -> bool {
        if self.all {
            return true;
        }
        match permission {
            Permission::Anonymous | Permission::Authenticated => return true,
            _ => {}
        }
        let system = permission.is_system();
        let dims = permission.dims();
        self.grants.iter().any(|&i| {
            let g = &self.model.grants[i];
            if system {
                if g.space.is_some() {
                    return false;
                }
            } else {
                match (&g.space, space) {
                    (None, _) => return false,
                    (Some(gs), Some(s)) if gs != s => return false,
                    _ => {}
                }
            }
            let Some(role) = self.model.role(&g.role) else {
                return false;
            };
            if !grants_perm(role, permission, system) {
                return false;
            }
            if system {
                return true;
            }
            if dims.project && !(g.projects.is_empty() && g.groups.is_empty()) {
                if let Some(p) = &target.project {
                    if !(g.projects.contains(&p.id) || g.groups.contains(&p.group_id)) {
                        return false;
                    }
                }
            }
            if dims.environment && !g.environments.is_empty() {
                if let Some(envs) = &target.environments {
                    if !envs.iter().any(|e| g.environments.contains(e)) {
                        return false;
                    }
                }
            }
            if dims.tenant && !g.tenants.is_empty() {
                match &target.tenant {
                    TenantTarget::Any => {}
                    TenantTarget::Untenanted => return false,
                    TenantTarget::Tenant(t) => {
                        if !g.tenants.contains(t) {
                            return false;
                        }
                    }
                }
            }
            true
        })
    }

    /// Whether `permission` is held in `space` with no restriction that applies to it (lists
    /// then need no filtering).
    pub fn unrestricted(&self, space: &str, permission: Permission) -> bool {
        if self.all {
            return true;
        }
        let dims = permission.dims();
        self.grants.iter().any(|&i| {
            let g = &self.model.grants[i];
            g.space.as_deref() == Some(space)
                && self
                    .model
                    .role(&g.role)
                    .is_some_and(|r| r.space.contains(&permission))
                && (!dims.project || (g.projects.is_empty() && g.groups.is_empty()))
                && (!dims.environment || g.environments.is_empty())
                && (!dims.tenant || g.tenants.is_empty())
        })
    }

    /// Refuses unless `can`.
    pub fn require(
        &self,
        space: Option<&str>,
        permission: Permission,
        target: &Target,
    ) -> ApiResult<()> {
        if self.can(space, permission, target) {
            Ok(())
        } else {
            Err(self.denied(space, permission, target))
        }
    }

    /// The 403: the missing permission, where, and which teams hold it there.
    pub fn denied(&self, space: Option<&str>, permission: Permission, target: &Target) -> ApiError {
        let name = permission.name();
        let system = permission.is_system();
        let mut holders: Vec<&str> = Vec::new();
        for g in &self.model.grants {
            let Some(role) = self.model.role(&g.role) else {
                continue;
            };
            let admin = g.space.is_none() && role.system.contains(&Permission::AdministerSystem);
            let here = if system {
                g.space.is_none() && role.system.contains(&permission)
            } else {
                g.space.is_some()
                    && (space.is_none() || g.space.as_deref() == space)
                    && role.space.contains(&permission)
            };
            if admin || here {
                let team = &self.model.teams[g.team].name;
                if !holders.contains(&team.as_str()) {
                    holders.push(team);
                }
            }
        }
        let mut message = format!(
            "You do not have permission to perform this action. Please contact your Ferry administrator. Missing permission: {name}"
        );
        let scope = target.describe();
        if !scope.is_empty() {
            message.push_str(&format!(" (for {scope})"));
        } else if let (Some(s), false) = (space, system) {
            message.push_str(&format!(" (in space {s})"));
        }
        let mut errors = vec![format!("Missing permission: {name}")];
        if holders.is_empty() {
            errors.push("No team holds it here".to_string());
        } else {
            errors.push(format!("Teams that hold it: {}", holders.join(", ")));
        }
        ApiError {
            status: StatusCode::FORBIDDEN,
            message,
            errors,
        }
    }

    /// The effective permissions, in Octopus's `UserPermissionSetResource` shape.
    pub fn permission_set(&self, user_id: &str) -> Value {
        let mut space_perms: std::collections::BTreeMap<String, Vec<Value>> =
            std::collections::BTreeMap::new();
        let mut system_perms: Vec<String> = Vec::new();
        let mut teams: Vec<Value> = Vec::new();
        let mut seen_teams = HashSet::new();
        for &i in &self.grants {
            let g = &self.model.grants[i];
            let team = &self.model.teams[g.team];
            if seen_teams.insert(g.team) {
                teams.push(json!({"Id": team.id, "Name": team.name, "SpaceId": team.space}));
            }
            let Some(role) = self.model.role(&g.role) else {
                continue;
            };
            match &g.space {
                None => {
                    for p in &role.system {
                        if !system_perms.contains(&p.name()) {
                            system_perms.push(p.name());
                        }
                    }
                }
                Some(space) => {
                    for p in &role.space {
                        let dims = p.dims();
                        let sorted = |s: &HashSet<String>, on: bool| -> Vec<String> {
                            let mut v: Vec<String> = if on {
                                s.iter().cloned().collect()
                            } else {
                                Vec::new()
                            };
                            v.sort();
                            v
                        };
                        space_perms.entry(p.name()).or_default().push(json!({
                            "SpaceId": space,
                            "RestrictedToProjectIds": sorted(&g.projects, dims.project),
                            "RestrictedToProjectGroupIds": sorted(&g.groups, dims.project),
                            "RestrictedToEnvironmentIds": sorted(&g.environments, dims.environment),
                            "RestrictedToTenantIds": sorted(&g.tenants, dims.tenant),
                        }));
                    }
                }
            }
        }
        // Teams of the user without grants still show.
        for (i, t) in self.model.teams.iter().enumerate() {
            if !seen_teams.contains(&i) && (t.id == TEAM_EVERYONE || t.members.contains(user_id)) {
                teams.push(json!({"Id": t.id, "Name": t.name, "SpaceId": t.space}));
            }
        }
        system_perms.sort();
        json!({
            "Id": user_id,
            "SpacePermissions": space_perms,
            "SystemPermissions": system_perms,
            "Teams": teams,
            "IsPermissionsComplete": true,
            "IsAllPowerful": self.all,
        })
    }
}

/// The checker of a request's caller.
pub async fn checker(st: &AppState, principal: &Principal) -> ApiResult<Checker> {
    Ok(Checker::for_principal(model(st).await?, principal))
}

/// Refuses (403, naming the permission and the teams that hold it) unless the caller holds
/// `permission` in `space` (`None`: a system permission, or any space) for `target`.
pub async fn require(
    st: &AppState,
    ctx: &Ctx,
    space: Option<&str>,
    permission: Permission,
    target: &Target,
) -> ApiResult<()> {
    if ctx.principal.internal {
        return Ok(());
    }
    checker(st, &ctx.principal)
        .await?
        .require(space, permission, target)
}

/// Whether the caller holds `permission` in `space` for `target`.
pub async fn can(
    st: &AppState,
    ctx: &Ctx,
    space: Option<&str>,
    permission: Permission,
    target: &Target,
) -> ApiResult<bool> {
    if ctx.principal.internal {
        return Ok(true);
    }
    Ok(checker(st, &ctx.principal)
        .await?
        .can(space, permission, target))
}

/// Refuses unless the caller holds the system permission `permission`.
pub async fn require_system(st: &AppState, ctx: &Ctx, permission: Permission) -> ApiResult<()> {
    require(st, ctx, None, permission, &Target::ANY).await
}

/// The project reference of a project id or slug in a space.
pub async fn project_ref(st: &AppState, space: &str, id: &str) -> ApiResult<Option<ProjectRef>> {
    Ok(st
        .db
        .find_doc("Projects", Some(space), None, id)
        .await?
        .map(|d| ProjectRef {
            id: d.id,
            group_id: d.ref1,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test grant: team index, role, space, projects, environments, tenants.
    type TestGrant<'a> = (
        usize,
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );

    fn model(grants: Vec<TestGrant<'_>>) -> Arc<Model> {
        let teams = vec![
            Team {
                id: TEAM_EVERYONE.into(),
                name: "Everyone".into(),
                space: None,
                members: HashSet::new(),
            },
            Team {
                id: "Teams-1".into(),
                name: "Testers".into(),
                space: Some("Spaces-1".into()),
                members: ["Users-2".to_string()].into_iter().collect(),
            },
            Team {
                id: TEAM_ADMINISTRATORS.into(),
                name: "Octopus Administrators".into(),
                space: None,
                members: ["Users-1".to_string()].into_iter().collect(),
            },
        ];
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        Arc::new(Model {
            generation: 0,
            built: Instant::now(),
            teams,
            grants: grants
                .into_iter()
                .map(|(team, role, space, projects, envs, tenants)| Grant {
                    team,
                    role: role.to_string(),
                    space: space.map(str::to_string),
                    projects: set(projects),
                    groups: HashSet::new(),
                    environments: set(envs),
                    tenants: set(tenants),
                })
                .collect(),
            roles: roles::built_in()
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
        })
    }

    fn user(id: &str) -> Principal {
        Principal {
            user_id: id.into(),
            username: id.into(),
            display_name: id.into(),
            is_service: false,
            api_key_id: None,
            credential_expires_at: None,
            internal: false,
        }
    }

    #[test]
    fn testers_deploy_to_test_but_not_production() {
        let m = model(vec![
            (
                1,
                "userroles-projectdeployer",
                Some("Spaces-1"),
                &[],
                &["Environments-2"],
                &[],
            ),
            (
                1,
                "userroles-projectviewer",
                Some("Spaces-1"),
                &[],
                &[],
                &[],
            ),
            (2, roles::SYSTEM_ADMINISTRATOR, None, &[], &[], &[]),
        ]);
        let tester = Checker::for_principal(m.clone(), &user("Users-2"));
        let p = Some(ProjectRef {
            id: "Projects-1".into(),
            group_id: "ProjectGroups-1".into(),
        });
        let to = |e: &str| Target::deployment(p.clone(), Some(e), None);
        assert!(tester.can(
            Some("Spaces-1"),
            Permission::DeploymentCreate,
            &to("Environments-2")
        ));
        assert!(!tester.can(
            Some("Spaces-1"),
            Permission::DeploymentCreate,
            &to("Environments-3")
        ));
        // Viewing is unscoped; other spaces get nothing.
        assert!(tester.can(
            Some("Spaces-1"),
            Permission::DeploymentView,
            &to("Environments-3")
        ));
        assert!(!tester.can(
            Some("Spaces-2"),
            Permission::DeploymentView,
            &to("Environments-3")
        ));
        assert!(!tester.can(None, Permission::UserEdit, &Target::ANY));
        // The 403 names the permission and the teams that hold it.
        let e = tester.denied(
            Some("Spaces-1"),
            Permission::DeploymentCreate,
            &to("Environments-3"),
        );
        let body = format!("{} {:?}", e.message, e.errors);
        assert!(body.contains("DeploymentCreate"), "{body}");
        assert!(body.contains("Testers"), "{body}");
        assert!(body.contains("Octopus Administrators"), "{body}");
        let admin = Checker::for_principal(m, &user("Users-1"));
        assert!(admin.can(
            Some("Spaces-9"),
            Permission::DeploymentCreate,
            &to("Environments-3")
        ));
    }

    #[test]
    fn tenant_scoped_grants_do_not_cover_untenanted_work() {
        let m = model(vec![(
            1,
            "userroles-projectdeployer",
            Some("Spaces-1"),
            &[],
            &[],
            &["Tenants-1"],
        )]);
        let c = Checker::for_principal(m, &user("Users-2"));
        let t = |tenant: Option<&str>| Target::deployment(None, Some("Environments-1"), tenant);
        assert!(c.can(
            Some("Spaces-1"),
            Permission::DeploymentCreate,
            &t(Some("Tenants-1"))
        ));
        assert!(!c.can(
            Some("Spaces-1"),
            Permission::DeploymentCreate,
            &t(Some("Tenants-2"))
        ));
        assert!(!c.can(Some("Spaces-1"), Permission::DeploymentCreate, &t(None)));
        // A permission without the tenant dimension is granted in full.
        assert!(c.can(
            Some("Spaces-1"),
            Permission::ProjectView,
            &Target::project("Projects-9", "ProjectGroups-1")
        ));
        assert!(!c.unrestricted("Spaces-1", Permission::DeploymentCreate));
        assert!(c.unrestricted("Spaces-1", Permission::ProjectView));
    }
    /// Every built-in role, unscoped and scoped, × every route of the table × an object in
    /// scope and one out of scope: the checker's decision against an independent oracle.
    #[test]
    fn rbac_matrix_over_the_route_table() {
        use crate::permissions::Dims;
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            None,
            Project,
            Deployment,
            Environment,
            Tenant,
        }
        let kind_of = |path: &str| match crate::scope::collection_of(path) {
            Some((c, true)) => match c {
                "projects" | "releases" | "channels" | "deploymentprocesses" | "variables" => {
                    Kind::Project
                }
                "deployments" | "tasks" | "interruptions" | "artifacts" => Kind::Deployment,
                "environments" | "machines" => Kind::Environment,
                "tenants" => Kind::Tenant,
                _ => Kind::None,
            },
            _ => Kind::None,
        };
        let p1 = ProjectRef {
            id: "Projects-1".into(),
            group_id: "ProjectGroups-1".into(),
        };
        let p2 = ProjectRef {
            id: "Projects-2".into(),
            group_id: "ProjectGroups-2".into(),
        };
        let target = |kind: Kind, inside: bool| -> Target {
            let (p, e, t) = if inside {
                (p1.clone(), "Environments-1", "Tenants-1")
            } else {
                (p2.clone(), "Environments-2", "Tenants-2")
            };
            match kind {
                Kind::None => Target::ANY,
                Kind::Project => Target {
                    project: Some(p),
                    ..Target::ANY
                },
                Kind::Deployment => Target::deployment(Some(p), Some(e), Some(t)),
                Kind::Environment => Target::environment(e),
                Kind::Tenant => Target::tenant(t),
            }
        };
        // Which of a permission's dimensions an object of this kind names.
        let relevant = |d: Dims, kind: Kind| match kind {
            Kind::None => false,
            Kind::Project => d.project,
            Kind::Deployment => d.project || d.environment || d.tenant,
            Kind::Environment => d.environment,
            Kind::Tenant => d.tenant,
        };
        let routes = crate::routes::table().specs;
        let mut cells = 0usize;
        let mut mismatches = Vec::new();
        for role in roles::built_in() {
            for scoped in [false, true] {
                let mut grants: Vec<TestGrant<'_>> = Vec::new();
                if !role.system.is_empty() {
                    grants.push((1, role.id.as_str(), None, &[], &[], &[]));
                }
                if !role.space.is_empty() {
                    if scoped {
                        grants.push((
                            1,
                            role.id.as_str(),
                            Some("Spaces-1"),
                            &["Projects-1"],
                            &["Environments-1"],
                            &["Tenants-1"],
                        ));
                    } else {
                        grants.push((1, role.id.as_str(), Some("Spaces-1"), &[], &[], &[]));
                    }
                }
                let checker = Checker::for_principal(model(grants), &user("Users-2"));
                let admin = role.system.contains(&Permission::AdministerSystem);
                for spec in &routes {
                    let kind = kind_of(spec.path);
                    for inside in [true, false] {
                        cells += 1;
                        let perm = spec.permission;
                        let expected = match perm {
                            Permission::Anonymous | Permission::Authenticated => true,
                            _ if admin => true,
                            _ if perm.is_system() => role.system.contains(&perm),
                            _ if !role.space.contains(&perm) => false,
                            _ => !scoped || inside || !relevant(perm.dims(), kind),
                        };
                        let space = (!perm.is_system()).then_some("Spaces-1");
                        let got = checker.can(space, perm, &target(kind, inside));
                        if got != expected {
                            mismatches.push(format!(
                                "{} {} {} as {} ({}), object {}: expected {expected}, got {got}",
                                spec.method,
                                spec.path,
                                perm.name(),
                                role.name,
                                if scoped { "scoped" } else { "unscoped" },
                                if inside { "in scope" } else { "out of scope" }
                            ));
                        }
                    }
                }
            }
        }
        println!(
            "RBAC matrix: {cells} cells, {} mismatches",
            mismatches.len()
        );
        assert!(
            mismatches.is_empty(),
            "{} of {cells} cells differ:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
        assert!(cells > 5000, "only {cells} cells");
    }
}
