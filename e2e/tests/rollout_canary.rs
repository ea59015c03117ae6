//! Canary Rollouts on the test cluster with Ramp's controller in-process, scoped to each
//! test's namespace: the full rollout with pauses, promote, abort and retry, restart, undo,
//! scaling while paused, a controller restart mid-rollout, an invalid Rollout beside a valid
//! one, analysis verdicts, and a resync that writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_controller::api::{AnalysisRun, AnalysisTemplate, Rollout, RolloutPhase};
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::rollouts::{
    InProcessController, abort, canary_rollout, healthy, install_rollout_crds, phase, promote,
    replica_sets, restart, retry, scale, selected_hash, service, size_of, undo, wait_for,
    wait_rollout,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Scenario {
    env: TestEnv,
    controller: Option<InProcessController>,
}

impl Scenario {
    async fn start() -> Result<Scenario, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_rollout_crds(&env.client()).await?;
        let controller =
            InProcessController::start(env.kubeconfig_path(), env.namespace(), |_| {}).await?;
        Ok(Scenario {
            env,
            controller: Some(controller),
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

    async fn create(&self, rollout: Rollout) -> Result<Rollout, kube::Error> {
        self.rollouts()
            .create(&PostParams::default(), &rollout)
            .await
    }

    async fn create_services(&self, app: &str) -> Result<(), kube::Error> {
        let services: Api<Service> = Api::namespaced(self.client(), self.ns());
        for name in [format!("{app}-stable"), format!("{app}-canary")] {
            services
                .create(&PostParams::default(), &service(&name, app))
                .await?;
        }
        Ok(())
    }

    async fn set_image(&self, name: &str, image: &str) -> Result<(), kube::Error> {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
        self.rollouts()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Rollout) -> bool,
    ) -> Result<Rollout, String> {
        wait_rollout(&self.rollouts(), name, what, WAIT, check).await
    }

    async fn sizes(&self, app: &str) -> BTreeMap<String, i32> {
        replica_sets(&self.client(), self.ns(), app)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(hash, desired, _)| (hash, desired))
            .collect()
    }
}

fn status_of(rollout: &Rollout) -> ramp_controller::api::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn paused_at(step: i32) -> impl Fn(&Rollout) -> bool {
    move |r| phase(r) == Some(RolloutPhase::Paused) && status_of(r).current_step_index == Some(step)
}

fn stable_hash(rollout: &Rollout) -> String {
    status_of(rollout).stable_rs.unwrap_or_default()
}

fn current_hash(rollout: &Rollout) -> String {
    status_of(rollout).current_pod_hash.unwrap_or_default()
}

fn steps(value: serde_json::Value) -> serde_json::Value {
    json!({"steps": value})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_rollout_with_pauses_and_promote() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("web").await?;
    let canary = json!({
        "stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "2s"}}]
    });
    s.create(canary_rollout("web", 4, "demo:1", canary)).await?;
    let first = s.wait("web", "Healthy", healthy).await?;
    let v1 = stable_hash(&first);
    assert_eq!(
        status_of(&first).current_step_index,
        Some(4),
        "an initial deploy skips the steps"
    );
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "web-stable")
            .await
            .as_deref(),
        Some(v1.as_str())
    );

    s.set_image("web", "demo:2").await?;
    let paused = s.wait("web", "paused at step 1", paused_at(1)).await?;
    let v2 = current_hash(&paused);
    assert_ne!(v1, v2);
    let sizes = s.sizes("web").await;
    assert_eq!(
        (sizes.get(&v2), sizes.get(&v1)),
        (Some(&1), Some(&3)),
        "25% of 4: one canary pod"
    );
    assert_eq!(
        status_of(&paused).pause_conditions.as_ref().unwrap()[0].reason,
        "CanaryPauseStep"
    );
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "web-canary")
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "web-stable")
            .await
            .as_deref(),
        Some(v1.as_str())
    );

    promote(&s.rollouts(), "web").await?;
    let done = s
        .wait("web", "Healthy on the new revision", |r| {
            healthy(r) && stable_hash(r) == v2
        })
        .await?;
    assert_eq!(status_of(&done).current_step_index, Some(4));
    let sizes = s.sizes("web").await;
    assert_eq!((sizes.get(&v2), sizes.get(&v1)), (Some(&4), Some(&0)));
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "web-stable")
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        done.annotations()
            .get("rollout.argoproj.io/revision")
            .map(String::as_str),
        Some("2")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_then_retry() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("shop").await?;
    let canary = json!({
        "stableService": "shop-stable", "canaryService": "shop-canary",
        "steps": [{"setWeight": 50}, {"pause": {}}]
    });
    s.create(canary_rollout("shop", 2, "demo:1", canary))
        .await?;
    let v1 = stable_hash(&s.wait("shop", "Healthy", healthy).await?);
    s.set_image("shop", "demo:2").await?;
    let v2 = current_hash(&s.wait("shop", "paused at step 1", paused_at(1)).await?);

    abort(&s.rollouts(), "shop").await?;
    let aborted = s
        .wait("shop", "Degraded after abort", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    let status = status_of(&aborted);
    assert_eq!(status.abort, Some(true));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("RolloutAborted: Rollout aborted update to revision 2")
    );
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "shop-canary")
            .await
            .as_deref(),
        Some(v1.as_str()),
        "traffic back to stable"
    );
    wait_for(
        "the canary scaled down and the stable whole",
        WAIT,
        || async {
            let sizes = s.sizes("shop").await;
            (sizes.get(&v2) == Some(&0) && sizes.get(&v1) == Some(&2)).then_some(())
        },
    )
    .await?;

    retry(&s.rollouts(), "shop").await?;
    let retried = s
        .wait("shop", "paused at step 1 again", paused_at(1))
        .await?;
    assert_eq!(status_of(&retried).abort, None);
    assert_eq!(s.sizes("shop").await.get(&v2), Some(&1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_evicts_pods_older_than_restart_at() -> TestResult {
    let s = Scenario::start().await?;
    s.create(canary_rollout(
        "api",
        3,
        "demo:1",
        steps(json!([{"setWeight": 50}])),
    ))
    .await?;
    s.wait("api", "Healthy", healthy).await?;
    let pods: Api<Pod> = Api::namespaced(s.client(), s.ns());
    let before: Vec<String> = pods
        .list(&ListParams::default().labels("app=api"))
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(before.len(), 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = restart(&s.rollouts(), "api").await?;
    let restarted = s
        .wait("api", "restarted", |r| {
            status_of(r)
                .restarted_at
                .map(|t| t.0.to_string())
                .as_deref()
                == Some(at.as_str())
                && healthy(r)
        })
        .await?;
    assert!(restarted.status.is_some());
    wait_for("every old pod replaced", WAIT, || async {
        let now: Vec<String> = pods
            .list(&ListParams::default().labels("app=api"))
            .await
            .ok()?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        (now.len() == 3 && now.iter().all(|p| !before.contains(p))).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_to_a_revision() -> TestResult {
    let s = Scenario::start().await?;
    s.create(canary_rollout(
        "cart",
        2,
        "demo:1",
        steps(json!([{"setWeight": 50}, {"pause": {}}])),
    ))
    .await?;
    let v1 = stable_hash(&s.wait("cart", "Healthy", healthy).await?);
    s.set_image("cart", "demo:2").await?;
    s.wait("cart", "paused at step 1", paused_at(1)).await?;
    promote(&s.rollouts(), "cart").await?;
    let v2 = stable_hash(
        &s.wait("cart", "Healthy on revision 2", |r| {
            healthy(r) && current_hash(r) != v1
        })
        .await?,
    );

    undo(&s.client(), s.ns(), "cart", 1).await?;
    let paused = s
        .wait(
            "cart",
            "revision 1 rolled out again as a canary",
            paused_at(1),
        )
        .await?;
    assert_eq!(
        current_hash(&paused),
        v1,
        "the ReplicaSet of revision 1 is reused"
    );
    assert_eq!(stable_hash(&paused), v2);
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), s.ns());
    let old = sets.get(&format!("cart-{v1}")).await?;
    assert_eq!(
        old.annotations()
            .get("rollout.argoproj.io/revision")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        old.annotations()
            .get("rollout.argoproj.io/revision-history")
            .map(String::as_str),
        Some("1")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_while_paused() -> TestResult {
    let s = Scenario::start().await?;
    let canary = json!({"maxSurge": "25%", "maxUnavailable": "25%", "steps": [{"setWeight": 25}, {"pause": {}}]});
    s.create(canary_rollout("basic", 1, "demo:1", canary))
        .await?;
    let v1 = stable_hash(&s.wait("basic", "Healthy", healthy).await?);
    s.set_image("basic", "demo:2").await?;
    let v2 = current_hash(&s.wait("basic", "paused", paused_at(1)).await?);
    let counts = |s: &Scenario| {
        let (v1, v2) = (v1.clone(), v2.clone());
        let client = s.client();
        let ns = s.ns().to_string();
        async move {
            (
                size_of(&client, &ns, "basic", &v2).await,
                size_of(&client, &ns, "basic", &v1).await,
            )
        }
    };
    assert_eq!(counts(&s).await, (1, 1));

    scale(&s.rollouts(), "basic", 8).await?;
    wait_for("canary 2, stable 6", WAIT, || async {
        (counts(&s).await == (2, 6)).then_some(())
    })
    .await?;
    s.wait("basic", "8 available", |r| {
        status_of(r).available_replicas == Some(8)
    })
    .await?;
    scale(&s.rollouts(), "basic", 4).await?;
    wait_for("canary 1, stable 3", WAIT, || async {
        (counts(&s).await == (1, 3)).then_some(())
    })
    .await?;
    // The scale subresource reports the pods once the extra ones are gone.
    let rollout = s
        .wait("basic", "still paused at step 1 with 4 pods", |r| {
            paused_at(1)(r) && status_of(r).hpa_replicas == Some(4)
        })
        .await?;
    assert_eq!(status_of(&rollout).selector.as_deref(), Some("app=basic"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_from_status() -> TestResult {
    let mut s = Scenario::start().await?;
    s.create(canary_rollout(
        "pay",
        4,
        "demo:1",
        steps(json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}])),
    ))
    .await?;
    s.wait("pay", "Healthy", healthy).await?;
    s.set_image("pay", "demo:2").await?;
    s.wait("pay", "paused at step 1", paused_at(1)).await?;
    promote(&s.rollouts(), "pay").await?;
    let at_3 = s.wait("pay", "paused at step 3", paused_at(3)).await?;
    let v2 = current_hash(&at_3);

    // The controller goes away; a new one starts with nothing but the cluster's state.
    if let Some(controller) = s.controller.take() {
        controller.stop().await?;
    }
    let before = s.rollouts().get("pay").await?;
    let controller = InProcessController::start(s.env.kubeconfig_path(), s.ns(), |_| {}).await?;
    s.controller = Some(controller);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = s.rollouts().get("pay").await?;
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "the new controller found nothing to change; status before:\n{}\nafter:\n{}",
        serde_json::to_string_pretty(&before.status)?,
        serde_json::to_string_pretty(&after.status)?
    );
    assert_eq!(s.sizes("pay").await.len(), 2, "no ReplicaSet created twice");

    promote(&s.rollouts(), "pay").await?;
    s.wait("pay", "Healthy on revision 2", |r| {
        healthy(r) && stable_hash(r) == v2
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_rollout_beside_a_valid_one() -> TestResult {
    let s = Scenario::start().await?;
    let broken = canary_rollout(
        "broken",
        2,
        "demo:1",
        json!({"stableService": "missing", "canaryService": "absent", "steps": []}),
    );
    s.create(broken).await?;
    s.create(canary_rollout(
        "fine",
        2,
        "demo:1",
        steps(json!([{"setWeight": 50}])),
    ))
    .await?;
    s.wait("fine", "Healthy", healthy).await?;
    let invalid = s
        .wait("broken", "InvalidSpec", |r| {
            status_of(r)
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "InvalidSpec" && c.status == "True")
        })
        .await?;
    let status = status_of(&invalid);
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("service \"missing\" not found"),
        "{:?}",
        status.message
    );
    assert!(
        replica_sets(&s.client(), s.ns(), "broken")
            .await?
            .is_empty(),
        "nothing scaled for an invalid spec"
    );

    // Fixing it (creating the Services) makes it progress.
    let services: Api<Service> = Api::namespaced(s.client(), s.ns());
    services
        .create(&PostParams::default(), &service("missing", "broken"))
        .await?;
    services
        .create(&PostParams::default(), &service("absent", "broken"))
        .await?;
    s.wait("broken", "Healthy once its Services exist", healthy)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_verdicts_drive_the_steps() -> TestResult {
    let s = Scenario::start().await?;
    s.create_services("chk").await?;
    let templates: Api<AnalysisTemplate> = Api::namespaced(s.client(), s.ns());
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {"args": [{"name": "hash"}], "metrics": [{"name": "ok", "provider": {"web": {"url": "http://127.0.0.1:1/{{args.hash}}"}}}]}
    }))?;
    templates.create(&PostParams::default(), &template).await?;
    let canary = json!({
        "stableService": "chk-stable", "canaryService": "chk-canary",
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}],
                  "args": [{"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}}, {"pause": {}}]
    });
    s.create(canary_rollout("chk", 2, "demo:1", canary)).await?;
    let v1 = stable_hash(&s.wait("chk", "Healthy", healthy).await?);
    let runs: Api<AnalysisRun> = Api::namespaced(s.client(), s.ns());

    // A run that succeeds lets the steps go on.
    s.set_image("chk", "demo:2").await?;
    let v2 = current_hash(
        &s.wait("chk", "running the analysis step", |r| {
            status_of(r).current_step_index == Some(1) && current_hash(r) != v1
        })
        .await?,
    );
    let name = format!("chk-{v2}-2-1");
    let run = wait_for("the step's AnalysisRun", WAIT, || async {
        runs.get_opt(&name).await.ok().flatten()
    })
    .await?;
    assert_eq!(
        run.labels().get("rollout-type").map(String::as_str),
        Some("Step")
    );
    assert_eq!(
        run.labels().get("step-index").map(String::as_str),
        Some("1")
    );
    assert_eq!(run.labels().get(POD_TEMPLATE_HASH_LABEL), Some(&v2));
    let args = run.spec.args.clone().unwrap_or_default();
    assert!(
        args.iter()
            .any(|a| a.name == "hash" && a.value.as_deref() == Some(v2.as_str())),
        "{args:?}"
    );
    runs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Successful"}})),
    )
    .await?;
    s.wait("chk", "paused after the analysis", paused_at(2))
        .await?;

    // A new revision whose run fails is aborted.
    s.set_image("chk", "demo:3").await?;
    let v3 = current_hash(
        &s.wait("chk", "analysis of revision 3", |r| {
            status_of(r).current_step_index == Some(1) && current_hash(r) != v2
        })
        .await?,
    );
    let name = format!("chk-{v3}-3-1");
    wait_for("the step's AnalysisRun", WAIT, || async {
        runs.get_opt(&name).await.ok().flatten()
    })
    .await?;
    let failed = json!({"status": {"phase": "Failed", "message": "Metric \"ok\" assessed Failed due to failed (1) > failureLimit (0)"}});
    runs.patch_status(&name, &PatchParams::default(), &Patch::Merge(failed))
        .await?;
    let aborted = s
        .wait("chk", "Degraded", |r| {
            phase(r) == Some(RolloutPhase::Degraded)
        })
        .await?;
    assert!(
        status_of(&aborted)
            .message
            .unwrap_or_default()
            .contains("assessed Failed")
    );
    assert_eq!(
        selected_hash(&s.client(), s.ns(), "chk-canary")
            .await
            .as_deref(),
        Some(v1.as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_resync_writes_nothing() -> TestResult {
    let mut s = Scenario::start().await?;
    s.create_services("calm").await?;
    let canary = json!({"stableService": "calm-stable", "canaryService": "calm-canary", "steps": [{"setWeight": 50}, {"pause": {}}]});
    s.create(canary_rollout("calm", 3, "demo:1", canary))
        .await?;
    s.create(canary_rollout(
        "mid",
        2,
        "demo:1",
        steps(json!([{"setWeight": 50}, {"pause": {}}])),
    ))
    .await?;
    s.wait("calm", "Healthy", healthy).await?;
    s.wait("mid", "Healthy", healthy).await?;
    s.set_image("mid", "demo:2").await?;
    s.wait("mid", "paused mid-update", paused_at(1)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let versions = |s: &Scenario| {
        let client = s.client();
        let ns = s.ns().to_string();
        async move {
            let mut versions = BTreeMap::new();
            let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
            for r in rollouts
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                versions.insert(
                    format!("Rollout/{}", r.name_any()),
                    r.resource_version().unwrap_or_default(),
                );
            }
            let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
            for rs in sets
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                versions.insert(
                    format!("ReplicaSet/{}", rs.name_any()),
                    rs.resource_version().unwrap_or_default(),
                );
            }
            let services: Api<Service> = Api::namespaced(client, &ns);
            for svc in services
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                versions.insert(
                    format!("Service/{}", svc.name_any()),
                    svc.resource_version().unwrap_or_default(),
                );
            }
            versions
        }
    };
    let before = versions(&s).await;
    // A new controller reconciles every Rollout from scratch: nothing may change.
    if let Some(controller) = s.controller.take() {
        controller.stop().await?;
    }
    let controller = InProcessController::start(s.env.kubeconfig_path(), s.ns(), |_| {}).await?;
    let reconciles = |metrics: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("rollout_reconcile_count{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Every Rollout reconciled by the new controller, then a moment for any write to land.
    let began = std::time::Instant::now();
    loop {
        let metrics = controller.metrics().await?;
        if reconciles(&metrics) >= 2.0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "every Rollout is reconciled within 30 s: {}",
            reconciles(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = controller.metrics().await?;
    let after = versions(&s).await;
    assert_eq!(before, after, "a resync wrote something");
    let writes: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("controller_clientset_k8s_request_total{")
                && (l.contains("verb=\"Patch\"") || l.contains("verb=\"Create\""))
                && !l.contains("kind=\"events\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(writes, 0.0, "no write requests at all:\n{metrics}");
    s.controller = Some(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_argo_names() -> TestResult {
    let s = Scenario::start().await?;
    s.create(canary_rollout(
        "seen",
        2,
        "demo:1",
        steps(json!([{"setWeight": 50}])),
    ))
    .await?;
    s.wait("seen", "Healthy", healthy).await?;
    let metrics = s
        .controller
        .as_ref()
        .ok_or("no controller")?
        .metrics()
        .await?;
    let ns = s.ns();
    for expected in [
        format!(
            "rollout_info{{namespace=\"{ns}\",name=\"seen\",strategy=\"canary\",traffic_router=\"\",phase=\"Healthy\"}} 1"
        ),
        format!("rollout_info_replicas_available{{namespace=\"{ns}\",name=\"seen\"}} 2"),
        format!("rollout_info_replicas_desired{{namespace=\"{ns}\",name=\"seen\"}} 2"),
        format!("rollout_info_replicas_updated{{namespace=\"{ns}\",name=\"seen\"}} 2"),
        format!("rollout_info_replicas_unavailable{{namespace=\"{ns}\",name=\"seen\"}} 0"),
    ] {
        assert!(
            metrics.contains(&expected),
            "missing {expected} in\n{metrics}"
        );
    }
    for family in [
        "rollout_reconcile_bucket",
        "rollout_events_total",
        "controller_clientset_k8s_request_total",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(family), "missing {family} in\n{metrics}");
    }
    Ok(())
}

/// The `role` label of each running pod of the revision `hash`, by pod name.
async fn roles_of(s: &Scenario, hash: &str) -> Option<BTreeMap<String, Option<String>>> {
    let pods = ramp_e2e::fixtures::rollouts::pods_of_revision(&s.client(), s.ns(), hash).await?;
    Some(
        pods.into_iter()
            .map(|(name, (labels, _))| (name, labels.get("role").cloned()))
            .collect(),
    )
}

/// Waits until the revision `hash` runs `count` pods, each labelled `role`.
async fn wait_roles(
    s: &Scenario,
    hash: &str,
    count: usize,
    role: &str,
) -> Result<Vec<String>, String> {
    wait_for(
        &format!("{count} pods of {hash} labelled role={role}"),
        WAIT,
        || async {
            let roles = roles_of(s, hash).await?;
            (roles.len() == count && roles.values().all(|r| r.as_deref() == Some(role)))
                .then(|| roles.keys().cloned().collect())
        },
    )
    .await
}

/// Argo's `test/e2e/functional/ephemeral-labels.yaml`: stableMetadata and canaryMetadata
/// label the pods by role, and the canary's running pods are relabelled stable in place at
/// promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_ephemeral_labels_follow_the_canary_roles() -> TestResult {
    let s = Scenario::start().await?;
    let name = "ephemeral-label";
    s.env
        .apply_yaml(&ramp_e2e::fixtures::crds::reference(
            "argo-rollouts/test/e2e/functional/ephemeral-labels.yaml",
        )?)
        .await?;
    let v1 = stable_hash(&s.wait(name, "Healthy", healthy).await?);
    wait_roles(&s, &v1, 2, "stable").await?;

    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": name, "image": "argoproj/rollouts-demo:yellow"}]}}}});
    s.rollouts()
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let v2 = current_hash(&s.wait(name, "paused at step 1", paused_at(1)).await?);
    let canary_pods = wait_roles(&s, &v2, 1, "canary").await?;
    wait_roles(&s, &v1, 1, "stable").await?;

    promote(&s.rollouts(), name).await?;
    s.wait(name, "Healthy on the new revision", |r| {
        healthy(r) && stable_hash(r) == v2
    })
    .await?;
    let promoted = wait_roles(&s, &v2, 2, "stable").await?;
    assert!(
        canary_pods.iter().all(|p| promoted.contains(p)),
        "the canary's running pod was relabelled in place: {canary_pods:?} → {promoted:?}"
    );
    Ok(())
}
