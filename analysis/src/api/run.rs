//! `AnalysisRun`: one instantiation of templates, measuring until it reaches a verdict.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::precise_time;
use super::{Argument, DryRun, MeasurementRetention, Metric, TtlStrategy};

/// The metrics to measure, with their arguments resolved or resolvable.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AnalysisRun",
    doc = "One run of analysis: metrics measured until they reach a verdict.",
    namespaced,
    shortname = "ar",
    category = "argoproj",
    status = "AnalysisRunStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase","description":"AnalysisRun status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    pub metrics: Vec<Metric>,
    pub args: Option<Vec<Argument>>,
    /// Set to stop measuring; the run then ends with the verdict so far.
    pub terminate: Option<bool>,
    pub dry_run: Option<Vec<DryRun>>,
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    pub ttl_strategy: Option<TtlStrategy>,
}

/// Progress and verdict of a run, per metric and overall.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    pub metric_results: Option<Vec<MetricResult>>,
    #[serde(default, serialize_with = "precise_time")]
    pub started_at: Option<Time>,
    pub completed_at: Option<Time>,
    pub run_summary: Option<RunSummary>,
    pub dry_run_summary: Option<RunSummary>,
}

/// Phase of a run, a metric or a single measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisPhase {
    #[default]
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether the phase is final: nothing will be measured any more.
    pub fn completed(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisPhase::Pending => "Pending",
            AnalysisPhase::Running => "Running",
            AnalysisPhase::Successful => "Successful",
            AnalysisPhase::Failed => "Failed",
            AnalysisPhase::Error => "Error",
            AnalysisPhase::Inconclusive => "Inconclusive",
        }
    }
}

impl fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tally of one metric.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: AnalysisPhase,
    pub measurements: Option<Vec<Measurement>>,
    pub message: Option<String>,
    pub count: Option<i32>,
    pub successful: Option<i32>,
    pub failed: Option<i32>,
    pub inconclusive: Option<i32>,
    pub error: Option<i32>,
    pub consecutive_error: Option<i32>,
    pub consecutive_success: Option<i32>,
    pub dry_run: Option<bool>,
    /// Provider details worth showing (e.g. the resolved query).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One measurement of a metric.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: AnalysisPhase,
    pub message: Option<String>,
    #[serde(default, serialize_with = "precise_time")]
    pub started_at: Option<Time>,
    #[serde(default, serialize_with = "precise_time")]
    pub finished_at: Option<Time>,
    /// The measured value as text, as Argo records it (`[0.02]`, `0.5`, `true`).
    pub value: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// For measurements still in progress (a Job): when to look again.
    #[serde(default, serialize_with = "precise_time")]
    pub resume_at: Option<Time>,
}

/// Counts of metrics by phase.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub count: Option<i32>,
    pub successful: Option<i32>,
    pub failed: Option<i32>,
    pub inconclusive: Option<i32>,
    pub error: Option<i32>,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    #[test]
    fn measurement_times_keep_their_fraction_of_a_second() {
        let at: Timestamp = "2026-12-04T03:40:47.123456789Z".parse().unwrap();
        let measurement = Measurement {
            phase: AnalysisPhase::Successful,
            started_at: Some(Time(at)),
            finished_at: Some(Time("2026-12-04T03:40:48Z".parse().unwrap())),
            ..Default::default()
        };
        let json = serde_json::to_value(&measurement).unwrap();
        assert_eq!(json["startedAt"], "2026-12-04T03:40:47.123456789Z");
        assert_eq!(json["finishedAt"], "2026-12-04T03:40:48Z");
        assert!(json.get("resumeAt").is_none());
        let back: Measurement = serde_json::from_value(json).unwrap();
        assert_eq!(back, measurement);
        // What Argo (and metav1.Time) writes reads back too.
        let argo: Measurement = serde_json::from_value(serde_json::json!({
            "phase": "Successful", "startedAt": "2026-12-04T03:40:47Z"
        }))
        .unwrap();
        assert_eq!(argo.started_at.unwrap().0.as_second(), at.as_second());
    }
}
