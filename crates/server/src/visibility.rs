//! Read-path filtering: what of a list the caller may see. Octopus's advisories were mostly
//! leaks on read paths (tasks, events, artifacts of projects a user may not see), so every list
//! of scoped objects goes through here. A caller who holds the permission without a restriction
//! that applies to it gets `None` (no filtering, the database pages as before); otherwise the
//! list is read whole, filtered object by object, then paged.

use std::collections::HashMap;

use ferry_store::{DocRow, TaskRow};
use serde_json::Value;

use crate::auth::Ctx;
use crate::authz::{self, Checker, ProjectRef, Target, TenantTarget};
use crate::routes::Permission;
use crate::{ApiResult, AppState};

/// What the caller may see of one kind of object in a space (or in every space).
pub struct Visibility {
    checker: Checker,
    space: Option<String>,
    permission: Permission,
    /// Project → project group, for grants restricted to project groups.
    groups: HashMap<String, String>,
}

impl Visibility {
    /// `None` when the caller sees everything `permission` covers in `space`.
    pub async fn of(
        st: &AppState,
        ctx: &Ctx,
        space: Option<&str>,
        permission: Permission,
    ) -> ApiResult<Option<Visibility>> {
        if ctx.principal.internal {
            return Ok(None);
        }
        let checker = authz::checker(st, &ctx.principal).await?;
        if checker.is_all_powerful() || space.is_some_and(|s| checker.unrestricted(s, permission)) {
            return Ok(None);
        }
        let mut groups = HashMap::new();
        if permission.dims().project {
            let (rows, _) = st
                .db
                .list_docs(&ferry_store::DocQuery {
                    space_id: space.map(str::to_string),
                    ..ferry_store::DocQuery::new("Projects")
                })
                .await?;
            groups = rows.into_iter().map(|r| (r.id, r.ref1)).collect();
        }
        Ok(Some(Visibility {
            checker,
            space: space.map(str::to_string),
            permission,
            groups,
        }))
    }

    fn project(&self, id: Option<&str>) -> Option<ProjectRef> {
        id.filter(|p| !p.is_empty()).map(|p| ProjectRef {
            id: p.to_string(),
            group_id: self.groups.get(p).cloned().unwrap_or_default(),
        })
    }

    fn can(&self, space: &str, target: &Target) -> bool {
        let space = if space.is_empty() {
            self.space.as_deref()
        } else {
            Some(space)
        };
        self.checker.can(space, self.permission, target)
    }

    /// Whether a document may be seen (projects, environments, tenants, deployments,
    /// releases, machines, interruptions and artifacts by the object they concern).
    pub fn doc(&self, row: &DocRow) -> bool {
        let target = match row.collection.as_str() {
            "Projects" => Target {
                project: Some(ProjectRef {
                    id: row.id.clone(),
                    group_id: row.ref1.clone(),
                }),
                ..Target::ANY
            },
            "Environments" => Target::environment(&row.id),
            "Tenants" => Target::tenant(&row.id),
            "Releases" | "Channels" => Target {
                project: self.project(Some(&row.owner_id)),
                ..Target::ANY
            },
            "Deployments" => {
                let b: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
                let field = |n: &str| b.get(n).and_then(Value::as_str).map(str::to_string);
                Target {
                    project: self.project(Some(&row.owner_id)),
                    environments: field("EnvironmentId").map(|e| vec![e]),
                    tenant: TenantTarget::of(field("TenantId").as_deref()),
                }
            }
            "Machines" => {
                let b: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
                Target {
                    environments: Some(
                        b.get("EnvironmentIds")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    ..Target::ANY
                }
            }
            _ => Target::ANY,
        };
        self.can(&row.space_id, &target)
    }

    /// Of `task_ids`, those whose task may be seen (a missing task is not).
    pub async fn visible_tasks(
        &self,
        st: &AppState,
        task_ids: &[String],
    ) -> ApiResult<std::collections::HashSet<String>> {
        let mut ids: Vec<String> = task_ids.to_vec();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let (tasks, _) = st
            .db
            .list_tasks(&ferry_store::TaskQuery {
                ids,
                ..ferry_store::TaskQuery::default()
            })
            .await?;
        Ok(tasks
            .iter()
            .filter(|t| self.task(t))
            .map(|t| t.id.clone())
            .collect())
    }

    /// Whether a task may be seen.
    pub fn task(&self, t: &TaskRow) -> bool {
        let target = Target {
            project: self.project(t.project_id.as_deref()),
            environments: t.environment_id.clone().map(|e| vec![e]),
            tenant: if t.project_id.is_some() {
                TenantTarget::of(t.tenant_id.as_deref())
            } else {
                TenantTarget::Any
            },
        };
        self.can(&t.space_id, &target)
    }

    /// Whether an object concerning `project`, `environment` and `tenant` may be seen (events,
    /// dashboard cells).
    pub fn concerning(
        &self,
        space: &str,
        project: Option<&str>,
        environment: Option<&str>,
        tenant: Option<&str>,
    ) -> bool {
        let target = Target {
            project: self.project(project),
            environments: environment
                .filter(|e| !e.is_empty())
                .map(|e| vec![e.to_string()]),
            tenant: match (project, tenant) {
                (_, Some(t)) if !t.is_empty() => TenantTarget::Tenant(t.to_string()),
                (Some(_), _) if environment.is_some_and(|e| !e.is_empty()) => {
                    TenantTarget::Untenanted
                }
                _ => TenantTarget::Any,
            },
        };
        self.can(space, &target)
    }
}
