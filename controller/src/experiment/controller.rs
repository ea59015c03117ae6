//! The Experiment controller process: watches, gathering an Experiment's objects, applying
//! its plan, Events.
//!
//! ```text
//!  Experiments ─────────────────┐ (store)
//!  ReplicaSets, Services,       │ kept only when an Experiment controls them,
//!  AnalysisRuns ────────────────┤ indexed by its UID; trigger it at once
//!                               ▼
//!      reconcile: gather (+ analysis templates from the API) → plan → apply → Events
//! ```
//!
//! Every replica runs the watches; only the leader reconciles. The Rollout controller keeps
//! its own small index of Experiments by owning Rollout ([`rollout_experiments`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, ListSemantic};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, Resource, ResourceExt};
use ramp_analysis::api::{AnalysisRun, AnalysisTemplateRef};
use ramp_analysis::build::{ApiTemplates, expand_templates};
use ramp_analysis::watch::{PacedTriggers, paced};
use serde_json::{Value, json};

use super::TEMPLATE_NAME_ANNOTATION;
use super::plan::{self, ExperimentPlan, ObservedExperiment, ReplicaSetChange};
use crate::api::{Experiment, ExperimentStatus};
use crate::leader::Leadership;
use crate::rollout::apply::{TakenName, taken_name};
use crate::rollout::gather::{self, OwnedIndex};
use crate::rollout::names::{
    FIELD_MANAGER, INSTANCE_ID_LABEL, POD_TEMPLATE_HASH_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION,
};
use crate::rollout::plan::PlannedEvent;

/// How the Experiment controller runs (the Rollout controller's scope and instance).
#[derive(Clone, Debug, Default)]
pub struct ExperimentConfig {
    pub namespace: Option<String>,
    pub instance_id: Option<String>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "AnalysisRun {namespace}/{name} and its numbered alternatives are all taken by other runs: delete old runs"
    )]
    RunNames { namespace: String, name: String },
}

impl ExperimentError {
    /// Short label for logs and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ExperimentError::Api { .. } => "ApiError",
            ExperimentError::RunNames { .. } => "AnalysisRunError",
        }
    }
}

fn api_error(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ExperimentError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ExperimentError::Api {
        action,
        kind,
        namespace,
        name,
        source,
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
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

fn page(config: watcher::Config) -> watcher::Config {
    config
        .page_size(500)
        .list_semantic(ListSemantic::MostRecent)
}

fn instance_selector(instance_id: Option<&str>) -> String {
    match instance_id {
        Some(id) => format!("{INSTANCE_ID_LABEL}={id}"),
        None => format!("!{INSTANCE_ID_LABEL}"),
    }
}

/// A stand-in carrying only what owner mapping reads.
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

/// The Experiments of the Rollout controller's scope, indexed by owning Rollout, and their
/// events as owner-only stand-ins (so a Rollout is reconciled when its Experiment changes).
pub fn rollout_experiments(
    client: &Client,
    namespace: Option<&str>,
) -> (
    OwnedIndex<Experiment>,
    BoxStream<'static, Result<ReplicaSet, watcher::Error>>,
) {
    let index = OwnedIndex::<Experiment>::default();
    let writer = index.clone();
    let stream = paced(watch(
        api::<Experiment>(client, namespace),
        page(watcher::Config::default()),
    ))
    .modify(gather::strip_metadata)
    .inspect(move |event| {
        if let Ok(event) = event {
            writer.apply(event);
        }
    })
    .touched_objects()
    .map(|result| result.map(owner_only))
    .boxed();
    (index, stream)
}

/// Whether an Experiment is the controller of `object`.
fn experiment_controlled<K: Resource>(object: &K) -> bool {
    object.meta().owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == "Experiment"
            && o.api_version.starts_with("argoproj.io/")
    })
}

