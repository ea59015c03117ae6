//! Argo's verdict rules: what one measurement means, when a metric is done and how, and what
//! the run concludes. Pure functions over the run's status.
//!
//! ```text
//!   provider value ──measurement_phase(conditions)──▶ Successful | Failed | Inconclusive | Error
//!   measurement ──record_measurement──▶ MetricResult counters (count, failed, consecutiveError…)
//!   MetricResult + limits ──assess_metric──▶ Pending | Running | Successful | Failed | …
//!   all metrics ──assess_run──▶ run phase + message (worst non-dry-run metric wins)
//! ```
//!
//! A measurement: no conditions → Successful; only `successCondition` → Failed when it is
//! false; only `failureCondition` → Successful when it is false; both → Failed when the
//! failure condition holds, Successful when only the success condition holds, Inconclusive
//! when neither does; a condition that errors → Error.
//!
//! A metric is Failed when failed > failureLimit (unless −1), Inconclusive when inconclusive >
//! inconclusiveLimit, Error when consecutiveError > consecutiveErrorLimit; Successful when
//! consecutiveSuccessLimit is reached, or when its count is reached (then, if
//! consecutiveSuccessLimit applies and was not reached, Failed — or Inconclusive when the
//! failure limit applies too); Successful when the run terminates while it runs indefinitely.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{AnalysisPhase, AnalysisRunStatus, Measurement, MetricResult, RunSummary};
use crate::expr::{self, ExprError, Value};
use crate::settings::MetricSettings;

/// The phase of a finished measurement whose provider gave `result`.
pub fn measurement_phase(
    success_condition: Option<&str>,
    failure_condition: Option<&str>,
    result: &Value,
) -> Result<AnalysisPhase, ExprError> {
    let success_condition = success_condition.filter(|c| !c.trim().is_empty());
    let failure_condition = failure_condition.filter(|c| !c.trim().is_empty());
    let success = success_condition
        .map(|c| expr::evaluate_condition(c, result))
        .transpose()?;
    let failure = failure_condition
        .map(|c| expr::evaluate_condition(c, result))
        .transpose()?;
    let (success, failure) = match (success, failure) {
        (None, None) => return Ok(AnalysisPhase::Successful),
        (Some(s), None) => (s, !s),
        (None, Some(f)) => (!f, f),
        (Some(s), Some(f)) => (s, f),
    };
    Ok(if failure {
        AnalysisPhase::Failed
    } else if success {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Inconclusive
    })
}

/// The counters of a [`MetricResult`] as plain numbers (the API omits zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i32,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    pub consecutive_error: i32,
    pub consecutive_success: i32,
}

impl Tally {
    pub fn of(result: &MetricResult) -> Tally {
        let n = |v: Option<i32>| v.unwrap_or(0);
        Tally {
            count: n(result.count),
            successful: n(result.successful),
            failed: n(result.failed),
            inconclusive: n(result.inconclusive),
            error: n(result.error),
            consecutive_error: n(result.consecutive_error),
            consecutive_success: n(result.consecutive_success),
        }
    }

    fn write(self, result: &mut MetricResult) {
        let v = |n: i32| (n != 0).then_some(n);
        result.count = v(self.count);
        result.successful = v(self.successful);
        result.failed = v(self.failed);
        result.inconclusive = v(self.inconclusive);
        result.error = v(self.error);
        result.consecutive_error = v(self.consecutive_error);
        result.consecutive_success = v(self.consecutive_success);
    }

