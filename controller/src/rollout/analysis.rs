//! AnalysisRuns of a Rollout: which runs are current (named in the status), when to create
//! one, what a run's verdict does to the Rollout (Inconclusive pauses, Failed or Error
//! aborts), terminating runs no longer needed and deleting old ones beyond the history
//! limits. The run's spec is built by the analysis crate from the templates the controller
//! gathered ([`ramp_analysis::build`]); the Rollout's own argument forms
//! (`podTemplateHashValue`, `fieldRef`) are resolved here into plain values.
//!
//! Shared by the strategies: the canary uses step and background runs, blue-green
//! pre- and post-promotion runs, through the same helpers.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use ramp_analysis::api::{AnalysisPhase, AnalysisRunSpec, Argument};
use ramp_analysis::args::field_path_value;
use ramp_analysis::build::Templates;

use super::names::{
    INSTANCE_ID_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_TYPE_LABEL,
    SUPERSEDED_ANNOTATION, analysis_run_name,
};
use super::observe::ReplicaSetExt;
use super::pause::{BLUE_GREEN_PAUSE, pause_condition};
use super::plan::{AnalysisRunChange, Planner};
use crate::api::{
    AnalysisRun, AnalysisRunArgument, RolloutAnalysis, RolloutAnalysisRunStatus, RolloutStatus,
};

/// What an analysis of a Rollout is for; keys the templates gathered for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnalysisUse {
    /// The `analysis` step at this index.
    Step(usize),
    Background,
    PrePromotion,
    PostPromotion,
}

/// The templates gathered for one analysis use, or why they could not be.
pub type GatheredTemplates = Result<Arc<Templates>, String>;

/// The runs named in the Rollout's status, and the rest of its runs.
#[derive(Clone, Debug, Default)]
pub struct Runs {
    pub step: Option<Arc<AnalysisRun>>,
    pub background: Option<Arc<AnalysisRun>>,
    pub pre_promotion: Option<Arc<AnalysisRun>>,
    pub post_promotion: Option<Arc<AnalysisRun>>,
    pub others: Vec<Arc<AnalysisRun>>,
}

impl Runs {
    /// Sorts a Rollout's runs by the names its status records.
    pub fn sort(runs: &[Arc<AnalysisRun>], status: &RolloutStatus) -> Runs {
        let name = |s: Option<&RolloutAnalysisRunStatus>| s.map(|s| s.name.clone());
        let canary = status.canary.as_ref();
        let blue_green = status.blue_green.as_ref();
        let step = name(canary.and_then(|c| c.current_step_analysis_run_status.as_ref()));
        let background =
            name(canary.and_then(|c| c.current_background_analysis_run_status.as_ref()));
        let pre = name(blue_green.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()));
        let post = name(blue_green.and_then(|b| b.post_promotion_analysis_run_status.as_ref()));
        let mut sorted = Runs::default();
        for run in runs {
            let run_name = Some(run.name_any());
            if run_name == step {
                sorted.step = Some(run.clone());
            } else if run_name == background {
                sorted.background = Some(run.clone());
            } else if run_name == pre {
                sorted.pre_promotion = Some(run.clone());
            } else if run_name == post {
                sorted.post_promotion = Some(run.clone());
            } else {
                sorted.others.push(run.clone());
            }
        }
        sorted
    }

    pub fn current(&self) -> impl Iterator<Item = &Arc<AnalysisRun>> {
        [
            &self.step,
            &self.background,
            &self.pre_promotion,
            &self.post_promotion,
        ]
        .into_iter()
        .flatten()
    }
}

/// The phase of a run (`Pending` until its runner writes one).
pub fn phase(run: &AnalysisRun) -> AnalysisPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

/// The entry the Rollout's status keeps for a current run.
pub fn run_status(run: &AnalysisRun) -> RolloutAnalysisRunStatus {
    RolloutAnalysisRunStatus {
        name: run.name_any(),
        status: phase(run),
        message: run
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|m| !m.is_empty()),
    }
}

/// Whether a new run must replace `current` (Argo's `needsNewAnalysisRun`): there is none,
/// or the Rollout was resumed after an inconclusive run, or it is being retried after an
/// abort.
pub fn needs_new_run(current: Option<&AnalysisRun>, status: &RolloutStatus) -> bool {
    let Some(current) = current else { return true };
    if status.controller_pause == Some(true) && pause_condition(status, BLUE_GREEN_PAUSE).is_none()
    {
        return phase(current) == AnalysisPhase::Inconclusive;
    }
    status.aborted_at.is_some()
}

