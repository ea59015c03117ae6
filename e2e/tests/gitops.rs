//! GitOps scenarios against the test cluster: real Git repositories (made with `git`, served
//! by `git daemon`), Ramp's reconciler in-process, pushes through its webhook.
//!
//! Where a scenario needs the Rollout controller's reaction to a commit (a canary starting),
//! the controller runs in-process beside the reconciler, as `ramp-controller run --gitops` does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_controller::gitops::Application;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use ramp_e2e::fixtures::gitops::{
    GitopsRunner, application, conditions, install_crds, summary, wait_for,
};
use ramp_e2e::fixtures::rbac::ChartRelease;
use ramp_e2e::fixtures::rollouts::{
    InProcessController, healthy, install_rollout_crds, phase, replica_sets, wait_rollout,
};
use serde_json::{Value, json};

const APPLICATION_CRD: &str = "applications.argoproj.io";
const WAIT: Duration = Duration::from_secs(60);

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One scenario's world: a namespace, a repository served by `git daemon`, the reconciler.
struct Scenario {
    env: TestEnv,
    repo: GitRepo,
    daemon: GitDaemon,
    gitops: GitopsRunner,
}

impl Scenario {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        Scenario::start_managing(|_| Vec::new()).await
    }

    /// A scenario whose repository also holds the kinds `extra(namespace)` lists (chart
    /// `gitops.managedResources` entries the reconciler's RBAC gets on top of the defaults).
    async fn start_managing(
        extra: impl FnOnce(&str) -> Vec<Value>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_crds(&env.client(), &[APPLICATION_CRD]).await?;
        let repo = GitRepo::new()?;
        repo.write("README.md", "manifests for the GitOps scenarios\n")?;
        repo.commit("init")?;
        let daemon = GitDaemon::serve(&repo)?;
        let release = ChartRelease::gitops_managing(&extra(env.namespace()))?;
        let gitops =
            GitopsRunner::start_as(env.client(), env.namespace(), &release, |_| {}).await?;
        Ok(Scenario {
            env,
            repo,
            daemon,
            gitops,
        })
    }

    fn client(&self) -> Client {
        self.env.client()
    }

    fn ns(&self) -> &str {
        self.env.namespace()
    }

    fn apps(&self) -> Api<Application> {
        Api::namespaced(self.client(), self.ns())
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client(), self.ns())
    }

    async fn create_app(
        &self,
        name: &str,
        path: &str,
        automated: Value,
    ) -> Result<(), kube::Error> {
        let app = application(name, self.ns(), &self.daemon.url(), path, automated);
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .map(|_| ())
    }

    /// Commits and announces the commit through the webhook, as a Git host would.
    async fn commit_and_push(&self, message: &str) -> Result<String, Box<dyn std::error::Error>> {
        let commit = self.repo.commit(message)?;
        let status =
            post_github_push(self.gitops.webhook, &self.daemon.url(), "main", None).await?;
        assert_eq!(status, 200, "webhook answered {status}");
        Ok(commit)
    }

    /// Waits until the application is Synced at `revision`.
    async fn synced_at(&self, name: &str, revision: &str) -> Result<Application, String> {
        let apps = self.apps();
        wait_for(&format!("{name} Synced at {revision}"), WAIT, || async {
            let app = apps.get_opt(name).await.ok().flatten()?;
            let (sync, at, _) = summary(&app);
            (sync == "Synced" && at == revision).then_some(app)
        })
        .await
    }

    async fn app(&self, name: &str) -> Result<Application, kube::Error> {
        self.apps().get(name).await
    }

    async fn config_map(&self, name: &str) -> Option<ConfigMap> {
        self.config_maps().get_opt(name).await.ok().flatten()
    }
}

fn config_map(name: &str, data: &[(&str, &str)], annotations: &[(&str, &str)]) -> String {
    let mut text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        text.push_str("  annotations:\n");
        for (key, value) in annotations {
            text.push_str(&format!("    {key}: \"{value}\"\n"));
        }
    }
    text.push_str("data:\n");
    for (key, value) in data {
        text.push_str(&format!("  {key}: \"{value}\"\n"));
    }
    text
}

