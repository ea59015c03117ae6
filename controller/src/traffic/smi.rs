//! SMI router (`trafficRouting.smi`): a TrafficSplit that Ramp creates and owns, splitting
//! the root Service between the canary and stable Services.
//!
//! The TrafficSplit is named `trafficSplitName` (default: the Rollout's name); its root is
//! `rootService` (default: the stable Service). The cluster's served TrafficSplit version is
//! discovered once (v1alpha1 to v1alpha4 have the same spec for what Ramp writes).

use std::sync::Mutex;

use futures::future::BoxFuture;
use kube::api::{ApiResource, DynamicObject};
use kube::discovery;
use serde_json::{Value, json};

use super::gatewayapi::Services;
use super::objects::{self, RolloutIdentity, malformed};
use super::{DesiredWeights, RouterContext, TrafficError, TrafficRouter};
use crate::api::{SetHeaderRoute, SetMirrorRoute, SmiTrafficRouting};

const ROUTER: &str = "SMI";
const GROUP: &str = "split.smi-spec.io";

/// The TrafficSplit resource the cluster serves (found once per process).
static SERVED: Mutex<Option<ApiResource>> = Mutex::new(None);

pub struct SmiRouter {
    context: RouterContext,
    rollout: RolloutIdentity,
    name: String,
    root_service: String,
    services: Services,
}

impl SmiRouter {
    pub fn new(
        config: &SmiTrafficRouting,
        context: &RouterContext,
        rollout: &RolloutIdentity,
        services: Services,
    ) -> Result<SmiRouter, TrafficError> {
        let name = config
            .traffic_split_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| rollout.name.clone());
        let root_service = config
            .root_service
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| services.stable.clone());
        Ok(SmiRouter {
            context: context.clone(),
            rollout: rollout.clone(),
            name,
            root_service,
            services,
        })
    }

    async fn resource(&self) -> Result<ApiResource, TrafficError> {
        if let Some(found) = SERVED.lock().ok().and_then(|s| s.clone()) {
            return Ok(found);
        }
        let object = format!("TrafficSplit/{}/{}", self.rollout.namespace, self.name);
        let group = discovery::group(&self.context.client, GROUP)
            .await
            .map_err(|error| objects::api_error(ROUTER, object.clone(), error))?;
        let (resource, _) = group.recommended_kind("TrafficSplit").ok_or_else(|| {
            malformed(
                ROUTER,
                object,
                format!("the cluster serves no TrafficSplit kind in {GROUP}: install the SMI CRDs"),
            )
        })?;
        if let Ok(mut served) = SERVED.lock() {
            *served = Some(resource.clone());
        }
        Ok(resource)
    }
}

/// The TrafficSplit spec for a split. The backends are in Argo's order: canary, experiment
/// templates, stable last (tools and scripts written for Argo read them by position).
pub fn split_spec(root: &str, services: &Services, weights: &DesiredWeights) -> Value {
    let mut backends = vec![json!({"service": services.canary, "weight": weights.canary_weight})];
    for extra in &weights.additional {
        backends.push(json!({"service": extra.service_name, "weight": extra.weight}));
    }
    backends.push(json!({"service": services.stable, "weight": weights.stable_weight()}));
    json!({"service": root, "backends": backends})
}

/// Whether the observed spec already carries what Ramp writes (weights compared as
/// numbers: v1alpha1 stores them as quantities).
fn same_split(observed: &Value, desired: &Value) -> bool {
    let backends = |spec: &Value| -> Vec<(String, String)> {
        spec.get("backends")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|b| {
                let weight = match &b["weight"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (
                    b["service"].as_str().unwrap_or_default().to_string(),
                    weight,
                )
            })
            .collect()
    };
    observed.get("service") == desired.get("service") && backends(observed) == backends(desired)
}

impl TrafficRouter for SmiRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    fn set_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move {
            let resource = self.resource().await?;
            let namespace = &self.rollout.namespace;
            let client = &self.context.client;
            let desired = split_spec(&self.root_service, &self.services, weights);
            let existing =
                objects::get_opt(client, &resource, ROUTER, namespace, &self.name).await?;
            match existing {
                None => {
                    let mut split = DynamicObject::new(&self.name, &resource).within(namespace);
                    split.metadata.owner_references = Some(vec![self.rollout.owner_reference()]);
                    split.data = json!({"spec": desired});
                    objects::create(client, &resource, ROUTER, &split).await
                }
                Some(existing) => {
                    if !self
                        .rollout
                        .owns(existing.metadata.owner_references.as_deref())
                    {
                        return Err(malformed(
                            ROUTER,
                            objects::describe(&resource, namespace, &self.name),
                            format!(
                                "it exists and is not controlled by Rollout {:?}: delete it or set trafficSplitName",
                                self.rollout.name
                            ),
                        ));
                    }
                    if same_split(&objects::spec(&existing), &desired) {
                        return Ok(());
                    }
                    objects::patch_spec(client, &resource, ROUTER, &existing, desired).await
                }
            }
        })
    }

    // TrafficSplits route by weight only; as in Argo, header and mirror steps do nothing here
    // (another router of the same Rollout may carry them).
    fn set_header_route<'a>(
        &'a self,
        route: &'a SetHeaderRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move {
            tracing::debug!(route = ?route.name, "SMI router: setHeaderRoute has no effect");
            Ok(())
        })
    }

    fn set_mirror_route<'a>(
        &'a self,
        route: &'a SetMirrorRoute,
    ) -> BoxFuture<'a, Result<(), TrafficError>> {
        Box::pin(async move {
            tracing::debug!(route = %route.name, "SMI router: setMirrorRoute has no effect");
            Ok(())
        })
    }

    fn remove_managed_routes(&self) -> BoxFuture<'_, Result<(), TrafficError>> {
        // SMI carries no routes of Ramp's.
        Box::pin(async { Ok(()) })
    }

    /// The TrafficSplit as the API server stores it carries the split.
    fn verify_weight<'a>(
        &'a self,
        weights: &'a DesiredWeights,
    ) -> BoxFuture<'a, Result<Option<bool>, TrafficError>> {
        Box::pin(async move {
            let resource = self.resource().await?;
            let desired = split_spec(&self.root_service, &self.services, weights);
            let stored = objects::get_opt(
                &self.context.client,
                &resource,
                ROUTER,
                &self.rollout.namespace,
                &self.name,
            )
            .await?;
            Ok(Some(stored.is_some_and(|split| {
                same_split(&objects::spec(&split), &desired)
            })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_carries_canary_then_extra_destinations_then_stable() {
        let services = Services {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
        };
        let weights = DesiredWeights {
            canary_weight: 20,
            max_weight: 100,
            additional: vec![crate::api::WeightDestination {
                weight: 5,
                service_name: Some("web-experiment".into()),
                pod_template_hash: None,
            }],
            canary_hash: "c".into(),
            stable_hash: "s".into(),
            canary_service: None,
            stable_service: None,
        };
        let spec = split_spec("web", &services, &weights);
        assert_eq!(
            spec,
            json!({"service": "web", "backends": [
                {"service": "web-canary", "weight": 20},
                {"service": "web-experiment", "weight": 5},
                {"service": "web-stable", "weight": 75}]})
        );
        let stored_as_quantities = json!({"service": "web", "backends": [
            {"service": "web-canary", "weight": "20"},
            {"service": "web-experiment", "weight": "5"},
            {"service": "web-stable", "weight": "75"}]});
        assert!(same_split(&stored_as_quantities, &spec));
        assert!(!same_split(&json!({"service": "web"}), &spec));
    }
}
