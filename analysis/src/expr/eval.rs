//! Evaluates a checked syntax tree against an environment.
//!
//! Values read from the environment are borrowed, not copied (`result[0]` on a long vector
//! copies one number). Every step costs from a budget (`Limits::max_steps`): each node
//! evaluated, each element a predicate visits, each element or 16 bytes of string a copy or a
//! new value takes. Running out is an error, so no expression can loop or allocate without
//! bound.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{BinaryOp, Node, NodeKind, Pointer, UnaryOp};
use super::error::Fault;
use super::parser::compile_regex;
use super::value::{Value, loose_eq};
use super::{Env, Limits};

/// Bytes of string that cost one step.
const STRING_BYTES_PER_STEP: usize = 16;

/// Steps a regex match costs besides its length: a match is much dearer than a node.
const REGEX_MATCH_STEPS: u64 = 10;

/// Why evaluation of a node stopped early.
pub(crate) enum Flow {
    Fault(Fault),
    /// A `?.` step met `nil`; the enclosing chain evaluates to `nil`.
    NilChain,
}

impl From<Fault> for Flow {
    fn from(fault: Fault) -> Self {
        Flow::Fault(fault)
    }
}

pub(crate) type Out<'v> = Result<Cow<'v, Value>, Flow>;

/// The element a predicate is looking at.
pub(crate) struct Frame<'v> {
    pub item: &'v Value,
    pub index: usize,
}

pub(crate) struct Machine<'e> {
    pub env: &'e Env,
    pub limits: &'e Limits,
    steps: u64,
}

pub(crate) fn fault<T>(offset: usize, message: impl Into<String>) -> Result<T, Flow> {
    Err(Flow::Fault(Fault::new(offset, message)))
}

/// Evaluates `root`; a `NilChain` cannot escape because every `?.` sits inside a chain node.
pub(crate) fn run(root: &Node, env: &Env, limits: &Limits) -> Result<Value, Fault> {
    let mut machine = Machine {
        env,
        limits,
        steps: 0,
    };
    match machine.eval(root, None) {
        Ok(value) => Ok(value.into_owned()),
        Err(Flow::Fault(fault)) => Err(fault),
        Err(Flow::NilChain) => Ok(Value::Nil),
    }
}

/// How an index or key finds its element.
enum Place {
    Index(usize),
    Key,
    Missing,
    Char(char),
}

impl<'e> Machine<'e> {
    /// Spends `cost` steps of the budget.
    pub fn tick(&mut self, cost: u64, offset: usize) -> Result<(), Flow> {
        self.steps = self.steps.saturating_add(cost);
        if self.steps > self.limits.max_steps {
            return fault(
                offset,
                format!(
                    "evaluation stopped after {} steps (the limit): the expression does too \
                     much work",
                    self.limits.max_steps
                ),
            );
        }
        Ok(())
    }

    /// Charges for creating a string of `len` bytes, which must fit the value size limit.
    pub fn charge_string(&mut self, len: usize, offset: usize) -> Result<(), Flow> {
        if len > self.limits.max_value_len {
            return fault(
                offset,
                format!(
                    "the string would be {len} bytes long, more than the limit of {}",
                    self.limits.max_value_len
                ),
            );
        }
        self.tick((len / STRING_BYTES_PER_STEP) as u64 + 1, offset)
    }

    /// Charges for creating an array of `len` elements, which must fit the value size limit.
    pub fn charge_array(&mut self, len: usize, offset: usize) -> Result<(), Flow> {
        if len > self.limits.max_value_len {
            return fault(
                offset,
                format!(
                    "the array would have {len} elements, more than the limit of {}",
                    self.limits.max_value_len
                ),
            );
        }
        self.tick(len as u64 + 1, offset)
    }

