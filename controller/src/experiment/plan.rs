//! One pass of an Experiment, decided from what was observed (Argo's experiment
//! reconciliation), with no API call:
//!
//! ```text
//!  spec invalid? ──yes──▶ InvalidSpec condition, nothing else
//!  each template  ── ReplicaSet `<experiment>-<template>` (create / scale / scale-down delay),
//!                    Service (`service: {}`), status Progressing → Running → Successful,
//!                    Failed past progressDeadlineSeconds
//!  each analysis  ── template checked before the templates are available, AnalysisRun created
//!                    once they are, its phase copied, terminated when the experiment ends
//!  phase          ── worst template vs. worst analysis (requiredForCompletion ends it early)
//! ```
//!
//! An experiment ends (Successful, Failed, Error, Inconclusive) when its duration has passed,
//! a template failed, an analysis did not succeed, its required analyses succeeded, or it was
//! told to `terminate`; its ReplicaSets are then scaled down after `scaleDownDelaySeconds`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};
use ramp_analysis::api::{AnalysisPhase, AnalysisRun, Argument};
use ramp_analysis::build::Templates;

use super::{EXPERIMENT_NAME_ANNOTATION, TEMPLATE_NAME_ANNOTATION};
use crate::api::{
    Experiment, ExperimentAnalysisRunStatus, ExperimentAnalysisTemplateRef, ExperimentStatus,
    ExperimentTemplate, ExperimentTemplateStatus, RolloutCondition,
};
use crate::rollout::conditions::{self, truncate_to_second};
use crate::rollout::hash::pod_template_hash;
use crate::rollout::names::{INSTANCE_ID_LABEL, POD_TEMPLATE_HASH_LABEL};
use crate::rollout::observe::ReplicaSetExt;
use crate::rollout::plan::PlannedEvent;

/// `progressDeadlineSeconds` when the spec gives none.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `scaleDownDelaySeconds` when the spec gives none.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// Template statuses, from best to worst.
pub const TEMPLATE_SUCCESSFUL: &str = "Successful";
pub const TEMPLATE_RUNNING: &str = "Running";
pub const TEMPLATE_PROGRESSING: &str = "Progressing";
pub const TEMPLATE_ERROR: &str = "Error";
pub const TEMPLATE_FAILED: &str = "Failed";
const TEMPLATE_ORDER: [&str; 5] = [
    TEMPLATE_SUCCESSFUL,
    TEMPLATE_RUNNING,
    TEMPLATE_PROGRESSING,
    TEMPLATE_ERROR,
    TEMPLATE_FAILED,
];

pub const INVALID_SPEC: &str = "InvalidSpec";
pub const PROGRESSING: &str = "Progressing";
const REQUIRED_ANALYSES_COMPLETED: &str = "Required AnalysisRuns completed";

/// An Experiment and the objects it controls.
#[derive(Clone, Debug)]
pub struct ObservedExperiment {
    pub experiment: Arc<Experiment>,
    /// ReplicaSets whose controller is the Experiment.
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    /// Services whose controller is the Experiment.
    pub services: Vec<Arc<Service>>,
    /// AnalysisRuns whose controller is the Experiment.
    pub analysis_runs: Vec<Arc<AnalysisRun>>,
    /// For each analysis (by name) still to be started, its templates or why they could not
    /// be read.
    pub analysis_templates: BTreeMap<String, Result<Arc<Templates>, String>>,
}

impl ObservedExperiment {
    pub fn new(experiment: Arc<Experiment>) -> ObservedExperiment {
        ObservedExperiment {
            experiment,
            replica_sets: Vec::new(),
            services: Vec::new(),
            analysis_runs: Vec::new(),
            analysis_templates: BTreeMap::new(),
        }
    }

    /// The ReplicaSet claimed by a template (by the experiment and template annotations).
    pub fn replica_set(&self, template: &str) -> Option<&Arc<ReplicaSet>> {
        let name = self.experiment.name_any();
        self.replica_sets
            .iter()
            .find(|rs| belongs_to(rs.annotations(), &name, template))
    }

    fn service(&self, template: &str) -> Option<&Arc<Service>> {
        let name = self.experiment.name_any();
        self.services
            .iter()
            .find(|s| belongs_to(s.annotations(), &name, template))
    }

    fn run(&self, name: &str) -> Option<&Arc<AnalysisRun>> {
        self.analysis_runs.iter().find(|r| r.name_any() == name)
    }
}

