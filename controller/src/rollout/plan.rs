//! The outcome of planning: every write one reconciliation should make, in the order it
//! must be made, plus the desired status, the Events to record and when to look again.
//!
//! ```text
//!   traffic  ── Service selectors, router weights (an abort moves traffic here, first and alone)
//!   objects  ── ReplicaSets, AnalysisRuns, pod evictions, the Rollout's revision annotation
//!   status   ── one merge patch of the fields that changed, or nothing
//!   events   ── recorded after the writes, never delaying them
//! ```
//!
//! A [`Planner`] carries the state shared by the strategies while a plan is built: the
//! Rollout, its ReplicaSets sorted into new / stable / others, pause and abort decisions,
//! the status being assembled, and the plan itself.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodAntiAffinity, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::observe::{Observed, ReplicaSetExt};
use super::pause::PauseContext;
use crate::api::{
    AnalysisRun, Rollout, RolloutStatus, SetHeaderRoute, SetMirrorRoute, WeightDestination,
};

/// Everything one reconciliation of a Rollout should do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Service selectors to move, in order.
    pub services: Vec<ServiceSelector>,
    /// What the traffic router should be told, when the Rollout has one.
    pub traffic: Option<TrafficPlan>,
    /// A new ReplicaSet to create (complete; collisions are handled on apply).
    pub create_replica_set: Option<Box<ReplicaSet>>,
    /// Changes to existing ReplicaSets, in the order they were decided.
    pub replica_set_updates: Vec<ReplicaSetUpdate>,
    /// Old, scaled-down ReplicaSets beyond `revisionHistoryLimit`.
    pub replica_set_deletes: Vec<String>,
    pub analysis_runs: Vec<AnalysisRunChange>,
    /// Experiments of `experiment` steps to create, terminate or delete.
    pub experiments: Vec<crate::experiment::step::ExperimentChange>,
    /// Pods to evict for `spec.restartAt`.
    pub evictions: Vec<String>,
    /// ReplicaSets whose running pods take the metadata of a new role.
    pub pod_metadata: Vec<super::ephemeral::PodMetadataSync>,
    /// New value of the Rollout's `rollout.argoproj.io/revision` annotation.
    pub rollout_revision: Option<String>,
    /// The status the Rollout should have; written only where it differs from the observed.
    pub status: Option<RolloutStatus>,
    pub events: Vec<PlannedEvent>,
    /// When to reconcile again even if nothing changes (a pause or a delay ending).
    pub requeue_after: Option<Duration>,
    /// Planning stopped early: the writes above are still made, the status is not, and the
    /// reconcile is retried.
    pub error: Option<String>,
}

impl Plan {
    /// Whether the plan writes nothing but (possibly) status.
    pub fn writes_objects(&self) -> bool {
        !self.services.is_empty()
            || self.traffic.is_some()
            || self.create_replica_set.is_some()
            || !self.replica_set_updates.is_empty()
            || !self.replica_set_deletes.is_empty()
            || !self.analysis_runs.is_empty()
            || !self.experiments.is_empty()
            || !self.evictions.is_empty()
            || !self.pod_metadata.is_empty()
            || self.rollout_revision.is_some()
    }
}

/// Point a Service's `rollouts-pod-template-hash` selector at a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSelector {
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    /// Also record the managing Rollout in the Service's annotation (first adoption).
    pub add_managed_by: Option<String>,
}

/// The desired state of the traffic router(s) of a canary.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficPlan {
    /// Canary weight, out of `max_weight`.
    pub canary_weight: i32,
    pub max_weight: i32,
    /// Weights of extra destinations (experiments).
    pub additional: Vec<WeightDestination>,
    pub canary_hash: String,
    pub stable_hash: String,
    pub canary_service: Option<String>,
    pub stable_service: Option<String>,
    /// Routes to set for the current step.
    pub header_route: Option<SetHeaderRoute>,
    pub mirror_route: Option<SetMirrorRoute>,
    /// Remove every route Ramp added (the rollout ended or aborted).
    pub remove_managed_routes: bool,
    /// The rollout is aborting: this move must happen before anything else.
    pub aborting: bool,
}

/// A merge patch of the fields Ramp manages on a ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaSetUpdate {
    pub name: String,
    pub replicas: Option<i32>,
    pub min_ready_seconds: Option<i32>,
    /// Annotations to set (`Some`) or remove (`None`).
    pub annotations: BTreeMap<String, Option<String>>,
    /// Replacement pod-template metadata (ephemeral labels and annotations).
    pub template_labels: Option<BTreeMap<String, Option<String>>>,
    pub template_annotations: Option<BTreeMap<String, Option<String>>>,
    /// Replacement `podAntiAffinity` of the pod template (the injected `antiAffinity` term
    /// re-pointed at a new stable revision).
    pub template_pod_anti_affinity: Option<PodAntiAffinity>,
}

