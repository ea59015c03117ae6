//! The simulated Nodes: registration, a status that always says Ready, and the node Lease
//! renewed every 10 s, so kube-controller-manager's node lifecycle controller never taints or
//! evicts anything.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::SimulatorError;
use super::lifecycle::node_ip;

/// Label on every simulated node (value `"true"`).
pub const SIMULATED_NODE_LABEL: &str = "ramp.e2e/simulated";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed (the kubelet's default).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Node status heartbeat is rewritten.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(60);

fn node_object(name: &str) -> Result<Node, SimulatorError> {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                SIMULATED_NODE_LABEL: "true",
            },
            "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
        },
        "spec": {},
    }))
    .map_err(|e| SimulatorError::Internal(format!("node object: {e}")))
}

fn node_status(index: usize, registered: Timestamp, now: Timestamp) -> serde_json::Value {
    let resources = json!({
        "cpu": "1000", "memory": "1Ti", "pods": "1000000", "ephemeral-storage": "10Ti",
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": Time(now), "lastTransitionTime": Time(registered),
        })
    };
    json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (Ramp kubelet simulator)"),
            ],
            "addresses": [
                { "type": "InternalIP", "address": node_ip(index).to_string() },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": {
                "machineID": format!("ramp-sim-{index}"),
                "systemUUID": format!("ramp-sim-{index}"),
                "bootID": format!("ramp-sim-{index}"),
                "kernelVersion": "simulated",
                "osImage": "Ramp kubelet simulator",
                "containerRuntimeVersion": "sim://1",
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
    })
}

/// Creates the nodes (or adopts existing ones), reports them Ready and creates their Leases.
pub async fn register(
    client: &kube::Client,
    names: &[String],
    registered: Timestamp,
) -> Result<(), SimulatorError> {
    let nodes: Api<Node> = Api::all(client.clone());
    for (index, name) in names.iter().enumerate() {
        match nodes
            .create(&PostParams::default(), &node_object(name)?)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(SimulatorError::Kube {
                    what: format!("registering node {name}"),
                    source,
                });
            }
        }
        update_status(client, index, name, registered).await?;
        renew_lease(client, name).await?;
    }
    Ok(())
}

async fn update_status(
    client: &kube::Client,
    index: usize,
    name: &str,
    registered: Timestamp,
) -> Result<(), SimulatorError> {
    Api::<Node>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(node_status(index, registered, Timestamp::now())),
        )
        .await
        .map_err(|source| SimulatorError::Kube {
            what: format!("reporting status of node {name}"),
            source,
        })?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, name: &str) -> Result<(), SimulatorError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew =
        json!({ "spec": { "renewTime": MicroTime(Timestamp::now()), "holderIdentity": name } });
    let failed = |source| SimulatorError::Kube {
        what: format!("renewing the lease of node {name}"),
        source,
    };
    // The API server creates kube-node-lease shortly after it reports ready: retry briefly.
    for _ in 0..300 {
        match leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&renew))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => return Err(failed(source)),
        }
        let node = Api::<Node>::all(client.clone())
            .get(name)
            .await
            .map_err(failed)?;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(LEASE_NAMESPACE.to_string()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.to_string(),
                    uid: node.metadata.uid.unwrap_or_default(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.to_string()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => return Err(failed(source)),
        }
    }
    Err(SimulatorError::Internal(format!(
        "namespace {LEASE_NAMESPACE} never appeared, so node {name} has no lease"
    )))
}

/// Renews the leases every [`LEASE_RENEW_INTERVAL`] and the status every [`STATUS_INTERVAL`],
/// forever; failures are logged and retried on the next tick.
pub async fn heartbeat(client: kube::Client, names: Vec<String>, registered: Timestamp) {
    let mut ticks: u64 = 0;
    let status_every = (STATUS_INTERVAL.as_secs() / LEASE_RENEW_INTERVAL.as_secs()).max(1);
    let mut interval = tokio::time::interval(LEASE_RENEW_INTERVAL);
    interval.tick().await;
    loop {
        interval.tick().await;
        ticks += 1;
        for (index, name) in names.iter().enumerate() {
            if let Err(error) = renew_lease(&client, name).await {
                tracing::warn!(node = %name, %error, "node lease renewal failed");
            }
            if ticks.is_multiple_of(status_every)
                && let Err(error) = update_status(&client, index, name, registered).await
            {
                tracing::warn!(node = %name, %error, "node status heartbeat failed");
            }
        }
    }
}
