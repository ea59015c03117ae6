//! Rollout rules (Argo Rollouts' `ValidateRollout`, plus the checks it leaves to the API
//! server's pod validation).

use std::collections::BTreeSet;

use crate::api::{
    AnalysisRunArgument, AnalysisTemplateRef, AntiAffinity, BlueGreenStrategy, CanaryStep,
    CanaryStrategy, IntOrPercent, Rollout, RolloutTrafficRouting, StringMatch,
};

use super::names::is_dns1123_subdomain;
use super::pod::{check_pod_template, check_selector, selector_matches};
use super::{FieldError, FieldErrors};

/// Argo's default `revisionHistoryLimit` and `progressDeadlineSeconds`.
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// More canary steps than anyone writes by hand: a generated Rollout gone wrong. Refusing it
/// keeps validation, planning and status (one entry per step) bounded.
pub const MAX_STEPS: usize = 1000;

/// Every problem with a Rollout's spec, with paths from the object root.
pub fn validate_rollout(rollout: &Rollout) -> Vec<FieldError> {
    let mut errors = FieldErrors::default();
    if let Some(name) = rollout.metadata.name.as_deref()
        && !is_dns1123_subdomain(name)
    {
        errors.push(
            "metadata.name",
            format!("{name:?} must be a lower-case RFC 1123 subdomain"),
        );
    }
    let spec = &rollout.spec;
    if spec.replicas.is_some_and(|r| r < 0) {
        errors.push("spec.replicas", "must be greater than or equal to 0");
    }
    match (&spec.template, &spec.workload_ref) {
        (Some(_), Some(_)) => errors.push(
            "spec.template",
            "template must be empty when workloadRef is set: the pod template comes from the referenced workload",
        ),
        (None, None) => errors.push("spec.template", "required: set template or workloadRef"),
        _ => {}
    }
    if let Some(workload) = &spec.workload_ref {
        for (field, value) in [
            ("apiVersion", &workload.api_version),
            ("kind", &workload.kind),
            ("name", &workload.name),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                errors.push(format!("spec.workloadRef.{field}"), "required");
            }
        }
        if let Some(scale_down) = workload.scale_down.as_deref()
            && !matches!(scale_down, "never" | "onsuccess" | "progressively")
        {
            errors.push(
                "spec.workloadRef.scaleDown",
                format!("unsupported value {scale_down:?}: use never, onsuccess or progressively"),
            );
        }
    }
    match &spec.selector {
        Some(selector) => {
            check_selector(selector, "spec.selector", &mut errors);
            if let Some(template) = &spec.template {
                let labels = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                if !selector_matches(selector, &labels) {
                    errors.push(
                        "spec.template.metadata.labels",
                        "`selector` does not match template `labels`: the Rollout would not find its own pods",
                    );
                }
            }
        }
        None if spec.workload_ref.is_none() => {
            errors.push(
                "spec.selector",
                "required: Rollout has missing field '.spec.selector'",
            );
        }
        None => {}
    }
    if let Some(template) = &spec.template {
        check_pod_template(template, "spec.template", false, &mut errors);
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready < 0 {
        errors.push("spec.minReadySeconds", "must be greater than or equal to 0");
    }
    let revision_history_limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    if revision_history_limit < 0 {
        errors.push(
            "spec.revisionHistoryLimit",
            "must be greater than or equal to 0",
        );
    }
    let progress_deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    if progress_deadline < 0 {
        errors.push(
            "spec.progressDeadlineSeconds",
            "must be greater than or equal to 0",
        );
    } else if progress_deadline <= min_ready {
        errors.push(
            "spec.progressDeadlineSeconds",
            format!("{progress_deadline} must be greater than minReadySeconds ({min_ready})"),
        );
    }
    if spec
        .rollback_window
        .as_ref()
        .and_then(|w| w.revisions)
        .is_some_and(|r| r < 0)
    {
        errors.push(
            "spec.rollbackWindow.revisions",
            "must be greater than or equal to 0",
        );
    }

    let strategy = spec.strategy.clone().unwrap_or_default();
    match (&strategy.canary, &strategy.blue_green) {
        (None, None) => errors.push(
            "spec.strategy",
            "required: Rollout has missing field '.spec.strategy.canary or .spec.strategy.blueGreen'",
        ),
        (Some(_), Some(_)) => errors.push("spec.strategy", "set either canary or blueGreen, not both"),
        (Some(canary), None) => check_canary(rollout, canary, &mut errors),
        (None, Some(blue_green)) => check_blue_green(blue_green, revision_history_limit, &mut errors),
    }
    errors.into_vec()
}

