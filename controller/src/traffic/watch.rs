//! Router watches: a change to a router object (an HTTPRoute's weights, the canary Ingress,
//! a VirtualService, a TrafficSplit) reconciles the Rollouts that name it, so a user's edit is
//! undone at once and a routed update never waits for a timer.
//!
//! ```text
//!   Rollout watch events ──▶ RouterIndex  (router object ──▶ Rollouts naming it)
//!                                │ kinds in use
//!                                ▼
//!   supervisor: discovery ──▶ one watch per kind the cluster serves
//!                                │ object touched
//!                                ▼
//!                        ObjectRef<Rollout> ──▶ the Rollout controller's queue
//! ```
//!
//! A kind is watched only once a Rollout names an object of that kind and the cluster serves
//! it (a CRD that is not installed yet is looked for again every [`DISCOVERY_RETRY`]). The
//! watches keep no store (each event only names the object): the routers read the objects
//! themselves when the Rollout is reconciled.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt, discovery};
use tokio::sync::{Notify, mpsc};

use super::gatewayapi::{self, GatewayApiConfig};
use super::{nginx, objects};
use crate::api::Rollout;

/// How often a router kind that Rollouts name but the cluster does not serve is looked for.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(30);

/// The kinds of router objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouterKind {
    HttpRoute,
    GrpcRoute,
    Ingress,
    VirtualService,
    DestinationRule,
    TrafficSplit,
}

impl RouterKind {
    pub fn group(self) -> &'static str {
        match self {
            RouterKind::HttpRoute | RouterKind::GrpcRoute => "gateway.networking.k8s.io",
            RouterKind::Ingress => "networking.k8s.io",
            RouterKind::VirtualService | RouterKind::DestinationRule => "networking.istio.io",
            RouterKind::TrafficSplit => "split.smi-spec.io",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            RouterKind::HttpRoute => "HTTPRoute",
            RouterKind::GrpcRoute => "GRPCRoute",
            RouterKind::Ingress => "Ingress",
            RouterKind::VirtualService => "VirtualService",
            RouterKind::DestinationRule => "DestinationRule",
            RouterKind::TrafficSplit => "TrafficSplit",
        }
    }
}

/// One router object a Rollout reads or writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterObject {
    pub kind: RouterKind,
    pub namespace: String,
    pub name: String,
}

