//! Rollout controller benchmarks, each in a private test cluster with Ramp's controller
//! in-process (the AnalysisRun runner off: the bench writes run verdicts itself, so nothing
//! depends on Prometheus).
//!
//! `bench abort --runs 100`: a canary paused on an `analysis` step; its AnalysisRun is set to
//! Failed and the time is taken until the canary Service selects the stable pods again (the
//! traffic move of a canary without a router: after it no request reaches the canary),
//! observed on a watch. p50/p99 over the runs, and the same cluster's raw cost of that
//! round trip (a patch and its watch event) to report a ratio.
//!
//! `bench reconcile --rollouts 200`: N healthy canaries; a fresh controller reconciles all of
//! them from its caches: the time per Rollout (the `rollout_reconcile` histogram), the full
//! resync time, the writes it made (goal 0), against the cluster's time to list them.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use ramp_controller::api::{AnalysisRun, AnalysisTemplate, Rollout};
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use serde_json::json;

use super::cluster::{drop_namespace, fresh_namespace, timed_start};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::ClusterOptions;
use crate::fixtures::rollouts::{
    InProcessController, canary_rollout, healthy, install_rollout_crds, service, wait_for,
};

const LIMIT: Duration = Duration::from_secs(120);

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Kube { what, source }
}

#[derive(Debug, clap::Parser)]
struct AbortFlags {
    #[command(flatten)]
    common: CommonFlags,
    /// Replicas of the Rollout.
    #[arg(long, default_value_t = 2)]
    replicas: i32,
}