    /// Charges for walking or copying `value` (and everything inside it).
    pub fn charge_value(&mut self, value: &Value, offset: usize) -> Result<(), Flow> {
        let nested = |v: &Value| matches!(v, Value::String(_) | Value::Array(_) | Value::Map(_));
        match value {
            Value::String(s) => self.tick((s.len() / STRING_BYTES_PER_STEP) as u64 + 1, offset),
            Value::Array(items) => {
                self.tick(items.len() as u64 + 1, offset)?;
                items
                    .iter()
                    .filter(|item| nested(item))
                    .try_for_each(|item| self.charge_value(item, offset))
            }
            Value::Map(map) => {
                self.tick(map.len() as u64 + 1, offset)?;
                map.iter().try_for_each(|(key, item)| {
                    self.tick((key.len() / STRING_BYTES_PER_STEP) as u64, offset)?;
                    if nested(item) {
                        self.charge_value(item, offset)?;
                    }
                    Ok(())
                })
            }
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) => self.tick(1, offset),
        }
    }

    /// Takes ownership of a value, paying for the copy when it is borrowed.
    pub fn own(&mut self, value: Cow<'_, Value>, offset: usize) -> Result<Value, Flow> {
        match value {
            Cow::Owned(value) => Ok(value),
            Cow::Borrowed(value) => {
                self.charge_value(value, offset)?;
                Ok(value.clone())
            }
        }
    }

    pub fn eval<'v>(&mut self, node: &Node, frame: Option<&Frame<'v>>) -> Out<'v>
    where
        'e: 'v,
    {
        let offset = node.offset;
        self.tick(1, offset)?;
        let value = match &node.kind {
            NodeKind::Nil => Value::Nil,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::Int(*i),
            NodeKind::Float(x) => Value::Float(*x),
            NodeKind::Str(s) => {
                self.charge_string(s.len(), offset)?;
                Value::String(s.clone())
            }
            NodeKind::Array(items) => {
                self.charge_array(items.len(), offset)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let value = self.eval(item, frame)?;
                    out.push(self.own(value, item.offset)?);
                }
                Value::Array(out)
            }
            NodeKind::Map(pairs) => {
                let mut out = std::collections::BTreeMap::new();
                for (key, value) in pairs {
                    let key_value = self.eval(key, frame)?;
                    let Value::String(name) = self.own(key_value, key.offset)? else {
                        return fault(key.offset, "map keys must be strings");
                    };
                    let value = self.eval(value, frame)?;
                    out.insert(name, self.own(value, offset)?);
                }
                Value::Map(out)
            }
            NodeKind::Ident(name) => {
                return match self.env.get(name) {
                    Some(value) => Ok(Cow::Borrowed(value)),
                    None => fault(offset, format!("unknown name {name}")),
                };
            }
            NodeKind::Pointer(pointer) => {
                let Some(frame) = frame else {
                    return fault(offset, "cannot use pointer accessor outside predicate");
                };
                return Ok(match pointer {
                    Pointer::Element => Cow::Borrowed(frame.item),
                    Pointer::Index => {
                        Cow::Owned(Value::Int(i64::try_from(frame.index).unwrap_or(i64::MAX)))
                    }
                });
            }
            NodeKind::Member {
                object,
                property,
                optional,
            } => {
                let base = self.eval(object, frame)?;
                let key = self.eval(property, frame)?;
                return self.fetch(base, &key, *optional, offset);
            }
            NodeKind::Slice { object, from, to } => {
                let base = self.eval(object, frame)?;
                let from = match from {
                    Some(bound) => Some(self.eval(bound, frame)?),
                    None => None,
                };
                let to = match to {
                    Some(bound) => Some(self.eval(bound, frame)?),
                    None => None,
                };
                self.slice(&base, from.as_deref(), to.as_deref(), offset)?
            }
            NodeKind::Chain(inner) => {
                return match self.eval(inner, frame) {
                    Err(Flow::NilChain) => Ok(Cow::Owned(Value::Nil)),
                    other => other,
                };
            }
            NodeKind::Predicate(_) => {
                return fault(
                    offset,
                    "a predicate {...} can only be an argument of all, any, filter, map, ...",
                );
            }
            NodeKind::Unary { op, operand } => {
                let value = self.eval(operand, frame)?;
                unary(*op, &value, offset)?
            }
            NodeKind::Binary { op, left, right } => {
                return self.binary(*op, left, right, offset, frame);
            }
            NodeKind::Matches {
                subject,
                pattern,
                compiled,
            } => {
                let subject_value = self.eval(subject, frame)?;
                let pattern_value = self.eval(pattern, frame)?;
                let (Value::String(text), Value::String(source)) =
                    (&*subject_value, &*pattern_value)
                else {
                    return fault(offset, mismatch("matches", &subject_value, &pattern_value));
                };
                self.tick(
                    REGEX_MATCH_STEPS + (text.len() / STRING_BYTES_PER_STEP) as u64,
                    offset,
                )?;
                let matched = match compiled {
                    Some(regex) => regex.is_match(text),
                    None => {
                        self.tick(100 + source.len() as u64, pattern.offset)?;
                        let regex = compile_regex(source, self.limits)
                            .map_err(|message| Fault::new(pattern.offset, message))?;
                        regex.is_match(text)
                    }
                };
                Value::Bool(matched)
            }
            NodeKind::Conditional {
                cond,
                then,
                otherwise,
            } => {
                let decided = self.eval(cond, frame)?;
                let Value::Bool(decision) = *decided else {
                    return fault(
                        offset,
                        format!(
                            "non-bool expression ({}) used as condition",
                            decided.describe()
                        ),
                    );
                };
                return match (decision, then) {
                    (true, Some(then)) => self.eval(then, frame),
                    (true, None) => Ok(Cow::Owned(Value::Bool(true))),
                    (false, _) => self.eval(otherwise, frame),
                };
            }
            NodeKind::Call { name, args } => return self.call(name, args, offset, frame),
        };
        Ok(Cow::Owned(value))
    }

    /// `base[key]` and `base.key`.
    pub fn fetch<'v>(
        &mut self,
        base: Cow<'v, Value>,
        key: &Value,
        optional: bool,
        offset: usize,
    ) -> Out<'v> {
        let place = match &*base {
            Value::Nil if optional => return Err(Flow::NilChain),
            Value::Map(map) => match key {
                Value::String(name) if map.contains_key(name) => Place::Key,
                Value::String(_) => Place::Missing,
                other => {
                    return fault(
                        offset,
                        format!(
                            "cannot use {} as a map key (map keys are strings)",
                            other.describe()
                        ),
                    );
                }
            },
            Value::Array(_) if matches!(key, Value::String(_)) => {
                return fault(
                    offset,
                    format!(
                        "cannot fetch {} from an array (arrays take a number index)",
                        key.describe()
                    ),
                );
            }
            Value::Array(items) => Place::Index(index(key, items.len(), offset)?),
            Value::String(text) => {
                self.tick((text.len() / STRING_BYTES_PER_STEP) as u64, offset)?;
                let count = text.chars().count();
                let at = index(key, count, offset)?;
                Place::Char(text.chars().nth(at).unwrap_or_default())
            }
            other => {
                let key = match key {
                    Value::String(name) => name.clone(),
                    other => other.describe(),
                };
                return fault(
                    offset,
                    format!("cannot fetch {key} from {}", other.describe()),
                );
            }
        };
        Ok(match (place, base) {
            (Place::Missing, _) => Cow::Owned(Value::Nil),
            (Place::Char(c), _) => Cow::Owned(Value::String(c.to_string())),
            (Place::Index(at), Cow::Borrowed(Value::Array(items))) => Cow::Borrowed(&items[at]),
            (Place::Index(at), Cow::Owned(Value::Array(mut items))) => {
                Cow::Owned(items.swap_remove(at))
            }
            (Place::Key, Cow::Borrowed(Value::Map(map))) => match key {
                Value::String(name) => map.get(name).map_or(Cow::Owned(Value::Nil), Cow::Borrowed),
                _ => Cow::Owned(Value::Nil),
            },
            (Place::Key, Cow::Owned(Value::Map(mut map))) => match key {
                Value::String(name) => Cow::Owned(map.remove(name).unwrap_or_default()),
                _ => Cow::Owned(Value::Nil),
            },
            (Place::Index(_) | Place::Key, _) => Cow::Owned(Value::Nil),
        })
    }

    /// `base[from:to]`, clamped to the bounds like expr does.
    fn slice(
        &mut self,
        base: &Value,
        from: Option<&Value>,
        to: Option<&Value>,
        offset: usize,
    ) -> Result<Value, Flow> {
        let len = match base {
            Value::Array(items) => items.len(),
            Value::String(text) => text.chars().count(),
            other => return fault(offset, format!("cannot slice {}", other.describe())),
        };
        let bound = |value: Option<&Value>, default: usize| -> Result<usize, Flow> {
            let Some(value) = value else {
                return Ok(default);
            };
            let Some(raw) = integer(value) else {
                return fault(
                    offset,
                    format!("slice bounds must be numbers, got {}", value.describe()),
                );
            };
            let len = len as i128;
            let adjusted = if raw < 0 { len + raw } else { raw };
            Ok(adjusted.clamp(0, len) as usize)
        };
        let end = bound(to, len)?;
        let start = bound(from, 0)?.min(end);
        match base {
            Value::Array(items) => {
                let part = &items[start..end];
                self.charge_array(part.len(), offset)?;
                part.iter()
                    .try_for_each(|item| self.charge_value(item, offset))?;
                Ok(Value::Array(part.to_vec()))
            }
            Value::String(text) => {
                let part: String = text.chars().skip(start).take(end - start).collect();
                self.charge_string(part.len(), offset)?;
                Ok(Value::String(part))
            }
            _ => unreachable!("checked above"),
        }
    }

    fn binary<'v>(
        &mut self,
        op: BinaryOp,
        left: &Node,
        right: &Node,
        offset: usize,
        frame: Option<&Frame<'v>>,
    ) -> Out<'v>
    where
        'e: 'v,
    {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let l = self.eval(left, frame)?;
                let l = logic_operand(op, &l, offset)?;
                if l == (op == BinaryOp::Or) {
                    return Ok(Cow::Owned(Value::Bool(l)));
                }
                let r = self.eval(right, frame)?;
                let r = logic_operand(op, &r, offset)?;
                return Ok(Cow::Owned(Value::Bool(r)));
            }
            BinaryOp::Coalesce => {
                let l = self.eval(left, frame)?;
                return if matches!(*l, Value::Nil) {
                    self.eval(right, frame)
                } else {
                    Ok(l)
                };
            }
            _ => {}
        }
        let l = self.eval(left, frame)?;
        let r = self.eval(right, frame)?;
        let value = match op {
            BinaryOp::Eq | BinaryOp::Ne => {
                self.charge_value(&l, offset)?;
                Value::Bool(loose_eq(&l, &r) == (op == BinaryOp::Eq))
            }
            BinaryOp::Lt | BinaryOp::Gt | BinaryOp::Le | BinaryOp::Ge => {
                let ordering = compare(op, &l, &r, offset)?;
                Value::Bool(match (op, ordering) {
                    (_, None) => false,
                    (BinaryOp::Lt, Some(o)) => o == Ordering::Less,
                    (BinaryOp::Gt, Some(o)) => o == Ordering::Greater,
                    (BinaryOp::Le, Some(o)) => o != Ordering::Greater,
                    (_, Some(o)) => o != Ordering::Less,
                })
            }
            BinaryOp::In => Value::Bool(self.contains(&l, &r, offset)?),
            BinaryOp::Contains | BinaryOp::StartsWith | BinaryOp::EndsWith => {
                let (Value::String(text), Value::String(part)) = (&*l, &*r) else {
                    return fault(offset, mismatch(op.symbol(), &l, &r));
                };
                self.tick((text.len() / STRING_BYTES_PER_STEP) as u64, offset)?;
                Value::Bool(match op {
                    BinaryOp::Contains => text.contains(part.as_str()),
                    BinaryOp::StartsWith => text.starts_with(part.as_str()),
                    _ => text.ends_with(part.as_str()),
                })
            }
            BinaryOp::Range => {
                let (Value::Int(from), Value::Int(to)) = (&*l, &*r) else {
                    return fault(offset, mismatch("..", &l, &r));
                };
                let len = (i128::from(*to) - i128::from(*from) + 1).max(0);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                self.charge_array(len, offset)?;
                Value::Array((*from..=*to).map(Value::Int).collect())
            }
            BinaryOp::Add => match (&*l, &*r) {
                (Value::String(a), Value::String(b)) => {
                    self.charge_string(a.len() + b.len(), offset)?;
                    Value::String(format!("{a}{b}"))
                }
                _ => arithmetic(op, &l, &r, offset)?,
            },
            _ => arithmetic(op, &l, &r, offset)?,
        };
        Ok(Cow::Owned(value))
    }

    /// `needle in haystack`.
    fn contains(&mut self, needle: &Value, haystack: &Value, offset: usize) -> Result<bool, Flow> {
        match haystack {
            Value::Nil => Ok(false),
            Value::Array(items) => {
                for item in items {
                    self.tick(1, offset)?;
                    if loose_eq(item, needle) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Map(map) => match needle {
                Value::String(key) => Ok(map.contains_key(key)),
                other => fault(
                    offset,
                    format!(
                        "cannot use {} as a map key (map keys are strings)",
                        other.describe()
                    ),
                ),
            },
            other => fault(
                offset,
                format!("operator \"in\" not defined on {}", other.describe()),
            ),
        }
    }
}

fn mismatch(op: &str, l: &Value, r: &Value) -> String {
    format!(
        "invalid operation: {op} (mismatched types {} and {})",
        l.type_name(),
        r.type_name()
    )
}

fn logic_operand(op: BinaryOp, value: &Value, offset: usize) -> Result<bool, Flow> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => fault(
            offset,
            format!(
                "invalid operation: {} needs bool operands, got {}",
                op.symbol(),
                other.describe()
            ),
        ),
    }
}

