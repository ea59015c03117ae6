//! The prometheus provider: a PromQL query (instant, or over a range with `rangeQuery`) through
//! `prometheus-http-query`.
//!
//! What conditions see, and what is recorded (as Argo records it):
//!
//! | Prometheus answers | `result`                     | recorded value   |
//! |--------------------|------------------------------|------------------|
//! | scalar             | a number                     | `0.5`            |
//! | instant vector     | a list of numbers            | `[0.01,0.02]`    |
//! | empty vector       | an empty list                | `[]`             |
//! | matrix (range)     | a list of lists of numbers   | `[[1,2],[3]]`    |
//!
//! NaN and ±Inf stay what they are (`NaN`, `+Inf`): `isNaN(result[0])` sees them, and a
//! comparison with NaN is false, as in Go.

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use prometheus_http_query::Client;
use prometheus_http_query::response::Data;

use super::auth::{authorization, headers};
use super::{ProviderError, Reading};
use crate::api::{PrometheusMetric, PrometheusRangeQuery};
use crate::duration::parse_go_duration;
use crate::expr::Value;

/// How long a query may take when the metric sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the metric's query.
pub async fn measure(
    http: &reqwest::Client,
    metric: &PrometheusMetric,
    default_address: Option<&str>,
) -> Result<Reading, ProviderError> {
    let address = address(metric, default_address)?;
    let query = metric
        .query
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ProviderError::Config("a prometheus metric needs a query".into()))?;
    let timeout = timeout(metric.timeout)?;
    let range = metric
        .range_query
        .as_ref()
        .map(|r| range(r, Timestamp::now()))
        .transpose()?;
    let mut request_headers = headers("prometheus", metric.headers.as_ref())?;
    if let Some(auth) =
        authorization(http, "prometheus", metric.authentication.as_ref(), timeout).await?
    {
        request_headers.push(auth);
    }
    let client = Client::from(http.clone(), &address).map_err(|e| {
        ProviderError::Config(format!("prometheus address {address:?} is not usable: {e}"))
    })?;
    let answer = match range {
        None => {
            let mut builder = client.query(query);
            for (name, value) in request_headers {
                builder = builder.header(name, value);
            }
            tokio::time::timeout(timeout, builder.post()).await
        }
        Some(window) => {
            let mut builder = client.query_range(
                query,
                window.start.as_second(),
                window.end.as_second(),
                window.step.as_secs_f64(),
            );
            for (name, value) in request_headers {
                builder = builder.header(name, value);
            }
            tokio::time::timeout(timeout, builder.post()).await
        }
    };
    let result = answer
        .map_err(|_| {
            ProviderError::Request(format!(
                "the query to {address} took longer than the timeout ({}s)",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| ProviderError::Request(format!("querying {address}: {e}")))?;
    Ok(reading(result.data()))
}

/// The server to query: the metric's `address`, else the controller's default.
pub fn address(
    metric: &PrometheusMetric,
    default_address: Option<&str>,
) -> Result<String, ProviderError> {
    let address = metric
        .address
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .or(default_address)
        .ok_or_else(|| {
            ProviderError::Config(
                "prometheus address is not configured: set provider.prometheus.address, or \
                 start the controller with --prometheus-address"
                    .into(),
            )
        })?
        .trim()
        .to_string();
    match reqwest::Url::parse(&address) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(address),
        _ => Err(ProviderError::Config(format!(
            "prometheus address {address:?} is not a URL (e.g. http://prometheus.monitoring:9090)"
        ))),
    }
}

fn timeout(seconds: Option<i64>) -> Result<Duration, ProviderError> {
    match seconds {
        None | Some(0) => Ok(DEFAULT_TIMEOUT),
        Some(s) if s < 0 => Err(ProviderError::Config(
            "prometheus timeout should not be negative".into(),
        )),
        Some(s) => Ok(Duration::from_secs(s.unsigned_abs())),
    }
}

/// The window of a range query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    pub step: Duration,
}

