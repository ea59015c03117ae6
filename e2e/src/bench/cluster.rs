//! `bench cluster`: the test cluster's own figures, the baseline later Ramp figures are divided
//! by. Cold start (fresh data directory), warm start (existing data directory), and how many
//! objects per second the API server accepts: create, merge patch, server-side apply, status
//! patch of a custom resource with a status subresource (what Ramp writes most), list, watch
//! event latency, and how fast the kubelet simulator gets a Deployment's pods Ready.
//!
//! The measuring functions are public so other scenarios can take the same figures in their
//! own setting.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use serde_json::json;

use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::{ClusterOptions, TestCluster};

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// Objects per throughput run.
    #[arg(long, default_value_t = 500)]
    objects: usize,
    /// Requests in flight during throughput runs.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Watch-latency samples per run.
    #[arg(long, default_value_t = 50)]
    watch_samples: usize,
    /// Replicas of the Deployment whose pods must become Ready.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// Skip the (slow) cold and warm start measurements.
    #[arg(long)]
    skip_start: bool,
}

/// The throughput operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    MergePatch,
    Apply,
    StatusPatch,
    Delete,
}

/// The custom resource used for throughput: `benchobjects.bench.ramp.dev`, namespaced, with a
/// status subresource and schemaless spec and status.
pub fn bench_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bench.ramp.dev", "v1", "BenchObject"),
        "benchobjects",
    )
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Kube { what, source }
}

/// Installs the bench CRD (idempotent) and waits until it is Established.
pub async fn ensure_bench_crd(client: &Client) -> Result<(), BenchError> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "benchobjects.bench.ramp.dev" },
        "spec": {
            "group": "bench.ramp.dev",
            "scope": "Namespaced",
            "names": { "plural": "benchobjects", "singular": "benchobject", "kind": "BenchObject", "listKind": "BenchObjectList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                }}},
            }],
        },
    }))
    .map_err(|e| BenchError::Failed(format!("bench CRD: {e}")))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "benchobjects.bench.ramp.dev",
        &PatchParams::apply("ramp-bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(failed("installing CRD benchobjects.bench.ramp.dev"))?;
    let began = Instant::now();
    loop {
        let current = crds
            .get("benchobjects.bench.ramp.dev")
            .await
            .map_err(failed("reading the bench CRD"))?;
        let established = current.status.and_then(|s| s.conditions).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return Ok(());
        }
        if began.elapsed() > Duration::from_secs(30) {
            return Err(BenchError::Failed(
                "CRD benchobjects.bench.ramp.dev not Established after 30s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a namespace for one run.
pub async fn fresh_namespace(client: &Client, prefix: &str) -> Result<String, BenchError> {
    let name = format!("{prefix}-{}", fastrand::u32(..));
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(failed(format!("creating namespace {name}")))?;
    Ok(name)
}

/// Deletes a run's namespace without waiting.
pub async fn drop_namespace(client: &Client, name: &str) -> Result<(), BenchError> {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
        .map_err(failed(format!("deleting namespace {name}")))?;
    Ok(())
}

fn object_name(index: usize) -> String {
    format!("obj-{index}")
}

/// Runs `operation` on objects `obj-0..count` of the bench resource in `namespace` with
/// `concurrency` requests in flight; returns operations per second. Create must run before the
/// others.
pub async fn throughput(
    client: &Client,
    namespace: &str,
    operation: Operation,
    count: usize,
    concurrency: usize,
) -> Result<f64, BenchError> {
    let resource = bench_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let began = Instant::now();
    futures::stream::iter(0..count)
        .map(|index| {
            let api = api.clone();
            let resource = resource.clone();
            async move {
                let name = object_name(index);
                let result = match operation {
                    Operation::Create => {
                        let mut object = DynamicObject::new(&name, &resource);
                        object.data = json!({ "spec": { "index": index } });
                        api.create(&PostParams::default(), &object).await.map(drop)
                    }
                    Operation::MergePatch => api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "spec": { "patched": index } })),
                        )
                        .await
                        .map(drop),
                    Operation::Apply => {
                        let applied = json!({
                            "apiVersion": resource.api_version, "kind": resource.kind,
                            "metadata": { "name": name }, "spec": { "applied": index },
                        });
                        api.patch(
                            &name,
                            &PatchParams::apply("ramp-bench").force(),
                            &Patch::Apply(applied),
                        )
                        .await
                        .map(drop)
                    }
                    Operation::StatusPatch => api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "status": { "observed": index } })),
                        )
                        .await
                        .map(drop),
                    Operation::Delete => {
                        api.delete(&name, &DeleteParams::default()).await.map(drop)
                    }
                };
                result.map_err(failed(format!("{operation:?} of {namespace}/{name}")))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count as f64 / began.elapsed().as_secs_f64())
}

