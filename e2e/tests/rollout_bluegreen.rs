//! Blue-green Rollouts on the test cluster with Ramp's controller in-process, scoped to each
//! test's namespace: every blue-green manifest of Argo Rollouts' reference (the example, the
//! `test/e2e/functional` manifests and the `helm-blue-green` chart rendered by Helm) from its
//! first deploy through an update to its end, manual promotion with `kubectl ramp promote`,
//! `kubectl ramp get` naming the active and preview ReplicaSets, pre-promotion analysis that
//! fails, aborts and is retried, post-promotion analysis whose failure moves the active
//! Service back, an undo within the scale-down delay, activeMetadata/previewMetadata on the
//! running pods as their ReplicaSet's role changes, and the antiAffinity term following the
//! stable revision; previewReplicaCount, autoPromotionSeconds and scaleDownDelayRevisionLimit
//! together.

mod plugin_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_controller::api::{AnalysisRun, AnalysisTemplate, Rollout, RolloutPhase};
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::rollouts::{
    InProcessController, PodMetadata, abort, healthy, install_rollout_crds, phase,
    pods_of_revision, promote, replica_sets, retry, selected_hash, service, size_of, undo,
    wait_for, wait_rollout,
};
use serde_json::{Value, json};

use plugin_support::{Plugin, python};

const WAIT: Duration = Duration::from_secs(90);

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Scenario {
    env: TestEnv,
    _controller: InProcessController,
}

impl Scenario {
    async fn start() -> Result<Scenario, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_rollout_crds(&env.client()).await?;
        let controller =
            InProcessController::start(env.kubeconfig_path(), env.namespace(), |_| {}).await?;
        Ok(Scenario {
            env,
            _controller: controller,
        })
    }

    fn client(&self) -> Client {
        self.env.client()
    }

    fn ns(&self) -> &str {
        self.env.namespace()
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client(), self.ns())
    }

    fn plugin(&self) -> Plugin {
        Plugin::new(self.env.kubeconfig_path(), self.ns())
    }

    async fn apply(&self, yaml: &str) -> Result<(), Box<dyn std::error::Error>> {
        self.env.apply_yaml(yaml).await?;
        Ok(())
    }

    async fn create_services(&self, app: &str) -> Result<(), kube::Error> {
        let services: Api<Service> = Api::namespaced(self.client(), self.ns());
        for name in [format!("{app}-active"), format!("{app}-preview")] {
            services
                .create(&PostParams::default(), &service(&name, app))
                .await?;
        }
        Ok(())
    }

    /// Sets the image of the first container, as `kubectl argo rollouts set image` does
    /// (read, change, replace; again on a conflict with the controller's writes).
    async fn set_image(&self, name: &str, image: &str) -> Result<(), String> {
        let api = self.rollouts();
        wait_for(
            &format!("the image of {name} set to {image}"),
            WAIT,
            || async {
                let mut rollout = api.get(name).await.ok()?;
                let container = rollout
                    .spec
                    .template
                    .as_mut()?
                    .spec
                    .as_mut()?
                    .containers
                    .first_mut()?;
                container.image = Some(image.to_string());
                api.replace(name, &PostParams::default(), &rollout)
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Rollout) -> bool,
    ) -> Result<Rollout, String> {
        wait_rollout(&self.rollouts(), name, what, WAIT, check).await
    }

    async fn selected(&self, service: &str) -> Option<String> {
        selected_hash(&self.client(), self.ns(), service).await
    }

    async fn sizes(&self, app: &str) -> BTreeMap<String, i32> {
        replica_sets(&self.client(), self.ns(), app)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(hash, desired, _)| (hash, desired))
            .collect()
    }

    /// Waits until the ReplicaSet of `hash` is scaled to `size`.
    async fn wait_size(&self, app: &str, hash: &str, size: i32) -> Result<(), String> {
        wait_for(
            &format!("ReplicaSet {hash} of {app} at {size} replicas"),
            WAIT,
            || async {
                // Read, not defaulted: a failed list must not pass for a scaled-down ReplicaSet.
                let sets = replica_sets(&self.client(), self.ns(), app).await.ok()?;
                sets.iter()
                    .any(|(h, desired, _)| h == hash && *desired == size)
                    .then_some(())
            },
        )
        .await
    }
}

