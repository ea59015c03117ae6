//! What a canary's traffic router should carry (Argo's `reconcileTrafficRouting`): the
//! canary weight for the step, held back until the canary has its pods, moved back to stable
//! on abort, the header and mirror routes of the step, and `status.canary.weights`.
//!
//! Without a router there is nothing to tell: the weight is the replica split of
//! [`super::replicas::basic_canary`] and `status.canary.weights` stays empty, as in Argo.

use super::conditions::TRAFFIC_WEIGHT_UPDATED_REASON;
use super::observe::ReplicaSetExt;
use super::plan::{Planner, TrafficPlan};
use super::{canary, services, steps};
use crate::api::{CanaryStatus, TrafficWeights, WeightDestination};

/// Plans the router's weights and routes, and records them in the new status.
pub fn reconcile(p: &mut Planner<'_>) {
    let Some(strategy) = steps::canary(p.rollout) else {
        return;
    };
    let Some(routing) = strategy.traffic_routing.as_ref() else {
        p.new_status
            .canary
            .get_or_insert_with(CanaryStatus::default)
            .weights = None;
        return;
    };
    let max_weight = routing.max_traffic_weight.unwrap_or(100);
    let dynamic = strategy.dynamic_stable_scale == Some(true);
    let (step, index) = steps::current(p.rollout);
    let mut canary_hash = p.sets.new_hash().unwrap_or_default().to_string();
    let stable_hash = p.sets.stable_hash().unwrap_or_default().to_string();
    let mut desired = 0;
    let mut remove_managed_routes = false;
    let aborting = p.is_aborted();
    // At a setWeight step a new weight counts only once the router is read back holding it.
    let mut verifying = false;
    // Experiment templates with a weight (only while the step runs, never on abort).
    let mut additional = Vec::new();

    if let Some(previous_canary) = canary::dynamically_rolling_back(p) {
        desired = weight_on_abort(p, max_weight);
        canary_hash = previous_canary;
    } else if p.fully_promoted() {
        remove_managed_routes = true;
    } else if aborting {
        desired = weight_on_abort(p, max_weight);
        if !dynamic || desired == 0 {
            let stable = p.sets.stable.clone();
            services::ensure_targets(
                p,
                strategy.canary_service.as_deref(),
                stable.as_deref(),
                false,
            );
        }
        remove_managed_routes = true;
    } else if p.sets.new.as_ref().is_none_or(|rs| rs.available() == 0) {
        desired = 0;
    } else if p.status().promote_full == Some(true) {
        desired = if dynamic {
            let available = p.sets.new.as_ref().map_or(0, |rs| rs.available());
            max_weight * available / p.replicas().max(1)
        } else {
            previous_weights(p).map_or(0, |w| w.canary.weight)
        };
        remove_managed_routes = true;
    } else if let Some(index) = index {
        verifying = step.is_some_and(|s| s.set_weight.is_some());
        let all_steps = steps::steps(p.rollout);
        if !canary::at_desired_replica_counts(p, None) {
            // The canary has not got its pods yet: keep the previous step's weight.
            desired = all_steps[..index.min(all_steps.len())]
                .iter()
                .rev()
                .find_map(|s| s.set_weight)
                .unwrap_or(0);
            if carries_additional_destinations(routing) {
                additional = crate::experiment::step::weight_destinations(p);
            }
        } else if index != all_steps.len() {
            desired = steps::current_set_weight(p.rollout, false);
            if carries_additional_destinations(routing) {
                additional = crate::experiment::step::weight_destinations(p);
            }
        } else {
            desired = max_weight;
        }
    }

    let revision: i64 = p.revision.parse().unwrap_or(0);
    let (header_route, mirror_route) = match step {
        Some(step) if revision > 1 => {
            (step.set_header_route.clone(), step.set_mirror_route.clone())
        }
        _ => (None, None),
    };

    let weights = TrafficWeights {
        canary: WeightDestination {
            weight: desired,
            service_name: strategy.canary_service.clone(),
            pod_template_hash: Some(canary_hash.clone()).filter(|h| !h.is_empty()),
        },
        stable: WeightDestination {
            weight: (max_weight - desired - additional.iter().map(|d| d.weight).sum::<i32>())
                .max(0),
            service_name: strategy.stable_service.clone(),
            pod_template_hash: Some(stable_hash.clone()).filter(|h| !h.is_empty()),
        },
        additional: Some(additional.clone()).filter(|a| !a.is_empty()),
        // Apply reads the router back after writing and records what it found.
        verified: verifying.then_some(false),
    };
    let previous = previous_weights(p).cloned();
    let modified = previous.as_ref().is_none_or(|prev| {
        prev.canary != weights.canary
            || prev.stable != weights.stable
            || prev.additional != weights.additional
    });
    let canary_status = p
        .new_status
        .canary
        .get_or_insert_with(CanaryStatus::default);
    if modified {
        canary_status.weights = Some(weights);
        let detail = match &previous {
            None => format!("to {desired}"),
            Some(prev) if prev.canary.weight != desired => {
                format!("from {} to {desired}", prev.canary.weight)
            }
            Some(_) => String::new(),
        };
        p.event(
            TRAFFIC_WEIGHT_UPDATED_REASON,
            format!("Traffic weight updated {detail}"),
        );
    } else {
        canary_status.weights = previous;
    }
    let (stable_service, canary_service) = match canary::ping_pong_services(p) {
        Some((stable, canary)) => (Some(stable), Some(canary)),
        None => (
            strategy.stable_service.clone(),
            strategy.canary_service.clone(),
        ),
    };
    p.plan.traffic = Some(TrafficPlan {
        canary_weight: desired,
        max_weight,
        additional,
        canary_hash,
        stable_hash,
        canary_service,
        stable_service,
        header_route,
        mirror_route,
        remove_managed_routes,
        aborting,
    });
}