/// Keeps the events of objects an Experiment controls; an object that stops being one is
/// passed on as deleted, so the index forgets it.
fn only_experiment_controlled<K: Resource>(
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Option<Result<watcher::Event<K>, watcher::Error>> {
    Some(match event {
        Ok(watcher::Event::Apply(object)) if !experiment_controlled(&object) => {
            Ok(watcher::Event::Delete(object))
        }
        Ok(watcher::Event::InitApply(object)) if !experiment_controlled(&object) => return None,
        other => other,
    })
}

/// An owned-object watch: filtered to Experiment-controlled objects, indexed, and turned
/// into owner-only triggers.
fn owned_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    strip: fn(&mut K),
) -> (
    OwnedIndex<K>,
    BoxStream<'static, Result<ReplicaSet, watcher::Error>>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let index = OwnedIndex::<K>::default();
    let writer = index.clone();
    let stream = paced(watch(api, page(config)))
        .modify(strip)
        .filter_map(|event| futures::future::ready(only_experiment_controlled(event)))
        .inspect(move |event| {
            if let Ok(event) = event {
                writer.apply(event);
            }
        })
        .touched_objects()
        .filter(|result| {
            futures::future::ready(result.as_ref().map_or(true, experiment_controlled))
        })
        .map(|result| result.map(owner_only))
        .boxed();
    (index, stream)
}

fn strip_service(service: &mut Service) {
    gather::strip_metadata(service);
    service.status = None;
}

/// State shared by every reconcile.
struct Context {
    client: Client,
    replica_sets: OwnedIndex<ReplicaSet>,
    services: OwnedIndex<Service>,
    runs: OwnedIndex<AnalysisRun>,
    listed: gather::Listed,
    leadership: Leadership,
    recorder: Recorder,
    /// The Experiment as our last status write returned it, by UID, until the cache has it.
    written: Mutex<HashMap<String, Arc<Experiment>>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    fn ready(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Acquire)
            && self.replica_sets.is_ready()
            && self.services.is_ready()
            && self.runs.is_ready()
    }

    fn freshest(&self, cached: Arc<Experiment>) -> Arc<Experiment> {
        let Some(uid) = cached.metadata.uid.clone() else {
            return cached;
        };
        let Ok(mut written) = self.written.lock() else {
            return cached;
        };
        let version = |e: &Experiment| {
            e.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        match written.get(&uid) {
            Some(ours) if version(&cached) < version(ours) => ours.clone(),
            _ => {
                written.remove(&uid);
                cached
            }
        }
    }

    fn remember(&self, experiment: Experiment) {
        if let (Some(uid), Ok(mut written)) = (experiment.metadata.uid.clone(), self.written.lock())
        {
            written.insert(uid, Arc::new(experiment));
        }
    }
}

/// Runs the Experiment controller until `shutdown` completes.
pub async fn run(
    client: Client,
    config: ExperimentConfig,
    leadership: Leadership,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = config.namespace.as_deref();
    let (store, writer) = reflector::store::<Experiment>();
    let listed = gather::Listed::default();
    let experiments = paced(watch(
        api::<Experiment>(&client, namespace),
        page(watcher::Config::default().labels(&instance_selector(config.instance_id.as_deref()))),
    ))
    .modify(gather::strip_metadata)
    .reflect(writer)
    .inspect(gather::mark_listed(listed.clone()))
    .applied_objects()
    .boxed();
    let (replica_sets, rs_events) = owned_watch(
        api::<ReplicaSet>(&client, namespace),
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
        gather::strip_metadata,
    );
    let (services, service_events) = owned_watch(
        api::<Service>(&client, namespace),
        watcher::Config::default(),
        strip_service,
    );
    let (runs, run_events) = owned_watch(
        api::<AnalysisRun>(&client, namespace),
        watcher::Config::default(),
        gather::strip_analysis_run,
    );
    let reporter = Reporter {
        controller: "ramp".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        replica_sets,
        services,
        runs,
        listed,
        leadership: leadership.clone(),
        written: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let became_leader = futures::stream::unfold(leadership.receiver(), |mut receiver| async move {
        loop {
            receiver.changed().await.ok()?;
            if *receiver.borrow_and_update() {
                return Some(((), receiver));
            }
        }
    });
    Controller::for_stream(experiments, store)
        // Each watch backs off by itself (410s excepted), as the Rollout controller's do.
        .trigger_backoff(PacedTriggers)
        .owns_stream(rs_events)
        .owns_stream(service_events)
        .owns_stream(run_events)
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                ramp_analysis::watch::log_controller_error("Experiment", &error);
            }
        })
        .await;
}

