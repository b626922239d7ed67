//! Renders arbitrary templates against arbitrary variables: must never panic or hang.
//!
//! Input layout: the template, then for each following line `name=value` a variable
//! (the first line is the template, so templates here are single-line).

#![no_main]

use ferry_template::{FixedClock, Limits, MapVariables, Options, parse, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let template = lines.next().unwrap_or_default();
    let mut vars = MapVariables::new();
    for line in lines {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        vars.set(name, value.replace("\\n", "\n"));
    }
    let Some(clock) = FixedClock::parse("2024-02-29T23:59:59.9999999+14:00") else {
        return;
    };
    let options = Options::default().with_clock(clock).with_limits(Limits {
        max_depth: 32,
        max_output_bytes: 1 << 20,
        max_steps: 100_000,
    });
    let rendered = render(template, &vars, &options);
    if let Ok(parsed) = parse(template) {
        assert_eq!(parsed.render(&vars, &options), rendered);
    }
});
