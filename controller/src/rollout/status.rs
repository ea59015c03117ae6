//! The Rollout's status as Argo Rollouts writes it: replica counts, the condition rules
//! (`Progressing`, `Available`, `Healthy`, `Completed`, `ReplicaFailure`, progress
//! deadlines), pause and abort fields, `observedGeneration`, phase, and finally the merge
//! patch holding only what changed. Strategy-independent; the strategies fill in their own
//! fields (steps, weights, selectors) before [`finish`].

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde_json::{Map, Value};

use super::conditions::{
    self, AVAILABLE, AVAILABLE_MESSAGE, AVAILABLE_REASON, COMPLETED, FALSE, HEALTHY, INVALID_SPEC,
    NEW_RS_AVAILABLE_REASON, NOT_AVAILABLE_MESSAGE, PROGRESSING, REPLICA_FAILURE,
    REPLICA_SET_NOT_AVAILABLE_REASON, REPLICA_SET_UPDATED_REASON, ROLLOUT_ABORTED_REASON,
    ROLLOUT_COMPLETED_REASON, ROLLOUT_HEALTHY_MESSAGE, ROLLOUT_HEALTHY_REASON,
    ROLLOUT_NOT_COMPLETED_REASON, ROLLOUT_NOT_HEALTHY_MESSAGE, ROLLOUT_PAUSED_MESSAGE,
    ROLLOUT_PAUSED_REASON, ROLLOUT_RESUMED_MESSAGE, ROLLOUT_RESUMED_REASON, TIMED_OUT_REASON, TRUE,
};
use super::hash::pod_template_hash;
use super::observe::ReplicaSetExt;
use super::phase::rollout_phase;
use super::plan::Planner;
use super::{lifecycle, steps};
use crate::api::{RolloutCondition, RolloutStatus};

/// Argo's `calculateBaseStatus`: the fields every strategy computes the same way.
pub fn base_status(p: &Planner<'_>) -> RolloutStatus {
    let previous = p.status();
    let mut status = p.new_status.clone();
    status.current_pod_hash = Some(match p.sets.new.as_deref() {
        Some(new) => new.pod_hash().to_string(),
        None => pod_template_hash(p.template, previous.collision_count),
    });
    status.replicas = Some(p.sets.all.iter().map(|rs| rs.actual()).sum());
    status.updated_replicas = Some(p.sets.new.as_deref().map_or(0, ReplicaSetExt::actual));
    status.ready_replicas = Some(p.sets.all.iter().map(|rs| rs.ready()).sum());
    status.collision_count = previous.collision_count;
    status.promote_full = previous.promote_full.filter(|full| *full);
    status
}

/// Sum of available pods of every ReplicaSet.
pub fn available_replicas(p: &Planner<'_>) -> i32 {
    p.sets.all.iter().map(|rs| rs.available()).sum()
}

/// Whether the rollout is complete and healthy: every pod updated and available, the
/// generation observed, and the strategy finished (Argo's `RolloutHealthy`).
pub fn rollout_healthy(p: &Planner<'_>, new: &RolloutStatus) -> bool {
    let replicas = p.replicas();
    let generation_observed = p.status().observed_generation.as_deref() == Some(&generation(p));
    let strategy_done = if let Some(blue_green) = p
        .rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.blue_green.as_ref())
    {
        let current = new.current_pod_hash.as_deref();
        let bg = new.blue_green.as_ref();
        let active_done = bg.and_then(|b| b.active_selector.as_deref()) == current;
        let preview_done = blue_green.preview_service.is_none()
            || bg.and_then(|b| b.preview_selector.as_deref()) == current;
        active_done && preview_done
    } else {
        let step_count = steps::count(p.rollout);
        let all_steps = step_count == 0
            || new
                .current_step_index
                .is_none_or(|i| usize::try_from(i).is_ok_and(|i| i == step_count));
        let stable = new.stable_rs.as_deref().unwrap_or("");
        let current_is_stable =
            !stable.is_empty() && Some(stable) == new.current_pod_hash.as_deref();
        all_steps && current_is_stable && new.replicas == Some(replicas)
    };
    new.updated_replicas == Some(replicas)
        && new.available_replicas == Some(replicas)
        && generation_observed
        && strategy_done
}