/// The runs of an aborted attempt that is being retried (the abort cleared while `abortedAt`
/// is still set): completed runs created by the time of the abort and not yet marked
/// [`SUPERSEDED_ANNOTATION`]. They are marked before the retry's first runs are created, so a
/// run found under a planned name later, long after `abortedAt` is cleared, is still known
/// for an earlier attempt's.
pub fn retried_runs(runs: &[Arc<AnalysisRun>], status: &RolloutStatus) -> Vec<String> {
    let Some(aborted_at) = status
        .aborted_at
        .as_ref()
        .filter(|_| status.abort != Some(true))
    else {
        return Vec::new();
    };
    runs.iter()
        .filter(|run| phase(run).completed())
        .filter(|run| !run.annotations().contains_key(SUPERSEDED_ANNOTATION))
        .filter(|run| {
            run.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|created| created.0 <= aborted_at.0)
        })
        .map(|run| run.name_any())
        .collect()
}

/// Whether `run` belongs to an aborted attempt (see [`retried_runs`]).
pub fn superseded(run: &AnalysisRun) -> bool {
    run.annotations().contains_key(SUPERSEDED_ANNOTATION)
}

/// Terminates runs that are still measuring.
pub fn terminate(p: &mut Planner<'_>, runs: &[&Arc<AnalysisRun>]) {
    for run in runs {
        let terminated = run.spec.terminate == Some(true);
        if terminated || phase(run).completed() {
            continue;
        }
        let name = run.name_any();
        if !p
            .plan
            .analysis_runs
            .iter()
            .any(|c| matches!(c, AnalysisRunChange::Terminate { name: n } if *n == name))
        {
            p.plan
                .analysis_runs
                .push(AnalysisRunChange::Terminate { name });
        }
    }
}

/// Deletes finished runs beyond `successfulRunHistoryLimit`/`unsuccessfulRunHistoryLimit`
/// (default 5 each, newest kept) and runs whose revision is gone.
pub fn delete_old_runs(p: &mut Planner<'_>, others: &[Arc<AnalysisRun>]) {
    let limits = p.rollout.spec.analysis.as_ref();
    let keep_successful = limits
        .and_then(|a| a.successful_run_history_limit)
        .unwrap_or(5);
    let keep_unsuccessful = limits
        .and_then(|a| a.unsuccessful_run_history_limit)
        .unwrap_or(5);
    let live_hashes: BTreeMap<&str, bool> = p
        .sets
        .all
        .iter()
        .map(|rs| (rs.pod_hash(), rs.is_deleting()))
        .collect();
    let mut runs: Vec<&Arc<AnalysisRun>> = others.iter().collect();
    runs.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let (mut successful, mut unsuccessful) = (0, 0);
    let mut doomed = Vec::new();
    for run in runs {
        let hash = run
            .labels()
            .get(POD_TEMPLATE_HASH_LABEL)
            .map(String::as_str);
        let revision_gone = match hash {
            None => true,
            Some(hash) => live_hashes.get(hash).is_none_or(|deleting| *deleting),
        };
        if revision_gone {
            doomed.push(run.name_any());
            continue;
        }
        match phase(run) {
            AnalysisPhase::Successful => {
                successful += 1;
                if successful > keep_successful {
                    doomed.push(run.name_any());
                }
            }
            AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive => {
                unsuccessful += 1;
                if unsuccessful > keep_unsuccessful {
                    doomed.push(run.name_any());
                }
            }
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
    }
    for name in doomed {
        if !p
            .plan
            .analysis_runs
            .iter()
            .any(|c| matches!(c, AnalysisRunChange::Delete { name: n } if *n == name))
        {
            p.plan
                .analysis_runs
                .push(AnalysisRunChange::Delete { name });
        }
    }
}

/// Deletes the runs of a revision whose ReplicaSet is being deleted.
pub fn delete_runs_of_revision(p: &mut Planner<'_>, hash: &str) {
    let doomed: Vec<String> = p
        .observed
        .analysis_runs
        .iter()
        .filter(|run| {
            run.labels()
                .get(POD_TEMPLATE_HASH_LABEL)
                .map(String::as_str)
                == Some(hash)
        })
        .filter(|run| run.metadata.deletion_timestamp.is_none())
        .map(|run| run.name_any())
        .collect();
    for name in doomed {
        p.plan
            .analysis_runs
            .push(AnalysisRunChange::Delete { name });
    }
}

/// Emits Argo's `AnalysisRun<Phase>` Event when a current run changed phase.
pub fn phase_change_event(
    p: &mut Planner<'_>,
    previous: Option<&RolloutAnalysisRunStatus>,
    run: Option<&AnalysisRun>,
    kind: &str,
) {
    let Some(run) = run else { return };
    let Some(current) = run.status.as_ref().and_then(|s| s.phase) else {
        return;
    };
    let changed = match previous {
        None => true,
        Some(previous) => previous.name == run.name_any() && previous.status != current,
    };
    if !changed {
        return;
    }
    let before = previous.map_or_else(|| "NoPreviousStatus".to_string(), |p| p.status.to_string());
    let message = format!(
        "{kind} Analysis Run '{}' Status New: '{current}' Previous: '{before}'",
        run.name_any()
    );
    let reason = format!("AnalysisRun{current}");
    if matches!(current, AnalysisPhase::Failed | AnalysisPhase::Error) {
        p.warning(&reason, message);
    } else {
        p.event(&reason, message);
    }
}

/// Plans a new run of `analysis` for the new ReplicaSet and returns it as it will be
/// created. `infix` completes the name (step index, `pre`, `post`); `labels` mark its use.
pub fn create_run(
    p: &mut Planner<'_>,
    analysis: &RolloutAnalysis,
    analysis_use: AnalysisUse,
    infix: Option<&str>,
    mut labels: BTreeMap<String, String>,
) -> Result<Arc<AnalysisRun>, String> {
    let rollout = p.rollout;
    let Some(new) = p.sets.new.clone() else {
        return Err("the new ReplicaSet does not exist yet".into());
    };
    let hash = new.pod_hash().to_string();
    if hash.is_empty() {
        return Err(format!(
            "Latest ReplicaSet '{}' has no pod hash in the labels",
            new.name_any()
        ));
    }
    let args = rollout_arguments(p, analysis.args.as_deref().unwrap_or_default())?;
    let templates = match p.observed.analysis_templates.get(&analysis_use) {
        Some(Ok(templates)) => templates.clone(),
        Some(Err(reason)) => return Err(reason.clone()),
        None => {
            return Err(format!(
                "the analysis templates of {analysis_use:?} were not gathered"
            ));
        }
    };
    let spec: AnalysisRunSpec = templates
        .run_spec(
            args,
            analysis.dry_run.clone().unwrap_or_default(),
            analysis.measurement_retention.clone().unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;

    if let Some(instance) = &p.observed.instance_id {
        labels.insert(INSTANCE_ID_LABEL.into(), instance.clone());
    }
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let run_metadata = analysis.analysis_run_metadata.as_ref();
    for (k, v) in run_metadata
        .and_then(|m| m.labels.as_ref())
        .into_iter()
        .flatten()
    {
        labels.insert(k.clone(), v.clone());
    }
    let selector_labels = rollout
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref());
    for (k, v) in selector_labels.into_iter().flatten() {
        labels.insert(k.clone(), v.clone());
    }
    let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_string(), p.revision.clone())]);
    for (k, v) in run_metadata
        .and_then(|m| m.annotations.as_ref())
        .into_iter()
        .flatten()
    {
        annotations.insert(k.clone(), v.clone());
    }
    let run = AnalysisRun {
        metadata: ObjectMeta {
            name: Some(analysis_run_name(
                &rollout.name_any(),
                &hash,
                &p.revision,
                infix,
            )),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: rollout.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec,
        status: None,
    };
    p.plan
        .analysis_runs
        .push(AnalysisRunChange::Create(Box::new(run.clone())));
    Ok(Arc::new(run))
}

