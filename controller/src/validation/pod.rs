//! Pod templates and label selectors: the subset of Kubernetes' own validation that catches
//! what users get wrong (quantities, names, ports, a selector that misses its pods), so a
//! Rollout is refused before any ReplicaSet is made from it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::FieldErrors;
use super::names::{is_dns1123_label, is_iana_svc_name, label_key_problem, label_value_problem};
use super::quantity::parse_quantity;

/// Checks a pod template that a ReplicaSet (or a Job, with `for_job`) will be made from.
pub fn check_pod_template(
    template: &PodTemplateSpec,
    path: &str,
    for_job: bool,
    errors: &mut FieldErrors,
) {
    if let Some(metadata) = &template.metadata {
        check_labels(
            metadata.labels.as_ref(),
            &format!("{path}.metadata.labels"),
            errors,
        );
    }
    match &template.spec {
        Some(spec) => check_pod_spec(spec, &format!("{path}.spec"), for_job, errors),
        None => errors.push(
            format!("{path}.spec"),
            "required: the pod template has no spec",
        ),
    }
}

/// Like [`check_pod_template`], but a template without a spec is let through (Experiments
/// report that when they run, as Argo Rollouts does).
pub fn check_optional_pod_template(
    template: &PodTemplateSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    if template.spec.is_some() {
        check_pod_template(template, path, false, errors);
    } else if let Some(metadata) = &template.metadata {
        check_labels(
            metadata.labels.as_ref(),
            &format!("{path}.metadata.labels"),
            errors,
        );
    }
}

/// Label keys and values.
pub fn check_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (key, value) in labels.into_iter().flatten() {
        // Templates of analysis Jobs may hold `{{args.x}}`, substituted when the run starts.
        if key.contains("{{") || value.contains("{{") {
            continue;
        }
        if let Some(problem) = label_key_problem(key) {
            errors.push(format!("{path}.{key}"), problem);
        }
        if let Some(problem) = label_value_problem(value) {
            errors.push(format!("{path}.{key}"), problem);
        }
    }
}

fn check_pod_spec(spec: &PodSpec, path: &str, for_job: bool, errors: &mut FieldErrors) {
    if spec.containers.is_empty() {
        errors.push(
            format!("{path}.containers"),
            "required: a pod needs at least one container",
        );
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let mut seen_volumes = BTreeSet::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        if !is_dns1123_label(&volume.name) {
            errors.push(
                format!("{path}.volumes[{i}].name"),
                dns_label_message(&volume.name),
            );
        }
        if !seen_volumes.insert(volume.name.as_str()) {
            errors.push(
                format!("{path}.volumes[{i}].name"),
                format!("duplicate volume name {:?}", volume.name),
            );
        }
        if let Some(limit) = volume
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
        {
            check_quantity(
                &limit.0,
                &format!("{path}.volumes[{i}].emptyDir.sizeLimit"),
                errors,
            );
        }
    }

    let mut names = BTreeSet::new();
    let groups: [(&str, Option<&Vec<Container>>); 2] = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (field, containers) in groups {
        for (i, container) in containers.into_iter().flatten().enumerate() {
            let at = format!("{path}.{field}[{i}]");
            check_container(container, &at, &volumes, errors);
            if !names.insert(container.name.as_str()) {
                errors.push(
                    format!("{at}.name"),
                    format!("duplicate container name {:?}", container.name),
                );
            }
        }
    }
    for (i, container) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let at = format!("{path}.ephemeralContainers[{i}]");
        if !names.insert(container.name.as_str()) {
            errors.push(
                format!("{at}.name"),
                format!("duplicate container name {:?}", container.name),
            );
        }
        check_resources(
            container.resources.as_ref(),
            &format!("{at}.resources"),
            errors,
        );
    }
    for (key, value) in spec.overhead.iter().flatten() {
        check_quantity(&value.0, &format!("{path}.overhead.{key}"), errors);
    }

    match spec.restart_policy.as_deref() {
        None | Some("Always") if !for_job => {}
        Some("Never" | "OnFailure") if for_job => {}
        None if for_job => errors.push(
            format!("{path}.restartPolicy"),
            "required: a Job's pods need restartPolicy Never or OnFailure",
        ),
        Some(other) if for_job => errors.push(
            format!("{path}.restartPolicy"),
            format!("unsupported value {other:?}: a Job's pods need Never or OnFailure"),
        ),
        Some(other) => errors.push(
            format!("{path}.restartPolicy"),
            format!("unsupported value {other:?}: pods of a ReplicaSet must use Always"),
        ),
        None => {}
    }
}

