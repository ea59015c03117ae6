//! Canary Rollouts judged on real metrics: Ramp's controller (Rollouts and AnalysisRuns
//! in-process) on the test cluster, a real Prometheus (1 s scrapes) scraping a stable and a
//! canary demo-app process, and a load generator splitting real requests between them by the
//! weight Ramp gives the canary.
//!
//! - a healthy canary passes its `result[0] < 0.01` error-rate analysis and is promoted;
//! - a canary answering 10% 5xx is aborted, traffic goes back to stable, and the number of
//!   requests the bad canary served before the abort is reported;
//! - Prometheus stopped mid-analysis: the run ends in Error and the Rollout aborts, never
//!   promoting.

use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ramp_analysis::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate};
use ramp_controller::api::Rollout;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::analysis::{error_rate_query, install_analysis_crds, phase};
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::fixtures::loadgen::{LoadGenerator, LoadOptions, WeightSource};
use ramp_e2e::fixtures::prometheus::{Prometheus, ScrapeTarget};
use ramp_e2e::fixtures::rollouts::{
    InProcessController, canary_rollout, healthy, install_rollout_crds, wait_rollout,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

/// A canary Rollout `web` (5 replicas, 20% canary then analysis) whose stable version is
/// served by `stable` and whose new version by `canary`, under load, with Ramp running.
struct Scene {
    client: Client,
    namespace: String,
    prometheus: Prometheus,
    stable: DemoApp,
    canary: DemoApp,
    load: LoadGenerator,
    rollouts: Api<Rollout>,
    _controller: InProcessController,
}

impl Scene {
    async fn start(
        env: &TestEnv,
        canary_error_rate: f64,
        consecutive_error_limit: i32,
    ) -> Result<Scene, Box<dyn std::error::Error>> {
        let client = env.client();
        let namespace = env.namespace().to_string();
        install_rollout_crds(&client).await?;
        install_analysis_crds(&client).await?;
        let stable = DemoApp::start(DemoAppConfig::new("v1", 0.0)).await?;
        let canary = DemoApp::start(DemoAppConfig::new("v2", canary_error_rate)).await?;
        let prometheus = Prometheus::start().await?;
        prometheus.set_targets(&[
            ScrapeTarget::new(stable.address().to_string()).label("app", "demo"),
            ScrapeTarget::new(canary.address().to_string()).label("app", "demo"),
        ])?;
        prometheus
            .wait_for_targets(2, Duration::from_secs(30))
            .await?;
        let address = prometheus.url();
        let controller = InProcessController::start(env.kubeconfig_path(), &namespace, |c| {
            c.analysis = true;
            c.prometheus_address = Some(address);
        })
        .await?;

        let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), &namespace);
        let template: AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "error-rate"},
            "spec": {
                "args": [{"name": "version"}],
                "metrics": [{
                    "name": "error-rate",
                    // The canary's rate needs a few scrapes of its traffic first.
                    "initialDelay": "5s",
                    "interval": "1s",
                    "count": 5,
                    "successCondition": "len(result) > 0 && result[0] < 0.01",
                    "consecutiveErrorLimit": consecutive_error_limit,
                    "provider": {"prometheus": {"query": error_rate_query("{{args.version}}")}}
                }]
            }
        }))?;
        templates.create(&PostParams::default(), &template).await?;

        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
        let steps = json!({"steps": [
            {"setWeight": 20},
            {"analysis": {"templates": [{"templateName": "error-rate"}],
                          "args": [{"name": "version", "value": "v2"}]}}
        ]});
        rollouts
            .create(
                &PostParams::default(),
                &canary_rollout("web", 5, "demo:1", steps),
            )
            .await?;
        wait_rollout(&rollouts, "web", "Healthy", WAIT, healthy).await?;
        let load = LoadGenerator::start(
            &stable.url(),
            Some(&canary.url()),
            WeightSource::Rollout {
                client: client.clone(),
                namespace: namespace.clone(),
                name: "web".to_string(),
            },
            LoadOptions::default(),
        );
        Ok(Scene {
            client,
            namespace,
            prometheus,
            stable,
            canary,
            load,
            rollouts,
            _controller: controller,
        })
    }

    /// The stable ReplicaSet's hash before the update.
    async fn update(&self) -> Result<String, Box<dyn std::error::Error>> {
        let before = self.rollouts.get("web").await?;
        let stable = before
            .status
            .and_then(|s| s.stable_rs)
            .ok_or("a Healthy Rollout has a stable ReplicaSet")?;
        let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}});
        self.rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(image))
            .await?;
        Ok(stable)
    }

    /// The Rollout's one AnalysisRun, once it exists.
    async fn analysis_run(&self) -> Result<AnalysisRun, Box<dyn std::error::Error>> {
        let runs: Api<AnalysisRun> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = runs.list(&ListParams::default()).await?;
        let mut items = list.items;
        if items.len() != 1 {
            return Err(format!("expected one AnalysisRun, found {}", items.len()).into());
        }
        Ok(items.remove(0))
    }

    fn canary_requests(&self) -> u64 {
        self.load.counts(&self.canary.url()).total()
    }

    fn stable_requests(&self) -> u64 {
        self.load.counts(&self.stable.url()).total()
    }
}

