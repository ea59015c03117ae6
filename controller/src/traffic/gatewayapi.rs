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

use futures::future::BoxFuture;
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
            routes,
            services,
            managed_routes,
        })
    }

    /// Reads each route, changes its rules with `change`, and writes the routes that changed.
    async fn update_rules(
        &self,
        only_header_routes: bool,
        change: impl Fn(RouteKind, &mut Vec<Value>) -> Result<bool, String>,
    ) -> Result<(), TrafficError> {
        self.sync_rules(only_header_routes, true, change)
            .await
            .map(|_| ())
    }

    /// Reads each route and applies `change` to its rules; `write`: writes the routes that
    /// changed. Returns whether every route already held what `change` asks for.
    async fn sync_rules(
        &self,
        only_header_routes: bool,
        write: bool,
        change: impl Fn(RouteKind, &mut Vec<Value>) -> Result<bool, String>,
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
            let changed = change(route.kind, &mut rules)
                .map_err(|what| malformed(ROUTER, described, what))?;
            held &= !changed;
            if changed && write {
                objects::patch_spec(client, &resource, ROUTER, &object, json!({"rules": rules}))
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
        Box::pin(self.update_rules(false, move |_, rules| {
            set_weights(
                rules,
                &self.services,
                weights.canary_weight,
                weights.stable_weight(),
                &self.managed_routes,
            )
        }))
    }

    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |_, rules| {
            set_header_rule(rules, route, &self.services, &self.managed_routes)
        }))
    }

    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |_, rules| {
            set_mirror_rule(rules, route, &self.services, &self.managed_routes)
        }))
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(self.update_rules(true, move |_, rules| {
            Ok(remove_rules(rules, &self.managed_routes))
        }))
    }

    /// The routes as the API server stores them carry the weights (read back, not assumed
    /// from the write).
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>> {
        Box::pin(async move {
            let held = self
                .sync_rules(false, false, move |_, rules| {
                    set_weights(
                        rules,
                        &self.services,
                        weights.canary_weight,
                        weights.stable_weight(),
                        &self.managed_routes,
                    )
                })
                .await?;
            Ok(Some(held))
        })
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

/// Sets the weights of the stable and canary backendRefs in every rule naming both; returns
/// whether anything changed.
pub fn set_weights(
    rules: &mut [Value],
    services: &Services,
    canary_weight: i32,
    stable_weight: i32,
    managed_routes: &[String],
) -> Result<bool, String> {
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
    }
    if !found {
        return Err(format!(
            "no rule has backendRefs to both the stable Service {:?} and the canary Service {:?}: add both to the rule whose traffic should be split",
            services.stable, services.canary
        ));
    }
    Ok(changed)
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

    #[test]
    fn sets_only_the_weights_of_the_two_services() {
        let mut rules = route_rules();
        let changed = set_weights(&mut rules, &services(), 30, 70, &managed()).unwrap();
        assert!(changed);
        let refs = &rules[0]["backendRefs"];
        assert_eq!(refs[0]["weight"], 70);
        assert_eq!(refs[1]["weight"], 30);
        assert_eq!(refs[2]["weight"], 7, "other backends are the user's");
        assert_eq!(rules[1], route_rules()[1], "other rules are the user's");
        assert!(!set_weights(&mut rules, &services(), 30, 70, &managed()).unwrap());
    }

    #[test]
    fn a_route_without_both_services_is_malformed() {
        let mut rules = vec![route_rules()[1].clone()];
        let error = set_weights(&mut rules, &services(), 30, 70, &[]).unwrap_err();
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
        assert!(set_weights(&mut rules, &services(), 10, 90, &managed()).unwrap());
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
