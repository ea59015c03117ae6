//! The `Rollout` kind: a Deployment-like workload whose updates follow a canary or
//! blue-green strategy.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use ramp_analysis::api::{
    AnalysisTemplateRef, DryRun, FieldRef, MeasurementRetention, ObjectLabels,
    preserve_unknown_object,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{RolloutStatus, RolloutTrafficRouting};

/// The desired state of a Rollout.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Rollout",
    doc = "A Deployment-like workload whose updates follow a canary or blue-green strategy.",
    namespaced,
    shortname = "ro",
    category = "argoproj",
    status = "RolloutStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.HPAReplicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas","description":"Number of desired pods"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.replicas","description":"Total number of non-terminated pods targeted by this rollout"}"#,
    printcolumn = r#"{"name":"Up-to-date","type":"integer","jsonPath":".status.updatedReplicas","description":"Total number of non-terminated pods targeted by this rollout that have the desired template spec"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.availableReplicas","description":"Total number of available pods (ready for at least minReadySeconds) targeted by this rollout"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp","description":"Time since resource was created"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired number of pods (default 1).
    pub replicas: Option<i32>,
    pub selector: Option<LabelSelector>,
    /// The pod template. Exclusive with `workloadRef`.
    pub template: Option<PodTemplateSpec>,
    /// Takes the pod template from another workload (a Deployment) instead of `template`.
    pub workload_ref: Option<WorkloadRef>,
    /// Seconds a new pod must be ready before it counts as available.
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept for undo (default 10).
    pub revision_history_limit: Option<i32>,
    /// Pauses the rollout at its current step.
    pub paused: Option<bool>,
    /// Seconds an update may make no progress before it is considered failed (default 600).
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the update when the progress deadline passes.
    pub progress_deadline_abort: Option<bool>,
    /// Pods created before this time are restarted.
    pub restart_at: Option<Time>,
    pub strategy: Option<RolloutStrategy>,
    /// How many AnalysisRuns of each outcome are kept.
    pub analysis: Option<AnalysisRunStrategy>,
    /// Rolling back to one of the last `revisions` revisions skips the steps.
    pub rollback_window: Option<RollbackWindowSpec>,
}

/// The Deployment (or other workload) whose pod template a Rollout uses.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// What to do with the referenced workload: `never` (default), `onsuccess`, `progressively`.
    pub scale_down: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStrategy {
    pub successful_run_history_limit: Option<i32>,
    pub unsuccessful_run_history_limit: Option<i32>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindowSpec {
    pub revisions: Option<i32>,
}

/// The update strategy: exactly one of `canary` and `blueGreen`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    pub blue_green: Option<BlueGreenStrategy>,
    pub canary: Option<CanaryStrategy>,
}

/// Blue-green: the new version runs beside the old behind a preview Service and takes over
/// the active Service when promoted.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    pub active_service: String,
    pub preview_service: Option<String>,
    pub preview_replica_count: Option<i32>,
    /// Promote automatically once the new ReplicaSet is ready (default true).
    pub auto_promotion_enabled: Option<bool>,
    pub auto_promotion_seconds: Option<i32>,
    pub max_unavailable: Option<IntOrString>,
    /// Seconds the old ReplicaSet keeps running after the switch (default 30).
    pub scale_down_delay_seconds: Option<i32>,
    pub scale_down_delay_revision_limit: Option<i32>,
    pub abort_scale_down_delay_seconds: Option<i32>,
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    pub anti_affinity: Option<AntiAffinity>,
    pub preview_metadata: Option<ObjectLabels>,
    pub active_metadata: Option<ObjectLabels>,
}

/// Canary: the new version takes a growing share of traffic, step by step.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service whose selector Ramp points at the canary pods.
    pub canary_service: Option<String>,
    /// Service whose selector Ramp points at the stable pods.
    pub stable_service: Option<String>,
    pub steps: Option<Vec<CanaryStep>>,
    pub traffic_routing: Option<RolloutTrafficRouting>,
    /// Pods above the desired count during an update (default 25%).
    pub max_surge: Option<IntOrString>,
    /// Pods that may be unavailable during an update (default 25%).
    pub max_unavailable: Option<IntOrString>,
    /// Analysis that runs in the background for the whole update.
    pub analysis: Option<RolloutAnalysisBackground>,
    pub anti_affinity: Option<AntiAffinity>,
    pub canary_metadata: Option<ObjectLabels>,
    pub stable_metadata: Option<ObjectLabels>,
    /// Seconds before the old stable ReplicaSet is scaled down once traffic left it
    /// (traffic routing only; default 30).
    pub scale_down_delay_seconds: Option<i32>,
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds before the canary is scaled down after an abort (default 30, 0 = never).
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable ReplicaSet down as the canary takes traffic (traffic routing only).
    pub dynamic_stable_scale: Option<bool>,
    pub ping_pong: Option<PingPongSpec>,
    pub min_pods_per_replica_set: Option<i32>,
    pub replica_progress_threshold: Option<ReplicaProgressThreshold>,
}

