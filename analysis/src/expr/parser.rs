//! Precedence-climbing parser with expr's operator table (loosest first):
//!
//! ```text
//!   |                         0  pipe: x | f(y) is f(x, y)
//!   or ||                    10
//!   and &&                   15
//!   == != < > <= >= in matches contains startsWith endsWith   20
//!   ..                       25
//!   + -                      30
//!   * / %                    60
//!   unary not !              50  (so `not a == b` is `(not a) == b`)
//!   unary - +                90
//!   ** ^                    100  right-associative
//!   ??                      500
//!   ?:  ternary, only at the outermost level of an expression
//! ```
//!
//! Recursion is bounded by `Limits::max_depth`, both while parsing and in the height of the
//! tree, so neither parsing nor evaluation can exhaust the stack.

use regex::Regex;

use super::Limits;
use super::ast::{BinaryOp, Node, NodeKind, Pointer, UnaryOp};
use super::error::Fault;
use super::lexer::{Kind, Token, is_name_start, lex};

#[derive(Clone, Copy)]
enum Infix {
    Binary(BinaryOp),
    Matches,
    Pipe,
}

/// Operator, precedence, right-associative.
fn infix(op: &str) -> Option<(Infix, u32, bool)> {
    let (infix, precedence) = match op {
        "|" => (Infix::Pipe, 0),
        "or" | "||" => (Infix::Binary(BinaryOp::Or), 10),
        "and" | "&&" => (Infix::Binary(BinaryOp::And), 15),
        "==" => (Infix::Binary(BinaryOp::Eq), 20),
        "!=" => (Infix::Binary(BinaryOp::Ne), 20),
        "<" => (Infix::Binary(BinaryOp::Lt), 20),
        ">" => (Infix::Binary(BinaryOp::Gt), 20),
        "<=" => (Infix::Binary(BinaryOp::Le), 20),
        ">=" => (Infix::Binary(BinaryOp::Ge), 20),
        "in" => (Infix::Binary(BinaryOp::In), 20),
        "matches" => (Infix::Matches, 20),
        "contains" => (Infix::Binary(BinaryOp::Contains), 20),
        "startsWith" => (Infix::Binary(BinaryOp::StartsWith), 20),
        "endsWith" => (Infix::Binary(BinaryOp::EndsWith), 20),
        ".." => (Infix::Binary(BinaryOp::Range), 25),
        "+" => (Infix::Binary(BinaryOp::Add), 30),
        "-" => (Infix::Binary(BinaryOp::Sub), 30),
        "*" => (Infix::Binary(BinaryOp::Mul), 60),
        "/" => (Infix::Binary(BinaryOp::Div), 60),
        "%" => (Infix::Binary(BinaryOp::Mod), 60),
        "**" | "^" => return Some((Infix::Binary(BinaryOp::Pow), 100, true)),
        "??" => (Infix::Binary(BinaryOp::Coalesce), 500),
        _ => return None,
    };
    Some((infix, precedence, false))
}

/// Operators that `not` may negate in infix position: `a not in b`.
const NEGATABLE: &[&str] = &["in", "matches", "contains", "startsWith", "endsWith"];

/// Builtins whose arguments include a predicate: (name, required args, total args).
/// The predicate is always the second argument.
const PREDICATE_BUILTINS: &[(&str, usize, usize)] = &[
    ("all", 2, 2),
    ("any", 2, 2),
    ("none", 2, 2),
    ("one", 2, 2),
    ("filter", 2, 2),
    ("map", 2, 2),
    ("find", 2, 2),
    ("findIndex", 2, 2),
    ("findLast", 2, 2),
    ("findLastIndex", 2, 2),
    ("count", 1, 2),
    ("sum", 1, 2),
];