/// A Rollout's analysis arguments as plain values: `value` as is, `podTemplateHashValue`
/// as the stable or latest pod-template hash, `fieldRef` read off the Rollout.
pub fn rollout_arguments(
    p: &Planner<'_>,
    args: &[AnalysisRunArgument],
) -> Result<Vec<Argument>, String> {
    let mut rollout_json = None;
    let mut resolved = Vec::with_capacity(args.len());
    for arg in args {
        let mut value = arg.value.clone();
        if let Some(from) = &arg.value_from {
            if let Some(which) = from.pod_template_hash_value.as_deref() {
                value = Some(match which {
                    "Latest" => p.sets.new_hash().unwrap_or_default().to_string(),
                    "Stable" => p.sets.stable_hash().unwrap_or_default().to_string(),
                    other => {
                        return Err(format!(
                            "argument {:?}: podTemplateHashValue {other:?} is neither Stable nor Latest",
                            arg.name
                        ));
                    }
                });
            } else if let Some(field) = &from.field_ref {
                let json = match &rollout_json {
                    Some(json) => json,
                    None => rollout_json
                        .insert(serde_json::to_value(p.rollout).map_err(|e| e.to_string())?),
                };
                value = Some(
                    field_path_value(json, &field.field_path)
                        .map_err(|e| format!("argument {:?}: {e}", arg.name))?,
                );
            }
        }
        resolved.push(Argument {
            name: arg.name.clone(),
            value: Some(value.unwrap_or_default()),
            value_from: None,
        });
    }
    Ok(resolved)
}

/// The `rollout-type` label set of a run.
pub fn type_labels(kind: &str, extra: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(ROLLOUT_TYPE_LABEL.to_string(), kind.to_string())]);
    for (k, v) in extra {
        labels.insert((*k).to_string(), v.clone());
    }
    labels
}
