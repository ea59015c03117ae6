//! The blue-green strategy (Argo's `rolloutBlueGreen`): the new revision comes up beside the
//! active one behind the preview Service, and takes the active Service over once it is fully
//! available, its pre-promotion analysis passed and its pause (if any) is over. The old
//! revision stays up for `scaleDownDelaySeconds`, so going back is one selector switch.
//!
//! ```text
//!  create the new ReplicaSet · point the preview Service at it
//!  template changed? ──yes──▶ reset the status (pauses, abort, analysis, checkpoint)
//!        │no
//!  restart pods · clean up old revisions
//!  analysis verdicts (pre-promotion gates the switch; a failure aborts *now*)
//!  scale: active to full size · new to full size or previewReplicaCount ·
//!         old revisions down after scaleDownDelaySeconds · the aborted one after
//!         abortScaleDownDelaySeconds
//!  BlueGreenPause · active Service: to the new ReplicaSet when promoted, back to stable
//!         on abort, and only ever onto a fully available ReplicaSet
//!  activeMetadata / previewMetadata on the ReplicaSets' pod templates and running pods
//!  promotion (stableRS) · status
//! ```
//!
//! Like the canary, a failed analysis acts in the pass that sees it: a failed
//! post-promotion run moves the active Service back to the stable ReplicaSet in the same
//! reconciliation.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::SignedDuration;
use kube::ResourceExt;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun};

use super::analysis::{self, AnalysisUse, Runs};
use super::conditions::ROLLOUT_COMPLETED_REASON;
use super::hash::pod_template_hash;
use super::names::{ROLLOUT_TYPE_POST_PROMOTION, ROLLOUT_TYPE_PRE_PROMOTION};
use super::observe::{ReplicaSetExt, ServiceExt};
use super::pause::{BLUE_GREEN_PAUSE, INCONCLUSIVE_ANALYSIS, pause_condition};
use super::plan::Planner;
use super::{ephemeral, lifecycle, replicasets, restart, selector, services, status};
use crate::api::{BlueGreenStatus, BlueGreenStrategy, RolloutStatus};

/// `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds` when not set.
const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// Plans one pass of a blue-green Rollout. `Err` carries an error that stops the pass after
/// the writes planned before it (the status is then not written).
pub fn plan(p: &mut Planner<'_>) -> Result<(), String> {
    lifecycle::paused_conditions(p);
    replicasets::sync_revision(p, false);
    if replicasets::is_scaling_event(&p.sets, p.replicas()) {
        sync_replicas_only(p);
        return Ok(());
    }
    replicasets::sync_revision(p, true);
    reconcile_preview_service(p);
    if template_changed(p) {
        sync_status(p);
        return Ok(());
    }
    restart::reconcile(p);
    replicasets::cleanup_history(p);
    let runs = Runs::sort(&p.observed.analysis_runs, p.status());
    reconcile_analysis(p, &runs)?;
    reconcile_replica_sets(p);
    reconcile_pause(p);
    reconcile_active_service(p);
    let strategy = strategy(p);
    ephemeral::reconcile(
        p,
        strategy.preview_metadata.as_ref(),
        strategy.active_metadata.as_ref(),
    );
    sync_status(p);
    Ok(())
}

fn strategy<'p>(p: &Planner<'p>) -> &'p BlueGreenStrategy {
    static DEFAULT: LazyLock<BlueGreenStrategy> = LazyLock::new(BlueGreenStrategy::default);
    match p
        .rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.blue_green.as_ref())
    {
        Some(strategy) => strategy,
        None => &DEFAULT,
    }
}

fn preview_service<'p>(p: &Planner<'p>) -> Option<&'p str> {
    strategy(p)
        .preview_service
        .as_deref()
        .filter(|s| !s.is_empty())
}

fn observed_blue_green<'p>(p: &Planner<'p>) -> &'p BlueGreenStatus {
    static EMPTY: LazyLock<BlueGreenStatus> = LazyLock::new(BlueGreenStatus::default);
    p.status().blue_green.as_ref().unwrap_or(&EMPTY)
}