/// Whether anything moved since the previous status (Argo's `RolloutProgressing`).
fn rollout_progressing(p: &Planner<'_>, new: &RolloutStatus) -> bool {
    let old = p.status();
    let strategy_progress = if p
        .rollout
        .spec
        .strategy
        .as_ref()
        .is_some_and(|s| s.blue_green.is_some())
    {
        let selector = |s: &RolloutStatus, preview: bool| {
            s.blue_green.as_ref().and_then(|b| {
                if preview {
                    b.preview_selector.clone()
                } else {
                    b.active_selector.clone()
                }
            })
        };
        selector(old, false) != selector(new, false) || selector(old, true) != selector(new, true)
    } else {
        let stable_changed = new.stable_rs != old.stable_rs;
        let step_changed = matches!((new.current_step_index, old.current_step_index), (Some(a), Some(b)) if a != b);
        stable_changed || step_changed || new.current_step_hash != old.current_step_hash
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old_pods = n(old.replicas) - n(old.updated_replicas);
    let new_old_pods = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) != n(old.updated_replicas)
        || new_old_pods < old_old_pods
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
        || strategy_progress
}

fn generation(p: &Planner<'_>) -> String {
    p.rollout.metadata.generation.unwrap_or(0).to_string()
}

fn progress_deadline(p: &Planner<'_>) -> SignedDuration {
    SignedDuration::from_secs(i64::from(
        p.rollout.spec.progress_deadline_seconds.unwrap_or(600),
    ))
}

/// Whether the Progressing condition is older than the progress deadline.
fn timed_out(p: &Planner<'_>, new: &RolloutStatus) -> bool {
    let Some(condition) =
        conditions::get(new.conditions.as_deref().unwrap_or_default(), PROGRESSING)
    else {
        return false;
    };
    if condition.reason == ROLLOUT_ABORTED_REASON {
        return false;
    }
    if condition.reason == TIMED_OUT_REASON {
        return true;
    }
    condition
        .last_update_time
        .0
        .checked_add(progress_deadline(p))
        .is_ok_and(|deadline| deadline < p.now)
}

