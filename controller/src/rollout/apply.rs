//! Carrying out a [`Plan`]: the writes, in order, each the smallest that does the job.
//!
//! ```text
//!  1 traffic   Service selectors (merge patch), router weights   — alone, first
//!  2 objects   ReplicaSets (create / merge patch / delete), pods relabelled for their
//!              ReplicaSet's role, AnalysisRuns (create / terminate / delete), evictions,
//!              the Rollout's revision annotation
//!  3 status    one merge patch of the status subresource with only the changed fields
//! ```
//!
//! The plan already compared desired with observed, so a no-op reconcile reaches here with
//! nothing to do and writes nothing. A failed write stops the stages after it (the status is
//! not written), so the next pass starts from what really happened.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::analysis;
use super::names::{
    FIELD_MANAGER, MANAGED_BY_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
    SUPERSEDED_ANNOTATION,
};
use super::observe::Observed;
use super::plan::{AnalysisRunChange, Plan, ReplicaSetUpdate, TrafficPlan};
use super::status::{invalid_spec, merge_patch};
use super::template::replica_set_runs;
use crate::api::{AnalysisRun, Rollout, RolloutStatus};
use crate::traffic::{DesiredWeights, Problem, RouterContext, TrafficError, routers_for};

/// What applying did, for the controller's requeue decision and metrics.
#[derive(Debug, Default)]
pub struct Applied {
    /// Number of API writes made.
    pub writes: usize,
    /// Time from the start of apply until the traffic stage finished (when it wrote).
    pub traffic_moved_after: Option<std::time::Duration>,
    /// A ReplicaSet name collided with another template: reconcile again at once.
    pub collision: bool,
    /// The Rollout as the last write to it returned it (newer than the cache until the
    /// watch delivers it).
    pub rollout: Option<Rollout>,
}

/// A write failed; names the object and what was attempted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    #[error(
        "AnalysisRun {namespace}/{name} and its numbered alternatives are all taken by other runs: delete old runs"
    )]
    AnalysisRunNames { namespace: String, name: String },
}

impl ApplyError {
    /// Whether the API server refused a write because the object changed since it was read
    /// (409 Conflict): not a failure, the next pass plans from the newer object.
    pub fn is_conflict(&self) -> bool {
        match self {
            ApplyError::Api {
                source: kube::Error::Api(status),
                ..
            } => status.code == 409 && status.reason == "Conflict",
            // A user edited a router object between our read and our write.
            ApplyError::Traffic(TrafficError {
                problem: Problem::Api(kube::Error::Api(status)),
                ..
            }) => status.code == 409 && status.reason == "Conflict",
            _ => false,
        }
    }

    /// Short category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::Api { .. } => "ApiError",
            ApplyError::Traffic(error) => error.category(),
            ApplyError::AnalysisRunNames { .. } => "AnalysisRunError",
        }
    }
}

fn api_error(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ApplyError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ApplyError::Api {
        action,
        kind,
        namespace,
        name,
        source,
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run: false,
    }
}

