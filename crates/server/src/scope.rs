//! The scope of a request, derived from its route: the space and the object (project,
//! environment, tenant) its path names, so the auth layer checks a route's permission against
//! that object in one place. The rule is chosen by the collection segment after the space
//! (`/api/{space_id}/releases/{id}` → the release's project); `scoped_collection` lists them and
//! the route table refuses, at start-up, a route with an `{id}` under a collection that has no
//! rule and is not declared unscoped. Bodies that name objects (a deployment's environment) are
//! checked by their handlers with `authz::require`.

use ferry_store::TaskRow;
use serde_json::Value;

use crate::authz::{ProjectRef, Target, TenantTarget};
use crate::{ApiResult, AppState};

/// Collections whose `{id}` the auth layer resolves to a scope.
pub const SCOPED_COLLECTIONS: &[&str] = &[
    "projects",
    "releases",
    "channels",
    "deploymentprocesses",
    "variables",
    "deployments",
    "tasks",
    "interruptions",
    "artifacts",
    "environments",
    "machines",
    "tenants",
];

/// Collections whose objects no role grant can be restricted to (their permissions have no
/// scope dimension), or that are system-wide, so their `{id}` needs no rule.
pub const UNSCOPED_COLLECTIONS: &[&str] = &[
    "accounts",
    "actiontemplates",
    "build-information",
    "deploymentfreezes",
    "events",
    "feeds",
    "libraryvariablesets",
    "lifecycles",
    "machinepolicies",
    "packages",
    "projectgroups",
    "spaces",
    "subscriptions",
    "tagsets",
    "teams",
    "userroles",
    "scopeduserroles",
    "users",
    "workerpools",
    "workers",
];

/// The collection segment of a route and whether it has an `{id}` after it.
pub fn collection_of(route: &str) -> Option<(&str, bool)> {
    let segs: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    // api, {space_id}, collection, {id} | api, collection, {id} | api, spaces, {space_id}, tasks, {id}
    let rest: &[&str] = match segs.as_slice() {
        ["api", "spaces", "{space_id}", rest @ ..] => rest,
        ["api", "{space_id}", rest @ ..] => rest,
        ["api", rest @ ..] => rest,
        _ => return None,
    };
    let collection = rest.first()?;
    let has_id = rest.get(1).is_some_and(|s| s.starts_with('{'));
    Some((collection, has_id))
}

/// Whether the route table knows how to scope `route` (start-up check).
pub fn is_declared(route: &str) -> bool {
    match collection_of(route) {
        None => true,
        Some((_, false)) => true,
        Some((c, true)) => SCOPED_COLLECTIONS.contains(&c) || UNSCOPED_COLLECTIONS.contains(&c),
    }
}

fn params<'a>(route: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    let r: Vec<&str> = route.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if r.len() != p.len() {
        return Vec::new();
    }
    r.iter()
        .zip(p.iter())
        .filter_map(|(r, p)| {
            r.strip_prefix('{')
                .and_then(|n| n.strip_suffix('}'))
                .map(|n| (n, *p))
        })
        .collect()
}

async fn project(st: &AppState, id: &str) -> ApiResult<Option<ProjectRef>> {
    Ok(match st.db.get_doc(id).await? {
        Some(d) if d.collection == "Projects" => Some(ProjectRef {
            id: d.id,
            group_id: d.ref1,
        }),
        _ => None,
    })
}

async fn task_target(st: &AppState, t: &TaskRow) -> ApiResult<Target> {
    let project = match t.project_id.as_deref() {
        Some(p) => project(st, p).await?,
        None => None,
    };
    Ok(Target {
        project,
        environments: t.environment_id.clone().map(|e| vec![e]),
        tenant: TenantTarget::of(t.tenant_id.as_deref()),
    })
}