#[tracing::instrument(skip_all, fields(experiment = %experiment.name_any(), namespace = experiment.namespace().unwrap_or_default()))]
async fn reconcile(
    experiment: Arc<Experiment>,
    context: Arc<Context>,
) -> Result<Action, ExperimentError> {
    if !context.leadership.may_write() {
        return Ok(Action::await_change());
    }
    while !context.ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if experiment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let experiment = context.freshest(experiment);
    let observed = gather_experiment(&context, experiment).await;
    let mut planned = plan::plan(&observed, Timestamp::now());
    let events = std::mem::take(&mut planned.events);
    let requeue = planned.requeue_after;
    let outcome = apply(&context, &observed, planned).await;
    publish(&context, &observed.experiment, events).await;
    let again = outcome?;
    if let Some(uid) = &observed.experiment.metadata.uid
        && let Ok(mut failures) = context.failures.lock()
    {
        failures.remove(uid);
    }
    Ok(match (again, requeue) {
        (true, _) => Action::requeue(Duration::ZERO),
        (false, Some(after)) => Action::requeue(after),
        (false, None) => Action::await_change(),
    })
}

fn error_policy(
    experiment: Arc<Experiment>,
    error: &ExperimentError,
    context: Arc<Context>,
) -> Action {
    let failures = experiment
        .metadata
        .uid
        .as_deref()
        .and_then(|uid| {
            let mut failures = context.failures.lock().ok()?;
            let count = failures.entry(uid.to_string()).or_default();
            *count += 1;
            Some(*count)
        })
        .unwrap_or(1);
    let backoff = Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(failures.min(7)))
        .min(Duration::from_secs(60));
    tracing::warn!(experiment = %experiment.name_any(), namespace = experiment.namespace().unwrap_or_default(), category = error.category(), %error, retry_in = ?backoff, "experiment reconcile failed");
    Action::requeue(backoff)
}

/// Reads an Experiment's objects from the caches, and the templates of analyses still to
/// be started from the API.
async fn gather_experiment(context: &Context, experiment: Arc<Experiment>) -> ObservedExperiment {
    let uid = experiment.metadata.uid.clone().unwrap_or_default();
    let namespace = experiment.namespace().unwrap_or_default();
    let mut observed = ObservedExperiment::new(experiment.clone());
    observed.replica_sets = context.replica_sets.owned_by(&uid);
    observed.services = context.services.owned_by(&uid);
    observed.analysis_runs = context.runs.owned_by(&uid);
    let status = experiment.status.clone().unwrap_or_default();
    if plan::phase(&status).completed() {
        return observed;
    }
    let source = ApiTemplates {
        client: context.client.clone(),
    };
    for analysis in experiment.spec.analyses.iter().flatten() {
        let started = status
            .analysis_runs
            .iter()
            .flatten()
            .any(|r| r.name == analysis.name && !r.analysis_run.is_empty());
        if started {
            continue;
        }
        let reference = AnalysisTemplateRef {
            template_name: Some(analysis.template_name.clone()),
            cluster_scope: analysis.cluster_scope,
        };
        let templates = expand_templates(&source, &namespace, &[reference])
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string());
        observed
            .analysis_templates
            .insert(analysis.name.clone(), templates);
    }
    observed
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run: false,
    }
}