fn aborted(rollout: &Rollout) -> bool {
    rollout.status.as_ref().and_then(|s| s.abort) == Some(true)
}

fn stable_rs(rollout: &Rollout) -> Option<String> {
    rollout.status.as_ref().and_then(|s| s.stable_rs.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_canary_passes_its_analysis_and_is_promoted() -> TestResult {
    let env = for_test().await?;
    let scene = Scene::start(&env, 0.0, 4).await?;
    let old = scene.update().await?;
    let promoted = wait_rollout(&scene.rollouts, "web", "promoted", WAIT, |r| {
        healthy(r) && stable_rs(r).is_some_and(|s| s != old)
    })
    .await?;
    assert!(!aborted(&promoted));
    let run = scene.analysis_run().await?;
    assert_eq!(phase(&run), AnalysisPhase::Successful, "{:?}", run.status);
    let result = &run
        .status
        .as_ref()
        .unwrap()
        .metric_results
        .as_ref()
        .unwrap()[0];
    assert_eq!(result.count, Some(5));
    assert!(
        result
            .measurements
            .iter()
            .flatten()
            .all(|m| m.value.as_deref() == Some("[0]")),
        "{result:?}"
    );
    assert!(
        scene.canary_requests() > 0,
        "the canary served its share while it was analysed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_with_ten_percent_errors_is_aborted() -> TestResult {
    let env = for_test().await?;
    let scene = Scene::start(&env, 0.1, 4).await?;
    let old = scene.update().await?;
    let started = Instant::now();
    let after = wait_rollout(&scene.rollouts, "web", "aborted", WAIT, aborted).await?;
    assert_eq!(stable_rs(&after).as_deref(), Some(old.as_str()));
    let run = scene.analysis_run().await?;
    assert_eq!(phase(&run), AnalysisPhase::Failed, "{:?}", run.status);
    assert_eq!(
        run.status.as_ref().unwrap().message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );

    // Traffic is back on stable: the canary gets nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = scene.canary_requests();
    let stable_before = scene.stable_requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scene.canary_requests(),
        served,
        "no request reaches the aborted canary"
    );
    assert!(scene.stable_requests() > stable_before + 50);
    let counts = scene.load.counts(&scene.canary.url());
    eprintln!(
        "the bad canary served {served} requests ({} answered 5xx) before the abort, {:.1} s after the update",
        counts.errors,
        started.elapsed().as_secs_f64()
    );
    assert!(served > 0 && counts.errors > 0, "{counts:?}");
    let never = wait_rollout(
        &scene.rollouts,
        "web",
        "still on the old stable",
        WAIT,
        |r| stable_rs(r).as_deref() == Some(old.as_str()),
    )
    .await?;
    assert!(aborted(&never));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_stopped_mid_analysis_aborts_and_never_promotes() -> TestResult {
    let env = for_test().await?;
    let mut scene = Scene::start(&env, 0.0, 1).await?;
    let old = scene.update().await?;
    // Let the analysis take a good measurement, then take Prometheus away.
    let began = Instant::now();
    loop {
        if let Ok(run) = scene.analysis_run().await
            && run
                .status
                .as_ref()
                .and_then(|s| s.metric_results.as_ref())
                .is_some_and(|m| m[0].successful.unwrap_or(0) >= 1)
        {
            break;
        }
        assert!(began.elapsed() < WAIT, "no successful measurement");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scene.prometheus.stop();

    let began = Instant::now();
    loop {
        let rollout = scene.rollouts.get("web").await?;
        assert_eq!(
            stable_rs(&rollout).as_deref(),
            Some(old.as_str()),
            "a canary whose analysis cannot measure is never promoted"
        );
        if aborted(&rollout) {
            break;
        }
        assert!(began.elapsed() < WAIT, "no abort: {:?}", rollout.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = scene.analysis_run().await?;
    assert_eq!(phase(&run), AnalysisPhase::Error, "{:?}", run.status);
    let message = run
        .status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "Metric \"error-rate\" assessed Error due to consecutiveErrors (2) > consecutiveErrorLimit (1)"
        ),
        "{message}"
    );
    Ok(())
}
