//! The canary strategy (Argo's `rolloutCanary`): one pass of planning moves a Rollout along
//! its steps.
//!
//! ```text
//!  template or steps changed? ──yes──▶ reset the status to step 0 (or skip to stable)
//!        │no
//!  create the new ReplicaSet · restart pods · clean up old revisions
//!  analysis verdicts (a failed run aborts *now*, before traffic is touched)
//!  Services and router weights (an abort moves traffic back to stable here)
//!  scale stable, then canary, then older ReplicaSets   (one side per pass)
//!  pause steps · step completion · promotion · status
//! ```
//!
//! A failed analysis is acted on in the same pass that sees it: Argo notices the failure in
//! one reconciliation and moves traffic in the next; Ramp moves traffic at once.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::SignedDuration;
use kube::ResourceExt;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun};

use super::analysis::{self, AnalysisUse, Runs};
use super::conditions::{
    ROLLOUT_COMPLETED_REASON, ROLLOUT_STEP_COMPLETED_REASON, SKIP_STEPS_REASON,
};
use super::hash::{pod_template_hash, step_hash};
use super::names::{ROLLOUT_TYPE_BACKGROUND, ROLLOUT_TYPE_STEP, STEP_INDEX_LABEL};
use super::observe::ReplicaSetExt;
use super::pause::{CANARY_PAUSE_STEP, INCONCLUSIVE_ANALYSIS, pause_condition};
use super::plan::Planner;
use super::replicas::{BasicCanary, Limits, Pods, RoutedCanary, basic_canary, routed_canary};
use super::{
    ephemeral, lifecycle, replicasets, restart, selector, services, status, steps, weights,
};
use crate::api::{
    CanaryStatus, CanaryStrategy, IntOrPercent, RolloutPause, RolloutStatus, TrafficWeights,
};

/// Whether analysis left the rest of the pass to run.
enum Flow {
    Continue,
    /// A run asked for a pause: reconcile traffic, then write status only.
    Paused,
    /// A run could not be created: stop after the writes planned so far.
    Halt(String),
}

/// Plans one pass of a canary Rollout. `Err` carries an error that stops the pass after the
/// writes planned before it (the status is then not written).
pub fn plan(p: &mut Planner<'_>) -> Result<(), String> {
    lifecycle::paused_conditions(p);
    replicasets::sync_revision(p, false);
    if replicasets::is_scaling_event(&p.sets, p.replicas()) {
        sync_replicas_only(p);
        return Ok(());
    }
    if template_or_steps_changed(p) {
        sync_status(p);
        return Ok(());
    }
    replicasets::sync_revision(p, true);
    restart::reconcile(p);
    replicasets::cleanup_history(p);

    let runs = Runs::sort(&p.observed.analysis_runs, p.status());
    let mut flow = reconcile_analysis(p, &runs);
    // A failed Experiment aborts in this pass too, before traffic is touched.
    match crate::experiment::step::reconcile(p) {
        Err(reason) => flow = Flow::Halt(reason),
        Ok(()) if matches!(flow, Flow::Continue) && p.pause.has_added_pause() => {
            flow = Flow::Paused;
        }
        Ok(()) => {}
    }
    reconcile_services(p);
    weights::reconcile(p);
    match flow {
        Flow::Halt(reason) => return Err(reason),
        Flow::Paused => {
            sync_status(p);
            return Ok(());
        }
        Flow::Continue => {}
    }
    let scaled = reconcile_replica_sets(p);
    let strategy = strategy(p);
    ephemeral::reconcile(
        p,
        strategy.canary_metadata.as_ref(),
        strategy.stable_metadata.as_ref(),
    );
    if scaled {
        sync_status(p);
        return Ok(());
    }
    reconcile_pause(p);
    sync_status(p);
    Ok(())
}

fn strategy<'p>(p: &Planner<'p>) -> &'p CanaryStrategy {
    static DEFAULT: LazyLock<CanaryStrategy> = LazyLock::new(CanaryStrategy::default);
    match steps::canary(p.rollout) {
        Some(strategy) => strategy,
        None => &DEFAULT,
    }
}

