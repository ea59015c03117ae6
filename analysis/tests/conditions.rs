//! The condition language against real AnalysisTemplates.
//!
//! 1. Every `successCondition` and `failureCondition` in Argo Rollouts' manifests
//!    (`../shared/reference/argo-rollouts/`) parses and gives, for representative measurements,
//!    the answer Argo Rollouts gives (the expected table is written by hand, per distinct
//!    expression).
//! 2. The conditions Ramp's documentation and issues promise (`isNaN(result) || ...`,
//!    `default(result, 0)`, ...) do the same.
//! 3. The fuzzing corpus (`fuzz/corpus/condition/`) is replayed, and generated expressions are
//!    checked against a reference evaluator, so the properties the fuzzer looks for are also
//!    held by every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ramp_analysis::expr::{Env, ExprError, Value, evaluate_condition, parse};
use serde_json::json;

/// What Argo Rollouts answers for a condition and a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    True,
    False,
    /// The measurement is an Error (the expression fails to compile or to run).
    Error,
}

use Answer::{Error, False, True};

fn answer(outcome: &Result<bool, ExprError>) -> Answer {
    match outcome {
        Ok(true) => True,
        Ok(false) => False,
        Err(_) => Error,
    }
}

/// Measurements as providers hand them over: a Prometheus scalar is a float, a vector a list
/// of floats, a web provider its JSON.
fn measurement(json: serde_json::Value) -> Value {
    Value::from(json)
}

/// Hand-written expectations for every distinct condition found in the reference manifests,
/// after `{{args.*}}` substitution.
fn reference_expectations() -> BTreeMap<&'static str, Vec<(Value, Answer)>> {
    let kubernetes_version = json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2"});
    BTreeMap::from([
        (
            // The web provider reads the API server's /version.
            "result.major == '1'",
            vec![
                (measurement(kubernetes_version), True),
                (measurement(json!({"major": "2", "minor": "0"})), False),
                // A missing field is nil, and nil == '1' is false.
                (measurement(json!({"minor": "20"})), False),
                // A number where a string is expected compares unequal at run time.
                (measurement(json!({"major": 1})), False),
                // A plain string has no fields.
                (measurement(json!("v1.20")), Error),
            ],
        ),
        (
            // The web provider with a jsonPath that selects a string.
            "result == 'It worked!'",
            vec![
                (measurement(json!("It worked!")), True),
                (measurement(json!("It failed")), False),
                (measurement(json!(null)), False),
                // Argo's compiler knows result is a float64 and rejects the comparison.
                (measurement(json!(1.5)), Error),
            ],
        ),
        (
            // The same, once `{{args.success-condition}}` is substituted.
            "result == \"It worked!\"",
            vec![
                (measurement(json!("It worked!")), True),
                (measurement(json!("it worked!")), False),
                (measurement(json!(true)), Error),
            ],
        ),
        (
            // A DNS-over-HTTPS answer: Status 0 means no error.
            "result.Status == 999",
            vec![
                (measurement(json!({"Status": 0, "Answer": []})), False),
                (measurement(json!({"Status": 999})), True),
                (measurement(json!({"Status": 999.0})), True),
                (measurement(json!({})), False),
            ],
        ),
        (
            "result.Status == -1",
            vec![
                (measurement(json!({"Status": 0})), False),
                (measurement(json!({"Status": -1})), True),
                (measurement(json!({"Status": "-1"})), False),
            ],
        ),
        (
            // Prometheus: a vector of one success rate.
            "result[0] >= 0.99",
            vec![
                (measurement(json!([0.995])), True),
                (measurement(json!([0.99])), True),
                (measurement(json!([0.5, 1.0])), False),
                (measurement(json!([1])), True),
                // An empty vector has no element 0.
                (measurement(json!([])), Error),
                // A scalar cannot be indexed.
                (Value::Float(0.999), Error),
                (Value::from(vec![f64::NAN]), False),
            ],
        ),
    ])
}

