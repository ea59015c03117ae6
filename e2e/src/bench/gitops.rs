//! `bench gitops --manifests 1000`: Ramp's GitOps reconciler on one Application of N
//! ConfigMaps (one manifest file each), in a private test cluster:
//!
//! - first sync: Application created → Synced at the commit (status written);
//! - no-op sync: a push for the same commit → the reconcile that fetched, rendered and compared
//!   ended, and how many objects it wrote (goal 0);
//! - commit to applied: a commit changing one ConfigMap, announced through the webhook → the
//!   new value readable from the API server (goal ≤ 1 s);
//! - memory: the bench process's resident set after the first sync (the reconciler runs
//!   in-process; the API server and etcd are other processes);
//!
//! and the same cluster's raw cost of the API work involved (N ConfigMap creates at the same
//! concurrency; one server-side apply round trip), to report ratios.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::cluster::{configmap_create_rate, drop_namespace, fresh_namespace, timed_start};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::ClusterOptions;
use crate::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use crate::fixtures::gitops::{GitopsRunner, application, install_crds, summary, wait_for};

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// Manifests (ConfigMaps, one file each) in the Application.
    #[arg(long, default_value_t = 1000)]
    manifests: usize,
    /// Commit-to-applied samples per run.
    #[arg(long, default_value_t = 5)]
    commits: usize,
}

const LIMIT: Duration = Duration::from_secs(300);

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Kube { what, source }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io {
        what,
        path: std::env::temp_dir(),
        source,
    }
}

fn manifest(index: usize, generation: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index:05}\n  labels:\n    app.kubernetes.io/part-of: bench\ndata:\n  index: \"{index}\"\n  generation: \"{generation}\"\n"
    )
}

/// Resident set size of this process in MiB (from /proc/self/status).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn resource_versions(api: &Api<ConfigMap>) -> Result<BTreeMap<String, String>, BenchError> {
    let list = api
        .list(&ListParams::default().labels("app.kubernetes.io/part-of=bench"))
        .await
        .map_err(failed("listing ConfigMaps"))?;
    Ok(list
        .items
        .iter()
        .map(|m| (m.name_any(), m.resource_version().unwrap_or_default()))
        .collect())
}

/// Figures of one run.
struct RunFigures {
    first_sync_s: f64,
    noop_sync_ms: f64,
    noop_writes: f64,
    commit_to_applied_ms: Vec<f64>,
    rss_mib: f64,
    raw_create_s: f64,
    raw_apply_ms: f64,
}

