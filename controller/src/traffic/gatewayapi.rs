//! Gateway API router (`trafficRouting.plugins["argoproj-labs/gatewayAPI"]`, the
//! configuration Argo's Gateway API plugin reads): HTTPRoutes and GRPCRoutes whose rules
//! send traffic to both the stable and the canary Service.
//!
//! ```text
//!   rules[i].backendRefs: [{name: stable, weight: S}, {name: canary, weight: C}]
//!                                       ▲ Ramp sets S and C, nothing else in the rule
//!   rules[0..k]: header / mirror rules Ramp adds, named after the managed route
//! ```
//!
//! Ramp owns only the `weight` of the two backendRefs in rules naming both, and the rules it
//! added (their `name` is the managed route's, or `<route>-<n>` when several rules carry
//! it). Every other rule, backend, filter and match is the user's and is written back
//! exactly as read.
//!
//! An experiment step's templates with a `weight` get a backendRef of their own in each rule
//! naming both Services, `{name: <template Service>, port, weight}`, taken from stable (as
//! Argo's Gateway API plugin does); the port is the Service's port named `http`, else its
//! first. The Services Ramp added are listed in the route's
//! [`objects::EXPERIMENT_SERVICES_ANNOTATION`], so that only those backendRefs are removed
//! once the experiment ends or the rollout aborts.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ApiResource;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::objects::{self, RolloutIdentity, malformed};
use super::{DesiredWeights, RouterContext, TrafficError, TrafficRouter};
use crate::api::{HeaderRoutingMatch, RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch};

/// The plugin name Argo users write under `trafficRouting.plugins`.
pub const PLUGIN: &str = "argoproj-labs/gatewayAPI";
const ROUTER: &str = "GatewayAPI";

/// The plugin's configuration, as Argo's Gateway API plugin reads it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiConfig {
    pub http_route: Option<String>,
    pub http_routes: Option<Vec<NamedRoute>>,
    pub grpc_route: Option<String>,
    pub grpc_routes: Option<Vec<NamedRoute>>,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamedRoute {
    pub name: String,
    #[serde(default)]
    pub use_header_routes: bool,
}

/// One route object the Rollout names.
#[derive(Clone, Debug, PartialEq)]
struct RouteRef {
    kind: RouteKind,
    name: String,
    /// Whether header and mirror rules go into this route.
    header_routes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    fn resource(self) -> ApiResource {
        match self {
            RouteKind::Http => {
                objects::resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
            }
            RouteKind::Grpc => {
                objects::resource("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes")
            }
        }
    }
}

pub struct GatewayApiRouter {
    context: RouterContext,
    namespace: String,
    /// Where the experiment templates' Services are.
    rollout_namespace: String,
    routes: Vec<RouteRef>,
    services: Services,
    managed_routes: Vec<String>,
}

/// The stable and canary Service names the backendRefs are matched against.
#[derive(Clone, Debug, PartialEq)]
pub struct Services {
    pub stable: String,
    pub canary: String,
}

