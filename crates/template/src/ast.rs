//! The parsed form of a template: what the parser produces and the evaluator walks.

use std::sync::Arc;

/// A sequence of template nodes.
pub(crate) type Nodes = Vec<Node>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Literal text, with `##{` escapes already reduced.
    Text(String),
    /// `#{Name | Filter args}`.
    Subst(Subst),
    /// `#{if}` / `#{unless}` with optional `#{elseif}` branches and `#{else}`.
    If(If),
    /// `#{each x in Collection}`.
    Each(Each),
    /// `#{calc A + 1}`.
    Calc(Calc),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subst {
    pub expr: Expr,
    /// The token exactly as written, echoed when it cannot be evaluated.
    pub src: Arc<str>,
}

/// A variable reference followed by zero or more filters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub symbol: Option<Symbol>,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter {
    /// Lower-cased filter name.
    pub name: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    /// A nested construct such as `#{Other}`, evaluated to text.
    Node(Box<Node>),
}

/// A variable name split into steps: `A.B[x]` is `[Ident(A), Ident(B), Index(x)]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Symbol {
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Ident(String),
    Index(String),
    /// `[#{Other}]`: the index is the value of another variable.
    SymbolIndex(Symbol),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct If {
    /// Conditions tried in order; the first that holds selects its body.
    pub branches: Vec<(Cond, Nodes)>,
    pub otherwise: Nodes,
    /// The opening tag, for error messages.
    pub head: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cond {
    /// `unless` inverts the whole condition.
    pub negate: bool,
    pub left: Expr,
    pub compare: Option<Compare>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compare {
    pub equal: bool,
    pub right: Operand,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Each {
    pub var: String,
    pub collection: Symbol,
    pub body: Nodes,
    pub head: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Calc {
    pub expr: CalcExpr,
    pub src: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CalcOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A calculation. Runs of same-precedence operators are kept flat (`a + b - c` is one
/// `Chain`), so the tree is only as deep as the parentheses, however long the expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CalcExpr {
    Number(f64),
    Var(Symbol),
    Neg(Box<CalcExpr>),
    Chain(Box<CalcExpr>, Vec<(CalcOp, CalcExpr)>),
}

impl Symbol {
    /// The name as written in a variable list, with symbol indexes shown as `#{...}`.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Ident(name) => {
                    if i > 0 {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(index) => {
                    out.push('[');
                    out.push_str(index);
                    out.push(']');
                }
                Step::SymbolIndex(inner) => {
                    out.push_str("[#{");
                    out.push_str(&inner.display());
                    out.push_str("}]");
                }
            }
        }
        out
    }
}