/// Applies `plan` for the observed Rollout. `router_context` reaches the traffic routers.
pub async fn apply(
    client: &Client,
    observed: &Observed,
    mut plan: Plan,
) -> Result<Applied, ApplyError> {
    let started = Instant::now();
    let rollout = observed.rollout.as_ref();
    let namespace = rollout.namespace().unwrap_or_default();
    let mut applied = Applied::default();

    // 1. Traffic, first and alone.
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let switches = plan.services.iter().map(|switch| {
        let services = services.clone();
        let namespace = namespace.clone();
        async move {
            let mut patch = json!({"spec": {"selector": {POD_TEMPLATE_HASH_LABEL: switch.to}}});
            if let Some(rollout) = &switch.add_managed_by {
                patch["metadata"] = json!({"annotations": {MANAGED_BY_ANNOTATION: rollout}});
            }
            services
                .patch(&switch.service, &params(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(
                    "switching the selector of",
                    "Service",
                    &namespace,
                    &switch.service,
                ))
        }
    });
    applied.writes += try_join_all(switches).await?.len();
    if let Some(traffic) = &plan.traffic {
        let verified = match apply_traffic(client, rollout, &namespace, traffic).await {
            Ok(verified) => verified,
            Err(error) => {
                record_router_problem(client, rollout, &error).await?;
                return Err(error);
            }
        };
        if let Some(verified) = verified
            && let Some(weights) = plan
                .status
                .as_mut()
                .and_then(|s| s.canary.as_mut())
                .and_then(|c| c.weights.as_mut())
        {
            weights.verified = Some(verified);
        }
    }
    if applied.writes > 0 {
        applied.traffic_moved_after = Some(started.elapsed());
    }

    // 2. Objects.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    if let Some(new) = plan.create_replica_set.take() {
        let name = new.name_any();
        match replica_sets.create(&post_params(), &new).await {
            Ok(_) => applied.writes += 1,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = replica_sets.get(&name).await.map_err(api_error(
                    "reading",
                    "ReplicaSet",
                    &namespace,
                    &name,
                ))?;
                let ours = existing.owner_references().iter().any(|o| {
                    Some(&o.uid) == rollout.metadata.uid.as_ref() && o.controller == Some(true)
                });
                let same = observed
                    .template()
                    .is_some_and(|t| replica_set_runs(&existing, t));
                if !(ours && same) {
                    // Another template holds this name: move to the next hash.
                    let count = rollout
                        .status
                        .as_ref()
                        .and_then(|s| s.collision_count)
                        .unwrap_or(0)
                        + 1;
                    let patch = json!({"status": {"collisionCount": count}});
                    applied.rollout = Some(patch_status(client, rollout, rollout, &patch).await?);
                    applied.writes += 1;
                    applied.collision = true;
                    return Ok(applied);
                }
            }
            Err(source) => {
                return Err(ApplyError::Api {
                    action: "creating",
                    kind: "ReplicaSet",
                    namespace,
                    name,
                    source,
                });
            }
        }
    }
    let updates = plan.replica_set_updates.iter().map(|update| {
        let replica_sets = replica_sets.clone();
        let namespace = namespace.clone();
        async move {
            replica_sets
                .patch(
                    &update.name,
                    &params(),
                    &Patch::Merge(replica_set_patch(update)),
                )
                .await
                .map_err(api_error(
                    "updating",
                    "ReplicaSet",
                    &namespace,
                    &update.name,
                ))
        }
    });
    applied.writes += try_join_all(updates).await?.len();
    applied.writes += super::ephemeral::apply(client, &namespace, &plan.pod_metadata).await?;
    for name in &plan.replica_set_deletes {
        match replica_sets.delete(name, &DeleteParams::default()).await {
            Ok(_) => applied.writes += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(api_error("deleting", "ReplicaSet", &namespace, name)(
                    source,
                ));
            }
        }
    }

    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    let mut renamed = BTreeMap::new();
    let no_status = RolloutStatus::default();
    let status = observed.rollout.status.as_ref().unwrap_or(&no_status);
    // The runs the plan replaces if it creates one: those the status names and it saw.
    let replaced: Vec<String> = analysis::Runs::sort(&observed.analysis_runs, status)
        .current()
        .map(|run| run.name_any())
        .collect();
    // A retry: the aborted attempt's runs are marked before the new attempt's are created.
    if let Some(aborted_at) = &status.aborted_at {
        for name in analysis::retried_runs(&observed.analysis_runs, status) {
            let patch = json!({"metadata": {"annotations": {SUPERSEDED_ANNOTATION: aborted_at}}});
            match runs.patch(&name, &params(), &Patch::Merge(&patch)).await {
                Ok(_) => applied.writes += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(api_error(
                        "marking superseded",
                        "AnalysisRun",
                        &namespace,
                        &name,
                    )(source));
                }
            }
        }
    }
    for change in std::mem::take(&mut plan.analysis_runs) {
        match change {
            AnalysisRunChange::Create(run) => {
                let planned = run.name_any();
                let created = create_run(&runs, *run, &namespace, &replaced).await?;
                applied.writes += 1;
                if created != planned {
                    renamed.insert(planned, created);
                }
            }
            AnalysisRunChange::Terminate { name } => {
                let patch = json!({"spec": {"terminate": true}});
                match runs.patch(&name, &params(), &Patch::Merge(&patch)).await {
                    Ok(_) => applied.writes += 1,
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(api_error("terminating", "AnalysisRun", &namespace, &name)(
                            source,
                        ));
                    }
                }
            }
            AnalysisRunChange::Delete { name } => {
                match runs.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => applied.writes += 1,
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(api_error("deleting", "AnalysisRun", &namespace, &name)(
                            source,
                        ));
                    }
                }
            }
        }
    }

    applied.writes += crate::experiment::step::apply(client, &namespace, &plan.experiments).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for pod in &plan.evictions {
        match pods.evict(pod, &EvictParams::default()).await {
            Ok(_) => applied.writes += 1,
            // A PodDisruptionBudget said no, or the pod is gone: the next pass tries again.
            Err(kube::Error::Api(status)) if status.code == 429 || status.code == 404 => {}
            Err(source) => return Err(api_error("evicting", "Pod", &namespace, pod)(source)),
        }
    }

    if let Some(revision) = &plan.rollout_revision {
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}});
        let name = rollout.name_any();
        let written = rollouts
            .patch(&name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("annotating", "Rollout", &namespace, &name))?;
        applied.rollout = Some(written);
        applied.writes += 1;
    }

    // 3. Status: only what changed.
    let Some(mut status) = plan.status.take() else {
        return Ok(applied);
    };
    rename_runs(&mut status, &renamed);
    let previous = rollout.status.clone().unwrap_or_default();
    if let Some(changes) = merge_patch(&previous, &status) {
        let patch = json!({"status": changes});
        // The status was planned from `rollout`; only our own annotation write may lie between.
        let base = applied.rollout.clone();
        let base = base.as_ref().unwrap_or(rollout);
        applied.rollout = Some(patch_status(client, rollout, base, &patch).await?);
        applied.writes += 1;
    }
    Ok(applied)
}

