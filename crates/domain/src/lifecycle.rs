//! Lifecycle progression: which environments a release may be deployed to, given the phases of
//! its lifecycle and where it has already been deployed successfully.
//!
//! Rules (Octopus's):
//! - A lifecycle with no phases has one required phase per environment, in environment order.
//! - A phase that names no environments covers every environment not named in an earlier phase.
//! - A phase is complete when it is optional, or when at least `MinimumEnvironmentsBeforePromotion`
//!   of its environments have a successful deployment (0 means all of them).
//! - A release may be deployed to an environment of phase *k* once every phase before *k* is
//!   complete; an environment it was already deployed to stays allowed (redeploy).

use std::collections::HashSet;

use crate::model::Phase;

/// An environment as the lifecycle rules need it.
#[derive(Clone, Debug)]
pub struct EnvRef {
    pub id: String,
    pub name: String,
}

/// A phase with its environments resolved.
#[derive(Clone, Debug)]
pub struct EffectivePhase {
    pub name: String,
    pub automatic: Vec<String>,
    pub environments: Vec<String>,
    pub minimum: usize,
    pub optional: bool,
}

/// Resolves phases against the space's environments (`envs` in sort order).
pub fn effective_phases(phases: &[Phase], envs: &[EnvRef]) -> Vec<EffectivePhase> {
    if phases.is_empty() {
        return envs
            .iter()
            .map(|e| EffectivePhase {
                name: e.name.clone(),
                automatic: Vec::new(),
                environments: vec![e.id.clone()],
                minimum: 0,
                optional: false,
            })
            .collect();
    }
    let mut named_earlier: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(phases.len());
    for p in phases {
        let mut list: Vec<String> = Vec::new();
        for id in p
            .automatic_deployment_targets
            .iter()
            .chain(p.optional_deployment_targets.iter())
        {
            if !list.contains(id) {
                list.push(id.clone());
            }
        }
        if list.is_empty() {
            list = envs
                .iter()
                .filter(|e| !named_earlier.contains(&e.id))
                .map(|e| e.id.clone())
                .collect();
        }
        named_earlier.extend(list.iter().cloned());
        out.push(EffectivePhase {
            name: p.name.clone(),
            automatic: p.automatic_deployment_targets.clone(),
            environments: list,
            minimum: usize::try_from(p.minimum_environments_before_promotion.max(0)).unwrap_or(0),
            optional: p.is_optional_phase,
        });
    }
    out
}

impl EffectivePhase {
    /// Whether the phase lets the release move on.
    pub fn is_complete(&self, succeeded: &HashSet<String>) -> bool {
        if self.optional {
            return true;
        }
        let done = self
            .environments
            .iter()
            .filter(|e| succeeded.contains(*e))
            .count();
        if self.minimum == 0 {
            done == self.environments.len()
        } else {
            done >= self.minimum.min(self.environments.len())
        }
    }
}

/// Why a deployment to an environment is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The environment is in no phase of the lifecycle.
    NotInLifecycle,
    /// The environment's phase is not reached: the named phase must complete first.
    PhaseIncomplete {
        phase: String,
        remaining: Vec<String>,
    },
}

/// Checks whether a release may be deployed to `env_id`.
///
/// `succeeded` holds the environments where this release has a successful deployment; `deployed`
/// those where it has any deployment (a redeploy is always allowed).
pub fn check_deploy(
    phases: &[EffectivePhase],
    succeeded: &HashSet<String>,
    deployed: &HashSet<String>,
    env_id: &str,
) -> Result<(), Refusal> {
    if deployed.contains(env_id) {
        return Ok(());
    }
    let mut first_block: Option<&EffectivePhase> = None;
    let mut in_lifecycle = false;
    for phase in phases {
        if phase.environments.iter().any(|e| e == env_id) {
            in_lifecycle = true;
            if first_block.is_none() {
                return Ok(());
            }
        }
        if first_block.is_none() && !phase.is_complete(succeeded) {
            first_block = Some(phase);
        }
    }
    match (in_lifecycle, first_block) {
        (false, _) => Err(Refusal::NotInLifecycle),
        (true, Some(p)) => Err(Refusal::PhaseIncomplete {
            phase: p.name.clone(),
            remaining: p
                .environments
                .iter()
                .filter(|e| !succeeded.contains(*e))
                .cloned()
                .collect(),
        }),
        (true, None) => Ok(()),
    }
}

/// The environments a release may be deployed to now, in phase order.
pub fn allowed_environments(
    phases: &[EffectivePhase],
    succeeded: &HashSet<String>,
    deployed: &HashSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for phase in phases {
        for e in &phase.environments {
            if !out.contains(e) && check_deploy(phases, succeeded, deployed, e).is_ok() {
                out.push(e.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> Vec<EnvRef> {
        ["Dev", "Test", "Prod"]
            .iter()
            .enumerate()
            .map(|(i, n)| EnvRef {
                id: format!("Environments-{}", i + 1),
                name: (*n).to_string(),
            })
            .collect()
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn default_lifecycle_goes_in_environment_order() {
        let phases = effective_phases(&[], &envs());
        assert_eq!(phases.len(), 3);
        let none = set(&[]);
        assert!(check_deploy(&phases, &none, &none, "Environments-1").is_ok());
        assert_eq!(
            check_deploy(&phases, &none, &none, "Environments-2"),
            Err(Refusal::PhaseIncomplete {
                phase: "Dev".to_string(),
                remaining: vec!["Environments-1".to_string()]
            })
        );
        let dev = set(&["Environments-1"]);
        assert!(check_deploy(&phases, &dev, &dev, "Environments-2").is_ok());
        assert!(check_deploy(&phases, &dev, &dev, "Environments-3").is_err());
        assert_eq!(
            check_deploy(&phases, &dev, &dev, "Environments-9"),
            Err(Refusal::NotInLifecycle)
        );
        assert_eq!(
            allowed_environments(&phases, &dev, &dev),
            vec!["Environments-1".to_string(), "Environments-2".to_string()]
        );
    }

    #[test]
    fn failed_deployment_can_be_redeployed_but_does_not_promote() {
        let phases = effective_phases(&[], &envs());
        let succeeded = set(&[]);
        let deployed = set(&["Environments-1"]);
        assert!(check_deploy(&phases, &succeeded, &deployed, "Environments-1").is_ok());
        assert!(check_deploy(&phases, &succeeded, &deployed, "Environments-2").is_err());
    }

    #[test]
    fn optional_and_minimum_and_catch_all_phases() {
        let phases = vec![
            Phase {
                name: "Dev".into(),
                optional_deployment_targets: vec!["Environments-1".into()],
                is_optional_phase: true,
                ..Phase::default()
            },
            Phase {
                name: "QA".into(),
                optional_deployment_targets: vec!["Environments-2".into(), "Environments-4".into()],
                minimum_environments_before_promotion: 1,
                ..Phase::default()
            },
            Phase {
                name: "Rest".into(),
                ..Phase::default()
            },
        ];
        let mut all = envs();
        all.push(EnvRef {
            id: "Environments-4".into(),
            name: "QA2".into(),
        });
        let eff = effective_phases(&phases, &all);
        assert_eq!(eff[2].environments, vec!["Environments-3".to_string()]);
        let none = set(&[]);
        assert!(check_deploy(&eff, &none, &none, "Environments-2").is_ok());
        assert!(check_deploy(&eff, &none, &none, "Environments-3").is_err());
        let one = set(&["Environments-4"]);
        assert!(check_deploy(&eff, &one, &one, "Environments-3").is_ok());
    }
}