/// One step of a canary. Exactly one action is set.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic for the canary.
    pub set_weight: Option<i32>,
    pub pause: Option<RolloutPause>,
    pub experiment: Option<RolloutExperimentStep>,
    pub analysis: Option<RolloutAnalysis>,
    pub set_canary_scale: Option<SetCanaryScale>,
    pub set_header_route: Option<SetHeaderRoute>,
    pub set_mirror_route: Option<SetMirrorRoute>,
    pub plugin: Option<PluginStep>,
}

/// Waits for `duration` (a Go duration or seconds), or until promoted when absent.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    pub duration: Option<IntOrString>,
}

/// Sets the canary's replica count apart from its traffic weight.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    pub weight: Option<i32>,
    pub replicas: Option<i32>,
    pub match_traffic_weight: Option<bool>,
}

/// Sends requests matching headers to the canary through a managed route.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: Option<Vec<HeaderRoutingMatch>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    pub header_name: String,
    pub header_value: StringMatch,
}

/// Exactly one of exact, prefix or regex.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// Mirrors a percentage of matching requests to the canary through a managed route.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: Option<Vec<RouteMatch>>,
    pub percentage: Option<i32>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    pub method: Option<StringMatch>,
    pub path: Option<StringMatch>,
    pub headers: Option<std::collections::BTreeMap<String, StringMatch>>,
}

/// A step handled by a step plugin.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStep {
    pub name: String,
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub config: Option<serde_json::Value>,
}

/// Analysis run by a step or around a blue-green promotion.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    pub templates: Option<Vec<AnalysisTemplateRef>>,
    pub args: Option<Vec<AnalysisRunArgument>>,
    pub dry_run: Option<Vec<DryRun>>,
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    pub analysis_run_metadata: Option<ObjectLabels>,
}

/// Background analysis of a canary: a [`RolloutAnalysis`] that starts at `startingStep`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisBackground {
    pub templates: Option<Vec<AnalysisTemplateRef>>,
    pub args: Option<Vec<AnalysisRunArgument>>,
    pub dry_run: Option<Vec<DryRun>>,
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    pub analysis_run_metadata: Option<ObjectLabels>,
    /// Index of the step at which the background analysis starts (default 0).
    pub starting_step: Option<i32>,
}

impl RolloutAnalysisBackground {
    /// The analysis part, without the starting step.
    pub fn analysis(&self) -> RolloutAnalysis {
        RolloutAnalysis {
            templates: self.templates.clone(),
            args: self.args.clone(),
            dry_run: self.dry_run.clone(),
            measurement_retention: self.measurement_retention.clone(),
            analysis_run_metadata: self.analysis_run_metadata.clone(),
        }
    }
}

/// An argument a Rollout passes to its analysis templates.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<ArgumentValueFrom>,
}

/// A Rollout argument's value: the stable or latest pod-template-hash, or a Rollout field.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// `Stable` or `Latest`.
    pub pod_template_hash_value: Option<String>,
    pub field_ref: Option<FieldRef>,
}

/// An Experiment run as a canary step (parsed; Experiments are not run by Ramp yet).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStep {
    pub templates: Vec<RolloutExperimentTemplate>,
    pub duration: Option<String>,
    pub analyses: Option<Vec<RolloutExperimentStepAnalysisTemplateRef>>,
    pub dry_run: Option<Vec<DryRun>>,
    pub analysis_run_metadata: Option<ObjectLabels>,
    pub scale_down_delay_seconds: Option<i32>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentTemplate {
    pub name: String,
    /// `stable` or `canary`: whose pod template the experiment runs.
    pub spec_ref: String,
    pub replicas: Option<i32>,
    pub metadata: Option<ObjectLabels>,
    pub selector: Option<LabelSelector>,
    pub weight: Option<i32>,
    pub service: Option<TemplateService>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateService {
    pub name: Option<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStepAnalysisTemplateRef {
    pub name: String,
    pub template_name: String,
    pub cluster_scope: Option<bool>,
    pub args: Option<Vec<AnalysisRunArgument>>,
    pub required_for_completion: Option<bool>,
}

/// Spreads new pods away from the nodes of the old ones.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    pub weight: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequiredAntiAffinity {}

/// Two Services that take turns as stable and canary (AWS ALB ping-pong).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingPongSpec {
    pub ping_service: String,
    pub pong_service: String,
}

/// When a canary counts as progressed: a percentage or a number of available pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaProgressThreshold {
    /// `Percent` or `Pod`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: i32,
}
