//! Argo Rollouts' own router examples and e2e manifests that `rollout_traffic.rs` does not run,
//! applied unchanged to the test cluster with the routers' real CRDs: Istio subsets with
//! `dynamicStableScale` aborted mid-update, Istio's mirror-route example, the SMI (Linkerd)
//! example and the SMI experiment-step example. Each is checked at every step: router
//! weights and routes, ReplicaSet sizes, the Services' selectors. Argo's ALB-and-Istio
//! ping-pong manifest ends in its expected failure here: ALB is not a router Ramp has.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use ramp_analysis::api::AnalysisPhase;
use ramp_controller::api::{Experiment, Rollout};
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use ramp_controller::traffic::objects::resource;
use ramp_e2e::fixtures::rollouts::{abort, healthy, promote, replica_sets, wait_for};
use serde_json::{Value, json};

mod traffic_support;
use traffic_support::*;

/// `(desired, available)` of each of the app's ReplicaSets, by pod-template hash.
async fn counts(s: &Scenario, app: &str) -> BTreeMap<String, (i32, i32)> {
    replica_sets(&s.client(), s.ns(), app)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(hash, desired, available)| (hash, (desired, available)))
        .collect()
}

/// Waits until the ReplicaSet of each hash wants and has that many available pods
/// (0 also matches a ReplicaSet that is gone).
async fn wait_counts(s: &Scenario, app: &str, want: &[(&str, i32)]) -> Result<(), String> {
    let result = wait_for(&format!("ReplicaSets at {want:?}"), WAIT, || async {
        let counts = counts(s, app).await;
        want.iter()
            .all(|(hash, pods)| counts.get(*hash).copied().unwrap_or((0, 0)) == (*pods, *pods))
            .then_some(())
    })
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("{e}; last seen: {:?}", counts(s, app).await)),
    }
}

/// Lets no more pods into the namespace than the `count` running now: a ResourceQuota
/// refuses the ReplicaSet controller's new pods until [`release_pods`]. This holds a scale-up
/// back for as long as a test needs to look, where pods alone become ready at once.
async fn hold_pods(s: &Scenario, count: usize) -> TestResult {
    let quotas: Api<ResourceQuota> = Api::namespaced(s.client(), s.ns());
    let quota: ResourceQuota = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "hold-pods"},
        "spec": {"hard": {"pods": count.to_string()}}
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    let count = count.to_string();
    wait_for(
        &format!("the quota counting {count} pods"),
        WAIT,
        || async {
            let quota = quotas.get_opt("hold-pods").await.ok().flatten()?;
            let used = quota.status?.used?;
            (used.get("pods").map(|q| q.0.as_str()) == Some(count.as_str())).then_some(())
        },
    )
    .await?;
    Ok(())
}

async fn release_pods(s: &Scenario) -> TestResult {
    let quotas: Api<ResourceQuota> = Api::namespaced(s.client(), s.ns());
    quotas.delete("hold-pods", &DeleteParams::default()).await?;
    Ok(())
}

/// Waits until the ReplicaSet of `hash` wants `desired` pods and reports new ones refused.
async fn wait_refused(s: &Scenario, hash: &str, desired: i32) -> Result<(), String> {
    let sets: Api<ReplicaSet> = Api::namespaced(s.client(), s.ns());
    let selector = ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}"));
    wait_for(
        &format!("ReplicaSet {hash} at {desired} with its new pods refused"),
        WAIT,
        || async {
            let rs = sets.list(&selector).await.ok()?.items.pop()?;
            let wanted = rs.spec.as_ref()?.replicas == Some(desired);
            let refused = rs
                .status?
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "ReplicaFailure" && c.status == "True");
            (wanted && refused).then_some(())
        },
    )
    .await
}

/// The pod-template hash a DestinationRule subset selects.
fn subset_hash(spec: &Value, subset: &str) -> Option<String> {
    spec["subsets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == subset)?["labels"][POD_TEMPLATE_HASH_LABEL]
        .as_str()
        .map(String::from)
}

/// `service → weight` of a TrafficSplit (a weight may be written as a string in v1alpha1).
fn split_weights(spec: &Value) -> BTreeMap<String, i64> {
    spec["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let weight = b["weight"]
                .as_i64()
                .or_else(|| b["weight"].as_str().and_then(|w| w.parse().ok()))
                .unwrap_or(-1);
            (
                b["service"].as_str().unwrap_or_default().to_string(),
                weight,
            )
        })
        .collect()
}

fn backends(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(s, w)| (s.to_string(), *w)).collect()
}