impl GatewayApiRouter {
    pub fn new(
        config: &Value,
        context: &RouterContext,
        rollout: &RolloutIdentity,
        services: Services,
        managed_routes: Vec<String>,
    ) -> Result<GatewayApiRouter, TrafficError> {
        let field = format!("spec.strategy.canary.trafficRouting.plugins[{PLUGIN:?}]");
        let config: GatewayApiConfig = serde_json::from_value(config.clone())
            .map_err(|error| malformed(ROUTER, field.clone(), error.to_string()))?;
        let mut routes = Vec::new();
        for (kind, name) in [
            (RouteKind::Http, &config.http_route),
            (RouteKind::Grpc, &config.grpc_route),
        ] {
            routes.extend(name.iter().map(|name| RouteRef {
                kind,
                name: name.clone(),
                header_routes: true,
            }));
        }
        for (kind, list) in [
            (RouteKind::Http, &config.http_routes),
            (RouteKind::Grpc, &config.grpc_routes),
        ] {
            routes.extend(list.iter().flatten().map(|r| RouteRef {
                kind,
                name: r.name.clone(),
                header_routes: r.use_header_routes,
            }));
        }
        if routes.is_empty() {
            return Err(malformed(
                ROUTER,
                field,
                "name the route to manage with httpRoute, httpRoutes, grpcRoute or grpcRoutes",
            ));
        }
        Ok(GatewayApiRouter {
            context: context.clone(),
            namespace: config
                .namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| rollout.namespace.clone()),
            rollout_namespace: rollout.namespace.clone(),
            routes,
            services,
            managed_routes,
        })
    }

    /// Reads each route, changes its rules with `change`, and writes the routes that changed.
    async fn update_rules(
        &self,
        only_header_routes: bool,
        change: impl Fn(&mut Vec<Value>) -> Result<bool, String>,
    ) -> Result<(), TrafficError> {
        self.sync_rules(only_header_routes, true, |rules, _| change(rules))
            .await
            .map(|_| ())
    }

    /// Sets the split of `weights` in every route (`write`), or tells whether every route
    /// already carries it.
    async fn sync_weights(
        &self,
        weights: &DesiredWeights,
        write: bool,
    ) -> Result<bool, TrafficError> {
        let experiments = self.experiment_backends(weights).await?;
        let split = Split {
            canary: weights.canary_weight,
            stable: weights.stable_weight(),
            experiments: &experiments,
        };
        self.sync_rules(false, write, |rules, owned| {
            set_weights(rules, &self.services, &split, owned, &self.managed_routes)
        })
        .await
    }

    /// The backendRef of each experiment destination of `weights`, with its Service's port.
    async fn experiment_backends(
        &self,
        weights: &DesiredWeights,
    ) -> Result<Vec<ExperimentBackend>, TrafficError> {
        let api: Api<Service> =
            Api::namespaced(self.context.client.clone(), &self.rollout_namespace);
        let mut backends = Vec::new();
        for destination in &weights.additional {
            let Some(name) = destination
                .service_name
                .as_deref()
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            let described = format!("Service/{}/{name}", self.rollout_namespace);
            let service = api
                .get(name)
                .await
                .map_err(|error| objects::api_error(ROUTER, described.clone(), error))?;
            let port = service_port(&service).ok_or_else(|| {
                malformed(
                    ROUTER,
                    described,
                    "the experiment's Service has no port for a backendRef",
                )
            })?;
            backends.push(ExperimentBackend {
                service: name.to_string(),
                namespace: (self.namespace != self.rollout_namespace)
                    .then(|| self.rollout_namespace.clone()),
                port,
                weight: destination.weight,
            });
        }
        Ok(backends)
    }

    /// Reads each route and applies `change` to its rules and to the experiment Services
    /// Ramp added to it; `write`: writes the routes that changed. Returns whether every
    /// route already held what `change` asks for.
    async fn sync_rules(
        &self,
        only_header_routes: bool,
        write: bool,
        change: impl Fn(&mut Vec<Value>, &mut Vec<String>) -> Result<bool, String>,
    ) -> Result<bool, TrafficError> {
        let mut held = true;
        for route in &self.routes {
            if only_header_routes && (!route.header_routes || route.kind != RouteKind::Http) {
                continue;
            }
            let resource = route.kind.resource();
            let client = &self.context.client;
            let object =
                objects::get(client, &resource, ROUTER, &self.namespace, &route.name).await?;
            let spec = objects::spec(&object);
            let mut rules = match spec.get("rules") {
                Some(Value::Array(rules)) => rules.clone(),
                _ => Vec::new(),
            };
            let described = objects::describe(&resource, &self.namespace, &route.name);
            let owned_before = objects::experiment_services(&object);
            let mut owned = owned_before.clone();
            let changed = change(&mut rules, &mut owned)
                .map_err(|what| malformed(ROUTER, described, what))?;
            let annotation = (owned != owned_before).then_some(owned.as_slice());
            held &= !changed && annotation.is_none();
            if (changed || annotation.is_some()) && write {
                objects::patch_spec_and_experiments(
                    client,
                    &resource,
                    ROUTER,
                    &object,
                    json!({"rules": rules}),
                    annotation,
                )
                .await?;
            }
        }
        Ok(held)
    }
}

