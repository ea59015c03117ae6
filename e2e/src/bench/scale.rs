//! `bench scale --rollouts N`: Ramp's footprint and speed with many Rollouts, the figures that
//! matter at 1,000 and 10,000 Rollouts per cluster. The controller runs as its own process
//! (`ramp-controller run`, release build) so its memory and CPU are its own:
//!
//! 1. N canary Rollouts (one replica each) are created and reconciled to Healthy.
//! 2. Steady state: the controller's RSS and CPU, sampled from `/proc` while nothing changes.
//! 3. Resync: the controller is restarted; the time until it has reconciled every Rollout
//!    again (its `rollout_reconcile` histogram count), and the writes that resync issued
//!    (`controller_clientset_k8s_request_total` for create/update/patch/delete; goal 0).
//! 4. Update: all N images are changed at once; the time until every Rollout has reached
//!    step 1 (canary scaled and available, paused), and the API writes per Rollout.
//!
//! 5. Baseline: on a second fresh cluster where Ramp never ran, N one-pod Deployments go
//!    through the same work (created to available, then all images updated at once) by
//!    Kubernetes' own Deployment controller: the cluster's raw cost of the pods and
//!    ReplicaSets an update needs.
//!
//! The other baselines come from Ramp's cluster in the same run: the time the API server takes
//! to accept the N image patches themselves, and to list the N Rollouts.
//!
//! Every run starts both its clusters afresh, so runs are independent samples: none inherits
//! the etcd history, Events or caches of the runs before it (on one shared cluster, each run
//! was slower than the last). The controller's log of each run and phase is kept under
//! `logs/` next to the report, and a wait that gives up reports the namespace's state (Rollouts
//! by phase, ReplicaSets, ready pods) and the controller's (running or not, its last lines).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ramp_controller::api::Rollout;
use serde_json::json;
use tokio::process::{Child, Command};

use super::cluster::{fresh_namespace, timed_start};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::{ClusterOptions, TestCluster};
use crate::fixtures::http::HttpClient;
use crate::fixtures::rollouts::{canary_rollout, healthy, install_rollout_crds};

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// Rollouts in the cluster.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Requests in flight while creating and updating Rollouts.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of steady state over which RSS and CPU are sampled.
    #[arg(long, default_value_t = 10)]
    steady_seconds: u64,
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Kube { what, source }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.to_path_buf();
    move |source| BenchError::Io { what, path, source }
}

/// Builds the release `ramp-controller` binary (a no-op when it is fresh) and returns its path.
pub(super) fn controller_binary() -> Result<PathBuf, BenchError> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "ramp-controller"])
        .current_dir(&workspace)
        .status()
        .map_err(io("running cargo build", &workspace))?;
    if !status.success() {
        return Err(BenchError::Failed(format!(
            "cargo build --release -p ramp-controller failed ({status})"
        )));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target.join("release").join("ramp-controller"))
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(io("binding a loopback port", Path::new("127.0.0.1")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("reading a loopback port", Path::new("127.0.0.1")))
}

/// `ramp-controller run` in its own process, with its `/metrics` address and its log (its
/// warnings and errors, in a file kept with the bench's report; a new start starts it over).
pub(super) struct ControllerProcess {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl ControllerProcess {
    pub(super) fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
    ) -> Result<Self, BenchError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating the log directory", dir))?;
        }
        let log_file =
            std::fs::File::create(log).map_err(io("creating the controller log", log))?;
        let (metrics_port, health_port) = (free_port()?, free_port()?);
        let child = Command::new(binary)
            .args([
                "run",
                "--namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--health-addr",
                &format!("127.0.0.1:{health_port}"),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting ramp-controller", binary))?;
        Ok(ControllerProcess {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            log: log.to_path_buf(),
        })
    }

    /// Whether it still runs, and the last lines of its log: what a bench that waited in
    /// vain reports.
    pub(super) fn state(&mut self) -> String {
        let running = match self.child.try_wait() {
            Ok(None) => "running".to_string(),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(error) => format!("unknown ({error})"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        format!(
            "ramp-controller {running}; {} log lines in {}{}",
            lines.len(),
            self.log.display(),
            if tail.is_empty() {
                String::new()
            } else {
                format!(", the last:\n  {tail}")
            }
        )
    }

    pub(super) fn pid(&self) -> Result<u32, BenchError> {
        self.child
            .id()
            .ok_or_else(|| BenchError::Failed("ramp-controller exited".into()))
    }

    pub(super) async fn scrape(&self) -> Option<String> {
        let (status, body) = HttpClient::default()
            .get(&self.metrics, Duration::from_secs(10))
            .await
            .ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    }

    /// Stops it with SIGTERM (a graceful shutdown, as Kubernetes stops a pod).
    pub(super) async fn stop(mut self) -> Result<(), BenchError> {
        let pid = self.pid()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(BenchError::Failed(
                    "ramp-controller did not stop within 30 s of SIGTERM".into(),
                ))
            }
        }
    }
}