fn current_hash(rollout: &Rollout) -> String {
    status_of(rollout).current_pod_hash.unwrap_or_default()
}

/// Argo's `istio-subset-split-in-stable-downscale-after-canary-abort.yaml`: with
/// `dynamicStableScale` the stable shrinks as the canary's weight grows, and only once the
/// weight has moved; aborted at 50 %, the stable must be back to full size before traffic
/// leaves the canary. A ResourceQuota holds new pods back (the canary's on the way to 30 %,
/// the stable's after the abort), so "traffic waits for the pods" is seen for certain rather
/// than by luck; lifting it lets the step, then the abort, finish: all traffic on stable, the
/// canary scaled to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_dynamic_stable_scale_abort_scales_stable_up_before_traffic_returns()
-> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let app = "istio-subset-split-in-stable-downscale-after-canary-abort";
    let vs = format!("{app}-vsvc");
    let dr = format!("{app}-destrule");
    s.env
        .apply_yaml(&reference(&format!(
            "argo-rollouts/test/e2e/istio/{app}.yaml"
        ))?)
        .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let weights = |spec: &Value| istio_weights(&spec["http"][0], "stable", "canary");
    s.wait_spec(&virtual_services(), &vs, "100/0", |spec| {
        weights(spec) == Some((100, 0))
    })
    .await?;
    s.wait_spec(&destination_rules(), &dr, "both subsets on v1", |spec| {
        subset_hash(spec, "stable").as_deref() == Some(v1.as_str())
            && subset_hash(spec, "canary").as_deref() == Some(v1.as_str())
    })
    .await?;

    s.set_image(app, app, "nginx:1.20-alpine").await?;
    let mut v2 = String::new();
    // (pause index, canary weight, canary pods, stable pods) for 4 replicas: the canary gets
    // ceil(weight × 4), the stable ceil((100 − weight) × 4) once the weight is set.
    for (step, weight, canary_pods, stable_pods) in
        [(1, 10, 1, 4), (3, 20, 1, 4), (5, 30, 2, 3), (7, 50, 2, 2)]
    {
        if step == 5 {
            // The canary's second pod is held back: the weight stays at 20 and the stable
            // keeps the 4 pods that carry 80 until the canary can take 30.
            hold_pods(&s, 5).await?;
            promote(&s.rollouts(), app).await?;
            wait_refused(&s, &v2, 2).await?;
            let rollout = s.rollouts().get(app).await?;
            assert_eq!(status_of(&rollout).current_step_index, Some(4));
            let spec = s.object(&virtual_services(), &vs).await?.data["spec"].clone();
            assert_eq!(weights(&spec), Some((80, 20)), "no weight without the pods");
            assert_eq!(counts(&s, app).await.get(&v1).copied(), Some((4, 4)));
            release_pods(&s).await?;
        } else if step > 1 {
            promote(&s.rollouts(), app).await?;
        }
        let paused = s
            .wait(app, &format!("paused at step {step}"), paused_at(step))
            .await?;
        v2 = current_hash(&paused);
        s.wait_spec(
            &virtual_services(),
            &vs,
            &format!("{}/{weight}", 100 - weight),
            |spec| weights(spec) == Some((100 - weight, weight)),
        )
        .await?;
        wait_counts(&s, app, &[(&v2, canary_pods), (&v1, stable_pods)]).await?;
        let rule = s.object(&destination_rules(), &dr).await?.data["spec"].clone();
        assert_eq!(
            subset_hash(&rule, "canary"),
            Some(v2.clone()),
            "step {step}"
        );
        assert_eq!(
            subset_hash(&rule, "stable"),
            Some(v1.clone()),
            "step {step}"
        );
    }

    // The stable's new pods are held back after the abort.
    hold_pods(&s, 4).await?;
    abort(&s.rollouts(), app).await?;
    s.wait(app, "aborted", aborted).await?;
    wait_refused(&s, &v1, 4).await?;
    let spec = s.object(&virtual_services(), &vs).await?.data["spec"].clone();
    assert_eq!(
        weights(&spec),
        Some((50, 50)),
        "with 2 stable pods available the canary keeps its traffic"
    );
    assert_eq!(
        counts(&s, app).await.get(&v2).copied(),
        Some((2, 2)),
        "the canary keeps the pods for its traffic"
    );

    release_pods(&s).await?;
    wait_counts(&s, app, &[(&v1, 4)]).await?;
    s.wait_spec(&virtual_services(), &vs, "all traffic on stable", |spec| {
        weights(spec) == Some((100, 0))
    })
    .await?;
    wait_counts(&s, app, &[(&v2, 0), (&v1, 4)]).await?;
    let rule = s.object(&destination_rules(), &dr).await?.data["spec"].clone();
    assert_eq!(subset_hash(&rule, "stable"), Some(v1.clone()));
    let rollout = s.rollouts().get(app).await?;
    assert!(aborted(&rollout), "still aborted: {:?}", rollout.status);
    Ok(())
}