/// Compiles a `matches` pattern with the size limits that keep it cheap.
pub(crate) fn compile_regex(pattern: &str, limits: &Limits) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(limits.max_regex_size)
        .dfa_size_limit(limits.max_regex_size)
        .build()
        .map_err(|err| {
            let reason = match err {
                // The syntax error's last line says what is wrong; the lines above draw it.
                regex::Error::Syntax(text) => text
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string(),
                other => other.to_string(),
            };
            format!("invalid regular expression {pattern:?}: {reason}")
        })
}

/// Parses a whole expression.
pub(crate) fn parse(src: &str, limits: &Limits) -> Result<Node, Fault> {
    if src.len() > limits.max_source_len {
        return Err(Fault::new(
            limits.max_source_len,
            format!(
                "expression is {} bytes long, more than the limit of {} bytes",
                src.len(),
                limits.max_source_len
            ),
        ));
    }
    let tokens = lex(src)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        limits,
        nesting: 0,
        predicates: 0,
    };
    let node = parser.expression(0)?;
    if parser.current().kind != Kind::Eof {
        return Err(parser.unexpected());
    }
    Ok(node)
}

struct Parser<'l> {
    tokens: Vec<Token>,
    pos: usize,
    limits: &'l Limits,
    /// Current recursion depth of `expression`.
    nesting: usize,
    /// How many predicates (`{...}`) enclose the current position.
    predicates: usize,
}

