//! The Rollout controller process: watches that keep the caches warm and trigger
//! reconciles, and the reconcile function that runs the pipeline for one Rollout.
//!
//! ```text
//!  Rollouts ────────────────┐ (store)
//!  ReplicaSets (hash label) ─┤ owner index ─┐
//!  AnalysisRuns (hash label)─┤ owner index ─┤ trigger the owning Rollout at once
//!  Services, templates,      │              │
//!  Deployments ──────────────┘ stores ──────┘ trigger the Rollouts that name them
//!  Router objects (traffic::watch) ──────────┘
//!                                   │
//!                     reconcile: observe → plan → apply → Events, metrics
//! ```
//!
//! Every replica runs the watches; only the leader reconciles (writes). Becoming leader
//! reconciles every Rollout. An AnalysisRun turning Failed is an AnalysisRun watch event, so
//! the owning Rollout is reconciled immediately and its traffic moved back in that pass.
//!
//! Watches are [`paced`]: a `410 Gone` relists at once, other errors back off per watch.
//! A relist of any watch but the Rollouts' own reconciles every Rollout, since what happened
//! while it was down (a ReplicaSet deleted, a run finished) may have come as no event.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config as ControllerRuntimeConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::ListSemantic;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use ramp_analysis::watch::{PacedTriggers, paced};

use super::apply::{ApplyError, apply};
use super::gather::{self, Caches, OwnedIndex};
use super::names::{INSTANCE_ID_LABEL, MANAGED_BY_ANNOTATION, POD_TEMPLATE_HASH_LABEL};
use super::{events::EventSink, lifecycle};
use crate::api::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Rollout};
use crate::leader::Leadership;
use crate::metrics::RolloutMetrics;
use crate::traffic::watch::RouterWatches;

/// How the Rollout controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Watch this namespace only (`--namespace`); `None` watches the whole cluster.
    pub namespace: Option<String>,
    /// Reconcile only Rollouts labelled `argo-rollouts.argoproj.io/controller-instance-id`
    /// with this value (`--instance-id`); `None` reconciles Rollouts without that label.
    pub instance_id: Option<String>,
    /// Rollouts reconciled at once (`--rollout-threads`).
    pub concurrency: u16,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            namespace: None,
            instance_id: None,
            concurrency: 16,
        }
    }
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the pods of Rollout {rollout}: {source}")]
    Observe {
        rollout: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("Rollout {rollout}: {reason}")]
    Plan { rollout: String, reason: String },
}

impl ReconcileError {
    /// Short label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Observe { .. } => "ObserveError",
            ReconcileError::Apply(error) => error.category(),
            ReconcileError::Plan { .. } => "ReconcileError",
        }
    }
}