    /// Counts one completed measurement.
    pub fn add(&mut self, phase: AnalysisPhase) {
        match phase {
            AnalysisPhase::Successful => {
                self.successful += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success += 1;
            }
            AnalysisPhase::Failed => {
                self.failed += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            AnalysisPhase::Inconclusive => {
                self.inconclusive += 1;
                self.count += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            AnalysisPhase::Error => {
                self.error += 1;
                self.consecutive_error += 1;
                self.consecutive_success = 0;
            }
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
    }
}

/// The result of the metric named `name`, if it has one.
pub fn metric_result<'a>(status: &'a AnalysisRunStatus, name: &str) -> Option<&'a MetricResult> {
    status
        .metric_results
        .iter()
        .flatten()
        .find(|r| r.name == name)
}

fn metric_result_mut<'a>(
    status: &'a mut AnalysisRunStatus,
    name: &str,
) -> Option<&'a mut MetricResult> {
    status
        .metric_results
        .iter_mut()
        .flatten()
        .find(|r| r.name == name)
}

/// The last measurement of a metric, finished or not.
pub fn last_measurement<'a>(status: &'a AnalysisRunStatus, name: &str) -> Option<&'a Measurement> {
    metric_result(status, name)?.measurements.as_ref()?.last()
}

/// Where a measurement is recorded, and how.
#[derive(Debug, Clone, Default)]
pub struct Recording<'a> {
    /// The metric's name.
    pub metric: &'a str,
    /// Whether the metric is dry-run (kept on a result created here).
    pub dry_run: bool,
    /// Replace the last (in-flight) measurement instead of appending.
    pub replaces_in_flight: bool,
    /// The provider's description of the metric, kept on a result created here.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Values masked in the measurement's message.
    pub secrets: &'a [String],
}

/// Records a measurement of metric `name`: appended, or replacing the in-flight last one when
/// `replaces_in_flight`. A completed measurement gets `finishedAt` (`now` if unset) and is
/// counted. `secrets` are masked in its message. `metadata` is the provider's description of
/// the metric, kept on a result created here.
pub fn record_measurement(
    status: &mut AnalysisRunStatus,
    target: Recording<'_>,
    mut measurement: Measurement,
    now: Timestamp,
) {
    let Recording {
        metric: name,
        dry_run,
        replaces_in_flight,
        metadata,
        secrets,
    } = target;
    if metric_result(status, name).is_none() {
        status
            .metric_results
            .get_or_insert_with(Vec::new)
            .push(MetricResult {
                name: name.to_string(),
                phase: AnalysisPhase::Running,
                dry_run: dry_run.then_some(true),
                metadata,
                ..MetricResult::default()
            });
    }
    let Some(result) = metric_result_mut(status, name) else {
        return;
    };
    if measurement.phase.completed() {
        if measurement.finished_at.is_none() {
            measurement.finished_at = Some(Time(now));
        }
        let mut tally = Tally::of(result);
        tally.add(measurement.phase);
        tally.write(result);
    }
    if let Some(message) = &mut measurement.message {
        *message = redact(message, secrets);
    }
    let measurements = result.measurements.get_or_insert_with(Vec::new);
    match measurements.last_mut() {
        Some(last) if replaces_in_flight => *last = measurement,
        _ => measurements.push(measurement),
    }
}

/// Masks each secret value in a text.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |acc, secret| {
            acc.replace(secret.as_str(), "*****")
        })
}

/// Whether the run stops taking new measurements: terminate was asked for, or a metric that
/// decides the run already ended Failed, Error or Inconclusive.
pub fn is_terminating(terminate: bool, status: &AnalysisRunStatus) -> bool {
    terminate
        || status.metric_results.iter().flatten().any(|r| {
            r.dry_run != Some(true)
                && matches!(
                    r.phase,
                    AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                )
        })
}

/// Whether a metric's limits are breached: the phase and why (`failed (3) > failureLimit (2)`).
pub fn limit_breach(settings: &MetricSettings, tally: Tally) -> Option<(AnalysisPhase, String)> {
    let mut breach = None;
    if settings.failure_limit_applies() && i64::from(tally.failed) > settings.failure_limit {
        breach = Some((
            AnalysisPhase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                tally.failed, settings.failure_limit
            ),
        ));
    }
    if i64::from(tally.inconclusive) > settings.inconclusive_limit {
        breach = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                tally.inconclusive, settings.inconclusive_limit
            ),
        ));
    }
    if i64::from(tally.consecutive_error) > settings.consecutive_error_limit {
        breach = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                tally.consecutive_error, settings.consecutive_error_limit
            ),
        ));
    }
    breach
}