/// A write to an AnalysisRun the Rollout owns.
#[derive(Clone, Debug)]
pub enum AnalysisRunChange {
    Create(Box<AnalysisRun>),
    /// Set `spec.terminate: true`.
    Terminate {
        name: String,
    },
    Delete {
        name: String,
    },
}

/// An Event on the Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// A Rollout's ReplicaSets sorted as Argo sorts them.
#[derive(Clone, Debug, Default)]
pub struct ReplicaSets {
    /// Every ReplicaSet, including one this plan creates.
    pub all: Vec<Arc<ReplicaSet>>,
    /// The ReplicaSet of the current pod template ("new", "desired", "canary").
    pub new: Option<Arc<ReplicaSet>>,
    /// The ReplicaSet named by `status.stableRS` (equal to `new` when fully promoted).
    pub stable: Option<Arc<ReplicaSet>>,
    /// Everything but `new`, the stable included.
    pub older: Vec<Arc<ReplicaSet>>,
    /// Everything but `new` and `stable`.
    pub others: Vec<Arc<ReplicaSet>>,
}

impl ReplicaSets {
    /// Whether a stable ReplicaSet exists and differs from the new one.
    pub fn stable_differs(&self) -> bool {
        match (&self.stable, &self.new) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(stable), Some(new)) => stable.metadata.name != new.metadata.name,
        }
    }

    pub fn new_hash(&self) -> Option<&str> {
        self.new.as_deref().map(ReplicaSetExt::pod_hash)
    }

    pub fn stable_hash(&self) -> Option<&str> {
        self.stable.as_deref().map(ReplicaSetExt::pod_hash)
    }

    pub fn by_hash(&self, hash: &str) -> Option<&Arc<ReplicaSet>> {
        self.all.iter().find(|rs| rs.pod_hash() == hash)
    }
}

/// State shared by every stage of planning one Rollout.
pub struct Planner<'a> {
    pub observed: &'a Observed,
    pub rollout: &'a Rollout,
    pub template: &'a PodTemplateSpec,
    pub now: Timestamp,
    pub sets: ReplicaSets,
    pub pause: PauseContext,
    /// The status being assembled (Argo's `newStatus`).
    pub new_status: RolloutStatus,
    /// The Rollout's revision, as the revision annotation will read after this plan.
    pub revision: String,
    pub plan: Plan,
}

impl<'a> Planner<'a> {
    pub fn name(&self) -> &str {
        self.rollout.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn status(&self) -> &'a RolloutStatus {
        static EMPTY: LazyLock<RolloutStatus> = LazyLock::new(RolloutStatus::default);
        match &self.rollout.status {
            Some(status) => status,
            None => &EMPTY,
        }
    }

    /// `spec.replicas`, defaulted to 1 (never written back: an HPA or a GitOps tool owns it).
    pub fn replicas(&self) -> i32 {
        self.rollout.spec.replicas.unwrap_or(1)
    }

    pub fn is_aborted(&self) -> bool {
        self.pause.is_aborted(self.status().abort == Some(true))
    }

    pub fn stable_rs_hash(&self) -> &str {
        self.status().stable_rs.as_deref().unwrap_or("")
    }

    pub fn current_pod_hash(&self) -> &str {
        self.status().current_pod_hash.as_deref().unwrap_or("")
    }

    /// Whether the observed status says the desired revision is the stable one.
    pub fn fully_promoted(&self) -> bool {
        self.stable_rs_hash() == self.current_pod_hash()
    }

    pub fn event(&mut self, reason: &str, message: impl Into<String>) {
        self.plan.events.push(PlannedEvent {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        });
    }

    pub fn warning(&mut self, reason: &str, message: impl Into<String>) {
        self.plan.events.push(PlannedEvent {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Reconcile again at `at` (the earliest such request wins). A time already past asks
    /// for an immediate requeue.
    pub fn requeue_at(&mut self, at: Timestamp) {
        let wait = at.duration_since(self.now);
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
        self.requeue_after(wait);
    }

    pub fn requeue_after(&mut self, wait: Duration) {
        self.plan.requeue_after = Some(match self.plan.requeue_after {
            Some(current) => current.min(wait),
            None => wait,
        });
    }

    /// The update planned so far for a ReplicaSet, created on first use.
    pub fn replica_set_update(&mut self, name: &str) -> &mut ReplicaSetUpdate {
        let updates = &mut self.plan.replica_set_updates;
        let index = match updates.iter().position(|u| u.name == name) {
            Some(index) => index,
            None => {
                updates.push(ReplicaSetUpdate {
                    name: name.to_string(),
                    ..Default::default()
                });
                updates.len() - 1
            }
        };
        &mut updates[index]
    }
}
