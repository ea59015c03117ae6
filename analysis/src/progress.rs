//! One pass over a run, as pure functions around the measuring the runner does:
//!
//! ```text
//!   status ──begin──▶ started status ──due_tasks──▶ tasks ──(runner measures)──▶ outcomes
//!   outcomes ──advance──▶ new status (counters, metric phases, run phase, trimmed history)
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{AnalysisPhase, AnalysisRunStatus, Measurement};
use crate::plan::{PreparedMetric, SpecProblem};
use crate::providers::Providers;
use crate::schedule::{Task, TaskKind};
use crate::verdict::{
    MetricVerdictInput, Recording, Tally, assess_run, metric_result, record_measurement,
    trim_measurements,
};

/// The status a pass starts from: `startedAt` set (initial delays count from it).
pub fn begin(status: Option<&AnalysisRunStatus>, now: Timestamp) -> AnalysisRunStatus {
    let mut status = status.cloned().unwrap_or_default();
    if status.started_at.is_none() {
        status.started_at = Some(Time(now));
    }
    status
}

/// The number a new Job measurement of this metric gets: measurements so far + 1.
pub fn measurement_number(status: &AnalysisRunStatus, metric: &str) -> i32 {
    metric_result(status, metric).map_or(1, |r| {
        let tally = Tally::of(r);
        tally.count + tally.error + 1
    })
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub task: Task,
    pub measurement: Measurement,
}

/// The result of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Advanced {
    pub status: AnalysisRunStatus,
    /// Set when the run completed in this pass.
    pub completed: Option<AnalysisPhase>,
    /// Measurements dropped from the history, by prepared-metric index.
    pub dropped: Vec<(usize, Vec<Measurement>)>,
}

/// Records the outcomes, judges metrics and the run, and trims each metric's history.
pub fn advance(
    metrics: &[PreparedMetric],
    mut status: AnalysisRunStatus,
    outcomes: Vec<Outcome>,
    terminate: bool,
    secrets: &[String],
    now: Timestamp,
) -> Advanced {
    for outcome in outcomes {
        let Some(metric) = metrics.get(outcome.task.metric) else {
            continue;
        };
        record_measurement(
            &mut status,
            Recording {
                metric: metric.name(),
                dry_run: metric.dry_run,
                replaces_in_flight: outcome.task.kind != TaskKind::Measure,
                metadata: Providers::result_metadata(&metric.metric),
                secrets,
            },
            outcome.measurement,
            now,
        );
    }
    let inputs: Vec<MetricVerdictInput<'_>> = metrics
        .iter()
        .map(|m| MetricVerdictInput {
            name: m.name(),
            settings: &m.settings,
            dry_run: m.dry_run,
        })
        .collect();
    let was = status.phase.unwrap_or_default();
    let (phase, message) = assess_run(&inputs, &mut status, terminate, now);
    let mut completed = None;
    if phase != was || status.phase.is_none() {
        status.phase = Some(phase);
        status.message = (!message.is_empty()).then_some(message);
        if phase.completed() {
            status.completed_at = Some(Time(now));
            completed = Some(phase);
        }
    }
    let dropped = trim_measurements(&mut status, |name| {
        metrics
            .iter()
            .find(|m| m.name() == name)
            .map_or(crate::plan::DEFAULT_MEASUREMENT_RETENTION, |m| m.retention)
    })
    .into_iter()
    .filter_map(|(name, measurements)| {
        let index = metrics.iter().position(|m| m.name() == name)?;
        Some((index, measurements))
    })
    .collect();
    Advanced {
        status,
        completed,
        dropped,
    }
}