/// Moves traffic through the Rollout's routers; returns the weight verification, if any.
async fn apply_traffic(
    client: &Client,
    rollout: &Rollout,
    namespace: &str,
    traffic: &TrafficPlan,
) -> Result<Option<bool>, ApplyError> {
    let context = RouterContext {
        client: client.clone(),
        namespace: namespace.to_string(),
    };
    let routers = routers_for(rollout, &context)?;
    let desired = DesiredWeights {
        canary_weight: traffic.canary_weight,
        max_weight: traffic.max_weight,
        additional: traffic.additional.clone(),
        canary_hash: traffic.canary_hash.clone(),
        stable_hash: traffic.stable_hash.clone(),
        canary_service: traffic.canary_service.clone(),
        stable_service: traffic.stable_service.clone(),
    };
    let mut verified: Option<bool> = None;
    for router in &routers {
        if traffic.aborting {
            // On abort the weight goes back first; routes are cleaned up after.
            router.set_weight(&desired).await?;
            if traffic.remove_managed_routes {
                router.remove_managed_routes().await?;
            }
            continue;
        }
        if traffic.remove_managed_routes {
            router.remove_managed_routes().await?;
        }
        if let Some(route) = &traffic.header_route {
            router.set_header_route(route).await?;
        }
        if let Some(route) = &traffic.mirror_route {
            router.set_mirror_route(route).await?;
        }
        router.set_weight(&desired).await?;
        let mut result = router.verify_weight(&desired).await?;
        if result == Some(false) {
            // Changed by someone else between the write and the read-back (a user's edit
            // racing this pass): set it once more rather than report a weight this pass
            // could have restored.
            router.set_weight(&desired).await?;
            result = router.verify_weight(&desired).await?;
        }
        if let Some(result) = result {
            verified = Some(verified.unwrap_or(true) && result);
        }
    }
    Ok(verified)
}