/// The hash the active Service selects as the previous pass recorded it.
fn recorded_active<'p>(p: &Planner<'p>) -> &'p str {
    observed_blue_green(p)
        .active_selector
        .as_deref()
        .unwrap_or("")
}

fn scale_up_preview_check_point(p: &Planner<'_>) -> bool {
    observed_blue_green(p).scale_up_preview_check_point == Some(true)
}

/// A change of the pod template starts the update over (Argo's `CheckPodSpecChange`).
fn template_changed(p: &Planner<'_>) -> bool {
    let recorded = p.current_pod_hash();
    if recorded.is_empty() {
        return false;
    }
    let current = match p.sets.new.as_deref() {
        Some(new) => new.pod_hash().to_string(),
        None => pod_template_hash(p.template, p.status().collision_count),
    };
    recorded != current
}

/// `spec.paused` or an inconclusive analysis holds every Service where it is.
fn halted(p: &Planner<'_>) -> bool {
    p.rollout.spec.paused == Some(true)
        || pause_condition(p.status(), INCONCLUSIVE_ANALYSIS).is_some()
}

/// Every pod of the Rollout's size is in this ReplicaSet and available, and it was sized
/// for the current `spec.replicas` (Argo's `IsSaturated`).
pub fn is_saturated(replicas: i32, rs: &ReplicaSet) -> bool {
    rs.desired() == replicas
        && rs.desired_replicas_annotation() == Some(replicas)
        && rs.available() == replicas
}

/// The size of the new ReplicaSet: `previewReplicaCount` while it is only previewed, the
/// Rollout's size once promotion is under way (Argo's `NewRSNewReplicas`).
fn new_replicas(p: &Planner<'_>, new: &ReplicaSet) -> i32 {
    let replicas = p.replicas();
    let Some(preview) = strategy(p).preview_replica_count else {
        return replicas;
    };
    let recorded = recorded_active(p);
    let active = (!recorded.is_empty())
        .then(|| p.sets.by_hash(recorded))
        .flatten();
    if active.is_none_or(|active| active.name_any() == new.name_any()) {
        return replicas;
    }
    let status = p.status();
    if status.promote_full == Some(true) {
        return replicas;
    }
    if new.pod_hash() != p.current_pod_hash() {
        return preview;
    }
    let paused = p.rollout.spec.paused == Some(true)
        || status
            .pause_conditions
            .as_ref()
            .is_some_and(|c| !c.is_empty());
    if !paused && scale_up_preview_check_point(p) {
        return replicas;
    }
    preview
}

/// The new ReplicaSet is at the size it should have and all of it available (Argo's
/// `ReadyForPause`).
fn ready_for_pause(p: &Planner<'_>, new: &ReplicaSet) -> bool {
    let count = new_replicas(p, new);
    new.desired() == count && new.available() == count
}

/// The update skips the pause: a rollback to a ReplicaSet still within its scale-down
/// delay, a full promotion, a first deploy, or the new ReplicaSet already active.
fn fast_tracked(p: &Planner<'_>, new: &ReplicaSet) -> bool {
    if new.has_scale_down_deadline() || p.status().promote_full == Some(true) {
        return true;
    }
    let active = p
        .observed
        .services
        .get(&strategy(p).active_service)
        .and_then(|s| s.selected_hash().map(str::to_string));
    match active {
        None => true,
        Some(hash) => hash == new.pod_hash(),
    }
}

/// The controller pauses before the switch: auto-promotion is off, or delayed.
fn needs_controller_pause(strategy: &BlueGreenStrategy) -> bool {
    strategy.auto_promotion_enabled == Some(false)
        || strategy.auto_promotion_seconds.unwrap_or(0) > 0
}