fn status_of(rollout: &Rollout) -> ramp_controller::api::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn stable_hash(rollout: &Rollout) -> String {
    status_of(rollout).stable_rs.unwrap_or_default()
}

fn current_hash(rollout: &Rollout) -> String {
    status_of(rollout).current_pod_hash.unwrap_or_default()
}

fn active_selector(rollout: &Rollout) -> String {
    status_of(rollout)
        .blue_green
        .and_then(|b| b.active_selector)
        .unwrap_or_default()
}

fn preview_selector(rollout: &Rollout) -> String {
    status_of(rollout)
        .blue_green
        .and_then(|b| b.preview_selector)
        .unwrap_or_default()
}

/// Healthy on a revision other than `old`.
fn healthy_after(old: &str) -> impl Fn(&Rollout) -> bool + '_ {
    move |r| healthy(r) && stable_hash(r) != old && active_selector(r) == stable_hash(r)
}

fn paused_for_promotion(r: &Rollout) -> bool {
    phase(r) == Some(RolloutPhase::Paused)
        && status_of(r)
            .pause_conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.reason == "BlueGreenPause")
}

/// A file of Argo Rollouts' reference copy.
fn reference(path: &str) -> Result<String, String> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/reference/argo-rollouts")
        .join(path);
    std::fs::read_to_string(&full).map_err(|e| format!("reading {}: {e}", full.display()))
}

/// A blue-green Rollout of `replicas` pods of `image`, selecting `app: NAME`, with the
/// Services `NAME-active` and `NAME-preview` and the extra strategy fields of `blue_green`.
fn blue_green_rollout(name: &str, replicas: i32, image: &str, blue_green: Value) -> Value {
    let mut strategy = json!({
        "activeService": format!("{name}-active"),
        "previewService": format!("{name}-preview"),
    });
    if let (Some(strategy), Some(extra)) = (strategy.as_object_mut(), blue_green.as_object()) {
        for (k, v) in extra {
            strategy.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            },
            "strategy": {"blueGreen": strategy}
        }
    })
}