/// A router object that is missing or unusable makes the Rollout `InvalidSpec` (phase
/// Degraded, the message naming the object) until it is fixed; nothing else is written.
async fn record_router_problem(
    client: &Client,
    rollout: &Rollout,
    error: &ApplyError,
) -> Result<(), ApplyError> {
    let ApplyError::Traffic(traffic) = error else {
        return Ok(());
    };
    if matches!(traffic.problem, Problem::Api(_)) {
        return Ok(());
    }
    let previous = rollout.status.clone().unwrap_or_default();
    let status = invalid_spec(
        &previous,
        &rollout.name_any(),
        rollout.metadata.generation.unwrap_or(0),
        &traffic.to_string(),
        &rollout.spec,
        Timestamp::now(),
    );
    if let Some(changes) = merge_patch(&previous, &status) {
        patch_status(client, rollout, rollout, &json!({"status": changes})).await?;
    }
    Ok(())
}

/// The merge patch of a ReplicaSet update.
fn replica_set_patch(update: &ReplicaSetUpdate) -> Value {
    let mut patch = json!({});
    if !update.annotations.is_empty() {
        patch["metadata"] = json!({"annotations": update.annotations});
    }
    if let Some(replicas) = update.replicas {
        patch["spec"]["replicas"] = json!(replicas);
    }
    if let Some(seconds) = update.min_ready_seconds {
        patch["spec"]["minReadySeconds"] = json!(seconds);
    }
    if let Some(labels) = &update.template_labels {
        patch["spec"]["template"]["metadata"]["labels"] = json!(labels);
    }
    if let Some(annotations) = &update.template_annotations {
        patch["spec"]["template"]["metadata"]["annotations"] = json!(annotations);
    }
    if let Some(anti) = &update.template_pod_anti_affinity {
        // Both lists named (null when absent): a merge patch replaces lists whole and keeps
        // keys it does not mention.
        patch["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"] = json!({
            "preferredDuringSchedulingIgnoredDuringExecution":
                anti.preferred_during_scheduling_ignored_during_execution,
            "requiredDuringSchedulingIgnoredDuringExecution":
                anti.required_during_scheduling_ignored_during_execution,
        });
    }
    patch
}

/// What a create answered `409 AlreadyExists` found under the planned run's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakenName {
    /// The run this one would be: created by an earlier pass whose status write was lost
    /// (or is not in the cache yet). It is adopted, verdict included: a Failed run aborts.
    Ours,
    /// An earlier attempt the plan replaces (a retry after an abort, a resume after an
    /// Inconclusive run), or another owner's or another spec's run: the new run takes the
    /// next name.
    Other,
}

/// Tells [`TakenName::Ours`] from [`TakenName::Other`] for `existing`, found under the name
/// of `planned`. A completed run is an earlier attempt when it was marked superseded on a
/// retry ([`analysis::retried_runs`]) or when the plan replaces it: `replaced` names the runs
/// the Rollout's status names and the plan saw (a resume after an Inconclusive run). Argo's
/// `CreateWithCollisionCounter` takes every completed run for an earlier attempt, which makes
/// a second run of one step when only the status write naming the first was lost.
pub(crate) fn taken_name(
    existing: &AnalysisRun,
    planned: &AnalysisRun,
    replaced: &[String],
) -> TakenName {
    let owner = planned.owner_references().first().map(|o| &o.uid);
    let same_owner = existing
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == owner && o.controller == Some(true));
    if !same_owner || existing.spec != planned.spec {
        return TakenName::Other;
    }
    let earlier_attempt = analysis::phase(existing).completed()
        && (analysis::superseded(existing) || replaced.contains(&existing.name_any()));
    if earlier_attempt {
        TakenName::Other
    } else {
        TakenName::Ours
    }
}