/// Whether the pause before the switch is over: resumed by a user, `autoPromotionSeconds`
/// passed, or no pause is needed (Argo's `CompletedBlueGreenPause`).
fn completed_pause(p: &Planner<'_>) -> bool {
    if p.pause.has_added_pause() {
        return false;
    }
    let strategy = strategy(p);
    if scale_up_preview_check_point(p) || !needs_controller_pause(strategy) {
        return true;
    }
    let status = p.status();
    let condition = pause_condition(status, BLUE_GREEN_PAUSE);
    if strategy.auto_promotion_enabled == Some(false) {
        // The pause ends when a user removes it (`kubectl argo rollouts promote`).
        return status.controller_pause == Some(true) && condition.is_none();
    }
    let seconds = strategy.auto_promotion_seconds.unwrap_or(0);
    if seconds == 0 {
        return true;
    }
    condition.is_some_and(|c| {
        c.start_time
            .0
            .checked_add(SignedDuration::from_secs(i64::from(seconds)))
            .is_ok_and(|end| p.now > end)
    })
}

/// Pre-promotion analysis is not configured, or its run of this revision succeeded.
fn completed_pre_promotion(p: &Planner<'_>) -> bool {
    if strategy(p).pre_promotion_analysis.is_none() {
        return true;
    }
    p.new_status
        .blue_green
        .as_ref()
        .and_then(|b| b.pre_promotion_analysis_run_status.as_ref())
        .is_some_and(|run| run.status == AnalysisPhase::Successful)
}

/// Points a Service at `hash`, adopting it (the managed-by annotation) if needed.
fn point(p: &mut Planner<'_>, service: &str, hash: &str) {
    if hash.is_empty() {
        return;
    }
    let Some(found) = p.observed.services.get(service).cloned() else {
        return;
    };
    let current = services::selected(p, service);
    let adopted = found.managed_by().is_some_and(|m| !m.is_empty());
    if current.as_deref() == Some(hash) && adopted {
        return;
    }
    services::switch(p, service, current, hash.to_string(), !adopted);
}

/// The preview Service follows the new ReplicaSet from its creation on (Argo's
/// `reconcilePreviewService`).
fn reconcile_preview_service(p: &mut Planner<'_>) {
    let Some(preview) = preview_service(p) else {
        return;
    };
    if halted(p) {
        return;
    }
    let Some(new) = p.sets.new.clone() else {
        return;
    };
    point(p, preview, new.pod_hash());
}

/// The active Service: onto the new ReplicaSet once it is saturated and the pause and
/// pre-promotion analysis are done, back onto the stable one on abort (Argo's
/// `reconcileActiveService`). Never onto a ReplicaSet that is not fully available.
fn reconcile_active_service(p: &mut Planner<'_>) {
    if halted(p) {
        return;
    }
    let active = strategy(p).active_service.clone();
    if !p.observed.services.contains_key(&active) {
        return;
    }
    let current = services::selected(p, &active);
    let mut target = current.clone();
    if let Some(new) = p.sets.new.clone()
        && ready_for_pause(p, &new)
        && is_saturated(p.replicas(), &new)
        && (fast_tracked(p, &new) || (completed_pause(p) && completed_pre_promotion(p)))
    {
        target = Some(new.pod_hash().to_string());
    }
    if p.is_aborted() && !p.stable_rs_hash().is_empty() {
        target = Some(p.stable_rs_hash().to_string());
    }
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return;
    };
    if current.as_deref() != Some(target.as_str()) {
        let replicas = p.replicas();
        let available = p
            .sets
            .by_hash(&target)
            .is_some_and(|rs| rs.available() >= replicas && rs.available() > 0);
        if !available {
            return;
        }
    }
    point(p, &active, &target);
}

/// Argo's `reconcileBlueGreenPause`: pause before the switch when auto-promotion is off or
/// delayed, and end the pause when `autoPromotionSeconds` passed.
fn reconcile_pause(p: &mut Planner<'_>) {
    if p.is_aborted() {
        return;
    }
    let Some(new) = p.sets.new.clone() else {
        return;
    };
    if !ready_for_pause(p, &new) || halted(p) {
        return;
    }
    if fast_tracked(p, &new)
        || scale_up_preview_check_point(p)
        || !needs_controller_pause(strategy(p))
    {
        p.pause.remove_pause(BLUE_GREEN_PAUSE);
        return;
    }
    if !completed_pre_promotion(p) {
        return;
    }
    let status = p.status();
    match pause_condition(status, BLUE_GREEN_PAUSE) {
        Some(condition) => {
            if completed_pause(p) {
                p.pause.remove_pause(BLUE_GREEN_PAUSE);
                return;
            }
            let seconds = strategy(p).auto_promotion_seconds.unwrap_or(0);
            if strategy(p).auto_promotion_enabled != Some(false) && seconds > 0 {
                let end = condition
                    .start_time
                    .0
                    .checked_add(SignedDuration::from_secs(i64::from(seconds)))
                    .unwrap_or(condition.start_time.0);
                // Just past the end, so the pass that wakes up finds the pause over.
                let wake = end
                    .checked_add(SignedDuration::from_millis(1))
                    .unwrap_or(end);
                p.requeue_at(wake);
            }
        }
        None => {
            // Paused before and resumed by a user: `controllerPause` stays until the switch.
            if status.controller_pause != Some(true) {
                p.pause.add_pause(BLUE_GREEN_PAUSE);
            }
        }
    }
}

