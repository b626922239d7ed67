//! Turns template text into [`Nodes`](crate::ast::Nodes).
//!
//! The grammar follows Octostache's: text with `#{...}` constructs, where `##{` escapes a
//! literal `#{`. Two modes share one parser:
//!
//! - **strict** (`parse`): the first construct that does not parse is a [`SyntaxError`];
//! - **lenient** (`render`): a `#{` that does not start a valid construct is kept as literal
//!   text, as Octostache does when told to continue on errors.
//!
//! A construct's parse does not depend on its surroundings, so a failed attempt at a position
//! is remembered and never retried; together with the nesting limit this keeps parsing of
//! broken input close to linear.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::SyntaxError;
use crate::ast::{
    Arg, Calc, CalcExpr, CalcOp, Compare, Cond, Each, Expr, Filter, If, Node, Nodes, Operand, Step,
    Subst, Symbol,
};

type PResult<T> = Result<T, PErr>;

#[derive(Debug)]
struct PErr {
    offset: usize,
    message: String,
}

fn err<T>(offset: usize, message: impl Into<String>) -> PResult<T> {
    Err(PErr {
        offset,
        message: message.into(),
    })
}

/// Which closing tags end the body being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Top,
    /// `#{elseif}`, `#{else}` or `#{/if}`.
    If,
    /// `#{else}` or `#{/unless}`.
    Unless,
    /// `#{/if}` after an `#{else}`.
    IfElse,
    /// `#{/unless}` after an `#{else}`.
    UnlessElse,
    Each,
}

enum EndTag {
    ElseIf(Cond),
    Else,
    Close,
}

pub(crate) struct Parser<'s> {
    src: &'s str,
    strict: bool,
    max_depth: usize,
    /// Positions of `#{` where an `if`/`unless`/`each`/`calc` construct failed to parse.
    failed: HashSet<usize>,
    /// Positions of `#{` where a substitution failed to parse.
    failed_subst: HashSet<usize>,
    /// For each `[` seen so far, the position of its matching `]`, if any.
    brackets: HashMap<usize, Option<usize>>,
    /// Position of the last `#{/if}`, `#{/unless}` and `#{/each}`, found on first need: a
    /// block opened after its last closing tag cannot parse, and is rejected without a scan.
    last_close: Option<[Option<usize>; 3]>,
}

/// Parses `src`; in lenient mode this never fails.
pub(crate) fn parse(src: &str, strict: bool, max_depth: usize) -> Result<Nodes, SyntaxError> {
    let mut parser = Parser {
        src,
        strict,
        max_depth: max_depth.max(1),
        failed: HashSet::new(),
        failed_subst: HashSet::new(),
        brackets: HashMap::new(),
        last_close: None,
    };
    match parser.nodes(0, 0, Body::Top) {
        Ok((nodes, _, _)) => Ok(nodes),
        Err(e) => Err(SyntaxError::at(src, e.offset, e.message)),
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '~' | '(' | ')')
}

fn is_calc_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | '~')
}

