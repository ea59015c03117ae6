//! GitOps in crash-restart trials: the trial's objects live in a real Git repository served
//! by `git daemon`, and an automated Argo CD Application (prune and self-heal) syncs them;
//! the controller runs with `--gitops` and is SIGKILLed while it syncs the second commit.
//!
//! ```text
//!   commit 1                                  commit 2 (pushed, webhook to the controller)
//!   wave 0  Deployment backend  backend:1     backend:2          (the sync waits for it)
//!   wave 1  ConfigMap settings-keep           unchanged
//!           ConfigMap settings-change  v1     v2
//!           ConfigMap settings-drop           removed            (pruned)
//!                                             ConfigMap settings-add (new)
//!   wave 2  Services, AnalysisTemplate,       Rollout web  demo:2 (the canary starts)
//!           Rollout web  demo:1
//! ```
//!
//! Besides the Rollout's invariants, the history must show no deletion of an object the last
//! commit has (pruning only what left Git), no Application status field reset, and the
//! Application's synced revision never going back to an older commit.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_controller::gitops::Application;
use serde_json::{Value, json};

use super::history::{Kind, Observed, deletions};
use crate::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use crate::fixtures::gitops::{application, summary};

/// The trial's Application.
pub const APP: &str = "web-app";
/// Path of the manifests in the repository.
const PATH: &str = "app";
const WAVE: &str = "argocd.argoproj.io/sync-wave";

/// The repository a GitOps trial deploys from, served over `git://`; its commits in order.
pub struct GitSource {
    repo: GitRepo,
    daemon: GitDaemon,
    pub commits: Vec<String>,
}

impl GitSource {
    /// A repository whose first commit holds `manifests`, served by `git daemon`.
    pub fn new(manifests: &[(Kind, String, Value)]) -> Result<Self, String> {
        let repo = GitRepo::new().map_err(|e| format!("creating a Git repository: {e}"))?;
        let daemon = GitDaemon::serve(&repo).map_err(|e| format!("starting git daemon: {e}"))?;
        let mut source = GitSource {
            repo,
            daemon,
            commits: Vec::new(),
        };
        source.commit(manifests, "first version")?;
        Ok(source)
    }

    /// Replaces the manifests with `manifests` in a new commit; returns its id.
    pub fn commit(
        &mut self,
        manifests: &[(Kind, String, Value)],
        message: &str,
    ) -> Result<String, String> {
        let dir = self.repo.path().join(PATH);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("emptying {}: {e}", dir.display()))?;
        }
        for (kind, name, object) in manifests {
            let path = format!("{PATH}/{}-{name}.yaml", format!("{kind:?}").to_lowercase());
            let text = serde_json::to_string_pretty(object).map_err(|e| e.to_string())?;
            self.repo
                .write(&path, &text)
                .map_err(|e| format!("writing {path}: {e}"))?;
        }
        let commit = self
            .repo
            .commit(message)
            .map_err(|e| format!("committing {message:?}: {e}"))?;
        self.commits.push(commit.clone());
        Ok(commit)
    }

    /// `git://` URL of the repository.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    /// Announces the last commit to the controller's webhook, as a Git host would.
    pub async fn push(&self, webhook: SocketAddr) -> Result<u16, String> {
        post_github_push(webhook, &self.url(), "main", None)
            .await
            .map_err(|e| format!("posting a push event to {webhook}: {e}"))
    }

    /// `commit N` for a commit of this repository, so states compare across runs.
    pub fn name_of(&self, revision: &str) -> String {
        self.commits.iter().position(|c| c == revision).map_or_else(
            || format!("unknown {revision}"),
            |i| format!("commit {}", i + 1),
        )
    }
}

fn with_wave(mut object: Value, wave: i32) -> Value {
    object["metadata"]["annotations"][WAVE] = json!(wave.to_string());
    object
}

fn config_map(name: &str, value: &str) -> (Kind, String, Value) {
    (
        Kind::ConfigMap,
        name.to_string(),
        with_wave(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                   "data": {"value": value}}),
            1,
        ),
    )
}

/// The repository's objects at `version` (1 or 2), around the Rollout's objects
/// (`rollout_objects`: Services, AnalysisTemplate, Rollout), which go in the last wave.
pub fn manifests(
    version: u8,
    rollout_objects: Vec<(Kind, String, Value)>,
) -> Vec<(Kind, String, Value)> {
    let backend = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "backend"}},
            "template": {
                "metadata": {"labels": {"app": "backend"},
                             "annotations": {"ramp.e2e/ready-after": "1s"}},
                "spec": {"containers": [{"name": "backend", "image": format!("backend:{version}")}]}
            }
        }
    });
    let mut objects = vec![
        (
            Kind::Deployment,
            "backend".to_string(),
            with_wave(backend, 0),
        ),
        config_map("settings-keep", "1"),
        config_map("settings-change", &format!("v{version}")),
    ];
    if version == 1 {
        objects.push(config_map("settings-drop", "1"));
    } else {
        objects.push(config_map("settings-add", "1"));
    }
    objects.extend(
        rollout_objects
            .into_iter()
            .map(|(kind, name, object)| (kind, name, with_wave(object, 2))),
    );
    objects
}