/// Conditions Ramp's design and the analysis issue name explicitly, with Argo's answers.
fn documented_expectations() -> Vec<(&'static str, Value, Answer)> {
    let vector = |xs: &[f64]| Value::from(xs.to_vec());
    vec![
        ("result[0] < 0.01", vector(&[0.004]), True),
        ("result[0] < 0.01", vector(&[0.1]), False),
        ("result[0] < 0.01", vector(&[]), Error),
        (
            "len(result) > 0 && result[0] >= 0.95",
            vector(&[0.97]),
            True,
        ),
        (
            "len(result) > 0 && result[0] >= 0.95",
            vector(&[0.9]),
            False,
        ),
        ("len(result) > 0 && result[0] >= 0.95", vector(&[]), False),
        ("len(result) > 0 && result[0] < 0.01", vector(&[]), False),
        (
            "isNaN(result) || result >= 0.95",
            Value::Float(f64::NAN),
            True,
        ),
        ("isNaN(result) || result >= 0.95", Value::Float(0.96), True),
        ("isNaN(result) || result >= 0.95", Value::Float(0.5), False),
        (
            "isNaN(result[0]) || result[0] >= 0.95",
            vector(&[f64::NAN]),
            True,
        ),
        ("isInf(result)", Value::Float(f64::INFINITY), True),
        (
            "!isInf(result) && result < 100",
            Value::Float(f64::INFINITY),
            False,
        ),
        ("default(result, 0) >= 0.95", Value::Nil, False),
        ("default(result, 0) >= 0.95", Value::Float(0.99), True),
        ("default(result, 1) >= 0.95", Value::Nil, True),
        ("isNil(result)", Value::Nil, True),
        ("isNil(result)", vector(&[]), False),
        ("asInt(result) == 1", Value::from("1"), True),
        ("asInt(result) == 1", Value::Float(1.123), True),
        ("asInt(result) == 1", Value::from("1.1"), Error),
        ("asFloat(result) >= 1.1", Value::from("1.1"), True),
        ("asFloat(result) == 1.1", Value::from("NotANum"), Error),
        ("asFloat(result) == \"1.1\"", Value::from("1.1"), Error),
        ("all(result, {# > 0.9})", vector(&[0.95, 0.99]), True),
        ("all(result, {# > 0.9})", vector(&[0.95, 0.5]), False),
        (
            "any(result, {# > 0.9}) and not all(result, {# > 0.9})",
            vector(&[0.95, 0.5]),
            True,
        ),
        (
            "result[0] > 0.5 or result[1] > 0.5",
            vector(&[0.1, 0.6]),
            True,
        ),
        ("2 in result", vector(&[2.0, 2.0]), True),
        ("result > 1", Value::Float(5.0), True),
        ("result == true", Value::Bool(true), True),
        ("result == false", Value::Bool(true), False),
        ("true", Value::Bool(true), True),
        ("1", Value::Bool(true), Error),
        ("invalidVariable", Value::Bool(true), Error),
        ("a == true", Value::Bool(true), Error),
        ("result.Name() == 'hi'", Value::Bool(true), Error),
        (
            "all(result.service_apdex.values.values, {# > 1})",
            measurement(json!({
                "service_apdex": {"label": null, "values": {"values": [2.0, 2.0]}}
            })),
            True,
        ),
    ]
}

/// Sample values for the template args the reference conditions use; Argo substitutes
/// `{{args.NAME}}` in the text before evaluating it.
fn sample_arg(name: &str) -> Option<&'static str> {
    match name {
        "success-condition" => Some("It worked!"),
        _ => None,
    }
}

fn substitute_args(condition: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = condition;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            return Err(format!("unclosed {{{{ in {condition:?}"));
        };
        let tag = rest[start + 2..start + len].trim();
        let name = tag
            .strip_prefix("args.")
            .ok_or_else(|| format!("unknown placeholder {{{{{tag}}}}} in {condition:?}"))?;
        let value = sample_arg(name).ok_or_else(|| {
            format!("no sample value for {{{{args.{name}}}}}: add one to sample_arg()")
        })?;
        out.push_str(value);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/argo-rollouts")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
}

fn collect_conditions(node: &serde_json::Value, out: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("successCondition" | "failureCondition", serde_json::Value::String(s)) => {
                        out.push(s.clone());
                    }
                    _ => collect_conditions(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_conditions(item, out);
            }
        }
        _ => {}
    }
}

/// Lines that set a condition to a value, as a cross-check of the YAML walk.
fn condition_lines(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            ["successCondition:", "failureCondition:"]
                .iter()
                .any(|key| line.strip_prefix(key).is_some_and(|v| !v.trim().is_empty()))
        })
        .count()
}

