//! `spec.restartAt`: pods created before that time are evicted, no more at once than
//! `maxUnavailable` allows (at least one), until every pod is newer; then
//! `status.restartedAt` records the restart as done (Argo's `RolloutPodRestarter`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::plan::Planner;
use super::replicas::Limits;
use super::steps;

/// How soon to look again while pods still wait for their restart.
const RESTART_CHECK: Duration = Duration::from_secs(30);

/// Whether a restart is due and not yet done.
pub fn restart_pending(rollout: &crate::api::Rollout, now: Timestamp) -> bool {
    let Some(restart_at) = &rollout.spec.restart_at else {
        return false;
    };
    let done = rollout
        .status
        .as_ref()
        .and_then(|s| s.restarted_at.as_ref())
        == Some(restart_at);
    !done && restart_at.0 < now
}

/// Plans the next evictions, or records the restart as done.
pub fn reconcile(p: &mut Planner<'_>) {
    let Some(restart_at) = p.rollout.spec.restart_at.clone() else {
        return;
    };
    if restart_at.0 > p.now {
        p.requeue_at(restart_at.0);
        return;
    }
    if !restart_pending(p.rollout, p.now) {
        return;
    }
    let Some(pods) = p.observed.pods.clone() else {
        // The pods were not read for this pass; read them on the next.
        p.requeue_after(Duration::from_secs(1));
        return;
    };
    let owners: Vec<String> = p
        .sets
        .all
        .iter()
        .filter_map(|rs| rs.metadata.uid.clone())
        .collect();
    let pods: Vec<&Pod> = pods
        .iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|o| owners.contains(&o.uid))
        })
        .collect();
    let replicas = p.replicas();
    let total: i32 = p
        .sets
        .all
        .iter()
        .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
        .sum();
    let min_ready = p.rollout.spec.min_ready_seconds.unwrap_or(0);
    let available = i32::try_from(
        pods.iter()
            .filter(|pod| {
                is_available(pod, min_ready, p.now) && pod.metadata.deletion_timestamp.is_none()
            })
            .count(),
    )
    .unwrap_or(i32::MAX);
    let max_unavailable = steps::canary(p.rollout)
        .and_then(|c| {
            Some(
                Limits::new(c.max_surge().ok()?, c.max_unavailable().ok()?, replicas)
                    .max_unavailable,
            )
        })
        .unwrap_or(0);
    let concurrent = max_unavailable.max(1);
    let mut can_restart = available - (replicas.max(total) - concurrent);

    let mut needs_restart = 0;
    let mut evicted = Vec::new();
    for pod in pods {
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if created.is_some_and(|c| c >= restart_at.0) {
            continue;
        }
        needs_restart += 1;
        if can_restart <= 0 || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        evicted.push(pod.name_any());
        can_restart -= 1;
    }
    let remaining = needs_restart - evicted.len();
    p.plan.evictions.extend(evicted);
    if remaining == 0 {
        p.new_status.restarted_at = Some(restart_at);
    } else {
        p.requeue_after(RESTART_CHECK);
    }
}

/// Ready for at least `min_ready_seconds`.
fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let Some(ready) = ready.filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    let Some(since) = ready.last_transition_time.as_ref() else {
        return false;
    };
    since
        .0
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .is_ok_and(|t| t <= now)
}