/// A number as an index: floats are truncated toward zero like expr does.
pub(crate) fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Int(i) => Some(i128::from(*i)),
        Value::Float(x) if x.is_finite() => Some(x.trunc() as i128),
        _ => None,
    }
}

/// The position `key` designates in a sequence of `len`; negative keys count from the end.
fn index(key: &Value, len: usize, offset: usize) -> Result<usize, Flow> {
    let Some(raw) = integer(key) else {
        return fault(
            offset,
            format!("cannot use {} as an index (want a number)", key.describe()),
        );
    };
    let adjusted = if raw < 0 { len as i128 + raw } else { raw };
    if adjusted < 0 || adjusted >= len as i128 {
        return fault(
            offset,
            format!("index out of range: {raw} (array length is {len})"),
        );
    }
    Ok(adjusted as usize)
}

fn unary(op: UnaryOp, value: &Value, offset: usize) -> Result<Value, Flow> {
    match (op, value) {
        (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnaryOp::Negate, Value::Int(i)) => match i.checked_neg() {
            Some(n) => Ok(Value::Int(n)),
            None => fault(offset, format!("integer overflow: -({i})")),
        },
        (UnaryOp::Negate, Value::Float(x)) => Ok(Value::Float(-x)),
        (UnaryOp::Plus, Value::Int(_) | Value::Float(_)) => Ok(value.clone()),
        (op, other) => {
            let symbol = match op {
                UnaryOp::Not => "!",
                UnaryOp::Negate => "-",
                UnaryOp::Plus => "+",
            };
            fault(
                offset,
                format!(
                    "invalid operation: {symbol} (mismatched type {})",
                    other.type_name()
                ),
            )
        }
    }
}

