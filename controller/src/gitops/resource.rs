//! Object identity and the tracking annotation that marks an object as an application's.
//!
//! `argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>` is Argo CD's
//! annotation tracking; the identity part must match the object carrying it, so a copy made
//! by another controller (a Deployment's annotations copied to its ReplicaSets) is not
//! mistaken for a managed object.

use std::fmt;

use serde_json::Value;

/// Annotation holding the tracking id.
pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Annotation holding an object's sync wave.
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// Annotation holding per-object sync options (`Prune=false`, …).
pub const SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
/// Annotation marking a hook (hooks are not run by Ramp).
pub const HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
/// Annotation asking for a refresh (`normal` or `hard`); removed once done.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// Group, kind, namespace (empty when cluster-scoped) and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(group: &str, kind: &str, namespace: &str, name: &str) -> Self {
        ResourceKey {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The key of a live object (apiVersion, kind and metadata read from it).
    pub fn of(object: &Value) -> Option<Self> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        Some(ResourceKey::new(
            group_of(api_version),
            kind,
            namespace,
            name,
        ))
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}/{}",
            self.group, self.kind, self.namespace, self.name
        )
    }
}

/// The group part of an apiVersion (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The version part of an apiVersion (`apps/v1` → `v1`).
pub fn version_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map_or(api_version, |(_, version)| version)
}

/// The name an application's objects are tracked under: the bare name for applications in
/// the control-plane namespace (as Argo CD does, so objects it tracked stay recognised),
/// `<namespace>_<name>` elsewhere so equally named applications never claim each other's objects.
pub fn app_instance(app_namespace: &str, app_name: &str, control_plane: Option<&str>) -> String {
    if control_plane == Some(app_namespace) {
        app_name.to_owned()
    } else {
        format!("{app_namespace}_{app_name}")
    }
}

/// The tracking id for an object of an application.
pub fn tracking_id(app_instance: &str, key: &ResourceKey) -> String {
    format!("{app_instance}:{key}")
}

/// Splits a tracking id into application instance and object key.
pub fn parse_tracking_id(id: &str) -> Option<(&str, ResourceKey)> {
    let (app, rest) = id.split_once(':')?;
    let (group_kind, namespace_name) = rest.split_once(':')?;
    let (group, kind) = group_kind.split_once('/')?;
    let (namespace, name) = namespace_name.split_once('/')?;
    if app.is_empty() || kind.is_empty() || name.is_empty() {
        return None;
    }
    Some((app, ResourceKey::new(group, kind, namespace, name)))
}

/// The application instance that manages a live object: its tracking id must name the
/// object itself (not a copy) and the object must have no owner.
pub fn managing_app(object: &Value) -> Option<String> {
    let meta = object.get("metadata")?;
    let id = meta
        .get("annotations")?
        .get(TRACKING_ANNOTATION)?
        .as_str()?;
    let (app, key) = parse_tracking_id(id)?;
    let own = ResourceKey::of(object)?;
    let owned = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty());
    (key == own && !owned).then(|| app.to_owned())
}

/// An annotation of an object, if present.
pub fn annotation<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(name)?
        .as_str()
}

/// Whether an object's `sync-options` annotation contains `option` (e.g. `Prune=false`).
pub fn has_sync_option(object: &Value, option: &str) -> bool {
    annotation(object, SYNC_OPTIONS_ANNOTATION)
        .is_some_and(|value| value.split(',').any(|o| o.trim() == option))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tracking_id_round_trips() {
        let key = ResourceKey::new("apps", "Deployment", "shop", "web");
        let id = tracking_id("guestbook", &key);
        assert_eq!(id, "guestbook:apps/Deployment:shop/web");
        assert_eq!(parse_tracking_id(&id), Some(("guestbook", key)));
        let cluster = ResourceKey::new("", "Namespace", "", "shop");
        assert_eq!(tracking_id("a", &cluster), "a:/Namespace:/shop");
        assert_eq!(
            parse_tracking_id("a:/Namespace:/shop"),
            Some(("a", cluster))
        );
        assert_eq!(parse_tracking_id("garbage"), None);
        assert_eq!(parse_tracking_id("a:/Kind:ns/"), None);
    }

    #[test]
    fn copies_and_owned_objects_are_not_managed() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop",
                "annotations": {TRACKING_ANNOTATION: "app:apps/Deployment:shop/web"}}
        });
        assert_eq!(managing_app(&deployment).as_deref(), Some("app"));
        let replica_set = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d8f", "namespace": "shop",
                "annotations": {TRACKING_ANNOTATION: "app:apps/Deployment:shop/web"}}
        });
        assert_eq!(managing_app(&replica_set), None);
        let owned = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop",
                "ownerReferences": [{"name": "x"}],
                "annotations": {TRACKING_ANNOTATION: "app:apps/Deployment:shop/web"}}
        });
        assert_eq!(managing_app(&owned), None);
    }

    #[test]
    fn instance_names_are_unique_outside_the_control_plane_namespace() {
        assert_eq!(app_instance("argocd", "web", Some("argocd")), "web");
        assert_eq!(app_instance("team-a", "web", Some("argocd")), "team-a_web");
        assert_eq!(app_instance("team-a", "web", None), "team-a_web");
    }

    #[test]
    fn sync_options_annotation_is_a_comma_list() {
        let object = json!({"metadata": {"annotations": {SYNC_OPTIONS_ANNOTATION: "Replace=true, Prune=false"}}});
        assert!(has_sync_option(&object, "Prune=false"));
        assert!(!has_sync_option(&object, "Delete=false"));
    }
}