impl Parser<'_> {
    fn current(&self) -> &Token {
        // `lex` always ends with Eof and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek(&self, n: usize) -> &Token {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) {
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
    }

    fn unexpected_token(token: &Token) -> Fault {
        if token.kind == Kind::Eof {
            Fault::new(token.offset, "unexpected end of expression")
        } else {
            let hint = if token.is_op("=") {
                " (use == to compare)"
            } else {
                ""
            };
            Fault::new(
                token.offset,
                format!("unexpected token {}{hint}", token.describe()),
            )
        }
    }

    fn unexpected(&self) -> Fault {
        Self::unexpected_token(self.current())
    }

    fn expect_bracket(&mut self, bracket: &str) -> Result<(), Fault> {
        if self.current().is_bracket(bracket) {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Fault> {
        if self.current().is_op(op) {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn node(&self, kind: NodeKind, offset: usize) -> Result<Node, Fault> {
        let node = Node::new(kind, offset);
        if node.height > self.limits.max_depth {
            return Err(self.too_deep(offset));
        }
        Ok(node)
    }

    fn too_deep(&self, offset: usize) -> Fault {
        Fault::new(
            offset,
            format!(
                "expression is nested too deeply (more than {} levels)",
                self.limits.max_depth
            ),
        )
    }

    fn expression(&mut self, precedence: u32) -> Result<Node, Fault> {
        self.nesting += 1;
        if self.nesting > self.limits.max_depth {
            return Err(self.too_deep(self.current().offset));
        }
        let mut left = self.primary()?;
        loop {
            let token = self.current().clone();
            if token.kind != Kind::Operator {
                break;
            }
            let (op_token, negated) = if token.value == "not" {
                let next = self.peek(1).clone();
                if next.kind == Kind::Operator && NEGATABLE.contains(&next.value.as_str()) {
                    (next, true)
                } else {
                    return Err(Self::unexpected_token(&next));
                }
            } else {
                (token.clone(), false)
            };
            let Some((infix, op_precedence, right_assoc)) = infix(&op_token.value) else {
                break;
            };
            if op_precedence < precedence {
                break;
            }
            self.advance();
            if negated {
                self.advance();
            }
            if let Infix::Pipe = infix {
                let name = self.current().clone();
                if name.kind != Kind::Identifier {
                    return Err(self.unexpected());
                }
                self.advance();
                if !self.current().is_bracket("(") {
                    return Err(self.unexpected());
                }
                left = self.call(&name, vec![left])?;
                continue;
            }
            let next_precedence = if right_assoc {
                op_precedence
            } else {
                op_precedence + 1
            };
            let right = self.expression(next_precedence)?;
            let mut node = match infix {
                Infix::Binary(op) => self.node(
                    NodeKind::Binary {
                        op,
                        left: Box::new(left),
                        right: Box::new(right),
                    },
                    op_token.offset,
                )?,
                Infix::Matches => self.matches(left, right, op_token.offset)?,
                Infix::Pipe => unreachable!("handled above"),
            };
            if negated {
                node = self.node(
                    NodeKind::Unary {
                        op: UnaryOp::Not,
                        operand: Box::new(node),
                    },
                    token.offset,
                )?;
            }
            left = node;
        }
        if precedence == 0 {
            left = self.conditional(left)?;
        }
        self.nesting -= 1;
        Ok(left)
    }

    fn matches(&self, subject: Node, pattern: Node, offset: usize) -> Result<Node, Fault> {
        let compiled = match &pattern.kind {
            NodeKind::Str(text) => Some(
                compile_regex(text, self.limits)
                    .map_err(|message| Fault::new(pattern.offset, message))?,
            ),
            _ => None,
        };
        self.node(
            NodeKind::Matches {
                subject: Box::new(subject),
                pattern: Box::new(pattern),
                compiled,
            },
            offset,
        )
    }

    fn conditional(&mut self, mut node: Node) -> Result<Node, Fault> {
        while self.current().is_op("?") {
            let offset = self.current().offset;
            self.advance();
            let then = if self.current().is_op(":") {
                self.advance();
                None
            } else {
                let then = self.expression(0)?;
                self.expect_op(":")?;
                Some(Box::new(then))
            };
            let otherwise = self.expression(0)?;
            node = self.node(
                NodeKind::Conditional {
                    cond: Box::new(node),
                    then,
                    otherwise: Box::new(otherwise),
                },
                offset,
            )?;
        }
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, Fault> {
        let token = self.current().clone();
        if token.kind == Kind::Operator {
            let unary = match token.value.as_str() {
                "not" | "!" => Some((UnaryOp::Not, 50)),
                "-" => Some((UnaryOp::Negate, 90)),
                "+" => Some((UnaryOp::Plus, 90)),
                _ => None,
            };
            if let Some((op, precedence)) = unary {
                self.advance();
                let operand = self.expression(precedence)?;
                let node = self.node(
                    NodeKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                    token.offset,
                )?;
                return self.postfix(node);
            }
        }
        if token.is_bracket("(") {
            self.advance();
            let inner = self.expression(0)?;
            self.expect_bracket(")")?;
            return self.postfix(inner);
        }
        if token.kind == Kind::Pointer || token.is_op(".") {
            if self.predicates == 0 {
                return Err(Fault::new(
                    token.offset,
                    "cannot use pointer accessor outside predicate",
                ));
            }
            let pointer = match token.value.as_str() {
                "" | "." => Pointer::Element,
                "index" => Pointer::Index,
                other => {
                    return Err(Fault::new(
                        token.offset,
                        format!("unknown pointer #{other} (use # or #index)"),
                    ));
                }
            };
            // `.name` is short for `#.name`: leave the dot for `postfix`.
            if token.kind == Kind::Pointer {
                self.advance();
            }
            let node = self.node(NodeKind::Pointer(pointer), token.offset)?;
            return self.postfix(node);
        }
        self.secondary()
    }

    fn secondary(&mut self) -> Result<Node, Fault> {
        let token = self.current().clone();
        let node = match token.kind {
            Kind::Identifier => {
                self.advance();
                match token.value.as_str() {
                    "true" => return self.node(NodeKind::Bool(true), token.offset),
                    "false" => return self.node(NodeKind::Bool(false), token.offset),
                    "nil" => return self.node(NodeKind::Nil, token.offset),
                    _ if self.current().is_bracket("(") => self.call(&token, Vec::new())?,
                    _ => self.node(NodeKind::Ident(token.value.clone()), token.offset)?,
                }
            }
            Kind::Number => {
                self.advance();
                let kind = number(&token)?;
                return self.node(kind, token.offset);
            }
            Kind::String => {
                self.advance();
                self.node(NodeKind::Str(token.value.clone()), token.offset)?
            }
            Kind::Bracket if token.value == "[" => self.array()?,
            Kind::Bracket if token.value == "{" => self.map()?,
            _ => return Err(self.unexpected()),
        };
        self.postfix(node)
    }

    fn call(&mut self, name: &Token, mut args: Vec<Node>) -> Result<Node, Fault> {
        let spec = PREDICATE_BUILTINS
            .iter()
            .find(|(builtin, _, _)| *builtin == name.value);
        if let Some(&(_, required, total)) = spec {
            self.expect_bracket("(")?;
            let piped = args.len();
            for position in piped..total {
                if self.current().is_bracket(")") {
                    if position >= required {
                        break;
                    }
                    return Err(Fault::new(
                        self.current().offset,
                        format!(
                            "{}() expects at least {} arguments, got {}",
                            name.value, required, position
                        ),
                    ));
                }
                if position > piped {
                    self.expect_op(",")?;
                }
                let arg = if position == 1 {
                    self.predicate()?
                } else {
                    self.expression(0)?
                };
                args.push(arg);
            }
            if self.current().is_op(",") {
                self.advance();
            }
            self.expect_bracket(")")?;
        } else {
            self.arguments(&mut args)?;
        }
        self.node(
            NodeKind::Call {
                name: name.value.clone(),
                args,
            },
            name.offset,
        )
    }

    fn arguments(&mut self, args: &mut Vec<Node>) -> Result<(), Fault> {
        self.expect_bracket("(")?;
        let piped = args.len();
        while !self.current().is_bracket(")") {
            if args.len() > piped {
                self.expect_op(",")?;
                if self.current().is_bracket(")") {
                    break;
                }
            }
            args.push(self.expression(0)?);
        }
        self.expect_bracket(")")
    }

    fn predicate(&mut self) -> Result<Node, Fault> {
        let offset = self.current().offset;
        let braced = self.current().is_bracket("{");
        if braced {
            self.advance();
        }
        self.predicates += 1;
        let body = self.expression(0)?;
        self.predicates -= 1;
        if braced {
            self.expect_bracket("}")?;
        }
        self.node(NodeKind::Predicate(Box::new(body)), offset)
    }

    fn array(&mut self) -> Result<Node, Fault> {
        let offset = self.current().offset;
        self.expect_bracket("[")?;
        let mut items = Vec::new();
        while !self.current().is_bracket("]") {
            if !items.is_empty() {
                self.expect_op(",")?;
                if self.current().is_bracket("]") {
                    break;
                }
            }
            items.push(self.expression(0)?);
        }
        self.expect_bracket("]")?;
        self.node(NodeKind::Array(items), offset)
    }

    fn map(&mut self) -> Result<Node, Fault> {
        let offset = self.current().offset;
        self.expect_bracket("{")?;
        let mut pairs = Vec::new();
        while !self.current().is_bracket("}") {
            if !pairs.is_empty() {
                self.expect_op(",")?;
                if self.current().is_bracket("}") {
                    break;
                }
            }
            let token = self.current().clone();
            let key = match token.kind {
                Kind::Number | Kind::String | Kind::Identifier => {
                    self.advance();
                    self.node(NodeKind::Str(token.value.clone()), token.offset)?
                }
                Kind::Bracket if token.value == "(" => self.expression(0)?,
                _ => {
                    return Err(Fault::new(
                        token.offset,
                        format!(
                            "a map key must be a quoted string, a number, a name, or an \
                             expression in parentheses (unexpected token {})",
                            token.describe()
                        ),
                    ));
                }
            };
            self.expect_op(":")?;
            let value = self.expression(0)?;
            pairs.push((key, value));
        }
        self.expect_bracket("}")?;
        self.node(NodeKind::Map(pairs), offset)
    }

    fn postfix(&mut self, mut node: Node) -> Result<Node, Fault> {
        loop {
            let token = self.current().clone();
            if token.is_op(".") || token.is_op("?.") {
                let optional = token.value == "?.";
                self.advance();
                if optional && self.current().is_bracket("[") {
                    node = self.index(node, true)?;
                    continue;
                }
                let name = self.current().clone();
                let is_name = name.kind == Kind::Identifier
                    || (name.kind == Kind::Operator
                        && name.value.chars().next().is_some_and(is_name_start));
                if !is_name {
                    return Err(Fault::new(name.offset, "expected name"));
                }
                self.advance();
                if self.current().is_bracket("(") {
                    return Err(Fault::new(
                        name.offset,
                        format!(
                            "method calls are not supported: .{}() (use a function such as \
                             len(x) instead)",
                            name.value
                        ),
                    ));
                }
                let property = self.node(NodeKind::Str(name.value.clone()), name.offset)?;
                node = self.member(node, property, optional, name.offset)?;
            } else if token.is_bracket("[") {
                node = self.index(node, false)?;
            } else {
                return Ok(node);
            }
        }
    }

    /// `[i]`, `[from:to]`, after `[` or `?.[`.
    fn index(&mut self, object: Node, optional: bool) -> Result<Node, Fault> {
        let offset = self.current().offset;
        self.expect_bracket("[")?;
        let from = if self.current().is_op(":") {
            None
        } else {
            Some(self.expression(0)?)
        };
        if self.current().is_op(":") {
            self.advance();
            let to = if self.current().is_bracket("]") {
                None
            } else {
                Some(Box::new(self.expression(0)?))
            };
            self.expect_bracket("]")?;
            return self.node(
                NodeKind::Slice {
                    object: Box::new(object),
                    from: from.map(Box::new),
                    to,
                },
                offset,
            );
        }
        self.expect_bracket("]")?;
        let Some(property) = from else {
            return Err(Self::unexpected_token(self.current()));
        };
        self.member(object, property, optional, offset)
    }

    fn member(
        &self,
        object: Node,
        property: Node,
        optional: bool,
        offset: usize,
    ) -> Result<Node, Fault> {
        let (object, chained) = match object.kind {
            NodeKind::Chain(inner) => (*inner, true),
            kind => (
                Node {
                    kind,
                    offset: object.offset,
                    height: object.height,
                },
                false,
            ),
        };
        let member = self.node(
            NodeKind::Member {
                object: Box::new(object),
                property: Box::new(property),
                optional,
            },
            offset,
        )?;
        if chained || optional {
            self.node(NodeKind::Chain(Box::new(member)), offset)
        } else {
            Ok(member)
        }
    }
}

/// The value of a number token, with expr's rules: `_` separators, `0x`, `0o`, `0b`
/// prefixes, and a float whenever there is a `.` or an exponent.
fn number(token: &Token) -> Result<NodeKind, Fault> {
    let text = token.value.replace('_', "");
    let lower = text.to_ascii_lowercase();
    let invalid = |what: &str| Fault::new(token.offset, format!("invalid {what} literal {text}"));
    let radix = |digits: &str, radix: u32, what: &str| {
        i64::from_str_radix(digits, radix)
            .map(NodeKind::Int)
            .map_err(|_| invalid(what))
    };
    if let Some(hex) = lower.strip_prefix("0x") {
        return radix(hex, 16, "hex");
    }
    if lower.contains('.') || lower.contains('e') {
        let value: f64 = lower.parse().map_err(|_| invalid("float"))?;
        if value.is_infinite() {
            return Err(Fault::new(
                token.offset,
                format!("float literal {text} is too large"),
            ));
        }
        return Ok(NodeKind::Float(value));
    }
    if let Some(binary) = lower.strip_prefix("0b") {
        return radix(binary, 2, "binary");
    }
    if let Some(octal) = lower.strip_prefix("0o") {
        return radix(octal, 8, "octal");
    }
    lower
        .parse::<i64>()
        .map(NodeKind::Int)
        .map_err(|_| invalid("integer"))
}
