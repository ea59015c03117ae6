//! `kubectl ramp get analysisrun NAME`: the run's verdict and, per metric, its tally, its
//! conditions and its latest measurements, so a failed canary can be explained without
//! reading the YAML.
//!
//! ```text
//! Name:            web-6c54bd9b5c-2-1
//! Namespace:       shop
//! Status:          ✖ Failed
//! Message:         Metric "errors" assessed Failed due to failed (2) > failureLimit (1)
//! Started:         3m
//! Completed:       1m
//!
//! METRIC  PROVIDER    STATUS    MEASURED  ✔  ✖  ?  ⚠  CONDITIONS
//! errors  Prometheus  ✖ Failed  3         1  2  0  0  success: result[0] < 0.05; failureLimit: 1
//!   ✔ [0.01]  2m
//!   ✖ [0.09]  1m
//!   ✖ [0.12]  30s
//! ```

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun, Metric};
use ramp_analysis::providers::provider_type;
use serde::Serialize;

use super::age::age;
use super::phase::analysis_tone;
use super::style::{Style, pad, width};

/// How many of each metric's latest measurements are shown.
pub const MEASUREMENTS_SHOWN: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnalysisRunDetails {
    pub name: String,
    pub namespace: String,
    pub phase: AnalysisPhase,
    pub message: String,
    #[serde(skip)]
    pub started: Option<Timestamp>,
    #[serde(skip)]
    pub completed: Option<Timestamp>,
    pub metrics: Vec<MetricDetails>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricDetails {
    pub name: String,
    pub provider: String,
    pub phase: AnalysisPhase,
    pub message: String,
    pub dry_run: bool,
    pub measured: i32,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    /// `success: …`, `failure: …`, `failureLimit: …` — what the measurements are judged by.
    pub conditions: Vec<String>,
    /// The latest measurements, oldest first.
    pub latest: Vec<MeasurementLine>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeasurementLine {
    pub phase: AnalysisPhase,
    pub value: String,
    #[serde(skip)]
    pub finished: Option<Timestamp>,
}

/// The details of `run`.
pub fn details(run: &AnalysisRun) -> AnalysisRunDetails {
    let status = run.status.clone().unwrap_or_default();
    let results = status.metric_results.clone().unwrap_or_default();
    let metrics = run
        .spec
        .metrics
        .iter()
        .map(|metric| {
            let result = results.iter().find(|r| r.name == metric.name);
            let measurements = result
                .and_then(|r| r.measurements.clone())
                .unwrap_or_default();
            let skip = measurements.len().saturating_sub(MEASUREMENTS_SHOWN);
            MetricDetails {
                name: metric.name.clone(),
                provider: provider_type(&metric.provider),
                phase: result.map_or(AnalysisPhase::Pending, |r| r.phase),
                message: result.and_then(|r| r.message.clone()).unwrap_or_default(),
                dry_run: result.and_then(|r| r.dry_run).unwrap_or(false),
                measured: result.and_then(|r| r.count).unwrap_or(0),
                successful: result.and_then(|r| r.successful).unwrap_or(0),
                failed: result.and_then(|r| r.failed).unwrap_or(0),
                inconclusive: result.and_then(|r| r.inconclusive).unwrap_or(0),
                error: result.and_then(|r| r.error).unwrap_or(0),
                conditions: conditions(metric),
                latest: measurements
                    .iter()
                    .skip(skip)
                    .map(|m| MeasurementLine {
                        phase: m.phase,
                        value: m
                            .value
                            .clone()
                            .or_else(|| m.message.clone())
                            .unwrap_or_default(),
                        finished: m
                            .finished_at
                            .as_ref()
                            .or(m.started_at.as_ref())
                            .map(|t| t.0),
                    })
                    .collect(),
            }
        })
        .collect();
    AnalysisRunDetails {
        name: run.metadata.name.clone().unwrap_or_default(),
        namespace: run.metadata.namespace.clone().unwrap_or_default(),
        phase: status.phase.unwrap_or_default(),
        message: status.message.unwrap_or_default(),
        started: status.started_at.map(|t| t.0),
        completed: status.completed_at.map(|t| t.0),
        metrics,
    }
}

fn conditions(metric: &Metric) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(success) = &metric.success_condition {
        out.push(format!("success: {success}"));
    }
    if let Some(failure) = &metric.failure_condition {
        out.push(format!("failure: {failure}"));
    }
    let limit = |name: &str, value: &Option<IntOrString>| {
        value.as_ref().map(|v| match v {
            IntOrString::Int(i) => format!("{name}: {i}"),
            IntOrString::String(s) => format!("{name}: {s}"),
        })
    };
    out.extend(limit("failureLimit", &metric.failure_limit));
    out.extend(limit("inconclusiveLimit", &metric.inconclusive_limit));
    out.extend(limit(
        "consecutiveErrorLimit",
        &metric.consecutive_error_limit,
    ));
    out
}

/// The text of `get analysisrun`.
pub fn render(details: &AnalysisRunDetails, now: Timestamp, style: Style) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        out.push_str(format!("{}{value}", pad(label, 17)).trim_end());
        out.push('\n');
    };
    let tone = analysis_tone(details.phase);
    line("Name:", &details.name);
    line("Namespace:", &details.namespace);
    line(
        "Status:",
        &format!("{} {}", style.paint(tone, tone.symbol()), details.phase),
    );
    if !details.message.is_empty() {
        line("Message:", &details.message);
    }
    if details.started.is_some() {
        line("Started:", &format!("{} ago", age(details.started, now)));
    }
    if details.completed.is_some() {
        line(
            "Completed:",
            &format!("{} ago", age(details.completed, now)),
        );
    }
    out.push('\n');

    let headers = [
        "METRIC",
        "PROVIDER",
        "STATUS",
        "MEASURED",
        "✔",
        "✖",
        "?",
        "⚠",
        "CONDITIONS",
    ];
    let rows: Vec<[String; 9]> = details
        .metrics
        .iter()
        .map(|m| {
            let name = if m.dry_run {
                format!("{} (dry run)", m.name)
            } else {
                m.name.clone()
            };
            [
                name,
                m.provider.clone(),
                format!("{} {}", analysis_tone(m.phase).symbol(), m.phase),
                m.measured.to_string(),
                m.successful.to_string(),
                m.failed.to_string(),
                m.inconclusive.to_string(),
                m.error.to_string(),
                m.conditions.join("; "),
            ]
        })
        .collect();
    let mut widths = headers.map(width);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let join = |cells: Vec<String>| format!("{}\n", cells.join("  ").trim_end());
    out.push_str(&join(
        headers.iter().zip(widths).map(|(h, w)| pad(h, w)).collect(),
    ));
    for (row, metric) in rows.iter().zip(&details.metrics) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let padded = pad(cell, w);
                if i == 2 {
                    let tone = analysis_tone(metric.phase);
                    let (symbol, rest) = padded.split_once(' ').unwrap_or((&padded, ""));
                    format!("{} {rest}", style.paint(tone, symbol))
                } else {
                    padded
                }
            })
            .collect();
        out.push_str(&join(cells));
        if !metric.message.is_empty() {
            out.push_str(&format!("  {}\n", metric.message));
        }
        let value_w = metric
            .latest
            .iter()
            .map(|m| width(&m.value))
            .max()
            .unwrap_or(0);
        for measurement in &metric.latest {
            let tone = analysis_tone(measurement.phase);
            let text = format!(
                "  {} {}  {}",
                style.paint(tone, tone.symbol()),
                pad(&measurement.value, value_w),
                age(measurement.finished, now)
            );
            out.push_str(text.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run() -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-abc-2-1", "namespace": "shop"},
            "spec": {"metrics": [
                {"name": "errors", "successCondition": "result[0] < 0.05", "failureLimit": 1, "interval": "30s",
                 "provider": {"prometheus": {"query": "q"}}},
                {"name": "smoke", "provider": {"web": {"url": "http://x"}}}
            ]},
            "status": {"phase": "Failed",
                       "message": "Metric \"errors\" assessed Failed due to failed (2) > failureLimit (1)",
                       "startedAt": "2024-05-01T10:07:00Z", "completedAt": "2024-05-01T10:09:00Z",
                       "metricResults": [{"name": "errors", "phase": "Failed", "count": 7, "successful": 5, "failed": 2,
                         "measurements": [
                           {"phase": "Successful", "value": "[0.01]", "finishedAt": "2024-05-01T10:07:00Z"},
                           {"phase": "Successful", "value": "[0.01]", "finishedAt": "2024-05-01T10:07:30Z"},
                           {"phase": "Successful", "value": "[0.02]", "finishedAt": "2024-05-01T10:08:00Z"},
                           {"phase": "Successful", "value": "[0.03]", "finishedAt": "2024-05-01T10:08:10Z"},
                           {"phase": "Successful", "value": "[0.04]", "finishedAt": "2024-05-01T10:08:20Z"},
                           {"phase": "Failed", "value": "[0.09]", "finishedAt": "2024-05-01T10:08:30Z"},
                           {"phase": "Failed", "value": "[0.12]", "finishedAt": "2024-05-01T10:09:00Z"}]}]}
        }))
        .unwrap()
    }

    #[test]
    fn explains_a_failed_run() {
        let details = details(&run());
        assert_eq!(details.metrics.len(), 2);
        assert_eq!(details.metrics[0].latest.len(), MEASUREMENTS_SHOWN);
        assert_eq!(details.metrics[1].phase, AnalysisPhase::Pending);
        let now: Timestamp = "2024-05-01T10:10:00Z".parse().unwrap();
        let text = render(&details, now, Style::PLAIN);
        assert_eq!(
            text,
            "\
Name:            web-abc-2-1
Namespace:       shop
Status:          ✖ Failed
Message:         Metric \"errors\" assessed Failed due to failed (2) > failureLimit (1)
Started:         3m ago
Completed:       60s ago

METRIC  PROVIDER    STATUS     MEASURED  ✔  ✖  ?  ⚠  CONDITIONS
errors  Prometheus  ✖ Failed   7         5  2  0  0  success: result[0] < 0.05; failureLimit: 1
  ✔ [0.02]  2m
  ✔ [0.03]  110s
  ✔ [0.04]  100s
  ✖ [0.09]  90s
  ✖ [0.12]  60s
smoke   Web         ◌ Pending  0         0  0  0  0
"
        );
    }
}
