//! From rendered manifests to the desired objects of one sync: namespaces defaulted, waves
//! read, tracking annotation added, duplicates and unknown kinds rejected.
//!
//! Whether a kind is namespaced comes from the caller (discovery), completed by the CRDs in
//! the render itself, so a CRD and its objects can be synced together.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::render::{Manifest, RenderError};
use super::resource::{
    HOOK_ANNOTATION, ResourceKey, SYNC_WAVE_ANNOTATION, TRACKING_ANNOTATION, group_of, tracking_id,
};

/// One object to be in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    /// Identity, namespace defaulted (empty for cluster-scoped kinds).
    pub key: ResourceKey,
    /// apiVersion as written.
    pub api_version: String,
    /// The object to apply: namespace set, tracking annotation added, `status` removed.
    pub object: Value,
    /// `file:line` in the source.
    pub origin: String,
    /// Sync wave (`argocd.argoproj.io/sync-wave`, default 0).
    pub wave: i64,
}

/// Scope of a kind, as the API server (or a CRD in the render) declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Objects live in a namespace.
    Namespaced,
    /// Objects are cluster-wide.
    Cluster,
}

/// `(group, kind)` → scope, for the kinds the cluster serves.
pub type KindScopes = HashMap<(String, String), Scope>;

/// What resolution produced besides the objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    /// Objects to sync.
    pub objects: Vec<DesiredObject>,
    /// Hooks found and not run, as `file:line kind/name (hook)`.
    pub skipped_hooks: Vec<String>,
}