/// Argo's `examples/istio/istio-mirror.yaml`: half the canary's pods by `setCanaryScale`, no
/// weight, and a mirror route copying POSTs to /color to the canary while the update pauses;
/// the route is gone once the update completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_mirror_example() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let app = "istio-host-split";
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/examples/istio/istio-mirror.yaml",
        )?)
        .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let primary = |spec: &Value| {
        spec["http"]
            .as_array()
            .and_then(|http| http.iter().find(|r| r["name"] == "primary"))
            .and_then(|route| istio_weights(route, stable, canary))
    };

    s.set_image(app, app, "argoproj/rollouts-demo:blue").await?;
    let paused = s.wait(app, "paused at step 2", paused_at(2)).await?;
    let v2 = current_hash(&paused);
    wait_counts(&s, app, &[(&v2, 2), (&v1, 4)]).await?;
    let spec = s
        .wait_spec(
            &virtual_services(),
            vs,
            "the mirror route before primary",
            |spec| http_route_names(spec) == ["mirror-route", "primary"],
        )
        .await?;
    assert_eq!(
        primary(&spec),
        Some((100, 0)),
        "no weight step: all on stable"
    );
    let mirror = &spec["http"][0];
    assert_eq!(
        mirror["match"],
        json!([{"method": {"exact": "POST"}, "uri": {"prefix": "/color"}}])
    );
    assert_eq!(mirror["mirror"]["host"], canary);
    assert_eq!(mirror["mirrorPercentage"]["value"].as_f64(), Some(50.0));
    assert_eq!(
        mirror_route_weights(mirror, stable, canary),
        (100, 0),
        "the mirrored requests themselves are served as the weights say: all by stable"
    );
    assert_eq!(spec["gateways"], json!(["istio-host-split-gateway"]));
    assert_eq!(selected(&s, canary).await.as_deref(), Some(v2.as_str()));
    assert_eq!(selected(&s, stable).await.as_deref(), Some(v1.as_str()));

    promote(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(
        &virtual_services(),
        vs,
        "only primary, all on stable",
        |spec| http_route_names(spec) == ["primary"] && primary(spec) == Some((100, 0)),
    )
    .await?;
    wait_counts(&s, app, &[(&v2, 4)]).await?;
    assert_eq!(selected(&s, stable).await.as_deref(), Some(v2.as_str()));
    Ok(())
}

/// `(stable, canary)` weights of the destinations serving a mirror route's requests (a
/// destination left out carries 0).
fn mirror_route_weights(route: &Value, stable: &str, canary: &str) -> (i64, i64) {
    let weight = |target: &str| {
        route["route"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["destination"]["host"] == target)
            .map(|d| d["weight"].as_i64().unwrap_or(0))
            .sum()
    };
    (weight(stable), weight(canary))
}

/// Argo's `istio-mirror-host.yaml` (also run by `rollout_traffic.rs` for the routes' names
/// and matches): a request matched by a mirror route is served as the canary weight says,
/// and a copy goes to the canary. Argo builds the mirror route from the weighted route's
/// destinations and keeps it at each later setWeight, as Ramp does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_istio_mirror_routes_keep_the_canary_weight() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let (stable, canary) = ("stable-service", "canary-service");
    let seen = std::sync::Mutex::new(Vec::new());
    run_argo_manifest(
        &s,
        "argo-rollouts/test/e2e/mirror-route/istio-mirror-host.yaml",
        async |s, rollout| {
            let spec = s
                .object(&virtual_services(), "rollouts-demo-vsvc")
                .await?
                .data["spec"]
                .clone();
            let mirrors: Vec<(String, (i64, i64))> = spec["http"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r.get("mirror").is_some())
                .map(|r| {
                    let name = r["name"].as_str().unwrap_or_default().to_string();
                    (name, mirror_route_weights(r, stable, canary))
                })
                .collect();
            if let Ok(mut seen) = seen.lock() {
                seen.push((status_of(rollout).current_step_index, mirrors));
            }
            Ok(())
        },
    )
    .await?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let at = |weights: &[(&str, (i64, i64))]| -> Vec<(String, (i64, i64))> {
        weights.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    };
    assert_eq!(
        seen,
        vec![
            (
                Some(3),
                at(&[("mirror-route-1", (80, 20)), ("mirror-route-2", (80, 20))])
            ),
            (
                Some(5),
                at(&[("mirror-route-1", (80, 20)), ("mirror-route-2", (80, 20))])
            ),
            (Some(8), at(&[("mirror-route-2", (60, 40))])),
        ]
    );
    Ok(())
}

