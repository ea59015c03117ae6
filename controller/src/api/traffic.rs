//! Traffic routing configuration of a canary: which router carries the weights and where
//! its objects are.

use std::collections::BTreeMap;

use ramp_analysis::api::preserve_unknown_object;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// The routers a canary uses. Several may be set at once (e.g. NGINX and SMI).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTrafficRouting {
    pub istio: Option<IstioTrafficRouting>,
    pub nginx: Option<NginxTrafficRouting>,
    pub alb: Option<AlbTrafficRouting>,
    pub smi: Option<SmiTrafficRouting>,
    pub ambassador: Option<AmbassadorTrafficRouting>,
    pub app_mesh: Option<AppMeshTrafficRouting>,
    pub traefik: Option<TraefikTrafficRouting>,
    pub apisix: Option<ApisixTrafficRouting>,
    /// Router plugins by name, e.g. `argoproj-labs/gatewayAPI` with `httpRoute`.
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub plugins: Option<BTreeMap<String, serde_json::Value>>,
    /// Routes Ramp may add (header and mirror routes), in precedence order.
    pub managed_routes: Option<Vec<ManagedRoute>>,
    /// The weight that means "all traffic" (default 100).
    pub max_traffic_weight: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    pub name: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    pub virtual_service: Option<IstioVirtualService>,
    pub virtual_services: Option<Vec<IstioVirtualService>>,
    pub destination_rule: Option<IstioDestinationRule>,
}

/// A VirtualService and the routes in it whose weights Ramp sets.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    pub name: String,
    /// Names of HTTP routes (optional when the VirtualService has one route).
    pub routes: Option<Vec<String>>,
    pub tls_routes: Option<Vec<TlsRoute>>,
    pub tcp_routes: Option<Vec<TcpRoute>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    pub port: Option<i64>,
    pub sni_hosts: Option<Vec<String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    pub port: Option<i64>,
}

/// A DestinationRule whose subsets Ramp points at the canary and stable pods.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    pub name: String,
    pub canary_subset_name: String,
    pub stable_subset_name: String,
    pub additional_subset_names: Option<Vec<String>>,
}

/// NGINX Ingress: Ramp creates a canary Ingress beside the stable one.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// Annotation prefix (default `nginx.ingress.kubernetes.io`).
    pub annotation_prefix: Option<String>,
    pub stable_ingress: Option<String>,
    pub stable_ingresses: Option<Vec<String>>,
    pub additional_ingress_annotations: Option<BTreeMap<String, String>>,
    pub canary_ingress_annotations: Option<BTreeMap<String, String>>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbTrafficRouting {
    pub ingress: Option<String>,
    pub ingresses: Option<Vec<String>>,
    pub service_port: i32,
    pub root_service: Option<String>,
    pub annotation_prefix: Option<String>,
    pub stickiness_config: Option<StickinessConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessConfig {
    pub enabled: bool,
    pub duration_seconds: i64,
}

/// SMI: Ramp creates and owns a TrafficSplit for the root Service.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmiTrafficRouting {
    pub root_service: Option<String>,
    pub traffic_split_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmbassadorTrafficRouting {
    pub mappings: Vec<String>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshTrafficRouting {
    pub virtual_service: Option<AppMeshVirtualService>,
    pub virtual_node_group: Option<AppMeshVirtualNodeGroup>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualService {
    pub name: String,
    pub routes: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualNodeGroup {
    pub canary_virtual_node_ref: AppMeshVirtualNodeReference,
    pub stable_virtual_node_ref: AppMeshVirtualNodeReference,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualNodeReference {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraefikTrafficRouting {
    pub weighted_traefik_service_name: String,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixTrafficRouting {
    pub route: Option<ApisixRoute>,
}

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixRoute {
    pub name: String,
    pub rules: Option<Vec<String>>,
}
