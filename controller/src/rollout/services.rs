//! Services whose `rollouts-pod-template-hash` selector a Rollout moves between its
//! ReplicaSets. A selector only moves to a ReplicaSet with available pods: fully available
//! when the Service is first adopted, at least one pod afterwards (Argo's
//! `ensureSVCTargets`). Shared by the canary (stable/canary Services) and blue-green
//! (active/preview Services).

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;

use super::conditions::SWITCH_SERVICE_REASON;
use super::observe::{ReplicaSetExt, ServiceExt};
use super::plan::{Planner, ServiceSelector};

/// Points Service `name` at `rs` when its pods can take the traffic. A missing Service is
/// left to validation (which reports it as `InvalidSpec`).
pub fn ensure_targets(
    p: &mut Planner<'_>,
    name: Option<&str>,
    rs: Option<&ReplicaSet>,
    check_availability: bool,
) {
    let (Some(name), Some(rs)) = (name.filter(|n| !n.is_empty()), rs) else {
        return;
    };
    let Some(service) = p.observed.services.get(name).cloned() else {
        return;
    };
    let current = planned_selector(p, name).or_else(|| service.selected_hash().map(str::to_string));
    let desired = rs.pod_hash();
    if current.as_deref() == Some(desired) {
        return;
    }
    let adopted = service.managed_by().is_some();
    if !adopted && check_availability && !rs.is_fully_available() {
        // Adopting a Service: only onto a fully available ReplicaSet.
        return;
    }
    if check_availability && rs.available() == 0 {
        return;
    }
    switch(p, name, current, desired.to_string(), !adopted);
}

/// Plans a selector switch with Argo's `SwitchService` Event.
pub fn switch(p: &mut Planner<'_>, service: &str, from: Option<String>, to: String, adopt: bool) {
    let message = format!(
        "Switched selector for service '{service}' from '{}' to '{to}'",
        from.as_deref().unwrap_or_default()
    );
    p.plan.services.retain(|s| s.service != service);
    p.plan.services.push(ServiceSelector {
        service: service.to_string(),
        from,
        to,
        add_managed_by: adopt.then(|| p.rollout.name_any()),
    });
    p.event(SWITCH_SERVICE_REASON, message);
}

/// The hash this plan already points the Service at, if any.
pub fn planned_selector(p: &Planner<'_>, service: &str) -> Option<String> {
    p.plan
        .services
        .iter()
        .rev()
        .find(|s| s.service == service)
        .map(|s| s.to.clone())
}

/// The hash a Service selects after this plan.
pub fn selected(p: &Planner<'_>, service: &str) -> Option<String> {
    planned_selector(p, service).or_else(|| {
        p.observed
            .services
            .get(service)
            .and_then(|s| s.selected_hash().map(str::to_string))
    })
}
