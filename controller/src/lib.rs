//! Ramp: progressive delivery for Kubernetes that speaks the Argo Rollouts API.
//!
//! The library holds the API types, the validation behind `kubectl ramp lint` and the
//! controller's `InvalidSpec` condition, CRD generation, and the controllers themselves.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod crd;
pub mod experiment;
pub mod fieldpath;
pub mod gitops;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod lint;
pub mod manifest;
pub mod metrics;
pub mod plugin;
pub mod rollout;
pub mod run;
pub mod traffic;
pub mod validation;