/// Reads `rangeQuery`: `start` and `end` are `now()`, `now() - duration("5m")` (any number of
/// `+`/`-` terms) or an RFC 3339 time; `end` defaults to now; `step` is a Go duration.
pub fn range(spec: &PrometheusRangeQuery, now: Timestamp) -> Result<Window, ProviderError> {
    let time = |field: &str, text: Option<&str>, default: Option<Timestamp>| match text
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(text) => range_time(text, now).map_err(|why| {
            ProviderError::Config(format!("prometheus.rangeQuery.{field} {text:?}: {why}"))
        }),
        None => default.ok_or_else(|| {
            ProviderError::Config(format!(
                "prometheus.rangeQuery.{field} is required (e.g. now() - duration(\"5m\"))"
            ))
        }),
    };
    let start = time("start", spec.start.as_deref(), None)?;
    let end = time("end", spec.end.as_deref(), Some(now))?;
    let step_text = spec.step.as_deref().unwrap_or("").trim();
    if step_text.is_empty() {
        return Err(ProviderError::Config(
            "prometheus.rangeQuery.step is required (e.g. 1m)".into(),
        ));
    }
    let step = parse_go_duration(step_text)
        .map_err(|e| ProviderError::Config(format!("prometheus.rangeQuery.step: {e}")))?;
    if step.is_zero() {
        return Err(ProviderError::Config(
            "prometheus.rangeQuery.step must be more than 0".into(),
        ));
    }
    if start > end {
        return Err(ProviderError::Config(format!(
            "prometheus.rangeQuery.start ({start}) is after end ({end})"
        )));
    }
    Ok(Window { start, end, step })
}

fn range_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let mut rest = text
        .strip_prefix("now()")
        .ok_or("expected now(), now() - duration(\"…\") or an RFC 3339 time")?;
    let mut at = now;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(at);
        }
        let negative = match rest.as_bytes()[0] {
            b'-' => true,
            b'+' => false,
            _ => return Err(format!("unexpected {rest:?}: expected + or -")),
        };
        rest = rest[1..].trim_start();
        let inner = rest
            .strip_prefix("duration(")
            .ok_or_else(|| format!("expected duration(\"…\") at {rest:?}"))?;
        let close = inner.find(')').ok_or("duration( is never closed")?;
        let literal = inner[..close].trim();
        let unquoted = literal
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .or_else(|| {
                literal
                    .strip_prefix('\'')
                    .and_then(|l| l.strip_suffix('\''))
            })
            .ok_or_else(|| format!("duration takes a quoted string, got {literal}"))?;
        let d = parse_go_duration(unquoted).map_err(|e| e.to_string())?;
        let d = SignedDuration::try_from(d).map_err(|_| "duration too large".to_string())?;
        at = if negative {
            at.checked_sub(d)
        } else {
            at.checked_add(d)
        }
        .map_err(|_| "time out of range".to_string())?;
        rest = &inner[close + 1..];
    }
}

/// What Prometheus answered, as conditions see it and as it is recorded.
pub fn reading(data: &Data) -> Reading {
    match data {
        Data::Scalar(sample) => Reading {
            value: Value::Float(sample.value()),
            recorded: format_sample(sample.value()),
            metadata: None,
        },
        Data::Vector(vector) => {
            let values: Vec<f64> = vector.iter().map(|v| v.sample().value()).collect();
            Reading {
                recorded: format_list(&values),
                value: Value::from(values),
                metadata: None,
            }
        }
        Data::Matrix(matrix) => {
            let series: Vec<Vec<f64>> = matrix
                .iter()
                .map(|s| s.samples().iter().map(|p| p.value()).collect())
                .collect();
            let mut recorded = String::from("[");
            for (i, values) in series.iter().enumerate() {
                if i > 0 {
                    recorded.push(',');
                }
                recorded.push_str(&format_list(values));
            }
            recorded.push(']');
            Reading {
                value: Value::Array(series.into_iter().map(Value::from).collect()),
                recorded,
                metadata: None,
            }
        }
    }
}

