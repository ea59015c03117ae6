//! The reconciler's view of the cluster: kinds (discovery, cached) and live objects (one
//! reflector per kind an application manages, shared by all applications).
//!
//! Every change to an object carrying a tracking id is reported on the trigger channel with
//! the application instance it names, which is what makes self-heal watch-driven.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope as KubeScope};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use ramp_analysis::watch::paced;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::desired::Scope;
use super::resource::{ResourceKey, TRACKING_ANNOTATION, group_of, parse_tracking_id, version_of};

/// A kind the API server serves.
#[derive(Clone, Debug)]
pub struct KindInfo {
    /// How to reach it.
    pub resource: ApiResource,
    /// Namespaced or cluster-wide.
    pub scope: Scope,
}

type KindKey = (String, String, String);

struct Watch {
    store: KindStore,
    task: AbortHandle,
}

/// The watch cache of one kind.
#[derive(Clone)]
pub struct KindStore {
    store: Store<DynamicObject>,
    resource: ApiResource,
}

impl KindStore {
    /// A live object as JSON.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut reference = ObjectRef::new_with(name, self.resource.clone());
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        let object = self.store.get(&reference)?;
        self.to_json(&object)
    }

    /// An object as JSON with its apiVersion and kind: the items of a list carry none (only
    /// watch events do), so objects cached from the first list get the watched kind's.
    fn to_json(&self, object: &DynamicObject) -> Option<Value> {
        let mut value = serde_json::to_value(object).ok()?;
        let map = value.as_object_mut()?;
        if !map.get("apiVersion").is_some_and(Value::is_string) {
            map.insert(
                "apiVersion".into(),
                self.resource.api_version.clone().into(),
            );
        }
        if !map.get("kind").is_some_and(Value::is_string) {
            map.insert("kind".into(), self.resource.kind.clone().into());
        }
        Some(value)
    }

    /// The resourceVersion of a live object.
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        let mut reference = ObjectRef::new_with(name, self.resource.clone());
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        self.store
            .get(&reference)?
            .metadata
            .resource_version
            .clone()
    }

    /// Every cached object carrying a tracking annotation, as JSON.
    pub fn tracked(&self) -> Vec<Value> {
        self.store
            .state()
            .iter()
            .filter(|o| {
                o.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(TRACKING_ANNOTATION))
            })
            .filter_map(|o| self.to_json(o))
            .collect()
    }
}

/// Discovery cache and shared reflectors.
pub struct Cluster {
    client: Client,
    kinds: Mutex<HashMap<KindKey, KindInfo>>,
    watches: Mutex<HashMap<KindKey, Watch>>,
    triggers: mpsc::UnboundedSender<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let watches = self
            .watches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for watch in watches.values() {
            watch.task.abort();
        }
    }
}

impl Cluster {
    /// A view using `client`; application instances whose objects change are sent to `triggers`.
    pub fn new(client: Client, triggers: mpsc::UnboundedSender<String>) -> Self {
        Cluster {
            client,
            kinds: Mutex::default(),
            watches: Mutex::default(),
            triggers,
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The kind `kind` of `api_version`, or `None` when the server does not serve it (yet).
    pub async fn kind(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<KindInfo>, kube::Error> {
        let key = (
            group_of(api_version).to_owned(),
            version_of(api_version).to_owned(),
            kind.to_owned(),
        );
        if let Some(info) = self
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Some(info.clone()));
        }
        let gvk = GroupVersionKind::gvk(&key.0, &key.1, &key.2);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, capabilities)) => {
                let info = KindInfo {
                    resource,
                    scope: scope_of(&capabilities),
                };
                self.kinds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, info.clone());
                Ok(Some(info))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The store of `info`'s kind, starting its reflector on first use and waiting until it
    /// has listed every object.
    pub async fn store(&self, info: &KindInfo) -> KindStore {
        let key = kind_key(&info.resource);
        let store = {
            let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
            match watches.get(&key) {
                Some(watch) => watch.store.clone(),
                None => {
                    let watch = self.start_watch(info);
                    let store = watch.store.clone();
                    watches.insert(key, watch);
                    store
                }
            }
        };
        // The writer lives as long as the task; it only drops when the view is dropped.
        let _ = store.store.wait_until_ready().await;
        store
    }

