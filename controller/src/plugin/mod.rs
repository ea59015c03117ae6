//! What `kubectl ramp` shows and what it writes, as data: the views of Rollouts and
//! AnalysisRuns built from the API objects, their text rendering, and the patches of the
//! mutating commands. The binary (`src/bin/kubectl-ramp/`) only reads the cluster, calls these
//! and prints; the playground's live view reuses the same model, watch and renderer.
//!
//! ```text
//!  Rollout, ReplicaSets, Pods, AnalysisRuns ──► model::RolloutView::build ──► render::rollout
//!        ▲ (live::RolloutWatch: one watch per kind, a snapshot per change)
//!  Rollouts ──► list::RolloutRow ──► list::Table
//!  AnalysisRun ──► analysis::AnalysisRunDetails ──► analysis::render
//!  Rollout (+ ReplicaSets) ──► patch::{promote, abort, retry, pause, restart, undo, set_image}
//!  controller caches ──► metrics::WeightMetrics (the same weights, for the dashboards)
//! ```
//!
//! Everything here except [`live`] is pure: no clock (callers pass `now`), no I/O; [`metrics`]
//! reads caches at scrape time.

pub mod age;
pub mod analysis;
pub mod list;
pub mod live;
pub mod metrics;
pub mod model;
pub mod patch;
pub mod phase;
pub mod pod;
pub mod render;
pub mod style;

pub use model::RolloutView;
pub use style::Style;