/// A sample as Prometheus' Go client prints it: shortest digits, never an exponent, `NaN`,
/// `+Inf`, `-Inf`.
pub fn format_sample(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

fn format_list(values: &[f64]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}", format_sample(*v));
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn readings_are_recorded_as_argo_records_them() {
        let scalar = reading(&data(
            r#"{"resultType":"scalar","result":[1700000000,"0.5"]}"#,
        ));
        assert_eq!(scalar.value, Value::Float(0.5));
        assert_eq!(scalar.recorded, "0.5");

        let vector = reading(&data(
            r#"{"resultType":"vector","result":[
                {"metric":{"status":"500"},"value":[1700000000,"0.0125"]},
                {"metric":{"status":"502"},"value":[1700000000,"1e-7"]}]}"#,
        ));
        assert_eq!(vector.value, Value::from(vec![0.0125, 1e-7]));
        assert_eq!(vector.recorded, "[0.0125,0.0000001]");

        let empty = reading(&data(r#"{"resultType":"vector","result":[]}"#));
        assert_eq!(empty.value, Value::Array(vec![]));
        assert_eq!(empty.recorded, "[]");

        let special = reading(&data(
            r#"{"resultType":"vector","result":[
                {"metric":{},"value":[1,"NaN"]},{"metric":{},"value":[1,"+Inf"]},{"metric":{},"value":[1,"-Inf"]}]}"#,
        ));
        assert_eq!(special.recorded, "[NaN,+Inf,-Inf]");
        let Value::Array(items) = &special.value else {
            panic!("a vector is a list")
        };
        assert!(matches!(items[0], Value::Float(x) if x.is_nan()));

        let matrix = reading(&data(
            r#"{"resultType":"matrix","result":[
                {"metric":{},"values":[[1,"1"],[2,"2.5"]]},{"metric":{},"values":[[1,"3"]]}]}"#,
        ));
        assert_eq!(matrix.recorded, "[[1,2.5],[3]]");
        assert_eq!(
            matrix.value,
            Value::Array(vec![Value::from(vec![1.0, 2.5]), Value::from(vec![3.0])])
        );
    }

    #[test]
    fn samples_print_like_go() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (100.0, "100"),
            (1e21, "1000000000000000000000"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.5, "-0.5"),
        ] {
            assert_eq!(format_sample(v), want);
        }
    }

    #[test]
    fn address_falls_back_to_the_controller_default() {
        let with = |address: Option<&str>| PrometheusMetric {
            address: address.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            address(&with(Some("http://prom:9090")), Some("http://default:9090")).unwrap(),
            "http://prom:9090"
        );
        assert_eq!(
            address(&with(None), Some("http://default:9090")).unwrap(),
            "http://default:9090"
        );
        assert_eq!(
            address(&with(Some("")), Some("http://default:9090")).unwrap(),
            "http://default:9090"
        );
        let err = address(&with(None), None).unwrap_err().to_string();
        assert!(
            err.starts_with("prometheus address is not configured"),
            "{err}"
        );
        let err = address(&with(Some("prom:9090")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a URL"), "{err}");
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout(None).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(timeout(Some(5)).unwrap(), Duration::from_secs(5));
        assert!(timeout(Some(-1)).is_err());
    }

    #[test]
    fn range_windows() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let spec = |start: &str, end: Option<&str>, step: &str| PrometheusRangeQuery {
            start: Some(start.into()),
            end: end.map(str::to_string),
            step: Some(step.into()),
        };
        let w = range(&spec("now() - duration(\"5m\")", Some("now()"), "1m"), now).unwrap();
        assert_eq!(w.start.as_second(), 1_700_000_000 - 300);
        assert_eq!(w.end, now);
        assert_eq!(w.step, Duration::from_secs(60));
        let w = range(
            &spec("now() - duration('1h') + duration(\"30m\")", None, "30s"),
            now,
        )
        .unwrap();
        assert_eq!(w.start.as_second(), 1_700_000_000 - 1800);
        assert_eq!(w.end, now);
        let w = range(&spec("2023-11-14T22:00:00Z", None, "1m"), now).unwrap();
        assert_eq!(w.start.as_second(), 1_699_999_200);
        for (bad, why) in [
            (spec("yesterday", None, "1m"), "expected now()"),
            (spec("now() * 2", None, "1m"), "expected + or -"),
            (spec("now() - 5m", None, "1m"), "expected duration"),
            (spec("now() - duration(5m)", None, "1m"), "quoted string"),
            (spec("now()", None, ""), "step is required"),
            (spec("now()", None, "0s"), "more than 0"),
            (spec("now() + duration(\"1h\")", None, "1m"), "is after end"),
        ] {
            let err = range(&bad, now).unwrap_err().to_string();
            assert!(err.contains(why), "{err} !~ {why}");
        }
    }
}
