//! From templates to an AnalysisRun spec: what the Rollout controller calls when a step, a
//! background analysis or a blue-green analysis starts.
//!
//! ```text
//!   AnalysisTemplateRef[] ──fetch_templates (API, recursive through `templates[]`)──▶ Templates
//!   Templates + Rollout args + dryRun + measurementRetention ──run_spec (pure)──▶ AnalysisRunSpec
//! ```
//!
//! `run_spec` follows Argo: namespaced templates' metrics first, then cluster templates', names
//! unique; template args combined, then overridden by the incoming args (args no template
//! declares are dropped); every arg must have a value or `valueFrom`; dry-run and retention
//! rules of the caller and of the templates are combined, must be unique, and each must match a
//! metric name (a regular expression, matched anywhere in the name). `{{args.…}}` placeholders
//! stay in the spec: the run resolves them when it measures.

use std::collections::BTreeSet;
use std::fmt;

use kube::Api;
use regex::Regex;

use crate::api::{
    AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, DryRun, MeasurementRetention, Metric,
};
use crate::args::{ArgError, flatten_template_args, merge_args};

/// Why an AnalysisRun could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("two metrics have the same name {name:?}: rename one in its template")]
    DuplicateMetric { name: String },
    #[error(transparent)]
    Args(#[from] ArgError),
    #[error("two {field} rules have the same metricName {pattern:?}")]
    DuplicateRule {
        field: &'static str,
        pattern: String,
    },
    #[error("{field}[{index}]: metricName {pattern:?} is not a valid regular expression: {reason}")]
    InvalidRule {
        field: &'static str,
        index: usize,
        pattern: String,
        reason: String,
    },
    #[error("{field}[{index}]: metricName {pattern:?} matches none of the metrics ({metrics})")]
    RuleMatchesNothing {
        field: &'static str,
        index: usize,
        pattern: String,
        metrics: String,
    },
    #[error("an analysis template reference needs a templateName")]
    MissingTemplateName,
    #[error("{0} not found: create it, or fix the templateName that refers to it")]
    TemplateNotFound(TemplateKey),
    #[error("{key} includes itself through templates[]: {chain}")]
    TemplateCycle { key: TemplateKey, chain: String },
    #[error("reading {key}: {source}")]
    Api {
        key: TemplateKey,
        #[source]
        source: kube::Error,
    },
}

impl BuildError {
    /// A short, stable label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            BuildError::TemplateNotFound(_) => "TemplateNotFound",
            BuildError::Api { .. } => "ApiError",
            _ => "InvalidSpec",
        }
    }
}

