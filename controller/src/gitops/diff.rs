//! Is a live object what Git says? A three-way comparison without a stored copy:
//!
//! 1. every field written in Git has the same value live (defaults the API server adds are
//!    extra live fields and do not count; quantities compare by value; Secret `stringData`
//!    compares against `data`);
//! 2. every field the `ramp-gitops` field manager owns live is still written in Git (a field
//!    removed from Git must be removed from the cluster by the next apply).
//!
//! Fields matched by `ignoreDifferences` (JSON pointers, or every field owned by one of the
//! listed field managers) take no part in either check.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::application::ResourceIgnoreDifferences;
use super::resource::ResourceKey;

/// Field manager Ramp's GitOps reconciler applies with.
pub const FIELD_MANAGER: &str = "ramp-gitops";

/// Live fields excluded from the comparison, as JSON pointers into the live object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoredFields {
    pointers: BTreeSet<String>,
}

impl IgnoredFields {
    /// Whether `pointer` or one of its parents is ignored.
    pub fn covers(&self, pointer: &str) -> bool {
        self.pointers.iter().any(|p| {
            pointer == p
                || (pointer.starts_with(p.as_str())
                    && pointer.as_bytes().get(p.len()) == Some(&b'/'))
        })
    }

    /// The ignored pointers.
    pub fn pointers(&self) -> impl Iterator<Item = &str> {
        self.pointers.iter().map(String::as_str)
    }

    /// Whether nothing is ignored.
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty()
    }
}

/// The fields of `live` that the application's `ignoreDifferences` rules exclude.
pub fn ignored_fields(
    rules: &[ResourceIgnoreDifferences],
    key: &ResourceKey,
    live: Option<&Value>,
) -> IgnoredFields {
    let mut pointers = BTreeSet::new();
    for rule in rules.iter().filter(|rule| rule_matches(rule, key)) {
        pointers.extend(rule.json_pointers.iter().flatten().cloned());
        let managers = rule.managed_fields_managers.as_deref().unwrap_or_default();
        if let (false, Some(live)) = (managers.is_empty(), live) {
            for entry in managed_fields(live) {
                let manager = entry
                    .get("manager")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if managers.iter().any(|m| m == manager)
                    && let Some(fields) = entry.get("fieldsV1")
                {
                    owned_pointers(fields, live, "", &mut pointers);
                }
            }
        }
    }
    IgnoredFields { pointers }
}

fn rule_matches(rule: &ResourceIgnoreDifferences, key: &ResourceKey) -> bool {
    let group = rule.group.as_deref().unwrap_or_default();
    (group == key.group || group == "*")
        && (rule.kind == key.kind || rule.kind == "*")
        && rule
            .name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == key.name)
        && rule
            .namespace
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == key.namespace)
}

fn managed_fields(live: &Value) -> &[Value] {
    live.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Collects JSON pointers (into `value`) of the fields a `fieldsV1` set owns.
fn owned_pointers(fields: &Value, value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(fields) = fields.as_object() else {
        return;
    };
    for (entry, children) in fields {
        if entry == "." {
            continue;
        }
        let Some((pointer, child)) = resolve_entry(entry, value, prefix) else {
            continue;
        };
        let leaf = children
            .as_object()
            .is_none_or(|c| c.keys().all(|k| k == "."));
        if leaf {
            out.insert(pointer);
        } else {
            owned_pointers(children, child, &pointer, out);
        }
    }
}

/// Finds the child a `fieldsV1` entry (`f:name`, `k:{…}`, `v:…`, `i:n`) designates.
fn resolve_entry<'a>(entry: &str, value: &'a Value, prefix: &str) -> Option<(String, &'a Value)> {
    if let Some(name) = entry.strip_prefix("f:") {
        let child = value.get(name)?;
        return Some((format!("{prefix}/{}", escape(name)), child));
    }
    let items = value.as_array()?;
    let index = if let Some(key) = entry.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        items.iter().position(|item| {
            key.iter()
                .all(|(k, v)| item.get(k).is_some_and(|x| loosely_equal(x, v)))
        })?
    } else if let Some(element) = entry.strip_prefix("v:") {
        let element: Value = serde_json::from_str(element).ok()?;
        items
            .iter()
            .position(|item| loosely_equal(item, &element))?
    } else {
        entry.strip_prefix("i:")?.parse().ok()?
    };
    Some((format!("{prefix}/{index}"), items.get(index)?))
}

