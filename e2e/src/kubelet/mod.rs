//! The kubelet simulator: the only simulated part of the test cluster (there are no containers
//! to run). Modelled on kwok. It is also the scheduler, since the cluster has no kube-scheduler.
//!
//! ```text
//!  pods watch ──▶ PodView cache ──▶ WorkQueue ──▶ N workers ──▶ plan (pure) ──▶ API call
//!                      ▲                ▲                          │ wake_in
//!                      └ responses      └──── timer task ◀─────────┘
//! ```
//!
//! One cluster-wide pod watch feeds a small per-pod view; a de-duplicating work queue hands pods
//! to a few workers; each asks [`lifecycle::plan`] what a kubelet would do now and does it; a
//! single timer task wakes pods whose state changes with time (ready delays, job ends, restart
//! back-off). No per-pod polling, so thousands of pods cost one watch and a few hundred bytes each.
//!
//! # Conventions (what tests can rely on)
//!
//! **Nodes.** `ramp-sim-node` (or `ramp-sim-node-0…N-1` with several), labelled
//! `ramp.e2e/simulated=true`, `kubernetes.io/hostname`, `kubernetes.io/os=linux`; Ready, with
//! 1000 CPUs, 1 Ti memory and a million pod slots; the Lease in `kube-node-lease` is renewed
//! every 10 s and the status every 60 s, so nothing is ever evicted.
//!
//! **Scheduling.** Every pod without `spec.nodeName` is bound (Binding subresource) at once to a
//! simulated node chosen by its uid; a required node affinity on `metadata.name` (DaemonSet
//! pods) is honoured, and a pod asking for another node stays Pending. Node selectors, taints,
//! resources and priorities are ignored.
//!
//! **Running.** A bound pod becomes `Running` at once with a unique pod IP from 10.128.0.0/9
//! (`status.podIP`, `podIPs`), `hostIP` of its node (172.18.0.x), `startTime`, conditions
//! `Initialized`, `PodScheduled`, `ContainersReady`, `Ready`, and `containerStatuses`. Init
//! containers are reported as completed at once.
//!
//! **Readiness.** Each running container becomes ready `ready_after` after it (re)started:
//! the simulator's default (`--pod-ready-after`, 0 by default), or the pod's annotation
//! `ramp.e2e/ready-after: 2s` (`500ms`, `1m30s`…; an unreadable value is logged and ignored).
//! The pod is Ready when all its containers are. Never Ready:
//! - a container whose image name or tag ends in `-unready` (`demo:v2-unready`, `demo-unready`);
//! - any pod annotated `ramp.e2e/ready: "false"`; removing or changing the annotation lets it
//!   become Ready (the annotation is watched), which lets a test flip readiness mid-scenario.
//!
//! **Crash loops.** A container whose image name or tag ends in `-crashloop` exits with code 1
//! as soon as it starts. Under `restartPolicy: Always` (and `OnFailure`) it waits in
//! `CrashLoopBackOff`, restarts, exits again… `restartCount` rises; the back-off starts at 1 s
//! and doubles up to 5 min (the kubelet's starts at 10 s; scaled down so tests see restarts).
//!
//! **Commands.** A container's `command` + `args` decide when it ends (see [`program`]):
//! `exit N`, `true`, `false`, `echo`, `sleep N` (then exit 0), and `sh -c '…'` scripts made of
//! those (with `;`, `&&`, `||`, `set -e`), after the kubelet's `$(VAR)` expansion from the
//! container's `env` values. Anything else runs until the pod is deleted. How the end
//! plays out depends on `restartPolicy`: `Never` → the pod ends `Succeeded` (all containers
//! exited 0) or `Failed`; `OnFailure` → exit 0 completes, other codes restart with back-off;
//! `Always` → every exit restarts with back-off. So a Job with `exit 0` completes, and a Job with
//! `exit 1` and `restartPolicy: Never` fails once its `backoffLimit` is used up.
//!
//! **Deletion.** A pod on a simulated node with `metadata.deletionTimestamp` is deleted with
//! grace period 0 (uid precondition), as a kubelet confirms a stopped pod; finalizers are left
//! to their owners, as a kubelet would.

