//! A canary's `experiment` step (Argo's `reconcileExperiments`): the Rollout creates an
//! Experiment from its stable and canary ReplicaSets, waits for it, and acts on its verdict.
//!
//! ```text
//!  aborted / promoted in full ─▶ terminate every Experiment of the Rollout
//!  step is `experiment` ──▶ none yet? create `<rollout>-<hash>-<revision>-<step>`
//!                           Successful → the step completes   Failed, Error → abort
//!                           Inconclusive → pause (InconclusiveExperiment)
//!  other Experiments ──▶ terminated; finished ones of revisions gone are deleted
//! ```
//!
//! The Experiment in progress is named in `status.canary.currentExperiment`, as Argo does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use ramp_analysis::api::{AnalysisPhase, Argument};
use serde_json::json;

use super::plan::{is_terminating, phase};
use crate::api::{
    CanaryStatus, Experiment, ExperimentAnalysisTemplateRef, ExperimentSpec, ExperimentTemplate,
    RolloutExperimentStep, TemplateService, WeightDestination,
};
use crate::rollout::analysis::rollout_arguments;
use crate::rollout::apply::ApplyError;
use crate::rollout::names::{
    FIELD_MANAGER, INSTANCE_ID_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
};
use crate::rollout::observe::ReplicaSetExt;
use crate::rollout::pause::{INCONCLUSIVE_ANALYSIS, INCONCLUSIVE_EXPERIMENT, pause_condition};
use crate::rollout::plan::Planner;
use crate::rollout::steps;

/// A write to an Experiment the Rollout owns.
#[derive(Clone, Debug)]
pub enum ExperimentChange {
    Create(Box<Experiment>),
    /// Set `spec.terminate: true`.
    Terminate {
        name: String,
    },
    Delete {
        name: String,
    },
}

/// Finished Experiments kept per outcome, as for AnalysisRuns.
const HISTORY_LIMIT: usize = 5;

/// Name of the Experiment of step `index`: `<rollout>-<hash>-<revision>-<index>`.
pub fn experiment_name(rollout: &str, hash: &str, revision: &str, index: usize) -> String {
    format!("{rollout}-{hash}-{revision}-{index}")
}

/// Plans the Rollout's Experiments for this pass; records the one in progress in the new
/// status. `Err` when the step's Experiment cannot be built (the pass stops).
pub fn reconcile(p: &mut Planner<'_>) -> Result<(), String> {
    let experiments = p.observed.experiments.clone();
    let current = current(p).cloned();
    if p.is_aborted() || p.status().promote_full == Some(true) {
        terminate(p, experiments.iter());
        return Ok(());
    }
    if pause_condition(p.status(), INCONCLUSIVE_ANALYSIS).is_some() {
        record(p, current.as_deref());
        return Ok(());
    }
    let (step, index) = steps::current(p.rollout);
    let step_experiment = step.and_then(|s| s.experiment.as_ref());
    let mut in_progress = None;
    if let (Some(step_experiment), Some(index)) = (step_experiment, index) {
        let experiment = match current.clone() {
            Some(experiment) => Some(experiment),
            None => create(p, step_experiment, index)?,
        };
        if let Some(experiment) = experiment {
            let status = experiment.status.clone().unwrap_or_default();
            match phase(&status) {
                AnalysisPhase::Inconclusive => p.pause.add_pause(INCONCLUSIVE_EXPERIMENT),
                AnalysisPhase::Failed | AnalysisPhase::Error => {
                    let message = status.message.clone().unwrap_or_else(|| {
                        format!("Experiment '{}' {}", experiment.name_any(), phase(&status))
                    });
                    p.pause.add_abort(message);
                }
                _ => {}
            }
            record(p, Some(&experiment));
            in_progress = Some(experiment.name_any());
        }
    }
    let others: Vec<Arc<Experiment>> = experiments
        .iter()
        .filter(|e| Some(e.name_any()) != in_progress)
        .cloned()
        .collect();
    terminate(p, others.iter());
    delete_old(p, &others);
    Ok(())
}

/// Whether the current step's Experiment succeeded.
pub fn succeeded(p: &Planner<'_>) -> bool {
    current(p)
        .is_some_and(|e| phase(&e.status.clone().unwrap_or_default()) == AnalysisPhase::Successful)
}

