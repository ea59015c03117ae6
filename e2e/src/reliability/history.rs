//! Everything that happened to a Rollout's objects, and the invariants checked on it.
//!
//! [`Recorder`] watches the Rollouts, ReplicaSets, Services and AnalysisRuns of a namespace
//! (and, when asked, its Ingresses, HTTPRoutes, ConfigMaps, Deployments, AnalysisTemplates
//! and Applications) with its own client (never through a fault proxy, never through the
//! controller under test) and keeps every version it is sent, deletions included; a deletion
//! the watch missed while it re-listed is recorded when the re-list no longer has the object. [`check_history`] replays them in
//! resourceVersion order, which on an etcd-backed API server is the order the writes were
//! committed in, across all kinds; so "the selector moved at revision R while the ReplicaSet
//! it selects had no available pods at R" is decided exactly, not by wall-clock guesses.
//!
//! ```text
//!  watch Rollouts ─┐
//!  watch RSs ──────┤
//!  watch Services ─┼─▶ Vec<Observed> ──sort by rv──▶ replay: state at every revision
//!  watch ARs ──────┤                                 ├─ traffic only to RSs with available pods
//!  (routers, …) ───┘                                 │  (Service selectors, Rollout weights,
//!                                                    │   HTTPRoute backendRefs, NGINX Ingresses)
//!                                                    ├─ no status field reset (Rollout, Application)
//!                                                    └─ one AnalysisRun per step and revision
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use ramp_analysis::api::{AnalysisRun, AnalysisTemplate};
use ramp_controller::api::Rollout;
use ramp_controller::gitops::Application;
use ramp_controller::rollout::names::{
    POD_TEMPLATE_HASH_LABEL, ROLLOUT_TYPE_LABEL, STEP_INDEX_LABEL,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The kinds a Rollout's history is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Rollout,
    ReplicaSet,
    Service,
    AnalysisRun,
    Ingress,
    HttpRoute,
    ConfigMap,
    Deployment,
    AnalysisTemplate,
    Application,
}

impl Kind {
    /// What every history records.
    pub const BASE: [Kind; 4] = [
        Kind::Rollout,
        Kind::ReplicaSet,
        Kind::Service,
        Kind::AnalysisRun,
    ];
}

/// Gateway API HTTPRoutes (`gateway.networking.k8s.io/v1`).
pub fn http_routes() -> kube::api::ApiResource {
    ramp_controller::traffic::objects::resource(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    )
}

/// One version of one object, as a watch delivered it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// `metadata.resourceVersion` (an etcd revision on Kubernetes' own API server).
    pub rv: u64,
    pub kind: Kind,
    pub name: String,
    pub deleted: bool,
    pub object: Value,
}