/// Carries out a plan: ReplicaSets, Services, AnalysisRuns, then the status (with what the
/// writes found: a name collision, a refused ReplicaSet). Returns whether to plan again at
/// once.
async fn apply(
    context: &Context,
    observed: &ObservedExperiment,
    mut plan: ExperimentPlan,
) -> Result<bool, ExperimentError> {
    let experiment = observed.experiment.as_ref();
    let namespace = experiment.namespace().unwrap_or_default();
    let client = &context.client;
    let mut again = false;

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    for rs in std::mem::take(&mut plan.create_replica_sets) {
        let name = rs.name_any();
        let template = rs
            .annotations()
            .get(TEMPLATE_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        match replica_sets.create(&post_params(), &rs).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 409) => {
                let existing = replica_sets.get(&name).await.map_err(api_error(
                    "reading",
                    "ReplicaSet",
                    &namespace,
                    &name,
                ))?;
                let ours = gather::controller_uid(&existing) == experiment.metadata.uid;
                if !ours || existing.annotations() != rs.annotations() {
                    // Another object holds the name: a new hash, as Argo does.
                    bump_collision_count(&mut plan.status, &template);
                    again = true;
                }
            }
            Err(error) if is_status(&error, 403) || is_status(&error, 500) => {
                return Err(api_error("creating", "ReplicaSet", &namespace, &name)(
                    error,
                ));
            }
            Err(error) => {
                let message =
                    format!("Failed to create ReplicaSet for template '{template}': {error}");
                template_error(&mut plan.status, &template, message.clone());
                plan.events.push(PlannedEvent {
                    warning: true,
                    reason: "FailedCreateReplicaSet".into(),
                    message,
                });
            }
        }
    }
    for change in &plan.replica_set_updates {
        match replica_sets
            .patch(
                &change.name,
                &params(),
                &Patch::Merge(replica_set_patch(change)),
            )
            .await
        {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => {
                return Err(api_error(
                    "updating",
                    "ReplicaSet",
                    &namespace,
                    &change.name,
                )(error));
            }
        }
    }

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    for service in &plan.create_services {
        let name = service.name_any();
        match services.create(&post_params(), service).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 409) => {
                let existing = services
                    .get(&name)
                    .await
                    .map_err(api_error("reading", "Service", &namespace, &name))?;
                if gather::controller_uid(&existing) != experiment.metadata.uid {
                    let template = service
                        .annotations()
                        .get(TEMPLATE_NAME_ANNOTATION)
                        .cloned()
                        .unwrap_or_default();
                    let message = format!(
                        "Failed to create Service {name} for template '{template}': a Service of that name exists and is not this Experiment's"
                    );
                    template_error(&mut plan.status, &template, message);
                }
            }
            Err(error) => return Err(api_error("creating", "Service", &namespace, &name)(error)),
        }
    }
    for name in &plan.delete_services {
        match services.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(api_error("deleting", "Service", &namespace, name)(error)),
        }
    }

    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &namespace);
    for planned in std::mem::take(&mut plan.create_runs) {
        match create_run(&runs, planned.run, &namespace).await {
            Ok(name) => {
                if let Some(entry) = plan
                    .status
                    .analysis_runs
                    .iter_mut()
                    .flatten()
                    .find(|r| r.name == planned.analysis)
                {
                    entry.analysis_run = name;
                }
            }
            Err(error) if error_is_forbidden(&error) => return Err(error),
            Err(error) => {
                if let Some(entry) = plan
                    .status
                    .analysis_runs
                    .iter_mut()
                    .flatten()
                    .find(|r| r.name == planned.analysis)
                {
                    entry.analysis_run = String::new();
                    entry.phase = ramp_analysis::api::AnalysisPhase::Error;
                    entry.message = Some(format!(
                        "Failed to create AnalysisRun for analysis '{}': {error}",
                        planned.analysis
                    ));
                }
            }
        }
    }
    for name in &plan.terminate_runs {
        let patch = json!({"spec": {"terminate": true}});
        match runs.patch(name, &params(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => {
                return Err(api_error("terminating", "AnalysisRun", &namespace, name)(
                    error,
                ));
            }
        }
    }

    let previous =
        serde_json::to_value(experiment.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let next = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
    if let Some(changes) = crate::rollout::status::diff(&previous, &next) {
        let mut patch = json!({"status": changes});
        if let Some(version) = &experiment.metadata.resource_version {
            patch["metadata"] = json!({"resourceVersion": version});
        }
        let experiments: Api<Experiment> = Api::namespaced(client.clone(), &namespace);
        let name = experiment.name_any();
        match experiments
            .patch_status(&name, &params(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => context.remember(written),
            // Planned from an older Experiment: plan again from the newer one.
            Err(error) if is_status(&error, 409) => again = true,
            Err(error) if is_status(&error, 404) => {}
            Err(error) => {
                return Err(api_error(
                    "updating the status of",
                    "Experiment",
                    &namespace,
                    &name,
                )(error));
            }
        }
    }
    Ok(again)
}

fn error_is_forbidden(error: &ExperimentError) -> bool {
    matches!(error, ExperimentError::Api { source, .. } if is_status(source, 403))
}

fn replica_set_patch(change: &ReplicaSetChange) -> Value {
    let mut patch = json!({});
    if let Some(replicas) = change.replicas {
        patch["spec"] = json!({"replicas": replicas});
    }
    if let Some(deadline) = &change.scale_down_deadline {
        patch["metadata"] = json!({"annotations": {SCALE_DOWN_DEADLINE_ANNOTATION: deadline}});
    }
    patch
}

fn bump_collision_count(status: &mut ExperimentStatus, template: &str) {
    let list = status.template_statuses.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|t| t.name == template) {
        Some(entry) => entry.collision_count = Some(entry.collision_count.unwrap_or(0) + 1),
        None => list.push(crate::api::ExperimentTemplateStatus {
            name: template.to_string(),
            collision_count: Some(1),
            ..Default::default()
        }),
    }
}

fn template_error(status: &mut ExperimentStatus, template: &str, message: String) {
    let list = status.template_statuses.get_or_insert_with(Vec::new);
    if let Some(entry) = list.iter_mut().find(|t| t.name == template) {
        entry.status = Some(plan::TEMPLATE_ERROR.to_string());
        entry.message = Some(message);
    }
}

/// Creates a run; a name taken by another run moves to `NAME.1`, `NAME.2`… (Argo's collision
/// counter). A run of this Experiment with the same spec is taken as created, finished or not
/// (the Rollout controller's rule, [`crate::rollout::apply::taken_name`]): an Experiment never
/// starts an analysis twice, so it is the run whose status write was lost.
async fn create_run(
    runs: &Api<AnalysisRun>,
    mut run: AnalysisRun,
    namespace: &str,
) -> Result<String, ExperimentError> {
    let base = run.name_any();
    for attempt in 0..10 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}.{attempt}")
        };
        run.metadata.name = Some(name.clone());
        match runs.create(&post_params(), &run).await {
            Ok(_) => return Ok(name),
            Err(error) if is_status(&error, 409) => {
                let existing = runs.get(&name).await.map_err(api_error(
                    "reading",
                    "AnalysisRun",
                    namespace,
                    &name,
                ))?;
                if taken_name(&existing, &run, &[]) == TakenName::Ours {
                    return Ok(name);
                }
            }
            Err(error) => {
                return Err(api_error("creating", "AnalysisRun", namespace, &name)(
                    error,
                ));
            }
        }
    }
    Err(ExperimentError::RunNames {
        namespace: namespace.to_string(),
        name: base,
    })
}

async fn publish(context: &Context, experiment: &Experiment, events: Vec<PlannedEvent>) {
    let reference = experiment.object_ref(&());
    for event in events {
        let mut note = event.message;
        note.truncate(1000);
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            action: event.reason.clone(),
            reason: event.reason,
            note: Some(note),
            secondary: None,
        };
        if let Err(error) = context.recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "could not publish an Experiment event");
        }
    }
}