/// Analysis verdicts and the runs to create or stop (Argo's `reconcileAnalysisRuns` for
/// blue-green).
fn reconcile_analysis(p: &mut Planner<'_>, runs: &Runs) -> Result<(), String> {
    let new_has_deadline = p
        .sets
        .new
        .as_ref()
        .is_some_and(|rs| rs.has_scale_down_deadline());
    if p.is_aborted()
        || p.status().promote_full == Some(true)
        || new_has_deadline
        || p.stable_rs_hash().is_empty()
    {
        // Outside an abort (a retry whose preview was scaled down, a rollback, a full
        // promotion) a failed run is forgotten, so that the next update of this revision
        // starts a fresh one rather than aborting again on the old verdict.
        let aborted = p.is_aborted();
        let keep = |run: &Option<Arc<AnalysisRun>>| {
            run.clone().filter(|run| aborted || !unsuccessful(run))
        };
        let (pre, post) = (keep(&runs.pre_promotion), keep(&runs.post_promotion));
        record_runs(p, pre.as_deref(), post.as_deref());
        let all: Vec<&Arc<AnalysisRun>> = runs.current().chain(runs.others.iter()).collect();
        analysis::terminate(p, &all);
        return Ok(());
    }

    let pre = pre_promotion_run(p, runs)?;
    let post = post_promotion_run(p, runs)?;
    for run in [&pre, &post].into_iter().filter(|r| r.judged) {
        if let Some(run) = &run.run {
            verdict(p, run);
        }
    }
    record_runs(p, pre.run.as_deref(), post.run.as_deref());

    let current: Vec<String> = [&pre.run, &post.run]
        .into_iter()
        .flatten()
        .map(|r| r.name_any())
        .collect();
    let others: Vec<Arc<AnalysisRun>> = runs
        .current()
        .chain(runs.others.iter())
        .filter(|r| !current.contains(&r.name_any()))
        .cloned()
        .collect();
    analysis::terminate(p, &others.iter().collect::<Vec<_>>());
    analysis::delete_old_runs(p, &others);

    let previous = observed_blue_green(p);
    let previous_pre = previous.pre_promotion_analysis_run_status.clone();
    let previous_post = previous.post_promotion_analysis_run_status.clone();
    analysis::phase_change_event(
        p,
        previous_pre.as_ref(),
        pre.run.as_deref(),
        ROLLOUT_TYPE_PRE_PROMOTION,
    );
    analysis::phase_change_event(
        p,
        previous_post.as_ref(),
        post.run.as_deref(),
        ROLLOUT_TYPE_POST_PROMOTION,
    );
    Ok(())
}

/// The current run of one analysis, and whether its verdict counts in this pass.
struct CurrentRun {
    run: Option<Arc<AnalysisRun>>,
    judged: bool,
}

impl CurrentRun {
    fn none() -> CurrentRun {
        CurrentRun {
            run: None,
            judged: false,
        }
    }
}

/// A run that is not needed now: stopped, and forgotten when it failed, so that a retried
/// update starts a fresh one rather than aborting again on the old verdict.
fn set_aside(p: &mut Planner<'_>, current: Option<Arc<AnalysisRun>>) -> CurrentRun {
    analysis::terminate(p, &current.iter().collect::<Vec<_>>());
    CurrentRun {
        run: current.filter(|run| !unsuccessful(run)),
        judged: false,
    }
}

