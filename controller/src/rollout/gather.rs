//! The controller's caches and reading a Rollout's world out of them ([`Observed`]).
//!
//! ReplicaSets and AnalysisRuns are indexed by the UID of their controlling owner, so
//! gathering one Rollout's objects costs a hash lookup, not a scan of 20,000 ReplicaSets.
//! Cached objects are stripped of what the controller never reads (`managedFields`, the
//! `last-applied-configuration` annotation, AnalysisRun measurements), which is most of
//! their size.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use ramp_analysis::build::{TemplateKey, TemplateSource, Templates, expand_templates};

use super::analysis::AnalysisUse;
use super::observe::Observed;
use super::restart;
use crate::api::{
    AnalysisRun, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec,
    ClusterAnalysisTemplate, Experiment, Rollout,
};

/// Objects of kind `K`, by the UID of their controlling owner.
pub struct OwnedIndex<K> {
    state: Arc<RwLock<IndexState<K>>>,
}

impl<K> Clone for OwnedIndex<K> {
    fn clone(&self) -> Self {
        OwnedIndex {
            state: self.state.clone(),
        }
    }
}

struct IndexState<K> {
    /// owner UID → object UID → object.
    by_owner: HashMap<String, HashMap<String, Arc<K>>>,
    /// object UID → owner UID, to move or drop an object whose owner changed.
    owner_of: HashMap<String, String>,
    /// Objects of a relist in progress, swapped in when it completes.
    relist: Option<Vec<Arc<K>>>,
    ready: bool,
}

impl<K> Default for OwnedIndex<K> {
    fn default() -> Self {
        OwnedIndex {
            state: Arc::new(RwLock::new(IndexState {
                by_owner: HashMap::new(),
                owner_of: HashMap::new(),
                relist: None,
                ready: false,
            })),
        }
    }
}

impl<K: Resource> OwnedIndex<K> {
    /// Applies one watch event.
    pub fn apply(&self, event: &watcher::Event<K>)
    where
        K: Clone,
    {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        match event {
            watcher::Event::Apply(object) => state.insert(Arc::new(object.clone())),
            watcher::Event::Delete(object) => state.remove(object),
            watcher::Event::Init => state.relist = Some(Vec::new()),
            watcher::Event::InitApply(object) => {
                if let Some(relist) = state.relist.as_mut() {
                    relist.push(Arc::new(object.clone()));
                }
            }
            watcher::Event::InitDone => {
                let objects = state.relist.take().unwrap_or_default();
                state.by_owner.clear();
                state.owner_of.clear();
                for object in objects {
                    state.insert(object);
                }
                state.ready = true;
            }
        }
    }

    /// The objects whose controller is the object with this UID.
    pub fn owned_by(&self, owner_uid: &str) -> Vec<Arc<K>> {
        let Ok(state) = self.state.read() else {
            return Vec::new();
        };
        state
            .by_owner
            .get(owner_uid)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        self.state.read().is_ok_and(|s| s.ready)
    }

