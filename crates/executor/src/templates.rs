//! Step templates at deploy time: an action that names a template (`Octopus.Action.Template.Id`
//! and `.Version`) runs the pinned version's properties, and each template parameter becomes a
//! variable named by the parameter: the action's value, else the parameter's default. Values
//! may hold `#{…}` (evaluated with the other variables); a Sensitive parameter's value is
//! sensitive and masked in the log. See `docs/step-templates.md`.

use ferry_domain::DeploymentAction;
use ferry_domain::action_template::{self as at, ActionTemplate, version_doc_id};

use crate::Executor;
use crate::log::Masker;
use crate::variables::Dictionary;

/// The stored copy of a template version (`ActionTemplateVersions`).
async fn load_version(
    ex: &Executor,
    space: &str,
    id: &str,
    version: Option<i64>,
) -> Result<ActionTemplate, String> {
    let version = match version {
        Some(v) => v,
        None => {
            // Not pinned: the latest version.
            let d = ex
                .db
                .get_doc(id)
                .await
                .map_err(|e| format!("the step template {id} could not be read: {e}"))?;
            match d {
                Some(d) if d.collection == "ActionTemplates" && d.space_id == space => {
                    let t: ActionTemplate = serde_json::from_str(&d.body)
                        .map_err(|e| format!("the step template {id} is unreadable: {e}"))?;
                    t.version
                }
                _ => return Err(format!("the step template {id} does not exist")),
            }
        }
    };
    let doc_id = version_doc_id(id, version);
    match ex.db.get_doc(&doc_id).await {
        Ok(Some(d)) if d.collection == "ActionTemplateVersions" && d.space_id == space => {
            serde_json::from_str(&d.body)
                .map_err(|e| format!("the step template {id} is unreadable: {e}"))
        }
        Ok(_) => Err(format!(
            "version {version} of the step template {id} does not exist"
        )),
        Err(e) => Err(format!("the step template {id} could not be read: {e}")),
    }
}

/// The action as it runs and its variables, when it uses a step template; `None` otherwise.
pub(crate) async fn expand(
    ex: &Executor,
    space: &str,
    action: &DeploymentAction,
    dict: &Dictionary,
    masker: &Masker,
) -> Result<Option<(DeploymentAction, Dictionary)>, String> {
    let Some((id, version)) = at::action_template_ref(action)? else {
        return Ok(None);
    };
    let t = load_version(ex, space, &id, version).await?;
    let run = at::apply(&t, action);
    let mut d = dict.clone();
    let opts = crate::deploy::template_options();
    for (name, value, sensitive) in at::parameter_variables(&t, action) {
        let value = match value.strip_prefix(at::SEALED_PREFIX) {
            Some(sealed) => ferry_crypto::open(
                &ex.cfg.master_key,
                &at::parameter_aad(&t.id, &name),
                sealed,
            )
            .map_err(|e| {
                format!("the sensitive value of the step template parameter '{name}' could not be opened: {e}")
            })?,
            None => value,
        };
        if sensitive && !value.is_empty() {
            let shown = if value.contains("#{") {
                ferry_template::render(&value, dict, &opts)
                    .map(|r| r.text)
                    .unwrap_or_else(|_| value.clone())
            } else {
                value.clone()
            };
            masker.add(&shown);
        }
        let sensitive = sensitive || d.is_sensitive(&name);
        d.set_with(&name, value, sensitive);
    }
    Ok(Some((run, d)))
}