/// A change of the pod template or of the steps starts the rollout over (Argo's
/// `PodTemplateOrStepsChanged`).
fn template_or_steps_changed(p: &Planner<'_>) -> bool {
    let status = p.status();
    let recorded_steps = status.current_step_hash.as_deref().unwrap_or("");
    let steps_now = step_hash(steps::canary(p.rollout).and_then(|c| c.steps.as_deref()));
    if recorded_steps.is_empty() || recorded_steps != steps_now {
        return true;
    }
    let recorded_pod = status.current_pod_hash.as_deref().unwrap_or("");
    if recorded_pod.is_empty() {
        return false;
    }
    let current = match p.sets.new.as_deref() {
        Some(new) => new.pod_hash().to_string(),
        None => pod_template_hash(p.template, status.collision_count),
    };
    recorded_pod != current
}

/// A scaling event (HPA, `kubectl scale`): resize the ReplicaSets, touch nothing else.
fn sync_replicas_only(p: &mut Planner<'_>) {
    reconcile_replica_sets(p);
    let mut new = p.status().clone();
    new.available_replicas = Some(status::available_replicas(p));
    new.hpa_replicas = Some(p.sets.all.iter().map(|rs| rs.actual()).sum());
    let new = status::finish(p, new);
    p.plan.status = Some(new);
}

/// Analysis verdicts and the runs to create or stop (Argo's `reconcileAnalysisRuns`).
fn reconcile_analysis(p: &mut Planner<'_>, runs: &Runs) -> Flow {
    let aborted = p.is_aborted();
    let status = p.status();
    let rollback_to_scale_down_delay = p
        .sets
        .new
        .as_ref()
        .is_some_and(|rs| rs.has_scale_down_deadline());
    let initial_deploy = p.stable_rs_hash().is_empty();
    if aborted
        || status.promote_full == Some(true)
        || rollback_to_scale_down_delay
        || initial_deploy
    {
        record_runs(p, runs.step.as_deref(), runs.background.as_deref());
        let all: Vec<&Arc<AnalysisRun>> = runs.current().chain(runs.others.iter()).collect();
        analysis::terminate(p, &all);
        return Flow::Continue;
    }

    let step_run = match step_run(p, runs) {
        Ok(run) => run,
        Err(reason) => return Flow::Halt(reason),
    };
    let background_run = match background_run(p, runs) {
        Ok(run) => run,
        Err(reason) => return Flow::Halt(reason),
    };
    record_runs(p, step_run.as_deref(), background_run.as_deref());

    let current: Vec<String> = [&step_run, &background_run]
        .into_iter()
        .flatten()
        .map(|r| r.name_any())
        .collect();
    let others: Vec<Arc<AnalysisRun>> = runs
        .others
        .iter()
        .filter(|r| !current.contains(&r.name_any()))
        .cloned()
        .collect();
    analysis::terminate(p, &others.iter().collect::<Vec<_>>());
    analysis::delete_old_runs(p, &others);

    let previous = p.status().canary.as_ref();
    let previous_step = previous.and_then(|c| c.current_step_analysis_run_status.clone());
    let previous_background =
        previous.and_then(|c| c.current_background_analysis_run_status.clone());
    analysis::phase_change_event(
        p,
        previous_step.as_ref(),
        step_run.as_deref(),
        ROLLOUT_TYPE_STEP,
    );
    analysis::phase_change_event(
        p,
        previous_background.as_ref(),
        background_run.as_deref(),
        ROLLOUT_TYPE_BACKGROUND,
    );
    if p.pause.has_added_pause() {
        Flow::Paused
    } else {
        Flow::Continue
    }
}