pub mod lifecycle;
pub mod node;
pub mod program;
mod queue;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use lifecycle::{LifecycleConfig, PodAction, PodView, Track};
pub use lifecycle::{READY_AFTER_ANNOTATION, READY_ANNOTATION};
pub use node::SIMULATED_NODE_LABEL;
use queue::{Key, TimerRequest, WorkQueue};

/// The default simulated node's name.
pub const DEFAULT_NODE_NAME: &str = "ramp-sim-node";

/// How to run the simulator.
#[derive(Clone, Debug)]
pub struct SimulatorOptions {
    /// Number of nodes: 1 is `ramp-sim-node`, more are `ramp-sim-node-0…`.
    pub nodes: usize,
    /// Default delay from a container start to Ready.
    pub pod_ready_after: Duration,
    /// First CrashLoopBackOff delay (doubles per restart).
    pub crash_backoff: Duration,
    /// Longest CrashLoopBackOff delay.
    pub crash_backoff_cap: Duration,
    /// Concurrent API calls (binding, status, deletion).
    pub workers: usize,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            nodes: 1,
            pod_ready_after: Duration::ZERO,
            crash_backoff: Duration::from_secs(1),
            crash_backoff_cap: Duration::from_secs(300),
            workers: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{0}")]
    Internal(String),
}

/// Counters of what the simulator did.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    pub bindings: AtomicU64,
    pub status_patches: AtomicU64,
    pub deletions: AtomicU64,
    pub api_errors: AtomicU64,
}

/// A running simulator; dropping it stops it (the nodes stay registered).
pub struct Simulator {
    nodes: Vec<String>,
    stats: Arc<SimulatorStats>,
    queue: Arc<WorkQueue>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Names of `count` simulated nodes.
pub fn node_names(count: usize) -> Vec<String> {
    if count <= 1 {
        vec![DEFAULT_NODE_NAME.to_string()]
    } else {
        (0..count)
            .map(|i| format!("{DEFAULT_NODE_NAME}-{i}"))
            .collect()
    }
}

impl Simulator {
    /// Registers the nodes (Ready, with leases), then starts watching pods. Tasks run on the
    /// current tokio runtime.
    pub async fn start(
        client: kube::Client,
        options: SimulatorOptions,
    ) -> Result<Self, SimulatorError> {
        let nodes = node_names(options.nodes);
        let registered = Timestamp::now();
        node::register(&client, &nodes, registered).await?;
        let stats = Arc::new(SimulatorStats::default());
        let shared = Arc::new(Shared {
            client: client.clone(),
            nodes: nodes.clone(),
            config: LifecycleConfig {
                ready_after: options.pod_ready_after,
                crash_backoff: options.crash_backoff,
                crash_backoff_cap: options.crash_backoff_cap,
            },
            pods: Mutex::new(PodTable::default()),
            queue: Arc::new(WorkQueue::default()),
            stats: stats.clone(),
            timers: Mutex::new(None),
        });
        let (timer_sender, timer_receiver) = mpsc::unbounded_channel();
        *shared.timers.lock().unwrap_or_else(PoisonError::into_inner) = Some(timer_sender);
        let mut tasks = vec![
            tokio::spawn(node::heartbeat(client, nodes.clone(), registered)),
            tokio::spawn(queue::run_timers(shared.queue.clone(), timer_receiver)),
            tokio::spawn(watch_pods(shared.clone())),
        ];
        for _ in 0..options.workers.max(1) {
            tasks.push(tokio::spawn(work(shared.clone())));
        }
        Ok(Simulator {
            nodes,
            stats,
            queue: shared.queue.clone(),
            tasks,
        })
    }

    /// The simulated nodes' names.
    pub fn node_names(&self) -> &[String] {
        &self.nodes
    }

    /// What it did so far.
    pub fn stats(&self) -> &SimulatorStats {
        &self.stats
    }

