//! NGINX Ingress router (`trafficRouting.nginx`): beside each stable Ingress, a canary
//! Ingress that Ramp creates and owns, as Argo Rollouts does.
//!
//! ```text
//!   Ingress web (user's)            Ingress <rollout>-web-canary (Ramp's, owned by the Rollout)
//!     host a → web-stable:80   ──▶    host a → web-canary:80
//!                                     nginx.ingress.kubernetes.io/canary: "true"
//!                                     nginx.ingress.kubernetes.io/canary-weight: "<weight>"
//!                                     …/canary-by-header(-value|-pattern)  (setHeaderRoute)
//! ```
//!
//! The stable Ingress is only read. The canary Ingress keeps the stable's rules whose paths
//! go to the stable Service, pointed at the canary Service, and its ingress class.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::{Ingress, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;

use super::gatewayapi::Services;
use super::objects::{self, RolloutIdentity, api_error, malformed};
use super::{DesiredWeights, RouterContext, TrafficError, TrafficRouter};
use crate::api::{NginxTrafficRouting, SetHeaderRoute, SetMirrorRoute};

const ROUTER: &str = "Nginx";
const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks a canary Ingress carrying the header route of a `setHeaderRoute` step (its name).
pub const HEADER_ROUTE_ANNOTATION: &str = "rollouts.ramp.dev/header-route";

/// What the next write does with the header route.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaderRoute {
    /// Keep what the canary Ingress carries.
    Keep,
    /// Set these annotations (without prefix) under the route's name.
    Set {
        name: String,
        annotations: BTreeMap<String, String>,
    },
    Clear,
}

pub struct NginxRouter {
    context: RouterContext,
    rollout: RolloutIdentity,
    config: NginxTrafficRouting,
    stable_ingresses: Vec<String>,
    services: Services,
    max_weight: Option<i32>,
    /// A header change asked for in this reconciliation, applied by the next write.
    pending_header: Mutex<HeaderRoute>,
}

impl NginxRouter {
    pub fn new(
        config: &NginxTrafficRouting,
        context: &RouterContext,
        rollout: &RolloutIdentity,
        services: Services,
        max_weight: Option<i32>,
    ) -> Result<NginxRouter, TrafficError> {
        let stable_ingresses: Vec<String> = config
            .stable_ingress
            .iter()
            .chain(config.stable_ingresses.iter().flatten())
            .filter(|name| !name.is_empty())
            .cloned()
            .collect();
        if stable_ingresses.is_empty() {
            return Err(malformed(
                ROUTER,
                "spec.strategy.canary.trafficRouting.nginx".into(),
                "set stableIngress or stableIngresses",
            ));
        }
        Ok(NginxRouter {
            context: context.clone(),
            rollout: rollout.clone(),
            config: config.clone(),
            stable_ingresses,
            services,
            max_weight,
            pending_header: Mutex::new(HeaderRoute::Keep),
        })
    }