/// Records the current runs in the new status (Argo's `SetCurrentAnalysisRuns`).
fn record_runs(p: &mut Planner<'_>, step: Option<&AnalysisRun>, background: Option<&AnalysisRun>) {
    let canary = p
        .new_status
        .canary
        .get_or_insert_with(CanaryStatus::default);
    if let Some(run) = step {
        canary.current_step_analysis_run_status = Some(analysis::run_status(run));
    }
    if let Some(run) = background {
        canary.current_background_analysis_run_status = Some(analysis::run_status(run));
    }
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

type RunResult = Result<Option<Arc<AnalysisRun>>, String>;

fn step_run(p: &mut Planner<'_>, runs: &Runs) -> RunResult {
    let status = p.status();
    let current = runs.step.clone();
    if status
        .pause_conditions
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || status.abort == Some(true)
    {
        return Ok(current);
    }
    let (step, index) = steps::current(p.rollout);
    let (Some(step_analysis), Some(index)) = (step.and_then(|s| s.analysis.as_ref()), index) else {
        analysis::terminate(p, &current.iter().collect::<Vec<_>>());
        return Ok(None);
    };
    if analysis::needs_new_run(current.as_deref(), status) {
        let labels =
            analysis::type_labels(ROLLOUT_TYPE_STEP, &[(STEP_INDEX_LABEL, index.to_string())]);
        let infix = index.to_string();
        let run = analysis::create_run(
            p,
            step_analysis,
            AnalysisUse::Step(index),
            Some(&infix),
            labels,
        )?;
        return Ok(Some(run));
    }
    if let Some(run) = &current {
        verdict(p, run);
    }
    Ok(current)
}

fn background_run(p: &mut Planner<'_>, runs: &Runs) -> RunResult {
    let current = runs.background.clone();
    let Some(background) = strategy(p).analysis.as_ref() else {
        analysis::terminate(p, &current.iter().collect::<Vec<_>>());
        return Ok(None);
    };
    let status = p.status();
    let before_starting_step = match (background.starting_step, steps::current(p.rollout)) {
        (Some(start), (Some(_), Some(index))) => {
            i64::try_from(index).unwrap_or(0) < i64::from(start)
        }
        _ => false,
    };
    if p.fully_promoted()
        || p.stable_rs_hash().is_empty()
        || p.current_pod_hash().is_empty()
        || before_starting_step
    {
        return Ok(None);
    }
    if pause_condition(status, INCONCLUSIVE_ANALYSIS).is_some() {
        return Ok(current);
    }
    if analysis::needs_new_run(current.as_deref(), status) {
        let labels = analysis::type_labels(ROLLOUT_TYPE_BACKGROUND, &[]);
        let run = analysis::create_run(
            p,
            &background.analysis(),
            AnalysisUse::Background,
            None,
            labels,
        )?;
        return Ok(Some(run));
    }
    if let Some(run) = &current {
        verdict(p, run);
    }
    Ok(current)
}

/// The stable and canary Services (Argo's `reconcileStableAndCanaryService`).
fn reconcile_services(p: &mut Planner<'_>) {
    let strategy = strategy(p);
    let stable = p.sets.stable.clone();
    services::ensure_targets(
        p,
        strategy.stable_service.as_deref(),
        stable.as_deref(),
        true,
    );
    if p.is_aborted() && strategy.traffic_routing.is_none() {
        // Without a router the canary Service is how traffic reaches the canary: on abort it
        // goes back to the stable pods first.
        services::ensure_targets(
            p,
            strategy.canary_service.as_deref(),
            stable.as_deref(),
            true,
        );
        return;
    }
    if dynamically_rolling_back(p).is_some() {
        return;
    }
    let new = p.sets.new.clone();
    services::ensure_targets(p, strategy.canary_service.as_deref(), new.as_deref(), true);
    // Argo's `reconcilePingAndPongService`: the ping-pong Service that is not stable follows
    // the new pods during an update; at promotion it becomes the stable one as it is.
    if let Some((_, canary)) = ping_pong_services(p).filter(|_| !p.fully_promoted()) {
        services::ensure_targets(p, Some(&canary), new.as_deref(), false);
    }
}

/// With `pingPong` and neither `stableService` nor `canaryService` (Argo's
/// `GetStableAndCanaryServices`): the `(stable, canary)` Services, by
/// `status.canary.stablePingPong`. Before the first deploy is recorded, ping is stable, as
/// that deploy makes it.
pub fn ping_pong_services(p: &Planner<'_>) -> Option<(String, String)> {
    let strategy = strategy(p);
    let ping_pong = strategy.ping_pong.as_ref()?;
    let unset = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    if !unset(&strategy.stable_service) || !unset(&strategy.canary_service) {
        return None;
    }
    let recorded = p
        .status()
        .canary
        .as_ref()
        .and_then(|c| c.stable_ping_pong.as_deref());
    let ping = (
        ping_pong.ping_service.clone(),
        ping_pong.pong_service.clone(),
    );
    match recorded {
        Some(PING) => Some(ping),
        None | Some("") if p.status().stable_rs.is_none() => Some(ping),
        _ => Some((ping.1, ping.0)),
    }
}

const PING: &str = "ping";
const PONG: &str = "pong";

/// With dynamic stable scaling, an update interrupted to go back to the stable revision
/// must shift traffic back as the stable grows: returns the hash still carrying canary
/// traffic while that is under way.
pub fn dynamically_rolling_back(p: &Planner<'_>) -> Option<String> {
    let strategy = strategy(p);
    if !p.fully_promoted()
        || strategy.traffic_routing.is_none()
        || strategy.dynamic_stable_scale != Some(true)
    {
        return None;
    }
    let weights = p.status().canary.as_ref()?.weights.as_ref()?;
    let current = weights.canary.pod_template_hash.clone().unwrap_or_default();
    let new = p.sets.new.as_ref()?;
    (current != new.pod_hash() && new.available() < p.replicas()).then_some(current)
}

fn limits(p: &Planner<'_>) -> Limits {
    let strategy = strategy(p);
    let surge = strategy.max_surge().unwrap_or(IntOrPercent::Percent(25));
    let unavailable = strategy
        .max_unavailable()
        .unwrap_or(IntOrPercent::Percent(25));
    Limits::new(surge, unavailable, p.replicas())
}

fn pods(rs: Option<&ReplicaSet>) -> Option<Pods> {
    rs.map(|rs| Pods::new(rs.desired(), rs.available()))
}

/// Desired `(canary, stable)` sizes for the observed ReplicaSets. `weights` are the router
/// weights a dynamically scaled stable is sized against.
fn desired_counts(
    p: &Planner<'_>,
    new: Option<&ReplicaSet>,
    weights: Option<&TrafficWeights>,
) -> (i32, i32) {
    let aborted = p.is_aborted();
    let (explicit, weight) = steps::canary_replicas_or_weight(p.rollout, aborted);
    let strategy = strategy(p);
    match &strategy.traffic_routing {
        None => {
            let stable = if p.sets.stable_differs() {
                pods(p.sets.stable.as_deref())
            } else {
                None
            };
            let others: i32 = p.sets.others.iter().map(|rs| rs.desired()).sum();
            basic_canary(BasicCanary {
                replicas: p.replicas(),
                weight,
                limits: limits(p),
                canary: pods(new),
                stable,
                others_desired: others,
            })
        }
        Some(routing) => routed_canary(RoutedCanary {
            replicas: p.replicas(),
            weight,
            canary_replicas: explicit,
            max_weight: routing.max_traffic_weight.unwrap_or(100),
            dynamic_stable_scale: strategy.dynamic_stable_scale == Some(true),
            min_pods_per_replica_set: strategy.min_pods_per_replica_set,
            current_weights: weights.map(|w| (w.canary.weight, w.stable.weight)),
            aborted,
        }),
    }
}

/// Whether the new and stable ReplicaSets are at their desired sizes with every canary pod
/// available (Argo's `AtDesiredReplicaCountsForCanary`).
pub fn at_desired_replica_counts(p: &Planner<'_>, weights: Option<&TrafficWeights>) -> bool {
    let new = p.sets.new.as_deref();
    let (canary, stable) = desired_counts(p, new, weights);
    let all_available = |rs: Option<&ReplicaSet>, desired: i32| {
        rs.is_some_and(|rs| rs.desired() == desired && rs.available() == desired)
    };
    let all_created = |rs: Option<&ReplicaSet>, desired: i32| {
        rs.is_some_and(|rs| rs.desired() == desired && rs.actual() == desired)
    };
    if !all_available(new, canary) {
        return false;
    }
    let strategy = strategy(p);
    let routed = strategy.traffic_routing.is_some();
    if (!routed || strategy.dynamic_stable_scale != Some(true))
        && !all_created(p.sets.stable.as_deref(), stable)
    {
        return false;
    }
    if !routed && p.sets.others.iter().map(|rs| rs.available()).sum::<i32>() != 0 {
        return false;
    }
    true
}

/// `abortScaleDownDelaySeconds` with a router (default 30 s); `None` when 0 (keep the canary).
fn abort_scale_down_delay(strategy: &CanaryStrategy) -> Option<SignedDuration> {
    strategy.traffic_routing.as_ref()?;
    match strategy.abort_scale_down_delay_seconds {
        Some(0) => None,
        Some(seconds) => Some(SignedDuration::from_secs(i64::from(seconds))),
        None => Some(SignedDuration::from_secs(30)),
    }
}

/// Whether the aborted canary's scale-down waits for `abortScaleDownDelaySeconds`.
fn delays_scale_down_on_abort(p: &Planner<'_>) -> bool {
    if !p.is_aborted() || p.sets.stable.is_none() {
        return false;
    }
    let strategy = strategy(p);
    if abort_scale_down_delay(strategy).is_none() {
        return false;
    }
    !(strategy.dynamic_stable_scale == Some(true)
        && strategy.abort_scale_down_delay_seconds.is_none())
}

/// Scales stable, then canary, then older ReplicaSets; stops at the first that changes
/// (Argo's `reconcileCanaryReplicaSets`). Returns whether anything was scaled.
fn reconcile_replica_sets(p: &mut Planner<'_>) -> bool {
    if p.rollout.spec.paused == Some(true)
        || pause_condition(p.status(), INCONCLUSIVE_ANALYSIS).is_some()
    {
        return false;
    }
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

    if p.sets.stable_differs()
        && let Some(stable) = p.sets.stable.clone()
    {
        let weights = p.status().canary.as_ref().and_then(|c| c.weights.as_ref());
        let (_, mut desired) = desired_counts(p, p.sets.new.as_deref(), weights);
        // At weight 100 Argo's math leaves the stable no pods while the stable Service still
        // selects it (it moves once the canary is promoted, a pass later): keep one pod
        // behind it so that Service never points at nothing. The stable becomes an old
        // ReplicaSet and is scaled down after the Service moved. The extra pod needs room to
        // surge, or the canary could never become whole.
        let selected_by_stable_service = strategy(p)
            .stable_service
            .as_deref()
            .and_then(|service| services::selected(p, service))
            .is_some_and(|hash| hash == stable.pod_hash());
        if desired == 0
            && selected_by_stable_service
            && stable.available() > 0
            && limits(p).max_surge > 0
        {
            desired = 1;
        }
        if replicasets::scale(p, &stable, desired, keep_deadline) {
            return true;
        }
    }

    let mut new = p.sets.new.clone();
    if new.is_none() && !p.fully_promoted() {
        let hash = p.current_pod_hash().to_string();
        new = p.sets.by_hash(&hash).cloned();
    }
    if let Some(new) = new
        && reconcile_new(p, &new, keep_deadline)
    {
        return true;
    }
    reconcile_others(p)
}

fn reconcile_new(p: &mut Planner<'_>, new: &ReplicaSet, keep_deadline: bool) -> bool {
    let weights = p.new_status.canary.as_ref().and_then(|c| c.weights.clone());
    let (mut count, _) = desired_counts(p, Some(new), weights.as_ref());
    if keep_deadline {
        match new.scale_down_deadline() {
            Some(deadline) if deadline > p.now => {
                p.requeue_at(deadline);
                return false;
            }
            Some(_) => count = 0,
            None => {
                if let Some(delay) = abort_scale_down_delay(strategy(p)) {
                    // The canary stays up until the stable is whole again, then for the delay.
                    let stable_whole = p
                        .sets
                        .stable
                        .as_ref()
                        .is_some_and(|s| s.available() == p.replicas());
                    if stable_whole {
                        replicasets::add_scale_down_deadline(p, new, delay);
                        p.requeue_after(Duration::try_from(delay).unwrap_or(Duration::ZERO));
                    }
                    return false;
                }
            }
        }
    }
    replicasets::scale(p, new, count, keep_deadline)
}

/// Scales down ReplicaSets that are neither new nor stable (Argo's
/// `scaleDownOldReplicaSetsForCanary`).
fn reconcile_others(p: &mut Planner<'_>) -> bool {
    let mut others: Vec<Arc<ReplicaSet>> = p
        .sets
        .others
        .iter()
        .filter(|rs| rs.desired() > 0)
        .cloned()
        .collect();
    if others.is_empty() {
        return false;
    }
    // Unavailable pods of old ReplicaSets go first: they only hold the update back.
    others.sort_by_key(|rs| rs.created());
    for rs in &others {
        let size = replicasets::planned_size(p, rs);
        if size == 0 || size == rs.available() {
            continue;
        }
        let to = rs.available().min(size);
        replicasets::scale(p, rs, to, false);
    }
    let available: i32 = p.sets.all.iter().map(|rs| rs.available()).sum();
    let min_available = p.replicas() - limits(p).max_unavailable;
    let mut max_scale_down = available - min_available;
    if max_scale_down <= 0 {
        return false;
    }
    others.sort_by(|a, b| {
        b.revision()
            .unwrap_or(-1)
            .cmp(&a.revision().unwrap_or(-1))
            .then_with(|| b.created().cmp(&a.created()))
    });
    let strategy = strategy(p);
    let routed = strategy.traffic_routing.is_some();
    let dynamic = strategy.dynamic_stable_scale == Some(true);
    let fully_promoted = p.fully_promoted();
    let mut kept = 0;
    let mut scaled_down = 0;
    for rs in &others {
        if routed && is_referenced(p, rs) {
            continue;
        }
        if max_scale_down <= 0 {
            break;
        }
        let size = replicasets::planned_size(p, rs);
        if size == 0 {
            continue;
        }
        let mut desired = 0;
        if !routed {
            if size > max_scale_down {
                desired = size - max_scale_down;
            }
        } else if (fully_promoted || rs.has_scale_down_deadline()) && !dynamic {
            let delay = strategy.scale_down_delay_seconds.unwrap_or(30);
            let limit = strategy.scale_down_delay_revision_limit;
            desired = replicasets::scale_down_after_delay(p, rs, size, delay, limit, &mut kept);
        }
        if size == desired {
            continue;
        }
        replicasets::scale(p, rs, desired, false);
        max_scale_down -= size - desired;
        scaled_down += size - desired;
    }
    scaled_down > 0
}

/// Whether a ReplicaSet still receives traffic (recorded in status or selected by a Service).
fn is_referenced(p: &Planner<'_>, rs: &ReplicaSet) -> bool {
    let hash = rs.pod_hash();
    if hash.is_empty() {
        return false;
    }
    let status = p.status();
    let mut references: Vec<&str> = vec![p.stable_rs_hash(), p.current_pod_hash()];
    if let Some(weights) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
        references.extend(weights.canary.pod_template_hash.as_deref());
        references.extend(weights.stable.pod_template_hash.as_deref());
    }
    if references.contains(&hash) {
        return true;
    }
    let strategy = strategy(p);
    [
        strategy.canary_service.as_deref(),
        strategy.stable_service.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|service| services::selected(p, service).as_deref() == Some(hash))
}

