//! A metric: what to measure (the provider), how often, and which results pass or fail.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{ObjectLabels, preserve_unknown_object};

/// One metric of a template or run.
///
/// `count`, `failureLimit`, `inconclusiveLimit`, `consecutiveErrorLimit` and
/// `consecutiveSuccessLimit` are int-or-string so that they can hold `{{args.x}}`
/// placeholders, resolved when the run is created.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    /// Time between measurements, a Go duration (`30s`, `5m`). Absent: measure once.
    pub interval: Option<String>,
    /// Time to wait before the first measurement, a Go duration.
    pub initial_delay: Option<String>,
    /// Number of measurements to take. Absent with an interval: measure until terminated.
    pub count: Option<IntOrString>,
    /// Expression over `result` that makes a measurement Successful.
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed.
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (default 0, -1 disables).
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated before the metric is Inconclusive (default 0).
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive provider errors tolerated before the metric errors (default 4).
    pub consecutive_error_limit: Option<IntOrString>,
    /// Consecutive successes after which the metric succeeds early.
    pub consecutive_success_limit: Option<IntOrString>,
    pub provider: MetricProvider,
}

/// Where a metric's measurements come from. Exactly one provider is set.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    pub prometheus: Option<PrometheusMetric>,
    pub web: Option<WebMetric>,
    pub job: Option<JobMetric>,
    pub kayenta: Option<KayentaMetric>,
    pub datadog: Option<DatadogMetric>,
    pub new_relic: Option<NewRelicMetric>,
    pub wavefront: Option<QueryMetric>,
    pub graphite: Option<QueryMetric>,
    pub influxdb: Option<InfluxdbMetric>,
    pub skywalking: Option<SkyWalkingMetric>,
    pub cloud_watch: Option<CloudWatchMetric>,
    /// Configuration for metric provider plugins, keyed by plugin name.
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub plugin: Option<BTreeMap<String, serde_json::Value>>,
}

/// A PromQL query against a Prometheus server.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Server URL; falls back to the controller's `--prometheus-address`.
    pub address: Option<String>,
    pub query: Option<String>,
    /// Query timeout in seconds.
    pub timeout: Option<i64>,
    /// Skip TLS certificate verification.
    pub insecure: Option<bool>,
    pub headers: Option<Vec<WebMetricHeader>>,
    pub authentication: Option<Authentication>,
    /// Evaluate the query over a range instead of at one instant.
    pub range_query: Option<PrometheusRangeQuery>,
}

/// The window of a Prometheus range query; `start` and `end` are expressions such as
/// `now() - duration("5m")`, `step` a duration.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRangeQuery {
    pub start: Option<String>,
    pub end: Option<String>,
    pub step: Option<String>,
}

/// Credentials for a provider.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    pub sigv4: Option<Sigv4Config>,
    pub oauth2: Option<OAuth2Config>,
    pub basic_auth: Option<BasicAuth>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Config {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Config {
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// An HTTP request whose response (or a JSON path of it) is the measurement.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// `GET` (default), `POST` or `PUT`.
    pub method: Option<String>,
    pub url: String,
    pub headers: Option<Vec<WebMetricHeader>>,
    pub body: Option<String>,
    /// A JSON body; exclusive with `body`.
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub json_body: Option<serde_json::Value>,
    pub timeout_seconds: Option<i64>,
    /// A JSONPath (`{$.data.ok}`) selecting the value from the response.
    pub json_path: Option<String>,
    pub insecure: Option<bool>,
    pub authentication: Option<Authentication>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricHeader {
    pub key: String,
    pub value: String,
}

/// A Kubernetes Job: Successful when it completes, Failed when it fails.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    pub metadata: Option<ObjectLabels>,
    pub spec: JobSpec,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaMetric {
    pub address: String,
    pub application: String,
    pub canary_config_name: String,
    pub metrics_account_name: String,
    pub configuration_account_name: String,
    pub storage_account_name: String,
    pub threshold: KayentaThreshold,
    pub scopes: Vec<KayentaScope>,
    pub lookback: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaThreshold {
    pub pass: i64,
    pub marginal: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KayentaScope {
    pub name: String,
    pub control_scope: ScopeDetail,
    pub experiment_scope: ScopeDetail,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeDetail {
    pub scope: String,
    pub region: String,
    pub step: i64,
    pub start: Option<String>,
    pub end: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatadogMetric {
    /// Default `5m`.
    pub interval: Option<String>,
    pub query: Option<String>,
    pub queries: Option<BTreeMap<String, String>>,
    pub formula: Option<String>,
    /// `v1` (default) or `v2`.
    pub api_version: Option<String>,
    pub aggregator: Option<String>,
    pub request_timeout: Option<String>,
    pub secret_ref: Option<DatadogSecretRef>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatadogSecretRef {
    pub name: Option<String>,
    pub namespaced: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewRelicMetric {
    pub profile: Option<String>,
    pub query: String,
    pub timeout: Option<i64>,
}

/// A provider configured by an address and a query (Wavefront, Graphite).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryMetric {
    pub address: Option<String>,
    pub query: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InfluxdbMetric {
    pub profile: Option<String>,
    pub query: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkyWalkingMetric {
    pub address: Option<String>,
    pub query: Option<String>,
    pub interval: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetric {
    pub interval: Option<String>,
    pub metric_data_queries: Vec<CloudWatchMetricDataQuery>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricDataQuery {
    pub id: Option<String>,
    pub expression: Option<String>,
    pub label: Option<String>,
    pub metric_stat: Option<CloudWatchMetricStat>,
    pub period: Option<IntOrString>,
    pub return_data: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStat {
    pub metric: Option<CloudWatchMetricStatMetric>,
    pub period: Option<IntOrString>,
    pub stat: Option<String>,
    pub unit: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStatMetric {
    pub dimensions: Option<Vec<CloudWatchDimension>>,
    pub metric_name: Option<String>,
    pub namespace: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchDimension {
    pub name: Option<String>,
    pub value: Option<String>,
}
