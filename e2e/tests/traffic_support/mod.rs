//! What the traffic-router tests share: a namespace with the router CRDs and Ramp's
//! controller in-process, reading and editing router objects as a user would, and running
//! Argo Rollouts' own manifests unchanged.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_controller::traffic::objects::resource;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::crds::install_reference_crds;
pub use ramp_e2e::fixtures::crds::reference;
use ramp_e2e::fixtures::rollouts::{
    InProcessController, healthy, install_rollout_crds, phase, promote, replica_sets, service,
    wait_for, wait_rollout,
};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(90);
/// A user's edit of a router object is undone by the router watch within this (typically
/// well under a second; the margin is for a loaded shared test cluster).
pub const EDIT_UNDONE_WITHIN: Duration = Duration::from_secs(3);

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A condition on the annotations of the canary Ingress.
pub type AnnotationCheck = Box<dyn Fn(&BTreeMap<String, String>) -> bool + Send + Sync>;

pub fn http_routes() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
}

pub fn grpc_routes() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes")
}

pub fn virtual_services() -> ApiResource {
    resource(
        "networking.istio.io",
        "v1alpha3",
        "VirtualService",
        "virtualservices",
    )
}

pub fn destination_rules() -> ApiResource {
    resource(
        "networking.istio.io",
        "v1alpha3",
        "DestinationRule",
        "destinationrules",
    )
}

pub fn traffic_splits() -> ApiResource {
    resource(
        "split.smi-spec.io",
        "v1alpha4",
        "TrafficSplit",
        "trafficsplits",
    )
}

/// Installs the CRDs of a reference file and waits until each is established.
pub async fn install_crd_file(client: &Client, path: &str) -> Result<(), String> {
    install_reference_crds(client, path, "ramp-e2e-traffic").await
}

pub struct Scenario {
    pub env: TestEnv,
    _controller: InProcessController,
}

impl Scenario {
    /// A namespace with the Rollout CRDs, the router CRDs of `crd_files`, and the controller.
    pub async fn start(crd_files: &[&str]) -> Result<Scenario, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_rollout_crds(&env.client()).await?;
        for file in crd_files {
            install_crd_file(&env.client(), file).await?;
        }
        let controller =
            InProcessController::start(env.kubeconfig_path(), env.namespace(), |_| {}).await?;
        Ok(Scenario {
            env,
            _controller: controller,
        })
    }

    pub fn client(&self) -> Client {
        self.env.client()
    }

    pub fn ns(&self) -> &str {
        self.env.namespace()
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client(), self.ns())
    }

    pub fn dynamic(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client(), self.ns(), resource)
    }

    pub async fn create_services(&self, app: &str) -> Result<(), kube::Error> {
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(self.client(), self.ns());
        for name in [format!("{app}-stable"), format!("{app}-canary")] {
            services
                .create(&PostParams::default(), &service(&name, app))
                .await?;
        }
        Ok(())
    }

    pub async fn create_object(&self, resource: &ApiResource, object: Value) -> TestResult {
        let object: DynamicObject = serde_json::from_value(object)?;
        self.dynamic(resource)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(())
    }

    pub async fn object(
        &self,
        resource: &ApiResource,
        name: &str,
    ) -> Result<DynamicObject, String> {
        self.dynamic(resource)
            .get(name)
            .await
            .map_err(|e| format!("reading {} {name}: {e}", resource.kind))
    }

    /// Replaces an object's spec as a user editing it would (`kubectl edit`).
    pub async fn edit_spec(
        &self,
        resource: &ApiResource,
        name: &str,
        edit: impl Fn(&mut Value),
    ) -> TestResult {
        let mut object = self.object(resource, name).await?;
        let spec = object.data.get_mut("spec").ok_or("no spec")?;
        edit(spec);
        self.dynamic(resource)
            .replace(name, &PostParams::default(), &object)
            .await?;
        Ok(())
    }

    /// Sets one container's image and nothing else (a merge patch would replace the whole
    /// container list, dropping ports and resources).
    pub async fn set_image(&self, name: &str, container: &str, image: &str) -> TestResult {
        let rollout = self.rollouts().get(name).await?;
        let index = rollout
            .spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers.iter().position(|c| c.name == container))
            .ok_or_else(|| format!("Rollout {name} has no container {container}"))?;
        let patch: json_patch::Patch = serde_json::from_value(json!([{
            "op": "replace",
            "path": format!("/spec/template/spec/containers/{index}/image"),
            "value": image,
        }]))?;
        self.rollouts()
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        Ok(())
    }

    /// Waits until the router object holds what `check` wants again after a user's edit, and
    /// says how long that took (nothing else touches the Rollout meanwhile: the router watch
    /// alone must bring the correction).
    pub async fn restored(
        &self,
        resource: &ApiResource,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Duration), String> {
        let began = std::time::Instant::now();
        let spec = self.wait_spec(resource, name, what, check).await?;
        let took = began.elapsed();
        eprintln!("{what}: restored after {took:?}");
        if took > EDIT_UNDONE_WITHIN {
            return Err(format!(
                "{what}: restored after {took:?}, more than {EDIT_UNDONE_WITHIN:?}"
            ));
        }
        Ok((spec, took))
    }

    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Rollout) -> bool,
    ) -> Result<Rollout, String> {
        wait_rollout(&self.rollouts(), name, what, WAIT, check).await
    }

    /// Waits until `check` holds for the object's spec; returns the spec.
    pub async fn wait_spec(
        &self,
        resource: &ApiResource,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let api = self.dynamic(resource);
        let result = wait_for(what, WAIT, || async {
            let object = api.get_opt(name).await.ok().flatten()?;
            let spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
            check(&spec).then_some(spec)
        })
        .await;
        match result {
            Ok(spec) => Ok(spec),
            Err(error) => {
                let last = api.get_opt(name).await.ok().flatten().map(|o| o.data);
                Err(format!("{error}; last seen: {last:?}"))
            }
        }
    }

    pub async fn sizes(&self, app: &str) -> BTreeMap<String, i32> {
        replica_sets(&self.client(), self.ns(), app)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(hash, desired, _)| (hash, desired))
            .collect()
    }
}

