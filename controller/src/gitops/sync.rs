//! Carrying out a sync: dry run everything first, then apply wave by wave (kind groups
//! concurrently, CRDs established before their objects, a wave only after the previous one is
//! healthy), then prune in reverse order.
//!
//! Only objects that differ from Git are written, so a sync of an application in sync
//! writes nothing. A dry-run failure stops the sync before any write.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Api;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy as KubePropagation,
};
use serde_json::{Value, json};

use super::application::ResourceResult;
use super::cluster::{Cluster, KindInfo};
use super::desired::{DesiredObject, Scope};
use super::diff::{FIELD_MANAGER, IgnoredFields, keep_ignored_live_values};
use super::health::{Health, assess};
use super::order::plan_waves;
use super::policy::PruneTarget;
use super::resource::{ResourceKey, version_of};
use super::spec::{PropagationPolicy, ValidSpec};

/// Objects applied at once within a kind group.
const APPLY_CONCURRENCY: usize = 16;
/// How long a custom kind may take to be served after its CRD is applied.
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a sync needs, decided beforehand.
pub struct SyncPlan<'a> {
    /// Validated spec.
    pub spec: &'a ValidSpec,
    /// Objects from Git.
    pub desired: &'a [DesiredObject],
    /// Which of them differ live.
    pub out_of_sync: &'a HashSet<ResourceKey>,
    /// Live objects by key (absent when missing).
    pub live: &'a HashMap<ResourceKey, Value>,
    /// Ignored fields by key.
    pub ignored: &'a HashMap<ResourceKey, IgnoredFields>,
    /// Objects that left Git.
    pub prunes: &'a [PruneTarget],
    /// Whether pruning is allowed.
    pub prune: bool,
    /// How long a wave may take to become healthy.
    pub wave_timeout: Duration,
}

/// An object written by the sync, so the caller can wait for its cache to show it.
#[derive(Clone, Debug)]
pub struct Written {
    /// Its kind.
    pub kind: KindInfo,
    /// Namespace (empty if cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// resourceVersion after the write.
    pub resource_version: String,
}

/// What the sync did.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Whether every step succeeded.
    pub succeeded: bool,
    /// Summary for `operationState.message`.
    pub message: String,
    /// Per-object results.
    pub results: Vec<ResourceResult>,
    /// Objects written.
    pub written: Vec<Written>,
}

fn result(
    key: &ResourceKey,
    api_version: &str,
    status: &str,
    message: impl Into<String>,
) -> ResourceResult {
    ResourceResult {
        group: Some(key.group.clone()),
        version: Some(version_of(api_version).to_owned()),
        kind: key.kind.clone(),
        namespace: Some(key.namespace.clone()).filter(|n| !n.is_empty()),
        name: key.name.clone(),
        status: Some(status.to_owned()),
        message: Some(message.into()),
        sync_phase: Some("Sync".into()),
    }
}

