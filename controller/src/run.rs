//! `ramp-controller run`: the Rollout controller, the AnalysisRun runner, optionally the
//! GitOps reconciler, leader election, and the HTTP endpoints, in one process.
//!
//! ```text
//!   kube client (counts requests) ──┬─▶ Rollout controller   (writes while leader)
//!                                   ├─▶ Experiment controller (writes while leader)
//!                                   ├─▶ AnalysisRun runner    (writes while leader)
//!                                   ├─▶ GitOps reconciler     (--gitops; started on leadership)
//!   Lease (--leader-elect) ─────────┘   losing it ends `run` with an error
//!   /metrics (--metrics-addr)   /healthz /readyz [/api/webhook] (--health-addr)
//! ```
//!
//! Library code, so scenario tests and benchmarks start the controller in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::Shared;
use prometheus_client::registry::Registry;

use crate::gitops;
use crate::leader::{self, Leadership};
use crate::metrics::{CountRequests, ProcessMetrics, RequestCounter, RolloutMetrics};
use crate::rollout::controller::{self, Context, ControllerConfig};
use crate::rollout::events::EventSink;

/// Everything `run` is told on the command line.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub namespace: Option<String>,
    pub instance_id: Option<String>,
    pub leader_elect: bool,
    /// Namespace of the Lease (default: `POD_NAMESPACE`, else `--namespace`, else `default`).
    pub leader_election_namespace: Option<String>,
    pub lease_name: String,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    /// Prometheus for analysis metrics that name no address.
    pub prometheus_address: Option<String>,
    pub rollout_threads: u16,
    /// Run the AnalysisRun runner in this process.
    pub analysis: bool,
    pub gitops: Option<GitopsSettings>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            namespace: None,
            instance_id: None,
            leader_elect: false,
            leader_election_namespace: None,
            lease_name: leader::DEFAULT_LEASE_NAME.into(),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8090)),
            health_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            prometheus_address: None,
            rollout_threads: ControllerConfig::default().concurrency,
            analysis: true,
            gitops: None,
        }
    }
}

/// `--gitops` settings.
#[derive(Clone, Debug)]
pub struct GitopsSettings {
    pub poll_interval: Duration,
    pub webhook_secret: Option<String>,
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
    #[error("serving HTTP on {metrics} (metrics) or {health} (health): {source}")]
    Http {
        metrics: SocketAddr,
        health: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lost the leader Lease {namespace}/{name}: another replica may now write; exiting so this one restarts as a follower"
    )]
    LeaseLost { namespace: String, name: String },
    #[error("starting the AnalysisRun runner: {0}")]
    Analysis(#[from] ramp_analysis::runner::RunnerError),
}

/// Addresses the servers actually bound (port 0 picks a free one).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub metrics: SocketAddr,
    pub health: SocketAddr,
}