/// Watches a namespace's Rollout objects and keeps every version; stops when dropped.
pub struct Recorder {
    log: Arc<Mutex<Vec<Observed>>>,
    synced: Arc<Mutex<BTreeSet<Kind>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Recorder {
    /// Starts watching the [`Kind::BASE`] kinds and waits until each watch has listed what
    /// exists.
    pub async fn start(client: &Client, namespace: &str) -> Result<Self, String> {
        Recorder::start_with(client, namespace, &[]).await
    }

    /// [`Self::start`], watching the `extra` kinds too (their CRDs must be installed).
    pub async fn start_with(
        client: &Client,
        namespace: &str,
        extra: &[Kind],
    ) -> Result<Self, String> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let synced = Arc::new(Mutex::new(BTreeSet::new()));
        let mut kinds: BTreeSet<Kind> = Kind::BASE.into_iter().collect();
        kinds.extend(extra.iter().copied());
        let tasks: Vec<JoinHandle<()>> = kinds
            .iter()
            .map(|&kind| match kind {
                Kind::Rollout => record(
                    Api::<Rollout>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::ReplicaSet => record(
                    Api::<ReplicaSet>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::Service => record(
                    Api::<Service>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::AnalysisRun => record(
                    Api::<AnalysisRun>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::Ingress => record(
                    Api::<Ingress>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::HttpRoute => record(
                    Api::<DynamicObject>::namespaced_with(
                        client.clone(),
                        namespace,
                        &http_routes(),
                    ),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::ConfigMap => record(
                    Api::<ConfigMap>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::Deployment => record(
                    Api::<Deployment>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::AnalysisTemplate => record(
                    Api::<AnalysisTemplate>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
                Kind::Application => record(
                    Api::<Application>::namespaced(client.clone(), namespace),
                    kind,
                    &log,
                    &synced,
                ),
            })
            .collect();
        let expected = kinds.len();
        let recorder = Recorder { log, synced, tasks };
        crate::fixtures::rollouts::wait_for(
            "the recorder's watches to list",
            Duration::from_secs(30),
            || async {
                (recorder
                    .synced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
                    == expected)
                    .then_some(())
            },
        )
        .await?;
        Ok(recorder)
    }

    /// Every version seen so far, in arrival order.
    pub fn history(&self) -> Vec<Observed> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The highest resourceVersion seen so far.
    pub fn last_rv(&self) -> u64 {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|o| o.rv)
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn record<K>(
    api: Api<K>,
    kind: Kind,
    log: &Arc<Mutex<Vec<Observed>>>,
    synced: &Arc<Mutex<BTreeSet<Kind>>>,
) -> JoinHandle<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    let log = log.clone();
    let synced = synced.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        // The last version of every object this watch knows, so that a re-list (after a cut
        // watch) that no longer has one records its deletion, which no event announced.
        let mut known: BTreeMap<String, Value> = BTreeMap::new();
        let mut listing: Option<BTreeSet<String>> = None;
        let mut newest = 0u64;
        while let Some(event) = events.next().await {
            let (object, deleted) = match event {
                Ok(watcher::Event::Apply(o)) => (o, false),
                Ok(watcher::Event::InitApply(o)) => {
                    if let (Some(listed), Some(name)) = (listing.as_mut(), o.meta().name.clone()) {
                        listed.insert(name);
                    }
                    (o, false)
                }
                Ok(watcher::Event::Delete(o)) => (o, true),
                Ok(watcher::Event::Init) => {
                    listing = Some(BTreeSet::new());
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    let listed = listing.take().unwrap_or_default();
                    let gone: Vec<String> = known
                        .keys()
                        .filter(|name| !listed.contains(*name))
                        .cloned()
                        .collect();
                    for name in gone {
                        if let Some(object) = known.remove(&name) {
                            log.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Observed {
                                    rv: newest,
                                    kind,
                                    name,
                                    deleted: true,
                                    object,
                                });
                        }
                    }
                    synced
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(kind);
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, ?kind, "recorder watch error; re-watching");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let meta = object.meta();
            let Some(rv) = meta
                .resource_version
                .as_deref()
                .and_then(|rv| rv.parse::<u64>().ok())
            else {
                continue;
            };
            newest = newest.max(rv);
            let name = meta.name.clone().unwrap_or_default();
            let Ok(object) = serde_json::to_value(&object) else {
                continue;
            };
            if deleted {
                known.remove(&name);
            } else {
                known.insert(name.clone(), object.clone());
            }
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Observed {
                    rv,
                    kind,
                    name,
                    deleted,
                    object,
                });
        }
    })
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// The hash a Service's selector pins, if any.
fn selected_hash(service: &Value) -> Option<&str> {
    service
        .pointer("/spec/selector")
        .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
        .and_then(Value::as_str)
}

/// Available pods of the ReplicaSet with `hash` in `state` (None: no such ReplicaSet).
fn available(state: &BTreeMap<(Kind, String), Value>, hash: &str) -> Option<i64> {
    state
        .iter()
        .filter(|((kind, _), _)| *kind == Kind::ReplicaSet)
        .find(|(_, rs)| label(rs, POD_TEMPLATE_HASH_LABEL) == Some(hash))
        .map(|(_, rs)| int(rs, "/status/availableReplicas").unwrap_or(0))
}

/// Where a router or Service sends traffic: (what sends it, the Service it names).
fn router_traffic(kind: Kind, name: &str, object: &Value) -> Vec<(String, String)> {
    match kind {
        Kind::HttpRoute => {
            let mut found = Vec::new();
            let rules = object.pointer("/spec/rules").and_then(Value::as_array);
            for (index, rule) in rules.into_iter().flatten().enumerate() {
                let rule_name = rule
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| index.to_string(), str::to_string);
                let backends = rule.get("backendRefs").and_then(Value::as_array);
                for backend in backends.into_iter().flatten() {
                    let core = backend
                        .get("group")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty();
                    let service = backend
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or("Service")
                        == "Service";
                    // Gateway API's default weight is 1.
                    let weight = backend.get("weight").and_then(Value::as_i64).unwrap_or(1);
                    if let (true, true, true, Some(target)) = (
                        core,
                        service,
                        weight > 0,
                        backend.get("name").and_then(Value::as_str),
                    ) {
                        found.push((
                            format!("HTTPRoute {name} rule {rule_name} weight {weight}"),
                            target.to_string(),
                        ));
                    }
                }
            }
            found
        }
        Kind::Ingress => {
            let annotations = object
                .pointer("/metadata/annotations")
                .and_then(Value::as_object);
            let annotation = |key: &str| {
                annotations
                    .and_then(|a| a.get(&format!("nginx.ingress.kubernetes.io/{key}")))
                    .and_then(Value::as_str)
            };
            let what = if annotation("canary") == Some("true") {
                let weight: i64 = annotation("canary-weight")
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(0);
                let by_header = annotations.is_some_and(|a| {
                    a.keys().any(|k| {
                        k.starts_with("nginx.ingress.kubernetes.io/canary-by-header")
                            || k.starts_with("nginx.ingress.kubernetes.io/canary-by-cookie")
                    })
                });
                if weight == 0 && !by_header {
                    return Vec::new();
                }
                format!(
                    "canary Ingress {name} (canary-weight {weight}{})",
                    if by_header { ", header route" } else { "" }
                )
            } else {
                format!("Ingress {name}")
            };
            let spec = object.get("spec");
            let default = spec
                .and_then(|s| s.pointer("/defaultBackend/service/name"))
                .and_then(Value::as_str);
            let rules = spec.and_then(|s| s.get("rules")).and_then(Value::as_array);
            let paths = rules
                .into_iter()
                .flatten()
                .filter_map(|r| r.pointer("/http/paths").and_then(Value::as_array))
                .flatten()
                .filter_map(|p| p.pointer("/backend/service/name").and_then(Value::as_str));
            let services: BTreeSet<&str> = default.into_iter().chain(paths).collect();
            services
                .into_iter()
                .map(|s| (what.clone(), s.to_string()))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The pods behind Service `service` in `state`: what it selects and how many of those pods
/// are available. `None` when the namespace has no such Service or it selects nothing.
fn behind_service(state: &BTreeMap<(Kind, String), Value>, service: &str) -> Option<(String, i64)> {
    let object = state.get(&(Kind::Service, service.to_string()))?;
    if let Some(hash) = selected_hash(object) {
        return Some((
            format!("Service {service} → ReplicaSet {hash}"),
            available(state, hash).unwrap_or(0),
        ));
    }
    // A selector Ramp has not pinned yet selects the pods of every matching ReplicaSet.
    let selector = object.pointer("/spec/selector")?.as_object()?;
    if selector.is_empty() {
        return None;
    }
    let pods = state
        .iter()
        .filter(|((kind, _), _)| *kind == Kind::ReplicaSet)
        .filter(|(_, rs)| {
            let labels = rs.pointer("/spec/template/metadata/labels");
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .map(|(_, rs)| int(rs, "/status/availableReplicas").unwrap_or(0))
        .sum();
    Some((format!("Service {service} (unpinned selector)"), pods))
}

/// Replays `history` in resourceVersion order and returns every invariant break, each once,
/// each naming the object, the revision and what was wrong:
///
/// - traffic: a Service selector on a ReplicaSet with no available pods (or none at all);
///   and, once a Rollout of the namespace has been Healthy (before that the first version is
///   still starting and nothing was shifted), a positive weight in `status.canary.weights`
///   on such a ReplicaSet, or an HTTPRoute backendRef with a positive weight, or an NGINX
///   Ingress (a canary Ingress when its canary-weight is positive or it carries a header
///   route), naming a Service with no available pods behind it;
/// - reset: `status.stableRS` or `status.currentPodHash` cleared after being set,
///   `status.observedGeneration` going back, `status.currentStepIndex` going back for the
///   same `currentPodHash` while not aborted, `status.abort` cleared for the same revision;
///   an Application's `status.sync.revision`, `status.operationState` or
///   `status.reconciledAt` cleared, or its `status.history` losing entries;
/// - duplicates: two AnalysisRuns for one step of one revision (`rollouts-pod-template-hash`,
///   `step-index`, `rollout-type: Step`), even if one was deleted again.
pub fn check_history(history: &[Observed]) -> Vec<String> {
    let events = in_order(history);
    let mut state: BTreeMap<(Kind, String), Value> = BTreeMap::new();
    let mut breaks: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut report = |key: String, message: String, breaks: &mut Vec<String>| {
        if seen.insert(key) {
            breaks.push(message);
        }
    };
    let mut step_runs: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut armed = false;
    for event in events {
        let key = (event.kind, event.name.clone());
        let previous = if event.deleted {
            state.remove(&key)
        } else {
            state.insert(key, event.object.clone())
        };
        if event.deleted {
            continue;
        }
        let object = &event.object;
        match event.kind {
            Kind::Rollout => {
                armed |= text(object, "/status/phase") == Some("Healthy");
                if let Some(before) = &previous {
                    for message in status_resets(&event.name, before, object) {
                        report(
                            message.clone(),
                            format!("rv {}: {message}", event.rv),
                            &mut breaks,
                        );
                    }
                }
            }
            Kind::Application => {
                if let Some(before) = &previous {
                    for message in application_resets(&event.name, before, object) {
                        report(
                            message.clone(),
                            format!("rv {}: {message}", event.rv),
                            &mut breaks,
                        );
                    }
                }
            }
            Kind::AnalysisRun if label(object, ROLLOUT_TYPE_LABEL) == Some("Step") => {
                let owner = object
                    .pointer("/metadata/ownerReferences/0/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let hash = label(object, POD_TEMPLATE_HASH_LABEL).unwrap_or_default();
                let step = label(object, STEP_INDEX_LABEL).unwrap_or_default();
                let names = step_runs
                    .entry((owner.clone(), hash.to_string(), step.to_string()))
                    .or_default();
                names.insert(event.name.clone());
                if names.len() > 1 {
                    report(
                        format!("duplicate {owner} {hash} {step}"),
                        format!(
                            "rv {}: Rollout {owner} has {} AnalysisRuns for step {step} of revision {hash}: {}",
                            event.rv,
                            names.len(),
                            names.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                        &mut breaks,
                    );
                }
            }
            _ => {}
        }
        // Traffic, in the state after this revision.
        for ((kind, name), object) in &state {
            let targets: Vec<(String, &str)> = match kind {
                Kind::Service => selected_hash(object)
                    .map(|h| (format!("Service {name} selector"), h))
                    .into_iter()
                    .collect(),
                // The first version's weights (all to stable, before any pod is up) are the
                // router's starting point, not a shift of traffic.
                Kind::Rollout if !armed => Vec::new(),
                Kind::Rollout => ["canary", "stable"]
                    .iter()
                    .filter(|side| {
                        int(object, &format!("/status/canary/weights/{side}/weight")).unwrap_or(0)
                            > 0
                    })
                    .filter_map(|side| {
                        text(
                            object,
                            &format!("/status/canary/weights/{side}/podTemplateHash"),
                        )
                        .map(|h| (format!("Rollout {name} {side} weight"), h))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (what, hash) in targets {
                match available(&state, hash) {
                    Some(n) if n > 0 => {}
                    found => report(
                        format!("traffic {what} {hash}"),
                        format!(
                            "rv {}: {what} sends traffic to ReplicaSet {hash}, which {}; {}",
                            event.rv,
                            if found.is_some() {
                                "has no available pods"
                            } else {
                                "does not exist"
                            },
                            trail(history, hash, event.rv)
                        ),
                        &mut breaks,
                    ),
                }
            }
            if !armed {
                continue;
            }
            for (what, service) in router_traffic(*kind, name, object) {
                match behind_service(&state, &service) {
                    Some((_, pods)) if pods > 0 => {}
                    None => {}
                    Some((selects, _)) => report(
                        format!("traffic {what} {selects}"),
                        format!(
                            "rv {}: {what} sends traffic to {selects}, which has no available pods; {}",
                            event.rv,
                            router_trail(history, *kind, name, event.rv)
                        ),
                        &mut breaks,
                    ),
                }
            }
        }
    }
    breaks
}

/// `history` in resourceVersion order, one entry per object version.
fn in_order(history: &[Observed]) -> Vec<&Observed> {
    let mut events: Vec<&Observed> = history.iter().collect();
    events.sort_by_key(|o| (o.rv, o.kind, o.name.clone(), o.deleted));
    events.dedup_by(|a, b| a.rv == b.rv && a.kind == b.kind && a.name == b.name);
    events
}

/// Every deletion in `history`, as (revision, kind, name): the deletions a watch announced or
/// a re-list revealed, and an object that came back with a new uid (deleted and created
/// again between two versions the watch sent).
pub fn deletions(history: &[Observed]) -> Vec<(u64, Kind, String)> {
    let mut uids: BTreeMap<(Kind, String), String> = BTreeMap::new();
    let mut found = Vec::new();
    for event in in_order(history) {
        let key = (event.kind, event.name.clone());
        if event.deleted {
            uids.remove(&key);
            found.push((event.rv, event.kind, event.name.clone()));
            continue;
        }
        let uid = text(&event.object, "/metadata/uid")
            .unwrap_or_default()
            .to_string();
        if let Some(before) = uids.insert(key, uid.clone())
            && before != uid
        {
            found.push((event.rv, event.kind, event.name.clone()));
        }
    }
    found
}

/// What led there: the versions of the ReplicaSet with `hash` and of the Services selecting
/// it, up to revision `until`.
fn trail(history: &[Observed], hash: &str, until: u64) -> String {
    let lines: Vec<&Observed> = history
        .iter()
        .filter(|o| o.rv <= until)
        .filter(|o| match o.kind {
            Kind::ReplicaSet => label(&o.object, POD_TEMPLATE_HASH_LABEL) == Some(hash),
            Kind::Service => true,
            _ => false,
        })
        .collect();
    describe_trail(lines)
}

/// What led to a router object's break: its versions and those of the ReplicaSets and
/// Services, up to revision `until`.
fn router_trail(history: &[Observed], kind: Kind, name: &str, until: u64) -> String {
    let lines: Vec<&Observed> = history
        .iter()
        .filter(|o| o.rv <= until)
        .filter(|o| {
            matches!(o.kind, Kind::ReplicaSet | Kind::Service) || (o.kind == kind && o.name == name)
        })
        .collect();
    describe_trail(lines)
}

fn describe_trail(mut lines: Vec<&Observed>) -> String {
    lines.sort_by_key(|o| o.rv);
    let lines: Vec<String> = lines
        .iter()
        .rev()
        .take(8)
        .rev()
        .map(|o| match o.kind {
            Kind::ReplicaSet => format!(
                "rv {} ReplicaSet {}{} replicas {} available {}",
                o.rv,
                o.name,
                if o.deleted { " (deleted)" } else { "" },
                int(&o.object, "/spec/replicas").unwrap_or(0),
                int(&o.object, "/status/availableReplicas").unwrap_or(0)
            ),
            Kind::Service => format!(
                "rv {} Service {} selects {}",
                o.rv,
                o.name,
                selected_hash(&o.object).unwrap_or("-")
            ),
            kind => format!(
                "rv {} {kind:?} {} sends {:?}",
                o.rv,
                o.name,
                router_traffic(kind, &o.name, &o.object)
                    .into_iter()
                    .map(|(what, service)| format!("{what} → {service}"))
                    .collect::<Vec<_>>()
            ),
        })
        .collect();
    format!("history: [{}]", lines.join("; "))
}

/// Status fields of Application `name` that `after` lost compared to `before`.
pub fn application_resets(name: &str, before: &Value, after: &Value) -> Vec<String> {
    let mut resets = Vec::new();
    for (pointer, field) in [
        ("/status/sync/revision", "sync.revision"),
        ("/status/reconciledAt", "reconciledAt"),
    ] {
        if let (Some(was), None) = (text(before, pointer), text(after, pointer)) {
            resets.push(format!(
                "Application {name} status.{field} was reset (it was {was})"
            ));
        }
    }
    if before.pointer("/status/operationState").is_some()
        && after.pointer("/status/operationState").is_none()
    {
        resets.push(format!(
            "Application {name} status.operationState was reset"
        ));
    }
    let ids = |v: &Value| -> BTreeSet<i64> {
        v.pointer("/status/history")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| h.get("id").and_then(Value::as_i64))
            .collect()
    };
    let (was, now) = (ids(before), ids(after));
    // Older entries fall off the end of a full history; the newest may never go.
    if let Some(newest) = was.last()
        && now.last().is_none_or(|n| n < newest)
    {
        resets.push(format!(
            "Application {name} status.history lost entry {newest} (ids {was:?} became {now:?})"
        ));
    }
    resets
}

/// Status fields of Rollout `name` that `after` lost or moved back compared to `before`.
pub fn status_resets(name: &str, before: &Value, after: &Value) -> Vec<String> {
    let mut resets = Vec::new();
    for field in ["stableRS", "currentPodHash"] {
        let pointer = format!("/status/{field}");
        if let (Some(was), None) = (text(before, &pointer), text(after, &pointer)) {
            resets.push(format!(
                "Rollout {name} status.{field} was reset (it was {was})"
            ));
        }
    }
    let generation =
        |v: &Value| text(v, "/status/observedGeneration").and_then(|g| g.parse::<i64>().ok());
    if let (Some(was), Some(now)) = (generation(before), generation(after))
        && now < was
    {
        resets.push(format!(
            "Rollout {name} status.observedGeneration went back from {was} to {now}"
        ));
    }
    let same_revision = text(before, "/status/currentPodHash").is_some()
        && text(before, "/status/currentPodHash") == text(after, "/status/currentPodHash");
    let aborted = |v: &Value| v.pointer("/status/abort").and_then(Value::as_bool) == Some(true);
    if same_revision {
        let step = |v: &Value| int(v, "/status/currentStepIndex");
        if let (Some(was), Some(now)) = (step(before), step(after))
            && now < was
            && !aborted(before)
            && !aborted(after)
        {
            resets.push(format!(
                "Rollout {name} status.currentStepIndex went back from {was} to {now} on revision {}",
                text(after, "/status/currentPodHash").unwrap_or_default()
            ));
        }
        if aborted(before) && !aborted(after) {
            resets.push(format!(
                "Rollout {name} status.abort was cleared on revision {} with no retry",
                text(after, "/status/currentPodHash").unwrap_or_default()
            ));
        }
    }
    resets
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(rv: u64, kind: Kind, name: &str, object: Value) -> Observed {
        Observed {
            rv,
            kind,
            name: name.into(),
            deleted: false,
            object,
        }
    }

    fn rs(hash: &str, available: i64) -> Value {
        json!({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: hash}}, "status": {"availableReplicas": available}})
    }

    fn svc(hash: &str) -> Value {
        json!({"spec": {"selector": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}}})
    }

    #[test]
    fn a_selector_on_a_replica_set_without_pods_is_a_break_in_revision_order() {
        // Delivered out of order: the RS became available (rv 3) before the switch (rv 4).
        let good = vec![
            observed(4, Kind::Service, "web-canary", svc("b")),
            observed(2, Kind::ReplicaSet, "web-b", rs("b", 0)),
            observed(3, Kind::ReplicaSet, "web-b", rs("b", 1)),
        ];
        assert_eq!(check_history(&good), Vec::<String>::new());
        let bad = vec![
            observed(2, Kind::ReplicaSet, "web-b", rs("b", 0)),
            observed(3, Kind::Service, "web-canary", svc("b")),
            observed(4, Kind::ReplicaSet, "web-b", rs("b", 1)),
        ];
        let breaks = check_history(&bad);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert!(
            breaks[0].contains("rv 3: Service web-canary selector"),
            "{breaks:?}"
        );
        // Scaling the selected ReplicaSet to nothing is a break too.
        let emptied = vec![
            observed(2, Kind::ReplicaSet, "web-b", rs("b", 1)),
            observed(3, Kind::Service, "web-canary", svc("b")),
            observed(4, Kind::ReplicaSet, "web-b", rs("b", 0)),
        ];
        assert!(check_history(&emptied)[0].contains("rv 4"));
    }

    #[test]
    fn weights_count_only_when_positive() {
        let rollout = |w: i64| {
            json!({"status": {"phase": "Healthy", "canary": {"weights": {
                "canary": {"weight": w, "podTemplateHash": "b"},
                "stable": {"weight": 100 - w, "podTemplateHash": "a"}}}}})
        };
        // Before the Rollout was ever Healthy, the first version's weights are no break.
        let starting = json!({"status": {"phase": "Progressing", "canary": {"weights": {
            "stable": {"weight": 100, "podTemplateHash": "a"}}}}});
        assert!(
            check_history(&[
                observed(1, Kind::ReplicaSet, "web-a", rs("a", 0)),
                observed(2, Kind::Rollout, "web", starting),
            ])
            .is_empty()
        );
        let history = vec![
            observed(1, Kind::ReplicaSet, "web-a", rs("a", 2)),
            observed(2, Kind::ReplicaSet, "web-b", rs("b", 0)),
            observed(3, Kind::Rollout, "web", rollout(0)),
            observed(4, Kind::Rollout, "web", rollout(20)),
        ];
        let breaks = check_history(&history);
        assert_eq!(breaks.len(), 1);
        assert!(
            breaks[0].starts_with("rv 4: Rollout web canary weight"),
            "{breaks:?}"
        );
    }

    #[test]
    fn status_resets_are_found() {
        let before = json!({"status": {"stableRS": "a", "currentPodHash": "b", "currentStepIndex": 2, "observedGeneration": "3"}});
        let after = json!({"status": {"currentPodHash": "b", "currentStepIndex": 1, "observedGeneration": "2"}});
        let resets = status_resets("web", &before, &after);
        assert_eq!(resets.len(), 3, "{resets:?}");
        // A new revision starts its steps again; an abort may move the index.
        let next = json!({"status": {"stableRS": "a", "currentPodHash": "c", "currentStepIndex": 0, "observedGeneration": "4"}});
        assert!(status_resets("web", &before, &next).is_empty());
    }

    #[test]
    fn two_runs_for_one_step_are_duplicates_even_when_one_is_gone() {
        let run = |name: &str| {
            json!({"metadata": {"name": name, "ownerReferences": [{"name": "web"}],
                "labels": {POD_TEMPLATE_HASH_LABEL: "b", STEP_INDEX_LABEL: "1", ROLLOUT_TYPE_LABEL: "Step"}}})
        };
        let mut history = vec![observed(1, Kind::AnalysisRun, "web-b-1", run("web-b-1"))];
        assert!(check_history(&history).is_empty());
        let mut gone = observed(3, Kind::AnalysisRun, "web-b-1", run("web-b-1"));
        gone.deleted = true;
        history.push(gone);
        history.push(observed(
            4,
            Kind::AnalysisRun,
            "web-b-1.1",
            run("web-b-1.1"),
        ));
        let breaks = check_history(&history);
        assert_eq!(breaks.len(), 1);
        assert!(
            breaks[0].contains("2 AnalysisRuns for step 1"),
            "{breaks:?}"
        );
    }

    fn healthy_rollout() -> Value {
        json!({"status": {"phase": "Healthy"}})
    }

    fn rs_with_labels(hash: &str, available: i64) -> Value {
        json!({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: hash}},
               "spec": {"template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}}}},
               "status": {"availableReplicas": available}})
    }

    fn route(canary_weight: i64) -> Value {
        json!({"spec": {"rules": [{"backendRefs": [
            {"name": "web-stable", "weight": 100 - canary_weight},
            {"name": "web-canary", "weight": canary_weight}]}]}})
    }

    #[test]
    fn a_route_weight_on_a_service_without_pods_is_a_break_once_the_rollout_was_healthy() {
        let mut history = vec![
            // Before the first version is up, the route already names both Services.
            observed(1, Kind::Service, "web-stable", svc("a")),
            observed(2, Kind::Service, "web-canary", svc("b")),
            observed(3, Kind::HttpRoute, "web-route", route(0)),
            observed(4, Kind::ReplicaSet, "web-a", rs_with_labels("a", 0)),
            observed(5, Kind::ReplicaSet, "web-a", rs_with_labels("a", 2)),
            observed(6, Kind::Rollout, "web", healthy_rollout()),
            observed(7, Kind::ReplicaSet, "web-b", rs_with_labels("b", 1)),
            observed(8, Kind::HttpRoute, "web-route", route(20)),
        ];
        let selector_breaks = |b: &Vec<String>| b.iter().filter(|m| m.contains("selector")).count();
        // The canary Service pinned to an RS without pods (rv 2) is the selector's break; the
        // route's weight 0 is none, and weight 20 at rv 8 follows availability at rv 7.
        let breaks = check_history(&history);
        assert_eq!(breaks.len(), selector_breaks(&breaks), "{breaks:?}");
        history.push(observed(
            9,
            Kind::ReplicaSet,
            "web-b",
            rs_with_labels("b", 0),
        ));
        let breaks = check_history(&history);
        assert!(
            breaks
                .iter()
                .any(|b| b.starts_with("rv 9: HTTPRoute web-route rule 0 weight 20")),
            "{breaks:?}"
        );
    }

    #[test]
    fn an_unpinned_service_counts_the_pods_of_every_matching_replica_set() {
        let unpinned = json!({"spec": {"selector": {"app": "web"}}});
        let canary_ingress = |weight: &str| {
            json!({"metadata": {"annotations": {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": weight}},
             "spec": {"rules": [{"http": {"paths": [{"backend": {"service": {"name": "web-canary"}}}]}}]}})
        };
        let mut history = vec![
            observed(1, Kind::Service, "web-canary", unpinned),
            observed(2, Kind::ReplicaSet, "web-a", rs_with_labels("a", 2)),
            observed(3, Kind::Rollout, "web", healthy_rollout()),
            observed(4, Kind::Ingress, "web-canary-ingress", canary_ingress("30")),
        ];
        assert!(check_history(&history).is_empty());
        history.push(observed(
            5,
            Kind::ReplicaSet,
            "web-a",
            rs_with_labels("a", 0),
        ));
        let breaks = check_history(&history);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert!(
            breaks[0].starts_with("rv 5: canary Ingress web-canary-ingress (canary-weight 30)"),
            "{breaks:?}"
        );
    }

    #[test]
    fn deletions_include_an_object_recreated_under_a_new_uid() {
        let with_uid = |uid: &str| json!({"metadata": {"uid": uid}});
        let mut gone = observed(4, Kind::ConfigMap, "b", with_uid("2"));
        gone.deleted = true;
        let history = vec![
            observed(1, Kind::ConfigMap, "a", with_uid("1")),
            observed(2, Kind::ConfigMap, "b", with_uid("2")),
            observed(3, Kind::ConfigMap, "a", with_uid("3")),
            gone,
        ];
        assert_eq!(
            deletions(&history),
            vec![
                (3, Kind::ConfigMap, "a".into()),
                (4, Kind::ConfigMap, "b".into())
            ]
        );
    }

    #[test]
    fn application_resets_are_found_but_a_full_history_may_drop_its_oldest() {
        let app = |revision: Option<&str>, ids: &[i64]| {
            let history: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
            json!({"status": {"sync": {"revision": revision}, "reconciledAt": "t",
                              "operationState": {"phase": "Succeeded"}, "history": history}})
        };
        let before = app(Some("c2"), &[1, 2, 3]);
        assert!(application_resets("app", &before, &app(Some("c3"), &[2, 3, 4])).is_empty());
        let resets = application_resets("app", &before, &app(None, &[1, 2]));
        assert_eq!(resets.len(), 2, "{resets:?}");
        let cleared = json!({"status": {"sync": {"revision": "c2"}}});
        assert_eq!(application_resets("app", &before, &cleared).len(), 3);
    }
}
