//! The entry of planning: a Rollout is validated (its spec, then the objects it names), an
//! invalid one gets an `InvalidSpec` condition and nothing else, a valid one is planned by
//! its strategy. Also the pause bookkeeping every strategy starts with.
//!
//! ```text
//!   Observed ──▶ validate ──invalid──▶ InvalidSpec condition, look again in 20 s
//!                   │valid
//!                   ▼
//!              Planner ──▶ canary::plan or bluegreen::plan ──▶ Plan
//! ```

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::analysis::AnalysisUse;
use super::conditions::{self, INVALID_SPEC, PAUSED, PROGRESSING};
use super::names::{MANAGED_BY_ANNOTATION, REVISION_ANNOTATION};
use super::observe::Observed;
use super::pause::PauseContext;
use super::plan::{Plan, Planner};
use super::{bluegreen, canary, replicasets, status, steps};
use crate::api::{CanaryStatus, RolloutCondition, RolloutStatus};
use crate::validation::{FieldError, validate_rollout};

/// How soon an invalid Rollout is looked at again: the fault may be timing (a Rollout
/// applied before its Service), and watches do not cover every reference.
const INVALID_SPEC_RECHECK: Duration = Duration::from_secs(20);

/// Plans one reconciliation of a Rollout.
pub fn plan(observed: &Observed, now: Timestamp) -> Plan {
    let rollout = observed.rollout.as_ref();
    if rollout.metadata.deletion_timestamp.is_some() {
        return Plan::default();
    }
    let mut errors = validate_rollout(rollout);
    if errors.is_empty() {
        errors = reference_errors(observed);
    }
    let blue_green = rollout
        .spec
        .strategy
        .as_ref()
        .is_some_and(|s| s.canary.is_none() && s.blue_green.is_some());
    let template = observed.template();
    if errors.is_empty() && template.is_none() {
        errors.push(FieldError {
            path: "spec.template".into(),
            message: "required: the Rollout has no pod template".into(),
        });
    }
    let (Some(template), true) = (template, errors.is_empty()) else {
        return invalid(observed, &errors, now);
    };

    let previous = rollout.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    conditions::remove(&mut conditions, INVALID_SPEC);
    let mut pause = PauseContext::default();
    let fully_promoted = previous.stable_rs.as_deref().unwrap_or("")
        == previous.current_pod_hash.as_deref().unwrap_or("");
    if fully_promoted && previous.abort == Some(true) {
        // A fully promoted Rollout has nothing to abort.
        pause.remove_abort();
    }
    let new_status = RolloutStatus {
        restarted_at: previous.restarted_at.clone(),
        alb: previous.alb.clone(),
        albs: previous.albs.clone(),
        conditions: Some(conditions),
        canary: Some(CanaryStatus {
            weights: previous.canary.as_ref().and_then(|c| c.weights.clone()),
            ..Default::default()
        }),
        blue_green: Some(Default::default()),
        ..Default::default()
    };
    let mut planner = Planner {
        observed,
        rollout,
        template,
        now,
        sets: replicasets::classify(&observed.replica_sets, template, &previous),
        pause,
        new_status,
        revision: rollout
            .annotations()
            .get(REVISION_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        plan: Plan::default(),
    };
    let planned = if blue_green {
        bluegreen::plan(&mut planner)
    } else {
        canary::plan(&mut planner)
    };
    if let Err(reason) = planned {
        planner.plan.status = None;
        planner.warning("ReconcileError", reason.clone());
        planner.plan.error = Some(reason);
    }
    planner.plan
}

/// The plan of an invalid Rollout: the `InvalidSpec` condition, nothing scaled.
fn invalid(observed: &Observed, errors: &[FieldError], now: Timestamp) -> Plan {
    let rollout = observed.rollout.as_ref();
    let previous = rollout.status.clone().unwrap_or_default();
    let message = errors
        .first()
        .map(FieldError::to_string)
        .unwrap_or_default();
    let generation = rollout.metadata.generation.unwrap_or(0);
    let new = status::invalid_spec(
        &previous,
        &rollout.name_any(),
        generation,
        &message,
        &rollout.spec,
        now,
    );
    let mut plan = Plan {
        status: Some(new),
        requeue_after: Some(INVALID_SPEC_RECHECK),
        ..Default::default()
    };
    let changed = conditions::get(
        previous.conditions.as_deref().unwrap_or_default(),
        INVALID_SPEC,
    )
    .is_none_or(|c| !c.message.ends_with(&message));
    if changed {
        plan.events.push(super::plan::PlannedEvent {
            warning: true,
            reason: conditions::INVALID_SPEC_REASON.into(),
            message: format!("The Rollout {:?} is invalid: {message}", rollout.name_any()),
        });
    }
    plan
}

/// Problems with the objects a valid spec names: missing Services, Services another
/// Rollout manages, missing analysis templates, a missing `workloadRef`.
pub fn reference_errors(observed: &Observed) -> Vec<FieldError> {
    let rollout = observed.rollout.as_ref();
    let name = rollout.name_any();
    let mut errors = Vec::new();
    let strategy = rollout.spec.strategy.as_ref();
    let mut services = Vec::new();
    if let Some(canary) = steps::canary(rollout) {
        services.push((
            "spec.strategy.canary.stableService",
            canary.stable_service.as_deref(),
        ));
        services.push((
            "spec.strategy.canary.canaryService",
            canary.canary_service.as_deref(),
        ));
    } else if let Some(blue_green) = strategy.and_then(|s| s.blue_green.as_ref()) {
        services.push((
            "spec.strategy.blueGreen.activeService",
            Some(blue_green.active_service.as_str()),
        ));
        services.push((
            "spec.strategy.blueGreen.previewService",
            blue_green.preview_service.as_deref(),
        ));
    }
    for (path, service) in services {
        let Some(service) = service.filter(|s| !s.is_empty()) else {
            continue;
        };
        match observed.services.get(service) {
            None => errors.push(FieldError {
                path: path.into(),
                message: format!("Invalid value: {service:?}: service {service:?} not found"),
            }),
            Some(found) => {
                let manager = found.annotations().get(MANAGED_BY_ANNOTATION);
                if manager.is_some_and(|m| !m.is_empty() && *m != name) {
                    errors.push(FieldError {
                        path: path.into(),
                        message: format!("Invalid value: {service:?}: Service {service:?} is managed by another Rollout"),
                    });
                }
            }
        }
    }
    for (analysis_use, templates) in &observed.analysis_templates {
        if let Err(reason) = templates {
            let path = match analysis_use {
                AnalysisUse::Step(index) => {
                    format!("spec.strategy.canary.steps[{index}].analysis.templates")
                }
                AnalysisUse::Background => "spec.strategy.canary.analysis.templates".into(),
                AnalysisUse::PrePromotion => {
                    "spec.strategy.blueGreen.prePromotionAnalysis.templates".into()
                }
                AnalysisUse::PostPromotion => {
                    "spec.strategy.blueGreen.postPromotionAnalysis.templates".into()
                }
            };
            errors.push(FieldError {
                path,
                message: reason.clone(),
            });
        }
    }
    if let Some(workload) = &rollout.spec.workload_ref
        && observed.workload.is_none()
    {
        let target = workload.name.as_deref().unwrap_or_default();
        errors.push(FieldError {
            path: "spec.workloadRef.name".into(),
            message: format!(
                "Invalid value: {target:?}: {} {target:?} not found",
                workload
                    .kind
                    .as_deref()
                    .unwrap_or("Deployment")
                    .to_lowercase()
            ),
        });
    }
    errors
}

/// Argo's `checkPausedConditions`: the Progressing and Paused conditions follow pauses and
/// retries. Run on the previous status at the start of a pass.
pub fn paused_conditions(p: &mut Planner<'_>) {
    let updates = paused_condition_updates(p.status(), p.rollout.spec.paused == Some(true), p.now);
    let list = p.new_status.conditions.get_or_insert_with(Vec::new);
    for update in updates {
        conditions::set(list, update);
    }
}

/// The same rules on the status a pass is about to write, after its pause decisions: a pass
/// that pauses (or resumes) writes the matching conditions with it, so the status it leaves
/// is final and a later pass (or a restarted controller) finds nothing to change.
pub fn settle_paused_conditions(spec_paused: bool, new: &mut RolloutStatus, now: Timestamp) {
    let updates = paused_condition_updates(new, spec_paused, now);
    let list = new.conditions.get_or_insert_with(Vec::new);
    for update in updates {
        conditions::set(list, update);
    }
}

fn paused_condition_updates(
    status: &RolloutStatus,
    spec_paused: bool,
    now: Timestamp,
) -> Vec<RolloutCondition> {
    use conditions::{
        FALSE, ROLLOUT_ABORTED_REASON, ROLLOUT_PAUSED_MESSAGE, ROLLOUT_PAUSED_REASON, TRUE, UNKNOWN,
    };
    let list = status.conditions.as_deref().unwrap_or_default();
    let progressing = conditions::get(list, PROGRESSING);
    let progressing_paused = progressing.is_some_and(|c| c.reason == ROLLOUT_PAUSED_REASON);
    let is_paused = status
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || spec_paused;
    let abort_condition = progressing.is_some_and(|c| c.reason == ROLLOUT_ABORTED_REASON);
    let paused_true = conditions::get(list, PAUSED).is_some_and(|c| c.status == TRUE);
    let mut updates = Vec::new();
    if is_paused != progressing_paused && !abort_condition {
        updates.push(if is_paused {
            conditions::new_condition(
                PROGRESSING,
                UNKNOWN,
                ROLLOUT_PAUSED_REASON,
                ROLLOUT_PAUSED_MESSAGE,
                now,
            )
        } else {
            conditions::new_condition(
                PROGRESSING,
                UNKNOWN,
                conditions::ROLLOUT_RESUMED_REASON,
                conditions::ROLLOUT_RESUMED_MESSAGE,
                now,
            )
        });
    }
    if status.abort != Some(true) && abort_condition {
        updates.push(conditions::new_condition(
            PROGRESSING,
            UNKNOWN,
            conditions::ROLLOUT_RETRY_REASON,
            conditions::ROLLOUT_RETRY_MESSAGE,
            now,
        ));
    }
    if is_paused != paused_true && !abort_condition {
        let status = if is_paused { TRUE } else { FALSE };
        updates.push(conditions::new_condition(
            PAUSED,
            status,
            ROLLOUT_PAUSED_REASON,
            ROLLOUT_PAUSED_MESSAGE,
            now,
        ));
    }
    updates
}