impl RouterObject {
    fn new(kind: RouterKind, namespace: &str, name: &str) -> RouterObject {
        RouterObject {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The router objects a Rollout's `trafficRouting` names, including those Ramp creates for it
/// (the canary Ingresses, the TrafficSplit). A configuration the routers would reject names
/// what can be read of it: the reconcile reports the problem.
pub fn router_objects(rollout: &Rollout) -> BTreeSet<RouterObject> {
    let mut found = BTreeSet::new();
    let Some(routing) = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.traffic_routing.as_ref())
    else {
        return found;
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();

    if let Some(config) = routing
        .plugins
        .as_ref()
        .and_then(|p| p.get(gatewayapi::PLUGIN))
        .and_then(|c| serde_json::from_value::<GatewayApiConfig>(c.clone()).ok())
    {
        let route_namespace = config
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.clone());
        for (kind, single, list) in [
            (
                RouterKind::HttpRoute,
                &config.http_route,
                &config.http_routes,
            ),
            (
                RouterKind::GrpcRoute,
                &config.grpc_route,
                &config.grpc_routes,
            ),
        ] {
            let names = single.iter().chain(list.iter().flatten().map(|r| &r.name));
            for route in names {
                found.insert(RouterObject::new(kind, &route_namespace, route));
            }
        }
    }
    if let Some(config) = &routing.nginx {
        let stable = config
            .stable_ingress
            .iter()
            .chain(config.stable_ingresses.iter().flatten())
            .filter(|n| !n.is_empty());
        for ingress in stable {
            found.insert(RouterObject::new(RouterKind::Ingress, &namespace, ingress));
            let canary = nginx::canary_ingress_name(&name, ingress);
            found.insert(RouterObject::new(RouterKind::Ingress, &namespace, &canary));
        }
    }
    if let Some(config) = &routing.smi {
        let split = config
            .traffic_split_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&name);
        found.insert(RouterObject::new(
            RouterKind::TrafficSplit,
            &namespace,
            split,
        ));
    }
    if let Some(config) = &routing.istio {
        let services = config
            .virtual_service
            .iter()
            .chain(config.virtual_services.iter().flatten());
        for service in services {
            let (object, in_namespace) = objects::split_name(&service.name, &namespace);
            found.insert(RouterObject::new(
                RouterKind::VirtualService,
                in_namespace,
                object,
            ));
        }
        if let Some(rule) = &config.destination_rule {
            let (object, in_namespace) = objects::split_name(&rule.name, &namespace);
            found.insert(RouterObject::new(
                RouterKind::DestinationRule,
                in_namespace,
                object,
            ));
        }
    }
    found
}

type RolloutRef = ObjectRef<Rollout>;

/// Which Rollouts name which router objects; fed by the Rollout watch's events.
#[derive(Clone, Default)]
pub struct RouterIndex {
    state: Arc<Mutex<IndexState>>,
    /// Woken when a Rollout starts naming a kind no Rollout named before.
    new_kind: Arc<Notify>,
}

#[derive(Default)]
struct IndexState {
    by_object: HashMap<RouterObject, HashSet<RolloutRef>>,
    by_rollout: HashMap<RolloutRef, BTreeSet<RouterObject>>,
    /// The Rollouts listed so far by a relist in progress.
    relisted: Option<HashMap<RolloutRef, BTreeSet<RouterObject>>>,
    kinds: BTreeSet<RouterKind>,
}

impl IndexState {
    fn set(&mut self, rollout: RolloutRef, objects: BTreeSet<RouterObject>) -> bool {
        if let Some(previous) = self.by_rollout.remove(&rollout) {
            for object in previous {
                if let Some(rollouts) = self.by_object.get_mut(&object) {
                    rollouts.remove(&rollout);
                    if rollouts.is_empty() {
                        self.by_object.remove(&object);
                    }
                }
            }
        }
        if objects.is_empty() {
            return false;
        }
        let mut new_kind = false;
        for object in &objects {
            new_kind |= self.kinds.insert(object.kind);
            self.by_object
                .entry(object.clone())
                .or_default()
                .insert(rollout.clone());
        }
        self.by_rollout.insert(rollout, objects);
        new_kind
    }
}

impl RouterIndex {
    /// A Rollout was added or changed.
    pub fn apply(&self, rollout: &Rollout) {
        let objects = router_objects(rollout);
        let new_kind = match self.state.lock() {
            Ok(mut state) => state.set(ObjectRef::from_obj(rollout), objects),
            Err(_) => false,
        };
        if new_kind {
            self.new_kind.notify_one();
        }
    }

    /// A Rollout was deleted.
    pub fn delete(&self, rollout: &Rollout) {
        if let Ok(mut state) = self.state.lock() {
            state.set(ObjectRef::from_obj(rollout), BTreeSet::new());
        }
    }

    /// Replaces the whole index with `rollouts` (a relist).
    pub fn reset<'r>(&self, rollouts: impl IntoIterator<Item = &'r Rollout>) {
        let listed = rollouts
            .into_iter()
            .map(|r| (ObjectRef::from_obj(r), router_objects(r)))
            .collect();
        self.replace(listed);
    }

    fn replace(&self, listed: HashMap<RolloutRef, BTreeSet<RouterObject>>) {
        let new_kind = match self.state.lock() {
            Ok(mut state) => {
                let gone: Vec<RolloutRef> = state
                    .by_rollout
                    .keys()
                    .filter(|r| !listed.contains_key(*r))
                    .cloned()
                    .collect();
                for rollout in gone {
                    state.set(rollout, BTreeSet::new());
                }
                let mut new_kind = false;
                for (rollout, objects) in listed {
                    new_kind |= state.set(rollout, objects);
                }
                new_kind
            }
            Err(_) => false,
        };
        if new_kind {
            self.new_kind.notify_one();
        }
    }

    /// Feeds a Rollout watch event to the index (relists are applied when complete).
    pub fn observe(&self, event: &watcher::Event<Rollout>) {
        match event {
            watcher::Event::Apply(rollout) => self.apply(rollout),
            watcher::Event::Delete(rollout) => self.delete(rollout),
            watcher::Event::Init => {
                if let Ok(mut state) = self.state.lock() {
                    state.relisted = Some(HashMap::new());
                }
            }
            watcher::Event::InitApply(rollout) => {
                if let Ok(mut state) = self.state.lock() {
                    let objects = router_objects(rollout);
                    state
                        .relisted
                        .get_or_insert_with(HashMap::new)
                        .insert(ObjectRef::from_obj(rollout), objects);
                }
            }
            watcher::Event::InitDone => {
                let listed = self
                    .state
                    .lock()
                    .ok()
                    .and_then(|mut state| state.relisted.take());
                if let Some(listed) = listed {
                    self.replace(listed);
                }
            }
        }
    }

