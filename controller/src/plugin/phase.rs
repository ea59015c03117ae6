//! The status a client shows for a Rollout. The controller writes `status.phase` and
//! `status.message`; a client must not trust them while the controller has not yet seen the
//! latest spec (`status.observedGeneration` behind `metadata.generation`) or a promotion it
//! has not yet acted on (`status.controllerPause` with no pause conditions left). Rollouts
//! written by controllers that set no phase get it computed from spec and status.

use ramp_analysis::api::AnalysisPhase;

use super::style::Tone;
use crate::api::{Rollout, RolloutPhase};
use crate::rollout::conditions::INVALID_SPEC;
use crate::rollout::names::WORKLOAD_GENERATION_ANNOTATION;

/// The phase and message to show for `rollout`.
pub fn displayed_phase(rollout: &Rollout) -> (RolloutPhase, String) {
    let status = rollout.status.clone().unwrap_or_default();
    if !generation_observed(
        rollout.metadata.generation,
        status.observed_generation.as_deref(),
    ) {
        return (
            RolloutPhase::Progressing,
            "waiting for rollout spec update to be observed".into(),
        );
    }
    if status.controller_pause == Some(true)
        && status.pause_conditions.as_ref().is_none_or(Vec::is_empty)
    {
        return (
            RolloutPhase::Progressing,
            "waiting for rollout to unpause".into(),
        );
    }
    if rollout.spec.workload_ref.is_some() && !workload_generation_observed(rollout) {
        return (
            RolloutPhase::Progressing,
            "waiting for rollout spec update to be observed for the reference workload".into(),
        );
    }
    match status.phase {
        Some(phase) => (phase, status.message.unwrap_or_default()),
        None => crate::rollout::phase::rollout_phase(&rollout.spec, &status),
    }
}

/// Whether the spec is invalid (the controller set the `InvalidSpec` condition).
pub fn invalid_spec_message(rollout: &Rollout) -> Option<String> {
    rollout
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == INVALID_SPEC && c.status == "True")
        .map(|c| c.message.clone())
}

/// `observedGeneration` is a string (Argo's convention). Values that are not numbers come from
/// old controllers that stored a hash there; they count as observed.
fn generation_observed(generation: Option<i64>, observed: Option<&str>) -> bool {
    let Some(observed) = observed.and_then(|o| o.parse::<i64>().ok()) else {
        return true;
    };
    observed >= generation.unwrap_or(0)
}

fn workload_generation_observed(rollout: &Rollout) -> bool {
    let Some(wanted) = rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WORKLOAD_GENERATION_ANNOTATION))
        .and_then(|g| g.parse::<i64>().ok())
    else {
        return true;
    };
    match rollout
        .status
        .as_ref()
        .and_then(|s| s.workload_observed_generation.as_deref())
        .map(str::parse::<i64>)
    {
        Some(Ok(observed)) => observed == wanted,
        _ => true,
    }
}

/// The tone of a Rollout phase.
pub fn rollout_tone(phase: RolloutPhase) -> Tone {
    match phase {
        RolloutPhase::Healthy => Tone::Ok,
        RolloutPhase::Progressing => Tone::Progressing,
        RolloutPhase::Paused => Tone::Paused,
        RolloutPhase::Degraded => Tone::Bad,
    }
}

/// The tone of an analysis phase (of a run, a metric or a measurement).
pub fn analysis_tone(phase: AnalysisPhase) -> Tone {
    match phase {
        AnalysisPhase::Pending | AnalysisPhase::Running => Tone::Progressing,
        AnalysisPhase::Successful => Tone::Ok,
        AnalysisPhase::Failed => Tone::Bad,
        AnalysisPhase::Error => Tone::Warning,
        AnalysisPhase::Inconclusive => Tone::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::{PauseCondition, RolloutSpec, RolloutStatus};

    fn rollout(generation: i64, status: RolloutStatus) -> Rollout {
        let mut rollout = Rollout::new("web", RolloutSpec::default());
        rollout.metadata.generation = Some(generation);
        rollout.status = Some(status);
        rollout
    }

    #[test]
    fn trusts_the_controller_once_it_saw_the_spec() {
        let status = RolloutStatus {
            observed_generation: Some("3".into()),
            phase: Some(RolloutPhase::Paused),
            message: Some("CanaryPauseStep".into()),
            ..Default::default()
        };
        assert_eq!(
            displayed_phase(&rollout(3, status.clone())),
            (RolloutPhase::Paused, "CanaryPauseStep".into())
        );
        assert_eq!(
            displayed_phase(&rollout(4, status)),
            (
                RolloutPhase::Progressing,
                "waiting for rollout spec update to be observed".into()
            )
        );
    }

    #[test]
    fn a_promotion_not_yet_acted_on_is_progressing() {
        let status = RolloutStatus {
            observed_generation: Some("1".into()),
            controller_pause: Some(true),
            pause_conditions: None,
            phase: Some(RolloutPhase::Paused),
            ..Default::default()
        };
        assert_eq!(
            displayed_phase(&rollout(1, status.clone())).1,
            "waiting for rollout to unpause"
        );
        let still_paused = RolloutStatus {
            pause_conditions: Some(vec![PauseCondition {
                reason: "CanaryPauseStep".into(),
                start_time: Time(Timestamp::UNIX_EPOCH),
            }]),
            ..status
        };
        assert_eq!(
            displayed_phase(&rollout(1, still_paused)).0,
            RolloutPhase::Paused
        );
    }

    #[test]
    fn non_numeric_observed_generation_counts_as_observed() {
        assert!(generation_observed(Some(5), Some("5d9f8c7b")));
        assert!(generation_observed(Some(5), None));
        assert!(generation_observed(Some(5), Some("6")));
        assert!(!generation_observed(Some(5), Some("4")));
    }

    #[test]
    fn without_a_phase_it_is_computed() {
        let status = RolloutStatus {
            observed_generation: Some("1".into()),
            ..Default::default()
        };
        let mut paused = rollout(1, status);
        paused.spec.paused = Some(true);
        assert_eq!(
            displayed_phase(&paused),
            (RolloutPhase::Paused, "manually paused".into())
        );
    }
}