/// The phase a metric is in now, given its result so far and whether the run is terminating.
pub fn assess_metric(
    settings: &MetricSettings,
    result: &MetricResult,
    terminating: bool,
) -> AnalysisPhase {
    if result.phase.completed() {
        return result.phase;
    }
    let Some(last) = result.measurements.as_ref().and_then(|m| m.last()) else {
        return if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
    };
    if !last.phase.completed() {
        return AnalysisPhase::Running;
    }
    let tally = Tally::of(result);
    if let Some((phase, _)) = limit_breach(settings, tally) {
        return phase;
    }
    if settings.consecutive_success_limit_applies()
        && i64::from(tally.consecutive_success) >= settings.consecutive_success_limit
    {
        return AnalysisPhase::Successful;
    }
    if let Some(count) = settings.effective_count
        && i64::from(tally.count) >= count
    {
        return match (
            settings.failure_limit_applies(),
            settings.consecutive_success_limit_applies(),
        ) {
            // Neither limit decided: not enough successes in a row, not too many failures.
            (true, true) => AnalysisPhase::Inconclusive,
            // Only the success streak could pass the metric, and it was not reached.
            (false, true) => AnalysisPhase::Failed,
            _ => AnalysisPhase::Successful,
        };
    }
    if terminating {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    }
}

/// What the run needs to know about one of its metrics to assess it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricVerdictInput<'a> {
    pub name: &'a str,
    pub settings: &'a MetricSettings,
    pub dry_run: bool,
}

