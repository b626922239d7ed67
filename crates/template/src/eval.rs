//! Evaluates parsed templates against a [`VariableSource`].
//!
//! Every piece of state that grows while evaluating (the stack of variables being resolved,
//! loop frames, the nesting depth) is restored before an error is returned, so an error can
//! be caught part-way (as JSON navigation does for self-references) without corrupting it.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use crate::ast::{
    Arg, Calc, CalcExpr, CalcOp, Cond, Each, Expr, If, Node, Operand, Step, Subst, Symbol,
};
use crate::filters::{self, FilterEnv};
use crate::json::{self, Json};
use crate::{Limits, Options, Rendered, TemplateError, VariableSource, is_truthy, numfmt, parser};

type EResult<T> = Result<T, TemplateError>;

/// One step of a variable name once `[#{...}]` indexes have been evaluated.
#[derive(Debug, Clone)]
enum RStep {
    Ident(String),
    Index(String),
}

impl RStep {
    fn text(&self) -> &str {
        match self {
            RStep::Ident(s) | RStep::Index(s) => s,
        }
    }
}

fn canonical(steps: &[RStep]) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            RStep::Ident(name) => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(name);
            }
            RStep::Index(index) => {
                out.push('[');
                out.push_str(index);
                out.push(']');
            }
        }
    }
    out
}

/// A resolved value: text, or a JSON array/object taken from a JSON-valued variable.
enum Val {
    Text(String),
    Json(Json),
}

impl Val {
    fn into_text(self) -> String {
        match self {
            Val::Text(s) => s,
            Val::Json(j) => j.to_text(),
        }
    }
}

/// What a loop variable is bound to.
enum LoopItem {
    /// A key of an indexed group: `Endpoint[A]` gives prefix `Endpoint[A]`, key `A`.
    Group { prefix: Vec<RStep>, key: String },
    /// A comma-separated item.
    Text(String),
    /// An item of a JSON array.
    Json(Json),
    /// A member of a JSON object, with `.Key` and `.Value`.
    Entry { key: String, value: Json },
}

struct Frame {
    var: String,
    item: Rc<LoopItem>,
    index: usize,
    last: bool,
}

enum Nav<'j> {
    Found(&'j Json),
    /// A missing member or index at the last step: Octostache gives an empty string.
    Empty,
    NotFound,
}

fn navigate<'j>(root: &'j Json, steps: &[RStep]) -> Nav<'j> {
    let mut current = root;
    for (i, step) in steps.iter().enumerate() {
        let key = step.text();
        let next = match current {
            Json::Object(_) => current.member(key),
            Json::Array(items) => match key.trim().parse::<i64>() {
                Ok(index) => usize::try_from(index).ok().and_then(|i| items.get(i)),
                Err(_) => return Nav::NotFound,
            },
            _ => return Nav::NotFound,
        };
        match next {
            Some(value) => current = value,
            None if i + 1 == steps.len() => return Nav::Empty,
            None => return Nav::NotFound,
        }
    }
    Nav::Found(current)
}

fn json_val(value: &Json) -> Val {
    match value {
        Json::Array(_) | Json::Object(_) => Val::Json(value.clone()),
        other => Val::Text(other.to_text()),
    }
}

/// Shortens a construct's source for error messages.
fn excerpt(src: &str) -> String {
    const MAX: usize = 60;
    match src.char_indices().nth(MAX) {
        Some((cut, _)) => format!("`{}...`", &src[..cut]),
        None => format!("`{src}`"),
    }
}

