//! One reconcile of one Application, as a pipeline:
//!
//! ```text
//! validate spec → fetch (only when due) → render (cached by commit) → resolve kinds
//!   → compare with the watch caches → decide → sync (dry run, waves, prune) → status
//! ```
//!
//! Any failure before the sync step (bad spec, unreachable remote, YAML error, duplicate,
//! unknown kind) ends the reconcile with a condition naming the cause and the file and line;
//! nothing is applied or pruned, and the objects from the last good sync keep running.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::GitopsConfig;
use super::application::{
    Application, ApplicationStatus, ComparedTo, HealthStatus, Operation, OperationInitiator,
    OperationState, ResourceResult, ResourceStatus, SyncOperation, SyncOperationResult,
};
use super::cluster::{Cluster, KindInfo, KindStore};
use super::credentials::credentials_for;
use super::desired::{self, DesiredObject, KindScopes, Resolved};
use super::diff::{FIELD_MANAGER, IgnoredFields, difference, ignored_fields};
use super::git::Repositories;
use super::health::{Assessment, assess, worst};
use super::metrics::{AppInfoLabels, GitopsMetrics, ReconcileLabels, SyncLabels};
use super::policy::{Drift, PruneTarget, SyncDecision, decide, prune_targets};
use super::render::{self, DirectoryOptions, Manifest, RenderError, SourceType};
use super::resource::{REFRESH_ANNOTATION, ResourceKey, app_instance, managing_app, version_of};
use super::spec::{self, ValidSpec};
use super::status::{
    COMPARISON_ERROR, INVALID_SPEC, Observation, SHARED_RESOURCE, SYNC_ERROR, SYNC_SKIPPED,
    UNSUPPORTED, changed, compose,
};
use super::sync::{self, SyncPlan};

/// Finalizers asking for the application's objects to be deleted with it.
const RESOURCES_FINALIZERS: [&str; 3] = [
    "resources-finalizer.argocd.argoproj.io",
    "resources-finalizer.argocd.argoproj.io/foreground",
    "resources-finalizer.argocd.argoproj.io/background",
];
/// How long a reconcile waits for the watch caches to show what a sync wrote.
const CACHE_CATCH_UP: Duration = Duration::from_secs(5);
/// Retry delay after a failed fetch or render.
const COMPARISON_RETRY: Duration = Duration::from_secs(30);

/// Why a reconcile failed (conditions carry user-facing problems; these are API failures).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
        }
    }
}

/// What the reconciler remembers between reconciles of one application.
#[derive(Default)]
struct AppMemory {
    /// The last successful fetch.
    fetched: Option<Fetched>,
    /// A push or refresh annotation asked for a fetch.
    refresh: bool,
    /// The last render.
    rendered: Option<Rendered>,
    /// The status this reconciler last wrote and the resourceVersion it produced: the watch
    /// cache may still hold an older copy when the next reconcile starts.
    written: Option<(u64, ApplicationStatus)>,
}

struct Fetched {
    url: String,
    target: String,
    revision: String,
    at: Instant,
}

#[derive(Clone)]
struct Rendered {
    key: (String, String, String, DirectoryOptions),
    source_type: SourceType,
    manifests: Arc<Result<Vec<Manifest>, Vec<RenderError>>>,
}