fn check_blue_green(
    blue_green: &BlueGreenStrategy,
    revision_history_limit: i32,
    errors: &mut FieldErrors,
) {
    let path = "spec.strategy.blueGreen";
    if blue_green.active_service.is_empty() {
        errors.push(
            format!("{path}.activeService"),
            "required: blue-green needs an active Service",
        );
    }
    if blue_green.preview_service.as_deref() == Some(blue_green.active_service.as_str()) {
        errors.push(
            format!("{path}.activeService"),
            "the same Service is used as active and preview; two different Services are required",
        );
    }
    if let Some(limit) = blue_green.scale_down_delay_revision_limit
        && limit > revision_history_limit
    {
        errors.push(
            format!("{path}.scaleDownDelayRevisionLimit"),
            format!("{limit} is larger than the revision history limit ({revision_history_limit})"),
        );
    }
    for (field, value) in [
        ("previewReplicaCount", blue_green.preview_replica_count),
        ("autoPromotionSeconds", blue_green.auto_promotion_seconds),
        ("scaleDownDelaySeconds", blue_green.scale_down_delay_seconds),
        (
            "abortScaleDownDelaySeconds",
            blue_green.abort_scale_down_delay_seconds,
        ),
    ] {
        if value.is_some_and(|v| v < 0) {
            errors.push(
                format!("{path}.{field}"),
                "must be greater than or equal to 0",
            );
        }
    }
    if let Some(max_unavailable) = &blue_green.max_unavailable
        && let Err(message) = IntOrPercent::parse(max_unavailable)
    {
        errors.push(format!("{path}.maxUnavailable"), message);
    }
    for (field, analysis) in [
        ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
        ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
    ] {
        if let Some(analysis) = analysis {
            check_analysis_refs(
                analysis.templates.as_deref(),
                analysis.args.as_deref(),
                &format!("{path}.{field}"),
                errors,
            );
        }
    }
    check_anti_affinity(
        blue_green.anti_affinity.as_ref(),
        &format!("{path}.antiAffinity"),
        errors,
    );
}

/// Whether a router needs both canaryService and stableService (Argo's rule).
fn router_needs_services(canary: &CanaryStrategy, routing: &RolloutTrafficRouting) -> bool {
    let ping_pong = canary.ping_pong.is_some();
    (routing.alb.is_some() && !ping_pong)
        || routing
            .istio
            .as_ref()
            .is_some_and(|i| i.destination_rule.is_none() && !ping_pong)
        || routing.smi.is_some()
        || routing.apisix.is_some()
        || routing.ambassador.is_some()
        || routing.nginx.is_some()
        || routing.app_mesh.is_some()
        || routing.traefik.is_some()
}