    fn prefix(&self) -> &str {
        self.config
            .annotation_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PREFIX)
    }

    fn pending(&self) -> HeaderRoute {
        self.pending_header
            .lock()
            .map(|h| h.clone())
            .unwrap_or(HeaderRoute::Keep)
    }

    fn set_pending(&self, header: HeaderRoute) {
        if let Ok(mut pending) = self.pending_header.lock() {
            *pending = header;
        }
    }

    /// Brings every canary Ingress to the desired state. `weight` `None` keeps the weight it
    /// carries (and skips an Ingress not created yet: the next weight write creates it).
    async fn sync(&self, weight: Option<i32>) -> Result<(), TrafficError> {
        let namespace = &self.rollout.namespace;
        let api: Api<Ingress> = Api::namespaced(self.context.client.clone(), namespace);
        let header = self.pending();
        for stable_name in &self.stable_ingresses {
            let stable_id = format!("Ingress/{namespace}/{stable_name}");
            let stable = api
                .get(stable_name)
                .await
                .map_err(|e| api_error(ROUTER, stable_id.clone(), e))?;
            let name = canary_ingress_name(&self.rollout.name, stable_name);
            let canary_id = format!("Ingress/{namespace}/{name}");
            let existing = match api.get(&name).await {
                Ok(existing) => Some(existing),
                Err(kube::Error::Api(status)) if status.code == 404 => None,
                Err(error) => return Err(api_error(ROUTER, canary_id, error)),
            };
            if let Some(existing) = &existing
                && !self
                    .rollout
                    .owns(existing.metadata.owner_references.as_deref())
            {
                return Err(malformed(
                    ROUTER,
                    canary_id,
                    format!(
                        "it exists and is not controlled by Rollout {:?}: delete it so that Ramp can create its own",
                        self.rollout.name
                    ),
                ));
            }
            let weight = match (weight, &existing) {
                (Some(weight), _) => weight,
                (None, Some(existing)) => current_weight(existing, self.prefix()),
                (None, None) => continue,
            };
            let header = match (&header, &existing) {
                (HeaderRoute::Keep, Some(existing)) => carried_header(existing, self.prefix()),
                (HeaderRoute::Keep, None) => HeaderRoute::Clear,
                (other, _) => other.clone(),
            };
            let desired = canary_ingress(&CanaryInput {
                stable: &stable,
                name: &name,
                prefix: self.prefix(),
                config: &self.config,
                services: &self.services,
                weight,
                max_weight: self.max_weight,
                header: &header,
            })
            .map_err(|what| malformed(ROUTER, stable_id.clone(), what))?;
            match existing {
                None => {
                    let mut created = desired;
                    created.metadata.owner_references = Some(vec![self.rollout.owner_reference()]);
                    api.create(&objects::post_params(), &created)
                        .await
                        .map_err(|e| api_error(ROUTER, canary_id, e))?;
                }
                Some(existing) => {
                    let same = serde_json::to_value(&existing.spec).ok()
                        == serde_json::to_value(&desired.spec).ok()
                        && existing.metadata.annotations == desired.metadata.annotations;
                    if same {
                        continue;
                    }
                    // A merge patch of what differs, on condition that the Ingress is still
                    // the version read (so a concurrent edit is re-read, never overwritten).
                    let as_value = |spec: &Option<IngressSpec>, annotations| {
                        serde_json::json!({
                            "metadata": {"annotations": annotations},
                            "spec": spec,
                        })
                    };
                    let mut patch = objects::merge_patch(
                        &as_value(&existing.spec, &existing.metadata.annotations),
                        &as_value(&desired.spec, &desired.metadata.annotations),
                    );
                    patch["metadata"]["resourceVersion"] =
                        serde_json::json!(existing.metadata.resource_version);
                    api.patch(&name, &objects::params(), &kube::api::Patch::Merge(&patch))
                        .await
                        .map_err(|e| api_error(ROUTER, canary_id, e))?;
                }
            }
        }
        Ok(())
    }
}

impl TrafficRouter for NginxRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    fn set_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(self.sync(Some(weights.canary_weight)))
    }

    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move {
            let header = header_annotations(route)
                .map_err(|what| malformed(ROUTER, "setHeaderRoute".into(), what))?;
            self.set_pending(header);
            self.sync(None).await
        })
    }

    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        // NGINX canary Ingresses cannot mirror; as in Argo the step does nothing here (another
        // router of the same Rollout may carry it).
        Box::pin(async move {
            tracing::debug!(route = %route.name, "NGINX router: setMirrorRoute has no effect");
            Ok(())
        })
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(async move {
            self.set_pending(HeaderRoute::Clear);
            self.sync(None).await
        })
    }

    /// Every canary Ingress as the API server stores it carries the canary weight.
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>> {
        Box::pin(async move {
            let namespace = &self.rollout.namespace;
            let api: Api<Ingress> = Api::namespaced(self.context.client.clone(), namespace);
            for stable_name in &self.stable_ingresses {
                let name = canary_ingress_name(&self.rollout.name, stable_name);
                let stored = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| api_error(ROUTER, format!("Ingress/{namespace}/{name}"), e))?;
                let holds = stored.is_some_and(|ingress| {
                    current_weight(&ingress, self.prefix()) == weights.canary_weight
                });
                if !holds {
                    return Ok(Some(false));
                }
            }
            Ok(Some(true))
        })
    }
}

/// The canary Ingress's name: `<rollout>-<stable ingress>-canary`, cut to fit 253 characters.
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    const SUFFIX: &str = "-canary";
    let mut prefix = format!("{rollout}-{stable_ingress}");
    let limit = 253 - SUFFIX.len();
    if prefix.len() > limit {
        let mut cut = limit;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    format!("{prefix}{SUFFIX}")
}

