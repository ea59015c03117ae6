//! Replica arithmetic of a canary: how many pods the new (canary) and stable ReplicaSets
//! should have for a weight, within `maxSurge` and `maxUnavailable`.
//!
//! Without a traffic router the weight is approximated by replica counts, exactly as Argo
//! Rollouts does it (`utils/replicaset/canary.go`): both sides are rounded so that neither is
//! 0 for a weight of 1–99, the stable side is drained first while the canary grows and the
//! canary first while it shrinks (an abort), and old ReplicaSets are scaled away before
//! either. With a router the stable side stays full (unless `dynamicStableScale`) and the
//! canary gets `ceil(weight × replicas / maxTrafficWeight)` pods or its `setCanaryScale`.
//!
//! Everything here is plain integer (and, where Argo compares weights, floating-point)
//! arithmetic on small structs, tested against Argo's own cases.

use crate::api::IntOrPercent;

/// What the math needs to know of one ReplicaSet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

impl Pods {
    pub fn new(desired: i32, available: i32) -> Pods {
        Pods { desired, available }
    }
}

/// `maxSurge` and `maxUnavailable` resolved against `replicas`, as Kubernetes' deployment
/// controller resolves them: surge rounds up, unavailability down, and when both come out 0
/// one pod may be unavailable.
pub fn resolve_fenceposts(
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
    replicas: i32,
) -> (i32, i32) {
    let surge = max_surge.scaled(replicas, true).max(0);
    let mut unavailable = max_unavailable.scaled(replicas, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// The resolved surge and unavailability limits of a canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_surge: i32,
    pub max_unavailable: i32,
}

impl Limits {
    /// Limits for `replicas` pods; `maxUnavailable` never exceeds `replicas`.
    pub fn new(max_surge: IntOrPercent, max_unavailable: IntOrPercent, replicas: i32) -> Limits {
        let (surge, unavailable) = resolve_fenceposts(max_surge, max_unavailable, replicas);
        let max_unavailable = if replicas == 0 {
            0
        } else {
            unavailable.min(replicas)
        };
        Limits {
            max_surge: surge,
            max_unavailable,
        }
    }
}

/// The input of [`basic_canary`].
#[derive(Clone, Copy, Debug)]
pub struct BasicCanary {
    /// `spec.replicas` of the Rollout.
    pub replicas: i32,
    /// Desired canary weight, 0–100.
    pub weight: i32,
    pub limits: Limits,
    /// The new ReplicaSet, if it exists.
    pub canary: Option<Pods>,
    /// The stable ReplicaSet, if it exists and differs from the new one.
    pub stable: Option<Pods>,
    /// Sum of `spec.replicas` of every other ReplicaSet.
    pub others_desired: i32,
}

/// Replica counts `(canary, stable)` for a canary without a traffic router
/// (Argo's `CalculateReplicaCountsForBasicCanary`).
pub fn basic_canary(input: BasicCanary) -> (i32, i32) {
    let BasicCanary {
        replicas,
        weight,
        limits,
        canary,
        stable,
        others_desired,
    } = input;
    let max_surge = limits.max_surge;
    let (mut desired_canary, mut desired_stable) =
        approximate_weighted_counts(replicas, weight, max_surge);

    let mut canary_count = canary.map_or(0, |c| c.desired);
    let mut stable_count = 0;
    match stable {
        Some(s) => stable_count = s.desired,
        None => {
            // No stable to share with: the new ReplicaSet goes straight to full size.
            desired_canary = replicas;
            desired_stable = 0;
        }
    }

    let max_allowed = replicas + max_surge;
    let total = others_desired + canary.map_or(0, |c| c.desired) + stable.map_or(0, |s| s.desired);
    let mut scale_up = max_allowed - total;

    if let Some(s) = stable
        && s.desired < desired_stable
        && scale_up > 0
    {
        if s.desired + scale_up < desired_stable {
            stable_count = s.desired + scale_up;
            scale_up = 0;
        } else {
            stable_count = desired_stable;
            scale_up -= desired_stable - s.desired;
        }
    }
    if let Some(c) = canary
        && c.desired < desired_canary
        && scale_up > 0
    {
        canary_count = if c.desired + scale_up < desired_canary {
            c.desired + scale_up
        } else {
            desired_canary
        };
    }

    if others_desired > 0 {
        // Older ReplicaSets are scaled down before the canary or stable shrink.
        return (canary_count, stable_count);
    }

    let min_available = replicas - limits.max_unavailable;
    // Growing the canary may ignore the stable's availability; shrinking it (an abort, a
    // lower weight) may ignore the canary's.
    let increasing = canary.is_none_or(|c| desired_canary >= c.desired);
    let to_scale_down =
        replicas_for_scale_down(canary, !increasing) + replicas_for_scale_down(stable, increasing);
    if to_scale_down <= min_available {
        return (canary_count, stable_count);
    }
    let scale_down = to_scale_down - min_available;
    if !increasing {
        canary_count = scale_down_count(canary, desired_canary, scale_down, canary_count);
        (canary_count, stable_count) = adjust_within_limits(
            canary,
            stable,
            canary_count,
            stable_count,
            max_allowed,
            min_available,
        );
    } else if stable.is_some() {
        stable_count = scale_down_count(stable, desired_stable, scale_down, stable_count);
        (stable_count, canary_count) = adjust_within_limits(
            stable,
            canary,
            stable_count,
            canary_count,
            max_allowed,
            min_available,
        );
    }
    (canary_count, stable_count)
}

/// The canary/stable split closest to `weight` for `replicas` pods, allowed to surge by one
/// when `max_surge > 0`. Neither side is 0 for weights 1–99 unless there is a single pod and
/// no surge (Argo's `approximateWeightedCanaryStableReplicaCounts`).
pub fn approximate_weighted_counts(replicas: i32, weight: i32, max_surge: i32) -> (i32, i32) {
    if replicas == 0 {
        return (0, 0);
    }
    let exact = f64::from(replicas * weight) / 100.0;
    let ceil = exact.ceil() as i32;
    let floor = exact.floor() as i32;
    let tied = floor_ceiling_tied(weight, replicas);
    let zero_allowed = weight == 100 || weight == 0 || (replicas == 1 && max_surge == 0);

    let mut options: Vec<(i32, i32)> = Vec::with_capacity(4);
    if ceil < replicas || zero_allowed {
        options.push((ceil, replicas));
    }
    if !tied && (floor != 0 || zero_allowed) {
        options.push((floor, replicas));
    }
    if max_surge > 0 {
        options.push((ceil, replicas + 1));
        if !floor_ceiling_tied(weight, replicas + 1) && (floor != 0 || zero_allowed) {
            options.push((floor, replicas + 1));
        }
    }
    let Some(&first) = options.first() else {
        return (0, replicas);
    };
    let mut best = first;
    let mut best_delta = weight_delta(weight, best.0, best.1);
    for &option in &options[1..] {
        let delta = weight_delta(weight, option.0, option.1);
        if delta < best_delta {
            best = option;
            best_delta = delta;
        }
    }
    (best.0, best.1 - best.0)
}

/// Whether the rounded-down and rounded-up canary counts are equally far from the weight;
/// the larger count is then preferred.
fn floor_ceiling_tied(weight: i32, total: i32) -> bool {
    let value = f64::from(total) * (f64::from(weight) / 100.0);
    value - value.trunc() == 0.5
}

fn weight_delta(weight: i32, canary: i32, total: i32) -> f64 {
    let actual = f64::from(canary * 100) / f64::from(total);
    (actual - f64::from(weight)).abs()
}

/// How many pods of a ReplicaSet count when deciding how far others may be scaled down.
/// Pods above `spec.replicas` are about to go and never count; with `ignore_availability`
/// the desired count is used even if those pods are not available.
pub fn replicas_for_scale_down(rs: Option<Pods>, ignore_availability: bool) -> i32 {
    let Some(rs) = rs else { return 0 };
    if rs.desired < rs.available || ignore_availability {
        return rs.desired;
    }
    rs.available
}

fn scale_down_count(rs: Option<Pods>, desired: i32, scale_down: i32, current: i32) -> i32 {
    match rs {
        Some(rs) if rs.desired > desired => desired.max(rs.desired - scale_down),
        _ => current,
    }
}

/// Brings `(drain, adjust)` back within `maxSurge` while keeping `maxUnavailable`: the side
/// being drained was computed ignoring its availability, so the other side gives back only
/// what keeps enough pods available.
fn adjust_within_limits(
    drain: Option<Pods>,
    adjust: Option<Pods>,
    mut drain_count: i32,
    mut adjust_count: i32,
    max_allowed: i32,
    min_available: i32,
) -> (i32, i32) {
    let mut over_limit = (adjust_count + drain_count - max_allowed).max(0);
    let mut total_available = drain.map_or(0, |d| d.available.min(drain_count));
    if let Some(adjust) = adjust {
        adjust_count -= over_limit;
        total_available += adjust.available.min(adjust_count);
        let extra_available = (adjust.available - adjust_count).max(0);
        let still_needed = (min_available - total_available).max(0);
        adjust_count += extra_available.min(still_needed);
        over_limit = (adjust_count + drain_count - max_allowed).max(0);
        drain_count -= over_limit;
    }
    (drain_count, adjust_count)
}

/// Pods needed to carry `weight` out of `max_weight` of the traffic of `replicas` pods,
/// rounded up.
pub fn traffic_weight_to_replicas(replicas: i32, weight: i32, max_weight: i32) -> i32 {
    if max_weight <= 0 {
        return 0;
    }
    let numerator = i64::from(weight) * i64::from(replicas);
    let value = (numerator + i64::from(max_weight) - 1).div_euclid(i64::from(max_weight));
    i32::try_from(value.max(0)).unwrap_or(i32::MAX)
}

/// The input of [`routed_canary`].
#[derive(Clone, Copy, Debug)]
pub struct RoutedCanary {
    pub replicas: i32,
    /// Desired canary weight (out of `max_weight`), used unless `canary_replicas` is set.
    pub weight: i32,
    /// An explicit canary size from `setCanaryScale.replicas`.
    pub canary_replicas: Option<i32>,
    pub max_weight: i32,
    pub dynamic_stable_scale: bool,
    pub min_pods_per_replica_set: Option<i32>,
    /// The weights last written to the router (`status.canary.weights`): `(canary, stable)`.
    pub current_weights: Option<(i32, i32)>,
    pub aborted: bool,
}

/// Replica counts `(canary, stable)` for a canary with a traffic router (Argo's
/// `CalculateReplicaCountsForTrafficRoutedCanary`).
pub fn routed_canary(input: RoutedCanary) -> (i32, i32) {
    let min_pods = |count: i32| match input.min_pods_per_replica_set {
        Some(min) if count != 0 => count.max(min),
        _ => count,
    };
    let mut canary = match input.canary_replicas {
        Some(replicas) => replicas,
        None => min_pods(traffic_weight_to_replicas(
            input.replicas,
            input.weight,
            input.max_weight,
        )),
    };
    if !input.dynamic_stable_scale {
        return (canary, input.replicas);
    }
    // With dynamic stable scaling the stable keeps enough pods for the larger of the traffic
    // it has now and the traffic it is about to get; an aborting canary keeps pods for the
    // traffic it still has.
    let mut stable = traffic_weight_to_replicas(
        input.replicas,
        input.max_weight - input.weight,
        input.max_weight,
    );
    if let Some((canary_weight, stable_weight)) = input.current_weights {
        stable = stable.max(traffic_weight_to_replicas(
            input.replicas,
            stable_weight,
            input.max_weight,
        ));
        if input.aborted {
            canary = canary.max(traffic_weight_to_replicas(
                input.replicas,
                canary_weight,
                input.max_weight,
            ));
        }
    }
    (min_pods(canary), min_pods(stable))
}

#[cfg(test)]
mod tests;