/// Shared state of the reconciler.
pub struct Context {
    pub(super) client: Client,
    pub(super) config: GitopsConfig,
    pub(super) repos: Repositories,
    pub(super) cluster: Arc<Cluster>,
    pub(super) metrics: GitopsMetrics,
    memory: Mutex<HashMap<(String, String), AppMemory>>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: GitopsConfig,
        repos: Repositories,
        cluster: Arc<Cluster>,
        metrics: GitopsMetrics,
    ) -> Self {
        Context {
            client,
            config,
            repos,
            cluster,
            metrics,
            memory: Mutex::default(),
        }
    }

    /// Marks an application for a fetch at its next reconcile.
    pub fn request_refresh(&self, namespace: &str, name: &str) {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        memory
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .refresh = true;
    }

    /// Drops what is remembered about a deleted application, and its metric series.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        memory.remove(&(namespace.to_owned(), name.to_owned()));
        self.metrics.remove_app(namespace, name);
    }

    fn with_memory<T>(&self, key: &(String, String), f: impl FnOnce(&mut AppMemory) -> T) -> T {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        f(memory.entry(key.clone()).or_default())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Time until the next poll, with up to 10% jitter so applications do not poll in lockstep.
fn poll_delay(interval: Duration) -> Duration {
    let jitter = RandomState::new().hash_one(Instant::now()) % 1000;
    interval + interval.mul_f64(jitter as f64 / 10_000.0)
}

/// Reconciles one application.
pub async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let app = with_latest_status(app, &ctx, &(namespace.clone(), name.clone()));
    let _timer = ctx.metrics.reconcile_timer(ReconcileLabels {
        namespace: namespace.clone(),
        dest_server: app
            .spec
            .destination
            .server
            .clone()
            .unwrap_or_else(|| "in-cluster".into()),
    });
    let instance = app_instance(
        &namespace,
        &name,
        ctx.config.control_plane_namespace.as_deref(),
    );
    if app.metadata.deletion_timestamp.is_some() {
        return finalize(&app, &ctx, &instance).await;
    }
    let key = (namespace.clone(), name.clone());
    let report = spec::validate(&app.spec);
    let mut conditions: Vec<(String, String)> = report
        .warnings
        .iter()
        .map(|w| (UNSUPPORTED.to_owned(), w.clone()))
        .collect();
    let valid = match report.spec {
        Ok(valid) => valid,
        Err(errors) => {
            conditions.push((INVALID_SPEC.to_owned(), errors.join("; ")));
            let observed = Observation {
                sync_status: "Unknown".into(),
                conditions,
                ..Default::default()
            };
            write_status(&app, &ctx, observed, 10).await?;
            return Ok(Action::requeue(poll_delay(ctx.config.poll_interval)));
        }
    };
    let refresh_annotation = app.annotations().contains_key(REFRESH_ANNOTATION);
    if refresh_annotation {
        ctx.request_refresh(&namespace, &name);
    }
    let comparison_failed = |message: String, conditions: &mut Vec<(String, String)>| {
        tracing::warn!(app = %name, %namespace, %message, "comparison with Git failed");
        conditions.push((COMPARISON_ERROR.to_owned(), message));
    };

    // Fetch, when due.
    let revision = match current_revision(&app, &valid, &ctx, &key).await {
        Ok(revision) => revision,
        Err(message) => {
            comparison_failed(
                format!("Failed to load target state: {message}"),
                &mut conditions,
            );
            let observed = Observation {
                sync_status: "Unknown".into(),
                conditions,
                ..Default::default()
            };
            write_status(&app, &ctx, observed, valid.history_limit).await?;
            return Ok(Action::requeue(
                COMPARISON_RETRY.min(ctx.config.poll_interval),
            ));
        }
    };
    if refresh_annotation {
        clear_refresh_annotation(&app, &ctx).await?;
    }

    // Render (cached by commit).
    let rendered = match render_source(&valid, &revision, &ctx, &key).await {
        Ok(rendered) => rendered,
        Err(message) => {
            comparison_failed(message, &mut conditions);
            let observed = Observation {
                sync_status: "Unknown".into(),
                revision: Some(revision),
                conditions,
                ..Default::default()
            };
            write_status(&app, &ctx, observed, valid.history_limit).await?;
            return Ok(Action::requeue(poll_delay(ctx.config.poll_interval)));
        }
    };
    let source_type = Some(rendered.source_type.as_str().to_owned());
    if rendered.source_type != SourceType::Directory {
        comparison_failed(
            format!(
                "{} sources are not supported yet: commit the rendered manifests and point spec.source.path at them",
                rendered.source_type.as_str()
            ),
            &mut conditions,
        );
        let observed = Observation {
            sync_status: "Unknown".into(),
            revision: Some(revision),
            conditions,
            source_type,
            ..Default::default()
        };
        write_status(&app, &ctx, observed, valid.history_limit).await?;
        return Ok(Action::requeue(poll_delay(ctx.config.poll_interval)));
    }
    let manifests = match rendered.manifests.as_ref() {
        Ok(manifests) => manifests.clone(),
        Err(errors) => {
            comparison_failed(render_failure(&revision, errors), &mut conditions);
            let observed = Observation {
                sync_status: "Unknown".into(),
                revision: Some(revision),
                conditions,
                source_type,
                ..Default::default()
            };
            write_status(&app, &ctx, observed, valid.history_limit).await?;
            return Ok(Action::requeue(poll_delay(ctx.config.poll_interval)));
        }
    };

    // Resolve kinds and build the desired objects.
    let scopes = kind_scopes(&ctx.cluster, &manifests).await?;
    let default_namespace = valid
        .destination_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let resolved: Resolved =
        match desired::resolve(manifests, &scopes, &default_namespace, &instance) {
            Ok(resolved) => resolved,
            Err(errors) => {
                comparison_failed(render_failure(&revision, &errors), &mut conditions);
                let observed = Observation {
                    sync_status: "Unknown".into(),
                    revision: Some(revision),
                    conditions,
                    source_type,
                    ..Default::default()
                };
                write_status(&app, &ctx, observed, valid.history_limit).await?;
                return Ok(Action::requeue(poll_delay(ctx.config.poll_interval)));
            }
        };
    if !resolved.skipped_hooks.is_empty() {
        conditions.push((
            UNSUPPORTED.to_owned(),
            format!(
                "resource hooks are not run by Ramp: {}",
                resolved.skipped_hooks.join(", ")
            ),
        ));
    }

    // Compare.
    let stores = watch_kinds(&ctx.cluster, &resolved.objects, app.status.as_ref()).await?;
    let mut comparison = compare(&resolved.objects, &stores, &valid, &instance);
    conditions.extend(
        comparison
            .shared
            .iter()
            .map(|m| (SHARED_RESOURCE.to_owned(), m.clone())),
    );

    // Decide and sync.
    let last = app.status.as_ref().and_then(|s| s.operation_state.as_ref());
    let since_last = last
        .and_then(|op| op.finished_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default()
        });
    let drift = Drift {
        out_of_sync: comparison.out_of_sync.len(),
        prunable: comparison.prunes.iter().filter(|p| !p.keep).count(),
        desired: resolved.objects.len(),
    };
    let decision = decide(
        valid.automation,
        valid.retry,
        &revision,
        drift,
        last,
        since_last,
    );
    tracing::debug!(app = %name, %namespace, %revision, ?drift, ?decision, "compared with Git");
    let mut operation = None;
    let mut requeue = poll_delay(ctx.config.poll_interval);
    match &decision {
        SyncDecision::Sync { retry_count } => {
            let started_at = now_rfc3339();
            let prune = valid.automation.is_some_and(|a| a.prune);
            let operation_of =
                |phase: &str,
                 message: String,
                 results: Vec<ResourceResult>,
                 finished_at: Option<String>| OperationState {
                    operation: Operation {
                        sync: Some(SyncOperation {
                            revision: Some(revision.clone()),
                            prune: Some(prune),
                            sync_options: app
                                .spec
                                .sync_policy
                                .as_ref()
                                .and_then(|p| p.sync_options.clone()),
                        }),
                        initiated_by: Some(OperationInitiator {
                            username: None,
                            automated: Some(true),
                        }),
                    },
                    phase: phase.into(),
                    message: Some(message),
                    sync_result: Some(SyncOperationResult {
                        resources: Some(results).filter(|r| !r.is_empty()),
                        revision: revision.clone(),
                        source: app.spec.source.clone(),
                    }),
                    started_at: started_at.clone(),
                    finished_at,
                    retry_count: Some(*retry_count),
                };
            // Recorded before the first write: a controller stopped mid-sync leaves a Running
            // operation, which the next one resumes and completes (history included).
            let running = Observation {
                sync_status: sync_status(&comparison).into(),
                revision: Some(revision.clone()),
                resources: Some(comparison.statuses(&resolved.objects)),
                health: Some(worst(comparison.health.values())),
                conditions: conditions.clone(),
                operation: Some(operation_of("Running", "syncing".into(), Vec::new(), None)),
                source_type: source_type.clone(),
            };
            write_status(&app, &ctx, running, valid.history_limit).await?;
            let outcome = sync::execute(
                &ctx.cluster,
                SyncPlan {
                    spec: &valid,
                    desired: &resolved.objects,
                    out_of_sync: &comparison.out_of_sync,
                    live: &comparison.live,
                    ignored: &comparison.ignored,
                    prunes: &comparison.prunes,
                    prune,
                    wave_timeout: ctx.config.wave_timeout,
                },
            )
            .await;
            let phase = if outcome.succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
            tracing::info!(app = %name, %namespace, revision = %revision, phase, message = %outcome.message, "sync finished");
            ctx.metrics.count_sync(SyncLabels {
                name: name.clone(),
                namespace: namespace.clone(),
                project: app.spec.project.clone().unwrap_or_else(|| "default".into()),
                dest_server: app
                    .spec
                    .destination
                    .server
                    .clone()
                    .unwrap_or_else(|| "in-cluster".into()),
                phase: phase.into(),
            });
            for written in &outcome.written {
                ctx.cluster
                    .wait_for_version(
                        &written.kind,
                        &written.namespace,
                        &written.name,
                        &written.resource_version,
                        CACHE_CATCH_UP,
                    )
                    .await;
            }
            if !outcome.written.is_empty()
                || outcome
                    .results
                    .iter()
                    .any(|r| r.status.as_deref() == Some("Pruned"))
            {
                // Pruned objects leave the caches through their delete events; give them a moment.
                let pruned = outcome
                    .results
                    .iter()
                    .filter(|r| r.status.as_deref() == Some("Pruned"))
                    .count();
                if pruned > 0 {
                    wait_pruned(&stores, &comparison.prunes, CACHE_CATCH_UP).await;
                }
                comparison = compare(&resolved.objects, &stores, &valid, &instance);
            }
            if !outcome.succeeded
                && let Some(policy) = valid
                    .retry
                    .filter(|r| r.limit.is_none_or(|l| *retry_count < i64::from(l)))
            {
                requeue = policy.delay(u32::try_from(*retry_count).unwrap_or(u32::MAX));
            }
            operation = Some(operation_of(
                phase,
                outcome.message,
                outcome.results,
                Some(now_rfc3339()),
            ));
        }
        SyncDecision::Wait(delay) => requeue = *delay,
        SyncDecision::Skip(reason) if valid.automation.is_some() => {
            conditions.push((
                SYNC_SKIPPED.to_owned(),
                format!("automated sync skipped: {reason}"),
            ));
        }
        SyncDecision::Skip(_) | SyncDecision::InSync => {}
    }
    let current_op = operation.as_ref().or(last);
    if let Some(op) = current_op.filter(|op| op.phase != "Succeeded" && op.phase != "Running")
        && super::policy::last_revision(op) == Some(revision.as_str())
    {
        conditions.push((
            SYNC_ERROR.to_owned(),
            op.message.clone().unwrap_or_else(|| "sync failed".into()),
        ));
    }
    let observed = Observation {
        sync_status: sync_status(&comparison).into(),
        revision: Some(revision),
        resources: Some(comparison.statuses(&resolved.objects)),
        health: Some(worst(comparison.health.values())),
        conditions,
        operation,
        source_type,
    };
    write_status(&app, &ctx, observed, valid.history_limit).await?;
    Ok(Action::requeue(requeue))
}

