//! The checks expr makes when it compiles an expression against its environment, before
//! anything runs: every name must exist, every function must be called with a fitting number
//! of arguments, and operators must not combine types that are known to be incompatible.
//!
//! Like expr, types are only known where they are certain: literals, `result` itself, and the
//! results of operators and functions. Anything read out of an array or a map is of unknown
//! type and is checked when the expression runs. So `result == "1"` is rejected for a numeric
//! `result` even in a branch that would never run, while `result.major == "1"` compares.

use super::Env;
use super::ast::{BinaryOp, Node, NodeKind, Pointer, UnaryOp};
use super::builtins::{ARGO_FUNCTIONS, builtin};
use super::error::Fault;
use super::value::Value;

/// What is statically known about the value of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Unknown,
    Nil,
    Bool,
    Int,
    Float,
    String,
    Array,
    Map,
}

impl Ty {
    fn of(value: &Value) -> Ty {
        match value {
            Value::Nil => Ty::Nil,
            Value::Bool(_) => Ty::Bool,
            Value::Int(_) => Ty::Int,
            Value::Float(_) => Ty::Float,
            Value::String(_) => Ty::String,
            Value::Array(_) => Ty::Array,
            Value::Map(_) => Ty::Map,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Unknown => "unknown",
            Ty::Nil => "nil",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::String => "string",
            Ty::Array => "array",
            Ty::Map => "map",
        }
    }

    /// Known, and not `nil` (which expr lets through most checks).
    fn known(self) -> bool {
        !matches!(self, Ty::Unknown | Ty::Nil)
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }

    /// Could be `want` at run time.
    fn may_be(self, want: Ty) -> bool {
        !self.known() || self == want
    }

    fn may_be_number(self) -> bool {
        !self.known() || self.numeric()
    }
}

pub(crate) fn check(node: &Node, env: &Env) -> Result<Ty, Fault> {
    Checker { env }.ty(node)
}

struct Checker<'e> {
    env: &'e Env,
}

fn mismatch(op: &str, left: Ty, right: Ty, offset: usize) -> Fault {
    Fault::new(
        offset,
        format!(
            "invalid operation: {op} (mismatched types {} and {})",
            left.name(),
            right.name()
        ),
    )
}

impl Checker<'_> {
    fn ty(&self, node: &Node) -> Result<Ty, Fault> {
        let offset = node.offset;
        let ty = match &node.kind {
            NodeKind::Nil => Ty::Nil,
            NodeKind::Bool(_) => Ty::Bool,
            NodeKind::Int(_) => Ty::Int,
            NodeKind::Float(_) => Ty::Float,
            NodeKind::Str(_) => Ty::String,
            NodeKind::Array(items) => {
                for item in items {
                    self.ty(item)?;
                }
                Ty::Array
            }
            NodeKind::Map(pairs) => {
                for (key, value) in pairs {
                    let key_ty = self.ty(key)?;
                    if !key_ty.may_be(Ty::String) {
                        return Err(Fault::new(
                            key.offset,
                            format!("map keys must be strings, not {}", key_ty.name()),
                        ));
                    }
                    self.ty(value)?;
                }
                Ty::Map
            }
            NodeKind::Ident(name) => match self.env.get(name) {
                Some(value) => Ty::of(value),
                None if builtin(name).is_some() => {
                    return Err(Fault::new(
                        offset,
                        format!("{name} is a function: call it, as in {name}(...)"),
                    ));
                }
                None => return Err(Fault::new(offset, format!("unknown name {name}"))),
            },
            NodeKind::Pointer(Pointer::Element) => Ty::Unknown,
            NodeKind::Pointer(Pointer::Index) => Ty::Int,
            NodeKind::Member {
                object, property, ..
            } => {
                self.ty(object)?;
                self.ty(property)?;
                Ty::Unknown
            }
            NodeKind::Slice { object, from, to } => {
                let object_ty = self.ty(object)?;
                for bound in [from, to].into_iter().flatten() {
                    let bound_ty = self.ty(bound)?;
                    if !bound_ty.may_be_number() {
                        return Err(Fault::new(
                            bound.offset,
                            format!("slice bounds must be numbers, not {}", bound_ty.name()),
                        ));
                    }
                }
                match object_ty {
                    Ty::String | Ty::Array => object_ty,
                    _ => Ty::Unknown,
                }
            }
            NodeKind::Chain(inner) => {
                self.ty(inner)?;
                Ty::Unknown
            }
            NodeKind::Predicate(body) => {
                self.ty(body)?;
                Ty::Unknown
            }
            NodeKind::Unary { op, operand } => {
                let operand_ty = self.ty(operand)?;
                match op {
                    UnaryOp::Not => {
                        if !operand_ty.may_be(Ty::Bool) {
                            return Err(Fault::new(
                                offset,
                                format!(
                                    "invalid operation: ! (mismatched type {})",
                                    operand_ty.name()
                                ),
                            ));
                        }
                        Ty::Bool
                    }
                    UnaryOp::Negate | UnaryOp::Plus => {
                        if !operand_ty.may_be_number() {
                            let symbol = if *op == UnaryOp::Negate { "-" } else { "+" };
                            return Err(Fault::new(
                                offset,
                                format!(
                                    "invalid operation: {symbol} (mismatched type {})",
                                    operand_ty.name()
                                ),
                            ));
                        }
                        if operand_ty.numeric() {
                            operand_ty
                        } else {
                            Ty::Unknown
                        }
                    }
                }
            }
            NodeKind::Binary { op, left, right } => {
                let l = self.ty(left)?;
                let r = self.ty(right)?;
                binary(*op, l, r, offset)?
            }
            NodeKind::Matches {
                subject, pattern, ..
            } => {
                let l = self.ty(subject)?;
                let r = self.ty(pattern)?;
                if !l.may_be(Ty::String) || !r.may_be(Ty::String) {
                    return Err(mismatch("matches", l, r, offset));
                }
                Ty::Bool
            }
            NodeKind::Conditional {
                cond,
                then,
                otherwise,
            } => {
                let cond_ty = self.ty(cond)?;
                if !cond_ty.may_be(Ty::Bool) {
                    return Err(Fault::new(
                        offset,
                        format!(
                            "non-bool expression (type {}) used as condition",
                            cond_ty.name()
                        ),
                    ));
                }
                let then_ty = match then {
                    Some(then) => self.ty(then)?,
                    None => Ty::Bool,
                };
                let otherwise_ty = self.ty(otherwise)?;
                if then_ty == otherwise_ty {
                    then_ty
                } else {
                    Ty::Unknown
                }
            }
            NodeKind::Call { name, args } => {
                let Some(function) = builtin(name) else {
                    let message = if self.env.get(name).is_some() {
                        format!("{name} is not a function")
                    } else {
                        let mut known: Vec<&str> = ARGO_FUNCTIONS.to_vec();
                        known.extend(["len", "all", "any"]);
                        format!(
                            "unknown function {name}() (functions include {}, ...)",
                            known.join(", ")
                        )
                    };
                    return Err(Fault::new(offset, message));
                };
                if args.len() < function.min_args {
                    return Err(Fault::new(
                        offset,
                        format!(
                            "not enough arguments to call {name}(): want {}, got {}",
                            function.min_args,
                            args.len()
                        ),
                    ));
                }
                if args.len() > function.max_args {
                    return Err(Fault::new(
                        offset,
                        format!(
                            "too many arguments to call {name}(): want {}, got {}",
                            function.max_args,
                            args.len()
                        ),
                    ));
                }
                for arg in args {
                    self.ty(arg)?;
                }
                function.returns
            }
        };
        Ok(ty)
    }
}

