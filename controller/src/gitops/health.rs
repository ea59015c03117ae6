//! Health of live objects, following Argo CD's built-in checks; an application's health is its
//! worst object's.

use std::fmt;

use serde_json::Value;

/// Argo CD's health codes, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Running as intended.
    Healthy,
    /// Paused on purpose (a paused Rollout, a suspended Job).
    Suspended,
    /// On its way to healthy.
    Progressing,
    /// Not in the cluster.
    Missing,
    /// Failed.
    Degraded,
    /// Could not be assessed.
    Unknown,
}

impl Health {
    /// Argo CD's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Suspended => "Suspended",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
            Health::Unknown => "Unknown",
        }
    }

    /// Parses Argo CD's spelling.
    pub fn parse(text: &str) -> Option<Health> {
        Some(match text {
            "Healthy" => Health::Healthy,
            "Suspended" => Health::Suspended,
            "Progressing" => Health::Progressing,
            "Missing" => Health::Missing,
            "Degraded" => Health::Degraded,
            "Unknown" => Health::Unknown,
            _ => return None,
        })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health code and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// The code.
    pub health: Health,
    /// Why, when not healthy.
    pub message: Option<String>,
}

impl Assessment {
    fn healthy() -> Self {
        Assessment {
            health: Health::Healthy,
            message: None,
        }
    }

    fn new(health: Health, message: impl Into<String>) -> Self {
        Assessment {
            health,
            message: Some(message.into()),
        }
    }
}

/// The health of a live object (`None`: absent from the cluster).
pub fn assess(group: &str, kind: &str, live: Option<&Value>) -> Assessment {
    let Some(object) = live else {
        return Assessment::new(Health::Missing, "object is not in the cluster");
    };
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(object),
        ("apps" | "extensions", "ReplicaSet") => replica_set(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps" | "extensions", "DaemonSet") => daemon_set(object),
        ("", "Pod") => pod(object),
        ("batch", "Job") => job(object),
        ("", "PersistentVolumeClaim") => pvc(object),
        ("", "Service") => service(object),
        ("networking.k8s.io" | "extensions", "Ingress") => ingress(object),
        ("argoproj.io", "Rollout") => rollout(object),
        ("argoproj.io", "Application") => application(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        ("apiregistration.k8s.io", "APIService") => api_service(object),
        _ => Assessment::healthy(),
    }
}

/// The worst of several assessments (healthy when there are none).
pub fn worst<'a>(assessments: impl IntoIterator<Item = &'a Assessment>) -> Assessment {
    assessments
        .into_iter()
        .max_by_key(|a| a.health)
        .cloned()
        .unwrap_or_else(Assessment::healthy)
}

fn int(value: &Value, path: &[&str]) -> Option<i64> {
    path.iter().try_fold(value, |v, key| v.get(*key))?.as_i64()
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key))?.as_str()
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some(status)
}

fn generation_observed(object: &Value) -> bool {
    let generation = int(object, &["metadata", "generation"]).unwrap_or(0);
    let observed = int(object, &["status", "observedGeneration"]).unwrap_or(0);
    observed >= generation
}

fn deployment(object: &Value) -> Assessment {
    if object
        .get("spec")
        .and_then(|s| s.get("paused"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Assessment::new(Health::Suspended, "Deployment is paused");
    }
    if !generation_observed(object) {
        return Assessment::new(
            Health::Progressing,
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    if condition(object, "Progressing")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        == Some("ProgressDeadlineExceeded")
    {
        let name = text(object, &["metadata", "name"]).unwrap_or("?");
        return Assessment::new(
            Health::Degraded,
            format!("Deployment {name:?} exceeded its progress deadline"),
        );
    }
    let replicas = int(object, &["spec", "replicas"]).unwrap_or(1);
    let updated = int(object, &["status", "updatedReplicas"]).unwrap_or(0);
    let total = int(object, &["status", "replicas"]).unwrap_or(0);
    let available = int(object, &["status", "availableReplicas"]).unwrap_or(0);
    if updated < replicas {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated..."
            ),
        );
    }
    if total > updated {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                total - updated
            ),
        );
    }
    if available < updated {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    Assessment::healthy()
}