fn check_container(
    container: &Container,
    path: &str,
    volumes: &BTreeSet<&str>,
    errors: &mut FieldErrors,
) {
    if container.name.is_empty() {
        errors.push(
            format!("{path}.name"),
            "required: every container needs a name",
        );
    } else if !is_dns1123_label(&container.name) {
        errors.push(format!("{path}.name"), dns_label_message(&container.name));
    }
    if container.image.as_deref().is_none_or(str::is_empty) {
        errors.push(
            format!("{path}.image"),
            "required: every container needs an image",
        );
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let at = format!("{path}.ports[{i}]");
        if !(1..=65535).contains(&port.container_port) {
            errors.push(
                format!("{at}.containerPort"),
                format!("{} is not a port number (1-65535)", port.container_port),
            );
        }
        if let Some(host_port) = port.host_port
            && !(0..=65535).contains(&host_port)
        {
            errors.push(
                format!("{at}.hostPort"),
                format!("{host_port} is not a port number (0-65535)"),
            );
        }
        if let Some(protocol) = port.protocol.as_deref()
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            errors.push(
                format!("{at}.protocol"),
                format!("unsupported value {protocol:?}: use TCP, UDP or SCTP"),
            );
        }
        if let Some(name) = port.name.as_deref() {
            if !is_iana_svc_name(name) {
                errors.push(format!("{at}.name"), format!("{name:?} must be at most 15 lower-case letters, digits and '-', with at least one letter"));
            } else if !port_names.insert(name) {
                errors.push(
                    format!("{at}.name"),
                    format!("duplicate port name {name:?}"),
                );
            }
        }
    }
    for (i, env) in container.env.iter().flatten().enumerate() {
        if env.name.is_empty() {
            errors.push(
                format!("{path}.env[{i}].name"),
                "required: an environment variable needs a name",
            );
        }
    }
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(mount.name.as_str()) {
            errors.push(
                format!("{path}.volumeMounts[{i}].name"),
                format!("no volume named {:?} in the pod", mount.name),
            );
        }
        if mount.mount_path.is_empty() {
            errors.push(format!("{path}.volumeMounts[{i}].mountPath"), "required");
        }
    }
    check_resources(
        container.resources.as_ref(),
        &format!("{path}.resources"),
        errors,
    );
}

fn check_resources(resources: Option<&ResourceRequirements>, path: &str, errors: &mut FieldErrors) {
    let Some(resources) = resources else { return };
    let mut requests = BTreeMap::new();
    for (name, value) in resources.requests.iter().flatten() {
        if let Some(q) = check_quantity(&value.0, &format!("{path}.requests.{name}"), errors) {
            requests.insert(name.as_str(), q);
        }
    }
    for (name, value) in resources.limits.iter().flatten() {
        let at = format!("{path}.limits.{name}");
        if let Some(limit) = check_quantity(&value.0, &at, errors)
            && let Some(request) = requests.get(name.as_str())
            && request.0 > limit.0
        {
            errors.push(
                format!("{path}.requests.{name}"),
                format!(
                    "request {:?} is larger than the limit {:?}",
                    resources
                        .requests
                        .as_ref()
                        .and_then(|r| r.get(name))
                        .map(|q| q.0.as_str())
                        .unwrap_or(""),
                    value.0
                ),
            );
        }
    }
}

fn check_quantity(
    text: &str,
    path: &str,
    errors: &mut FieldErrors,
) -> Option<super::quantity::Quantity> {
    let quantity = parse_quantity(text);
    match quantity {
        None => errors.push(
            path,
            format!("{text:?} is not a quantity (e.g. 500m, 128Mi, 2)"),
        ),
        Some(q) if q.0 < 0.0 => errors.push(path, format!("{text:?} must not be negative")),
        Some(_) => {}
    }
    quantity
}

fn dns_label_message(name: &str) -> String {
    format!("{name:?} must be a lower-case RFC 1123 label (letters, digits and '-', at most 63)")
}

/// Checks a label selector's syntax; `Some(problem)` when it is empty (which Kubernetes
/// refuses for workloads).
pub fn check_selector(selector: &LabelSelector, path: &str, errors: &mut FieldErrors) {
    let labels = selector.match_labels.as_ref();
    check_labels(labels, &format!("{path}.matchLabels"), errors);
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if labels.is_none_or(BTreeMap::is_empty) && expressions.is_empty() {
        errors.push(path, "empty selector is invalid: it would select every pod");
    }
    for (i, requirement) in expressions.iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Some(problem) = label_key_problem(&requirement.key) {
            errors.push(format!("{at}.key"), problem);
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errors.push(
                    format!("{at}.values"),
                    format!("required: operator {} needs values", requirement.operator),
                );
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errors.push(
                    format!("{at}.values"),
                    format!("must be empty for operator {}", requirement.operator),
                );
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(
                format!("{at}.operator"),
                format!("unsupported value {other:?}: use In, NotIn, Exists or DoesNotExist"),
            ),
        }
    }
}

/// Whether a selector selects pods carrying `labels`.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector
        .match_expressions
        .iter()
        .flatten()
        .all(|requirement| {
            let value = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
    labels_match && expressions_match
}
