//! Ramp's end-to-end test bed: a real Kubernetes control plane on loopback, a kubelet
//! simulator, a fault-injecting proxy and the benchmark harness.
//!
//! ```text
//!   test / playground / bench
//!        │ kube::Client, kubectl (admin token, TLS with the cluster's own CA)
//!        ▼
//!   [faults::FaultProxy] ── optional: latency, 500/429 answers, cut watches, request log
//!        │
//!        ▼
//!   kube-apiserver 1.20.2 ──── etcd 3.4 (tmpfs data dir, random loopback ports)
//!        ▲        ▲
//!        │        └── kube-controller-manager (Deployments, ReplicaSets, Jobs, GC, namespaces,
//!        │                                     endpoints, service accounts, node lifecycle …)
//!        └── kubelet::Simulator (the only simulated part: Node, scheduling, pod lifecycle)
//! ```
//!
//! The API server and controller manager are built from Debian's source package by
//! `scripts/build-kube.sh`, once, into `~/.cache/ramp/kube-1.20.2/` ([`cluster::binaries`]).
//!
//! # Using it from a test
//!
//! ```no_run
//! # async fn example() -> Result<(), ramp_e2e::cluster::ClusterError> {
//! let env = ramp_e2e::cluster::for_test().await?;
//! // env.client(): a kube::Client; env.namespace(): a fresh namespace, deleted on drop;
//! // env.kubectl(): a `kubectl` Command bound to the cluster and the namespace.
//! # Ok(()) }
//! ```
//!
//! With `RAMP_E2E_KUBECONFIG=PATH` every test binary shares the cluster that kubeconfig points at
//! (the project's test command starts one `test-cluster up --kubeconfig PATH` for the whole run);
//! without it, the first `for_test()` in a test binary starts a private cluster that lives until
//! the binary exits. Tests that need what only a private cluster has (etcd compaction, the watch
//! cache switched off) call [`cluster::TestCluster::start`] themselves.
//!
//! # Kubelet simulator conventions
//!
//! Documented in full in [`kubelet`]; in short:
//!
//! | Pod has…                                        | Simulator does…                                  |
//! |-------------------------------------------------|--------------------------------------------------|
//! | no `spec.nodeName`                              | binds it to `ramp-sim-node` (it is the scheduler) |
//! | any container                                   | Running with a unique pod IP (10.128.0.0/9)      |
//! | nothing special                                 | Ready after `--pod-ready-after` (default 0s)     |
//! | annotation `ramp.e2e/ready-after: 2s`           | Ready 2 s after it started instead               |
//! | annotation `ramp.e2e/ready: "false"`            | Running but not Ready while the annotation stays |
//! | image name or tag ending in `-unready`          | Running, never Ready                             |
//! | image name or tag ending in `-crashloop`        | exits 1 at once: CrashLoopBackOff, rising restarts |
//! | command `exit N`, `sleep N`, `sh -c '…'`        | the container ends as that command would         |
//! | `metadata.deletionTimestamp`                    | deleted with grace period 0, as a kubelet confirms |
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod bench;
pub mod cluster;
pub mod faults;
pub mod fixtures;
pub mod kubelet;
pub mod playground;
pub mod reliability;

/// Installs rustls' ring crypto provider for this process. kube and reqwest both need one and
/// panic when none or two are installed; calling this first thing (in `main`, or at the top of a
/// test that builds clients itself) is always safe: a second call is a no-op.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is exactly what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
