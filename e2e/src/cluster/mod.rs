//! The local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager built
//! from Debian's source package, plus the kubelet simulator, on random loopback ports.
//!
//! - [`TestCluster::start`] starts a private cluster; dropping it stops every process and removes
//!   its data (see [`process`] for how children die even when the test process is killed).
//! - [`for_test`] gives a test a client and a fresh namespace on the shared cluster
//!   (`RAMP_E2E_KUBECONFIG`) or on a private cluster started once per test binary.
//! - [`binaries`] builds and caches the binaries.
//!
//! What the cluster is, exactly:
//! - kube-apiserver v1.20.2 with `--authorization-mode=Node,RBAC`, a static token file (an admin
//!   user in `system:masters`, plus identities for the controller manager and the simulator), a
//!   TLS serving certificate from the cluster's own CA, service-account signing keys and
//!   `--service-account-issuer` (so the TokenRequest API mints tokens), the default admission
//!   plugins, and optionally `--watch-cache=false`.
//! - kube-controller-manager with the controllers for Deployments, ReplicaSets,
//!   ReplicationControllers, StatefulSets, DaemonSets, Jobs, garbage collection, namespaces,
//!   endpoints, service accounts and their tokens, node lifecycle, disruption budgets, resource
//!   quotas, pod GC, cluster-role aggregation and the root CA ConfigMap. No leader election, client
//!   QPS 1000 so it never throttles itself during benchmarks.
//! - etcd 3.4 with its data on tmpfs (`/dev/shm`) when available.
//! - no kube-scheduler and no kubelet: the [`crate::kubelet`] simulator does both jobs.

pub mod binaries;
pub mod duration;
pub mod etcd;
pub mod kubeconfig;
pub mod pki;
pub mod process;
mod shared;
mod test_cluster;

use std::path::PathBuf;
use std::time::Duration;

pub use binaries::KubeBinaries;
pub use duration::{format_duration, parse_duration};
pub use shared::{
    EXTERNAL_KUBECONFIG_ENV, TestEnv, eventually, external_kubeconfig, for_test, private_cluster,
};
pub use test_cluster::{StartTimings, TestCluster};

use crate::faults::FaultSpec;

/// How to start a [`TestCluster`]. `ClusterOptions::default()` is what tests normally want.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Delay between a pod starting and becoming Ready, unless the pod's
    /// `ramp.e2e/ready-after` annotation says otherwise. Default 0.
    pub pod_ready_after: Duration,
    /// Run the kubelet simulator (default true). Without it pods stay Pending.
    pub simulator: bool,
    /// Number of simulated nodes (default 1: `ramp-sim-node`).
    pub nodes: usize,
    /// `--watch-cache` of the API server (default true). Off, watches are served from etcd, so an
    /// [`TestCluster::compact_etcd`] makes old resourceVersions answer `410 Gone`.
    pub watch_cache: bool,
    /// Keep etcd data, keys and logs in this directory across runs (the playground). None: a
    /// fresh temporary directory, removed on drop.
    pub data_dir: Option<PathBuf>,
    /// Start a fault proxy in front of the API server ([`TestCluster::fault_proxy`]).
    pub faults: Option<FaultSpec>,
    /// Extra `--flag=value` arguments for kube-apiserver.
    pub extra_apiserver_args: Vec<String>,
    /// Build the binaries if the cache is incomplete (default true). False: fail instead.
    pub build_if_missing: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            pod_ready_after: Duration::ZERO,
            simulator: true,
            nodes: 1,
            watch_cache: true,
            data_dir: None,
            faults: None,
            extra_apiserver_args: Vec::new(),
            build_if_missing: true,
        }
    }
}

/// Everything that can go wrong starting, using or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("building the Kubernetes binaries: {0}")]
    Build(String),
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("generating the cluster's keys and certificates: {0}")]
    Pki(String),
    #[error("{component} exited ({status}); last lines of {log}:\n{log_tail}")]
    Exited {
        component: &'static str,
        status: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error(
        "{component} was not ready after {waited:?}: {last_error}; last lines of {log}:\n{log_tail}"
    )]
    NotReady {
        component: &'static str,
        waited: Duration,
        last_error: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("etcd {url}: {message}")]
    Etcd { url: String, message: String },
    #[error("kubelet simulator: {0}")]
    Simulator(#[from] crate::kubelet::SimulatorError),
    #[error("fault proxy: {0}")]
    Faults(#[from] crate::faults::FaultError),
    #[error("{0}")]
    Failed(String),
}

impl ClusterError {
    /// Short, stable name of the failing stage (for logs and metrics labels).
    pub fn category(&self) -> &'static str {
        match self {
            ClusterError::Build(_) => "build",
            ClusterError::Io { .. } => "io",
            ClusterError::Spawn { .. } => "spawn",
            ClusterError::Pki(_) => "pki",
            ClusterError::Exited { .. } => "exited",
            ClusterError::NotReady { .. } => "not_ready",
            ClusterError::Kubeconfig { .. } => "kubeconfig",
            ClusterError::Kube { .. } => "kube",
            ClusterError::Etcd { .. } => "etcd",
            ClusterError::Simulator(_) => "simulator",
            ClusterError::Faults(_) => "faults",
            ClusterError::Failed(_) => "failed",
        }
    }
}

pub(crate) fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Kube { what, source }
}