/// `Synced` when nothing differs from Git and nothing is to be pruned.
fn sync_status(comparison: &Comparison) -> &'static str {
    if comparison.out_of_sync.is_empty() && comparison.prunes.iter().all(|p| p.keep) {
        "Synced"
    } else {
        "OutOfSync"
    }
}

/// The application with the newest status known: the cached copy, or the one this reconciler
/// wrote after it if the cache has not caught up yet.
fn with_latest_status(
    app: Arc<Application>,
    ctx: &Context,
    key: &(String, String),
) -> Arc<Application> {
    let cached_version = app
        .resource_version()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let written = ctx.with_memory(key, |m| m.written.clone());
    match written {
        Some((version, status)) if version > cached_version => {
            let mut fresher = (*app).clone();
            fresher.status = Some(status);
            Arc::new(fresher)
        }
        _ => app,
    }
}

fn render_failure(revision: &str, errors: &[RenderError]) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = errors.iter().take(SHOWN).map(ToString::to_string).collect();
    if errors.len() > SHOWN {
        text.push(format!("and {} more", errors.len() - SHOWN));
    }
    format!(
        "revision {} cannot be synced, nothing was applied or pruned: {}",
        revision.get(..10).unwrap_or(revision),
        text.join("; ")
    )
}

/// The commit to compare with: fetched when the source changed, a refresh was asked for,
/// or the poll interval passed; remembered otherwise.
async fn current_revision(
    app: &Application,
    valid: &ValidSpec,
    ctx: &Context,
    key: &(String, String),
) -> Result<String, String> {
    let due = ctx.with_memory(key, |memory| match &memory.fetched {
        Some(f)
            if f.url == valid.repo_url && f.target == valid.target_revision && !memory.refresh =>
        {
            (f.at.elapsed() >= ctx.config.poll_interval).then_some(())
        }
        _ => Some(()),
    });
    if due.is_none()
        && let Some(revision) =
            ctx.with_memory(key, |m| m.fetched.as_ref().map(|f| f.revision.clone()))
    {
        return Ok(revision);
    }
    ctx.with_memory(key, |m| m.refresh = false);
    tracing::debug!(app = %key.1, namespace = %key.0, url = %valid.repo_url, "fetching");
    let namespace = app.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = secrets
        .list(
            &ListParams::default()
                .labels("argocd.argoproj.io/secret-type in (repository,repo-creds)"),
        )
        .await
        .map_err(|e| format!("reading repository credentials in namespace {namespace}: {e}"))?;
    let credentials = credentials_for(&valid.repo_url, &listed.items);
    tracing::debug!(app = %key.1, with_credentials = credentials.is_some(), "credentials looked up");
    let revision = match ctx
        .repos
        .fetch(&valid.repo_url, &valid.target_revision, credentials)
        .await
    {
        Ok(revision) => revision,
        Err(error) => {
            // Still due: the next pass fetches again rather than taking the last fetched
            // revision, so the failure is reported (and retried) until a fetch succeeds,
            // even when writing this pass's status fails.
            ctx.with_memory(key, |m| m.refresh = true);
            return Err(error.to_string());
        }
    };
    ctx.with_memory(key, |m| {
        m.fetched = Some(Fetched {
            url: valid.repo_url.clone(),
            target: valid.target_revision.clone(),
            revision: revision.clone(),
            at: Instant::now(),
        });
    });
    Ok(revision)
}

