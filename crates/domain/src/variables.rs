//! Variable scoping and resolution.
//!
//! Each variable name can have many values, each with a scope over environments, roles,
//! targets (machines), steps/actions, channels, tenants, tenant tags and processes. A value
//! applies when every dimension it names contains the deployment's value for that dimension
//! (OR within a dimension, AND across). Among the values that apply, the most specific wins, by
//! Octopus's ranking of dimensions (most to least specific):
//!
//! the current step/action; the current machine; roles of the machine that the step also
//! targets; roles of the machine; tenant; tenant tag; environment; channel; process; then
//! project values before library set values; then unscoped.
//!
//! Dimensions compare lexicographically in that order: a value scoped to a role beats one
//! scoped to environment and channel. Octopus leaves full ties undefined; Ferry breaks them
//! deterministically: project values beat library variable set values, library sets in the
//! order the project includes them, and within one set the value listed first wins.

use std::collections::HashMap;

use crate::model::{Variable, VariableScope};

/// The deployment context a value is resolved for.
#[derive(Clone, Debug, Default)]
pub struct ScopeContext {
    pub environment: Option<String>,
    pub machine: Option<String>,
    pub machine_roles: Vec<String>,
    /// Roles the current step targets.
    pub step_roles: Vec<String>,
    /// The current action's id and its step's id (either may be named in `Scope.Action`).
    pub action: Option<String>,
    pub step: Option<String>,
    pub channel: Option<String>,
    pub tenant: Option<String>,
    pub tenant_tags: Vec<String>,
    /// The process: the project's id for its deployment process, or a runbook id.
    pub process_owner: Option<String>,
}

/// A set of variables with where it comes from.
#[derive(Clone, Debug)]
pub struct SourceSet<'a> {
    /// The variable set's owner (project or library variable set id).
    pub owner: &'a str,
    /// A display name ("project" or the library set's name).
    pub label: &'a str,
    pub variables: &'a [Variable],
}

/// The dimensions, in rank order, with the bit each sets in a specificity key.
pub const DIMENSIONS: [&str; 9] = [
    "Action",
    "Machine",
    "Role targeted by the step",
    "Role",
    "Tenant",
    "TenantTag",
    "Environment",
    "Channel",
    "ProcessOwner",
];

/// Why a value does or does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applies {
    /// It applies; the dimensions that matched (by `DIMENSIONS` name).
    Yes(Vec<&'static str>),
    /// It does not: the first dimension whose list misses the context's value.
    No(&'static str),
}

fn contains(list: &[String], v: &Option<String>) -> bool {
    v.as_ref().is_some_and(|v| list.iter().any(|x| x == v))
}

fn any_in(list: &[String], vs: &[String]) -> bool {
    vs.iter().any(|v| list.iter().any(|x| x == v))
}

/// Whether a scope applies in a context, and its specificity bits (higher is more specific).
pub fn applies(scope: &VariableScope, ctx: &ScopeContext) -> (Applies, u16) {
    let mut bits: u16 = 0;
    let mut matched = Vec::new();
    let mut set = |i: usize, matched: &mut Vec<&'static str>| {
        bits |= 1 << (DIMENSIONS.len() - 1 - i);
        matched.push(DIMENSIONS[i]);
    };
    if !scope.action.is_empty() {
        if contains(&scope.action, &ctx.action) || contains(&scope.action, &ctx.step) {
            set(0, &mut matched);
        } else {
            return (Applies::No("Action"), 0);
        }
    }
    if !scope.machine.is_empty() {
        if contains(&scope.machine, &ctx.machine) {
            set(1, &mut matched);
        } else {
            return (Applies::No("Machine"), 0);
        }
    }
    if !scope.role.is_empty() {
        if !any_in(&scope.role, &ctx.machine_roles) {
            return (Applies::No("Role"), 0);
        }
        let targeted = scope
            .role
            .iter()
            .any(|r| ctx.machine_roles.contains(r) && ctx.step_roles.contains(r));
        set(if targeted { 2 } else { 3 }, &mut matched);
    }
    if !scope.tenant.is_empty() {
        if contains(&scope.tenant, &ctx.tenant) {
            set(4, &mut matched);
        } else {
            return (Applies::No("Tenant"), 0);
        }
    }
    if !scope.tenant_tag.is_empty() {
        if any_in(&scope.tenant_tag, &ctx.tenant_tags) {
            set(5, &mut matched);
        } else {
            return (Applies::No("TenantTag"), 0);
        }
    }
    if !scope.environment.is_empty() {
        if contains(&scope.environment, &ctx.environment) {
            set(6, &mut matched);
        } else {
            return (Applies::No("Environment"), 0);
        }
    }
    if !scope.channel.is_empty() {
        if contains(&scope.channel, &ctx.channel) {
            set(7, &mut matched);
        } else {
            return (Applies::No("Channel"), 0);
        }
    }
    if !scope.process_owner.is_empty() {
        if contains(&scope.process_owner, &ctx.process_owner) {
            set(8, &mut matched);
        } else {
            return (Applies::No("ProcessOwner"), 0);
        }
    }
    (Applies::Yes(matched), bits)
}