/// Every condition in the reference manifests, by file.
fn reference_conditions() -> Vec<(PathBuf, String)> {
    let dir = reference_dir();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no YAML under {}: the reference manifests are missing",
        dir.display()
    );
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        let expected = condition_lines(&text);
        let mut conditions = Vec::new();
        match serde_saphyr::from_multiple::<serde_json::Value>(&text) {
            Ok(documents) => {
                for document in &documents {
                    collect_conditions(document, &mut conditions);
                }
            }
            // Helm templates are not YAML until rendered; none of them holds a condition.
            Err(err) => assert_eq!(
                expected,
                0,
                "{} has conditions but does not parse as YAML: {err}",
                file.display()
            ),
        }
        assert_eq!(
            conditions.len(),
            expected,
            "{}: the YAML walk found {:?}, the text has {expected} condition lines",
            file.display(),
            conditions
        );
        found.extend(conditions.into_iter().map(|c| (file.clone(), c)));
    }
    found
}

#[test]
fn every_reference_condition_parses_and_gives_argos_answer() {
    let conditions = reference_conditions();
    assert!(
        !conditions.is_empty(),
        "found no successCondition or failureCondition under {}",
        reference_dir().display()
    );
    let expectations = reference_expectations();
    let mut seen = BTreeSet::new();
    for (file, raw) in &conditions {
        let condition =
            substitute_args(raw).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        if let Err(err) = parse(&condition) {
            panic!("{}: {condition:?} does not parse: {err}", file.display());
        }
        let cases = expectations.get(condition.as_str()).unwrap_or_else(|| {
            panic!(
                "{}: no expected answers for {condition:?}: add it to reference_expectations()",
                file.display()
            )
        });
        seen.insert(condition.clone());
        for (result, expected) in cases {
            let outcome = evaluate_condition(&condition, result);
            assert_eq!(
                answer(&outcome),
                *expected,
                "{condition:?} with result = {result:?} ({})",
                file.display()
            );
        }
    }
    let unused: Vec<_> = expectations
        .keys()
        .filter(|condition| !seen.contains(**condition))
        .collect();
    assert!(
        unused.is_empty(),
        "expectations for conditions no longer in the reference manifests: {unused:?}"
    );
}

#[test]
fn documented_conditions_give_argos_answer() {
    for (condition, result, expected) in documented_expectations() {
        let outcome = evaluate_condition(condition, &result);
        assert_eq!(
            answer(&outcome),
            expected,
            "{condition:?} with result = {result:?}: {outcome:?}"
        );
    }
}

#[test]
fn errors_say_where_the_mistake_is() {
    let err = evaluate_condition("result[0] < )", &Value::Nil).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unexpected token ')' at column 13 in "result[0] < )""#
    );
    let err = evaluate_condition("1", &Value::Nil).unwrap_err();
    assert!(err.to_string().contains("must evaluate to a bool"), "{err}");
    let err = evaluate_condition("result[3] > 1", &Value::from(vec![1.0])).unwrap_err();
    assert_eq!(err.message(), "index out of range: 3 (array length is 1)");
}

/// Results every fuzz input is evaluated against.
fn sample_results() -> Vec<Value> {
    vec![
        Value::Nil,
        Value::Float(0.0042),
        Value::Float(f64::NAN),
        Value::from(vec![0.5, 0.99, f64::INFINITY]),
        Value::Array(Vec::new()),
        Value::from(json!({"major": "1", "Status": 0, "values": [1, 2.5, "x", null], "ok": true})),
    ]
}

