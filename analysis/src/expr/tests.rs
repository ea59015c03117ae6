//! Unit tests of the language, one group per feature.

use serde_json::json;

use super::*;

fn run_with(source: &str, result: Value) -> Result<Value, ExprError> {
    parse(source)?.eval(&Env::with_result(result))
}

/// Evaluates with `result = [0.5, 2, "x"]`-free environments; panics on error.
fn value(source: &str) -> Value {
    run_with(source, Value::Nil).unwrap_or_else(|err| panic!("{source}: {err}"))
}

fn truth(source: &str, result: Value) -> bool {
    evaluate_condition(source, &result).unwrap_or_else(|err| panic!("{source}: {err}"))
}

fn error(source: &str, result: Value) -> ExprError {
    match run_with(source, result) {
        Ok(v) => panic!("{source}: expected an error, got {v:?}"),
        Err(err) => err,
    }
}

fn ints(items: &[i64]) -> Value {
    Value::from(items.to_vec())
}

#[test]
fn literals() {
    assert_eq!(value("42"), Value::Int(42));
    assert_eq!(value("0x2A"), Value::Int(42));
    assert_eq!(value("0o52"), Value::Int(42));
    assert_eq!(value("0b101010"), Value::Int(42));
    assert_eq!(value("1_000"), Value::Int(1000));
    assert_eq!(value("0.5"), Value::Float(0.5));
    assert_eq!(value(".5"), Value::Float(0.5));
    assert_eq!(value("1e-3"), Value::Float(0.001));
    assert_eq!(value("2E2"), Value::Float(200.0));
    assert_eq!(value("'single'"), Value::from("single"));
    assert_eq!(value(r#""dou\"ble""#), Value::from("dou\"ble"));
    assert_eq!(value("true"), Value::Bool(true));
    assert_eq!(value("false"), Value::Bool(false));
    assert_eq!(value("nil"), Value::Nil);
    assert_eq!(
        value("[1, 'a', [true],]"),
        Value::from(json!([1, "a", [true]]))
    );
    assert_eq!(
        value("{a: 1, 'b c': 2, 3: 4, ('d' + 'e'): nil}"),
        Value::from(json!({"a": 1, "b c": 2, "3": 4, "de": null}))
    );
    assert_eq!(value("[]"), Value::Array(vec![]));
    assert_eq!(value("{}"), Value::Map(Default::default()));
}

#[test]
fn literal_errors() {
    assert_eq!(parse("9223372036854775808").unwrap_err().column(), 1);
    assert!(parse("1e400").is_err());
    assert!(parse("0x").is_err());
    assert!(parse("{a 1}").is_err());
    assert!(parse("{[1]: 2}").is_err());
    assert!(run_with("{(1): 2}", Value::Nil).is_err());
}

#[test]
fn member_access_indexing_and_slices() {
    let result = Value::from(json!({
        "major": "1",
        "data": {"values": [0.1, 0.2, 0.3]},
        "list": [10, 20, 30, 40],
        "absent": null,
    }));
    let eval = |src: &str| run_with(src, result.clone()).unwrap_or_else(|e| panic!("{src}: {e}"));
    assert_eq!(eval("result.major"), Value::from("1"));
    assert_eq!(eval("result['major']"), Value::from("1"));
    assert_eq!(eval("result.data.values[1]"), Value::Float(0.2));
    assert_eq!(eval("result.list[-1]"), Value::Int(40));
    assert_eq!(eval("result.list[1.9]"), Value::Int(20));
    assert_eq!(eval("result.nope"), Value::Nil);
    assert_eq!(eval("result.absent?.deeper.still"), Value::Nil);
    assert_eq!(eval("result.nope?.[0]"), Value::Nil);
    assert_eq!(eval("result?.major"), Value::from("1"));
    assert_eq!(eval("result.list[1:3]"), ints(&[20, 30]));
    assert_eq!(eval("result.list[:2]"), ints(&[10, 20]));
    assert_eq!(eval("result.list[2:]"), ints(&[30, 40]));
    assert_eq!(eval("result.list[1:-1]"), ints(&[20, 30]));
    assert_eq!(eval("result.list[:]"), ints(&[10, 20, 30, 40]));
    assert_eq!(eval("result.list[3:1]"), ints(&[]));
    assert_eq!(eval("result.list[-100:100]"), ints(&[10, 20, 30, 40]));
    assert_eq!(eval("'hello'[1:3]"), Value::from("el"));
    assert_eq!(eval("'héllo'[1]"), Value::from("é"));
    assert_eq!(eval("{a: {b: [1, 2]}}.a.b[0]"), Value::Int(1));

    let err = run_with("result.list[4]", result.clone()).unwrap_err();
    assert_eq!(err.message(), "index out of range: 4 (array length is 4)");
    assert_eq!(err.column(), 12);
    let err = run_with("result.absent.deeper", result.clone()).unwrap_err();
    assert_eq!(err.message(), "cannot fetch deeper from nil");
    assert!(run_with("result.list.x", result.clone()).is_err());
    assert!(run_with("result[1]", result.clone()).is_err());
    assert!(run_with("result.major.x", result).is_err());
    assert!(parse("result.Name()").is_err());
}

#[test]
fn unary_operators() {
    assert_eq!(value("-1"), Value::Int(-1));
    assert_eq!(value("+1.5"), Value::Float(1.5));
    assert_eq!(value("- -2"), Value::Int(2));
    assert_eq!(value("!true"), Value::Bool(false));
    assert_eq!(value("not false"), Value::Bool(true));
    assert_eq!(value("!!true"), Value::Bool(true));
    assert!(run_with("-'a'", Value::Nil).is_err());
    assert!(run_with("!1", Value::Nil).is_err());
    assert!(run_with("!result", Value::Float(1.0)).is_err());
    assert!(run_with("-result[0]", Value::from(json!([i64::MIN]))).is_err());
}

#[test]
fn arithmetic_follows_expr() {
    assert_eq!(value("1 + 2"), Value::Int(3));
    assert_eq!(value("1 + 2.5"), Value::Float(3.5));
    assert_eq!(value("7 - 10"), Value::Int(-3));
    assert_eq!(value("3 * 4"), Value::Int(12));
    // Division always gives a float, even between integers.
    assert_eq!(value("7 / 2"), Value::Float(3.5));
    assert_eq!(value("6 / 3"), Value::Float(2.0));
    assert_eq!(value("1 / 0"), Value::Float(f64::INFINITY));
    assert_eq!(value("-1 / 0"), Value::Float(f64::NEG_INFINITY));
    assert_eq!(value("7 % 3"), Value::Int(1));
    assert_eq!(value("-7 % 3"), Value::Int(-1));
    assert_eq!(value("2 ** 10"), Value::Float(1024.0));
    assert_eq!(value("2 ^ 3 ^ 2"), Value::Float(512.0));
    assert_eq!(value("10 ** 400"), Value::Float(f64::INFINITY));
    assert_eq!(value("'a' + 'b'"), Value::from("ab"));
    assert!(value("(0 / 0) != (0 / 0)") == Value::Bool(true));

    assert_eq!(
        error("7 % 0", Value::Nil).message(),
        "integer divide by zero"
    );
    assert!(run_with("7.5 % 2", Value::Nil).is_err());
    assert!(run_with("1 + 'a'", Value::Nil).is_err());
    assert!(run_with("[1] + [2]", Value::Nil).is_err());
    let err = error("9223372036854775807 + 1", Value::Nil);
    assert_eq!(err.message(), "integer overflow: 9223372036854775807 + 1");
    assert!(run_with("-9223372036854775807 - 2", Value::Nil).is_err());
    assert!(run_with("4611686018427387904 * 2", Value::Nil).is_err());
    assert_eq!(value("-9223372036854775807 - 1"), Value::Int(i64::MIN));
    assert_eq!(
        run_with("result % -1", Value::Int(i64::MIN)).unwrap(),
        Value::Int(0)
    );
}

#[test]
fn precedence_matches_expr() {
    assert_eq!(value("1 + 2 * 3"), Value::Int(7));
    assert_eq!(value("(1 + 2) * 3"), Value::Int(9));
    assert_eq!(value("10 - 4 - 3"), Value::Int(3));
    assert_eq!(value("-2 ** 2"), Value::Float(-4.0));
    assert_eq!(value("2 * 3 ** 2"), Value::Float(18.0));
    assert_eq!(value("1 + 1 == 2"), Value::Bool(true));
    assert_eq!(value("true || false && false"), Value::Bool(true));
    assert_eq!(value("not true == false"), Value::Bool(true));
    assert_eq!(value("!false && false"), Value::Bool(false));
    assert_eq!(value("1..3 == [1, 2, 3]"), Value::Bool(true));
    assert_eq!(value("2 in 1..1 + 2"), Value::Bool(true));
    assert_eq!(value("nil ?? 1 + 1"), Value::Int(2));
    assert_eq!(value("true ? 1 : 2 + 10"), Value::Int(1));
    assert_eq!(value("false ? 1 : true ? 2 : 3"), Value::Int(2));
    assert_eq!(value("1 < 2 == true"), Value::Bool(true));
}

#[test]
fn comparisons_mix_numbers() {
    assert_eq!(value("1 == 1.0"), Value::Bool(true));
    assert_eq!(value("1 < 1.5"), Value::Bool(true));
    assert_eq!(value("2.5 >= 2"), Value::Bool(true));
    assert_eq!(value("3 <= 2"), Value::Bool(false));
    assert_eq!(value("'abc' < 'abd'"), Value::Bool(true));
    assert_eq!(value("[1, 2] == [1.0, 2.0]"), Value::Bool(true));
    assert_eq!(value("{a: 1} == {a: 1}"), Value::Bool(true));
    assert_eq!(value("nil == nil"), Value::Bool(true));
    assert_eq!(value("nil != 1"), Value::Bool(true));
    assert!(truth("result != result", Value::Float(f64::NAN)));
    assert!(!truth("result < 1", Value::Float(f64::NAN)));
    assert!(!truth("result >= 1", Value::Float(f64::NAN)));
    // Values of unknown type (from inside `result`) compare as unequal...
    assert!(!truth("result.a == 'x'", Value::from(json!({"a": 1}))));
    // ...but a comparison the checker can see is wrong is an error, as in Argo.
    let err = error("result == 'x'", Value::Float(1.0));
    assert_eq!(
        err.message(),
        "invalid operation: == (mismatched types float and string)"
    );
    assert!(run_with("'a' < 1", Value::Nil).is_err());
    assert!(run_with("result[0] < 'a'", Value::from(vec![1.0])).is_err());
    assert!(run_with("nil < 1", Value::Nil).is_err());
}

#[test]
fn logic_short_circuits() {
    assert!(!truth(
        "len(result) > 0 && result[0] > 0.5",
        Value::Array(vec![])
    ));
    assert!(truth(
        "len(result) == 0 || result[0] > 0.5",
        Value::Array(vec![])
    ));
    assert!(truth("true or result[5]", Value::Array(vec![])));
    assert!(!truth("false and result[5]", Value::Array(vec![])));
    assert!(run_with("true && 1", Value::Nil).is_err());
    assert!(run_with("result && true", Value::Float(1.0)).is_err());
    let err = error("result[0] && true", Value::from(vec![1.0]));
    assert_eq!(
        err.message(),
        "invalid operation: && needs bool operands, got float 1"
    );
}

#[test]
fn membership_and_string_operators() {
    assert!(truth("2 in result", Value::from(vec![2.0, 2.0])));
    assert!(truth("'a' in ['a', 'b']", Value::Nil));
    assert!(truth("'x' not in ['a', 'b']", Value::Nil));
    assert!(truth(
        "'major' in result",
        Value::from(json!({"major": "1"}))
    ));
    assert!(truth(
        "!('minor' in result)",
        Value::from(json!({"major": "1"}))
    ));
    assert!(truth(
        "1 in result.missing == false",
        Value::from(json!({}))
    ));
    assert!(truth("'hello world' contains 'o w'", Value::Nil));
    assert!(truth("'hello' not contains 'x'", Value::Nil));
    assert!(truth("'hello' startsWith 'he'", Value::Nil));
    assert!(truth("'hello' endsWith 'lo'", Value::Nil));
    assert!(truth("'hello' not startsWith 'lo'", Value::Nil));
    assert!(truth("'v1.2.3' matches '^v[0-9]+\\\\.'", Value::Nil));
    assert!(truth("'abc' not matches 'z'", Value::Nil));
    assert!(truth("result matches '^[a-c]+$'", Value::from("abc")));
    let dynamic = Value::from(json!({"text": "abc", "pattern": "b+"}));
    assert!(truth("result.text matches result.pattern", dynamic));
    assert!(parse("'a' matches '('").is_err());
    assert!(run_with("1 in 1", Value::Nil).is_err());
    assert!(run_with("1 in result", Value::from(json!({"a": 1}))).is_err());
    assert!(run_with("1 contains 'a'", Value::Nil).is_err());
    let bad_pattern = Value::from(json!({"text": "abc", "pattern": "("}));
    assert!(run_with("result.text matches result.pattern", bad_pattern).is_err());
}

#[test]
fn regexes_are_size_limited() {
    let limits = Limits {
        max_regex_size: 1000,
        ..Limits::default()
    };
    let err = parse_with_limits("'a' matches 'a{1000}{1000}'", limits).unwrap_err();
    assert!(
        err.message().contains("invalid regular expression"),
        "{err}"
    );
    assert!(parse("'a' matches '\\\\w{50}'").is_ok());
}

#[test]
fn ternary_coalesce_and_ranges() {
    assert_eq!(value("true ? 'y' : 'n'"), Value::from("y"));
    assert_eq!(value("false ?: 'fallback'"), Value::from("fallback"));
    assert_eq!(value("true ?: 'fallback'"), Value::Bool(true));
    assert!(run_with("1 ? 2 : 3", Value::Nil).is_err());
    assert!(run_with("result[0] ? 2 : 3", Value::from(vec![1.0])).is_err());
    assert_eq!(value("nil ?? 'd'"), Value::from("d"));
    assert_eq!(value("false ?? 'd'"), Value::Bool(false));
    assert_eq!(
        run_with("result.x ?? 0", Value::from(json!({}))).unwrap(),
        Value::Int(0)
    );
    assert_eq!(value("1..3"), ints(&[1, 2, 3]));
    assert_eq!(value("3..1"), ints(&[]));
    assert_eq!(value("-1..1"), ints(&[-1, 0, 1]));
    assert!(run_with("1.5..3", Value::Nil).is_err());
    let err = error("0..100000000", Value::Nil);
    assert!(err.message().contains("limit"), "{err}");
}

#[test]
fn pipes() {
    assert_eq!(value("'Hello' | lower()"), Value::from("hello"));
    assert_eq!(value("'a,b' | split(',') | len()"), Value::Int(2));
    assert!(truth("result | all(# > 0)", Value::from(vec![1.0, 2.0])));
    assert!(truth(
        "result | count(# > 1) == 1",
        Value::from(vec![1.0, 2.0])
    ));
    assert!(parse("1 | 2").is_err());
}

#[test]
fn predicates() {
    let r = Value::from(vec![0.5, 0.95, 0.99]);
    assert!(truth("all(result, {# > 0.1})", r.clone()));
    assert!(truth("all(result, # > 0.1)", r.clone()));
    assert!(!truth("all(result, {# > 0.9})", r.clone()));
    assert!(truth("any(result, {# > 0.9})", r.clone()));
    assert!(truth("none(result, {# > 1})", r.clone()));
    assert!(!truth("one(result, {# > 0.9})", r.clone()));
    assert!(truth("one(result, {# > 0.96})", r.clone()));
    assert!(truth("count(result, {# > 0.9}) == 2", r.clone()));
    assert!(truth(
        "filter(result, {# > 0.9}) == [0.95, 0.99]",
        r.clone()
    ));
    assert!(truth("map(result, {# * 2}) == [1.0, 1.9, 1.98]", r.clone()));
    assert!(truth("find(result, {# > 0.9}) == 0.95", r.clone()));
    assert!(truth("findLast(result, {# > 0.9}) == 0.99", r.clone()));
    assert!(truth("findIndex(result, {# > 0.9}) == 1", r.clone()));
    assert!(truth("findLastIndex(result, {# > 0.9}) == 2", r.clone()));
    assert!(truth("findIndex(result, {# > 5}) == -1", r.clone()));
    assert!(truth("find(result, {# > 5}) == nil", r.clone()));
    assert!(truth("sum(result) > 2.4", r.clone()));
    assert!(truth("sum(result, {# * 10}) > 24", r.clone()));
    assert!(truth("all(map(result, {#index}), {# < 3})", r.clone()));
    assert!(truth("all([], {# > 1})", Value::Nil));
    assert!(truth("!any([], {# > 1})", Value::Nil));
    assert!(truth("count([true, false, true]) == 2", Value::Nil));
    assert!(truth("sum([1, 2, 3]) == 6", Value::Nil));
    assert_eq!(value("sum([])"), Value::Int(0));
    // Fields of map elements with the `.field` shorthand, and nested predicates.
    let objects = Value::from(json!([{"v": 1, "tags": ["a"]}, {"v": 3, "tags": []}]));
    assert!(truth("all(result, {.v > 0})", objects.clone()));
    assert!(truth("any(result, {#.v == 3})", objects.clone()));
    assert!(truth(
        "count(result, {any(.tags, {# == 'a'})}) == 1",
        objects
    ));
    let apdex = Value::from(json!({
        "service_apdex": {"label": null, "values": {"values": [2, 2]}}
    }));
    assert!(truth(
        "all(result.service_apdex.values.values, {# > 1})",
        apdex
    ));

    assert!(run_with("all(result, {# + 1})", r.clone()).is_err());
    assert!(run_with("all(1, {# > 1})", Value::Nil).is_err());
    assert!(run_with("count([1])", Value::Nil).is_err());
    assert!(parse("# > 1").is_err());
    assert!(parse(".a > 1").is_err());
    assert!(parse("all(result)").is_err());
    assert!(parse("all(result, {#acc})").is_err());
}

#[test]
fn argo_functions() {
    assert!(truth("isNaN(result)", Value::Float(f64::NAN)));
    assert!(!truth("isNaN(result)", Value::Float(1.0)));
    assert!(!truth("isNaN(result)", Value::Int(1)));
    assert!(truth("isNaN(result) || result >= 0.95", Value::Float(0.97)));
    assert!(truth("isInf(result)", Value::Float(f64::INFINITY)));
    assert!(truth(
        "isInf(result[0])",
        Value::from(vec![f64::NEG_INFINITY])
    ));
    assert!(!truth("isInf(result)", Value::Float(0.0)));
    assert!(run_with("isNaN(result)", Value::from(vec![1.0])).is_err());
    assert!(truth("isNil(result)", Value::Nil));
    assert!(!truth("isNil(result)", Value::Array(vec![])));
    assert!(!truth("isNil(result)", Value::Bool(false)));
    assert!(truth("default(result, 0) == 0", Value::Nil));
    assert!(truth("default(result, 0) == 5", Value::Float(5.0)));
    assert!(truth("default(result.x, 7) == 7", Value::from(json!({}))));
    // asInt / asFloat, from Argo's own tests.
    assert!(truth("asInt(result) == 1", Value::from("1")));
    assert!(truth("asInt(result) == 1", Value::Int(1)));
    assert!(truth("asInt(result) == 1", Value::Float(1.123)));
    assert!(run_with("asInt(result) == 1.1", Value::from("1.1")).is_err());
    assert!(truth("asFloat(result) == 1.1", Value::from("1.1")));
    assert!(truth("asFloat(result) >= 1.1", Value::from("1.1")));
    assert!(truth("asFloat(result) <= 1.1", Value::from("1.1")));
    assert!(truth("asFloat(result) == 1.1", Value::Float(1.1)));
    assert!(truth("asFloat(result) == 1", Value::Int(1)));
    let err = error("asFloat(result) == 1.1", Value::from("NotANum"));
    assert_eq!(
        err.message(),
        "asFloat() cannot parse \"NotANum\" as a number"
    );
    let err = error("asFloat(result) == \"1.1\"", Value::from("1.1"));
    assert_eq!(
        err.message(),
        "invalid operation: == (mismatched types float and string)"
    );
    assert!(run_with("asInt(result)", Value::Float(f64::NAN)).is_err());
    assert!(run_with("asInt(result)", Value::Float(1e300)).is_err());
    assert!(run_with("asInt(true)", Value::Nil).is_err());
}

#[test]
fn other_builtins() {
    assert_eq!(value("len([1, 2])"), Value::Int(2));
    assert_eq!(value("len({a: 1})"), Value::Int(1));
    assert_eq!(value("len('héllo')"), Value::Int(5));
    assert!(run_with("len(1)", Value::Nil).is_err());
    assert!(run_with("len(result)", Value::Nil).is_err());
    assert_eq!(value("abs(-2)"), Value::Int(2));
    assert_eq!(value("abs(-2.5)"), Value::Float(2.5));
    assert_eq!(value("max(1, 3.5, 2)"), Value::Float(3.5));
    assert_eq!(value("max([1, 7], 3)"), Value::Int(7));
    assert_eq!(value("min(4, 2, 8)"), Value::Int(2));
    assert!(run_with("max([])", Value::Nil).is_err());
    assert_eq!(value("mean([1, 2, 3, 4])"), Value::Float(2.5));
    assert_eq!(value("median([5, 1, 3])"), Value::Float(3.0));
    assert_eq!(value("median([4, 1, 3, 2])"), Value::Float(2.5));
    assert!(run_with("mean([])", Value::Nil).is_err());
    assert_eq!(value("ceil(1.2)"), Value::Float(2.0));
    assert_eq!(value("floor(-1.2)"), Value::Float(-2.0));
    assert_eq!(value("round(2.5)"), Value::Float(3.0));
    assert_eq!(value("round(-2.5)"), Value::Float(-3.0));
    assert_eq!(value("int('42')"), Value::Int(42));
    assert_eq!(value("int(3.9)"), Value::Int(3));
    assert_eq!(value("float('0.25')"), Value::Float(0.25));
    assert_eq!(value("float(2)"), Value::Float(2.0));
    assert!(run_with("int('x')", Value::Nil).is_err());
    assert_eq!(value("string(0.5)"), Value::from("0.5"));
    assert_eq!(value("string(1e6)"), Value::from("1e+06"));
    assert_eq!(value("string([1, 'a'])"), Value::from("[1 a]"));
    assert_eq!(value("string(nil)"), Value::from("<nil>"));
    assert_eq!(value("upper('aé')"), Value::from("AÉ"));
    assert_eq!(value("lower('AB')"), Value::from("ab"));
    assert_eq!(value("trim('  x ')"), Value::from("x"));
    assert_eq!(value("trim('__x__', '_')"), Value::from("x"));
    assert_eq!(
        value("trimPrefix('HelloWorld', 'Hello')"),
        Value::from("World")
    );
    assert_eq!(
        value("trimSuffix('HelloWorld', 'World')"),
        Value::from("Hello")
    );
    assert_eq!(
        value("split('a,b,c', ',')"),
        Value::from(vec!["a", "b", "c"])
    );
    assert_eq!(
        value("split('a,b,c', ',', 2)"),
        Value::from(vec!["a", "b,c"])
    );
    assert_eq!(value("split('abc', '')"), Value::from(vec!["a", "b", "c"]));
    assert_eq!(value("split('abc', '', 2)"), Value::from(vec!["a", "bc"]));
    assert_eq!(value("split('abc', ',', 0)"), Value::Array(vec![]));
    assert_eq!(value("join(['a', 'b'], '-')"), Value::from("a-b"));
    assert_eq!(value("join(['a', 'b'])"), Value::from("ab"));
    assert_eq!(value("replace('aXbX', 'X', '-')"), Value::from("a-b-"));
    assert_eq!(value("replace('ab', '', '-')"), Value::from("-a-b-"));
    assert_eq!(value("repeat('ab', 3)"), Value::from("ababab"));
    assert!(run_with("repeat('ab', -1)", Value::Nil).is_err());
    assert_eq!(value("indexOf('apple pie', 'pie')"), Value::Int(6));
    assert_eq!(value("lastIndexOf('a-a-a', 'a')"), Value::Int(4));
    assert_eq!(value("indexOf('abc', 'z')"), Value::Int(-1));
    assert_eq!(value("hasPrefix('abc', 'ab')"), Value::Bool(true));
    assert_eq!(value("hasSuffix('abc', 'bc')"), Value::Bool(true));
    assert_eq!(value("first([1, 2])"), Value::Int(1));
    assert_eq!(value("last([1, 2])"), Value::Int(2));
    assert_eq!(value("first([])"), Value::Nil);
    assert_eq!(value("take([1, 2, 3], 2)"), ints(&[1, 2]));
    assert_eq!(value("keys({b: 1, a: 2})"), Value::from(vec!["a", "b"]));
    assert_eq!(value("values({b: 1, a: 2})"), ints(&[2, 1]));
    assert_eq!(value("sort([3, 1.5, 2])"), Value::from(json!([1.5, 2, 3])));
    assert_eq!(
        value("sort(['b', 'a'], 'desc')"),
        Value::from(vec!["b", "a"])
    );
    assert!(run_with("sort([1, 'a'])", Value::Nil).is_err());
    assert_eq!(value("type(1)"), Value::from("int"));
    assert_eq!(value("type(nil)"), Value::from("nil"));
    assert_eq!(value("fromJSON('{\"a\": [1]}').a[0]"), Value::Int(1));
    assert_eq!(value("toJSON([1])"), Value::from("[\n  1\n]"));
    assert!(run_with("fromJSON('{')", Value::Nil).is_err());
    assert_eq!(value("get([1, 2], 5)"), Value::Nil);
    assert_eq!(value("get({a: 1}, 'a')"), Value::Int(1));
    assert_eq!(value("get(nil, 'a')"), Value::Nil);
}

#[test]
fn names_and_calls_are_checked_before_running() {
    let err = error("invalidVariable", Value::Bool(true));
    assert_eq!(err.message(), "unknown name invalidVariable");
    // Even in a branch that never runs, like expr's compiler.
    assert!(run_with("false && nope > 1", Value::Nil).is_err());
    assert!(run_with("false && 'a' > 1", Value::Nil).is_err());
    assert!(run_with("nope(1)", Value::Nil).is_err());
    assert!(run_with("result(1)", Value::Nil).is_err());
    assert!(run_with("len", Value::Nil).is_err());
    assert!(run_with("len(1, 2)", Value::Nil).is_err());
    assert!(run_with("replace('a')", Value::Nil).is_err());
    let env = Env::with_result(Value::Nil).with("threshold", Value::Float(0.5));
    assert_eq!(
        parse("threshold * 2").unwrap().eval(&env).unwrap(),
        Value::Float(1.0)
    );
}

#[test]
fn conditions_must_give_bools() {
    let err = evaluate_condition("1", &Value::Bool(true)).unwrap_err();
    assert_eq!(
        err.message(),
        "a condition must evaluate to a bool, but this one gave int 1"
    );
    assert!(evaluate_condition("result", &Value::Nil).is_err());
    assert_eq!(
        evaluate_condition("result == true", &Value::Bool(true)),
        Ok(true)
    );
    assert_eq!(
        evaluate_condition("result == false", &Value::Bool(true)),
        Ok(false)
    );
}

#[test]
fn errors_point_at_the_mistake() {
    let err = parse("result[0] < )").unwrap_err();
    assert_eq!(err.message(), "unexpected token ')'");
    assert_eq!((err.offset(), err.column()), (12, 13));
    assert_eq!(
        err.to_string(),
        r#"unexpected token ')' at column 13 in "result[0] < )""#
    );
    let err = parse("result[0] <").unwrap_err();
    assert_eq!(err.message(), "unexpected end of expression");
    assert_eq!(err.column(), 12);
    let err = parse("").unwrap_err();
    assert_eq!(err.message(), "unexpected end of expression");
    let err = parse("(1 + 2").unwrap_err();
    assert_eq!(err.column(), 7);
    let err = parse("a b").unwrap_err();
    assert_eq!((err.message(), err.column()), ("unexpected token 'b'", 3));
    let err = parse("result = 1").unwrap_err();
    assert_eq!(err.message(), "unexpected token '=' (use == to compare)");
    let err = parse("'a' matches '('").unwrap_err();
    assert_eq!(
        err.message(),
        "invalid regular expression \"(\": unclosed group"
    );
    let err = error("result.x", Value::from(vec![1.0]));
    assert_eq!(
        err.message(),
        "cannot fetch string \"x\" from an array (arrays take a number index)"
    );
    let err = parse("a not b").unwrap_err();
    assert_eq!(err.column(), 7);
    let err = parse("'x' == \"é\" && 1 ==").unwrap_err();
    assert_eq!(err.column(), 19);
    let err = run_with("result > 1 && result[0] < 1", Value::Float(2.0)).unwrap_err();
    assert_eq!(err.column(), 21, "{err}");
}

#[test]
fn comments_and_whitespace() {
    assert_eq!(value("1 /* one */ + // the rest\n 2"), Value::Int(3));
    assert_eq!(value("\n\t1\r\n==\n1 "), Value::Bool(true));
}

#[test]
fn input_length_is_bounded() {
    let long = format!("{}1", "1 + ".repeat(1100));
    let err = parse(&long).unwrap_err();
    assert!(
        err.message().contains("more than the limit of 4096 bytes"),
        "{err}"
    );
    let limits = Limits {
        max_source_len: 10,
        ..Limits::default()
    };
    assert!(parse_with_limits("1 + 2 + 3 + 4", limits.clone()).is_err());
    assert!(parse_with_limits("1 + 2", limits).is_ok());
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    for depth in [65, 1000, 4000] {
        for (open, close) in [("(", ")"), ("[", "]"), ("-", ""), ("!", ""), ("f(", ")")] {
            let source = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let source = &source[..source.len().min(4096)];
            let err = parse(source).unwrap_err();
            assert!(
                err.message().contains("nested too deeply") || err.message().contains("limit"),
                "{open}: {err}"
            );
        }
    }
    // Long flat chains build deep trees; they are bounded too.
    let chain = format!("result{}", " && result".repeat(200));
    assert!(
        parse(&chain)
            .unwrap_err()
            .message()
            .contains("nested too deeply")
    );
    let ok = format!("{}1{}", "(".repeat(30), ")".repeat(30));
    assert_eq!(value(&ok), Value::Int(1));
    let chain = format!("true{}", " && true".repeat(50));
    assert_eq!(value(&chain), Value::Bool(true));
}

#[test]
fn evaluation_work_is_bounded() {
    let big = Value::Array((0..50_000).map(Value::Int).collect());
    // Nested predicates over a large array run out of steps instead of running for minutes.
    let err = run_with("none(result, {any(result, {# < 0})})", big.clone()).unwrap_err();
    assert!(err.message().contains("steps"), "{err}");
    // Copies of a large result are paid for.
    let err = run_with("len(map(0..1000, {result})) > 0", big.clone()).unwrap_err();
    assert!(err.message().contains("steps"), "{err}");
    // Strings cannot grow without bound.
    let err = run_with("len(repeat('abcd', 1000000)) > 0", Value::Nil).unwrap_err();
    assert!(err.message().contains("limit"), "{err}");
    let err = run_with("len(map(1..2000, {repeat('x', 90000)})) > 0", Value::Nil).unwrap_err();
    assert!(err.message().contains("steps"), "{err}");
    // Reading from a large result is cheap: it is borrowed, not copied.
    assert!(truth("result[49999] == 49999 && len(result) == 50000", big));
}

#[test]
fn json_results_from_the_web_provider() {
    let body = json!({"Status": 0, "major": "1", "minor": "20", "ok": true, "ratio": 0.25});
    let result = Value::from(body);
    assert!(truth("result.major == '1'", result.clone()));
    assert!(!truth("result.Status == 999", result.clone()));
    assert!(!truth("result.Status == -1", result.clone()));
    assert!(truth("result.ok && result.ratio < 0.5", result.clone()));
    assert!(truth("asInt(result.minor) >= 20", result));
}