/// Whether `rest` starts with a keyword that ends an identifier containing spaces.
fn keyword_follows(rest: &str) -> bool {
    ["in", "==", "!="].iter().any(|kw| {
        rest.strip_prefix(kw)
            .and_then(|after| after.chars().next())
            .is_some_and(char::is_whitespace)
    })
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

impl<'s> Parser<'s> {
    fn rest(&self, pos: usize) -> &'s str {
        self.src.get(pos..).unwrap_or("")
    }

    fn peek(&self, pos: usize) -> Option<char> {
        self.rest(pos).chars().next()
    }

    fn skip_ws(&self, pos: usize) -> usize {
        let rest = self.rest(pos);
        pos + (rest.len() - rest.trim_start().len())
    }

    fn expect(&self, pos: usize, c: char) -> PResult<usize> {
        if self.peek(pos) == Some(c) {
            Ok(pos + c.len_utf8())
        } else {
            err(pos, format!("expected `{c}`"))
        }
    }

    /// A body of text and constructs, up to one of the closing tags `body` accepts.
    fn nodes(
        &mut self,
        mut pos: usize,
        depth: usize,
        body: Body,
    ) -> PResult<(Nodes, usize, EndTag)> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        loop {
            let rest = self.rest(pos);
            let Some(hash) = rest.find('#') else {
                text.push_str(rest);
                pos = self.src.len();
                if body != Body::Top {
                    return err(pos, "the template ended before the closing tag");
                }
                flush(&mut text, &mut nodes);
                return Ok((nodes, pos, EndTag::Close));
            };
            text.push_str(&rest[..hash]);
            pos += hash;
            let rest = self.rest(pos);
            // The escape rules, in Octostache's order.
            if rest.len() == 1 {
                text.push('#');
                pos += 1;
                continue;
            }
            if rest.starts_with("##") && rest[2..].starts_with("#{") {
                text.push('#');
                pos += 2;
                continue;
            }
            if rest.starts_with("##{") {
                text.push_str("#{");
                pos += 3;
                continue;
            }
            if let Some(next) = rest[1..].chars().next().filter(|&c| c != '{') {
                text.push('#');
                text.push(next);
                pos += 1 + next.len_utf8();
                continue;
            }
            // A `#{` at `pos`.
            if body != Body::Top {
                if let Some((tag, end)) = self.end_tag(pos, depth, body) {
                    flush(&mut text, &mut nodes);
                    return Ok((nodes, end, tag));
                }
            }
            match self.construct(pos, depth) {
                Ok((node, end)) => {
                    flush(&mut text, &mut nodes);
                    nodes.push(node);
                    pos = end;
                }
                Err(e) if self.strict => return Err(e),
                Err(_) => {
                    text.push_str("#{");
                    pos += 2;
                }
            }
        }
    }

    /// Recognises a closing tag accepted by `body` at `pos`.
    fn end_tag(&mut self, pos: usize, depth: usize, body: Body) -> Option<(EndTag, usize)> {
        let p = self.skip_ws(pos + 2);
        let rest = self.rest(p);
        let close = match body {
            Body::If | Body::IfElse => "/if",
            Body::Unless | Body::UnlessElse => "/unless",
            Body::Each => "/each",
            Body::Top => return None,
        };
        if starts_with_ignore_case(rest, close) {
            return self.closed(p + close.len()).map(|end| (EndTag::Close, end));
        }
        if !matches!(body, Body::If | Body::Unless) {
            return None;
        }
        if starts_with_ignore_case(rest, "else") {
            if let Some(end) = self.closed(p + 4) {
                return Some((EndTag::Else, end));
            }
        }
        if body == Body::If && starts_with_ignore_case(rest, "elseif") {
            let after = p + 6;
            if self.peek(after).is_some_and(char::is_whitespace) {
                let (cond, q) = self.cond(self.skip_ws(after), depth, false).ok()?;
                return self.closed(q).map(|end| (EndTag::ElseIf(cond), end));
            }
        }
        None
    }

    /// The position after `}` when only spaces come before it.
    fn closed(&self, p: usize) -> Option<usize> {
        let p = self.skip_ws(p);
        (self.peek(p) == Some('}')).then_some(p + 1)
    }

    /// A construct starting with `#{` at `pos`.
    fn construct(&mut self, pos: usize, depth: usize) -> PResult<(Node, usize)> {
        if depth >= self.max_depth {
            // Remembered like any failure: re-trying it from a shallower body would re-scan
            // the rest of the text once per position, which is quadratic on broken input.
            self.failed.insert(pos);
            return err(
                pos,
                format!("constructs are nested more than {} deep", self.max_depth),
            );
        }
        let after = pos + 2;
        if self.rest(after).starts_with('/') {
            return err(pos, "closing tag without a matching opening tag");
        }
        let kw_pos = self.skip_ws(after);
        let rest = self.rest(kw_pos);
        let mut keyword_error = None;
        for keyword in ["if", "unless", "each", "calc"] {
            let followed_by_space = rest
                .get(keyword.len()..)
                .and_then(|r| r.chars().next())
                .is_some_and(char::is_whitespace);
            if !(starts_with_ignore_case(rest, keyword) && followed_by_space) {
                continue;
            }
            if self.failed.contains(&pos) {
                break;
            }
            let body_pos = self.skip_ws(kw_pos + keyword.len());
            if !self.may_close(keyword, pos) {
                self.failed.insert(pos);
                keyword_error = Some(PErr {
                    offset: self.src.len(),
                    message: format!("no closing tag for `{keyword}`"),
                });
                break;
            }
            let attempt = match keyword {
                "if" => self.conditional(pos, body_pos, depth, false),
                "unless" => self.conditional(pos, body_pos, depth, true),
                "each" => self.each(pos, body_pos, depth),
                _ => self.calc(pos, body_pos, depth),
            };
            match attempt {
                Ok(done) => return Ok(done),
                Err(e) => {
                    self.failed.insert(pos);
                    keyword_error = Some(e);
                }
            }
            break;
        }
        match (self.subst(pos, depth), keyword_error) {
            (Err(e), None) => Err(e),
            (Err(_), Some(e)) => Err(e),
            // Strict parsing reports the broken `#{if}` rather than reading it as a name.
            (Ok(_), Some(e)) if self.strict => Err(e),
            (Ok(done), _) => Ok(done),
        }
    }

    /// Whether a closing tag for `keyword` appears after `pos` at all.
    fn may_close(&mut self, keyword: &str, pos: usize) -> bool {
        let slot = match keyword {
            "if" => 0,
            "unless" => 1,
            "each" => 2,
            _ => return true,
        };
        let src = self.src;
        let last = *self.last_close.get_or_insert_with(|| {
            let mut last = [None; 3];
            for (at, _) in src.match_indices("#{") {
                let rest = src[at + 2..].trim_start();
                for (i, tag) in ["/if", "/unless", "/each"].iter().enumerate() {
                    if starts_with_ignore_case(rest, tag) {
                        last[i] = Some(at);
                    }
                }
            }
            last
        });
        last[slot].is_some_and(|close| close > pos)
    }

    fn subst(&mut self, pos: usize, depth: usize) -> PResult<(Node, usize)> {
        if self.failed_subst.contains(&pos) {
            return err(pos, "expected a variable name");
        }
        let result = self.subst_uncached(pos, depth);
        if result.is_err() {
            self.failed_subst.insert(pos);
        }
        result
    }

    fn subst_uncached(&mut self, pos: usize, depth: usize) -> PResult<(Node, usize)> {
        let p = self.skip_ws(pos + 2);
        let (expr, p) = self.expr(p, depth)?;
        let end = self.expect(self.skip_ws(p), '}')?;
        let src: Arc<str> = Arc::from(&self.src[pos..end]);
        Ok((Node::Subst(Subst { expr, src }), end))
    }

    fn conditional(
        &mut self,
        pos: usize,
        p: usize,
        depth: usize,
        unless: bool,
    ) -> PResult<(Node, usize)> {
        let (cond, p) = self.cond(p, depth, unless)?;
        let head_end = self.expect(self.skip_ws(p), '}')?;
        let head: Arc<str> = Arc::from(&self.src[pos..head_end]);
        let body = if unless { Body::Unless } else { Body::If };
        let (nodes, mut p, mut tag) = self.nodes(head_end, depth + 1, body)?;
        let mut branches = vec![(cond, nodes)];
        let mut otherwise = Vec::new();
        loop {
            match tag {
                EndTag::Close => break,
                EndTag::ElseIf(cond) => {
                    let (nodes, q, t) = self.nodes(p, depth + 1, Body::If)?;
                    branches.push((cond, nodes));
                    p = q;
                    tag = t;
                }
                EndTag::Else => {
                    let last = if unless {
                        Body::UnlessElse
                    } else {
                        Body::IfElse
                    };
                    let (nodes, q, _) = self.nodes(p, depth + 1, last)?;
                    otherwise = nodes;
                    p = q;
                    break;
                }
            }
        }
        Ok((
            Node::If(If {
                branches,
                otherwise,
                head,
            }),
            p,
        ))
    }

    fn cond(&mut self, p: usize, depth: usize, negate: bool) -> PResult<(Cond, usize)> {
        let (left, p) = self.expr(p, depth)?;
        let p = self.skip_ws(p);
        let rest = self.rest(p);
        let equal = if rest.starts_with("==") {
            true
        } else if rest.starts_with("!=") {
            false
        } else {
            return Ok((
                Cond {
                    negate,
                    left,
                    compare: None,
                },
                p,
            ));
        };
        let p = self.skip_ws(p + 2);
        let (right, p) = match self.quoted(p)? {
            Some((text, q)) => (Operand::Literal(text), q),
            None => {
                let (expr, q) = self.expr(p, depth)?;
                (Operand::Expr(expr), q)
            }
        };
        Ok((
            Cond {
                negate,
                left,
                compare: Some(Compare { equal, right }),
            },
            p,
        ))
    }

    /// `"text"` or `\"text\"`; `None` when `p` starts neither.
    fn quoted(&self, p: usize) -> PResult<Option<(String, usize)>> {
        let rest = self.rest(p);
        let (open, close) = if rest.starts_with('"') {
            ("\"", "\"")
        } else if rest.starts_with("\\\"") {
            ("\\\"", "\\\"")
        } else {
            return Ok(None);
        };
        let body = &rest[open.len()..];
        match body.find(close) {
            Some(i) => Ok(Some((
                body[..i].to_string(),
                p + open.len() + i + close.len(),
            ))),
            None => err(p, "unterminated quoted text"),
        }
    }

    fn each(&mut self, pos: usize, p: usize, depth: usize) -> PResult<(Node, usize)> {
        let Some((var, p)) = self.identifier(p, true, is_ident_char) else {
            return err(p, "expected the name of the loop variable after `each`");
        };
        let p = self.skip_ws(p);
        if !starts_with_ignore_case(self.rest(p), "in") {
            return err(p, "expected `in` after the loop variable");
        }
        let p = self.skip_ws(p + 2);
        let Some((collection, p)) = self.symbol(p, depth, false)? else {
            return err(p, "expected a collection name after `in`");
        };
        let head_end = self.expect(self.skip_ws(p), '}')?;
        let head: Arc<str> = Arc::from(&self.src[pos..head_end]);
        let (body, end, _) = self.nodes(head_end, depth + 1, Body::Each)?;
        Ok((
            Node::Each(Each {
                var,
                collection,
                body,
                head,
            }),
            end,
        ))
    }

    fn calc(&mut self, pos: usize, p: usize, depth: usize) -> PResult<(Node, usize)> {
        let (expr, p) = self.calc_sum(p, depth)?;
        let end = self.expect(self.skip_ws(p), '}')?;
        let src: Arc<str> = Arc::from(&self.src[pos..end]);
        Ok((Node::Calc(Calc { expr, src }), end))
    }

    fn calc_sum(&mut self, p: usize, depth: usize) -> PResult<(CalcExpr, usize)> {
        self.calc_chain(p, depth, true)
    }

    /// A run of `+`/`-` (`additive`) or of `*`/`/`/`%` operands.
    fn calc_chain(&mut self, p: usize, depth: usize, additive: bool) -> PResult<(CalcExpr, usize)> {
        let operand = |parser: &mut Self, p: usize| {
            if additive {
                parser.calc_chain(p, depth, false)
            } else {
                parser.calc_factor(p, depth)
            }
        };
        let (first, mut p) = operand(self, p)?;
        let mut rest = Vec::new();
        loop {
            let q = self.skip_ws(p);
            let op = match (self.peek(q), additive) {
                (Some('+'), true) => CalcOp::Add,
                (Some('-'), true) => CalcOp::Sub,
                (Some('*'), false) => CalcOp::Mul,
                (Some('/'), false) => CalcOp::Div,
                (Some('%'), false) => CalcOp::Rem,
                _ => break,
            };
            let (next, r) = operand(self, q + 1)?;
            rest.push((op, next));
            p = r;
        }
        if rest.is_empty() {
            Ok((first, p))
        } else {
            Ok((CalcExpr::Chain(Box::new(first), rest), p))
        }
    }

    fn calc_factor(&mut self, p: usize, depth: usize) -> PResult<(CalcExpr, usize)> {
        if depth >= self.max_depth {
            return err(
                p,
                format!("calculation is nested more than {} deep", self.max_depth),
            );
        }
        let p = self.skip_ws(p);
        let rest = self.rest(p);
        match self.peek(p) {
            Some('(') => {
                let (inner, q) = self.calc_sum(p + 1, depth + 1)?;
                let q = self.expect(self.skip_ws(q), ')')?;
                Ok((inner, q))
            }
            Some('-') => {
                let (inner, q) = self.calc_factor(p + 1, depth + 1)?;
                Ok((CalcExpr::Neg(Box::new(inner)), q))
            }
            Some('{') => {
                let q = self.skip_ws(p + 1);
                let Some((symbol, q)) = self.symbol(q, depth, false)? else {
                    return err(q, "expected a variable name inside `{}`");
                };
                let q = self.expect(self.skip_ws(q), '}')?;
                Ok((CalcExpr::Var(symbol), q))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                match rest[..len].parse::<f64>() {
                    Ok(n) if n.is_finite() => Ok((CalcExpr::Number(n), p + len)),
                    _ => err(p, "invalid number"),
                }
            }
            Some(c) if c.is_alphabetic() || c == '_' => match self.symbol(p, depth, true)? {
                Some((symbol, q)) => Ok((CalcExpr::Var(symbol), q)),
                None => err(p, "expected a number or variable name"),
            },
            _ => err(p, "expected a number or variable name"),
        }
    }

    /// A variable reference with optional filters; fails when there is neither.
    fn expr(&mut self, p: usize, depth: usize) -> PResult<(Expr, usize)> {
        let p = self.skip_ws(p);
        let (symbol, mut p) = match self.symbol(p, depth, false)? {
            Some((symbol, q)) => (Some(symbol), q),
            None => (None, p),
        };
        let mut filters = Vec::new();
        loop {
            let q = self.skip_ws(p);
            if self.peek(q) != Some('|') {
                break;
            }
            let q = self.skip_ws(q + 1);
            let Some((name, q)) = self.identifier(q, false, is_ident_char) else {
                return err(q, "expected a filter name after `|`");
            };
            let (args, q) = self.filter_args(q, depth)?;
            filters.push(Filter {
                name: name.to_lowercase(),
                args,
            });
            p = q;
        }
        if symbol.is_none() && filters.is_empty() {
            return err(p, "expected a variable name");
        }
        Ok((Expr { symbol, filters }, p))
    }

    fn filter_args(&mut self, mut p: usize, depth: usize) -> PResult<(Vec<Arg>, usize)> {
        let mut args = Vec::new();
        loop {
            let q = self.skip_ws(p);
            let rest = self.rest(q);
            if rest.is_empty()
                || rest.starts_with(['}', '|'])
                || rest.starts_with("==")
                || rest.starts_with("!=")
            {
                return Ok((args, p));
            }
            if rest.starts_with("#{") {
                let (node, r) = self.construct(q, depth + 1)?;
                args.push(Arg::Node(Box::new(node)));
                p = r;
                continue;
            }
            if let Some((text, r)) = self.quoted(q)? {
                args.push(Arg::Text(text));
                p = r;
                continue;
            }
            let len = rest
                .char_indices()
                .find(|&(i, c)| {
                    c.is_whitespace() || matches!(c, '}' | '|' | '"') || rest[i..].starts_with("#{")
                })
                .map_or(rest.len(), |(i, _)| i);
            if len == 0 {
                return err(q, "unexpected character in filter arguments");
            }
            args.push(Arg::Text(rest[..len].to_string()));
            p = q + len;
        }
    }

    /// An identifier: characters accepted by `allowed`, plus inner spaces when `with_spaces`.
    /// Spaces before `|`, `}` or a keyword (`in`, `==`, `!=`) end it; the result is trimmed.
    fn identifier(
        &self,
        p: usize,
        with_spaces: bool,
        allowed: fn(char) -> bool,
    ) -> Option<(String, usize)> {
        let rest = self.rest(p);
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if allowed(c) {
                end = i + c.len_utf8();
            } else if with_spaces && c.is_whitespace() {
                let after = &rest[i + c.len_utf8()..];
                if after.starts_with(['|', '}']) || keyword_follows(after) {
                    break;
                }
                end = i + c.len_utf8();
            } else {
                break;
            }
        }
        let text = rest[..end].trim();
        if text.is_empty() {
            None
        } else {
            Some((text.to_string(), p + end))
        }
    }

    /// A dotted, indexed variable name; `None` when `p` does not start one.
    /// In a calculation (`calc`), names have no spaces and no parentheses.
    fn symbol(&mut self, p: usize, depth: usize, calc: bool) -> PResult<Option<(Symbol, usize)>> {
        let (with_spaces, allowed): (bool, fn(char) -> bool) = if calc {
            (false, is_calc_ident_char)
        } else {
            (true, is_ident_char)
        };
        let Some((first, mut p)) = self.identifier(p, with_spaces, allowed) else {
            return Ok(None);
        };
        let mut steps = vec![Step::Ident(first)];
        loop {
            match self.peek(p) {
                Some('.') => match self.identifier(p + 1, with_spaces, allowed) {
                    Some((name, q)) => {
                        steps.push(Step::Ident(name));
                        p = q;
                    }
                    None => break,
                },
                Some('[') => {
                    let (step, q) = self.indexer(p, depth)?;
                    steps.push(step);
                    p = q;
                }
                _ => break,
            }
        }
        Ok(Some((Symbol { steps }, p)))
    }

    /// `[#{Name}]` or `[text]`, where the text may contain balanced brackets.
    fn indexer(&mut self, p: usize, depth: usize) -> PResult<(Step, usize)> {
        let inner = self.skip_ws(p + 1);
        if self.rest(inner).starts_with("#{") {
            if let Ok((Node::Subst(subst), q)) = self.subst_at_depth(inner, depth + 1) {
                let q = self.skip_ws(q);
                if subst.expr.filters.is_empty() && self.peek(q) == Some(']') {
                    if let Some(symbol) = subst.expr.symbol {
                        return Ok((Step::SymbolIndex(symbol), q + 1));
                    }
                }
            }
        }
        match self.matching_bracket(p) {
            Some(close) => {
                let text = self.src[p + 1..close].trim().to_string();
                Ok((Step::Index(text), close + 1))
            }
            None => err(p, "unterminated index: expected `]`"),
        }
    }

    /// The `]` matching the `[` at `open`, counting nested brackets. Results are remembered,
    /// so scanning is linear overall even when many indexes are left open.
    fn matching_bracket(&mut self, open: usize) -> Option<usize> {
        if let Some(&known) = self.brackets.get(&open) {
            return known;
        }
        let bytes = self.src.as_bytes();
        let mut stack = vec![open];
        let mut pos = open + 1;
        loop {
            let Some(offset) = bytes
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == b'[' || b == b']'))
            else {
                for unmatched in stack {
                    self.brackets.insert(unmatched, None);
                }
                return None;
            };
            let q = pos + offset;
            if bytes[q] == b'[' {
                match self.brackets.get(&q) {
                    Some(Some(close)) => pos = close + 1,
                    Some(None) => {
                        for unmatched in stack {
                            self.brackets.insert(unmatched, None);
                        }
                        return None;
                    }
                    None => {
                        stack.push(q);
                        pos = q + 1;
                    }
                }
            } else {
                let top = stack.pop()?;
                self.brackets.insert(top, Some(q));
                if stack.is_empty() {
                    return Some(q);
                }
                pos = q + 1;
            }
        }
    }

    fn subst_at_depth(&mut self, pos: usize, depth: usize) -> PResult<(Node, usize)> {
        if depth >= self.max_depth {
            self.failed_subst.insert(pos);
            return err(
                pos,
                format!("constructs are nested more than {} deep", self.max_depth),
            );
        }
        self.subst(pos, depth)
    }
}

fn flush(text: &mut String, nodes: &mut Nodes) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text)));
    }
}