    /// Pods waiting for a worker right now.
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Stops all its tasks.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Default)]
struct PodTable {
    pods: HashMap<Key, PodEntry>,
    /// Keys seen since the watch (re)started listing; the rest are gone.
    relisting: Option<HashSet<Key>>,
    ips: IpPool,
}

struct PodEntry {
    view: PodView,
    track: Option<Track>,
}

/// Unique pod IPs from 10.128.0.0/9, never handed out twice while the simulator runs.
#[derive(Default)]
struct IpPool {
    used: HashSet<u32>,
    next: u32,
}

const POD_NETWORK: u32 = u32::from_be_bytes([10, 128, 0, 0]);
const POD_NETWORK_SIZE: u32 = 1 << 23;

impl IpPool {
    fn mark_used(&mut self, ip: Ipv4Addr) {
        self.used.insert(u32::from(ip));
    }

    fn allocate(&mut self) -> Ipv4Addr {
        loop {
            self.next = (self.next % (POD_NETWORK_SIZE - 2)) + 1;
            let candidate = POD_NETWORK + self.next;
            if self.used.insert(candidate) {
                return Ipv4Addr::from(candidate);
            }
        }
    }
}

struct Shared {
    client: kube::Client,
    nodes: Vec<String>,
    config: LifecycleConfig,
    pods: Mutex<PodTable>,
    queue: Arc<WorkQueue>,
    stats: Arc<SimulatorStats>,
    timers: Mutex<Option<mpsc::UnboundedSender<TimerRequest>>>,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, PodTable> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn timer(&self, request: TimerRequest) {
        if let Some(sender) = self
            .timers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // The receiver only goes away when the simulator stops.
            let _ = sender.send(request);
        }
    }

    /// Records a newer version of a pod; an older one (a watch event behind a response we
    /// already applied) is ignored.
    fn observe(&self, view: PodView) -> Key {
        let key: Key = Arc::from(view.key());
        let mut table = self.table();
        if let Some(ip) = view.pod_ip {
            table.ips.mark_used(ip);
        }
        if let Some(seen) = table.relisting.as_mut() {
            seen.insert(key.clone());
        }
        match table.pods.get_mut(&key) {
            Some(entry) if entry.view.uid == view.uid => {
                let newer = match (entry.view.resource_version, view.resource_version) {
                    (Some(have), Some(got)) => got >= have,
                    _ => true,
                };
                if newer {
                    entry.view = view;
                }
            }
            _ => {
                table
                    .pods
                    .insert(key.clone(), PodEntry { view, track: None });
            }
        }
        key
    }

    fn forget(&self, key: &Key) {
        self.table().pods.remove(key);
        self.timer(TimerRequest::Cancel(key.clone()));
    }
}

async fn watch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => shared.table().relisting = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                if let Some(view) = PodView::from_pod(&pod) {
                    if let Some(error) = &view.ready_after_error {
                        tracing::warn!(pod = %view.key(), %error, "ignoring the annotation");
                    }
                    let key = shared.observe(view);
                    shared.queue.add(key);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<Key> = {
                    let mut table = shared.table();
                    let seen = table.relisting.take().unwrap_or_default();
                    table
                        .pods
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect()
                };
                for key in gone {
                    shared.forget(&key);
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let key: Key = Arc::from(format!(
                    "{}/{}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any()
                ));
                shared.forget(&key);
            }
            Err(error) => tracing::warn!(%error, "pod watch failed; retrying with back-off"),
        }
    }
}

async fn work(shared: Arc<Shared>) {
    loop {
        let key = shared.queue.next().await;
        if let Err(error) = process(&shared, &key).await {
            shared.stats.api_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pod = %key, %error, "simulated kubelet action failed; retrying in 1s");
            shared.timer(TimerRequest::Wake(key.clone(), Duration::from_secs(1)));
        }
        shared.queue.done(&key);
    }
}

