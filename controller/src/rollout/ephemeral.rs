//! Ephemeral pod metadata: the labels and annotations a ReplicaSet's pods carry while it
//! plays a role — `activeMetadata` / `previewMetadata` for blue-green, `stableMetadata` /
//! `canaryMetadata` for the canary. What was injected is recorded in the ReplicaSet's
//! `rollout.argoproj.io/ephemeral-metadata` annotation, so it can be taken off again when the
//! role changes (Argo's `reconcileEphemeralMetadata`).
//!
//! ```text
//!   fully promoted:  new ReplicaSet ── stable (active) metadata
//!   updating:        new ReplicaSet ── canary (preview) metadata
//!                    stable         ── stable (active) metadata
//!   every other ReplicaSet          ── none
//! ```
//!
//! The ReplicaSets' pod templates are kept in step, so pods they start carry the metadata of
//! their role, and pods already running are relabelled in place (a merge patch of the keys
//! Ramp injects, never of the pod-template-hash or selector labels). The order makes a
//! failure harmless:
//!
//! ```text
//!  1 ReplicaSet template   new pods start with the new role
//!  2 running pods          listed by the ReplicaSet's selector and owner, patched
//!  3 ReplicaSet annotation the injected metadata recorded: only now is the change done
//! ```
//!
//! A pass that fails between 1 and 3 leaves the old record, so the next pass patches the pods
//! again (patching is idempotent).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::apply::ApplyError;
use super::names::{EPHEMERAL_METADATA_ANNOTATION, FIELD_MANAGER, POD_TEMPLATE_HASH_LABEL};
use super::observe::ReplicaSetExt;
use super::plan::Planner;
use super::replicasets::planned_size;
use super::selector;
use crate::api::ObjectLabels;

/// Pods patched at once.
const CONCURRENT_POD_PATCHES: usize = 10;

/// Relabel the running pods of a ReplicaSet whose role changed, then record the change.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMetadataSync {
    pub replica_set: String,
    /// The ReplicaSet's uid: only pods it controls are touched.
    pub uid: Option<String>,
    /// The ReplicaSet's label selector, formatted for a list.
    pub selector: String,
    /// What was injected before (removed where no longer wanted).
    pub recorded: Option<ObjectLabels>,
    pub wanted: Option<ObjectLabels>,
    /// Labels never touched: the pod-template hash and the selector's keys.
    pub protected: BTreeSet<String>,
}

/// Brings every ReplicaSet's injected metadata in line with its role. `new` is the metadata of
/// a revision being rolled out, `stable` that of the stable (active) revision.
pub fn reconcile(p: &mut Planner<'_>, new: Option<&ObjectLabels>, stable: Option<&ObjectLabels>) {
    let new_rs = p.sets.new.clone();
    let new_hash = new_rs.as_deref().map(ReplicaSetExt::pod_hash);
    let stable_hash = p.stable_rs_hash();
    let fully_promoted = stable_hash.is_empty() || Some(stable_hash) == new_hash;
    if let Some(rs) = &new_rs {
        sync(p, rs, if fully_promoted { stable } else { new });
    }
    if !fully_promoted && let Some(rs) = p.sets.stable.clone() {
        sync(p, &rs, stable);
    }
    let others: Vec<Arc<ReplicaSet>> = p.sets.others.clone();
    for rs in &others {
        sync(p, rs, None);
    }
}

/// Plans the pod-template changes taking `rs` from the metadata it records to `wanted`, and the
/// relabelling of its running pods.
fn sync(p: &mut Planner<'_>, rs: &ReplicaSet, wanted: Option<&ObjectLabels>) {
    let name = rs.name_any();
    let created_now = p
        .plan
        .create_replica_set
        .as_ref()
        .is_some_and(|c| c.metadata.name.as_deref() == Some(name.as_str()));
    if created_now {
        return;
    }
    let wanted = wanted.filter(|w| has_entries(w));
    let recorded: Option<ObjectLabels> = rs
        .annotations()
        .get(EPHEMERAL_METADATA_ANNOTATION)
        .and_then(|a| serde_json::from_str(a).ok())
        .filter(has_entries);
    if recorded.as_ref() == wanted {
        return;
    }
    let protected = protected_labels(rs);
    let metadata = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref());
    let labels = changes(
        metadata.and_then(|m| m.labels.as_ref()),
        recorded.as_ref().and_then(|r| r.labels.as_ref()),
        wanted.and_then(|w| w.labels.as_ref()),
        &protected,
    );
    let annotations = changes(
        metadata.and_then(|m| m.annotations.as_ref()),
        recorded.as_ref().and_then(|r| r.annotations.as_ref()),
        wanted.and_then(|w| w.annotations.as_ref()),
        &BTreeSet::new(),
    );
    let has_pods = planned_size(p, rs) > 0 || rs.actual() > 0;
    if !labels.is_empty() || !annotations.is_empty() || !has_pods {
        let update = p.replica_set_update(&name);
        if !labels.is_empty() {
            update.template_labels = Some(labels);
        }
        if !annotations.is_empty() {
            update.template_annotations = Some(annotations);
        }
        if !has_pods {
            update
                .annotations
                .insert(EPHEMERAL_METADATA_ANNOTATION.into(), record(wanted));
        }
    }
    if has_pods {
        let selector = rs
            .spec
            .as_ref()
            .map(|s| selector::format(&s.selector))
            .unwrap_or_default();
        p.plan.pod_metadata.push(PodMetadataSync {
            replica_set: name,
            uid: rs.metadata.uid.clone(),
            selector,
            recorded,
            wanted: wanted.cloned(),
            protected,
        });
    }
}

