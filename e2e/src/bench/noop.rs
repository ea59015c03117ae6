//! `bench noop --rollouts 200 --manifests 200`: what Ramp writes when nothing changed, in a
//! private test cluster (goal: nothing at all).
//!
//! - Rollouts: N healthy canaries; a fresh controller starts, fills its caches and reconciles
//!   every one of them (a resync, as after a restart or a failover). Its patches and creates
//!   are counted from its own request counter, Events aside, and the resource versions of
//!   every Rollout, ReplicaSet and Service are compared before and after.
//! - GitOps: one Application of M manifests (ConfigMaps and Services) synced; a fresh
//!   reconciler starts and syncs it again (a resync), then a push webhook for the same commit
//!   triggers another sync. Every object's and the Application's resource version is compared
//!   before and after each.
//!
//! The baseline is the cluster's time to list the same Rollouts once, so the resync is also
//! given as a ratio of the raw read it cannot avoid.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use ramp_controller::api::Rollout;
use ramp_controller::gitops::Application;
use serde_json::json;

use super::cluster::{drop_namespace, fresh_namespace, timed_start};
use super::rollouts::{create_healthy, resync_once};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::ClusterOptions;
use crate::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use crate::fixtures::gitops::{GitopsRunner, application, install_crds, summary, wait_for};
use crate::fixtures::rollouts::install_rollout_crds;

const LIMIT: Duration = Duration::from_secs(300);
const PART_OF: &str = "app.kubernetes.io/part-of=bench-noop";

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// Healthy Rollouts (one pod each) resynced by a fresh controller.
    #[arg(long, default_value_t = 200)]
    rollouts: usize,
    /// Manifests in the GitOps Application (half ConfigMaps, half Services).
    #[arg(long, default_value_t = 200)]
    manifests: usize,
}

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

/// Resource versions of every object of kind `K` in `namespace` matching `labels`.
async fn versions_of<K>(
    client: &Client,
    namespace: &str,
    labels: Option<&str>,
) -> Result<BTreeMap<String, String>, BenchError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default();
    if let Some(labels) = labels {
        params = params.labels(labels);
    }
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let list = api
        .list(&params)
        .await
        .map_err(failed(format!("listing {kind}s in {namespace}")))?;
    Ok(list
        .items
        .iter()
        .map(|o| {
            (
                format!("{kind}/{}", o.name_any()),
                o.resource_version().unwrap_or_default(),
            )
        })
        .collect())
}

/// How many entries of `before` have another version (or are gone) in `after`.
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> usize {
    before
        .iter()
        .filter(|(name, version)| after.get(*name) != Some(*version))
        .count()
        + after
            .keys()
            .filter(|name| !before.contains_key(*name))
            .count()
}

async fn rollout_versions(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, BenchError> {
    let mut all = versions_of::<Rollout>(client, namespace, None).await?;
    all.extend(versions_of::<ReplicaSet>(client, namespace, None).await?);
    all.extend(versions_of::<Service>(client, namespace, None).await?);
    Ok(all)
}

async fn gitops_versions(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, BenchError> {
    let mut all = versions_of::<ConfigMap>(client, namespace, Some(PART_OF)).await?;
    all.extend(versions_of::<Service>(client, namespace, Some(PART_OF)).await?);
    all.extend(versions_of::<Application>(client, namespace, None).await?);
    Ok(all)
}

fn manifest(index: usize) -> String {
    if index.is_multiple_of(2) {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index:05}\n  labels:\n    app.kubernetes.io/part-of: bench-noop\ndata:\n  index: \"{index}\"\n"
        )
    } else {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{index:05}\n  labels:\n    app.kubernetes.io/part-of: bench-noop\nspec:\n  selector:\n    app: svc-{index:05}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
        )
    }
}

/// Figures of one GitOps run.
struct GitopsFigures {
    resync_writes: f64,
    resync_ms: f64,
    webhook_writes: f64,
    webhook_ms: f64,
}

