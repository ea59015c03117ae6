//! The web provider: an HTTP request whose JSON answer (or the part a `jsonPath` selects) is
//! the measurement.
//!
//! `method` GET (default), POST or PUT; `body` or `jsonBody` (not both, not with GET);
//! `headers`; `timeoutSeconds` (default 10); `insecure` skips certificate checks; a non-2xx
//! answer is an Error. `jsonPath` uses Kubernetes' syntax (`{$.data.ok}`; default `{$}`); the
//! first value it selects is `result`, recorded as JSON. An answer that is not JSON is `result`
//! as a string, judged by the conditions like any other value (Argo passes it unjudged).

use std::time::Duration;

use jsonpath_rust::JsonPath as _;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::auth::{authorization, headers};
use super::{ProviderError, Reading};
use crate::api::WebMetric;
use crate::expr::Value;

/// How long a request may take when the metric sets no `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer read; a larger one is an Error.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Sends the metric's request and reads the answer.
pub async fn measure(http: &reqwest::Client, metric: &WebMetric) -> Result<Reading, ProviderError> {
    let method = method(metric.method.as_deref())?;
    let timeout = match metric.timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => DEFAULT_TIMEOUT,
    };
    let body = body(metric, &method)?;
    let path = json_path(metric.json_path.as_deref())?;
    let url = reqwest::Url::parse(metric.url.trim()).map_err(|e| {
        ProviderError::Config(format!("web.url {:?} is not a URL: {e}", metric.url))
    })?;

    let mut request = http.request(method, url.clone()).timeout(timeout);
    for (name, value) in headers("web", metric.headers.as_ref())? {
        request = request.header(name, value);
    }
    if let Some((name, value)) =
        authorization(http, "web", metric.authentication.as_ref(), timeout).await?
    {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        if metric.json_body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request = request.body(body);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| ProviderError::Request(format!("requesting {}: {e}", redacted(&url))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::Response(format!(
            "received non 2xx response code: {} from {}",
            status.as_u16(),
            redacted(&url)
        )));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Response(format!("reading the answer: {e}")))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ProviderError::Response(format!(
                "the answer is larger than {} MiB",
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    parse_answer(&bytes, &path)
}

fn method(text: Option<&str>) -> Result<Method, ProviderError> {
    match text.map(|m| m.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("GET") => Ok(Method::GET),
        Some("POST") => Ok(Method::POST),
        Some("PUT") => Ok(Method::PUT),
        Some(other) => Err(ProviderError::Config(format!(
            "web.method {other:?} is not supported: use GET, POST or PUT"
        ))),
    }
}

fn body(metric: &WebMetric, method: &Method) -> Result<Option<Vec<u8>>, ProviderError> {
    let text = metric.body.as_deref().filter(|b| !b.is_empty());
    match (text, &metric.json_body) {
        (Some(_), Some(_)) => Err(ProviderError::Config(
            "use either body or jsonBody; both cannot exist for a web metric".into(),
        )),
        (None, None) => Ok(None),
        _ if *method == Method::GET => Err(ProviderError::Config(
            "body/jsonBody can only be used with the POST or PUT web method".into(),
        )),
        (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(json)) => serde_json::to_vec(json)
            .map(Some)
            .map_err(|e| ProviderError::Config(format!("web.jsonBody: {e}"))),
    }
}

/// Turns a Kubernetes JSONPath template (`{$.data.ok}`, `{.data.ok}`) into a JSONPath query.
pub fn json_path(template: Option<&str>) -> Result<String, ProviderError> {
    let text = template
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("{$}");
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text)
        .trim();
    let path = if inner.starts_with('$') {
        inner.to_string()
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("${inner}")
    } else {
        format!("$.{inner}")
    };
    // Check it parses now, so a bad path is reported as such, not as "no value".
    serde_json::Value::Null.query(&path).map_err(|e| {
        ProviderError::Config(format!("web.jsonPath {text:?} is not a JSONPath: {e}"))
    })?;
    Ok(path)
}

/// Reads an answer: JSON narrowed by the path, or the text itself when it is not JSON.
pub fn parse_answer(bytes: &[u8], path: &str) -> Result<Reading, ProviderError> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        let text = String::from_utf8_lossy(bytes).into_owned();
        return Ok(Reading {
            value: Value::String(text.clone()),
            recorded: text,
            metadata: None,
        });
    };
    let found = json.query(path).map_err(|e| {
        ProviderError::Response(format!("could not find JSONPath {path} in body: {e}"))
    })?;
    let first = found.first().ok_or_else(|| {
        ProviderError::Response(format!(
            "result of web metric produced no value: JSONPath {path} selects nothing"
        ))
    })?;
    Ok(Reading {
        value: Value::from(*first),
        recorded: go_json(first),
        metadata: None,
    })
}

