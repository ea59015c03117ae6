//! Istio router (`trafficRouting.istio`): the weights of the stable and canary destinations
//! in the named routes of VirtualServices, and the pod-template-hash labels of a
//! DestinationRule's stable and canary subsets.
//!
//! ```text
//!   host-level split                      subset-level split (destinationRule set)
//!   route: [{host: web-stable, w: S},     route: [{host: web, subset: stable, w: S},
//!           {host: web-canary, w: C}]             {host: web, subset: canary, w: C}]
//!                                         DestinationRule subsets[stable|canary].labels
//!                                           rollouts-pod-template-hash: <hash>
//! ```
//!
//! Ramp owns the two weights in each named route, the hash label of the two subsets, and
//! the HTTP routes it adds for `setHeaderRoute` / `setMirrorRoute` (named after the managed
//! route, placed first in `managedRoutes` order). Everything else is the user's.

use futures::future::BoxFuture;
use kube::api::ApiResource;
use serde_json::{Map, Value, json};

use super::gatewayapi::Services;
use super::objects::{self, RolloutIdentity, malformed};
use super::{DesiredWeights, RouterContext, TrafficError, TrafficRouter};
use crate::api::{
    IstioDestinationRule, IstioTrafficRouting, IstioVirtualService, RouteMatch, SetHeaderRoute,
    SetMirrorRoute, StringMatch,
};
use crate::rollout::names::POD_TEMPLATE_HASH_LABEL;

const ROUTER: &str = "Istio";

fn virtual_services() -> ApiResource {
    objects::resource(
        "networking.istio.io",
        "v1alpha3",
        "VirtualService",
        "virtualservices",
    )
}

fn destination_rules() -> ApiResource {
    objects::resource(
        "networking.istio.io",
        "v1alpha3",
        "DestinationRule",
        "destinationrules",
    )
}

pub struct IstioRouter {
    context: RouterContext,
    namespace: String,
    virtual_services: Vec<IstioVirtualService>,
    destination_rule: Option<IstioDestinationRule>,
    services: Services,
    managed_routes: Vec<String>,
}

impl IstioRouter {
    pub fn new(
        config: &IstioTrafficRouting,
        context: &RouterContext,
        rollout: &RolloutIdentity,
        services: Services,
        managed_routes: Vec<String>,
    ) -> Result<IstioRouter, TrafficError> {
        let virtual_services: Vec<IstioVirtualService> = config
            .virtual_service
            .iter()
            .chain(config.virtual_services.iter().flatten())
            .cloned()
            .collect();
        if virtual_services.is_empty() {
            return Err(malformed(
                ROUTER,
                "spec.strategy.canary.trafficRouting.istio".into(),
                "set virtualService or virtualServices",
            ));
        }
        Ok(IstioRouter {
            context: context.clone(),
            namespace: rollout.namespace.clone(),
            virtual_services,
            destination_rule: config.destination_rule.clone(),
            services,
            managed_routes,
        })
    }

    fn split(&self) -> Split {
        match &self.destination_rule {
            Some(rule) => Split::Subset {
                stable: rule.stable_subset_name.clone(),
                canary: rule.canary_subset_name.clone(),
            },
            None => Split::Host(self.services.clone()),
        }
    }

    /// Reads each VirtualService, changes its spec with `change`, writes those that changed.
    async fn update(
        &self,
        change: impl Fn(&IstioVirtualService, &mut Map<String, Value>) -> Result<(), String>,
    ) -> Result<(), TrafficError> {
        self.sync(true, change).await.map(|_| ())
    }

