//! The manual intervention step (`Octopus.Manual`): the deployment waits until a user takes
//! responsibility and proceeds or aborts, with notes. It runs on the server (no target).
//!
//! Properties (Octopus's): `Octopus.Action.Manual.Instructions` (variables substituted),
//! `Octopus.Action.Manual.ResponsibleTeamIds` (comma-separated), and
//! `Octopus.Action.Manual.BlockConcurrentDeployments` (accepted; Ferry's per-target mutex does
//! not apply to a step with no target). Output variables:
//! `Octopus.Action[S].Output.Manual.Notes`, `.Approved` (`True`/`False`),
//! `.ResponsibleUser.Id|Username|DisplayName|EmailAddress`.

use ferry_domain::interruption::Interruption;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::interruptions::{Answer, Ask, raise, wait};
use crate::log::{Activity, TaskLogger};

/// What the step ends with.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Proceeded: the output variables (name relative to `Octopus.Action[S].Output.`, value).
    Proceeded(Vec<(String, String)>),
    /// Aborted: the failure message, and the output variables.
    Aborted(String, Vec<(String, String)>),
    /// The task was cancelled while waiting.
    Withdrawn,
}

/// Everything the step needs from the deployment.
pub struct Manual<'a> {
    pub ex: &'a Executor,
    pub logger: &'a TaskLogger,
    pub activity: &'a Activity,
    pub space_id: &'a str,
    pub task_id: &'a str,
    pub step_name: &'a str,
    /// Instructions with variables already substituted.
    pub instructions: String,
    pub responsible_team_ids: Vec<String>,
    /// Deployment, project, environment, release (and tenant) ids.
    pub related: Vec<String>,
    pub cancel: &'a CancellationToken,
}

fn outputs(
    approved: bool,
    notes: &str,
    by: &ferry_domain::interruption::Responder,
) -> Vec<(String, String)> {
    vec![
        ("Manual.Notes".to_string(), notes.to_string()),
        (
            "Manual.Approved".to_string(),
            if approved { "True" } else { "False" }.to_string(),
        ),
        ("Manual.ResponsibleUser.Id".to_string(), by.id.clone()),
        (
            "Manual.ResponsibleUser.Username".to_string(),
            by.username.clone(),
        ),
        (
            "Manual.ResponsibleUser.DisplayName".to_string(),
            by.display_name.clone(),
        ),
        (
            "Manual.ResponsibleUser.EmailAddress".to_string(),
            by.email_address.clone(),
        ),
    ]
}

pub async fn run(m: Manual<'_>) -> Result<Outcome, String> {
    let ask = Ask {
        space_id: m.space_id.to_string(),
        task_id: m.task_id.to_string(),
        correlation_id: m.activity.id.clone(),
        kind: "ManualIntervention".to_string(),
        title: format!("Manual intervention: {}", m.step_name),
        instructions: Some(m.instructions.clone()).filter(|s| !s.trim().is_empty()),
        choices: Interruption::manual_choices(),
        responsible_team_ids: m.responsible_team_ids.clone(),
        related_document_ids: m.related.clone(),
    };
    let id = raise(m.ex, &ask).await?;
    m.logger.info(
        m.activity,
        &format!(
            "Waiting for manual intervention ({id}): someone must take responsibility, then proceed or abort"
        ),
    );
    if !m.instructions.trim().is_empty() {
        m.logger.info(
            m.activity,
            &format!("Instructions: {}", m.instructions.trim()),
        );
    }
    match wait(m.ex, &id, m.cancel).await? {
        Answer::Withdrawn => Ok(Outcome::Withdrawn),
        Answer::Submitted { result, notes, by } => {
            let who = if by.display_name.is_empty() {
                by.username.clone()
            } else {
                by.display_name.clone()
            };
            let with_notes = if notes.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", notes.trim())
            };
            if result.eq_ignore_ascii_case("Proceed") {
                m.logger
                    .info(m.activity, &format!("{who} chose to proceed{with_notes}"));
                Ok(Outcome::Proceeded(outputs(true, &notes, &by)))
            } else {
                let msg = format!("The manual intervention was aborted by {who}{with_notes}");
                Ok(Outcome::Aborted(msg, outputs(false, &notes, &by)))
            }
        }
    }
}