/// A pause step: pause (once), and look again when a timed pause ends.
fn reconcile_pause(p: &mut Planner<'_>) {
    let status = p.status();
    if p.rollout.spec.paused == Some(true) || status.promote_full == Some(true) {
        return;
    }
    let (step, _) = steps::current(p.rollout);
    let Some(pause) = step.and_then(|s| s.pause.as_ref()) else {
        return;
    };
    let Some(condition) = pause_condition(status, CANARY_PAUSE_STEP) else {
        if status.controller_pause != Some(true) {
            p.pause.add_pause(CANARY_PAUSE_STEP);
        }
        return;
    };
    if let Some(Ok(seconds)) = pause.duration_seconds() {
        let end = condition
            .start_time
            .0
            .checked_add(SignedDuration::from_secs(seconds))
            .unwrap_or(condition.start_time.0);
        // Just past the end, so the pass that wakes up finds the pause over.
        let wake = end
            .checked_add(SignedDuration::from_millis(1))
            .unwrap_or(end);
        if wake > p.now {
            p.requeue_at(wake);
        }
    }
}

/// Whether a pause step is over: resumed by a user, or its time is up.
fn pause_step_completed(p: &Planner<'_>, pause: &RolloutPause) -> bool {
    let status = p.status();
    let condition = pause_condition(status, CANARY_PAUSE_STEP);
    if status.controller_pause == Some(true) && condition.is_none() {
        return true;
    }
    match (pause.duration_seconds(), condition) {
        (Some(Ok(seconds)), Some(condition)) => condition
            .start_time
            .0
            .checked_add(SignedDuration::from_secs(seconds))
            .is_ok_and(|end| p.now > end),
        _ => false,
    }
}