pub(crate) struct Evaluator<'a> {
    vars: &'a dyn VariableSource,
    limits: Limits,
    env: FilterEnv<'a>,
    steps: u64,
    depth: usize,
    /// Variables being resolved, innermost last: (lower-case name, name as written).
    resolving: Vec<(String, String)>,
    frames: Vec<Frame>,
    parsed_values: HashMap<String, Rc<Vec<Node>>>,
    construct: Option<Arc<str>>,
    missing: Vec<String>,
    missing_seen: HashSet<String>,
    unresolved: Vec<String>,
    unresolved_seen: HashSet<String>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(vars: &'a dyn VariableSource, opts: &'a Options) -> Self {
        Evaluator {
            vars,
            limits: opts.limits,
            env: FilterEnv::new(opts.clock.as_ref()),
            steps: 0,
            depth: 0,
            resolving: Vec::new(),
            frames: Vec::new(),
            parsed_values: HashMap::new(),
            construct: None,
            missing: Vec::new(),
            missing_seen: HashSet::new(),
            unresolved: Vec::new(),
            unresolved_seen: HashSet::new(),
        }
    }

    pub(crate) fn render(mut self, nodes: &[Node]) -> EResult<Rendered> {
        let mut text = String::new();
        self.nodes(nodes, &mut text)?;
        Ok(Rendered {
            text,
            missing: self.missing,
            unresolved: self.unresolved,
        })
    }

    /// Where evaluation is, for error messages.
    fn location(&self) -> String {
        let construct = self
            .construct
            .as_deref()
            .map_or_else(|| "the template".to_string(), excerpt);
        match self.resolving.last() {
            Some((_, name)) => format!("{construct} in the value of `{name}`"),
            None => construct,
        }
    }

    fn tick(&mut self, cost: u64) -> EResult<()> {
        self.steps = self.steps.saturating_add(cost);
        if self.steps > self.limits.max_steps {
            return Err(TemplateError::TooManySteps {
                construct: self.location(),
                limit: self.limits.max_steps,
            });
        }
        Ok(())
    }

    fn enter(&mut self) -> EResult<()> {
        if self.depth >= self.limits.max_depth {
            return Err(TemplateError::TooDeep {
                construct: self.location(),
                limit: self.limits.max_depth,
            });
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> EResult<T>) -> EResult<T> {
        self.enter()?;
        let result = f(self);
        self.leave();
        result
    }

    fn write(&mut self, out: &mut String, text: &str) -> EResult<()> {
        if out.len().saturating_add(text.len()) > self.limits.max_output_bytes {
            return Err(TemplateError::OutputTooLarge {
                construct: self.location(),
                limit: self.limits.max_output_bytes,
            });
        }
        self.tick((text.len() / 4096) as u64)?;
        out.push_str(text);
        Ok(())
    }

    fn note_missing(&mut self, name: String) {
        if self.missing_seen.insert(name.to_lowercase()) {
            self.missing.push(name);
        }
    }

    fn note_unresolved(&mut self, src: &str) {
        if self.unresolved_seen.insert(src.to_string()) {
            self.unresolved.push(src.to_string());
        }
    }

    fn set_construct(&mut self, src: &Arc<str>) -> Option<Arc<str>> {
        self.construct.replace(Arc::clone(src))
    }

    fn nodes(&mut self, nodes: &[Node], out: &mut String) -> EResult<()> {
        for node in nodes {
            self.node(node, out)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, out: &mut String) -> EResult<()> {
        self.tick(1)?;
        match node {
            Node::Text(text) => self.write(out, text),
            Node::Subst(subst) => {
                let saved = self.set_construct(&subst.src);
                let result = self.subst(subst, out);
                self.construct = saved;
                result
            }
            Node::If(cond) => {
                let saved = self.set_construct(&cond.head);
                let result = self.nested(|this| this.conditional(cond, out));
                self.construct = saved;
                result
            }
            Node::Each(each) => {
                let saved = self.set_construct(&each.head);
                let result = self.nested(|this| this.each(each, out));
                self.construct = saved;
                result
            }
            Node::Calc(calc) => {
                let saved = self.set_construct(&calc.src);
                let result = self.calc(calc, out);
                self.construct = saved;
                result
            }
        }
    }

    fn subst(&mut self, subst: &Subst, out: &mut String) -> EResult<()> {
        let mut missing = Vec::new();
        match self.expr(&subst.expr, &mut missing)? {
            Some(value) => self.write(out, &value),
            None => self.echo(&subst.src, missing, out),
        }
    }

    fn echo(&mut self, src: &str, missing: Vec<String>, out: &mut String) -> EResult<()> {
        self.note_unresolved(src);
        for name in missing {
            self.note_missing(name);
        }
        self.write(out, src)
    }

    /// The value of a variable reference with its filters; `None` means "echo the token".
    fn expr(&mut self, expr: &Expr, missing: &mut Vec<String>) -> EResult<Option<String>> {
        let mut value = match &expr.symbol {
            Some(symbol) => {
                let (found, name) = self.resolve(symbol)?;
                if found.is_none() {
                    missing.push(name);
                }
                found.map(Val::into_text)
            }
            None => None,
        };
        for filter in &expr.filters {
            let mut args = Vec::with_capacity(filter.args.len());
            for arg in &filter.args {
                args.push(match arg {
                    Arg::Text(text) => text.clone(),
                    Arg::Node(node) => {
                        let mut text = String::new();
                        self.nested(|this| this.node(node, &mut text))?;
                        text
                    }
                });
            }
            let size =
                value.as_ref().map_or(0, String::len) + args.iter().map(String::len).sum::<usize>();
            self.tick(1 + (size / 256) as u64)?;
            value = filters::apply(&filter.name, value.as_deref(), &args, &mut self.env);
            if let Some(v) = &value {
                if v.len() > self.limits.max_output_bytes {
                    return Err(TemplateError::OutputTooLarge {
                        construct: self.location(),
                        limit: self.limits.max_output_bytes,
                    });
                }
            }
        }
        Ok(value)
    }

    fn conditional(&mut self, cond: &If, out: &mut String) -> EResult<()> {
        for (test, body) in &cond.branches {
            if self.test(test)? {
                return self.nodes(body, out);
            }
        }
        self.nodes(&cond.otherwise, out)
    }

    fn test(&mut self, cond: &Cond) -> EResult<bool> {
        // An undefined variable in a condition is simply falsy, not "missing".
        let mut ignored = Vec::new();
        let left = self.expr(&cond.left, &mut ignored)?.unwrap_or_default();
        let holds = match &cond.compare {
            None => is_truthy(&left),
            Some(compare) => {
                let right = match &compare.right {
                    Operand::Literal(text) => text.clone(),
                    Operand::Expr(expr) => self.expr(expr, &mut ignored)?.unwrap_or_default(),
                };
                (left == right) == compare.equal
            }
        };
        Ok(holds != cond.negate)
    }

    fn each(&mut self, each: &Each, out: &mut String) -> EResult<()> {
        let items = self.collection(&each.collection)?;
        let count = items.len();
        let var = each.var.to_lowercase();
        for (index, item) in items.into_iter().enumerate() {
            self.tick(1)?;
            self.frames.push(Frame {
                var: var.clone(),
                item: Rc::new(item),
                index,
                last: index + 1 == count,
            });
            let result = self.nodes(&each.body, out);
            self.frames.pop();
            result?;
        }
        Ok(())
    }

    fn calc(&mut self, calc: &Calc, out: &mut String) -> EResult<()> {
        let mut missing = Vec::new();
        match self.calc_value(&calc.expr, &mut missing)? {
            Some(value) => {
                let text = numfmt::dotnet_double(value);
                self.write(out, &text)
            }
            None => self.echo(&calc.src, missing, out),
        }
    }

    fn calc_value(&mut self, expr: &CalcExpr, missing: &mut Vec<String>) -> EResult<Option<f64>> {
        self.tick(1)?;
        Ok(match expr {
            CalcExpr::Number(n) => Some(*n),
            CalcExpr::Var(symbol) => {
                let (found, name) = self.resolve(symbol)?;
                match found {
                    None => {
                        missing.push(name);
                        None
                    }
                    Some(value) => {
                        let text = value.into_text();
                        text.trim()
                            .replace(',', "")
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                    }
                }
            }
            CalcExpr::Neg(inner) => self.calc_value(inner, missing)?.map(|v| -v),
            CalcExpr::Chain(first, rest) => {
                let Some(mut acc) = self.calc_value(first, missing)? else {
                    return Ok(None);
                };
                for (op, operand) in rest {
                    let Some(r) = self.calc_value(operand, missing)? else {
                        return Ok(None);
                    };
                    let next = match op {
                        CalcOp::Add => Some(acc + r),
                        CalcOp::Sub => Some(acc - r),
                        CalcOp::Mul => Some(acc * r),
                        CalcOp::Div if r == 0.0 => None,
                        CalcOp::Div => Some(acc / r),
                        CalcOp::Rem => whole_remainder(acc, r),
                    };
                    match next.filter(|v| v.is_finite()) {
                        Some(v) => acc = v,
                        None => return Ok(None),
                    }
                }
                Some(acc)
            }
        })
    }

    /// Evaluates `[#{...}]` indexes; `None` when one of them is undefined.
    fn resolve_steps(&mut self, symbol: &Symbol) -> EResult<Option<Vec<RStep>>> {
        let mut steps = Vec::with_capacity(symbol.steps.len());
        for step in &symbol.steps {
            steps.push(match step {
                Step::Ident(name) => RStep::Ident(name.clone()),
                Step::Index(index) => RStep::Index(index.clone()),
                Step::SymbolIndex(inner) => match self.nested(|this| this.resolve(inner))?.0 {
                    Some(value) => RStep::Index(value.into_text()),
                    None => return Ok(None),
                },
            });
        }
        Ok(Some(steps))
    }

    /// Resolves a reference; also returns the name to report if it is undefined.
    fn resolve(&mut self, symbol: &Symbol) -> EResult<(Option<Val>, String)> {
        let Some(steps) = self.resolve_steps(symbol)? else {
            return Ok((None, symbol.display()));
        };
        let name = canonical(&steps);
        Ok((self.lookup(&steps, &name)?, name))
    }

    fn lookup(&mut self, steps: &[RStep], name: &str) -> EResult<Option<Val>> {
        self.tick(1)?;
        let lower = name.to_lowercase();
        if let Some(frame) = self.frames.last() {
            let special = match lower.as_str() {
                "octopus.template.each.index" => Some(frame.index.to_string()),
                "octopus.template.each.first" => {
                    Some(if frame.index == 0 { "True" } else { "False" }.to_string())
                }
                "octopus.template.each.last" => {
                    Some(if frame.last { "True" } else { "False" }.to_string())
                }
                _ => None,
            };
            if let Some(value) = special {
                return Ok(Some(Val::Text(value)));
            }
        }
        if self.resolving.iter().any(|(n, _)| *n == lower) {
            let mut chain: Vec<&str> = self
                .resolving
                .iter()
                .skip_while(|(n, _)| *n != lower)
                .map(|(_, written)| written.as_str())
                .collect();
            chain.push(name);
            return Err(TemplateError::Recursion {
                name: name.to_string(),
                chain: chain.join(" -> "),
            });
        }
        self.resolving.push((lower, name.to_string()));
        let result = self.lookup_scoped(steps);
        self.resolving.pop();
        result
    }

    /// Loop variables first, innermost loop first, then the variable source.
    fn lookup_scoped(&mut self, steps: &[RStep]) -> EResult<Option<Val>> {
        if let Some(RStep::Ident(first)) = steps.first() {
            let first = first.to_lowercase();
            let bound: Vec<Rc<LoopItem>> = self
                .frames
                .iter()
                .rev()
                .filter(|f| f.var == first)
                .map(|f| Rc::clone(&f.item))
                .collect();
            for item in bound {
                if let Some(value) = self.lookup_in_item(&item, &steps[1..])? {
                    return Ok(Some(value));
                }
            }
        }
        self.lookup_global(steps)
    }

    fn lookup_in_item(&mut self, item: &LoopItem, rest: &[RStep]) -> EResult<Option<Val>> {
        match item {
            LoopItem::Group { prefix, key } => {
                let is_key = matches!(rest, [RStep::Ident(k)] if k.eq_ignore_ascii_case("key"));
                if rest.is_empty() || is_key {
                    let mut target = prefix.clone();
                    target.extend(rest.iter().cloned());
                    let exact = self.lookup_exact(&canonical(&target))?;
                    return Ok(Some(exact.unwrap_or_else(|| Val::Text(key.clone()))));
                }
                let mut target = prefix.clone();
                target.extend(rest.iter().cloned());
                self.lookup_global(&target)
            }
            LoopItem::Text(text) => {
                if rest.is_empty() {
                    return Ok(Some(Val::Text(text.clone())));
                }
                Ok(json::parse(text).and_then(|root| nav_val(&root, rest)))
            }
            LoopItem::Json(value) => {
                if rest.is_empty() {
                    return Ok(Some(json_val(value)));
                }
                Ok(nav_val(value, rest))
            }
            LoopItem::Entry { key, value } => match rest.split_first() {
                None => Ok(Some(Val::Text(key.clone()))),
                Some((RStep::Ident(k), [])) if k.eq_ignore_ascii_case("key") => {
                    Ok(Some(Val::Text(key.clone())))
                }
                Some((RStep::Ident(k), [])) if k.eq_ignore_ascii_case("value") => {
                    Ok(Some(json_val(value)))
                }
                Some((RStep::Ident(k), more)) if k.eq_ignore_ascii_case("value") => {
                    Ok(nav_val(value, more))
                }
                Some(_) => Ok(None),
            },
        }
    }

    /// The evaluated value of exactly the variable `name`.
    fn lookup_exact(&mut self, name: &str) -> EResult<Option<Val>> {
        let Some(raw) = self.vars.get(name).map(|v| v.into_owned()) else {
            return Ok(None);
        };
        Ok(Some(Val::Text(self.value(&name.to_lowercase(), &raw)?)))
    }

    /// A variable from the source: by exact name, through `[*]`, or inside a JSON value.
    fn lookup_global(&mut self, steps: &[RStep]) -> EResult<Option<Val>> {
        let name = canonical(steps);
        if let Some(found) = self.lookup_exact(&name)? {
            return Ok(Some(found));
        }
        if let Some(star) = steps
            .iter()
            .position(|s| matches!(s, RStep::Index(i) if i == "*"))
        {
            let keys = self.group_keys(&steps[..star])?;
            return match keys.into_iter().next() {
                Some(first) => {
                    let mut replaced = steps.to_vec();
                    replaced[star] = RStep::Index(first);
                    self.lookup_global(&replaced)
                }
                None => Ok(None),
            };
        }
        for split in (1..steps.len()).rev() {
            let root_name = canonical(&steps[..split]);
            let Some(raw) = self.vars.get(&root_name).map(|v| v.into_owned()) else {
                continue;
            };
            // A JSON value may refer to its own members; such a reference is read from the
            // unevaluated text (and the member evaluated afterwards) instead of looping.
            let (text, from_raw) = match self.value(&root_name.to_lowercase(), &raw) {
                Ok(text) => (text, false),
                Err(TemplateError::Recursion { .. }) => (raw, true),
                Err(e) => return Err(e),
            };
            let Some(root) = json::parse(&text) else {
                return Ok(None);
            };
            return match nav_val(&root, &steps[split..]) {
                Some(Val::Text(member)) if from_raw => {
                    Ok(Some(Val::Text(self.template_text(&member)?)))
                }
                other => Ok(other),
            };
        }
        Ok(None)
    }

    /// Evaluates a variable's raw value as a template (parsed once per render and name).
    fn value(&mut self, lower_name: &str, raw: &str) -> EResult<String> {
        if !raw.contains('#') {
            return Ok(raw.to_string());
        }
        self.tick((raw.len() / 256) as u64)?;
        let nodes = match self.parsed_values.get(lower_name) {
            Some(nodes) => Rc::clone(nodes),
            None => {
                let nodes =
                    Rc::new(parser::parse(raw, false, self.limits.max_depth).unwrap_or_default());
                self.parsed_values
                    .insert(lower_name.to_string(), Rc::clone(&nodes));
                nodes
            }
        };
        self.evaluate_nodes(&nodes)
    }

    fn template_text(&mut self, raw: &str) -> EResult<String> {
        if !raw.contains('#') {
            return Ok(raw.to_string());
        }
        let nodes = parser::parse(raw, false, self.limits.max_depth).unwrap_or_default();
        self.evaluate_nodes(&nodes)
    }

    fn evaluate_nodes(&mut self, nodes: &[Node]) -> EResult<String> {
        let saved = self.construct.take();
        let mut out = String::new();
        let result = self.nested(|this| this.nodes(nodes, &mut out));
        self.construct = saved;
        result.map(|()| out)
    }

    /// Keys of the indexed group `prefix[key]...`, in order of first appearance.
    fn group_keys(&mut self, prefix: &[RStep]) -> EResult<Vec<String>> {
        let prefix_text = format!("{}[", canonical(prefix));
        let skip = prefix_text.chars().count();
        let mut names = Vec::new();
        self.vars
            .visit_names_with_prefix(&prefix_text, &mut |name| names.push(name.to_string()));
        self.tick(names.len() as u64)?;
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            let rest: String = name.chars().skip(skip).collect();
            if let Some(key) = group_key(&rest) {
                if seen.insert(key.to_lowercase()) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// The items `#{each}` iterates over.
    fn collection(&mut self, symbol: &Symbol) -> EResult<Vec<LoopItem>> {
        let Some(steps) = self.resolve_steps(symbol)? else {
            return Ok(Vec::new());
        };
        if let Some(RStep::Ident(first)) = steps.first() {
            let first = first.to_lowercase();
            let bound = self
                .frames
                .iter()
                .rev()
                .find(|f| f.var == first)
                .map(|f| Rc::clone(&f.item));
            if let Some(item) = bound {
                if let LoopItem::Group { prefix, .. } = item.as_ref() {
                    let mut target = prefix.clone();
                    target.extend(steps[1..].iter().cloned());
                    return self.collection_global(&target);
                }
                if let Some(value) = self.lookup_in_item(&item, &steps[1..])? {
                    return Ok(items_of(value));
                }
            }
        }
        self.collection_global(&steps)
    }

    fn collection_global(&mut self, steps: &[RStep]) -> EResult<Vec<LoopItem>> {
        let keys = self.group_keys(steps)?;
        if !keys.is_empty() {
            return Ok(keys
                .into_iter()
                .map(|key| {
                    let mut prefix = steps.to_vec();
                    prefix.push(RStep::Index(key.clone()));
                    LoopItem::Group { prefix, key }
                })
                .collect());
        }
        let name = canonical(steps);
        Ok(self.lookup(steps, &name)?.map(items_of).unwrap_or_default())
    }
}

fn nav_val(root: &Json, steps: &[RStep]) -> Option<Val> {
    match navigate(root, steps) {
        Nav::Found(value) => Some(json_val(value)),
        Nav::Empty => Some(Val::Text(String::new())),
        Nav::NotFound => None,
    }
}

fn items_of(value: Val) -> Vec<LoopItem> {
    let json = match value {
        Val::Json(json) => json,
        Val::Text(text) => match json::parse_container(&text) {
            Some(json) => json,
            None if text.is_empty() => return Vec::new(),
            None => {
                return text
                    .split(',')
                    .map(|s| LoopItem::Text(s.to_string()))
                    .collect();
            }
        },
    };
    match json {
        Json::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Json::Array(_) | Json::Object(_) => LoopItem::Json(item),
                other => LoopItem::Text(other.to_text()),
            })
            .collect(),
        Json::Object(members) => members
            .into_iter()
            .map(|(key, value)| LoopItem::Entry { key, value })
            .collect(),
        other => vec![LoopItem::Text(other.to_text())],
    }
}

/// The key in `key]...` (the text after `Group[`), allowing nested brackets.
fn group_key(rest: &str) -> Option<String> {
    let mut open = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '[' => open += 1,
            ']' if open == 0 => {
                let after = &rest[i + 1..];
                if after.is_empty() || after.starts_with(['.', '[']) {
                    return Some(rest[..i].to_string());
                }
                return None;
            }
            ']' => open -= 1,
            _ => {}
        }
    }
    None
}

/// `%` is defined on whole numbers only, as in Octostache.
fn whole_remainder(left: f64, right: f64) -> Option<f64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let whole = |v: f64| v.fract() == 0.0 && v.abs() < LIMIT;
    if !whole(left) || !whole(right) || right == 0.0 {
        return None;
    }
    Some(((left as i64) % (right as i64)) as f64)
}
