//! `ferry-bench variables`: variable resolution and template rendering, in process, on one
//! thread: a 2,000-value variable set resolved for 1,000 targets (scope matching and ranking,
//! then every value evaluated), and a 100 KB template rendered.

use std::time::Instant;

use ferry_domain::variables::{ScopeContext, SourceSet, VariableIndex};
use ferry_domain::{Variable, VariableScope};
use ferry_template::{MapVariables, Options, VariableSource};

use crate::report::{Metric, median};

pub const TARGETS: usize = 1000;
pub const VALUES: usize = 2000;

fn variables() -> Vec<Variable> {
    let mut out = Vec::with_capacity(VALUES);
    // 500 names with 4 values each: unscoped, environment, role, machine.
    for n in 0..VALUES / 4 {
        let name = format!("App.Setting{n}");
        let base = |value: String, scope: VariableScope, i: usize| Variable {
            id: format!("v{n}-{i}"),
            name: name.clone(),
            value: Some(value),
            scope,
            ..Variable::default()
        };
        let composite = if n % 10 == 0 && n > 0 {
            format!("prefix-#{{App.Setting{}}}-suffix", n - 1)
        } else {
            format!("default-{n}")
        };
        out.push(base(composite, VariableScope::default(), 0));
        out.push(base(
            format!("env-{n}"),
            VariableScope {
                environment: vec![format!("Environments-{}", n % 3 + 1)],
                ..VariableScope::default()
            },
            1,
        ));
        out.push(base(
            format!("role-{n}"),
            VariableScope {
                role: vec![format!("role-{}", n % 7)],
                ..VariableScope::default()
            },
            2,
        ));
        out.push(base(
            format!("machine-{n}"),
            VariableScope {
                machine: vec![format!("Machines-{}", n * 2 % TARGETS)],
                ..VariableScope::default()
            },
            3,
        ));
    }
    out
}

fn context(t: usize) -> ScopeContext {
    ScopeContext {
        environment: Some("Environments-2".to_string()),
        machine: Some(format!("Machines-{t}")),
        machine_roles: vec![format!("role-{}", t % 7), format!("role-{}", (t + 3) % 7)],
        step_roles: vec![format!("role-{}", t % 7)],
        action: Some("action-1".to_string()),
        step: Some("step-1".to_string()),
        channel: Some("Channels-1".to_string()),
        tenant: None,
        tenant_tags: Vec::new(),
        process_owner: Some("Projects-1".to_string()),
    }
}

pub fn run(runs: usize) -> Vec<Metric> {
    let vars = variables();
    let index = VariableIndex::new(vec![SourceSet {
        owner: "Projects-1",
        label: "project",
        variables: &vars,
    }]);
    let opts = Options::default();
    let mut resolve_ms = Vec::new();
    let mut full_ms = Vec::new();
    let mut checksum = 0usize;
    for _ in 0..runs {
        let start = Instant::now();
        for t in 0..TARGETS {
            checksum += index.resolve(&context(t)).len();
        }
        resolve_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        for t in 0..TARGETS {
            let resolved = index.resolve(&context(t));
            let dict: MapVariables = resolved
                .iter()
                .map(|r| (r.name.to_string(), r.value.unwrap_or("").to_string()))
                .collect();
            for r in &resolved {
                let v = r.value.unwrap_or("");
                if v.contains("#{") {
                    if let Ok(out) = ferry_template::render(v, &dict, &opts) {
                        checksum += out.text.len();
                    }
                } else if let Some(x) = dict.get(r.name) {
                    checksum += x.len();
                }
            }
        }
        full_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    // A 100 KB template: text with a token every ~20 bytes, filters and conditionals.
    let mut template = String::with_capacity(110 * 1024);
    let mut i = 0;
    while template.len() < 100 * 1024 {
        template.push_str(&format!(
            "key{i} = #{{App.Setting{}}} #{{App.Setting{} | ToUpper}}#{{if App.Setting{}}} on#{{/if}}\n",
            i % 500,
            (i + 1) % 500,
            (i + 2) % 500
        ));
        i += 1;
    }
    let dict: MapVariables = index
        .resolve(&context(1))
        .iter()
        .map(|r| (r.name.to_string(), r.value.unwrap_or("").to_string()))
        .collect();
    let mut render_ms = Vec::new();
    for _ in 0..runs.max(5) {
        let start = Instant::now();
        if let Ok(out) = ferry_template::render(&template, &dict, &opts) {
            checksum += out.text.len();
        }
        render_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    std::hint::black_box(checksum);
    vec![
        Metric::new(
            "resolve_1000_targets_ms",
            format!("Resolve {VALUES} values (500 names) for {TARGETS} targets, one core"),
            median(&resolve_ms),
            "ms",
        )
        .under(1000.0),
        Metric::new(
            "resolve_and_evaluate_1000_targets_ms",
            format!("Resolve and evaluate every value for {TARGETS} targets, one core"),
            median(&full_ms),
            "ms",
        )
        .under(1000.0),
        Metric::new(
            "render_100kb_ms",
            format!(
                "Render a {} KB template ({i} lines, 3 tokens each)",
                template.len() / 1024
            ),
            median(&render_ms),
            "ms",
        ),
    ]
}
