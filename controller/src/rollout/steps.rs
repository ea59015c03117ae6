//! Reading a canary's steps the way Argo Rollouts reads them: the current step, the weight
//! in effect, an explicit canary scale, and how a step is described in Events.

use crate::api::{CanaryStep, CanaryStrategy, Rollout, SetCanaryScale};

/// The canary strategy, if the Rollout has one.
pub fn canary(rollout: &Rollout) -> Option<&CanaryStrategy> {
    rollout.spec.strategy.as_ref()?.canary.as_ref()
}

/// The steps of the canary.
pub fn steps(rollout: &Rollout) -> &[CanaryStep] {
    canary(rollout)
        .and_then(|c| c.steps.as_deref())
        .unwrap_or_default()
}

pub fn count(rollout: &Rollout) -> usize {
    steps(rollout).len()
}

/// `status.currentStepIndex`, 0 when absent; `None` without steps.
pub fn current_index(rollout: &Rollout) -> Option<usize> {
    if steps(rollout).is_empty() {
        return None;
    }
    let index = rollout
        .status
        .as_ref()
        .and_then(|s| s.current_step_index)
        .unwrap_or(0);
    Some(usize::try_from(index).unwrap_or(0))
}

/// The current step (none past the last step), and its index.
pub fn current(rollout: &Rollout) -> (Option<&CanaryStep>, Option<usize>) {
    let Some(index) = current_index(rollout) else {
        return (None, None);
    };
    (steps(rollout).get(index), Some(index))
}

/// Whether the current step waits on something other than replicas (pause, analysis,
/// experiment), so the progress deadline does not apply.
pub fn is_indefinite(rollout: &Rollout) -> bool {
    matches!(current(rollout).0, Some(step) if step.pause.is_some() || step.analysis.is_some() || step.experiment.is_some())
}