fn belongs_to(annotations: &BTreeMap<String, String>, experiment: &str, template: &str) -> bool {
    annotations
        .get(EXPERIMENT_NAME_ANNOTATION)
        .map(String::as_str)
        == Some(experiment)
        && annotations
            .get(TEMPLATE_NAME_ANNOTATION)
            .map(String::as_str)
            == Some(template)
}

/// Everything one pass of an Experiment should write.
#[derive(Clone, Debug, Default)]
pub struct ExperimentPlan {
    pub create_replica_sets: Vec<ReplicaSet>,
    pub replica_set_updates: Vec<ReplicaSetChange>,
    pub create_services: Vec<Service>,
    pub delete_services: Vec<String>,
    pub create_runs: Vec<PlannedRun>,
    pub terminate_runs: Vec<String>,
    /// The whole status the Experiment should have; only what differs is written.
    pub status: ExperimentStatus,
    pub events: Vec<PlannedEvent>,
    /// When to look again even if nothing changes.
    pub requeue_after: Option<Duration>,
}

/// A merge patch of a template's ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaSetChange {
    pub name: String,
    pub replicas: Option<i32>,
    /// Set (`Some(Some)`) or remove (`Some(None)`) the `scale-down-deadline` annotation.
    pub scale_down_deadline: Option<Option<String>>,
}

/// An AnalysisRun to create for an analysis of the experiment.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub analysis: String,
    pub run: AnalysisRun,
}

/// Plans one pass of an Experiment.
pub fn plan(observed: &ObservedExperiment, now: Timestamp) -> ExperimentPlan {
    let experiment = observed.experiment.as_ref();
    let previous = experiment.status.clone().unwrap_or_default();
    let mut pass = Pass {
        observed,
        experiment,
        now: truncate_to_second(now),
        exact_now: now,
        terminating: is_terminating(experiment, &previous),
        new: previous.clone(),
        plan: ExperimentPlan::default(),
    };
    let errors = crate::validation::validate_experiment(experiment);
    let conditions = pass.new.conditions.get_or_insert_with(Vec::new);
    if let Some(error) = errors.first() {
        let message = format!("The Experiment spec is invalid: {error}");
        let stale = conditions::get(conditions, INVALID_SPEC).is_some_and(|c| c.message != message);
        if stale {
            conditions::remove(conditions, INVALID_SPEC);
        }
        conditions::set(
            conditions,
            conditions::new_condition(INVALID_SPEC, "True", INVALID_SPEC, message, pass.now),
        );
        pass.plan.status = pass.new;
        return pass.plan;
    }
    conditions::remove(conditions, INVALID_SPEC);

    for template in &experiment.spec.templates {
        pass.reconcile_template(template);
    }
    for analysis in experiment.spec.analyses.iter().flatten() {
        pass.reconcile_analysis(analysis);
    }
    pass.calculate_status();
    pass.requeue();
    let mut plan = pass.plan;
    plan.status = pass.new;
    plan
}

/// Whether the experiment is winding down: told to terminate, finished, a template failed,
/// an analysis did not succeed, or its required analyses succeeded (Argo's `IsTerminating`).
pub fn is_terminating(experiment: &Experiment, status: &ExperimentStatus) -> bool {
    if experiment.spec.terminate == Some(true) || phase(status).completed() {
        return true;
    }
    let template_failed = status
        .template_statuses
        .iter()
        .flatten()
        .any(|t| matches!(t.status.as_deref(), Some(TEMPLATE_FAILED | TEMPLATE_ERROR)));
    let analysis_failed = status.analysis_runs.iter().flatten().any(|r| {
        matches!(
            r.phase,
            AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
        )
    });
    template_failed || analysis_failed || required_analyses_successful(experiment, status)
}

/// The experiment's phase (`Pending` before its first pass).
pub fn phase(status: &ExperimentStatus) -> AnalysisPhase {
    status.phase.unwrap_or_default()
}

/// Whether it has analyses marked `requiredForCompletion`.
pub fn has_required_analyses(experiment: &Experiment) -> bool {
    experiment
        .spec
        .analyses
        .iter()
        .flatten()
        .any(|a| a.required_for_completion == Some(true))
}

/// Whether it has required analyses and every one of them succeeded.
pub fn required_analyses_successful(experiment: &Experiment, status: &ExperimentStatus) -> bool {
    let mut required = experiment
        .spec
        .analyses
        .iter()
        .flatten()
        .filter(|a| a.required_for_completion == Some(true))
        .peekable();
    if required.peek().is_none() {
        return false;
    }
    required
        .all(|a| run_status(status, &a.name).is_some_and(|r| r.phase == AnalysisPhase::Successful))
}

