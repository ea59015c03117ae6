//! `status.phase` and `status.message`, computed from the spec and the new status by Argo
//! Rollouts' rules (`CalculateRolloutPhase`), for both strategies.

use super::conditions::{INVALID_SPEC, ROLLOUT_ABORTED_REASON, TIMED_OUT_REASON};
use crate::api::{RolloutPhase, RolloutSpec, RolloutStatus};

/// The phase and message of a Rollout with this spec and status.
pub fn rollout_phase(spec: &RolloutSpec, status: &RolloutStatus) -> (RolloutPhase, String) {
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == INVALID_SPEC {
            return (
                RolloutPhase::Degraded,
                format!("{INVALID_SPEC}: {}", condition.message),
            );
        }
        if condition.reason == ROLLOUT_ABORTED_REASON || condition.reason == TIMED_OUT_REASON {
            return (
                RolloutPhase::Degraded,
                format!("{}: {}", condition.reason, condition.message),
            );
        }
    }
    if spec.paused == Some(true) {
        return (RolloutPhase::Paused, "manually paused".into());
    }
    if let Some(pause) = status.pause_conditions.iter().flatten().next() {
        return (RolloutPhase::Paused, pause.reason.clone());
    }
    if let Some(restart_at) = &spec.restart_at
        && status.restarted_at.as_ref() != Some(restart_at)
    {
        return (RolloutPhase::Progressing, "rollout is restarting".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < spec.replicas.unwrap_or(1) {
        return (
            RolloutPhase::Progressing,
            "more replicas need to be updated".into(),
        );
    }
    if status.available_replicas.unwrap_or(0) < updated {
        return (
            RolloutPhase::Progressing,
            "updated replicas are still becoming available".into(),
        );
    }
    let stable = status.stable_rs.as_deref().unwrap_or("");
    let fully_promoted = stable == status.current_pod_hash.as_deref().unwrap_or("");
    let strategy = spec.strategy.as_ref();
    if strategy.is_some_and(|s| s.blue_green.is_some()) {
        let active = status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
            .unwrap_or("");
        if active.is_empty() || active != status.current_pod_hash.as_deref().unwrap_or("") {
            return (
                RolloutPhase::Progressing,
                "active service cutover pending".into(),
            );
        }
        if stable.is_empty() || !fully_promoted {
            return (
                RolloutPhase::Progressing,
                "waiting for analysis to complete".into(),
            );
        }
    } else if let Some(canary) = strategy.and_then(|s| s.canary.as_ref()) {
        if canary.traffic_routing.is_none() && status.replicas.unwrap_or(0) > updated {
            return (
                RolloutPhase::Progressing,
                "old replicas are pending termination".into(),
            );
        }
        if stable.is_empty() || !fully_promoted {
            return (
                RolloutPhase::Progressing,
                "waiting for all steps to complete".into(),
            );
        }
    }
    (RolloutPhase::Healthy, String::new())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::{CanaryStrategy, PauseCondition, RolloutStrategy};
    use crate::rollout::conditions::{FALSE, PROGRESSING, new_condition};

    fn spec() -> RolloutSpec {
        RolloutSpec {
            replicas: Some(2),
            strategy: Some(RolloutStrategy {
                canary: Some(CanaryStrategy::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn healthy() -> RolloutStatus {
        RolloutStatus {
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            current_pod_hash: Some("abc".into()),
            stable_rs: Some("abc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn phases_in_argo_order() {
        let now = Timestamp::from_second(100).unwrap();
        assert_eq!(
            rollout_phase(&spec(), &healthy()),
            (RolloutPhase::Healthy, String::new())
        );

        let mut aborted = healthy();
        aborted.conditions = Some(vec![new_condition(
            PROGRESSING,
            FALSE,
            ROLLOUT_ABORTED_REASON,
            "Rollout aborted update to revision 2",
            now,
        )]);
        assert_eq!(
            rollout_phase(&spec(), &aborted),
            (
                RolloutPhase::Degraded,
                "RolloutAborted: Rollout aborted update to revision 2".into()
            )
        );

        let mut paused_spec = spec();
        paused_spec.paused = Some(true);
        assert_eq!(
            rollout_phase(&paused_spec, &healthy()).0,
            RolloutPhase::Paused
        );

        let mut paused = healthy();
        paused.pause_conditions = Some(vec![PauseCondition {
            reason: "CanaryPauseStep".into(),
            start_time: Time(now),
        }]);
        assert_eq!(
            rollout_phase(&spec(), &paused),
            (RolloutPhase::Paused, "CanaryPauseStep".into())
        );

        let mut updating = healthy();
        updating.updated_replicas = Some(1);
        assert_eq!(
            rollout_phase(&spec(), &updating).1,
            "more replicas need to be updated"
        );

        let mut old_pods = healthy();
        old_pods.replicas = Some(3);
        assert_eq!(
            rollout_phase(&spec(), &old_pods).1,
            "old replicas are pending termination"
        );

        let mut mid_update = healthy();
        mid_update.stable_rs = Some("old".into());
        assert_eq!(
            rollout_phase(&spec(), &mid_update).1,
            "waiting for all steps to complete"
        );

        let mut restarting = spec();
        restarting.restart_at = Some(Time(now));
        assert_eq!(
            rollout_phase(&restarting, &healthy()).1,
            "rollout is restarting"
        );
    }
}