fn check_canary(rollout: &Rollout, canary: &CanaryStrategy, errors: &mut FieldErrors) {
    let path = "spec.strategy.canary";
    match (canary.max_surge(), canary.max_unavailable()) {
        (Err(message), _) => errors.push(format!("{path}.maxSurge"), message),
        (_, Err(message)) => errors.push(format!("{path}.maxUnavailable"), message),
        (Ok(surge), Ok(unavailable)) => {
            let value = |v: IntOrPercent| match v {
                IntOrPercent::Count(n) | IntOrPercent::Percent(n) => n,
            };
            if value(surge) == 0 && value(unavailable) == 0 {
                errors.push(format!("{path}.maxSurge"), "maxSurge and maxUnavailable cannot both be 0: the rollout could never make progress");
            }
            if value(surge) < 0 {
                errors.push(format!("{path}.maxSurge"), "must not be negative");
            }
            if value(unavailable) < 0 {
                errors.push(format!("{path}.maxUnavailable"), "must not be negative");
            }
            if matches!(unavailable, IntOrPercent::Percent(p) if p > 100) {
                errors.push(
                    format!("{path}.maxUnavailable"),
                    "must not be more than 100%",
                );
            }
        }
    }
    if let (Some(canary_service), Some(stable_service)) =
        (&canary.canary_service, &canary.stable_service)
        && !canary_service.is_empty()
        && canary_service == stable_service
    {
        errors.push(
            format!("{path}.stableService"),
            "the same Service is used as stable and canary; two different Services are required",
        );
    }
    let routing = canary.traffic_routing.as_ref();
    if let Some(ping_pong) = &canary.ping_pong {
        if routing.is_some_and(|r| r.alb.is_none() && r.istio.is_none()) {
            errors.push(
                format!("{path}.trafficRouting"),
                "ping-pong works with the ALB and Istio traffic routers only",
            );
        }
        if ping_pong.ping_service.is_empty() {
            errors.push(
                format!("{path}.pingPong.pingService"),
                "required for ping-pong",
            );
        }
        if ping_pong.pong_service.is_empty() {
            errors.push(
                format!("{path}.pingPong.pongService"),
                "required for ping-pong",
            );
        }
        if ping_pong.ping_service == ping_pong.pong_service {
            errors.push(
                format!("{path}.pingPong.pingService"),
                "ping and pong must be two different Services",
            );
        }
        if routing
            .and_then(|r| r.alb.as_ref())
            .is_some_and(|alb| alb.root_service.as_deref().is_none_or(str::is_empty))
        {
            errors.push(
                format!("{path}.trafficRouting.alb.rootService"),
                "required with ALB and ping-pong",
            );
        }
    }
    if let Some(routing) = routing {
        if router_needs_services(canary, routing) {
            if canary.stable_service.as_deref().is_none_or(str::is_empty) {
                errors.push(
                    format!("{path}.stableService"),
                    "required: traffic routing needs both canaryService and stableService",
                );
            }
            if canary.canary_service.as_deref().is_none_or(str::is_empty) {
                errors.push(
                    format!("{path}.canaryService"),
                    "required: traffic routing needs both canaryService and stableService",
                );
            }
        }
        if canary.scale_down_delay_seconds.is_some() && canary.dynamic_stable_scale == Some(true) {
            errors.push(
                format!("{path}.dynamicStableScale"),
                "cannot be used together with scaleDownDelaySeconds",
            );
        }
        if let Some(max) = routing.max_traffic_weight {
            if routing.nginx.is_none() && routing.plugins.as_ref().is_none_or(|p| p.is_empty()) {
                errors.push(
                    format!("{path}.trafficRouting.maxTrafficWeight"),
                    "is supported only with the NGINX router and router plugins",
                );
            }
            if max <= 0 {
                errors.push(
                    format!("{path}.trafficRouting.maxTrafficWeight"),
                    "must be greater than 0",
                );
            }
        }
        let mut managed = BTreeSet::new();
        for (i, route) in routing.managed_routes.iter().flatten().enumerate() {
            if !managed.insert(route.name.as_str()) {
                errors.push(
                    format!("{path}.trafficRouting.managedRoutes[{i}].name"),
                    format!("duplicate route name {:?}", route.name),
                );
            }
        }
    } else {
        if canary.scale_down_delay_seconds.is_some() {
            errors.push(
                format!("{path}.scaleDownDelaySeconds"),
                "can only be used with traffic routing",
            );
        }
        if canary.dynamic_stable_scale == Some(true) {
            errors.push(
                format!("{path}.dynamicStableScale"),
                "can only be used with traffic routing",
            );
        }
    }
    for (field, value) in [
        ("scaleDownDelaySeconds", canary.scale_down_delay_seconds),
        (
            "abortScaleDownDelaySeconds",
            canary.abort_scale_down_delay_seconds,
        ),
        ("minPodsPerReplicaSet", canary.min_pods_per_replica_set),
    ] {
        if value.is_some_and(|v| v < 0) {
            errors.push(
                format!("{path}.{field}"),
                "must be greater than or equal to 0",
            );
        }
    }

    let steps = canary.steps.as_deref().unwrap_or_default();
    if steps.len() > MAX_STEPS {
        errors.push(
            format!("{path}.steps"),
            format!(
                "{} steps; at most {MAX_STEPS} are accepted (split the rollout into fewer, larger steps)",
                steps.len()
            ),
        );
    } else {
        for (i, step) in steps.iter().enumerate() {
            check_step(rollout, canary, step, &format!("{path}.steps[{i}]"), errors);
        }
    }
    if let Some(background) = &canary.analysis {
        check_analysis_refs(
            background.templates.as_deref(),
            background.args.as_deref(),
            &format!("{path}.analysis"),
            errors,
        );
        if let Some(start) = background.starting_step
            && (start < 0 || usize::try_from(start).is_ok_and(|s| s > steps.len()))
        {
            errors.push(
                format!("{path}.analysis.startingStep"),
                format!(
                    "{start} is not a step index (the Rollout has {} steps)",
                    steps.len()
                ),
            );
        }
    }
    check_anti_affinity(
        canary.anti_affinity.as_ref(),
        &format!("{path}.antiAffinity"),
        errors,
    );
}