/// What the fuzz target asserts: an answer or an error that points inside the input, and the
/// same outcome every time.
fn assert_robust(source: &str) {
    match parse(source) {
        Ok(program) => {
            for result in sample_results() {
                let env = Env::with_result(result);
                let first = program.eval(&env);
                if let Err(err) = &first {
                    assert!(err.offset() <= source.len(), "{source:?}: {err}");
                    assert!(!err.to_string().is_empty());
                }
                let again = program.eval(&env);
                assert_eq!(
                    format!("{first:?}"),
                    format!("{again:?}"),
                    "{source:?} is not deterministic"
                );
            }
        }
        Err(err) => {
            assert!(err.offset() <= source.len(), "{source:?}: {err}");
            assert!(err.column() >= 1);
            assert!(!err.to_string().is_empty());
        }
    }
}

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/condition");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read the fuzz corpus {}: {err}", dir.display()))
    {
        let path = entry.expect("corpus entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        if let Ok(source) = std::str::from_utf8(&bytes) {
            assert_robust(source);
            inputs += 1;
        }
    }
    assert!(inputs >= 20, "the fuzz corpus has only {inputs} inputs");
}

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Random token soup and mutations of real conditions never panic.
#[test]
fn generated_inputs_never_panic() {
    const TOKENS: &[&str] = &[
        "result",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "0",
        "1",
        "-1",
        "0.5",
        "1e-3",
        "'a'",
        "\"b\"",
        ",",
        ":",
        ".",
        "?.",
        "?",
        "??",
        "#",
        "#index",
        "+",
        "-",
        "*",
        "/",
        "%",
        "**",
        "^",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "and",
        "or",
        "not",
        "!",
        "in",
        "not in",
        "contains",
        "matches",
        "startsWith",
        "..",
        "|",
        "len",
        "all",
        "any",
        "map",
        "filter",
        "count",
        "sum",
        "isNaN",
        "isNil",
        "default",
        "asInt",
        "asFloat",
        "max",
        "nil",
        "true",
        "x",
        "major",
        "values",
        "'[a-z]+'",
        "`raw`",
        "\\",
        "'",
        "\"",
        "/*",
        "//",
        "é",
        " ",
    ];
    let seeds: Vec<String> = reference_expectations()
        .keys()
        .map(|s| s.to_string())
        .chain(
            documented_expectations()
                .into_iter()
                .map(|(s, _, _)| s.to_string()),
        )
        .collect();
    let mut rng = Rng(0x5EED_CAFE_F00D_1234);
    for round in 0..6000 {
        let source = if round % 2 == 0 {
            let len = 1 + rng.below(24);
            (0..len)
                .map(|_| rng.pick(TOKENS))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(chars.len() + 1);
                match rng.below(3) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 => {
                        let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                        chars.splice(at..at, token);
                    }
                    _ => {
                        let from = rng.below(chars.len().max(1));
                        let piece: Vec<char> = chars[from..].iter().take(8).copied().collect();
                        chars.splice(at.min(chars.len())..at.min(chars.len()), piece);
                    }
                }
            }
            chars.into_iter().collect()
        };
        assert_robust(&source);
    }
}

/// A random integer expression and the value it must have.
enum Arith {
    Lit(i64),
    Neg(Box<Arith>),
    Op(char, Box<Arith>, Box<Arith>),
}

impl Arith {
    fn generate(rng: &mut Rng, depth: usize) -> Arith {
        if depth == 0 || rng.below(4) == 0 {
            return Arith::Lit(rng.below(20) as i64);
        }
        if rng.below(6) == 0 {
            return Arith::Neg(Box::new(Arith::generate(rng, depth - 1)));
        }
        let op = ['+', '-', '*', '%'][rng.below(4)];
        Arith::Op(
            op,
            Box::new(Arith::generate(rng, depth - 1)),
            Box::new(Arith::generate(rng, depth - 1)),
        )
    }

    /// The expected value; `None` where evaluation must fail (modulo by zero, overflow).
    fn value(&self) -> Option<i64> {
        match self {
            Arith::Lit(n) => Some(*n),
            Arith::Neg(inner) => inner.value()?.checked_neg(),
            Arith::Op(op, l, r) => {
                let (l, r) = (l.value()?, r.value()?);
                match op {
                    '+' => l.checked_add(r),
                    '-' => l.checked_sub(r),
                    '*' => l.checked_mul(r),
                    _ => l.checked_rem(r),
                }
            }
        }
    }

    /// Source text with only the parentheses precedence requires, or more, at random.
    fn render(&self, rng: &mut Rng, parent: u8, right_side: bool) -> String {
        let (text, own) = match self {
            Arith::Lit(n) => (n.to_string(), 100),
            Arith::Neg(inner) => (format!("-{}", inner.render(rng, 90, false)), 90),
            Arith::Op(op, l, r) => {
                let own = if *op == '+' || *op == '-' { 30 } else { 60 };
                let text = format!(
                    "{} {op} {}",
                    l.render(rng, own, false),
                    r.render(rng, own, true)
                );
                (text, own)
            }
        };
        let needs = own < parent || (own == parent && right_side);
        if needs || rng.below(5) == 0 {
            format!("({text})")
        } else {
            text
        }
    }
}

/// Generated arithmetic agrees with a reference evaluator: precedence, associativity and
/// integer semantics hold for shapes nobody wrote a test for.
#[test]
fn generated_arithmetic_matches_a_reference() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut checked = 0;
    for _ in 0..3000 {
        let tree = Arith::generate(&mut rng, 4);
        let source = tree.render(&mut rng, 0, false);
        let got = parse(&source)
            .unwrap_or_else(|err| panic!("{source}: {err}"))
            .eval(&Env::new());
        match tree.value() {
            Some(want) => {
                assert_eq!(got, Ok(Value::Int(want)), "{source}");
                checked += 1;
            }
            None => assert!(
                got.is_err(),
                "{source}: must fail (modulo by zero or overflow)"
            ),
        }
    }
    assert!(checked > 2000);
}