/// The header annotations (without prefix) of a `setHeaderRoute` step; no match clears it.
pub fn header_annotations(route: &SetHeaderRoute) -> Result<HeaderRoute, String> {
    let matches = route.matches.as_deref().unwrap_or_default();
    let Some(first) = matches.first() else {
        return Ok(HeaderRoute::Clear);
    };
    if matches.len() > 1 {
        return Err(format!(
            "route {:?}: NGINX canary Ingresses match one header; found {}",
            route.name.as_deref().unwrap_or_default(),
            matches.len()
        ));
    }
    let mut annotations =
        BTreeMap::from([("canary-by-header".to_string(), first.header_name.clone())]);
    let value = &first.header_value;
    if let Some(exact) = &value.exact {
        annotations.insert("canary-by-header-value".into(), exact.clone());
    } else if let Some(prefix) = &value.prefix {
        annotations.insert(
            "canary-by-header-pattern".into(),
            format!("^{}.*", regex::escape(prefix)),
        );
    } else if let Some(regex) = &value.regex {
        annotations.insert("canary-by-header-pattern".into(), regex.clone());
    } else {
        return Err(format!(
            "header {:?}: set one of exact, prefix or regex",
            first.header_name
        ));
    }
    Ok(HeaderRoute::Set {
        name: route.name.clone().unwrap_or_default(),
        annotations,
    })
}

const HEADER_KEYS: [&str; 3] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
];

/// The header route a canary Ingress carries now.
fn carried_header(existing: &Ingress, prefix: &str) -> HeaderRoute {
    let annotations = existing.metadata.annotations.clone().unwrap_or_default();
    let Some(name) = annotations.get(HEADER_ROUTE_ANNOTATION) else {
        return HeaderRoute::Clear;
    };
    let carried = HEADER_KEYS
        .iter()
        .filter_map(|key| {
            annotations
                .get(&format!("{prefix}/{key}"))
                .map(|v| (key.to_string(), v.clone()))
        })
        .collect();
    HeaderRoute::Set {
        name: name.clone(),
        annotations: carried,
    }
}

fn current_weight(existing: &Ingress, prefix: &str) -> i32 {
    existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{prefix}/canary-weight")))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}

pub struct CanaryInput<'a> {
    pub stable: &'a Ingress,
    pub name: &'a str,
    pub prefix: &'a str,
    pub config: &'a NginxTrafficRouting,
    pub services: &'a Services,
    pub weight: i32,
    pub max_weight: Option<i32>,
    pub header: &'a HeaderRoute,
}