fn run_status<'s>(
    status: &'s ExperimentStatus,
    name: &str,
) -> Option<&'s ExperimentAnalysisRunStatus> {
    status
        .analysis_runs
        .iter()
        .flatten()
        .find(|r| r.name == name)
}

fn template_status<'s>(
    status: &'s ExperimentStatus,
    name: &str,
) -> Option<&'s ExperimentTemplateStatus> {
    status
        .template_statuses
        .iter()
        .flatten()
        .find(|t| t.name == name)
}

fn template_completed(status: Option<&str>) -> bool {
    matches!(
        status,
        Some(TEMPLATE_SUCCESSFUL | TEMPLATE_FAILED | TEMPLATE_ERROR)
    )
}

fn template_rank(status: &str) -> usize {
    TEMPLATE_ORDER
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0)
}

/// Argo's order of analysis phases, best to worst, for "the worst of the analyses".
fn analysis_rank(phase: AnalysisPhase) -> usize {
    match phase {
        AnalysisPhase::Pending => 0,
        AnalysisPhase::Running => 1,
        AnalysisPhase::Successful => 2,
        AnalysisPhase::Inconclusive => 3,
        AnalysisPhase::Error => 4,
        AnalysisPhase::Failed => 5,
    }
}

/// The replicas a template should have now: none once the experiment ends or the template
/// completed.
pub fn template_replicas(
    experiment: &Experiment,
    status: &ExperimentStatus,
    template: &ExperimentTemplate,
) -> i32 {
    if is_terminating(experiment, status)
        || template_completed(
            template_status(status, &template.name).and_then(|t| t.status.as_deref()),
        )
    {
        return 0;
    }
    template.replicas.unwrap_or(1)
}

/// Whether `spec.duration` has passed since the templates became available, and the time
/// left otherwise (`None` without a duration or before availability).
pub fn duration_left(
    experiment: &Experiment,
    status: &ExperimentStatus,
    now: Timestamp,
) -> Option<SignedDuration> {
    let duration = experiment.spec.duration.as_deref()?;
    let duration = ramp_analysis::duration::parse_go_duration(duration).ok()?;
    let available = status.available_at.as_ref()?.0;
    let end = available
        .checked_add(SignedDuration::try_from(duration).ok()?)
        .ok()?;
    Some(end.duration_since(now))
}

fn passed_duration(experiment: &Experiment, status: &ExperimentStatus, now: Timestamp) -> bool {
    duration_left(experiment, status, now).is_some_and(|left| left.is_negative())
}

/// The hash of an experiment template's pods: the pod template's, salted with the template
/// name (see [`template_replica_set`]).
pub fn template_hash(pod: &PodTemplateSpec, name: &str, collision_count: Option<i32>) -> String {
    let mut salted = pod.clone();
    salted
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_NAME_ANNOTATION.into(), name.to_owned());
    pod_template_hash(&salted, collision_count)
}

fn progress_deadline(experiment: &Experiment) -> i64 {
    i64::from(
        experiment
            .spec
            .progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
    )
}

/// The ReplicaSet a template runs as: its pod template labelled with its own hash (never the
/// hash of the ReplicaSet it was copied from), the selector narrowed to that hash, owned by
/// the Experiment.
///
/// The hash covers the template's name as well as its pod template: a template copied from a
/// Rollout's ReplicaSet (`specRef`) has the same pod template, and the same hash would put the
/// experiment's pods behind the Rollout's Services, whose selectors carry the hash; two
/// templates of one pod spec would likewise select each other's pods.
pub fn template_replica_set(
    experiment: &Experiment,
    template: &ExperimentTemplate,
    collision_count: Option<i32>,
    replicas: i32,
) -> ReplicaSet {
    let mut pod = template.template.clone();
    if let Some(labels) = pod.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let hash = template_hash(&pod, &template.name, collision_count);
    pod.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut selector = template.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let name = experiment.name_any();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", template.name)),
            namespace: experiment.namespace(),
            labels: Some(BTreeMap::from([(POD_TEMPLATE_HASH_LABEL.into(), hash)])),
            annotations: Some(BTreeMap::from([
                (EXPERIMENT_NAME_ANNOTATION.into(), name),
                (TEMPLATE_NAME_ANNOTATION.into(), template.name.clone()),
            ])),
            owner_references: experiment.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: template.min_ready_seconds,
            selector,
            template: Some(pod),
        }),
        status: None,
    }
}