fn unsuccessful(run: &AnalysisRun) -> bool {
    matches!(
        analysis::phase(run),
        AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
    )
}

/// Pre-promotion analysis runs while the saturated preview waits for the switch.
fn skip_pre_promotion(p: &Planner<'_>) -> bool {
    let Some(new) = p.sets.new.as_deref() else {
        return true;
    };
    let hash = new.pod_hash();
    let active = recorded_active(p);
    if hash.is_empty() || p.stable_rs_hash() == hash || active.is_empty() || active == hash {
        return true;
    }
    match strategy(p).preview_replica_count {
        Some(preview) => new.desired() != preview || new.available() != preview,
        None => !is_saturated(p.replicas(), new),
    }
}

/// Post-promotion analysis runs once the active Service selects the saturated new
/// ReplicaSet, until it becomes stable.
fn skip_post_promotion(p: &Planner<'_>) -> bool {
    let Some(new) = p.sets.new.as_deref() else {
        return true;
    };
    let hash = new.pod_hash();
    hash.is_empty()
        || p.stable_rs_hash() == hash
        || recorded_active(p) != hash
        || !is_saturated(p.replicas(), new)
}

fn pre_promotion_run(p: &mut Planner<'_>, runs: &Runs) -> Result<CurrentRun, String> {
    let current = runs.pre_promotion.clone();
    let Some(spec) = strategy(p).pre_promotion_analysis.as_ref() else {
        analysis::terminate(p, &current.iter().collect::<Vec<_>>());
        return Ok(CurrentRun::none());
    };
    if skip_pre_promotion(p) {
        return Ok(set_aside(p, current));
    }
    judged_run(p, current, spec, AnalysisUse::PrePromotion)
}

fn post_promotion_run(p: &mut Planner<'_>, runs: &Runs) -> Result<CurrentRun, String> {
    let current = runs.post_promotion.clone();
    let Some(spec) = strategy(p).post_promotion_analysis.as_ref() else {
        analysis::terminate(p, &current.iter().collect::<Vec<_>>());
        return Ok(CurrentRun::none());
    };
    if skip_post_promotion(p) {
        return Ok(set_aside(p, current));
    }
    judged_run(p, current, spec, AnalysisUse::PostPromotion)
}

/// The run whose verdict counts: the current one, or a new one when there is none (or the
/// update was retried, or resumed after an inconclusive run).
fn judged_run(
    p: &mut Planner<'_>,
    current: Option<Arc<AnalysisRun>>,
    spec: &crate::api::RolloutAnalysis,
    analysis_use: AnalysisUse,
) -> Result<CurrentRun, String> {
    if pause_condition(p.status(), INCONCLUSIVE_ANALYSIS).is_some() {
        return Ok(CurrentRun {
            run: current,
            judged: false,
        });
    }
    if analysis::needs_new_run(current.as_deref(), p.status()) {
        let (kind, infix) = match analysis_use {
            AnalysisUse::PrePromotion => (ROLLOUT_TYPE_PRE_PROMOTION, "pre"),
            _ => (ROLLOUT_TYPE_POST_PROMOTION, "post"),
        };
        let labels = analysis::type_labels(kind, &[]);
        let run = analysis::create_run(p, spec, analysis_use, Some(infix), labels)?;
        return Ok(CurrentRun {
            run: Some(run),
            judged: true,
        });
    }
    Ok(CurrentRun {
        run: current,
        judged: true,
    })
}

/// Acts on a run's verdict: Inconclusive pauses, Failed or Error aborts.
fn verdict(p: &mut Planner<'_>, run: &AnalysisRun) {
    match analysis::phase(run) {
        AnalysisPhase::Inconclusive => p.pause.add_pause(INCONCLUSIVE_ANALYSIS),
        AnalysisPhase::Failed | AnalysisPhase::Error => {
            let message = run
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default();
            p.pause.add_abort(message);
        }
        _ => {}
    }
}