/// The watches of the controller, ready to be run; [`Watches::caches`] can be read (for
/// metrics) before they start.
pub struct Watches {
    pub caches: Caches,
    rollouts: futures::stream::BoxStream<'static, Result<Rollout, watcher::Error>>,
    replica_sets: futures::stream::BoxStream<'static, Result<ReplicaSet, watcher::Error>>,
    /// Owner-only stand-ins of AnalysisRun events (see [`owner_only`]).
    analysis_runs: futures::stream::BoxStream<'static, Result<ReplicaSet, watcher::Error>>,
    services: futures::stream::BoxStream<'static, Result<Service, watcher::Error>>,
    templates: futures::stream::BoxStream<'static, Result<AnalysisTemplate, watcher::Error>>,
    cluster_templates:
        futures::stream::BoxStream<'static, Result<ClusterAnalysisTemplate, watcher::Error>>,
    deployments: futures::stream::BoxStream<'static, Result<Deployment, watcher::Error>>,
    /// Owner-only stand-ins of Experiment events.
    experiments: futures::stream::BoxStream<'static, Result<ReplicaSet, watcher::Error>>,
    /// HTTPRoutes, Ingresses, VirtualServices, TrafficSplits… and the Rollouts naming them.
    routers: RouterWatches,
    /// A signal each time a watch other than the Rollouts' completes a relist.
    relisted: futures::channel::mpsc::UnboundedReceiver<()>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Sets up the watches (nothing runs until [`run`]).
pub fn watches(
    client: &Client,
    config: &ControllerConfig,
    metrics: Option<RolloutMetrics>,
) -> Watches {
    let namespace = config.namespace.as_deref();
    let instance_selector = match &config.instance_id {
        Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
        None => format!("!{INSTANCE_ID_LABEL}"),
    };
    // Lists are read from etcd, not the API server's watch cache (which may lag behind the
    // last writes): a controller that starts, or relists after a lost watch, must not plan
    // from a Rollout older than the one the previous controller last wrote.
    let page = |c: watcher::Config| c.page_size(500).list_semantic(ListSemantic::MostRecent);

    let (relist_sender, relisted) = futures::channel::mpsc::unbounded();
    let (rollout_store, rollout_writer) = reflector::store::<Rollout>();
    let routers = RouterWatches::new(client, namespace);
    // Readiness is tracked here: the store's own ready signal wakes a single waiter, and the
    // controller already waits on it.
    let rollouts_listed = gather::Listed::default();
    let stores_listed: [gather::Listed; 4] = Default::default();
    let listed = rollouts_listed.clone();
    let rollouts = paced(watcher(
        api::<Rollout>(client, namespace),
        page(watcher::Config::default().labels(&instance_selector)),
    ))
    .modify(gather::strip_metadata)
    .reflect(rollout_writer)
    .inspect(routers.index_rollouts())
    .inspect(move |event| match (event, &metrics) {
        (Ok(watcher::Event::Delete(rollout)), Some(metrics)) => {
            metrics.forget(
                &rollout.namespace().unwrap_or_default(),
                &rollout.name_any(),
            );
        }
        (Ok(watcher::Event::InitDone), _) => {
            listed.store(true, std::sync::atomic::Ordering::Release);
        }
        _ => {}
    })
    .applied_objects()
    .boxed();

    let replica_set_index = OwnedIndex::<ReplicaSet>::default();
    let index = replica_set_index.clone();
    let replica_sets = paced(watcher(
        api::<ReplicaSet>(client, namespace),
        page(watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL)),
    ))
    .modify(gather::strip_metadata)
    .inspect(move |event| {
        if let Ok(event) = event {
            index.apply(event);
        }
    })
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .map(|result| result.map(owner_only))
    .boxed();

    let run_index = OwnedIndex::<AnalysisRun>::default();
    let index = run_index.clone();
    let analysis_runs = paced(watcher(
        api::<AnalysisRun>(client, namespace),
        page(watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL)),
    ))
    .modify(gather::strip_analysis_run)
    .inspect(move |event| {
        if let Ok(event) = event {
            index.apply(event);
        }
    })
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .map(|result| result.map(owner_only))
    .boxed();

    let (service_store, service_writer) = reflector::store::<Service>();
    let services = paced(watcher(
        api::<Service>(client, namespace),
        page(watcher::Config::default()),
    ))
    .modify(gather::strip_service)
    .reflect(service_writer)
    .inspect(gather::mark_listed(stores_listed[0].clone()))
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .boxed();

    let (template_store, template_writer) = reflector::store::<AnalysisTemplate>();
    let templates = paced(watcher(
        api::<AnalysisTemplate>(client, namespace),
        page(watcher::Config::default()),
    ))
    .modify(gather::strip_metadata)
    .reflect(template_writer)
    .inspect(gather::mark_listed(stores_listed[1].clone()))
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .boxed();

    let (cluster_template_store, cluster_template_writer) =
        reflector::store::<ClusterAnalysisTemplate>();
    let cluster_templates = paced(watcher(
        Api::<ClusterAnalysisTemplate>::all(client.clone()),
        page(watcher::Config::default()),
    ))
    .modify(gather::strip_metadata)
    .reflect(cluster_template_writer)
    .inspect(gather::mark_listed(stores_listed[2].clone()))
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .boxed();

    let (deployment_store, deployment_writer) = reflector::store::<Deployment>();
    let deployments = paced(watcher(
        api::<Deployment>(client, namespace),
        page(watcher::Config::default()),
    ))
    .modify(gather::strip_deployment)
    .reflect(deployment_writer)
    .inspect(gather::mark_listed(stores_listed[3].clone()))
    .inspect(notify_relists(relist_sender.clone()))
    .touched_objects()
    .boxed();

    let (experiment_index, experiments) =
        crate::experiment::controller::rollout_experiments(client, namespace);
    Watches {
        caches: Caches {
            rollouts: rollout_store,
            rollouts_listed,
            replica_sets: replica_set_index,
            analysis_runs: run_index,
            experiments: experiment_index,
            services: service_store,
            templates: template_store,
            cluster_templates: cluster_template_store,
            deployments: deployment_store,
            stores_listed,
        },
        rollouts,
        replica_sets,
        analysis_runs,
        experiments,
        services,
        templates,
        cluster_templates,
        deployments,
        routers,
        relisted,
    }
}