/// Creates `count` ConfigMaps (a built-in, protobuf-stored kind) and returns creates per second.
pub async fn configmap_create_rate(
    client: &Client,
    namespace: &str,
    count: usize,
    concurrency: usize,
) -> Result<f64, BenchError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    futures::stream::iter(0..count)
        .map(|index| {
            let api = api.clone();
            async move {
                let map: ConfigMap = serde_json::from_value(json!({
                    "metadata": { "name": format!("cm-{index}") }, "data": { "index": index.to_string() },
                }))
                .map_err(|e| BenchError::Failed(e.to_string()))?;
                api.create(&PostParams::default(), &map).await.map(drop).map_err(failed(format!("creating cm-{index}")))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count as f64 / began.elapsed().as_secs_f64())
}

/// Lists every bench object in `namespace` once; returns how long it took and how many came back.
pub async fn list_once(client: &Client, namespace: &str) -> Result<(Duration, usize), BenchError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &bench_resource());
    let began = Instant::now();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing bench objects in {namespace}")))?;
    Ok((began.elapsed(), list.items.len()))
}

/// Patches bench objects one after another and measures, for each, the time from sending the
/// patch to its event arriving on a watch of the namespace (milliseconds). Needs at least one
/// object (`obj-0`…).
pub async fn watch_latencies(
    client: &Client,
    namespace: &str,
    samples: usize,
    objects: usize,
) -> Result<Samples, BenchError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &bench_resource());
    let list = api
        .list(&ListParams::default().limit(1))
        .await
        .map_err(failed("listing before the watch"))?;
    let version = list.metadata.resource_version.unwrap_or_else(|| "0".into());
    let mut events = api
        .watch(&WatchParams::default().timeout(290), &version)
        .await
        .map_err(failed(format!("watching bench objects in {namespace}")))?
        .boxed();
    let mut latencies = Samples::new();
    for sample in 0..samples {
        let name = object_name(sample % objects.max(1));
        let marker = format!("w{sample}");
        let began = Instant::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "marker": marker } })),
        )
        .await
        .map_err(failed(format!("patching {namespace}/{name}")))?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .map_err(|_| BenchError::Failed(format!("no watch event for {name} within 10s")))?
                .ok_or_else(|| BenchError::Failed("the watch ended".into()))?
                .map_err(failed("reading the watch"))?;
            if let WatchEvent::Modified(object) = event
                && object.data["spec"]["marker"] == marker.as_str()
            {
                latencies.push(began.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    Ok(latencies)
}

/// Creates a Deployment of `replicas` pods and returns pods made Ready per second (from the
/// create to `readyReplicas == replicas`): the controller manager and the kubelet simulator
/// together.
pub async fn pods_ready_rate(
    client: &Client,
    namespace: &str,
    replicas: usize,
) -> Result<f64, BenchError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "bench-pods" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "bench-pods" } },
            "template": {
                "metadata": { "labels": { "app": "bench-pods" } },
                "spec": { "containers": [{ "name": "app", "image": "bench:1" }] },
            },
        },
    }))
    .map_err(|e| BenchError::Failed(e.to_string()))?;
    let began = Instant::now();
    api.create(&PostParams::default(), &deployment)
        .await
        .map_err(failed("creating Deployment bench-pods"))?;
    let limit = Duration::from_secs(60 + replicas as u64 / 5);
    loop {
        let current = api
            .get("bench-pods")
            .await
            .map_err(failed("reading Deployment bench-pods"))?;
        let ready = current.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready as usize >= replicas {
            return Ok(replicas as f64 / began.elapsed().as_secs_f64());
        }
        if began.elapsed() > limit {
            return Err(BenchError::Failed(format!(
                "only {ready} of {replicas} pods Ready after {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts a cluster with `options` and returns it with its start time in seconds.
pub async fn timed_start(options: ClusterOptions) -> Result<(TestCluster, f64), BenchError> {
    let cluster = TestCluster::start(options).await?;
    let seconds = cluster.start_timings().total.as_secs_f64();
    Ok((cluster, seconds))
}

pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("cluster", args)?;
    let runs = flags.common.runs.max(1);
    let mut report = Report::new("cluster");
    report.add(
        "runs",
        runs as f64,
        "measurement runs (figures are medians)",
    );

    if !flags.skip_start {
        // Make sure a build (if any) does not count as a start.
        crate::cluster::KubeBinaries::ensure().await?;
        let mut cold = Samples::new();
        let mut cold_apiserver = Samples::new();
        for run in 0..runs {
            let (cluster, seconds) = timed_start(ClusterOptions::default()).await?;
            cold_apiserver.push(cluster.start_timings().apiserver_ready.as_secs_f64());
            cold.push(seconds);
            eprintln!("cold start {}/{runs}: {seconds:.2}s", run + 1);
        }
        report.add_median(
            "cold_start_s",
            &cold,
            "start with a fresh data dir until usable (nodes Ready, controllers running)",
        );
        report.add_median(
            "cold_apiserver_ready_s",
            &cold_apiserver,
            "of which: spawn to kube-apiserver /readyz ok",
        );

        let data = tempfile::Builder::new()
            .prefix("ramp-bench-warm-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .map_err(|source| BenchError::Io {
                what: "creating the warm-start data dir",
                path: std::env::temp_dir(),
                source,
            })?;
        let persistent = ClusterOptions {
            data_dir: Some(data.path().to_path_buf()),
            ..ClusterOptions::default()
        };
        drop(timed_start(persistent.clone()).await?);
        let mut warm = Samples::new();
        for run in 0..runs {
            let (_cluster, seconds) = timed_start(persistent.clone()).await?;
            warm.push(seconds);
            eprintln!("warm start {}/{runs}: {seconds:.2}s", run + 1);
        }
        report.add_median(
            "warm_start_s",
            &warm,
            "restart on an existing data dir until usable",
        );
    }

    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    ensure_bench_crd(&client).await?;
    let mut rates: Vec<(Operation, Samples)> = [
        Operation::Create,
        Operation::MergePatch,
        Operation::Apply,
        Operation::StatusPatch,
        Operation::Delete,
    ]
    .into_iter()
    .map(|op| (op, Samples::new()))
    .collect();
    let mut configmaps = Samples::new();
    let mut list_ms = Samples::new();
    let mut list_rate = Samples::new();
    let mut watch = Samples::new();
    let mut pods = Samples::new();
    for run in 0..runs {
        let namespace = fresh_namespace(&client, "bench").await?;
        for (operation, samples) in rates.iter_mut() {
            if *operation == Operation::Delete {
                let (took, count) = list_once(&client, &namespace).await?;
                if count != flags.objects {
                    return Err(BenchError::Failed(format!(
                        "listed {count} bench objects, expected {}",
                        flags.objects
                    )));
                }
                list_ms.push(took.as_secs_f64() * 1000.0);
                list_rate.push(count as f64 / took.as_secs_f64());
                watch.extend(
                    &watch_latencies(&client, &namespace, flags.watch_samples, flags.objects)
                        .await?,
                );
            }
            samples.push(
                throughput(
                    &client,
                    &namespace,
                    *operation,
                    flags.objects,
                    flags.concurrency,
                )
                .await?,
            );
        }
        configmaps.push(
            configmap_create_rate(&client, &namespace, flags.objects, flags.concurrency).await?,
        );
        pods.push(pods_ready_rate(&client, &namespace, flags.pods).await?);
        drop_namespace(&client, &namespace).await?;
        eprintln!("throughput run {}/{runs} done", run + 1);
    }
    let describe = |op: Operation| match op {
        Operation::Create => ("create_per_s", "custom resources created per second"),
        Operation::MergePatch => ("update_per_s", "merge patches of spec per second"),
        Operation::Apply => ("apply_per_s", "server-side applies per second"),
        Operation::StatusPatch => (
            "status_patch_per_s",
            "status subresource merge patches per second",
        ),
        Operation::Delete => ("delete_per_s", "deletes per second"),
    };
    for (operation, samples) in &rates {
        let (key, about) = describe(*operation);
        report.add_median(key, samples, about);
    }
    report.add_median(
        "configmap_create_per_s",
        &configmaps,
        "ConfigMaps (built-in kind) created per second",
    );
    report.add_median("list_ms", &list_ms, "one list of all bench objects");
    report.add_median(
        "list_objects_per_s",
        &list_rate,
        "objects returned per second by that list",
    );
    report.add(
        "watch_latency_p50_ms",
        watch.median(),
        "patch sent to watch event received, median",
    );
    report.add(
        "watch_latency_p99_ms",
        watch.quantile(0.99),
        "the same, 99th percentile",
    );
    report.add_median(
        "pods_ready_per_s",
        &pods,
        "Deployment pods made Ready per second (controllers + simulator)",
    );
    report.add(
        "objects",
        flags.objects as f64,
        "objects per throughput run",
    );
    report.add(
        "concurrency",
        flags.concurrency as f64,
        "requests in flight",
    );
    report.add(
        "pods",
        flags.pods as f64,
        "replicas of the pod-readiness Deployment",
    );
    let path = report.write(&output_dir(&flags.common))?;
    eprintln!("wrote {}", path.display());
    Ok(report)
}

impl Samples {
    /// Adds all of `other`'s values.
    pub fn extend(&mut self, other: &Samples) {
        for value in &other.0 {
            self.push(*value);
        }
    }
}
