//! The process editor: a project's deployment steps in order, with forms to add and edit
//! script, package, manual intervention and step-template steps, and to move, disable and
//! delete them. Every change reads the whole process, changes one step and puts it back with
//! its `Version` (a stale version is the API's 409).

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::routing::{get, post};
use ferry_domain::{DeploymentAction, DeploymentProcess, DeploymentStep, PackageReference};
use ferry_server::routes::Permission;
use serde_json::Value;

use super::projects::{
    ProjectNav, can_each, field_error, items, name_of, pairs_of, project_nav, project_target,
    with_status,
};
use super::{Chrome, page, render};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{arr, s, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/projects/{id}/process", get(process_page))
        .route("/app/{space}/projects/{id}/process/new", get(new_step))
        .route(
            "/app/{space}/projects/{id}/process/steps",
            post(create_step),
        )
        .route(
            "/app/{space}/projects/{id}/process/steps/{step}",
            get(edit_step).post(update_step),
        )
        .route(
            "/app/{space}/projects/{id}/process/steps/{step}/move",
            post(move_step),
        )
        .route(
            "/app/{space}/projects/{id}/process/steps/{step}/toggle",
            post(toggle_step),
        )
        .route(
            "/app/{space}/projects/{id}/process/steps/{step}/delete",
            post(delete_step),
        )
}

const RUN_ON_SERVER: &str = "Octopus.Action.RunOnServer";
const TARGET_ROLES: &str = "Octopus.Action.TargetRoles";
const SCRIPT_BODY: &str = "Octopus.Action.Script.ScriptBody";
const SCRIPT_SYNTAX: &str = "Octopus.Action.Script.Syntax";
const SCRIPT_SOURCE: &str = "Octopus.Action.Script.ScriptSource";
const PACKAGE_ID: &str = "Octopus.Action.Package.PackageId";
const PACKAGE_FEED: &str = "Octopus.Action.Package.FeedId";
const INSTRUCTIONS: &str = "Octopus.Action.Manual.Instructions";
const RESPONSIBLE_TEAMS: &str = "Octopus.Action.Manual.ResponsibleTeamIds";
const TEMPLATE_ID: &str = "Octopus.Action.Template.Id";
const TEMPLATE_VERSION: &str = "Octopus.Action.Template.Version";
const CONDITION_EXPRESSION: &str = "Octopus.Step.ConditionVariableExpression";
/// The script syntaxes the executor runs.
const SYNTAXES: &[&str] = &["Bash", "Python"];

fn process_path(space: &str, project: &str) -> String {
    format!("/api/{space}/projects/{project}/deploymentprocesses")
}

async fn load_process(
    viewer: &Viewer,
    space: &str,
    project: &str,
) -> Result<DeploymentProcess, ApiFailure> {
    let v = viewer.get(&process_path(space, project)).await?;
    serde_json::from_value(v).map_err(|e| {
        ApiFailure::new(
            502,
            format!("The deployment process could not be read: {e}"),
        )
    })
}

async fn save_process(
    viewer: &Viewer,
    space: &str,
    project: &str,
    csrf: &str,
    p: &DeploymentProcess,
) -> Result<Value, ApiFailure> {
    let body = serde_json::to_value(p)
        .map_err(|e| ApiFailure::new(500, format!("The process could not be sent: {e}")))?;
    viewer
        .send(
            Method::PUT,
            &process_path(space, project),
            csrf,
            Some(&body),
        )
        .await
}

/// What kind of step an action is, for the form.
fn kind_of(a: &DeploymentAction) -> &'static str {
    if a.properties.contains_key(TEMPLATE_ID) {
        "template"
    } else {
        match a.action_type.as_str() {
            "Octopus.Script" => "script",
            "Octopus.TentaclePackage" => "package",
            "Octopus.Manual" => "manual",
            _ => "other",
        }
    }
}