/// Records the current runs in the new status.
fn record_runs(p: &mut Planner<'_>, pre: Option<&AnalysisRun>, post: Option<&AnalysisRun>) {
    let blue_green = p
        .new_status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default);
    blue_green.pre_promotion_analysis_run_status = pre.map(analysis::run_status);
    blue_green.post_promotion_analysis_run_status = post.map(analysis::run_status);
}

/// `abortScaleDownDelaySeconds` (default 30 s); `None` when 0 (the preview stays up).
fn abort_scale_down_delay(strategy: &BlueGreenStrategy) -> Option<SignedDuration> {
    match strategy
        .abort_scale_down_delay_seconds
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    {
        0 => None,
        seconds => Some(SignedDuration::from_secs(i64::from(seconds))),
    }
}

/// Whether the aborted new ReplicaSet's scale-down waits for `abortScaleDownDelaySeconds`.
fn delays_scale_down_on_abort(p: &Planner<'_>) -> bool {
    p.is_aborted() && p.sets.stable.is_some() && abort_scale_down_delay(strategy(p)).is_some()
}

/// Argo's `reconcileBlueGreenReplicaSets`: the active ReplicaSet at full size, then the new
/// one, then the others down. Returns whether anything was scaled.
fn reconcile_replica_sets(p: &mut Planner<'_>) -> bool {
    let keep_deadline = delays_scale_down_on_abort(p);
    if let Some(new) = p.sets.new.clone().filter(|_| !keep_deadline) {
        replicasets::remove_scale_down_deadline(p, &new);
    }
    if let Some(stable) = p.sets.stable.clone() {
        let same = p
            .sets
            .new
            .as_ref()
            .is_some_and(|n| n.name_any() == stable.name_any());
        if !same || keep_deadline {
            replicasets::remove_scale_down_deadline(p, &stable);
        }
    }
    let mut scaled = false;
    let active = services::selected(p, &strategy(p).active_service);
    if let Some(active) = active.and_then(|hash| p.sets.by_hash(&hash).cloned()) {
        let replicas = p.replicas();
        scaled |= replicasets::scale(p, &active, replicas, false);
    }
    if let Some(new) = p.sets.new.clone() {
        scaled |= reconcile_new(p, &new, keep_deadline);
    }
    scaled | scale_down_others(p)
}

fn reconcile_new(p: &mut Planner<'_>, new: &ReplicaSet, keep_deadline: bool) -> bool {
    let mut count = new_replicas(p, new);
    if keep_deadline {
        match new.scale_down_deadline() {
            Some(deadline) if deadline > p.now => {
                p.requeue_at(deadline);
                return false;
            }
            Some(_) => count = 0,
            None => {
                if let Some(delay) = abort_scale_down_delay(strategy(p)) {
                    // The aborted revision stays up until the stable one is whole again,
                    // then for the delay.
                    let replicas = p.replicas();
                    let stable_whole = p
                        .sets
                        .stable
                        .as_ref()
                        .is_some_and(|s| s.available() == replicas);
                    if stable_whole {
                        replicasets::add_scale_down_deadline(p, new, delay);
                        p.requeue_after(Duration::try_from(delay).unwrap_or(Duration::ZERO));
                    }
                }
                return false;
            }
        }
    }
    replicasets::scale(p, new, count, keep_deadline)
}

/// Scales down ReplicaSets that are neither new nor stable, each after its
/// `scaleDownDelaySeconds` (Argo's `scaleDownOldReplicaSetsForBlueGreen`).
fn scale_down_others(p: &mut Planner<'_>) -> bool {
    if pause_condition(p.status(), INCONCLUSIVE_ANALYSIS).is_some() {
        return false;
    }
    let strategy = strategy(p);
    if strategy.post_promotion_analysis.is_some()
        && strategy.scale_down_delay_seconds.is_none()
        && !skip_post_promotion(p)
    {
        // Without a delay, old revisions stay until post-promotion analysis passed.
        let passed = p
            .new_status
            .blue_green
            .as_ref()
            .and_then(|b| b.post_promotion_analysis_run_status.as_ref())
            .is_some_and(|run| run.status == AnalysisPhase::Successful);
        if !passed {
            return false;
        }
    }
    let mut others: Vec<Arc<ReplicaSet>> = p
        .sets
        .others
        .iter()
        .filter(|rs| rs.desired() > 0)
        .cloned()
        .collect();
    others.sort_by(|a, b| {
        b.revision()
            .unwrap_or(-1)
            .cmp(&a.revision().unwrap_or(-1))
            .then_with(|| b.created().cmp(&a.created()))
    });
    let delay = strategy
        .scale_down_delay_seconds
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS);
    let limit = strategy.scale_down_delay_revision_limit;
    let mut kept = 0;
    let mut scaled = false;
    for rs in &others {
        if is_referenced(p, rs) {
            continue;
        }
        let size = replicasets::planned_size(p, rs);
        if size == 0 {
            continue;
        }
        let desired = replicasets::scale_down_after_delay(p, rs, size, delay, limit, &mut kept);
        if desired != size {
            scaled |= replicasets::scale(p, rs, desired, false);
        }
    }
    scaled
}

