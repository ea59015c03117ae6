//! Reading and writing router objects the routers do not have Rust types for (HTTPRoute,
//! VirtualService, DestinationRule, TrafficSplit) as `DynamicObject`s, and the rules they
//! share: a missing object is [`Problem::NotFound`], every write carries the
//! resourceVersion it was computed from (so a user's concurrent edit is never overwritten
//! but re-read), and an object Ramp creates is owned by its Rollout.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::{Problem, TrafficError};
use crate::rollout::names::FIELD_MANAGER;

/// The Rollout a router works for: what owner references and messages need.
#[derive(Clone, Debug, Default)]
pub struct RolloutIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl RolloutIdentity {
    /// The controller reference that makes an object Ramp creates belong to the Rollout
    /// (deleted with it by the garbage collector).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Rollout".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Whether `owners` makes the Rollout the controller of an object.
    pub fn owns(&self, owners: Option<&[OwnerReference]>) -> bool {
        owners
            .unwrap_or_default()
            .iter()
            .any(|o| o.uid == self.uid && o.controller == Some(true))
    }
}

/// A kind of router object and the API it is served at.
pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// `Kind/namespace/name`, the way errors name router objects.
pub fn describe(resource: &ApiResource, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", resource.kind)
}

/// Reads an object; a missing object (or a kind the cluster does not serve) is `NotFound`.
pub async fn get(
    client: &Client,
    resource: &ApiResource,
    router: &'static str,
    namespace: &str,
    name: &str,
) -> Result<DynamicObject, TrafficError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    api.get(name)
        .await
        .map_err(|error| api_error(router, describe(resource, namespace, name), error))
}

/// Like [`get`], but a missing object is `None`.
pub async fn get_opt(
    client: &Client,
    resource: &ApiResource,
    router: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Option<DynamicObject>, TrafficError> {
    match get(client, resource, router, namespace, name).await {
        Ok(object) => Ok(Some(object)),
        Err(TrafficError {
            problem: Problem::NotFound,
            ..
        }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes `spec` (top-level keys replaced, the others kept) on condition that the object is
/// still at `resource_version`.
pub async fn patch_spec(
    client: &Client,
    resource: &ApiResource,
    router: &'static str,
    object: &DynamicObject,
    spec: Value,
) -> Result<(), TrafficError> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    let patch = json!({
        "metadata": {"resourceVersion": object.metadata.resource_version},
        "spec": spec,
    });
    api.patch(&name, &params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|error| api_error(router, describe(resource, &namespace, &name), error))
}

/// On a router object: the experiment Services (a JSON list) whose destinations, subsets
/// or backends Ramp added and will remove.
pub const EXPERIMENT_SERVICES_ANNOTATION: &str = "rollouts.ramp.dev/experiment-services";

/// The experiment Services Ramp recorded on an object.
pub fn experiment_services(object: &DynamicObject) -> Vec<String> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPERIMENT_SERVICES_ANNOTATION))
        .and_then(|value| serde_json::from_str(value).ok())
        .unwrap_or_default()
}

/// Like [`patch_spec`], and when given, also records the experiment Services Ramp added
/// (the annotation is removed when the list is empty).
pub async fn patch_spec_and_experiments(
    client: &Client,
    resource: &ApiResource,
    router: &'static str,
    object: &DynamicObject,
    spec: Value,
    experiment_services: Option<&[String]>,
) -> Result<(), TrafficError> {
    let Some(services) = experiment_services else {
        return patch_spec(client, resource, router, object, spec).await;
    };
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let value = if services.is_empty() {
        Value::Null
    } else {
        json!(serde_json::to_string(services).unwrap_or_default())
    };
    let body = json!({
        "metadata": {
            "resourceVersion": object.metadata.resource_version,
            "annotations": { EXPERIMENT_SERVICES_ANNOTATION: value },
        },
        "spec": spec,
    });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    api.patch(&name, &params(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|error| api_error(router, describe(resource, &namespace, &name), error))
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: keys `new` lacks become
/// `null`, objects are compared key by key, anything else is replaced when it differs.
pub fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before) if before.is_object() && value.is_object() => {
                        patch.insert(key.clone(), merge_patch(before, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        (_, new) => new.clone(),
    }
}

/// Creates an object Ramp owns.
pub async fn create(
    client: &Client,
    resource: &ApiResource,
    router: &'static str,
    object: &DynamicObject,
) -> Result<(), TrafficError> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    api.create(&post_params(), object)
        .await
        .map(|_| ())
        .map_err(|error| api_error(router, describe(resource, &namespace, &name), error))
}

pub fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run: false,
    }
}

/// Maps an API error: 404 is a missing object, anything else stays an API error.
pub fn api_error(router: &'static str, object: String, error: kube::Error) -> TrafficError {
    let problem = match &error {
        kube::Error::Api(status) if status.code == 404 => Problem::NotFound,
        _ => Problem::Api(error),
    };
    TrafficError {
        router,
        object,
        problem,
    }
}

/// A `Malformed` error for an object.
pub fn malformed(router: &'static str, object: String, what: impl Into<String>) -> TrafficError {
    TrafficError {
        router,
        object,
        problem: Problem::Malformed(what.into()),
    }
}

/// The object's `spec`, or an empty object.
pub fn spec(object: &DynamicObject) -> Value {
    object
        .data
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// `name` or `name.namespace` (the form Argo accepts for objects in another namespace).
pub fn split_name<'a>(name: &'a str, default_namespace: &'a str) -> (&'a str, &'a str) {
    match name.split_once('.') {
        Some((name, namespace)) if !namespace.is_empty() => (name, namespace),
        _ => (name, default_namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_carry_a_namespace() {
        assert_eq!(split_name("web", "shop"), ("web", "shop"));
        assert_eq!(split_name("web.mesh", "shop"), ("web", "mesh"));
    }

    #[test]
    fn ownership_needs_a_controller_reference_with_the_rollout_uid() {
        let rollout = RolloutIdentity {
            name: "web".into(),
            namespace: "shop".into(),
            uid: "u1".into(),
        };
        let mine = rollout.owner_reference();
        assert!(rollout.owns(Some(std::slice::from_ref(&mine))));
        let other = OwnerReference {
            uid: "u2".into(),
            ..mine.clone()
        };
        assert!(!rollout.owns(Some(&[other])));
        let not_controller = OwnerReference {
            controller: None,
            ..mine
        };
        assert!(!rollout.owns(Some(&[not_controller])));
        assert!(!rollout.owns(None));
    }
}

#[cfg(test)]
mod merge_patch_tests {
    use super::*;

    #[test]
    fn removed_keys_become_null_and_nested_objects_are_diffed() {
        let old = json!({"a": 1, "gone": "x", "nested": {"keep": 1, "drop": 2}, "list": [1, 2]});
        let new = json!({"a": 1, "nested": {"keep": 1, "add": 3}, "list": [2]});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"gone": null, "nested": {"drop": null, "add": 3}, "list": [2]})
        );
        assert_eq!(merge_patch(&new, &new), json!({}));
    }
}
