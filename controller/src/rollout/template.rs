//! Whether a ReplicaSet's pod template is the Rollout's pod template, when hashes cannot
//! tell: ReplicaSets created by Argo Rollouts (or by an older hash scheme) carry a hash Ramp
//! does not compute, and must still be recognised, or handing a Rollout over would start a
//! needless update.
//!
//! The API server defaults fields of a stored ReplicaSet's template (`imagePullPolicy`,
//! `terminationMessagePath`, `dnsPolicy`, …) that the Rollout's template leaves out, and
//! Ramp does not re-implement pod defaulting. So the comparison is structural: every field
//! the Rollout sets must be equal in the ReplicaSet; objects in the ReplicaSet may carry extra
//! fields (defaults), except label and annotation maps, selectors and resource lists, which
//! must match exactly; lists must have the same length. The `rollouts-pod-template-hash`
//! label, injected ephemeral metadata and the injected anti-affinity rule are ignored.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use serde_json::Value;

use super::names::{EPHEMERAL_METADATA_ANNOTATION, POD_TEMPLATE_HASH_LABEL};
use crate::api::ObjectLabels;

/// Keys whose values are maps owned entirely by the user: compared exactly.
const EXACT_MAPS: [&str; 6] = [
    "labels",
    "annotations",
    "nodeSelector",
    "limits",
    "requests",
    "matchLabels",
];

/// Whether `rs` runs `desired`.
pub fn replica_set_runs(rs: &ReplicaSet, desired: &PodTemplateSpec) -> bool {
    let Some(live) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
        return false;
    };
    let (Ok(mut live), Ok(mut desired)) =
        (serde_json::to_value(live), serde_json::to_value(desired))
    else {
        return false;
    };
    let ephemeral: Option<ObjectLabels> = rs
        .annotations()
        .get(EPHEMERAL_METADATA_ANNOTATION)
        .and_then(|a| serde_json::from_str(a).ok());
    strip_injected(&mut live, ephemeral.as_ref());
    strip_injected(&mut desired, None);
    covers(&live, &desired, None)
}

/// Removes what Ramp adds to a template: the hash label, ephemeral metadata, the anti-affinity
/// term selecting on the hash label.
fn strip_injected(template: &mut Value, ephemeral: Option<&ObjectLabels>) {
    if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            for key in ephemeral
                .and_then(|e| e.labels.as_ref())
                .into_iter()
                .flat_map(|l| l.keys())
            {
                labels.remove(key);
            }
            if labels.is_empty() {
                metadata.remove("labels");
            }
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            for key in ephemeral
                .and_then(|e| e.annotations.as_ref())
                .into_iter()
                .flat_map(|a| a.keys())
            {
                annotations.remove(key);
            }
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    let Some(anti) = template
        .pointer_mut("/spec/affinity/podAntiAffinity")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for key in [
        "preferredDuringSchedulingIgnoredDuringExecution",
        "requiredDuringSchedulingIgnoredDuringExecution",
    ] {
        if let Some(terms) = anti.get_mut(key).and_then(Value::as_array_mut) {
            terms.retain(|term| !selects_on_hash(term));
            if terms.is_empty() {
                anti.remove(key);
            }
        }
    }
    let anti_empty = anti.is_empty();
    if let Some(affinity) = template
        .pointer_mut("/spec/affinity")
        .and_then(Value::as_object_mut)
    {
        if anti_empty {
            affinity.remove("podAntiAffinity");
        }
        if affinity.is_empty()
            && let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.remove("affinity");
        }
    }
}

fn selects_on_hash(term: &Value) -> bool {
    let term = term.get("podAffinityTerm").unwrap_or(term);
    term.pointer("/labelSelector/matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|exprs| {
            exprs
                .iter()
                .any(|e| e.get("key").and_then(Value::as_str) == Some(POD_TEMPLATE_HASH_LABEL))
        })
}

/// Whether `live` has every field of `desired` with an equal value.
fn covers(live: &Value, desired: &Value, key: Option<&str>) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            if key.is_some_and(|k| EXACT_MAPS.contains(&k)) && live.len() != desired.len() {
                return false;
            }
            desired.iter().all(|(k, d)| match live.get(k) {
                Some(l) => covers(l, d, Some(k)),
                // A field left empty in the Rollout may be absent in the stored object.
                None => is_empty(d),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| covers(l, d, key))
        }
        (l, d) => l == d || (d.is_null() && is_empty(l)),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use serde_json::json;

    use super::*;

    fn rs(template: Value) -> ReplicaSet {
        ReplicaSet {
            spec: Some(ReplicaSetSpec {
                template: Some(serde_json::from_value(template).unwrap()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn defaulted_templates_still_match() {
        let live = rs(json!({
            "metadata": {"labels": {"app": "demo", "rollouts-pod-template-hash": "abc"}},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1", "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePath": "/dev/termination-log", "resources": {}}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {}
            }
        }));
        assert!(replica_set_runs(&live, &desired("nginx:1")));
        assert!(!replica_set_runs(&live, &desired("nginx:2")));
    }

    #[test]
    fn labels_must_match_exactly() {
        let live = rs(json!({
            "metadata": {"labels": {"app": "demo", "tier": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}
        }));
        assert!(
            !replica_set_runs(&live, &desired("nginx:1")),
            "a label removed from the Rollout is a change"
        );
    }

    #[test]
    fn injected_anti_affinity_is_ignored() {
        let live = rs(json!({
            "metadata": {"labels": {"app": "demo"}},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                     "labelSelector": {"matchExpressions": [{"key": "rollouts-pod-template-hash", "operator": "In", "values": ["old"]}]}}}
                ]}}
            }
        }));
        assert!(replica_set_runs(&live, &desired("nginx:1")));
    }
}