fn replica_set(object: &Value) -> Assessment {
    if !generation_observed(object) {
        return Assessment::new(
            Health::Progressing,
            "Waiting for rollout to finish: observed replica set generation less than desired generation",
        );
    }
    if condition_is(object, "ReplicaFailure", "True") {
        let message = condition(object, "ReplicaFailure")
            .and_then(|c| text(c, &["message"]))
            .unwrap_or("replica failure");
        return Assessment::new(Health::Degraded, message);
    }
    let replicas = int(object, &["spec", "replicas"]).unwrap_or(1);
    let available = int(object, &["status", "availableReplicas"]).unwrap_or(0);
    if available < replicas {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for rollout to finish: {available} out of {replicas} new replicas are available..."
            ),
        );
    }
    Assessment::healthy()
}

fn stateful_set(object: &Value) -> Assessment {
    if !generation_observed(object) {
        return Assessment::new(
            Health::Progressing,
            "Waiting for statefulset spec update to be observed...",
        );
    }
    let replicas = int(object, &["spec", "replicas"]).unwrap_or(1);
    let ready = int(object, &["status", "readyReplicas"]).unwrap_or(0);
    if ready < replicas {
        return Assessment::new(
            Health::Progressing,
            format!("Waiting for {} pods to be ready...", replicas - ready),
        );
    }
    if text(object, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Assessment::new(
            Health::Healthy,
            "statefulset has OnDelete update strategy; rollout not tracked",
        );
    }
    if let Some(partition) = int(
        object,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    ) {
        let updated = int(object, &["status", "updatedReplicas"]).unwrap_or(0);
        if updated < replicas - partition {
            return Assessment::new(
                Health::Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    replicas - partition
                ),
            );
        }
        return Assessment::healthy();
    }
    let current = text(object, &["status", "currentRevision"]);
    let update = text(object, &["status", "updateRevision"]);
    if current != update {
        return Assessment::new(
            Health::Progressing,
            "waiting for statefulset rolling update to complete",
        );
    }
    Assessment::healthy()
}

fn daemon_set(object: &Value) -> Assessment {
    if !generation_observed(object) {
        return Assessment::new(
            Health::Progressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired generation",
        );
    }
    if text(object, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Assessment::healthy();
    }
    let desired = int(object, &["status", "desiredNumberScheduled"]).unwrap_or(0);
    let updated = int(object, &["status", "updatedNumberScheduled"]).unwrap_or(0);
    let available = int(object, &["status", "numberAvailable"]).unwrap_or(0);
    if updated < desired {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for daemon set rollout to finish: {updated} out of {desired} new pods have been updated..."
            ),
        );
    }
    if available < desired {
        return Assessment::new(
            Health::Progressing,
            format!(
                "Waiting for daemon set rollout to finish: {available} of {desired} updated pods are available..."
            ),
        );
    }
    Assessment::healthy()
}

fn pod(object: &Value) -> Assessment {
    let statuses = object
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for status in statuses {
        let reason = text(status, &["state", "waiting", "reason"]).unwrap_or_default();
        if matches!(
            reason,
            "CrashLoopBackOff"
                | "ErrImagePull"
                | "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
        ) {
            let message = text(status, &["state", "waiting", "message"]).unwrap_or(reason);
            return Assessment::new(Health::Degraded, message);
        }
    }
    let message = text(object, &["status", "message"])
        .unwrap_or_default()
        .to_owned();
    match text(object, &["status", "phase"]) {
        Some("Succeeded") => Assessment {
            health: Health::Healthy,
            message: Some(message).filter(|m| !m.is_empty()),
        },
        Some("Failed") => Assessment::new(
            Health::Degraded,
            if message.is_empty() {
                "pod failed".into()
            } else {
                message
            },
        ),
        Some("Running") => {
            let restart = text(object, &["spec", "restartPolicy"]).unwrap_or("Always");
            if restart == "Always" && !condition_is(object, "Ready", "True") {
                Assessment::new(Health::Progressing, "pod is running but not ready")
            } else {
                Assessment::healthy()
            }
        }
        Some("Pending") | None => Assessment::new(Health::Progressing, "pod is pending"),
        Some(other) => Assessment::new(Health::Unknown, format!("pod phase {other}")),
    }
}

