//! Rendering large templates stays fast (parse once, no quadratic string building).

use std::time::{Duration, Instant};

use ferry_template::{MapVariables, render};

use super::options;

/// Generous: a debug build on a busy two-core machine renders this in well under a second.
const BUDGET: Duration = Duration::from_secs(5);

#[test]
fn a_100_kb_template_renders_quickly() {
    let mut vars = MapVariables::new();
    for i in 0..200 {
        vars.set(format!("Server[{i}].Name"), format!("web{i:03}"));
        vars.set(format!("Server[{i}].Port"), format!("{}", 8000 + i));
    }
    vars.set("Env", "Production")
        .set("Url", "https://#{Env | ToLower}.example.com");
    let chunk = "host #{Server[7].Name | ToUpper} at #{Url}:#{Server[7].Port} #{if Env == \"Production\"}live#{else}test#{/if} ##{kept} #{Missing}\n";
    let mut template = String::new();
    while template.len() < 90_000 {
        template.push_str(chunk);
    }
    template.push_str("#{each s in Server}#{s.Name}:#{s.Port},#{/each}");
    assert!(template.len() > 90_000);

    let start = Instant::now();
    let out = render(&template, &vars, &options()).unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.text
            .contains("host WEB007 at https://production.example.com:8007 live #{kept} #{Missing}")
    );
    assert!(out.text.ends_with("web199:8199,"));
    assert_eq!(out.missing, ["Missing"]);
    assert!(elapsed < BUDGET, "took {elapsed:?}");
}

#[test]
fn broken_templates_parse_in_bounded_time() {
    let vars = MapVariables::new();
    for piece in [
        "#{if a}",
        "#{each x in y}",
        "#{unless b}#{if c}",
        "#{Foo[",
        "#{calc ((((",
        "#{a | f #{",
    ] {
        let template = piece.repeat(100_000 / piece.len());
        let start = Instant::now();
        let out = render(&template, &vars, &options()).unwrap();
        let elapsed = start.elapsed();
        assert!(!out.text.is_empty());
        assert!(elapsed < BUDGET, "{piece:?} took {elapsed:?}");
    }
}
