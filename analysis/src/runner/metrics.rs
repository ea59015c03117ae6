//! The runner's Prometheus metrics, with Argo Rollouts' names so its dashboards work:
//!
//! | metric                         | labels                                               |
//! |--------------------------------|------------------------------------------------------|
//! | `analysis_run_info`            | namespace, name, phase                               |
//! | `analysis_run_metric_phase`    | namespace, name, metric, type, dry_run, phase (1/0)  |
//! | `analysis_run_metric_type`     | namespace, name, metric, type                        |
//! | `analysis_run_reconcile`       | namespace, name (histogram, seconds)                 |
//! | `analysis_run_reconcile_error` | namespace, name (counter)                            |
//! | `ramp_analysis_run_metric_value` | namespace, name, metric                            |
//! | `ramp_analysis_run_metric_threshold` | namespace, name, metric, condition             |
//!
//! All but the reconcile ones are read from the runner's cache of AnalysisRuns at scrape time.
//! `ramp_analysis_run_metric_value` is the latest numeric measurement of a metric (the first
//! element of a vector); `ramp_analysis_run_metric_threshold` the number its success or failure
//! condition compares against (`condition="success"|"failure"`), only for a simple comparison
//! with a numeric bound (`result[0] < 0.01`; see [`crate::expr::Program::threshold`]).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::{AnalysisPhase, AnalysisRun, Metric, MetricResult};
use crate::args::{ArgValues, substitute};
use crate::build::match_rules;
use crate::plan::scheduling_arg_values;
use crate::providers::provider_type;

const PHASES: [AnalysisPhase; 6] = [
    AnalysisPhase::Pending,
    AnalysisPhase::Running,
    AnalysisPhase::Successful,
    AnalysisPhase::Failed,
    AnalysisPhase::Error,
    AnalysisPhase::Inconclusive,
];

/// Labels naming one run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunPhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricTypeLabels {
    namespace: String,
    name: String,
    metric: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricPhaseLabels {
    namespace: String,
    name: String,
    metric: String,
    r#type: String,
    dry_run: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    namespace: String,
    name: String,
    metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThresholdLabels {
    namespace: String,
    name: String,
    metric: String,
    condition: String,
}

/// The latest measurement of a metric with a finite numeric value: `0.5`, or the first
/// element of a vector `[0.5,0.7]`.
fn latest_value(result: &MetricResult) -> Option<f64> {
    result.measurements.iter().flatten().rev().find_map(|m| {
        let text = m.value.as_deref()?.trim();
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let first = inner.split(',').next()?.trim();
        first.parse::<f64>().ok().filter(|v| v.is_finite())
    })
}

/// The thresholds of a metric's conditions, with `{{args.…}}` resolved from literal values (a
/// condition that reads a Secret arg has none to show).
fn thresholds(metric: &Metric, args: Option<&ArgValues>) -> Vec<(&'static str, f64)> {
    [
        ("success", metric.success_condition.as_deref()),
        ("failure", metric.failure_condition.as_deref()),
    ]
    .into_iter()
    .filter_map(|(which, condition)| {
        let condition = condition?;
        let resolved = match args {
            Some(values) => substitute(condition, values).ok()?,
            None => condition.to_string(),
        };
        let bound = crate::expr::parse(&resolved).ok()?.threshold()?;
        Some((which, bound))
    })
    .collect()
}

/// The analysis runner's metrics. Create one, [`register`](Self::register) it, pass it to
/// [`run`](super::run).
#[derive(Debug)]
pub struct AnalysisMetrics {
    reconcile: Family<RunLabels, Histogram>,
    reconcile_errors: Family<RunLabels, Counter>,
    runs: Arc<RunsCollector>,
}

impl Default for AnalysisMetrics {
    fn default() -> Self {
        AnalysisMetrics {
            reconcile: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.15, 0.25, 0.5, 1.0])
            }),
            reconcile_errors: Family::default(),
            runs: Arc::new(RunsCollector::default()),
        }
    }
}

impl AnalysisMetrics {
    pub fn new() -> Arc<AnalysisMetrics> {
        Arc::new(AnalysisMetrics::default())
    }

