//! [`RolloutView`]: everything `kubectl ramp get rollout` shows, built from a Rollout and the
//! ReplicaSets, pods and AnalysisRuns around it. Ownership is followed by UID
//! (Rollout → ReplicaSets and AnalysisRuns → pods), revisions come from the
//! `rollout.argoproj.io/revision` annotation, and roles (stable, canary, active, preview)
//! from the Rollout's status hashes, as Argo Rollouts' own plugin shows them.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun};
use ramp_analysis::providers::job::JOB_NAME_KEY;
use serde::Serialize;

use super::phase::{displayed_phase, invalid_spec_message};
use super::pod::pod_state;
use crate::api::{Rollout, RolloutPhase};
use crate::rollout::names::{
    POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION,
};

/// The objects a Rollout view is built from (a snapshot of the namespace).
#[derive(Clone, Debug, Default)]
pub struct RolloutObjects {
    pub rollout: Option<Rollout>,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    pub analysis_runs: Vec<AnalysisRun>,
}

/// The update strategy, as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StrategyKind {
    Canary,
    BlueGreen,
    Unknown,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Canary => "Canary",
            StrategyKind::BlueGreen => "BlueGreen",
            StrategyKind::Unknown => "Unknown",
        }
    }
}

/// The part a ReplicaSet (and its image) plays in the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Role {
    Canary,
    Stable,
    Active,
    Preview,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Canary => "canary",
            Role::Stable => "stable",
            Role::Active => "active",
            Role::Preview => "preview",
        }
    }
}

/// How far a canary is through its steps: `index` of `count` (index = count when done).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StepProgress {
    pub index: i32,
    pub count: usize,
}

/// An image running in the Rollout's ReplicaSets, with the roles of those ReplicaSets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageView {
    pub image: String,
    pub roles: Vec<Role>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaCounts {
    pub desired: i32,
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

/// One Rollout with its revisions, as `get rollout` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutView {
    pub name: String,
    pub namespace: String,
    #[serde(skip)]
    pub created: Option<Timestamp>,
    pub phase: RolloutPhase,
    pub message: String,
    pub strategy: StrategyKind,
    /// Canary with steps only.
    pub step: Option<StepProgress>,
    /// Canary only: the weight the current step asks for.
    pub set_weight: Option<i32>,
    /// Canary only: the weight actually reached.
    pub actual_weight: Option<i32>,
    pub images: Vec<ImageView>,
    pub replicas: ReplicaCounts,
    /// Newest first.
    pub revisions: Vec<RevisionView>,
    /// Invalid spec, or why an aborted update failed its analysis.
    pub errors: Vec<String>,
}

/// The ReplicaSets and AnalysisRuns of one revision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisionView {
    pub revision: i64,
    pub replica_sets: Vec<ReplicaSetView>,
    pub analysis_runs: Vec<AnalysisRunSummary>,
}

/// A ReplicaSet's health as the tree shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ReplicaSetHealth {
    Healthy,
    Progressing,
    ScaledDown,
    ReplicaFailure,
}

