//! The reliability suite's machinery: the controller as a process that can be SIGKILLed
//! ([`process`]), a recorder of every version of a Rollout's objects and the invariants checked
//! on it ([`history`]), and crash-restart trials ([`trial`]) shared by the
//! `reliability_*` tests and `bench crash`.
//!
//! The invariants, checked in every scenario:
//! - traffic (a Service selector or a weight) never goes to a ReplicaSet without available pods;
//! - a rollout ends as it ends without the fault, with no orphaned ReplicaSets or
//!   AnalysisRuns and no duplicate AnalysisRun for one step;
//! - no status field is reset.

pub mod gitops;
pub mod history;
pub mod process;
pub mod router;
pub mod trial;