/// Builds the spec of an AnalysisRun from the (already fetched and expanded) templates.
///
/// `templates` are AnalysisTemplates, `cluster_templates` ClusterAnalysisTemplates, both in the
/// order [`fetch_templates`] returns them (composed templates included, each once). Their
/// `templates[]` references are not followed here.
pub fn run_spec(
    templates: &[AnalysisTemplateSpec],
    cluster_templates: &[AnalysisTemplateSpec],
    args: Vec<Argument>,
    dry_run: Vec<DryRun>,
    measurement_retention: Vec<MeasurementRetention>,
) -> Result<AnalysisRunSpec, BuildError> {
    let all = || templates.iter().chain(cluster_templates);

    let mut metrics: Vec<Metric> = Vec::new();
    let mut names = BTreeSet::new();
    for metric in all().flat_map(|t| t.metrics.iter().flatten()) {
        if !names.insert(metric.name.as_str()) {
            return Err(BuildError::DuplicateMetric {
                name: metric.name.clone(),
            });
        }
        metrics.push(metric.clone());
    }

    let declared = flatten_template_args(all().flat_map(|t| t.args.iter().flatten()))?;
    let args = merge_args(declared, &args)?;

    let mut dry_run_rules = dry_run;
    dry_run_rules.extend(all().flat_map(|t| t.dry_run.iter().flatten().cloned()));
    let dry_run_patterns: Vec<&str> = dry_run_rules
        .iter()
        .map(|r| r.metric_name.as_str())
        .collect();
    check_rules("dryRun", &dry_run_patterns, &metrics)?;

    let mut retention_rules = measurement_retention;
    retention_rules.extend(all().flat_map(|t| t.measurement_retention.iter().flatten().cloned()));
    let retention_patterns: Vec<&str> = retention_rules
        .iter()
        .map(|r| r.metric_name.as_str())
        .collect();
    check_rules("measurementRetention", &retention_patterns, &metrics)?;

    Ok(AnalysisRunSpec {
        metrics,
        args: non_empty(args),
        terminate: None,
        dry_run: non_empty(dry_run_rules),
        measurement_retention: non_empty(retention_rules),
        ttl_strategy: None,
    })
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// Which metrics a list of rules (`dryRun`, `measurementRetention`) selects: for each rule,
/// the indices of the metrics it matches. Rules must be unique, valid regular expressions, and
/// each must match at least one metric.
pub fn match_rules(
    field: &'static str,
    patterns: &[&str],
    metrics: &[Metric],
) -> Result<Vec<Vec<usize>>, BuildError> {
    let mut seen = BTreeSet::new();
    let mut matches = Vec::with_capacity(patterns.len());
    for (index, pattern) in patterns.iter().enumerate() {
        if !seen.insert(*pattern) {
            return Err(BuildError::DuplicateRule {
                field,
                pattern: pattern.to_string(),
            });
        }
        let regex = Regex::new(pattern).map_err(|e| BuildError::InvalidRule {
            field,
            index,
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        let matched: Vec<usize> = metrics
            .iter()
            .enumerate()
            .filter(|(_, m)| regex.is_match(&m.name))
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            return Err(BuildError::RuleMatchesNothing {
                field,
                index,
                pattern: pattern.to_string(),
                metrics: metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        matches.push(matched);
    }
    Ok(matches)
}

fn check_rules(
    field: &'static str,
    patterns: &[&str],
    metrics: &[Metric],
) -> Result<(), BuildError> {
    match_rules(field, patterns, metrics).map(|_| ())
}

/// Identifies a template: its kind (namespaced or cluster), name and, for AnalysisTemplates,
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateKey {
    pub cluster_scope: bool,
    pub name: String,
    pub namespace: String,
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cluster_scope {
            write!(f, "ClusterAnalysisTemplate {:?}", self.name)
        } else {
            write!(
                f,
                "AnalysisTemplate {:?} in namespace {:?}",
                self.name, self.namespace
            )
        }
    }
}

impl TemplateKey {
    fn of(reference: &AnalysisTemplateRef, namespace: &str) -> Result<TemplateKey, BuildError> {
        let name = reference
            .template_name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(BuildError::MissingTemplateName)?;
        let cluster_scope = reference.cluster_scope.unwrap_or(false);
        Ok(TemplateKey {
            cluster_scope,
            name,
            namespace: if cluster_scope {
                String::new()
            } else {
                namespace.to_string()
            },
        })
    }
}

/// The templates a list of references expands to, each once, in the order Argo merges them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Templates {
    pub templates: Vec<AnalysisTemplateSpec>,
    pub cluster_templates: Vec<AnalysisTemplateSpec>,
    /// Every template used, in visiting order.
    pub keys: Vec<TemplateKey>,
}

impl Templates {
    /// [`run_spec`] over these templates.
    pub fn run_spec(
        &self,
        args: Vec<Argument>,
        dry_run: Vec<DryRun>,
        measurement_retention: Vec<MeasurementRetention>,
    ) -> Result<AnalysisRunSpec, BuildError> {
        run_spec(
            &self.templates,
            &self.cluster_templates,
            args,
            dry_run,
            measurement_retention,
        )
    }
}

/// Where templates come from: the API ([`ApiTemplates`]) or a cache the caller holds.
pub trait TemplateSource {
    /// The template's spec; `Ok(None)` when it does not exist.
    fn template(
        &self,
        key: &TemplateKey,
    ) -> impl Future<Output = Result<Option<AnalysisTemplateSpec>, kube::Error>> + Send;
}

/// Reads templates from the API server.
#[derive(Clone)]
pub struct ApiTemplates {
    pub client: kube::Client,
}

impl TemplateSource for ApiTemplates {
    async fn template(
        &self,
        key: &TemplateKey,
    ) -> Result<Option<AnalysisTemplateSpec>, kube::Error> {
        if key.cluster_scope {
            let api: Api<ClusterAnalysisTemplate> = Api::all(self.client.clone());
            Ok(api.get_opt(&key.name).await?.map(|t| t.spec.0))
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(self.client.clone(), &key.namespace);
            Ok(api.get_opt(&key.name).await?.map(|t| t.spec))
        }
    }
}

/// A fixed set of templates (tests, or a caller's reflector cache copied out).
impl TemplateSource for std::collections::BTreeMap<TemplateKey, AnalysisTemplateSpec> {
    async fn template(
        &self,
        key: &TemplateKey,
    ) -> Result<Option<AnalysisTemplateSpec>, kube::Error> {
        Ok(self.get(key).cloned())
    }
}

/// Fetches the templates `refs` name (AnalysisTemplates in `namespace`, or
/// ClusterAnalysisTemplates with `clusterScope: true`) and, depth first, the templates they
/// include through `templates[]`. A template reached twice is used once; a template that
/// includes itself is an error, as is a missing one (named in the error).
pub async fn fetch_templates(
    client: &kube::Client,
    namespace: &str,
    refs: &[AnalysisTemplateRef],
) -> Result<Templates, BuildError> {
    let source = ApiTemplates {
        client: client.clone(),
    };
    expand_templates(&source, namespace, refs).await
}

/// [`fetch_templates`] over any [`TemplateSource`].
pub async fn expand_templates(
    source: &impl TemplateSource,
    namespace: &str,
    refs: &[AnalysisTemplateRef],
) -> Result<Templates, BuildError> {
    struct Frame {
        key: Option<TemplateKey>,
        refs: Vec<AnalysisTemplateRef>,
        next: usize,
    }
    let mut out = Templates::default();
    let mut seen = BTreeSet::new();
    let mut stack = vec![Frame {
        key: None,
        refs: refs.to_vec(),
        next: 0,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(reference) = frame.refs.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let key = TemplateKey::of(&reference, namespace)?;
        if stack.iter().any(|f| f.key.as_ref() == Some(&key)) {
            let chain = stack
                .iter()
                .filter_map(|f| f.key.as_ref())
                .chain([&key])
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(" → ");
            return Err(BuildError::TemplateCycle { key, chain });
        }
        if !seen.insert(key.clone()) {
            continue;
        }
        let spec = source
            .template(&key)
            .await
            .map_err(|source| BuildError::Api {
                key: key.clone(),
                source,
            })?
            .ok_or_else(|| BuildError::TemplateNotFound(key.clone()))?;
        let nested = spec.templates.clone().unwrap_or_default();
        if key.cluster_scope {
            out.cluster_templates.push(spec);
        } else {
            out.templates.push(spec);
        }
        out.keys.push(key.clone());
        stack.push(Frame {
            key: Some(key),
            refs: nested,
            next: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{MetricProvider, PrometheusMetric};

    fn metric(name: &str) -> Metric {
        Metric {
            name: name.into(),
            success_condition: Some("result[0] < {{args.threshold}}".into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    query: Some("errors{service=\"{{args.service}}\"}".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn arg(name: &str, value: Option<&str>) -> Argument {
        Argument {
            name: name.into(),
            value: value.map(str::to_string),
            value_from: None,
        }
    }

    fn template(metrics: &[&str], args: Vec<Argument>) -> AnalysisTemplateSpec {
        AnalysisTemplateSpec {
            metrics: Some(metrics.iter().map(|m| metric(m)).collect()),
            args: Some(args),
            ..Default::default()
        }
    }

    fn dry(pattern: &str) -> DryRun {
        DryRun {
            metric_name: pattern.into(),
        }
    }

    fn retention(pattern: &str, limit: i32) -> MeasurementRetention {
        MeasurementRetention {
            metric_name: pattern.into(),
            limit,
        }
    }

    #[test]
    fn merges_templates_args_and_rules() {
        let errors = AnalysisTemplateSpec {
            dry_run: Some(vec![dry("latency")]),
            ..template(
                &["error-rate", "latency"],
                vec![arg("service", None), arg("threshold", Some("0.01"))],
            )
        };
        let cluster = AnalysisTemplateSpec {
            measurement_retention: Some(vec![retention("^up$", 20)]),
            ..template(&["up"], vec![arg("service", None)])
        };
        let spec = run_spec(
            &[errors],
            &[cluster],
            vec![arg("service", Some("web")), arg("other", Some("ignored"))],
            vec![dry("^up$")],
            vec![retention("error", 5)],
        )
        .unwrap();
        let names: Vec<_> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["error-rate", "latency", "up"]);
        assert_eq!(
            spec.args,
            Some(vec![
                arg("service", Some("web")),
                arg("threshold", Some("0.01"))
            ])
        );
        assert_eq!(spec.dry_run, Some(vec![dry("^up$"), dry("latency")]));
        assert_eq!(
            spec.measurement_retention,
            Some(vec![retention("error", 5), retention("^up$", 20)])
        );
        // Placeholders stay until the run measures.
        assert_eq!(
            spec.metrics[0].success_condition.as_deref(),
            Some("result[0] < {{args.threshold}}")
        );
        assert_eq!(spec.terminate, None);
    }

    #[test]
    fn errors() {
        let t = |metrics: &[&str]| template(metrics, vec![]);
        let cases: Vec<(BuildError, &str)> = vec![
            (
                run_spec(&[t(&["a"])], &[t(&["a"])], vec![], vec![], vec![]).unwrap_err(),
                "two metrics have the same name \"a\"",
            ),
            (
                run_spec(
                    &[template(&["a"], vec![arg("service-name", None)])],
                    &[],
                    vec![],
                    vec![],
                    vec![],
                )
                .unwrap_err(),
                "argument \"service-name\" has no value",
            ),
            (
                run_spec(
                    &[
                        template(&["a"], vec![arg("x", Some("1"))]),
                        template(&["b"], vec![arg("x", Some("2"))]),
                    ],
                    &[],
                    vec![],
                    vec![],
                    vec![],
                )
                .unwrap_err(),
                "argument \"x\" is declared more than once with different values",
            ),
            (
                run_spec(&[t(&["a"])], &[], vec![], vec![dry("b")], vec![]).unwrap_err(),
                "dryRun[0]: metricName \"b\" matches none of the metrics (a)",
            ),
            (
                run_spec(
                    &[t(&["a"])],
                    &[],
                    vec![],
                    vec![],
                    vec![retention("a", 1), retention("zz", 1)],
                )
                .unwrap_err(),
                "measurementRetention[1]: metricName \"zz\" matches none",
            ),
            (
                run_spec(&[t(&["a"])], &[], vec![], vec![dry("a"), dry("a")], vec![]).unwrap_err(),
                "two dryRun rules have the same metricName \"a\"",
            ),
            (
                run_spec(&[t(&["a"])], &[], vec![], vec![dry("(")], vec![]).unwrap_err(),
                "dryRun[0]: metricName \"(\" is not a valid regular expression",
            ),
        ];
        for (err, want) in cases {
            assert!(err.to_string().contains(want), "{err} !~ {want}");
            assert_eq!(err.category(), "InvalidSpec");
        }
    }

    #[test]
    fn rules_match_anywhere_in_the_name() {
        let metrics = [
            metric("error-rate"),
            metric("latency-p99"),
            metric("errors"),
        ];
        let matched = match_rules("dryRun", &["error", ".*", "^latency"], &metrics).unwrap();
        assert_eq!(matched, vec![vec![0, 2], vec![0, 1, 2], vec![1]]);
    }

    fn key(cluster: bool, name: &str) -> TemplateKey {
        TemplateKey {
            cluster_scope: cluster,
            name: name.into(),
            namespace: if cluster { String::new() } else { "ns".into() },
        }
    }

    fn reference(cluster: bool, name: &str) -> AnalysisTemplateRef {
        AnalysisTemplateRef {
            template_name: Some(name.into()),
            cluster_scope: cluster.then_some(true),
        }
    }

    fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(future)
    }

    #[test]
    fn composition_is_depth_first_and_deduplicated() {
        let with_refs = |metrics: &[&str], refs: Vec<AnalysisTemplateRef>| AnalysisTemplateSpec {
            templates: Some(refs),
            ..template(metrics, vec![])
        };
        // top → (mid → (leaf, shared*), shared*), cluster-wide → shared*
        let source = BTreeMap::from([
            (
                key(false, "top"),
                with_refs(
                    &["top"],
                    vec![reference(false, "mid"), reference(true, "shared")],
                ),
            ),
            (
                key(false, "mid"),
                with_refs(
                    &[],
                    vec![reference(false, "leaf"), reference(true, "shared")],
                ),
            ),
            (key(false, "leaf"), template(&["leaf"], vec![])),
            (key(true, "shared"), template(&["shared"], vec![])),
            (
                key(true, "cluster-wide"),
                with_refs(&["wide"], vec![reference(true, "shared")]),
            ),
        ]);
        let templates = run(expand_templates(
            &source,
            "ns",
            &[reference(false, "top"), reference(true, "cluster-wide")],
        ))
        .unwrap();
        let names: Vec<_> = templates.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["top", "mid", "leaf", "shared", "cluster-wide"]);
        let spec = templates.run_spec(vec![], vec![], vec![]).unwrap();
        let metrics: Vec<_> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(metrics, ["top", "leaf", "shared", "wide"]);
    }

    #[test]
    fn missing_and_cyclic_templates_are_errors() {
        let source = BTreeMap::from([
            (
                key(false, "a"),
                AnalysisTemplateSpec {
                    templates: Some(vec![reference(false, "b")]),
                    ..Default::default()
                },
            ),
            (
                key(false, "b"),
                AnalysisTemplateSpec {
                    templates: Some(vec![reference(false, "a")]),
                    ..Default::default()
                },
            ),
        ]);
        let err = run(expand_templates(&source, "ns", &[reference(false, "a")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AnalysisTemplate \"a\" in namespace \"ns\" includes itself through templates[]: a → b → a"
        );
        let err = run(expand_templates(&source, "ns", &[reference(true, "a")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ClusterAnalysisTemplate \"a\" not found: create it, or fix the templateName that refers to it"
        );
        assert_eq!(err.category(), "TemplateNotFound");
        let err = run(expand_templates(
            &source,
            "ns",
            &[AnalysisTemplateRef::default()],
        ))
        .unwrap_err();
        assert!(matches!(err, BuildError::MissingTemplateName));
    }
}
