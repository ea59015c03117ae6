//! The label, annotation and naming conventions Ramp shares with Argo Rollouts, so that
//! objects created by either controller are understood by the other and by Argo's tools.

/// Label on ReplicaSets, their pods, Services' selectors and AnalysisRuns: the pod-template
/// hash of the revision.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Revision number on ReplicaSets, on the Rollout and on AnalysisRuns.
pub const REVISION_ANNOTATION: &str = "rollout.argoproj.io/revision";
/// `spec.replicas` of the Rollout when a ReplicaSet was last scaled; a difference reveals a
/// scaling event.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "rollout.argoproj.io/desired-replicas";
/// RFC 3339 time after which an old ReplicaSet (or an aborted canary) is scaled down.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "scale-down-deadline";
/// Pod labels and annotations injected from `canaryMetadata`/`stableMetadata`.
pub const EPHEMERAL_METADATA_ANNOTATION: &str = "rollout.argoproj.io/ephemeral-metadata";
/// On Services whose selector a Rollout controls: the Rollout's name.
pub const MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// Separates the objects of several controllers sharing a cluster (`--instance-id`).
pub const INSTANCE_ID_LABEL: &str = "argo-rollouts.argoproj.io/controller-instance-id";
/// Generation of a `workloadRef` Deployment the Rollout's template was taken from.
pub const WORKLOAD_GENERATION_ANNOTATION: &str = "rollout.argoproj.io/workload-generation";

/// Label on AnalysisRuns created by a Rollout: what they are for.
pub const ROLLOUT_TYPE_LABEL: &str = "rollout-type";
/// Value of [`ROLLOUT_TYPE_LABEL`] for a run created by an `analysis` step.
pub const ROLLOUT_TYPE_STEP: &str = "Step";
/// Value of [`ROLLOUT_TYPE_LABEL`] for the background analysis of a canary.
pub const ROLLOUT_TYPE_BACKGROUND: &str = "Background";
/// Value of [`ROLLOUT_TYPE_LABEL`] for blue-green pre-promotion analysis.
pub const ROLLOUT_TYPE_PRE_PROMOTION: &str = "PrePromotion";
/// Value of [`ROLLOUT_TYPE_LABEL`] for blue-green post-promotion analysis.
pub const ROLLOUT_TYPE_POST_PROMOTION: &str = "PostPromotion";
/// Label on step AnalysisRuns: the index of the step.
pub const STEP_INDEX_LABEL: &str = "step-index";

/// Ramp's own, on a completed AnalysisRun of an aborted attempt that is being retried: the
/// Rollout's `abortedAt`. A run of the same name planned later is a new attempt, not this
/// run whose status write was lost (Argo tells them apart by nothing and may run a step twice).
pub const SUPERSEDED_ANNOTATION: &str = "rollouts.ramp.dev/superseded-by-abort";

/// The field manager of every write Ramp makes.
pub const FIELD_MANAGER: &str = "ramp";

/// Name of a Rollout's ReplicaSet for a pod-template hash.
pub fn replica_set_name(rollout: &str, pod_template_hash: &str) -> String {
    format!("{rollout}-{pod_template_hash}")
}

/// Name of an AnalysisRun a Rollout creates: `<rollout>-<hash>-<revision>[-<infix>]`, the
/// infix being the step index for step runs, `pre`/`post` for blue-green, none for the
/// background run.
pub fn analysis_run_name(
    rollout: &str,
    pod_template_hash: &str,
    revision: &str,
    infix: Option<&str>,
) -> String {
    let mut name = format!("{rollout}-{pod_template_hash}-{revision}");
    if let Some(infix) = infix {
        name.push('-');
        name.push_str(infix);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_argo() {
        assert_eq!(
            replica_set_name("guestbook", "6c8f8b9d4"),
            "guestbook-6c8f8b9d4"
        );
        assert_eq!(
            analysis_run_name("guestbook", "6c8f8b9d4", "2", Some("1")),
            "guestbook-6c8f8b9d4-2-1"
        );
        assert_eq!(
            analysis_run_name("guestbook", "6c8f8b9d4", "2", None),
            "guestbook-6c8f8b9d4-2"
        );
    }
}