    pub fn len(&self) -> usize {
        self.state.read().map_or(0, |s| s.owner_of.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Resource> IndexState<K> {
    fn insert(&mut self, object: Arc<K>) {
        let Some(uid) = object.meta().uid.clone() else {
            return;
        };
        let owner = controller_uid(object.as_ref());
        if let Some(previous) = self.owner_of.get(&uid).cloned()
            && Some(&previous) != owner.as_ref()
        {
            self.detach(&uid, &previous);
        }
        let Some(owner) = owner else { return };
        self.owner_of.insert(uid.clone(), owner.clone());
        self.by_owner.entry(owner).or_default().insert(uid, object);
    }

    fn remove(&mut self, object: &K) {
        let Some(uid) = object.meta().uid.as_ref() else {
            return;
        };
        if let Some(owner) = self.owner_of.get(uid).cloned() {
            self.detach(uid, &owner);
        }
    }

    fn detach(&mut self, uid: &str, owner: &str) {
        self.owner_of.remove(uid);
        if let Some(objects) = self.by_owner.get_mut(owner) {
            objects.remove(uid);
            if objects.is_empty() {
                self.by_owner.remove(owner);
            }
        }
    }
}

/// UID of an object's controlling owner reference.
pub fn controller_uid<K: Resource>(object: &K) -> Option<String> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// Everything the Rollout controller reads, kept warm by watches.
#[derive(Clone)]
pub struct Caches {
    pub rollouts: Store<Rollout>,
    /// Set once the first list of Rollouts is complete.
    pub rollouts_listed: Listed,
    pub replica_sets: OwnedIndex<ReplicaSet>,
    pub analysis_runs: OwnedIndex<AnalysisRun>,
    pub experiments: OwnedIndex<Experiment>,
    pub services: Store<Service>,
    pub templates: Store<AnalysisTemplate>,
    pub cluster_templates: Store<ClusterAnalysisTemplate>,
    pub deployments: Store<Deployment>,
    /// Set once the first lists of Services, templates and Deployments are in their stores.
    pub stores_listed: [Listed; 4],
}

/// Whether a watch has completed its first list (its `InitDone` went through the store).
///
/// Not `Store::wait_until_ready`: that future sits on a oneshot receiver which keeps only
/// the last waker registered, so of several reconciles waiting at once (every Rollout at
/// start-up) all but one may never be woken, and their Rollouts are never reconciled.
pub type Listed = Arc<std::sync::atomic::AtomicBool>;

/// `inspect` callback marking `listed` when the watch's first list is complete.
pub fn mark_listed<K>(listed: Listed) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            listed.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Caches {
    /// Whether every cache has completed its first list.
    pub fn is_ready(&self) -> bool {
        let listed = |flag: &Listed| flag.load(std::sync::atomic::Ordering::Acquire);
        listed(&self.rollouts_listed)
            && self.stores_listed.iter().all(listed)
            && self.replica_sets.is_ready()
            && self.analysis_runs.is_ready()
            && self.experiments.is_ready()
    }

    /// Waits until every cache has completed its first list. A Rollout planned against a
    /// half-loaded cache would miss its ReplicaSets (and take its new one for an initial
    /// deploy, promoting it at once), its Services or its templates. Immediate once ready;
    /// any number of reconciles may wait at once.
    pub async fn wait_until_ready(&self) {
        while !self.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Reads analysis templates out of the caches for [`expand_templates`].
struct CachedTemplates<'a>(&'a Caches);

impl TemplateSource for CachedTemplates<'_> {
    async fn template(
        &self,
        key: &TemplateKey,
    ) -> Result<Option<AnalysisTemplateSpec>, kube::Error> {
        Ok(if key.cluster_scope {
            self.0
                .cluster_templates
                .get(&ObjectRef::new(&key.name))
                .map(|t| t.spec.0.clone())
        } else {
            self.0
                .templates
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(|t| t.spec.clone())
        })
    }
}

/// Reads a Rollout's world from the caches (and, only while a restart is pending, its pods
/// from the API).
pub async fn observe(
    caches: &Caches,
    client: &Client,
    rollout: Arc<Rollout>,
    instance_id: Option<&str>,
    now: Timestamp,
) -> Result<Observed, kube::Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let uid = rollout.metadata.uid.clone().unwrap_or_default();
    let mut observed = Observed::new(rollout.clone());
    observed.instance_id = instance_id.map(str::to_string);
    observed.replica_sets = caches.replica_sets.owned_by(&uid);
    observed.analysis_runs = caches.analysis_runs.owned_by(&uid);
    observed.experiments = caches.experiments.owned_by(&uid);

    let strategy = rollout.spec.strategy.as_ref();
    let canary = strategy.and_then(|s| s.canary.as_ref());
    let blue_green = strategy.and_then(|s| s.blue_green.as_ref());
    let service_names = canary
        .into_iter()
        .flat_map(|c| {
            let ping_pong = c.ping_pong.as_ref();
            [
                c.stable_service.as_ref(),
                c.canary_service.as_ref(),
                ping_pong.map(|pp| &pp.ping_service),
                ping_pong.map(|pp| &pp.pong_service),
            ]
        })
        .chain(
            blue_green
                .into_iter()
                .flat_map(|b| [Some(&b.active_service), b.preview_service.as_ref()]),
        )
        .flatten()
        .filter(|name| !name.is_empty());
    for name in service_names {
        if let Some(service) = caches
            .services
            .get(&ObjectRef::new(name).within(&namespace))
        {
            observed.services.insert(name.clone(), service);
        }
    }

    if let Some(workload) = &rollout.spec.workload_ref
        && let Some(name) = workload.name.as_deref()
    {
        observed.workload = caches
            .deployments
            .get(&ObjectRef::new(name).within(&namespace));
    }

    for (analysis_use, refs) in analysis_uses(&rollout) {
        let expanded: Result<Templates, _> =
            expand_templates(&CachedTemplates(caches), &namespace, &refs).await;
        observed.analysis_templates.insert(
            analysis_use,
            expanded.map(Arc::new).map_err(|e| e.to_string()),
        );
    }

    if restart::restart_pending(&rollout, now) {
        observed.pods = Some(rollout_pods(client, &rollout).await?);
    }
    Ok(observed)
}

/// Every analysis of the spec and the templates it references.
pub fn analysis_uses(rollout: &Rollout) -> BTreeMap<AnalysisUse, Vec<AnalysisTemplateRef>> {
    let mut uses = BTreeMap::new();
    let strategy = rollout.spec.strategy.as_ref();
    if let Some(canary) = strategy.and_then(|s| s.canary.as_ref()) {
        for (index, step) in canary.steps.iter().flatten().enumerate() {
            if let Some(analysis) = &step.analysis {
                uses.insert(
                    AnalysisUse::Step(index),
                    analysis.templates.clone().unwrap_or_default(),
                );
            }
        }
        if let Some(background) = &canary.analysis {
            uses.insert(
                AnalysisUse::Background,
                background.templates.clone().unwrap_or_default(),
            );
        }
    }
    if let Some(blue_green) = strategy.and_then(|s| s.blue_green.as_ref()) {
        if let Some(pre) = &blue_green.pre_promotion_analysis {
            uses.insert(
                AnalysisUse::PrePromotion,
                pre.templates.clone().unwrap_or_default(),
            );
        }
        if let Some(post) = &blue_green.post_promotion_analysis {
            uses.insert(
                AnalysisUse::PostPromotion,
                post.templates.clone().unwrap_or_default(),
            );
        }
    }
    uses
}

/// The pods the Rollout's selector selects (filtered by owner later).
async fn rollout_pods(client: &Client, rollout: &Rollout) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let selector = rollout
        .spec
        .selector
        .as_ref()
        .map(super::selector::format)
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list.items.into_iter().map(Arc::new).collect())
}

/// Drops what the controller never reads from a cached object's metadata.
pub fn strip_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Drops an AnalysisRun's metrics and measurements: the Rollout controller reads only its
/// labels, owner, `spec.terminate` and phase.
pub fn strip_analysis_run(run: &mut AnalysisRun) {
    strip_metadata(run);
    run.spec.metrics = Vec::new();
    run.spec.args = None;
    run.spec.dry_run = None;
    run.spec.measurement_retention = None;
    if let Some(status) = run.status.as_mut() {
        status.metric_results = None;
    }
}

/// Keeps of a Service only what selecting ReplicaSets needs.
pub fn strip_service(service: &mut Service) {
    strip_metadata(service);
    service.status = None;
    if let Some(spec) = service.spec.as_mut() {
        let selector = spec.selector.take();
        *spec = Default::default();
        spec.selector = selector;
    }
}

/// Keeps of a Deployment its template and generation.
pub fn strip_deployment(deployment: &mut Deployment) {
    strip_metadata(deployment);
    deployment.status = None;
}