fn api(cluster: &Cluster, kind: &KindInfo, namespace: &str) -> Api<DynamicObject> {
    match kind.scope {
        Scope::Namespaced => {
            Api::namespaced_with(cluster.client().clone(), namespace, &kind.resource)
        }
        Scope::Cluster => Api::all_with(cluster.client().clone(), &kind.resource),
    }
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Runs the plan.
pub async fn execute(cluster: &Cluster, plan: SyncPlan<'_>) -> SyncOutcome {
    let mut outcome = SyncOutcome::default();
    let to_apply: Vec<&DesiredObject> = plan
        .desired
        .iter()
        .filter(|o| plan.out_of_sync.contains(&o.key))
        .collect();
    let body = |object: &DesiredObject| -> Value {
        let mut body = object.object.clone();
        if plan.spec.options.respect_ignore_differences
            && let (Some(live), Some(ignored)) =
                (plan.live.get(&object.key), plan.ignored.get(&object.key))
        {
            keep_ignored_live_values(&mut body, live, ignored);
        }
        body
    };

    // Namespaces this sync creates: objects in them cannot be dry-run yet.
    let mut new_namespaces: HashSet<String> = plan
        .desired
        .iter()
        .filter(|o| {
            o.key.group.is_empty() && o.key.kind == "Namespace" && !plan.live.contains_key(&o.key)
        })
        .map(|o| o.key.name.clone())
        .collect();
    if let (true, Some(namespace)) = (
        plan.spec.options.create_namespace,
        plan.spec.destination_namespace.as_deref(),
    ) {
        match ensure_namespace(cluster, plan.spec, namespace).await {
            Ok(created) => {
                if created {
                    new_namespaces.insert(namespace.to_owned());
                }
            }
            Err(message) => {
                outcome.message = format!("creating namespace {namespace} failed: {message}");
                return outcome;
            }
        }
    }

    // 1. Dry run every write the cluster can check now.
    let checks: Vec<_> = to_apply
        .iter()
        .map(|object| dry_run(cluster, object, body(object), &new_namespaces))
        .collect();
    let dry_runs: Vec<(&DesiredObject, String)> = stream::iter(checks)
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    if !dry_runs.is_empty() {
        let mut failures = dry_runs;
        failures.sort_by(|a, b| a.0.origin.cmp(&b.0.origin));
        let details: Vec<String> = failures
            .iter()
            .map(|(object, message)| {
                format!(
                    "{} {}/{}: {message}",
                    object.origin, object.key.kind, object.key.name
                )
            })
            .collect();
        outcome.results = failures
            .iter()
            .map(|(object, message)| {
                result(
                    &object.key,
                    &object.api_version,
                    "SyncFailed",
                    message.clone(),
                )
            })
            .collect();
        outcome.message = format!(
            "the API server rejected {} object(s) in a dry run, so nothing was changed: {}",
            failures.len(),
            details.join("; ")
        );
        return outcome;
    }

    // 2. Apply wave by wave.
    let waves = plan_waves(plan.desired);
    for (index, wave) in waves.iter().enumerate() {
        let mut applied_in_wave = false;
        for group in &wave.groups {
            let pending: Vec<&DesiredObject> = group
                .iter()
                .copied()
                .filter(|o| plan.out_of_sync.contains(&o.key))
                .collect();
            if pending.is_empty() {
                continue;
            }
            applied_in_wave = true;
            let writes: Vec<_> = pending
                .iter()
                .map(|object| apply_one(cluster, object, body(object)))
                .collect();
            let results = stream::iter(writes)
                .buffer_unordered(APPLY_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            let mut failed = Vec::new();
            for (object, applied) in results {
                match applied {
                    Ok(written) => {
                        let verb = if plan.live.contains_key(&object.key) {
                            "configured"
                        } else {
                            "created"
                        };
                        outcome.results.push(result(
                            &object.key,
                            &object.api_version,
                            "Synced",
                            format!(
                                "{}/{} {verb}",
                                object.key.kind.to_ascii_lowercase(),
                                object.key.name
                            ),
                        ));
                        outcome.written.push(written);
                    }
                    Err(message) => {
                        failed.push(format!(
                            "{} {}/{}: {message}",
                            object.origin, object.key.kind, object.key.name
                        ));
                        outcome.results.push(result(
                            &object.key,
                            &object.api_version,
                            "SyncFailed",
                            message,
                        ));
                    }
                }
            }
            if !failed.is_empty() {
                failed.sort();
                outcome.message =
                    format!("applying wave {} failed: {}", wave.wave, failed.join("; "));
                return outcome;
            }
            for object in pending
                .iter()
                .filter(|o| o.key.kind == "CustomResourceDefinition")
            {
                if let Err(message) = wait_established(cluster, &object.key.name).await {
                    outcome.message = format!("{}: {message}", object.origin);
                    return outcome;
                }
            }
        }
        let later_work = waves[index + 1..].iter().any(|w| {
            w.groups
                .iter()
                .flatten()
                .any(|o| plan.out_of_sync.contains(&o.key))
        });
        if applied_in_wave && later_work {
            let objects: Vec<&DesiredObject> = wave.groups.iter().flatten().copied().collect();
            if let Err(message) = wait_healthy(cluster, &objects, plan.wave_timeout).await {
                outcome.message = format!("wave {}: {message}", wave.wave);
                return outcome;
            }
        }
    }

    // 3. Prune, last wave first.
    for target in plan.prunes {
        if !plan.prune {
            outcome.results.push(result(
                &target.key,
                &target.api_version,
                "PruneSkipped",
                "ignored (requires pruning)",
            ));
            continue;
        }
        if target.keep {
            outcome.results.push(result(
                &target.key,
                &target.api_version,
                "PruneSkipped",
                "ignored (Prune=false)",
            ));
            continue;
        }
        match prune(cluster, target, plan.spec.options.prune_propagation).await {
            Ok(()) => {
                outcome
                    .results
                    .push(result(&target.key, &target.api_version, "Pruned", "pruned"))
            }
            Err(message) => {
                outcome.results.push(result(
                    &target.key,
                    &target.api_version,
                    "SyncFailed",
                    message.clone(),
                ));
                outcome.message = format!(
                    "pruning {}/{} failed: {message}",
                    target.key.kind, target.key.name
                );
                return outcome;
            }
        }
    }
    outcome.succeeded = true;
    let applied = outcome
        .results
        .iter()
        .filter(|r| r.status.as_deref() == Some("Synced"))
        .count();
    let pruned = outcome
        .results
        .iter()
        .filter(|r| r.status.as_deref() == Some("Pruned"))
        .count();
    outcome.message = format!("successfully synced (applied {applied}, pruned {pruned})");
    outcome
}

/// Dry-runs one write; `None` when it passes or cannot be checked yet (its namespace or kind
/// is created by this sync).
async fn dry_run<'a>(
    cluster: &Cluster,
    object: &'a DesiredObject,
    body: Value,
    new_namespaces: &HashSet<String>,
) -> Option<(&'a DesiredObject, String)> {
    if new_namespaces.contains(&object.key.namespace) {
        return None;
    }
    let kind = match cluster.kind(&object.api_version, &object.key.kind).await {
        Ok(Some(kind)) => kind,
        Ok(None) => return None,
        Err(error) => return Some((object, api_message(&error))),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let patched = api(cluster, &kind, &object.key.namespace)
        .patch(&object.key.name, &params, &Patch::Apply(&body))
        .await;
    patched.err().map(|error| (object, api_message(&error)))
}

async fn apply_one<'a>(
    cluster: &Cluster,
    object: &'a DesiredObject,
    body: Value,
) -> (&'a DesiredObject, Result<Written, String>) {
    (object, apply(cluster, object, &body).await)
}

async fn apply(cluster: &Cluster, object: &DesiredObject, body: &Value) -> Result<Written, String> {
    let deadline = tokio::time::Instant::now() + CRD_ESTABLISH_TIMEOUT;
    let kind = loop {
        match cluster.kind(&object.api_version, &object.key.kind).await {
            Ok(Some(kind)) => break kind,
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(None) => {
                return Err(format!(
                    "the cluster serves no kind {} in {}",
                    object.key.kind, object.api_version
                ));
            }
            Err(error) => return Err(api_message(&error)),
        }
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api(cluster, &kind, &object.key.namespace)
        .patch(&object.key.name, &params, &Patch::Apply(body))
        .await
        .map_err(|e| api_message(&e))?;
    Ok(Written {
        kind,
        namespace: object.key.namespace.clone(),
        name: object.key.name.clone(),
        resource_version: applied.metadata.resource_version.unwrap_or_default(),
    })
}

async fn prune(
    cluster: &Cluster,
    target: &PruneTarget,
    propagation: PropagationPolicy,
) -> Result<(), String> {
    let Some(kind) = cluster
        .kind(&target.api_version, &target.key.kind)
        .await
        .map_err(|e| api_message(&e))?
    else {
        // The kind is gone (its CRD was removed), and its objects with it.
        return Ok(());
    };
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            PropagationPolicy::Foreground => KubePropagation::Foreground,
            PropagationPolicy::Background => KubePropagation::Background,
            PropagationPolicy::Orphan => KubePropagation::Orphan,
        }),
        ..DeleteParams::default()
    };
    match api(cluster, &kind, &target.key.namespace)
        .delete(&target.key.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(api_message(&error)),
    }
}