/// Whether the current step is done (Argo's `completedCurrentCanaryStep`).
fn step_completed(p: &mut Planner<'_>) -> bool {
    if p.rollout.spec.paused == Some(true) {
        return false;
    }
    let (Some(step), _) = steps::current(p.rollout) else {
        return false;
    };
    let weights = p.new_status.canary.as_ref().and_then(|c| c.weights.clone());
    if let Some(pause) = &step.pause {
        return pause_step_completed(p, pause);
    }
    if step.set_canary_scale.is_some() {
        return at_desired_replica_counts(p, weights.as_ref());
    }
    if step.set_weight.is_some() {
        let verified = weights.as_ref().and_then(|w| w.verified);
        return at_desired_replica_counts(p, weights.as_ref()) && verified != Some(false);
    }
    if step.analysis.is_some() {
        let current = p
            .new_status
            .canary
            .as_ref()
            .and_then(|c| c.current_step_analysis_run_status.as_ref());
        return current.is_some_and(|run| run.status == AnalysisPhase::Successful);
    }
    if step.set_header_route.is_some() || step.set_mirror_route.is_some() {
        return true;
    }
    if step.experiment.is_some() {
        return crate::experiment::step::succeeded(p);
    }
    if step.plugin.is_some() {
        p.warning(
            "StepNotSupported",
            "Skipped a plugin step: Ramp does not run plugin steps yet",
        );
        return true;
    }
    false
}