/// The Service of a template (`service: {}` or `service.name`): the ReplicaSet's container
/// ports, selecting its pods. `None` when the pods expose no port.
pub fn template_service(
    experiment: &Experiment,
    template: &ExperimentTemplate,
    rs: &ReplicaSet,
) -> Option<Service> {
    let spec = rs.spec.as_ref()?;
    let ports: Vec<ServicePort> = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|port| ServicePort {
            name: port.name.clone().filter(|n| !n.is_empty()),
            protocol: port.protocol.clone(),
            port: port.container_port,
            target_port: Some(IntOrString::Int(port.container_port)),
            ..Default::default()
        })
        .collect();
    if ports.is_empty() {
        return None;
    }
    let name = template
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| rs.name_any());
    Some(Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: experiment.namespace(),
            annotations: Some(BTreeMap::from([
                (EXPERIMENT_NAME_ANNOTATION.into(), experiment.name_any()),
                (TEMPLATE_NAME_ANNOTATION.into(), template.name.clone()),
            ])),
            owner_references: experiment.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: spec.selector.match_labels.clone(),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    })
}

/// Replaces the experiment's variables in an argument value: `templates.NAME.podTemplateHash`,
/// `templates.NAME.replicaset.name`, `experiment.availableAt`, `experiment.finishedAt`.
/// Other `{{…}}` are left for the run's own arguments.
pub fn resolve_argument(
    value: &str,
    experiment: &Experiment,
    status: &ExperimentStatus,
    replica_sets: &BTreeMap<String, Arc<ReplicaSet>>,
) -> String {
    let mut variables: Vec<(String, String)> = Vec::new();
    if let Some(available) = &status.available_at {
        variables.push(("experiment.availableAt".into(), available.0.to_string()));
        if let Some(duration) = experiment
            .spec
            .duration
            .as_deref()
            .and_then(|d| ramp_analysis::duration::parse_go_duration(d).ok())
            .and_then(|d| SignedDuration::try_from(d).ok())
            && let Ok(end) = available.0.checked_add(duration)
        {
            variables.push(("experiment.finishedAt".into(), end.to_string()));
        }
    }
    for (template, rs) in replica_sets {
        variables.push((
            format!("templates.{template}.podTemplateHash"),
            rs.pod_hash().to_string(),
        ));
        variables.push((
            format!("templates.{template}.replicaset.name"),
            rs.name_any(),
        ));
    }
    let mut resolved = value.to_string();
    for (key, replacement) in variables {
        resolved = resolved.replace(&format!("{{{{{key}}}}}"), &replacement);
    }
    resolved
}

/// State of one pass.
struct Pass<'a> {
    observed: &'a ObservedExperiment,
    experiment: &'a Experiment,
    /// `now` to the second, as stored in status times.
    now: Timestamp,
    exact_now: Timestamp,
    /// Decided from the observed status: no new ReplicaSet pods, no new runs.
    terminating: bool,
    new: ExperimentStatus,
    plan: ExperimentPlan,
}