pub fn status_of(rollout: &Rollout) -> ramp_controller::api::RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

pub fn paused_at(step: i32) -> impl Fn(&Rollout) -> bool {
    move |r| phase(r) == Some(RolloutPhase::Paused) && status_of(r).current_step_index == Some(step)
}

pub fn aborted(r: &Rollout) -> bool {
    phase(r) == Some(RolloutPhase::Degraded) && status_of(r).abort == Some(true)
}

/// `(stable, canary)` weights of the HTTPRoute rules Ramp splits (unnamed rules naming both).
pub fn gateway_weights(spec: &Value, stable: &str, canary: &str) -> Vec<(i64, i64)> {
    let weight = |rule: &Value, service: &str| {
        rule["backendRefs"]
            .as_array()?
            .iter()
            .find(|b| b["name"] == service)
            .map(|b| b["weight"].as_i64().unwrap_or(1))
    };
    spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule.get("name").is_none())
        .filter_map(|rule| Some((weight(rule, stable)?, weight(rule, canary)?)))
        .collect()
}

pub fn rule_names(spec: &Value) -> Vec<String> {
    spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

/// `(stable, canary)` weights of an Istio HTTP route by host or subset.
pub fn istio_weights(route: &Value, stable: &str, canary: &str) -> Option<(i64, i64)> {
    let weight = |target: &str| {
        route["route"].as_array()?.iter().find_map(|d| {
            let dest = &d["destination"];
            (dest["host"] == target || dest["subset"] == target)
                .then(|| d["weight"].as_i64().unwrap_or(0))
        })
    };
    Some((weight(stable)?, weight(canary)?))
}

/// Applies one of Argo's manifests unchanged, waits for its first deploy, updates the image
/// of its first container and promotes through every pause until the new revision is
/// stable; `at_pause` looks at the namespace at each pause (by step index). Returns the
/// Rollout's name.
pub async fn run_argo_manifest(
    s: &Scenario,
    path: &str,
    at_pause: impl AsyncFn(&Scenario, &Rollout) -> TestResult,
) -> Result<String, Box<dyn std::error::Error>> {
    let yaml = reference(path)?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml)?;
    let rollout = documents
        .iter()
        .find(|d| d["kind"] == "Rollout")
        .ok_or_else(|| format!("no Rollout in {path}"))?;
    let name = rollout["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let container = rollout["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.env.apply_yaml(&yaml).await?;
    s.wait(&name, "Healthy", healthy).await?;
    s.set_image(&name, &container, "nginx:1.20-alpine").await?;
    let updated = s
        .wait(&name, "the update started", |r| {
            let status = status_of(r);
            status.current_pod_hash.is_some() && status.current_pod_hash != status.stable_rs
        })
        .await?;
    let v2 = status_of(&updated).current_pod_hash.unwrap_or_default();
    let mut pauses = 0;
    loop {
        let rollout = s
            .wait(&name, "paused or done", |r| {
                phase(r) == Some(RolloutPhase::Paused)
                    || (healthy(r) && status_of(r).stable_rs.as_deref() == Some(v2.as_str()))
            })
            .await?;
        if healthy(&rollout) {
            break;
        }
        at_pause(s, &rollout).await?;
        pauses += 1;
        if pauses > 20 {
            return Err(format!("{path}: still pausing after 20 promotions").into());
        }
        promote(&s.rollouts(), &name).await?;
        s.wait(&name, "resumed", |r| {
            status_of(r).current_step_index != status_of(&rollout).current_step_index || healthy(r)
        })
        .await?;
    }
    Ok(name)
}

/// Every destination weight in the namespace's VirtualServices routed to the canary
/// (by the Rollout's canary Service host or canary subset).
pub async fn istio_canary_weights(s: &Scenario, rollout: &Rollout) -> Vec<i64> {
    let canary = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref());
    let service = canary
        .and_then(|c| c.canary_service.clone())
        .unwrap_or_default();
    let subset = canary
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|r| r.istio.as_ref())
        .and_then(|i| i.destination_rule.as_ref())
        .map(|d| d.canary_subset_name.clone());
    let list = s
        .dynamic(&virtual_services())
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut weights = Vec::new();
    for vs in list {
        for key in ["http", "tls", "tcp"] {
            for route in vs.data["spec"][key].as_array().into_iter().flatten() {
                if route.get("mirror").is_some() || route["match"][0].get("headers").is_some() {
                    continue;
                }
                for d in route["route"].as_array().into_iter().flatten() {
                    let dest = &d["destination"];
                    let host = dest["host"].as_str().unwrap_or_default();
                    let to_canary = match &subset {
                        Some(subset) => dest["subset"] == subset.as_str(),
                        None => host == service || host.starts_with(&format!("{service}.")),
                    };
                    if to_canary {
                        weights.push(d["weight"].as_i64().unwrap_or(0));
                    }
                }
            }
        }
    }
    weights
}

pub fn http_route_names(spec: &Value) -> Vec<String> {
    spec["http"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

/// Runs an Istio manifest of Argo's to completion: while paused the canary has traffic, at
/// the end all traffic is back on the (new) stable.
pub async fn istio_manifest_completes(path: &str) -> TestResult {
    let s = Scenario::start(&["argo-rollouts/test/e2e/crds/istio.yaml"]).await?;
    let name = run_argo_manifest(&s, path, async |s, rollout| {
        let weights = istio_canary_weights(s, rollout).await;
        assert!(
            !weights.is_empty() && weights.iter().all(|w| *w > 0),
            "{path}: canary weights while paused at step {:?}: {weights:?}",
            status_of(rollout).current_step_index
        );
        Ok(())
    })
    .await?;
    let rollout = s.rollouts().get(&name).await?;
    wait_for("all traffic back on stable", WAIT, || async {
        let weights = istio_canary_weights(&s, &rollout).await;
        (!weights.is_empty() && weights.iter().all(|w| *w == 0)).then_some(())
    })
    .await?;
    Ok(())
}

pub async fn selected(s: &Scenario, service: &str) -> Option<String> {
    ramp_e2e::fixtures::rollouts::selected_hash(&s.client(), s.ns(), service).await
}