fn previous_weights<'p>(p: &Planner<'p>) -> Option<&'p TrafficWeights> {
    p.status().canary.as_ref().and_then(|c| c.weights.as_ref())
}

/// The canary weight while aborting or rolling back to stable: 0 at once, or with dynamic
/// stable scaling as much as the stable's available pods cannot yet carry (never more than
/// the weight already set).
fn weight_on_abort(p: &Planner<'_>, max_weight: i32) -> i32 {
    let dynamic = steps::canary(p.rollout).and_then(|c| c.dynamic_stable_scale) == Some(true);
    if !dynamic {
        return 0;
    }
    let available = p.sets.stable.as_ref().map_or(0, |rs| rs.available());
    let mut desired = max_weight - (max_weight * available) / p.replicas().max(1);
    if let Some(previous) = previous_weights(p) {
        desired = desired.min(previous.canary.weight);
    }
    desired.max(0)
}

/// Whether every configured router sends experiment templates their own weights: SMI (a
/// backend per template Service), Istio (a destination per template Service in each
/// weighted route) and Gateway API (a backendRef per template Service in each rule naming
/// both Services) do. NGINX does not, as in Argo, whose NGINX router ignores them; with it
/// (or a plugin Ramp does not know) an experiment's weights are left out rather than taken
/// from stable.
fn carries_additional_destinations(routing: &crate::api::RolloutTrafficRouting) -> bool {
    let plugins_carry = routing
        .plugins
        .iter()
        .flatten()
        .all(|(name, _)| name == crate::traffic::gatewayapi::PLUGIN);
    let has_gateway_api = routing
        .plugins
        .as_ref()
        .is_some_and(|p| p.contains_key(crate::traffic::gatewayapi::PLUGIN));
    (routing.smi.is_some() || routing.istio.is_some() || has_gateway_api)
        && routing.nginx.is_none()
        && plugins_carry
}
