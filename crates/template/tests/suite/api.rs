//! Behaviour beyond "template in, text out": reports, errors, limits, parsing and reuse.

use ferry_template::{
    FixedClock, Limits, MapVariables, Options, TemplateError, escape, evaluate_truthy, is_truthy,
    parse, render,
};

use super::{options, vars};

#[test]
fn missing_variables_and_unresolved_tokens_are_reported_once_in_order() {
    let vars = vars(&[("Foo", "#{Bar}"), ("Known", "k")]);
    let out = render(
        "#{Foo} #{Jazz | ToUpper} #{Known | Bazooka} #{Jazz} #{if Nope}x#{/if} #{calc Q + 1}",
        &vars,
        &options(),
    )
    .unwrap();
    assert_eq!(
        out.text,
        "#{Bar} #{Jazz | ToUpper} #{Known | Bazooka} #{Jazz}  #{calc Q + 1}"
    );
    assert_eq!(out.missing, ["Bar", "Jazz", "Q"]);
    assert_eq!(
        out.unresolved,
        [
            "#{Bar}",
            "#{Jazz | ToUpper}",
            "#{Known | Bazooka}",
            "#{Jazz}",
            "#{calc Q + 1}"
        ]
    );
}

#[test]
fn a_filter_that_needs_no_input_hides_the_missing_variable() {
    let out = render("#{Nope | Append x}", &MapVariables::new(), &options()).unwrap();
    assert_eq!(out.text, "x");
    assert!(out.missing.is_empty());
}

#[test]
fn self_reference_is_an_error_naming_the_cycle() {
    for (pairs, chain) in [
        (vec![("Foo", "#{Foo}")], "Foo -> Foo"),
        (
            vec![
                ("Foo", "#{Fox}"),
                ("Fox", "#{Fax}"),
                ("Fax", "#{Fix}"),
                ("Fix", "#{Foo}"),
            ],
            "Foo -> Fox -> Fax -> Fix -> Foo",
        ),
    ] {
        let err = render("#{Foo}", &vars(&pairs), &options()).unwrap_err();
        match &err {
            TemplateError::Recursion { name, chain: got } => {
                assert_eq!(name, "Foo");
                assert_eq!(got, chain);
            }
            other => panic!("expected a recursion error, got {other:?}"),
        }
        assert!(err.to_string().contains("refers to itself"), "{err}");
    }
}

#[test]
fn deep_chains_stop_at_the_depth_limit() {
    let mut vars = MapVariables::new();
    for i in 0..200 {
        vars.set(format!("V{i}"), format!("#{{V{}}}", i + 1));
    }
    vars.set("V200", "end");
    let err = render("#{V0}", &vars, &options()).unwrap_err();
    assert!(
        matches!(err, TemplateError::TooDeep { limit: 64, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("in the value of `V"), "{err}");

    let shallow = options().with_limits(Limits {
        max_depth: 300,
        ..Limits::default()
    });
    assert_eq!(render("#{V0}", &vars, &shallow).unwrap().text, "end");
}

#[test]
fn exponential_expansion_stops_with_a_clear_error() {
    let mut laughs = MapVariables::new();
    laughs.set("L0", "ha");
    for i in 1..40 {
        laughs.set(format!("L{i}"), format!("#{{L{0}}}#{{L{0}}}", i - 1));
    }
    let err = render("#{L39}", &laughs, &options()).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::TooManySteps { .. } | TemplateError::OutputTooLarge { .. }
        ),
        "{err:?}"
    );

    let small = options().with_limits(Limits {
        max_output_bytes: 1000,
        ..Limits::default()
    });
    let err = render(
        "#{each i in L}#{Big}#{/each}",
        &vars(&[("L", "1,2,3"), ("Big", &"x".repeat(400))]),
        &small,
    )
    .unwrap_err();
    match err {
        TemplateError::OutputTooLarge { construct, limit } => {
            assert_eq!(limit, 1000);
            assert_eq!(construct, "`#{Big}`");
        }
        other => panic!("expected an output error, got {other:?}"),
    }
}