/// Sum of the samples of `metric` whose labels satisfy `keep`.
fn metric_sum(text: &str, metric: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            keep(labels).then(|| value.trim().parse::<f64>().ok())?
        })
        // An empty f64 sum is -0.0; the report prints 0.
        .sum::<f64>()
        + 0.0
}

/// Writes (create, update, patch, delete) the controller has sent so far.
pub(super) fn writes(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "controller_clientset_k8s_request_total",
        |labels| {
            ["Create", "Update", "Patch", "Delete"]
                .iter()
                .any(|verb| labels.contains(&format!("verb=\"{verb}\"")))
        },
    )
}

/// Writes so far by `(kind, verb)`, to show what an update costs.
fn writes_by_kind(metrics: &str) -> BTreeMap<(String, String), f64> {
    let mut by_kind = BTreeMap::new();
    let label = |labels: &str, name: &str| {
        let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
        let end = labels[start..].find('"')? + start;
        Some(labels[start..end].to_string())
    };
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix("controller_clientset_k8s_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let (Some(kind), Some(verb), Ok(value)) = (
            label(labels, "kind"),
            label(labels, "verb"),
            value.trim().parse::<f64>(),
        ) else {
            continue;
        };
        if ["Create", "Update", "Patch", "Delete"].contains(&verb.as_str()) {
            *by_kind.entry((kind, verb)).or_insert(0.0) += value;
        }
    }
    by_kind
}

/// Reconciles the controller has finished so far.
fn reconciles(metrics: &str) -> f64 {
    metric_sum(metrics, "rollout_reconcile_count", |_| true)
}

/// RSS in MiB and CPU time in seconds of a process, from `/proc`.
pub(super) fn rss_and_cpu(pid: u32) -> Result<(f64, f64), BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}"));
    let status =
        std::fs::read_to_string(path.join("status")).map_err(io("reading /proc status", &path))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let stat =
        std::fs::read_to_string(path.join("stat")).map_err(io("reading /proc stat", &path))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: f64 = fields
        .get(11..13)
        .map(|t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    // The kernel's USER_HZ is 100 on every Linux architecture Ramp runs on.
    Ok((rss_kib / 1024.0, ticks / 100.0))
}

async fn count_rollouts(
    api: &Api<Rollout>,
    check: impl Fn(&Rollout) -> bool,
) -> Result<usize, BenchError> {
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(failed("listing Rollouts"))?;
    Ok(list.items.iter().filter(|r| check(r)).count())
}

