//! Embedded GitOps: Argo CD `Application`s (a subset) synced from Git by Ramp itself, so a
//! team needs no separate Argo CD. Off unless `ramp-controller run --gitops`.
//!
//! ```text
//!  Application watch ─┐
//!  managed-object     ├─► queue ─► reconcile: validate → fetch → render → resolve → compare
//!   watches (heal)  ──┤                          → decide → sync (dry run, waves, prune) → status
//!  webhook pushes ────┘
//! ```
//!
//! Deciding lives in pure modules ([`render`], [`desired`], [`order`], [`diff`], [`health`],
//! [`policy`], [`spec`], [`status`]); doing in [`git`], [`cluster`], [`sync`], [`reconciler`].
//!
//! Use from the `run` subcommand (only while holding the leader lease, since it writes):
//!
//! ```ignore
//! let config = gitops::GitopsConfig { poll_interval, webhook_secret, namespace, ..Default::default() };
//! let metrics = gitops::GitopsMetrics::register(&mut registry);
//! http = http.merge(gitops::webhook_router(&config));
//! tokio::spawn(gitops::run(client, config, metrics, shutdown));
//! ```

pub mod application;
pub mod cluster;
pub mod credentials;
pub mod desired;
pub mod diff;
pub mod git;
pub mod health;
pub mod metrics;
pub mod order;
pub mod policy;
pub mod reconciler;
pub mod render;
pub mod resource;
pub mod spec;
pub mod status;
pub mod sync;
pub mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::runtime::controller::{self, Action, ReconcileRequest};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use ramp_analysis::watch::paced;
use tokio::sync::mpsc;

pub use application::Application;
pub use metrics::GitopsMetrics;
pub use webhook::{PushEvent, PushEvents};

/// Settings of the GitOps reconciler.
#[derive(Clone, Debug)]
pub struct GitopsConfig {
    /// How often each application is fetched without a webhook (`--gitops-poll-interval`;
    /// up to 10% jitter is added).
    pub poll_interval: Duration,
    /// Shared secret for `POST /api/webhook` (`--gitops-webhook-secret`); `None` accepts
    /// unsigned pushes.
    pub webhook_secret: Option<String>,
    /// Watch Applications in this namespace only (default: every namespace).
    pub namespace: Option<String>,
    /// Applications in this namespace track their objects under their bare name, as Argo CD
    /// does for its own namespace (so objects Argo CD deployed stay recognised after a switch);
    /// all others under `<namespace>_<name>`, which cannot collide. Default: none.
    pub control_plane_namespace: Option<String>,
    /// Where bare repositories are cached.
    pub cache_dir: PathBuf,
    /// Longest time one fetch may take.
    pub fetch_timeout: Duration,
    /// Longest time a sync wave may take to become healthy.
    pub wave_timeout: Duration,
    /// Applications reconciled at once.
    pub concurrency: u16,
    /// Largest webhook payload.
    pub webhook_max_payload_bytes: usize,
    /// Pushes received by the webhook, consumed by [`run`].
    pub push_events: PushEvents,
}

impl Default for GitopsConfig {
    fn default() -> Self {
        GitopsConfig {
            poll_interval: Duration::from_secs(180),
            webhook_secret: None,
            namespace: None,
            control_plane_namespace: None,
            cache_dir: std::env::temp_dir().join("ramp-gitops"),
            fetch_timeout: Duration::from_secs(90),
            wave_timeout: Duration::from_secs(600),
            concurrency: 4,
            webhook_max_payload_bytes: webhook::DEFAULT_MAX_PAYLOAD_BYTES,
            push_events: PushEvents::default(),
        }
    }
}

/// The webhook route (`POST /api/webhook`) for the controller's HTTP server; its pushes
/// reach the [`run`] started with the same config.
pub fn webhook_router(config: &GitopsConfig) -> axum::Router {
    webhook::router(
        config.push_events.clone(),
        config.webhook_secret.clone(),
        config.webhook_max_payload_bytes,
    )
}

/// Serves a router (the webhook) on `listener` until the task is dropped; for running the
/// webhook without the controller's HTTP server (tests, benchmarks).
pub async fn serve_webhook(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// The Application CRD (for the `crd` subcommand).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    Application::crd()
}

/// Why the reconciler stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The repository cache directory cannot be created.
    #[error("cannot create the Git cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the reconciler until `shutdown` completes.
