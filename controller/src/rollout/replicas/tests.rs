//! Argo Rollouts' own cases (`utils/replicaset/canary_test.go`) and the scenarios of the
//! canary issue, as tables.

use super::*;

fn count(n: i32) -> IntOrPercent {
    IntOrPercent::Count(n)
}

fn percent(n: i32) -> IntOrPercent {
    IntOrPercent::Percent(n)
}

struct Case {
    name: &'static str,
    replicas: i32,
    weight: i32,
    surge: IntOrPercent,
    unavailable: IntOrPercent,
    stable: (i32, i32),
    canary: (i32, i32),
    older: i32,
    expect_canary: i32,
    expect_stable: i32,
}

fn case(
    name: &'static str,
    replicas: i32,
    weight: i32,
    surge: IntOrPercent,
    unavailable: IntOrPercent,
) -> Case {
    Case {
        name,
        replicas,
        weight,
        surge,
        unavailable,
        stable: (0, 0),
        canary: (0, 0),
        older: 0,
        expect_canary: 0,
        expect_stable: 0,
    }
}

impl Case {
    fn stable(mut self, desired: i32, available: i32) -> Case {
        self.stable = (desired, available);
        self
    }
    fn canary(mut self, desired: i32, available: i32) -> Case {
        self.canary = (desired, available);
        self
    }
    fn older(mut self, desired: i32) -> Case {
        self.older = desired;
        self
    }
    fn expect(mut self, canary: i32, stable: i32) -> Case {
        self.expect_canary = canary;
        self.expect_stable = stable;
        self
    }
}

#[test]
fn basic_canary_matches_argo() {
    let cases = [
        case("Do not add extra RSs in scaleDownCount when .Spec.Replica < AvailableReplicas", 10, 100, count(3), count(0))
            .stable(7, 8)
            .canary(6, 3)
            .expect(6, 7),
        case("Use max surge int to scale up canary", 10, 20, count(2), count(0)).stable(10, 10).expect(2, 10),
        case("Use max surge percentage to scale up canary", 10, 20, percent(20), count(0)).stable(10, 10).expect(2, 10),
        case("Scale down extra stable replicas", 10, 20, percent(20), count(0))
            .stable(10, 10)
            .canary(2, 2)
            .expect(2, 8),
        case("Do not go past max surge", 10, 30, count(2), count(0)).stable(10, 10).expect(2, 10),
        case("Use max unavailable int to scale down stableRS", 10, 20, count(0), count(2)).stable(10, 10).expect(0, 8),
        case("Use max surge percentage to scale down stableRS", 10, 20, count(0), percent(20)).stable(10, 10).expect(0, 8),
        case("Do not go past max unavailable", 10, 30, count(0), count(2)).stable(10, 10).expect(0, 8),
        case("Use Max Surge and Max Unavailable", 10, 50, count(2), count(1)).stable(10, 10).expect(2, 9),
        case("Scale canaryRS to zero on setWeight of 0%", 10, 0, count(1), count(1))
            .stable(10, 10)
            .canary(1, 1)
            .expect(0, 10),
        case("Scale stable to zero on setWeight of 100%", 10, 100, count(1), count(1))
            .stable(1, 1)
            .canary(10, 10)
            .expect(10, 0),
        case("Do not scale newRS down to zero on non-zero weight", 1, 20, count(1), count(0)).stable(1, 1).expect(1, 1),
        case("Do not scale canaryRS down to zero on non-100 weight", 1, 90, count(1), count(0)).stable(1, 1).expect(1, 1),
        case("Scale up Stable before newRS", 10, 30, count(1), count(0)).stable(1, 1).older(3).expect(1, 7),
        case("Scale down newRS and stable", 10, 30, count(0), count(3)).stable(8, 5).canary(4, 4).expect(3, 7),
        case("Scale down stable and canary available", 10, 100, count(1), count(0))
            .stable(10, 2)
            .canary(10, 8)
            .expect(9, 2),
        case("Do not scale down newRS or stable when older RS count >= scaleDownCount", 10, 30, count(0), count(1))
            .stable(8, 6)
            .canary(4, 2)
            .older(3)
            .expect(4, 8),
        case("Do not round past maxSurge with uneven setWeight divisor", 10, 5, count(0), count(1)).stable(10, 10).expect(0, 9),
        case("Do not round past maxSurge with uneven setWeight divisor (part 2)", 10, 5, count(0), count(1))
            .stable(9, 9)
            .expect(1, 9),
        case("Use maxUnavailable of 1 when percentage of maxUnavailable and maxSurge result in 0 replicas", 10, 10, percent(0), percent(0))
            .stable(10, 10)
            .expect(0, 9),
        case("honor maxSurge during scale up when stableRS unavailable", 4, 100, count(1), count(0)).stable(4, 1).expect(1, 4),
        case("scale down to maxunavailable without exceeding maxSurge", 3, 99, count(0), count(2)).stable(3, 3).expect(0, 1),
        case("scale down to maxunavailable without exceeding maxSurge (part 2)", 3, 99, count(0), count(2))
            .stable(1, 1)
            .expect(2, 1),
        case("honor maxUnavailable during scale down stableRS unavailable", 4, 100, count(1), count(0))
            .stable(4, 1)
            .canary(1, 1)
            .expect(1, 3),
        case("honor maxUnavailable when aborting or reducing weight part 1", 4, 0, count(1), count(0))
            .stable(0, 0)
            .canary(4, 4)
            .expect(4, 1),
        case("honor maxUnavailable when aborting or reducing weight part 2", 4, 0, count(1), count(0))
            .stable(1, 0)
            .canary(4, 4)
            .expect(4, 1),
        case("honor maxUnavailable when aborting or reducing weight part 3", 4, 0, count(1), count(0))
            .stable(1, 1)
            .canary(4, 4)
            .expect(3, 1),
        case("promote full does not consider weight", 4, 100, count(4), count(4)).stable(4, 4).expect(4, 0),
        case("promote full still honors maxSurge/maxUnavailable", 4, 100, count(3), count(0)).stable(4, 4).expect(3, 4),
        // The scenarios.
        case("issue: 10 replicas at 20% with surge 2 start the canary", 10, 20, count(2), count(0)).stable(10, 10).expect(2, 10),
        case("issue: then drain the stable once the canary is available", 10, 20, count(2), count(0))
            .stable(10, 10)
            .canary(2, 2)
            .expect(2, 8),
        case("issue: 3 replicas at 10% with surge 1", 3, 10, count(1), count(0)).stable(3, 3).expect(1, 3),
        case("issue: 10 replicas at 24% with surge 1", 10, 24, count(1), count(0)).stable(10, 10).canary(3, 3).expect(3, 8),
        case("issue: 1 replica at 49% without surge", 1, 49, count(0), count(1)).stable(1, 1).expect(0, 1),
    ];
    for c in cases {
        let limits = Limits::new(c.surge, c.unavailable, c.replicas);
        let got = basic_canary(BasicCanary {
            replicas: c.replicas,
            weight: c.weight,
            limits,
            canary: Some(Pods::new(c.canary.0, c.canary.1)),
            stable: Some(Pods::new(c.stable.0, c.stable.1)),
            others_desired: c.older,
        });
        assert_eq!(got, (c.expect_canary, c.expect_stable), "{}", c.name);
    }
}