/// JSON as Go's `encoding/json` writes it, which is how Argo records a web value: compact, keys
/// sorted, numbers as Go floats (`0` not `0.0`; `1e-7`, `1e+21` outside 1e-6..1e21), and `<`,
/// `>`, `&` escaped.
pub fn go_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

fn write_go_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&go_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        J::String(text) => out.push_str(&go_string(text)),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&go_string(key));
                out.push(':');
                write_go_json(item, out);
            }
            out.push('}');
        }
    }
}

fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        return match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        };
    }
    format!("{f}")
}

fn go_string(text: &str) -> String {
    serde_json::Value::String(text.to_string())
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The URL without credentials or query string, for messages (a token may live in either).
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_paths_in_kubernetes_syntax() {
        assert_eq!(json_path(None).unwrap(), "$");
        assert_eq!(json_path(Some("{$.data.ok}")).unwrap(), "$.data.ok");
        assert_eq!(json_path(Some("{.data.ok}")).unwrap(), "$.data.ok");
        assert_eq!(json_path(Some("$.items[0]")).unwrap(), "$.items[0]");
        assert_eq!(json_path(Some("{data.ok}")).unwrap(), "$.data.ok");
        assert!(json_path(Some("{$.data[}")).is_err());
    }

    #[test]
    fn answers() {
        let body =
            json!({"data": {"ok": true, "rate": 0.5, "count": 3, "items": [{"v": 1}, {"v": 2}]}})
                .to_string();
        let read = |path: &str| parse_answer(body.as_bytes(), &json_path(Some(path)).unwrap());
        let ok = read("{$.data.ok}").unwrap();
        assert_eq!(
            (ok.value, ok.recorded.as_str()),
            (Value::Bool(true), "true")
        );
        let rate = read("{$.data.rate}").unwrap();
        assert_eq!(
            (rate.value, rate.recorded.as_str()),
            (Value::Float(0.5), "0.5")
        );
        assert_eq!(read("{$.data.count}").unwrap().value, Value::Int(3));
        assert_eq!(read("{$.data.items[1].v}").unwrap().recorded, "2");
        let whole = read("{$.data.items}").unwrap();
        assert_eq!(whole.recorded, r#"[{"v":1},{"v":2}]"#);
        let err = read("{$.data.missing}").unwrap_err().to_string();
        assert!(
            err.starts_with("result of web metric produced no value"),
            "{err}"
        );
    }

    #[test]
    fn values_are_recorded_as_go_marshals_them() {
        for (value, want) in [
            (json!(0.0), "0"),
            (json!(1.5), "1.5"),
            (json!(3), "3"),
            (json!(1e-7), "1e-7"),
            (json!(2.5e21), "2.5e+21"),
            (json!(0.000001), "0.000001"),
            (
                json!({"b": [1.0, true, null], "a": "x<y & z>"}),
                r#"{"a":"x\u003cy \u0026 z\u003e","b":[1,true,null]}"#,
            ),
        ] {
            assert_eq!(go_json(&value), want);
        }
    }

    #[test]
    fn a_text_answer_is_a_string_result() {
        let reading = parse_answer(b"OK", "$").unwrap();
        assert_eq!(reading.value, Value::from("OK"));
        assert_eq!(reading.recorded, "OK");
    }

    #[test]
    fn methods_and_bodies() {
        assert_eq!(method(None).unwrap(), Method::GET);
        assert_eq!(method(Some("post")).unwrap(), Method::POST);
        assert!(method(Some("DELETE")).is_err());
        let metric = |body: Option<&str>, json: Option<serde_json::Value>| WebMetric {
            url: "http://x".into(),
            body: body.map(str::to_string),
            json_body: json,
            ..Default::default()
        };
        assert!(body(&metric(Some("a"), None), &Method::GET).is_err());
        assert!(body(&metric(Some("a"), Some(json!({}))), &Method::POST).is_err());
        assert_eq!(
            body(&metric(None, Some(json!({"a": 1}))), &Method::POST).unwrap(),
            Some(br#"{"a":1}"#.to_vec())
        );
        assert_eq!(body(&metric(None, None), &Method::GET).unwrap(), None);
    }

    #[test]
    fn urls_in_messages_hide_credentials() {
        let url = reqwest::Url::parse("https://user:pw@host/path?token=abc").unwrap();
        assert_eq!(redacted(&url), "https://host/path");
    }
}