/// Argo's `calculateRolloutConditions`. `available` is the strategy's availability verdict.
pub fn update_conditions(
    p: &mut Planner<'_>,
    mut new: RolloutStatus,
    available: bool,
) -> RolloutStatus {
    let now = p.now;
    let previous = p.status();
    let is_paused = previous
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || p.rollout.spec.paused == Some(true);
    let is_aborted = p.is_aborted();
    let healthy = rollout_healthy(p, &new);
    let mut list = new.conditions.take().unwrap_or_default();

    let mut became_unhealthy = false;
    if !is_paused && healthy {
        conditions::set(
            &mut list,
            conditions::new_condition(
                HEALTHY,
                TRUE,
                ROLLOUT_HEALTHY_REASON,
                ROLLOUT_HEALTHY_MESSAGE,
                now,
            ),
        );
    } else if conditions::get(previous.conditions.as_deref().unwrap_or_default(), HEALTHY).is_some()
    {
        became_unhealthy = conditions::set(
            &mut list,
            conditions::new_condition(
                HEALTHY,
                FALSE,
                ROLLOUT_HEALTHY_REASON,
                ROLLOUT_NOT_HEALTHY_MESSAGE,
                now,
            ),
        );
    }

    if is_aborted {
        let mut message = conditions::rollout_aborted_message(p.revision.parse().unwrap_or(0));
        if let Some(reason) = p.pause.abort_message.as_deref().filter(|m| !m.is_empty()) {
            message = format!("{message}: {reason}");
        }
        if conditions::set(
            &mut list,
            conditions::new_condition(
                PROGRESSING,
                FALSE,
                ROLLOUT_ABORTED_REASON,
                message.clone(),
                now,
            ),
        ) {
            p.warning(ROLLOUT_ABORTED_REASON, message);
        }
    }

    let new_rs_name = p.sets.new.as_ref().map(|rs| rs.name_any());
    let previous_progressing = conditions::get(
        previous.conditions.as_deref().unwrap_or_default(),
        PROGRESSING,
    )
    .cloned();
    if !is_aborted {
        new.conditions = Some(list);
        let progressing = rollout_progressing(p, &new);
        let timed_out = !steps::is_indefinite(p.rollout) && timed_out(p, &new);
        list = new.conditions.take().unwrap_or_default();
        if healthy {
            let message =
                conditions::replica_set_completed_message(new_rs_name.as_deref().unwrap_or(""));
            conditions::set(
                &mut list,
                conditions::new_condition(PROGRESSING, TRUE, NEW_RS_AVAILABLE_REASON, message, now),
            );
        } else if progressing || became_unhealthy {
            let (reason, message) = if new.stable_rs == new.current_pod_hash && became_unhealthy {
                (
                    REPLICA_SET_NOT_AVAILABLE_REASON,
                    conditions::NOT_AVAILABLE_RS_MESSAGE.to_string(),
                )
            } else {
                let message = match &new_rs_name {
                    Some(name) => conditions::replica_set_progressing_message(name),
                    None => conditions::rollout_progressing_message(&p.rollout.name_any()),
                };
                (REPLICA_SET_UPDATED_REASON, message)
            };
            let mut condition = conditions::new_condition(PROGRESSING, TRUE, reason, message, now);
            if let Some(current) = &previous_progressing {
                if current.status == TRUE {
                    condition.last_transition_time = current.last_transition_time.clone();
                }
                conditions::remove(&mut list, PROGRESSING);
            }
            conditions::set(&mut list, condition);
        } else if timed_out {
            let message = match &new_rs_name {
                Some(name) => conditions::replica_set_timed_out_message(name),
                None => conditions::rollout_timed_out_message(&p.rollout.name_any()),
            };
            let changed = conditions::set(
                &mut list,
                conditions::new_condition(
                    PROGRESSING,
                    FALSE,
                    TIMED_OUT_REASON,
                    message.clone(),
                    now,
                ),
            );
            let deadline_abort = p.rollout.spec.progress_deadline_abort == Some(true);
            if deadline_abort && (changed || !p.is_aborted()) {
                p.pause.add_abort(message.clone());
                p.warning(ROLLOUT_ABORTED_REASON, message);
            }
        }
    }

    let availability = if available {
        conditions::new_condition(AVAILABLE, TRUE, AVAILABLE_REASON, AVAILABLE_MESSAGE, now)
    } else {
        conditions::new_condition(
            AVAILABLE,
            FALSE,
            AVAILABLE_REASON,
            NOT_AVAILABLE_MESSAGE,
            now,
        )
    };
    conditions::set(&mut list, availability);

    match replica_failure(p) {
        Some(failure) => {
            conditions::set(&mut list, failure);
        }
        None => conditions::remove(&mut list, REPLICA_FAILURE),
    }

    let stable = new.stable_rs.as_deref().unwrap_or("");
    if !stable.is_empty() && Some(stable) == new.current_pod_hash.as_deref() {
        conditions::set(
            &mut list,
            conditions::new_condition(
                COMPLETED,
                TRUE,
                ROLLOUT_COMPLETED_REASON,
                ROLLOUT_COMPLETED_REASON,
                now,
            ),
        );
    } else if conditions::set(
        &mut list,
        conditions::new_condition(
            COMPLETED,
            FALSE,
            ROLLOUT_COMPLETED_REASON,
            ROLLOUT_COMPLETED_REASON,
            now,
        ),
    ) {
        let revision: i64 = p
            .rollout
            .annotations()
            .get(super::names::REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let hash = new.current_pod_hash.clone().unwrap_or_default();
        p.event(
            ROLLOUT_NOT_COMPLETED_REASON,
            format!(
                "Rollout not completed, started update to revision {} ({hash})",
                revision + 1
            ),
        );
    }
    new.conditions = Some(list);
    new
}

/// A `ReplicaFailure` condition of the new ReplicaSet, else of any ReplicaSet.
fn replica_failure(p: &Planner<'_>) -> Option<RolloutCondition> {
    let failure_of = |rs: &k8s_openapi::api::apps::v1::ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| {
                let time = c
                    .last_transition_time
                    .clone()
                    .unwrap_or(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(p.now));
                RolloutCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    last_update_time: time.clone(),
                    last_transition_time: time,
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                }
            })
    };
    p.sets
        .new
        .as_deref()
        .and_then(failure_of)
        .or_else(|| p.sets.all.iter().find_map(|rs| failure_of(rs)))
}

/// Argo's `persistRolloutStatus` (before the write): pause and abort fields, generations,
/// phase and message; Events for pauses and resumes; when to check the progress deadline.
pub fn finish(p: &mut Planner<'_>, mut new: RolloutStatus) -> RolloutStatus {
    let previous = p.status();
    p.pause.apply(previous, &mut new, p.now);
    lifecycle::settle_paused_conditions(p.rollout.spec.paused == Some(true), &mut new, p.now);
    new.workload_observed_generation = match (&p.rollout.spec.workload_ref, &p.observed.workload) {
        (Some(_), Some(workload)) => workload.metadata.generation.map(|g| g.to_string()),
        _ => None,
    };
    new.observed_generation = Some(generation(p));
    let (phase, message) = rollout_phase(&p.rollout.spec, &new);
    new.phase = Some(phase);
    new.message = (!message.is_empty()).then_some(message);

    let was_paused = previous
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty());
    let is_paused = new.pause_conditions.as_ref().is_some_and(|c| !c.is_empty());
    if was_paused != is_paused {
        if let Some(first) = new.pause_conditions.as_ref().and_then(|c| c.first()) {
            let message = format!("{ROLLOUT_PAUSED_MESSAGE} ({})", first.reason);
            p.event(ROLLOUT_PAUSED_REASON, message);
        } else if new.aborted_at.is_none() {
            p.event(ROLLOUT_RESUMED_REASON, ROLLOUT_RESUMED_MESSAGE);
        }
    }
    requeue_for_progress_deadline(p, &new);
    new
}