/// The traffic weights of the current experiment step's templates that ask for one
/// (`templates[].weight`): each template's Service gets its weight once the template runs with
/// available pods (Argo's `additionalDestinations`); until then, and once the Experiment has
/// ended, none.
pub fn weight_destinations(p: &Planner<'_>) -> Vec<WeightDestination> {
    let (Some(step), _) = steps::current(p.rollout) else {
        return Vec::new();
    };
    let Some(experiment_step) = step.experiment.as_ref() else {
        return Vec::new();
    };
    let Some(experiment) = current(p) else {
        return Vec::new();
    };
    let status = experiment.status.clone().unwrap_or_default();
    if phase(&status).completed() || is_terminating(experiment, &status) {
        return Vec::new();
    }
    let templates = status.template_statuses.unwrap_or_default();
    experiment_step
        .templates
        .iter()
        .filter_map(|template| {
            let weight = template.weight?;
            let running = templates.iter().find(|t| t.name == template.name)?;
            let ready = running.status.as_deref() == Some("Running")
                && running.available_replicas > 0
                && running.service_name.is_some();
            ready.then(|| WeightDestination {
                weight,
                service_name: running.service_name.clone(),
                pod_template_hash: running.pod_template_hash.clone(),
            })
        })
        .collect()
}

/// The Experiment of the current step: the one the status names, or (after a status write
/// was lost) one of this step still running.
fn current<'p>(p: &Planner<'p>) -> Option<&'p Arc<Experiment>> {
    let (step, index) = steps::current(p.rollout);
    step?.experiment.as_ref()?;
    let base = base_name(p, index?)?;
    let of_step = |e: &&Arc<Experiment>| {
        let name = e.name_any();
        name == base
            || name
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let recorded = p
        .status()
        .canary
        .as_ref()
        .and_then(|c| c.current_experiment.as_deref());
    let experiments = &p.observed.experiments;
    if let Some(recorded) = recorded
        && let Some(found) = experiments
            .iter()
            .filter(of_step)
            .find(|e| e.name_any() == recorded)
    {
        return Some(found);
    }
    experiments.iter().filter(of_step).find(|e| {
        let status = e.status.clone().unwrap_or_default();
        e.metadata.deletion_timestamp.is_none() && !is_terminating(e, &status)
    })
}

fn base_name(p: &Planner<'_>, index: usize) -> Option<String> {
    let hash = p.sets.new_hash()?;
    Some(experiment_name(p.name(), hash, &p.revision, index))
}

fn record(p: &mut Planner<'_>, experiment: Option<&Experiment>) {
    if let Some(experiment) = experiment {
        p.new_status
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .current_experiment = Some(experiment.name_any());
    }
}

fn terminate<'e>(p: &mut Planner<'_>, experiments: impl Iterator<Item = &'e Arc<Experiment>>) {
    for experiment in experiments {
        let status = experiment.status.clone().unwrap_or_default();
        if experiment.spec.terminate == Some(true) || phase(&status).completed() {
            continue;
        }
        p.plan.experiments.push(ExperimentChange::Terminate {
            name: experiment.name_any(),
        });
    }
}

/// Deletes finished Experiments whose revision's ReplicaSet is gone, and finished ones
/// beyond five successful and five unsuccessful (newest kept).
fn delete_old(p: &mut Planner<'_>, others: &[Arc<Experiment>]) {
    let live: Vec<&str> = p
        .sets
        .all
        .iter()
        .filter(|rs| !rs.is_deleting())
        .map(|rs| rs.pod_hash())
        .collect();
    let mut finished: Vec<&Arc<Experiment>> = others
        .iter()
        .filter(|e| e.metadata.deletion_timestamp.is_none())
        .filter(|e| phase(&e.status.clone().unwrap_or_default()).completed())
        .collect();
    finished.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let (mut successful, mut unsuccessful) = (0, 0);
    for experiment in finished {
        let hash = experiment.labels().get(POD_TEMPLATE_HASH_LABEL);
        let revision_gone = hash.is_none_or(|h| !live.contains(&h.as_str()));
        let kept =
            if phase(&experiment.status.clone().unwrap_or_default()) == AnalysisPhase::Successful {
                successful += 1;
                successful <= HISTORY_LIMIT
            } else {
                unsuccessful += 1;
                unsuccessful <= HISTORY_LIMIT
            };
        if revision_gone || !kept {
            p.plan.experiments.push(ExperimentChange::Delete {
                name: experiment.name_any(),
            });
        }
    }
}