async fn one_run(client: &Client, flags: &Flags) -> Result<RunFigures, BenchError> {
    let namespace = fresh_namespace(client, "bench-gitops").await?;
    let repo = GitRepo::new().map_err(io("creating the Git repository"))?;
    for index in 0..flags.manifests {
        repo.write(&format!("app/cm-{index:05}.yaml"), &manifest(index, 0))
            .map_err(io("writing manifests"))?;
    }
    let first = repo.commit("bench manifests").map_err(io("committing"))?;
    let daemon = GitDaemon::serve(&repo).map_err(io("starting git daemon"))?;
    let runner = GitopsRunner::start(client.clone(), &namespace, |_| {})
        .await
        .map_err(io("starting the reconciler"))?;
    let apps: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &kube::api::ApiResource::erase::<ramp_controller::gitops::Application>(&()),
    );
    let typed_apps: Api<ramp_controller::gitops::Application> =
        Api::namespaced(client.clone(), &namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    // First sync.
    let app = application(
        "bench",
        &namespace,
        &daemon.url(),
        "app",
        json!({"prune": true, "selfHeal": true}),
    );
    let began = Instant::now();
    typed_apps
        .create(&PostParams::default(), &app)
        .await
        .map_err(failed("creating the Application"))?;
    wait_for("the first sync", LIMIT, || async {
        let app = typed_apps.get_opt("bench").await.ok().flatten()?;
        let (sync, revision, _) = summary(&app);
        (sync == "Synced" && revision == first).then_some(())
    })
    .await
    .map_err(BenchError::Failed)?;
    let first_sync_s = began.elapsed().as_secs_f64();
    let rss = rss_mib();
    eprintln!(
        "first sync of {} manifests: {first_sync_s:.2}s",
        flags.manifests
    );

    // No-op sync: same commit pushed again; nothing may be written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resource_versions(&maps).await?;
    let app_version = apps
        .get("bench")
        .await
        .map_err(failed("reading the Application"))?
        .resource_version();
    let reconciles = runner.reconciles();
    let began = Instant::now();
    post_github_push(runner.webhook, &daemon.url(), "main", None)
        .await
        .map_err(io("posting the webhook"))?;
    wait_for("the no-op reconcile", LIMIT, || async {
        (runner.reconciles() > reconciles).then_some(())
    })
    .await
    .map_err(BenchError::Failed)?;
    let noop_sync_ms = began.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = resource_versions(&maps).await?;
    let changed_objects = before
        .iter()
        .filter(|(name, version)| after.get(*name) != Some(*version))
        .count();
    let app_changed = apps
        .get("bench")
        .await
        .map_err(failed("reading the Application"))?
        .resource_version()
        != app_version;
    let noop_writes = (changed_objects + usize::from(app_changed)) as f64;
    eprintln!("no-op sync: {noop_sync_ms:.0}ms, {noop_writes} writes");

    // Commit to applied, through the webhook.
    let mut latencies = Vec::new();
    for generation in 1..=flags.commits {
        let index = (generation * 7919) % flags.manifests;
        let name = format!("cm-{index:05}");
        repo.write(&format!("app/{name}.yaml"), &manifest(index, generation))
            .map_err(io("writing a manifest"))?;
        repo.commit(&format!("change {name}"))
            .map_err(io("committing"))?;
        let began = Instant::now();
        post_github_push(runner.webhook, &daemon.url(), "main", None)
            .await
            .map_err(io("posting the webhook"))?;
        let expected = generation.to_string();
        wait_for(
            &format!("{name} to carry generation {generation}"),
            LIMIT,
            || async {
                let map = maps.get_opt(&name).await.ok().flatten()?;
                (map.data?.get("generation")? == &expected).then_some(())
            },
        )
        .await
        .map_err(BenchError::Failed)?;
        let latency = began.elapsed().as_secs_f64() * 1000.0;
        eprintln!("commit to applied: {latency:.0}ms");
        latencies.push(latency);
        // Let the status settle so the next commit starts from a quiet reconciler.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(runner);
    drop(daemon);

    // The cluster's raw cost of the same API work.
    let raw_namespace = fresh_namespace(client, "bench-gitops-raw").await?;
    let rate = configmap_create_rate(client, &raw_namespace, flags.manifests, 16).await?;
    let raw_create_s = flags.manifests as f64 / rate;
    let raw_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &raw_namespace);
    let mut applies = Samples::new();
    for round in 0..20 {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-0"}, "data": {"round": round.to_string()}});
        let began = Instant::now();
        raw_maps
            .patch(
                "cm-0",
                &PatchParams::apply("ramp-bench").force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(failed("applying cm-0"))?;
        applies.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    drop_namespace(client, &raw_namespace).await?;
    drop_namespace(client, &namespace).await?;
    Ok(RunFigures {
        first_sync_s,
        noop_sync_ms,
        noop_writes,
        commit_to_applied_ms: latencies,
        rss_mib: rss,
        raw_create_s,
        raw_apply_ms: applies.median(),
    })
}

/// Runs the scenario.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("gitops", args)?;
    if flags.manifests == 0 {
        return Err(BenchError::Flags("--manifests must be at least 1".into()));
    }
    let runs = flags.common.runs.max(1);
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    install_crds(&client, &["applications.argoproj.io"])
        .await
        .map_err(BenchError::Failed)?;
    let rss_before = rss_mib();
    let mut first = Samples::new();
    let mut noop = Samples::new();
    let mut writes = Samples::new();
    let mut latency = Samples::new();
    let mut rss = Samples::new();
    let mut raw_create = Samples::new();
    let mut raw_apply = Samples::new();
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        let figures = one_run(&client, &flags).await?;
        first.push(figures.first_sync_s);
        noop.push(figures.noop_sync_ms);
        writes.push(figures.noop_writes);
        figures
            .commit_to_applied_ms
            .iter()
            .for_each(|l| latency.push(*l));
        rss.push(figures.rss_mib);
        raw_create.push(figures.raw_create_s);
        raw_apply.push(figures.raw_apply_ms);
    }
    let mut report = Report::new("gitops");
    report.add(
        "runs",
        runs as f64,
        "measurement runs (figures are medians)",
    );
    report.add(
        "manifests",
        flags.manifests as f64,
        "ConfigMaps in the Application, one file each",
    );
    report.add_median(
        "first_sync_s",
        &first,
        "Application created to Synced (all objects applied, status written)",
    );
    report.add_median(
        "raw_create_s",
        &raw_create,
        "the cluster creating as many ConfigMaps directly, 16 in flight",
    );
    report.add(
        "first_sync_ratio",
        first.median() / raw_create.median(),
        "first sync / raw creates",
    );
    report.add_median(
        "noop_sync_ms",
        &noop,
        "push of an unchanged commit to its reconcile done (fetch, render, compare)",
    );
    report.add_median(
        "noop_writes",
        &writes,
        "objects (and Application) written by the no-op sync; goal 0",
    );
    report.add_median(
        "commit_to_applied_ms",
        &latency,
        "webhook POST to the changed object readable; goal <= 1000",
    );
    report.add(
        "commit_to_applied_p90_ms",
        latency.quantile(0.9),
        "90th percentile of the above",
    );
    report.add_median(
        "raw_apply_ms",
        &raw_apply,
        "one server-side apply round trip on the same cluster",
    );
    report.add(
        "commit_to_applied_ratio",
        latency.median() / raw_apply.median(),
        "commit to applied / one apply",
    );
    report.add_median(
        "rss_mib",
        &rss,
        "bench process resident set after the first sync (reconciler in-process)",
    );
    report.add(
        "rss_before_mib",
        rss_before,
        "the same before any reconciler ran (cluster client only)",
    );
    let path = report.write(&output_dir(&flags.common))?;
    eprintln!("wrote {}", path.display());
    Ok(report)
}