/// The canary Ingress for a stable Ingress (without owner reference).
pub fn canary_ingress(input: &CanaryInput<'_>) -> Result<Ingress, String> {
    let stable_spec = input.stable.spec.clone().unwrap_or_default();
    let stable_service = &input.services.stable;
    let mut rules = Vec::new();
    for rule in stable_spec.rules.iter().flatten() {
        let Some(http) = &rule.http else { continue };
        let paths: Vec<_> = http
            .paths
            .iter()
            .filter(|path| path.backend.service.as_ref().map(|s| &s.name) == Some(stable_service))
            .cloned()
            .map(|mut path| {
                if let Some(service) = path.backend.service.as_mut() {
                    service.name = input.services.canary.clone();
                }
                path
            })
            .collect();
        if paths.is_empty() {
            continue;
        }
        let mut rule = rule.clone();
        if let Some(http) = rule.http.as_mut() {
            http.paths = paths;
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(format!(
            "no rule has a path to the stable Service {stable_service:?} (spec.strategy.canary.stableService)"
        ));
    }
    let prefix = input.prefix;
    let mut annotations = BTreeMap::new();
    if let Some(class) = input
        .stable
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
    {
        annotations.insert(INGRESS_CLASS_ANNOTATION.to_string(), class.clone());
    }
    for (key, value) in input.config.additional_ingress_annotations.iter().flatten() {
        annotations.insert(format!("{prefix}/{key}"), value.clone());
    }
    for (key, value) in input.config.canary_ingress_annotations.iter().flatten() {
        annotations.insert(key.clone(), value.clone());
    }
    annotations.insert(format!("{prefix}/canary"), "true".into());
    annotations.insert(format!("{prefix}/canary-weight"), input.weight.to_string());
    if let Some(total) = input.max_weight {
        annotations.insert(format!("{prefix}/canary-weight-total"), total.to_string());
    }
    if let HeaderRoute::Set {
        name,
        annotations: header,
    } = input.header
    {
        for key in HEADER_KEYS {
            annotations.remove(&format!("{prefix}/{key}"));
        }
        for (key, value) in header {
            annotations.insert(format!("{prefix}/{key}"), value.clone());
        }
        annotations.insert(HEADER_ROUTE_ANNOTATION.into(), name.clone());
    }
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(input.name.to_string()),
            namespace: input.stable.metadata.namespace.clone(),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: stable_spec.ingress_class_name.clone(),
            rules: Some(rules),
            tls: stable_spec.tls.clone(),
            default_backend: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{HeaderRoutingMatch, StringMatch};

    fn stable() -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop",
                         "annotations": {"kubernetes.io/ingress.class": "nginx", "team": "a"}},
            "spec": {"ingressClassName": "nginx", "rules": [
                {"host": "web.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}},
                    {"path": "/docs", "pathType": "Prefix",
                     "backend": {"service": {"name": "docs", "port": {"number": 80}}}}]}},
                {"host": "other.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap()
    }

    fn services() -> Services {
        Services {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
        }
    }

    fn input<'a>(
        stable: &'a Ingress,
        config: &'a NginxTrafficRouting,
        services: &'a Services,
        header: &'a HeaderRoute,
    ) -> CanaryInput<'a> {
        CanaryInput {
            stable,
            name: "roll-web-canary",
            prefix: DEFAULT_PREFIX,
            config,
            services,
            weight: 20,
            max_weight: None,
            header,
        }
    }

    #[test]
    fn names_follow_argo() {
        assert_eq!(canary_ingress_name("roll", "web"), "roll-web-canary");
        let long = "x".repeat(300);
        let name = canary_ingress_name("roll", &long);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-canary"));
    }

    #[test]
    fn canary_ingress_points_the_stable_paths_at_the_canary() {
        let stable = stable();
        let config = NginxTrafficRouting {
            additional_ingress_annotations: Some(BTreeMap::from([(
                "canary-by-header".to_string(),
                "X-Canary".to_string(),
            )])),
            canary_ingress_annotations: Some(BTreeMap::from([(
                "example.com/owner".to_string(),
                "team-a".to_string(),
            )])),
            ..Default::default()
        };
        let services = services();
        let canary =
            canary_ingress(&input(&stable, &config, &services, &HeaderRoute::Clear)).unwrap();
        assert_eq!(
            serde_json::to_value(&canary).unwrap(),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "roll-web-canary", "namespace": "shop", "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "20",
                    "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                    "example.com/owner": "team-a"}},
                "spec": {"ingressClassName": "nginx", "rules": [
                    {"host": "web.example", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]}
            })
        );
    }

    #[test]
    fn header_routes_and_weight_totals() {
        let stable = stable();
        let config = NginxTrafficRouting {
            annotation_prefix: Some("custom.nginx.org".into()),
            ..Default::default()
        };
        let services = services();
        let route = SetHeaderRoute {
            name: Some("canary-header".into()),
            matches: Some(vec![HeaderRoutingMatch {
                header_name: "X-Version".into(),
                header_value: StringMatch {
                    regex: Some("v2.*".into()),
                    ..Default::default()
                },
            }]),
        };
        let header = header_annotations(&route).unwrap();
        let mut input = input(&stable, &config, &services, &header);
        input.prefix = "custom.nginx.org";
        input.max_weight = Some(1000);
        let canary = canary_ingress(&input).unwrap();
        let annotations = canary.metadata.annotations.unwrap();
        assert_eq!(
            annotations["custom.nginx.org/canary-by-header"],
            "X-Version"
        );
        assert_eq!(
            annotations["custom.nginx.org/canary-by-header-pattern"],
            "v2.*"
        );
        assert_eq!(annotations["custom.nginx.org/canary-weight-total"], "1000");
        assert_eq!(annotations[HEADER_ROUTE_ANNOTATION], "canary-header");
        let cleared = SetHeaderRoute {
            name: Some("canary-header".into()),
            matches: None,
        };
        assert_eq!(header_annotations(&cleared).unwrap(), HeaderRoute::Clear);
    }

    #[test]
    fn a_stable_ingress_without_the_stable_service_is_malformed() {
        let stable = stable();
        let config = NginxTrafficRouting::default();
        let services = Services {
            stable: "missing".into(),
            canary: "web-canary".into(),
        };
        let error =
            canary_ingress(&input(&stable, &config, &services, &HeaderRoute::Clear)).unwrap_err();
        assert!(error.contains("\"missing\""), "{error}");
    }
}
