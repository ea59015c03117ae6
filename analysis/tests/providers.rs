//! The prometheus and web providers against real HTTP servers on loopback (a stand-in for
//! Prometheus' HTTP API, and a JSON endpoint), and the not-supported providers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use k8s_openapi::jiff::Timestamp;
use ramp_analysis::api::{
    AnalysisPhase, Authentication, BasicAuth, DatadogMetric, Metric, MetricProvider,
    PrometheusMetric, PrometheusRangeQuery, WebMetric, WebMetricHeader,
};
use ramp_analysis::expr::Value;
use ramp_analysis::providers::{Providers, RunRef, judge, prometheus, web};
use ramp_analysis::schedule::TaskKind;
use serde_json::json;

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::new()
}

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// What the fake Prometheus saw of the last request.
#[derive(Default, Clone)]
struct Seen {
    path: String,
    form: String,
    headers: BTreeMap<String, String>,
}

/// A stand-in for Prometheus' HTTP API answering every query with `answer`.
async fn fake_prometheus(
    status: StatusCode,
    answer: serde_json::Value,
) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = |path: &'static str| {
        let seen = seen.clone();
        let answer = answer.clone();
        move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let answer = answer.clone();
            async move {
                *seen.lock().unwrap() = Seen {
                    path: path.to_string(),
                    form: String::from_utf8_lossy(&body).into_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                };
                (
                    status,
                    [("content-type", "application/json")],
                    answer.to_string(),
                )
            }
        }
    };
    let router = Router::new()
        .route("/api/v1/query", post(record("/api/v1/query")))
        .route("/api/v1/query_range", post(record("/api/v1/query_range")));
    (serve(router).await, seen)
}

fn json_answer(value: serde_json::Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/json")], value.to_string())
}

fn prometheus_metric(address: &str, query: &str) -> PrometheusMetric {
    PrometheusMetric {
        address: Some(address.to_string()),
        query: Some(query.to_string()),
        ..Default::default()
    }
}

fn vector(values: &[&str]) -> serde_json::Value {
    json!({"status": "success", "data": {"resultType": "vector", "result":
        values.iter().map(|v| json!({"metric": {"status": "500"}, "value": [1_700_000_000, v]})).collect::<Vec<_>>()
    }})
}

#[tokio::test]
async fn prometheus_vector_scalar_and_empty() {
    let (url, seen) = fake_prometheus(StatusCode::OK, vector(&["0.004", "0.2"])).await;
    let reading = prometheus::measure(&http(), &prometheus_metric(&url, "sum(rate(x[1m]))"), None)
        .await
        .unwrap();
    assert_eq!(reading.value, Value::from(vec![0.004, 0.2]));
    assert_eq!(reading.recorded, "[0.004,0.2]");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.path, "/api/v1/query");
    assert!(
        seen.form.contains("query=sum%28rate%28x%5B1m%5D%29%29"),
        "{}",
        seen.form
    );

    let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1_700_000_000, "0.5"]}});
    let (url, _) = fake_prometheus(StatusCode::OK, scalar).await;
    let reading = prometheus::measure(&http(), &prometheus_metric(&url, "scalar(x)"), None)
        .await
        .unwrap();
    assert_eq!(
        (reading.value, reading.recorded.as_str()),
        (Value::Float(0.5), "0.5")
    );

    let (url, _) = fake_prometheus(StatusCode::OK, vector(&[])).await;
    let reading = prometheus::measure(&http(), &prometheus_metric(&url, "nothing"), None)
        .await
        .unwrap();
    assert_eq!(
        (reading.value.clone(), reading.recorded.as_str()),
        (Value::Array(vec![]), "[]")
    );
    // The guarded condition does not pass on an empty vector.
    let metric = Metric {
        name: "m".into(),
        success_condition: Some("len(result) > 0 && result[0] < 0.01".into()),
        ..Default::default()
    };
    let measurement = judge(
        &metric,
        reading,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    );
    assert_eq!(measurement.phase, AnalysisPhase::Failed);
}