/// resourceVersions of the config maps an application manages (not the namespace's own
/// `kube-root-ca.crt`).
fn resource_versions(maps: &[ConfigMap]) -> BTreeMap<String, String> {
    maps.iter()
        .filter(|m| {
            m.annotations()
                .contains_key("argocd.argoproj.io/tracking-id")
        })
        .map(|m| (m.name_any(), m.resource_version().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_removed_file_is_pruned_and_a_revert_brings_it_back() -> TestResult {
    let s = Scenario::start().await?;
    s.repo
        .write("app/a.yaml", &config_map("a", &[("k", "1")], &[]))?;
    s.repo
        .write("app/b.yaml", &config_map("b", &[("k", "2")], &[]))?;
    let first = s.repo.commit("two config maps")?;
    s.create_app("prune", "app", json!({"prune": true})).await?;
    let app = s.synced_at("prune", &first).await?;
    assert_eq!(summary(&app).2, "Healthy");
    let b = s.config_map("b").await.ok_or("b was not created")?;
    assert_eq!(
        b.annotations()
            .get("argocd.argoproj.io/tracking-id")
            .map(String::as_str),
        Some(format!("{ns}_prune:/ConfigMap:{ns}/b", ns = s.ns())).as_deref()
    );

    s.repo.remove("app/b.yaml")?;
    let removed = s.commit_and_push("remove b").await?;
    s.synced_at("prune", &removed).await?;
    assert!(s.config_map("b").await.is_none(), "b must be pruned");
    assert!(s.config_map("a").await.is_some(), "a must stay");

    let reverted = s.repo.revert_head()?;
    post_github_push(s.gitops.webhook, &s.daemon.url(), "main", None).await?;
    let app = s.synced_at("prune", &reverted).await?;
    assert_eq!(
        s.config_map("b")
            .await
            .and_then(|b| b.data)
            .and_then(|d| d.get("k").cloned())
            .as_deref(),
        Some("2")
    );
    let history = app.status.and_then(|st| st.history).unwrap_or_default();
    let revisions: Vec<&str> = history.iter().map(|h| h.revision.as_str()).collect();
    assert_eq!(
        revisions,
        [first.as_str(), removed.as_str(), reverted.as_str()]
    );
    Ok(())
}

#[tokio::test]
async fn manual_edits_and_deletions_are_healed_within_seconds() -> TestResult {
    let s = Scenario::start().await?;
    s.repo.write(
        "app/settings.yaml",
        &config_map("settings", &[("mode", "safe")], &[]),
    )?;
    let commit = s.repo.commit("settings")?;
    s.create_app("heal", "app", json!({"prune": true, "selfHeal": true}))
        .await?;
    s.synced_at("heal", &commit).await?;

    // kubectl edit: change a managed field.
    let edit = json!({"data": {"mode": "fast"}});
    s.config_maps()
        .patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    let started = Instant::now();
    let maps = s.config_maps();
    wait_for(
        "the edit to be reverted",
        Duration::from_secs(10),
        || async {
            let map = maps.get_opt("settings").await.ok().flatten()?;
            (map.data?.get("mode")?.as_str() == "safe").then_some(())
        },
    )
    .await?;
    let healed_in = started.elapsed();
    assert!(
        healed_in < Duration::from_secs(5),
        "healing took {healed_in:?}"
    );

    // kubectl delete: the object comes back.
    s.config_maps()
        .delete("settings", &DeleteParams::default())
        .await?;
    wait_for(
        "the deleted object to be recreated",
        Duration::from_secs(10),
        || async {
            maps.get_opt("settings")
                .await
                .ok()
                .flatten()
                .filter(|m| m.metadata.deletion_timestamp.is_none())
        },
    )
    .await?;
    s.synced_at("heal", &commit).await?;
    Ok(())
}

#[tokio::test]
async fn a_no_op_sync_writes_nothing() -> TestResult {
    let s = Scenario::start().await?;
    for i in 0..20 {
        s.repo.write(
            &format!("app/cm-{i:02}.yaml"),
            &config_map(&format!("cm-{i:02}"), &[("i", &i.to_string())], &[]),
        )?;
    }
    let commit = s.repo.commit("twenty config maps")?;
    s.create_app("noop", "app", json!({"prune": true, "selfHeal": true}))
        .await?;
    s.synced_at("noop", &commit).await?;
    let before = resource_versions(&s.config_maps().list(&Default::default()).await?.items);
    assert_eq!(before.len(), 20);

    // A push for the same commit and a hard refresh: both fetch and compare, neither writes.
    post_github_push(s.gitops.webhook, &s.daemon.url(), "main", None).await?;
    let refresh = json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}});
    s.apps()
        .patch("noop", &PatchParams::default(), &Patch::Merge(&refresh))
        .await?;
    let apps = s.apps();
    wait_for("the refresh annotation to be handled", WAIT, || async {
        let app = apps.get_opt("noop").await.ok().flatten()?;
        (!app.annotations().contains_key("argocd.argoproj.io/refresh")).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = resource_versions(&s.config_maps().list(&Default::default()).await?.items);
    assert_eq!(
        before, after,
        "a sync with nothing to change must not write"
    );
    let app = s.app("noop").await?;
    assert_eq!(summary(&app).0, "Synced");
    Ok(())
}

#[tokio::test]
async fn a_broken_commit_changes_nothing_and_names_the_file_and_line() -> TestResult {
    let s = Scenario::start().await?;
    s.repo
        .write("app/a.yaml", &config_map("a", &[("v", "1")], &[]))?;
    s.repo
        .write("app/b.yaml", &config_map("b", &[("v", "1")], &[]))?;
    let good = s.repo.commit("good")?;
    s.create_app("strict", "app", json!({"prune": true, "selfHeal": true}))
        .await?;
    s.synced_at("strict", &good).await?;
    let before = resource_versions(&s.config_maps().list(&Default::default()).await?.items);

    // One commit that changes a, removes b and breaks c: none of it may happen.
    s.repo
        .write("app/a.yaml", &config_map("a", &[("v", "2")], &[]))?;
    s.repo.remove("app/b.yaml")?;
    s.repo.write(
        "app/c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: [unclosed\n",
    )?;
    let broken = s.commit_and_push("broken yaml").await?;
    let apps = s.apps();
    let app = wait_for("a ComparisonError naming c.yaml", WAIT, || async {
        let app = apps.get_opt("strict").await.ok().flatten()?;
        let messages = conditions(&app, "ComparisonError");
        messages
            .iter()
            .any(|m| m.contains("c.yaml:"))
            .then_some(app)
    })
    .await?;
    let message = conditions(&app, "ComparisonError").join("\n");
    assert!(message.contains(&broken[..10]), "{message}");
    assert!(
        message.contains("nothing was applied or pruned"),
        "{message}"
    );
    assert_eq!(summary(&app).0, "Unknown");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resource_versions(&s.config_maps().list(&Default::default()).await?.items);
    assert_eq!(before, after, "the last good state must stay untouched");

    // A duplicate object is refused the same way.
    s.repo
        .write("app/c.yaml", &config_map("a", &[("v", "3")], &[]))?;
    s.commit_and_push("duplicate a").await?;
    wait_for("a ComparisonError naming the duplicate", WAIT, || async {
        let app = apps.get_opt("strict").await.ok().flatten()?;
        conditions(&app, "ComparisonError")
            .iter()
            .any(|m| m.contains("is also defined at a.yaml:1"))
            .then_some(())
    })
    .await?;
    assert_eq!(
        before,
        resource_versions(&s.config_maps().list(&Default::default()).await?.items)
    );

    // Fixed: everything in the commit happens.
    s.repo.remove("app/c.yaml")?;
    let fixed = s.commit_and_push("fix").await?;
    let app = s.synced_at("strict", &fixed).await?;
    assert!(conditions(&app, "ComparisonError").is_empty());
    assert!(s.config_map("b").await.is_none());
    assert_eq!(
        s.config_map("a")
            .await
            .and_then(|m| m.data)
            .and_then(|d| d.get("v").cloned())
            .as_deref(),
        Some("2")
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_remote_is_a_condition_and_prunes_nothing() -> TestResult {
    let mut s = Scenario::start().await?;
    s.repo
        .write("app/a.yaml", &config_map("a", &[("v", "1")], &[]))?;
    s.repo
        .write("app/b.yaml", &config_map("b", &[("v", "1")], &[]))?;
    s.repo.write(
        "app/README.md",
        "not a manifest: keeps the directory when the manifests go\n",
    )?;
    let commit = s.repo.commit("a and b")?;
    s.create_app("remote", "app", json!({"prune": true}))
        .await?;
    s.synced_at("remote", &commit).await?;

    s.daemon.stop();
    s.repo.remove("app/a.yaml")?;
    s.repo.commit("remove a while the remote is down")?;
    post_github_push(s.gitops.webhook, &s.daemon.url(), "main", None).await?;
    let apps = s.apps();
    let app = wait_for("a ComparisonError about the fetch", WAIT, || async {
        let app = apps.get_opt("remote").await.ok().flatten()?;
        conditions(&app, "ComparisonError")
            .iter()
            .any(|m| m.contains("Failed to load target state"))
            .then_some(app)
    })
    .await?;
    assert!(conditions(&app, "ComparisonError")[0].contains(&s.daemon.url()));
    assert_eq!(summary(&app).0, "Unknown");
    assert!(
        s.config_map("a").await.is_some(),
        "nothing may be pruned while Git is unreachable"
    );

    s.daemon.restart()?;
    let head = s.repo.head()?;
    post_github_push(s.gitops.webhook, &s.daemon.url(), "main", None).await?;
    let app = s.synced_at("remote", &head).await?;
    assert!(conditions(&app, "ComparisonError").is_empty());
    assert!(s.config_map("a").await.is_none());
    assert!(s.config_map("b").await.is_some());

    // Git now empty: an automated prune of everything needs allowEmpty.
    s.repo.remove("app/b.yaml")?;
    let empty = s.commit_and_push("remove everything").await?;
    let app = wait_for("the empty revision to be refused", WAIT, || async {
        let app = apps.get_opt("remote").await.ok().flatten()?;
        let refused = conditions(&app, "SyncSkippedWarning")
            .iter()
            .any(|m| m.contains("allowEmpty"));
        (refused && summary(&app).1 == empty).then_some(app)
    })
    .await?;
    assert_eq!(summary(&app).0, "OutOfSync");
    assert!(s.config_map("b").await.is_some());
    Ok(())
}

#[tokio::test]
async fn waves_apply_in_order_each_after_the_previous_is_healthy() -> TestResult {
    let s = Scenario::start().await?;
    s.repo.write(
        "app/first.yaml",
        &config_map(
            "first",
            &[("wave", "-1")],
            &[("argocd.argoproj.io/sync-wave", "-1")],
        ),
    )?;
    s.repo.write(
        "app/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n      annotations:\n        ramp.e2e/ready-after: 2s\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
    )?;
    s.repo.write(
        "app/last.yaml",
        &config_map(
            "last",
            &[("wave", "1")],
            &[("argocd.argoproj.io/sync-wave", "1")],
        ),
    )?;
    let commit = s.repo.commit("three waves")?;
    s.create_app("waves", "app", json!({"prune": true})).await?;

    // Watch the order in which the objects appear, and the Deployment's state when wave 1 does.
    let deployments: Api<Deployment> = Api::namespaced(s.client(), s.ns());
    let mut seen: Vec<&str> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut web_available_when_last_appeared = None;
    while seen.len() < 3 && Instant::now() < deadline {
        // Looked for in the reverse of the expected order, recorded in the expected order: an
        // object present while one expected before it is still absent when looked for just
        // after proves the order wrong (looking the other way round, "first" created between
        // two lookups would pass for coming after "web").
        let last = s.config_map("last").await.is_some();
        let web = deployments.get_opt("web").await?;
        let first = s.config_map("first").await.is_some();
        if last && !seen.contains(&"last") {
            web_available_when_last_appeared = web
                .as_ref()
                .and_then(|d| d.status.as_ref())
                .and_then(|st| st.available_replicas);
        }
        for (name, present) in [("first", first), ("web", web.is_some()), ("last", last)] {
            if present && !seen.contains(&name) {
                seen.push(name);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, ["first", "web", "last"]);
    assert_eq!(
        web_available_when_last_appeared,
        Some(2),
        "wave 1 must wait for wave 0 to be healthy"
    );
    let app = s.synced_at("waves", &commit).await?;
    assert_eq!(summary(&app).2, "Healthy");
    Ok(())
}

#[tokio::test]
async fn an_image_commit_starts_the_canary() -> TestResult {
    let s = Scenario::start().await?;
    install_rollout_crds(&s.client()).await?;
    let rollout = |image: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: shop\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {{app: shop}}\n  template:\n    metadata:\n      labels: {{app: shop}}\n    spec:\n      containers:\n      - name: shop\n        image: {image}\n  strategy:\n    canary:\n      steps:\n      - setWeight: 20\n      - pause: {{}}\n"
        )
    };
    s.repo.write("app/rollout.yaml", &rollout("shop:1.0"))?;
    s.repo.write("app/service.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector: {app: shop}\n  ports:\n  - port: 80\n")?;
    let first = s.repo.commit("shop 1.0")?;
    // The Rollout controller runs beside the reconciler, as in `ramp-controller run --gitops`.
    let _controller = InProcessController::start(s.env.kubeconfig_path(), s.ns(), |_| {}).await?;
    s.create_app("shop", "app", json!({"prune": true, "selfHeal": true}))
        .await?;
    s.synced_at("shop", &first).await?;

    let rollouts: Api<Rollout> = Api::namespaced(s.client(), s.ns());
    let image = |rollout: &Rollout| {
        rollout
            .spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
    };
    let stable = wait_rollout(&rollouts, "shop", "Healthy on shop:1.0", WAIT, |r| {
        healthy(r) && image(r).as_deref() == Some("shop:1.0")
    })
    .await?;
    let stable_hash = stable
        .status
        .and_then(|st| st.stable_rs)
        .ok_or("the healthy Rollout names no stable ReplicaSet")?;

    s.repo.write("app/rollout.yaml", &rollout("shop:1.1"))?;
    let second = s.commit_and_push("shop 1.1").await?;
    let app = s.synced_at("shop", &second).await?;
    let operation = app
        .status
        .and_then(|st| st.operation_state)
        .ok_or("no operation state")?;
    assert_eq!(operation.phase, "Succeeded");
    let results = operation
        .sync_result
        .and_then(|r| r.resources)
        .unwrap_or_default();
    assert!(
        results
            .iter()
            .any(|r| r.kind == "Rollout" && r.status.as_deref() == Some("Synced")),
        "the Rollout was out of sync and got synced: {results:?}"
    );
    assert!(
        !results.iter().any(|r| r.kind == "Service"),
        "the unchanged Service is not rewritten"
    );

    // The commit started a canary: a new ReplicaSet for shop:1.1 at step 1 (the pause),
    // the stable ReplicaSet still the one of shop:1.0.
    let canary = wait_rollout(
        &rollouts,
        "shop",
        "paused at step 1 with a canary",
        WAIT,
        |r| {
            let Some(st) = r.status.as_ref() else {
                return false;
            };
            image(r).as_deref() == Some("shop:1.1")
                && phase(r) == Some(RolloutPhase::Paused)
                && st.current_step_index == Some(1)
                && st.current_pod_hash.is_some()
                && st.current_pod_hash != st.stable_rs
        },
    )
    .await?;
    let status = canary.status.ok_or("no status")?;
    assert_eq!(status.stable_rs.as_deref(), Some(stable_hash.as_str()));
    let canary_hash = status.current_pod_hash.ok_or("no canary hash")?;
    // 20% of 3 replicas by replica counts, as Argo approximates it: 1 canary beside 3 stable
    // (25%) is closer to 20% than 1 beside 2 (33%), and maxSurge (25%: one pod) allows it.
    let (client, ns) = (s.client(), s.ns().to_string());
    let sized = wait_for("1 canary and 3 stable replicas", WAIT, || {
        let client = client.clone();
        let (ns, canary_hash, stable_hash) = (ns.clone(), canary_hash.clone(), stable_hash.clone());
        async move {
            let sets = replica_sets(&client, &ns, "shop").await.ok()?;
            let size = |hash: &str| {
                sets.iter()
                    .find(|(h, ..)| h == hash)
                    .map(|(_, spec, _)| *spec)
            };
            (size(&canary_hash) == Some(1) && size(&stable_hash) == Some(3)).then_some(())
        }
    })
    .await;
    if let Err(e) = sized {
        let sets = replica_sets(&s.client(), s.ns(), "shop").await?;
        return Err(format!("{e}; ReplicaSets (hash, spec, available): {sets:?}").into());
    }
    Ok(())
}

#[tokio::test]
async fn app_of_apps_bootstraps_its_children_and_a_crd_with_its_objects() -> TestResult {
    // The platform app ships a CRD and one of its objects: kinds a chart user adds.
    let s = Scenario::start_managing(|ns| {
        vec![
            json!({"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"]}),
            json!({"apiGroups": [format!("{ns}.e2e.ramp.dev")], "resources": ["widgets"]}),
        ]
    })
    .await?;
    let group = format!("{}.e2e.ramp.dev", s.ns());
    let child = |name: &str, path: &str, wave: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    argocd.argoproj.io/sync-wave: \"{wave}\"\n  finalizers:\n  - resources-finalizer.argocd.argoproj.io\nspec:\n  project: default\n  source:\n    repoURL: {url}\n    targetRevision: HEAD\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
            ns = s.ns(),
            url = s.daemon.url()
        )
    };
    s.repo
        .write("apps/platform.yaml", &child("platform", "platform", "0"))?;
    s.repo
        .write("apps/shop.yaml", &child("shop", "shop", "1"))?;
    s.repo.write(
        "platform/crd.yaml",
        &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
        ),
    )?;
    s.repo.write(
        "platform/widget.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  teeth: 12\n"
        ),
    )?;
    s.repo.write(
        "shop/cm.yaml",
        &config_map("shop", &[("currency", "EUR")], &[]),
    )?;
    let commit = s.repo.commit("app of apps")?;
    s.create_app("root", "apps", json!({"prune": true, "selfHeal": true}))
        .await?;

    let root = s.synced_at("root", &commit).await?;
    s.synced_at("platform", &commit).await?;
    s.synced_at("shop", &commit).await?;
    let apps = s.apps();
    let root = wait_for("root Healthy", WAIT, || async {
        let app = apps.get_opt("root").await.ok().flatten()?;
        (summary(&app).2 == "Healthy").then_some(app)
    })
    .await
    .unwrap_or(root);
    assert_eq!(summary(&root).2, "Healthy");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        s.client(),
        s.ns(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(&group, "v1", "Widget"),
            "widgets",
        ),
    );
    let gear = widgets.get("gear").await?;
    assert_eq!(gear.data.pointer("/spec/teeth"), Some(&json!(12)));
    assert!(s.config_map("shop").await.is_some());
    let platform = s.app("platform").await?;
    let shop = s.app("shop").await?;
    assert!(
        platform.creation_timestamp() <= shop.creation_timestamp(),
        "wave 0 child before wave 1 child"
    );

    // Deleting the root app (no finalizer) leaves its children; deleting a child with the
    // resources finalizer deletes what it deployed, the CRD and its Widget included.
    s.apps().delete("root", &DeleteParams::default()).await?;
    wait_for("root to be deleted", WAIT, || async {
        apps.get_opt("root").await.ok()?.is_none().then_some(())
    })
    .await?;
    assert!(
        apps.get_opt("platform").await?.is_some(),
        "children outlive a root without finalizer"
    );
    s.apps()
        .delete("platform", &DeleteParams::default())
        .await?;
    s.apps().delete("shop", &DeleteParams::default()).await?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.client());
    let crd_name = format!("widgets.{group}");
    let maps = s.config_maps();
    wait_for(
        "the children and what they deployed to be deleted",
        WAIT,
        || async {
            let apps_gone = apps.get_opt("platform").await.ok()?.is_none()
                && apps.get_opt("shop").await.ok()?.is_none();
            let crd_gone = crds.get_opt(&crd_name).await.ok()?.is_none();
            let map_gone = maps.get_opt("shop").await.ok()?.is_none();
            (apps_gone && crd_gone && map_gone).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn unsupported_specs_get_clear_conditions() -> TestResult {
    let s = Scenario::start().await?;
    let mut remote = application("remote-cluster", s.ns(), &s.daemon.url(), "app", json!({}));
    remote.spec.destination.server = Some("https://10.1.2.3:6443".into());
    s.apps().create(&PostParams::default(), &remote).await?;
    s.repo
        .write("kustomize/kustomization.yaml", "resources: [cm.yaml]\n")?;
    s.repo
        .write("kustomize/cm.yaml", &config_map("k", &[("a", "b")], &[]))?;
    s.repo.commit("kustomize")?;
    s.create_app("kustomize", "kustomize", json!({"prune": true}))
        .await?;
    let apps = s.apps();
    wait_for("InvalidSpecError for the remote cluster", WAIT, || async {
        let app = apps.get_opt("remote-cluster").await.ok().flatten()?;
        conditions(&app, "InvalidSpecError")
            .iter()
            .any(|m| m.contains("own cluster"))
            .then_some(())
    })
    .await?;
    wait_for("Kustomize not supported", WAIT, || async {
        let app = apps.get_opt("kustomize").await.ok().flatten()?;
        conditions(&app, "ComparisonError")
            .iter()
            .any(|m| m.contains("Kustomize sources are not supported"))
            .then_some(())
    })
    .await?;
    assert!(s.config_map("k").await.is_none());
    Ok(())
}
