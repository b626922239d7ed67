//! Results as rows (metric, value, goal, met?), printed as an aligned table that is also a
//! Markdown table, or as JSON.

use serde_json::{Value, json};

/// A goal a value must stay under.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub under: f64,
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Metric {
    /// A stable name for scripts reading the JSON.
    pub key: &'static str,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    pub goal: Option<Goal>,
}

impl Metric {
    pub fn new(
        key: &'static str,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Metric {
            key,
            label: label.into(),
            value,
            unit,
            goal: None,
        }
    }

    pub fn under(mut self, limit: f64) -> Self {
        self.goal = Some(Goal { under: limit });
        self
    }

    pub fn met(&self) -> Option<bool> {
        self.goal.map(|goal| self.value < goal.under)
    }

    fn value_text(&self) -> String {
        format!("{} {}", round_for_display(self.value), self.unit)
    }

    fn goal_text(&self) -> String {
        self.goal
            .map(|goal| format!("< {} {}", whole_or_rounded(goal.under), self.unit))
            .unwrap_or_else(|| "-".to_string())
    }

    fn met_text(&self) -> &'static str {
        match self.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        }
    }
}

/// Goals are round numbers: "40", not "40.0".
fn whole_or_rounded(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        round_for_display(value)
    }
}

/// Three significant figures or one decimal, whichever says more.
fn round_for_display(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The median of some samples (0 for none).
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The largest sample (0 for none).
pub fn max(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max)
}

/// The rows as an aligned table, `| metric | value | goal | met? |`, valid Markdown.
pub fn table(metrics: &[Metric]) -> String {
    let header = ["metric", "value", "goal", "met?"];
    let rows: Vec<[String; 4]> = metrics
        .iter()
        .map(|m| {
            [
                m.label.clone(),
                m.value_text(),
                m.goal_text(),
                m.met_text().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                // Numbers read best right-aligned.
                if column == 1 || column == 2 {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(header)];
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(column, width)| {
            if column == 1 || column == 2 {
                format!("{}:", "-".repeat(width + 1))
            } else {
                "-".repeat(width + 2)
            }
        })
        .collect();
    out.push(format!("|{}|", rule.join("|")));
    for row in &rows {
        out.push(line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out.join("\n")
}

/// The rows as JSON objects.
pub fn json_rows(metrics: &[Metric]) -> Value {
    Value::Array(
        metrics
            .iter()
            .map(|m| {
                json!({
                    "key": m.key,
                    "metric": m.label,
                    "value": m.value,
                    "unit": m.unit,
                    "goal_under": m.goal.map(|goal| goal.under),
                    "met": m.met(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_maxima() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(max(&[1.0, 7.5, 3.0]), 7.5);
    }

    #[test]
    fn table_is_aligned_and_says_whether_goals_are_met() {
        let metrics = [
            Metric::new("a", "cold start", 123.456, "ms").under(300.0),
            Metric::new("b", "memory", 41.2, "MB").under(40.0),
            Metric::new("c", "bash", 1.234, "ms"),
        ];
        let text = table(&metrics);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "| metric     |   value |     goal | met? |",
                "|------------|--------:|---------:|------|",
                "| cold start |  123 ms | < 300 ms | yes  |",
                "| memory     | 41.2 MB |  < 40 MB | NO   |",
                "| bash       | 1.23 ms |        - |      |",
            ]
        );
    }
}
