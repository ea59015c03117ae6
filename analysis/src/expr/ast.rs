//! The syntax tree a condition parses into.

use regex::Regex;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Byte offset of the token the node stands for (the operator of a binary node).
    pub offset: usize,
    /// Levels of nodes below and including this one; bounded by `Limits::max_depth`.
    pub height: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Not,
    Negate,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Contains,
    StartsWith,
    EndsWith,
    Range,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
}

impl BinaryOp {
    /// The operator as written (the word form for `and`/`or` is reported as `&&`/`||`).
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Gt => ">",
            BinaryOp::Le => "<=",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Contains => "contains",
            BinaryOp::StartsWith => "startsWith",
            BinaryOp::EndsWith => "endsWith",
            BinaryOp::Range => "..",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "**",
            BinaryOp::Coalesce => "??",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    /// `{key: value}`; keys evaluate to strings.
    Map(Vec<(Node, Node)>),
    /// A variable of the environment, such as `result`.
    Ident(String),
    /// `#` (the element a predicate is looking at) or `#index` (its position).
    Pointer(Pointer),
    /// `a.b`, `a["b"]`, `a[0]`, and their `?.` forms.
    Member {
        object: Box<Node>,
        property: Box<Node>,
        optional: bool,
    },
    /// `a[from:to]`.
    Slice {
        object: Box<Node>,
        from: Option<Box<Node>>,
        to: Option<Box<Node>>,
    },
    /// A member chain containing `?.`: evaluates to `nil` as soon as an optional step meets
    /// `nil`.
    Chain(Box<Node>),
    Unary {
        op: UnaryOp,
        operand: Box<Node>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `subject matches pattern`; a literal pattern is compiled once, when parsing.
    Matches {
        subject: Box<Node>,
        pattern: Box<Node>,
        compiled: Option<Regex>,
    },
    /// `cond ? then : otherwise`; `cond ?: otherwise` has no `then` and yields `cond`.
    Conditional {
        cond: Box<Node>,
        then: Option<Box<Node>>,
        otherwise: Box<Node>,
    },
    /// A function call: a builtin or one of Argo's functions.
    Call {
        name: String,
        args: Vec<Node>,
    },
    /// The `{...}` argument of `all`, `filter`, `map`, ...; evaluated once per element.
    Predicate(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pointer {
    Element,
    Index,
}

impl Node {
    pub fn new(kind: NodeKind, offset: usize) -> Node {
        let mut node = Node {
            kind,
            offset,
            height: 1,
        };
        node.height = 1 + node.children().map(|c| c.height).max().unwrap_or(0);
        node
    }

    /// The direct children, in evaluation order.
    pub fn children(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        match &self.kind {
            NodeKind::Nil
            | NodeKind::Bool(_)
            | NodeKind::Int(_)
            | NodeKind::Float(_)
            | NodeKind::Str(_)
            | NodeKind::Ident(_)
            | NodeKind::Pointer(_) => Box::new(std::iter::empty()),
            NodeKind::Array(items) | NodeKind::Call { args: items, .. } => Box::new(items.iter()),
            NodeKind::Map(pairs) => Box::new(pairs.iter().flat_map(|(k, v)| [k, v])),
            NodeKind::Member {
                object, property, ..
            } => Box::new([&**object, &**property].into_iter()),
            NodeKind::Slice { object, from, to } => Box::new(
                std::iter::once(&**object)
                    .chain(from.as_deref())
                    .chain(to.as_deref()),
            ),
            NodeKind::Chain(inner) | NodeKind::Predicate(inner) => {
                Box::new(std::iter::once(&**inner))
            }
            NodeKind::Unary { operand, .. } => Box::new(std::iter::once(&**operand)),
            NodeKind::Binary { left, right, .. } => Box::new([&**left, &**right].into_iter()),
            NodeKind::Matches {
                subject, pattern, ..
            } => Box::new([&**subject, &**pattern].into_iter()),
            NodeKind::Conditional {
                cond,
                then,
                otherwise,
            } => Box::new(
                std::iter::once(&**cond)
                    .chain(then.as_deref())
                    .chain(std::iter::once(&**otherwise)),
            ),
        }
    }
}
