//! `test-cluster`: the local Kubernetes control plane for tests and the playground.
//!
//! ```text
//! test-cluster build
//! test-cluster up --kubeconfig PATH [--pod-ready-after 500ms] [--faults SPEC] [--request-log FILE]
//!                 [--data-dir DIR] [--nodes N] [--no-watch-cache]
//! ```
//!
//! `up` writes the kubeconfig only once the API server is ready, the controllers run and the
//! simulated nodes are Ready, so a script can wait for the file to appear. It runs until SIGTERM
//! or Ctrl-C, then stops every child process and removes the kubeconfig it wrote.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ramp_e2e::cluster::{
    ClusterOptions, TestCluster, binaries, format_duration, kubeconfig, parse_duration,
};
use ramp_e2e::faults::FaultSpec;

#[derive(Parser)]
#[command(
    name = "test-cluster",
    about = "Ramp's local Kubernetes 1.20 control plane with a kubelet simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (or verify) the cached kube-apiserver, kube-controller-manager and etcd.
    Build,
    /// Start a cluster and keep it running until SIGTERM or Ctrl-C.
    Up(UpArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where to write the admin kubeconfig (once the cluster is ready).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Delay from a pod starting to Ready (e.g. 500ms, 2s); pods may override it with the
    /// annotation ramp.e2e/ready-after.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pod_ready_after: Duration,
    /// Put a fault proxy between the kubeconfig's clients and the API server, e.g.
    /// latency=50ms,error-rate=0.1,throttle-rate=0.05,cut-watch=10s.
    #[arg(long)]
    faults: Option<FaultSpec>,
    /// Append every request through the fault proxy to this file (JSON lines); implies a proxy
    /// (with no faults unless --faults is given).
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Keep the cluster's data (etcd, keys, logs) here across runs instead of a temporary dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Run kube-apiserver with --watch-cache=false.
    #[arg(long)]
    no_watch_cache: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ramp_e2e::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ramp_e2e=info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Build => {
            binaries::build().await?;
            eprintln!(
                "[test-cluster build] ready: {}",
                binaries::cache_dir()?.join("bin").display()
            );
            Ok(())
        }
        Command::Up(args) => up(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let faults = match (&args.faults, &args.request_log) {
        (Some(spec), _) => Some(spec.clone()),
        (None, Some(_)) => Some(FaultSpec::none()),
        (None, None) => None,
    };
    let options = ClusterOptions {
        pod_ready_after: args.pod_ready_after,
        nodes: args.nodes,
        watch_cache: !args.no_watch_cache,
        data_dir: args.data_dir.clone(),
        faults,
        ..ClusterOptions::default()
    };
    let mut cluster = TestCluster::start(options)
        .await
        .context("starting the test cluster")?;
    let timings = cluster.start_timings().clone();

    // The written kubeconfig goes through the fault proxy when there is one.
    let source = match cluster.fault_proxy() {
        Some(proxy) => {
            if let Some(path) = &args.request_log {
                proxy
                    .log_to_file(path)
                    .with_context(|| format!("opening request log {}", path.display()))?;
            }
            proxy
                .kubeconfig_path()
                .context("the fault proxy has no kubeconfig")?
        }
        None => cluster.kubeconfig_path().to_path_buf(),
    };
    let contents = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    kubeconfig::write_atomically(&args.kubeconfig, &contents)?;
    eprintln!(
        "test cluster ready in {} (API server {}, controllers {}): {}",
        format_duration(timings.total),
        format_duration(timings.apiserver_ready),
        format_duration(timings.controller_manager_ready),
        cluster.server_url()
    );
    if let Some(proxy) = cluster.fault_proxy() {
        eprintln!("fault proxy {} with faults {}", proxy.url(), proxy.faults());
    }
    eprintln!(
        "kubeconfig: {}  (logs: {})",
        args.kubeconfig.display(),
        cluster.data_dir().join("logs").display()
    );

    let outcome = wait_for_shutdown(&mut cluster).await;
    cluster.stop();
    if let Err(error) = std::fs::remove_file(&args.kubeconfig) {
        eprintln!("could not remove {}: {error}", args.kubeconfig.display());
    }
    outcome
}

/// Returns on SIGTERM or Ctrl-C (Ok), or when a control-plane process dies (Err).
async fn wait_for_shutdown(cluster: &mut TestCluster) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; stopping the test cluster");
                return Ok(());
            }
            _ = terminate.recv() => {
                eprintln!("terminated; stopping the test cluster");
                return Ok(());
            }
            _ = check.tick() => {
                cluster.check_processes().context("a control-plane process died")?;
            }
        }
    }
}