impl ReplicaSetHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaSetHealth::Healthy => "Healthy",
            ReplicaSetHealth::Progressing => "Progressing",
            ReplicaSetHealth::ScaledDown => "ScaledDown",
            ReplicaSetHealth::ReplicaFailure => "ReplicaFailure",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaSetView {
    pub name: String,
    #[serde(skip)]
    pub created: Option<Timestamp>,
    pub revision: i64,
    pub health: ReplicaSetHealth,
    pub roles: Vec<Role>,
    /// When an old ReplicaSet (or an aborted canary) is to be scaled down.
    #[serde(skip)]
    pub scale_down_deadline: Option<Timestamp>,
    pub replicas: i32,
    pub available: i32,
    pub images: Vec<String>,
    pub pods: Vec<PodView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodView {
    pub name: String,
    #[serde(skip)]
    pub created: Option<Timestamp>,
    pub status: String,
    pub ready_containers: usize,
    pub containers: usize,
    pub restarts: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnalysisRunSummary {
    pub name: String,
    #[serde(skip)]
    pub created: Option<Timestamp>,
    pub revision: i64,
    pub phase: AnalysisPhase,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    pub jobs: Vec<JobView>,
}

/// A Job a job-provider metric started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobView {
    pub name: String,
    #[serde(skip)]
    pub started: Option<Timestamp>,
    pub phase: AnalysisPhase,
}

impl RolloutView {
    /// The view of `rollout` among the namespace's `replica_sets`, `pods` and `analysis_runs`
    /// (objects owned by others are ignored).
    pub fn build(
        rollout: &Rollout,
        replica_sets: &[ReplicaSet],
        pods: &[Pod],
        analysis_runs: &[AnalysisRun],
    ) -> RolloutView {
        let status = rollout.status.clone().unwrap_or_default();
        let uid = rollout.metadata.uid.clone().unwrap_or_default();
        let strategy = rollout.spec.strategy.clone().unwrap_or_default();
        let canary = strategy.canary.as_ref();
        let kind = if canary.is_some() {
            StrategyKind::Canary
        } else if strategy.blue_green.is_some() {
            StrategyKind::BlueGreen
        } else {
            StrategyKind::Unknown
        };

        let mut sets: Vec<ReplicaSetView> = replica_sets
            .iter()
            .filter(|rs| owned_by(&rs.metadata, &uid))
            .map(|rs| replica_set_view(rollout, kind, rs, pods))
            .collect();
        sets.sort_by(|a, b| {
            b.revision
                .cmp(&a.revision)
                .then(a.created.cmp(&b.created))
                .then(a.name.cmp(&b.name))
        });

        let mut runs: Vec<AnalysisRunSummary> = analysis_runs
            .iter()
            .filter(|run| owned_by(&run.metadata, &uid))
            .map(analysis_run_summary)
            .collect();
        runs.sort_by(|a, b| {
            b.revision
                .cmp(&a.revision)
                .then(a.created.cmp(&b.created))
                .then(b.name.cmp(&a.name))
        });

        let numbers: BTreeSet<i64> = sets
            .iter()
            .map(|s| s.revision)
            .chain(runs.iter().map(|r| r.revision))
            .collect();
        let revisions = numbers
            .into_iter()
            .rev()
            .map(|revision| RevisionView {
                revision,
                replica_sets: sets
                    .iter()
                    .filter(|s| s.revision == revision)
                    .cloned()
                    .collect(),
                analysis_runs: runs
                    .iter()
                    .filter(|r| r.revision == revision)
                    .cloned()
                    .collect(),
            })
            .collect();

        let (step, set_weight, actual_weight) = match canary {
            Some(canary) => {
                let steps = canary.steps.as_deref().unwrap_or_default();
                let step = match (status.current_step_index, steps.is_empty()) {
                    (Some(index), false) => Some(StepProgress {
                        index,
                        count: steps.len(),
                    }),
                    _ => None,
                };
                let (set, actual) = canary_weights(rollout, replica_sets).unwrap_or((0, 0));
                (step, Some(set), Some(actual))
            }
            None => (None, None, None),
        };

        let (phase, message) = displayed_phase(rollout);
        RolloutView {
            name: rollout.metadata.name.clone().unwrap_or_default(),
            namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
            created: rollout.metadata.creation_timestamp.as_ref().map(|t| t.0),
            phase,
            message,
            strategy: kind,
            step,
            set_weight,
            actual_weight,
            images: images(&sets),
            replicas: ReplicaCounts {
                desired: rollout.spec.replicas.unwrap_or(1),
                current: status.replicas.unwrap_or(0),
                updated: status.updated_replicas.unwrap_or(0),
                ready: status.ready_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
            },
            revisions,
            errors: error_messages(rollout),
        }
    }

    /// The view of the Rollout in `objects`, if there is one.
    pub fn from_objects(objects: &RolloutObjects) -> Option<RolloutView> {
        let rollout = objects.rollout.as_ref()?;
        Some(RolloutView::build(
            rollout,
            &objects.replica_sets,
            &objects.pods,
            &objects.analysis_runs,
        ))
    }

    /// Every ReplicaSet of every revision, newest first.
    pub fn replica_sets(&self) -> impl Iterator<Item = &ReplicaSetView> {
        self.revisions.iter().flat_map(|r| r.replica_sets.iter())
    }
}

/// The weight the current canary step asks for: 100 once every step is done, 0 after an
/// abort, otherwise the last `setWeight` at or before the current step (0 if none yet).
pub fn current_set_weight(rollout: &Rollout) -> i32 {
    let status = rollout.status.as_ref();
    if status.and_then(|s| s.abort) == Some(true) {
        return 0;
    }
    let steps = canary_steps(rollout);
    let index = status
        .and_then(|s| s.current_step_index)
        .unwrap_or(0)
        .max(0) as usize;
    if index >= steps.len() {
        return 100;
    }
    steps[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// The set and actual weights of a canary Rollout (None for other strategies), the actual
/// one from the Rollout's own ReplicaSets (any others are ignored).
pub fn canary_weights<'a>(
    rollout: &Rollout,
    replica_sets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Option<(i32, i32)> {
    rollout.spec.strategy.as_ref()?.canary.as_ref()?;
    let status = rollout.status.as_ref();
    let canary_hash = status
        .and_then(|s| s.current_pod_hash.as_deref())
        .unwrap_or_default();
    let stable_hash = status
        .and_then(|s| s.stable_rs.as_deref())
        .unwrap_or_default();
    let uid = rollout.metadata.uid.as_deref().unwrap_or_default();
    let canary_available = replica_sets
        .into_iter()
        .filter(|rs| owned_by(&rs.metadata, uid))
        .filter(|rs| {
            let hash = pod_template_hash(rs);
            !hash.is_empty() && hash == canary_hash && hash != stable_hash
        })
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        })
        .sum();
    let set = current_set_weight(rollout);
    Some((set, actual_weight(rollout, set, canary_available)))
}

fn canary_steps(rollout: &Rollout) -> &[crate::api::CanaryStep] {
    rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.steps.as_deref())
        .unwrap_or_default()
}