/// The `---`-separated documents of a manifest file, as text.
fn documents(yaml: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out.retain(|d| d.lines().any(|l| l.starts_with("kind:")));
    out
}

/// Argo's `examples/traffic-management/rollout-linkerd.yaml`: an SMI TrafficSplit named after
/// the Rollout sends 5 % to the canary at the pause and all to the new stable at the end.
/// The example's AnalysisTemplate (not used by the Rollout) is not valid YAML for Kubernetes
/// (`linkerd.io/inject: {{args.linkerd-enabled}}` is a map used as a map key), so kubectl
/// refuses that document; the rest is applied unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_smi_linkerd_example() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    let app = "rollout-linkerd";
    let path = "argo-rollouts/examples/traffic-management/rollout-linkerd.yaml";
    let (template, rest): (Vec<String>, Vec<String>) = documents(&reference(path)?)
        .into_iter()
        .partition(|d| d.contains("kind: AnalysisTemplate"));
    assert_eq!(template.len(), 1, "{path}: one AnalysisTemplate");
    assert_eq!(rest.len(), 4, "{path}: a Rollout and three Services");
    let refused = s.env.apply_yaml(&template[0]).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("invalid map key"),
        "kubectl refuses the AnalysisTemplate: {error:?}"
    );
    let templates = s.dynamic(&resource(
        "argoproj.io",
        "v1alpha1",
        "AnalysisTemplate",
        "analysistemplates",
    ));
    assert!(templates.get_opt("load-test").await?.is_none());
    s.env.apply_yaml(&rest.join("---\n")).await?;

    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let (stable, canary) = ("rollout-linkerd-stable", "rollout-linkerd-canary");
    let split = s
        .wait_spec(&traffic_splits(), app, "all on stable", |spec| {
            split_weights(spec) == backends(&[(stable, 100), (canary, 0)])
        })
        .await?;
    assert_eq!(split["service"], app, "the root Service");
    let owned = s.object(&traffic_splits(), app).await?;
    assert!(
        owned
            .owner_references()
            .iter()
            .any(|o| o.kind == "Rollout" && o.name == app),
        "the Rollout owns its TrafficSplit"
    );

    s.set_image(app, "rollouts-demo", "argoproj/rollouts-demo:green")
        .await?;
    let paused = s.wait(app, "paused at step 1", paused_at(1)).await?;
    let v2 = current_hash(&paused);
    s.wait_spec(&traffic_splits(), app, "95/5", |spec| {
        split_weights(spec) == backends(&[(stable, 95), (canary, 5)])
    })
    .await?;
    wait_counts(&s, app, &[(&v2, 1), (&v1, 5)]).await?;
    assert_eq!(selected(&s, canary).await.as_deref(), Some(v2.as_str()));
    assert_eq!(selected(&s, stable).await.as_deref(), Some(v1.as_str()));

    promote(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(&traffic_splits(), app, "all on the new stable", |spec| {
        split_weights(spec) == backends(&[(stable, 100), (canary, 0)])
    })
    .await?;
    wait_counts(&s, app, &[(&v2, 5)]).await?;
    assert_eq!(selected(&s, stable).await.as_deref(), Some(v2.as_str()));
    Ok(())
}

