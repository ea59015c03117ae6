//! Everything that happened to a Rollout's objects, and the invariants checked on it.
//!
//! [`Recorder`] watches the Rollouts, ReplicaSets, Services and AnalysisRuns of a namespace
//! with its own client (never through a fault proxy, never through the controller under test)
//! and keeps every version it is sent, deletions included. [`check_history`] replays them in
//! resourceVersion order, which on an etcd-backed API server is the order the writes were
//! committed in, across all kinds; so "the selector moved at revision R while the ReplicaSet
//! it selects had no available pods at R" is decided exactly, not by wall-clock guesses.
//!
//! ```text
//!  watch Rollouts ─┐
//!  watch RSs ──────┼─▶ Vec<Observed> ──sort by rv──▶ replay: state at every revision
//!  watch Services ─┤                                 ├─ traffic only to RSs with available pods
//!  watch ARs ──────┘                                 ├─ no status field reset
//!                                                    └─ one AnalysisRun per step and revision
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use ramp_analysis::api::AnalysisRun;
use ramp_controller::api::Rollout;
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
    /// Starts watching and waits until each watch has listed what exists.
    pub async fn start(client: &Client, namespace: &str) -> Result<Self, String> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let synced = Arc::new(Mutex::new(BTreeSet::new()));
        let tasks = vec![
            record::<Rollout>(client, namespace, Kind::Rollout, &log, &synced),
            record::<ReplicaSet>(client, namespace, Kind::ReplicaSet, &log, &synced),
            record::<Service>(client, namespace, Kind::Service, &log, &synced),
            record::<AnalysisRun>(client, namespace, Kind::AnalysisRun, &log, &synced),
        ];
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
                    == 4)
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
    client: &Client,
    namespace: &str,
    kind: Kind,
    log: &Arc<Mutex<Vec<Observed>>>,
    synced: &Arc<Mutex<BTreeSet<Kind>>>,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let log = log.clone();
    let synced = synced.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (object, deleted) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                Ok(watcher::Event::Delete(o)) => (o, true),
                Ok(watcher::Event::InitDone) => {
                    synced
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(kind);
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
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
            let name = meta.name.clone().unwrap_or_default();
            let Ok(object) = serde_json::to_value(&object) else {
                continue;
            };
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

/// Replays `history` in resourceVersion order and returns every invariant break, each once,
/// each naming the object, the revision and what was wrong:
///
/// - traffic: a Service selector, or a weight in `status.canary.weights`, on a ReplicaSet
///   with no available pods (or none at all);
/// - reset: `status.stableRS` or `status.currentPodHash` cleared after being set,
///   `status.observedGeneration` going back, `status.currentStepIndex` going back for the
///   same `currentPodHash` while not aborted, `status.abort` cleared for the same revision;
/// - duplicates: two AnalysisRuns for one step of one revision (`rollouts-pod-template-hash`,
///   `step-index`, `rollout-type: Step`), even if one was deleted again.
pub fn check_history(history: &[Observed]) -> Vec<String> {
    let mut events: Vec<&Observed> = history.iter().collect();
    events.sort_by_key(|o| (o.rv, o.kind, o.name.clone(), o.deleted));
    events.dedup_by(|a, b| a.rv == b.rv && a.kind == b.kind && a.name == b.name);
    let mut state: BTreeMap<(Kind, String), Value> = BTreeMap::new();
    let mut breaks: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut report = |key: String, message: String, breaks: &mut Vec<String>| {
        if seen.insert(key) {
            breaks.push(message);
        }
    };
    let mut step_runs: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
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
            Kind::AnalysisRun => {
                if label(object, ROLLOUT_TYPE_LABEL) == Some("Step") {
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
            }
            Kind::ReplicaSet | Kind::Service => {}
        }
        // Traffic, in the state after this revision.
        for ((kind, name), object) in &state {
            let targets: Vec<(String, &str)> = match kind {
                Kind::Service => selected_hash(object)
                    .map(|h| (format!("Service {name} selector"), h))
                    .into_iter()
                    .collect(),
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
        }
    }
    breaks
}

/// What led there: the versions of the ReplicaSet with `hash` and of the Services selecting
/// it, up to revision `until`.
fn trail(history: &[Observed], hash: &str, until: u64) -> String {
    let mut lines: Vec<&Observed> = history
        .iter()
        .filter(|o| o.rv <= until)
        .filter(|o| match o.kind {
            Kind::ReplicaSet => label(&o.object, POD_TEMPLATE_HASH_LABEL) == Some(hash),
            Kind::Service => true,
            _ => false,
        })
        .collect();
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
            _ => format!(
                "rv {} Service {} selects {}",
                o.rv,
                o.name,
                selected_hash(&o.object).unwrap_or("-")
            ),
        })
        .collect();
    format!("history: [{}]", lines.join("; "))
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
            json!({"status": {"canary": {"weights": {
                "canary": {"weight": w, "podTemplateHash": "b"},
                "stable": {"weight": 100 - w, "podTemplateHash": "a"}}}}})
        };
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
}
