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
//! their role; pods already running keep what they started with.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;

use super::names::{EPHEMERAL_METADATA_ANNOTATION, POD_TEMPLATE_HASH_LABEL};
use super::observe::ReplicaSetExt;
use super::plan::Planner;
use crate::api::ObjectLabels;

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

/// Plans the pod-template changes taking `rs` from the metadata it records to `wanted`.
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
    let metadata = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref());
    let labels = changes(
        metadata.and_then(|m| m.labels.as_ref()),
        recorded.as_ref().and_then(|r| r.labels.as_ref()),
        wanted.and_then(|w| w.labels.as_ref()),
    );
    let annotations = changes(
        metadata.and_then(|m| m.annotations.as_ref()),
        recorded.as_ref().and_then(|r| r.annotations.as_ref()),
        wanted.and_then(|w| w.annotations.as_ref()),
    );
    let record = wanted.and_then(|w| serde_json::to_string(w).ok());
    let update = p.replica_set_update(&name);
    if !labels.is_empty() {
        update.template_labels = Some(labels);
    }
    if !annotations.is_empty() {
        update.template_annotations = Some(annotations);
    }
    update
        .annotations
        .insert(EPHEMERAL_METADATA_ANNOTATION.into(), record);
}

fn has_entries(metadata: &ObjectLabels) -> bool {
    metadata.labels.as_ref().is_some_and(|l| !l.is_empty())
        || metadata.annotations.as_ref().is_some_and(|a| !a.is_empty())
}

/// The keys to set (`Some`) or remove (`None`) so that `current`, which holds `recorded`,
/// holds `wanted` instead. The pod-template-hash label is never touched.
fn changes(
    current: Option<&BTreeMap<String, String>>,
    recorded: Option<&BTreeMap<String, String>>,
    wanted: Option<&BTreeMap<String, String>>,
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
    changes.remove(POD_TEMPLATE_HASH_LABEL);
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

    #[test]
    fn a_role_change_swaps_the_injected_keys_only() {
        let current = map(&[("app", "web"), ("role", "preview"), ("tier", "front")]);
        let recorded = map(&[("role", "preview"), ("tier", "front")]);
        let wanted = map(&[("role", "active")]);
        assert_eq!(
            changes(Some(&current), Some(&recorded), Some(&wanted)),
            BTreeMap::from([
                ("role".to_string(), Some("active".to_string())),
                ("tier".to_string(), None),
            ])
        );
        assert!(changes(Some(&current), Some(&recorded), Some(&recorded)).is_empty());
        assert_eq!(
            changes(Some(&current), Some(&recorded), None).len(),
            2,
            "a ReplicaSet without a role loses what was injected"
        );
    }
}