pub async fn run(
    client: Client,
    config: GitopsConfig,
    metrics: GitopsMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.cache_dir).map_err(|source| RunError::CacheDir {
        path: config.cache_dir.clone(),
        source,
    })?;
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<String>();
    let cluster = Arc::new(cluster::Cluster::new(client.clone(), trigger_tx));
    let repos = git::Repositories::new(
        Arc::new(git::GixBackend::new(&config.cache_dir)),
        config.fetch_timeout,
    );
    let apps: Api<Application> = match &config.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let concurrency = config.concurrency;
    let control_plane = config.control_plane_namespace.clone();
    let pushes = config.push_events.subscribe();
    let ctx = Arc::new(reconciler::Context::new(
        client, config, repos, cluster, metrics,
    ));

    let writer = reflector::store::Writer::<Application>::default();
    let store = writer.as_reader();
    let forget_ctx = ctx.clone();
    let app_changes =
        reflector::reflector(writer, paced(watcher(apps, watcher::Config::default()))).filter_map(
            move |event| {
                let request = match event {
                    Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) => {
                        Some(Ok(ReconcileRequest::from(ObjectRef::from_obj(&app))))
                    }
                    Ok(watcher::Event::Delete(app)) => {
                        forget_ctx.forget(&app.namespace().unwrap_or_default(), &app.name_any());
                        None
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Err(error) => Some(Err(error)),
                };
                async move { request }
            },
        );

    // Managed objects changed: reconcile the application named by their tracking id.
    let heal_store = store.clone();
    let heal = stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|i| (i, rx))
    })
    .filter_map(move |instance| {
        // Objects of applications this reconciler does not watch (another namespace, an
        // application being deleted) are someone else's business.
        let reference = instance_ref(&instance, control_plane.as_deref())
            .filter(|r| heal_store.get(r).is_some());
        async move { reference.map(|r| Ok(ReconcileRequest::from(r))) }
    });

    // Pushes: refresh every application whose source the push concerns.
    let push_ctx = ctx.clone();
    let push_store = store.clone();
    let pushed = stream::unfold(pushes, next_push).flat_map(move |event| {
        let matching: Vec<_> = push_store
            .state()
            .iter()
            .filter(|app| {
                app.spec.source.as_ref().is_some_and(|s| {
                    event.concerns(&s.repo_url, s.target_revision.as_deref().unwrap_or("HEAD"))
                })
            })
            .map(|app| {
                tracing::debug!(app = %app.name_any(), "push concerns application");
                push_ctx.request_refresh(&app.namespace().unwrap_or_default(), &app.name_any());
                Ok(ReconcileRequest::from(ObjectRef::from_obj(&**app)))
            })
            .collect();
        stream::iter(matching)
    });

    let queue = stream::select(app_changes, stream::select(heal, pushed));
    let applier_config = controller::Config::default()
        .concurrency(concurrency)
        .debounce(Duration::from_millis(50));
    let reconcile = |app, ctx| Box::pin(reconciler::reconcile(app, ctx));
    let results = controller::applier(reconcile, error_policy, ctx, store, queue, applier_config);
    results
        .take_until(shutdown)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::warn!(%error, "gitops reconcile failed");
            }
        })
        .await;
    Ok(())
}

async fn next_push(
    mut receiver: tokio::sync::broadcast::Receiver<PushEvent>,
) -> Option<(PushEvent, tokio::sync::broadcast::Receiver<PushEvent>)> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match receiver.recv().await {
            Ok(event) => return Some((event, receiver)),
            // Missed pushes only delay a refresh until the next poll.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

/// The Application an instance name designates (`<namespace>_<name>`, or a bare name in the
/// control-plane namespace).
fn instance_ref(instance: &str, control_plane: Option<&str>) -> Option<ObjectRef<Application>> {
    match instance.split_once('_') {
        Some((namespace, name)) => Some(ObjectRef::new(name).within(namespace)),
        None => control_plane.map(|namespace| ObjectRef::new(instance).within(namespace)),
    }
}

fn error_policy(
    app: Arc<Application>,
    error: &reconciler::Error,
    _ctx: Arc<reconciler::Context>,
) -> Action {
    tracing::warn!(app = %app.name_any(), namespace = ?app.namespace(), category = error.category(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_lead_back_to_their_application() {
        let r = instance_ref("team-a_web", None).expect("ref");
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("web", Some("team-a"))
        );
        let r = instance_ref("web", Some("argocd")).expect("ref");
        assert_eq!(r.namespace.as_deref(), Some("argocd"));
        assert!(instance_ref("web", None).is_none());
    }
}
