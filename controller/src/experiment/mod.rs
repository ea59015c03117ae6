//! Experiments: ReplicaSets run side by side for a while, with analysis, as Argo Rollouts
//! runs them — standalone, or as a canary `experiment` step.
//!
//! ```text
//!  Experiment ──▶ plan.rs (pure)  templates → one ReplicaSet each (`<experiment>-<template>`),
//!                                 optional Service, duration, progress deadline, scale-down
//!                                 delay; analyses → AnalysisRuns; phase and conditions
//!            ──▶ controller.rs    watches, gather, apply (ReplicaSets, Services, runs, status)
//!  Rollout step ─▶ step.rs (pure)  the Experiment a canary's `experiment` step runs, its
//!                                 verdict (abort, pause, next step), terminate on abort
//! ```
//!
//! The AnalysisRuns an Experiment creates are measured by the same runner as a Rollout's.

pub mod controller;
pub mod plan;
pub mod step;

#[cfg(test)]
mod tests;

/// Annotation on an Experiment's ReplicaSets and Services naming the Experiment.
pub const EXPERIMENT_NAME_ANNOTATION: &str = "experiment.argoproj.io/experiment-name";
/// Annotation on an Experiment's ReplicaSets and Services naming the template.
pub const TEMPLATE_NAME_ANNOTATION: &str = "experiment.argoproj.io/experiment-template-name";