/// One candidate value of a name.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    set: usize,
    position: usize,
}

/// Variables indexed by name, built once per deployment and resolved per context.
#[derive(Clone, Debug)]
pub struct VariableIndex<'a> {
    sets: Vec<SourceSet<'a>>,
    /// Lower-cased name → candidates in tie-break order.
    names: Vec<(String, Vec<Candidate>)>,
}

/// A resolved value.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved<'a> {
    /// The name as the winning value spells it.
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub sensitive: bool,
    pub variable: &'a Variable,
    /// The owner of the set it came from.
    pub owner: &'a str,
    pub source: &'a str,
    /// The dimensions that made it specific.
    pub matched: Vec<&'static str>,
}

/// A value and why it did or did not win (for the explain endpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct Explained<'a> {
    pub variable: &'a Variable,
    pub source: &'a str,
    pub applies: Applies,
    pub won: bool,
    pub reason: String,
}

impl<'a> VariableIndex<'a> {
    /// `sets[0]` should be the project's set; library sets follow in inclusion order.
    pub fn new(sets: Vec<SourceSet<'a>>) -> Self {
        let mut map: HashMap<String, usize> = HashMap::new();
        let mut names: Vec<(String, Vec<Candidate>)> = Vec::new();
        for (si, s) in sets.iter().enumerate() {
            for (pi, v) in s.variables.iter().enumerate() {
                let key = v.name.to_lowercase();
                let idx = *map.entry(key.clone()).or_insert_with(|| {
                    names.push((key, Vec::new()));
                    names.len() - 1
                });
                names[idx].1.push(Candidate {
                    set: si,
                    position: pi,
                });
            }
        }
        VariableIndex { sets, names }
    }

