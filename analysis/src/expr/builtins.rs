//! Functions callable from a condition: Argo Rollouts' own (`asInt`, `asFloat`, `isNaN`,
//! `isInf`, `isNil`, `default`) and the subset of expr's builtins that suits metric results.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{Node, NodeKind};
use super::check::Ty;
use super::eval::{Flow, Frame, Machine, Out, fault};
use super::value::Value;

pub(crate) struct Builtin {
    pub min_args: usize,
    pub max_args: usize,
    /// What the checker knows about the result.
    pub returns: Ty,
}

/// The functions Argo Rollouts adds to expr's environment.
pub(crate) const ARGO_FUNCTIONS: &[&str] =
    &["asInt", "asFloat", "isNaN", "isInf", "isNil", "default"];

pub(crate) fn builtin(name: &str) -> Option<Builtin> {
    let (min_args, max_args, returns) = match name {
        "asInt" | "int" | "len" => (1, 1, Ty::Int),
        "asFloat" | "float" | "ceil" | "floor" | "round" => (1, 1, Ty::Float),
        "isNaN" | "isInf" | "isNil" => (1, 1, Ty::Bool),
        "default" => (2, 2, Ty::Unknown),
        "all" | "any" | "none" | "one" => (2, 2, Ty::Bool),
        "filter" | "map" => (2, 2, Ty::Array),
        "find" | "findLast" => (2, 2, Ty::Unknown),
        "findIndex" | "findLastIndex" => (2, 2, Ty::Int),
        "count" => (1, 2, Ty::Int),
        "sum" => (1, 2, Ty::Unknown),
        "abs" | "first" | "last" | "fromJSON" => (1, 1, Ty::Unknown),
        "string" | "upper" | "lower" | "type" | "toJSON" => (1, 1, Ty::String),
        "trim" | "join" => (1, 2, Ty::String),
        "trimPrefix" | "trimSuffix" | "repeat" => (2, 2, Ty::String),
        "replace" => (3, 3, Ty::String),
        "split" => (2, 3, Ty::Array),
        "indexOf" | "lastIndexOf" => (2, 2, Ty::Int),
        "hasPrefix" | "hasSuffix" => (2, 2, Ty::Bool),
        "max" | "min" => (1, usize::MAX, Ty::Unknown),
        "mean" | "median" => (1, usize::MAX, Ty::Float),
        "take" => (2, 2, Ty::Array),
        "keys" | "values" => (1, 1, Ty::Array),
        "sort" => (1, 2, Ty::Array),
        "get" => (2, 2, Ty::Unknown),
        _ => return None,
    };
    Some(Builtin {
        min_args,
        max_args,
        returns,
    })
}

fn is_predicate_builtin(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "any"
            | "none"
            | "one"
            | "filter"
            | "map"
            | "find"
            | "findIndex"
            | "findLast"
            | "findLastIndex"
            | "count"
            | "sum"
    )
}

fn wrong_type<T>(name: &str, want: &str, got: &Value, offset: usize) -> Result<T, Flow> {
    fault(
        offset,
        format!("{name}() needs {want}, got {}", got.describe()),
    )
}

fn string_arg<'a>(name: &str, value: &'a Value, offset: usize) -> Result<&'a str, Flow> {
    match value {
        Value::String(s) => Ok(s),
        other => wrong_type(name, "a string", other, offset),
    }
}

fn array_arg<'a>(name: &str, value: &'a Value, offset: usize) -> Result<&'a [Value], Flow> {
    match value {
        Value::Array(items) => Ok(items),
        other => wrong_type(name, "an array", other, offset),
    }
}

fn int_arg(name: &str, value: &Value, offset: usize) -> Result<i64, Flow> {
    match value {
        Value::Int(i) => Ok(*i),
        other => wrong_type(name, "an integer", other, offset),
    }
}

fn number_arg(name: &str, value: &Value, offset: usize) -> Result<f64, Flow> {
    value
        .as_f64()
        .map_or_else(|| wrong_type(name, "a number", value, offset), Ok)
}