/// The `ephemeral-metadata` annotation for `wanted` (`None` removes it).
fn record(wanted: Option<&ObjectLabels>) -> Option<String> {
    wanted.and_then(|w| serde_json::to_string(w).ok())
}

/// Labels the ReplicaSet selects its pods by: changing them would orphan the pods.
fn protected_labels(rs: &ReplicaSet) -> BTreeSet<String> {
    let mut protected = BTreeSet::from([POD_TEMPLATE_HASH_LABEL.to_string()]);
    if let Some(selector) = rs.spec.as_ref().map(|s| &s.selector) {
        protected.extend(
            selector
                .match_labels
                .iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
        protected.extend(
            selector
                .match_expressions
                .iter()
                .flatten()
                .map(|r| r.key.clone()),
        );
    }
    protected
}

/// The merge patch taking a pod from `recorded` to `wanted`, or `None` when it already
/// carries what is wanted.
fn pod_patch(pod: &Pod, sync: &PodMetadataSync) -> Option<serde_json::Value> {
    let labels = changes(
        pod.metadata.labels.as_ref(),
        sync.recorded.as_ref().and_then(|r| r.labels.as_ref()),
        sync.wanted.as_ref().and_then(|w| w.labels.as_ref()),
        &sync.protected,
    );
    let annotations = changes(
        pod.metadata.annotations.as_ref(),
        sync.recorded.as_ref().and_then(|r| r.annotations.as_ref()),
        sync.wanted.as_ref().and_then(|w| w.annotations.as_ref()),
        &BTreeSet::new(),
    );
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    let mut metadata = serde_json::Map::new();
    if !labels.is_empty() {
        metadata.insert("labels".into(), json!(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), json!(annotations));
    }
    Some(json!({ "metadata": metadata }))
}

/// Carries out the planned relabelling: for each ReplicaSet, patches its running pods, then
/// records the metadata in its annotation. Returns the number of writes.
pub async fn apply(
    client: &Client,
    namespace: &str,
    syncs: &[PodMetadataSync],
) -> Result<usize, ApplyError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let error = |action: &'static str, kind: &'static str, name: &str| {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        move |source| ApplyError::Api {
            action,
            kind,
            namespace,
            name,
            source,
        }
    };
    let mut writes = 0;
    for sync in syncs {
        let list = pods
            .list(&ListParams::default().labels(&sync.selector))
            .await
            .map_err(error(
                "listing the pods of",
                "ReplicaSet",
                &sync.replica_set,
            ))?;
        let patches: Vec<(String, serde_json::Value)> = list
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter(|pod| {
                sync.uid.as_ref().is_none_or(|uid| {
                    pod.owner_references()
                        .iter()
                        .any(|o| &o.uid == uid && o.controller == Some(true))
                })
            })
            .filter_map(|pod| Some((pod.name_any(), pod_patch(pod, sync)?)))
            .collect();
        writes += stream::iter(patches)
            .map(|(name, patch)| {
                let (pods, params) = (&pods, &params);
                async move {
                    match pods.patch(&name, params, &Patch::Merge(&patch)).await {
                        Ok(_) => Ok(1),
                        // Gone meanwhile: nothing left to relabel.
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
                        Err(source) => Err(error("relabelling", "Pod", &name)(source)),
                    }
                }
            })
            .buffer_unordered(CONCURRENT_POD_PATCHES)
            .try_fold(0, |sum, n| async move { Ok(sum + n) })
            .await?;
        let patch = json!({"metadata": {"annotations": {
            EPHEMERAL_METADATA_ANNOTATION: record(sync.wanted.as_ref()),
        }}});
        replica_sets
            .patch(&sync.replica_set, &params, &Patch::Merge(&patch))
            .await
            .map_err(error(
                "recording the ephemeral metadata of",
                "ReplicaSet",
                &sync.replica_set,
            ))?;
        writes += 1;
    }
    Ok(writes)
}

