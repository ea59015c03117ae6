//! Pause and abort bookkeeping of one reconciliation: reasons to add or remove, whether to
//! clear every pause, abort or retry; folded into `status.pauseConditions`,
//! `status.controllerPause`, `status.abort` and `status.abortedAt` at the end (Argo's
//! `pauseContext`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::conditions::truncate_to_second;
use crate::api::{PauseCondition, RolloutStatus};

/// Pause reasons Argo Rollouts writes.
pub const CANARY_PAUSE_STEP: &str = "CanaryPauseStep";
pub const INCONCLUSIVE_ANALYSIS: &str = "InconclusiveAnalysisRun";
pub const INCONCLUSIVE_EXPERIMENT: &str = "InconclusiveExperiment";
pub const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";

/// Pause and abort decisions taken while planning.
#[derive(Clone, Debug, Default)]
pub struct PauseContext {
    add: Vec<&'static str>,
    remove: Vec<&'static str>,
    clear: bool,
    add_abort: bool,
    remove_abort: bool,
    /// Why the rollout aborted (an AnalysisRun's message, a deadline).
    pub abort_message: Option<String>,
}

impl PauseContext {
    /// Whether the rollout is (or is about to be) aborted, given the observed `status.abort`.
    pub fn is_aborted(&self, status_abort: bool) -> bool {
        !self.remove_abort && (self.add_abort || status_abort)
    }

    pub fn has_added_pause(&self) -> bool {
        !self.add.is_empty()
    }

    pub fn add_abort(&mut self, message: impl Into<String>) {
        self.add_abort = true;
        self.abort_message = Some(message.into());
    }

    pub fn remove_abort(&mut self) {
        self.remove_abort = true;
    }

    pub fn add_pause(&mut self, reason: &'static str) {
        self.add.push(reason);
    }

    pub fn remove_pause(&mut self, reason: &'static str) {
        self.remove.push(reason);
    }

    pub fn clear_pauses(&mut self) {
        self.clear = true;
    }

    /// Writes the pause and abort fields of `new` from the previous status and the decisions.
    pub fn apply(&self, previous: &RolloutStatus, new: &mut RolloutStatus, now: Timestamp) {
        let now = Time(truncate_to_second(now));
        // An abort keeps its original time, or every reconcile would rewrite it.
        let aborted_at = previous.aborted_at.clone().unwrap_or_else(|| now.clone());
        if self.add_abort || (!self.remove_abort && previous.abort == Some(true)) {
            new.abort = Some(true);
            new.aborted_at = Some(aborted_at);
            return;
        }
        new.abort = None;
        new.aborted_at = None;
        if self.clear {
            return;
        }
        let mut controller_pause = previous.controller_pause.unwrap_or(false);
        let existing = previous.pause_conditions.as_deref().unwrap_or_default();
        let mut conditions: Vec<PauseCondition> = existing
            .iter()
            .filter(|c| !self.remove.contains(&c.reason.as_str()))
            .cloned()
            .collect();
        for reason in &self.add {
            if !existing.iter().any(|c| c.reason == *reason)
                && !conditions.iter().any(|c| c.reason == *reason)
            {
                conditions.push(PauseCondition {
                    reason: (*reason).to_string(),
                    start_time: now.clone(),
                });
                controller_pause = true;
            }
        }
        if conditions.is_empty() {
            return;
        }
        new.controller_pause = Some(controller_pause);
        new.pause_conditions = Some(conditions);
    }
}

/// The pause condition with this reason, if the rollout has one.
pub fn pause_condition<'a>(status: &'a RolloutStatus, reason: &str) -> Option<&'a PauseCondition> {
    status
        .pause_conditions
        .iter()
        .flatten()
        .find(|c| c.reason == reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn adding_a_pause_sets_controller_pause() {
        let mut ctx = PauseContext::default();
        ctx.add_pause(CANARY_PAUSE_STEP);
        let mut new = RolloutStatus::default();
        ctx.apply(&RolloutStatus::default(), &mut new, at(5));
        assert_eq!(new.controller_pause, Some(true));
        assert_eq!(
            new.pause_conditions.as_ref().unwrap()[0].reason,
            CANARY_PAUSE_STEP
        );
        assert_eq!(
            new.pause_conditions.as_ref().unwrap()[0].start_time.0,
            at(5)
        );
        assert_eq!(new.abort, None);
    }

    #[test]
    fn existing_pauses_keep_their_start_time() {
        let previous = RolloutStatus {
            controller_pause: Some(true),
            pause_conditions: Some(vec![PauseCondition {
                reason: CANARY_PAUSE_STEP.into(),
                start_time: Time(at(1)),
            }]),
            ..Default::default()
        };
        let mut ctx = PauseContext::default();
        ctx.add_pause(CANARY_PAUSE_STEP);
        let mut new = RolloutStatus::default();
        ctx.apply(&previous, &mut new, at(9));
        assert_eq!(new.pause_conditions.unwrap()[0].start_time.0, at(1));

        let mut ctx = PauseContext::default();
        ctx.remove_pause(CANARY_PAUSE_STEP);
        let mut new = RolloutStatus::default();
        ctx.apply(&previous, &mut new, at(9));
        assert_eq!(
            new.pause_conditions, None,
            "removing the last pause clears the list"
        );
        assert_eq!(new.controller_pause, None);
    }

    #[test]
    fn abort_wins_and_keeps_its_time() {
        let previous = RolloutStatus {
            abort: Some(true),
            aborted_at: Some(Time(at(3))),
            ..Default::default()
        };
        let mut new = RolloutStatus::default();
        PauseContext::default().apply(&previous, &mut new, at(9));
        assert_eq!(
            (new.abort, new.aborted_at.map(|t| t.0)),
            (Some(true), Some(at(3)))
        );

        let mut retry = PauseContext::default();
        retry.remove_abort();
        assert!(!retry.is_aborted(true));
        let mut new = RolloutStatus::default();
        retry.apply(&previous, &mut new, at(9));
        assert_eq!((new.abort, new.aborted_at), (None, None));

        let mut abort = PauseContext::default();
        abort.add_abort("metric failed");
        assert!(abort.is_aborted(false));
        let mut new = RolloutStatus::default();
        abort.apply(&RolloutStatus::default(), &mut new, at(9));
        assert_eq!(new.aborted_at.map(|t| t.0), Some(at(9)));
    }
}