/// Argo's `examples/traffic-routing-experiment-step/rollout-smi-experiment-step.yaml`: at the
/// experiment step the template's own Service gets its 5 % in the TrafficSplit while the
/// experiment runs (stable 90, canary 5); the experiment has no duration, so the user promotes
/// past it: the experiment is terminated, its backend leaves the split and the split ends all
/// on the new stable (the template's pods and Service go after the experiment's
/// `scaleDownDelaySeconds`, 30 s, not waited for here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_smi_experiment_step_example() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/split.yaml"]).await?;
    let app = "rollout-smi-experiment";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/examples/traffic-routing-experiment-step/rollout-smi-experiment-step.yaml",
        )?)
        .await?;
    let first = s.wait(app, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    let split = "rollout-smi-experiment-trafficsplit";
    let (stable, canary) = (
        "rollout-smi-experiment-stable",
        "rollout-smi-experiment-canary",
    );
    let spec = s
        .wait_spec(&traffic_splits(), split, "all on stable", |spec| {
            split_weights(spec) == backends(&[(stable, 100), (canary, 0)])
        })
        .await?;
    assert_eq!(
        spec["service"], stable,
        "without rootService the stable Service is the root"
    );

    s.set_image(app, app, "argoproj/rollouts-demo:green")
        .await?;
    let at_experiment = s
        .wait(app, "at the experiment step", |r| {
            status_of(r).current_step_index == Some(1)
                && status_of(r)
                    .canary
                    .and_then(|c| c.current_experiment)
                    .is_some()
        })
        .await?;
    let v2 = current_hash(&at_experiment);
    let name = status_of(&at_experiment)
        .canary
        .and_then(|c| c.current_experiment)
        .unwrap_or_default();
    let experiments: Api<Experiment> = Api::namespaced(s.client(), s.ns());
    let running = wait_for("the template available with its Service", WAIT, || async {
        let experiment = experiments.get_opt(&name).await.ok().flatten()?;
        let template = experiment
            .status
            .as_ref()?
            .template_statuses
            .as_ref()?
            .iter()
            .find(|t| t.name == "experiment-smi")?
            .clone();
        (template.available_replicas == 1 && template.service_name.is_some()).then_some(template)
    })
    .await?;
    let service = running.service_name.clone().unwrap_or_default();
    let spec = s
        .wait_spec(
            &traffic_splits(),
            split,
            "90/5/5 with the experiment",
            |spec| {
                split_weights(spec) == backends(&[(stable, 90), (canary, 5), (service.as_str(), 5)])
            },
        )
        .await?;
    assert_eq!(
        spec["backends"],
        json!([{"service": canary, "weight": 5}, {"service": service, "weight": 5},
               {"service": stable, "weight": 90}]),
        "Argo's order: canary, the experiment's templates, stable last"
    );
    let services: Api<Service> = Api::namespaced(s.client(), s.ns());
    let selector = services
        .get(&service)
        .await?
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default();
    assert_eq!(
        selector.get(POD_TEMPLATE_HASH_LABEL),
        running.pod_template_hash.as_ref(),
        "the template's Service selects the template's pods"
    );
    wait_counts(&s, app, &[(&v2, 1), (&v1, 1)]).await?;
    assert_eq!(selected(&s, canary).await.as_deref(), Some(v2.as_str()));

    promote(&s.rollouts(), app).await?;
    s.wait(app, "Healthy on the new revision", |r| {
        healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str())
    })
    .await?;
    s.wait_spec(&traffic_splits(), split, "all on the new stable", |spec| {
        split_weights(spec) == backends(&[(stable, 100), (canary, 0)])
    })
    .await?;
    wait_for("the experiment terminated and Successful", WAIT, || async {
        let experiment = experiments.get_opt(&name).await.ok().flatten()?;
        let phase = experiment.status.and_then(|s| s.phase);
        (experiment.spec.terminate == Some(true) && phase == Some(AnalysisPhase::Successful))
            .then_some(())
    })
    .await?;
    Ok(())
}

/// `test/e2e/functional/albmesh-pingpong-stablecanary-rollout.yaml` routes through ALB and
/// Istio at once. Ramp has no ALB router, so the Rollout is refused with an `InvalidSpec`
/// condition naming ALB, nothing is scaled up, and the VirtualService is left as applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_alb_and_istio_ping_pong_is_refused_naming_alb() -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/functional/albmesh-pingpong-stablecanary-rollout.yaml",
        )?)
        .await?;
    let vs = "istio-host-split-vsvc";
    let applied = s.object(&virtual_services(), vs).await?;
    let refused = s
        .wait("alb-canary", "InvalidSpec naming ALB", |r| {
            status_of(r)
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "InvalidSpec" && c.message.contains("ALB"))
        })
        .await?;
    let message = status_of(&refused)
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "InvalidSpec")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains("spec.strategy.canary.trafficRouting"),
        "the message names the field: {message}"
    );
    // Still refused a little later: nothing was scaled and the route was not touched.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        counts(&s, "alb-canary")
            .await
            .values()
            .all(|(desired, _)| *desired == 0),
        "no pods for a Rollout whose router Ramp does not have: {:?}",
        counts(&s, "alb-canary").await
    );
    let now = s.object(&virtual_services(), vs).await?;
    assert_eq!(
        now.metadata.resource_version, applied.metadata.resource_version,
        "the VirtualService is left as applied"
    );
    Ok(())
}
