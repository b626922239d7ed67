//! `GET /api/{space}/releases/{id}/deployments/template`: Octopus's "deployment template",
//! what the Deploy button offers for a release — the environments its lifecycle lets it be
//! deployed to now (`PromoteTo`), the same per connected tenant (`TenantPromotions`), and
//! whether the project's process or variables changed since the release was created (so a user
//! knows a redeploy will not pick those changes up).

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use ferry_domain::lifecycle::allowed_environments;
use ferry_domain::{DeploymentProcess, Environment, Project, Release};
use serde_json::{Value, json};

use super::*;

fn env_entry(e: &Environment) -> Value {
    json!({
        "Id": e.id,
        "Name": e.name,
        "UseGuidedFailure": e.use_guided_failure,
        "AllowDynamicInfrastructure": e.allow_dynamic_infrastructure,
    })
}

/// Environments the release may be deployed to now (for a tenant, by its own progression and
/// only where it is connected), honouring prevented progression.
fn promote_to(
    history: &super::releases::History,
    release: &Release,
    project: &Project,
    tenant: Option<&ferry_domain::Tenant>,
) -> Vec<Value> {
    let pr = history.progress(tenant.map(|t| t.id.as_str()));
    let allowed = allowed_environments(&pr.phases, &pr.succeeded, &pr.deployed);
    let prevented = super::releases::unresolved_defect(release).is_some();
    allowed
        .iter()
        .filter(|id| !prevented || pr.deployed.contains(*id))
        .filter(|id| tenant.is_none_or(|t| t.is_connected(&project.id, id)))
        .filter_map(|id| pr.environments.iter().find(|e| &e.id == id))
        .map(env_entry)
        .collect()
}

fn steps_json(p: &DeploymentProcess) -> Value {
    // Compare what a deployment runs: steps without the ids the snapshot rewrote.
    let mut v = serde_json::to_value(&p.steps).unwrap_or(Value::Null);
    strip_ids(&mut v);
    v
}

fn strip_ids(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("Id");
            for x in o.values_mut() {
                strip_ids(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

fn variables_json(set: &ferry_domain::VariableSet) -> Value {
    serde_json::to_value(&set.variables).unwrap_or(Value::Null)
}

pub async fn template(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, release): (_, Release) = load(&st, "Releases", &space, &id, "Release").await?;
    let (_, project): (_, Project) =
        load(&st, "Projects", &space, &release.project_id, "Project").await?;
    // Read once; each tenant's progression is derived from it.
    let history = super::releases::history(&st, &space, &release, &project).await?;

    let untenanted = if project.tenanted_deployment_mode == "Tenanted" {
        Vec::new()
    } else {
        promote_to(&history, &release, &project, None)
    };
    let mut tenant_promotions = Vec::new();
    if project.tenanted_deployment_mode != "Untenanted" {
        let channel_tags: Vec<String> = match st.db.get_doc(&release.channel_id).await? {
            Some(d) => parse_body::<ferry_domain::Channel>(&d)?.tenant_tags,
            None => Vec::new(),
        };
        for t in super::tenants::all_tenants(&st, &space).await? {
            if t.is_disabled || !t.project_environments.contains_key(&project.id) {
                continue;
            }
            if !channel_tags.is_empty()
                && !ferry_domain::tenant::tags_match(&channel_tags, &t.tenant_tags)
            {
                continue;
            }
            let envs = promote_to(&history, &release, &project, Some(&t));
            tenant_promotions.push(json!({"Id": t.id, "Name": t.name, "PromoteTo": envs}));
        }
    }

    // What changed in the project since the release was created.
    let (_, snapshot): (_, DeploymentProcess) = load(
        &st,
        "DeploymentProcessSnapshots",
        &space,
        &release.project_deployment_process_snapshot_id,
        "Process snapshot",
    )
    .await?;
    let (_, current): (_, DeploymentProcess) = load(
        &st,
        "DeploymentProcesses",
        &space,
        &project.deployment_process_id,
        "Deployment process",
    )
    .await?;
    let process_modified = steps_json(&snapshot) != steps_json(&current);
    let now_sets = super::variables::current_sets(&st, &space, &project).await?;
    let release_sets = super::variables::release_sets(&st, &space, &release).await?;
    let variables_modified = match (now_sets.first(), release_sets.first()) {
        (Some(a), Some(b)) => variables_json(&a.set) != variables_json(&b.set),
        _ => true,
    };
    let now_libs: HashSet<String> = now_sets
        .iter()
        .skip(1)
        .map(|s| s.set.owner_id.clone())
        .collect();
    let release_libs: HashSet<String> = release_sets
        .iter()
        .skip(1)
        .map(|s| s.set.owner_id.clone())
        .collect();
    let library_modified = now_libs != release_libs
        || now_sets.iter().skip(1).any(|a| {
            release_sets
                .iter()
                .skip(1)
                .find(|b| b.set.owner_id == a.set.owner_id)
                .is_none_or(|b| variables_json(&a.set) != variables_json(&b.set))
        });

    Ok(Json(json!({
        "IsDeploymentProcessModified": process_modified,
        "DeploymentNotes": Value::Null,
        "IsVariableSetModified": variables_modified,
        "IsLibraryVariableSetModified": library_modified,
        "PromoteTo": untenanted,
        "TenantPromotions": tenant_promotions,
        "Links": {},
    })))
}
