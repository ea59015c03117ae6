//! The values a condition computes with, and the comparisons and renderings the language
//! defines on them.
//!
//! Numbers keep expr's two kinds: `Int` (literals like `1`, JSON integers) and `Float`
//! (`0.5`, Prometheus samples). They mix freely in comparisons and arithmetic.

use std::collections::BTreeMap;
use std::fmt;

/// A value inside the condition language.
///
/// `result` (what a metric provider measured) is converted into a `Value` before a condition is
/// evaluated: a Prometheus scalar becomes a `Float`, a vector an `Array` of `Float`s, a web
/// response its JSON (see `From<serde_json::Value>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `nil`: JSON `null`, a missing map key, a missing measurement.
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of the value's type as the language reports it (`type(x)`, error messages).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// A short description for error messages: the type and a truncated rendering.
    pub(crate) fn describe(&self) -> String {
        const MAX: usize = 60;
        let mut text = match self {
            Value::Nil => return "nil".to_string(),
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        if text.len() > MAX {
            let mut cut = MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        format!("{} {}", self.type_name(), text)
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub(crate) fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }
}

/// expr's `==`: numbers compare by value whatever their kind, arrays and maps compare element by
/// element, values of different types are simply unequal.
pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(l, r)| loose_eq(l, r))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((lk, lv), (rk, rv))| lk == rk && loose_eq(lv, rv))
        }
        _ => a == b,
    }
}

/// Renders like Go's `%v`, which is what expr's `string()` produces: `<nil>`, `0.5`, `1e+06`,
/// `[1 2]`, `map[a:1]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("<nil>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_go_float(*x)),
            Value::String(s) => f.write_str(s),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("map[")?;
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{key}:{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Go's shortest `%v` rendering of a float64: plain digits while the decimal exponent is in
/// `-4..6`, scientific notation (`1e+06`, `1e-05`) outside it.
pub(crate) fn format_go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    if (-4..6).contains(&exp) {
        return format!("{x}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                Value::Map(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(json: &serde_json::Value) -> Self {
        Value::from(json.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Nil, Into::into)
    }
}

/// Converts back to JSON; non-finite floats (which JSON cannot hold) become `null`.
impl From<&Value> for serde_json::Value {
    fn from(value: &Value) -> Self {
        match value {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(serde_json::Value::from).collect())
            }
            Value::Map(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_keep_their_kind() {
        assert_eq!(Value::from(json!(3)), Value::Int(3));
        assert_eq!(Value::from(json!(0.5)), Value::Float(0.5));
        assert_eq!(Value::from(json!(u64::MAX)), Value::Float(u64::MAX as f64));
        assert_eq!(
            Value::from(json!({"a": [1, null, "x"]})),
            Value::Map(BTreeMap::from([(
                "a".to_string(),
                Value::Array(vec![Value::Int(1), Value::Nil, Value::from("x")])
            )]))
        );
    }

    #[test]
    fn loose_equality_mixes_numbers_only() {
        assert!(loose_eq(&Value::Int(1), &Value::Float(1.0)));
        assert!(loose_eq(
            &Value::from(vec![1i64, 2]),
            &Value::from(vec![1.0f64, 2.0])
        ));
        assert!(!loose_eq(&Value::Int(1), &Value::from("1")));
        assert!(!loose_eq(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        assert!(loose_eq(&Value::Nil, &Value::Nil));
        assert!(!loose_eq(&Value::Nil, &Value::Bool(false)));
    }

    #[test]
    fn floats_render_like_go() {
        for (x, want) in [
            (0.5, "0.5"),
            (4.0, "4"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_go_float(x), want, "{x}");
        }
    }

    #[test]
    fn display_is_go_percent_v() {
        let v = Value::from(json!({"a": [1, 2.5], "b": null}));
        assert_eq!(v.to_string(), "map[a:[1 2.5] b:<nil>]");
        assert_eq!(Value::from("x").describe(), "string \"x\"");
    }
}
