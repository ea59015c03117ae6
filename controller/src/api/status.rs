//! `Rollout.status`, written exactly as Argo Rollouts writes it so that Argo CD's health
//! check, Argo's kubectl plugin and dashboards read it unchanged.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ramp_analysis::api::{AnalysisPhase, preserve_unknown_object};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// The observed state of a Rollout.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Set by a user (or `kubectl argo rollouts abort`) to abort; cleared to retry.
    pub abort: Option<bool>,
    /// Why the rollout is paused; clearing it promotes past a pause.
    pub pause_conditions: Option<Vec<PauseCondition>>,
    /// Whether Ramp itself paused the rollout (a pause step, an inconclusive analysis).
    pub controller_pause: Option<bool>,
    pub aborted_at: Option<Time>,
    /// Hash of the pod template being rolled out.
    pub current_pod_hash: Option<String>,
    /// Hash of the canary steps, so a change of steps restarts them.
    pub current_step_hash: Option<String>,
    pub replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
    pub current_step_index: Option<i32>,
    pub collision_count: Option<i32>,
    /// The generation this status describes, as a string (Argo's convention).
    pub observed_generation: Option<String>,
    pub conditions: Option<Vec<RolloutCondition>>,
    pub canary: Option<CanaryStatus>,
    pub blue_green: Option<BlueGreenStatus>,
    /// Replica count reported to the scale subresource (HPA).
    #[serde(rename = "HPAReplicas")]
    pub hpa_replicas: Option<i32>,
    /// Label selector of the pods, as a string, for the scale subresource.
    pub selector: Option<String>,
    /// Pod template hash of the stable ReplicaSet.
    #[serde(rename = "stableRS")]
    pub stable_rs: Option<String>,
    /// The `spec.restartAt` last acted upon.
    pub restarted_at: Option<Time>,
    /// Set to skip the remaining steps and analysis and promote at once.
    pub promote_full: Option<bool>,
    pub phase: Option<RolloutPhase>,
    pub message: Option<String>,
    pub workload_observed_generation: Option<String>,
    pub alb: Option<AlbStatus>,
    pub albs: Option<Vec<AlbStatus>>,
    pub duration: Option<RolloutDuration>,
}

/// Healthy, Progressing, Paused or Degraded, as Argo computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    Healthy,
    Degraded,
    Progressing,
    Paused,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Healthy => "Healthy",
            RolloutPhase::Degraded => "Degraded",
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Paused => "Paused",
        }
    }
}

impl fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and since when a rollout is paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// `CanaryPauseStep`, `BlueGreenPause`, `InconclusiveAnalysisRun`, `InconclusiveExperiment`.
    pub reason: String,
    pub start_time: Time,
}

/// A condition as Argo Rollouts writes them (`Progressing`, `Available`, `Completed`,
/// `Healthy`, `Paused`, `InvalidSpec`, `ReplicaFailure`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub last_update_time: Time,
    pub last_transition_time: Time,
    pub reason: String,
    pub message: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    pub current_experiment: Option<String>,
    /// The weights last set on the traffic router.
    pub weights: Option<TrafficWeights>,
    pub stable_ping_pong: Option<String>,
    pub step_plugin_statuses: Option<Vec<StepPluginStatus>>,
}

/// Name and phase of an AnalysisRun a Rollout is waiting on.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    pub name: String,
    pub status: AnalysisPhase,
    pub message: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
    pub additional: Option<Vec<WeightDestination>>,
    pub verified: Option<bool>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    pub weight: i32,
    pub service_name: Option<String>,
    pub pod_template_hash: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    pub preview_selector: Option<String>,
    pub active_selector: Option<String>,
    pub scale_up_preview_check_point: Option<bool>,
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbStatus {
    pub load_balancer: Option<AwsResourceRef>,
    pub canary_target_group: Option<AwsResourceRef>,
    pub stable_target_group: Option<AwsResourceRef>,
    pub ingress: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsResourceRef {
    pub name: String,
    pub arn: String,
    pub full_name: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepPluginStatus {
    pub index: i32,
    pub name: String,
    pub operation: String,
    pub phase: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub backoff: Option<String>,
    pub executions: Option<i32>,
    pub disabled: Option<bool>,
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub status: Option<serde_json::Value>,
}

/// How long the last update took, manual pauses included and counted apart.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDuration {
    pub rollout_started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub completion_status: Option<String>,
    pub manual_pause_started_at: Option<Time>,
    pub total_manual_pause_duration_seconds: Option<i64>,
}
