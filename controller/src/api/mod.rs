//! The `argoproj.io/v1alpha1` workload kinds, field for field as Argo Rollouts defines them:
//! `Rollout` (spec, strategies, traffic routing, status) and `Experiment` (types only).
//! The analysis kinds live in [`ramp_analysis::api`] and are re-exported here.

mod experiment;
mod rollout;
mod status;
mod traffic;
mod values;

pub use experiment::*;
pub use ramp_analysis::api::*;
pub use rollout::*;
pub use status::*;
pub use traffic::*;
pub use values::*;