/// Why the new ReplicaSet should become stable now, if it should.
fn full_promotion_reason(p: &Planner<'_>) -> Option<String> {
    if p.sets.stable.is_none() {
        return Some("Initial deploy".into());
    }
    if p.is_aborted() {
        return None;
    }
    let new = p.sets.new.as_deref()?;
    if new.available() != p.replicas() {
        return None;
    }
    if p.status().promote_full == Some(true) {
        return Some("Full promotion requested".into());
    }
    if replicasets::rollback_within_window(p) {
        return Some("Rollback within window".into());
    }
    let count = steps::count(p.rollout);
    let (_, index) = steps::current(p.rollout);
    (count == 0 || index == Some(count)).then(|| format!("Completed all {count} canary steps"))
}

/// Marks the new ReplicaSet stable (Argo's `promoteStable`).
fn promote_stable(p: &mut Planner<'_>, new: &mut RolloutStatus, reason: &str) {
    p.pause.clear_pauses();
    p.pause.remove_abort();
    new.promote_full = None;
    if let Some(bg) = new.blue_green.as_mut() {
        bg.scale_up_preview_check_point = None;
    }
    let count = steps::count(p.rollout);
    new.current_step_index = (count > 0).then(|| i32::try_from(count).unwrap_or(i32::MAX));
    if new.stable_rs != new.current_pod_hash {
        if strategy(p).ping_pong.is_some() {
            // The Service that carried the canary carries the stable from now on.
            let canary = new.canary.get_or_insert_with(CanaryStatus::default);
            let was_ping = canary.stable_ping_pong.as_deref() == Some(PING);
            canary.stable_ping_pong = Some(if was_ping { PONG } else { PING }.to_string());
        }
        new.stable_rs = new.current_pod_hash.clone();
        let hash = new.current_pod_hash.clone().unwrap_or_default();
        let message = format!(
            "Rollout completed update to revision {} ({hash}): {reason}",
            p.revision
        );
        p.event(ROLLOUT_COMPLETED_REASON, message);
    }
}

