//! A pod's one-word status as `kubectl get pods` prints it (`Running`, `Pending`,
//! `CrashLoopBackOff`, `Init:1/2`, `Terminating`, `ExitCode:1`, …), its readiness and restarts.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::style::Tone;

/// What the tree shows for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub status: String,
    pub ready_containers: usize,
    pub containers: usize,
    pub restarts: i32,
}

/// The pod's status, readiness and restart count.
pub fn pod_state(pod: &Pod) -> PodState {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .or(status.phase.clone())
        .unwrap_or_default();
    let mut restarts = 0;
    let mut ready_containers = 0;

    // Sidecars (init containers with restartPolicy Always) keep running beside the others.
    let sidecar = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let init_count = spec.init_containers.as_ref().map_or(0, Vec::len);
    let mut initializing = false;
    for (index, container) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += container.restart_count;
        let state = container.state.clone().unwrap_or_default();
        if let Some(terminated) = &state.terminated {
            if terminated.exit_code == 0 {
                continue;
            }
            reason = match terminated.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if terminated.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", terminated.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", terminated.exit_code),
            };
        } else if sidecar(&container.name) && container.started == Some(true) {
            if container.ready {
                continue;
            }
            reason = format!("Init:{index}/{init_count}");
        } else if let Some(waiting) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{waiting}");
        } else {
            reason = format!("Init:{index}/{init_count}");
        }
        initializing = true;
        break;
    }

    if !initializing {
        restarts = 0;
        let mut has_running = false;
        for container in status.container_statuses.iter().flatten().rev() {
            restarts += container.restart_count;
            if let Some(container_reason) = container_reason(container) {
                reason = container_reason;
            } else if container.ready
                && container
                    .state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some())
            {
                has_running = true;
                ready_containers += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        reason = if status.reason.as_deref() == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }

    PodState {
        status: reason,
        ready_containers,
        containers: spec.containers.len(),
        restarts,
    }
}

/// The reason a container is not simply running, if any.
fn container_reason(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    if let Some(reason) = state
        .waiting
        .as_ref()
        .and_then(|w| w.reason.clone())
        .filter(|r| !r.is_empty())
    {
        return Some(reason);
    }
    let terminated = state.terminated.as_ref()?;
    Some(match terminated.reason.clone().filter(|r| !r.is_empty()) {
        Some(reason) => reason,
        None if terminated.signal.unwrap_or(0) != 0 => {
            format!("Signal:{}", terminated.signal.unwrap_or(0))
        }
        None => format!("ExitCode:{}", terminated.exit_code),
    })
}

/// The tone of a pod status.
pub fn pod_tone(status: &str) -> Tone {
    if status.starts_with("Init:") {
        return Tone::Progressing;
    }
    if status.starts_with("Signal:") || status.starts_with("ExitCode:") {
        return Tone::Bad;
    }
    if status.ends_with("Error") || status.starts_with("Err") {
        return Tone::Warning;
    }
    match status {
        "Pending" | "Terminating" | "ContainerCreating" => Tone::Progressing,
        "Running" | "Completed" | "Succeeded" => Tone::Ok,
        "Failed" | "InvalidImageName" | "CrashLoopBackOff" => Tone::Bad,
        "ImagePullBackOff" | "RegistryUnavailable" => Tone::Warning,
        _ => Tone::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn running_and_ready() {
        let state = pod_state(&pod(serde_json::json!({
            "spec": {"containers": [{"name": "web"}, {"name": "proxy"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 2, "image": "i", "imageID": "", "state": {"running": {}}},
                {"name": "proxy", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}
            ]}
        })));
        assert_eq!(
            state,
            PodState {
                status: "Running".into(),
                ready_containers: 1,
                containers: 2,
                restarts: 2
            }
        );
    }

    #[test]
    fn waiting_reason_wins() {
        let state = pod_state(&pod(serde_json::json!({
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "web", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        })));
        assert_eq!(state.status, "CrashLoopBackOff");
        assert_eq!(pod_tone(&state.status), Tone::Bad);
        assert_eq!(state.restarts, 4);
    }

    #[test]
    fn init_containers_and_termination() {
        let initializing = pod_state(&pod(serde_json::json!({
            "spec": {"containers": [{"name": "web"}], "initContainers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 0}}},
                {"name": "b", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}
            ]}
        })));
        assert_eq!(initializing.status, "Init:1/2");
        let exited = pod_state(&pod(serde_json::json!({
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "web", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 3}}}
            ]}
        })));
        assert_eq!(exited.status, "ExitCode:3");
        let deleting = pod_state(&pod(serde_json::json!({
            "metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Running"}
        })));
        assert_eq!(deleting.status, "Terminating");
    }
}