    /// Reads each VirtualService and applies `change` to its spec; `write`: writes those that
    /// changed. Returns whether every one already held what `change` asks for.
    async fn sync(
        &self,
        write: bool,
        change: impl Fn(&IstioVirtualService, &mut Map<String, Value>) -> Result<(), String>,
    ) -> Result<bool, TrafficError> {
        let mut held = true;
        let resource = virtual_services();
        let client = &self.context.client;
        for config in &self.virtual_services {
            let (name, namespace) = objects::split_name(&config.name, &self.namespace);
            let object = objects::get(client, &resource, ROUTER, namespace, name).await?;
            let before = match objects::spec(&object) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            let mut spec = before.clone();
            change(config, &mut spec).map_err(|what| {
                malformed(ROUTER, objects::describe(&resource, namespace, name), what)
            })?;
            let changed: Map<String, Value> = ["http", "tls", "tcp"]
                .into_iter()
                .filter(|key| spec.get(*key) != before.get(*key))
                .map(|key| {
                    (
                        key.to_string(),
                        spec.get(key).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            held &= changed.is_empty();
            if !changed.is_empty() && write {
                objects::patch_spec(client, &resource, ROUTER, &object, Value::Object(changed))
                    .await?;
            }
        }
        Ok(held)
    }

    /// Labels the DestinationRule's subsets with the hashes (`write`), or tells whether they
    /// already carry them.
    async fn sync_destination_rule(
        &self,
        weights: &DesiredWeights,
        write: bool,
    ) -> Result<bool, TrafficError> {
        let Some(rule) = &self.destination_rule else {
            return Ok(true);
        };
        let resource = destination_rules();
        let (name, namespace) = objects::split_name(&rule.name, &self.namespace);
        let client = &self.context.client;
        let object = objects::get(client, &resource, ROUTER, namespace, name).await?;
        let mut subsets = objects::spec(&object)
            .get("subsets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let changed = label_subsets(&mut subsets, rule, weights).map_err(|what| {
            malformed(ROUTER, objects::describe(&resource, namespace, name), what)
        })?;
        if changed && write {
            objects::patch_spec(
                client,
                &resource,
                ROUTER,
                &object,
                json!({"subsets": subsets}),
            )
            .await?;
        }
        Ok(!changed)
    }
}

/// How the routes tell stable from canary destinations.
#[derive(Clone, Debug, PartialEq)]
pub enum Split {
    Host(Services),
    Subset { stable: String, canary: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Stable,
    Canary,
}

impl Split {
    fn role(&self, destination: &Value) -> Option<Role> {
        let destination = destination.get("destination")?;
        match self {
            Split::Host(services) => {
                let host = destination.get("host")?.as_str()?;
                let is = |service: &str| {
                    host == service
                        || host
                            .strip_prefix(service)
                            .is_some_and(|rest| rest.starts_with('.'))
                };
                if is(&services.canary) {
                    Some(Role::Canary)
                } else if is(&services.stable) {
                    Some(Role::Stable)
                } else {
                    None
                }
            }
            Split::Subset { stable, canary } => {
                let subset = destination.get("subset")?.as_str()?;
                if subset == canary {
                    Some(Role::Canary)
                } else if subset == stable {
                    Some(Role::Stable)
                } else {
                    None
                }
            }
        }
    }
}

fn route_name(route: &Value) -> Option<&str> {
    route.get("name").and_then(Value::as_str)
}

/// Indexes of the HTTP routes a VirtualService entry names (all of `routes`, or the only
/// one when none is named and no TLS/TCP route is).
fn http_routes(
    config: &IstioVirtualService,
    http: &[Value],
    managed_routes: &[String],
) -> Result<Vec<usize>, String> {
    let named = config.routes.as_deref().unwrap_or_default();
    let has_other = config.tls_routes.as_ref().is_some_and(|r| !r.is_empty())
        || config.tcp_routes.as_ref().is_some_and(|r| !r.is_empty());
    if has_other && http.is_empty() {
        // A TLS- or TCP-only VirtualService: named HTTP routes have nothing to match (Argo's
        // own manifests name `primary` there).
        return Ok(Vec::new());
    }
    if named.is_empty() {
        if has_other {
            return Ok(Vec::new());
        }
        let user: Vec<usize> = (0..http.len())
            .filter(|i| {
                route_name(&http[*i]).is_none_or(|n| !managed_routes.iter().any(|m| m == n))
            })
            .collect();
        return match user.as_slice() {
            [only] => Ok(vec![*only]),
            _ => Err(format!(
                "spec.http has {} routes: name the ones to split in spec.strategy.canary.trafficRouting.istio.virtualService(s).routes",
                user.len()
            )),
        };
    }
    named
        .iter()
        .map(|name| {
            http.iter()
                .position(|r| route_name(r) == Some(name.as_str()))
                .ok_or_else(|| format!("spec.http has no route named {name:?}"))
        })
        .collect()
}

fn port_of(m: &Value) -> Option<i64> {
    m.get("port").and_then(Value::as_i64)
}

/// Indexes of the TLS routes matching the configured port and SNI hosts.
fn tls_routes(config: &IstioVirtualService, tls: &[Value]) -> Result<Vec<usize>, String> {
    let mut found = Vec::new();
    for wanted in config.tls_routes.iter().flatten() {
        let sni: Vec<&str> = wanted
            .sni_hosts
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let index = tls.iter().position(|route| {
            route
                .get("match")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|m| {
                    let hosts: Vec<&str> = m
                        .get("sniHosts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    wanted.port.is_none_or(|p| port_of(m) == Some(p))
                        && sni.iter().all(|h| hosts.contains(h))
                })
        });
        found.push(index.ok_or_else(|| {
            format!(
                "spec.tls has no route matching port {:?} and sniHosts {sni:?}",
                wanted.port
            )
        })?);
    }
    Ok(found)
}

/// Indexes of the TCP routes matching the configured ports.
fn tcp_routes(config: &IstioVirtualService, tcp: &[Value]) -> Result<Vec<usize>, String> {
    let mut found = Vec::new();
    for wanted in config.tcp_routes.iter().flatten() {
        let index = tcp.iter().position(|route| {
            route
                .get("match")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|m| wanted.port.is_none_or(|p| port_of(m) == Some(p)))
        });
        found.push(
            index
                .ok_or_else(|| format!("spec.tcp has no route matching port {:?}", wanted.port))?,
        );
    }
    Ok(found)
}

/// Sets the stable and canary weights in one route; errors when either is missing.
fn set_route_weights(
    route: &mut Value,
    split: &Split,
    canary_weight: i32,
    stable_weight: i32,
    what: &str,
) -> Result<(), String> {
    let Some(Value::Array(destinations)) = route.get_mut("route") else {
        return Err(format!("{what} has no route destinations"));
    };
    let mut seen = (false, false);
    for destination in destinations.iter_mut() {
        let weight = match split.role(destination) {
            Some(Role::Canary) => {
                seen.0 = true;
                canary_weight
            }
            Some(Role::Stable) => {
                seen.1 = true;
                stable_weight
            }
            None => continue,
        };
        destination["weight"] = json!(weight);
    }
    if seen != (true, true) {
        return Err(format!(
            "{what} needs a destination for both the stable and the canary ({})",
            match split {
                Split::Host(s) => format!("hosts {:?} and {:?}", s.stable, s.canary),
                Split::Subset { stable, canary } => format!("subsets {stable:?} and {canary:?}"),
            }
        ));
    }
    Ok(())
}

fn list<'s>(spec: &'s mut Map<String, Value>, key: &str) -> &'s mut Vec<Value> {
    let entry = spec.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    match entry {
        Value::Array(list) => list,
        _ => unreachable!("replaced by an array above"),
    }
}