fn pod_template_hash(rs: &ReplicaSet) -> &str {
    rs.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
        .map_or("", String::as_str)
}

/// The weight actually reached. With traffic routing: the canary weight the controller last
/// set on the router (`status.canary.weights`), or the set weight before it reports one.
/// Without: the canary's share of the available pods.
fn actual_weight(rollout: &Rollout, set_weight: i32, canary_available: i32) -> i32 {
    let status = rollout.status.as_ref();
    let steps_done = status
        .and_then(|s| s.current_step_index)
        .unwrap_or(0)
        .max(0) as usize
        >= canary_steps(rollout).len();
    if steps_done && status.and_then(|s| s.abort) != Some(true) {
        return 100;
    }
    let routed = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .is_some_and(|c| c.traffic_routing.is_some());
    if routed {
        return status
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.weights.as_ref())
            .map_or(set_weight, |w| w.canary.weight);
    }
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    if available <= 0 {
        return 0;
    }
    canary_available * 100 / available
}

fn replica_set_view(
    rollout: &Rollout,
    kind: StrategyKind,
    rs: &ReplicaSet,
    pods: &[Pod],
) -> ReplicaSetView {
    let status = rollout.status.clone().unwrap_or_default();
    let hash = pod_template_hash(rs).to_string();
    let stable = status.stable_rs.as_deref() == Some(hash.as_str()) && !hash.is_empty();
    let mut roles = Vec::new();
    match kind {
        StrategyKind::Canary => {
            if stable {
                roles.push(Role::Stable);
            } else if status.current_pod_hash.as_deref() == Some(hash.as_str()) && !hash.is_empty()
            {
                roles.push(Role::Canary);
            }
        }
        StrategyKind::BlueGreen => {
            if stable {
                roles.push(Role::Stable);
            }
            let blue_green = status.blue_green.clone().unwrap_or_default();
            if blue_green.active_selector.as_deref() == Some(hash.as_str()) && !hash.is_empty() {
                roles.push(Role::Active);
            } else if blue_green.preview_selector.as_deref() == Some(hash.as_str())
                && !hash.is_empty()
            {
                roles.push(Role::Preview);
            }
        }
        StrategyKind::Unknown => {}
    }
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let mut pod_views: Vec<PodView> = pods
        .iter()
        .filter(|pod| owned_by(&pod.metadata, &uid))
        .map(|pod| {
            let state = pod_state(pod);
            PodView {
                name: pod.metadata.name.clone().unwrap_or_default(),
                created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
                status: state.status,
                ready_containers: state.ready_containers,
                containers: state.containers,
                restarts: state.restarts,
            }
        })
        .collect();
    pod_views.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    let rs_status = rs.status.clone().unwrap_or_default();
    ReplicaSetView {
        name: rs.metadata.name.clone().unwrap_or_default(),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        revision: revision(&rs.metadata),
        health: replica_set_health(rs),
        roles,
        scale_down_deadline: rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SCALE_DOWN_DEADLINE_ANNOTATION))
            .and_then(|d| d.parse::<Timestamp>().ok()),
        replicas: rs_status.replicas,
        available: rs_status.available_replicas.unwrap_or(0),
        images: rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect()
            })
            .unwrap_or_default(),
        pods: pod_views,
    }
}