/// `bench abort`.
pub async fn abort(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: AbortFlags = parse_flags("abort", args)?;
    let runs = flags.common.runs.max(1);
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    install_rollout_crds(&client)
        .await
        .map_err(BenchError::Failed)?;
    let namespace = fresh_namespace(&client, "bench-abort").await?;
    let controller = InProcessController::start(cluster.kubeconfig_path(), &namespace, |_| {})
        .await
        .map_err(BenchError::Failed)?;

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    for name in ["app-stable", "app-canary"] {
        services
            .create(&PostParams::default(), &service(name, "app"))
            .await
            .map_err(failed(format!("creating Service {name}")))?;
    }
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), &namespace);
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "errors"},
        "spec": {"metrics": [{"name": "error-rate", "provider": {"web": {"url": "http://127.0.0.1:1/"}}}]}
    }))
    .map_err(|e| BenchError::Failed(e.to_string()))?;
    templates
        .create(&PostParams::default(), &template)
        .await
        .map_err(failed("creating the AnalysisTemplate"))?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
    let canary = json!({
        "stableService": "app-stable", "canaryService": "app-canary",
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "errors"}]}}, {"pause": {}}]
    });
    rollouts
        .create(
            &PostParams::default(),
            &canary_rollout("app", flags.replicas, "demo:0", canary),
        )
        .await
        .map_err(failed("creating the Rollout"))?;
    wait_rollout(&rollouts, "Healthy", healthy).await?;

    let runs_api: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    let mut abort_ms = Samples::new();
    let mut raw_ms = Samples::new();
    for run in 0..runs {
        // A new revision reaches its analysis step.
        let image = format!("demo:{}", run + 1);
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
        rollouts
            .patch("app", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(failed("updating the Rollout"))?;
        let at_analysis = wait_rollout(&rollouts, "running its analysis step", |r| {
            let status = r.status.as_ref();
            status.and_then(|s| s.current_step_index) == Some(1)
                && status
                    .and_then(|s| s.canary.as_ref())
                    .and_then(|c| c.current_step_analysis_run_status.as_ref())
                    .is_some()
                && status.and_then(|s| s.abort) != Some(true)
        })
        .await?;
        let status = at_analysis.status.clone().unwrap_or_default();
        let stable = status.stable_rs.clone().unwrap_or_default();
        let run_name = status
            .canary
            .and_then(|c| c.current_step_analysis_run_status)
            .map(|s| s.name)
            .unwrap_or_default();
        wait_for("the canary Service on the canary pods", LIMIT, || async {
            let svc = services.get("app-canary").await.ok()?;
            let selected = svc.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned();
            (selected.as_deref() != Some(stable.as_str())).then_some(())
        })
        .await
        .map_err(BenchError::Failed)?;

        // Fail the run; time until the canary Service selects the stable pods.
        let version = services
            .get("app-canary")
            .await
            .map_err(failed("reading the canary Service"))?
            .metadata
            .resource_version
            .unwrap_or_default();
        let mut watch = services
            .watch(
                &WatchParams::default()
                    .fields("metadata.name=app-canary")
                    .timeout(120),
                &version,
            )
            .await
            .map_err(failed("watching the canary Service"))?
            .boxed();
        let verdict = json!({"status": {"phase": "Failed", "message": "Metric \"error-rate\" assessed Failed"}});
        let began = Instant::now();
        runs_api
            .patch_status(&run_name, &PatchParams::default(), &Patch::Merge(verdict))
            .await
            .map_err(failed(format!("failing AnalysisRun {run_name}")))?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .map_err(|_| {
                    BenchError::Failed(
                        "the canary Service did not move back to stable within 30s".into(),
                    )
                })?
                .ok_or_else(|| BenchError::Failed("the Service watch ended".into()))?
                .map_err(failed("reading the Service watch"))?;
            if let WatchEvent::Modified(svc) = event {
                let selected = svc
                    .spec
                    .and_then(|s| s.selector)
                    .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned());
                if selected.as_deref() == Some(stable.as_str()) {
                    abort_ms.push(began.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        drop(watch);
        wait_rollout(&rollouts, "aborted", |r| {
            r.status.as_ref().and_then(|s| s.abort) == Some(true)
        })
        .await?;

        // The cluster's own cost of the same round trip: one patch and its watch event.
        raw_ms.push(raw_patch_to_event(&services, run).await?);
        if (run + 1) % 10 == 0 || run + 1 == runs {
            eprintln!(
                "{}/{runs}: abort p50 {:.1} ms, p99 {:.1} ms",
                run + 1,
                abort_ms.median(),
                abort_ms.quantile(0.99)
            );
        }
    }
    let metrics = controller.metrics().await.map_err(BenchError::Failed)?;
    controller.stop().await.map_err(BenchError::Failed)?;
    drop_namespace(&client, &namespace).await?;

    let mut report = Report::new("abort");
    report.add("runs", runs as f64, "aborts measured");
    report.add(
        "abort_p50_ms",
        abort_ms.median(),
        "AnalysisRun set Failed → canary Service selects the stable pods, seen on a watch (p50)",
    );
    report.add(
        "abort_p99_ms",
        abort_ms.quantile(0.99),
        "the same, p99 (goal ≤ 50 ms)",
    );
    report.add("abort_max_ms", abort_ms.max(), "the same, worst run");
    report.add(
        "raw_patch_event_p50_ms",
        raw_ms.median(),
        "the cluster: one patch and its watch event (p50)",
    );
    report.add(
        "abort_p50_ratio",
        abort_ms.median() / raw_ms.median(),
        "abort p50 / raw round trip p50",
    );
    report.add(
        "reconcile_mean_ms",
        histogram_mean_ms(&metrics, "rollout_reconcile"),
        "mean reconcile time over the run",
    );
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}

/// Patches a Service annotation and waits for its watch event; milliseconds.
async fn raw_patch_to_event(services: &Api<Service>, marker: usize) -> Result<f64, BenchError> {
    let version = services
        .get("app-stable")
        .await
        .map_err(failed("reading the stable Service"))?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = services
        .watch(
            &WatchParams::default()
                .fields("metadata.name=app-stable")
                .timeout(60),
            &version,
        )
        .await
        .map_err(failed("watching the stable Service"))?
        .boxed();
    let value = format!("m{marker}");
    let began = Instant::now();
    services
        .patch(
            "app-stable",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bench.ramp/marker": value}}})),
        )
        .await
        .map_err(failed("patching the stable Service"))?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .map_err(|_| BenchError::Failed("no watch event within 10s".into()))?
            .ok_or_else(|| BenchError::Failed("the watch ended".into()))?
            .map_err(failed("reading the watch"))?;
        if let WatchEvent::Modified(svc) = event
            && svc
                .metadata
                .annotations
                .and_then(|a| a.get("bench.ramp/marker").cloned())
                .as_deref()
                == Some(value.as_str())
        {
            return Ok(began.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

async fn wait_rollout(
    api: &Api<Rollout>,
    what: &str,
    check: impl Fn(&Rollout) -> bool,
) -> Result<Rollout, BenchError> {
    crate::fixtures::rollouts::wait_rollout(api, "app", what, LIMIT, check)
        .await
        .map_err(BenchError::Failed)
}

/// Mean of a Prometheus histogram (sum/count over every label set), in milliseconds.
fn histogram_mean_ms(metrics: &str, family: &str) -> f64 {
    let total = |suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{family}_{suffix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = total("count");
    if count == 0.0 {
        f64::NAN
    } else {
        total("sum") / count * 1000.0
    }
}

/// Creates `count` one-pod canaries in `namespace` and has a controller bring them all to
/// Healthy; returns the seconds that took. The controller is stopped afterwards.
pub async fn create_healthy(
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    namespace: &str,
    count: usize,
) -> Result<f64, BenchError> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let first = InProcessController::start(kubeconfig, namespace, |_| {})
        .await
        .map_err(BenchError::Failed)?;
    let began = Instant::now();
    for index in 0..count {
        let rollout = canary_rollout(
            &format!("r{index:05}"),
            1,
            "demo:1",
            json!({"steps": [{"setWeight": 50}]}),
        );
        rollouts
            .create(&PostParams::default(), &rollout)
            .await
            .map_err(failed("creating Rollouts"))?;
    }
    wait_for(
        &format!("{count} Rollouts Healthy"),
        Duration::from_secs(60 + count as u64),
        || async {
            let list = rollouts.list(&ListParams::default()).await.ok()?;
            (list.items.iter().filter(|r| healthy(r)).count() == count).then_some(())
        },
    )
    .await
    .map_err(BenchError::Failed)?;
    let seconds = began.elapsed().as_secs_f64();
    first.stop().await.map_err(BenchError::Failed)?;
    Ok(seconds)
}

/// What a fresh controller did to bring its caches up and reconcile every Rollout once.
pub struct Resync {
    /// Start to every Rollout reconciled, in seconds.
    pub resync_s: f64,
    /// Mean time of one reconcile (the `rollout_reconcile` histogram), in milliseconds.
    pub reconcile_ms: f64,
    /// Patches and creates it sent, Events aside.
    pub writes: f64,
}

/// Starts a fresh controller for `namespace`, waits until it reconciled `count` Rollouts, a
/// moment more for any write to be sent, and stops it.
pub async fn resync_once(
    kubeconfig: &std::path::Path,
    namespace: &str,
    count: usize,
) -> Result<Resync, BenchError> {
    let began = Instant::now();
    let controller = InProcessController::start(kubeconfig, namespace, |_| {})
        .await
        .map_err(BenchError::Failed)?;
    wait_for("every Rollout reconciled", LIMIT, || async {
        let metrics = controller.metrics().await.ok()?;
        let done = counter_sum(&metrics, "rollout_reconcile_count", &[]);
        (done >= count as f64).then_some(())
    })
    .await
    .map_err(BenchError::Failed)?;
    let resync_s = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = controller.metrics().await.map_err(BenchError::Failed)?;
    let requests = "controller_clientset_k8s_request_total";
    let writes = counter_sum(&metrics, requests, &["verb=\"Patch\""])
        + counter_sum(&metrics, requests, &["verb=\"Create\""])
        - counter_sum(&metrics, requests, &["verb=\"Create\"", "kind=\"events\""]);
    controller.stop().await.map_err(BenchError::Failed)?;
    Ok(Resync {
        resync_s,
        reconcile_ms: histogram_mean_ms(&metrics, "rollout_reconcile"),
        writes,
    })
}

/// Sum of a counter family's samples whose line contains every `filter`.
fn counter_sum(metrics: &str, family: &str, filters: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Debug, clap::Parser)]
struct ReconcileFlags {
    #[command(flatten)]
    common: CommonFlags,
    /// Rollouts (one pod each).
    #[arg(long, default_value_t = 200)]
    rollouts: usize,
}

/// `bench reconcile`.
pub async fn reconcile(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: ReconcileFlags = parse_flags("reconcile", args)?;
    let runs = flags.common.runs.max(1);
    let count = flags.rollouts.max(1);
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    install_rollout_crds(&client)
        .await
        .map_err(BenchError::Failed)?;
    let namespace = fresh_namespace(&client, "bench-reconcile").await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
    let rollout_to_healthy_s =
        create_healthy(&client, cluster.kubeconfig_path(), &namespace, count).await?;

    let mut resync = Samples::new();
    let mut per_rollout = Samples::new();
    let mut writes = Samples::new();
    let mut list_ms = Samples::new();
    for run in 0..runs {
        let figures = resync_once(cluster.kubeconfig_path(), &namespace, count).await?;
        resync.push(figures.resync_s);
        per_rollout.push(figures.reconcile_ms);
        writes.push(figures.writes);
        let listed = Instant::now();
        rollouts
            .list(&ListParams::default())
            .await
            .map_err(failed("listing Rollouts"))?;
        list_ms.push(listed.elapsed().as_secs_f64() * 1000.0);
        eprintln!("run {}/{runs}: resync {:.2}s", run + 1, resync.median());
    }
    drop_namespace(&client, &namespace).await?;

    let mut report = Report::new("reconcile");
    report.add("runs", runs as f64, "controller restarts measured");
    report.add(
        "rollouts",
        count as f64,
        "healthy canaries reconciled by a fresh controller",
    );
    report.add(
        "create_to_healthy_s",
        rollout_to_healthy_s,
        "all Rollouts created and Healthy (pods included)",
    );
    report.add_median(
        "reconcile_ms",
        &per_rollout,
        "mean time of one reconcile (rollout_reconcile histogram)",
    );
    report.add_median(
        "resync_s",
        &resync,
        "fresh controller start to every Rollout reconciled (caches loaded)",
    );
    report.add_median(
        "resync_writes",
        &writes,
        "writes made by the resync (goal 0)",
    );
    report.add_median(
        "raw_list_ms",
        &list_ms,
        "the cluster listing the Rollouts once",
    );
    report.add(
        "reconcile_vs_list_ratio",
        per_rollout.median() * count as f64 / list_ms.median(),
        "time to reconcile all / one LIST of all",
    );
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}