async fn render_source(
    valid: &ValidSpec,
    revision: &str,
    ctx: &Context,
    key: &(String, String),
) -> Result<Rendered, String> {
    let render_key = (
        valid.repo_url.clone(),
        revision.to_owned(),
        valid.path.clone(),
        valid.directory.clone(),
    );
    if let Some(rendered) =
        ctx.with_memory(key, |m| m.rendered.clone().filter(|r| r.key == render_key))
    {
        return Ok(rendered);
    }
    let files = ctx
        .repos
        .files(&valid.repo_url, revision, &valid.path)
        .await
        .map_err(|e| e.to_string())?;
    let source_type = render::detect_source_type(&files);
    let directory = valid.directory.clone();
    let manifests = tokio::task::spawn_blocking(move || render::render(&files, &directory))
        .await
        .map_err(|e| format!("rendering failed: {e}"))?;
    let rendered = Rendered {
        key: render_key,
        source_type,
        manifests: Arc::new(manifests),
    };
    ctx.with_memory(key, |m| m.rendered = Some(rendered.clone()));
    Ok(rendered)
}

async fn clear_refresh_annotation(app: &Application, ctx: &Context) -> Result<(), Error> {
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: null}}});
    api.patch(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Scopes of the kinds the manifests use, from discovery (unknown kinds are left out; CRDs in
/// the render fill in for theirs, and anything still unknown fails resolution).
async fn kind_scopes(cluster: &Cluster, manifests: &[Manifest]) -> Result<KindScopes, Error> {
    let mut scopes = KindScopes::new();
    for (group, api_version, kind) in desired::kinds_used(manifests) {
        if let Some(info) = cluster.kind(&api_version, &kind).await? {
            scopes.insert((group, kind), info.scope);
        }
    }
    Ok(scopes)
}

/// Watch caches for the kinds in Git and the kinds the application managed before (for
/// pruning), by apiVersion/kind.
async fn watch_kinds(
    cluster: &Cluster,
    objects: &[DesiredObject],
    previous: Option<&ApplicationStatus>,
) -> Result<HashMap<(String, String), KindStore>, Error> {
    let mut kinds: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| (o.api_version.clone(), o.key.kind.clone()))
        .collect();
    for resource in previous
        .and_then(|s| s.resources.as_deref())
        .unwrap_or_default()
    {
        let group = resource.group.as_deref().unwrap_or_default();
        let version = resource.version.as_deref().unwrap_or("v1");
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        kinds.insert((api_version, resource.kind.clone()));
    }
    let mut stores = HashMap::new();
    for (api_version, kind) in kinds {
        if let Some(info) = cluster.kind(&api_version, &kind).await? {
            stores.insert((api_version, kind), cluster.store(&info).await);
        }
    }
    Ok(stores)
}

async fn wait_pruned(
    stores: &HashMap<(String, String), KindStore>,
    prunes: &[PruneTarget],
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    for target in prunes.iter().filter(|p| !p.keep) {
        let Some(store) = stores.get(&(target.api_version.clone(), target.key.kind.clone())) else {
            continue;
        };
        while store
            .resource_version(&target.key.namespace, &target.key.name)
            .is_some()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The comparison of Git with the cluster.
struct Comparison {
    out_of_sync: HashSet<ResourceKey>,
    live: HashMap<ResourceKey, Value>,
    ignored: HashMap<ResourceKey, IgnoredFields>,
    health: HashMap<ResourceKey, Assessment>,
    prunes: Vec<PruneTarget>,
    shared: Vec<String>,
}

impl Comparison {
    fn statuses(&self, objects: &[DesiredObject]) -> Vec<ResourceStatus> {
        let mut statuses: Vec<ResourceStatus> = objects
            .iter()
            .map(|object| {
                let health = self.health.get(&object.key);
                ResourceStatus {
                    group: Some(object.key.group.clone()),
                    version: Some(version_of(&object.api_version).to_owned()),
                    kind: object.key.kind.clone(),
                    namespace: Some(object.key.namespace.clone()).filter(|n| !n.is_empty()),
                    name: object.key.name.clone(),
                    status: Some(
                        if self.out_of_sync.contains(&object.key) {
                            "OutOfSync"
                        } else {
                            "Synced"
                        }
                        .into(),
                    ),
                    health: health.map(|h| HealthStatus {
                        status: h.health.as_str().into(),
                        message: h.message.clone(),
                    }),
                    requires_pruning: None,
                    sync_wave: Some(object.wave),
                }
            })
            .collect();
        statuses.extend(self.prunes.iter().map(|target| ResourceStatus {
            group: Some(target.key.group.clone()),
            version: Some(version_of(&target.api_version).to_owned()),
            kind: target.key.kind.clone(),
            namespace: Some(target.key.namespace.clone()).filter(|n| !n.is_empty()),
            name: target.key.name.clone(),
            status: Some("OutOfSync".into()),
            health: None,
            requires_pruning: Some(true),
            sync_wave: Some(target.wave),
        }));
        statuses.sort_by(|a, b| {
            (&a.group, &a.kind, &a.namespace, &a.name).cmp(&(
                &b.group,
                &b.kind,
                &b.namespace,
                &b.name,
            ))
        });
        statuses
    }
}

fn compare(
    objects: &[DesiredObject],
    stores: &HashMap<(String, String), KindStore>,
    valid: &ValidSpec,
    instance: &str,
) -> Comparison {
    let mut comparison = Comparison {
        out_of_sync: HashSet::new(),
        live: HashMap::new(),
        ignored: HashMap::new(),
        health: HashMap::new(),
        prunes: Vec::new(),
        shared: Vec::new(),
    };
    for object in objects {
        let store = stores.get(&(object.api_version.clone(), object.key.kind.clone()));
        let live = store.and_then(|s| s.get(&object.key.namespace, &object.key.name));
        let ignored = ignored_fields(&valid.ignore, &object.key, live.as_ref());
        let reason = match &live {
            None => Some("missing from the cluster".to_owned()),
            Some(live) => difference(&object.object, live, &ignored),
        };
        if let Some(live) = &live
            && let Some(owner) = managing_app(live).filter(|owner| owner != instance)
        {
            comparison.shared.push(format!(
                "{}/{} is also managed by application {owner}",
                object.key.kind, object.key.name
            ));
        }
        comparison.health.insert(
            object.key.clone(),
            assess(&object.key.group, &object.key.kind, live.as_ref()),
        );
        if let Some(reason) = reason {
            tracing::debug!(object = %object.key, %reason, "out of sync");
            comparison.out_of_sync.insert(object.key.clone());
        }
        if let Some(live) = live {
            comparison.live.insert(object.key.clone(), live);
        }
        if !ignored.is_empty() {
            comparison.ignored.insert(object.key.clone(), ignored);
        }
    }
    let desired_keys: HashSet<&ResourceKey> = objects.iter().map(|o| &o.key).collect();
    let tracked: Vec<Value> = stores.values().flat_map(KindStore::tracked).collect();
    comparison.prunes = prune_targets(instance, &desired_keys, &tracked);
    comparison
}

async fn write_status(
    app: &Application,
    ctx: &Context,
    observed: Observation,
    history_limit: usize,
) -> Result<(), Error> {
    let previous = app.status.as_ref();
    let compared_to = ComparedTo {
        source: app.spec.source.clone(),
        destination: Some(app.spec.destination.clone()),
    };
    let status = compose(
        previous,
        observed,
        compared_to,
        history_limit,
        &now_rfc3339(),
    );
    record_info(app, ctx, &status);
    let stale = previous
        .and_then(|s| s.reconciled_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| {
            let age = chrono::Utc::now() - t.with_timezone(&chrono::Utc);
            age.to_std().unwrap_or_default() >= ctx.config.poll_interval
        });
    if !changed(previous, &status) && !stale {
        return Ok(());
    }
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let body =
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "status": status});
    let written = api
        .patch_status(
            &app.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    if let Some(version) = written
        .resource_version()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        ctx.with_memory(&key, |m| m.written = Some((version, status)));
    }
    Ok(())
}

fn record_info(app: &Application, ctx: &Context, status: &ApplicationStatus) {
    ctx.metrics.set_app_info(AppInfoLabels {
        name: app.name_any(),
        namespace: app.namespace().unwrap_or_default(),
        project: app.spec.project.clone().unwrap_or_else(|| "default".into()),
        repo: app
            .spec
            .source
            .as_ref()
            .map(|s| s.repo_url.clone())
            .unwrap_or_default(),
        dest_server: app
            .spec
            .destination
            .server
            .clone()
            .unwrap_or_else(|| "https://kubernetes.default.svc".into()),
        dest_namespace: app.spec.destination.namespace.clone().unwrap_or_default(),
        sync_status: status
            .sync
            .as_ref()
            .map_or_else(|| "Unknown".into(), |s| s.status.clone()),
        health_status: status
            .health
            .as_ref()
            .map_or_else(|| "Unknown".into(), |h| h.status.clone()),
        autosync_enabled: app
            .spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
            .is_some_and(|a| a.enabled != Some(false))
            .to_string(),
    });
}

/// Deletes the application's objects when it carries a resources finalizer, then lets it go.
async fn finalize(app: &Application, ctx: &Context, instance: &str) -> Result<Action, Error> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let finalizers = app.finalizers();
    let ours: Vec<&String> = finalizers
        .iter()
        .filter(|f| RESOURCES_FINALIZERS.contains(&f.as_str()))
        .collect();
    if ours.is_empty() {
        ctx.metrics.remove_app(&namespace, &name);
        return Ok(Action::await_change());
    }
    let stores = watch_kinds(&ctx.cluster, &[], app.status.as_ref()).await?;
    let tracked: Vec<Value> = stores.values().flat_map(KindStore::tracked).collect();
    let remaining = prune_targets(instance, &HashSet::new(), &tracked);
    let mut left = 0usize;
    for target in &remaining {
        let Some(kind) = ctx
            .cluster
            .kind(&target.api_version, &target.key.kind)
            .await?
        else {
            continue;
        };
        let store = ctx.cluster.store(&kind).await;
        let Some(live) = store.get(&target.key.namespace, &target.key.name) else {
            continue;
        };
        left += 1;
        if live.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let api = sync_api(&ctx.cluster, &kind, &target.key.namespace);
        match api
            .delete(&target.key.name, &kube::api::DeleteParams::foreground())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    if left > 0 {
        tracing::info!(app = %name, %namespace, objects = left, "waiting for the application's objects to be deleted");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| !RESOURCES_FINALIZERS.contains(&f.as_str()))
        .collect();
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch =
        json!({"metadata": {"finalizers": kept, "resourceVersion": app.resource_version()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.metrics.remove_app(&namespace, &name);
    ctx.memory
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&(namespace, name));
    Ok(Action::await_change())
}

fn sync_api(cluster: &Cluster, kind: &KindInfo, namespace: &str) -> Api<kube::api::DynamicObject> {
    match kind.scope {
        desired::Scope::Namespaced => {
            Api::namespaced_with(cluster.client().clone(), namespace, &kind.resource)
        }
        desired::Scope::Cluster => Api::all_with(cluster.client().clone(), &kind.resource),
    }
}