/// Plans the step's Experiment; `None` while the ReplicaSets it copies do not exist yet.
fn create(
    p: &mut Planner<'_>,
    step: &RolloutExperimentStep,
    index: usize,
) -> Result<Option<Arc<Experiment>>, String> {
    let (Some(stable), Some(canary)) = (p.sets.stable.clone(), p.sets.new.clone()) else {
        return Ok(None);
    };
    let Some(base) = base_name(p, index) else {
        return Ok(None);
    };
    // A name already taken (an earlier attempt, aborted and retried) moves to `-1`, `-2`….
    let taken: Vec<String> = p
        .observed
        .experiments
        .iter()
        .map(|e| e.name_any())
        .collect();
    let name = std::iter::once(base.clone())
        .chain((1..).map(|n| format!("{base}-{n}")))
        .find(|n| !taken.contains(n))
        .unwrap_or(base);

    let mut templates = Vec::with_capacity(step.templates.len());
    for (i, template) in step.templates.iter().enumerate() {
        let rs = match template.spec_ref.as_str() {
            "canary" => &canary,
            "stable" => &stable,
            other => {
                return Err(format!(
                    "spec.strategy.canary.steps[{index}].experiment.templates[{i}].specRef is {other:?}: must be canary or stable"
                ));
            }
        };
        let spec = rs.spec.clone().unwrap_or_default();
        let mut pod = spec.template.unwrap_or_default();
        let mut selector = template.selector.clone().unwrap_or(spec.selector);
        let metadata = template.metadata.clone().unwrap_or_default();
        for (k, v) in metadata.labels.unwrap_or_default() {
            pod.metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(k, v);
        }
        for (k, v) in metadata.annotations.unwrap_or_default() {
            pod.metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert(k, v);
        }
        let service =
            (template.weight.is_some() || template.service.is_some()).then(|| TemplateService {
                name: template
                    .service
                    .as_ref()
                    .and_then(|s| s.name.clone())
                    .filter(|n| !n.is_empty()),
            });
        templates.push(ExperimentTemplate {
            name: template.name.clone(),
            replicas: template.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: pod,
            service,
        });
    }

    let mut analyses = Vec::new();
    for analysis in step.analyses.iter().flatten() {
        let args: Vec<Argument> =
            rollout_arguments(p, analysis.args.as_deref().unwrap_or_default())?;
        analyses.push(ExperimentAnalysisTemplateRef {
            name: analysis.name.clone(),
            template_name: analysis.template_name.clone(),
            cluster_scope: analysis.cluster_scope,
            args: Some(args).filter(|a| !a.is_empty()),
            required_for_completion: analysis.required_for_completion,
        });
    }

    let rollout = p.rollout;
    let mut labels = BTreeMap::from([(
        POD_TEMPLATE_HASH_LABEL.to_string(),
        canary.pod_hash().to_string(),
    )]);
    if let Some(instance) = &p.observed.instance_id {
        labels.insert(INSTANCE_ID_LABEL.into(), instance.clone());
    }
    let experiment = Experiment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                p.revision.clone(),
            )])),
            owner_references: rollout.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: ExperimentSpec {
            templates,
            duration: step.duration.clone(),
            progress_deadline_seconds: rollout.spec.progress_deadline_seconds,
            analyses: Some(analyses).filter(|a| !a.is_empty()),
            scale_down_delay_seconds: step.scale_down_delay_seconds,
            dry_run: step.dry_run.clone(),
            analysis_run_metadata: step.analysis_run_metadata.clone(),
            ..Default::default()
        },
        status: None,
    };
    p.event("ExperimentCreated", format!("Created Experiment '{name}'"));
    p.plan
        .experiments
        .push(ExperimentChange::Create(Box::new(experiment.clone())));
    Ok(Some(Arc::new(experiment)))
}

/// Carries out the Experiment writes of a Rollout's plan; returns how many were made.
pub async fn apply(
    client: &Client,
    namespace: &str,
    changes: &[ExperimentChange],
) -> Result<usize, ApplyError> {
    let api: Api<Experiment> = Api::namespaced(client.clone(), namespace);
    let error = |action: &'static str, name: &str| {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        move |source| ApplyError::Api {
            action,
            kind: "Experiment",
            namespace,
            name,
            source,
        }
    };
    let mut writes = 0;
    for change in changes {
        let result = match change {
            ExperimentChange::Create(experiment) => {
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    dry_run: false,
                };
                match api.create(&params, experiment).await {
                    // Created by an earlier pass whose status write was lost: the next pass
                    // finds it in the cache.
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    other => other
                        .map(|_| ())
                        .map_err(error("creating", &experiment.name_any())),
                }
            }
            ExperimentChange::Terminate { name } => {
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                let patch = json!({"spec": {"terminate": true}});
                match api.patch(name, &params, &Patch::Merge(&patch)).await {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    other => other.map(|_| ()).map_err(error("terminating", name)),
                }
            }
            ExperimentChange::Delete { name } => {
                match api.delete(name, &DeleteParams::default()).await {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    other => other.map(|_| ()).map_err(error("deleting", name)),
                }
            }
        };
        result?;
        writes += 1;
    }
    Ok(writes)
}
