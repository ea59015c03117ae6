//! Live views from watches, never polling: one watch per kind (the Rollout by name; its
//! ReplicaSets and pods by the Rollout's labels; the namespace's AnalysisRuns), each feeding
//! a cache. Once every cache has listed, every burst of changes yields one snapshot of all of
//! them, from which [`RolloutView`](super::RolloutView) is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use ramp_analysis::api::AnalysisRun;
use serde::de::DeserializeOwned;

use super::model::RolloutObjects;
use crate::api::Rollout;

/// A change seen by one of the watches: which cache it touched, or a watch error (the watch
/// retries by itself with backoff; the error is only reported).
enum Signal {
    Listed(usize),
    Changed,
    Error(watcher::Error),
}

/// What a live view yields.
#[derive(Debug)]
pub enum Update {
    /// The objects after a burst of changes.
    Snapshot(Box<RolloutObjects>),
    /// A watch failed and is being retried.
    WatchError(watcher::Error),
}

/// Watches the Rollout `rollout` (as read once beforehand, for its namespace, name and pod
/// labels) and everything shown with it.
pub fn watch_rollout(
    client: Client,
    rollout: &Rollout,
) -> impl Stream<Item = Update> + Send + 'static {
    let namespace = rollout.metadata.namespace.clone().unwrap_or_default();
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let labels = pod_labels(rollout);

    let (rollouts, rollouts_w) = watched::<Rollout>(
        Api::namespaced(client.clone(), &namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        0,
    );
    let owned = match &labels {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let (replica_sets, replica_sets_w) = watched::<ReplicaSet>(
        Api::namespaced(client.clone(), &namespace),
        owned.clone(),
        1,
    );
    let (pods, pods_w) = watched::<Pod>(Api::namespaced(client.clone(), &namespace), owned, 2);
    let (runs, runs_w) = watched::<AnalysisRun>(
        Api::namespaced(client, &namespace),
        watcher::Config::default(),
        3,
    );

    let signals = stream::select_all([rollouts_w, replica_sets_w, pods_w, runs_w]);
    let mut listed = [false; 4];
    signals
        // Everything already waiting is one burst.
        .ready_chunks(256)
        .filter_map(move |burst| {
            let mut error = None;
            let mut changed = false;
            for signal in burst {
                match signal {
                    Signal::Listed(kind) => {
                        listed[kind] = true;
                        changed = true;
                    }
                    Signal::Changed => changed = true,
                    Signal::Error(e) => error = Some(e),
                }
            }
            let update = match error {
                Some(error) => Some(Update::WatchError(error)),
                None if changed && listed.iter().all(|l| *l) => {
                    Some(Update::Snapshot(Box::new(RolloutObjects {
                        rollout: rollouts.state().first().map(|r| Rollout::clone(r)),
                        replica_sets: owned_copies(&replica_sets),
                        pods: owned_copies(&pods),
                        analysis_runs: owned_copies(&runs),
                    })))
                }
                None => None,
            };
            futures::future::ready(update)
        })
}

/// A cache of `K` kept by a watch, and the watch's signals.
fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: usize,
) -> (Store<K>, BoxStream<'static, Signal>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let signals = reflector::reflector(writer, ramp_analysis::watch::paced(watcher(api, config)))
        .filter_map(move |event| {
            futures::future::ready(match event {
                Ok(watcher::Event::InitDone) => Some(Signal::Listed(kind)),
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(Signal::Changed),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                Err(error) => Some(Signal::Error(error)),
            })
        })
        .boxed();
    (store, signals)
}

fn owned_copies<K>(store: &Store<K>) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().iter().map(|o: &Arc<K>| K::clone(o)).collect()
}

/// `app=web,tier=front` from the Rollout's `spec.selector.matchLabels`, when the selector is
/// only labels (its ReplicaSets and pods all carry them); None means watch the namespace.
pub fn pod_labels(rollout: &Rollout) -> Option<String> {
    let selector = rollout.spec.selector.as_ref()?;
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let labels: &BTreeMap<String, String> = selector.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::tests::canary_rollout;

    #[test]
    fn selector_becomes_a_label_query() {
        assert_eq!(pod_labels(&canary_rollout(0)).as_deref(), Some("app=web"));
        let mut with_expressions = canary_rollout(0);
        with_expressions
            .spec
            .selector
            .as_mut()
            .unwrap()
            .match_expressions = Some(vec![Default::default()]);
        assert_eq!(pod_labels(&with_expressions), None);
    }
}