fn check_step(
    rollout: &Rollout,
    canary: &CanaryStrategy,
    step: &CanaryStep,
    path: &str,
    errors: &mut FieldErrors,
) {
    // Like Argo: a step has one main action (setWeight, pause, experiment or analysis); the
    // route and scale actions may accompany it (`setCanaryScale` with `setHeaderRoute`).
    let main_actions = [
        ("setWeight", step.set_weight.is_some()),
        ("pause", step.pause.is_some()),
        ("experiment", step.experiment.is_some()),
        ("analysis", step.analysis.is_some()),
    ];
    let main: Vec<&str> = main_actions
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    let any_action = !main.is_empty()
        || step.set_canary_scale.is_some()
        || step.set_header_route.is_some()
        || step.set_mirror_route.is_some()
        || step.plugin.is_some();
    if !any_action {
        errors.push(
            path,
            "a step needs one of setWeight, pause, experiment, analysis, setCanaryScale, setHeaderRoute, setMirrorRoute or plugin",
        );
    } else if main.len() > 1 {
        errors.push(
            path,
            format!(
                "a step takes one of setWeight, pause, experiment and analysis; this one has {}",
                main.join(", ")
            ),
        );
    }
    let routing = canary.traffic_routing.as_ref();
    let max_weight = canary.max_traffic_weight();
    if let Some(weight) = step.set_weight
        && !(0..=max_weight).contains(&weight)
    {
        errors.push(
            format!("{path}.setWeight"),
            format!("{weight} is not between 0 and {max_weight}"),
        );
    }
    if let Some(pause) = &step.pause {
        match pause.duration_seconds() {
            Some(Err(message)) => errors.push(format!("{path}.pause.duration"), message),
            Some(Ok(seconds)) if seconds < 0 => {
                errors.push(format!("{path}.pause.duration"), "must not be negative")
            }
            _ => {}
        }
    }
    if let Some(scale) = &step.set_canary_scale {
        if routing.is_none() {
            errors.push(
                format!("{path}.setCanaryScale"),
                "setCanaryScale requires trafficRouting",
            );
        }
        let choices = [
            scale.weight.is_some(),
            scale.replicas.is_some(),
            scale.match_traffic_weight == Some(true),
        ];
        if choices.iter().filter(|c| **c).count() != 1 {
            errors.push(
                format!("{path}.setCanaryScale"),
                "set exactly one of weight, replicas or matchTrafficWeight: true",
            );
        }
        if scale.weight.is_some_and(|w| !(0..=100).contains(&w)) {
            errors.push(
                format!("{path}.setCanaryScale.weight"),
                "must be between 0 and 100",
            );
        }
        if scale.replicas.is_some_and(|r| r < 0) {
            errors.push(
                format!("{path}.setCanaryScale.replicas"),
                "must be greater than or equal to 0",
            );
        }
    }
    let has_plugins = routing.is_some_and(|r| r.plugins.as_ref().is_some_and(|p| !p.is_empty()));
    if let Some(header_route) = &step.set_header_route {
        let supported = routing.is_some_and(|r| {
            r.istio.is_some()
                || r.alb.is_some()
                || r.apisix.is_some()
                || r.nginx.is_some()
                || has_plugins
        });
        if !supported {
            errors.push(
                format!("{path}.setHeaderRoute"),
                "setHeaderRoute requires trafficRouting with Istio, Gateway API (plugin), NGINX, ALB or APISIX",
            );
        }
        for (j, matcher) in header_route.matches.iter().flatten().enumerate() {
            let at = format!("{path}.setHeaderRoute.match[{j}].headerValue");
            if routing.is_some_and(|r| r.alb.is_some()) {
                if matcher
                    .header_value
                    .exact
                    .as_deref()
                    .is_none_or(str::is_empty)
                    || matcher.header_value.prefix.is_some()
                    || matcher.header_value.regex.is_some()
                {
                    errors.push(at, "the ALB router supports only `exact` header values");
                }
            } else {
                check_string_match(&matcher.header_value, &at, errors);
            }
            if matcher.header_name.is_empty() {
                errors.push(
                    format!("{path}.setHeaderRoute.match[{j}].headerName"),
                    "required",
                );
            }
        }
        check_managed_route(
            routing,
            header_route.name.as_deref().unwrap_or(""),
            &format!("{path}.setHeaderRoute.name"),
            errors,
        );
    }
    if let Some(mirror) = &step.set_mirror_route {
        let supported = routing.is_some_and(|r| r.istio.is_some() || has_plugins);
        if !supported {
            errors.push(
                format!("{path}.setMirrorRoute"),
                "setMirrorRoute requires trafficRouting with Istio or Gateway API (plugin)",
            );
        }
        for (j, matcher) in mirror.matches.iter().flatten().enumerate() {
            let at = format!("{path}.setMirrorRoute.match[{j}]");
            if let Some(method) = &matcher.method {
                check_string_match(method, &format!("{at}.method"), errors);
            }
            if let Some(match_path) = &matcher.path {
                check_string_match(match_path, &format!("{at}.path"), errors);
            }
            for (header, value) in matcher.headers.iter().flatten() {
                check_string_match(value, &format!("{at}.headers.{header}"), errors);
            }
        }
        if mirror.percentage.is_some_and(|p| !(0..=100).contains(&p)) {
            errors.push(
                format!("{path}.setMirrorRoute.percentage"),
                "must be between 0 and 100",
            );
        }
        check_managed_route(
            routing,
            &mirror.name,
            &format!("{path}.setMirrorRoute.name"),
            errors,
        );
    }
    if let Some(experiment) = &step.experiment {
        for (j, template) in experiment.templates.iter().enumerate() {
            if template.weight.is_some() {
                let supported = routing.is_some_and(|r| {
                    r.alb.is_some()
                        || r.smi.is_some()
                        || r.istio.is_some()
                        || r.plugins
                            .as_ref()
                            .is_some_and(|p| p.contains_key(crate::traffic::gatewayapi::PLUGIN))
                });
                if !supported {
                    errors.push(
                        format!("{path}.experiment.templates[{j}].weight"),
                        "experiment template weights need trafficRouting with SMI, ALB, Istio or the argoproj-labs/gatewayAPI plugin",
                    );
                }
            }
            if !matches!(template.spec_ref.as_str(), "stable" | "canary") {
                errors.push(
                    format!("{path}.experiment.templates[{j}].specRef"),
                    format!(
                        "unsupported value {:?}: use stable or canary",
                        template.spec_ref
                    ),
                );
            }
        }
        if let Some(duration) = &experiment.duration
            && let Err(error) = ramp_analysis::duration::parse_duration(duration)
        {
            errors.push(format!("{path}.experiment.duration"), error.to_string());
        }
        for (j, analysis) in experiment.analyses.iter().flatten().enumerate() {
            check_args(
                rollout,
                analysis.args.as_deref(),
                &format!("{path}.experiment.analyses[{j}]"),
                errors,
            );
        }
    }
    if let Some(analysis) = &step.analysis {
        check_analysis_refs(
            analysis.templates.as_deref(),
            analysis.args.as_deref(),
            &format!("{path}.analysis"),
            errors,
        );
        check_args(
            rollout,
            analysis.args.as_deref(),
            &format!("{path}.analysis"),
            errors,
        );
    }
}

