//! Reading an AnalysisRun's spec into what scheduling and verdicts work on: each metric with
//! its `{{args.…}}` resolved (Secret values stand in as a marker; the real ones are read only
//! when measuring), validated, with its typed settings, dry-run flag and retention limit.
//!
//! Any problem here ends the run in Error with Argo's wording: `Unable to resolve metric
//! arguments: …` or `Analysis spec invalid: …`.

use std::fmt;

use crate::api::{AnalysisRunSpec, Metric};
use crate::args::{ArgError, ArgValues, resolve_metric};
use crate::build::match_rules;
use crate::settings::{MetricSettings, metric_settings};
use crate::validate::validate_metrics;

/// How many measurements of a metric a run keeps when no `measurementRetention` rule says.
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;

/// Stands in for a Secret's value until a measurement reads the Secret.
const SECRET_STAND_IN: &str = "secret-value-read-when-measuring";

/// A metric ready to be scheduled and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMetric {
    /// Index in `spec.metrics`.
    pub index: usize,
    /// The metric with args resolved (Secret args by a stand-in).
    pub metric: Metric,
    pub settings: MetricSettings,
    pub dry_run: bool,
    /// How many measurements to keep.
    pub retention: usize,
}

impl PreparedMetric {
    pub fn name(&self) -> &str {
        &self.metric.name
    }
}

/// Why a run's spec cannot be measured; the message goes into the run's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecProblem {
    Args(String),
    Invalid(String),
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecProblem::Args(why) => write!(f, "Unable to resolve metric arguments: {why}"),
            SpecProblem::Invalid(why) => write!(f, "Analysis spec invalid: {why}"),
        }
    }
}

/// The values args have for scheduling and validation: literal values, and a stand-in for each
/// Secret. An arg with neither (or only a `fieldRef`, which the Rollout resolves when it creates
/// the run) is an error.
pub fn scheduling_arg_values(spec: &AnalysisRunSpec) -> Result<ArgValues, ArgError> {
    let mut values = ArgValues::new();
    for arg in spec.args.iter().flatten() {
        let value = match (&arg.value, &arg.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) if from.secret_key_ref.is_some() => SECRET_STAND_IN.to_string(),
            (None, Some(_)) => {
                return Err(ArgError::FieldPath {
                    path: format!("args.{}", arg.name),
                    reason: "a fieldRef is resolved by the Rollout that creates the run; \
                             a run created directly needs a value or a secretKeyRef"
                        .to_string(),
                });
            }
            (None, None) => {
                return Err(ArgError::Unresolved {
                    name: arg.name.clone(),
                });
            }
        };
        values.insert(arg.name.clone(), value);
    }
    Ok(values)
}