impl Pass<'_> {
    fn previous(&self) -> ExperimentStatus {
        self.experiment.status.clone().unwrap_or_default()
    }

    fn event(&mut self, warning: bool, reason: String, message: String) {
        self.plan.events.push(PlannedEvent {
            warning,
            reason,
            message,
        });
    }

    fn requeue_after(&mut self, wait: SignedDuration) {
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
        self.plan.requeue_after = Some(match self.plan.requeue_after {
            Some(current) => current.min(wait),
            None => wait,
        });
    }

    fn set_template_status(&mut self, status: ExperimentTemplateStatus) {
        let list = self.new.template_statuses.get_or_insert_with(Vec::new);
        match list.iter_mut().find(|t| t.name == status.name) {
            Some(slot) => *slot = status,
            None => list.push(status),
        }
    }

    fn set_run_status(&mut self, status: ExperimentAnalysisRunStatus) {
        let list = self.new.analysis_runs.get_or_insert_with(Vec::new);
        match list.iter_mut().find(|r| r.name == status.name) {
            Some(slot) => *slot = status,
            None => list.push(status),
        }
    }

    fn reconcile_template(&mut self, template: &ExperimentTemplate) {
        let previous_status = self.previous();
        let previous = template_status(&previous_status, &template.name)
            .cloned()
            .unwrap_or_else(|| ExperimentTemplateStatus {
                name: template.name.clone(),
                ..Default::default()
            });
        let mut status = previous.clone();
        let desired = template_replicas(self.experiment, &previous_status, template);
        let now = Time(self.now);
        let finished = phase(&previous_status).completed();

        match self.observed.replica_set(&template.name).cloned() {
            None if finished => {}
            None => {
                let rs = template_replica_set(
                    self.experiment,
                    template,
                    previous.collision_count,
                    desired,
                );
                if template.service.is_some()
                    && desired != 0
                    && let Some(service) = template_service(self.experiment, template, &rs)
                {
                    status.service_name = service.metadata.name.clone();
                    status.pod_template_hash = Some(rs.pod_hash().to_string());
                    self.plan.create_services.push(service);
                }
                if desired > 0 {
                    self.event(
                        false,
                        "NewReplicaSetCreated".into(),
                        format!("Created ReplicaSet {} with size {desired}", rs.name_any()),
                    );
                }
                self.plan.create_replica_sets.push(rs);
                status.last_transition_time = Some(now.clone());
            }
            Some(rs) => {
                self.reconcile_service(template, &rs, desired, &mut status);
                self.reconcile_size(&rs, desired, &mut status);
            }
        }

        let rs = self.observed.replica_set(&template.name);
        status.replicas = rs.map_or(0, |rs| rs.actual());
        status.updated_replicas = status.replicas;
        status.ready_replicas = rs.map_or(0, |rs| rs.ready());
        status.available_replicas = rs.map_or(0, |rs| rs.available());
        if (
            previous.replicas,
            previous.updated_replicas,
            previous.ready_replicas,
            previous.available_replicas,
        ) != (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas,
        ) {
            status.last_transition_time = Some(now.clone());
        }

        if !template_completed(status.status.as_deref()) {
            let next = if desired == status.available_replicas {
                if passed_duration(self.experiment, &previous_status, self.exact_now)
                    || self.terminating
                {
                    TEMPLATE_SUCCESSFUL
                } else {
                    TEMPLATE_RUNNING
                }
            } else {
                let since = status
                    .last_transition_time
                    .as_ref()
                    .map_or(self.now, |t| t.0);
                let deadline = progress_deadline(self.experiment);
                let passed = since
                    .checked_add(SignedDuration::from_secs(deadline))
                    .is_ok_and(|end| self.exact_now > end);
                if passed {
                    status.message = Some(format!(
                        "Template '{}' exceeded its progressDeadlineSeconds ({deadline})",
                        template.name
                    ));
                    TEMPLATE_FAILED
                } else if self.terminating {
                    TEMPLATE_SUCCESSFUL
                } else {
                    TEMPLATE_PROGRESSING
                }
            };
            status.status = Some(next.to_string());
        }

        if previous.status != status.status
            && let Some(now_status) = status.status.clone()
        {
            let mut message = format!(
                "Template '{}' transitioned from {} -> {now_status}",
                template.name,
                previous.status.as_deref().unwrap_or("")
            );
            if let Some(detail) = status.message.as_deref().filter(|m| !m.is_empty()) {
                message.push_str(": ");
                message.push_str(detail);
            }
            let warning = matches!(now_status.as_str(), TEMPLATE_FAILED | TEMPLATE_ERROR);
            self.event(warning, format!("Template{now_status}"), message);
        }
        self.set_template_status(status);
    }

    /// Creates the template's Service while it runs, removes it once its pods are gone (or
    /// when the template asks for none).
    fn reconcile_service(
        &mut self,
        template: &ExperimentTemplate,
        rs: &ReplicaSet,
        desired: i32,
        status: &mut ExperimentTemplateStatus,
    ) {
        let existing = self.observed.service(&template.name).cloned();
        let scaled_down = desired == 0 && rs.desired() == 0 && rs.available() == 0;
        match (&template.service, existing) {
            (Some(_), None) if desired != 0 => {
                if let Some(service) = template_service(self.experiment, template, rs) {
                    status.service_name = service.metadata.name.clone();
                    status.pod_template_hash = Some(rs.pod_hash().to_string());
                    self.plan.create_services.push(service);
                }
            }
            (Some(_), Some(service)) if !scaled_down => {
                status.service_name = Some(service.name_any());
                status.pod_template_hash = Some(rs.pod_hash().to_string());
            }
            (Some(_), Some(service)) | (None, Some(service)) => {
                if service.metadata.deletion_timestamp.is_none() {
                    self.plan.delete_services.push(service.name_any());
                }
                status.service_name = None;
                status.pod_template_hash = None;
            }
            _ => {}
        }
    }

    /// Scales the template's ReplicaSet, keeping it up for `scaleDownDelaySeconds` once it
    /// should have none.
    fn reconcile_size(
        &mut self,
        rs: &ReplicaSet,
        desired: i32,
        status: &mut ExperimentTemplateStatus,
    ) {
        let name = rs.name_any();
        let delay = i64::from(
            self.experiment
                .spec
                .scale_down_delay_seconds
                .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS),
        );
        let mut deadline = rs.scale_down_deadline();
        if desired == 0 && rs.desired() != 0 {
            if delay == 0 {
                if rs.has_scale_down_deadline() {
                    self.plan.replica_set_updates.push(ReplicaSetChange {
                        name: name.clone(),
                        scale_down_deadline: Some(None),
                        ..Default::default()
                    });
                }
                deadline = None;
            } else if !rs.has_scale_down_deadline() {
                let at = self
                    .now
                    .checked_add(SignedDuration::from_secs(delay))
                    .unwrap_or(self.now);
                self.plan.replica_set_updates.push(ReplicaSetChange {
                    name: name.clone(),
                    scale_down_deadline: Some(Some(at.to_string())),
                    ..Default::default()
                });
                deadline = Some(at);
            }
        }
        if rs.desired() == desired {
            return;
        }
        if desired == 0
            && let Some(at) = deadline
            && at > self.exact_now
        {
            self.requeue_after(at.duration_since(self.exact_now) + SignedDuration::from_millis(10));
            return;
        }
        let direction = if rs.desired() < desired { "up" } else { "down" };
        self.event(
            false,
            "ScalingReplicaSet".into(),
            format!(
                "Scaled {direction} ReplicaSet {name} from {} to {desired}",
                rs.desired()
            ),
        );
        match self
            .plan
            .replica_set_updates
            .iter_mut()
            .find(|u| u.name == name)
        {
            Some(update) => update.replicas = Some(desired),
            None => self.plan.replica_set_updates.push(ReplicaSetChange {
                name,
                replicas: Some(desired),
                ..Default::default()
            }),
        }
        status.last_transition_time = Some(Time(self.now));
    }

    fn reconcile_analysis(&mut self, analysis: &ExperimentAnalysisTemplateRef) {
        let previous_status = self.previous();
        let previous = run_status(&previous_status, &analysis.name).cloned();
        let mut status = previous
            .clone()
            .unwrap_or_else(|| ExperimentAnalysisRunStatus {
                name: analysis.name.clone(),
                analysis_run: String::new(),
                phase: AnalysisPhase::Pending,
                message: None,
            });

        if previous_status.available_at.is_none() {
            // Not started before the templates are available; a template that cannot be
            // read is reported at once.
            if let Some(Err(reason)) = self.observed.analysis_templates.get(&analysis.name) {
                let kind = if analysis.cluster_scope == Some(true) {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                };
                status.phase = AnalysisPhase::Error;
                status.message = Some(format!(
                    "{kind} verification failed for analysis '{}': {reason}",
                    analysis.name
                ));
                self.record_run_status(previous.as_ref(), status);
            }
            return;
        }

        if status.analysis_run.is_empty() {
            if self.terminating {
                return;
            }
            match self.new_run(analysis, &previous_status) {
                Ok(run) => {
                    status.analysis_run = run.name_any();
                    status.phase = AnalysisPhase::Pending;
                    status.message = None;
                    self.plan.create_runs.push(PlannedRun {
                        analysis: analysis.name.clone(),
                        run,
                    });
                }
                Err(reason) => {
                    status.phase = AnalysisPhase::Error;
                    status.message = Some(format!(
                        "Failed to create AnalysisRun for analysis '{}': {reason}",
                        analysis.name
                    ));
                }
            }
            self.record_run_status(previous.as_ref(), status);
            return;
        }
        if status.phase.completed() {
            return;
        }
        // A run just created may not be in the cache yet: keep what the status says.
        let Some(run) = self.observed.run(&status.analysis_run).cloned() else {
            return;
        };
        if self.terminating {
            let run_phase = run
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or_default();
            if !run_phase.completed() && run.spec.terminate != Some(true) {
                self.plan.terminate_runs.push(run.name_any());
                self.event(
                    false,
                    "AnalysisRunTerminating".into(),
                    format!("Terminating {} ({})", analysis.name, run.name_any()),
                );
            }
            return;
        }
        let run_status = run.status.as_ref();
        status.phase = run_status.and_then(|s| s.phase).unwrap_or_default();
        status.message = run_status
            .and_then(|s| s.message.clone())
            .filter(|m| !m.is_empty());
        self.record_run_status(previous.as_ref(), status);
    }

    fn record_run_status(
        &mut self,
        previous: Option<&ExperimentAnalysisRunStatus>,
        status: ExperimentAnalysisRunStatus,
    ) {
        let before = previous.map(|p| p.phase);
        if before != Some(status.phase) {
            let mut message = format!(
                "AnalysisRun '{}' transitioned from {} -> {}",
                status.name,
                before.map_or("", AnalysisPhase::as_str),
                status.phase
            );
            if let Some(detail) = status.message.as_deref() {
                message.push_str(": ");
                message.push_str(detail);
            }
            let warning = matches!(
                status.phase,
                AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
            );
            self.event(warning, format!("AnalysisRun{}", status.phase), message);
        }
        self.set_run_status(status);
    }

    fn new_run(
        &self,
        analysis: &ExperimentAnalysisTemplateRef,
        status: &ExperimentStatus,
    ) -> Result<AnalysisRun, String> {
        let templates = match self.observed.analysis_templates.get(&analysis.name) {
            Some(Ok(templates)) => templates.clone(),
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Err("its templates were not read".into()),
        };
        let replica_sets: BTreeMap<String, Arc<ReplicaSet>> = self
            .experiment
            .spec
            .templates
            .iter()
            .filter_map(|t| Some((t.name.clone(), self.observed.replica_set(&t.name)?.clone())))
            .collect();
        let args: Vec<Argument> = analysis
            .args
            .iter()
            .flatten()
            .map(|arg| Argument {
                name: arg.name.clone(),
                value: arg
                    .value
                    .as_deref()
                    .map(|v| resolve_argument(v, self.experiment, status, &replica_sets)),
                value_from: arg.value_from.clone(),
            })
            .collect();
        let spec = self.experiment.spec.clone();
        let run_spec = templates
            .run_spec(
                args,
                spec.dry_run.unwrap_or_default(),
                spec.measurement_retention.unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
        let mut labels = BTreeMap::new();
        if let Some(instance) = self.experiment.labels().get(INSTANCE_ID_LABEL) {
            labels.insert(INSTANCE_ID_LABEL.to_string(), instance.clone());
        }
        let metadata = spec.analysis_run_metadata.unwrap_or_default();
        labels.extend(metadata.labels.unwrap_or_default());
        Ok(AnalysisRun {
            metadata: ObjectMeta {
                name: Some(format!("{}-{}", self.experiment.name_any(), analysis.name)),
                namespace: self.experiment.namespace(),
                labels: Some(labels).filter(|l| !l.is_empty()),
                annotations: metadata.annotations.filter(|a| !a.is_empty()),
                owner_references: self.experiment.controller_owner_ref(&()).map(|r| vec![r]),
                ..Default::default()
            },
            spec: run_spec,
            status: None,
        })
    }

    /// Argo's `calculateStatus`: the experiment's phase from its templates and analyses.
    fn calculate_status(&mut self) {
        match self.new.phase {
            None => self.new.phase = Some(AnalysisPhase::Pending),
            Some(AnalysisPhase::Pending | AnalysisPhase::Running) => {
                let (templates, template_message) = self.assess_templates();
                let (analyses, analysis_message) = self.assess_analyses();
                if templates == AnalysisPhase::Running && self.new.available_at.is_none() {
                    self.new.available_at = Some(Time(self.now));
                }
                let (next, message) = if templates.completed() {
                    let analyses_done =
                        analyses.completed() || has_required_analyses(self.experiment);
                    if templates == AnalysisPhase::Successful && analyses_done {
                        (analyses, analysis_message)
                    } else {
                        (templates, template_message)
                    }
                } else if (analyses.completed() && analyses != AnalysisPhase::Successful)
                    || required_analyses_successful(self.experiment, &self.new)
                {
                    (analyses, analysis_message)
                } else {
                    (templates, template_message)
                };
                if next.completed() && self.new.phase != Some(next) {
                    let warning = next != AnalysisPhase::Successful;
                    let text = match message.as_deref() {
                        Some(m) => format!("Experiment {next}: {m}"),
                        None => format!("Experiment {next}"),
                    };
                    self.event(warning, format!("Experiment{next}"), text);
                }
                self.new.phase = Some(next);
                self.new.message = message;
            }
            Some(_) => {}
        }
        self.update_progressing_condition();
    }

    fn assess_templates(&self) -> (AnalysisPhase, Option<String>) {
        let mut worst = TEMPLATE_SUCCESSFUL;
        let mut message = None;
        for template in &self.experiment.spec.templates {
            match template_status(&self.new, &template.name) {
                None => {
                    if template_rank(TEMPLATE_PROGRESSING) > template_rank(worst) {
                        worst = TEMPLATE_PROGRESSING;
                    }
                }
                Some(status) => {
                    let current = status.status.as_deref().unwrap_or(TEMPLATE_SUCCESSFUL);
                    if template_rank(current) > template_rank(worst) {
                        worst = TEMPLATE_ORDER[template_rank(current)];
                        message = status.message.clone().filter(|m| !m.is_empty());
                    }
                }
            }
        }
        let phase = match worst {
            TEMPLATE_PROGRESSING => AnalysisPhase::Pending,
            TEMPLATE_FAILED => AnalysisPhase::Failed,
            TEMPLATE_ERROR => AnalysisPhase::Error,
            TEMPLATE_SUCCESSFUL => AnalysisPhase::Successful,
            _ => AnalysisPhase::Running,
        };
        (phase, message)
    }

    fn assess_analyses(&self) -> (AnalysisPhase, Option<String>) {
        let mut worst = AnalysisPhase::Successful;
        let mut message = None;
        for analysis in self.experiment.spec.analyses.iter().flatten() {
            if let Some(status) = run_status(&self.new, &analysis.name)
                && analysis_rank(status.phase) > analysis_rank(worst)
            {
                worst = status.phase;
                message = status.message.clone();
            }
        }
        if required_analyses_successful(self.experiment, &self.new)
            && analysis_rank(AnalysisPhase::Running) > analysis_rank(worst)
        {
            return (
                AnalysisPhase::Successful,
                Some(REQUIRED_ANALYSES_COMPLETED.into()),
            );
        }
        if worst == AnalysisPhase::Pending {
            worst = AnalysisPhase::Running;
        }
        (worst, message)
    }

    fn update_progressing_condition(&mut self) {
        let name = self.experiment.name_any();
        let phase = phase(&self.new);
        let running = self.new.available_at.is_some()
            && !passed_duration(self.experiment, &self.new, self.exact_now);
        let (status, reason, message) = if phase.completed() {
            (
                "False",
                "ExperimentCompleted",
                format!("Experiment \"{name}\" has completed"),
            )
        } else if running {
            (
                "True",
                "NewReplicaSetAvailable",
                format!("Experiment \"{name}\" is running"),
            )
        } else {
            (
                "True",
                "ReplicaSetUpdated",
                format!("Experiment \"{name}\" is progressing"),
            )
        };
        let condition: RolloutCondition =
            conditions::new_condition(PROGRESSING, status, reason, message, self.now);
        let list = self.new.conditions.get_or_insert_with(Vec::new);
        conditions::set(list, condition);
    }

    /// When to look again: the end of the duration, a template's progress deadline.
    fn requeue(&mut self) {
        if is_terminating(self.experiment, &self.new) {
            return;
        }
        if let Some(left) = duration_left(self.experiment, &self.new, self.exact_now)
            && !left.is_negative()
        {
            self.requeue_after(left + SignedDuration::from_millis(10));
        }
        let deadline = progress_deadline(self.experiment);
        let mut waits = Vec::new();
        for template in &self.experiment.spec.templates {
            let Some(status) = template_status(&self.new, &template.name) else {
                continue;
            };
            if !matches!(
                status.status.as_deref(),
                Some(TEMPLATE_PROGRESSING | TEMPLATE_RUNNING)
            ) {
                continue;
            }
            let desired = template_replicas(self.experiment, &self.new, template);
            if status.available_replicas == desired {
                continue;
            }
            if let Some(since) = &status.last_transition_time
                && let Ok(end) = since.0.checked_add(SignedDuration::from_secs(deadline))
            {
                waits.push(end.duration_since(self.exact_now) + SignedDuration::from_millis(10));
            }
        }
        for wait in waits {
            self.requeue_after(wait.max(SignedDuration::ZERO));
        }
    }
}
