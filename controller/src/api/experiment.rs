//! The `Experiment` kind: ReplicaSets run side by side for a while, with analysis. Ramp
//! reads and validates Experiments; it does not run them yet.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use ramp_analysis::api::{AnalysisPhase, Argument, DryRun, MeasurementRetention, ObjectLabels};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{RolloutCondition, TemplateService};

#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Experiment",
    doc = "ReplicaSets run side by side for a limited time, with analysis.",
    namespaced,
    shortname = "exp",
    category = "argoproj",
    status = "ExperimentStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase","description":"Experiment status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    pub templates: Vec<ExperimentTemplate>,
    /// How long the experiment runs (a Go duration); absent: until its analyses finish.
    pub duration: Option<String>,
    pub progress_deadline_seconds: Option<i32>,
    pub terminate: Option<bool>,
    pub analyses: Option<Vec<ExperimentAnalysisTemplateRef>>,
    pub scale_down_delay_seconds: Option<i32>,
    pub dry_run: Option<Vec<DryRun>>,
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    pub analysis_run_metadata: Option<ObjectLabels>,
}

/// One ReplicaSet of an experiment.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplate {
    pub name: String,
    pub replicas: Option<i32>,
    pub min_ready_seconds: Option<i32>,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    pub service: Option<TemplateService>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisTemplateRef {
    pub name: String,
    pub template_name: String,
    pub cluster_scope: Option<bool>,
    pub args: Option<Vec<Argument>>,
    pub required_for_completion: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    pub template_statuses: Option<Vec<ExperimentTemplateStatus>>,
    pub available_at: Option<Time>,
    pub conditions: Option<Vec<RolloutCondition>>,
    pub analysis_runs: Option<Vec<ExperimentAnalysisRunStatus>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplateStatus {
    pub name: String,
    pub replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub collision_count: Option<i32>,
    pub status: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Time>,
    pub service_name: Option<String>,
    pub pod_template_hash: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    pub name: String,
    pub analysis_run: String,
    pub phase: AnalysisPhase,
    pub message: Option<String>,
}