/// Why `live` differs from `desired`, or `None` when it does not.
pub fn difference(desired: &Value, live: &Value, ignored: &IgnoredFields) -> Option<String> {
    let normalized = normalize_secret(desired);
    let desired_view = normalized.as_ref().unwrap_or(desired);
    if let Some(path) = first_missing(desired_view, live, "", ignored) {
        return Some(format!("{} differs from Git", display_path(&path)));
    }
    for entry in managed_fields(live) {
        let manager = entry
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let operation = entry
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if manager != FIELD_MANAGER || operation != "Apply" {
            continue;
        }
        if let Some(fields) = entry.get("fieldsV1") {
            let mut owned = BTreeSet::new();
            owned_pointers(fields, live, "", &mut owned);
            for pointer in owned {
                if ignored.covers(&pointer) || pointer.starts_with("/status") {
                    continue;
                }
                if !written_in(desired, live, &pointer) {
                    return Some(format!("{} was removed from Git", display_path(&pointer)));
                }
            }
        }
    }
    None
}

/// Whether the live field at `pointer` is written in `desired`: list elements are matched by
/// position, as the subset comparison does.
fn written_in(desired: &Value, live: &Value, pointer: &str) -> bool {
    if desired.pointer(pointer).is_some() {
        return true;
    }
    // A Secret's `data` may be written as `stringData`.
    if let Some(key) = pointer.strip_prefix("/data/") {
        let is_secret = live.get("kind").and_then(Value::as_str) == Some("Secret");
        return is_secret && desired.pointer(&format!("/stringData/{key}")).is_some();
    }
    false
}

fn display_path(pointer: &str) -> String {
    let path: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if path.is_empty() {
        "the object".into()
    } else {
        path.join(".")
    }
}

