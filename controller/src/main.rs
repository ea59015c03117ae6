//! `ramp-controller`: the Ramp controller process and its CRDs.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ramp_controller::run::{GitopsSettings, RunConfig};

#[derive(Parser)]
#[command(
    name = "ramp-controller",
    version,
    about = "Progressive delivery for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: Rollouts, AnalysisRuns and (with --gitops) Applications.
    ///
    /// Connects with the kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster service
    /// account, like kubectl.
    Run(Box<RunArgs>),
    /// Print every CRD Ramp serves as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
}

/// `ramp-controller run` flags.
#[derive(Args, Debug)]
struct RunArgs {
    /// Watch and manage objects in this namespace only (namespaced install).
    #[arg(long, env = "RAMP_NAMESPACE")]
    namespace: Option<String>,
    /// Manage only Rollouts labelled argo-rollouts.argoproj.io/controller-instance-id=<ID>,
    /// to share a cluster with another controller.
    #[arg(long, env = "RAMP_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Elect a leader through a Lease; only the leader writes, a lost Lease ends the process.
    #[arg(long, env = "RAMP_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else --namespace, else default).
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = ramp_controller::leader::DEFAULT_LEASE_NAME)]
    leader_election_lease: String,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, default_value = "0.0.0.0:8090")]
    metrics_addr: SocketAddr,
    /// Address of /healthz and /readyz (and the GitOps webhook).
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_addr: SocketAddr,
    /// Prometheus server for analysis metrics that name no address.
    #[arg(long, env = "RAMP_PROMETHEUS_ADDRESS")]
    prometheus_address: Option<String>,
    /// Rollouts reconciled concurrently.
    #[arg(long, default_value_t = 16)]
    rollout_threads: u16,
    /// Do not run AnalysisRuns in this process (another controller runs them).
    #[arg(long)]
    no_analysis: bool,
    /// Also reconcile Argo CD Applications from Git (embedded GitOps).
    #[arg(long)]
    gitops: bool,
    /// How often each Application's repository is fetched without a webhook.
    #[arg(long, default_value = "3m", value_parser = parse_duration, requires = "gitops")]
    gitops_poll_interval: Duration,
    /// Shared secret of the GitOps webhook (POST /api/webhook on --health-addr).
    #[arg(long, env = "RAMP_GITOPS_WEBHOOK_SECRET", requires = "gitops")]
    gitops_webhook_secret: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    ramp_analysis::duration::parse_duration(text)
        .ok()
        .and_then(|d| d.to_std().ok())
        .ok_or_else(|| format!("{text:?} is not a duration like 30s, 3m or 1h"))
}

fn main() -> anyhow::Result<()> {
    // kube and reqwest share rustls; pick the ring provider before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output_dir } => print_crds(output_dir),
        Command::Run(args) => run(*args),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_runtime=warn,kube_client=warn")
    });
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = RunConfig {
        namespace: args.namespace,
        instance_id: args.instance_id,
        leader_elect: args.leader_elect,
        leader_election_namespace: args.leader_election_namespace,
        lease_name: args.leader_election_lease,
        metrics_addr: args.metrics_addr,
        health_addr: args.health_addr,
        prometheus_address: args.prometheus_address,
        rollout_threads: args.rollout_threads.max(1),
        analysis: !args.no_analysis,
        gitops: args.gitops.then_some(GitopsSettings {
            poll_interval: args.gitops_poll_interval,
            webhook_secret: args.gitops_webhook_secret,
        }),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let kube_config = kube::Config::infer().await.context(
            "finding the cluster: set KUBECONFIG or run in a pod with a service account",
        )?;
        ramp_controller::run::run(kube_config, config, terminate(), |_| {}).await?;
        Ok(())
    })
}

/// Completes on SIGTERM or Ctrl-C.
async fn terminate() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = sigterm.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("termination signal received");
}

fn print_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = ramp_controller::crd::all();
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(ramp_controller::crd::file_name(crd));
                let yaml = ramp_controller::crd::to_yaml(crd)?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            for crd in &crds {
                print!("---\n{}", ramp_controller::crd::to_yaml(crd)?);
            }
        }
    }
    Ok(())
}
