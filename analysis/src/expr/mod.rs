//! The condition language of AnalysisTemplates: the expressions Argo Rollouts evaluates for a
//! metric's `successCondition` and `failureCondition` (expr-lang's language, as Argo Rollouts
//! configures it), so existing templates work unchanged.
//!
//! ```text
//!   "len(result) > 0 && result[0] < 0.01"
//!        │ parse (lexer → precedence-climbing parser; length and depth bounded)
//!        ▼
//!   Program ──eval(&Env)──▶ check names, arity, known types ──▶ evaluate (step budget) ──▶ Value
//! ```
//!
//! The environment holds `result` (what the provider measured) and Argo's functions `asInt`,
//! `asFloat`, `isNaN`, `isInf`, `isNil` and `default`, next to expr's builtins (`len`, `all`,
//! `any`, `none`, `one`, `filter`, `map`, `count`, `sum`, `find`, `max`, `min`, `abs`, `int`,
//! `float`, `string`, `upper`, `lower`, `trim`, `split`, `join`, ...). Template args are not
//! variables: like Argo, callers substitute `{{args.name}}` in the text before parsing.
//!
//! Differences from Argo Rollouts, all deliberate:
//! - `isNil(x)` and `default(x, fallback)` look at their argument; Argo's versions ignore it
//!   and always look at `result` (the same answer for the documented `isNil(result)` and
//!   `default(result, 0)`).
//! - Integer overflow is an error instead of wrapping around; every input, however hostile,
//!   gives a value or an [`ExprError`], never a panic (see [`Limits`]).
//! - JSON integers from a web provider are `Int`s (Argo sees all JSON numbers as floats), so
//!   `result.count % 2 == 0` works where Argo would reject `%` on a float.
//! - `mean`/`median` of an empty array is an error rather than 0, so an empty Prometheus
//!   vector cannot pass a `mean(result) < 0.01` condition.
//! - Method calls (`x.Name()`) and expr's date functions are not supported.

mod ast;
mod builtins;
mod check;
mod error;
mod eval;
mod lexer;
mod parser;
mod threshold;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use error::ExprError;
pub use value::Value;

/// Bounds on what a condition may cost. The defaults suit any realistic condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest expression accepted, in bytes.
    pub max_source_len: usize,
    /// Deepest nesting of the expression (parentheses, operators, calls), in levels.
    pub max_depth: usize,
    /// Evaluation budget: one step per node evaluated, per element visited, per 16 bytes of
    /// string built or copied.
    pub max_steps: u64,
    /// Largest array (in elements) or string (in bytes) an expression may build.
    pub max_value_len: usize,
    /// Size limit handed to the regex compiler for `matches`, in bytes.
    pub max_regex_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_len: 4096,
            max_depth: 64,
            max_steps: 1_000_000,
            max_value_len: 100_000,
            max_regex_size: 10 << 20,
        }
    }
}

/// The variables an expression can read: `result`, and whatever else the caller adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Env {
    vars: BTreeMap<String, Value>,
}

impl Env {
    /// An environment without variables.
    pub fn new() -> Self {
        Env::default()
    }

    /// The environment Argo gives a metric's conditions: just `result`.
    pub fn with_result(result: Value) -> Self {
        Env::new().with("result", result)
    }

    /// Adds (or replaces) a variable.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.vars.insert(name.into(), value);
        self
    }

    /// The value of a variable.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }
}

/// A parsed expression, ready to be evaluated any number of times.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    root: ast::Node,
    limits: Limits,
}

/// Parses an expression with the default [`Limits`].
pub fn parse(source: &str) -> Result<Program, ExprError> {
    parse_with_limits(source, Limits::default())
}

/// Parses an expression with the given [`Limits`], which also bound its evaluation.
pub fn parse_with_limits(source: &str, limits: Limits) -> Result<Program, ExprError> {
    let root = parser::parse(source, &limits).map_err(|fault| ExprError::new(source, fault))?;
    Ok(Program {
        source: source.to_string(),
        root,
        limits,
    })
}

impl Program {
    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The number a simple comparison of the result bounds it by (`result[0] < 0.01` → 0.01),
    /// guards such as `len(result) > 0 &&` aside; `None` for any other condition.
    pub fn threshold(&self) -> Option<f64> {
        threshold::threshold(&self.root)
    }

    /// Evaluates the expression. Like expr's compiler, it first rejects unknown names, wrong
    /// argument counts and operators on incompatible known types, even in branches that would
    /// not run.
    pub fn eval(&self, env: &Env) -> Result<Value, ExprError> {
        check::check(&self.root, env).map_err(|fault| self.error(fault))?;
        eval::run(&self.root, env, &self.limits).map_err(|fault| self.error(fault))
    }

    /// Evaluates the expression as a condition: the answer must be a bool.
    pub fn eval_condition(&self, env: &Env) -> Result<bool, ExprError> {
        match self.eval(env)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.error(error::Fault::new(
                0,
                format!(
                    "a condition must evaluate to a bool, but this one gave {}",
                    other.describe()
                ),
            ))),
        }
    }

    fn error(&self, fault: error::Fault) -> ExprError {
        ExprError::new(&self.source, fault)
    }
}

/// Evaluates a metric's `successCondition` or `failureCondition` against what the provider
/// measured, as Argo Rollouts does: the expression sees `result` and must give a bool.
///
/// ```
/// use ramp_analysis::expr::{Value, evaluate_condition};
///
/// let result = Value::from(vec![0.004]);
/// assert_eq!(evaluate_condition("result[0] < 0.01", &result), Ok(true));
/// let empty = Value::Array(vec![]);
/// assert_eq!(evaluate_condition("len(result) > 0 && result[0] < 0.01", &empty), Ok(false));
/// let err = evaluate_condition("result[0] < )", &result).unwrap_err();
/// assert_eq!(err.to_string(), r#"unexpected token ')' at column 13 in "result[0] < )""#);
/// ```
pub fn evaluate_condition(source: &str, result: &Value) -> Result<bool, ExprError> {
    parse(source)?.eval_condition(&Env::with_result(result.clone()))
}