/// Starts the rollout over (Argo's `resetRolloutStatus`).
fn reset(p: &mut Planner<'_>, new: &mut RolloutStatus) {
    p.pause.clear_pauses();
    p.pause.remove_abort();
    new.restarted_at = p.rollout.spec.restart_at.clone();
    new.promote_full = None;
    if let Some(bg) = new.blue_green.as_mut() {
        bg.pre_promotion_analysis_run_status = None;
        bg.post_promotion_analysis_run_status = None;
        bg.scale_up_preview_check_point = None;
    }
    if let Some(canary) = new.canary.as_mut() {
        canary.current_step_analysis_run_status = None;
        canary.current_background_analysis_run_status = None;
    }
    new.current_step_index = (steps::count(p.rollout) > 0).then_some(0);
}

/// Argo's `syncRolloutStatusCanary`: step index, promotion, abort, conditions, phase.
fn sync_status(p: &mut Planner<'_>) {
    let mut new = status::base_status(p);
    new.available_replicas = Some(status::available_replicas(p));
    new.hpa_replicas = Some(p.sets.all.iter().map(|rs| rs.actual()).sum());
    new.selector = p.rollout.spec.selector.as_ref().map(selector::format);
    let ping_pong = p
        .status()
        .canary
        .as_ref()
        .and_then(|c| c.stable_ping_pong.clone());
    new.canary
        .get_or_insert_with(CanaryStatus::default)
        .stable_ping_pong = ping_pong;
    new.stable_rs = p.status().stable_rs.clone();
    new.current_step_hash = Some(step_hash(
        steps::canary(p.rollout).and_then(|c| c.steps.as_deref()),
    ));
    let count = steps::count(p.rollout);
    let count_i32 = i32::try_from(count).unwrap_or(i32::MAX);
    let mut index = steps::current(p.rollout)
        .1
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX));

    if template_or_steps_changed(p) {
        reset(p, &mut new);
        if let Some(new_rs) = p.sets.new.clone().filter(|_| count > 0) {
            if p.stable_rs_hash() == new_rs.pod_hash() {
                p.event(SKIP_STEPS_REASON, "Rollback to stable ReplicaSets");
                new.current_step_index = Some(count_i32);
            } else if replicasets::rollback_within_window(p) && new_rs.is_active() {
                p.event(
                    SKIP_STEPS_REASON,
                    "Rollback to active ReplicaSets within RollbackWindow",
                );
                new.current_step_index = Some(count_i32);
            }
        }
        finish(p, new);
        return;
    }

    if p.status().promote_full == Some(true) || replicasets::rollback_within_window(p) {
        p.pause.clear_pauses();
        p.pause.remove_abort();
        if count > 0 {
            index = Some(count_i32);
        }
    }

    if let Some(reason) = full_promotion_reason(p) {
        new.current_step_index = index;
        promote_stable(p, &mut new, &reason);
        finish(p, new);
        return;
    }

    if p.is_aborted() {
        if count > 0 {
            new.current_step_index = Some(if new.stable_rs == new.current_pod_hash {
                count_i32
            } else {
                0
            });
        }
        finish(p, new);
        return;
    }

    if step_completed(p) {
        if let (Some(step), Some(i)) = steps::current(p.rollout) {
            let description = steps::describe(step);
            let next = i32::try_from(i + 1).unwrap_or(i32::MAX);
            index = Some(next);
            p.event(
                ROLLOUT_STEP_COMPLETED_REASON,
                format!("Rollout step {next}/{count} completed ({description})"),
            );
        }
        if let Some(canary) = new.canary.as_mut() {
            canary.current_step_analysis_run_status = None;
            canary.current_experiment = None;
        }
        p.pause.remove_pause(CANARY_PAUSE_STEP);
    }
    new.current_step_index = index;
    finish(p, new);
}

fn finish(p: &mut Planner<'_>, new: RolloutStatus) {
    let available = status::available_replicas(p) >= p.replicas();
    let new = status::update_conditions(p, new, available);
    let new = status::finish(p, new);
    p.plan.status = Some(new);
}