/// Sets the weights of every configured route of one VirtualService spec.
pub fn set_weights(
    spec: &mut Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    canary_weight: i32,
    stable_weight: i32,
    managed_routes: &[String],
) -> Result<(), String> {
    let http = list(spec, "http");
    for index in http_routes(config, http, managed_routes)? {
        let what = format!("spec.http[{index}]");
        set_route_weights(&mut http[index], split, canary_weight, stable_weight, &what)?;
    }
    if config.tls_routes.is_some() {
        let tls = list(spec, "tls");
        for index in tls_routes(config, tls)? {
            let what = format!("spec.tls[{index}]");
            set_route_weights(&mut tls[index], split, canary_weight, stable_weight, &what)?;
        }
    }
    if config.tcp_routes.is_some() {
        let tcp = list(spec, "tcp");
        for index in tcp_routes(config, tcp)? {
            let what = format!("spec.tcp[{index}]");
            set_route_weights(&mut tcp[index], split, canary_weight, stable_weight, &what)?;
        }
    }
    // Leave no empty list where the user had none.
    for key in ["http", "tls", "tcp"] {
        if spec
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            spec.remove(key);
        }
    }
    Ok(())
}

/// Points the stable and canary subsets at their ReplicaSets' pods; returns whether a label
/// changed.
pub fn label_subsets(
    subsets: &mut [Value],
    rule: &IstioDestinationRule,
    weights: &DesiredWeights,
) -> Result<bool, String> {
    let mut changed = false;
    for (subset, hash) in [
        (&rule.canary_subset_name, &weights.canary_hash),
        (&rule.stable_subset_name, &weights.stable_hash),
    ] {
        let entry = subsets
            .iter_mut()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(subset.as_str()))
            .ok_or_else(|| format!("spec.subsets has no subset named {subset:?}"))?;
        if hash.is_empty() {
            continue;
        }
        if entry["labels"][POD_TEMPLATE_HASH_LABEL].as_str() != Some(hash.as_str()) {
            if !entry.get("labels").is_some_and(Value::is_object) {
                entry["labels"] = json!({});
            }
            entry["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
            changed = true;
        }
    }
    Ok(changed)
}