/// One Application of `manifests` objects synced, then resynced by a fresh reconciler and
/// again through a webhook for the same commit.
async fn gitops_run(client: &Client, manifests: usize) -> Result<GitopsFigures, BenchError> {
    let namespace = fresh_namespace(client, "bench-noop-gitops").await?;
    let repo = GitRepo::new().map_err(io("creating the Git repository"))?;
    for index in 0..manifests {
        repo.write(&format!("app/object-{index:05}.yaml"), &manifest(index))
            .map_err(io("writing manifests"))?;
    }
    let commit = repo.commit("bench manifests").map_err(io("committing"))?;
    let daemon = GitDaemon::serve(&repo).map_err(io("starting git daemon"))?;
    let apps: Api<Application> = Api::namespaced(client.clone(), &namespace);
    let synced = || async {
        let app = apps.get_opt("bench").await.ok().flatten()?;
        let (sync, revision, _) = summary(&app);
        (sync == "Synced" && revision == commit).then_some(())
    };

    let first = GitopsRunner::start(client.clone(), &namespace, |_| {})
        .await
        .map_err(io("starting the reconciler"))?;
    let app = application(
        "bench",
        &namespace,
        &daemon.url(),
        "app",
        json!({"prune": true, "selfHeal": true}),
    );
    apps.create(&PostParams::default(), &app)
        .await
        .map_err(failed("creating the Application"))?;
    wait_for("the first sync", LIMIT, synced)
        .await
        .map_err(BenchError::Failed)?;
    // Let the last status write land before the reconciler goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(first);

    // A fresh reconciler: its first sync of an unchanged app.
    let before = gitops_versions(client, &namespace).await?;
    let began = Instant::now();
    let runner = GitopsRunner::start(client.clone(), &namespace, |_| {})
        .await
        .map_err(io("starting the reconciler again"))?;
    wait_for("the resync", LIMIT, || async {
        (runner.reconciles() >= 1).then_some(())
    })
    .await
    .map_err(BenchError::Failed)?;
    let resync_ms = began.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = gitops_versions(client, &namespace).await?;
    let resync_writes = changed(&before, &after) as f64;

    // A push for the same commit.
    let reconciles = runner.reconciles();
    let began = Instant::now();
    post_github_push(runner.webhook, &daemon.url(), "main", None)
        .await
        .map_err(io("posting the webhook"))?;
    wait_for("the webhook's sync", LIMIT, || async {
        (runner.reconciles() > reconciles).then_some(())
    })
    .await
    .map_err(BenchError::Failed)?;
    let webhook_ms = began.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = gitops_versions(client, &namespace).await?;
    let webhook_writes = changed(&after, &later) as f64;
    drop(runner);
    drop(daemon);
    drop_namespace(client, &namespace).await?;
    Ok(GitopsFigures {
        resync_writes,
        resync_ms,
        webhook_writes,
        webhook_ms,
    })
}

/// `bench noop`.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("noop", args)?;
    let runs = flags.common.runs.max(1);
    let count = flags.rollouts.max(1);
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    install_rollout_crds(&client)
        .await
        .map_err(BenchError::Failed)?;
    install_crds(&client, &["applications.argoproj.io"])
        .await
        .map_err(BenchError::Failed)?;

    let namespace = fresh_namespace(&client, "bench-noop").await?;
    create_healthy(&client, cluster.kubeconfig_path(), &namespace, count).await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
    let mut rollout_writes = Samples::new();
    let mut rollout_changed = Samples::new();
    let mut resync_s = Samples::new();
    let mut list_ms = Samples::new();
    let mut gitops_resync_writes = Samples::new();
    let mut gitops_resync_ms = Samples::new();
    let mut gitops_webhook_writes = Samples::new();
    let mut gitops_webhook_ms = Samples::new();
    for run in 0..runs {
        let before = rollout_versions(&client, &namespace).await?;
        let resync = resync_once(cluster.kubeconfig_path(), &namespace, count).await?;
        let after = rollout_versions(&client, &namespace).await?;
        rollout_writes.push(resync.writes);
        rollout_changed.push(changed(&before, &after) as f64);
        resync_s.push(resync.resync_s);
        let listed = Instant::now();
        rollouts
            .list(&ListParams::default())
            .await
            .map_err(failed("listing Rollouts"))?;
        list_ms.push(listed.elapsed().as_secs_f64() * 1000.0);

        let gitops = gitops_run(&client, flags.manifests).await?;
        gitops_resync_writes.push(gitops.resync_writes);
        gitops_resync_ms.push(gitops.resync_ms);
        gitops_webhook_writes.push(gitops.webhook_writes);
        gitops_webhook_ms.push(gitops.webhook_ms);
        eprintln!(
            "run {}/{runs}: Rollout resync {} writes ({} objects changed), GitOps resync {} and webhook {} objects changed",
            run + 1,
            resync.writes,
            changed(&before, &after),
            gitops.resync_writes,
            gitops.webhook_writes
        );
    }
    drop_namespace(&client, &namespace).await?;

    let mut report = Report::new("noop");
    report.add("runs", runs as f64, "resyncs measured");
    report.add("rollouts", count as f64, "healthy canaries resynced");
    report.add_median(
        "rollout_resync_writes",
        &rollout_writes,
        "patches and creates sent by a fresh controller's resync, Events aside (goal 0)",
    );
    report.add_median(
        "rollout_objects_changed",
        &rollout_changed,
        "Rollouts, ReplicaSets and Services whose resourceVersion moved (goal 0)",
    );
    report.add_median(
        "rollout_resync_s",
        &resync_s,
        "fresh controller start to every Rollout reconciled",
    );
    report.add_median(
        "raw_list_ms",
        &list_ms,
        "the cluster listing the Rollouts once",
    );
    report.add(
        "resync_vs_list_ratio",
        resync_s.median() * 1000.0 / list_ms.median(),
        "resync time / one LIST of the Rollouts",
    );
    report.add(
        "manifests",
        flags.manifests as f64,
        "objects in the Application",
    );
    report.add_median(
        "gitops_resync_writes",
        &gitops_resync_writes,
        "objects and Application changed by a fresh reconciler's sync (goal 0)",
    );
    report.add_median(
        "gitops_resync_ms",
        &gitops_resync_ms,
        "fresh reconciler start to its first sync done",
    );
    report.add_median(
        "gitops_webhook_writes",
        &gitops_webhook_writes,
        "objects and Application changed by a webhook for the same commit (goal 0)",
    );
    report.add_median(
        "gitops_webhook_ms",
        &gitops_webhook_ms,
        "webhook to its sync done",
    );
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}
