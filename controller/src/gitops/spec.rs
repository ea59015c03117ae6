//! Validation of an Application's spec into the settings a sync uses.
//!
//! Problems that make a sync meaningless (no source, a remote cluster, a Helm source) are
//! errors: the application gets an `InvalidSpecError` condition and nothing is synced. Fields
//! Ramp keeps but does not act on (AppProject restrictions, jq expressions, unknown sync
//! options) are warnings, reported in an `UnsupportedFeatureWarning` condition.

use std::time::Duration;

use super::application::{
    ApplicationSpec, ManagedNamespaceMetadata, ResourceIgnoreDifferences, RetryStrategy,
};
use super::render::DirectoryOptions;

/// API server addresses that mean "this cluster".
const IN_CLUSTER_SERVERS: &[&str] = &[
    "https://kubernetes.default.svc",
    "https://kubernetes.default.svc.cluster.local",
];

/// Automated sync switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Automation {
    /// Delete objects that left Git.
    pub prune: bool,
    /// Revert drift.
    pub self_heal: bool,
    /// Allow syncing an empty render.
    pub allow_empty: bool,
}

/// `syncPolicy.syncOptions` Ramp acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Create the destination namespace.
    pub create_namespace: bool,
    /// Prune only after every wave is applied (Ramp always does; kept for the record).
    pub prune_last: bool,
    /// Keep the live value of ignored fields when applying.
    pub respect_ignore_differences: bool,
    /// Deletion propagation for pruned objects.
    pub prune_propagation: PropagationPolicy,
}

/// How a pruned object's dependents are deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// Dependents are deleted before the owner.
    #[default]
    Foreground,
    /// Dependents are deleted after the owner.
    Background,
    /// Dependents are kept.
    Orphan,
}

impl PropagationPolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Foreground => "Foreground",
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Orphan => "Orphan",
        }
    }
}

/// Retry policy, durations parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed; `None` for no limit.
    pub limit: Option<u32>,
    /// First delay.
    pub base: Duration,
    /// Growth per retry.
    pub factor: u32,
    /// Longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = f64::from(self.factor.max(1)).powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        let delay = self.base.as_secs_f64() * factor;
        Duration::from_secs_f64(delay.min(self.max.as_secs_f64()))
    }
}

/// A validated Application spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// Repository URL.
    pub repo_url: String,
    /// Branch, tag, commit or `HEAD`.
    pub target_revision: String,
    /// Directory inside the repository, `""` for the root.
    pub path: String,
    /// Directory options.
    pub directory: DirectoryOptions,
    /// Namespace for namespaced objects that name none.
    pub destination_namespace: Option<String>,
    /// Automated sync, when on.
    pub automation: Option<Automation>,
    /// Sync options.
    pub options: SyncOptions,
    /// Retry policy, when set.
    pub retry: Option<RetryPolicy>,
    /// `ignoreDifferences` rules.
    pub ignore: Vec<ResourceIgnoreDifferences>,
    /// Entries kept in `status.history`.
    pub history_limit: usize,
    /// Metadata for a created namespace.
    pub namespace_metadata: Option<ManagedNamespaceMetadata>,
}

/// The outcome of validation.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecReport {
    /// The settings, or every error found.
    pub spec: Result<ValidSpec, Vec<String>>,
    /// Fields kept but not acted on.
    pub warnings: Vec<String>,
}

