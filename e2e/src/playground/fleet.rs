//! The demo app's real processes. Pods on the test cluster are simulated, so the playground
//! plays their kubelet for real traffic: every ReplicaSet of the Rollout that has replicas gets
//! one `demo-app` process (this binary, `playground demo-app`) answering with its version's
//! error rate, a Prometheus scrape target labelled with its pod-template hash, and, by the
//! Rollout's status, the stable or canary share of the load generator's requests.
//!
//! ```text
//!   ReplicaSets (app=demo) ──every 200 ms──▶ one demo-app process per hash with replicas
//!        │                                    └─▶ Prometheus targets {app, rollouts_pod_template_hash, version}
//!   Rollout status (stableRS, currentPodHash) ──▶ load generator backends (stable, canary)
//!   Rollout status (replica shares) ───────────▶ load generator canary weight (its own watch)
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use ramp_controller::api::Rollout;
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use tokio_util::sync::CancellationToken;

use super::manifests::{APP, ERROR_RATE_ENV};
use crate::cluster::process::{ManagedProcess, Reaper, log_tail};
use crate::fixtures::loadgen::{Counts, LoadGenerator, LoadOptions, WeightSource};
use crate::fixtures::prometheus::{Prometheus, ScrapeTarget};

/// Requests per second the load generator sends.
pub const REQUESTS_PER_SECOND: u32 = 50;

/// One demo process, by the ReplicaSet it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub hash: String,
    /// The image tag.
    pub version: String,
    pub error_rate: f64,
    pub address: SocketAddr,
}

impl Backend {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// What the fleet shares with the story: every backend it ever started, and the load.
#[derive(Default)]
pub struct FleetState {
    backends: Mutex<BTreeMap<String, Backend>>,
    load: Mutex<Option<LoadGenerator>>,
    failure: Mutex<Option<String>>,
}

impl FleetState {
    /// The backend started for a pod-template hash.
    pub fn backend(&self, hash: &str) -> Option<Backend> {
        self.backends.lock().ok()?.get(hash).cloned()
    }

    /// What the load generator got from the backend of `hash` so far.
    pub fn served_by(&self, hash: &str) -> Counts {
        let Some(backend) = self.backend(hash) else {
            return Counts::default();
        };
        self.with_load(|load| load.counts(&backend.url()))
            .unwrap_or_default()
    }

    /// Every request sent so far, by the version that answered.
    pub fn served_by_version(&self) -> BTreeMap<String, Counts> {
        let mut out = BTreeMap::<String, Counts>::new();
        let Some(stats) = self.with_load(LoadGenerator::stats) else {
            return out;
        };
        let Ok(backends) = self.backends.lock() else {
            return out;
        };
        for backend in backends.values() {
            let counts = stats.get(&backend.url()).copied().unwrap_or_default();
            let sum = out.entry(backend.version.clone()).or_default();
            sum.ok += counts.ok;
            sum.errors += counts.errors;
            sum.other += counts.other;
            sum.failed += counts.failed;
        }
        out
    }

    /// The canary weight the load generator uses now.
    pub fn weight(&self) -> u8 {
        self.with_load(LoadGenerator::weight).unwrap_or(0)
    }

    fn with_load<T>(&self, read: impl FnOnce(&LoadGenerator) -> T) -> Option<T> {
        self.load.lock().ok()?.as_ref().map(read)
    }

    /// Why the fleet stopped following the cluster, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok()?.clone()
    }
}

/// The running fleet; [`Fleet::stop`] ends every process.
pub struct Fleet {
    pub state: Arc<FleetState>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Starts following the Rollout `demo` in `namespace`; processes log into `dir`.
    pub fn start(
        client: Client,
        namespace: &str,
        prometheus: Arc<Prometheus>,
        dir: &Path,
    ) -> Result<Fleet, String> {
        let program = std::env::current_exe()
            .map_err(|e| format!("finding this program to start demo-app processes: {e}"))?;
        let reaper = Reaper::start(None).map_err(|e| e.to_string())?;
        let state = Arc::new(FleetState::default());
        let stop = CancellationToken::new();
        let mut follower = Follower {
            client,
            namespace: namespace.to_string(),
            program,
            dir: dir.to_path_buf(),
            reaper: Some(reaper),
            running: BTreeMap::new(),
            targets: Vec::new(),
            prometheus,
            state: state.clone(),
        };
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(error) = follower.pass().await {
                    tracing::warn!(%error, "demo fleet pass failed");
                    if let Ok(mut failure) = follower.state.failure.lock() {
                        *failure = Some(error);
                    }
                }
            }
            follower.stop_all();
        });
        Ok(Fleet {
            state,
            stop,
            task: Some(task),
        })
    }

    /// Stops the load and every demo process, and waits until they are gone.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Interrupted before `stop`: the processes still die with their handles
        // (kill on drop) or, failing that, by the reaper.
        self.stop.cancel();
    }
}

struct Running {
    backend: Backend,
    process: ManagedProcess,
}

struct Follower {
    client: Client,
    namespace: String,
    program: PathBuf,
    dir: PathBuf,
    reaper: Option<Reaper>,
    running: BTreeMap<String, Running>,
    targets: Vec<ScrapeTarget>,
    prometheus: Arc<Prometheus>,
    state: Arc<FleetState>,
}