/// `inspect` callback signalling `relisted` when a watch completes a list after its first:
/// what changed or went away while the watch was down came as no event, so every Rollout is
/// reconciled again rather than only those a listed object names.
fn notify_relists<K>(
    relisted: futures::channel::mpsc::UnboundedSender<()>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    let mut listed_before = false;
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            if listed_before {
                let _ = relisted.unbounded_send(());
            }
            listed_before = true;
        }
    }
}

/// A stand-in carrying only what the controller's owner mapping reads, so triggers do not
/// hold a second copy of every object.
fn owner_only<K: Resource<DynamicType = ()>>(object: K) -> ReplicaSet {
    let meta = object.meta();
    ReplicaSet {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            owner_references: meta.owner_references.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub events: EventSink,
    pub metrics: RolloutMetrics,
    pub leadership: Leadership,
    pub config: ControllerConfig,
    /// The Rollout as our last write returned it, by UID, until the cache catches up: a
    /// reconcile that runs before the watch delivers our own write must not act on the
    /// older status.
    written: Mutex<HashMap<String, Arc<Rollout>>>,
    /// Consecutive failures by Rollout UID, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        caches: Caches,
        events: EventSink,
        metrics: RolloutMetrics,
        leadership: Leadership,
        config: ControllerConfig,
    ) -> Context {
        Context {
            client,
            caches,
            events,
            metrics,
            leadership,
            config,
            written: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The newer of the cached Rollout and the one our last write returned.
    fn freshest(&self, cached: Arc<Rollout>) -> Arc<Rollout> {
        let Some(uid) = cached.metadata.uid.clone() else {
            return cached;
        };
        let Ok(mut written) = self.written.lock() else {
            return cached;
        };
        let Some(ours) = written.get(&uid) else {
            return cached;
        };
        let version = |r: &Rollout| {
            r.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (version(&cached), version(ours)) {
            (Some(seen), Some(wrote)) if seen < wrote => ours.clone(),
            _ => {
                written.remove(&uid);
                cached
            }
        }
    }

    fn remember(&self, rollout: Rollout) {
        if let (Some(uid), Ok(mut written)) = (rollout.metadata.uid.clone(), self.written.lock()) {
            written.insert(uid, Arc::new(rollout));
        }
    }

    fn failure_count(&self, uid: &str, failed: bool) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 0;
        };
        if failed {
            let count = failures.entry(uid.to_string()).or_default();
            *count += 1;
            *count
        } else {
            failures.remove(uid);
            0
        }
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    watches: Watches,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Watches {
        caches,
        rollouts,
        replica_sets,
        analysis_runs,
        experiments,
        services,
        templates,
        cluster_templates,
        deployments,
        routers,
        relisted,
    } = watches;
    let rollout_store = caches.rollouts.clone();
    let became_leader =
        futures::stream::unfold(context.leadership.receiver(), |mut receiver| async move {
            loop {
                receiver.changed().await.ok()?;
                if *receiver.borrow_and_update() {
                    return Some(((), receiver));
                }
            }
        });
    let config = ControllerRuntimeConfig::default().concurrency(context.config.concurrency);
    let services_store = rollout_store.clone();
    let template_store = rollout_store.clone();
    let cluster_template_store = rollout_store.clone();
    let deployment_store = rollout_store.clone();
    Controller::for_stream(rollouts, rollout_store)
        .with_config(config)
        // Each watch backs off by itself (410s excepted); a shared backoff over all of them
        // would let one failing watch hold back every trigger.
        .trigger_backoff(PacedTriggers)
        .owns_stream(replica_sets)
        .owns_stream(analysis_runs)
        .owns_stream(experiments)
        .watches_stream(services, move |service| {
            rollouts_of_service(&services_store, &service)
        })
        .watches_stream(templates, move |template| {
            rollouts_of_template(
                &template_store,
                &template.name_any(),
                template.namespace().as_deref(),
            )
        })
        .watches_stream(cluster_templates, move |template| {
            rollouts_of_template(&cluster_template_store, &template.name_any(), None)
        })
        .watches_stream(deployments, move |deployment| {
            rollouts_of_workload(&deployment_store, &deployment)
        })
        .reconcile_on(routers.triggers())
        .reconcile_all_on(became_leader)
        .reconcile_all_on(relisted)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                ramp_analysis::watch::log_controller_error("Rollout", &error);
            }
        })
        .await;
}