/// Assesses every metric and the run. Updates each metric result's phase (and message when it
/// changes), the run and dry-run summaries and `startedAt`; returns the run's phase and
/// message. A metric failing in this pass makes the run terminate in the same pass: the other
/// metrics end (Successful unless a measurement is in flight), so the verdict is not delayed.
pub fn assess_run(
    metrics: &[MetricVerdictInput<'_>],
    status: &mut AnalysisRunStatus,
    terminate: bool,
    now: Timestamp,
) -> (AnalysisPhase, String) {
    if status.started_at.is_none() {
        status.started_at = Some(Time(now));
    }
    // Assessing can start termination (a metric fails); then assess once more as terminating.
    let mut terminating = is_terminating(terminate, status);
    loop {
        update_metric_phases(metrics, status, terminating);
        let now_terminating = is_terminating(terminate, status);
        if now_terminating == terminating {
            break;
        }
        terminating = now_terminating;
    }

    let mut worst: Option<AnalysisPhase> = None;
    let mut worst_message = if terminate {
        "Run Terminated".to_string()
    } else {
        String::new()
    };
    let mut everything_completed = true;
    let mut run_summary = Summary::default();
    let mut dry_run_summary = Summary::default();
    for metric in metrics {
        let summary = if metric.dry_run {
            &mut dry_run_summary
        } else {
            &mut run_summary
        };
        summary.count += 1;
        let Some(result) = metric_result_mut(status, metric.name) else {
            everything_completed = false;
            continue;
        };
        let phase = result.phase;
        if !phase.completed() {
            everything_completed = false;
            continue;
        }
        let breach = limit_breach(metric.settings, Tally::of(result));
        summary.add(
            breach
                .as_ref()
                .map_or(AnalysisPhase::Successful, |(p, _)| *p),
        );
        if metric.dry_run {
            worst.get_or_insert(AnalysisPhase::Successful);
            if let Some((_, why)) = &breach {
                result.message = Some(format!("Metric assessed {phase} due to {why}"));
            }
            continue;
        }
        if worst.is_none_or(|w| severity(phase) > severity(w)) {
            worst = Some(phase);
            if let Some((_, why)) = &breach {
                worst_message = format!("Metric \"{}\" assessed {phase} due to {why}", metric.name);
                if let Some(last) = result.message.as_deref().filter(|m| !m.is_empty()) {
                    worst_message.push_str(&format!(": \"Error Message: {last}\""));
                }
            }
        }
    }
    status.run_summary = Some(run_summary.into());
    status.dry_run_summary = Some(dry_run_summary.into());
    let message = worst_message.trim().to_string();
    if terminating {
        return (worst.unwrap_or(AnalysisPhase::Successful), message);
    }
    match worst {
        Some(worst) if everything_completed => (worst, message),
        _ => (AnalysisPhase::Running, String::new()),
    }
}

fn update_metric_phases(
    metrics: &[MetricVerdictInput<'_>],
    status: &mut AnalysisRunStatus,
    terminating: bool,
) {
    for metric in metrics {
        let Some(result) = metric_result_mut(status, metric.name) else {
            continue;
        };
        let phase = assess_metric(metric.settings, result, terminating);
        if phase != result.phase {
            if let Some(last) = result.measurements.as_ref().and_then(|m| m.last()) {
                result.message = last.message.clone();
            }
            result.phase = phase;
        }
    }
}

/// Argo's order of phases from best to worst.
fn severity(phase: AnalysisPhase) -> u8 {
    match phase {
        AnalysisPhase::Successful => 0,
        AnalysisPhase::Running => 1,
        AnalysisPhase::Pending => 2,
        AnalysisPhase::Inconclusive => 3,
        AnalysisPhase::Error => 4,
        AnalysisPhase::Failed => 5,
    }
}

#[derive(Default)]
struct Summary {
    count: i32,
    successful: i32,
    failed: i32,
    inconclusive: i32,
    error: i32,
}

impl Summary {
    fn add(&mut self, phase: AnalysisPhase) {
        match phase {
            AnalysisPhase::Failed => self.failed += 1,
            AnalysisPhase::Inconclusive => self.inconclusive += 1,
            AnalysisPhase::Error => self.error += 1,
            _ => self.successful += 1,
        }
    }
}

impl From<Summary> for RunSummary {
    fn from(s: Summary) -> RunSummary {
        let v = |n: i32| (n != 0).then_some(n);
        RunSummary {
            count: v(s.count),
            successful: v(s.successful),
            failed: v(s.failed),
            inconclusive: v(s.inconclusive),
            error: v(s.error),
        }
    }
}

/// Keeps the newest `limit(metric)` measurements of each metric; returns what was dropped, by
/// metric, oldest first (a Job provider deletes the Jobs behind them).
pub fn trim_measurements(
    status: &mut AnalysisRunStatus,
    limit: impl Fn(&str) -> usize,
) -> Vec<(String, Vec<Measurement>)> {
    let mut dropped = Vec::new();
    for result in status.metric_results.iter_mut().flatten() {
        let keep = limit(&result.name);
        if let Some(measurements) = &mut result.measurements
            && measurements.len() > keep
        {
            let removed: Vec<Measurement> =
                measurements.drain(..measurements.len() - keep).collect();
            dropped.push((result.name.clone(), removed));
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalysisPhase::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn measurement_phase_table() {
        let v = Value::from(vec![0.005]);
        let bad = Value::from(vec![0.2]);
        let cases: &[(Option<&str>, Option<&str>, &Value, AnalysisPhase)] = &[
            (None, None, &v, Successful),
            (Some("result[0] < 0.01"), None, &v, Successful),
            (Some("result[0] < 0.01"), None, &bad, Failed),
            (None, Some("result[0] > 0.1"), &v, Successful),
            (None, Some("result[0] > 0.1"), &bad, Failed),
            (
                Some("result[0] < 0.01"),
                Some("result[0] > 0.1"),
                &v,
                Successful,
            ),
            (
                Some("result[0] < 0.01"),
                Some("result[0] > 0.1"),
                &bad,
                Failed,
            ),
            // Neither holds.
            (
                Some("result[0] < 0.001"),
                Some("result[0] > 0.1"),
                &v,
                Inconclusive,
            ),
            // Both hold: failure wins.
            (
                Some("result[0] < 0.01"),
                Some("result[0] > 0.001"),
                &v,
                Failed,
            ),
            // Empty conditions count as absent.
            (Some(""), Some("  "), &bad, Successful),
        ];
        for (success, failure, value, want) in cases {
            assert_eq!(
                measurement_phase(*success, *failure, value),
                Ok(*want),
                "{success:?} {failure:?} {value}"
            );
        }
    }

    #[test]
    fn an_empty_vector_does_not_pass_a_guarded_condition() {
        let empty = Value::Array(vec![]);
        assert_eq!(
            measurement_phase(Some("len(result) > 0 && result[0] < 0.01"), None, &empty),
            Ok(Failed)
        );
        // Unguarded, indexing an empty vector is an error, never a pass.
        let err = measurement_phase(Some("result[0] < 0.01"), None, &empty).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn a_condition_error_is_an_error() {
        assert!(measurement_phase(Some("result <"), None, &Value::Float(1.0)).is_err());
        assert!(measurement_phase(None, Some("nope(result)"), &Value::Float(1.0)).is_err());
    }

    fn settings() -> MetricSettings {
        MetricSettings {
            interval: None,
            initial_delay: None,
            effective_count: Some(1),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            consecutive_success_limit: 0,
        }
    }

    fn rec(metric: &str) -> Recording<'_> {
        Recording {
            metric,
            ..Recording::default()
        }
    }

    fn measurement(phase: AnalysisPhase, at: i64) -> Measurement {
        Measurement {
            phase,
            started_at: Some(Time(ts(at))),
            finished_at: phase.completed().then(|| Time(ts(at))),
            ..Measurement::default()
        }
    }

    /// A running metric result with these measurements counted.
    fn result_of(phases: &[AnalysisPhase]) -> MetricResult {
        let mut status = AnalysisRunStatus::default();
        for (i, phase) in phases.iter().enumerate() {
            record_measurement(
                &mut status,
                rec("m"),
                measurement(*phase, i as i64),
                ts(i as i64),
            );
        }
        status
            .metric_results
            .and_then(|mut r| r.pop())
            .unwrap_or_else(|| MetricResult {
                name: "m".into(),
                ..Default::default()
            })
    }

    #[test]
    fn tallies() {
        let r = result_of(&[
            Successful,
            Error,
            Error,
            Failed,
            Inconclusive,
            Successful,
            Successful,
        ]);
        assert_eq!(
            Tally::of(&r),
            Tally {
                count: 5,
                successful: 3,
                failed: 1,
                inconclusive: 1,
                error: 2,
                consecutive_error: 0,
                consecutive_success: 2,
            }
        );
        assert_eq!(r.error, Some(2));
        assert_eq!(
            r.consecutive_error, None,
            "zeros are omitted like Argo's omitempty"
        );
        assert_eq!(r.measurements.as_ref().map(Vec::len), Some(7));
    }

    #[test]
    fn assess_metric_table() {
        struct Case {
            name: &'static str,
            settings: MetricSettings,
            phases: &'static [AnalysisPhase],
            terminating: bool,
            want: AnalysisPhase,
        }
        let s = settings;
        let indefinite = || MetricSettings {
            interval: Some(std::time::Duration::from_secs(1)),
            effective_count: None,
            ..s()
        };
        let count = |n| MetricSettings {
            interval: Some(std::time::Duration::from_secs(1)),
            effective_count: Some(n),
            ..s()
        };
        let cases = [
            Case {
                name: "nothing measured",
                settings: s(),
                phases: &[],
                terminating: false,
                want: Pending,
            },
            Case {
                name: "nothing measured, terminating",
                settings: s(),
                phases: &[],
                terminating: true,
                want: Successful,
            },
            Case {
                name: "in flight",
                settings: s(),
                phases: &[Running],
                terminating: false,
                want: Running,
            },
            Case {
                name: "in flight, terminating",
                settings: s(),
                phases: &[Running],
                terminating: true,
                want: Running,
            },
            Case {
                name: "one success, count 1",
                settings: s(),
                phases: &[Successful],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "one failure",
                settings: s(),
                phases: &[Failed],
                terminating: false,
                want: Failed,
            },
            Case {
                name: "one inconclusive",
                settings: s(),
                phases: &[Inconclusive],
                terminating: false,
                want: Inconclusive,
            },
            Case {
                name: "an error is retried",
                settings: s(),
                phases: &[Error],
                terminating: false,
                want: Running,
            },
            Case {
                name: "4 errors are tolerated",
                settings: s(),
                phases: &[Error, Error, Error, Error],
                terminating: false,
                want: Running,
            },
            Case {
                name: "5 consecutive errors",
                settings: s(),
                phases: &[Error, Error, Error, Error, Error],
                terminating: false,
                want: Error,
            },
            Case {
                name: "errors reset by a success",
                settings: indefinite(),
                phases: &[Error, Error, Error, Error, Successful, Error],
                terminating: false,
                want: Running,
            },
            Case {
                name: "consecutiveErrorLimit 0",
                settings: MetricSettings {
                    consecutive_error_limit: 0,
                    ..s()
                },
                phases: &[Error],
                terminating: false,
                want: Error,
            },
            Case {
                name: "failures within failureLimit",
                settings: MetricSettings {
                    failure_limit: 2,
                    ..count(5)
                },
                phases: &[Failed, Successful, Failed],
                terminating: false,
                want: Running,
            },
            Case {
                name: "failures above failureLimit",
                settings: MetricSettings {
                    failure_limit: 2,
                    ..count(5)
                },
                phases: &[Failed, Failed, Successful, Failed],
                terminating: false,
                want: Failed,
            },
            Case {
                name: "count reached with tolerated failures",
                settings: MetricSettings {
                    failure_limit: 2,
                    ..count(3)
                },
                phases: &[Failed, Successful, Failed],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "indefinite runs on",
                settings: indefinite(),
                phases: &[Successful, Successful],
                terminating: false,
                want: Running,
            },
            Case {
                name: "indefinite ends when terminated",
                settings: indefinite(),
                phases: &[Successful],
                terminating: true,
                want: Successful,
            },
            Case {
                name: "failureLimit -1 ignores failures",
                settings: MetricSettings {
                    failure_limit: -1,
                    consecutive_success_limit: 2,
                    ..indefinite()
                },
                phases: &[Failed, Failed, Failed, Successful],
                terminating: false,
                want: Running,
            },
            Case {
                name: "consecutiveSuccessLimit reached",
                settings: MetricSettings {
                    failure_limit: -1,
                    consecutive_success_limit: 2,
                    ..indefinite()
                },
                phases: &[Failed, Successful, Failed, Successful, Successful],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "count reached without the success streak (only success limit applies)",
                settings: MetricSettings {
                    failure_limit: -1,
                    consecutive_success_limit: 2,
                    ..count(3)
                },
                phases: &[Successful, Failed, Successful],
                terminating: false,
                want: Failed,
            },
            Case {
                name: "count reached, neither limit decided (both apply)",
                settings: MetricSettings {
                    failure_limit: 1,
                    consecutive_success_limit: 2,
                    ..count(3)
                },
                phases: &[Successful, Failed, Successful],
                terminating: false,
                want: Inconclusive,
            },
            Case {
                name: "both apply, streak reached first",
                settings: MetricSettings {
                    failure_limit: 1,
                    consecutive_success_limit: 2,
                    ..count(5)
                },
                phases: &[Failed, Successful, Successful],
                terminating: false,
                want: Successful,
            },
            Case {
                name: "inconclusive within inconclusiveLimit",
                settings: MetricSettings {
                    inconclusive_limit: 1,
                    ..count(3)
                },
                phases: &[Inconclusive, Successful],
                terminating: false,
                want: Running,
            },
        ];
        for case in cases {
            let result = result_of(case.phases);
            assert_eq!(
                assess_metric(&case.settings, &result, case.terminating),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_completed_metric_stays_completed() {
        let mut result = result_of(&[Successful]);
        result.phase = Failed;
        assert_eq!(assess_metric(&settings(), &result, false), Failed);
    }

    fn status_with(metrics: &[(&str, bool, &[AnalysisPhase])]) -> AnalysisRunStatus {
        let mut status = AnalysisRunStatus::default();
        for (name, dry_run, phases) in metrics {
            for (i, phase) in phases.iter().enumerate() {
                let mut m = measurement(*phase, i as i64);
                if *phase == Error {
                    m.message = Some("connection refused".into());
                }
                let target = Recording {
                    dry_run: *dry_run,
                    ..rec(name)
                };
                record_measurement(&mut status, target, m, ts(i as i64));
            }
        }
        status
    }

    #[test]
    fn the_run_takes_the_worst_metric_and_stops_the_others() {
        let count3 = MetricSettings {
            interval: Some(std::time::Duration::from_secs(1)),
            effective_count: Some(3),
            failure_limit: 2,
            ..settings()
        };
        let indefinite = MetricSettings {
            interval: Some(std::time::Duration::from_secs(1)),
            effective_count: None,
            ..settings()
        };
        let metrics = [
            MetricVerdictInput {
                name: "error-rate",
                settings: &count3,
                dry_run: false,
            },
            MetricVerdictInput {
                name: "latency",
                settings: &indefinite,
                dry_run: false,
            },
        ];
        let mut status = status_with(&[
            ("error-rate", false, &[Failed, Failed, Failed]),
            ("latency", false, &[Successful]),
        ]);
        let (phase, message) = assess_run(&metrics, &mut status, false, ts(100));
        assert_eq!(phase, Failed);
        assert_eq!(
            message,
            "Metric \"error-rate\" assessed Failed due to failed (3) > failureLimit (2)"
        );
        let phases: Vec<_> = status
            .metric_results
            .iter()
            .flatten()
            .map(|r| r.phase)
            .collect();
        assert_eq!(phases, [Failed, Successful], "latency stops with the run");
        assert_eq!(
            status.run_summary,
            Some(RunSummary {
                count: Some(2),
                successful: Some(1),
                failed: Some(1),
                ..Default::default()
            })
        );
        assert_eq!(status.started_at, Some(Time(ts(100))));
    }

    #[test]
    fn an_error_verdict_carries_the_last_message() {
        let metrics = [MetricVerdictInput {
            name: "q",
            settings: &settings(),
            dry_run: false,
        }];
        let mut status = status_with(&[("q", false, &[Error, Error, Error, Error, Error])]);
        let (phase, message) = assess_run(&metrics, &mut status, false, ts(1));
        assert_eq!(phase, Error);
        assert_eq!(
            message,
            "Metric \"q\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): \"Error Message: connection refused\""
        );
    }

    #[test]
    fn dry_run_metrics_never_decide() {
        let s = settings();
        let metrics = [
            MetricVerdictInput {
                name: "real",
                settings: &s,
                dry_run: false,
            },
            MetricVerdictInput {
                name: "dry",
                settings: &s,
                dry_run: true,
            },
        ];
        let mut status = status_with(&[("real", false, &[Successful]), ("dry", true, &[Failed])]);
        let (phase, message) = assess_run(&metrics, &mut status, false, ts(1));
        assert_eq!((phase, message.as_str()), (Successful, ""));
        let dry = metric_result(&status, "dry").unwrap();
        assert_eq!(dry.phase, Failed);
        assert_eq!(
            dry.message.as_deref(),
            Some("Metric assessed Failed due to failed (1) > failureLimit (0)")
        );
        assert_eq!(
            status.dry_run_summary,
            Some(RunSummary {
                count: Some(1),
                failed: Some(1),
                ..Default::default()
            })
        );
        // Only dry-run metrics, all failed: the run still succeeds.
        let only_dry = [MetricVerdictInput {
            name: "dry",
            settings: &s,
            dry_run: true,
        }];
        let mut status = status_with(&[("dry", true, &[Failed])]);
        assert_eq!(
            assess_run(&only_dry, &mut status, false, ts(1)).0,
            Successful
        );
    }

    #[test]
    fn running_until_every_metric_completes() {
        let s = settings();
        let metrics = [
            MetricVerdictInput {
                name: "a",
                settings: &s,
                dry_run: false,
            },
            MetricVerdictInput {
                name: "b",
                settings: &s,
                dry_run: false,
            },
        ];
        let mut status = status_with(&[("a", false, &[Successful])]);
        assert_eq!(
            assess_run(&metrics, &mut status, false, ts(1)),
            (Running, String::new())
        );
        let mut status = status_with(&[("a", false, &[Successful]), ("b", false, &[Running])]);
        assert_eq!(assess_run(&metrics, &mut status, false, ts(1)).0, Running);
    }

    #[test]
    fn terminate() {
        let indefinite = MetricSettings {
            interval: Some(std::time::Duration::from_secs(1)),
            effective_count: None,
            ..settings()
        };
        let metrics = [MetricVerdictInput {
            name: "a",
            settings: &indefinite,
            dry_run: false,
        }];
        let mut status = status_with(&[("a", false, &[Successful, Successful])]);
        assert_eq!(
            assess_run(&metrics, &mut status, true, ts(1)),
            (Successful, "Run Terminated".to_string())
        );
        // Terminated before any measurement.
        let mut status = AnalysisRunStatus::default();
        assert_eq!(
            assess_run(&metrics, &mut status, true, ts(1)),
            (Successful, "Run Terminated".to_string())
        );
    }

    #[test]
    fn terminating_ignores_dry_run_failures() {
        let status = status_with(&[("dry", true, &[Failed])]);
        let mut failed_dry = status.clone();
        failed_dry.metric_results.as_mut().unwrap()[0].phase = Failed;
        assert!(!is_terminating(false, &failed_dry));
        let mut failed = status_with(&[("real", false, &[Failed])]);
        failed.metric_results.as_mut().unwrap()[0].phase = Failed;
        assert!(is_terminating(false, &failed));
        assert!(is_terminating(true, &AnalysisRunStatus::default()));
    }

    #[test]
    fn in_flight_measurements_are_replaced_and_secrets_masked() {
        let mut status = AnalysisRunStatus::default();
        record_measurement(&mut status, rec("job"), measurement(Running, 1), ts(1));
        let mut done = measurement(Successful, 1);
        done.finished_at = None;
        done.message = Some("token s3cr3t accepted".into());
        let secrets = ["s3cr3t".to_string()];
        let target = Recording {
            replaces_in_flight: true,
            secrets: &secrets,
            ..rec("job")
        };
        record_measurement(&mut status, target, done, ts(9));
        let result = metric_result(&status, "job").unwrap();
        let measurements = result.measurements.as_ref().unwrap();
        assert_eq!(measurements.len(), 1);
        assert_eq!(measurements[0].finished_at, Some(Time(ts(9))));
        assert_eq!(
            measurements[0].message.as_deref(),
            Some("token ***** accepted")
        );
        assert_eq!(result.count, Some(1));
    }

    #[test]
    fn trimming_keeps_the_newest() {
        let mut status = status_with(&[
            ("a", false, &[Successful, Successful, Failed, Successful]),
            ("b", false, &[Successful]),
        ]);
        let dropped = trim_measurements(&mut status, |name| if name == "a" { 2 } else { 10 });
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "a");
        assert_eq!(dropped[0].1.len(), 2);
        let kept: Vec<_> = metric_result(&status, "a")
            .unwrap()
            .measurements
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.phase)
            .collect();
        assert_eq!(kept, [Failed, Successful]);
        // Counters are not affected by trimming.
        assert_eq!(metric_result(&status, "a").unwrap().count, Some(4));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("a b a", &["a".into(), String::new()]),
            "***** b *****"
        );
    }
}