/// Whether a ReplicaSet still takes traffic or is the one being rolled out: recorded in the
/// status, or selected by the active or preview Service.
fn is_referenced(p: &Planner<'_>, rs: &ReplicaSet) -> bool {
    let hash = rs.pod_hash();
    if hash.is_empty() {
        return false;
    }
    let recorded = observed_blue_green(p);
    let references = [
        p.stable_rs_hash(),
        p.current_pod_hash(),
        recorded.active_selector.as_deref().unwrap_or(""),
        recorded.preview_selector.as_deref().unwrap_or(""),
    ];
    if references.contains(&hash) {
        return true;
    }
    let strategy = strategy(p);
    [Some(strategy.active_service.as_str()), preview_service(p)]
        .into_iter()
        .flatten()
        .any(|service| services::selected(p, service).as_deref() == Some(hash))
}

/// A scaling event (HPA, `kubectl scale`): resize the ReplicaSets, touch nothing else.
fn sync_replicas_only(p: &mut Planner<'_>) {
    reconcile_replica_sets(p);
    let mut new = p.status().clone();
    let recorded = recorded_active(p);
    let active = (!recorded.is_empty())
        .then(|| p.sets.by_hash(recorded).cloned())
        .flatten();
    match active {
        Some(active) => {
            new.hpa_replicas = Some(active.actual());
            new.available_replicas = Some(active.available());
        }
        None => {
            new.hpa_replicas = Some(p.sets.all.iter().map(|rs| rs.actual()).sum());
            new.available_replicas = Some(status::available_replicas(p));
        }
    }
    let new = status::finish(p, new);
    p.plan.status = Some(new);
}

/// `status.blueGreen.scaleUpPreviewCheckPoint`: set once the preview (at
/// `previewReplicaCount`) passed its analysis and pause, so it is scaled up to full size
/// before the switch; reset by a template change or the promotion.
fn next_check_point(p: &Planner<'_>) -> bool {
    let Some(preview) = strategy(p).preview_replica_count else {
        return false;
    };
    if template_changed(p) {
        return false;
    }
    if scale_up_preview_check_point(p) {
        return true;
    }
    if !completed_pre_promotion(p) || !completed_pause(p) {
        return false;
    }
    p.sets
        .new
        .as_ref()
        .is_some_and(|new| new.available() == preview)
}

/// Why the new ReplicaSet should become stable now, if it should (Argo's
/// `shouldFullPromote` for blue-green).
fn full_promotion_reason(p: &Planner<'_>, new: &RolloutStatus) -> Option<String> {
    if p.sets.stable.is_none() {
        return Some("Initial deploy".into());
    }
    let active = new
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.as_deref())
        .unwrap_or("");
    if active.is_empty() {
        // The first revision becomes stable before the active Service can select it.
        return Some("Initial deploy".into());
    }
    if Some(active) != new.current_pod_hash.as_deref() {
        return None;
    }
    if p.status().promote_full == Some(true) {
        return Some("Full promotion requested".into());
    }
    if replicasets::rollback_within_window(p) {
        return Some("Rollback within window".into());
    }
    if p.is_aborted() {
        return None;
    }
    if strategy(p).post_promotion_analysis.is_some() {
        if let Some(rs) = p
            .sets
            .new
            .as_deref()
            .filter(|rs| rs.has_scale_down_deadline())
        {
            return Some(format!(
                "Rollback to '{}' within scaleDownDelay",
                rs.name_any()
            ));
        }
        let passed = new
            .blue_green
            .as_ref()
            .and_then(|b| b.post_promotion_analysis_run_status.as_ref())
            .is_some_and(|run| run.status == AnalysisPhase::Successful);
        if !passed {
            return None;
        }
    }
    Some("Completed blue-green update".into())
}

