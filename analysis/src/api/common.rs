//! Types shared by templates, runs, Rollouts and Experiments.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_with::skip_serializing_none;

/// An argument of an AnalysisTemplate or AnalysisRun: a literal `value`, a value read from a
/// Secret or from a field of the owning object, or (in a template) no value at all, which
/// the run must then supply.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<ValueFrom>,
}

/// Where an [`Argument`] takes its value from.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    pub secret_key_ref: Option<SecretKeyRef>,
    pub field_ref: Option<FieldRef>,
}

/// A key of a Secret in the run's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// A field of the owning object, e.g. `metadata.labels['app']`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

/// Marks a metric as dry-run: it is measured and reported but never decides the run.
/// `metricName` may be a regular expression (`.*` for all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub metric_name: String,
}

/// How many measurements of a metric (a regular expression over names) the run keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    pub metric_name: String,
    pub limit: i32,
}

/// Labels and annotations copied onto generated objects (AnalysisRuns, pods).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLabels {
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// When a finished AnalysisRun is deleted.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TtlStrategy {
    pub seconds_after_completion: Option<i32>,
    pub seconds_after_failure: Option<i32>,
    pub seconds_after_success: Option<i32>,
}

/// A reference from a Rollout or run to an AnalysisTemplate (or, with `clusterScope`, a
/// ClusterAnalysisTemplate).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    pub template_name: Option<String>,
    pub cluster_scope: Option<bool>,
}

/// Schema of a free-form object whose contents the API server keeps as written
/// (`x-kubernetes-preserve-unknown-fields`), e.g. plugin configuration.
pub fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Writes a time to the nanosecond (`2026-12-04T03:40:47.123456789Z`) where `metav1.Time`
/// would keep whole seconds. The schedule of measurements is built on these times, so a
/// restarted controller reads back exactly when the last measurement finished (neither
/// measuring early nor late), and the lateness of measurements can be read off the status.
/// Still RFC 3339: Kubernetes' and Argo's Go clients (and k8s-openapi) parse the fraction.
pub(crate) fn precise_time<S: Serializer>(
    time: &Option<Time>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(Time(at)) => serializer.collect_str(at),
        None => serializer.serialize_none(),
    }
}