    /// Adds every analysis metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "analysis_run_reconcile",
            "Analysis Run reconciliation performance.",
            self.reconcile.clone(),
        );
        registry.register(
            "analysis_run_reconcile_error",
            "Error occurring during the analysis run",
            self.reconcile_errors.clone(),
        );
        registry.register_collector(Box::new(self.runs.clone()));
    }

    /// Times a reconcile until the returned guard drops.
    pub fn reconcile_timer(&self, namespace: &str, name: &str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self
                .reconcile
                .get_or_create(&RunLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
                .clone(),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, namespace: &str, name: &str) {
        self.reconcile_errors
            .get_or_create(&RunLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .inc();
    }

    /// The cache the per-run gauges are read from.
    pub(crate) fn watch_runs(&self, store: Store<AnalysisRun>) {
        if let Ok(mut slot) = self.runs.store.write() {
            *slot = Some(store);
        }
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[derive(Debug, Default)]
struct RunsCollector {
    store: RwLock<Option<Store<AnalysisRun>>>,
}

impl Collector for RunsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let runs = match self.store.read() {
            Ok(slot) => slot.as_ref().map(|s| s.state()).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut info = Vec::new();
        let mut types = Vec::new();
        let mut phases = Vec::new();
        let mut values = Vec::new();
        let mut bounds = Vec::new();
        for run in &runs {
            let namespace = run.metadata.namespace.clone().unwrap_or_default();
            let name = run.metadata.name.clone().unwrap_or_default();
            let status = run.status.clone().unwrap_or_default();
            info.push(RunPhaseLabels {
                namespace: namespace.clone(),
                name: name.clone(),
                phase: status.phase.unwrap_or_default().to_string(),
            });
            let patterns: Vec<&str> = run
                .spec
                .dry_run
                .iter()
                .flatten()
                .map(|r| r.metric_name.as_str())
                .collect();
            let dry_run = match_rules("dryRun", &patterns, &run.spec.metrics).unwrap_or_default();
            let args = scheduling_arg_values(&run.spec).ok();
            for (i, metric) in run.spec.metrics.iter().enumerate() {
                let kind = provider_type(&metric.provider);
                types.push(MetricTypeLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    metric: metric.name.clone(),
                    r#type: kind.clone(),
                });
                let result = status
                    .metric_results
                    .iter()
                    .flatten()
                    .find(|r| r.name == metric.name);
                let current = result.map_or(AnalysisPhase::Pending, |r| r.phase);
                let labels = MetricLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    metric: metric.name.clone(),
                };
                if let Some(value) = result.and_then(latest_value) {
                    values.push((labels.clone(), value));
                }
                for (condition, bound) in thresholds(metric, args.as_ref()) {
                    bounds.push((
                        ThresholdLabels {
                            namespace: labels.namespace.clone(),
                            name: labels.name.clone(),
                            metric: labels.metric.clone(),
                            condition: condition.to_string(),
                        },
                        bound,
                    ));
                }
                let is_dry = dry_run.iter().any(|m| m.contains(&i));
                for phase in PHASES {
                    phases.push((
                        MetricPhaseLabels {
                            namespace: namespace.clone(),
                            name: name.clone(),
                            metric: metric.name.clone(),
                            r#type: kind.clone(),
                            dry_run: is_dry.to_string(),
                            phase: phase.to_string(),
                        },
                        i64::from(phase == current),
                    ));
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "analysis_run_info",
                "Information about analysis run.",
                None,
                MetricType::Gauge,
            )?;
            for labels in &info {
                ConstGauge::new(1i64).encode(family.encode_family(labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "analysis_run_metric_type",
                "Information on the type of a specific metric in the Analysis Runs",
                None,
                MetricType::Gauge,
            )?;
            for labels in &types {
                ConstGauge::new(1i64).encode(family.encode_family(labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "analysis_run_metric_phase",
                "Information on the duration of a specific metric in the Analysis Run",
                None,
                MetricType::Gauge,
            )?;
            for (labels, value) in &phases {
                ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "ramp_analysis_run_metric_value",
                "The latest numeric measurement of a metric of an Analysis Run.",
                None,
                MetricType::Gauge,
            )?;
            for (labels, value) in &values {
                ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "ramp_analysis_run_metric_threshold",
            "The number a metric's success or failure condition compares its result against.",
            None,
            MetricType::Gauge,
        )?;
        for (labels, bound) in &bounds {
            ConstGauge::new(*bound).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn names_match_argo() {
        let metrics = AnalysisMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        drop(metrics.reconcile_timer("ns", "run"));
        metrics.reconcile_failed("ns", "run");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("analysis_run_reconcile_bucket{"), "{text}");
        assert!(
            text.contains("analysis_run_reconcile_error_total{namespace=\"ns\",name=\"run\"} 1"),
            "{text}"
        );
        // Without a cache yet, the per-run families are present and empty.
        assert!(text.contains("# TYPE analysis_run_info gauge"), "{text}");
        assert!(
            text.contains("# TYPE analysis_run_metric_phase gauge"),
            "{text}"
        );
    }

    #[test]
    fn measured_values_and_thresholds_per_metric() {
        let run: AnalysisRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "canary", "namespace": "shop"},
            "spec": {
                "args": [{"name": "max", "value": "0.05"}],
                "metrics": [
                    {"name": "error-rate", "successCondition": "len(result) > 0 && result[0] < {{args.max}}",
                     "failureCondition": "result[0] >= 0.2",
                     "provider": {"prometheus": {"query": "q"}}},
                    {"name": "smoke", "provider": {"job": {"spec": {"template": {"spec": {"containers": []}}}}}},
                    {"name": "latency", "successCondition": "all(result, {# < 300})",
                     "provider": {"prometheus": {"query": "q"}}}
                ]
            },
            "status": {"phase": "Running", "metricResults": [
                {"name": "error-rate", "phase": "Running", "measurements": [
                    {"phase": "Successful", "value": "[0.01]"},
                    {"phase": "Successful", "value": "[0.03,0.5]"},
                    {"phase": "Error", "message": "connection refused"}
                ]},
                {"name": "latency", "phase": "Running", "measurements": [
                    {"phase": "Successful", "value": "[NaN]"}
                ]}
            ]}
        }))
        .unwrap();
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(run));
        let metrics = AnalysisMetrics::new();
        metrics.watch_runs(store);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let series = |prefix: &str| -> Vec<&str> {
            text.lines().filter(|l| l.starts_with(prefix)).collect()
        };
        assert_eq!(
            series("ramp_analysis_run_metric_value{"),
            [
                "ramp_analysis_run_metric_value{namespace=\"shop\",name=\"canary\",metric=\"error-rate\"} 0.03"
            ],
            "the latest numeric value, past the error; NaN has none\n{text}"
        );
        assert_eq!(
            series("ramp_analysis_run_metric_threshold{"),
            [
                "ramp_analysis_run_metric_threshold{namespace=\"shop\",name=\"canary\",metric=\"error-rate\",condition=\"success\"} 0.05",
                "ramp_analysis_run_metric_threshold{namespace=\"shop\",name=\"canary\",metric=\"error-rate\",condition=\"failure\"} 0.2",
            ],
            "{text}"
        );
    }
}