impl TrafficRouter for GatewayApiRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    fn set_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move { self.sync_weights(weights, true).await.map(|_| ()) })
    }

    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |rules| {
            set_header_rule(rules, route, &self.services, &self.managed_routes)
        }))
    }

    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |rules| {
            set_mirror_rule(rules, route, &self.services, &self.managed_routes)
        }))
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |rules| {
            Ok(remove_rules(rules, &self.managed_routes))
        }))
    }

    /// The routes as the API server stores them carry the weights (read back, not assumed
    /// from the write).
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>> {
        Box::pin(async move { self.sync_weights(weights, false).await.map(Some) })
    }
}

/// Whether a backendRef points at the Service `name`.
fn is_service(backend: &Value, name: &str) -> bool {
    let kind = backend
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Service");
    let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
    kind == "Service"
        && group.is_empty()
        && backend.get("name").and_then(Value::as_str) == Some(name)
}

fn backends(rule: &Value) -> &[Value] {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Whether a rule was added by Ramp for one of the managed routes.
fn is_managed_rule(rule: &Value, managed_routes: &[String]) -> bool {
    let Some(name) = rule.get("name").and_then(Value::as_str) else {
        return false;
    };
    managed_routes
        .iter()
        .any(|route| owns_rule_name(route, name))
}

fn owns_rule_name(route: &str, rule_name: &str) -> bool {
    rule_name == route
        || rule_name
            .strip_prefix(route)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The user's rules that send traffic to both Services.
fn split_rules<'r>(
    rules: &'r [Value],
    services: &'r Services,
    managed_routes: &'r [String],
) -> impl Iterator<Item = &'r Value> + 'r {
    rules.iter().filter(move |rule| {
        !is_managed_rule(rule, managed_routes)
            && backends(rule)
                .iter()
                .any(|b| is_service(b, &services.canary))
            && backends(rule)
                .iter()
                .any(|b| is_service(b, &services.stable))
    })
}

/// An experiment template's backendRef: its Service, the Service's port, and its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentBackend {
    pub service: String,
    /// The Rollout's namespace, when the route is in another one (the route's namespace
    /// then needs a ReferenceGrant, as for the stable and canary backendRefs).
    pub namespace: Option<String>,
    pub port: i32,
    pub weight: i32,
}

/// What the rules naming both Services carry.
#[derive(Clone, Copy, Debug)]
pub struct Split<'a> {
    pub canary: i32,
    pub stable: i32,
    pub experiments: &'a [ExperimentBackend],
}

/// The Service port a backendRef names: the one called `http`, else the first.
fn service_port(service: &Service) -> Option<i32> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| ports.first())
        .map(|p| p.port)
}