    /// The Rollouts naming `object`.
    pub fn rollouts_of(&self, object: &RouterObject) -> Vec<RolloutRef> {
        self.state
            .lock()
            .ok()
            .and_then(|state| state.by_object.get(object).cloned())
            .map(|rollouts| rollouts.into_iter().collect())
            .unwrap_or_default()
    }

    /// Every kind a Rollout has named since the process started.
    pub fn kinds(&self) -> BTreeSet<RouterKind> {
        self.state
            .lock()
            .map(|state| state.kinds.clone())
            .unwrap_or_default()
    }
}

/// The router watches of the controller: the index (fed by the Rollout watch) and, once
/// [`RouterWatches::triggers`] runs, the watches themselves.
#[derive(Clone)]
pub struct RouterWatches {
    index: RouterIndex,
    client: Client,
    namespace: Option<String>,
}

impl RouterWatches {
    /// `namespace`: watch router objects there only (`--namespace`); `None`: everywhere.
    pub fn new(client: &Client, namespace: Option<&str>) -> RouterWatches {
        RouterWatches {
            index: RouterIndex::default(),
            client: client.clone(),
            namespace: namespace.map(str::to_string),
        }
    }

    /// An `inspect` for the Rollout watch stream that keeps the index current.
    pub fn index_rollouts(
        &self,
    ) -> impl Fn(&Result<watcher::Event<Rollout>, watcher::Error>) + Send + 'static {
        let index = self.index.clone();
        move |event| {
            if let Ok(event) = event {
                index.observe(event);
            }
        }
    }

    /// Starts the watches; the stream yields each Rollout to reconcile because a router
    /// object it names changed. The watches stop when the stream is dropped.
    pub fn triggers(self) -> impl Stream<Item = ObjectRef<Rollout>> + Send + 'static {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(supervise(self, sender));
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|rollout| (rollout, receiver))
        })
    }
}

type Sender = mpsc::UnboundedSender<ObjectRef<Rollout>>;

/// Starts a watch for each kind the index names as soon as the cluster serves it.
async fn supervise(watches: RouterWatches, sender: Sender) {
    let mut watching: HashSet<RouterKind> = HashSet::new();
    loop {
        let mut missing = false;
        for kind in watches.index.kinds() {
            if watching.contains(&kind) {
                continue;
            }
            match served(&watches.client, kind).await {
                Ok(Some(resource)) => {
                    tracing::debug!(kind = kind.kind(), version = %resource.version, "watching router objects");
                    tokio::spawn(watch_kind(kind, resource, watches.clone(), sender.clone()));
                    watching.insert(kind);
                }
                Ok(None) => missing = true,
                Err(error) => {
                    tracing::warn!(kind = kind.kind(), %error, "cannot tell whether the cluster serves this router kind; looking again later");
                    missing = true;
                }
            }
        }
        let retry = async {
            if missing {
                tokio::time::sleep(DISCOVERY_RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = watches.index.new_kind.notified() => {}
            () = retry => {}
            () = sender.closed() => return,
        }
    }
}

/// The resource serving `kind`, if the cluster serves it.
async fn served(client: &Client, kind: RouterKind) -> Result<Option<ApiResource>, kube::Error> {
    match discovery::group(client, kind.group()).await {
        Ok(group) => Ok(group
            .recommended_kind(kind.kind())
            .map(|(resource, _)| resource)),
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Watches one kind's objects and sends the Rollouts naming a touched one.
async fn watch_kind(
    kind: RouterKind,
    resource: ApiResource,
    watches: RouterWatches,
    sender: Sender,
) {
    let api: Api<DynamicObject> = match &watches.namespace {
        Some(namespace) => Api::namespaced_with(watches.client.clone(), namespace, &resource),
        None => Api::all_with(watches.client.clone(), &resource),
    };
    let mut events = ramp_analysis::watch::paced(watcher(api, watcher::Config::default())).boxed();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = sender.closed() => return,
        };
        let object = match event {
            Some(Ok(
                watcher::Event::Apply(object)
                | watcher::Event::InitApply(object)
                | watcher::Event::Delete(object),
            )) => object,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::warn!(kind = kind.kind(), %error, "router watch failed; retrying");
                continue;
            }
            None => return,
        };
        let touched = RouterObject {
            kind,
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
        };
        for rollout in watches.index.rollouts_of(&touched) {
            if sender.send(rollout).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