/// Prepares every metric of a run.
pub fn prepare(spec: &AnalysisRunSpec) -> Result<Vec<PreparedMetric>, SpecProblem> {
    let values = scheduling_arg_values(spec).map_err(|e| SpecProblem::Args(e.to_string()))?;
    let metrics: Vec<Metric> = spec
        .metrics
        .iter()
        .map(|m| resolve_metric(m, &values))
        .collect::<Result<_, _>>()
        .map_err(|e| SpecProblem::Args(e.to_string()))?;

    let problems = validate_metrics(&metrics);
    if !problems.is_empty() {
        let text = problems
            .iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(SpecProblem::Invalid(text));
    }

    let dry_run_rules: Vec<&str> = spec
        .dry_run
        .iter()
        .flatten()
        .map(|r| r.metric_name.as_str())
        .collect();
    let dry_run_matches = match_rules("dryRun", &dry_run_rules, &metrics)
        .map_err(|e| SpecProblem::Invalid(e.to_string()))?;
    let retention_rules = spec.measurement_retention.clone().unwrap_or_default();
    let retention_patterns: Vec<&str> = retention_rules
        .iter()
        .map(|r| r.metric_name.as_str())
        .collect();
    let retention_matches = match_rules("measurementRetention", &retention_patterns, &metrics)
        .map_err(|e| SpecProblem::Invalid(e.to_string()))?;

    let mut prepared = Vec::with_capacity(metrics.len());
    for (index, metric) in metrics.into_iter().enumerate() {
        let settings = metric_settings(&metric).map_err(|errors| {
            SpecProblem::Invalid(
                errors
                    .iter()
                    .map(|e| format!("metrics[{index}].{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let dry_run = dry_run_matches.iter().any(|m| m.contains(&index));
        // A later rule wins over an earlier one for the same metric; 0 or less keeps the default.
        let retention = retention_rules
            .iter()
            .zip(&retention_matches)
            .filter(|(_, m)| m.contains(&index))
            .filter_map(|(rule, _)| usize::try_from(rule.limit).ok().filter(|l| *l > 0))
            .next_back()
            .unwrap_or(DEFAULT_MEASUREMENT_RETENTION);
        prepared.push(PreparedMetric {
            index,
            metric,
            settings,
            dry_run,
            retention,
        });
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::api::{
        Argument, DryRun, FieldRef, MeasurementRetention, MetricProvider, PrometheusMetric,
        SecretKeyRef, ValueFrom,
    };

    fn metric(name: &str) -> Metric {
        Metric {
            name: name.into(),
            interval: Some("{{args.interval}}".into()),
            count: Some(IntOrString::String("{{args.count}}".into())),
            success_condition: Some("result[0] < {{args.threshold}}".into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    query: Some("q".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn arg(name: &str, value: &str) -> Argument {
        Argument {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn spec() -> AnalysisRunSpec {
        AnalysisRunSpec {
            metrics: vec![metric("error-rate"), metric("latency")],
            args: Some(vec![
                arg("interval", "5s"),
                arg("count", "3"),
                arg("threshold", "0.01"),
                Argument {
                    name: "token".into(),
                    value: None,
                    value_from: Some(ValueFrom {
                        secret_key_ref: Some(SecretKeyRef {
                            name: "s".into(),
                            key: "k".into(),
                        }),
                        field_ref: None,
                    }),
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_validates_and_types_each_metric() {
        let spec = AnalysisRunSpec {
            dry_run: Some(vec![DryRun {
                metric_name: "^lat".into(),
            }]),
            measurement_retention: Some(vec![
                MeasurementRetention {
                    metric_name: ".*".into(),
                    limit: 20,
                },
                MeasurementRetention {
                    metric_name: "error".into(),
                    limit: 3,
                },
            ]),
            ..spec()
        };
        let prepared = prepare(&spec).unwrap();
        assert_eq!(prepared.len(), 2);
        assert_eq!(prepared[0].name(), "error-rate");
        assert_eq!(prepared[0].settings.effective_count, Some(3));
        assert_eq!(
            prepared[0].settings.interval,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            prepared[0].metric.success_condition.as_deref(),
            Some("result[0] < 0.01")
        );
        assert_eq!((prepared[0].dry_run, prepared[0].retention), (false, 3));
        assert_eq!((prepared[1].dry_run, prepared[1].retention), (true, 20));
    }

    #[test]
    fn problems_use_argos_wording() {
        let mut missing = spec();
        missing.metrics[0].failure_condition = Some("result > {{args.nope}}".into());
        assert_eq!(
            prepare(&missing).unwrap_err().to_string(),
            "Unable to resolve metric arguments: \"result > {{args.nope}}\" uses {{args.nope}}, but no argument of that name is defined"
        );

        let mut invalid = spec();
        invalid.args.as_mut().unwrap()[1] = arg("count", "2");
        invalid.metrics[1].failure_limit = Some(IntOrString::Int(5));
        assert_eq!(
            prepare(&invalid).unwrap_err().to_string(),
            "Analysis spec invalid: metrics[1].count: count (2) must be >= failureLimit (5)"
        );

        let mut unmatched = spec();
        unmatched.dry_run = Some(vec![DryRun {
            metric_name: "nothing".into(),
        }]);
        assert!(
            prepare(&unmatched).unwrap_err().to_string().starts_with(
                "Analysis spec invalid: dryRun[0]: metricName \"nothing\" matches none"
            )
        );

        let mut field_ref = spec();
        field_ref.args.as_mut().unwrap().push(Argument {
            name: "app".into(),
            value: None,
            value_from: Some(ValueFrom {
                secret_key_ref: None,
                field_ref: Some(FieldRef {
                    field_path: "metadata.labels['app']".into(),
                }),
            }),
        });
        assert!(
            prepare(&field_ref)
                .unwrap_err()
                .to_string()
                .contains("a run created directly needs a value or a secretKeyRef")
        );

        let mut no_value = spec();
        no_value.args.as_mut().unwrap().push(Argument {
            name: "service".into(),
            ..Default::default()
        });
        assert!(
            prepare(&no_value)
                .unwrap_err()
                .to_string()
                .contains("argument \"service\" has no value")
        );
    }
}