/// A float converted to an integer by truncation, when it fits.
fn float_to_int(name: &str, x: f64, offset: usize) -> Result<i64, Flow> {
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    if x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64 {
        Ok(x.trunc() as i64)
    } else {
        fault(
            offset,
            format!("{name}() cannot convert {} to an integer", Value::Float(x)),
        )
    }
}

fn char_index(text: &str, byte: Option<usize>) -> Value {
    Value::Int(byte.map_or(-1, |b| {
        i64::try_from(text[..b].chars().count()).unwrap_or(i64::MAX)
    }))
}

/// The numbers among `values`, with arrays flattened one level (`max(result)`,
/// `max(a, b)`).
fn numbers<'a>(
    name: &str,
    values: &'a [Cow<'_, Value>],
    offset: usize,
) -> Result<Vec<&'a Value>, Flow> {
    let mut out = Vec::new();
    for value in values {
        let items: &[Value] = match &**value {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        for item in items {
            if !item.is_number() {
                return wrong_type(name, "numbers", item, offset);
            }
            out.push(item);
        }
    }
    Ok(out)
}

/// Sums numbers: an integer while every term is one and it does not overflow.
fn sum<'a>(values: impl IntoIterator<Item = &'a Value>, offset: usize) -> Result<Value, Flow> {
    let mut total = Value::Int(0);
    for value in values {
        total = match (&total, value) {
            (Value::Int(a), Value::Int(b)) => match a.checked_add(*b) {
                Some(s) => Value::Int(s),
                None => return fault(offset, format!("integer overflow: {a} + {b} in sum()")),
            },
            _ => match (total.as_f64(), value.as_f64()) {
                (Some(a), Some(b)) => Value::Float(a + b),
                _ => return wrong_type("sum", "numbers", value, offset),
            },
        };
    }
    Ok(total)
}