#[tokio::test]
async fn prometheus_errors_are_errors() {
    let bad = json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"});
    let (url, _) = fake_prometheus(StatusCode::BAD_REQUEST, bad).await;
    let err = prometheus::measure(&http(), &prometheus_metric(&url, "sum("), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("parse error at char 5"), "{err}");

    // Nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let err = prometheus::measure(&http(), &prometheus_metric(&closed, "up"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("querying {closed}")), "{err}");

    let err = prometheus::measure(&http(), &prometheus_metric("", "up"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("prometheus address is not configured"),
        "{err}"
    );
}

#[tokio::test]
async fn prometheus_timeout() {
    let router = Router::new().route(
        "/api/v1/query",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let url = serve(router).await;
    let metric = PrometheusMetric {
        timeout: Some(1),
        ..prometheus_metric(&url, "up")
    };
    let began = std::time::Instant::now();
    let err = prometheus::measure(&http(), &metric, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("took longer than the timeout (1s)"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn prometheus_default_address_headers_auth_and_range() {
    let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1, "1"], [2, "NaN"]]}]}});
    let (url, seen) = fake_prometheus(StatusCode::OK, matrix).await;
    let metric = PrometheusMetric {
        address: None,
        headers: Some(vec![WebMetricHeader {
            key: "X-Scope-OrgID".into(),
            value: "team-a".into(),
        }]),
        authentication: Some(Authentication {
            basic_auth: Some(BasicAuth {
                username: Some("ramp".into()),
                password: Some("s3cret".into()),
            }),
            ..Default::default()
        }),
        range_query: Some(PrometheusRangeQuery {
            start: Some("now() - duration(\"5m\")".into()),
            end: Some("now()".into()),
            step: Some("1m".into()),
        }),
        ..prometheus_metric("", "rate(x[1m])")
    };
    let reading = prometheus::measure(&http(), &metric, Some(&url))
        .await
        .unwrap();
    assert_eq!(reading.recorded, "[[1,NaN]]");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.path, "/api/v1/query_range");
    assert!(seen.form.contains("step=60"), "{}", seen.form);
    assert_eq!(seen.headers["x-scope-orgid"], "team-a");
    assert_eq!(seen.headers["authorization"], "Basic cmFtcDpzM2NyZXQ=");
}

#[tokio::test]
async fn web_json_paths_methods_and_failures() {
    let router = Router::new()
        .route(
            "/health",
            get(|| async { json_answer(json!({"data": {"ok": true, "rate": 0.004, "count": 7}})) }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: Bytes| async move {
                json_answer(json!({
                    "contentType": headers.get("content-type").and_then(|v| v.to_str().ok()),
                    "token": headers.get("x-token").and_then(|v| v.to_str().ok()),
                    "body": serde_json::from_slice::<serde_json::Value>(&body).ok(),
                }))
            }),
        )
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/text", get(|| async { "OK" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let url = serve(router).await;
    let web_metric = |path: &str| WebMetric {
        url: format!("{url}{path}"),
        ..Default::default()
    };

    let reading = web::measure(
        &http(),
        &WebMetric {
            json_path: Some("{$.data.rate}".into()),
            ..web_metric("/health")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (reading.value, reading.recorded.as_str()),
        (Value::Float(0.004), "0.004")
    );

    let whole = web::measure(&http(), &web_metric("/health")).await.unwrap();
    assert_eq!(
        whole.recorded,
        r#"{"data":{"count":7,"ok":true,"rate":0.004}}"#
    );

    let echoed = web::measure(
        &http(),
        &WebMetric {
            method: Some("POST".into()),
            headers: Some(vec![WebMetricHeader {
                key: "X-Token".into(),
                value: "abc".into(),
            }]),
            json_body: Some(json!({"service": "web"})),
            ..web_metric("/echo")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&echoed.recorded).unwrap(),
        json!({"contentType": "application/json", "token": "abc", "body": {"service": "web"}})
    );

    let err = web::measure(&http(), &web_metric("/down"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("received non 2xx response code: 503"),
        "{err}"
    );

    let text = web::measure(&http(), &web_metric("/text")).await.unwrap();
    assert_eq!(text.value, Value::from("OK"));

    let began = std::time::Instant::now();
    let err = web::measure(
        &http(),
        &WebMetric {
            timeout_seconds: Some(1),
            ..web_metric("/slow")
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("requesting "), "{err}");
    assert!(began.elapsed() < Duration::from_secs(3));
}

fn offline_client() -> kube::Client {
    install_crypto();
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn unsupported_providers_are_errors_never_passes() {
    let providers = Providers::new(offline_client(), None).unwrap();
    let run = RunRef {
        name: "r".into(),
        namespace: "ns".into(),
        uid: "u".into(),
    };
    let metric = Metric {
        name: "dd".into(),
        provider: MetricProvider {
            datadog: Some(DatadogMetric::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    let measurement = providers
        .measure(&run, &metric, TaskKind::Measure, None, 1)
        .await;
    assert_eq!(measurement.phase, AnalysisPhase::Error);
    let message = measurement.message.unwrap();
    assert!(
        message.starts_with("metric provider datadog is not supported yet by Ramp"),
        "{message}"
    );
    assert!(measurement.finished_at.is_some());

    let none = Metric {
        name: "none".into(),
        ..Default::default()
    };
    let measurement = providers
        .measure(&run, &none, TaskKind::Measure, None, 1)
        .await;
    assert_eq!(measurement.phase, AnalysisPhase::Error);
}
