//! The `argoproj.io/v1alpha1` analysis kinds, field for field as Argo Rollouts defines them:
//! `AnalysisTemplate`, `ClusterAnalysisTemplate` and `AnalysisRun`, plus the argument and
//! metadata types that Rollouts and Experiments share with them.
//!
//! Every optional field is an `Option` that is skipped when absent, so a manifest read and
//! written back is the same JSON: nothing dropped, nothing invented. Defaults Argo applies
//! (`consecutiveErrorLimit` 4, datadog `interval` 5m, …) are applied where the value is
//! used, never written into the object.

mod common;
mod metric;
mod run;
mod template;

pub use common::*;
pub use metric::*;
pub use run::*;
pub use template::*;

/// The API group every Ramp kind belongs to (shared with Argo Rollouts and Argo CD).
pub const GROUP: &str = "argoproj.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";