/// Sets the weights of the stable and canary backendRefs in every rule naming both, and
/// keeps a backendRef per experiment template there; `owned` lists the experiment Services
/// Ramp added (read from the route, updated here): only those are ever removed. Returns
/// whether any rule changed.
pub fn set_weights(
    rules: &mut [Value],
    services: &Services,
    split: &Split<'_>,
    owned: &mut Vec<String>,
    managed_routes: &[String],
) -> Result<bool, String> {
    let (canary_weight, stable_weight) = (split.canary, split.stable);
    let mut found = false;
    let mut changed = false;
    for rule in rules.iter_mut() {
        if is_managed_rule(rule, managed_routes) {
            continue;
        }
        let names_both = backends(rule)
            .iter()
            .any(|b| is_service(b, &services.canary))
            && backends(rule)
                .iter()
                .any(|b| is_service(b, &services.stable));
        if !names_both {
            continue;
        }
        found = true;
        let Some(Value::Array(refs)) = rule.get_mut("backendRefs") else {
            continue;
        };
        for backend in refs.iter_mut() {
            let weight = if is_service(backend, &services.canary) {
                canary_weight
            } else if is_service(backend, &services.stable) {
                stable_weight
            } else {
                continue;
            };
            if backend.get("weight").and_then(Value::as_i64) != Some(i64::from(weight)) {
                backend["weight"] = json!(weight);
                changed = true;
            }
        }
        changed |= set_experiment_backends(refs, split.experiments, owned);
    }
    *owned = split
        .experiments
        .iter()
        .map(|e| e.service.clone())
        .collect();
    if !found {
        return Err(format!(
            "no rule has backendRefs to both the stable Service {:?} and the canary Service {:?}: add both to the rule whose traffic should be split",
            services.stable, services.canary
        ));
    }
    Ok(changed)
}

/// Gives each experiment its backendRef and weight in one rule's `refs`, and removes those
/// of experiment Services Ramp added before (`owned`) that no longer run; returns whether
/// anything changed.
fn set_experiment_backends(
    refs: &mut Vec<Value>,
    experiments: &[ExperimentBackend],
    owned: &[String],
) -> bool {
    let before = refs.len();
    refs.retain(|backend| {
        !owned.iter().any(|service| {
            is_service(backend, service) && !experiments.iter().any(|e| e.service == *service)
        })
    });
    let mut changed = refs.len() != before;
    for experiment in experiments {
        match refs.iter_mut().find(|b| is_service(b, &experiment.service)) {
            Some(backend) => {
                if backend.get("weight").and_then(Value::as_i64)
                    != Some(i64::from(experiment.weight))
                {
                    backend["weight"] = json!(experiment.weight);
                    changed = true;
                }
            }
            None => {
                let mut backend = json!({
                    "kind": "Service",
                    "name": experiment.service,
                    "port": experiment.port,
                    "weight": experiment.weight,
                });
                if let Some(namespace) = &experiment.namespace {
                    backend["namespace"] = json!(namespace);
                }
                refs.push(backend);
                changed = true;
            }
        }
    }
    changed
}

/// Removes the rules Ramp added; returns whether any was there.
pub fn remove_rules(rules: &mut Vec<Value>, managed_routes: &[String]) -> bool {
    let before = rules.len();
    rules.retain(|rule| !is_managed_rule(rule, managed_routes));
    rules.len() != before
}

/// Replaces the rules of managed route `name` with `added` (none: removes them), keeping
/// managed rules first, in `managedRoutes` order; returns whether anything changed.
fn replace_managed(
    rules: &mut Vec<Value>,
    name: &str,
    added: Vec<Value>,
    managed_routes: &[String],
) -> bool {
    let before = rules.clone();
    rules.retain(|rule| {
        !rule
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| owns_rule_name(name, n))
    });
    rules.extend(added);
    let precedence = |rule: &Value| {
        let rule_name = rule.get("name").and_then(Value::as_str).unwrap_or("");
        managed_routes
            .iter()
            .position(|route| owns_rule_name(route, rule_name))
            .unwrap_or(usize::MAX)
    };
    // A stable sort: the user's rules keep their order after the managed ones.
    rules.sort_by_key(precedence);
    *rules != before
}

fn rule_name(route: &str, index: usize) -> String {
    if index == 0 {
        route.to_string()
    } else {
        format!("{route}-{index}")
    }
}

fn require_managed(name: &str, managed_routes: &[String]) -> Result<(), String> {
    if managed_routes.iter().any(|r| r == name) {
        Ok(())
    } else {
        Err(format!(
            "route {name:?} is not listed in spec.strategy.canary.trafficRouting.managedRoutes"
        ))
    }
}