/// Ends a run whose spec cannot be measured: Error, with the problem as its message.
pub fn fail_spec(
    mut status: AnalysisRunStatus,
    problem: &SpecProblem,
    now: Timestamp,
) -> AnalysisRunStatus {
    status.phase = Some(AnalysisPhase::Error);
    status.message = Some(problem.to_string());
    status.completed_at = Some(Time(now));
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AnalysisRunSpec, Metric, MetricProvider, PrometheusMetric};
    use crate::plan::prepare;
    use crate::schedule::due_tasks;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn spec(count: i32, failure_limit: i32) -> AnalysisRunSpec {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        AnalysisRunSpec {
            metrics: vec![Metric {
                name: "error-rate".into(),
                interval: Some("1s".into()),
                count: Some(IntOrString::Int(count)),
                failure_limit: Some(IntOrString::Int(failure_limit)),
                success_condition: Some("result[0] < 0.01".into()),
                provider: MetricProvider {
                    prometheus: Some(PrometheusMetric {
                        query: Some("rate(errors[1m])".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn measured(phase: AnalysisPhase, at: i64) -> Measurement {
        Measurement {
            phase,
            started_at: Some(Time(ts(at))),
            finished_at: Some(Time(ts(at))),
            value: Some("[0.5]".into()),
            ..Default::default()
        }
    }

    /// Drives a run through passes, answering each due measurement with the next phase.
    fn drive(spec: &AnalysisRunSpec, answers: &[AnalysisPhase]) -> (AnalysisRunStatus, Vec<i64>) {
        let metrics = prepare(spec).unwrap();
        let mut status = begin(None, ts(0));
        let mut answers = answers.iter();
        let mut measured_at = Vec::new();
        for second in 0..30 {
            let now = ts(second);
            let tasks = due_tasks(&metrics, &status, false, now);
            let mut outcomes = Vec::new();
            for task in tasks {
                let Some(phase) = answers.next() else { break };
                measured_at.push(second);
                outcomes.push(Outcome {
                    task,
                    measurement: measured(*phase, second),
                });
            }
            status = advance(&metrics, status, outcomes, false, &[], now).status;
            if status.phase.is_some_and(|p| p.completed()) {
                break;
            }
        }
        (status, measured_at)
    }

    #[test]
    fn a_healthy_run_takes_count_measurements_one_interval_apart() {
        use AnalysisPhase::*;
        let (status, at) = drive(&spec(3, 0), &[Successful, Successful, Successful]);
        assert_eq!(at, [0, 1, 2]);
        assert_eq!(status.phase, Some(Successful));
        assert_eq!(status.completed_at, Some(Time(ts(2))));
        assert_eq!(status.message, None);
        let result = &status.metric_results.unwrap()[0];
        assert_eq!(result.count, Some(3));
        assert_eq!(
            result.metadata.as_ref().unwrap()["ResolvedPrometheusQuery"],
            "rate(errors[1m])"
        );
    }

    #[test]
    fn a_failing_run_stops_at_the_limit() {
        use AnalysisPhase::*;
        let (status, at) = drive(&spec(10, 1), &[Failed, Successful, Failed, Successful]);
        assert_eq!(at, [0, 1, 2]);
        assert_eq!(status.phase, Some(Failed));
        assert_eq!(
            status.message.as_deref(),
            Some("Metric \"error-rate\" assessed Failed due to failed (2) > failureLimit (1)")
        );
    }

    #[test]
    fn errors_retry_every_ten_seconds_until_the_limit() {
        use AnalysisPhase::*;
        let (status, at) = drive(&spec(2, 0), &[Error, Error, Error, Successful, Successful]);
        assert_eq!(at, [0, 10, 20]);
        assert_eq!(
            status.phase,
            Some(Running),
            "still retrying at the end of the window"
        );
    }

    #[test]
    fn history_is_trimmed_to_the_retention() {
        use AnalysisPhase::*;
        let mut with_retention = spec(5, 0);
        with_retention.measurement_retention = Some(vec![crate::api::MeasurementRetention {
            metric_name: "error".into(),
            limit: 2,
        }]);
        let (status, _) = drive(&with_retention, &[Successful; 5]);
        let result = &status.metric_results.unwrap()[0];
        assert_eq!(result.measurements.as_ref().unwrap().len(), 2);
        assert_eq!(result.count, Some(5));
    }

    #[test]
    fn numbering_and_spec_problems() {
        let mut status = AnalysisRunStatus::default();
        assert_eq!(measurement_number(&status, "m"), 1);
        record_measurement(
            &mut status,
            Recording {
                metric: "m",
                ..Default::default()
            },
            measured(AnalysisPhase::Error, 1),
            ts(1),
        );
        assert_eq!(measurement_number(&status, "m"), 2);
        let failed = fail_spec(
            status,
            &SpecProblem::Invalid("metrics[0].count: bad".into()),
            ts(2),
        );
        assert_eq!(failed.phase, Some(AnalysisPhase::Error));
        assert_eq!(
            failed.message.as_deref(),
            Some("Analysis spec invalid: metrics[0].count: bad")
        );
    }
}