/// Orders two numbers or two strings; `None` when a NaN is involved.
fn compare(op: BinaryOp, l: &Value, r: &Value, offset: usize) -> Result<Option<Ordering>, Flow> {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => Ok(Some(a.cmp(b))),
        (Value::String(a), Value::String(b)) => Ok(Some(a.cmp(b))),
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => Ok(a.partial_cmp(&b)),
            _ => fault(offset, mismatch(op.symbol(), l, r)),
        },
    }
}

/// `+ - * / % **` on numbers, with expr's rules: `/` and `**` always give a float, `%` takes
/// integers only, integer overflow is an error.
fn arithmetic(op: BinaryOp, l: &Value, r: &Value, offset: usize) -> Result<Value, Flow> {
    if let (Value::Int(a), Value::Int(b)) = (l, r) {
        let (a, b) = (*a, *b);
        let checked = match op {
            BinaryOp::Add => a.checked_add(b),
            BinaryOp::Sub => a.checked_sub(b),
            BinaryOp::Mul => a.checked_mul(b),
            BinaryOp::Mod => {
                if b == 0 {
                    return fault(offset, "integer divide by zero");
                }
                // i64::MIN % -1 overflows in Rust; the answer is 0.
                Some(a.checked_rem(b).unwrap_or(0))
            }
            _ => None,
        };
        match (op, checked) {
            (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Mod, Some(v)) => {
                return Ok(Value::Int(v));
            }
            (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul, None) => {
                return fault(offset, format!("integer overflow: {a} {} {b}", op.symbol()));
            }
            _ => {}
        }
    }
    let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
        return fault(offset, mismatch(op.symbol(), l, r));
    };
    let value = match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        _ => return fault(offset, mismatch(op.symbol(), l, r)),
    };
    Ok(Value::Float(value))
}