fn job(object: &Value) -> Assessment {
    if condition_is(object, "Failed", "True") {
        let message = condition(object, "Failed")
            .and_then(|c| text(c, &["message"]))
            .unwrap_or("job failed");
        return Assessment::new(Health::Degraded, message);
    }
    if condition_is(object, "Complete", "True") {
        return Assessment::healthy();
    }
    if object
        .get("spec")
        .and_then(|s| s.get("suspend"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Assessment::new(Health::Suspended, "job is suspended");
    }
    Assessment::new(Health::Progressing, "job is running")
}

fn pvc(object: &Value) -> Assessment {
    match text(object, &["status", "phase"]) {
        Some("Bound") => Assessment::healthy(),
        Some("Lost") => Assessment::new(Health::Degraded, "claim lost its volume"),
        _ => Assessment::new(Health::Progressing, "waiting for the claim to be bound"),
    }
}

fn has_load_balancer_ingress(object: &Value) -> bool {
    object
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"))
        .and_then(Value::as_array)
        .is_some_and(|i| !i.is_empty())
}

fn service(object: &Value) -> Assessment {
    if text(object, &["spec", "type"]) == Some("LoadBalancer") && !has_load_balancer_ingress(object)
    {
        return Assessment::new(Health::Progressing, "waiting for the load balancer address");
    }
    Assessment::healthy()
}

fn ingress(object: &Value) -> Assessment {
    if has_load_balancer_ingress(object) {
        Assessment::healthy()
    } else {
        Assessment::new(Health::Progressing, "waiting for the ingress address")
    }
}

/// Argo CD reads a Rollout's health from the phase its controller writes.
fn rollout(object: &Value) -> Assessment {
    let generation = int(object, &["metadata", "generation"]).unwrap_or(0);
    let observed = object
        .get("status")
        .and_then(|s| s.get("observedGeneration"))
        .and_then(|g| {
            g.as_i64()
                .or_else(|| g.as_str().and_then(|s| s.parse().ok()))
        });
    if observed.is_none_or(|o| o < generation) {
        return Assessment::new(
            Health::Progressing,
            "Waiting for rollout spec update to be observed",
        );
    }
    let message = text(object, &["status", "message"]).map(str::to_owned);
    match text(object, &["status", "phase"]) {
        Some("Healthy") => Assessment {
            health: Health::Healthy,
            message,
        },
        Some("Paused") => Assessment {
            health: Health::Suspended,
            message: message.or(Some("Rollout is paused".into())),
        },
        Some("Degraded") => Assessment {
            health: Health::Degraded,
            message,
        },
        Some("Progressing") => Assessment {
            health: Health::Progressing,
            message,
        },
        _ => Assessment::new(Health::Progressing, "Waiting for rollout status"),
    }
}

fn application(object: &Value) -> Assessment {
    match text(object, &["status", "health", "status"]).and_then(Health::parse) {
        Some(health) => Assessment {
            health,
            message: text(object, &["status", "health", "message"]).map(str::to_owned),
        },
        None => Assessment::new(
            Health::Progressing,
            "application has not reported health yet",
        ),
    }
}

fn crd(object: &Value) -> Assessment {
    if condition_is(object, "NamesAccepted", "False") {
        let message = condition(object, "NamesAccepted")
            .and_then(|c| text(c, &["message"]))
            .unwrap_or("names not accepted");
        return Assessment::new(Health::Degraded, message);
    }
    if condition_is(object, "Established", "True") {
        Assessment::healthy()
    } else {
        Assessment::new(Health::Progressing, "waiting for the CRD to be established")
    }
}

fn api_service(object: &Value) -> Assessment {
    if condition_is(object, "Available", "True") {
        Assessment::healthy()
    } else {
        let message = condition(object, "Available")
            .and_then(|c| text(c, &["message"]))
            .unwrap_or("not available");
        Assessment::new(Health::Progressing, message)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn health(group: &str, kind: &str, object: Value) -> Health {
        assess(group, kind, Some(&object)).health
    }

    #[test]
    fn deployment_follows_its_rollout() {
        let base = |status: Value| json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status});
        assert_eq!(
            health("apps", "Deployment", base(json!({"observedGeneration": 1}))),
            Health::Progressing
        );
        assert_eq!(
            health(
                "apps",
                "Deployment",
                base(
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2})
                )
            ),
            Health::Progressing
        );
        assert_eq!(
            health(
                "apps",
                "Deployment",
                base(
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
                )
            ),
            Health::Healthy
        );
        let stuck = base(
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        assert_eq!(health("apps", "Deployment", stuck), Health::Degraded);
        assert_eq!(
            health("apps", "Deployment", json!({"spec": {"paused": true}})),
            Health::Suspended
        );
    }

    #[test]
    fn rollout_health_is_its_phase() {
        let rollout = |phase: &str| json!({"metadata": {"generation": 4}, "status": {"observedGeneration": "4", "phase": phase, "message": "m"}});
        assert_eq!(
            health("argoproj.io", "Rollout", rollout("Healthy")),
            Health::Healthy
        );
        assert_eq!(
            health("argoproj.io", "Rollout", rollout("Paused")),
            Health::Suspended
        );
        assert_eq!(
            health("argoproj.io", "Rollout", rollout("Degraded")),
            Health::Degraded
        );
        assert_eq!(
            health("argoproj.io", "Rollout", rollout("Progressing")),
            Health::Progressing
        );
        let stale = json!({"metadata": {"generation": 5}, "status": {"observedGeneration": "4", "phase": "Healthy"}});
        assert_eq!(health("argoproj.io", "Rollout", stale), Health::Progressing);
    }

    #[test]
    fn pods_jobs_claims_services() {
        assert_eq!(
            health("", "Pod", json!({"status": {"phase": "Pending"}})),
            Health::Progressing
        );
        assert_eq!(
            health(
                "",
                "Pod",
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
            ),
            Health::Healthy
        );
        assert_eq!(
            health(
                "",
                "Pod",
                json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})
            ),
            Health::Degraded
        );
        assert_eq!(
            health(
                "batch",
                "Job",
                json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
            ),
            Health::Healthy
        );
        assert_eq!(
            health(
                "batch",
                "Job",
                json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
            ),
            Health::Degraded
        );
        assert_eq!(
            health("batch", "Job", json!({"status": {}})),
            Health::Progressing
        );
        assert_eq!(
            health(
                "",
                "PersistentVolumeClaim",
                json!({"status": {"phase": "Bound"}})
            ),
            Health::Healthy
        );
        assert_eq!(
            health(
                "",
                "PersistentVolumeClaim",
                json!({"status": {"phase": "Lost"}})
            ),
            Health::Degraded
        );
        assert_eq!(
            health("", "Service", json!({"spec": {"type": "ClusterIP"}})),
            Health::Healthy
        );
        assert_eq!(
            health(
                "",
                "Service",
                json!({"spec": {"type": "LoadBalancer"}, "status": {}})
            ),
            Health::Progressing
        );
        assert_eq!(
            health(
                "networking.k8s.io",
                "Ingress",
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
            ),
            Health::Healthy
        );
    }

    #[test]
    fn statefulsets_replicasets_daemonsets_crds_apps() {
        let sts = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"}});
        assert_eq!(health("apps", "StatefulSet", sts), Health::Progressing);
        let sts = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 2, "currentRevision": "b", "updateRevision": "b"}});
        assert_eq!(health("apps", "StatefulSet", sts), Health::Healthy);
        assert_eq!(
            health(
                "apps",
                "ReplicaSet",
                json!({"spec": {"replicas": 2}, "status": {"availableReplicas": 1}})
            ),
            Health::Progressing
        );
        let ds = json!({"status": {"desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}});
        assert_eq!(health("apps", "DaemonSet", ds), Health::Healthy);
        let crd = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(
            health("apiextensions.k8s.io", "CustomResourceDefinition", crd),
            Health::Healthy
        );
        assert_eq!(
            health(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                json!({})
            ),
            Health::Progressing
        );
        assert_eq!(
            health(
                "argoproj.io",
                "Application",
                json!({"status": {"health": {"status": "Degraded"}}})
            ),
            Health::Degraded
        );
        assert_eq!(
            health("argoproj.io", "Application", json!({})),
            Health::Progressing
        );
        assert_eq!(health("", "ConfigMap", json!({})), Health::Healthy);
        assert_eq!(assess("", "ConfigMap", None).health, Health::Missing);
    }

    #[test]
    fn worst_wins() {
        let list = [
            Assessment::healthy(),
            Assessment::new(Health::Degraded, "bad"),
            Assessment::new(Health::Progressing, "slow"),
        ];
        assert_eq!(worst(&list).health, Health::Degraded);
        assert_eq!(worst(&[]).health, Health::Healthy);
    }
}
