//! Traffic routing for canaries: the seam between the rollout state machine and the objects
//! that split traffic (an HTTPRoute, NGINX canary Ingress, Istio VirtualService, SMI
//! TrafficSplit).
//!
//! ```text
//!   rollout planner ── TrafficPlan (weight, hashes, routes) ──▶ apply ──▶ dyn TrafficRouter
//!                                                                        ├── gatewayapi
//!   no trafficRouting: weight = replica split (rollout::replicas)        ├── nginx
//!                      nothing here is called                            └── …
//! ```
//!
//! Without `trafficRouting` there is no router: the canary weight is approximated by replica
//! counts ([`crate::rollout::replicas::basic_canary`], Argo's math) and the canary Service
//! is moved back to the stable pods on abort. With a router, the planner keeps the stable
//! at full size (unless `dynamicStableScale`), sizes the canary from the weight, and asks
//! the router(s) for the exact split through [`TrafficRouter`].
//!
//! A router is built per reconciliation from the Rollout and a [`RouterContext`]; every
//! call is idempotent (set what is desired, compare before writing), and every error names
//! the router object so the Rollout's condition and Event tell the user what to fix.
//!
//! Adding a router: a module here implementing [`TrafficRouter`], and one arm in
//! [`routers_for`] recognising its configuration.

pub mod gatewayapi;
pub mod istio;
pub mod nginx;
pub mod objects;
pub mod smi;
pub mod watch;

use std::fmt;

use futures::future::BoxFuture;
use objects::RolloutIdentity;

use crate::api::{
    Rollout, RolloutTrafficRouting, SetHeaderRoute, SetMirrorRoute, WeightDestination,
};

/// The split a router should carry: `canary_weight` of `max_weight` to the canary, the
/// additional destinations their weights, the rest to stable.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredWeights {
    pub canary_weight: i32,
    pub max_weight: i32,
    pub additional: Vec<WeightDestination>,
    /// Pod-template hashes of the canary and stable ReplicaSets (for subset-based routers).
    pub canary_hash: String,
    pub stable_hash: String,
    pub canary_service: Option<String>,
    pub stable_service: Option<String>,
}

impl DesiredWeights {
    /// The stable's share: everything the canary and the additional destinations do not take.
    pub fn stable_weight(&self) -> i32 {
        self.max_weight - self.canary_weight - self.additional.iter().map(|d| d.weight).sum::<i32>()
    }
}

/// A traffic router: one kind of object that splits traffic between stable and canary.
///
/// Implementations must only touch the parts of user objects they own (the weights of the
/// stable and canary destinations, routes they added) and must write nothing when the
/// object already carries the desired state.
pub trait TrafficRouter: Send + Sync {
    /// The router's name in messages, metrics (`traffic_router` label) and Events.
    fn kind(&self) -> &'static str;

    /// Sets the split. Called on every reconciliation of a routed canary; on abort it is the
    /// first write, made alone.
    fn set_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<(), TrafficError>>;

    /// Adds or updates the header-based route of a `setHeaderRoute` step.
    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>>;

    /// Adds or updates the mirror route of a `setMirrorRoute` step.
    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>>;

    /// Removes every route Ramp added (`managedRoutes`): the rollout finished or aborted.
    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>>;

    /// Whether the router's data plane reports the desired weights (`None`: this router
    /// cannot tell, which counts as verified).
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>>;
}

/// What a router needs to reach the cluster.
#[derive(Clone)]
pub struct RouterContext {
    pub client: kube::Client,
    /// Namespace of the Rollout (the default namespace of router objects).
    pub namespace: String,
}

/// The routers a Rollout's `trafficRouting` names, or why they cannot be built. An empty
/// list means no router: the weight is carried by replica counts.
pub fn routers_for(
    rollout: &Rollout,
    context: &RouterContext,
) -> Result<Vec<Box<dyn TrafficRouter>>, TrafficError> {
    let Some(canary) = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
    else {
        return Ok(Vec::new());
    };
    let Some(routing) = canary.traffic_routing.as_ref() else {
        return Ok(Vec::new());
    };
    let identity = RolloutIdentity {
        name: rollout.metadata.name.clone().unwrap_or_default(),
        namespace: context.namespace.clone(),
        uid: rollout.metadata.uid.clone().unwrap_or_default(),
    };
    let services = gatewayapi::Services {
        stable: canary.stable_service.clone().unwrap_or_default(),
        canary: canary.canary_service.clone().unwrap_or_default(),
    };
    let managed_routes: Vec<String> = routing
        .managed_routes
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    let mut routers: Vec<Box<dyn TrafficRouter>> = Vec::new();
    if let Some(config) = routing
        .plugins
        .as_ref()
        .and_then(|p| p.get(gatewayapi::PLUGIN))
    {
        routers.push(Box::new(gatewayapi::GatewayApiRouter::new(
            config,
            context,
            &identity,
            services.clone(),
            managed_routes.clone(),
        )?));
    }
    if let Some(nginx) = &routing.nginx {
        routers.push(Box::new(nginx::NginxRouter::new(
            nginx,
            context,
            &identity,
            services.clone(),
            routing.max_traffic_weight,
        )?));
    }
    if let Some(smi) = &routing.smi {
        routers.push(Box::new(smi::SmiRouter::new(
            smi,
            context,
            &identity,
            services.clone(),
        )?));
    }
    if let Some(istio) = &routing.istio {
        routers.push(Box::new(istio::IstioRouter::new(
            istio,
            context,
            &identity,
            services.clone(),
            managed_routes.clone(),
        )?));
    }
    let unsupported = RolloutTrafficRouting {
        plugins: routing.plugins.as_ref().map(|plugins| {
            plugins
                .iter()
                .filter(|(name, _)| name.as_str() != gatewayapi::PLUGIN)
                .map(|(name, config)| (name.clone(), config.clone()))
                .collect()
        }),
        nginx: None,
        smi: None,
        istio: None,
        ..routing.clone()
    };
    if let Some(kind) = configured_router(&unsupported) {
        return Err(TrafficError {
            router: kind,
            object: String::new(),
            problem: Problem::Unsupported,
        });
    }
    Ok(routers)
}

