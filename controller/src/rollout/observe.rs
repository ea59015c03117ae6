//! What the planner sees of the world: a Rollout and the objects around it, read from the
//! controller's caches, plus a few accessors that read ReplicaSets the way Argo reads them.
//!
//! Everything is held by `Arc`, so gathering an [`Observed`] copies no object.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::analysis::{AnalysisUse, GatheredTemplates};
use super::names::{
    DESIRED_REPLICAS_ANNOTATION, MANAGED_BY_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION,
};
use crate::api::{AnalysisRun, Experiment, Rollout};

/// A Rollout and everything its reconciliation depends on.
#[derive(Clone, Debug)]
pub struct Observed {
    pub rollout: Arc<Rollout>,
    /// The Deployment named by `spec.workloadRef`, when there is one and it exists.
    pub workload: Option<Arc<Deployment>>,
    /// ReplicaSets owned by the Rollout (controller reference) that carry the
    /// `rollouts-pod-template-hash` label.
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    /// AnalysisRuns owned by the Rollout.
    pub analysis_runs: Vec<Arc<AnalysisRun>>,
    /// Experiments owned by the Rollout (its `experiment` steps).
    pub experiments: Vec<Arc<Experiment>>,
    /// The Services the strategy names, by name; a missing name is a missing Service.
    pub services: BTreeMap<String, Arc<Service>>,
    /// For each analysis of the spec, its templates (expanded through `templates[]`) or why
    /// they could not be read.
    pub analysis_templates: BTreeMap<AnalysisUse, GatheredTemplates>,
    /// The Rollout's pods; read only while a restart (`spec.restartAt`) is pending.
    pub pods: Option<Vec<Arc<Pod>>>,
    /// `--instance-id` of this controller, copied as a label onto AnalysisRuns.
    pub instance_id: Option<String>,
}

impl Observed {
    /// An observation of a Rollout alone (nothing else exists yet).
    pub fn new(rollout: Arc<Rollout>) -> Observed {
        Observed {
            rollout,
            workload: None,
            replica_sets: Vec::new(),
            analysis_runs: Vec::new(),
            experiments: Vec::new(),
            services: BTreeMap::new(),
            analysis_templates: BTreeMap::new(),
            pods: None,
            instance_id: None,
        }
    }

    /// The pod template in effect: `spec.template`, or the template of the `workloadRef`.
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        if self.rollout.spec.workload_ref.is_some() {
            return self
                .workload
                .as_ref()
                .and_then(|d| d.spec.as_ref())
                .map(|s| &s.template);
        }
        self.rollout.spec.template.as_ref()
    }
}

/// Argo's reading of a ReplicaSet's fields.
pub trait ReplicaSetExt {
    /// `spec.replicas` (Kubernetes defaults it to 1).
    fn desired(&self) -> i32;
    fn actual(&self) -> i32;
    fn ready(&self) -> i32;
    fn available(&self) -> i32;
    /// The `rollouts-pod-template-hash` label, or `""`.
    fn pod_hash(&self) -> &str;
    /// The revision annotation, when it is a number.
    fn revision(&self) -> Option<i64>;
    /// The `scale-down-deadline` annotation, when present and a valid RFC 3339 time.
    fn scale_down_deadline(&self) -> Option<Timestamp>;
    fn has_scale_down_deadline(&self) -> bool;
    /// The `desired-replicas` annotation.
    fn desired_replicas_annotation(&self) -> Option<i32>;
    fn created(&self) -> Option<Timestamp>;
    fn is_deleting(&self) -> bool;
    /// Has, or ought to have, pods.
    fn is_active(&self) -> bool;
    /// Scaled up and every desired pod available.
    fn is_fully_available(&self) -> bool;
}

impl ReplicaSetExt for ReplicaSet {
    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn actual(&self) -> i32 {
        self.status.as_ref().map_or(0, |s| s.replicas)
    }

    fn ready(&self) -> i32 {
        self.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }

    fn available(&self) -> i32 {
        self.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    }

    fn pod_hash(&self) -> &str {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .map_or("", String::as_str)
    }

    fn revision(&self) -> Option<i64> {
        self.annotations()
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
    }

    fn scale_down_deadline(&self) -> Option<Timestamp> {
        self.annotations()
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|t| t.parse().ok())
    }

    fn has_scale_down_deadline(&self) -> bool {
        self.annotations()
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .is_some_and(|v| !v.is_empty())
    }

    fn desired_replicas_annotation(&self) -> Option<i32> {
        self.annotations()
            .get(DESIRED_REPLICAS_ANNOTATION)
            .and_then(|r| r.parse().ok())
    }

    fn created(&self) -> Option<Timestamp> {
        self.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }

    fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    fn is_active(&self) -> bool {
        self.desired() > 0
    }

    fn is_fully_available(&self) -> bool {
        let desired = self.desired();
        let available = self.available();
        desired != 0 && available != 0 && desired <= available
    }
}

/// The pod-template hash a Service currently selects, and whether a Rollout manages it.
pub trait ServiceExt {
    fn selected_hash(&self) -> Option<&str>;
    /// The Rollout named in the managed-by annotation.
    fn managed_by(&self) -> Option<&str>;
}

impl ServiceExt for Service {
    fn selected_hash(&self) -> Option<&str> {
        self.spec
            .as_ref()?
            .selector
            .as_ref()?
            .get(POD_TEMPLATE_HASH_LABEL)
            .map(String::as_str)
    }

    fn managed_by(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(MANAGED_BY_ANNOTATION)
            .map(String::as_str)
    }
}
