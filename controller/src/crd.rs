//! CRD generation: the CustomResourceDefinitions Ramp serves, made from the Rust types and
//! made portable, so that they install unchanged on Kubernetes 1.20 and on every later
//! version.
//!
//! Portability rules enforced here (Kubernetes 1.20 rejects or mishandles each):
//! - no CEL rules (`x-kubernetes-validations`);
//! - no empty-string `default`s;
//! - every `x-kubernetes-list-map-keys` key required or defaulted (checked, never invented).
//!
//! The pod and Job templates embedded from Kubernetes' own types keep their structure but lose
//! their long descriptions, which keeps each CRD well under the size limits of client-side
//! `kubectl apply`; quantities get the pattern Kubernetes validates them with, so a manifest
//! such as `memory: invalid` is rejected by the API server as it is by Argo Rollouts' CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment, Rollout};

/// The pattern Kubernetes' CRDs use for `resource.Quantity`.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Every CRD Ramp serves, portable, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    [
        Rollout::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        AnalysisRun::crd(),
        Experiment::crd(),
        crate::gitops::Application::crd(),
    ]
    .into_iter()
    .map(portable)
    .collect()
}

/// The file name of a CRD under `crds/`: its plural, e.g. `rollouts.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.spec.names.plural)
}

/// Renders one CRD as YAML.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// Schema paths (from the root of `openAPIV3Schema`) where Kubernetes' own types are
/// embedded; their descriptions are dropped.
const EMBEDDED_KUBERNETES_TYPES: [&str; 5] = [
    ".spec.template",
    ".spec.templates[].template",
    ".spec.metrics[].provider.job.spec",
    ".spec.metrics[].provider.job.metadata",
    ".spec.strategy.canary.steps[].experiment.templates[].selector",
];

/// Rewrites a generated CRD so that it installs on Kubernetes 1.20 and later.
pub fn portable(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("a CRD always serializes");
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                rewrite_schema(schema, "", false);
            }
        }
    }
    serde_json::from_value(value).expect("a rewritten CRD still deserializes")
}

/// Walks a schema node at `path`. `embedded` is true inside Kubernetes' own types, whose
/// descriptions are dropped.
fn rewrite_schema(node: &mut Value, path: &str, embedded: bool) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    object.remove("x-kubernetes-validations");
    if object.get("default").and_then(Value::as_str) == Some("") {
        object.remove("default");
    }
    // An optional enum lists `null` among its values; 1.20 cannot convert such a schema
    // ("per-version schemas may not all be set to identical values"). `nullable` says it.
    if let Some(values) = object.get_mut("enum").and_then(Value::as_array_mut) {
        values.retain(|v| !v.is_null());
    }
    let description = object
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && description.starts_with("Quantity is a fixed-point representation")
    {
        object.insert("pattern".into(), QUANTITY_PATTERN.into());
    }
    let embedded = embedded || EMBEDDED_KUBERNETES_TYPES.contains(&path);
    if embedded {
        object.remove("description");
    }
    if let Some(children) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, child) in children.iter_mut() {
            rewrite_schema(child, &format!("{path}.{name}"), embedded);
        }
    }
    if let Some(child) = object.get_mut("items") {
        rewrite_schema(child, &format!("{path}[]"), embedded);
    }
    if let Some(child) = object.get_mut("additionalProperties") {
        rewrite_schema(child, &format!("{path}{{}}"), embedded);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(children) = object.get_mut(key).and_then(Value::as_array_mut) {
            for child in children {
                rewrite_schema(child, path, embedded);
            }
        }
    }
}

/// Problems that would stop a CRD from installing on Kubernetes 1.20, each with the schema
/// path. Empty for every CRD [`all`] returns; used by the tests and by `crd --check`.
pub fn portability_problems(crd: &CustomResourceDefinition) -> Vec<String> {
    let mut problems = Vec::new();
    let value = serde_json::to_value(crd).expect("a CRD always serializes");
    if let Some(versions) = value.pointer("/spec/versions").and_then(Value::as_array) {
        for version in versions {
            if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
                check_node(schema, &crd.spec.names.kind, &mut problems);
            }
        }
    }
    problems
}

fn check_node(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        return;
    };
    if object.contains_key("x-kubernetes-validations") {
        problems.push(format!(
            "{path}: x-kubernetes-validations (CEL) is not served by 1.20"
        ));
    }
    if object.get("default").and_then(Value::as_str) == Some("") {
        problems.push(format!("{path}: empty-string default is rejected by 1.20"));
    }
    if object
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(Value::is_null))
    {
        problems.push(format!(
            "{path}: null among enum values is rejected by 1.20"
        ));
    }
    if let Some(keys) = object
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
    {
        let item = object.get("items");
        let required: Vec<&str> = item
            .and_then(|i| i.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for key in keys.iter().filter_map(Value::as_str) {
            let defaulted = item
                .and_then(|i| i.pointer(&format!("/properties/{key}/default")))
                .is_some();
            if !required.contains(&key) && !defaulted {
                problems.push(format!(
                    "{path}: list-map key {key:?} is neither required nor defaulted"
                ));
            }
        }
    }
    if let Some(children) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in children {
            check_node(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(child) = object.get("items") {
        check_node(child, &format!("{path}[]"), problems);
    }
    if let Some(child) = object.get("additionalProperties") {
        check_node(child, &format!("{path}{{}}"), problems);
    }
}