/// A header match of an HTTPRoute.
fn header_match(header: &HeaderRoutingMatch) -> Result<Value, String> {
    let (kind, value) = string_match(&header.header_value).ok_or_else(|| {
        format!(
            "header {:?}: set one of exact, prefix or regex",
            header.header_name
        )
    })?;
    Ok(json!({"name": header.header_name, "type": kind, "value": value}))
}

/// `(type, value)` of a Gateway API string match; a prefix becomes a regular expression.
fn string_match(value: &StringMatch) -> Option<(&'static str, String)> {
    if let Some(exact) = &value.exact {
        Some(("Exact", exact.clone()))
    } else if let Some(prefix) = &value.prefix {
        Some(("RegularExpression", format!("^{}.*", regex::escape(prefix))))
    } else {
        value
            .regex
            .as_ref()
            .map(|regex| ("RegularExpression", regex.clone()))
    }
}

fn without_weight(backend: &Value) -> Value {
    let mut backend = backend.clone();
    if let Some(map) = backend.as_object_mut() {
        map.remove("weight");
    }
    backend
}

fn find_backend<'r>(rule: &'r Value, service: &str) -> Option<&'r Value> {
    backends(rule).iter().find(|b| is_service(b, service))
}

/// Adds (or, without matches, removes) the rules of a `setHeaderRoute` step: for each split
/// rule, one rule with its matches narrowed by the headers, sending everything to the canary.
pub fn set_header_rule(
    rules: &mut Vec<Value>,
    route: &SetHeaderRoute,
    services: &Services,
    managed_routes: &[String],
) -> Result<bool, String> {
    let name = route.name.as_deref().unwrap_or_default();
    require_managed(name, managed_routes)?;
    let headers: Vec<Value> = route
        .matches
        .iter()
        .flatten()
        .map(header_match)
        .collect::<Result<_, _>>()?;
    let mut added = Vec::new();
    if !headers.is_empty() {
        for rule in split_rules(rules, services, managed_routes) {
            let canary = find_backend(rule, &services.canary).map(without_weight);
            let source_matches = rule
                .get("matches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let source_matches = if source_matches.is_empty() {
                vec![json!({})]
            } else {
                source_matches
            };
            let matches: Vec<Value> = source_matches
                .into_iter()
                .map(|mut m| {
                    let mut all = m
                        .get("headers")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    all.extend(headers.iter().cloned());
                    m["headers"] = Value::Array(all);
                    m
                })
                .collect();
            added.push(json!({
                "name": rule_name(name, added.len()),
                "matches": matches,
                "backendRefs": [canary],
            }));
        }
    }
    Ok(replace_managed(rules, name, added, managed_routes))
}