fn check_managed_route(
    routing: Option<&RolloutTrafficRouting>,
    name: &str,
    path: &str,
    errors: &mut FieldErrors,
) {
    let Some(routing) = routing else { return };
    match &routing.managed_routes {
        None => errors.push(
            "spec.strategy.canary.trafficRouting.managedRoutes",
            "required: header and mirror route steps need their routes listed in managedRoutes",
        ),
        Some(routes) if !routes.iter().any(|r| r.name == name) => errors.push(
            path,
            format!(
                "route {name:?} is not listed in spec.strategy.canary.trafficRouting.managedRoutes"
            ),
        ),
        Some(_) => {}
    }
}

fn check_string_match(value: &StringMatch, path: &str, errors: &mut FieldErrors) {
    let set = [&value.exact, &value.prefix, &value.regex]
        .into_iter()
        .filter(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
        .count();
    match set {
        0 => errors.push(path, "set one of exact, prefix or regex"),
        1 => {}
        _ => errors.push(path, "set exactly one of exact, prefix or regex"),
    }
    if let Some(regex) = &value.regex
        && let Err(error) = regex::Regex::new(regex)
    {
        errors.push(
            format!("{path}.regex"),
            format!("not a regular expression: {error}"),
        );
    }
}

/// Analysis references must name their templates.
fn check_analysis_refs(
    templates: Option<&[AnalysisTemplateRef]>,
    args: Option<&[AnalysisRunArgument]>,
    path: &str,
    errors: &mut FieldErrors,
) {
    let templates = templates.unwrap_or_default();
    if templates.is_empty() {
        errors.push(
            format!("{path}.templates"),
            "required: analysis needs at least one template",
        );
    }
    for (i, template) in templates.iter().enumerate() {
        if template.template_name.as_deref().is_none_or(str::is_empty) {
            errors.push(
                format!("{path}.templates[{i}].templateName"),
                "required: name the AnalysisTemplate to run",
            );
        }
    }
    let mut names = BTreeSet::new();
    for (i, arg) in args.unwrap_or_default().iter().enumerate() {
        if arg.name.is_empty() {
            errors.push(format!("{path}.args[{i}].name"), "required");
        } else if !names.insert(arg.name.as_str()) {
            errors.push(
                format!("{path}.args[{i}].name"),
                format!("duplicate argument {:?}", arg.name),
            );
        }
        if let Some(from) = &arg.value_from {
            if let Some(hash) = from.pod_template_hash_value.as_deref()
                && !matches!(hash, "Stable" | "Latest")
            {
                errors.push(
                    format!("{path}.args[{i}].valueFrom.podTemplateHashValue"),
                    format!("unsupported value {hash:?}: use Stable or Latest"),
                );
            }
            if from.pod_template_hash_value.is_some() == from.field_ref.is_some() {
                errors.push(
                    format!("{path}.args[{i}].valueFrom"),
                    "set exactly one of podTemplateHashValue and fieldRef",
                );
            }
        }
    }
}

/// Arguments read from Rollout fields must name fields the Rollout can have.
fn check_args(
    rollout: &Rollout,
    args: Option<&[AnalysisRunArgument]>,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (i, arg) in args.unwrap_or_default().iter().enumerate() {
        let Some(field_ref) = arg.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) else {
            continue;
        };
        if let Err(message) = crate::fieldpath::check_field_path(&field_ref.field_path) {
            errors.push(
                format!("{path}.args[{i}].valueFrom.fieldRef.fieldPath"),
                message,
            );
        } else if crate::fieldpath::extract(rollout, &field_ref.field_path).is_none()
            && field_ref.field_path.starts_with("metadata.")
            && !field_ref.field_path.starts_with("metadata.labels")
            && !field_ref.field_path.starts_with("metadata.annotations")
        {
            errors.push(
                format!("{path}.args[{i}].valueFrom.fieldRef.fieldPath"),
                format!("{:?} is not set on this Rollout", field_ref.field_path),
            );
        }
    }
}

fn check_anti_affinity(anti_affinity: Option<&AntiAffinity>, path: &str, errors: &mut FieldErrors) {
    let Some(anti_affinity) = anti_affinity else {
        return;
    };
    let preferred = anti_affinity
        .preferred_during_scheduling_ignored_during_execution
        .as_ref();
    let required = anti_affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref();
    if preferred.is_some() == required.is_some() {
        errors.push(path, "set exactly one of preferredDuringSchedulingIgnoredDuringExecution and requiredDuringSchedulingIgnoredDuringExecution");
    }
    if let Some(preferred) = preferred
        && !(1..=100).contains(&preferred.weight)
    {
        errors.push(
            format!("{path}.preferredDuringSchedulingIgnoredDuringExecution.weight"),
            format!("{} is not between 1 and 100", preferred.weight),
        );
    }
}
