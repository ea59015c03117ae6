//! Rollout conditions with Argo Rollouts' types, reasons and messages, and the rules for
//! updating them (a condition is rewritten only when its status or reason changes, and keeps
//! its transition time while its status holds).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::RolloutCondition;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const COMPLETED: &str = "Completed";
pub const HEALTHY: &str = "Healthy";
pub const PAUSED: &str = "Paused";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

pub const INVALID_SPEC_REASON: &str = "InvalidSpec";
pub const AVAILABLE_REASON: &str = "AvailableReason";
pub const NOT_AVAILABLE_MESSAGE: &str = "Rollout does not have minimum availability";
pub const AVAILABLE_MESSAGE: &str = "Rollout has minimum availability";
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const ROLLOUT_UPDATED_REASON: &str = "RolloutUpdated";
pub const ROLLOUT_COMPLETED_REASON: &str = "RolloutCompleted";
pub const ROLLOUT_NOT_COMPLETED_REASON: &str = "RolloutNotCompleted";
pub const ROLLOUT_HEALTHY_REASON: &str = "RolloutHealthy";
pub const ROLLOUT_HEALTHY_MESSAGE: &str = "Rollout is healthy";
pub const ROLLOUT_NOT_HEALTHY_MESSAGE: &str = "Rollout is not healthy";
pub const ROLLOUT_ABORTED_REASON: &str = "RolloutAborted";
pub const ROLLOUT_RETRY_REASON: &str = "RolloutRetry";
pub const ROLLOUT_RETRY_MESSAGE: &str = "Retrying Rollout after abort";
pub const ROLLOUT_PAUSED_REASON: &str = "RolloutPaused";
pub const ROLLOUT_PAUSED_MESSAGE: &str = "Rollout is paused";
pub const ROLLOUT_RESUMED_REASON: &str = "RolloutResumed";
pub const ROLLOUT_RESUMED_MESSAGE: &str = "Rollout is resumed";
pub const REPLICA_SET_NOT_AVAILABLE_REASON: &str = "ReplicaSetNotAvailable";
pub const NOT_AVAILABLE_RS_MESSAGE: &str = "Rollout does not have minimum availability";
pub const ROLLOUT_STEP_COMPLETED_REASON: &str = "RolloutStepCompleted";
pub const TRAFFIC_WEIGHT_UPDATED_REASON: &str = "TrafficWeightUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const ANALYSIS_RUN_FAILED_REASON: &str = "AnalysisRunFailed";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const SCALING_REPLICA_SET_REASON: &str = "ScalingReplicaSet";
pub const SERVICE_REFERENCE_REASON: &str = "ServiceReferenceError";
pub const SKIP_STEPS_REASON: &str = "SkipSteps";
pub const SWITCH_SERVICE_REASON: &str = "SwitchService";
pub const TRAFFIC_ROUTING_ERROR_REASON: &str = "TrafficRoutingError";
pub const WEIGHT_VERIFY_ERROR_REASON: &str = "WeightVerifyError";

/// `Created new replica set "<name>"`.
pub fn new_replica_set_message(name: &str) -> String {
    format!("Created new replica set {name:?}")
}

/// `Found new replica set "<name>"`.
pub fn found_new_rs_message(name: &str) -> String {
    format!("Found new replica set {name:?}")
}

pub fn replica_set_progressing_message(name: &str) -> String {
    format!("ReplicaSet {name:?} is progressing.")
}

pub fn rollout_progressing_message(name: &str) -> String {
    format!("Rollout {name:?} is progressing.")
}

pub fn replica_set_completed_message(name: &str) -> String {
    format!("ReplicaSet {name:?} has successfully progressed.")
}

pub fn replica_set_timed_out_message(name: &str) -> String {
    format!("ReplicaSet {name:?} has timed out progressing.")
}

pub fn rollout_timed_out_message(name: &str) -> String {
    format!("Rollout {name:?} has timed out progressing.")
}

pub fn rollout_aborted_message(revision: i64) -> String {
    format!("Rollout aborted update to revision {revision}")
}

/// A condition stamped with `now` (to the second, as the API stores it).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> RolloutCondition {
    let now = Time(truncate_to_second(now));
    RolloutCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_update_time: now.clone(),
        last_transition_time: now,
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// Drops sub-second precision, which the API server does not keep for `Time` fields.
pub fn truncate_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

pub fn get<'a>(conditions: &'a [RolloutCondition], type_: &str) -> Option<&'a RolloutCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition unless one with the same status and reason is already there; keeps the
/// transition time while the status is unchanged. Returns whether anything changed.
pub fn set(conditions: &mut Vec<RolloutCondition>, mut condition: RolloutCondition) -> bool {
    if let Some(current) = get(conditions, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return false;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
    true
}

pub fn remove(conditions: &mut Vec<RolloutCondition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn set_keeps_unchanged_conditions_and_transition_times() {
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            new_condition(
                AVAILABLE,
                FALSE,
                AVAILABLE_REASON,
                NOT_AVAILABLE_MESSAGE,
                at(10)
            )
        ));
        assert!(!set(
            &mut conditions,
            new_condition(AVAILABLE, FALSE, AVAILABLE_REASON, "other", at(20))
        ));
        assert_eq!(conditions[0].last_update_time.0, at(10));
        assert!(set(
            &mut conditions,
            new_condition(PROGRESSING, TRUE, REPLICA_SET_UPDATED_REASON, "m", at(30))
        ));
        assert!(set(
            &mut conditions,
            new_condition(PROGRESSING, TRUE, NEW_RS_AVAILABLE_REASON, "m", at(40))
        ));
        let progressing = get(&conditions, PROGRESSING).unwrap();
        assert_eq!(
            progressing.last_transition_time.0,
            at(30),
            "status unchanged: transition time kept"
        );
        assert_eq!(progressing.last_update_time.0, at(40));
        assert_eq!(conditions.len(), 2);
        remove(&mut conditions, AVAILABLE);
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn times_are_whole_seconds() {
        let t = Timestamp::from_millisecond(12_345).unwrap();
        assert_eq!(truncate_to_second(t), at(12));
    }
}