/// Plans and acts on one pod until nothing is left to do right now (at most a few steps:
/// bind, start, patch).
async fn process(shared: &Shared, key: &Key) -> Result<(), SimulatorError> {
    for _ in 0..4 {
        let now = Instant::now();
        let (view, plan) = {
            let table = shared.table();
            let Some(entry) = table.pods.get(key) else {
                return Ok(());
            };
            let plan = lifecycle::plan(
                &entry.view,
                entry.track.as_ref(),
                &shared.nodes,
                &shared.config,
                now,
            );
            (entry.view.clone(), plan)
        };
        if let Some(after) = plan.wake_in {
            shared.timer(TimerRequest::Wake(key.clone(), after));
        }
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &view.namespace);
        match plan.action {
            PodAction::Nothing => return Ok(()),
            PodAction::Bind { node } => {
                let binding = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": { "name": view.name, "uid": view.uid },
                    "target": { "apiVersion": "v1", "kind": "Node", "name": node },
                });
                match api
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &view.name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {
                        shared.stats.bindings.fetch_add(1, Ordering::Relaxed);
                        // Go on at once rather than wait for the watch to show the binding.
                        if let Some(entry) = shared.table().pods.get_mut(key)
                            && entry.view.uid == view.uid
                        {
                            entry.view.node_name = Some(node);
                        }
                    }
                    Err(kube::Error::Api(status))
                        if status.is_not_found() || status.is_conflict() =>
                    {
                        return Ok(());
                    }
                    Err(source) => {
                        return Err(SimulatorError::Kube {
                            what: format!("binding pod {key}"),
                            source,
                        });
                    }
                }
            }
            PodAction::Start => {
                let mut table = shared.table();
                let table = &mut *table;
                let Some(entry) = table.pods.get_mut(key) else {
                    return Ok(());
                };
                entry.track = Some(track_for(&entry.view, &mut table.ips, now));
            }
            PodAction::PatchStatus(status) => {
                let patch = serde_json::json!({ "status": status });
                match api
                    .patch_status(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(pod) => {
                        shared.stats.status_patches.fetch_add(1, Ordering::Relaxed);
                        if let Some(view) = PodView::from_pod(&pod) {
                            shared.observe(view);
                        }
                        return Ok(());
                    }
                    Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
                    Err(source) => {
                        return Err(SimulatorError::Kube {
                            what: format!("updating status of pod {key}"),
                            source,
                        });
                    }
                }
            }
            PodAction::ConfirmDeletion => {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(view.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&view.name, &params).await {
                    Ok(_) => {
                        shared.stats.deletions.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(kube::Error::Api(status))
                        if status.is_not_found() || status.is_conflict() =>
                    {
                        return Ok(());
                    }
                    Err(source) => {
                        return Err(SimulatorError::Kube {
                            what: format!("deleting pod {key}"),
                            source,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// A new track for a pod; a pod that already has an IP and start time (the simulator was
/// restarted) keeps them.
fn track_for(view: &PodView, ips: &mut IpPool, now: Instant) -> Track {
    let wall_now = Timestamp::now();
    match (view.pod_ip, view.start_time) {
        (Some(ip), Some(started_wall)) => {
            let age = wall_now
                .duration_since(started_wall)
                .max(SignedDuration::ZERO);
            let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
            Track {
                started: now.checked_sub(age).unwrap_or(now),
                started_wall,
                ip,
            }
        }
        _ => Track {
            started: now,
            started_wall: wall_now,
            ip: ips.allocate(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_unique_and_skip_used_ones() {
        let mut pool = IpPool::default();
        pool.mark_used(Ipv4Addr::new(10, 128, 0, 2));
        let a = pool.allocate();
        let b = pool.allocate();
        assert_eq!(a, Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(b, Ipv4Addr::new(10, 128, 0, 3));
        let many: HashSet<Ipv4Addr> = (0..1000).map(|_| pool.allocate()).collect();
        assert_eq!(many.len(), 1000);
        assert!(!many.contains(&a) && !many.contains(&b));
    }

    #[test]
    fn node_names_for_one_and_many() {
        assert_eq!(node_names(1), vec!["ramp-sim-node"]);
        assert_eq!(
            node_names(3),
            vec!["ramp-sim-node-0", "ramp-sim-node-1", "ramp-sim-node-2"]
        );
    }
}