fn type_words(a: &DeploymentAction, templates: &[(String, String)]) -> String {
    match kind_of(a) {
        "template" => {
            let tid = a.properties.get(TEMPLATE_ID).cloned().unwrap_or_default();
            format!("Step template {}", name_of(templates, &tid))
        }
        "script" => "Run a script".to_string(),
        "package" => "Deploy a package".to_string(),
        "manual" => "Manual intervention".to_string(),
        _ => a.action_type.clone(),
    }
}

fn runs_on(step: &DeploymentStep, a: &DeploymentAction) -> String {
    if a.action_type == "Octopus.Manual" {
        return "Ferry server (waits for a person)".to_string();
    }
    let roles = roles_of(step);
    if is_true(a.properties.get(RUN_ON_SERVER)) || roles.is_empty() {
        "Ferry server".to_string()
    } else {
        format!("targets with roles {}", roles.join(", "))
    }
}

fn roles_of(step: &DeploymentStep) -> Vec<String> {
    step.properties
        .get(TARGET_ROLES)
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn condition_words(step: &DeploymentStep) -> String {
    match step.condition.as_str() {
        "Success" => "Only if previous steps succeeded".to_string(),
        "Failure" => "Only if a previous step failed".to_string(),
        "Always" => "Always".to_string(),
        "Variable" => format!(
            "When {} is true",
            step.properties
                .get(CONDITION_EXPRESSION)
                .cloned()
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The process page.

struct StepRow {
    number: usize,
    id: String,
    name: String,
    kind: String,
    runs_on: String,
    environments: String,
    condition: String,
    disabled: bool,
    required: bool,
    first: bool,
    last: bool,
}

#[derive(Template)]
#[template(path = "projects/process.html")]
struct ProcessPage {
    chrome: Chrome,
    nav: ProjectNav,
    steps: Vec<StepRow>,
    templates: Vec<(String, String)>,
    can_edit: bool,
    version: i64,
}

async fn process_page(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let (nav, project) = project_nav(&viewer, &space, &id, "process").await?;
    let target = project_target(&project);
    let envs_path = format!("/api/{space}/environments/all");
    let templates_path = format!("/api/{space}/actiontemplates/all");
    let (chrome, process, envs, templates, [can_edit]) = tokio::join!(
        viewer.chrome(&space, "projects", format!("{} process", nav.name)),
        load_process(&viewer, &space, &nav.id),
        viewer.get(&envs_path),
        viewer.get(&templates_path),
        can_each(&viewer, &space, [Permission::ProcessEdit], &target),
    );
    let process = process?;
    let envs = pairs_of(&envs);
    let templates = pairs_of(&templates);
    let count = process.steps.len();
    let steps = process
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            let a = step.actions.first()?;
            let environments = if !a.environments.is_empty() {
                format!(
                    "Only {}",
                    a.environments
                        .iter()
                        .map(|e| name_of(&envs, e))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else if !a.excluded_environments.is_empty() {
                format!(
                    "All but {}",
                    a.excluded_environments
                        .iter()
                        .map(|e| name_of(&envs, e))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                "All environments".to_string()
            };
            Some(StepRow {
                number: i + 1,
                id: step.id.clone(),
                name: step.name.clone(),
                kind: type_words(a, &templates),
                runs_on: runs_on(step, a),
                environments,
                condition: condition_words(step),
                disabled: step.actions.iter().all(|a| a.is_disabled),
                required: a.is_required,
                first: i == 0,
                last: i + 1 == count,
            })
        })
        .collect();
    page(&ProcessPage {
        chrome,
        nav,
        steps,
        templates,
        can_edit,
        version: process.version,
    })
}

// ---------------------------------------------------------------------------------------------
// The step form.

/// A step template parameter on the form.
struct Param {
    name: String,
    label: String,
    help: String,
    value: String,
    control: String,
    /// A sensitive value is set (it is never shown).
    has_secret: bool,
}

#[derive(Template)]
#[template(path = "projects/step.html")]
struct StepPage {
    chrome: Chrome,
    nav: ProjectNav,
    /// "" for a new step.
    step_id: String,
    kind: String,
    template_id: String,
    template_name: String,
    name: String,
    run_on: String,
    roles: String,
    script: String,
    syntax: String,
    syntaxes: Vec<String>,
    package_id: String,
    packages: Vec<String>,
    instructions: String,
    teams: Vec<(String, String)>,
    selected_teams: Vec<String>,
    params: Vec<Param>,
    condition: String,
    expression: String,
    environments: Vec<(String, String)>,
    selected_envs: Vec<String>,
    required: bool,
    error: String,
    err_name: String,
    err_roles: String,
    err_package: String,
    err_condition: String,
}

/// What the form shows: from a step, from a posted form, or empty.
#[derive(Default)]
struct StepValues {
    kind: String,
    template_id: String,
    name: String,
    run_on: String,
    roles: String,
    script: String,
    syntax: String,
    package_id: String,
    instructions: String,
    teams: Vec<String>,
    params: BTreeMap<String, String>,
    condition: String,
    expression: String,
    environments: Vec<String>,
    required: bool,
}

impl StepValues {
    fn of_step(step: &DeploymentStep) -> StepValues {
        let a = step.actions.first().cloned().unwrap_or_default();
        let p = &a.properties;
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let roles = roles_of(step);
        StepValues {
            kind: kind_of(&a).to_string(),
            template_id: get(TEMPLATE_ID),
            name: step.name.clone(),
            run_on: if roles.is_empty() || is_true(p.get(RUN_ON_SERVER)) {
                "server".into()
            } else {
                "targets".into()
            },
            roles: roles.join(", "),
            script: get(SCRIPT_BODY),
            syntax: get(SCRIPT_SYNTAX),
            package_id: a
                .packages
                .first()
                .map(|p| p.package_id.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| get(PACKAGE_ID)),
            instructions: get(INSTRUCTIONS),
            teams: get(RESPONSIBLE_TEAMS)
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            params: p.clone(),
            condition: step.condition.clone(),
            expression: step
                .properties
                .get(CONDITION_EXPRESSION)
                .cloned()
                .unwrap_or_default(),
            environments: a.environments.clone(),
            required: a.is_required,
        }
    }

    fn of_form(form: &FormData) -> StepValues {
        let params = form
            .0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("param-").map(|n| (n.to_string(), v.clone())))
            .collect();
        StepValues {
            kind: form.get("kind"),
            template_id: form.get("template"),
            name: form.get("name"),
            run_on: form.get("run_on"),
            roles: form.get("roles"),
            script: form.raw("script"),
            syntax: form.get("syntax"),
            package_id: form.get("package_id"),
            instructions: form.raw("instructions"),
            teams: form.all("teams"),
            params,
            condition: form.get("condition"),
            expression: form.get("condition_expression"),
            environments: form.all("environments"),
            required: form.checked("required"),
        }
    }

    fn roles_list(&self) -> Vec<String> {
        self.roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    }
}

async fn step_page(
    viewer: &Viewer,
    space: &str,
    project: &str,
    step_id: &str,
    v: StepValues,
    f: Option<ApiFailure>,
) -> PageResult {
    let (nav, _) = project_nav(viewer, space, project, "process").await?;
    let envs_path = format!("/api/{space}/environments/all");
    let teams_path = format!("/api/{space}/teams?take=200");
    let packages_path = format!("/api/{space}/packages?take=100&latest=true");
    let template_path = format!(
        "/api/{space}/actiontemplates/{}",
        url_encode(&v.template_id)
    );
    let kind = v.kind.clone();
    let (chrome, envs, teams, packages, template) = tokio::join!(
        viewer.chrome(
            space,
            "projects",
            if step_id.is_empty() {
                format!("{}: add a step", nav.name)
            } else {
                format!("{}: {}", nav.name, v.name)
            }
        ),
        viewer.get(&envs_path),
        async {
            if kind == "manual" {
                viewer.get(&teams_path).await
            } else {
                Ok(Value::Null)
            }
        },
        async {
            if kind == "package" {
                viewer.get(&packages_path).await
            } else {
                Ok(Value::Null)
            }
        },
        async {
            if kind == "template" && !v.template_id.is_empty() {
                viewer.get(&template_path).await
            } else {
                Ok(Value::Null)
            }
        },
    );
    if kind == "template" {
        // A missing template is worth a clear error page rather than an empty form.
        if let Err(f) = &template {
            return Err(f.clone().into());
        }
    }
    let template = template.unwrap_or(Value::Null);
    let params = arr(&template, "Parameters")
        .iter()
        .map(|p| {
            let name = s(p, "Name");
            let control = p
                .get("DisplaySettings")
                .map(|d| s(d, "Octopus.ControlType"))
                .unwrap_or_default();
            let current = v.params.get(&name).cloned();
            let sensitive = control == "Sensitive";
            let has_secret = sensitive && current.as_ref().is_some_and(|c| !c.is_empty());
            let value = if sensitive {
                String::new()
            } else {
                current.unwrap_or_else(|| match p.get("DefaultValue") {
                    Some(Value::String(d)) => d.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
            };
            Param {
                label: if s(p, "Label").is_empty() {
                    name.clone()
                } else {
                    s(p, "Label")
                },
                help: s(p, "HelpText"),
                name,
                value,
                control,
                has_secret,
            }
        })
        .collect();
    let packages = items(&packages.unwrap_or(Value::Null))
        .iter()
        .map(|p| s(p, "PackageId"))
        .collect::<Vec<_>>();
    let mut packages = packages;
    packages.dedup();
    let (error, status) = match &f {
        Some(f) => (f.text(), f.status),
        None => (String::new(), 200),
    };
    let fe = |keys: &[&str]| f.as_ref().map(|f| field_error(f, keys)).unwrap_or_default();
    let t = StepPage {
        chrome,
        nav,
        step_id: step_id.to_string(),
        template_name: s(&template, "Name"),
        kind: v.kind,
        template_id: v.template_id,
        name: v.name,
        run_on: if v.run_on.is_empty() {
            "server".into()
        } else {
            v.run_on
        },
        roles: v.roles,
        script: v.script,
        syntax: if v.syntax.is_empty() {
            "Bash".into()
        } else {
            v.syntax
        },
        syntaxes: SYNTAXES.iter().map(|x| x.to_string()).collect(),
        package_id: v.package_id,
        packages,
        instructions: v.instructions,
        teams: pairs_of(&teams),
        selected_teams: v.teams,
        params,
        condition: if v.condition.is_empty() {
            "Success".into()
        } else {
            v.condition
        },
        expression: v.expression,
        environments: pairs_of(&envs),
        selected_envs: v.environments,
        required: v.required,
        err_name: fe(&["Name", "name"]),
        err_roles: fe(&["role", "Role"]),
        err_package: fe(&["ackage"]),
        err_condition: fe(&["Condition", "condition"]),
        error,
    };
    Ok(with_status(render(&t), status))
}

#[derive(serde::Deserialize, Default)]
struct NewQuery {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    template: String,
}

async fn new_step(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    Query(q): Query<NewQuery>,
) -> PageResult {
    let kind = match q.kind.as_str() {
        "script" | "package" | "manual" | "template" => q.kind.clone(),
        _ => {
            return Err(ApiFailure::new(
                400,
                "Choose a step type: script, package, manual or template",
            )
            .into());
        }
    };
    let v = StepValues {
        kind,
        template_id: q.template,
        run_on: "server".into(),
        condition: "Success".into(),
        ..StepValues::default()
    };
    step_page(&viewer, &space, &id, "", v, None).await
}

async fn edit_step(
    viewer: Viewer,
    Path((space, id, step)): Path<(String, String, String)>,
) -> PageResult {
    let process = load_process(&viewer, &space, &id).await?;
    let st = process
        .steps
        .iter()
        .find(|s| s.id == step)
        .ok_or_else(|| ApiFailure::new(404, format!("Step '{step}' is not in this process")))?;
    step_page(&viewer, &space, &id, &step, StepValues::of_step(st), None).await
}

/// Fills `step` (new or existing) from the form's values.
async fn apply(
    viewer: &Viewer,
    space: &str,
    v: &StepValues,
    step: &mut DeploymentStep,
) -> Result<(), ApiFailure> {
    if v.name.is_empty() {
        return Err(ApiFailure::new(400, "Please provide a step Name"));
    }
    step.name = v.name.clone();
    if step.actions.is_empty() {
        step.actions.push(DeploymentAction::default());
    }
    let single = step.actions.len() == 1;
    let condition = if v.condition.is_empty() {
        "Success".to_string()
    } else {
        v.condition.clone()
    };
    if condition == "Variable" && v.expression.is_empty() {
        return Err(ApiFailure::new(
            400,
            "Condition Variable needs an expression, e.g. #{if Flag}True#{/if}",
        ));
    }
    step.condition = condition.clone();
    if condition == "Variable" {
        step.properties
            .insert(CONDITION_EXPRESSION.into(), v.expression.clone());
    } else {
        step.properties.remove(CONDITION_EXPRESSION);
    }
    let manual = v.kind == "manual";
    let roles = v.roles_list();
    let on_targets = !manual && v.run_on == "targets";
    if on_targets && roles.is_empty() {
        return Err(ApiFailure::new(
            400,
            "Give at least one target role, or run the step on the Ferry server",
        ));
    }
    if on_targets {
        step.properties.insert(TARGET_ROLES.into(), roles.join(","));
    } else {
        step.properties.remove(TARGET_ROLES);
    }
    let Some(a) = step.actions.first_mut() else {
        return Err(ApiFailure::new(500, "The step has no action"));
    };
    if single {
        a.name = v.name.clone();
    }
    a.environments = v.environments.clone();
    a.is_required = v.required;
    let p = &mut a.properties;
    if !manual {
        p.insert(
            RUN_ON_SERVER.into(),
            if on_targets { "false" } else { "true" }.into(),
        );
    }
    match v.kind.as_str() {
        "script" => {
            a.action_type = "Octopus.Script".into();
            p.insert(SCRIPT_SOURCE.into(), "Inline".into());
            p.insert(SCRIPT_BODY.into(), v.script.clone());
            let syntax = if SYNTAXES.contains(&v.syntax.as_str()) {
                v.syntax.clone()
            } else {
                "Bash".to_string()
            };
            p.insert(SCRIPT_SYNTAX.into(), syntax);
        }
        "package" => {
            if v.package_id.is_empty() {
                return Err(ApiFailure::new(
                    400,
                    "Please provide the package ID of the package to deploy",
                ));
            }
            a.action_type = "Octopus.TentaclePackage".into();
            p.insert(PACKAGE_ID.into(), v.package_id.clone());
            p.insert(PACKAGE_FEED.into(), ferry_domain::BUILTIN_FEED_ID.into());
            match a.packages.iter_mut().find(|r| r.name.is_empty()) {
                Some(r) => {
                    r.package_id = v.package_id.clone();
                    r.feed_id = ferry_domain::BUILTIN_FEED_ID.into();
                }
                None => a.packages.push(PackageReference {
                    package_id: v.package_id.clone(),
                    feed_id: ferry_domain::BUILTIN_FEED_ID.into(),
                    acquisition_location: "Server".into(),
                    ..PackageReference::default()
                }),
            }
        }
        "manual" => {
            a.action_type = "Octopus.Manual".into();
            p.insert(INSTRUCTIONS.into(), v.instructions.clone());
            if v.teams.is_empty() {
                p.remove(RESPONSIBLE_TEAMS);
            } else {
                p.insert(RESPONSIBLE_TEAMS.into(), v.teams.join(","));
            }
        }
        "template" => {
            if v.template_id.is_empty() {
                return Err(ApiFailure::new(400, "Choose a step template"));
            }
            let t = viewer
                .get(&format!(
                    "/api/{space}/actiontemplates/{}",
                    url_encode(&v.template_id)
                ))
                .await?;
            a.action_type = s(&t, "ActionType");
            if !p.contains_key(TEMPLATE_ID) {
                if let Some(Value::Object(tp)) = t.get("Properties") {
                    for (k, val) in tp {
                        let text = match val {
                            Value::String(x) => x.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        p.insert(k.clone(), text);
                    }
                }
                p.insert(TEMPLATE_VERSION.into(), s(&t, "Version"));
            }
            p.insert(TEMPLATE_ID.into(), s(&t, "Id"));
            for param in arr(&t, "Parameters") {
                let name = s(param, "Name");
                let sensitive = param
                    .get("DisplaySettings")
                    .map(|d| s(d, "Octopus.ControlType") == "Sensitive")
                    .unwrap_or(false);
                if let Some(val) = v.params.get(&name) {
                    // A blank sensitive value keeps the one already set.
                    if sensitive && val.is_empty() && p.contains_key(&name) {
                        continue;
                    }
                    p.insert(name, val.clone());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

async fn create_step(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let v = StepValues::of_form(&form);
    let result = async {
        let mut process = load_process(&viewer, &space, &id).await?;
        let mut step = DeploymentStep::default();
        apply(&viewer, &space, &v, &mut step).await?;
        process.steps.push(step);
        save_process(&viewer, &space, &id, &form.csrf(), &process).await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/process"))),
        Err(f) => step_page(&viewer, &space, &id, "", v, Some(f)).await,
    }
}

async fn update_step(
    viewer: Viewer,
    Path((space, id, step_id)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let v = StepValues::of_form(&form);
    let result = async {
        let mut process = load_process(&viewer, &space, &id).await?;
        let step = process
            .steps
            .iter_mut()
            .find(|s| s.id == step_id)
            .ok_or_else(|| {
                ApiFailure::new(404, format!("Step '{step_id}' is not in this process"))
            })?;
        apply(&viewer, &space, &v, step).await?;
        save_process(&viewer, &space, &id, &form.csrf(), &process).await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/projects/{id}/process"))),
        Err(f) => step_page(&viewer, &space, &id, &step_id, v, Some(f)).await,
    }
}

/// Changes the process with `change` and puts it back; the process page after.
async fn change_process(
    viewer: &Viewer,
    space: &str,
    id: &str,
    step_id: &str,
    form: &FormData,
    change: impl FnOnce(&mut Vec<DeploymentStep>, usize),
) -> PageResult {
    let mut process = load_process(viewer, space, id).await?;
    let ix = process
        .steps
        .iter()
        .position(|s| s.id == step_id)
        .ok_or_else(|| ApiFailure::new(404, format!("Step '{step_id}' is not in this process")))?;
    change(&mut process.steps, ix);
    save_process(viewer, space, id, &form.csrf(), &process).await?;
    Ok(see_other(&format!("/app/{space}/projects/{id}/process")))
}

async fn move_step(
    viewer: Viewer,
    Path((space, id, step)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let up = form.get("direction") == "up";
    change_process(&viewer, &space, &id, &step, &form, |steps, ix| {
        if up && ix > 0 {
            steps.swap(ix, ix - 1);
        } else if !up && ix + 1 < steps.len() {
            steps.swap(ix, ix + 1);
        }
    })
    .await
}

async fn toggle_step(
    viewer: Viewer,
    Path((space, id, step)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    change_process(&viewer, &space, &id, &step, &form, |steps, ix| {
        let disable = !steps[ix].actions.iter().all(|a| a.is_disabled);
        for a in &mut steps[ix].actions {
            a.is_disabled = disable;
        }
    })
    .await
}

async fn delete_step(
    viewer: Viewer,
    Path((space, id, step)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    change_process(&viewer, &space, &id, &step, &form, |steps, ix| {
        steps.remove(ix);
    })
    .await
}
