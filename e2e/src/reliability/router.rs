//! Traffic routers in crash-restart trials: the trial's Rollout splits traffic through a
//! Gateway API HTTPRoute (the `argoproj-labs/gatewayAPI` plugin configuration) or through an
//! NGINX canary Ingress beside the user's stable Ingress, with a `setHeaderRoute` step.
//!
//! ```text
//!   HTTPRoute web-route                         Ingress web-ingress (user's) → web-stable
//!     rule 0: web-stable=S, web-canary=C        Ingress web-web-ingress-canary (Ramp's)
//!     rule canary-header (setHeaderRoute)         canary-weight C, canary-by-header → web-canary
//! ```
//!
//! The history (see [`super::history`]) checks every version of these objects: a positive
//! weight, or a header route, never names a Service without available pods behind it. At the
//! end the router state must equal the fault-free run's, and nothing Ramp added may be left
//! over: no header rule or header annotation once the rollout finished, no canary Ingress
//! without the Rollout as its controller.

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::history::{Kind, http_routes};

/// The HTTPRoute of Gateway API trials.
pub const HTTP_ROUTE: &str = "web-route";
/// The user's Ingress of NGINX trials.
pub const STABLE_INGRESS: &str = "web-ingress";
/// The managed route a `setHeaderRoute` step adds.
pub const HEADER_ROUTE: &str = "canary-header";
const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// Which router a trial's Rollout splits traffic with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Router {
    GatewayApi,
    Nginx,
}

impl Router {
    /// The extra kinds the trial's history records.
    pub fn kinds(self) -> Vec<Kind> {
        match self {
            Router::GatewayApi => vec![Kind::HttpRoute],
            Router::Nginx => vec![Kind::Ingress],
        }
    }

