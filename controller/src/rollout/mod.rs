//! The Rollout controller: Argo Rollouts' state machine for the canary and blue-green
//! strategies, as a pipeline of one stage per file.
//!
//! ```text
//!  gather (observe.rs, controller.rs)  ── reflector caches → Observed      (no API calls)
//!  validate (lifecycle.rs)             ── spec and references → InvalidSpec (pure)
//!  plan (canary.rs or bluegreen.rs)    ── Observed, now → Plan             (pure)
//!  apply (apply.rs)                    ── traffic first, then objects, then one status patch
//!  record (events.rs, metrics.rs)      ── Events and metrics, off the critical path
//! ```
//!
//! The shared stages — ReplicaSets (`replicasets.rs`), Services (`services.rs`), analysis
//! (`analysis.rs`), status, conditions and phase — take a [`plan::Planner`] and know no
//! strategy; `canary.rs` is the canary strategy on top of them, and `bluegreen.rs` the
//! blue-green strategy beside it (`lifecycle.rs` dispatches on `spec.strategy`).
//!
//! All state lives in the Kubernetes objects (status, ReplicaSet annotations): a restarted
//! controller resumes mid-rollout from them alone.

pub mod analysis;
pub mod apply;
pub mod bluegreen;
pub mod canary;
pub mod conditions;
pub mod controller;
pub mod ephemeral;
pub mod events;
pub mod gather;
pub mod hash;
pub mod lifecycle;
pub mod names;
pub mod observe;
pub mod pause;
pub mod phase;
pub mod plan;
pub mod replicas;
pub mod replicasets;
pub mod restart;
pub mod selector;
pub mod services;
pub mod status;
pub mod steps;
pub mod template;
pub mod weights;

#[cfg(test)]
mod tests;

pub use lifecycle::plan;
pub use observe::Observed;
pub use plan::Plan;
