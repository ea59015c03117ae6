//! Static checks of a list of metrics, Argo's `ValidateMetrics` rules plus a parse of every
//! condition: what makes a template or run unusable before anything is measured.
//!
//! Used by `kubectl ramp lint` (on templates, whose fields may still hold `{{args.…}}`
//! placeholders) and by the runner (on a run's metrics once args are resolved, where any
//! finding ends the run in Error).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{Metric, MetricProvider};
use crate::duration::parse_go_duration;
use crate::expr;
use crate::settings::{has_placeholder, int_or_string};

/// Checks metrics; returns every problem as (path, message), e.g.
/// `("metrics[0].interval", "interval must be set when count > 1")`. Empty = valid.
///
/// Fields holding `{{args.…}}` placeholders are accepted as they are (they are checked again
/// once the run resolves them); in conditions, placeholders are read as `0` for the parse.
pub fn validate_metrics(metrics: &[Metric]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if metrics.is_empty() {
        problems.push((
            "metrics".to_string(),
            "no metrics specified: add at least one metric".to_string(),
        ));
        return problems;
    }
    let mut names = BTreeSet::new();
    for (i, metric) in metrics.iter().enumerate() {
        let mut report = |field: &str, message: String| {
            problems.push((format!("metrics[{i}].{field}"), message));
        };
        if metric.name.is_empty() {
            report("name", "a metric needs a name".to_string());
        } else if !names.insert(metric.name.as_str()) {
            report(
                "name",
                format!(
                    "duplicate metric name {:?}: metric names must be unique",
                    metric.name
                ),
            );
        }
        validate_metric(metric, &mut report);
    }
    problems
}

fn validate_metric(metric: &Metric, report: &mut impl FnMut(&str, String)) {
    // Integers: `None` when absent or not yet resolvable (a placeholder).
    let mut int = |field: &str, value: &Option<IntOrString>| -> Option<i64> {
        match value.as_ref()? {
            IntOrString::String(s) if has_placeholder(s) => None,
            v => match int_or_string(v) {
                Ok(n) => Some(n),
                Err(message) => {
                    report(field, format!("{field} must be an integer: {message}"));
                    None
                }
            },
        }
    };
    let count = int("count", &metric.count);
    let failure_limit = int("failureLimit", &metric.failure_limit);
    let inconclusive_limit = int("inconclusiveLimit", &metric.inconclusive_limit);
    let consecutive_error_limit = int("consecutiveErrorLimit", &metric.consecutive_error_limit);
    let consecutive_success_limit =
        int("consecutiveSuccessLimit", &metric.consecutive_success_limit);

    if let Some(count) = count.filter(|c| *c > 0) {
        for (field, limit) in [
            ("failureLimit", failure_limit),
            ("inconclusiveLimit", inconclusive_limit),
            ("consecutiveSuccessLimit", consecutive_success_limit),
        ] {
            if let Some(limit) = limit.filter(|l| *l > count) {
                report(
                    "count",
                    format!("count ({count}) must be >= {field} ({limit})"),
                );
            }
        }
    }
    if count.is_some_and(|c| c > 1) && metric.interval.as_deref().unwrap_or("").is_empty() {
        report(
            "interval",
            "interval must be set when count > 1 (e.g. interval: 30s)".to_string(),
        );
    }
    for (field, value) in [
        ("interval", &metric.interval),
        ("initialDelay", &metric.initial_delay),
    ] {
        if let Some(text) = value
            .as_deref()
            .filter(|s| !s.is_empty() && !has_placeholder(s))
            && let Err(e) = parse_go_duration(text)
        {
            report(
                field,
                format!("{e} (Go duration syntax, e.g. 30s, 5m, 1h30m)"),
            );
        }
    }
    if let Some(limit) = failure_limit.filter(|l| *l < -1) {
        report(
            "failureLimit",
            format!("failureLimit must be >= 0, or -1 to disable it (got {limit})"),
        );
    }
    for (field, value) in [
        ("inconclusiveLimit", inconclusive_limit),
        ("consecutiveErrorLimit", consecutive_error_limit),
        ("consecutiveSuccessLimit", consecutive_success_limit),
    ] {
        if let Some(v) = value.filter(|v| *v < 0) {
            report(field, format!("{field} must be >= 0 (got {v})"));
        }
    }
    let success_limit_pending =
        metric.consecutive_success_limit.is_some() && consecutive_success_limit.is_none();
    if failure_limit == Some(-1)
        && !success_limit_pending
        && consecutive_success_limit.unwrap_or(0) < 1
    {
        report(
            "consecutiveSuccessLimit",
            "failureLimit is disabled (-1), so consecutiveSuccessLimit must be >= 1: \
             otherwise nothing can end the metric"
                .to_string(),
        );
    }

    let providers = provider_names(&metric.provider);
    match providers.len() {
        0 => report(
            "provider",
            "no provider specified: set one of prometheus, web, job, …".to_string(),
        ),
        1 => {}
        _ => report(
            "provider",
            format!(
                "multiple providers specified ({}): a metric has exactly one",
                providers.join(", ")
            ),
        ),
    }
    // A prometheus metric without a query is schema-valid (Argo's own
    // `expectedfailures/analysis-run-prometheus-bad-server.yaml` has none): it errors when
    // measured, not when linted.
    if let Some(web) = &metric.provider.web {
        if web.url.trim().is_empty() {
            report("provider.web.url", "a web metric needs a url".to_string());
        }
        if web.body.is_some() && web.json_body.is_some() {
            report(
                "provider.web.jsonBody",
                "body and jsonBody are exclusive: set only one".to_string(),
            );
        }
    }

    for (field, condition) in [
        ("successCondition", &metric.success_condition),
        ("failureCondition", &metric.failure_condition),
    ] {
        let Some(source) = condition.as_deref().filter(|s| !s.trim().is_empty()) else {
            continue;
        };
        let (text, substituted) = if has_placeholder(source) {
            (placeholders_as_zero(source), true)
        } else {
            (source.to_string(), false)
        };
        if let Err(e) = expr::parse(&text) {
            let note = if substituted {
                " (with {{…}} placeholders read as 0)"
            } else {
                ""
            };
            report(field, format!("{field} does not parse: {e}{note}"));
        }
    }
}