/// The first router named in a `trafficRouting` block.
pub fn configured_router(routing: &RolloutTrafficRouting) -> Option<&'static str> {
    if routing
        .plugins
        .as_ref()
        .is_some_and(|p| p.contains_key("argoproj-labs/gatewayAPI"))
    {
        return Some("GatewayAPI");
    }
    [
        (routing.nginx.is_some(), "Nginx"),
        (routing.istio.is_some(), "Istio"),
        (routing.smi.is_some(), "SMI"),
        (routing.alb.is_some(), "ALB"),
        (routing.ambassador.is_some(), "Ambassador"),
        (routing.app_mesh.is_some(), "AppMesh"),
        (routing.traefik.is_some(), "Traefik"),
        (routing.apisix.is_some(), "Apisix"),
        (
            routing.plugins.as_ref().is_some_and(|p| !p.is_empty()),
            "Plugin",
        ),
    ]
    .into_iter()
    .find_map(|(set, kind)| set.then_some(kind))
}

/// A router could not do what was asked; names the router and the object.
#[derive(Debug)]
pub struct TrafficError {
    /// The router kind, e.g. `Nginx`.
    pub router: &'static str,
    /// The object concerned, as `Kind/namespace/name` (empty when none is).
    pub object: String,
    pub problem: Problem,
}

/// Why a router failed.
#[derive(Debug)]
pub enum Problem {
    /// This router is not available in Ramp (yet).
    Unsupported,
    /// The object the Rollout names does not exist.
    NotFound,
    /// The object exists but does not have the shape the router needs (the message says
    /// what is missing and where).
    Malformed(String),
    /// The API server refused a read or write.
    Api(kube::Error),
}

impl TrafficError {
    /// Short category for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self.problem {
            Problem::Unsupported => "TrafficRouterUnsupported",
            Problem::NotFound => "TrafficRouterObjectNotFound",
            Problem::Malformed(_) => "TrafficRouterObjectInvalid",
            Problem::Api(_) => "TrafficRoutingError",
        }
    }
}

impl fmt::Display for TrafficError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let object = if self.object.is_empty() {
            String::new()
        } else {
            format!(" {}", self.object)
        };
        match &self.problem {
            Problem::Unsupported => write!(
                f,
                "traffic router {} is not supported by this version of Ramp: remove spec.strategy.canary.trafficRouting to use replica-based weights",
                self.router
            ),
            Problem::NotFound => write!(
                f,
                "{} router:{object} not found: create it or fix its name in the Rollout",
                self.router
            ),
            Problem::Malformed(what) => {
                write!(f, "{} router:{object} cannot be used: {what}", self.router)
            }
            Problem::Api(error) => write!(f, "{} router:{object}: {error}", self.router),
        }
    }
}

impl std::error::Error for TrafficError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Api(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{NginxTrafficRouting, RolloutTrafficRouting};

    #[test]
    fn recognises_configured_routers() {
        let mut routing = RolloutTrafficRouting::default();
        assert_eq!(configured_router(&routing), None);
        routing.nginx = Some(NginxTrafficRouting::default());
        assert_eq!(configured_router(&routing), Some("Nginx"));
        routing.plugins = Some(BTreeMap::from([(
            "argoproj-labs/gatewayAPI".to_string(),
            serde_json::json!({}),
        )]));
        assert_eq!(configured_router(&routing), Some("GatewayAPI"));
    }

    #[test]
    fn errors_name_the_router_object() {
        let error = TrafficError {
            router: "Nginx",
            object: "Ingress/shop/web".into(),
            problem: Problem::NotFound,
        };
        assert_eq!(
            error.to_string(),
            "Nginx router: Ingress/shop/web not found: create it or fix its name in the Rollout"
        );
        assert_eq!(error.category(), "TrafficRouterObjectNotFound");
        let weights = DesiredWeights {
            canary_weight: 20,
            max_weight: 100,
            additional: vec![WeightDestination {
                weight: 5,
                ..Default::default()
            }],
            canary_hash: "c".into(),
            stable_hash: "s".into(),
            canary_service: None,
            stable_service: None,
        };
        assert_eq!(weights.stable_weight(), 75);
    }
}
