//! Step template commands: `ferry step-template import|list|show` and
//! `ferry process add-template`. They speak the Octopus-shaped JSON of
//! `/api/{space}/actiontemplates` directly (see `docs/step-templates.md`).

use super::*;
use serde_json::json;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum StepTemplateCommand {
    /// Import a step template from a community library JSON file (a new template; prints its
    /// name, id and version)
    Import {
        /// The template file ("-" reads standard input)
        file: PathBuf,
    },
    /// List the space's step templates
    List,
    /// Show a step template with its parameters
    Show {
        /// Step template, by name or id
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct AddTemplateArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Name of the new step
    #[arg(long)]
    name: String,
    /// Step template, by name or id
    #[arg(long)]
    template: String,
    /// A parameter value NAME=VALUE (repeatable); parameters not given use their default
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run on deployment targets with this role (repeatable); without it the step runs
    /// on the server
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn api_path(space: &str, rest: &str) -> String {
    format!("/api/{}/{rest}", segment(space))
}

fn read_file(path: &Path) -> Result<String, Failure> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        io::Read::read_to_string(&mut io::stdin(), &mut s)
            .map_err(|e| Failure::Local(format!("standard input could not be read: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Local(format!("{} could not be read: {e}", path.display())))
}

async fn template_by_name(session: &Session, key: &str) -> Result<Value, Failure> {
    Ok(session
        .client
        .get_json(&api_path(
            &session.space_id,
            &format!("actiontemplates/{}", segment(key.trim())),
        ))
        .await?)
}

pub(super) async fn step_template(
    session: &Session,
    command: StepTemplateCommand,
) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        StepTemplateCommand::Import { file } => {
            let raw = read_file(&file)?;
            let body: Value = serde_json::from_str(&raw).map_err(|e| {
                Failure::Local(format!("{} is not valid JSON: {e}", file.display()))
            })?;
            let created = client
                .post_json(&api_path(space, "actiontemplates"), &body)
                .await?;
            if session.json() {
                return print_json(&created);
            }
            print_line(format!(
                "Imported the step template '{}' as {} (version {})",
                text(&created, "Name"),
                text(&created, "Id"),
                text(&created, "Version")
            ))
        }
        StepTemplateCommand::List => {
            let all = client
                .get_json(&api_path(space, "actiontemplates/all"))
                .await?;
            if session.json() {
                return print_json(&all);
            }
            let rows = all
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        text(t, "Id"),
                        text(t, "Name"),
                        text(t, "Version"),
                        text(t, "ActionType"),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "VERSION", "TYPE"], rows)
        }
        StepTemplateCommand::Show { name } => {
            let t = template_by_name(session, &name).await?;
            if session.json() {
                return print_json(&t);
            }
            print_line(format!(
                "{} ({}, version {}): {}",
                text(&t, "Name"),
                text(&t, "Id"),
                text(&t, "Version"),
                text(&t, "ActionType")
            ))?;
            let rows = t
                .get("Parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        text(p, "Name"),
                        text(p, "Label"),
                        p.get("DisplaySettings")
                            .map(|d| text(d, "Octopus.ControlType"))
                            .unwrap_or_default(),
                        text(p, "DefaultValue"),
                    ]
                })
                .collect();
            print_table(&["PARAMETER", "LABEL", "CONTROL", "DEFAULT"], rows)
        }
    }
}

/// `ferry process add-template`: appends a step using the template's latest version, with the
/// template's properties copied (as Octopus stores them) and the given parameter values.
pub(super) async fn add_template(session: &Session, args: AddTemplateArgs) -> Result<(), Failure> {
    let t = template_by_name(session, &args.template).await?;
    let mut props = serde_json::Map::new();
    if let Some(p) = t.get("Properties").and_then(Value::as_object) {
        props.extend(p.clone());
    }
    props.insert("Octopus.Action.Template.Id".into(), json!(text(&t, "Id")));
    props.insert(
        "Octopus.Action.Template.Version".into(),
        json!(text(&t, "Version")),
    );
    props.insert(
        "Octopus.Action.RunOnServer".into(),
        json!(if args.roles.is_empty() {
            "true"
        } else {
            "false"
        }),
    );
    let names: Vec<String> = t
        .get("Parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(|p| text(p, "Name")).collect())
        .unwrap_or_default();
    for param in &args.params {
        let Some((name, value)) = param.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--param '{param}' is not NAME=VALUE"
            )));
        };
        let Some(known) = names.iter().find(|n| n.eq_ignore_ascii_case(name.trim())) else {
            return Err(Failure::Usage(format!(
                "the step template '{}' has no parameter '{}' (parameters: {})",
                text(&t, "Name"),
                name.trim(),
                names.join(", ")
            )));
        };
        props.insert(known.clone(), json!(value));
    }
    let mut step_props = serde_json::Map::new();
    if !args.roles.is_empty() {
        step_props.insert(
            "Octopus.Action.TargetRoles".into(),
            json!(args.roles.join(",")),
        );
    }
    let step = json!({
        "Name": args.name,
        "Condition": "Success",
        "StartTrigger": "StartAfterPrevious",
        "PackageRequirement": "LetOctopusDecide",
        "Properties": step_props,
        "Actions": [{
            "Name": args.name,
            "ActionType": text(&t, "ActionType"),
            "IsDisabled": false,
            "IsRequired": false,
            "Packages": [],
            "Properties": props,
        }],
    });
    let (project, saved) = append_step_to(session, &args.project, step).await?;
    if session.json() {
        return print_json(&saved);
    }
    print_line(format!(
        "Added the step '{}' to {} using the step template '{}' (version {})",
        args.name,
        project.name,
        text(&t, "Name"),
        text(&t, "Version")
    ))
}