/// Argo's `requeueStuckRollout`: look again when the progress deadline would pass.
fn requeue_for_progress_deadline(p: &mut Planner<'_>, new: &RolloutStatus) {
    let previous = p.status();
    let Some(current) = conditions::get(
        previous.conditions.as_deref().unwrap_or_default(),
        PROGRESSING,
    ) else {
        return;
    };
    let paused = previous
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || p.rollout.spec.paused == Some(true);
    if rollout_healthy(p, new)
        || current.reason == TIMED_OUT_REASON
        || paused
        || previous.abort == Some(true)
        || steps::is_indefinite(p.rollout)
    {
        return;
    }
    let Ok(deadline) = current.last_update_time.0.checked_add(progress_deadline(p)) else {
        return;
    };
    // A second past the deadline, so the check finds it passed.
    let at = deadline
        .checked_add(SignedDuration::from_secs(1))
        .unwrap_or(deadline);
    p.requeue_at(at);
}

/// The InvalidSpec condition (Argo's `createInvalidRolloutCondition`), on an otherwise
/// untouched status.
pub fn invalid_spec(
    previous: &RolloutStatus,
    rollout_name: &str,
    generation: i64,
    message: &str,
    spec: &crate::api::RolloutSpec,
    now: Timestamp,
) -> RolloutStatus {
    let message = format!("The Rollout {rollout_name:?} is invalid: {message}");
    let mut status = previous.clone();
    let mut list = status.conditions.take().unwrap_or_default();
    let same = conditions::get(&list, INVALID_SPEC).is_some_and(|c| c.message == message);
    if !same {
        conditions::remove(&mut list, INVALID_SPEC);
        conditions::set(
            &mut list,
            conditions::new_condition(
                INVALID_SPEC,
                TRUE,
                conditions::INVALID_SPEC_REASON,
                message,
                now,
            ),
        );
    }
    status.conditions = Some(list);
    status.observed_generation = Some(generation.to_string());
    let (phase, message) = rollout_phase(spec, &status);
    status.phase = Some(phase);
    status.message = (!message.is_empty()).then_some(message);
    status
}

/// The JSON merge patch turning `old` into `new`, or `None` when they are equal.
pub fn merge_patch(old: &RolloutStatus, new: &RolloutStatus) -> Option<Value> {
    let old = serde_json::to_value(old).ok()?;
    let new = serde_json::to_value(new).ok()?;
    diff(&old, &new)
}

/// RFC 7386 diff: objects recurse, removed keys become `null`, anything else is replaced.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, new_value) in new {
                match old.get(key) {
                    Some(old_value) => {
                        if let Some(change) = diff(old_value, new_value) {
                            patch.insert(key.clone(), change);
                        }
                    }
                    None if new_value.is_null() => {}
                    None => {
                        patch.insert(key.clone(), new_value.clone());
                    }
                }
            }
            for key in old.keys() {
                if !new.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (old, new) if old == new => None,
        (_, new) => Some(new.clone()),
    }
}

/// Time until `at`, zero when it is past.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_holds_only_changes() {
        let old = json!({"phase": "Paused", "replicas": 2, "pauseConditions": [{"reason": "CanaryPauseStep"}], "canary": {"weights": {"canary": {"weight": 10}}}});
        let new = json!({"phase": "Progressing", "replicas": 2, "canary": {"weights": {"canary": {"weight": 10}}}});
        assert_eq!(
            diff(&old, &new),
            Some(json!({"phase": "Progressing", "pauseConditions": null}))
        );
        assert_eq!(diff(&new, &new), None);
        let newer = json!({"phase": "Progressing", "replicas": 2, "canary": {"weights": {"canary": {"weight": 20}}}});
        assert_eq!(
            diff(&new, &newer),
            Some(json!({"canary": {"weights": {"canary": {"weight": 20}}}}))
        );
    }
}