#[test]
fn long_loops_hit_the_step_limit() {
    let items = vec!["x"; 5000].join(",");
    let few_steps = options().with_limits(Limits {
        max_steps: 10_000,
        ..Limits::default()
    });
    let vars = vars(&[("L", &items)]);
    let err = render(
        "#{each a in L}#{each b in L}.#{/each}#{/each}",
        &vars,
        &few_steps,
    )
    .unwrap_err();
    match err {
        TemplateError::TooManySteps { construct, limit } => {
            assert_eq!(limit, 10_000);
            assert!(construct.contains("each"), "{construct}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
}

#[test]
fn strict_parse_reports_the_position_of_the_first_problem() {
    let cases = [
        ("#{Foo", 1, 6),
        ("ok\n  #{}", 2, 5),
        ("#{if X}never closed", 1, 20),
        ("a #{/if}", 1, 3),
        ("#{each a in}#{/each}", 1, 12),
        ("#{Foo | Replace \"unterminated}", 1, 17),
        ("#{calc 1 + }", 1, 12),
    ];
    for (template, line, column) in cases {
        let err = parse(template).unwrap_err();
        assert_eq!(
            (err.line, err.column),
            (line, column),
            "{template:?}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("line {line}, column {column}: "))
        );
    }
    for valid in [
        "",
        "plain",
        "##{escaped}",
        "#{A} #{B | Replace \"a b\" c | ToUpper}",
        "#{if A == \"x\"}1#{elseif B != C}2#{else}3#{/if}",
        "#{unless A}u#{/unless}",
        "#{each a in Octopus.Action}#{a.Name}#{/each}",
        "#{calc (A + 1) * {B C}}",
        "#{Pwd[#{User}]}",
    ] {
        assert!(parse(valid).is_ok(), "{valid:?}: {:?}", parse(valid).err());
    }
}

#[test]
fn a_parsed_template_renders_many_times() {
    let template = parse("Hello, #{Location}!").unwrap();
    let world = template
        .render(&vars(&[("Location", "World")]), &options())
        .unwrap();
    let moon = template
        .render(&vars(&[("location", "Moon")]), &options())
        .unwrap();
    assert_eq!(
        (world.text.as_str(), moon.text.as_str()),
        ("Hello, World!", "Hello, Moon!")
    );
}

#[test]
fn run_conditions_use_octopus_truthiness() {
    let vars = vars(&[("Env", "Production"), ("Flag", " no "), ("Zero", "0")]);
    let opts = options();
    assert!(evaluate_truthy("#{if Env == \"Production\"}true#{/if}", &vars, &opts).unwrap());
    assert!(!evaluate_truthy("#{if Env != \"Production\"}true#{/if}", &vars, &opts).unwrap());
    assert!(!evaluate_truthy("#{Flag}", &vars, &opts).unwrap());
    assert!(!evaluate_truthy("#{Zero}", &vars, &opts).unwrap());
    assert!(evaluate_truthy("#{Env}", &vars, &opts).unwrap());
    for (value, truthy) in [
        ("", false),
        ("False", false),
        ("NO", false),
        (" 0 ", false),
        ("True", true),
        ("1", true),
        (" ", true),
    ] {
        assert_eq!(is_truthy(value), truthy, "{value:?}");
    }
}

#[test]
fn the_clock_is_injected() {
    let opts =
        Options::default().with_clock(FixedClock::parse("2030-01-02T03:04:05.5-05:00").unwrap());
    let vars = MapVariables::new();
    let out = render(
        "#{ | NowDate} #{ | NowDateUtc} #{ | NowDate zzz}",
        &vars,
        &opts,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "2030-01-02T03:04:05.5000000 2030-01-02T08:04:05.5000000Z -05:00"
    );
}

#[test]
fn escape_makes_text_render_back_unchanged() {
    let text = "if (#{x}) { return '#{y}#' } # ##";
    let out = render(&escape(text), &vars(&[("x", "1"), ("y", "2")]), &options()).unwrap();
    assert_eq!(out.text, text);
    assert!(out.missing.is_empty());
}

#[test]
fn values_never_change_the_structure_of_the_template() {
    // A value that looks like template syntax is inserted as text, not re-parsed afterwards.
    let vars = vars(&[
        ("Evil", "##{Secret}"),
        ("Secret", "s3cret"),
        ("Json", "{\"a\": \"##{Secret}\"}"),
    ]);
    let out = render(
        "#{Evil | ToUpper} #{each x in Json}#{x.Value}#{/each}",
        &vars,
        &options(),
    )
    .unwrap();
    assert_eq!(out.text, "#{SECRET} #{Secret}");
}

#[test]
fn long_calculations_and_deep_nesting_stay_within_a_small_stack() {
    let worker = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let sum = format!("#{{calc {}}}", vec!["1"; 20_000].join(" + "));
            assert_eq!(
                render(&sum, &MapVariables::new(), &options()).unwrap().text,
                "20000"
            );

            // Every value nests constructs and refers to the next value: the nesting of templates
            // and of values adds up to the depth limit, which stops evaluation cleanly.
            let mut vars = MapVariables::new().with("X", "yes");
            for i in 0..100 {
                let open = "#{if X}".repeat(40);
                let close = "#{/if}".repeat(40);
                vars.set(format!("V{i}"), format!("{open}#{{V{}}}{close}", i + 1));
            }
            let err = render("#{V0}", &vars, &options()).unwrap_err();
            assert!(matches!(err, TemplateError::TooDeep { .. }), "{err:?}");

            let deep_json = format!("{}1{}", "[".repeat(120), "]".repeat(120));
            let vars = MapVariables::new().with("J", deep_json);
            let path = "[0]".repeat(120);
            assert_eq!(
                render(&format!("#{{J{path}}}"), &vars, &options())
                    .unwrap()
                    .text,
                "1"
            );
        });
    worker.unwrap().join().unwrap();
}
