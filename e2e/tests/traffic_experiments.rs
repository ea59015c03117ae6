//! Routing beyond stable and canary. With Argo Rollouts' own Istio manifests unchanged, an
//! experiment step's template gets its weight as a destination of its own (host-level and
//! subset-level split) for as long as the experiment runs, and ping-pong alternates which
//! of two Services is stable from one update to the next. On a Gateway API HTTPRoute the
//! template gets a backendRef of its own in the rule naming both Services, as Argo's
//! Gateway API plugin gives it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use ramp_controller::api::{Rollout, WeightDestination};
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use ramp_controller::traffic::objects::EXPERIMENT_SERVICES_ANNOTATION;
use ramp_e2e::fixtures::rollouts::{abort, healthy, promote, wait_for};
use serde_json::{Value, json};

mod traffic_support;
use traffic_support::*;

const ISTIO_CRDS: &str = "argo-rollouts/test/e2e/crds/istio.yaml";
const NEW_IMAGE: &str = "nginx:1.20-alpine";

/// `(host or subset, weight)` of each destination of the VirtualService's route `primary`.
fn primary(spec: &Value) -> Vec<(String, i64)> {
    spec["http"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "primary")
        .and_then(|r| r["route"].as_array())
        .into_iter()
        .flatten()
        .map(|d| {
            let dest = &d["destination"];
            let name = dest["subset"].as_str().or(dest["host"].as_str());
            (
                name.unwrap_or_default().to_string(),
                d["weight"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(n, w)| (n.to_string(), *w)).collect()
}

/// The experiment destinations the Rollout records while its experiment runs.
fn additional(rollout: &Rollout) -> Vec<WeightDestination> {
    status_of(rollout)
        .canary
        .and_then(|c| c.weights)
        .and_then(|w| w.additional)
        .unwrap_or_default()
}

/// Updates the image and waits until the experiment step's template is running with its
/// weight recorded; returns that destination.
async fn at_experiment(s: &Scenario, name: &str) -> Result<WeightDestination, String> {
    s.set_image(name, name, NEW_IMAGE)
        .await
        .map_err(|e| e.to_string())?;
    let rollout = s
        .wait(name, "the experiment template has its weight", |r| {
            status_of(r).current_step_index == Some(1) && !additional(r).is_empty()
        })
        .await?;
    let destination = additional(&rollout).remove(0);
    let experiment = status_of(&rollout)
        .canary
        .and_then(|c| c.current_experiment)
        .unwrap_or_default();
    let service = destination.service_name.clone().unwrap_or_default();
    assert_eq!(destination.weight, 20, "the template's weight");
    assert!(
        !experiment.is_empty() && service.starts_with(&experiment),
        "the destination is the experiment's Service: {service} (experiment {experiment})"
    );
    Ok(destination)
}

/// Skips the experiment step (`kubectl argo rollouts promote`) and waits until the new
/// revision is stable.
async fn promote_past_experiment(s: &Scenario, name: &str) -> Result<String, String> {
    promote(&s.rollouts(), name).await?;
    let rollout = s
        .wait(name, "Healthy on the new revision", |r| {
            let status = status_of(r);
            healthy(r) && status.stable_rs.is_some() && status.stable_rs == status.current_pod_hash
        })
        .await?;
    Ok(status_of(&rollout).stable_rs.unwrap_or_default())
}

/// Argo's host-split experiment manifests: 10 to the canary, 20 to the template's Service,
/// 70 to stable while the experiment runs; the template's destination goes with it.
async fn host_split_experiment(path: &str) -> TestResult {
    let s = Scenario::start(&[ISTIO_CRDS]).await?;
    let name = "istio-host-split";
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    s.env.apply_yaml(&reference(path)?).await?;
    let first = s.wait(name, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    s.wait_spec(&virtual_services(), vs, "all on stable", |spec| {
        primary(spec) == pairs(&[(stable, 100), (canary, 0)])
    })
    .await?;

    let destination = at_experiment(&s, name).await?;
    let service = destination.service_name.clone().unwrap_or_default();
    s.wait_spec(
        &virtual_services(),
        vs,
        "70/10/20 with the template",
        |spec| primary(spec) == pairs(&[(stable, 70), (canary, 10), (service.as_str(), 20)]),
    )
    .await?;
    let rollout = s.rollouts().get(name).await?;
    let v2 = status_of(&rollout).current_pod_hash.unwrap_or_default();
    assert_eq!(selected(&s, canary).await.as_deref(), Some(v2.as_str()));
    assert_eq!(selected(&s, stable).await.as_deref(), Some(v1.as_str()));

    let promoted = promote_past_experiment(&s, name).await?;
    assert_eq!(promoted, v2);
    let spec = s
        .wait_spec(
            &virtual_services(),
            vs,
            "all on stable, no template",
            |spec| primary(spec) == pairs(&[(stable, 100), (canary, 0)]),
        )
        .await?;
    assert_eq!(
        spec["hosts"][0], "istio-host-split",
        "the user's fields stay"
    );
    let object = s.object(&virtual_services(), vs).await?;
    assert!(
        object
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.contains("experiment")),
        "no experiment destination is left recorded"
    );
    wait_for("both Services on the new revision", WAIT, || async {
        let both = (selected(&s, stable).await, selected(&s, canary).await);
        (both == (Some(v2.clone()), Some(v2.clone()))).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn istio_host_split_experiment_step_gives_the_template_its_weight() -> TestResult {
    host_split_experiment("argo-rollouts/test/e2e/istio/istio-host-split-experiment-step.yaml")
        .await
}

#[tokio::test]
async fn istio_host_split_experiment_step_example() -> TestResult {
    host_split_experiment(
        "argo-rollouts/examples/traffic-routing-experiment-step/istio-host-split-experiment-step.yaml",
    )
    .await
}

/// `(name, pod-template-hash label)` of each DestinationRule subset.
fn subsets(spec: &Value) -> Vec<(String, String)> {
    spec["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["labels"][POD_TEMPLATE_HASH_LABEL]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Argo's subset-split experiment manifest: the template gets a destination by its Service
/// host and a DestinationRule subset of its own (as Argo's reconciler does), both gone once
/// the rollout is promoted.
#[tokio::test]
async fn istio_subset_split_experiment_step_gives_the_template_its_weight() -> TestResult {
    let s = Scenario::start(&[ISTIO_CRDS]).await?;
    let name = "istio-subset-split";
    let (vs, rule) = ("istio-subset-split-vsvc", "istio-subset-split-destrule");
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-subset-split-experiment-step.yaml",
        )?)
        .await?;
    let first = s.wait(name, "Healthy", healthy).await?;
    let v1 = status_of(&first).stable_rs.unwrap_or_default();
    s.wait_spec(&virtual_services(), vs, "all on stable", |spec| {
        primary(spec) == pairs(&[("stable", 100), ("canary", 0)])
    })
    .await?;
    s.wait_spec(&destination_rules(), rule, "both subsets on v1", |spec| {
        subsets(spec) == vec![("stable".into(), v1.clone()), ("canary".into(), v1.clone())]
    })
    .await?;

    let destination = at_experiment(&s, name).await?;
    let service = destination.service_name.clone().unwrap_or_default();
    let template_hash = destination.pod_template_hash.clone().unwrap_or_default();
    assert!(!template_hash.is_empty(), "the template's pods have a hash");
    s.wait_spec(
        &virtual_services(),
        vs,
        "70/10/20 with the template",
        |spec| primary(spec) == pairs(&[("stable", 70), ("canary", 10), (service.as_str(), 20)]),
    )
    .await?;
    let rollout = s.rollouts().get(name).await?;
    let v2 = status_of(&rollout).current_pod_hash.unwrap_or_default();
    s.wait_spec(
        &destination_rules(),
        rule,
        "a subset for the template",
        |spec| {
            subsets(spec)
                == vec![
                    ("stable".into(), v1.clone()),
                    ("canary".into(), v2.clone()),
                    (service.clone(), template_hash.clone()),
                ]
        },
    )
    .await?;

    let promoted = promote_past_experiment(&s, name).await?;
    assert_eq!(promoted, v2);
    s.wait_spec(
        &virtual_services(),
        vs,
        "all on stable, no template",
        |spec| primary(spec) == pairs(&[("stable", 100), ("canary", 0)]),
    )
    .await?;
    let spec = s
        .wait_spec(&destination_rules(), rule, "two subsets on v2", |spec| {
            subsets(spec) == vec![("stable".into(), v2.clone()), ("canary".into(), v2.clone())]
        })
        .await?;
    assert_eq!(
        spec["subsets"][0]["labels"]["app"], "istio-subset-split",
        "the user's labels stay"
    );
    Ok(())
}

/// Aborting during the experiment step sends everything back to stable and removes the
/// template's destination at once.
#[tokio::test]
async fn istio_experiment_destination_leaves_on_abort() -> TestResult {
    let s = Scenario::start(&[ISTIO_CRDS]).await?;
    let name = "istio-host-split";
    let vs = "istio-host-split-vsvc";
    let (stable, canary) = ("istio-host-split-stable", "istio-host-split-canary");
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-host-split-experiment-step.yaml",
        )?)
        .await?;
    s.wait(name, "Healthy", healthy).await?;
    let destination = at_experiment(&s, name).await?;
    let service = destination.service_name.clone().unwrap_or_default();
    s.wait_spec(
        &virtual_services(),
        vs,
        "70/10/20 with the template",
        |spec| primary(spec) == pairs(&[(stable, 70), (canary, 10), (service.as_str(), 20)]),
    )
    .await?;
    abort(&s.rollouts(), name).await?;
    s.wait(name, "aborted", aborted).await?;
    s.wait_spec(
        &virtual_services(),
        vs,
        "all on stable, no template",
        |spec| primary(spec) == pairs(&[(stable, 100), (canary, 0)]),
    )
    .await?;
    let rollout = s.rollouts().get(name).await?;
    assert!(
        additional(&rollout).is_empty(),
        "no experiment weight recorded"
    );
    Ok(())
}

/// Every `(ping, pong)` weight pair the VirtualService held, in order, as a watch saw them.
struct WeightHistory {
    seen: Arc<Mutex<Vec<(i64, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WeightHistory {
    fn watch(s: &Scenario, vs: &str) -> WeightHistory {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api = s.dynamic(&virtual_services());
        let config = watcher::Config::default().fields(&format!("metadata.name={vs}"));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).applied_objects().boxed();
            while let Some(Ok(object)) = stream.next().await {
                let weights: BTreeMap<String, i64> = object
                    .data
                    .get("spec")
                    .map(primary)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let pair = (
                    weights.get("ping").copied().unwrap_or(-1),
                    weights.get("pong").copied().unwrap_or(-1),
                );
                let mut seen = record.lock().unwrap();
                if seen.last() != Some(&pair) {
                    seen.push(pair);
                }
            }
        });
        WeightHistory { seen, task }
    }

    fn seen(&self) -> Vec<(i64, i64)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for WeightHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stable_ping_pong(rollout: &Rollout) -> Option<String> {
    status_of(rollout).canary.and_then(|c| c.stable_ping_pong)
}

/// One update of the ping-pong manifest: the Service that is not stable follows the new
/// pods and takes 25 while the other keeps 75; at promotion it becomes the stable Service
/// with all the traffic, without its selector moving.
async fn ping_pong_update(
    s: &Scenario,
    history: &WeightHistory,
    image: &str,
    (stable, canary): (&str, &str),
    (during, after): ((i64, i64), (i64, i64)),
) -> TestResult {
    let name = "istio-host-split";
    let vs = "istio-host-split-vsvc";
    let before = s.rollouts().get(name).await?;
    let old = status_of(&before).stable_rs.unwrap_or_default();
    let stable_selector = selected(s, stable).await;
    s.set_image(name, name, image).await?;
    let updated = s
        .wait(name, "the update started", |r| {
            let status = status_of(r);
            status.current_pod_hash.is_some() && status.current_pod_hash != status.stable_rs
        })
        .await?;
    let new = status_of(&updated).current_pod_hash.unwrap_or_default();
    wait_for("the canary Service on the new pods", WAIT, || async {
        (selected(s, canary).await.as_deref() == Some(new.as_str())).then_some(())
    })
    .await?;
    assert_eq!(
        selected(s, stable).await,
        stable_selector,
        "the stable Service does not move"
    );
    let done = s
        .wait(name, "Healthy on the new revision", |r| {
            healthy(r) && status_of(r).stable_rs.as_deref() == Some(new.as_str())
        })
        .await?;
    assert_ne!(old, new);
    assert_eq!(stable_ping_pong(&done).as_deref(), Some(canary));
    s.wait_spec(&virtual_services(), vs, "all on the new stable", |spec| {
        let w: BTreeMap<String, i64> = primary(spec).into_iter().collect();
        (w.get("ping").copied(), w.get("pong").copied()) == (Some(after.0), Some(after.1))
    })
    .await?;
    let seen = history.seen();
    assert!(
        seen.contains(&during),
        "(ping, pong) weights {during:?} during the update; seen {seen:?}"
    );
    let from = seen.iter().position(|p| *p == during).unwrap_or_default();
    assert!(
        seen[from..].iter().all(|(ping, pong)| ping + pong == 100),
        "weights always sum to 100: {seen:?}"
    );
    assert_eq!(
        selected(s, canary).await.as_deref(),
        Some(new.as_str()),
        "the new stable Service keeps selecting the new pods"
    );
    Ok(())
}

/// Argo's ping-pong manifest (which Argo's e2e test updates twice): ping is stable after
/// the first deploy, pong after the first update, ping again after the second.
#[tokio::test]
async fn istio_ping_pong_alternates_the_stable_service() -> TestResult {
    let s = Scenario::start(&[ISTIO_CRDS]).await?;
    let name = "istio-host-split";
    let vs = "istio-host-split-vsvc";
    s.env
        .apply_yaml(&reference(
            "argo-rollouts/test/e2e/istio/istio-host-split-ping-pong.yaml",
        )?)
        .await?;
    let first = s.wait(name, "Healthy", healthy).await?;
    assert_eq!(stable_ping_pong(&first).as_deref(), Some("ping"));
    s.wait_spec(&virtual_services(), vs, "all on ping", |spec| {
        primary(spec) == pairs(&[("ping", 100), ("pong", 0)])
    })
    .await?;
    let history = WeightHistory::watch(&s, vs);
    ping_pong_update(
        &s,
        &history,
        NEW_IMAGE,
        ("ping", "pong"),
        ((75, 25), (0, 100)),
    )
    .await?;
    ping_pong_update(
        &s,
        &history,
        "nginx:1.21-alpine",
        ("pong", "ping"),
        ((25, 75), (100, 0)),
    )
    .await?;
    let seen = history.seen();
    assert_eq!(seen.last(), Some(&(100, 0)), "{seen:?}");
    Ok(())
}

const HTTP_ROUTE_CRDS: &str = "gateway-api/gateway.networking.k8s.io_httproutes.yaml";

/// Argo's Istio host-split experiment manifest with the VirtualService swapped for an
/// HTTPRoute and the router for the Gateway API plugin; the split rule also sends to a
/// backend of the user's (`gw-exp-legacy`, weight 0) and a second rule is the user's alone.
const GATEWAY_EXPERIMENT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: gw-exp-canary}
spec:
  ports: [{port: 80, targetPort: http, protocol: TCP, name: http}]
  selector: {app: gw-exp}
---
apiVersion: v1
kind: Service
metadata: {name: gw-exp-stable}
spec:
  ports: [{port: 80, targetPort: http, protocol: TCP, name: http}]
  selector: {app: gw-exp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw-exp-route}
spec:
  parentRefs: [{name: gateway}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs:
        - {name: gw-exp-stable, port: 80, weight: 100}
        - {name: gw-exp-canary, port: 80, weight: 0}
        - {name: gw-exp-legacy, port: 80, weight: 0}
    - matches: [{path: {type: PathPrefix, value: /static}}]
      backendRefs: [{name: static, port: 80}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: gw-exp}
spec:
  strategy:
    canary:
      canaryService: gw-exp-canary
      stableService: gw-exp-stable
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI:
            httpRoute: gw-exp-route
      steps:
        - setWeight: 10
        - experiment:
            templates:
              - name: experiment-gw
                specRef: canary
                weight: 20
  selector:
    matchLabels: {app: gw-exp}
  template:
    metadata:
      labels: {app: gw-exp}
    spec:
      containers:
        - name: gw-exp
          image: nginx:1.19-alpine
          ports: [{name: http, containerPort: 80, protocol: TCP}]
"#;

/// `(Service, port, weight)` of each backendRef of the HTTPRoute's first rule.
fn split_rule(spec: &Value) -> Vec<(String, i64, i64)> {
    spec["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_string(),
                b["port"].as_i64().unwrap_or(0),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

fn backends(list: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    list.iter()
        .map(|(n, p, w)| (n.to_string(), *p, *w))
        .collect()
}

/// The annotations of the HTTPRoute.
async fn route_annotations(s: &Scenario) -> Result<BTreeMap<String, String>, String> {
    let object = s.object(&http_routes(), "gw-exp-route").await?;
    Ok(object.metadata.annotations.unwrap_or_default())
}

/// Takes the Gateway API Rollout to its experiment step: 70 to stable, 10 to the canary, 20
/// to a backendRef of the template's Service at the Service's port, recorded on the route.
/// Returns the template's Service.
async fn gateway_at_experiment(s: &Scenario) -> Result<String, Box<dyn std::error::Error>> {
    s.env.apply_yaml(GATEWAY_EXPERIMENT).await?;
    s.wait("gw-exp", "Healthy", healthy).await?;
    let before = s
        .wait_spec(&http_routes(), "gw-exp-route", "all on stable", |spec| {
            split_rule(spec)
                == backends(&[
                    ("gw-exp-stable", 80, 100),
                    ("gw-exp-canary", 80, 0),
                    ("gw-exp-legacy", 80, 0),
                ])
        })
        .await?;
    let destination = at_experiment(s, "gw-exp").await?;
    let service = destination.service_name.clone().unwrap_or_default();
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(s.client(), s.ns());
    let ports = services.get(&service).await?.spec.unwrap_or_default().ports;
    // The port a backendRef names: the Service's port called http, else its first.
    let ports = ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or(ports.first())
        .map(|p| i64::from(p.port))
        .ok_or_else(|| format!("Service {service} has no port"))?;
    let spec = s
        .wait_spec(
            &http_routes(),
            "gw-exp-route",
            "70/10/20 with the template's backendRef",
            |spec| {
                split_rule(spec)
                    == backends(&[
                        ("gw-exp-stable", 80, 70),
                        ("gw-exp-canary", 80, 10),
                        ("gw-exp-legacy", 80, 0),
                        (service.as_str(), port, 20),
                    ])
            },
        )
        .await?;
    assert_eq!(
        spec["rules"][1], before["rules"][1],
        "the user's other rule is untouched"
    );
    assert_eq!(
        route_annotations(s)
            .await?
            .get(EXPERIMENT_SERVICES_ANNOTATION)
            .cloned(),
        Some(json!([service]).to_string()),
        "the backendRef Ramp added is recorded on the route"
    );
    Ok(service)
}

/// Waits until the route splits stable/canary alone again with the user's backend kept and
/// nothing recorded.
async fn gateway_back_to_stable_canary(s: &Scenario, stable: i64, canary: i64) -> TestResult {
    s.wait_spec(
        &http_routes(),
        "gw-exp-route",
        "the template's backendRef removed, the user's kept",
        |spec| {
            split_rule(spec)
                == backends(&[
                    ("gw-exp-stable", 80, stable),
                    ("gw-exp-canary", 80, canary),
                    ("gw-exp-legacy", 80, 0),
                ])
        },
    )
    .await?;
    let annotations = route_annotations(s).await?;
    assert!(
        !annotations.contains_key(EXPERIMENT_SERVICES_ANNOTATION),
        "no experiment backendRef is left recorded: {annotations:?}"
    );
    Ok(())
}

#[tokio::test]
async fn gateway_api_experiment_step_gives_the_template_its_weight() -> TestResult {
    let s = Scenario::start(&[HTTP_ROUTE_CRDS]).await?;
    gateway_at_experiment(&s).await?;
    let rollout = s.rollouts().get("gw-exp").await?;
    let v2 = status_of(&rollout).current_pod_hash.unwrap_or_default();
    assert_eq!(promote_past_experiment(&s, "gw-exp").await?, v2);
    gateway_back_to_stable_canary(&s, 100, 0).await
}

/// Aborting during the experiment step sends everything back to stable and removes the
/// template's backendRef.
#[tokio::test]
async fn gateway_api_experiment_backend_leaves_on_abort() -> TestResult {
    let s = Scenario::start(&[HTTP_ROUTE_CRDS]).await?;
    gateway_at_experiment(&s).await?;
    abort(&s.rollouts(), "gw-exp").await?;
    s.wait("gw-exp", "aborted", aborted).await?;
    gateway_back_to_stable_canary(&s, 100, 0).await?;
    let rollout = s.rollouts().get("gw-exp").await?;
    assert!(
        additional(&rollout).is_empty(),
        "no experiment weight recorded"
    );
    Ok(())
}
