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
//!
//! An experiment step's templates with a `weight` get a destination of their own in each
//! named route, `{host: <template Service>, weight}`, taken from stable, in both split modes
//! (as Argo's reconciler does); with a DestinationRule each also gets a subset named after
//! its Service, labelled with its pod-template hash. The destinations and subsets Ramp added
//! are listed in the object's [`objects::EXPERIMENT_SERVICES_ANNOTATION`], so that only
//! those are removed once the experiment ends or the rollout aborts.

use futures::future::BoxFuture;
use kube::api::ApiResource;
use serde_json::{Map, Value, json};

use super::gatewayapi::Services;
use super::objects::{self, RolloutIdentity, malformed};
use super::{DesiredWeights, RouterContext, TrafficError, TrafficRouter};
use crate::api::{
    IstioDestinationRule, IstioTrafficRouting, IstioVirtualService, RouteMatch, SetHeaderRoute,
    SetMirrorRoute, StringMatch, WeightDestination,
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

    fn split_for(&self, weights: &DesiredWeights) -> Split {
        split_of(self.split(), weights)
    }

    /// Reads each VirtualService, changes it with `change`, writes those that changed.
    async fn update(
        &self,
        change: impl Fn(&IstioVirtualService, &mut Edit) -> Result<(), String>,
    ) -> Result<(), TrafficError> {
        self.sync(true, change).await.map(|_| ())
    }

    /// Reads each VirtualService and applies `change` to its spec and to the experiment
    /// Services Ramp added to it; `write`: writes those that changed. Returns whether every
    /// one already held what `change` asks for.
    async fn sync(
        &self,
        write: bool,
        change: impl Fn(&IstioVirtualService, &mut Edit) -> Result<(), String>,
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
            let added_before = objects::experiment_services(&object);
            let mut edit = Edit {
                spec: before.clone(),
                experiment_services: added_before.clone(),
            };
            change(config, &mut edit).map_err(|what| {
                malformed(ROUTER, objects::describe(&resource, namespace, name), what)
            })?;
            let changed: Map<String, Value> = ["http", "tls", "tcp"]
                .into_iter()
                .filter(|key| edit.spec.get(*key) != before.get(*key))
                .map(|key| {
                    (
                        key.to_string(),
                        edit.spec.get(key).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            let annotation = (edit.experiment_services != added_before)
                .then_some(edit.experiment_services.as_slice());
            held &= changed.is_empty() && annotation.is_none();
            if (!changed.is_empty() || annotation.is_some()) && write {
                objects::patch_spec_and_experiments(
                    client,
                    &resource,
                    ROUTER,
                    &object,
                    Value::Object(changed),
                    annotation,
                )
                .await?;
            }
        }
        Ok(held)
    }

    /// Labels the DestinationRule's subsets with the hashes and keeps a subset per
    /// experiment destination (`write`), or tells whether it already holds them.
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
        let added_before = objects::experiment_services(&object);
        let mut added = added_before.clone();
        let changed = label_subsets(&mut subsets, rule, weights, &mut added).map_err(|what| {
            malformed(ROUTER, objects::describe(&resource, namespace, name), what)
        })?;
        let annotation = (added != added_before).then_some(added.as_slice());
        if (changed || annotation.is_some()) && write {
            objects::patch_spec_and_experiments(
                client,
                &resource,
                ROUTER,
                &object,
                json!({"subsets": subsets}),
                annotation,
            )
            .await?;
        }
        Ok(!changed && annotation.is_none())
    }
}

/// A VirtualService being changed: its spec and the experiment Services Ramp added to it.
pub struct Edit {
    pub spec: Map<String, Value>,
    pub experiment_services: Vec<String>,
}

/// The host split of `weights` when they name both Services: under ping-pong the planner
/// names the Services that are stable and canary at the moment, which the spec cannot tell.
pub fn split_of(split: Split, weights: &DesiredWeights) -> Split {
    match (split, &weights.stable_service, &weights.canary_service) {
        (Split::Host(_), Some(stable), Some(canary))
            if !stable.is_empty() && !canary.is_empty() =>
        {
            Split::Host(Services {
                stable: stable.clone(),
                canary: canary.clone(),
            })
        }
        (split, _, _) => split,
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

/// What the weighted routes of a VirtualService carry.
#[derive(Clone, Copy, Debug)]
pub struct RouteWeights<'a> {
    pub canary: i32,
    pub stable: i32,
    /// Experiment templates with a weight: a destination each, by their Service.
    pub additional: &'a [WeightDestination],
}

impl<'a> RouteWeights<'a> {
    pub fn new(canary: i32, stable: i32) -> RouteWeights<'static> {
        RouteWeights {
            canary,
            stable,
            additional: &[],
        }
    }

    pub fn of(weights: &'a DesiredWeights) -> RouteWeights<'a> {
        RouteWeights {
            canary: weights.canary_weight,
            stable: weights.stable_weight(),
            additional: &weights.additional,
        }
    }

    /// `(Service, weight)` of each experiment destination.
    fn experiments(&self) -> Vec<(&'a str, i32)> {
        self.additional
            .iter()
            .filter_map(|d| {
                Some((
                    d.service_name.as_deref().filter(|s| !s.is_empty())?,
                    d.weight,
                ))
            })
            .collect()
    }

    /// The experiment Services these weights give a destination.
    pub fn experiment_services(&self) -> Vec<String> {
        self.experiments()
            .into_iter()
            .map(|(service, _)| service.to_string())
            .collect()
    }
}

/// Whether a destination host names `service` (short name or a longer DNS name).
fn host_is(host: &str, service: &str) -> bool {
    host == service
        || host
            .strip_prefix(service)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn host_of(destination: &Value) -> &str {
    destination["destination"]["host"]
        .as_str()
        .unwrap_or_default()
}

/// Sets the stable, canary and experiment weights in one route; errors when the stable or
/// canary destination is missing. Experiment destinations are appended when missing, and
/// those Ramp added before (`added_before`) for an experiment that is over are removed.
fn set_route_weights(
    route: &mut Value,
    split: &Split,
    weights: &RouteWeights<'_>,
    added_before: &[String],
    what: &str,
) -> Result<(), String> {
    let Some(Value::Array(destinations)) = route.get_mut("route") else {
        return Err(format!("{what} has no route destinations"));
    };
    let experiments = weights.experiments();
    let experiment_of = |destination: &Value| {
        let host = host_of(destination);
        experiments
            .iter()
            .position(|(service, _)| host_is(host, service))
    };
    destinations.retain(|d| {
        split.role(d).is_some()
            || experiment_of(d).is_some()
            || !added_before.iter().any(|s| host_is(host_of(d), s))
    });
    let mut seen = (false, false);
    let mut present = vec![false; experiments.len()];
    for destination in destinations.iter_mut() {
        let weight = match split.role(destination) {
            Some(Role::Canary) => {
                seen.0 = true;
                weights.canary
            }
            Some(Role::Stable) => {
                seen.1 = true;
                weights.stable
            }
            None => match experiment_of(destination) {
                Some(index) => {
                    present[index] = true;
                    experiments[index].1
                }
                None => continue,
            },
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
    for ((service, weight), _) in experiments.iter().zip(&present).filter(|(_, p)| !**p) {
        destinations.push(json!({"destination": {"host": service}, "weight": weight}));
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

/// Sets the weights of every configured route of one VirtualService spec; `added_before`:
/// the experiment Services Ramp gave destinations earlier.
pub fn set_weights(
    spec: &mut Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    weights: &RouteWeights<'_>,
    added_before: &[String],
    managed_routes: &[String],
) -> Result<(), String> {
    let http = list(spec, "http");
    let mut indexes = http_routes(config, http, managed_routes)?;
    if !indexes.is_empty() {
        indexes.extend(mirror_routes(http, managed_routes));
    }
    for index in indexes {
        let what = format!("spec.http[{index}]");
        set_route_weights(&mut http[index], split, weights, added_before, &what)?;
    }
    if config.tls_routes.is_some() {
        let tls = list(spec, "tls");
        for index in tls_routes(config, tls)? {
            let what = format!("spec.tls[{index}]");
            set_route_weights(&mut tls[index], split, weights, added_before, &what)?;
        }
    }
    if config.tcp_routes.is_some() {
        let tcp = list(spec, "tcp");
        for index in tcp_routes(config, tcp)? {
            let what = format!("spec.tcp[{index}]");
            set_route_weights(&mut tcp[index], split, weights, added_before, &what)?;
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

/// Sets the weights of one VirtualService being edited and records its experiment
/// destinations.
fn apply_weights(
    edit: &mut Edit,
    config: &IstioVirtualService,
    split: &Split,
    weights: &RouteWeights<'_>,
    managed_routes: &[String],
) -> Result<(), String> {
    set_weights(
        &mut edit.spec,
        config,
        split,
        weights,
        &edit.experiment_services,
        managed_routes,
    )?;
    edit.experiment_services = weights.experiment_services();
    Ok(())
}

/// Points the stable and canary subsets at their ReplicaSets' pods, and keeps a subset per
/// experiment destination (named after its Service) on the template's pods; `added`: the
/// experiment subsets Ramp added, updated. Returns whether a subset changed.
pub fn label_subsets(
    subsets: &mut Vec<Value>,
    rule: &IstioDestinationRule,
    weights: &DesiredWeights,
    added: &mut Vec<String>,
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
        changed |= label(entry, hash);
    }
    let experiments: Vec<(&str, &str)> = weights
        .additional
        .iter()
        .filter_map(|d| {
            Some((
                d.service_name.as_deref().filter(|s| !s.is_empty())?,
                d.pod_template_hash.as_deref().filter(|h| !h.is_empty())?,
            ))
        })
        .collect();
    let count = subsets.len();
    subsets.retain(|s| {
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        !added.iter().any(|a| a == name) || experiments.iter().any(|(e, _)| *e == name)
    });
    changed |= subsets.len() != count;
    for (service, hash) in &experiments {
        match subsets
            .iter_mut()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(*service))
        {
            Some(entry) => changed |= label(entry, hash),
            None => {
                subsets.push(json!({"name": service, "labels": {POD_TEMPLATE_HASH_LABEL: hash}}));
                changed = true;
            }
        }
    }
    *added = experiments.iter().map(|(s, _)| s.to_string()).collect();
    Ok(changed)
}

/// Sets a subset's pod-template-hash label; returns whether it changed.
fn label(subset: &mut Value, hash: &str) -> bool {
    if hash.is_empty() || subset["labels"][POD_TEMPLATE_HASH_LABEL].as_str() == Some(hash) {
        return false;
    }
    if !subset.get("labels").is_some_and(Value::is_object) {
        subset["labels"] = json!({});
    }
    subset["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
    true
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

/// The HTTP routes of `spec` and the index of the first configured one; `missing` is the
/// error when none is configured.
fn first_http_route(
    spec: &Map<String, Value>,
    config: &IstioVirtualService,
    managed_routes: &[String],
    missing: &str,
) -> Result<(Vec<Value>, usize), String> {
    let http = spec
        .get("http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = *http_routes(config, &http, managed_routes)?
        .first()
        .ok_or(missing)?;
    Ok((http, index))
}

/// The destination of `role` in the first configured HTTP route, without its weight.
fn destination_of(
    spec: &Map<String, Value>,
    config: &IstioVirtualService,
    split: &Split,
    role: Role,
    managed_routes: &[String],
) -> Result<Value, String> {
    let (http, index) = first_http_route(
        spec,
        config,
        managed_routes,
        "no HTTP route is configured for header or mirror routes",
    )?;
    http[index]
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|d| split.role(d) == Some(role))
        .and_then(|d| d.get("destination").cloned())
        .ok_or_else(|| format!("spec.http[{index}] has no {role:?} destination"))
}

/// The destinations (with their weights) of the first configured HTTP route.
fn weighted_destinations(
    spec: &Map<String, Value>,
    config: &IstioVirtualService,
    managed_routes: &[String],
) -> Result<Value, String> {
    let (http, index) = first_http_route(
        spec,
        config,
        managed_routes,
        "no HTTP route is configured for mirror routes",
    )?;
    http[index]
        .get("route")
        .cloned()
        .ok_or_else(|| format!("spec.http[{index}] has no route destinations"))
}

/// Indexes of the mirror routes Ramp added (managed routes with a `mirror`): they split the
/// requests they match like the weighted routes do.
fn mirror_routes(http: &[Value], managed_routes: &[String]) -> Vec<usize> {
    (0..http.len())
        .filter(|i| {
            http[*i].get("mirror").is_some()
                && route_name(&http[*i]).is_some_and(|n| managed_routes.iter().any(|m| m == n))
        })
        .collect()
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
        // The matched requests are served as the weighted route serves the rest (its
        // destinations and their current weights, kept in step by `set_weights`); a copy goes
        // to the canary.
        let served = weighted_destinations(spec, config, managed_routes)?;
        let mut added = json!({
            "name": route.name,
            "match": matches,
            "route": served,
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
            let split = self.split_for(weights);
            let route_weights = RouteWeights::of(weights);
            self.update(|config, edit| {
                apply_weights(edit, config, &split, &route_weights, &self.managed_routes)
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
            self.update(|config, edit| {
                set_header_route(&mut edit.spec, config, &split, route, &self.managed_routes)
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
            self.update(|config, edit| {
                set_mirror_route(&mut edit.spec, config, &split, route, &self.managed_routes)
            })
            .await
        })
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(async move {
            self.update(|_, edit| {
                remove_managed(&mut edit.spec, &self.managed_routes);
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
            let split = self.split_for(weights);
            let route_weights = RouteWeights::of(weights);
            let held = self
                .sync(false, |config, edit| {
                    apply_weights(edit, config, &split, &route_weights, &self.managed_routes)
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
        set_weights(
            &mut spec,
            &config(),
            &host_split(),
            &RouteWeights::new(25, 75),
            &[],
            &[],
        )
        .unwrap();
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
        let error = set_weights(
            &mut spec,
            &config,
            &host_split(),
            &RouteWeights::new(25, 75),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(error.contains("\"absent\""), "{error}");
        let subsets = Split::Subset {
            stable: "stable".into(),
            canary: "canary".into(),
        };
        let error = set_weights(
            &mut self::spec(),
            &self::config(),
            &subsets,
            &RouteWeights::new(25, 75),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(error.contains("subsets"), "{error}");
        let unnamed = IstioVirtualService {
            name: "web".into(),
            ..Default::default()
        };
        let error = set_weights(
            &mut self::spec(),
            &unnamed,
            &host_split(),
            &RouteWeights::new(1, 99),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(error.contains("2 routes"), "{error}");
        let mut tls_only = self::spec();
        tls_only.remove("http");
        tls_only.remove("tcp");
        let mut config = self::config();
        config.tcp_routes = None;
        set_weights(
            &mut tls_only,
            &config,
            &host_split(),
            &RouteWeights::new(5, 95),
            &[],
            &[],
        )
        .unwrap();
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
        let mut added = Vec::new();
        assert!(label_subsets(&mut subsets, &rule, &weights, &mut added).unwrap());
        assert_eq!(
            subsets[0]["labels"],
            json!({"app": "web", POD_TEMPLATE_HASH_LABEL: "s1"})
        );
        assert_eq!(subsets[1]["labels"], json!({POD_TEMPLATE_HASH_LABEL: "c1"}));
        assert!(!label_subsets(&mut subsets, &rule, &weights, &mut added).unwrap());
        assert!(added.is_empty());
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
                   "route": [{"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
                             {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0}],
                   "mirror": {"host": "web-canary", "port": {"number": 80}},
                   "mirrorPercentage": {"value": 50}})
        );
        // Weights still reach the named route behind the managed ones, and the mirror route
        // serves its requests with the same split; the header route is left alone.
        set_weights(
            &mut spec,
            &config(),
            &host_split(),
            &RouteWeights::new(40, 60),
            &[],
            &managed,
        )
        .unwrap();
        assert_eq!(spec["http"][2]["route"][1]["weight"], 40);
        assert_eq!(spec["http"][1]["route"][0]["weight"], 60);
        assert_eq!(spec["http"][1]["route"][1]["weight"], 40);
        assert_eq!(spec["http"][0]["route"][0]["weight"], 100);
        remove_managed(&mut spec, &managed);
        let names: Vec<_> = spec["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("primary"), json!("other")]);
    }

    fn experiment(service: &str, hash: &str, weight: i32) -> WeightDestination {
        WeightDestination {
            weight,
            service_name: Some(service.into()),
            pod_template_hash: Some(hash.into()),
        }
    }

    fn desired(canary: i32, additional: Vec<WeightDestination>) -> DesiredWeights {
        DesiredWeights {
            canary_weight: canary,
            max_weight: 100,
            additional,
            canary_hash: "c1".into(),
            stable_hash: "s1".into(),
            canary_service: None,
            stable_service: None,
        }
    }

    fn weights_by_host(route: &Value) -> Vec<(String, i64)> {
        route["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let dest = &d["destination"];
                let name = dest["subset"]
                    .as_str()
                    .or(dest["host"].as_str())
                    .unwrap_or_default();
                (name.to_string(), d["weight"].as_i64().unwrap_or(-1))
            })
            .collect()
    }

    #[test]
    fn experiment_destinations_take_their_weight_from_stable_and_leave_when_it_ends() {
        let mut edit = Edit {
            spec: spec(),
            experiment_services: Vec::new(),
        };
        let weights = desired(10, vec![experiment("web-abc-2-1-exp", "e1", 20)]);
        apply_weights(
            &mut edit,
            &config(),
            &host_split(),
            &RouteWeights::of(&weights),
            &[],
        )
        .unwrap();
        let expected = vec![
            ("web-stable".to_string(), 70),
            ("web-canary".to_string(), 10),
            ("web-abc-2-1-exp".to_string(), 20),
        ];
        assert_eq!(weights_by_host(&edit.spec["http"][0]), expected);
        assert_eq!(
            edit.spec["http"][0]["route"][2],
            json!({"destination": {"host": "web-abc-2-1-exp"}, "weight": 20})
        );
        assert_eq!(
            edit.spec["tcp"][0]["route"].as_array().unwrap().len(),
            3,
            "TCP routes too"
        );
        assert_eq!(
            edit.spec["http"][1],
            spec()["http"][1],
            "other routes are the user's"
        );
        assert_eq!(
            edit.experiment_services,
            vec!["web-abc-2-1-exp".to_string()]
        );

        // Applying again changes nothing: no duplicate destination.
        let before = edit.spec.clone();
        apply_weights(
            &mut edit,
            &config(),
            &host_split(),
            &RouteWeights::of(&weights),
            &[],
        )
        .unwrap();
        assert_eq!(edit.spec, before);

        // The experiment ended: its destination goes, a user's extra destination stays.
        edit.spec["http"][0]["route"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": {"host": "mirror-of-users"}, "weight": 0}));
        let ended = desired(100, Vec::new());
        apply_weights(
            &mut edit,
            &config(),
            &host_split(),
            &RouteWeights::of(&ended),
            &[],
        )
        .unwrap();
        assert_eq!(
            weights_by_host(&edit.spec["http"][0]),
            vec![
                ("web-stable".to_string(), 0),
                ("web-canary".to_string(), 100),
                ("mirror-of-users".to_string(), 0),
            ]
        );
        assert_eq!(edit.spec["tcp"][0]["route"].as_array().unwrap().len(), 2);
        assert!(edit.experiment_services.is_empty());
    }

    #[test]
    fn subset_split_gives_experiments_a_host_destination_and_a_subset() {
        let mut edit = Edit {
            spec: serde_json::from_value(json!({"http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]}))
            .unwrap(),
            experiment_services: Vec::new(),
        };
        let split = Split::Subset {
            stable: "stable".into(),
            canary: "canary".into(),
        };
        let config = IstioVirtualService {
            name: "web".into(),
            routes: Some(vec!["primary".into()]),
            ..Default::default()
        };
        let weights = desired(10, vec![experiment("web-exp", "e1", 20)]);
        apply_weights(&mut edit, &config, &split, &RouteWeights::of(&weights), &[]).unwrap();
        assert_eq!(
            weights_by_host(&edit.spec["http"][0]),
            vec![
                ("stable".to_string(), 70),
                ("canary".to_string(), 10),
                ("web-exp".to_string(), 20),
            ]
        );

        let rule = IstioDestinationRule {
            name: "web".into(),
            canary_subset_name: "canary".into(),
            stable_subset_name: "stable".into(),
            additional_subset_names: None,
        };
        let mut subsets = vec![
            json!({"name": "stable", "labels": {"app": "web"}}),
            json!({"name": "canary", "labels": {"app": "web"}}),
            json!({"name": "users-own", "labels": {"version": "v0"}}),
        ];
        let mut added = Vec::new();
        assert!(label_subsets(&mut subsets, &rule, &weights, &mut added).unwrap());
        assert_eq!(subsets.len(), 4);
        assert_eq!(
            subsets[3],
            json!({"name": "web-exp", "labels": {POD_TEMPLATE_HASH_LABEL: "e1"}})
        );
        assert_eq!(added, vec!["web-exp".to_string()]);
        assert!(!label_subsets(&mut subsets, &rule, &weights, &mut added).unwrap());

        let ended = desired(0, Vec::new());
        assert!(label_subsets(&mut subsets, &rule, &ended, &mut added).unwrap());
        let names: Vec<_> = subsets.iter().map(|s| s["name"].clone()).collect();
        assert_eq!(
            names,
            vec![json!("stable"), json!("canary"), json!("users-own")]
        );
        assert!(added.is_empty());
    }

    #[test]
    fn ping_pong_names_the_split_services_through_the_weights() {
        let router_services = Split::Host(Services {
            stable: String::new(),
            canary: String::new(),
        });
        let mut weights = desired(25, Vec::new());
        weights.stable_service = Some("ping".into());
        weights.canary_service = Some("pong".into());
        let split = split_of(router_services, &weights);
        let mut spec: Map<String, Value> =
            serde_json::from_value(json!({"http": [{"name": "primary", "route": [
            {"destination": {"host": "ping"}, "weight": 100},
            {"destination": {"host": "pong"}, "weight": 0}]}]}))
            .unwrap();
        let config = IstioVirtualService {
            name: "web".into(),
            routes: Some(vec!["primary".into()]),
            ..Default::default()
        };
        set_weights(
            &mut spec,
            &config,
            &split,
            &RouteWeights::of(&weights),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            weights_by_host(&spec["http"][0]),
            vec![("ping".to_string(), 75), ("pong".to_string(), 25)]
        );
        // After promotion pong is stable: the same route, the other way round.
        weights.canary_weight = 0;
        weights.stable_service = Some("pong".into());
        weights.canary_service = Some("ping".into());
        let split = split_of(split, &weights);
        set_weights(
            &mut spec,
            &config,
            &split,
            &RouteWeights::of(&weights),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            weights_by_host(&spec["http"][0]),
            vec![("ping".to_string(), 0), ("pong".to_string(), 100)]
        );
        // Without named Services (no ping-pong) the Rollout's own split stays.
        let subsets = Split::Subset {
            stable: "stable".into(),
            canary: "canary".into(),
        };
        assert_eq!(split_of(subsets.clone(), &weights), subsets);
    }
}