/// The (group, kind) pairs the manifests use, so the caller can look them up before
/// calling [`resolve`].
pub fn kinds_used(manifests: &[Manifest]) -> Vec<(String, String, String)> {
    let mut kinds: Vec<(String, String, String)> = manifests
        .iter()
        .filter_map(|m| {
            let api_version = m.object.get("apiVersion")?.as_str()?;
            let kind = m.object.get("kind")?.as_str()?;
            Some((
                group_of(api_version).to_owned(),
                api_version.to_owned(),
                kind.to_owned(),
            ))
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Scopes declared by CRDs among the manifests.
pub fn crd_scopes(manifests: &[Manifest]) -> KindScopes {
    manifests
        .iter()
        .filter(|m| is_crd(&m.object))
        .filter_map(|m| {
            let spec = m.object.get("spec")?;
            let group = spec.get("group")?.as_str()?;
            let kind = spec.get("names")?.get("kind")?.as_str()?;
            let scope = match spec.get("scope").and_then(Value::as_str) {
                Some("Cluster") => Scope::Cluster,
                _ => Scope::Namespaced,
            };
            Some(((group.to_owned(), kind.to_owned()), scope))
        })
        .collect()
}

/// Whether an object is a CustomResourceDefinition.
pub fn is_crd(object: &Map<String, Value>) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
        && object
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| group_of(v) == "apiextensions.k8s.io")
}

/// Turns manifests into desired objects, or reports every problem with its file and line.
pub fn resolve(
    manifests: Vec<Manifest>,
    cluster_scopes: &KindScopes,
    default_namespace: &str,
    app_instance: &str,
) -> Result<Resolved, Vec<RenderError>> {
    let render_scopes = crd_scopes(&manifests);
    let mut errors = Vec::new();
    let mut resolved = Resolved::default();
    let mut seen: BTreeMap<ResourceKey, String> = BTreeMap::new();
    for manifest in manifests {
        let origin = manifest.origin();
        let error = |message: String| RenderError {
            file: manifest.file.clone(),
            line: Some(manifest.line),
            message,
        };
        let mut object = manifest.object.clone();
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let group = group_of(&api_version).to_owned();
        let name = object
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(hook) = annotation(&object, HOOK_ANNOTATION) {
            if hook != "Skip" {
                resolved
                    .skipped_hooks
                    .push(format!("{origin} {kind}/{name} ({hook})"));
            }
            continue;
        }
        let wave = match annotation(&object, SYNC_WAVE_ANNOTATION) {
            None => 0,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(wave) => wave,
                Err(_) => {
                    errors.push(error(format!(
                        "{kind}/{name}: annotation {SYNC_WAVE_ANNOTATION} is {text:?}, not an integer"
                    )));
                    continue;
                }
            },
        };
        let scope_key = (group.clone(), kind.clone());
        let Some(scope) = cluster_scopes
            .get(&scope_key)
            .or_else(|| render_scopes.get(&scope_key))
        else {
            errors.push(error(format!(
                "{kind}/{name}: the cluster serves no kind {kind} in {api_version}; \
                 install its CustomResourceDefinition or add it to the source"
            )));
            continue;
        };
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut();
        let Some(metadata) = metadata else {
            errors.push(error(format!("{kind}/{name}: metadata is not a mapping")));
            continue;
        };
        let namespace = match scope {
            Scope::Cluster => {
                metadata.remove("namespace");
                String::new()
            }
            Scope::Namespaced => {
                let namespace = metadata
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(default_namespace)
                    .to_owned();
                metadata.insert("namespace".into(), Value::String(namespace.clone()));
                namespace
            }
        };
        let key = ResourceKey {
            group,
            kind,
            namespace,
            name,
        };
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Value::Object(annotations) = annotations {
            annotations.insert(
                TRACKING_ANNOTATION.into(),
                Value::String(tracking_id(app_instance, &key)),
            );
        }
        object.remove("status");
        default_port_protocols(&key, &mut object);
        if let Some(first) = seen.get(&key) {
            let place = if key.namespace.is_empty() {
                key.name.clone()
            } else {
                format!("{}/{}", key.namespace, key.name)
            };
            errors.push(error(format!(
                "{} {place} is also defined at {first}; each object may appear once",
                key.kind
            )));
            continue;
        }
        seen.insert(key.clone(), origin.clone());
        resolved.objects.push(DesiredObject {
            key,
            api_version,
            object: Value::Object(object),
            origin,
            wave,
        });
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

/// Sets `protocol: TCP` on ports that omit it, where `protocol` is part of a list key
/// (Service ports; container ports in any embedded pod spec). The API server defaults it
/// too, but Kubernetes 1.20's server-side apply rejects an element that omits a key field.
fn default_port_protocols(key: &ResourceKey, object: &mut Map<String, Value>) {
    fn default_protocol(ports: Option<&mut Value>) {
        for port in ports.and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(port) = port.as_object_mut() {
                port.entry("protocol")
                    .or_insert_with(|| Value::String("TCP".into()));
            }
        }
    }
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for list in ["containers", "initContainers", "ephemeralContainers"] {
                    if let Some(Value::Array(containers)) = map.get_mut(list) {
                        for container in containers.iter_mut() {
                            default_protocol(container.get_mut("ports"));
                        }
                    }
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if key.group.is_empty() && key.kind == "Service" {
        default_protocol(
            object
                .get_mut("spec")
                .and_then(|spec| spec.get_mut("ports")),
        );
    }
    if let Some(spec) = object.get_mut("spec") {
        walk(spec);
    }
}

fn annotation<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(name)?
        .as_str()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn manifest(file: &str, line: usize, object: Value) -> Manifest {
        let Value::Object(object) = object else {
            panic!("object")
        };
        Manifest {
            object,
            file: file.into(),
            line,
        }
    }

    fn scopes() -> KindScopes {
        [
            (("", "ConfigMap"), Scope::Namespaced),
            (("", "Namespace"), Scope::Cluster),
            (("apps", "Deployment"), Scope::Namespaced),
            (
                ("apiextensions.k8s.io", "CustomResourceDefinition"),
                Scope::Cluster,
            ),
        ]
        .into_iter()
        .map(|((g, k), s)| ((g.to_owned(), k.to_owned()), s))
        .collect()
    }

    #[test]
    fn namespaces_default_and_tracking_is_added() {
        let manifests = vec![
            manifest(
                "a.yaml",
                1,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "status": {"x": 1}}),
            ),
            manifest(
                "a.yaml",
                8,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "ignored"}}),
            ),
            manifest(
                "b.yaml",
                1,
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "other", "annotations": {"argocd.argoproj.io/sync-wave": "-2"}}}),
            ),
        ];
        let resolved = resolve(manifests, &scopes(), "shop", "app").expect("resolves");
        let [cm, ns, deploy] = &resolved.objects[..] else {
            panic!("three objects")
        };
        assert_eq!(cm.key, ResourceKey::new("", "ConfigMap", "shop", "c"));
        assert_eq!(cm.object["metadata"]["namespace"], "shop");
        assert_eq!(
            cm.object["metadata"]["annotations"][TRACKING_ANNOTATION],
            "app:/ConfigMap:shop/c"
        );
        assert!(cm.object.get("status").is_none());
        assert_eq!(ns.key.namespace, "");
        assert!(ns.object["metadata"].get("namespace").is_none());
        assert_eq!((deploy.key.namespace.as_str(), deploy.wave), ("other", -2));
        assert_eq!(deploy.origin, "b.yaml:1");
    }

    #[test]
    fn duplicates_unknown_kinds_and_bad_waves_are_all_reported() {
        let manifests = vec![
            manifest(
                "a.yaml",
                1,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            ),
            manifest(
                "b.yaml",
                4,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}),
            ),
            manifest(
                "c.yaml",
                2,
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
            ),
            manifest(
                "d.yaml",
                3,
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "e", "annotations": {"argocd.argoproj.io/sync-wave": "first"}}}),
            ),
        ];
        let errors = resolve(manifests, &scopes(), "shop", "app").expect_err("fails");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("b.yaml:4: ConfigMap shop/c is also defined at a.yaml:1"),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("c.yaml:2: Widget/w: the cluster serves no kind Widget"),
            "{}",
            text[1]
        );
        assert!(
            text[2].starts_with("d.yaml:3: ConfigMap/e: annotation argocd.argoproj.io/sync-wave"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn port_protocols_are_defaulted_for_server_side_apply() {
        let mut scopes = scopes();
        scopes.insert(("".into(), "Service".into()), Scope::Namespaced);
        scopes.insert(("argoproj.io".into(), "Rollout".into()), Scope::Namespaced);
        let manifests = vec![
            manifest(
                "s.yaml",
                1,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}),
            ),
            manifest(
                "r.yaml",
                1,
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}],
                    "initContainers": [{"name": "i"}]}}}}),
            ),
        ];
        let resolved = resolve(manifests, &scopes, "shop", "app").expect("resolves");
        let service = &resolved.objects[0].object;
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][1]["protocol"], "UDP");
        let rollout = &resolved.objects[1].object;
        assert_eq!(
            rollout["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        assert!(
            rollout["spec"]["template"]["spec"]["initContainers"][0]
                .get("ports")
                .is_none()
        );
    }

    #[test]
    fn crds_in_the_render_make_their_kinds_known_and_hooks_are_set_aside() {
        let manifests = vec![
            manifest(
                "crd.yaml",
                1,
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget", "plural": "widgets"}}}),
            ),
            manifest(
                "w.yaml",
                1,
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}}),
            ),
            manifest(
                "job.yaml",
                1,
                json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "migrate", "annotations": {"argocd.argoproj.io/hook": "PreSync"}}}),
            ),
            manifest(
                "skip.yaml",
                1,
                json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "never", "annotations": {"argocd.argoproj.io/hook": "Skip"}}}),
            ),
        ];
        let resolved = resolve(manifests, &scopes(), "shop", "app").expect("resolves");
        assert_eq!(resolved.objects.len(), 2);
        assert_eq!(
            resolved.objects[1].key,
            ResourceKey::new("example.com", "Widget", "", "w")
        );
        assert_eq!(resolved.skipped_hooks, ["job.yaml:1 Job/migrate (PreSync)"]);
    }
}