/// The weight of the last `setWeight` at or before the current step; 100 past the last
/// step, 0 when aborted (Argo's `GetCurrentSetWeight`).
pub fn current_set_weight(rollout: &Rollout, aborted: bool) -> i32 {
    if aborted {
        return 0;
    }
    let (step, index) = current(rollout);
    if step.is_none() {
        return max_traffic_weight(rollout);
    }
    let index = index.unwrap_or(0);
    steps(rollout)[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// The `setCanaryScale` in effect, if any (traffic routing only; ignored once
/// `matchTrafficWeight` is set, and on abort unless the canary is kept up).
pub fn set_canary_scale(rollout: &Rollout, aborted: bool) -> Option<&SetCanaryScale> {
    let canary = canary(rollout)?;
    canary.traffic_routing.as_ref()?;
    if aborted && canary.abort_scale_down_delay_seconds != Some(0) {
        return None;
    }
    let (step, index) = current(rollout);
    step?;
    let index = index?;
    let scale = steps(rollout)[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref())?;
    (scale.match_traffic_weight != Some(true)).then_some(scale)
}

/// The weight that means "all traffic": `trafficRouting.maxTrafficWeight`, default 100.
pub fn max_traffic_weight(rollout: &Rollout) -> i32 {
    canary(rollout)
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|r| r.max_traffic_weight)
        .unwrap_or(100)
}

/// An explicit canary size or the canary weight (Argo's `GetCanaryReplicasOrWeight`).
pub fn canary_replicas_or_weight(rollout: &Rollout, aborted: bool) -> (Option<i32>, i32) {
    let status = rollout.status.as_ref();
    let stable = status.and_then(|s| s.stable_rs.as_deref()).unwrap_or("");
    let current = status
        .and_then(|s| s.current_pod_hash.as_deref())
        .unwrap_or("");
    if status.and_then(|s| s.promote_full) == Some(true) || stable.is_empty() || current == stable {
        return (None, max_traffic_weight(rollout));
    }
    if let Some(scale) = set_canary_scale(rollout, aborted) {
        if let Some(replicas) = scale.replicas {
            return (Some(replicas), 0);
        }
        if let Some(weight) = scale.weight {
            return (None, weight);
        }
    }
    (None, current_set_weight(rollout, aborted))
}

/// How a step is named in `RolloutStepCompleted` Events.
pub fn describe(step: &CanaryStep) -> String {
    if let Some(weight) = step.set_weight {
        return format!("setWeight: {weight}");
    }
    if let Some(pause) = &step.pause {
        return match &pause.duration {
            Some(duration) => format!("pause: {}", int_or_string(duration)),
            None => "pause".into(),
        };
    }
    if step.experiment.is_some() {
        return "experiment".into();
    }
    if step.analysis.is_some() {
        return "analysis".into();
    }
    if let Some(scale) = &step.set_canary_scale {
        if let Some(weight) = scale.weight {
            return format!("setCanaryScale{{weight: {weight}}}");
        }
        if scale.match_traffic_weight == Some(true) {
            return "setCanaryScale{matchTrafficWeight: true}".into();
        }
        if let Some(replicas) = scale.replicas {
            return format!("setCanaryScale{{replicas: {replicas}}}");
        }
    }
    "invalid".into()
}

fn int_or_string(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match value {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        RolloutPause, RolloutSpec, RolloutStatus, RolloutStrategy, RolloutTrafficRouting,
    };

    fn rollout(steps: Vec<CanaryStep>, index: Option<i32>) -> Rollout {
        let mut r = Rollout::new(
            "r",
            RolloutSpec {
                strategy: Some(RolloutStrategy {
                    canary: Some(CanaryStrategy {
                        steps: Some(steps),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        r.status = Some(RolloutStatus {
            current_step_index: index,
            stable_rs: Some("stable".into()),
            current_pod_hash: Some("canary".into()),
            ..Default::default()
        });
        r
    }

    fn weight(w: i32) -> CanaryStep {
        CanaryStep {
            set_weight: Some(w),
            ..Default::default()
        }
    }

    fn pause() -> CanaryStep {
        CanaryStep {
            pause: Some(RolloutPause::default()),
            ..Default::default()
        }
    }

    #[test]
    fn current_set_weight_like_argo() {
        let r = rollout(vec![weight(10), pause()], Some(1));
        assert_eq!(current_set_weight(&r, false), 10);
        assert_eq!(current_set_weight(&r, true), 0);
        let r = rollout(vec![weight(10), pause()], Some(2));
        assert_eq!(current_set_weight(&r, false), 100);
        let r = rollout(vec![pause(), weight(10)], Some(0));
        assert_eq!(current_set_weight(&r, false), 0);
    }

    #[test]
    fn set_canary_scale_needs_traffic_routing() {
        let scale = CanaryStep {
            set_canary_scale: Some(SetCanaryScale {
                replicas: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = rollout(vec![weight(10), scale], Some(1));
        assert_eq!(canary_replicas_or_weight(&r, false), (None, 10));
        r.spec
            .strategy
            .as_mut()
            .unwrap()
            .canary
            .as_mut()
            .unwrap()
            .traffic_routing = Some(RolloutTrafficRouting::default());
        assert_eq!(canary_replicas_or_weight(&r, false), (Some(5), 0));
        assert_eq!(
            canary_replicas_or_weight(&r, true),
            (None, 0),
            "an abort drops the explicit scale"
        );
        r.status.as_mut().unwrap().promote_full = Some(true);
        assert_eq!(canary_replicas_or_weight(&r, false), (None, 100));
    }

    #[test]
    fn steps_are_described_like_argo() {
        assert_eq!(describe(&weight(20)), "setWeight: 20");
        assert_eq!(describe(&pause()), "pause");
        let timed = CanaryStep {
            pause: Some(RolloutPause {
                duration: Some(
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("30s".into()),
                ),
            }),
            ..Default::default()
        };
        assert_eq!(describe(&timed), "pause: 30s");
    }
}