/// The type of `l op r`, or the error expr's compiler reports for it.
fn binary(op: BinaryOp, l: Ty, r: Ty, offset: usize) -> Result<Ty, Fault> {
    let fail = || Err(mismatch(op.symbol(), l, r, offset));
    let both_known = l.known() && r.known();
    let ty = match op {
        BinaryOp::Or | BinaryOp::And => {
            if !l.may_be(Ty::Bool) || !r.may_be(Ty::Bool) {
                return fail();
            }
            Ty::Bool
        }
        BinaryOp::Eq | BinaryOp::Ne => {
            let comparable = l == r || (l.numeric() && r.numeric());
            if both_known && !comparable {
                return fail();
            }
            Ty::Bool
        }
        BinaryOp::Lt | BinaryOp::Gt | BinaryOp::Le | BinaryOp::Ge => {
            let ordered = (l.may_be_number() && r.may_be_number())
                || (l.may_be(Ty::String) && r.may_be(Ty::String));
            if !ordered {
                return fail();
            }
            Ty::Bool
        }
        BinaryOp::In => {
            let container = matches!(r, Ty::Array | Ty::Map) || !r.known();
            if !container || (r == Ty::Map && !l.may_be(Ty::String)) {
                return fail();
            }
            Ty::Bool
        }
        BinaryOp::Contains | BinaryOp::StartsWith | BinaryOp::EndsWith => {
            if !l.may_be(Ty::String) || !r.may_be(Ty::String) {
                return fail();
            }
            Ty::Bool
        }
        BinaryOp::Range => {
            if !l.may_be(Ty::Int) || !r.may_be(Ty::Int) {
                return fail();
            }
            Ty::Array
        }
        BinaryOp::Add => {
            if l == Ty::String && r == Ty::String {
                Ty::String
            } else if l.may_be_number() && r.may_be_number() {
                arithmetic(l, r)
            } else if l.may_be(Ty::String) && r.may_be(Ty::String) {
                Ty::Unknown
            } else {
                return fail();
            }
        }
        BinaryOp::Sub | BinaryOp::Mul => {
            if !l.may_be_number() || !r.may_be_number() {
                return fail();
            }
            arithmetic(l, r)
        }
        BinaryOp::Div | BinaryOp::Pow => {
            if !l.may_be_number() || !r.may_be_number() {
                return fail();
            }
            Ty::Float
        }
        BinaryOp::Mod => {
            if !l.may_be(Ty::Int) || !r.may_be(Ty::Int) {
                return fail();
            }
            Ty::Int
        }
        BinaryOp::Coalesce => {
            if l.known() {
                l
            } else {
                Ty::Unknown
            }
        }
    };
    Ok(ty)
}

fn arithmetic(l: Ty, r: Ty) -> Ty {
    match (l, r) {
        (Ty::Int, Ty::Int) => Ty::Int,
        (Ty::Float, _) | (_, Ty::Float) => Ty::Float,
        _ => Ty::Unknown,
    }
}
