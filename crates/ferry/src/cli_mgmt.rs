//! Release management commands: `ferry lifecycle …`, `ferry channel …`, `ferry tenant …` and
//! `ferry release promote`. They speak the Octopus-shaped JSON of the REST API directly (the
//! resources are edited as documents: read, change, put back), so every field the server
//! keeps survives an edit made here.

use super::*;

#[derive(Subcommand, Debug)]
pub enum LifecycleCommand {
    /// List lifecycles with their phases
    List,
    /// Show a lifecycle's phases and environments
    Show {
        /// Lifecycle, by name or id
        name: String,
    },
    /// Create a lifecycle from phases (no phase: one phase per environment, in order)
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// NAME[=ENV,auto:ENV,...][;min=N][;optional] (repeatable, in order); `auto:`
        /// deploys to that environment as soon as the release enters the phase; no
        /// environments means every environment not named in an earlier phase
        #[arg(long = "phase", value_name = "SPEC")]
        phases: Vec<String>,
        /// Keep this many releases (release retention; default: keep all)
        #[arg(long, value_name = "N", conflicts_with = "keep_release_days")]
        keep_releases: Option<u32>,
        /// Keep releases for this many days
        #[arg(long, value_name = "DAYS")]
        keep_release_days: Option<u32>,
    },
    /// Delete a lifecycle no project or channel uses
    Delete {
        /// Lifecycle, by name or id
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// List a project's channels
    List {
        #[arg(long)]
        project: String,
    },
    /// Create a channel
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Lifecycle, by name or id [default: the project's]
        #[arg(long)]
        lifecycle: Option<String>,
        /// Make it the project's default channel
        #[arg(long)]
        default: bool,
        /// A version rule STEP|RANGE|TAG (repeatable), e.g. 'Deploy web|[1.0,2.0)|^$'
        #[arg(long = "rule", value_name = "STEP|RANGE|TAG")]
        rules: Vec<String>,
        /// Only tenants with this tag (repeatable, Set/Tag)
        #[arg(long = "tenant-tag", value_name = "SET/TAG")]
        tenant_tags: Vec<String>,
    },
    /// Delete a channel
    Delete {
        #[arg(long)]
        project: String,
        /// Channel, by name or id
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// List tenants
    List {
        /// Only tenants connected to this project
        #[arg(long)]
        project: Option<String>,
        /// Only tenants with this tag (repeatable, Set/Tag)
        #[arg(long = "tag", value_name = "SET/TAG")]
        tags: Vec<String>,
    },
    /// Show a tenant, its tags and connections
    Show {
        /// Tenant, by name or id
        name: String,
    },
    /// Create a tenant
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A tag (repeatable, Set/Tag)
        #[arg(long = "tag", value_name = "SET/TAG")]
        tags: Vec<String>,
    },
    /// Connect a tenant to a project in some environments
    Connect {
        /// Tenant, by name or id
        name: String,
        #[arg(long)]
        project: String,
        /// Environment (repeatable)
        #[arg(long = "environment", value_name = "NAME|ID", required = true)]
        environments: Vec<String>,
    },
    /// Disconnect a tenant from a project
    Disconnect {
        name: String,
        #[arg(long)]
        project: String,
    },
    /// Set a tenant variable: a project template's value in an environment, or a library
    /// set's common template value
    SetVariable {
        /// Tenant, by name or id
        name: String,
        /// The project whose template it is (with --environment)
        #[arg(long, conflicts_with = "library_set")]
        project: Option<String>,
        #[arg(long, requires = "project")]
        environment: Option<String>,
        /// The library variable set whose common template it is
        #[arg(long)]
        library_set: Option<String>,
        /// Template name
        #[arg(long)]
        template: String,
        #[arg(long)]
        value: String,
    },
    /// Delete a tenant
    Delete { name: String },
    /// Create a tag set with its tags
    CreateTagSet {
        #[arg(long)]
        name: String,
        /// A tag (repeatable, in order)
        #[arg(long = "tag", value_name = "NAME", required = true)]
        tags: Vec<String>,
    },
    /// List tag sets and their tags
    TagSets,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// The environment whose latest successful release is promoted
    #[arg(long)]
    from: String,
    /// The environment to deploy it to (repeatable)
    #[arg(long = "to", value_name = "NAME|ID", required = true)]
    to: Vec<String>,
    /// Value of a prompted variable (repeatable)
    #[arg(long = "variable", value_name = "NAME:VALUE", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
    /// Follow every deployment's log until it ends; exit 3 unless all succeed
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (exit 5)
    #[arg(long, value_name = "SECS", requires = "wait")]
    timeout: Option<u64>,
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => other
            .get("Items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// The elements of an array field (none when absent).
fn arr<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The strings of an array field.
fn strings(v: &Value, key: &str) -> Vec<String> {
    arr(v, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// A list answer: as it came with `--output json`, else a table with a row per item.
fn print_list(
    session: &Session,
    answer: &Value,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<(), Failure> {
    if session.json() {
        return print_json(answer);
    }
    print_table(headers, items(answer).iter().map(row).collect())
}

/// A project's channels (the API's page).
async fn project_channels(session: &Session, project_id: &str) -> Result<Value, Failure> {
    Ok(session
        .client
        .get_json(&api(
            &session.space_id,
            &format!("projects/{}/channels?take=1000", segment(project_id)),
        ))
        .await?)
}

fn api(space: &str, rest: &str) -> String {
    format!("/api/{}/{rest}", segment(space))
}

/// A resource of a collection by id, name or slug (the API resolves all three).
async fn by_name(session: &Session, collection: &str, key: &str) -> Result<Value, Failure> {
    Ok(session
        .client
        .get_json(&api(
            &session.space_id,
            &format!("{collection}/{}", segment(key.trim())),
        ))
        .await?)
}

async fn environment_names(session: &Session) -> Result<BTreeMap<String, String>, Failure> {
    Ok(session
        .client
        .environments(&session.space_id)
        .await?
        .into_iter()
        .map(|e| (e.data.id.clone(), e.data.name.clone()))
        .collect())
}

async fn environment_id(session: &Session, key: &str) -> Result<String, Failure> {
    Ok(session
        .client
        .find_environment(&session.space_id, key)
        .await?
        .data
        .id)
}

/// A `--phase` argument: name, environments (with whether each is automatic), the minimum to
/// progress, and whether the phase is optional.
type PhaseSpec = (String, Vec<(String, bool)>, i64, bool);

/// Parses `NAME[=ENV,auto:ENV,...][;min=N][;optional]`.
fn parse_phase(spec: &str) -> Result<PhaseSpec, Failure> {
    let mut parts = spec.split(';');
    let head = parts.next().unwrap_or_default();
    let (name, envs) = match head.split_once('=') {
        Some((n, e)) => (n.trim(), e),
        None => (head.trim(), ""),
    };
    if name.is_empty() {
        return Err(Failure::Usage(format!(
            "--phase '{spec}' has no name: use NAME[=ENV,auto:ENV][;min=N][;optional]"
        )));
    }
    let envs: Vec<(String, bool)> = envs
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.strip_prefix("auto:") {
            Some(rest) => (rest.trim().to_owned(), true),
            None => (e.to_owned(), false),
        })
        .collect();
    let mut min = 0;
    let mut optional = false;
    for opt in parts.map(str::trim).filter(|p| !p.is_empty()) {
        if opt.eq_ignore_ascii_case("optional") {
            optional = true;
        } else if let Some(n) = opt.strip_prefix("min=") {
            min = n.trim().parse::<i64>().map_err(|_| {
                Failure::Usage(format!("--phase '{spec}': min={n} is not a number"))
            })?;
        } else {
            return Err(Failure::Usage(format!(
                "--phase '{spec}': unknown option '{opt}' (use min=N or optional)"
            )));
        }
    }
    Ok((name.to_owned(), envs, min, optional))
}

fn retention_text(r: &Value) -> String {
    if r.get("ShouldKeepForever").and_then(Value::as_bool) == Some(true)
        || r.get("Strategy").and_then(Value::as_str) == Some("Forever")
    {
        return "keep all".to_owned();
    }
    let n = r.get("QuantityToKeep").and_then(Value::as_i64).unwrap_or(0);
    let unit = s(r, "Unit");
    if n == 0 {
        "keep all".to_owned()
    } else {
        format!("keep {n} {}", unit.to_lowercase())
    }
}

pub(super) async fn lifecycle(session: &Session, command: LifecycleCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        LifecycleCommand::List => {
            let all = client.get_json(&api(space, "lifecycles/all")).await?;
            print_list(session, &all, &["ID", "NAME", "PHASES"], |l| {
                let phases: Vec<String> = arr(l, "Phases").iter().map(|p| s(p, "Name")).collect();
                vec![
                    s(l, "Id"),
                    s(l, "Name"),
                    if phases.is_empty() {
                        "(environment order)".to_owned()
                    } else {
                        phases.join(" → ")
                    },
                ]
            })
        }
        LifecycleCommand::Show { name } => {
            let l = by_name(session, "lifecycles", &name).await?;
            if session.json() {
                return print_json(&l);
            }
            let envs = environment_names(session).await?;
            let name_of = |v: &Value| {
                let id = v.as_str().unwrap_or_default();
                envs.get(id).cloned().unwrap_or_else(|| id.to_owned())
            };
            print_line(format!("{} ({})", s(&l, "Name"), s(&l, "Id")))?;
            print_line(format!(
                "Releases: {}",
                retention_text(&l["ReleaseRetentionPolicy"])
            ))?;
            let phases = arr(&l, "Phases");
            if phases.is_empty() {
                return print_line("No phases: one phase per environment, in environment order");
            }
            let rows = phases
                .iter()
                .map(|p| {
                    let list = |k: &str| -> Vec<String> { arr(p, k).iter().map(name_of).collect() };
                    let auto = list("AutomaticDeploymentTargets");
                    let manual = list("OptionalDeploymentTargets");
                    let min = p
                        .get("MinimumEnvironmentsBeforePromotion")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let rule = if p.get("IsOptionalPhase").and_then(Value::as_bool) == Some(true) {
                        "optional".to_owned()
                    } else if min > 0 {
                        format!("at least {min}")
                    } else {
                        "all".to_owned()
                    };
                    let envs = if auto.is_empty() && manual.is_empty() {
                        "(every environment not named earlier)".to_owned()
                    } else {
                        auto.iter()
                            .map(|e| format!("{e} (automatic)"))
                            .chain(manual.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    vec![s(p, "Name"), envs, rule]
                })
                .collect();
            print_table(&["PHASE", "ENVIRONMENTS", "TO PROGRESS"], rows)
        }
        LifecycleCommand::Create {
            name,
            description,
            phases,
            keep_releases,
            keep_release_days,
        } => {
            let mut out = Vec::new();
            for spec in &phases {
                let (pname, envs, min, optional) = parse_phase(spec)?;
                let mut auto = Vec::new();
                let mut manual = Vec::new();
                for (e, is_auto) in envs {
                    let id = environment_id(session, &e).await?;
                    if is_auto {
                        auto.push(id);
                    } else {
                        manual.push(id);
                    }
                }
                out.push(serde_json::json!({
                    "Name": pname,
                    "AutomaticDeploymentTargets": auto,
                    "OptionalDeploymentTargets": manual,
                    "MinimumEnvironmentsBeforePromotion": min,
                    "IsOptionalPhase": optional,
                }));
            }
            let mut body = serde_json::json!({
                "Name": name,
                "Description": description.unwrap_or_default(),
                "Phases": out,
            });
            if let Some(n) = keep_releases {
                body["ReleaseRetentionPolicy"] = serde_json::json!({
                    "Unit": "Items", "QuantityToKeep": n, "ShouldKeepForever": false});
            } else if let Some(d) = keep_release_days {
                body["ReleaseRetentionPolicy"] = serde_json::json!({
                    "Unit": "Days", "QuantityToKeep": d, "ShouldKeepForever": false});
            }
            let created = client.post_json(&api(space, "lifecycles"), &body).await?;
            if session.json() {
                return print_json(&created);
            }
            print_line(format!(
                "Created lifecycle {} ({})",
                s(&created, "Name"),
                s(&created, "Id")
            ))
        }
        LifecycleCommand::Delete { name } => {
            let l = by_name(session, "lifecycles", &name).await?;
            client
                .delete(&api(
                    space,
                    &format!("lifecycles/{}", segment(&s(&l, "Id"))),
                ))
                .await?;
            print_line(format!("Deleted lifecycle {}", s(&l, "Name")))
        }
    }
}

pub(super) async fn channel(session: &Session, command: ChannelCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        ChannelCommand::List { project } => {
            let p = client.project(space, &project).await?;
            let list = project_channels(session, &p.id).await?;
            let headers = ["ID", "NAME", "DEFAULT", "LIFECYCLE", "RULES"];
            print_list(session, &list, &headers, |c| {
                let rules: Vec<String> = arr(c, "Rules")
                    .iter()
                    .map(|r| {
                        let steps: Vec<String> = arr(r, "ActionPackages")
                            .iter()
                            .map(|a| s(a, "DeploymentAction"))
                            .collect();
                        format!(
                            "{}: {} {}",
                            steps.join("+"),
                            s(r, "VersionRange"),
                            s(r, "Tag")
                        )
                        .trim()
                        .to_owned()
                    })
                    .collect();
                let default = c.get("IsDefault").and_then(Value::as_bool) == Some(true);
                vec![
                    s(c, "Id"),
                    s(c, "Name"),
                    if default { "yes" } else { "" }.to_owned(),
                    c.get("LifecycleId")
                        .and_then(Value::as_str)
                        .unwrap_or("(project's)")
                        .to_owned(),
                    rules.join("; "),
                ]
            })
        }
        ChannelCommand::Create {
            project,
            name,
            description,
            lifecycle,
            default,
            rules,
            tenant_tags,
        } => {
            let p = client.project(space, &project).await?;
            let lifecycle_id = match lifecycle {
                Some(l) => Some(s(&by_name(session, "lifecycles", &l).await?, "Id")),
                None => None,
            };
            let mut out = Vec::new();
            for r in &rules {
                let mut parts = r.splitn(3, '|');
                let step = parts.next().unwrap_or_default().trim().to_owned();
                let range = parts.next().unwrap_or_default().trim().to_owned();
                let tag = parts.next().unwrap_or_default().trim().to_owned();
                if step.is_empty() {
                    return Err(Failure::Usage(format!(
                        "--rule '{r}' names no step: use STEP|RANGE|TAG, e.g. 'Deploy web|[1.0,2.0)|^$'"
                    )));
                }
                out.push(serde_json::json!({
                    "VersionRange": range,
                    "Tag": tag,
                    "ActionPackages": step
                        .split('+')
                        .map(|st| serde_json::json!({"DeploymentAction": st.trim(), "PackageReference": ""}))
                        .collect::<Vec<_>>(),
                }));
            }
            let body = serde_json::json!({
                "ProjectId": p.id,
                "Name": name,
                "Description": description.unwrap_or_default(),
                "LifecycleId": lifecycle_id,
                "IsDefault": default,
                "Rules": out,
                "TenantTags": tenant_tags,
            });
            let created = client.post_json(&api(space, "channels"), &body).await?;
            if session.json() {
                return print_json(&created);
            }
            print_line(format!(
                "Created channel {} ({}) of {}",
                s(&created, "Name"),
                s(&created, "Id"),
                p.name
            ))
        }
        ChannelCommand::Delete { project, name } => {
            let p = client.project(space, &project).await?;
            let list = project_channels(session, &p.id).await?;
            let Some(c) = items(&list).into_iter().find(|c| {
                s(c, "Id").eq_ignore_ascii_case(name.trim())
                    || s(c, "Name").eq_ignore_ascii_case(name.trim())
            }) else {
                return Err(Failure::Local(format!(
                    "project {} has no channel '{name}'",
                    p.name
                )));
            };
            client
                .delete(&api(space, &format!("channels/{}", segment(&s(&c, "Id")))))
                .await?;
            print_line(format!("Deleted channel {} of {}", s(&c, "Name"), p.name))
        }
    }
}

pub(super) async fn tenant(session: &Session, command: TenantCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        TenantCommand::List { project, tags } => {
            let mut query = vec!["take=1000".to_owned()];
            if let Some(p) = project {
                let p = client.project(space, &p).await?;
                query.push(format!("projectId={}", segment(&p.id)));
            }
            if !tags.is_empty() {
                query.push(format!(
                    "tags={}",
                    tags.iter()
                        .map(|t| segment(t))
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            let list = client
                .get_json(&api(space, &format!("tenants?{}", query.join("&"))))
                .await?;
            print_list(session, &list, &["ID", "NAME", "TAGS", "PROJECTS"], |t| {
                let projects = t
                    .get("ProjectEnvironments")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
                vec![
                    s(t, "Id"),
                    s(t, "Name"),
                    strings(t, "TenantTags").join(", "),
                    projects.to_string(),
                ]
            })
        }
        TenantCommand::Show { name } => {
            let t = by_name(session, "tenants", &name).await?;
            if session.json() {
                return print_json(&t);
            }
            let envs = environment_names(session).await?;
            print_line(format!("{} ({})", s(&t, "Name"), s(&t, "Id")))?;
            print_line(format!("Tags: {}", strings(&t, "TenantTags").join(", ")))?;
            let mut rows = Vec::new();
            for (pid, list) in t
                .get("ProjectEnvironments")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
            {
                let pname = client
                    .project(space, &pid)
                    .await
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|_| pid.clone());
                let names: Vec<String> = list
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|e| envs.get(e).cloned().unwrap_or_else(|| e.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                rows.push(vec![pname, names.join(", ")]);
            }
            print_table(&["PROJECT", "ENVIRONMENTS"], rows)
        }
        TenantCommand::Create {
            name,
            description,
            tags,
        } => {
            let body = serde_json::json!({
                "Name": name,
                "Description": description.unwrap_or_default(),
                "TenantTags": tags,
                "ProjectEnvironments": {},
            });
            let created = client.post_json(&api(space, "tenants"), &body).await?;
            if session.json() {
                return print_json(&created);
            }
            print_line(format!(
                "Created tenant {} ({})",
                s(&created, "Name"),
                s(&created, "Id")
            ))
        }
        TenantCommand::Connect {
            name,
            project,
            environments,
        } => {
            let mut t = by_name(session, "tenants", &name).await?;
            let p = client.project(space, &project).await?;
            let mut ids: Vec<Value> = t["ProjectEnvironments"][&p.id]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for e in &environments {
                let id = Value::String(environment_id(session, e).await?);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            if !t["ProjectEnvironments"].is_object() {
                t["ProjectEnvironments"] = serde_json::json!({});
            }
            t["ProjectEnvironments"][&p.id] = Value::Array(ids);
            let saved = client
                .put_json(
                    &api(space, &format!("tenants/{}", segment(&s(&t, "Id")))),
                    &t,
                )
                .await?;
            if session.json() {
                return print_json(&saved);
            }
            print_line(format!(
                "Connected {} to {} in {}",
                s(&saved, "Name"),
                p.name,
                environments.join(", ")
            ))
        }
        TenantCommand::Disconnect { name, project } => {
            let mut t = by_name(session, "tenants", &name).await?;
            let p = client.project(space, &project).await?;
            if let Some(m) = t["ProjectEnvironments"].as_object_mut() {
                m.remove(&p.id);
            }
            let saved = client
                .put_json(
                    &api(space, &format!("tenants/{}", segment(&s(&t, "Id")))),
                    &t,
                )
                .await?;
            if session.json() {
                return print_json(&saved);
            }
            print_line(format!(
                "Disconnected {} from {}",
                s(&saved, "Name"),
                p.name
            ))
        }
        TenantCommand::SetVariable {
            name,
            project,
            environment,
            library_set,
            template,
            value,
        } => {
            let t = by_name(session, "tenants", &name).await?;
            let tid = s(&t, "Id");
            let path = api(space, &format!("tenants/{}/variables", segment(&tid)));
            let mut vars = client.get_json(&path).await?;
            let find_template = |templates: &Value| -> Option<String> {
                templates.as_array().and_then(|a| {
                    a.iter()
                        .find(|x| s(x, "Name").eq_ignore_ascii_case(template.trim()))
                        .map(|x| s(x, "Id"))
                })
            };
            let target = match (project, library_set) {
                (Some(p), _) => {
                    let p = client.project(space, &p).await?;
                    let Some(env) = environment else {
                        return Err(Failure::Usage(
                            "a project template value needs --environment".to_owned(),
                        ));
                    };
                    let env_id = environment_id(session, &env).await?;
                    let entry = &mut vars["ProjectVariables"][&p.id];
                    let Some(tid) = find_template(&entry["Templates"]) else {
                        return Err(Failure::Local(format!(
                            "project {} has no tenant variable template '{template}' (or {} is not connected to it)",
                            p.name,
                            s(&t, "Name")
                        )));
                    };
                    if !entry["Variables"].is_object() {
                        entry["Variables"] = serde_json::json!({});
                    }
                    if !entry["Variables"][&env_id].is_object() {
                        entry["Variables"][&env_id] = serde_json::json!({});
                    }
                    entry["Variables"][&env_id][&tid] = Value::String(value);
                    format!("{} in {env}", p.name)
                }
                (None, Some(l)) => {
                    let set = by_name(session, "libraryvariablesets", &l).await?;
                    let sid = s(&set, "Id");
                    let entry = &mut vars["LibraryVariables"][&sid];
                    let Some(tid) = find_template(&entry["Templates"]) else {
                        return Err(Failure::Local(format!(
                            "library variable set {} has no common template '{template}' (or no project of {} includes it)",
                            s(&set, "Name"),
                            s(&t, "Name")
                        )));
                    };
                    if !entry["Variables"].is_object() {
                        entry["Variables"] = serde_json::json!({});
                    }
                    entry["Variables"][&tid] = Value::String(value);
                    s(&set, "Name")
                }
                (None, None) => {
                    return Err(Failure::Usage(
                        "say whose template it is: --project P --environment E, or --library-set L"
                            .to_owned(),
                    ));
                }
            };
            let saved = client.put_json(&path, &vars).await?;
            if session.json() {
                return print_json(&saved);
            }
            print_line(format!("Set {template} of {} ({target})", s(&t, "Name")))
        }
        TenantCommand::Delete { name } => {
            let t = by_name(session, "tenants", &name).await?;
            client
                .delete(&api(space, &format!("tenants/{}", segment(&s(&t, "Id")))))
                .await?;
            print_line(format!("Deleted tenant {}", s(&t, "Name")))
        }
        TenantCommand::CreateTagSet { name, tags } => {
            let body = serde_json::json!({
                "Name": name,
                "Tags": tags.iter().enumerate().map(|(i, t)| serde_json::json!({"Name": t, "SortOrder": i})).collect::<Vec<_>>(),
            });
            let created = client.post_json(&api(space, "tagsets"), &body).await?;
            if session.json() {
                return print_json(&created);
            }
            print_line(format!(
                "Created tag set {} ({}) with {}",
                s(&created, "Name"),
                s(&created, "Id"),
                tags.join(", ")
            ))
        }
        TenantCommand::TagSets => {
            let all = client.get_json(&api(space, "tagsets/all")).await?;
            print_list(session, &all, &["ID", "NAME", "TAGS"], |t| {
                let tags: Vec<String> = arr(t, "Tags")
                    .iter()
                    .map(|x| s(x, "CanonicalTagName"))
                    .collect();
                vec![s(t, "Id"), s(t, "Name"), tags.join(", ")]
            })
        }
    }
}

/// `ferry release promote`: the release most recently deployed successfully to `--from` is
/// deployed to each `--to` environment (one deployment each).
pub(super) async fn promote(session: &Session, args: PromoteArgs) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    let p = client.project(space, &args.project).await?;
    let from = environment_id(session, &args.from).await?;
    let deployments = client
        .get_json(&api(
            space,
            &format!(
                "deployments?projects={}&environments={}&take=100",
                segment(&p.id),
                segment(&from)
            ),
        ))
        .await?;
    let list = items(&deployments);
    let task_ids: Vec<String> = list.iter().map(|d| s(d, "TaskId")).collect();
    let mut release_id = None;
    if !task_ids.is_empty() {
        let tasks = client
            .get_json(&format!(
                "/api/tasks?take={}&ids={}",
                task_ids.len(),
                task_ids.join(",")
            ))
            .await?;
        let ok: Vec<String> = items(&tasks)
            .iter()
            .filter(|t| s(t, "State") == "Success")
            .map(|t| s(t, "Id"))
            .collect();
        // The list is newest first; untenanted deployments only.
        release_id = list
            .iter()
            .find(|d| ok.contains(&s(d, "TaskId")) && d.get("TenantId").is_none_or(Value::is_null))
            .map(|d| s(d, "ReleaseId"));
    }
    let Some(release_id) = release_id else {
        return Err(Failure::Local(format!(
            "{} has no successful deployment to {} to promote",
            p.name, args.from
        )));
    };
    let release = client
        .get_json(&api(space, &format!("releases/{}", segment(&release_id))))
        .await?;
    let version = s(&release, "Version");
    let created = client
        .deploy_release(
            space,
            &DeployRelease {
                project_name: p.id.clone(),
                release_version: version.clone(),
                environment_names: args.to.clone(),
                variables: args.variables.into_iter().collect(),
                ..DeployRelease::default()
            },
        )
        .await?;
    let tasks: Vec<String> = created
        .deployment_server_tasks
        .iter()
        .map(|t| t.server_task_id.clone())
        .collect();
    if session.json() && !args.wait {
        return print_json(&created.json);
    }
    if !session.json() {
        print_line(format!(
            "Promoting {} {version} from {} to {}: {}",
            p.name,
            args.from,
            args.to.join(", "),
            tasks.join(", ")
        ))?;
    }
    if args.wait {
        return wait_for_tasks(session, &tasks, args.timeout, true).await;
    }
    Ok(())
}

/// `ferry release prevent-progression` (with a reason) and `allow-progression` (without).
pub(super) async fn progression(
    session: &Session,
    project: &str,
    version: &str,
    reason: Option<String>,
) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    let p = client.project(space, project).await?;
    let release = client
        .get_json(&api(
            space,
            &format!(
                "projects/{}/releases/{}",
                segment(&p.id),
                segment(version.trim())
            ),
        ))
        .await?;
    let id = s(&release, "Id");
    let (path, body, done) = match &reason {
        Some(r) => (
            format!("releases/{}/defects", segment(&id)),
            serde_json::json!({"Description": r}),
            "may not progress any further",
        ),
        None => (
            format!("releases/{}/defects/resolve", segment(&id)),
            serde_json::json!({}),
            "may progress again",
        ),
    };
    let answer = client.post_json(&api(space, &path), &body).await?;
    if session.json() {
        return print_json(&answer);
    }
    print_line(format!(
        "Release {} of {} {done}",
        s(&release, "Version"),
        p.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_specs() {
        let (n, e, min, opt) = parse_phase("QA=QA1, auto:QA2;min=1").unwrap_or_default();
        assert_eq!(n, "QA");
        assert_eq!(e, vec![("QA1".to_owned(), false), ("QA2".to_owned(), true)]);
        assert_eq!((min, opt), (1, false));
        let (n, e, _, opt) = parse_phase("Rest;optional").unwrap_or_default();
        assert_eq!((n.as_str(), e.len(), opt), ("Rest", 0, true));
        assert!(parse_phase("=Dev").is_err());
        assert!(parse_phase("Dev=Dev;min=x").is_err());
        assert!(parse_phase("Dev=Dev;sometimes").is_err());
    }
}