    /// `spec.strategy.canary.trafficRouting` of the trial's Rollout.
    pub fn traffic_routing(self, namespace: &str) -> Value {
        let managed = json!([{"name": HEADER_ROUTE}]);
        match self {
            Router::GatewayApi => json!({
                "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": HTTP_ROUTE, "namespace": namespace}},
                "managedRoutes": managed
            }),
            Router::Nginx => json!({
                "nginx": {"stableIngress": STABLE_INGRESS},
                "managedRoutes": managed
            }),
        }
    }

    /// Creates the router object the Rollout names (the user's part of it).
    pub async fn create_objects(
        self,
        client: &Client,
        namespace: &str,
        stable: &str,
        canary: &str,
    ) -> Result<(), String> {
        match self {
            Router::GatewayApi => {
                let route: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": HTTP_ROUTE},
                    "spec": {
                        "parentRefs": [{"name": "gateway"}],
                        "rules": [{
                            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [{"name": stable, "port": 80, "weight": 100},
                                            {"name": canary, "port": 80, "weight": 0}]
                        }]
                    }
                }))
                .map_err(|e| e.to_string())?;
                Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &http_routes())
                    .create(&PostParams::default(), &route)
                    .await
                    .map_err(|e| format!("creating HTTPRoute {namespace}/{HTTP_ROUTE}: {e}"))?;
            }
            Router::Nginx => {
                let ingress: Ingress = serde_json::from_value(json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": STABLE_INGRESS,
                                 "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                    "spec": {"rules": [{"host": "web.example", "http": {"paths": [{
                        "path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": stable, "port": {"number": 80}}}
                    }]}}]}
                }))
                .map_err(|e| e.to_string())?;
                Api::<Ingress>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &ingress)
                    .await
                    .map_err(|e| format!("creating Ingress {namespace}/{STABLE_INGRESS}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The router's state in words that do not depend on the run, for comparing a trial's end
    /// with the fault-free run's.
    pub async fn state(self, client: &Client, namespace: &str) -> Result<Vec<String>, String> {
        match self {
            Router::GatewayApi => {
                let route = Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    namespace,
                    &http_routes(),
                )
                .get(HTTP_ROUTE)
                .await
                .map_err(|e| format!("reading HTTPRoute {namespace}/{HTTP_ROUTE}: {e}"))?;
                Ok(route_rules(&route.data))
            }
            Router::Nginx => {
                let mut lines: Vec<String> = Api::<Ingress>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| format!("listing Ingresses in {namespace}: {e}"))?
                    .items
                    .iter()
                    .map(|ingress| {
                        let annotations: Vec<String> = ingress
                            .annotations()
                            .iter()
                            .filter(|(k, _)| k.starts_with(NGINX) || k.starts_with("rollouts."))
                            .map(|(k, v)| format!("{}={v}", k.trim_start_matches(NGINX)))
                            .collect();
                        format!("Ingress {} {}", ingress.name_any(), annotations.join(" "))
                    })
                    .collect();
                lines.sort();
                Ok(lines)
            }
        }
    }

    /// What Ramp left behind: header routes of a finished rollout (`finished`: promoted or
    /// aborted) and canary Ingresses the Rollout (`rollout_uid`) does not control.
    pub async fn orphans(
        self,
        client: &Client,
        namespace: &str,
        rollout_uid: &str,
        finished: bool,
    ) -> Result<Vec<String>, String> {
        let mut found = Vec::new();
        match self {
            Router::GatewayApi => {
                let route = Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    namespace,
                    &http_routes(),
                )
                .get(HTTP_ROUTE)
                .await
                .map_err(|e| format!("reading HTTPRoute {namespace}/{HTTP_ROUTE}: {e}"))?;
                let rules = route.data.pointer("/spec/rules").and_then(Value::as_array);
                for rule in rules.into_iter().flatten() {
                    if let Some(name) = rule.get("name").and_then(Value::as_str)
                        && finished
                        && name.starts_with(HEADER_ROUTE)
                    {
                        found.push(format!(
                            "HTTPRoute {namespace}/{HTTP_ROUTE} keeps rule {name} of the finished rollout"
                        ));
                    }
                }
            }
            Router::Nginx => {
                let ingresses = Api::<Ingress>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| format!("listing Ingresses in {namespace}: {e}"))?;
                for ingress in ingresses.items {
                    let name = ingress.name_any();
                    let annotations = ingress.annotations();
                    if annotations
                        .get(&format!("{NGINX}canary"))
                        .map(String::as_str)
                        != Some("true")
                    {
                        continue;
                    }
                    let controlled = ingress.owner_references().iter().any(|o| {
                        o.controller == Some(true) && o.kind == "Rollout" && o.uid == rollout_uid
                    });
                    if !controlled {
                        found.push(format!(
                            "canary Ingress {namespace}/{name} has no Rollout controller"
                        ));
                    }
                    let header = annotations
                        .keys()
                        .filter(|k| k.starts_with(&format!("{NGINX}canary-by-header")))
                        .cloned()
                        .collect::<Vec<_>>();
                    if finished && !header.is_empty() {
                        found.push(format!(
                            "canary Ingress {namespace}/{name} keeps the header route of the finished rollout: {}",
                            header.join(", ")
                        ));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// `rule NAME: service=weight …` for each rule of an HTTPRoute.
fn route_rules(route: &Value) -> Vec<String> {
    let rules = route.pointer("/spec/rules").and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, rule)| {
            let name = rule
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| index.to_string(), str::to_string);
            let backends: Vec<String> = rule
                .get("backendRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "{}={}",
                        b.get("name").and_then(Value::as_str).unwrap_or("?"),
                        b.get("weight").and_then(Value::as_i64).unwrap_or(1)
                    )
                })
                .collect();
            format!("HTTPRoute rule {name}: {}", backends.join(" "))
        })
        .collect()
}

/// Installs Gateway API's HTTPRoute CRD (the copy kept with the tests) and waits until it is
/// established. NGINX needs none: Ingress is built in.
pub async fn install_http_route_crd(client: &Client) -> Result<(), String> {
    crate::fixtures::crds::install_reference_crds(
        client,
        "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
        "ramp-e2e-reliability",
    )
    .await
}