/// Creates a run; a name taken by another run moves to `name.1`, `name.2`, … unless the
/// existing run is this very run ([`taken_name`]).
async fn create_run(
    runs: &Api<AnalysisRun>,
    mut run: AnalysisRun,
    namespace: &str,
    replaced: &[String],
) -> Result<String, ApplyError> {
    let base = run.name_any();
    for attempt in 0..10 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}.{attempt}")
        };
        run.metadata.name = Some(name.clone());
        match runs.create(&post_params(), &run).await {
            Ok(_) => return Ok(name),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = runs.get(&name).await.map_err(api_error(
                    "reading",
                    "AnalysisRun",
                    namespace,
                    &name,
                ))?;
                if taken_name(&existing, &run, replaced) == TakenName::Ours {
                    return Ok(name);
                }
            }
            Err(source) => {
                return Err(api_error("creating", "AnalysisRun", namespace, &name)(
                    source,
                ));
            }
        }
    }
    Err(ApplyError::AnalysisRunNames {
        namespace: namespace.to_string(),
        name: base,
    })
}

/// Points the status at runs created under another name.
fn rename_runs(status: &mut RolloutStatus, renamed: &BTreeMap<String, String>) {
    if renamed.is_empty() {
        return;
    }
    let canary = status.canary.as_mut();
    let entries = canary.into_iter().flat_map(|c| {
        [
            &mut c.current_step_analysis_run_status,
            &mut c.current_background_analysis_run_status,
        ]
    });
    for entry in entries.flatten() {
        if let Some(actual) = renamed.get(&entry.name) {
            entry.name = actual.clone();
        }
    }
    if let Some(bg) = status.blue_green.as_mut() {
        for entry in [
            &mut bg.pre_promotion_analysis_run_status,
            &mut bg.post_promotion_analysis_run_status,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(actual) = renamed.get(&entry.name) {
                entry.name = actual.clone();
            }
        }
    }
}

