//! Ramp's analysis: the AnalysisTemplate and AnalysisRun API types, the condition language,
//! verdict rules, metric providers and the AnalysisRun runner.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod args;
pub mod build;
pub mod duration;
pub mod expr;
pub mod plan;
pub mod progress;
pub mod providers;
pub mod runner;
pub mod schedule;
pub mod settings;
pub mod validate;
pub mod verdict;
pub mod watch;