fn has_entries(metadata: &ObjectLabels) -> bool {
    metadata.labels.as_ref().is_some_and(|l| !l.is_empty())
        || metadata.annotations.as_ref().is_some_and(|a| !a.is_empty())
}

/// The keys to set (`Some`) or remove (`None`) so that `current`, which holds `recorded`,
/// holds `wanted` instead. `protected` keys are never touched.
fn changes(
    current: Option<&BTreeMap<String, String>>,
    recorded: Option<&BTreeMap<String, String>>,
    wanted: Option<&BTreeMap<String, String>>,
    protected: &BTreeSet<String>,
) -> BTreeMap<String, Option<String>> {
    let mut changes = BTreeMap::new();
    for key in recorded.into_iter().flat_map(|r| r.keys()) {
        let still_wanted = wanted.is_some_and(|w| w.contains_key(key));
        if !still_wanted && current.is_some_and(|c| c.contains_key(key)) {
            changes.insert(key.clone(), None);
        }
    }
    for (key, value) in wanted.into_iter().flatten() {
        if current.and_then(|c| c.get(key)) != Some(value) {
            changes.insert(key.clone(), Some(value.clone()));
        }
    }
    changes.retain(|key, _| !protected.contains(key));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn hash_only() -> BTreeSet<String> {
        BTreeSet::from([POD_TEMPLATE_HASH_LABEL.to_string()])
    }

    fn labels(entries: &[(&str, &str)]) -> Option<ObjectLabels> {
        Some(ObjectLabels {
            labels: Some(map(entries)),
            annotations: None,
        })
    }

    #[test]
    fn a_role_change_swaps_the_injected_keys_only() {
        let current = map(&[("app", "web"), ("role", "preview"), ("tier", "front")]);
        let recorded = map(&[("role", "preview"), ("tier", "front")]);
        let wanted = map(&[("role", "active")]);
        assert_eq!(
            changes(Some(&current), Some(&recorded), Some(&wanted), &hash_only()),
            BTreeMap::from([
                ("role".to_string(), Some("active".to_string())),
                ("tier".to_string(), None),
            ])
        );
        assert!(
            changes(
                Some(&current),
                Some(&recorded),
                Some(&recorded),
                &hash_only()
            )
            .is_empty()
        );
        assert_eq!(
            changes(Some(&current), Some(&recorded), None, &hash_only()).len(),
            2,
            "a ReplicaSet without a role loses what was injected"
        );
    }

    #[test]
    fn selector_and_hash_labels_are_never_touched() {
        let current = map(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, "abc")]);
        let wanted = map(&[
            ("app", "other"),
            (POD_TEMPLATE_HASH_LABEL, "x"),
            ("role", "a"),
        ]);
        let protected = BTreeSet::from([POD_TEMPLATE_HASH_LABEL.to_string(), "app".to_string()]);
        assert_eq!(
            changes(Some(&current), None, Some(&wanted), &protected),
            BTreeMap::from([("role".to_string(), Some("a".to_string()))])
        );
        assert!(changes(Some(&current), Some(&wanted), None, &protected).is_empty());
    }

    #[test]
    fn a_pod_patch_names_only_the_keys_that_change() {
        let mut pod = Pod::default();
        pod.metadata.labels = Some(map(&[
            ("app", "web"),
            (POD_TEMPLATE_HASH_LABEL, "abc"),
            ("role", "preview"),
            ("team", "shop"),
        ]));
        let mut sync = PodMetadataSync {
            replica_set: "web-abc".into(),
            uid: None,
            selector: "app=web".into(),
            recorded: labels(&[("role", "preview"), ("stage", "new")]),
            wanted: labels(&[("role", "active")]),
            protected: BTreeSet::from([POD_TEMPLATE_HASH_LABEL.to_string(), "app".to_string()]),
        };
        assert_eq!(
            pod_patch(&pod, &sync),
            Some(json!({"metadata": {"labels": {"role": "active"}}})),
            "the recorded key the pod lacks is not removed, the user's keys are not named"
        );
        sync.wanted = None;
        assert_eq!(
            pod_patch(&pod, &sync),
            Some(json!({"metadata": {"labels": {"role": null}}}))
        );
        sync.recorded = labels(&[("role", "active")]);
        sync.wanted = labels(&[("role", "preview")]);
        assert_eq!(pod_patch(&pod, &sync), None, "already relabelled");
    }
}
