//! Everything the story runs on, started in order and stopped in reverse: a private test
//! cluster, Prometheus, the Git repository and its `git daemon`, Ramp (the Rollout controller
//! with the AnalysisRun runner, and the GitOps reconciler with its webhook), and the demo
//! processes under load.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;

use super::fleet::Fleet;
use super::manifests;
use super::progress::Progress;
use crate::cluster::{ClusterOptions, TestCluster};
use crate::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use crate::fixtures::gitops::{GitopsRunner, install_crds};
use crate::fixtures::prometheus::Prometheus;
use crate::fixtures::rollouts::{InProcessController, install_rollout_crds};

/// The namespace the demo app lives in.
pub const NAMESPACE: &str = "playground";

/// A running playground.
pub struct World {
    pub cluster: TestCluster,
    pub prometheus: Arc<Prometheus>,
    pub repo: GitRepo,
    pub daemon: GitDaemon,
    pub controller: InProcessController,
    pub gitops: GitopsRunner,
    pub fleet: Fleet,
    pub namespace: String,
    /// Logs of the playground and its demo processes.
    pub dir: PathBuf,
}

impl World {
    /// Starts everything, printing what started.
    pub async fn start(dir: PathBuf, progress: &Progress) -> Result<World, String> {
        let began = Instant::now();
        let cluster = TestCluster::start(ClusterOptions::default())
            .await
            .map_err(|e| format!("starting the test cluster: {e}"))?;
        progress.line(&format!(
            "cluster: kube-apiserver 1.20.2 at {} with a simulated kubelet, up in {:.1}s",
            cluster.server_url(),
            began.elapsed().as_secs_f64()
        ));
        progress.line(&format!(
            "cluster: kubeconfig {}",
            cluster.kubeconfig_path().display()
        ));
        let client = cluster.client();
        let namespace = NAMESPACE.to_string();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .map_err(|e| e.to_string())?;
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("creating namespace {namespace}: {e}"))?;
        install_rollout_crds(&client).await?;
        install_crds(&client, &["applications.argoproj.io"]).await?;

        let prometheus = Arc::new(
            Prometheus::start()
                .await
                .map_err(|e| format!("starting Prometheus: {e}"))?,
        );
        progress.line(&format!("prometheus: {} (1s scrapes)", prometheus.url()));

        let repo = GitRepo::new().map_err(|e| format!("creating the Git repository: {e}"))?;
        let daemon = GitDaemon::serve(&repo).map_err(|e| format!("starting git daemon: {e}"))?;
        let write = |path: &str, text: &str| {
            repo.write(path, text)
                .map_err(|e| format!("writing {path} in the Git repository: {e}"))
        };
        write(
            manifests::CHILD_APP_PATH,
            &manifests::child_application(&namespace, &daemon.url()),
        )?;
        write(manifests::SERVICES_PATH, &manifests::services())?;
        write(manifests::ANALYSIS_PATH, &manifests::analysis_template())?;
        write(
            manifests::ROLLOUT_PATH,
            &manifests::rollout(manifests::FIRST),
        )?;
        let first = repo
            .commit("demo 1.0")
            .map_err(|e| format!("committing demo 1.0: {e}"))?;
        progress.line(&format!(
            "git: {} (served as {}), committed {} \"demo 1.0\"",
            repo.path().display(),
            daemon.url(),
            &first[..7]
        ));

        let address = prometheus.url();
        let controller = InProcessController::start(cluster.kubeconfig_path(), &namespace, |c| {
            c.analysis = true;
            c.prometheus_address = Some(address);
        })
        .await
        .map_err(|e| format!("starting the Ramp controller: {e}"))?;
        let gitops = GitopsRunner::start(client.clone(), &namespace, |c| {
            c.poll_interval = std::time::Duration::from_secs(5);
        })
        .await
        .map_err(|e| format!("starting the GitOps reconciler: {e}"))?;
        progress.line(&format!(
            "ramp: Rollout controller, AnalysisRun runner and GitOps reconciler running (metrics http://{}/metrics, webhook http://{}/api/webhook)",
            controller.bound.metrics, gitops.webhook
        ));
        let fleet = Fleet::start(client, &namespace, prometheus.clone(), &dir)?;
        Ok(World {
            cluster,
            prometheus,
            repo,
            daemon,
            controller,
            gitops,
            fleet,
            namespace,
            dir,
        })
    }

    /// Announces the repository's new head through the GitOps webhook, as a Git host would.
    pub async fn push(&self) -> Result<(), String> {
        let status = post_github_push(self.gitops.webhook, &self.daemon.url(), "main", None)
            .await
            .map_err(|e| format!("posting the push webhook: {e}"))?;
        if status != 200 {
            return Err(format!("the GitOps webhook answered {status}"));
        }
        Ok(())
    }

    /// Stops everything: traffic and demo processes, Ramp, Git, Prometheus, the cluster.
    pub async fn stop(self) {
        let World {
            mut cluster,
            prometheus,
            repo,
            daemon,
            controller,
            gitops,
            fleet,
            ..
        } = self;
        fleet.stop().await;
        drop(gitops);
        let _ = controller.stop().await;
        drop(daemon);
        drop(repo);
        drop(prometheus);
        cluster.stop();
    }
}
