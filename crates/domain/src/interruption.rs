//! Interruptions: a running deployment waiting for a person — a manual intervention step
//! (`Octopus.Manual`) or, later, guided failure. The executor writes one when it starts
//! waiting; the API lets a user take responsibility and submit a result; the executor reads
//! the result and goes on.

use serde::{Deserialize, Serialize};

/// Collection name of interruption documents. `ref1` holds the task id and `ref2` is
/// [`PENDING`] while the interruption waits for an answer (so pending ones are found by index).
pub const COLLECTION: &str = "Interruptions";
pub const PENDING: &str = "pending";

/// A choice offered to the user.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Choice {
    pub value: String,
    pub text: String,
    pub requires_confirmation: bool,
}

/// Who answered (or holds responsibility for) an interruption.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Responder {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email_address: String,
}

/// The stored interruption.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interruption {
    pub id: String,
    pub space_id: String,
    pub title: String,
    /// `ManualIntervention` or `GuidedFailure`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub created: String,
    pub is_pending: bool,
    pub task_id: String,
    /// The log activity the interruption belongs to.
    pub correlation_id: String,
    pub related_document_ids: Vec<String>,
    pub instructions: Option<String>,
    pub choices: Vec<Choice>,
    pub responsible_team_ids: Vec<String>,
    /// Who has taken responsibility (only they may submit).
    pub responsible: Option<Responder>,
    /// The submitted answer: one of the choices' values.
    pub result: Option<String>,
    pub notes: Option<String>,
    pub submitted_by: Option<Responder>,
    pub submitted: Option<String>,
    /// Set when the task ended (canceled, failed) before anyone answered.
    pub cancelled: bool,
}

impl Interruption {
    /// The manual intervention choices (Octopus's buttons).
    pub fn manual_choices() -> Vec<Choice> {
        vec![
            Choice {
                value: "Proceed".into(),
                text: "Proceed".into(),
                requires_confirmation: false,
            },
            Choice {
                value: "Abort".into(),
                text: "Abort".into(),
                requires_confirmation: true,
            },
        ]
    }

    /// The choice matching `value` (case-insensitively), if offered.
    pub fn choice(&self, value: &str) -> Option<&Choice> {
        self.choices
            .iter()
            .find(|c| c.value.eq_ignore_ascii_case(value.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_match_ignoring_case() {
        let i = Interruption {
            choices: Interruption::manual_choices(),
            ..Interruption::default()
        };
        assert_eq!(
            i.choice(" proceed ").map(|c| c.value.as_str()),
            Some("Proceed")
        );
        assert!(i.choice("Retry").is_none());
        let v = serde_json::to_value(&i).unwrap_or_default();
        assert_eq!(v["Type"], "");
        assert_eq!(v["Choices"][1]["RequiresConfirmation"], true);
    }
}