/// The first desired field (as a pointer) whose live value differs.
fn first_missing(
    desired: &Value,
    live: &Value,
    pointer: &str,
    ignored: &IgnoredFields,
) -> Option<String> {
    if !pointer.is_empty() && ignored.covers(pointer) {
        return None;
    }
    match (desired, live) {
        (Value::Null, _) => None,
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let child = format!("{pointer}/{}", escape(key));
            match have.get(key) {
                Some(live_value) => first_missing(value, live_value, &child, ignored),
                None if is_empty(value) || ignored.covers(&child) => None,
                None => Some(child),
            }
        }),
        (Value::Object(want), _) if want.is_empty() => None,
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Some(pointer.to_owned());
            }
            want.iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| first_missing(w, h, &format!("{pointer}/{i}"), ignored))
        }
        (Value::Array(want), Value::Null) if want.is_empty() => None,
        (want, have) => (!scalar_equal(want, have)).then(|| pointer.to_owned()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn scalar_equal(want: &Value, have: &Value) -> bool {
    if loosely_equal(want, have) {
        return true;
    }
    // The API server canonicalises quantities: `cpu: 0.5` reads back as `500m`.
    match (quantity(want), quantity(have)) {
        (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The value of a Kubernetes quantity (`500m`, `1Gi`, `2e3`, `1.5`), if `value` is one.
pub fn quantity(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => crate::validation::quantity::parse_quantity(s.trim()).map(|q| q.0),
        _ => None,
    }
}

/// A Secret's `stringData` folded into `data` (base64), as the API server stores it.
fn normalize_secret(desired: &Value) -> Option<Value> {
    if desired.get("kind").and_then(Value::as_str) != Some("Secret") {
        return None;
    }
    let string_data = desired.get("stringData")?.as_object()?;
    let mut normalized = desired.clone();
    let object = normalized.as_object_mut()?;
    object.remove("stringData");
    let data = object
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    for (key, value) in string_data {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        data.insert(key.clone(), Value::String(base64(text.as_bytes())));
    }
    Some(normalized)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// With `RespectIgnoreDifferences=true`, the object to apply keeps the live value of every
/// ignored field, so a sync never reverts what another manager (an HPA, Ramp) set.
pub fn keep_ignored_live_values(desired: &mut Value, live: &Value, ignored: &IgnoredFields) {
    for pointer in ignored.pointers() {
        match live.pointer(pointer) {
            Some(value) => set_pointer(desired, pointer, value.clone()),
            None => remove_pointer(desired, pointer),
        }
    }
}

fn split_pointer(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let Some((parent, last)) = split_pointer(pointer) else {
        return;
    };
    if let Some(Value::Object(map)) = target.pointer_mut(parent) {
        map.insert(last, value);
    } else if let Some(Value::Array(items)) = target.pointer_mut(parent)
        && let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i))
    {
        *slot = value;
    }
}

fn remove_pointer(target: &mut Value, pointer: &str) {
    let Some((parent, last)) = split_pointer(pointer) else {
        return;
    };
    if let Some(Value::Object(map)) = target.pointer_mut(parent) {
        map.remove(&last);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment_live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "7",
                "labels": {"app": "web"},
                "managedFields": [
                    {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {},
                                "f:resources": {"f:limits": {"f:cpu": {}}}}}}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {
                        "f:status": {"f:replicas": {}}}},
                    {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                ]
            },
            "spec": {
                "replicas": 5,
                "progressDeadlineSeconds": 600,
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                    "terminationMessagePath": "/dev/termination-log",
                    "resources": {"limits": {"cpu": "500m"}}}]}}
            },
            "status": {"replicas": 5}
        })
    }

    fn deployment_desired(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "resources": {"limits": {"cpu": 0.5}}}]}}}
        })
    }

    #[test]
    fn server_defaults_and_canonical_quantities_are_not_differences() {
        let none = IgnoredFields::default();
        assert_eq!(
            difference(
                &deployment_desired(5, "nginx:1.25"),
                &deployment_live(),
                &none
            ),
            None
        );
    }

    #[test]
    fn changed_fields_are_differences() {
        let none = IgnoredFields::default();
        let why = difference(
            &deployment_desired(5, "nginx:1.26"),
            &deployment_live(),
            &none,
        );
        assert_eq!(
            why.as_deref(),
            Some("spec.template.spec.containers.0.image differs from Git")
        );
        let why = difference(
            &deployment_desired(3, "nginx:1.25"),
            &deployment_live(),
            &none,
        );
        assert_eq!(why.as_deref(), Some("spec.replicas differs from Git"));
    }

    #[test]
    fn a_field_removed_from_git_is_a_difference() {
        let mut desired = deployment_desired(5, "nginx:1.25");
        desired["metadata"]
            .as_object_mut()
            .map(|m| m.remove("labels"));
        let why = difference(&desired, &deployment_live(), &IgnoredFields::default());
        assert_eq!(
            why.as_deref(),
            Some("metadata.labels.app was removed from Git")
        );
    }

    #[test]
    fn ignore_differences_by_pointer_and_by_manager() {
        let key = ResourceKey::new("apps", "Deployment", "shop", "web");
        let live = deployment_live();
        let by_pointer = [ResourceIgnoreDifferences {
            group: Some("apps".into()),
            kind: "Deployment".into(),
            json_pointers: Some(vec!["/spec/replicas".into()]),
            ..Default::default()
        }];
        let ignored = ignored_fields(&by_pointer, &key, Some(&live));
        assert_eq!(
            difference(&deployment_desired(3, "nginx:1.25"), &live, &ignored),
            None
        );
        let by_manager = [ResourceIgnoreDifferences {
            group: Some("apps".into()),
            kind: "Deployment".into(),
            managed_fields_managers: Some(vec!["hpa".into()]),
            ..Default::default()
        }];
        let ignored = ignored_fields(&by_manager, &key, Some(&live));
        assert_eq!(ignored.pointers().collect::<Vec<_>>(), ["/spec/replicas"]);
        assert_eq!(
            difference(&deployment_desired(3, "nginx:1.25"), &live, &ignored),
            None
        );
        let mut desired = deployment_desired(3, "nginx:1.25");
        keep_ignored_live_values(&mut desired, &live, &ignored);
        assert_eq!(desired["spec"]["replicas"], 5);
        let other = ResourceKey::new("apps", "Deployment", "shop", "api");
        let named = [ResourceIgnoreDifferences {
            name: Some("web".into()),
            ..by_pointer[0].clone()
        }];
        assert!(ignored_fields(&named, &other, Some(&live)).is_empty());
    }

    #[test]
    fn secrets_compare_string_data_with_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter2"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "managedFields": [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {"f:password": {}}}}]},
            "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"});
        assert_eq!(difference(&desired, &live, &IgnoredFields::default()), None);
        let changed = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "x"}});
        assert!(difference(&changed, &live, &IgnoredFields::default()).is_some());
    }

    #[test]
    fn quantities_and_lists() {
        assert_eq!(quantity(&json!("1Gi")), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity(&json!("2e3")), Some(2000.0));
        assert_eq!(quantity(&json!("abc")), None);
        let none = IgnoredFields::default();
        assert!(difference(&json!({"a": [1, 2]}), &json!({"a": [1]}), &none).is_some());
        assert_eq!(
            difference(&json!({"a": [], "b": {}}), &json!({}), &none),
            None
        );
        assert_eq!(base64(b"hunter2"), "aHVudGVyMg==");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
