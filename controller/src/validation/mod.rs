//! Semantic validation of Ramp's kinds: the rules Argo Rollouts applies beyond the schema
//! (one action per step, weights within range, services that differ, selectors that match
//! their pods, quantities and durations that parse, conditions that parse, …).
//!
//! Pure functions from a typed object to a list of [`FieldError`]s. `kubectl ramp lint`
//! reports them with file and line; the controller puts them in an `InvalidSpec` condition
//! and scales nothing until the spec changes.

mod analysis;
mod experiment;
pub mod names;
mod pod;
pub mod quantity;
mod rollout;

use std::fmt;

pub use analysis::{validate_analysis_run, validate_analysis_template};
pub use experiment::validate_experiment;
pub use pod::{check_pod_template, check_selector, selector_matches};
pub use rollout::validate_rollout;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as Kubernetes writes paths: `spec.strategy.canary.steps[2].setWeight`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The problems found so far.
#[derive(Clone, Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// All problems as one message, for an `InvalidSpec` condition or an Event.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(FieldError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