/// `steps: [setWeight: 25, pause: {}]` on a one-replica Rollout, then scaled to 8 and back to
/// 4 while paused (Argo's `TestRolloutScalingWhenPaused`): each reconcile moves one step.
#[test]
fn scaling_while_paused_converges_like_argo() {
    let limits_for = |replicas| Limits::new(percent(25), percent(25), replicas);
    let converge = |replicas: i32, mut canary: i32, mut stable: i32| {
        for _ in 0..10 {
            let (c, s) = basic_canary(BasicCanary {
                replicas,
                weight: 25,
                limits: limits_for(replicas),
                canary: Some(Pods::new(canary, canary)),
                stable: Some(Pods::new(stable, stable)),
                others_desired: 0,
            });
            if (c, s) == (canary, stable) {
                break;
            }
            // Argo scales the stable first and leaves the canary for the next reconcile.
            if s != stable {
                stable = s;
            } else {
                canary = c;
            }
        }
        (canary, stable)
    };
    assert_eq!(converge(1, 0, 1), (1, 1));
    assert_eq!(converge(8, 1, 1), (2, 6));
    assert_eq!(converge(4, 2, 6), (1, 3));
}

#[test]
fn no_stable_means_full_size_canary() {
    let limits = Limits::new(count(0), count(1), 10);
    let got = basic_canary(BasicCanary {
        replicas: 10,
        weight: 10,
        limits,
        canary: Some(Pods::new(9, 9)),
        stable: None,
        others_desired: 0,
    });
    assert_eq!(got, (10, 0));
}

