//! Ferry's variable substitution engine, compatible with Octopus Deploy's Octostache.
//!
//! ```
//! use ferry_template::{MapVariables, Options, render};
//!
//! let vars = MapVariables::new()
//!     .with("Server", "Web01")
//!     .with("Url", "http://#{Server | ToLower}:#{Port}");
//! let out = render("#{Url}/api #{Missing}", &vars, &Options::default()).unwrap();
//! assert_eq!(out.text, "http://web01:#{Port}/api #{Missing}");
//! assert_eq!(out.missing, ["Port", "Missing"]);
//! ```
//!
//! Supported: `#{Name}` with dots, spaces and `[index]` (also `[#{Other}]`), composite values
//! evaluated recursively with cycle detection, the `##{` escape, filters with arguments
//! (`#{X | Replace "a b" c | ToUpper}`), `#{if}`/`#{elseif}`/`#{else}`/`#{unless}` with
//! `==`/`!=`, `#{each x in Collection}` over indexed groups, comma-separated lists and JSON,
//! navigation into JSON values, and `#{calc}`. See `docs/template.md` for the decisions
//! taken where Octostache is ambiguous.
//!
//! Architecture invariant: this crate does no IO (the only outside input is the [`Clock`]),
//! and evaluation is bounded by [`Limits`]: whatever the template and variables, `render`
//! returns (an error at worst) and never panics.

mod ast;
mod datefmt;
mod eval;
mod filters;
mod json;
mod numfmt;
mod parser;
mod source;
mod uri;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

pub use source::{MapVariables, VariableSource};

/// How far evaluation may go before it stops with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting: constructs inside constructs, and variables whose values refer to
    /// other variables.
    pub max_depth: usize,
    /// Maximum size of the output, and of any intermediate value.
    pub max_output_bytes: usize,
    /// Maximum evaluation steps: one per construct, lookup, loop iteration and filter, plus
    /// a share proportional to the size of the data handled.
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_output_bytes: 16 * 1024 * 1024,
            max_steps: 2_000_000,
        }
    }
}

/// The source of the current time for `NowDate`, `NowDateUtc` and the local time zone.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current local time, with the local offset.
    fn now(&self) -> DateTime<FixedOffset>;
}

/// The machine's clock and time zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<FixedOffset> {
        chrono::Local::now().fixed_offset()
    }
}

/// A clock stopped at one instant, for tests and reproducible renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub DateTime<FixedOffset>);

impl FixedClock {
    /// A clock at an RFC 3339 instant such as `2024-11-03T08:53:11+01:00`.
    pub fn parse(rfc3339: &str) -> Option<FixedClock> {
        DateTime::parse_from_rfc3339(rfc3339).ok().map(FixedClock)
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<FixedOffset> {
        self.0
    }
}

/// Settings for one render.
#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl Options {
    /// These options with another clock.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// These options with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// The result of a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The output text. Tokens that could not be evaluated are left in it unchanged.
    pub text: String,
    /// Names of undefined variables that caused a token to be echoed, in order of first use.
    pub missing: Vec<String>,
    /// Every token echoed unchanged (undefined variable, unknown filter, invalid filter
    /// arguments, failed calculation), as written, in order of first appearance.
    pub unresolved: Vec<String>,
}

/// Why a render stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A variable's value refers back to itself.
    #[error(
        "variable `{name}` refers to itself ({chain}); remove the cycle from the variable values"
    )]
    Recursion { name: String, chain: String },
    /// Variables refer to variables (or constructs nest) too deeply.
    #[error("{construct} nests more than {limit} levels deep; flatten the variable references")]
    TooDeep { construct: String, limit: usize },
    /// The output, or a value on the way, is too large.
    #[error(
        "{construct} produces more than {limit} bytes; reduce the data or raise the output limit"
    )]
    OutputTooLarge { construct: String, limit: usize },
    /// Evaluation takes too much work.
    #[error(
        "{construct} takes more than {limit} evaluation steps; simplify the template or raise the step limit"
    )]
    TooManySteps { construct: String, limit: u64 },
}

/// A template that does not parse, with the position of the first problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// Byte offset in the template.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl SyntaxError {
    fn at(src: &str, offset: usize, message: String) -> SyntaxError {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SyntaxError {
            offset,
            line,
            column,
            message,
        }
    }
}

/// A parsed template, to render many times.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<ast::Node>,
}

impl Template {
    /// Parses leniently: a `#{` that starts no valid construct is kept as text, as `render` does.
    pub fn parse_lenient(template: &str, limits: &Limits) -> Template {
        Template {
            nodes: parser::parse(template, false, limits.max_depth).unwrap_or_default(),
        }
    }

    /// Renders against `vars`.
    pub fn render(
        &self,
        vars: &dyn VariableSource,
        opts: &Options,
    ) -> Result<Rendered, TemplateError> {
        eval::Evaluator::new(vars, opts).render(&self.nodes)
    }
}

/// Parses strictly, reporting the first construct that does not parse; for validating
/// templates and run conditions before they are saved.
pub fn parse(template: &str) -> Result<Template, SyntaxError> {
    parser::parse(template, true, Limits::default().max_depth).map(|nodes| Template { nodes })
}

/// Renders `template` against `vars`. Malformed constructs are kept as text; undefined
/// variables and unknown filters leave their token unchanged and are reported in
/// [`Rendered::missing`] and [`Rendered::unresolved`].
pub fn render(
    template: &str,
    vars: &dyn VariableSource,
    opts: &Options,
) -> Result<Rendered, TemplateError> {
    Template::parse_lenient(template, &opts.limits).render(vars, opts)
}

/// Renders `expression` and tells whether the result is truthy; for run conditions such as
/// `#{if Octopus.Environment.Name == "Production"}true#{/if}`.
pub fn evaluate_truthy(
    expression: &str,
    vars: &dyn VariableSource,
    opts: &Options,
) -> Result<bool, TemplateError> {
    Ok(is_truthy(&render(expression, vars, opts)?.text))
}

/// Octopus truthiness: empty text and (ignoring case and surrounding spaces) `False`, `No`
/// and `0` are false; anything else is true.
pub fn is_truthy(value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let trimmed = value.trim();
    !(trimmed == "0" || trimmed.eq_ignore_ascii_case("false") || trimmed.eq_ignore_ascii_case("no"))
}

/// Escapes text so that it renders back unchanged: every `#{` becomes `##{`.
///
/// Exact for any text that does not itself contain `##{` (which the syntax cannot express).
pub fn escape(text: &str) -> String {
    text.replace("#{", "##{")
}

/// Names of the filters this engine implements, lower-cased.
pub fn filter_names() -> &'static [&'static str] {
    filters::NAMES
}