/// Creates the automated Application (prune, self-heal) of `url` in `namespace`.
pub async fn create_application(client: &Client, namespace: &str, url: &str) -> Result<(), String> {
    let app = application(
        APP,
        namespace,
        url,
        PATH,
        json!({"prune": true, "selfHeal": true}),
    );
    Api::<Application>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &app)
        .await
        .map(|_| ())
        .map_err(|e| format!("creating Application {namespace}/{APP}: {e}"))
}

/// Whether the Application is Synced at `revision` and its last operation succeeded.
pub async fn synced_at(client: &Client, namespace: &str, revision: &str) -> bool {
    let Some(app) = read_application(client, namespace).await else {
        return false;
    };
    let (sync, at, _) = summary(&app);
    let succeeded = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .is_some_and(|op| op.phase == "Succeeded");
    sync == "Synced" && at == revision && succeeded
}

/// Whether the Application's health has followed its objects to an end: once the Rollout has
/// settled the Application is reconciled again, and until then it may still say Progressing.
pub async fn health_settled(client: &Client, namespace: &str) -> bool {
    read_application(client, namespace)
        .await
        .is_some_and(|app| {
            let (_, _, health) = summary(&app);
            !matches!(health.as_str(), "" | "Progressing" | "Unknown")
        })
}

/// The trial's Application, `None` when it cannot be read (yet).
async fn read_application(client: &Client, namespace: &str) -> Option<Application> {
    Api::<Application>::namespaced(client.clone(), namespace)
        .get(APP)
        .await
        .ok()
}

/// The Application and the objects only Git owns, in words that do not depend on the run.
pub async fn state(
    client: &Client,
    namespace: &str,
    source: &GitSource,
) -> Result<Vec<String>, String> {
    let app = Api::<Application>::namespaced(client.clone(), namespace)
        .get(APP)
        .await
        .map_err(|e| format!("reading Application {namespace}/{APP}: {e}"))?;
    let (sync, revision, health) = summary(&app);
    let status = app.status.clone().unwrap_or_default();
    let operation = status
        .operation_state
        .as_ref()
        .map(|op| op.phase.clone())
        .unwrap_or_default();
    let history: Vec<String> = status
        .history
        .iter()
        .flatten()
        .map(|h| source.name_of(&h.revision))
        .collect();
    let mut lines = vec![format!(
        "Application {APP}: {sync} at {}, {health}, last operation {operation}, history {history:?}",
        source.name_of(&revision)
    )];
    let mut maps: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing ConfigMaps in {namespace}: {e}"))?
        .items
        .iter()
        .filter(|m| m.name_any().starts_with("settings-"))
        .map(|m| {
            let data: BTreeMap<String, String> = m.data.clone().unwrap_or_default();
            format!("ConfigMap {} {data:?}", m.name_any())
        })
        .collect();
    maps.sort();
    lines.extend(maps);
    let backend = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt("backend")
        .await
        .map_err(|e| format!("reading Deployment {namespace}/backend: {e}"))?;
    lines.push(match backend {
        Some(d) => {
            let image = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let status = d.status.unwrap_or_default();
            format!(
                "Deployment backend {image}: updated {}, available {}",
                status.updated_replicas.unwrap_or(0),
                status.available_replicas.unwrap_or(0)
            )
        }
        None => "Deployment backend missing".into(),
    });
    Ok(lines)
}

/// The GitOps invariants on a history: no object the last commit holds (`kept`) deleted, and
/// the Application's synced revision never going back to an older commit.
pub fn check(history: &[Observed], kept: &[(Kind, String)], source: &GitSource) -> Vec<String> {
    let mut breaks: Vec<String> = deletions(history)
        .into_iter()
        .filter(|(_, kind, name)| kept.iter().any(|(k, n)| k == kind && n == name))
        .map(|(rv, kind, name)| {
            format!("rv {rv}: {kind:?} {name} was deleted though Git still has it")
        })
        .collect();
    let mut versions: Vec<&Observed> = history
        .iter()
        .filter(|o| o.kind == Kind::Application && !o.deleted)
        .collect();
    versions.sort_by_key(|o| o.rv);
    let mut newest: Option<(usize, u64)> = None;
    for version in versions {
        let Some(index) = version
            .object
            .pointer("/status/sync/revision")
            .and_then(Value::as_str)
            .and_then(|r| source.commits.iter().position(|c| c == r))
        else {
            continue;
        };
        match newest {
            Some((was, at)) if index < was => {
                breaks.push(format!(
                    "rv {}: Application {APP} status.sync.revision went back from commit {} (rv {at}) to commit {}",
                    version.rv,
                    was + 1,
                    index + 1
                ));
                break;
            }
            _ => newest = Some((index, version.rv)),
        }
    }
    breaks
}