/// Validates a spec.
pub fn validate(spec: &ApplicationSpec) -> SpecReport {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if spec.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        errors.push(
            "spec.sources (multiple sources) is not supported yet; use a single spec.source".into(),
        );
    }
    if spec.source_hydrator.is_some() {
        errors.push("spec.sourceHydrator is not supported; use spec.source".into());
    }
    check_destination(spec, &mut errors);
    if let Some(project) = spec
        .project
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "default")
    {
        warnings.push(format!(
            "spec.project is {project:?}: Ramp has no AppProjects, so project restrictions are not enforced"
        ));
    }
    let source = spec.source.as_ref();
    if source.is_none() && spec.sources.is_none() {
        errors.push("spec.source is required: set spec.source.repoURL and spec.source.path".into());
    }
    let mut directory = DirectoryOptions::default();
    if let Some(source) = source {
        if source.repo_url.trim().is_empty() {
            errors.push("spec.source.repoURL is empty: set the Git repository URL".into());
        }
        if source.chart.is_some() || source.helm.is_some() {
            errors.push(
                "Helm sources (spec.source.chart, spec.source.helm) are not supported yet; \
                         commit rendered manifests and use a directory source"
                    .into(),
            );
        }
        if source.kustomize.is_some() {
            errors.push(
                "Kustomize sources (spec.source.kustomize) are not supported yet; \
                         commit rendered manifests and use a directory source"
                    .into(),
            );
        }
        if source.plugin.is_some() {
            errors.push("config management plugins (spec.source.plugin) are not supported".into());
        }
        if let Some(dir) = &source.directory {
            if dir
                .jsonnet
                .as_ref()
                .is_some_and(|j| j.as_object().is_some_and(|o| !o.is_empty()))
            {
                errors.push("Jsonnet (spec.source.directory.jsonnet) is not supported yet".into());
            }
            directory = DirectoryOptions {
                recurse: dir.recurse.unwrap_or(false),
                include: dir.include.clone().filter(|s| !s.is_empty()),
                exclude: dir.exclude.clone().filter(|s| !s.is_empty()),
            };
        }
    }
    let policy = spec.sync_policy.as_ref();
    let automation = policy
        .and_then(|p| p.automated.as_ref())
        .filter(|a| a.enabled != Some(false))
        .map(|a| Automation {
            prune: a.prune.unwrap_or(false),
            self_heal: a.self_heal.unwrap_or(false),
            allow_empty: a.allow_empty.unwrap_or(false),
        });
    let options = sync_options(
        policy
            .and_then(|p| p.sync_options.as_deref())
            .unwrap_or_default(),
        &mut errors,
        &mut warnings,
    );
    let retry = policy
        .and_then(|p| p.retry.as_ref())
        .and_then(|r| retry_policy(r, &mut errors));
    let ignore = spec.ignore_differences.clone().unwrap_or_default();
    for (i, rule) in ignore.iter().enumerate() {
        if rule
            .jq_path_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            warnings.push(format!(
                "spec.ignoreDifferences[{i}].jqPathExpressions are not supported and are not applied; use jsonPointers"
            ));
        }
        for pointer in rule.json_pointers.iter().flatten() {
            if !pointer.starts_with('/') {
                errors.push(format!(
                    "spec.ignoreDifferences[{i}].jsonPointers: {pointer:?} must start with '/'"
                ));
            }
        }
    }
    let history_limit = spec
        .revision_history_limit
        .map_or(10, |l| usize::try_from(l.max(0)).unwrap_or(10));
    if !errors.is_empty() {
        return SpecReport {
            spec: Err(errors),
            warnings,
        };
    }
    let Some(source) = source else {
        return SpecReport {
            spec: Err(vec!["spec.source is required".into()]),
            warnings,
        };
    };
    let spec = ValidSpec {
        repo_url: source.repo_url.trim().to_owned(),
        target_revision: source
            .target_revision
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "HEAD".into()),
        path: normalize_path(source.path.as_deref().unwrap_or_default()),
        directory,
        destination_namespace: spec.destination.namespace.clone().filter(|n| !n.is_empty()),
        automation,
        options,
        retry,
        ignore,
        history_limit,
        namespace_metadata: policy.and_then(|p| p.managed_namespace_metadata.clone()),
    };
    SpecReport {
        spec: Ok(spec),
        warnings,
    }
}

fn check_destination(spec: &ApplicationSpec, errors: &mut Vec<String>) {
    let destination = &spec.destination;
    if let Some(server) = destination.server.as_deref().filter(|s| !s.is_empty()) {
        let server = server.trim_end_matches('/');
        if !IN_CLUSTER_SERVERS.contains(&server) {
            errors.push(format!(
                "spec.destination.server is {server:?}: Ramp deploys only to its own cluster; \
                 use https://kubernetes.default.svc or destination.name: in-cluster"
            ));
        }
    }
    if let Some(name) = destination
        .name
        .as_deref()
        .filter(|n| !n.is_empty() && *n != "in-cluster")
    {
        errors.push(format!(
            "spec.destination.name is {name:?}: Ramp deploys only to its own cluster (name: in-cluster)"
        ));
    }
}

fn normalize_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn sync_options(
    options: &[String],
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> SyncOptions {
    let mut parsed = SyncOptions::default();
    for option in options {
        let (name, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
        let on = value.eq_ignore_ascii_case("true");
        match name.trim() {
            "CreateNamespace" => parsed.create_namespace = on,
            "PruneLast" => parsed.prune_last = on,
            "RespectIgnoreDifferences" => parsed.respect_ignore_differences = on,
            // Ramp always applies server-side and compares before applying.
            "ServerSideApply" | "ApplyOutOfSyncOnly" | "Validate" | "SkipDryRunOnMissingResource" => {
                if name == "ServerSideApply" && !on {
                    warnings.push("syncOptions ServerSideApply=false: Ramp always applies server-side".into());
                }
            }
            "PrunePropagationPolicy" => match value.to_ascii_lowercase().as_str() {
                "foreground" => parsed.prune_propagation = PropagationPolicy::Foreground,
                "background" => parsed.prune_propagation = PropagationPolicy::Background,
                "orphan" => parsed.prune_propagation = PropagationPolicy::Orphan,
                _ => errors.push(format!(
                    "syncOptions {option:?}: PrunePropagationPolicy must be foreground, background or orphan"
                )),
            },
            _ => warnings.push(format!("syncOptions {option:?} is not supported by Ramp and has no effect")),
        }
    }
    parsed
}

fn retry_policy(retry: &RetryStrategy, errors: &mut Vec<String>) -> Option<RetryPolicy> {
    let backoff = retry.backoff.clone().unwrap_or_default();
    let mut duration = |field: &str, text: Option<&str>, default: Duration| match text {
        None => Some(default),
        Some(text) => match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                errors.push(format!(
                    "spec.syncPolicy.retry.backoff.{field} is {text:?}, not a duration like 5s, 2m or 1h30m"
                ));
                None
            }
        },
    };
    let base = duration(
        "duration",
        backoff.duration.as_deref(),
        Duration::from_secs(5),
    );
    let max = duration(
        "maxDuration",
        backoff.max_duration.as_deref(),
        Duration::from_secs(180),
    );
    let factor = u32::try_from(backoff.factor.unwrap_or(2).max(1)).unwrap_or(2);
    let limit = match retry.limit {
        Some(l) if l < 0 => None,
        Some(l) => Some(u32::try_from(l).unwrap_or(u32::MAX)),
        None => Some(0),
    };
    Some(RetryPolicy {
        limit,
        base: base?,
        factor,
        max: max?,
    })
}