    /// The store of a kind already watched, if any (no waiting).
    pub fn existing_store(&self, resource: &ApiResource) -> Option<KindStore> {
        let watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        watches.get(&kind_key(resource)).map(|w| w.store.clone())
    }

    fn start_watch(&self, info: &KindInfo) -> Watch {
        let resource = info.resource.clone();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let store = KindStore {
            store: writer.as_reader(),
            resource: resource.clone(),
        };
        let triggers = self.triggers.clone();
        let (group, kind) = (resource.group.clone(), resource.kind.clone());
        let stream = reflector::reflector(writer, paced(watcher(api, watcher::Config::default())));
        let reader = store.store.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut relist = Relist::default();
            while let Some(event) = stream.next().await {
                let object = match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => object,
                    Ok(watcher::Event::Init) => {
                        relist.start(&reader, &group, &kind);
                        continue;
                    }
                    Ok(watcher::Event::InitApply(object)) => {
                        if let Some(app) = relist.changed(&group, &kind, &object) {
                            let _ = triggers.send(app);
                        }
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        for app in relist.finish() {
                            let _ = triggers.send(app);
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(%kind, ?error, "watch of managed kind interrupted; retrying");
                        continue;
                    }
                };
                if let Some(app) = managing_instance(&group, &kind, &object) {
                    let _ = triggers.send(app);
                }
            }
        });
        Watch {
            store,
            task: task.abort_handle(),
        }
    }

    /// Waits until the cache of `info`'s kind shows `resource_version` (or a newer write) for
    /// the object, so status computed right after a sync sees what the sync wrote.
    pub async fn wait_for_version(
        &self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        resource_version: &str,
        limit: Duration,
    ) {
        let Some(store) = self.existing_store(&info.resource) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        let target: Option<u64> = resource_version.parse().ok();
        loop {
            let current = store.resource_version(namespace, name);
            let caught_up = match (&current, target) {
                (Some(current), Some(target)) => current
                    .parse::<u64>()
                    .map_or(current == resource_version, |c| c >= target),
                (Some(current), None) => current == resource_version,
                (None, _) => false,
            };
            if caught_up || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What a relist (after a watch outage or a `410 Gone`) changed: managed objects that are new
/// or changed in the list, and those gone from it (deleted while no events came), trigger
/// their application. The first list triggers nothing: every application is reconciled then.
#[derive(Default)]
struct Relist {
    listed_once: bool,
    /// Before the relist: managed objects' resourceVersion and application.
    before: HashMap<(String, String), (Option<String>, String)>,
}

impl Relist {
    fn start(&mut self, reader: &Store<DynamicObject>, group: &str, kind: &str) {
        self.before = if self.listed_once {
            reader
                .state()
                .iter()
                .filter_map(|object| {
                    let app = managing_instance(group, kind, object)?;
                    let version = object.metadata.resource_version.clone();
                    Some((object_key(object), (version, app)))
                })
                .collect()
        } else {
            HashMap::new()
        };
    }

    fn changed(&mut self, group: &str, kind: &str, object: &DynamicObject) -> Option<String> {
        if !self.listed_once {
            return None;
        }
        let before = self.before.remove(&object_key(object));
        let app = managing_instance(group, kind, object)?;
        match before {
            Some((version, _)) if version == object.metadata.resource_version => None,
            _ => Some(app),
        }
    }

    fn finish(&mut self) -> Vec<String> {
        let gone = std::mem::take(&mut self.before)
            .into_values()
            .map(|(_, app)| app)
            .collect();
        self.listed_once = true;
        gone
    }
}

fn object_key(object: &DynamicObject) -> (String, String) {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

fn kind_key(resource: &ApiResource) -> KindKey {
    (
        resource.group.clone(),
        resource.version.clone(),
        resource.kind.clone(),
    )
}

fn scope_of(capabilities: &ApiCapabilities) -> Scope {
    match capabilities.scope {
        KubeScope::Cluster => Scope::Cluster,
        KubeScope::Namespaced => Scope::Namespaced,
    }
}

/// The application instance managing a watched object, read from its metadata.
fn managing_instance(group: &str, kind: &str, object: &DynamicObject) -> Option<String> {
    let meta = &object.metadata;
    let id = meta.annotations.as_ref()?.get(TRACKING_ANNOTATION)?;
    let (app, key) = parse_tracking_id(id)?;
    let own = ResourceKey::new(
        group,
        kind,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let owned = meta
        .owner_references
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    (key == own && !owned).then(|| app.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    #[test]
    fn objects_from_a_list_get_the_watched_kind() {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        let mut writer = reflector::store::Writer::new(resource.clone());
        let store = KindStore {
            store: writer.as_reader(),
            resource: resource.clone(),
        };
        // As a list item arrives: no apiVersion or kind.
        let listed = DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some("backend".into()),
                namespace: Some("team".into()),
                annotations: Some([(TRACKING_ANNOTATION.to_owned(), "x".to_owned())].into()),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({"spec": {"replicas": 2}}),
        };
        writer.apply_watcher_event(&Event::InitApply(listed));
        writer.apply_watcher_event(&Event::InitDone);
        let live = store.get("team", "backend").expect("cached");
        assert_eq!(live["apiVersion"], "apps/v1");
        assert_eq!(live["kind"], "Deployment");
        assert_eq!(live["spec"]["replicas"], 2);
        let tracked = store.tracked();
        assert_eq!(tracked.len(), 1);
        assert_eq!(tracked[0]["apiVersion"], "apps/v1");
    }

    fn managed(name: &str, version: &str) -> DynamicObject {
        let id = format!("team_web:apps/Deployment:team/{name}");
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team".into()),
                resource_version: Some(version.into()),
                annotations: Some([(TRACKING_ANNOTATION.to_owned(), id)].into()),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({}),
        }
    }

    /// Feeds one list through the writer and the relist tracker, as the watch task does.
    fn list(
        writer: &mut reflector::store::Writer<DynamicObject>,
        relist: &mut Relist,
        objects: Vec<DynamicObject>,
    ) -> Vec<String> {
        let reader = writer.as_reader();
        let mut triggered = Vec::new();
        writer.apply_watcher_event(&Event::Init);
        relist.start(&reader, "apps", "Deployment");
        for object in objects {
            writer.apply_watcher_event(&Event::InitApply(object.clone()));
            triggered.extend(relist.changed("apps", "Deployment", &object));
        }
        writer.apply_watcher_event(&Event::InitDone);
        triggered.extend(relist.finish());
        triggered
    }

    #[test]
    fn a_relist_triggers_the_apps_of_objects_changed_or_deleted_meanwhile() {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        let mut writer = reflector::store::Writer::new(resource);
        let mut relist = Relist::default();
        let first = list(
            &mut writer,
            &mut relist,
            vec![managed("a", "1"), managed("b", "2"), managed("c", "3")],
        );
        assert!(
            first.is_empty(),
            "the first list triggers nothing: {first:?}"
        );
        // Unchanged: nothing.
        let same = list(
            &mut writer,
            &mut relist,
            vec![managed("a", "1"), managed("b", "2"), managed("c", "3")],
        );
        assert!(same.is_empty(), "{same:?}");
        // b changed and c deleted while the watch was down.
        let after = list(
            &mut writer,
            &mut relist,
            vec![managed("a", "1"), managed("b", "9")],
        );
        assert_eq!(after, vec!["team_web".to_owned(), "team_web".to_owned()]);
    }
}