/// Creates the destination namespace when it does not exist; `Ok(true)` when created.
async fn ensure_namespace(
    cluster: &Cluster,
    spec: &ValidSpec,
    namespace: &str,
) -> Result<bool, String> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client().clone());
    if namespaces
        .get_opt(namespace)
        .await
        .map_err(|e| api_message(&e))?
        .is_some()
    {
        return Ok(false);
    }
    let metadata = spec.namespace_metadata.clone().unwrap_or_default();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": metadata.labels.unwrap_or_default(),
            "annotations": metadata.annotations.unwrap_or_default(),
        }
    });
    namespaces
        .patch(
            namespace,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| api_message(&e))?;
    Ok(true)
}

async fn wait_established(cluster: &Cluster, name: &str) -> Result<(), String> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cluster.client().clone());
    let deadline = tokio::time::Instant::now() + CRD_ESTABLISH_TIMEOUT;
    loop {
        let crd = crds.get_opt(name).await.map_err(|e| api_message(&e))?;
        let value = crd.as_ref().and_then(|c| serde_json::to_value(c).ok());
        let health = assess(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            value.as_ref(),
        );
        match health.health {
            Health::Healthy => return Ok(()),
            Health::Degraded => {
                return Err(format!(
                    "CustomResourceDefinition {name} was not accepted: {}",
                    health.message.unwrap_or_default()
                ));
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "CustomResourceDefinition {name} was not established within {}s",
                    CRD_ESTABLISH_TIMEOUT.as_secs()
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until every object of a wave is healthy (or suspended on purpose).
async fn wait_healthy(
    cluster: &Cluster,
    objects: &[&DesiredObject],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for object in objects {
            let Some(kind) = cluster
                .kind(&object.api_version, &object.key.kind)
                .await
                .map_err(|e| api_message(&e))?
            else {
                waiting.push(format!(
                    "{}/{} (kind not served yet)",
                    object.key.kind, object.key.name
                ));
                continue;
            };
            let live = api(cluster, &kind, &object.key.namespace)
                .get_opt(&object.key.name)
                .await
                .map_err(|e| api_message(&e))?
                .and_then(|o| serde_json::to_value(o).ok());
            let health = assess(&object.key.group, &object.key.kind, live.as_ref());
            match health.health {
                Health::Healthy | Health::Suspended => {}
                Health::Degraded => {
                    return Err(format!(
                        "{}/{} is Degraded: {}; later waves were not applied",
                        object.key.kind,
                        object.key.name,
                        health.message.unwrap_or_default()
                    ));
                }
                other => waiting.push(format!(
                    "{}/{} is {other}{}",
                    object.key.kind,
                    object.key.name,
                    health.message.map(|m| format!(": {m}")).unwrap_or_default()
                )),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not healthy within {}s, so later waves were not applied: {}",
                timeout.as_secs(),
                waiting.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