/// What the namespace holds: Rollouts by phase, ReplicaSets, pods and how many are ready. With
/// the controller's state, it tells a stalled controller from a slow cluster.
async fn namespace_state(client: &Client, namespace: &str) -> String {
    let mut phases = BTreeMap::<&str, usize>::new();
    let rollouts = Api::<Rollout>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await;
    let Ok(rollouts) = rollouts else {
        return format!("namespace {namespace}: the Rollouts could not be listed");
    };
    for rollout in &rollouts.items {
        let phase = rollout
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map_or("no status", |p| p.as_str());
        *phases.entry(phase).or_default() += 1;
    }
    let phases: Vec<String> = phases.iter().map(|(p, n)| format!("{n} {p}")).collect();
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default())
        .await
        .map_or("?".to_string(), |l| l.items.len().to_string());
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await;
    let pods = pods.map_or("? pods".to_string(), |l| {
        let ready = l.items.iter().filter(|p| pod_ready(p)).count();
        format!("{} pods ({ready} ready)", l.items.len())
    });
    format!(
        "namespace {namespace}: Rollouts {}; {replica_sets} ReplicaSets; {pods}",
        phases.join(", ")
    )
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls until `check` holds for all `n` Rollouts in `namespace`; returns the time it took.
/// Giving up after `limit`, it reports the namespace's and the controller's state.
async fn until_all(
    client: &Client,
    namespace: &str,
    controller: &mut ControllerProcess,
    (n, what, limit): (usize, &str, Duration),
    check: impl Fn(&Rollout) -> bool,
) -> Result<Duration, BenchError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    loop {
        let done = count_rollouts(&api, &check).await?;
        if done >= n {
            return Ok(began.elapsed());
        }
        if began.elapsed() > limit {
            return Err(BenchError::Failed(format!(
                "{what}: only {done} of {n} Rollouts after {limit:?}\n{}\n{}",
                namespace_state(client, namespace).await,
                controller.state()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kubernetes' own Deployment controller taking `n` one-pod Deployments through the same
/// work, in a cluster of their own: created to available, then all images updated at once until
/// every new pod is available. The baseline of the Rollout figures: the pods, ReplicaSets
/// and their status churn without Ramp. Returns Deployments done per second for each phase
/// (a phase cut off at `limit` counts those done by then).
async fn deployments_baseline(
    client: &Client,
    n: usize,
    concurrency: usize,
    limit: Duration,
) -> Result<(f64, f64), BenchError> {
    let namespace = fresh_namespace(client, "bench-deployments").await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    futures::stream::iter(0..n)
        .map(|index| {
            let api = api.clone();
            async move {
                let name = rollout_name(index);
                let deployment: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                        },
                    },
                }))
                .map_err(|e| BenchError::Failed(e.to_string()))?;
                api.create(&PostParams::default(), &deployment)
                    .await
                    .map_err(failed(format!("creating Deployment {name}")))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let rolled_out = |d: &Deployment| {
        let Some(status) = d.status.as_ref() else {
            return false;
        };
        status.observed_generation == d.metadata.generation
            && status.updated_replicas == Some(1)
            && status.available_replicas.unwrap_or(0) >= 1
    };
    let initial_rate = until_all_deployments(&api, n, limit, rolled_out).await?;
    futures::stream::iter(0..n)
        .map(|index| {
            let api = api.clone();
            async move {
                api.patch(
                    &rollout_name(index),
                    &PatchParams::default(),
                    &Patch::Merge(image_patch("app:2")),
                )
                .await
                .map_err(failed(format!(
                    "patching Deployment {}",
                    rollout_name(index)
                )))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let update_rate = until_all_deployments(&api, n, limit, rolled_out).await?;
    Ok((initial_rate, update_rate))
}

/// Polls until `check` holds for all `n` Deployments or `limit` passed; returns how many
/// did per second.
async fn until_all_deployments(
    api: &Api<Deployment>,
    n: usize,
    limit: Duration,
    check: impl Fn(&Deployment) -> bool,
) -> Result<f64, BenchError> {
    let began = Instant::now();
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(failed("listing Deployments"))?;
        let done = list.items.iter().filter(|d| check(d)).count();
        if done >= n || began.elapsed() > limit {
            if done < n {
                eprintln!("baseline: {done} of {n} Deployments done after {limit:?}");
            }
            return Ok(done as f64 / began.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rollout_name(index: usize) -> String {
    format!("scale-{index:05}")
}

fn image_patch(image: &str) -> serde_json::Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
}

/// The figures of one run.
struct RunFigures {
    create_s: f64,
    initial_healthy_s: f64,
    rss_mb: f64,
    cpu_cores: f64,
    resync_s: f64,
    resync_writes: f64,
    list_ms: f64,
    patch_all_s: f64,
    update_to_step1_s: f64,
    update_writes_per_rollout: f64,
    rss_after_update_mb: f64,
    deployments_initial_per_s: f64,
    deployments_update_per_s: f64,
}

impl RunFigures {
    /// Resync after a restart / one list of the N Rollouts.
    fn resync_per_list(&self) -> f64 {
        self.resync_s * 1000.0 / self.list_ms
    }

    /// Initial reconcile to Healthy / the Deployments baseline doing the same (time ratio).
    fn initial_per_deployments(&self, n: usize) -> f64 {
        self.deployments_initial_per_s * self.initial_healthy_s / n as f64
    }

    /// Update to step 1 / the Deployments baseline's image update (time ratio).
    fn update_per_deployments(&self, n: usize) -> f64 {
        self.deployments_update_per_s * self.update_to_step1_s / n as f64
    }

    /// Every figure of the run on one line, the ratios with them.
    fn summary(&self, n: usize) -> String {
        format!(
            "created {:.1}s, Healthy {:.1}s (Deployments {:.1}/s, ratio {:.2}); rss {:.0} MiB \
             ({:.0} after the update), cpu {:.3} cores; resync {:.2}s with {} writes \
             (list {:.0} ms, ratio {:.2}); patches {:.1}s, update to step 1 {:.1}s \
             (Deployments {:.1}/s, ratio {:.2}), {:.2} writes/Rollout",
            self.create_s,
            self.initial_healthy_s,
            self.deployments_initial_per_s,
            self.initial_per_deployments(n),
            self.rss_mb,
            self.rss_after_update_mb,
            self.cpu_cores,
            self.resync_s,
            self.resync_writes,
            self.list_ms,
            self.resync_per_list(),
            self.patch_all_s,
            self.update_to_step1_s,
            self.deployments_update_per_s,
            self.update_per_deployments(n),
            self.update_writes_per_rollout,
        )
    }
}

/// A fresh test cluster whose pods are ready 100 ms after they start. Each phase of a scale run
/// has its own, so no run or baseline inherits another's etcd history, Events or caches.
pub(super) async fn fresh_cluster() -> Result<TestCluster, BenchError> {
    let (cluster, _) = timed_start(ClusterOptions {
        pod_ready_after: Duration::from_millis(100),
        ..ClusterOptions::default()
    })
    .await?;
    Ok(cluster)
}

/// Run `run` (from 1): Ramp's phases on a fresh cluster, then the baseline on another.
/// The controller's logs go to `logs/controller-run{run}-{phase}.log` under `out`.
async fn one_run(
    binary: &Path,
    flags: &Flags,
    out: &Path,
    run: usize,
) -> Result<RunFigures, BenchError> {
    let n = flags.rollouts;
    let limit = Duration::from_secs(120 + (n as u64) / 10);
    let log = |phase: &str| {
        out.join("logs")
            .join(format!("controller-run{run}-{phase}.log"))
    };
    let cluster = fresh_cluster().await?;
    let client = &cluster.client();
    let kubeconfig = cluster.kubeconfig_path();
    install_rollout_crds(client)
        .await
        .map_err(BenchError::Failed)?;
    let namespace = fresh_namespace(client, "bench-scale").await?;
    let api: Api<Rollout> = Api::namespaced(client.clone(), &namespace);

    // 1. N Rollouts, reconciled to Healthy.
    let steps = json!({"steps": [{"setWeight": 50}, {"pause": {}}]});
    let began = Instant::now();
    futures::stream::iter(0..n)
        .map(|index| {
            let api = api.clone();
            let rollout = canary_rollout(&rollout_name(index), 1, "app:1", steps.clone());
            async move {
                api.create(&PostParams::default(), &rollout)
                    .await
                    .map_err(failed(format!("creating Rollout {}", rollout_name(index))))
            }
        })
        .buffer_unordered(flags.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let create_s = began.elapsed().as_secs_f64();
    let mut controller = ControllerProcess::start(binary, kubeconfig, &namespace, &log("initial"))?;
    let initial_healthy_s = until_all(
        client,
        &namespace,
        &mut controller,
        (n, "initial reconcile to Healthy", limit),
        healthy,
    )
    .await?
    .as_secs_f64();
    eprintln!("{n} Rollouts created in {create_s:.1}s, Healthy after {initial_healthy_s:.1}s");

    // 2. Steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = controller.pid()?;
    let (_, cpu_before) = rss_and_cpu(pid)?;
    let mut rss = Samples::new();
    for _ in 0..flags.steady_seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_and_cpu(pid)?.0);
    }
    let (_, cpu_after) = rss_and_cpu(pid)?;
    let cpu_cores = (cpu_after - cpu_before) / flags.steady_seconds.max(1) as f64;

    // 3. Resync after a restart.
    controller.stop().await?;
    let began = Instant::now();
    let mut controller = ControllerProcess::start(binary, kubeconfig, &namespace, &log("restart"))?;
    let resync = loop {
        if let Some(metrics) = controller.scrape().await
            && reconciles(&metrics) >= n as f64
        {
            break began.elapsed();
        }
        if began.elapsed() > limit {
            return Err(BenchError::Failed(format!(
                "the restarted controller had not reconciled {n} Rollouts after {limit:?}\n{}",
                controller.state()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let anything the resync would write land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = controller.scrape().await.unwrap_or_default();
    let resync_writes = writes(&metrics);
    let list_began = Instant::now();
    count_rollouts(&api, |_| true).await?;
    let list_ms = list_began.elapsed().as_secs_f64() * 1000.0;

    // 4. N simultaneous image updates to step 1.
    let writes_before = writes(&metrics);
    let writes_before_by_kind = writes_by_kind(&metrics);
    let began = Instant::now();
    futures::stream::iter(0..n)
        .map(|index| {
            let api = api.clone();
            async move {
                api.patch(
                    &rollout_name(index),
                    &PatchParams::default(),
                    &Patch::Merge(image_patch("app:2")),
                )
                .await
                .map_err(failed(format!("patching Rollout {}", rollout_name(index))))
            }
        })
        .buffer_unordered(flags.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let patch_all_s = began.elapsed().as_secs_f64();
    let update_to_step1 = until_all(
        client,
        &namespace,
        &mut controller,
        (n, "image update to step 1", limit),
        |r| {
            let Some(status) = r.status.as_ref() else {
                return false;
            };
            let generation = r.metadata.generation.unwrap_or(0).to_string();
            status.observed_generation.as_deref() == Some(generation.as_str())
                && status.current_step_index == Some(1)
                && status.current_pod_hash.is_some()
                && status.current_pod_hash != status.stable_rs
        },
    )
    .await?;
    let update_to_step1_s = update_to_step1.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = controller.scrape().await.unwrap_or_default();
    let update_writes_per_rollout = (writes(&metrics) - writes_before) / n as f64;
    let breakdown: Vec<String> = writes_by_kind(&metrics)
        .into_iter()
        .filter_map(|(key, total)| {
            let before = writes_before_by_kind.get(&key).copied().unwrap_or(0.0);
            let (kind, verb) = key;
            (total > before).then(|| format!("{kind} {verb} {:.2}", (total - before) / n as f64))
        })
        .collect();
    eprintln!(
        "writes per Rollout for the update: {}",
        breakdown.join(", ")
    );
    let (rss_after_update_mb, _) = rss_and_cpu(controller.pid()?)?;
    controller.stop().await?;
    // Ramp's figures are printed before the baseline, which may still fail, so a run cut
    // short keeps them.
    eprintln!(
        "rss {rss:.0} MiB, cpu {cpu_cores:.3} cores, resync {:.2}s ({resync_writes} writes, list {list_ms:.0} ms), update to step 1 {update_to_step1_s:.1}s",
        resync.as_secs_f64(),
        rss = rss.median(),
    );
    drop(cluster);

    // 5. Baseline: the same pods through Kubernetes' Deployment controller, on a cluster of
    //    its own where Ramp never ran.
    let cluster = fresh_cluster().await?;
    let (deployments_initial_per_s, deployments_update_per_s) =
        deployments_baseline(&cluster.client(), n, flags.concurrency, limit).await?;
    drop(cluster);
    eprintln!(
        "baseline: Deployments available at {deployments_initial_per_s:.1}/s, updated at {deployments_update_per_s:.1}/s"
    );
    Ok(RunFigures {
        create_s,
        initial_healthy_s,
        rss_mb: rss.median(),
        cpu_cores,
        resync_s: resync.as_secs_f64(),
        resync_writes,
        list_ms,
        patch_all_s,
        update_to_step1_s,
        update_writes_per_rollout,
        rss_after_update_mb,
        deployments_initial_per_s,
        deployments_update_per_s,
    })
}

/// `bench scale`. Each run's figures are printed when it ends and the report is rewritten
/// with the medians so far, so a bench stopped during a later run loses nothing.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("scale", args)?;
    let runs = flags.common.runs.max(1);
    let binary = controller_binary()?;
    let out = output_dir(&flags.common);
    let mut figures = Vec::new();
    loop {
        let f = one_run(&binary, &flags, &out, figures.len() + 1).await?;
        figures.push(f);
        let done = figures.len();
        eprintln!(
            "run {done}/{runs}: {}",
            figures[done - 1].summary(flags.rollouts)
        );
        let report = scale_report(&flags, &figures);
        report.write(&out)?;
        if done == runs {
            return Ok(report);
        }
    }
}

/// The medians of `figures`, one run each.
fn scale_report(flags: &Flags, figures: &[RunFigures]) -> Report {
    let samples = |get: &dyn Fn(&RunFigures) -> f64| {
        let mut s = Samples::new();
        for f in figures {
            s.push(get(f));
        }
        s
    };

    let mut report = Report::new("scale");
    report.add("rollouts", flags.rollouts as f64, "Rollouts in the cluster");
    report.add(
        "runs",
        figures.len() as f64,
        "measurement runs (figures are medians)",
    );
    report.add_median(
        "create_s",
        &samples(&|f| f.create_s),
        "baseline: creating the N Rollouts (API server only)",
    );
    report.add_median(
        "initial_healthy_s",
        &samples(&|f| f.initial_healthy_s),
        "controller start to every Rollout Healthy (ReplicaSets and pods created)",
    );
    report.add_median(
        "rss_mb",
        &samples(&|f| f.rss_mb),
        "controller RSS at steady state, MiB",
    );
    report.add_median(
        "rss_per_rollout_kb",
        &samples(&|f| f.rss_mb * 1024.0 / flags.rollouts as f64),
        "controller RSS per Rollout, KiB",
    );
    report.add_median(
        "cpu_cores",
        &samples(&|f| f.cpu_cores),
        "controller CPU at steady state, cores",
    );
    report.add_median(
        "resync_s",
        &samples(&|f| f.resync_s),
        "restart to every Rollout reconciled again",
    );
    report.add_median(
        "resync_writes",
        &samples(&|f| f.resync_writes),
        "writes issued by that resync (goal 0)",
    );
    report.add_median(
        "list_ms",
        &samples(&|f| f.list_ms),
        "baseline: one list of the N Rollouts",
    );
    report.add_median(
        "resync_per_list",
        &samples(&|f| f.resync_per_list()),
        "resync time / one list of the N Rollouts",
    );
    report.add_median(
        "patch_all_s",
        &samples(&|f| f.patch_all_s),
        "baseline: the N image patches themselves",
    );
    report.add_median(
        "update_to_step1_s",
        &samples(&|f| f.update_to_step1_s),
        "N simultaneous image updates to every Rollout at step 1 (canary available, paused)",
    );
    report.add_median(
        "deployments_initial_per_s",
        &samples(&|f| f.deployments_initial_per_s),
        "baseline: one-pod Deployments created to available per second (Kubernetes' own controller)",
    );
    report.add_median(
        "initial_per_deployments",
        &samples(&|f| f.initial_per_deployments(flags.rollouts)),
        "initial reconcile to Healthy / the Deployments baseline (time ratio)",
    );
    report.add_median(
        "deployments_update_per_s",
        &samples(&|f| f.deployments_update_per_s),
        "baseline: Deployments per second from N simultaneous image updates to the new pod available",
    );
    report.add_median(
        "update_per_deployments",
        &samples(&|f| f.update_per_deployments(flags.rollouts)),
        "update to step 1 / the Deployments baseline (time ratio)",
    );
    report.add_median(
        "update_writes_per_rollout",
        &samples(&|f| f.update_writes_per_rollout),
        "API writes per Rollout for that update (ReplicaSet, status, Events)",
    );
    report.add_median(
        "rss_after_update_mb",
        &samples(&|f| f.rss_after_update_mb),
        "controller RSS after the update, MiB",
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(initial_healthy_s: f64, deployments_initial_per_s: f64) -> RunFigures {
        RunFigures {
            create_s: 10.0,
            initial_healthy_s,
            rss_mb: 100.0,
            cpu_cores: 0.0,
            resync_s: 2.0,
            resync_writes: 0.0,
            list_ms: 1000.0,
            patch_all_s: 5.0,
            update_to_step1_s: 50.0,
            update_writes_per_rollout: 8.0,
            rss_after_update_mb: 120.0,
            deployments_initial_per_s,
            deployments_update_per_s: 40.0,
        }
    }

    #[test]
    fn the_report_gives_each_runs_ratio_to_its_own_baseline_and_the_median_of_those() {
        let flags: Flags = parse_flags("scale", vec!["--rollouts".into(), "1000".into()]).unwrap();
        // Ratios 0.5, 2.0 and 1.2: each run against its own baseline, not medians against medians.
        let runs = [
            figures(50.0, 10.0),
            figures(100.0, 20.0),
            figures(40.0, 30.0),
        ];
        assert_eq!(runs[1].initial_per_deployments(1000), 2.0);
        assert_eq!(runs[0].update_per_deployments(1000), 2.0);
        assert_eq!(runs[0].resync_per_list(), 2.0);

        let json = scale_report(&flags, &runs[..2]).to_json();
        assert_eq!(json["runs"], 2.0);
        assert_eq!(json["initial_healthy_s"], 75.0);
        assert_eq!(json["initial_per_deployments"], 1.25);
        let json = scale_report(&flags, &runs).to_json();
        assert_eq!(json["runs"], 3.0);
        assert_eq!(json["initial_healthy_s"], 50.0);
        assert_eq!(json["initial_per_deployments"], 1.2);
        let line = runs[2].summary(1000);
        assert!(
            line.contains("Healthy 40.0s (Deployments 30.0/s, ratio 1.20)"),
            "{line}"
        );
        assert!(line.contains("list 1000 ms, ratio 2.00"), "{line}");
    }

    #[test]
    fn writes_are_summed_by_kind_and_verb_and_reads_are_left_out() {
        let metrics = r#"# TYPE controller_clientset_k8s_request_total counter
controller_clientset_k8s_request_total{kind="ReplicaSet",namespace="n",name="a",verb="Create",status_code="201"} 1
controller_clientset_k8s_request_total{kind="ReplicaSet",namespace="n",name="b",verb="Create",status_code="201"} 2
controller_clientset_k8s_request_total{kind="Rollout",namespace="n",name="a",verb="Patch",status_code="200"} 3
controller_clientset_k8s_request_total{kind="Rollout",namespace="n",name="a",verb="Get",status_code="200"} 7
"#;
        let by_kind = writes_by_kind(metrics);
        assert_eq!(
            by_kind.into_iter().collect::<Vec<_>>(),
            vec![
                (("ReplicaSet".into(), "Create".into()), 3.0),
                (("Rollout".into(), "Patch".into()), 3.0),
            ]
        );
        assert_eq!(writes(metrics), 6.0);
    }
}