/// Parses a backoff duration: a Go duration (`300ms`, `5s`, `1m30s`) or, as Argo CD allows,
/// a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => ramp_analysis::duration::parse_go_duration(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gitops::application::{ApplicationDestination, ApplicationSource};

    fn spec(value: serde_json::Value) -> ApplicationSpec {
        serde_json::from_value(value).expect("spec parses")
    }

    #[test]
    fn a_tutorial_spec_validates() {
        let report = validate(&spec(json!({
            "project": "default",
            "source": {"repoURL": "https://example.com/apps.git", "path": "./guestbook/", "targetRevision": ""},
            "destination": {"server": "https://kubernetes.default.svc/", "namespace": "guestbook"},
            "syncPolicy": {"automated": {"prune": true}, "syncOptions": ["CreateNamespace=true", "PrunePropagationPolicy=background"],
                "retry": {"limit": 3, "backoff": {"duration": "10s", "factor": 3, "maxDuration": "1m"}}}
        })));
        assert_eq!(report.warnings, Vec::<String>::new());
        let valid = report.spec.expect("valid");
        assert_eq!(
            (valid.path.as_str(), valid.target_revision.as_str()),
            ("guestbook", "HEAD")
        );
        assert_eq!(
            valid.automation,
            Some(Automation {
                prune: true,
                self_heal: false,
                allow_empty: false
            })
        );
        assert!(valid.options.create_namespace);
        assert_eq!(
            valid.options.prune_propagation,
            PropagationPolicy::Background
        );
        let retry = valid.retry.expect("retry");
        assert_eq!(retry.limit, Some(3));
        assert_eq!(retry.delay(0), Duration::from_secs(10));
        assert_eq!(retry.delay(1), Duration::from_secs(30));
        assert_eq!(retry.delay(5), Duration::from_secs(60));
    }

    #[test]
    fn unsupported_sources_and_remote_clusters_are_errors() {
        let report = validate(&ApplicationSpec {
            source: Some(ApplicationSource {
                repo_url: "https://charts.example.com".into(),
                chart: Some("nginx".into()),
                ..Default::default()
            }),
            destination: ApplicationDestination {
                server: Some("https://10.0.0.1:6443".into()),
                ..Default::default()
            },
            sources: Some(vec![json!({"repoURL": "x"})]),
            ..Default::default()
        });
        let errors = report.spec.expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("spec.sources")));
        assert!(errors.iter().any(|e| e.contains("Helm sources")));
        assert!(errors.iter().any(|e| e.contains("own cluster")));
    }

    #[test]
    fn kept_but_inactive_fields_are_warnings() {
        let report = validate(&spec(json!({
            "project": "payments",
            "source": {"repoURL": "file:///repo"},
            "destination": {"name": "in-cluster"},
            "syncPolicy": {"syncOptions": ["Replace=true", "ServerSideApply=true"]},
            "ignoreDifferences": [{"kind": "Deployment", "jqPathExpressions": [".spec.replicas"]}]
        })));
        assert!(report.spec.is_ok());
        assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
    }

    #[test]
    fn bad_durations_are_errors_and_go_durations_parse() {
        let report = validate(&spec(json!({
            "source": {"repoURL": "file:///repo"},
            "syncPolicy": {"retry": {"backoff": {"duration": "soon"}}}
        })));
        assert!(report.spec.expect_err("invalid")[0].contains("retry.backoff.duration"));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("3x"), None);
    }

    #[test]
    fn disabled_automation_is_off() {
        let report = validate(&spec(json!({
            "source": {"repoURL": "file:///repo"},
            "syncPolicy": {"automated": {"enabled": false, "prune": true}}
        })));
        assert_eq!(report.spec.expect("valid").automation, None);
    }
}