/// Writes a status change planned from `base`, on the condition that the Rollout is still at
/// `base`'s resourceVersion: a decision taken from a stale view (a cache lagging behind a
/// user's promote, or a controller that just started) is refused with 409 Conflict instead
/// of overwriting what it never saw.
async fn patch_status(
    client: &Client,
    rollout: &Rollout,
    base: &Rollout,
    patch: &Value,
) -> Result<Rollout, ApplyError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
    let mut patch = patch.clone();
    if let Some(version) = &base.metadata.resource_version {
        patch["metadata"] = json!({"resourceVersion": version});
    }
    rollouts
        .patch_status(&name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(
            "updating the status of",
            "Rollout",
            &namespace,
            &name,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use ramp_analysis::api::{AnalysisPhase, AnalysisRunStatus};

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Rollout".into(),
            name: "web".into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + second).unwrap())
    }

    /// Run `name` of Rollout `web` (uid `u1`), created at `created`, in `phase`.
    fn run(name: &str, created: i64, phase: AnalysisPhase) -> AnalysisRun {
        AnalysisRun {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(at(created)),
                owner_references: Some(vec![owner("u1")]),
                ..Default::default()
            },
            spec: Default::default(),
            status: Some(AnalysisRunStatus {
                phase: Some(phase),
                ..Default::default()
            }),
        }
    }

    /// The run a plan would create under `name`.
    fn planned(name: &str) -> AnalysisRun {
        let mut planned = run(name, 0, AnalysisPhase::Pending);
        planned.metadata.creation_timestamp = None;
        planned.status = None;
        planned
    }

    fn superseded(mut run: AnalysisRun) -> AnalysisRun {
        run.metadata.annotations = Some(BTreeMap::from([(
            SUPERSEDED_ANNOTATION.to_string(),
            "2027-01-15T08:00:00Z".to_string(),
        )]));
        run
    }

    #[test]
    fn a_run_whose_status_write_was_lost_is_adopted_with_its_verdict() {
        // Created, then the status write naming it failed; it has failed since: the retried
        // create finds it and must not make a second run of the step.
        let existing = run("web-abc-2-1", 10, AnalysisPhase::Failed);
        assert_eq!(
            taken_name(&existing, &planned("web-abc-2-1"), &[]),
            TakenName::Ours
        );
        let running = run("web-abc-2-1", 10, AnalysisPhase::Running);
        assert_eq!(
            taken_name(&running, &planned("web-abc-2-1"), &[]),
            TakenName::Ours
        );
    }

    #[test]
    fn a_retried_or_resumed_run_gets_the_next_name() {
        // Marked on the retry after the abort it caused: an earlier attempt.
        let failed = superseded(run("web-abc-2-1", 10, AnalysisPhase::Failed));
        assert_eq!(
            taken_name(&failed, &planned("web-abc-2-1"), &[]),
            TakenName::Other
        );
        // Named in the status and replaced by the plan: a resume after Inconclusive.
        let inconclusive = run("web-abc-2-1", 10, AnalysisPhase::Inconclusive);
        assert_eq!(
            taken_name(
                &inconclusive,
                &planned("web-abc-2-1"),
                &["web-abc-2-1".to_string()]
            ),
            TakenName::Other
        );
    }

    #[test]
    fn another_owners_or_specs_run_gets_the_next_name() {
        let mut foreign = run("web-abc-2-1", 10, AnalysisPhase::Running);
        foreign.metadata.owner_references = Some(vec![owner("u2")]);
        assert_eq!(
            taken_name(&foreign, &planned("web-abc-2-1"), &[]),
            TakenName::Other
        );
        let mut terminated = run("web-abc-2-1", 10, AnalysisPhase::Running);
        terminated.spec.terminate = Some(true);
        assert_eq!(
            taken_name(&terminated, &planned("web-abc-2-1"), &[]),
            TakenName::Other
        );
    }

    #[test]
    fn a_retry_marks_the_completed_runs_of_the_aborted_attempt() {
        let runs: Vec<Arc<AnalysisRun>> = [
            run("web-abc-2-1", 10, AnalysisPhase::Successful),
            run("web-abc-2-3", 20, AnalysisPhase::Failed),
            // Marked by an earlier pass of this retry.
            superseded(run("web-abc-2-0", 5, AnalysisPhase::Successful)),
            // Terminated by the abort, still finishing: its spec tells it apart.
            run("web-abc-2-bg", 8, AnalysisPhase::Running),
            // Created by this retry after the abort.
            run("web-abc-2-1.1", 40, AnalysisPhase::Failed),
        ]
        .map(Arc::new)
        .into();
        let mut status = RolloutStatus {
            aborted_at: Some(at(30)),
            abort: Some(true),
            ..Default::default()
        };
        // Still aborted: nothing to mark.
        assert!(analysis::retried_runs(&runs, &status).is_empty());
        status.abort = Some(false);
        assert_eq!(
            analysis::retried_runs(&runs, &status),
            ["web-abc-2-1", "web-abc-2-3"]
        );
        // Created in the second of the abort: still the aborted attempt's.
        let same_second = [Arc::new(run("web-abc-2-5", 30, AnalysisPhase::Error))];
        assert_eq!(
            analysis::retried_runs(&same_second, &status),
            ["web-abc-2-5"]
        );
        // Not aborted: nothing to mark.
        status.aborted_at = None;
        assert!(analysis::retried_runs(&runs, &status).is_empty());
    }

    #[test]
    fn replica_set_patches_set_and_remove() {
        let update = ReplicaSetUpdate {
            name: "web-abc".into(),
            replicas: Some(3),
            annotations: BTreeMap::from([
                (
                    "rollout.argoproj.io/desired-replicas".to_string(),
                    Some("5".to_string()),
                ),
                ("scale-down-deadline".to_string(), None),
            ]),
            ..Default::default()
        };
        assert_eq!(
            replica_set_patch(&update),
            json!({"metadata": {"annotations": {"rollout.argoproj.io/desired-replicas": "5", "scale-down-deadline": null}},
                   "spec": {"replicas": 3}})
        );
    }
}