/// Runs an applied reference manifest to its end: Healthy with both Services on the first
/// revision, then an update of the image to Healthy on the second, the Services following
/// and the old ReplicaSet scaled down after its delay. Returns the two hashes and how long
/// the old ReplicaSet was seen kept at full size after the switch.
async fn run_to_the_end(
    s: &Scenario,
    name: &str,
    app: &str,
    services: (&str, Option<&str>),
    new_image: &str,
) -> Result<(String, String, Duration), Box<dyn std::error::Error>> {
    let (active, preview) = services;
    let first = s.wait(name, "Healthy", healthy).await?;
    let v1 = stable_hash(&first);
    assert_eq!(active_selector(&first), v1);
    assert_eq!(s.selected(active).await.as_deref(), Some(v1.as_str()));
    if let Some(preview) = preview {
        assert_eq!(s.selected(preview).await.as_deref(), Some(v1.as_str()));
        assert_eq!(preview_selector(&first), v1);
    }

    s.set_image(name, new_image).await?;
    let done = s
        .wait(name, "Healthy on the new revision", healthy_after(&v1))
        .await?;
    let v2 = stable_hash(&done);
    assert_eq!(current_hash(&done), v2);
    assert_eq!(s.selected(active).await.as_deref(), Some(v2.as_str()));
    if let Some(preview) = preview {
        assert_eq!(s.selected(preview).await.as_deref(), Some(v2.as_str()));
    }
    let switched = Instant::now();
    let replicas = done.spec.replicas.unwrap_or(1);
    let sizes = s.sizes(app).await;
    assert_eq!(sizes.get(&v2), Some(&replicas));
    assert_eq!(
        sizes.get(&v1),
        Some(&replicas),
        "the old stack stays up after the switch"
    );
    s.wait_size(app, &v1, 0).await?;
    Ok((v1, v2, switched.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_rollout_bluegreen_waits_for_kubectl_ramp_promote() -> TestResult {
    let s = Scenario::start().await?;
    s.apply(&reference("examples/rollout-bluegreen.yaml")?)
        .await?;
    let name = "rollout-bluegreen";
    let (active, preview) = ("rollout-bluegreen-active", "rollout-bluegreen-preview");
    let first = s.wait(name, "Healthy", healthy).await?;
    let v1 = stable_hash(&first);
    assert_eq!(s.selected(active).await.as_deref(), Some(v1.as_str()));
    assert_eq!(s.selected(preview).await.as_deref(), Some(v1.as_str()));

    // autoPromotionEnabled: false — the new stack comes up behind the preview Service only.
    s.set_image(name, "argoproj/rollouts-demo:green").await?;
    let paused = s
        .wait(name, "paused before the switch", paused_for_promotion)
        .await?;
    let v2 = current_hash(&paused);
    assert_ne!(v1, v2);
    assert_eq!(s.selected(active).await.as_deref(), Some(v1.as_str()));
    assert_eq!(s.selected(preview).await.as_deref(), Some(v2.as_str()));
    assert_eq!(
        (active_selector(&paused), preview_selector(&paused)),
        (v1.clone(), v2.clone())
    );
    let sizes = s.sizes(name).await;
    assert_eq!((sizes.get(&v1), sizes.get(&v2)), (Some(&2), Some(&2)));

    let tree = s.plugin().ok(&["get", "rollout", name]).await;
    let line_of = |hash: &str| {
        tree.lines()
            .find(|l| l.contains(&format!("{name}-{hash}")) && l.contains("ReplicaSet"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line_of(&v1).contains("active") && line_of(&v1).contains("stable"),
        "{tree}"
    );
    assert!(line_of(&v2).contains("preview"), "{tree}");

    s.plugin().ok(&["promote", name]).await;
    let done = s.wait(name, "Healthy on green", healthy_after(&v1)).await?;
    assert_eq!(stable_hash(&done), v2);
    assert_eq!(s.selected(active).await.as_deref(), Some(v2.as_str()));
    // The blue stack stays up for scaleDownDelaySeconds (30 s by default), then goes.
    assert_eq!(s.sizes(name).await.get(&v1), Some(&2));
    s.wait_size(name, &v1, 0).await?;
    let tree = s.plugin().ok(&["get", "rollout", name]).await;
    assert!(line_of_in(&tree, name, &v2).contains("active"), "{tree}");
    Ok(())
}

fn line_of_in(tree: &str, name: &str, hash: &str) -> String {
    tree.lines()
        .find(|l| l.contains(&format!("{name}-{hash}")) && l.contains("ReplicaSet"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functional_rollout_bluegreen_promotes_itself_and_scales_down_after_ten_seconds()
-> TestResult {
    let s = Scenario::start().await?;
    s.apply(&reference("test/e2e/functional/rollout-bluegreen.yaml")?)
        .await?;
    let (_, _, kept) = run_to_the_end(
        &s,
        "bluegreen",
        "bluegreen",
        ("bluegreen", None),
        "nginx:1.20-alpine",
    )
    .await?;
    // scaleDownDelaySeconds: 10, its deadline written to the second.
    assert!(
        kept >= Duration::from_secs(8),
        "the old stack was kept only {kept:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functional_bluegreen_duration_template_runs_to_its_end() -> TestResult {
    let s = Scenario::start().await?;
    let yaml = reference("test/e2e/functional/bluegreen-duration-template.yaml")?
        .replace("ROLLOUT_NAME", "bgdur");
    s.apply(&yaml).await?;
    run_to_the_end(
        &s,
        "bgdur",
        "bgdur",
        ("bgdur-active", Some("bgdur-preview")),
        "nginx:1.20-alpine",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functional_alb_bluegreen_rollout_runs_to_its_end() -> TestResult {
    let s = Scenario::start().await?;
    s.apply(&reference(
        "test/e2e/functional/alb-bluegreen-rollout.yaml",
    )?)
    .await?;
    run_to_the_end(
        &s,
        "alb-bluegreen",
        "alb-bluegreen",
        ("alb-bluegreen-stable", Some("alb-bluegreen-desired")),
        "nginx:1.20-alpine",
    )
    .await?;
    Ok(())
}

/// The `helm-blue-green` example chart. Its templates call the `helm-guestbook.*` helpers
/// of the chart it was cut from (`helm create`'s `_helpers.tpl`), which the reference copy
/// does not carry: the copy made here adds Helm's standard definitions of those helpers.
fn helm_blue_green_chart(scratch: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/reference/argo-rollouts/examples/helm-blue-green");
    let chart = scratch.join("helm-blue-green");
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
    };
    std::fs::create_dir_all(chart.join("templates"))
        .map_err(|e| format!("creating {}: {e}", chart.display()))?;
    for file in ["Chart.yaml", "values.yaml"] {
        copy(&source.join(file), &chart.join(file))?;
    }
    for file in ["rollout.yaml", "services.yaml"] {
        copy(
            &source.join("templates").join(file),
            &chart.join("templates").join(file),
        )?;
    }
    let helpers = r#"{{- define "helm-guestbook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "helm-guestbook.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- define "helm-guestbook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
"#;
    let path = chart.join("templates/_helpers.tpl");
    std::fs::write(&path, helpers).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(chart)
}

/// The chart rendered by Helm's engine with `values`, as YAML documents.
fn render_chart(
    chart: &Path,
    values: &Value,
    release: &str,
    namespace: &str,
) -> Result<String, String> {
    let chart = chart.to_string_lossy().into_owned();
    let values = values.to_string();
    let out: Value = serde_json::from_str(&python(
        "helm_chart.py",
        &["render", &chart, &values, release, namespace],
    )?)
    .map_err(|e| e.to_string())?;
    if let Some(error) = out["error"].as_str() {
        return Err(format!("rendering {chart}: {error}"));
    }
    let documents: Vec<&str> = out["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["yaml"].as_str())
        .collect();
    if documents.is_empty() {
        return Err(format!("rendering {chart} produced no document"));
    }
    Ok(documents.join("---\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_blue_green_chart_rendered_by_helm_runs_to_its_end() -> TestResult {
    let s = Scenario::start().await?;
    let chart = helm_blue_green_chart(s.env.scratch_dir())?;
    let release = "guestbook";
    let first = render_chart(&chart, &json!({}), release, s.ns())?;
    assert!(first.contains("kind: Rollout"), "{first}");
    s.apply(&first).await?;
    let name = "guestbook-helm-guestbook";
    let v1 = stable_hash(&s.wait(name, "Healthy", healthy).await?);
    assert_eq!(s.selected(name).await.as_deref(), Some(v1.as_str()));

    // `helm upgrade --set image.tag=0.2`: the same chart rendered with the new tag, applied.
    let second = render_chart(&chart, &json!({"image": {"tag": "0.2"}}), release, s.ns())?;
    s.apply(&second).await?;
    let done = s
        .wait(name, "Healthy on the new tag", healthy_after(&v1))
        .await?;
    let v2 = stable_hash(&done);
    assert_eq!(s.selected(name).await.as_deref(), Some(v2.as_str()));
    assert_eq!(
        s.selected(&format!("{name}-preview")).await.as_deref(),
        Some(v2.as_str())
    );
    let rs = replica_sets(&s.client(), s.ns(), "helm-guestbook").await?;
    assert!(
        rs.iter().any(|(h, desired, _)| *h == v2 && *desired == 1),
        "{rs:?}"
    );
    // Re-applying the chart's Services (as `helm upgrade` does) leaves Ramp's selector alone.
    s.apply(&second).await?;
    assert_eq!(s.selected(name).await.as_deref(), Some(v2.as_str()));
    s.wait_size("helm-guestbook", &v1, 0).await?;
    Ok(())
}

async fn create_template(s: &Scenario) -> TestResult {
    let templates: Api<AnalysisTemplate> = Api::namespaced(s.client(), s.ns());
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {"args": [{"name": "hash"}], "metrics": [{"name": "ok", "provider": {"web": {"url": "http://127.0.0.1:1/{{args.hash}}"}}}]}
    }))?;
    templates.create(&PostParams::default(), &template).await?;
    Ok(())
}

fn smoke() -> Value {
    json!({"templates": [{"templateName": "smoke"}],
           "args": [{"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]})
}

/// Waits for a run of this Rollout whose name starts with `prefix` and that has no verdict
/// yet.
async fn pending_run(s: &Scenario, prefix: &str) -> Result<AnalysisRun, String> {
    let runs: Api<AnalysisRun> = Api::namespaced(s.client(), s.ns());
    wait_for(&format!("an AnalysisRun {prefix}…"), WAIT, || async {
        let list = runs.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|run| {
            let phase = run.status.as_ref().and_then(|s| s.phase);
            run.name_any().starts_with(prefix)
                && phase.is_none_or(|p| !p.completed())
                && run.spec.terminate != Some(true)
        })
    })
    .await
}

async fn set_run_phase(s: &Scenario, run: &str, phase: &str, message: &str) -> TestResult {
    let runs: Api<AnalysisRun> = Api::namespaced(s.client(), s.ns());
    runs.patch_status(
        run,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase, "message": message}})),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pre_promotion_analysis_aborts_and_a_retry_promotes() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("pay").await?;
    create_template(&s).await?;
    let rollout = blue_green_rollout(
        "pay",
        2,
        "demo:1",
        json!({"prePromotionAnalysis": smoke(), "abortScaleDownDelaySeconds": 3}),
    );
    s.rollouts()
        .create(&PostParams::default(), &serde_json::from_value(rollout)?)
        .await?;
    let v1 = stable_hash(&s.wait("pay", "Healthy", healthy).await?);

    s.set_image("pay", "demo:2").await?;
    let run = pending_run(&s, "pay-").await?;
    let v2 = current_hash(&s.rollouts().get("pay").await?);
    assert_eq!(run.name_any(), format!("pay-{v2}-2-pre"));
    assert_eq!(
        run.labels().get("rollout-type").map(String::as_str),
        Some("PrePromotion")
    );
    let args = run.spec.args.clone().unwrap_or_default();
    assert!(
        args.iter()
            .any(|a| a.name == "hash" && a.value.as_deref() == Some(v2.as_str())),
        "{args:?}"
    );
    assert_eq!(
        s.size_while_running("pay", &v2).await,
        2,
        "saturated preview"
    );
    assert_eq!(s.selected("pay-active").await.as_deref(), Some(v1.as_str()));
    assert_eq!(
        s.selected("pay-preview").await.as_deref(),
        Some(v2.as_str())
    );

    set_run_phase(
        &s,
        &run.name_any(),
        "Failed",
        "Metric \"ok\" assessed Failed",
    )
    .await?;
    let aborted = s
        .wait("pay", "Degraded", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    assert!(
        status_of(&aborted)
            .message
            .unwrap_or_default()
            .contains("assessed Failed"),
        "{:?}",
        status_of(&aborted).message
    );
    assert_eq!(s.selected("pay-active").await.as_deref(), Some(v1.as_str()));
    // The preview goes after abortScaleDownDelaySeconds; the active never moved.
    s.wait_size("pay", &v2, 0).await?;
    assert_eq!(s.sizes("pay").await.get(&v1), Some(&2));

    retry(&s.rollouts(), "pay").await?;
    let rerun = pending_run(&s, &format!("pay-{v2}-2-pre")).await?;
    assert_ne!(
        rerun.name_any(),
        run.name_any(),
        "a fresh run after the retry"
    );
    assert_eq!(s.selected("pay-active").await.as_deref(), Some(v1.as_str()));
    set_run_phase(&s, &rerun.name_any(), "Successful", "").await?;
    let done = s.wait("pay", "Healthy on v2", healthy_after(&v1)).await?;
    assert_eq!(stable_hash(&done), v2);
    assert_eq!(s.selected("pay-active").await.as_deref(), Some(v2.as_str()));
    Ok(())
}

impl Scenario {
    async fn size_while_running(&self, app: &str, hash: &str) -> i32 {
        size_of(&self.client(), self.ns(), app, hash).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_promotion_analysis_moves_the_active_service_back() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("shop").await?;
    create_template(&s).await?;
    let rollout = blue_green_rollout(
        "shop",
        2,
        "demo:1",
        json!({"postPromotionAnalysis": smoke(), "scaleDownDelaySeconds": 60}),
    );
    s.rollouts()
        .create(&PostParams::default(), &serde_json::from_value(rollout)?)
        .await?;
    let v1 = stable_hash(&s.wait("shop", "Healthy", healthy).await?);

    s.set_image("shop", "demo:2").await?;
    let run = pending_run(&s, "shop-").await?;
    let verifying = s
        .wait("shop", "switched, verifying", |r| {
            active_selector(r) == current_hash(r) && stable_hash(r) != current_hash(r)
        })
        .await?;
    let v2 = current_hash(&verifying);
    assert_eq!(run.name_any(), format!("shop-{v2}-2-post"));
    assert_eq!(
        s.selected("shop-active").await.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        status_of(&verifying).message.as_deref(),
        Some("waiting for analysis to complete")
    );
    assert_eq!(
        s.sizes("shop").await.get(&v1),
        Some(&2),
        "the old stack stays up"
    );

    set_run_phase(
        &s,
        &run.name_any(),
        "Failed",
        "Metric \"ok\" assessed Failed",
    )
    .await?;
    let aborted = s
        .wait("shop", "Degraded", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    assert_eq!(stable_hash(&aborted), v1);
    wait_for("the active Service back on v1", WAIT, || async {
        (s.selected("shop-active").await.as_deref() == Some(v1.as_str())).then_some(())
    })
    .await?;
    assert_eq!(s.sizes("shop").await.get(&v1), Some(&2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_while_paused_then_undo_within_the_scale_down_delay() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("cart").await?;
    let rollout = blue_green_rollout(
        "cart",
        2,
        "demo:1",
        json!({"autoPromotionEnabled": false, "scaleDownDelaySeconds": 60, "abortScaleDownDelaySeconds": 0}),
    );
    s.rollouts()
        .create(&PostParams::default(), &serde_json::from_value(rollout)?)
        .await?;
    let v1 = stable_hash(&s.wait("cart", "Healthy", healthy).await?);

    // An abort while paused keeps the active Service on v1 (and, with
    // abortScaleDownDelaySeconds: 0, the preview up).
    s.set_image("cart", "demo:2").await?;
    let v2 = current_hash(&s.wait("cart", "paused", paused_for_promotion).await?);
    abort(&s.rollouts(), "cart").await?;
    s.wait("cart", "Degraded", |r| {
        phase(r) == Some(RolloutPhase::Degraded)
    })
    .await?;
    assert_eq!(
        s.selected("cart-active").await.as_deref(),
        Some(v1.as_str())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.sizes("cart").await.get(&v2), Some(&2));

    // Retry, promote: v2 takes over, v1 stays up for its delay.
    retry(&s.rollouts(), "cart").await?;
    s.wait("cart", "paused again", paused_for_promotion).await?;
    promote(&s.rollouts(), "cart").await?;
    s.wait("cart", "Healthy on v2", healthy_after(&v1)).await?;
    assert_eq!(
        s.selected("cart-active").await.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(s.sizes("cart").await.get(&v1), Some(&2));

    // Undo to revision 1 while its pods still run: straight back, no pause.
    undo(&s.client(), s.ns(), "cart", 1).await?;
    let back = s
        .wait("cart", "Healthy on v1 again", healthy_after(&v2))
        .await?;
    assert_eq!(stable_hash(&back), v1);
    assert_eq!(
        s.selected("cart-active").await.as_deref(),
        Some(v1.as_str())
    );
    assert!(
        status_of(&back)
            .pause_conditions
            .unwrap_or_default()
            .is_empty()
    );
    Ok(())
}

/// The pods of the ReplicaSet of `hash` (not being deleted), by name, with their labels and
/// annotations.
async fn pods_of(s: &Scenario, hash: &str) -> Option<BTreeMap<String, PodMetadata>> {
    pods_of_revision(&s.client(), s.ns(), hash).await
}

/// Waits until the ReplicaSet of `hash` has `count` pods and every one passes `check`.
async fn wait_pods(
    s: &Scenario,
    hash: &str,
    count: usize,
    what: &str,
    check: impl Fn(&BTreeMap<String, String>, &BTreeMap<String, String>) -> bool,
) -> Result<Vec<String>, String> {
    wait_for(&format!("{count} pods of {hash} {what}"), WAIT, || async {
        let pods = pods_of(s, hash).await?;
        (pods.len() == count && pods.values().all(|(l, a)| check(l, a)))
            .then(|| pods.keys().cloned().collect())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_and_preview_metadata_relabel_the_running_pods() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("tags").await?;
    let rollout = blue_green_rollout(
        "tags",
        2,
        "demo:1",
        json!({
            "autoPromotionEnabled": false,
            "scaleDownDelaySeconds": 60,
            "activeMetadata": {"labels": {"role": "active"}},
            "previewMetadata": {
                "labels": {"role": "preview", "preview": "yes"},
                "annotations": {"example.com/previewed": "true"}
            }
        }),
    );
    s.rollouts()
        .create(&PostParams::default(), &serde_json::from_value(rollout)?)
        .await?;
    let v1 = stable_hash(&s.wait("tags", "Healthy", healthy).await?);
    let label = |l: &BTreeMap<String, String>, k: &str| l.get(k).cloned();
    wait_pods(&s, &v1, 2, "labelled active", |l, _| {
        label(l, "role").as_deref() == Some("active")
    })
    .await?;

    // Before promotion the preview pods carry previewMetadata, the active ones activeMetadata.
    s.set_image("tags", "demo:2").await?;
    let v2 = current_hash(&s.wait("tags", "paused", paused_for_promotion).await?);
    let previewed = wait_pods(&s, &v2, 2, "labelled preview", |l, a| {
        label(l, "role").as_deref() == Some("preview")
            && label(l, "preview").as_deref() == Some("yes")
            && a.get("example.com/previewed").map(String::as_str) == Some("true")
    })
    .await?;
    wait_pods(&s, &v1, 2, "still labelled active", |l, _| {
        label(l, "role").as_deref() == Some("active")
    })
    .await?;
    // Someone else's label on the running preview pods.
    let pods: Api<Pod> = Api::namespaced(s.client(), s.ns());
    for name in &previewed {
        pods.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "shop"}}})),
        )
        .await?;
    }

    // After promotion the same pods (relabelled in place, not replaced) carry activeMetadata
    // and nothing of previewMetadata; the selector, hash and foreign labels are untouched.
    promote(&s.rollouts(), "tags").await?;
    s.wait("tags", "Healthy on v2", healthy_after(&v1)).await?;
    let promoted = wait_pods(&s, &v2, 2, "relabelled active", |l, a| {
        label(l, "role").as_deref() == Some("active")
            && !l.contains_key("preview")
            && !a.contains_key("example.com/previewed")
    })
    .await?;
    assert_eq!(promoted, previewed, "the running pods were relabelled");
    let now = pods_of(&s, &v2).await.ok_or("listing the pods of v2")?;
    for (labels, _) in now.values() {
        assert_eq!(label(labels, "team").as_deref(), Some("shop"));
        assert_eq!(label(labels, "app").as_deref(), Some("tags"));
        assert_eq!(
            label(labels, "rollouts-pod-template-hash").as_deref(),
            Some(v2.as_str())
        );
    }
    // The old revision, up for its scale-down delay, no longer passes for active.
    assert_eq!(s.sizes("tags").await.get(&v1), Some(&2));
    wait_pods(&s, &v1, 2, "without a role", |l, _| !l.contains_key("role")).await?;
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), s.ns());
    let rs = sets.get(&format!("tags-{v2}")).await?;
    let template_labels = rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        template_labels.get("role").map(String::as_str),
        Some("active")
    );
    assert!(!template_labels.contains_key("preview"));
    Ok(())
}

/// The pod-template hashes the injected anti-affinity term of a ReplicaSet selects.
async fn anti_affinity_of(s: &Scenario, app: &str, hash: &str) -> Option<Vec<String>> {
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), s.ns());
    let rs = sets.get(&format!("{app}-{hash}")).await.ok()?;
    let terms = rs
        .spec?
        .template?
        .spec?
        .affinity?
        .pod_anti_affinity?
        .preferred_during_scheduling_ignored_during_execution?;
    Some(
        terms
            .into_iter()
            .filter_map(|t| t.pod_affinity_term.label_selector?.match_expressions)
            .flatten()
            .filter(|r| r.key == "rollouts-pod-template-hash")
            .flat_map(|r| r.values.unwrap_or_default())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_follows_the_stable_revision_when_going_back() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("spread").await?;
    let rollout = blue_green_rollout(
        "spread",
        1,
        "demo:1",
        json!({
            "scaleDownDelaySeconds": 5,
            "antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 50}}
        }),
    );
    s.rollouts()
        .create(&PostParams::default(), &serde_json::from_value(rollout)?)
        .await?;
    let v1 = stable_hash(&s.wait("spread", "Healthy", healthy).await?);
    assert_eq!(anti_affinity_of(&s, "spread", &v1).await, None);

    s.set_image("spread", "demo:2").await?;
    let v2 = stable_hash(
        &s.wait("spread", "Healthy on v2", healthy_after(&v1))
            .await?,
    );
    assert_eq!(
        anti_affinity_of(&s, "spread", &v2).await,
        Some(vec![v1.clone()])
    );
    s.set_image("spread", "demo:3").await?;
    let v3 = stable_hash(
        &s.wait("spread", "Healthy on v3", healthy_after(&v2))
            .await?,
    );
    assert_eq!(
        anti_affinity_of(&s, "spread", &v3).await,
        Some(vec![v2.clone()])
    );
    assert_eq!(
        anti_affinity_of(&s, "spread", &v2).await,
        Some(vec![v1.clone()]),
        "untouched while it is not the new ReplicaSet"
    );

    // Back to revision 2's template: its ReplicaSet keeps off the nodes of v3, not of v1.
    s.set_image("spread", "demo:2").await?;
    wait_for("v2's anti-affinity re-pointed at v3", WAIT, || async {
        (anti_affinity_of(&s, "spread", &v2).await? == [v3.clone()]).then_some(())
    })
    .await?;
    let back = s
        .wait("spread", "Healthy on v2 again", healthy_after(&v3))
        .await?;
    assert_eq!(stable_hash(&back), v2);
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), s.ns());
    let rs = sets.get(&format!("spread-{v2}")).await?;
    let weights: Vec<i32> = rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .and_then(|s| s.affinity)
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default()
        .iter()
        .map(|t| t.weight)
        .collect();
    assert_eq!(weights, [50], "one term, not one per stable revision");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_replica_count_auto_promotion_seconds_and_the_revision_limit() -> TestResult {
    let s = Scenario::start().await?;
    let app = "bgknobs";
    s.create_services(app).await?;
    s.apply(&format!(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {app}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
    spec:
      containers:
      - name: web
        image: demo:1
  strategy:
    blueGreen:
      activeService: {app}-active
      previewService: {app}-preview
      previewReplicaCount: 1
      autoPromotionSeconds: 3
      scaleDownDelaySeconds: 60
      scaleDownDelayRevisionLimit: 1
"#
    ))
    .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = stable_hash(&first);

    // Paused with the preview stack at previewReplicaCount, the active Service untouched.
    s.set_image(app, "demo:2").await?;
    let paused = s
        .wait(app, "paused before the switch", paused_for_promotion)
        .await?;
    let v2 = current_hash(&paused);
    s.wait_size(app, &v2, 1).await?;
    assert_eq!(s.sizes(app).await.get(&v1), Some(&3));
    assert_eq!(s.selected(&format!("{app}-active")).await, Some(v1.clone()));
    assert_eq!(
        s.selected(&format!("{app}-preview")).await,
        Some(v2.clone())
    );

    // autoPromotionSeconds ends the pause: the preview stack is scaled to full size first,
    // then the active Service switches.
    let paused_at = Instant::now();
    let promoted = s
        .wait(app, "promoted on its own", healthy_after(&v1))
        .await?;
    assert!(
        paused_at.elapsed() >= Duration::from_secs(1),
        "promoted {:?} after the pause was seen",
        paused_at.elapsed()
    );
    assert_eq!(stable_hash(&promoted), v2);
    assert_eq!(s.sizes(app).await.get(&v2), Some(&3));
    assert_eq!(s.selected(&format!("{app}-active")).await, Some(v2.clone()));

    // A third revision: with scaleDownDelayRevisionLimit 1 only the newest old stack (v2)
    // stays up through its delay; v1 goes at once instead of after its 60 s.
    s.set_image(app, "demo:3").await?;
    let done = s.wait(app, "promoted again", healthy_after(&v2)).await?;
    let v3 = stable_hash(&done);
    assert_ne!(v3, v2);
    // Well before v1's own 60 s delay ends.
    wait_for(
        &format!("ReplicaSet {v1} scaled down by the revision limit"),
        Duration::from_secs(30),
        || async { (s.sizes(app).await.get(&v1) == Some(&0)).then_some(()) },
    )
    .await?;
    let sizes = s.sizes(app).await;
    assert_eq!(
        sizes.get(&v2),
        Some(&3),
        "the newest old stack is kept: {sizes:?}"
    );
    assert_eq!(sizes.get(&v3), Some(&3));
    Ok(())
}