/// Marks the new ReplicaSet stable (Argo's `promoteStable`).
fn promote_stable(p: &mut Planner<'_>, new: &mut RolloutStatus, reason: &str) {
    p.pause.clear_pauses();
    p.pause.remove_abort();
    new.promote_full = None;
    if let Some(bg) = new.blue_green.as_mut() {
        bg.scale_up_preview_check_point = None;
    }
    if new.stable_rs != new.current_pod_hash {
        new.stable_rs = new.current_pod_hash.clone();
        let hash = new.current_pod_hash.clone().unwrap_or_default();
        let message = format!(
            "Rollout completed update to revision {} ({hash}): {reason}",
            p.revision
        );
        p.event(ROLLOUT_COMPLETED_REASON, message);
    }
}

/// Starts the update over (Argo's `resetRolloutStatus`).
fn reset(p: &mut Planner<'_>, new: &mut RolloutStatus) {
    p.pause.clear_pauses();
    p.pause.remove_abort();
    new.restarted_at = p.rollout.spec.restart_at.clone();
    new.promote_full = None;
    let bg = new.blue_green.get_or_insert_with(BlueGreenStatus::default);
    bg.pre_promotion_analysis_run_status = None;
    bg.post_promotion_analysis_run_status = None;
    bg.scale_up_preview_check_point = None;
}

/// Argo's `syncRolloutStatusBlueGreen`: selectors, promotion, counts of the active
/// ReplicaSet, conditions and phase.
fn sync_status(p: &mut Planner<'_>) {
    let mut new = status::base_status(p);
    new.stable_rs = p.status().stable_rs.clone();
    if template_changed(p) {
        reset(p, &mut new);
    }
    if p.status().promote_full == Some(true) || replicasets::rollback_within_window(p) {
        p.pause.clear_pauses();
        p.pause.remove_abort();
    }
    let preview = preview_service(p).and_then(|name| services::selected(p, name));
    let active = services::selected(p, &strategy(p).active_service);
    {
        let bg = new.blue_green.get_or_insert_with(BlueGreenStatus::default);
        bg.preview_selector = preview.filter(|h| !h.is_empty());
        bg.active_selector = active.clone().filter(|h| !h.is_empty());
    }
    match full_promotion_reason(p, &new) {
        Some(reason) => promote_stable(p, &mut new, &reason),
        None => {
            let check_point = next_check_point(p);
            let bg = new.blue_green.get_or_insert_with(BlueGreenStatus::default);
            bg.scale_up_preview_check_point = check_point.then_some(true);
        }
    }
    let active_rs = active.and_then(|hash| p.sets.by_hash(&hash).cloned());
    match &active_rs {
        Some(rs) => {
            new.hpa_replicas = Some(rs.actual());
            new.available_replicas = Some(rs.available());
            new.ready_replicas = Some(rs.ready());
            new.selector = rs
                .spec
                .as_ref()
                .map(|s| selector::format(&s.selector))
                .or_else(|| p.rollout.spec.selector.as_ref().map(selector::format));
        }
        None => {
            new.hpa_replicas = Some(p.sets.all.iter().map(|rs| rs.actual()).sum());
            new.available_replicas = Some(status::available_replicas(p));
            new.selector = p.rollout.spec.selector.as_ref().map(selector::format);
        }
    }
    let available = active_rs
        .as_deref()
        .is_some_and(|rs| is_saturated(p.replicas(), rs));
    let new = status::update_conditions(p, new, available);
    let new = status::finish(p, new);
    p.plan.status = Some(new);
}

#[cfg(test)]
mod tests;