fn in_namespace<'a>(
    store: &'a Store<Rollout>,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = Arc<Rollout>> + 'a {
    store
        .state()
        .into_iter()
        .filter(move |r| namespace.is_none() || r.namespace().as_deref() == namespace)
}

/// The Rollouts a Service concerns: the one that manages it, or those naming it (stable,
/// canary, ping, pong, active or preview).
fn rollouts_of_service(store: &Store<Rollout>, service: &Service) -> Vec<ObjectRef<Rollout>> {
    let namespace = service.namespace().unwrap_or_default();
    if let Some(manager) = service
        .annotations()
        .get(MANAGED_BY_ANNOTATION)
        .filter(|m| !m.is_empty())
    {
        return vec![ObjectRef::new(manager).within(&namespace)];
    }
    let name = service.name_any();
    in_namespace(store, Some(&namespace))
        .filter(|rollout| {
            let strategy = rollout.spec.strategy.as_ref();
            let canary = strategy.and_then(|s| s.canary.as_ref());
            let blue_green = strategy.and_then(|s| s.blue_green.as_ref());
            canary.is_some_and(|c| {
                c.stable_service.as_deref() == Some(&name)
                    || c.canary_service.as_deref() == Some(&name)
                    || c.ping_pong
                        .as_ref()
                        .is_some_and(|p| p.ping_service == name || p.pong_service == name)
            }) || blue_green.is_some_and(|b| {
                b.active_service == name || b.preview_service.as_deref() == Some(&name)
            })
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// The Rollouts whose analyses name a template (`namespace` `None`: a cluster template).
fn rollouts_of_template(
    store: &Store<Rollout>,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<Rollout>> {
    let cluster_scope = namespace.is_none();
    in_namespace(store, namespace)
        .filter(|rollout| {
            gather::analysis_uses(rollout)
                .values()
                .flatten()
                .any(|reference| {
                    reference.template_name.as_deref() == Some(name)
                        && reference.cluster_scope.unwrap_or(false) == cluster_scope
                })
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

/// The Rollouts taking their template from a Deployment.
fn rollouts_of_workload(
    store: &Store<Rollout>,
    deployment: &Deployment,
) -> Vec<ObjectRef<Rollout>> {
    let namespace = deployment.namespace();
    let name = deployment.name_any();
    in_namespace(store, namespace.as_deref())
        .filter(|rollout| {
            rollout
                .spec
                .workload_ref
                .as_ref()
                .is_some_and(|w| w.name.as_deref() == Some(&name))
        })
        .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
        .collect()
}

#[tracing::instrument(skip_all, fields(rollout = %rollout.name_any(), namespace = rollout.namespace().unwrap_or_default()))]
async fn reconcile(rollout: Arc<Rollout>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    if !context.leadership.may_write() {
        return Ok(Action::await_change());
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    context.caches.wait_until_ready().await;
    let _timer = context.metrics.reconcile_timer(&namespace, &name);
    let rollout = context.freshest(rollout);
    let now = Timestamp::now();
    let observed = gather::observe(
        &context.caches,
        &context.client,
        rollout,
        context.config.instance_id.as_deref(),
        now,
    )
    .await
    .map_err(|source| ReconcileError::Observe {
        rollout: format!("{namespace}/{name}"),
        source,
    })?;
    let mut plan = lifecycle::plan(&observed, now);
    let events = std::mem::take(&mut plan.events);
    let requeue_after = plan.requeue_after;
    let halted = plan.error.clone();
    let applied = match apply(&context.client, &observed, plan).await {
        Ok(applied) => applied,
        Err(error) if error.is_conflict() => {
            // Planned from a Rollout that has changed since: plan again from the newer one as
            // soon as the watch brings it.
            tracing::debug!(rollout = %name, %namespace, %error, "stale view, planning again");
            return Ok(Action::requeue(Duration::from_millis(50)));
        }
        Err(error) => {
            context.events.send(
                &observed.rollout,
                vec![super::plan::PlannedEvent {
                    warning: true,
                    reason: error.category().to_string(),
                    message: error.to_string(),
                }],
            );
            return Err(error.into());
        }
    };
    if let Some(written) = applied.rollout {
        context.remember(written);
    }
    if let Some(after) = applied.traffic_moved_after.filter(|_| applied.writes > 0) {
        tracing::debug!(
            traffic_ms = after.as_secs_f64() * 1000.0,
            writes = applied.writes,
            "applied"
        );
    }
    context.events.send(&observed.rollout, events);
    if let Some(reason) = halted {
        return Err(ReconcileError::Plan {
            rollout: format!("{namespace}/{name}"),
            reason,
        });
    }
    if let Some(uid) = &observed.rollout.metadata.uid {
        context.failure_count(uid, false);
    }
    if applied.collision {
        return Ok(Action::requeue(Duration::ZERO));
    }
    Ok(match requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

fn error_policy(rollout: Arc<Rollout>, error: &ReconcileError, context: Arc<Context>) -> Action {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    context.metrics.reconcile_error(&namespace, &name);
    let failures = rollout
        .metadata
        .uid
        .as_deref()
        .map_or(1, |uid| context.failure_count(uid, true));
    let backoff = Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(failures.min(7)))
        .min(Duration::from_secs(60));
    tracing::warn!(rollout = %name, %namespace, category = error.category(), %error, retry_in = ?backoff, "rollout reconcile failed");
    Action::requeue(backoff)
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn store(rollouts: &[serde_json::Value]) -> Store<Rollout> {
        let mut writer = Writer::<Rollout>::default();
        for rollout in rollouts {
            let rollout: Rollout = serde_json::from_value(rollout.clone()).unwrap();
            writer.apply_watcher_event(&Event::Apply(rollout));
        }
        writer.as_reader()
    }

    fn service(name: &str, annotations: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations}
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<Rollout>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn a_service_concerns_the_rollouts_naming_it_in_any_role() {
        let rollout = |name: &str, strategy: serde_json::Value| {
            json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"selector": {"matchLabels": {"app": name}}, "strategy": strategy}
            })
        };
        let store = store(&[
            rollout(
                "pingpong",
                json!({"canary": {"pingPong": {"pingService": "ping", "pongService": "pong"}}}),
            ),
            rollout(
                "canary",
                json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary"}}),
            ),
            rollout(
                "bluegreen",
                json!({"blueGreen": {"activeService": "active", "previewService": "preview"}}),
            ),
        ]);
        let concerned = |name: &str| names(rollouts_of_service(&store, &service(name, json!({}))));
        assert_eq!(concerned("ping"), ["pingpong"]);
        assert_eq!(concerned("pong"), ["pingpong"]);
        assert_eq!(concerned("web-canary"), ["canary"]);
        assert_eq!(concerned("preview"), ["bluegreen"]);
        assert!(concerned("other").is_empty());
        // The managed-by annotation names the Rollout directly.
        let adopted = service(
            "other",
            json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "canary"}),
        );
        assert_eq!(names(rollouts_of_service(&store, &adopted)), ["canary"]);
    }
}