    fn var(&self, c: Candidate) -> &'a Variable {
        &self.sets[c.set].variables[c.position]
    }

    /// The winning value of every name that has one in this context.
    pub fn resolve(&self, ctx: &ScopeContext) -> Vec<Resolved<'a>> {
        let mut out = Vec::with_capacity(self.names.len());
        for (_, cands) in &self.names {
            if let Some((c, matched)) = self.winner(cands, ctx) {
                let v = self.var(c);
                out.push(Resolved {
                    name: &v.name,
                    value: v.value.as_deref(),
                    sensitive: v.is_sensitive,
                    variable: v,
                    owner: self.sets[c.set].owner,
                    source: self.sets[c.set].label,
                    matched,
                });
            }
        }
        out
    }

    fn winner(
        &self,
        cands: &[Candidate],
        ctx: &ScopeContext,
    ) -> Option<(Candidate, Vec<&'static str>)> {
        let mut best: Option<(u16, Candidate, Vec<&'static str>)> = None;
        for &c in cands {
            if let (Applies::Yes(m), bits) = applies(&self.var(c).scope, ctx) {
                // Candidates come in tie-break order, so only a strictly higher score replaces.
                if best.as_ref().is_none_or(|(b, _, _)| bits > *b) {
                    best = Some((bits, c, m));
                }
            }
        }
        best.map(|(_, c, m)| (c, m))
    }

    /// Every value of every name, with whether it applies and why the winner won.
    pub fn explain(&self, ctx: &ScopeContext) -> Vec<(String, Vec<Explained<'a>>)> {
        let mut out = Vec::with_capacity(self.names.len());
        for (_, cands) in &self.names {
            let win = self.winner(cands, ctx).map(|(c, _)| c);
            let mut list = Vec::with_capacity(cands.len());
            let win_bits = win.map(|w| applies(&self.var(w).scope, ctx).1).unwrap_or(0);
            for &c in cands {
                let v = self.var(c);
                let (a, bits) = applies(&v.scope, ctx);
                let won = win.is_some_and(|w| w.set == c.set && w.position == c.position);
                let reason = match (&a, won) {
                    (Applies::No(dim), _) => {
                        format!(
                            "does not apply: its {dim} scope does not include this deployment's {}",
                            dim.to_lowercase()
                        )
                    }
                    (Applies::Yes(m), true) => {
                        let others = cands
                            .iter()
                            .filter(|o| {
                                matches!(applies(&self.var(**o).scope, ctx).0, Applies::Yes(_))
                            })
                            .count();
                        if m.is_empty() {
                            format!(
                                "wins: an unscoped value from the {}{}",
                                self.sets[c.set].label,
                                if others > 1 {
                                    " (no scoped value applies)"
                                } else {
                                    ""
                                }
                            )
                        } else {
                            format!(
                                "wins: the most specific value that applies (scoped to {})",
                                m.join(", ")
                            )
                        }
                    }
                    (Applies::Yes(_), false) => {
                        if bits == win_bits {
                            "applies, but ties with the winner, which comes first (project values before library sets, then the order listed)".to_string()
                        } else {
                            "applies, but a more specific value wins".to_string()
                        }
                    }
                };
                list.push(Explained {
                    variable: v,
                    source: self.sets[c.set].label,
                    applies: a,
                    won,
                    reason,
                });
            }
            let name = win
                .map(|w| self.var(w).name.clone())
                .or_else(|| cands.first().map(|c| self.var(*c).name.clone()))
                .unwrap_or_default();
            out.push((name, list));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str, scope: VariableScope) -> Variable {
        Variable {
            id: format!("{name}-{value}"),
            name: name.into(),
            value: Some(value.into()),
            scope,
            ..Variable::default()
        }
    }

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|x| (*x).to_string()).collect()
    }

    fn ctx() -> ScopeContext {
        ScopeContext {
            environment: Some("Env-Prod".into()),
            machine: Some("M-1".into()),
            machine_roles: s(&["web", "db"]),
            step_roles: s(&["web"]),
            action: Some("A-1".into()),
            step: Some("S-1".into()),
            channel: Some("C-1".into()),
            tenant: Some("T-1".into()),
            tenant_tags: s(&["Region/East"]),
            process_owner: Some("Projects-1".into()),
        }
    }

    fn resolve_one(
        project: &[Variable],
        library: &[Variable],
        c: &ScopeContext,
        name: &str,
    ) -> Option<String> {
        let idx = VariableIndex::new(vec![
            SourceSet {
                owner: "Projects-1",
                label: "project",
                variables: project,
            },
            SourceSet {
                owner: "LibraryVariableSets-1",
                label: "Common",
                variables: library,
            },
        ]);
        idx.resolve(c)
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .and_then(|r| r.value.map(str::to_string))
    }

    #[test]
    fn each_dimension_filters() {
        let c = ctx();
        let cases: Vec<(VariableScope, bool)> = vec![
            (
                VariableScope {
                    environment: s(&["Env-Prod"]),
                    ..Default::default()
                },
                true,
            ),
            (
                VariableScope {
                    environment: s(&["Env-Test"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    environment: s(&["Env-Test", "Env-Prod"]),
                    ..Default::default()
                },
                true,
            ),
            (
                VariableScope {
                    role: s(&["db"]),
                    ..Default::default()
                },
                true,
            ),
            (
                VariableScope {
                    role: s(&["cache"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    machine: s(&["M-2"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    action: s(&["S-1"]),
                    ..Default::default()
                },
                true,
            ),
            (
                VariableScope {
                    action: s(&["A-2"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    channel: s(&["C-2"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    tenant: s(&["T-1"]),
                    ..Default::default()
                },
                true,
            ),
            (
                VariableScope {
                    tenant_tag: s(&["Region/West"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    process_owner: s(&["Runbooks-1"]),
                    ..Default::default()
                },
                false,
            ),
            // AND across dimensions.
            (
                VariableScope {
                    environment: s(&["Env-Prod"]),
                    channel: s(&["C-2"]),
                    ..Default::default()
                },
                false,
            ),
            (
                VariableScope {
                    environment: s(&["Env-Prod"]),
                    channel: s(&["C-1"]),
                    ..Default::default()
                },
                true,
            ),
        ];
        for (scope, expect) in cases {
            let got = matches!(applies(&scope, &c).0, Applies::Yes(_));
            assert_eq!(got, expect, "{scope:?}");
        }
        let mut no_machine = ctx();
        no_machine.machine = None;
        no_machine.machine_roles.clear();
        assert!(matches!(
            applies(
                &VariableScope {
                    role: s(&["web"]),
                    ..Default::default()
                },
                &no_machine
            )
            .0,
            Applies::No("Role")
        ));
    }

    #[test]
    fn ranking_follows_octopus_order() {
        let c = ctx();
        let env = VariableScope {
            environment: s(&["Env-Prod"]),
            ..Default::default()
        };
        let role = VariableScope {
            role: s(&["db"]),
            ..Default::default()
        };
        let targeted_role = VariableScope {
            role: s(&["web"]),
            ..Default::default()
        };
        let machine = VariableScope {
            machine: s(&["M-1"]),
            ..Default::default()
        };
        let action = VariableScope {
            action: s(&["A-1"]),
            ..Default::default()
        };
        let env_channel = VariableScope {
            environment: s(&["Env-Prod"]),
            channel: s(&["C-1"]),
            ..Default::default()
        };
        let vars = vec![
            var("X", "unscoped", VariableScope::default()),
            var("X", "env", env.clone()),
            var("X", "env+channel", env_channel.clone()),
            var("X", "role", role.clone()),
        ];
        assert_eq!(resolve_one(&vars, &[], &c, "x").as_deref(), Some("role"));
        let vars = vec![
            var("X", "role", role.clone()),
            var("X", "targeted", targeted_role.clone()),
        ];
        assert_eq!(
            resolve_one(&vars, &[], &c, "X").as_deref(),
            Some("targeted")
        );
        let vars = vec![
            var("X", "targeted", targeted_role),
            var("X", "machine", machine.clone()),
        ];
        assert_eq!(resolve_one(&vars, &[], &c, "X").as_deref(), Some("machine"));
        let vars = vec![var("X", "machine", machine), var("X", "action", action)];
        assert_eq!(resolve_one(&vars, &[], &c, "X").as_deref(), Some("action"));
        let vars = vec![
            var("X", "env", env.clone()),
            var("X", "env+channel", env_channel),
        ];
        assert_eq!(
            resolve_one(&vars, &[], &c, "X").as_deref(),
            Some("env+channel")
        );
        let vars = vec![var("X", "unscoped", VariableScope::default())];
        let mut other = ctx();
        other.environment = Some("Env-Test".into());
        assert_eq!(resolve_one(&[var("X", "env", env)], &[], &other, "X"), None);
        assert_eq!(
            resolve_one(&vars, &[], &other, "X").as_deref(),
            Some("unscoped")
        );
    }

    #[test]
    fn ties_are_deterministic() {
        let c = ctx();
        let env = VariableScope {
            environment: s(&["Env-Prod"]),
            ..Default::default()
        };
        // Project beats library at equal specificity.
        let project = vec![var("X", "project", env.clone())];
        let library = vec![var("X", "library", env.clone())];
        assert_eq!(
            resolve_one(&project, &library, &c, "X").as_deref(),
            Some("project")
        );
        // A more specific library value beats a less specific project value.
        let library = vec![var(
            "X",
            "library",
            VariableScope {
                machine: s(&["M-1"]),
                ..Default::default()
            },
        )];
        assert_eq!(
            resolve_one(&project, &library, &c, "X").as_deref(),
            Some("library")
        );
        // Within one set, the first listed wins.
        let project = vec![var("X", "first", env.clone()), var("X", "second", env)];
        for _ in 0..10 {
            assert_eq!(
                resolve_one(&project, &[], &c, "X").as_deref(),
                Some("first")
            );
        }
    }

    #[test]
    fn explain_gives_reasons() {
        let c = ctx();
        let vars = vec![
            var(
                "Conn",
                "test",
                VariableScope {
                    environment: s(&["Env-Test"]),
                    ..Default::default()
                },
            ),
            var(
                "Conn",
                "prod",
                VariableScope {
                    environment: s(&["Env-Prod"]),
                    ..Default::default()
                },
            ),
            var("Conn", "default", VariableScope::default()),
        ];
        let idx = VariableIndex::new(vec![SourceSet {
            owner: "Projects-1",
            label: "project",
            variables: &vars,
        }]);
        let ex = idx.explain(&c);
        assert_eq!(ex.len(), 1);
        let (name, list) = &ex[0];
        assert_eq!(name, "Conn");
        assert!(
            list[0]
                .reason
                .contains("Environment scope does not include")
        );
        assert!(list[1].won && list[1].reason.contains("Environment"));
        assert!(!list[2].won && list[2].reason.contains("more specific"));
    }
}
