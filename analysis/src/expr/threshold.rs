//! The number a simple condition compares the result against, for dashboards that draw a
//! metric's measured values next to its threshold.
//!
//! `result[0] < 0.01` has the threshold 0.01. So have `len(result) > 0 && result[0] < 0.01` and
//! `isNaN(result) || result[0] < 0.01`: the guards that test the result's shape (`len`,
//! `isNaN`, `isInf`, `isNil`) are set aside. Anything else — two bounds
//! (`result > 1 && result < 5`), a bound that is not a numeric literal (`result < result2`),
//! no comparison at all (`all(result, {# > 0.9})`) — has no threshold.

use super::ast::{BinaryOp, Node, NodeKind, UnaryOp};

/// Functions whose comparisons check the result's shape rather than bound its value.
const GUARDS: [&str; 4] = ["len", "isNaN", "isInf", "isNil"];

pub(crate) fn threshold(root: &Node) -> Option<f64> {
    let mut bounds = Vec::new();
    collect(root, &mut bounds)?;
    match bounds.as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

/// Adds the bound of each comparison in an `&&`/`||` tree to `bounds`; `None` when some part is
/// neither a comparison of the result with a number nor a guard.
fn collect(node: &Node, bounds: &mut Vec<f64>) -> Option<()> {
    let NodeKind::Binary { op, left, right } = &node.kind else {
        return is_guard(node).then_some(());
    };
    match op {
        BinaryOp::And | BinaryOp::Or => {
            collect(left, bounds)?;
            collect(right, bounds)
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne => {
            let (subject, bound) = match (number(left), number(right)) {
                (None, Some(bound)) => (left, bound),
                (Some(bound), None) => (right, bound),
                _ => return None,
            };
            if is_guard(subject) {
                return Some(());
            }
            if !reads_result(subject) {
                return None;
            }
            bounds.push(bound);
            Some(())
        }
        _ => None,
    }
}

/// A numeric literal, possibly signed.
fn number(node: &Node) -> Option<f64> {
    match &node.kind {
        NodeKind::Int(i) => Some(*i as f64),
        NodeKind::Float(f) => Some(*f),
        NodeKind::Unary {
            op: UnaryOp::Negate,
            operand,
        } => number(operand).map(|n| -n),
        NodeKind::Unary {
            op: UnaryOp::Plus,
            operand,
        } => number(operand),
        _ => None,
    }
}

/// `len(result)`, `isNaN(result)`, `not isNil(result)`, ...
fn is_guard(node: &Node) -> bool {
    match &node.kind {
        NodeKind::Call { name, .. } => GUARDS.contains(&name.as_str()),
        NodeKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => is_guard(operand),
        _ => false,
    }
}

fn reads_result(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Ident(name) if name == "result")
        || node.children().any(reads_result)
}

#[cfg(test)]
mod tests {
    use crate::expr::parse;

    #[test]
    fn simple_bounds_are_found() {
        let cases: [(&str, Option<f64>); 16] = [
            ("result[0] < 0.01", Some(0.01)),
            ("result <= 5", Some(5.0)),
            ("0.95 <= result[0]", Some(0.95)),
            ("result[0] > -1.5", Some(-1.5)),
            ("len(result) > 0 && result[0] < 0.01", Some(0.01)),
            ("isNaN(result) || result >= 0.95", Some(0.95)),
            ("!isNil(result) and default(result, 0) < 3", Some(3.0)),
            ("(result[0] < 100)", Some(100.0)),
            ("asFloat(result.value) >= 0.9", Some(0.9)),
            ("result > 1 && result < 5", None),
            ("result[0] < result[1]", None),
            ("all(result, {# > 0.9})", None),
            ("len(result) > 0", None),
            ("result == true", None),
            ("result.status == \"ok\"", None),
            ("1 < 2", None),
        ];
        for (condition, want) in cases {
            let program = parse(condition).unwrap();
            assert_eq!(program.threshold(), want, "{condition}");
        }
    }
}