impl<'e> Machine<'e> {
    pub fn call<'v>(
        &mut self,
        name: &str,
        args: &[Node],
        offset: usize,
        frame: Option<&Frame<'v>>,
    ) -> Out<'v>
    where
        'e: 'v,
    {
        if is_predicate_builtin(name) {
            return self.iterate(name, args, offset, frame);
        }
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg, frame)?);
        }
        if name == "default" {
            let mut values = values.into_iter();
            return match (values.next(), values.next()) {
                (Some(value), Some(fallback)) => Ok(if matches!(*value, Value::Nil) {
                    fallback
                } else {
                    value
                }),
                _ => fault(offset, "default() needs a value and a fallback"),
            };
        }
        if name == "get" {
            let mut values = values.into_iter();
            let (Some(base), Some(key)) = (values.next(), values.next()) else {
                return fault(offset, "get() needs a value and a key");
            };
            if matches!(*base, Value::Nil) {
                return Ok(Cow::Owned(Value::Nil));
            }
            return match self.fetch(base, &key, true, offset) {
                Err(Flow::Fault(_)) | Err(Flow::NilChain) => Ok(Cow::Owned(Value::Nil)),
                found => found,
            };
        }
        let value = self.compute(name, &values, offset)?;
        Ok(Cow::Owned(value))
    }

    /// Builtins that take evaluated arguments and make a new value.
    fn compute(
        &mut self,
        name: &str,
        values: &[Cow<'_, Value>],
        offset: usize,
    ) -> Result<Value, Flow> {
        let arg = |i: usize| -> &Value { values.get(i).map_or(&Value::Nil, |v| &**v) };
        let first = arg(0);
        let value = match name {
            "asInt" => match first {
                Value::Int(i) => Value::Int(*i),
                Value::Float(x) => Value::Int(float_to_int(name, *x, offset)?),
                Value::String(s) => match s.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => {
                        return fault(offset, format!("asInt() cannot parse {s:?} as an integer"));
                    }
                },
                other => return wrong_type(name, "a number or a string", other, offset),
            },
            "asFloat" | "float" => match first {
                Value::Int(i) => Value::Float(*i as f64),
                Value::Float(x) => Value::Float(*x),
                Value::String(s) => match s.parse::<f64>() {
                    Ok(x) => Value::Float(x),
                    Err(_) => {
                        return fault(offset, format!("{name}() cannot parse {s:?} as a number"));
                    }
                },
                other => return wrong_type(name, "a number or a string", other, offset),
            },
            "int" => match first {
                Value::Int(i) => Value::Int(*i),
                Value::Float(x) => Value::Int(float_to_int(name, *x, offset)?),
                Value::String(s) => match s.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => {
                        return fault(offset, format!("int() cannot parse {s:?} as an integer"));
                    }
                },
                other => return wrong_type(name, "a number or a string", other, offset),
            },
            "isNaN" => match first {
                Value::Float(x) => Value::Bool(x.is_nan()),
                Value::Int(_) => Value::Bool(false),
                other => return wrong_type(name, "a number", other, offset),
            },
            "isInf" => match first {
                Value::Float(x) => Value::Bool(x.is_infinite()),
                Value::Int(_) => Value::Bool(false),
                other => return wrong_type(name, "a number", other, offset),
            },
            "isNil" => Value::Bool(matches!(first, Value::Nil)),
            "len" => {
                let len = match first {
                    Value::Array(items) => items.len(),
                    Value::Map(map) => map.len(),
                    Value::String(s) => s.chars().count(),
                    other => return wrong_type(name, "an array, a map or a string", other, offset),
                };
                Value::Int(i64::try_from(len).unwrap_or(i64::MAX))
            }
            "abs" => match first {
                Value::Int(i) => match i.checked_abs() {
                    Some(a) => Value::Int(a),
                    None => return fault(offset, format!("integer overflow: abs({i})")),
                },
                Value::Float(x) => Value::Float(x.abs()),
                other => return wrong_type(name, "a number", other, offset),
            },
            "ceil" => Value::Float(number_arg(name, first, offset)?.ceil()),
            "floor" => Value::Float(number_arg(name, first, offset)?.floor()),
            // Half away from zero, like Go's math.Round.
            "round" => Value::Float(number_arg(name, first, offset)?.round()),
            "string" => {
                let text = first.to_string();
                self.charge_string(text.len(), offset)?;
                Value::String(text)
            }
            "upper" | "lower" => {
                let s = string_arg(name, first, offset)?;
                self.charge_string(s.len(), offset)?;
                Value::String(if name == "upper" {
                    s.to_uppercase()
                } else {
                    s.to_lowercase()
                })
            }
            "trim" => {
                let s = string_arg(name, first, offset)?;
                let trimmed = match values.get(1) {
                    None => s.trim(),
                    Some(cutset) => {
                        let cutset = string_arg(name, cutset, offset)?;
                        s.trim_matches(|c| cutset.contains(c))
                    }
                };
                self.charge_string(trimmed.len(), offset)?;
                Value::String(trimmed.to_string())
            }
            "trimPrefix" | "trimSuffix" => {
                let s = string_arg(name, first, offset)?;
                let affix = string_arg(name, arg(1), offset)?;
                let trimmed = if name == "trimPrefix" {
                    s.strip_prefix(affix)
                } else {
                    s.strip_suffix(affix)
                };
                let trimmed = trimmed.unwrap_or(s);
                self.charge_string(trimmed.len(), offset)?;
                Value::String(trimmed.to_string())
            }
            "hasPrefix" => Value::Bool(string_arg(name, first, offset)?.starts_with(string_arg(
                name,
                arg(1),
                offset,
            )?)),
            "hasSuffix" => Value::Bool(string_arg(name, first, offset)?.ends_with(string_arg(
                name,
                arg(1),
                offset,
            )?)),
            "indexOf" | "lastIndexOf" => {
                let s = string_arg(name, first, offset)?;
                let part = string_arg(name, arg(1), offset)?;
                self.charge_string(s.len(), offset)?;
                let at = if name == "indexOf" {
                    s.find(part)
                } else {
                    s.rfind(part)
                };
                char_index(s, at)
            }
            "split" => self.split(first, arg(1), values.get(2).map(|v| &**v), offset)?,
            "join" => {
                let items = array_arg(name, first, offset)?;
                let separator = match values.get(1) {
                    Some(sep) => string_arg(name, sep, offset)?,
                    None => "",
                };
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(string_arg(name, item, offset)?);
                }
                let len = parts.iter().map(|p| p.len()).sum::<usize>()
                    + separator.len() * parts.len().saturating_sub(1);
                self.charge_string(len, offset)?;
                Value::String(parts.join(separator))
            }
            "replace" => {
                let s = string_arg(name, first, offset)?;
                let old = string_arg(name, arg(1), offset)?;
                let new = string_arg(name, arg(2), offset)?;
                self.charge_string(s.len(), offset)?;
                let count = if old.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(old).count()
                };
                let len =
                    (s.len() - count * old.len()).saturating_add(count.saturating_mul(new.len()));
                self.charge_string(len, offset)?;
                Value::String(s.replace(old, new))
            }
            "repeat" => {
                let s = string_arg(name, first, offset)?;
                let times = int_arg(name, arg(1), offset)?;
                let Ok(times) = usize::try_from(times) else {
                    return fault(
                        offset,
                        format!("repeat() count must not be negative, got {times}"),
                    );
                };
                self.charge_string(s.len().saturating_mul(times), offset)?;
                Value::String(s.repeat(times))
            }
            "max" | "min" => {
                let numbers = numbers(name, values, offset)?;
                let mut best: Option<&Value> = None;
                for candidate in numbers {
                    let better = match best {
                        None => true,
                        Some(current) => {
                            let ordering = match (candidate, current) {
                                (Value::Int(a), Value::Int(b)) => a.partial_cmp(b),
                                _ => candidate.as_f64().partial_cmp(&current.as_f64()),
                            };
                            ordering
                                == Some(if name == "max" {
                                    Ordering::Greater
                                } else {
                                    Ordering::Less
                                })
                        }
                    };
                    if better {
                        best = Some(candidate);
                    }
                }
                match best {
                    Some(best) => best.clone(),
                    None => return fault(offset, format!("{name}() of no numbers")),
                }
            }
            "mean" | "median" => {
                let numbers = numbers(name, values, offset)?;
                self.tick(numbers.len() as u64, offset)?;
                let mut floats: Vec<f64> = numbers.iter().filter_map(|v| v.as_f64()).collect();
                if floats.is_empty() {
                    return fault(offset, format!("{name}() of no numbers"));
                }
                if name == "mean" {
                    Value::Float(floats.iter().sum::<f64>() / floats.len() as f64)
                } else {
                    floats.sort_by(f64::total_cmp);
                    let mid = floats.len() / 2;
                    Value::Float(if floats.len().is_multiple_of(2) {
                        (floats[mid - 1] + floats[mid]) / 2.0
                    } else {
                        floats[mid]
                    })
                }
            }
            "first" | "last" => match first {
                Value::Nil => Value::Nil,
                Value::Array(items) => {
                    let item = if name == "first" {
                        items.first()
                    } else {
                        items.last()
                    };
                    match item {
                        Some(item) => {
                            self.charge_value(item, offset)?;
                            item.clone()
                        }
                        None => Value::Nil,
                    }
                }
                other => return wrong_type(name, "an array", other, offset),
            },
            "take" => {
                let items = array_arg(name, first, offset)?;
                let n = int_arg(name, arg(1), offset)?;
                let n = usize::try_from(n.max(0))
                    .unwrap_or(usize::MAX)
                    .min(items.len());
                let part = &items[..n];
                self.charge_array(part.len(), offset)?;
                part.iter()
                    .try_for_each(|item| self.charge_value(item, offset))?;
                Value::Array(part.to_vec())
            }
            "keys" | "values" => {
                let Value::Map(map) = first else {
                    return wrong_type(name, "a map", first, offset);
                };
                self.charge_array(map.len(), offset)?;
                if name == "keys" {
                    Value::Array(map.keys().map(|k| Value::String(k.clone())).collect())
                } else {
                    map.values()
                        .try_for_each(|item| self.charge_value(item, offset))?;
                    Value::Array(map.values().cloned().collect())
                }
            }
            "sort" => self.sort(first, values.get(1).map(|v| &**v), offset)?,
            "type" => Value::String(first.type_name().to_string()),
            "toJSON" => {
                self.charge_value(first, offset)?;
                let json = serde_json::Value::from(first);
                let text = serde_json::to_string_pretty(&json).map_err(|err| {
                    Flow::from(super::error::Fault::new(offset, format!("toJSON(): {err}")))
                })?;
                self.charge_string(text.len(), offset)?;
                Value::String(text)
            }
            "fromJSON" => {
                let text = string_arg(name, first, offset)?;
                self.charge_string(text.len(), offset)?;
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(json) => Value::from(json),
                    Err(err) => return fault(offset, format!("fromJSON(): {err}")),
                }
            }
            other => return fault(offset, format!("unknown function {other}()")),
        };
        Ok(value)
    }

    /// Go's `strings.Split`/`SplitN`: an empty separator splits into characters, `n < 0`
    /// means no limit, `n == 0` gives an empty array.
    fn split(
        &mut self,
        text: &Value,
        separator: &Value,
        n: Option<&Value>,
        offset: usize,
    ) -> Result<Value, Flow> {
        let s = string_arg("split", text, offset)?;
        let sep = string_arg("split", separator, offset)?;
        let limit = match n {
            Some(n) => int_arg("split", n, offset)?,
            None => -1,
        };
        self.charge_string(s.len(), offset)?;
        if limit == 0 {
            return Ok(Value::Array(Vec::new()));
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let parts: Vec<String> = if sep.is_empty() {
            let chars: Vec<char> = s.chars().collect();
            if chars.len() <= limit {
                chars.iter().map(|c| c.to_string()).collect()
            } else {
                let mut parts: Vec<String> =
                    chars[..limit - 1].iter().map(|c| c.to_string()).collect();
                parts.push(chars[limit - 1..].iter().collect());
                parts
            }
        } else {
            s.splitn(limit, sep).map(str::to_string).collect()
        };
        self.charge_array(parts.len(), offset)?;
        Ok(Value::Array(parts.into_iter().map(Value::String).collect()))
    }

    fn sort(&mut self, items: &Value, order: Option<&Value>, offset: usize) -> Result<Value, Flow> {
        let items = array_arg("sort", items, offset)?;
        let descending = match order {
            None => false,
            Some(Value::String(o)) if o == "asc" => false,
            Some(Value::String(o)) if o == "desc" => true,
            Some(other) => {
                return wrong_type("sort", "\"asc\" or \"desc\" as the order", other, offset);
            }
        };
        let all_numbers = items.iter().all(Value::is_number);
        let all_strings = items.iter().all(|v| matches!(v, Value::String(_)));
        if !all_numbers && !all_strings {
            return fault(
                offset,
                "sort() needs an array of numbers or an array of strings",
            );
        }
        let n = items.len() as u64;
        self.tick(n.saturating_mul(64 - n.leading_zeros() as u64 + 1), offset)?;
        items
            .iter()
            .try_for_each(|item| self.charge_value(item, offset))?;
        let mut sorted = items.to_vec();
        sorted.sort_by(|a, b| match (a, b) {
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Int(x), Value::Int(y)) => x.cmp(y),
            _ => a
                .as_f64()
                .unwrap_or(f64::NAN)
                .total_cmp(&b.as_f64().unwrap_or(f64::NAN)),
        });
        if descending {
            sorted.reverse();
        }
        Ok(Value::Array(sorted))
    }

    /// The builtins that run a predicate over an array.
    fn iterate<'v>(
        &mut self,
        name: &str,
        args: &[Node],
        offset: usize,
        frame: Option<&Frame<'v>>,
    ) -> Out<'v>
    where
        'e: 'v,
    {
        let Some(first) = args.first() else {
            return fault(offset, format!("{name}() needs an array"));
        };
        let collection = self.eval(first, frame)?;
        let items = array_arg(name, &collection, first.offset)?;
        let body = args.get(1).map(|arg| match &arg.kind {
            NodeKind::Predicate(body) => &**body,
            _ => arg,
        });
        let Some(body) = body else {
            // count(array) counts the true elements; sum(array) adds them up.
            return Ok(Cow::Owned(if name == "sum" {
                self.tick(items.len() as u64, offset)?;
                sum(items, offset)?
            } else {
                let mut count = 0i64;
                for item in items {
                    self.tick(1, offset)?;
                    match item {
                        Value::Bool(true) => count += 1,
                        Value::Bool(false) => {}
                        other => return wrong_type(name, "an array of bools", other, offset),
                    }
                }
                Value::Int(count)
            }));
        };
        let mut hits: Vec<usize> = Vec::new();
        let mut mapped: Vec<Value> = Vec::new();
        let reverse = matches!(name, "findLast" | "findLastIndex");
        let order: Box<dyn Iterator<Item = (usize, &Value)>> = if reverse {
            Box::new(items.iter().enumerate().rev())
        } else {
            Box::new(items.iter().enumerate())
        };
        for (index, item) in order {
            let inner = Frame { item, index };
            let result = self.eval(body, Some(&inner))?;
            if matches!(name, "map" | "sum") {
                mapped.push(self.own(result, body.offset)?);
                continue;
            }
            let Value::Bool(passed) = *result else {
                return fault(
                    body.offset,
                    format!(
                        "the predicate of {name}() must give a bool, got {}",
                        result.describe()
                    ),
                );
            };
            if passed {
                hits.push(index);
            }
            let decided = match name {
                "all" => !passed,
                "any" | "none" | "find" | "findIndex" | "findLast" | "findLastIndex" => passed,
                "one" => hits.len() > 1,
                _ => false,
            };
            if decided {
                break;
            }
        }
        let value = match name {
            "all" => Value::Bool(hits.len() == items.len()),
            "any" => Value::Bool(!hits.is_empty()),
            "none" => Value::Bool(hits.is_empty()),
            "one" => Value::Bool(hits.len() == 1),
            "count" => Value::Int(i64::try_from(hits.len()).unwrap_or(i64::MAX)),
            "filter" => {
                self.charge_array(hits.len(), offset)?;
                let mut out = Vec::with_capacity(hits.len());
                for index in hits {
                    self.charge_value(&items[index], offset)?;
                    out.push(items[index].clone());
                }
                Value::Array(out)
            }
            "map" => {
                self.charge_array(mapped.len(), offset)?;
                Value::Array(mapped)
            }
            "sum" => sum(&mapped, offset)?,
            "find" | "findLast" => match hits.first() {
                Some(&index) => {
                    self.charge_value(&items[index], offset)?;
                    items[index].clone()
                }
                None => Value::Nil,
            },
            _ => Value::Int(
                hits.first()
                    .map_or(-1, |&index| i64::try_from(index).unwrap_or(i64::MAX)),
            ),
        };
        Ok(Cow::Owned(value))
    }
}

#[cfg(test)]
mod tests {
    use super::super::eval::integer;
    use super::*;

    #[test]
    fn every_builtin_has_a_signature_and_argo_functions_are_known() {
        for name in ARGO_FUNCTIONS {
            assert!(builtin(name).is_some(), "{name}");
        }
        assert!(builtin("nope").is_none());
        assert!(integer(&Value::Float(-1.7)) == Some(-1));
    }
}