#[test]
fn approximate_weighted_counts_match_argo() {
    #[rustfmt::skip]
    let cases: [(i32, i32, i32, i32, i32); 56] = [
        (0, 0, 0, 0, 0), (0, 50, 0, 0, 0), (0, 100, 0, 0, 0),
        (0, 0, 1, 0, 0), (0, 50, 1, 0, 0), (0, 100, 1, 0, 0),
        (1, 0, 0, 0, 1), (1, 1, 0, 0, 1), (1, 49, 0, 0, 1), (1, 50, 0, 1, 0), (1, 99, 0, 1, 0), (1, 100, 0, 1, 0),
        (1, 0, 1, 0, 1), (1, 1, 1, 1, 1), (1, 49, 1, 1, 1), (1, 50, 1, 1, 1), (1, 99, 1, 1, 1), (1, 100, 1, 1, 0),
        (2, 0, 0, 0, 2), (2, 1, 0, 1, 1), (2, 50, 0, 1, 1), (2, 99, 0, 1, 1), (2, 100, 0, 2, 0),
        (2, 0, 1, 0, 2), (2, 1, 1, 1, 2), (2, 50, 1, 1, 1), (2, 99, 1, 2, 1), (2, 100, 1, 2, 0),
        (3, 10, 0, 1, 2), (3, 25, 0, 1, 2), (3, 33, 0, 1, 2), (3, 34, 0, 1, 2), (3, 49, 0, 1, 2), (3, 50, 0, 2, 1),
        (3, 10, 1, 1, 3), (3, 25, 1, 1, 3), (3, 33, 1, 1, 2), (3, 34, 1, 1, 2), (3, 49, 1, 2, 2), (3, 50, 1, 2, 2),
        (10, 0, 1, 0, 10), (10, 1, 0, 1, 9), (10, 14, 0, 1, 9), (10, 15, 0, 2, 8), (10, 16, 0, 2, 8), (10, 99, 0, 9, 1), (10, 100, 1, 10, 0),
        (10, 0, 1, 0, 10), (10, 1, 1, 1, 10), (10, 18, 1, 2, 9), (10, 19, 1, 2, 9), (10, 20, 1, 2, 8), (10, 23, 1, 2, 8),
        (10, 24, 1, 3, 8), (10, 25, 1, 3, 8), (10, 99, 1, 10, 1),
    ];
    for (replicas, weight, surge, canary, stable) in cases {
        assert_eq!(
            approximate_weighted_counts(replicas, weight, surge),
            (canary, stable),
            "replicas {replicas} weight {weight} surge {surge}"
        );
    }
    assert_eq!(approximate_weighted_counts(10, 100, 1), (10, 0));
}

#[test]
fn fenceposts() {
    assert_eq!(resolve_fenceposts(percent(25), percent(25), 10), (3, 2));
    assert_eq!(resolve_fenceposts(percent(0), percent(0), 10), (0, 1));
    assert_eq!(resolve_fenceposts(percent(25), percent(25), 1), (1, 0));
    assert_eq!(
        Limits::new(count(0), count(5), 3),
        Limits {
            max_surge: 0,
            max_unavailable: 3
        }
    );
    assert_eq!(
        Limits::new(count(1), count(1), 0),
        Limits {
            max_surge: 1,
            max_unavailable: 0
        }
    );
}

#[test]
fn traffic_weight_to_replicas_rounds_up() {
    assert_eq!(traffic_weight_to_replicas(10, 0, 100), 0);
    assert_eq!(traffic_weight_to_replicas(10, 20, 100), 2);
    assert_eq!(traffic_weight_to_replicas(10, 25, 100), 3);
    assert_eq!(traffic_weight_to_replicas(10, 33, 100), 4);
    assert_eq!(traffic_weight_to_replicas(10, 99, 100), 10);
    assert_eq!(traffic_weight_to_replicas(10, 100, 100), 10);
    assert_eq!(traffic_weight_to_replicas(10, 500, 1000), 5);
}

fn routed(replicas: i32, weight: i32) -> RoutedCanary {
    RoutedCanary {
        replicas,
        weight,
        canary_replicas: None,
        max_weight: 100,
        dynamic_stable_scale: false,
        min_pods_per_replica_set: None,
        current_weights: None,
        aborted: false,
    }
}

#[test]
fn routed_canary_matches_argo() {
    assert_eq!(routed_canary(routed(10, 10)), (1, 10));
    assert_eq!(
        routed_canary(RoutedCanary {
            canary_replicas: Some(9),
            ..routed(1, 100)
        }),
        (9, 1)
    );
    assert_eq!(
        routed_canary(RoutedCanary {
            min_pods_per_replica_set: Some(2),
            ..routed(10, 5)
        }),
        (2, 10)
    );
    // Dynamic stable scaling: stable follows the larger of its current and desired traffic.
    let dynamic = RoutedCanary {
        dynamic_stable_scale: true,
        current_weights: Some((10, 90)),
        ..routed(10, 10)
    };
    assert_eq!(routed_canary(dynamic), (1, 9));
    assert_eq!(
        routed_canary(RoutedCanary {
            weight: 20,
            ..dynamic
        }),
        (2, 9)
    );
    let aborting = RoutedCanary {
        aborted: true,
        current_weights: Some((20, 80)),
        ..dynamic
    };
    assert_eq!(
        routed_canary(RoutedCanary {
            weight: 0,
            ..aborting
        }),
        (2, 10)
    );
    let aborting_less = RoutedCanary {
        aborted: true,
        current_weights: Some((10, 90)),
        ..dynamic
    };
    assert_eq!(
        routed_canary(RoutedCanary {
            weight: 0,
            ..aborting_less
        }),
        (1, 10)
    );
}

#[test]
fn scale_down_counting() {
    assert_eq!(replicas_for_scale_down(None, false), 0);
    assert_eq!(replicas_for_scale_down(Some(Pods::new(3, 5)), false), 3);
    assert_eq!(replicas_for_scale_down(Some(Pods::new(3, 2)), true), 3);
    assert_eq!(replicas_for_scale_down(Some(Pods::new(3, 2)), false), 2);
}