/// Healthy, Progressing (not all available yet, or a spec change not yet observed),
/// ScaledDown (zero wanted) or ReplicaFailure.
pub fn replica_set_health(rs: &ReplicaSet) -> ReplicaSetHealth {
    let status = rs.status.clone().unwrap_or_default();
    if rs.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return ReplicaSetHealth::Progressing;
    }
    let failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "ReplicaFailure" && c.status == "True");
    if failure {
        return ReplicaSetHealth::ReplicaFailure;
    }
    let wanted = rs.spec.as_ref().and_then(|s| s.replicas);
    if let Some(wanted) = wanted
        && status.available_replicas.unwrap_or(0) < wanted
    {
        return ReplicaSetHealth::Progressing;
    }
    if wanted == Some(0) {
        ReplicaSetHealth::ScaledDown
    } else {
        ReplicaSetHealth::Healthy
    }
}

fn analysis_run_summary(run: &AnalysisRun) -> AnalysisRunSummary {
    let status = run.status.clone().unwrap_or_default();
    let mut summary = AnalysisRunSummary {
        name: run.metadata.name.clone().unwrap_or_default(),
        created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
        revision: revision(&run.metadata),
        phase: status.phase.unwrap_or_default(),
        successful: 0,
        failed: 0,
        inconclusive: 0,
        error: 0,
        jobs: Vec::new(),
    };
    for result in status.metric_results.iter().flatten() {
        summary.successful += result.successful.unwrap_or(0);
        summary.failed += result.failed.unwrap_or(0);
        summary.inconclusive += result.inconclusive.unwrap_or(0);
        summary.error += result.error.unwrap_or(0);
        for measurement in result.measurements.iter().flatten() {
            if let Some(job) = measurement
                .metadata
                .as_ref()
                .and_then(|m| m.get(JOB_NAME_KEY))
            {
                summary.jobs.push(JobView {
                    name: job.clone(),
                    started: measurement.started_at.as_ref().map(|t| t.0),
                    phase: measurement.phase,
                });
            }
        }
    }
    summary
}

/// Images of the ReplicaSets that run pods, each with the roles of those ReplicaSets, sorted
/// by image.
fn images(sets: &[ReplicaSetView]) -> Vec<ImageView> {
    let mut images: Vec<ImageView> = Vec::new();
    for set in sets.iter().filter(|s| s.replicas > 0) {
        for image in &set.images {
            match images.iter_mut().find(|i| &i.image == image) {
                Some(existing) => {
                    for role in &set.roles {
                        if !existing.roles.contains(role) {
                            existing.roles.push(*role);
                        }
                    }
                    existing.roles.sort();
                }
                None => {
                    let mut roles = set.roles.clone();
                    roles.sort();
                    images.push(ImageView {
                        image: image.clone(),
                        roles,
                    });
                }
            }
        }
    }
    images.sort_by(|a, b| a.image.cmp(&b.image));
    images
}

/// The invalid-spec message, and after an abort the messages of analysis runs that failed it.
fn error_messages(rollout: &Rollout) -> Vec<String> {
    let mut errors: Vec<String> = invalid_spec_message(rollout).into_iter().collect();
    let status = rollout.status.clone().unwrap_or_default();
    if status.abort == Some(true) {
        let canary = status.canary.unwrap_or_default();
        let blue_green = status.blue_green.unwrap_or_default();
        let runs = [
            canary.current_step_analysis_run_status,
            canary.current_background_analysis_run_status,
            blue_green.pre_promotion_analysis_run_status,
            blue_green.post_promotion_analysis_run_status,
        ];
        for run in runs.into_iter().flatten() {
            if run.status.completed()
                && run.status != AnalysisPhase::Successful
                && let Some(message) = run.message.filter(|m| !m.is_empty())
            {
                errors.push(message);
            }
        }
    }
    errors
}

fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty()
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|o: &OwnerReference| o.uid == uid)
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) const UID: &str = "0c6f4a1e-0000-4000-8000-000000000001";

    /// A canary Rollout at step `index` of [setWeight 20, pause, setWeight 50, pause], moving
    /// from hash `old` (stable) to `new`.
    pub(crate) fn canary_rollout(index: i32) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": UID, "generation": 2,
                          "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"replicas": 5,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "shop/web:2"}]}},
                     "strategy": {"canary": {"steps": [
                        {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1m"}}]}}},
            "status": {"observedGeneration": "2", "currentStepIndex": index, "stableRS": "old", "currentPodHash": "new",
                       "replicas": 6, "updatedReplicas": 1, "readyReplicas": 6, "availableReplicas": 5,
                       "phase": "Paused", "message": "CanaryPauseStep",
                       "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2024-05-01T10:05:00Z"}]}
        }))
        .unwrap()
    }

    pub(crate) fn replica_set(
        hash: &str,
        revision: i64,
        replicas: i32,
        available: i32,
        image: &str,
        created: &str,
    ) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": "shop", "uid": format!("rs-{hash}"),
                         "generation": 1, "creationTimestamp": created,
                         "labels": {"app": "web", "rollouts-pod-template-hash": hash},
                         "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
                                              "uid": UID, "controller": true}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "rollouts-pod-template-hash": hash}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available,
                       "observedGeneration": 1}
        }))
        .unwrap()
    }

    pub(crate) fn pod(name: &str, rs_hash: &str, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{rs_hash}"),
                                              "uid": format!("rs-{rs_hash}"), "controller": true}]},
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}]}
        }))
        .unwrap()
    }

    pub(crate) fn analysis_run(name: &str, revision: i64, phase: &str) -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2024-05-01T10:06:00Z",
                         "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
                                              "uid": UID, "controller": true}]},
            "spec": {"metrics": [{"name": "errors", "provider": {"job": {"spec": {"template": {"spec": {"containers": []}}}}}}]},
            "status": {"phase": phase, "metricResults": [
                {"name": "errors", "phase": phase, "successful": 2, "failed": 1, "count": 3,
                 "measurements": [{"phase": "Successful", "startedAt": "2024-05-01T10:06:00Z",
                                   "metadata": {"job-name": "job-1"}}]}]}
        }))
        .unwrap()
    }

    pub(crate) fn objects(index: i32) -> RolloutObjects {
        RolloutObjects {
            rollout: Some(canary_rollout(index)),
            replica_sets: vec![
                replica_set("old", 1, 5, 4, "shop/web:1", "2024-05-01T10:00:00Z"),
                replica_set("new", 2, 1, 1, "shop/web:2", "2024-05-01T10:04:00Z"),
                replica_set("other", 7, 1, 1, "x", "2024-05-01T10:04:00Z")
                    .tap_owner("someone-else"),
            ],
            pods: vec![
                pod("web-new-a", "new", "2024-05-01T10:04:10Z"),
                pod("web-old-b", "old", "2024-05-01T10:00:20Z"),
                pod("web-old-a", "old", "2024-05-01T10:00:10Z"),
            ],
            analysis_runs: vec![analysis_run("web-new-2-1", 2, "Running")],
        }
    }

    trait TapOwner {
        fn tap_owner(self, uid: &str) -> Self;
    }

    impl TapOwner for ReplicaSet {
        fn tap_owner(mut self, uid: &str) -> Self {
            if let Some(owner) = self
                .metadata
                .owner_references
                .as_mut()
                .and_then(|o| o.first_mut())
            {
                owner.uid = uid.to_string();
            }
            self
        }
    }

    #[test]
    fn builds_the_canary_view() {
        let view = RolloutView::from_objects(&objects(1)).unwrap();
        assert_eq!(view.name, "web");
        assert_eq!(view.phase, RolloutPhase::Paused);
        assert_eq!(view.message, "CanaryPauseStep");
        assert_eq!(view.strategy, StrategyKind::Canary);
        assert_eq!(view.step, Some(StepProgress { index: 1, count: 4 }));
        assert_eq!(view.set_weight, Some(20));
        // 1 available canary pod of 5 available pods.
        assert_eq!(view.actual_weight, Some(20));
        assert_eq!(
            view.images,
            vec![
                ImageView {
                    image: "shop/web:1".into(),
                    roles: vec![Role::Stable]
                },
                ImageView {
                    image: "shop/web:2".into(),
                    roles: vec![Role::Canary]
                },
            ]
        );
        assert_eq!(
            view.replicas,
            ReplicaCounts {
                desired: 5,
                current: 6,
                updated: 1,
                ready: 6,
                available: 5
            }
        );
        let revisions: Vec<i64> = view.revisions.iter().map(|r| r.revision).collect();
        assert_eq!(
            revisions,
            vec![2, 1],
            "the ReplicaSet owned by someone else is left out"
        );
        let newest = &view.revisions[0];
        assert_eq!(newest.replica_sets[0].name, "web-new");
        assert_eq!(newest.replica_sets[0].roles, vec![Role::Canary]);
        assert_eq!(newest.analysis_runs[0].successful, 2);
        assert_eq!(newest.analysis_runs[0].failed, 1);
        assert_eq!(newest.analysis_runs[0].jobs[0].name, "job-1");
        let pods: Vec<&str> = view.revisions[1].replica_sets[0]
            .pods
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(pods, vec!["web-old-a", "web-old-b"], "pods oldest first");
    }

    #[test]
    fn set_weight_follows_the_steps() {
        assert_eq!(current_set_weight(&canary_rollout(0)), 20);
        assert_eq!(current_set_weight(&canary_rollout(3)), 50);
        assert_eq!(current_set_weight(&canary_rollout(4)), 100);
        let mut aborted = canary_rollout(3);
        aborted.status.as_mut().unwrap().abort = Some(true);
        assert_eq!(current_set_weight(&aborted), 0);
        let mut before_any_weight = canary_rollout(0);
        before_any_weight
            .spec
            .strategy
            .as_mut()
            .unwrap()
            .canary
            .as_mut()
            .unwrap()
            .steps
            .as_mut()
            .unwrap()
            .remove(0);
        assert_eq!(current_set_weight(&before_any_weight), 0);
    }

    #[test]
    fn routed_weight_comes_from_the_router_status() {
        let mut rollout = canary_rollout(2);
        let canary = rollout
            .spec
            .strategy
            .as_mut()
            .unwrap()
            .canary
            .as_mut()
            .unwrap();
        canary.traffic_routing = Some(Default::default());
        assert_eq!(
            RolloutView::build(&rollout, &[], &[], &[]).actual_weight,
            Some(50)
        );
        rollout.status.as_mut().unwrap().canary = Some(
            serde_json::from_value(json!({
                "weights": {"canary": {"weight": 35}, "stable": {"weight": 65}}
            }))
            .unwrap(),
        );
        assert_eq!(
            RolloutView::build(&rollout, &[], &[], &[]).actual_weight,
            Some(35)
        );
    }

    #[test]
    fn replica_set_health_rules() {
        let healthy = replica_set("a", 1, 2, 2, "i", "2024-05-01T10:00:00Z");
        assert_eq!(replica_set_health(&healthy), ReplicaSetHealth::Healthy);
        let progressing = replica_set("a", 1, 2, 1, "i", "2024-05-01T10:00:00Z");
        assert_eq!(
            replica_set_health(&progressing),
            ReplicaSetHealth::Progressing
        );
        let scaled_down = replica_set("a", 1, 0, 0, "i", "2024-05-01T10:00:00Z");
        assert_eq!(
            replica_set_health(&scaled_down),
            ReplicaSetHealth::ScaledDown
        );
        let mut unobserved = healthy.clone();
        unobserved.metadata.generation = Some(2);
        assert_eq!(
            replica_set_health(&unobserved),
            ReplicaSetHealth::Progressing
        );
    }

    #[test]
    fn aborted_rollouts_explain_the_failed_analysis() {
        let mut rollout = canary_rollout(2);
        let status = rollout.status.as_mut().unwrap();
        status.abort = Some(true);
        status.canary = Some(serde_json::from_value(json!({
            "currentStepAnalysisRunStatus": {"name": "web-new-2-2", "status": "Failed",
                                              "message": "Metric \"errors\" assessed Failed due to failed (1) > failureLimit (0)"}
        })).unwrap());
        let view = RolloutView::build(&rollout, &[], &[], &[]);
        assert_eq!(
            view.errors,
            vec![
                "Metric \"errors\" assessed Failed due to failed (1) > failureLimit (0)"
                    .to_string()
            ]
        );
    }
}