impl Follower {
    async fn pass(&mut self) -> Result<(), String> {
        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = sets
            .list(&ListParams::default().labels(&format!("app={APP}")))
            .await
            .map_err(|e| format!("listing the ReplicaSets of Rollout {APP}: {e}"))?;
        let rollouts: Api<Rollout> = Api::namespaced(self.client.clone(), &self.namespace);
        let status = rollouts
            .get_opt(APP)
            .await
            .map_err(|e| format!("reading Rollout {APP}: {e}"))?
            .and_then(|r| r.status)
            .unwrap_or_default();
        let wanted: BTreeMap<String, (String, f64)> = list
            .items
            .iter()
            .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
            .filter_map(|rs| {
                Some((
                    rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone(),
                    version_of(rs),
                ))
            })
            .collect();

        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|hash| !wanted.contains_key(*hash))
            .cloned()
            .collect();
        for hash in gone {
            if let Some(mut running) = self.running.remove(&hash) {
                running.process.kill_and_wait(self.reaper.as_mut());
            }
        }
        for (hash, (version, error_rate)) in wanted {
            if !self.running.contains_key(&hash) {
                let running = self.spawn(&hash, &version, error_rate).await?;
                if let Ok(mut backends) = self.state.backends.lock() {
                    backends.insert(hash.clone(), running.backend.clone());
                }
                self.running.insert(hash, running);
            }
        }

        let targets: Vec<ScrapeTarget> = self
            .running
            .values()
            .map(|r| {
                ScrapeTarget::new(r.backend.address.to_string())
                    .label("app", APP)
                    .label("rollouts_pod_template_hash", &r.backend.hash)
                    .label("version", &r.backend.version)
            })
            .collect();
        if targets != self.targets {
            self.prometheus
                .set_targets(&targets)
                .map_err(|e| e.to_string())?;
            self.targets = targets;
        }

        let url = |hash: &Option<String>| {
            hash.as_ref()
                .and_then(|h| self.running.get(h))
                .map(|r| r.backend.url())
        };
        let Some(stable) = url(&status.stable_rs) else {
            return Ok(());
        };
        let canary = url(&status.current_pod_hash).filter(|c| *c != stable);
        let Ok(mut load) = self.state.load.lock() else {
            return Err("the load generator's lock is poisoned".into());
        };
        match load.as_ref() {
            Some(load) => load.set_backends(&stable, canary.as_deref()),
            None => {
                let load_generator = LoadGenerator::start(
                    &stable,
                    canary.as_deref(),
                    WeightSource::Rollout {
                        client: self.client.clone(),
                        namespace: self.namespace.clone(),
                        name: APP.to_string(),
                    },
                    LoadOptions {
                        rate: REQUESTS_PER_SECOND,
                        ..LoadOptions::default()
                    },
                );
                *load = Some(load_generator);
            }
        }
        Ok(())
    }

    async fn spawn(
        &mut self,
        hash: &str,
        version: &str,
        error_rate: f64,
    ) -> Result<Running, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port for demo-app {version}: {e}"))?
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let args = vec![
            "demo-app".to_string(),
            format!("--listen={address}"),
            format!("--version={version}"),
            format!("--error-rate={error_rate}"),
        ];
        let log = self.dir.join(format!("demo-app-{hash}.log"));
        let reaper = self.reaper.as_mut().ok_or("the demo fleet is stopping")?;
        let mut process = ManagedProcess::spawn("demo-app", &self.program, &args, &log, reaper)
            .map_err(|e| format!("starting demo-app {version}: {e}"))?;
        let began = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            if let Some(status) = process.exited() {
                return Err(format!(
                    "demo-app {version} exited ({status}): {}",
                    log_tail(&log, 10)
                ));
            }
            if began.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "demo-app {version} did not listen on {address} within 10s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Running {
            backend: Backend {
                hash: hash.to_string(),
                version: version.to_string(),
                error_rate,
                address,
            },
            process,
        })
    }

    fn stop_all(&mut self) {
        // Requests stop before the processes answering them do.
        if let Ok(mut load) = self.state.load.lock() {
            load.take();
        }
        for running in self.running.values_mut() {
            running.process.kill_and_wait(self.reaper.as_mut());
        }
        self.running.clear();
        if let Some(reaper) = self.reaper.take() {
            reaper.dismiss();
        }
    }
}

/// The image tag and the `DEMO_ERROR_RATE` of a ReplicaSet's pod template.
fn version_of(rs: &ReplicaSet) -> (String, f64) {
    let container = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|p| p.containers.first());
    let tag = container
        .and_then(|c| c.image.as_deref())
        .and_then(|image| image.rsplit_once(':'))
        .map_or("latest", |(_, tag)| tag)
        .to_string();
    let rate = container
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == ERROR_RATE_ENV))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    (tag, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_set_names_its_version_and_error_rate() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-abc"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{
                "name": "demo", "image": "ramp-demo:3.0",
                "env": [{"name": "DEMO_ERROR_RATE", "value": "0.25"}]
            }]}}}
        }))
        .expect("ReplicaSet");
        assert_eq!(version_of(&rs), ("3.0".to_string(), 0.25));
        let bare: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-abc"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "demo", "image": "ramp-demo"}]}}}
        }))
        .expect("ReplicaSet");
        assert_eq!(version_of(&bare), ("latest".to_string(), 0.0));
    }
}