/// An HTTPRoute match for a mirror route's match.
fn route_match(m: &RouteMatch) -> Result<Value, String> {
    let mut out = Map::new();
    if let Some(path) = &m.path {
        let value = if let Some(exact) = &path.exact {
            json!({"type": "Exact", "value": exact})
        } else if let Some(prefix) = &path.prefix {
            json!({"type": "PathPrefix", "value": prefix})
        } else if let Some(regex) = &path.regex {
            json!({"type": "RegularExpression", "value": regex})
        } else {
            return Err("path: set one of exact, prefix or regex".into());
        };
        out.insert("path".into(), value);
    }
    if let Some(method) = &m.method {
        match &method.exact {
            Some(method) => {
                out.insert("method".into(), json!(method));
            }
            None => return Err("method: the Gateway API matches methods exactly: use exact".into()),
        }
    }
    if let Some(headers) = &m.headers {
        let mut list = Vec::new();
        for (name, value) in headers {
            let (kind, value) = string_match(value)
                .ok_or_else(|| format!("header {name:?}: set one of exact, prefix or regex"))?;
            list.push(json!({"name": name, "type": kind, "value": value}));
        }
        out.insert("headers".into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// Adds (or, without matches, removes) the rules of a `setMirrorRoute` step: requests
/// matching go to the stable as before and a copy (`percentage` of them) to the canary.
pub fn set_mirror_rule(
    rules: &mut Vec<Value>,
    route: &SetMirrorRoute,
    services: &Services,
    managed_routes: &[String],
) -> Result<bool, String> {
    require_managed(&route.name, managed_routes)?;
    let matches: Vec<Value> = route
        .matches
        .iter()
        .flatten()
        .map(route_match)
        .collect::<Result<_, _>>()?;
    let mut added = Vec::new();
    if !matches.is_empty() {
        for rule in split_rules(rules, services, managed_routes) {
            let (Some(stable), Some(canary)) = (
                find_backend(rule, &services.stable),
                find_backend(rule, &services.canary),
            ) else {
                continue;
            };
            let mut mirror_to = Map::new();
            for key in ["group", "kind", "name", "namespace", "port"] {
                if let Some(value) = canary.get(key) {
                    mirror_to.insert(key.into(), value.clone());
                }
            }
            let mut mirror = json!({"backendRef": mirror_to});
            if let Some(percentage) = route.percentage {
                mirror["percent"] = json!(percentage);
            }
            added.push(json!({
                "name": rule_name(&route.name, added.len()),
                "matches": matches,
                "filters": [{"type": "RequestMirror", "requestMirror": mirror}],
                "backendRefs": [without_weight(stable)],
            }));
        }
    }
    Ok(replace_managed(rules, &route.name, added, managed_routes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn services() -> Services {
        Services {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
        }
    }

    fn managed() -> Vec<String> {
        vec!["header".into(), "mirror".into()]
    }

    fn route_rules() -> Vec<Value> {
        serde_json::from_value(json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0},
                {"name": "other", "port": 80, "weight": 7}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
             "backendRefs": [{"name": "admin", "port": 80}]}
        ]))
        .unwrap()
    }

    fn split(canary: i32, stable: i32, experiments: &[ExperimentBackend]) -> Split<'_> {
        Split {
            canary,
            stable,
            experiments,
        }
    }

    /// `set_weights` on rules Ramp added no experiment backend to.
    fn weigh(
        rules: &mut [Value],
        canary: i32,
        stable: i32,
        experiments: &[ExperimentBackend],
    ) -> Result<bool, String> {
        set_weights(
            rules,
            &services(),
            &split(canary, stable, experiments),
            &mut Vec::new(),
            &managed(),
        )
    }

    fn experiment(service: &str, weight: i32) -> ExperimentBackend {
        ExperimentBackend {
            service: service.into(),
            namespace: None,
            port: 8080,
            weight,
        }
    }

    #[test]
    fn an_experiment_backend_names_the_rollouts_namespace_when_the_route_is_elsewhere() {
        let mut rules = route_rules();
        let experiments = [ExperimentBackend {
            namespace: Some("shop".into()),
            ..experiment("exp-a", 10)
        }];
        weigh(&mut rules, 10, 80, &experiments).unwrap();
        assert_eq!(
            rules[0]["backendRefs"][3],
            json!({"kind": "Service", "name": "exp-a", "namespace": "shop", "port": 8080, "weight": 10})
        );
    }

    #[test]
    fn experiments_get_a_backend_each_and_only_those_ramp_added_are_removed() {
        let mut rules = route_rules();
        let experiments = [experiment("exp-a", 10), experiment("exp-b", 5)];
        let mut owned = Vec::new();
        let changed = set_weights(
            &mut rules,
            &services(),
            &split(20, 65, &experiments),
            &mut owned,
            &managed(),
        )
        .unwrap();
        assert!(changed);
        assert_eq!(owned, vec!["exp-a".to_string(), "exp-b".to_string()]);
        assert_eq!(
            rules[0]["backendRefs"],
            json!([
                {"name": "web-stable", "port": 80, "weight": 65},
                {"name": "web-canary", "port": 80, "weight": 20},
                {"name": "other", "port": 80, "weight": 7},
                {"kind": "Service", "name": "exp-a", "port": 8080, "weight": 10},
                {"kind": "Service", "name": "exp-b", "port": 8080, "weight": 5},
            ])
        );
        assert_eq!(
            rules[1],
            route_rules()[1],
            "rules not naming both are the user's"
        );
        // Already there: nothing to write.
        assert!(
            !set_weights(
                &mut rules,
                &services(),
                &split(20, 65, &experiments),
                &mut owned,
                &managed()
            )
            .unwrap()
        );
        // One template ends: its backend goes, the other's weight is kept in step.
        let experiments = [experiment("exp-b", 5)];
        assert!(
            set_weights(
                &mut rules,
                &services(),
                &split(20, 75, &experiments),
                &mut owned,
                &managed()
            )
            .unwrap()
        );
        assert_eq!(owned, vec!["exp-b".to_string()]);
        let names: Vec<_> = rules[0]["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["web-stable", "web-canary", "other", "exp-b"]);
        // The experiment ends: the split is stable/canary again, the user's "other" stays.
        assert!(
            set_weights(
                &mut rules,
                &services(),
                &split(20, 80, &[]),
                &mut owned,
                &managed()
            )
            .unwrap()
        );
        assert!(owned.is_empty());
        assert_eq!(rules[0]["backendRefs"].as_array().unwrap().len(), 3);
        assert_eq!(rules[0]["backendRefs"][2]["name"], "other");
    }

    #[test]
    fn a_backend_ramp_did_not_add_is_never_removed() {
        let mut rules = route_rules();
        // "other" is not in the owned list: ending an experiment leaves it.
        let mut owned = vec!["exp-a".to_string()];
        set_weights(
            &mut rules,
            &services(),
            &split(0, 100, &[]),
            &mut owned,
            &managed(),
        )
        .unwrap();
        assert_eq!(rules[0]["backendRefs"][2]["name"], "other");
        assert!(owned.is_empty());
    }

    #[test]
    fn the_backend_port_is_the_services_http_port_or_its_first() {
        let service = |ports: Value| -> Service {
            serde_json::from_value(json!({"spec": {"ports": ports}})).unwrap()
        };
        let named =
            service(json!([{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]));
        assert_eq!(service_port(&named), Some(8080));
        let first = service(json!([{"name": "web", "port": 80}, {"name": "grpc", "port": 9000}]));
        assert_eq!(service_port(&first), Some(80));
        assert_eq!(service_port(&service(json!([]))), None);
        assert_eq!(service_port(&Service::default()), None);
    }

    #[test]
    fn sets_only_the_weights_of_the_two_services() {
        let mut rules = route_rules();
        let changed = weigh(&mut rules, 30, 70, &[]).unwrap();
        assert!(changed);
        let refs = &rules[0]["backendRefs"];
        assert_eq!(refs[0]["weight"], 70);
        assert_eq!(refs[1]["weight"], 30);
        assert_eq!(refs[2]["weight"], 7, "other backends are the user's");
        assert_eq!(rules[1], route_rules()[1], "other rules are the user's");
        assert!(!weigh(&mut rules, 30, 70, &[]).unwrap());
    }

    #[test]
    fn a_route_without_both_services_is_malformed() {
        let mut rules = vec![route_rules()[1].clone()];
        let error = set_weights(
            &mut rules,
            &services(),
            &split(30, 70, &[]),
            &mut Vec::new(),
            &[],
        )
        .unwrap_err();
        assert!(
            error.contains("web-stable") && error.contains("web-canary"),
            "{error}"
        );
    }

    #[test]
    fn header_rules_are_added_first_and_removed() {
        let mut rules = route_rules();
        let route = SetHeaderRoute {
            name: Some("header".into()),
            matches: Some(vec![HeaderRoutingMatch {
                header_name: "X-Canary".into(),
                header_value: StringMatch {
                    prefix: Some("yes.".into()),
                    ..Default::default()
                },
            }]),
        };
        assert!(set_header_rule(&mut rules, &route, &services(), &managed()).unwrap());
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[0],
            json!({
                "name": "header",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                             "headers": [{"name": "X-Canary", "type": "RegularExpression", "value": "^yes\\..*"}]}],
                "backendRefs": [{"name": "web-canary", "port": 80}],
            })
        );
        assert!(!set_header_rule(&mut rules, &route, &services(), &managed()).unwrap());
        // Weights skip the managed rule and still apply to the user's.
        assert!(weigh(&mut rules, 10, 90, &[]).unwrap());
        assert_eq!(rules[0]["backendRefs"][0].get("weight"), None);
        assert!(remove_rules(&mut rules, &managed()));
        assert_eq!(rules.len(), 2);
        let removal = SetHeaderRoute {
            name: Some("header".into()),
            matches: None,
        };
        assert!(!set_header_rule(&mut rules, &removal, &services(), &managed()).unwrap());
    }

    #[test]
    fn routes_must_be_declared() {
        let mut rules = route_rules();
        let route = SetHeaderRoute {
            name: Some("undeclared".into()),
            matches: None,
        };
        assert!(set_header_rule(&mut rules, &route, &services(), &managed()).is_err());
    }

    #[test]
    fn mirror_rules_copy_to_the_canary() {
        let mut rules = route_rules();
        let route = SetMirrorRoute {
            name: "mirror".into(),
            matches: Some(vec![RouteMatch {
                method: Some(StringMatch {
                    exact: Some("GET".into()),
                    ..Default::default()
                }),
                path: Some(StringMatch {
                    prefix: Some("/api".into()),
                    ..Default::default()
                }),
                headers: Some(BTreeMap::from([(
                    "X-Test".to_string(),
                    StringMatch {
                        exact: Some("1".into()),
                        ..Default::default()
                    },
                )])),
            }]),
            percentage: Some(40),
        };
        assert!(set_mirror_rule(&mut rules, &route, &services(), &managed()).unwrap());
        assert_eq!(
            rules[0],
            json!({
                "name": "mirror",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                             "headers": [{"name": "X-Test", "type": "Exact", "value": "1"}]}],
                "filters": [{"type": "RequestMirror", "requestMirror": {
                    "backendRef": {"name": "web-canary", "port": 80}, "percent": 40}}],
                "backendRefs": [{"name": "web-stable", "port": 80}],
            })
        );
        let header = SetHeaderRoute {
            name: Some("header".into()),
            matches: Some(vec![HeaderRoutingMatch {
                header_name: "X-Canary".into(),
                header_value: StringMatch {
                    exact: Some("1".into()),
                    ..Default::default()
                },
            }]),
        };
        set_header_rule(&mut rules, &header, &services(), &managed()).unwrap();
        let names: Vec<_> = rules.iter().map(|r| r.get("name").cloned()).collect();
        assert_eq!(
            names,
            vec![Some(json!("header")), Some(json!("mirror")), None, None],
            "managed rules keep the managedRoutes order"
        );
    }

    #[test]
    fn reads_argo_plugin_configuration() {
        let config: GatewayApiConfig = serde_json::from_value(json!({
            "httpRoutes": [{"name": "a", "useHeaderRoutes": true}, {"name": "b"}],
            "namespace": "gw"
        }))
        .unwrap();
        assert_eq!(config.http_routes.as_ref().unwrap().len(), 2);
        assert!(!config.http_routes.unwrap()[1].use_header_routes);
        assert!(owns_rule_name("header", "header-2"));
        assert!(!owns_rule_name("header", "header-x"));
        assert!(!owns_rule_name("header", "headers"));
    }
}