fn body(d: &ferry_store::DocRow) -> Value {
    serde_json::from_str(&d.body).unwrap_or(Value::Null)
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The space and target of a request to `route` (the matched pattern) at `path`.
pub async fn resolve(
    st: &AppState,
    route: &str,
    path: &str,
) -> ApiResult<(Option<String>, Target)> {
    let ps = params(route, path);
    let param = |n: &str| ps.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
    let mut space = param("space_id");
    let Some((collection, true)) = collection_of(route) else {
        if route == "/api/spaces/{id}" {
            space = param("id");
        }
        return Ok((space, Target::ANY));
    };
    let Some(id) = param("id") else {
        return Ok((space, Target::ANY));
    };
    let in_space = |d: &ferry_store::DocRow, space: &Option<String>| {
        space.as_deref().is_none_or(|s| s == d.space_id)
    };
    let target = match collection {
        "projects" => match &space {
            Some(s) => match crate::authz::project_ref(st, s, &id).await? {
                Some(p) => Target {
                    project: Some(p),
                    ..Target::ANY
                },
                None => Target::ANY,
            },
            None => Target::ANY,
        },
        "releases" | "channels" | "deploymentprocesses" | "variables" => {
            match st.db.get_doc(&id).await? {
                Some(d) if in_space(&d, &space) && d.owner_id.starts_with("Projects-") => Target {
                    project: project(st, &d.owner_id).await?,
                    ..Target::ANY
                },
                _ => Target::ANY,
            }
        }
        "deployments" => match st.db.get_doc(&id).await? {
            Some(d) if in_space(&d, &space) && d.collection == "Deployments" => {
                let b = body(&d);
                Target {
                    project: project(st, &d.owner_id).await?,
                    environments: str_field(&b, "EnvironmentId").map(|e| vec![e.to_string()]),
                    tenant: TenantTarget::of(str_field(&b, "TenantId")),
                }
            }
            _ => Target::ANY,
        },
        "tasks" => match st.db.get_task(&id).await? {
            Some(t) if space.as_deref().is_none_or(|s| s == t.space_id) => {
                space = Some(t.space_id.clone()).filter(|s| !s.is_empty());
                task_target(st, &t).await?
            }
            _ => Target::ANY,
        },
        "interruptions" | "artifacts" => match st.db.get_doc(&id).await? {
            Some(d) if in_space(&d, &space) => {
                let b = body(&d);
                let task = str_field(&b, "TaskId").or_else(|| str_field(&b, "ServerTaskId"));
                match task {
                    Some(t) => match st.db.get_task(t).await? {
                        Some(t) => task_target(st, &t).await?,
                        None => Target::ANY,
                    },
                    None => Target::ANY,
                }
            }
            _ => Target::ANY,
        },
        "environments" => match &space {
            Some(s) => match st.db.find_doc("Environments", Some(s), None, &id).await? {
                Some(d) => Target::environment(&d.id),
                None => Target::ANY,
            },
            None => Target::ANY,
        },
        "machines" => match st.db.get_doc(&id).await? {
            Some(d) if in_space(&d, &space) && d.collection == "Machines" => {
                let b = body(&d);
                let envs: Vec<String> = b
                    .get("EnvironmentIds")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Target {
                    environments: Some(envs),
                    ..Target::ANY
                }
            }
            _ => Target::ANY,
        },
        "tenants" => match &space {
            Some(s) => match st.db.find_doc("Tenants", Some(s), None, &id).await? {
                Some(d) => Target::tenant(&d.id),
                None => Target::ANY,
            },
            None => Target::ANY,
        },
        _ => Target::ANY,
    };
    Ok((space, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_are_found_in_every_route_shape() {
        assert_eq!(
            collection_of("/api/{space_id}/releases/{id}/defects"),
            Some(("releases", true))
        );
        assert_eq!(collection_of("/api/tasks/{id}"), Some(("tasks", true)));
        assert_eq!(
            collection_of("/api/spaces/{space_id}/tasks/{id}/cancel"),
            Some(("tasks", true))
        );
        assert_eq!(
            collection_of("/api/{space_id}/projects"),
            Some(("projects", false))
        );
        assert!(is_declared("/api/{space_id}/projects/{id}"));
        assert!(!is_declared("/api/{space_id}/gadgets/{id}"));
    }

    #[test]
    fn every_route_of_the_table_is_declared() {
        for spec in crate::routes::table().specs {
            assert!(is_declared(spec.path), "{} has no scope rule", spec.path);
        }
    }

    #[test]
    fn path_parameters_line_up_with_the_route() {
        let p = params(
            "/api/{space_id}/releases/{id}",
            "/api/Spaces-1/releases/Releases-4",
        );
        assert_eq!(p, vec![("space_id", "Spaces-1"), ("id", "Releases-4")]);
        assert!(params("/api/{space_id}", "/api/Spaces-1/x").is_empty());
    }
}