/// The names of the providers a metric sets (each plugin counts once).
pub fn provider_names(provider: &MetricProvider) -> Vec<String> {
    let mut names: Vec<String> = [
        ("prometheus", provider.prometheus.is_some()),
        ("web", provider.web.is_some()),
        ("job", provider.job.is_some()),
        ("kayenta", provider.kayenta.is_some()),
        ("datadog", provider.datadog.is_some()),
        ("newRelic", provider.new_relic.is_some()),
        ("wavefront", provider.wavefront.is_some()),
        ("graphite", provider.graphite.is_some()),
        ("influxdb", provider.influxdb.is_some()),
        ("skywalking", provider.skywalking.is_some()),
        ("cloudWatch", provider.cloud_watch.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name.to_string())
    .collect();
    if let Some(plugins) = &provider.plugin {
        names.extend(plugins.keys().map(|k| format!("plugin {k}")));
    }
    names
}

fn placeholders_as_zero(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('0');
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{JobMetric, PrometheusMetric, WebMetric};

    fn prometheus(name: &str) -> Metric {
        Metric {
            name: name.to_string(),
            success_condition: Some("result[0] < 0.01".into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    query: Some("up".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn int(n: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }

    fn paths(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn a_valid_metric_has_no_problems() {
        assert!(validate_metrics(&[prometheus("a"), prometheus("b")]).is_empty());
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            metric: Metric,
            path: &'static str,
            message: &'static str,
        }
        let cases = [
            Case {
                name: "count below failureLimit",
                metric: Metric {
                    interval: Some("1s".into()),
                    count: int(2),
                    failure_limit: int(3),
                    ..prometheus("m")
                },
                path: "metrics[0].count",
                message: "count (2) must be >= failureLimit (3)",
            },
            Case {
                name: "count below inconclusiveLimit",
                metric: Metric {
                    interval: Some("1s".into()),
                    count: int(2),
                    inconclusive_limit: int(5),
                    ..prometheus("m")
                },
                path: "metrics[0].count",
                message: "count (2) must be >= inconclusiveLimit (5)",
            },
            Case {
                name: "count below consecutiveSuccessLimit",
                metric: Metric {
                    interval: Some("1s".into()),
                    count: int(2),
                    consecutive_success_limit: int(3),
                    ..prometheus("m")
                },
                path: "metrics[0].count",
                message: "count (2) must be >= consecutiveSuccessLimit (3)",
            },
            Case {
                name: "count > 1 without interval",
                metric: Metric {
                    count: int(3),
                    ..prometheus("m")
                },
                path: "metrics[0].interval",
                message: "interval must be set when count > 1",
            },
            Case {
                name: "bad interval",
                metric: Metric {
                    interval: Some("5".into()),
                    ..prometheus("m")
                },
                path: "metrics[0].interval",
                message: "invalid duration \"5\": missing unit",
            },
            Case {
                name: "bad initialDelay",
                metric: Metric {
                    initial_delay: Some("1d".into()),
                    ..prometheus("m")
                },
                path: "metrics[0].initialDelay",
                message: "unknown unit \"d\"",
            },
            Case {
                name: "failureLimit below -1",
                metric: Metric {
                    failure_limit: int(-2),
                    ..prometheus("m")
                },
                path: "metrics[0].failureLimit",
                message: "failureLimit must be >= 0, or -1 to disable it (got -2)",
            },
            Case {
                name: "negative inconclusiveLimit",
                metric: Metric {
                    inconclusive_limit: int(-1),
                    ..prometheus("m")
                },
                path: "metrics[0].inconclusiveLimit",
                message: "inconclusiveLimit must be >= 0 (got -1)",
            },
            Case {
                name: "negative consecutiveErrorLimit",
                metric: Metric {
                    consecutive_error_limit: int(-1),
                    ..prometheus("m")
                },
                path: "metrics[0].consecutiveErrorLimit",
                message: "consecutiveErrorLimit must be >= 0 (got -1)",
            },
            Case {
                name: "negative consecutiveSuccessLimit",
                metric: Metric {
                    consecutive_success_limit: int(-3),
                    ..prometheus("m")
                },
                path: "metrics[0].consecutiveSuccessLimit",
                message: "consecutiveSuccessLimit must be >= 0 (got -3)",
            },
            Case {
                name: "failureLimit disabled without consecutiveSuccessLimit",
                metric: Metric {
                    failure_limit: int(-1),
                    ..prometheus("m")
                },
                path: "metrics[0].consecutiveSuccessLimit",
                message: "consecutiveSuccessLimit must be >= 1",
            },
            Case {
                name: "a limit that is not a number",
                metric: Metric {
                    failure_limit: Some(IntOrString::String("many".into())),
                    ..prometheus("m")
                },
                path: "metrics[0].failureLimit",
                message: "failureLimit must be an integer: \"many\" is not an integer",
            },
            Case {
                name: "no provider",
                metric: Metric {
                    name: "m".into(),
                    ..Default::default()
                },
                path: "metrics[0].provider",
                message: "no provider specified",
            },
            Case {
                name: "two providers",
                metric: Metric {
                    provider: MetricProvider {
                        prometheus: Some(PrometheusMetric {
                            query: Some("up".into()),
                            ..Default::default()
                        }),
                        job: Some(JobMetric::default()),
                        ..Default::default()
                    },
                    ..prometheus("m")
                },
                path: "metrics[0].provider",
                message: "multiple providers specified (prometheus, job)",
            },
            Case {
                name: "a provider and a plugin",
                metric: Metric {
                    provider: MetricProvider {
                        web: Some(WebMetric {
                            url: "http://x".into(),
                            ..Default::default()
                        }),
                        plugin: Some(BTreeMap::from([(
                            "argoproj-labs/sample".to_string(),
                            serde_json::json!({}),
                        )])),
                        ..Default::default()
                    },
                    ..prometheus("m")
                },
                path: "metrics[0].provider",
                message: "multiple providers specified (web, plugin argoproj-labs/sample)",
            },
            Case {
                name: "web with body and jsonBody",
                metric: Metric {
                    provider: MetricProvider {
                        web: Some(WebMetric {
                            url: "http://x".into(),
                            body: Some("{}".into()),
                            json_body: Some(serde_json::json!({})),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..prometheus("m")
                },
                path: "metrics[0].provider.web.jsonBody",
                message: "body and jsonBody are exclusive",
            },
            Case {
                name: "a condition that does not parse",
                metric: Metric {
                    success_condition: Some("result[0] < )".into()),
                    ..prometheus("m")
                },
                path: "metrics[0].successCondition",
                message: "successCondition does not parse: unexpected token ')' at column 13",
            },
            Case {
                name: "a condition with a placeholder that still does not parse",
                metric: Metric {
                    failure_condition: Some("result > {{args.limit}} &&".into()),
                    ..prometheus("m")
                },
                path: "metrics[0].failureCondition",
                message: "(with {{…}} placeholders read as 0)",
            },
        ];
        for case in cases {
            let problems = validate_metrics(&[case.metric]);
            assert_eq!(paths(&problems), [case.path], "{}: {problems:?}", case.name);
            assert!(
                problems[0].1.contains(case.message),
                "{}: {:?} does not contain {:?}",
                case.name,
                problems[0].1,
                case.message
            );
        }
    }

    #[test]
    fn no_metrics() {
        assert_eq!(
            paths(&validate_metrics(&[])),
            ["metrics"],
            "an empty list is reported on `metrics`"
        );
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let problems = validate_metrics(&[prometheus("a"), prometheus("b"), prometheus("a")]);
        assert_eq!(paths(&problems), ["metrics[2].name"]);
        assert!(problems[0].1.contains("duplicate metric name \"a\""));
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = Metric {
            count: int(3),
            initial_delay: Some("soon".into()),
            inconclusive_limit: int(-1),
            success_condition: Some("(".into()),
            ..Metric {
                name: "bad".into(),
                ..Default::default()
            }
        };
        let problems = validate_metrics(&[prometheus("ok"), bad]);
        assert_eq!(
            paths(&problems),
            [
                "metrics[1].interval",
                "metrics[1].initialDelay",
                "metrics[1].inconclusiveLimit",
                "metrics[1].provider",
                "metrics[1].successCondition",
            ]
        );
    }

    #[test]
    fn placeholders_are_left_for_the_run() {
        let metric = Metric {
            interval: Some("{{args.interval}}".into()),
            count: Some(IntOrString::String("{{args.count}}".into())),
            failure_limit: Some(IntOrString::String("{{ args.limit }}".into())),
            success_condition: Some("result[0] < {{args.threshold}}".into()),
            failure_condition: Some("result[0] == '{{args.bad}}'".into()),
            ..prometheus("m")
        };
        assert_eq!(validate_metrics(&[metric]), Vec::<(String, String)>::new());
    }

    #[test]
    fn limits_in_strings_are_checked_once_resolved() {
        let metric = Metric {
            interval: Some("10s".into()),
            count: Some(IntOrString::String("2".into())),
            failure_limit: Some(IntOrString::String("4".into())),
            ..prometheus("m")
        };
        let problems = validate_metrics(&[metric]);
        assert_eq!(paths(&problems), ["metrics[0].count"]);
    }

    #[test]
    fn consecutive_success_limit_makes_a_disabled_failure_limit_valid() {
        let metric = Metric {
            interval: Some("10s".into()),
            failure_limit: int(-1),
            consecutive_success_limit: int(3),
            ..prometheus("m")
        };
        assert!(validate_metrics(&[metric]).is_empty());
    }

    #[test]
    fn placeholder_substitution() {
        assert_eq!(placeholders_as_zero("a {{x}} b {{ y }}"), "a 0 b 0");
        assert_eq!(placeholders_as_zero("{{open"), "{{open");
    }
}
