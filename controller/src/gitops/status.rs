//! Composing `Application.status` from what a reconcile observed, and deciding whether it is
//! worth writing (a status that only differs by `reconciledAt` is not, until it is stale).

use super::application::{
    ApplicationCondition, ApplicationStatus, HealthStatus, OperationState, ResourceStatus,
    RevisionHistory,
};
use super::health::Assessment;

/// Condition type for a spec Ramp cannot act on.
pub const INVALID_SPEC: &str = "InvalidSpecError";
/// Condition type for a failure to load or render the target state.
pub const COMPARISON_ERROR: &str = "ComparisonError";
/// Condition type for a failed sync.
pub const SYNC_ERROR: &str = "SyncError";
/// Condition type for fields kept but not acted on.
pub const UNSUPPORTED: &str = "UnsupportedFeatureWarning";
/// Condition type for an out-of-sync application that is not synced automatically.
pub const SYNC_SKIPPED: &str = "SyncSkippedWarning";
/// Condition type for an object tracked by another application.
pub const SHARED_RESOURCE: &str = "SharedResourceWarning";

/// What a reconcile found.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub sync_status: String,
    /// The commit compared with, when known.
    pub revision: Option<String>,
    /// Managed objects; `None` keeps the previous list (the comparison failed).
    pub resources: Option<Vec<ResourceStatus>>,
    /// Application health; `None` keeps the previous one.
    pub health: Option<Assessment>,
    /// Conditions, as (type, message).
    pub conditions: Vec<(String, String)>,
    /// A sync operation that ran, if any.
    pub operation: Option<OperationState>,
    /// `Directory`, `Kustomize`, `Helm`.
    pub source_type: Option<String>,
}

/// The new status. `now` is an RFC 3339 timestamp.
pub fn compose(
    previous: Option<&ApplicationStatus>,
    observed: Observation,
    compared_to: super::application::ComparedTo,
    history_limit: usize,
    now: &str,
) -> ApplicationStatus {
    let previous_conditions = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let conditions: Vec<ApplicationCondition> = observed
        .conditions
        .into_iter()
        .map(|(type_, message)| {
            let since = previous_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.message == message)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.to_owned());
            ApplicationCondition {
                type_,
                message,
                last_transition_time: Some(since),
            }
        })
        .collect();
    let mut history = previous.and_then(|s| s.history.clone()).unwrap_or_default();
    if let Some(op) = observed
        .operation
        .as_ref()
        .filter(|op| op.phase == "Succeeded")
    {
        let id = history.last().map_or(0, |h| h.id + 1);
        if let Some(result) = &op.sync_result {
            history.push(RevisionHistory {
                id,
                revision: result.revision.clone(),
                deployed_at: op.finished_at.clone().unwrap_or_else(|| now.to_owned()),
                deploy_started_at: Some(op.started_at.clone()),
                source: result.source.clone(),
            });
        }
    }
    if history.len() > history_limit {
        history.drain(..history.len() - history_limit);
    }
    ApplicationStatus {
        resources: observed
            .resources
            .or_else(|| previous.and_then(|s| s.resources.clone())),
        sync: Some(super::application::SyncStatus {
            status: observed.sync_status,
            revision: observed
                .revision
                .or_else(|| previous.and_then(|s| s.sync.as_ref()?.revision.clone())),
            compared_to: Some(compared_to),
        }),
        health: observed
            .health
            .map(|a| HealthStatus {
                status: a.health.as_str().to_owned(),
                message: a.message,
            })
            .or_else(|| previous.and_then(|s| s.health.clone())),
        history: Some(history).filter(|h| !h.is_empty()),
        conditions: Some(conditions).filter(|c| !c.is_empty()),
        reconciled_at: Some(now.to_owned()),
        operation_state: observed
            .operation
            .or_else(|| previous.and_then(|s| s.operation_state.clone())),
        source_type: observed
            .source_type
            .or_else(|| previous.and_then(|s| s.source_type.clone())),
    }
}

/// Whether `next` says something `previous` does not (ignoring `reconciledAt`).
pub fn changed(previous: Option<&ApplicationStatus>, next: &ApplicationStatus) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let mut a = previous.clone();
    let mut b = next.clone();
    a.reconciled_at = None;
    b.reconciled_at = None;
    a != b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::application::{ComparedTo, SyncOperationResult};
    use crate::gitops::health::Health;

    fn observed(conditions: &[(&str, &str)]) -> Observation {
        Observation {
            sync_status: "Synced".into(),
            revision: Some("abc".into()),
            resources: Some(vec![]),
            health: Some(Assessment {
                health: Health::Healthy,
                message: None,
            }),
            conditions: conditions
                .iter()
                .map(|(t, m)| ((*t).into(), (*m).into()))
                .collect(),
            operation: None,
            source_type: Some("Directory".into()),
        }
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let first = compose(
            None,
            observed(&[(COMPARISON_ERROR, "a.yaml:3: bad")]),
            ComparedTo::default(),
            10,
            "t1",
        );
        let second = compose(
            Some(&first),
            observed(&[(COMPARISON_ERROR, "a.yaml:3: bad")]),
            ComparedTo::default(),
            10,
            "t2",
        );
        let conditions = second.conditions.as_deref().expect("conditions");
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t1"));
        assert!(!changed(Some(&first), &second), "only reconciledAt differs");
        let third = compose(
            Some(&second),
            observed(&[]),
            ComparedTo::default(),
            10,
            "t3",
        );
        assert_eq!(third.conditions, None);
        assert!(changed(Some(&second), &third));
    }

    #[test]
    fn successful_syncs_enter_a_bounded_history_and_failures_keep_the_last_good_state() {
        let op = |phase: &str, revision: &str| OperationState {
            phase: phase.into(),
            started_at: "s".into(),
            finished_at: Some("f".into()),
            sync_result: Some(SyncOperationResult {
                revision: revision.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut status = None;
        for revision in ["r1", "r2", "r3"] {
            let mut o = observed(&[]);
            o.operation = Some(op("Succeeded", revision));
            status = Some(compose(status.as_ref(), o, ComparedTo::default(), 2, "t"));
        }
        let mut failed = observed(&[(SYNC_ERROR, "boom")]);
        failed.operation = Some(op("Failed", "r4"));
        failed.resources = None;
        failed.health = None;
        let status = compose(status.as_ref(), failed, ComparedTo::default(), 2, "t");
        let history = status.history.as_deref().expect("history");
        let revisions: Vec<&str> = history.iter().map(|h| h.revision.as_str()).collect();
        assert_eq!(revisions, ["r2", "r3"]);
        assert_eq!(history[1].id, 2);
        assert_eq!(status.health.map(|h| h.status).as_deref(), Some("Healthy"));
        assert_eq!(
            status.operation_state.map(|o| o.phase).as_deref(),
            Some("Failed")
        );
    }
}