fn istio_string_match(value: &StringMatch) -> Option<Value> {
    if let Some(exact) = &value.exact {
        Some(json!({"exact": exact}))
    } else if let Some(prefix) = &value.prefix {
        Some(json!({"prefix": prefix}))
    } else {
        value.regex.as_ref().map(|regex| json!({"regex": regex}))
    }
}

/// The destination of `role` in the first configured HTTP route, without its weight.
fn destination_of(
    spec: &Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    role: Role,
    managed_routes: &[String],
) -> Result<Value, String> {
    let http = spec
        .get("http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = *http_routes(config, &http, managed_routes)?
        .first()
        .ok_or("no HTTP route is configured for header or mirror routes")?;
    http[index]
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|d| split.role(d) == Some(role))
        .and_then(|d| d.get("destination").cloned())
        .ok_or_else(|| format!("spec.http[{index}] has no {role:?} destination"))
}

/// Replaces the managed route `name` (none: removes it) and puts managed routes first.
fn replace_managed(
    spec: &mut Map<String, Value>,
    name: &str,
    added: Option<Value>,
    managed_routes: &[String],
) {
    let http = list(spec, "http");
    http.retain(|route| route_name(route) != Some(name));
    http.extend(added);
    http.sort_by_key(|route| {
        route_name(route)
            .and_then(|n| managed_routes.iter().position(|m| m == n))
            .unwrap_or(usize::MAX)
    });
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

/// Adds (or, without matches, removes) the HTTP route of a `setHeaderRoute` step.
pub fn set_header_route(
    spec: &mut Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    route: &SetHeaderRoute,
    managed_routes: &[String],
) -> Result<(), String> {
    let name = route.name.as_deref().unwrap_or_default();
    require_managed(name, managed_routes)?;
    let matches = route.matches.as_deref().unwrap_or_default();
    let added = if matches.is_empty() {
        None
    } else {
        let canary = destination_of(spec, config, split, Role::Canary, managed_routes)?;
        let mut headers = Map::new();
        for header in matches {
            let value = istio_string_match(&header.header_value).ok_or_else(|| {
                format!(
                    "header {:?}: set one of exact, prefix or regex",
                    header.header_name
                )
            })?;
            headers.insert(header.header_name.clone(), value);
        }
        Some(json!({
            "name": name,
            "match": [{"headers": headers}],
            "route": [{"destination": canary, "weight": 100}],
        }))
    };
    replace_managed(spec, name, added, managed_routes);
    Ok(())
}

fn mirror_match(m: &RouteMatch) -> Result<Value, String> {
    let mut out = Map::new();
    for (key, value) in [("method", &m.method), ("uri", &m.path)] {
        if let Some(value) = value {
            out.insert(
                key.into(),
                istio_string_match(value)
                    .ok_or_else(|| format!("{key}: set one of exact, prefix or regex"))?,
            );
        }
    }
    if let Some(headers) = &m.headers {
        let mut map = Map::new();
        for (name, value) in headers {
            map.insert(
                name.clone(),
                istio_string_match(value)
                    .ok_or_else(|| format!("header {name:?}: set one of exact, prefix or regex"))?,
            );
        }
        out.insert("headers".into(), Value::Object(map));
    }
    Ok(Value::Object(out))
}

/// Adds (or, without matches, removes) the HTTP route of a `setMirrorRoute` step: matching
/// requests keep their destinations and a copy goes to the canary.
pub fn set_mirror_route(
    spec: &mut Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    route: &SetMirrorRoute,
    managed_routes: &[String],
) -> Result<(), String> {
    require_managed(&route.name, managed_routes)?;
    let matches: Vec<Value> = route
        .matches
        .iter()
        .flatten()
        .map(mirror_match)
        .collect::<Result<_, _>>()?;
    let added = if matches.is_empty() {
        None
    } else {
        let canary = destination_of(spec, config, split, Role::Canary, managed_routes)?;
        let stable = destination_of(spec, config, split, Role::Stable, managed_routes)?;
        let mut added = json!({
            "name": route.name,
            "match": matches,
            "route": [{"destination": stable, "weight": 100}],
            "mirror": canary,
        });
        if let Some(percentage) = route.percentage {
            added["mirrorPercentage"] = json!({"value": percentage});
        }
        Some(added)
    };
    replace_managed(spec, &route.name, added, managed_routes);
    Ok(())
}

/// Removes every managed HTTP route.
pub fn remove_managed(spec: &mut Map<String, Value>, managed_routes: &[String]) {
    if let Some(Value::Array(http)) = spec.get_mut("http") {
        http.retain(|route| {
            route_name(route).is_none_or(|n| !managed_routes.iter().any(|m| m == n))
        });
    }
}

impl TrafficRouter for IstioRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    fn set_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move {
            // New pods must be selectable by the canary subset before it gets traffic.
            self.sync_destination_rule(weights, true).await?;
            let split = self.split();
            self.update(|config, spec| {
                set_weights(
                    spec,
                    config,
                    &split,
                    weights.canary_weight,
                    weights.stable_weight(),
                    &self.managed_routes,
                )
            })
            .await
        })
    }

    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        let split = self.split();
        Box::pin(async move {
            self.update(|config, spec| {
                set_header_route(spec, config, &split, route, &self.managed_routes)
            })
            .await
        })
    }

    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        let split = self.split();
        Box::pin(async move {
            self.update(|config, spec| {
                set_mirror_route(spec, config, &split, route, &self.managed_routes)
            })
            .await
        })
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(async move {
            self.update(|_, spec| {
                remove_managed(spec, &self.managed_routes);
                Ok(())
            })
            .await
        })
    }

    /// The VirtualServices and DestinationRule as the API server stores them carry the
    /// weights and the subsets' hashes.
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>> {
        Box::pin(async move {
            if !self.sync_destination_rule(weights, false).await? {
                return Ok(Some(false));
            }
            let split = self.split();
            let held = self
                .sync(false, |config, spec| {
                    set_weights(
                        spec,
                        config,
                        &split,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HeaderRoutingMatch, TcpRoute, TlsRoute};

    fn spec() -> Map<String, Value> {
        serde_json::from_value(json!({
            "hosts": ["web"],
            "http": [
                {"name": "primary", "route": [
                    {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
                    {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0}]},
                {"name": "other", "route": [{"destination": {"host": "other"}}]}],
            "tls": [{"match": [{"port": 443, "sniHosts": ["web.example"]}], "route": [
                {"destination": {"host": "web-stable.shop.svc.cluster.local"}, "weight": 100},
                {"destination": {"host": "web-canary.shop.svc.cluster.local"}, "weight": 0}]}],
            "tcp": [{"match": [{"port": 9000}], "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]
        }))
        .unwrap()
    }

    fn host_split() -> Split {
        Split::Host(Services {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
        })
    }

    fn config() -> IstioVirtualService {
        IstioVirtualService {
            name: "web".into(),
            routes: Some(vec!["primary".into()]),
            tls_routes: Some(vec![TlsRoute {
                port: Some(443),
                sni_hosts: Some(vec!["web.example".into()]),
            }]),
            tcp_routes: Some(vec![TcpRoute { port: Some(9000) }]),
        }
    }

    #[test]
    fn host_split_sets_named_http_tls_and_tcp_routes() {
        let mut spec = spec();
        set_weights(&mut spec, &config(), &host_split(), 25, 75, &[]).unwrap();
        assert_eq!(spec["http"][0]["route"][0]["weight"], 75);
        assert_eq!(spec["http"][0]["route"][1]["weight"], 25);
        assert_eq!(
            spec["http"][1],
            self::spec()["http"][1],
            "unnamed routes are the user's"
        );
        assert_eq!(spec["tls"][0]["route"][1]["weight"], 25, "FQDN hosts match");
        assert_eq!(spec["tcp"][0]["route"][0]["weight"], 75);
    }

    #[test]
    fn missing_routes_and_destinations_are_named() {
        let mut spec = spec();
        let mut config = config();
        config.routes = Some(vec!["absent".into()]);
        let error = set_weights(&mut spec, &config, &host_split(), 25, 75, &[]).unwrap_err();
        assert!(error.contains("\"absent\""), "{error}");
        let subsets = Split::Subset {
            stable: "stable".into(),
            canary: "canary".into(),
        };
        let error =
            set_weights(&mut self::spec(), &self::config(), &subsets, 25, 75, &[]).unwrap_err();
        assert!(error.contains("subsets"), "{error}");
        let unnamed = IstioVirtualService {
            name: "web".into(),
            ..Default::default()
        };
        let error =
            set_weights(&mut self::spec(), &unnamed, &host_split(), 1, 99, &[]).unwrap_err();
        assert!(error.contains("2 routes"), "{error}");
        let mut tls_only = self::spec();
        tls_only.remove("http");
        tls_only.remove("tcp");
        let mut config = self::config();
        config.tcp_routes = None;
        set_weights(&mut tls_only, &config, &host_split(), 5, 95, &[]).unwrap();
        assert_eq!(tls_only["tls"][0]["route"][1]["weight"], 5);
        assert!(
            !tls_only.contains_key("http"),
            "nothing added: {tls_only:?}"
        );
    }

    #[test]
    fn subsets_follow_the_pod_template_hashes() {
        let rule = IstioDestinationRule {
            name: "web".into(),
            canary_subset_name: "canary".into(),
            stable_subset_name: "stable".into(),
            additional_subset_names: None,
        };
        let mut subsets = vec![
            json!({"name": "stable", "labels": {"app": "web"}}),
            json!({"name": "canary"}),
        ];
        let weights = DesiredWeights {
            canary_weight: 10,
            max_weight: 100,
            additional: Vec::new(),
            canary_hash: "c1".into(),
            stable_hash: "s1".into(),
            canary_service: None,
            stable_service: None,
        };
        assert!(label_subsets(&mut subsets, &rule, &weights).unwrap());
        assert_eq!(
            subsets[0]["labels"],
            json!({"app": "web", POD_TEMPLATE_HASH_LABEL: "s1"})
        );
        assert_eq!(subsets[1]["labels"], json!({POD_TEMPLATE_HASH_LABEL: "c1"}));
        assert!(!label_subsets(&mut subsets, &rule, &weights).unwrap());
    }

    #[test]
    fn header_and_mirror_routes_go_first_and_are_removed() {
        let managed = vec!["header".to_string(), "mirror".to_string()];
        let mut spec = spec();
        let mirror = SetMirrorRoute {
            name: "mirror".into(),
            matches: Some(vec![RouteMatch {
                method: Some(StringMatch {
                    exact: Some("GET".into()),
                    ..Default::default()
                }),
                path: None,
                headers: None,
            }]),
            percentage: Some(50),
        };
        set_mirror_route(&mut spec, &config(), &host_split(), &mirror, &managed).unwrap();
        let header = SetHeaderRoute {
            name: Some("header".into()),
            matches: Some(vec![HeaderRoutingMatch {
                header_name: "x-canary".into(),
                header_value: StringMatch {
                    exact: Some("yes".into()),
                    ..Default::default()
                },
            }]),
        };
        set_header_route(&mut spec, &config(), &host_split(), &header, &managed).unwrap();
        assert_eq!(
            spec["http"][0],
            json!({"name": "header", "match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                   "route": [{"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 100}]})
        );
        assert_eq!(
            spec["http"][1],
            json!({"name": "mirror", "match": [{"method": {"exact": "GET"}}],
                   "route": [{"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100}],
                   "mirror": {"host": "web-canary", "port": {"number": 80}},
                   "mirrorPercentage": {"value": 50}})
        );
        // Weights still reach the named route behind the managed ones.
        set_weights(&mut spec, &config(), &host_split(), 40, 60, &managed).unwrap();
        assert_eq!(spec["http"][2]["route"][1]["weight"], 40);
        remove_managed(&mut spec, &managed);
        let names: Vec<_> = spec["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("primary"), json!("other")]);
    }
}