/// Runs everything until `shutdown` completes (SIGTERM in the binary) or the Lease is lost.
/// `on_bound` learns the bound addresses once the servers listen.
pub async fn run(
    kube_config: kube::Config,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<(), RunError> {
    let shutdown: Shared<futures::future::BoxFuture<'static, ()>> = shutdown.boxed().shared();
    let mut registry = Registry::default();
    let requests = RequestCounter::register(&mut registry);
    let client = crate::kube_client::builder(&kube_config)
        .map_err(RunError::Client)?
        .with_layer(&CountRequests(requests))
        .build();

    let lease_namespace = config
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| config.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let (leadership, _election) = if config.leader_elect {
        let identity = leader::default_identity();
        let (leadership, task) = leader::elect(
            client.clone(),
            &lease_namespace,
            &config.lease_name,
            &identity,
        )
        .await?;
        tracing::info!(%identity, lease = %config.lease_name, namespace = %lease_namespace, "competing for leadership");
        (leadership, Some(task))
    } else {
        (Leadership::always().0, None)
    };

    let controller_config = ControllerConfig {
        namespace: config.namespace.clone(),
        instance_id: config.instance_id.clone(),
        concurrency: config.rollout_threads,
    };
    let rollout_metrics = RolloutMetrics::default();
    let watches = controller::watches(&client, &controller_config, Some(rollout_metrics.clone()));
    rollout_metrics.register(&mut registry, watches.caches.rollouts.clone());
    crate::plugin::metrics::WeightMetrics::register(
        &mut registry,
        watches.caches.rollouts.clone(),
        watches.caches.replica_sets.clone(),
    );
    ProcessMetrics::register(&mut registry);
    let analysis_metrics = ramp_analysis::runner::AnalysisMetrics::new();
    if config.analysis {
        analysis_metrics.register(&mut registry);
    }
    let gitops_config = config.gitops.as_ref().map(|settings| gitops::GitopsConfig {
        poll_interval: settings.poll_interval,
        webhook_secret: settings.webhook_secret.clone(),
        namespace: config.namespace.clone(),
        ..Default::default()
    });
    let gitops_metrics = gitops_config
        .as_ref()
        .map(|_| gitops::GitopsMetrics::register(&mut registry));
    let extra = gitops_config
        .as_ref()
        .map(gitops::webhook_router)
        .unwrap_or_default();

    let caches = watches.caches.clone();
    let ready: crate::http::Readiness = Arc::new(move || {
        let waiting: Vec<&str> = [
            (
                caches
                    .rollouts_listed
                    .load(std::sync::atomic::Ordering::Relaxed),
                "rollouts",
            ),
            (caches.replica_sets.is_ready(), "replicasets"),
            (caches.analysis_runs.is_ready(), "analysisruns"),
        ]
        .into_iter()
        .filter(|(ready, _)| !ready)
        .map(|(_, what)| what)
        .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        }
    });
    let registry = Arc::new(Mutex::new(registry));
    let (metrics_bound, health_bound, mut servers) = crate::http::serve(
        config.metrics_addr,
        config.health_addr,
        registry,
        ready,
        extra,
        shutdown.clone(),
    )
    .await
    .map_err(|source| RunError::Http {
        metrics: config.metrics_addr,
        health: config.health_addr,
        source,
    })?;
    on_bound(Bound {
        metrics: metrics_bound,
        health: health_bound,
    });
    tracing::info!(metrics = %metrics_bound, health = %health_bound, namespace = ?config.namespace, instance_id = ?config.instance_id, "Ramp controller started");

    let events = EventSink::start(client.clone(), rollout_metrics.clone());
    let context = Arc::new(Context::new(
        client.clone(),
        watches.caches.clone(),
        events,
        rollout_metrics,
        leadership.clone(),
        controller_config,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(controller::run(watches, context, shutdown.clone()));
    tasks.spawn(crate::experiment::controller::run(
        client.clone(),
        crate::experiment::controller::ExperimentConfig {
            namespace: config.namespace.clone(),
            instance_id: config.instance_id.clone(),
        },
        leadership.clone(),
        shutdown.clone(),
    ));
    if config.analysis {
        let runner_config = ramp_analysis::runner::RunnerConfig {
            prometheus_address: config.prometheus_address.clone(),
            namespace: config.namespace.clone(),
            may_write: Some(leadership.receiver()),
            reporter: None,
        };
        let runner = ramp_analysis::runner::run(client.clone(), runner_config, analysis_metrics);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                result = runner => if let Err(error) = result {
                    tracing::error!(%error, "the AnalysisRun runner stopped");
                },
                () = stop => {}
            }
        });
    }
    if let (Some(gitops_config), Some(gitops_metrics)) = (gitops_config, gitops_metrics) {
        let leader = leadership.clone();
        let client = client.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            // GitOps writes, so it starts only once this replica leads.
            let mut may_write = leader.receiver();
            while !*may_write.borrow_and_update() {
                tokio::select! {
                    changed = may_write.changed() => if changed.is_err() { return },
                    () = stop.clone() => return,
                }
            }
            if let Err(error) = gitops::run(client, gitops_config, gitops_metrics, stop).await {
                tracing::error!(%error, "the GitOps reconciler stopped");
            }
        });
    }

    let lease_lost = leadership.lost();
    let result = tokio::select! {
        () = shutdown.clone() => Ok(()),
        () = lease_lost, if config.leader_elect => Err(RunError::LeaseLost { namespace: lease_namespace, name: config.lease_name.clone() }),
        Some(_) = tasks.join_next() => Ok(()),
    };
    tracing::info!("Ramp controller stopping");
    // Let the controller finish in-flight reconciles (graceful shutdown) for a moment.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
        while servers.join_next().await.is_some() {}
    })
    .await;
    result
}
