//! When to measure: which metrics are due now, and when the run next needs attention. Pure
//! functions of the run's status and the clock, so a restarted controller computes the same
//! schedule from what it reads back and neither measures twice nor skips a measurement.
//!
//! A metric's first measurement is due at `startedAt + initialDelay` (at once without a delay);
//! each next one at the last measurement's `finishedAt + interval`, or `+ 10s` after an error
//! (so a single-measurement metric retries errors until `consecutiveErrorLimit`); none once the
//! count is reached or the metric completed. An in-flight measurement (a Job) is resumed at its
//! `resumeAt` (or whenever the run is reconciled), and terminated instead once the run is
//! terminating; no new measurement starts then.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisPhase, AnalysisRunStatus, TtlStrategy};
use crate::plan::PreparedMetric;
use crate::verdict::{Tally, last_measurement, metric_result};

/// How long after an errored measurement the metric is measured again.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// What to do for a metric in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Take a new measurement.
    Measure,
    /// Look again at the in-flight measurement (a Job still running).
    Resume,
    /// Stop the in-flight measurement: the run is terminating.
    Terminate,
}

/// One metric to act on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Index into the prepared metrics.
    pub metric: usize,
    pub kind: TaskKind,
}

/// `at + d`, saturating at the end of time.
pub fn after(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The metrics to act on now.
pub fn due_tasks(
    metrics: &[PreparedMetric],
    status: &AnalysisRunStatus,
    terminating: bool,
    now: Timestamp,
) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (i, metric) in metrics.iter().enumerate() {
        let task = |kind| Task { metric: i, kind };
        if metric_result(status, metric.name()).is_some_and(|r| r.phase.completed()) {
            continue;
        }
        match next_action(metric, status) {
            Next::InFlight { resume_at } => {
                if terminating {
                    tasks.push(task(TaskKind::Terminate));
                } else if resume_at.is_none_or(|at| at <= now) {
                    tasks.push(task(TaskKind::Resume));
                }
            }
            Next::MeasureAt(at) if !terminating && at.is_none_or(|at| at <= now) => {
                tasks.push(task(TaskKind::Measure));
            }
            Next::MeasureAt(_) | Next::Done => {}
        }
    }
    tasks
}

/// When the run next needs a pass, for measurements (the earliest due or resume time over its
/// metrics); `None` when nothing is scheduled.
pub fn next_wakeup(metrics: &[PreparedMetric], status: &AnalysisRunStatus) -> Option<Timestamp> {
    metrics
        .iter()
        .filter(|m| !metric_result(status, m.name()).is_some_and(|r| r.phase.completed()))
        .filter_map(|m| match next_action(m, status) {
            Next::InFlight { resume_at } => resume_at,
            Next::MeasureAt(at) => at,
            Next::Done => None,
        })
        .min()
}

enum Next {
    /// A measurement is in flight; look again at `resume_at` (or on the next event).
    InFlight { resume_at: Option<Timestamp> },
    /// The next measurement is due then (`None` = at once).
    MeasureAt(Option<Timestamp>),
    /// Nothing more to measure.
    Done,
}

fn next_action(metric: &PreparedMetric, status: &AnalysisRunStatus) -> Next {
    let settings = &metric.settings;
    let Some(last) = last_measurement(status, metric.name()) else {
        return Next::MeasureAt(match (settings.initial_delay, &status.started_at) {
            (Some(delay), Some(started)) => Some(after(started.0, delay)),
            // A run that has not started yet starts now; the delay counts from then.
            (Some(_), None) => Some(Timestamp::MAX),
            (None, _) => None,
        });
    };
    let Some(finished) = &last.finished_at else {
        return Next::InFlight {
            resume_at: last.resume_at.as_ref().map(|t| t.0),
        };
    };
    if let Some(result) = metric_result(status, metric.name())
        && let Some(count) = settings.effective_count
        && i64::from(Tally::of(result).count) >= count
    {
        return Next::Done;
    }
    let interval = if last.phase == AnalysisPhase::Error {
        ERROR_RETRY_INTERVAL
    } else {
        settings.interval.unwrap_or(ERROR_RETRY_INTERVAL)
    };
    Next::MeasureAt(Some(after(finished.0, interval)))
}

/// When a completed run is to be deleted under its `ttlStrategy`: `secondsAfterSuccess` for a
/// Successful run, `secondsAfterFailure` for a Failed one, otherwise `secondsAfterCompletion`.
pub fn ttl_deadline(ttl: Option<&TtlStrategy>, status: &AnalysisRunStatus) -> Option<Timestamp> {
    let ttl = ttl?;
    let phase = status.phase?;
    if !phase.completed() {
        return None;
    }
    let completed = status.completed_at.as_ref()?.0;
    let seconds = match phase {
        AnalysisPhase::Successful if ttl.seconds_after_success.is_some() => {
            ttl.seconds_after_success
        }
        AnalysisPhase::Failed if ttl.seconds_after_failure.is_some() => ttl.seconds_after_failure,
        _ => ttl.seconds_after_completion,
    }?;
    Some(after(
        completed,
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{Measurement, Metric, MetricResult};
    use crate::settings::MetricSettings;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + seconds).unwrap()
    }

    fn metric(name: &str, settings: MetricSettings) -> PreparedMetric {
        PreparedMetric {
            index: 0,
            metric: Metric {
                name: name.into(),
                ..Default::default()
            },
            settings,
            dry_run: false,
            retention: 10,
        }
    }

    fn once() -> MetricSettings {
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

    fn every(seconds: u64, count: Option<i64>) -> MetricSettings {
        MetricSettings {
            interval: Some(Duration::from_secs(seconds)),
            effective_count: count,
            ..once()
        }
    }

    /// A status whose metric `name` has these (phase, finished second) measurements; a `None`
    /// second is an in-flight measurement.
    fn status(
        started: Option<i64>,
        name: &str,
        measurements: &[(AnalysisPhase, Option<i64>)],
    ) -> AnalysisRunStatus {
        let mut tally = Tally::default();
        let list: Vec<Measurement> = measurements
            .iter()
            .map(|(phase, finished)| {
                if finished.is_some() {
                    tally.add(*phase);
                }
                Measurement {
                    phase: *phase,
                    started_at: Some(Time(ts(finished.unwrap_or(0)))),
                    finished_at: finished.map(|s| Time(ts(s))),
                    ..Default::default()
                }
            })
            .collect();
        AnalysisRunStatus {
            started_at: started.map(|s| Time(ts(s))),
            metric_results: (!list.is_empty()).then(|| {
                vec![MetricResult {
                    name: name.into(),
                    phase: AnalysisPhase::Running,
                    measurements: Some(list),
                    count: Some(tally.count),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        use AnalysisPhase::*;
        struct Case {
            name: &'static str,
            settings: MetricSettings,
            status: AnalysisRunStatus,
            terminating: bool,
            now: i64,
            due: Option<TaskKind>,
            wakeup: Option<i64>,
        }
        let delayed = MetricSettings {
            initial_delay: Some(Duration::from_secs(30)),
            ..every(10, Some(3))
        };
        let cases = [
            Case {
                name: "first measurement at once",
                settings: once(),
                status: status(Some(0), "m", &[]),
                terminating: false,
                now: 0,
                due: Some(TaskKind::Measure),
                wakeup: None,
            },
            Case {
                name: "single measurement done",
                settings: once(),
                status: status(Some(0), "m", &[(Successful, Some(1))]),
                terminating: false,
                now: 50,
                due: None,
                wakeup: None,
            },
            Case {
                name: "single measurement errored: retry after 10s",
                settings: once(),
                status: status(Some(0), "m", &[(Error, Some(1))]),
                terminating: false,
                now: 5,
                due: None,
                wakeup: Some(11),
            },
            Case {
                name: "error retry due",
                settings: once(),
                status: status(Some(0), "m", &[(Error, Some(1))]),
                terminating: false,
                now: 11,
                due: Some(TaskKind::Measure),
                wakeup: Some(11),
            },
            Case {
                name: "interval not yet passed",
                settings: every(5, Some(3)),
                status: status(Some(0), "m", &[(Successful, Some(1))]),
                terminating: false,
                now: 5,
                due: None,
                wakeup: Some(6),
            },
            Case {
                name: "interval passed",
                settings: every(5, Some(3)),
                status: status(Some(0), "m", &[(Successful, Some(1))]),
                terminating: false,
                now: 6,
                due: Some(TaskKind::Measure),
                wakeup: Some(6),
            },
            Case {
                name: "errors retry at 10s even with a shorter interval",
                settings: every(1, Some(3)),
                status: status(Some(0), "m", &[(Error, Some(1))]),
                terminating: false,
                now: 2,
                due: None,
                wakeup: Some(11),
            },
            Case {
                name: "count reached",
                settings: every(5, Some(2)),
                status: status(Some(0), "m", &[(Successful, Some(1)), (Failed, Some(6))]),
                terminating: false,
                now: 60,
                due: None,
                wakeup: None,
            },
            Case {
                name: "errors do not count toward count",
                settings: every(5, Some(2)),
                status: status(Some(0), "m", &[(Successful, Some(1)), (Error, Some(6))]),
                terminating: false,
                now: 16,
                due: Some(TaskKind::Measure),
                wakeup: Some(16),
            },
            Case {
                name: "indefinite keeps going",
                settings: every(5, None),
                status: status(
                    Some(0),
                    "m",
                    &[
                        (Successful, Some(1)),
                        (Successful, Some(6)),
                        (Successful, Some(11)),
                    ],
                ),
                terminating: false,
                now: 16,
                due: Some(TaskKind::Measure),
                wakeup: Some(16),
            },
            Case {
                name: "initial delay pending",
                settings: delayed.clone(),
                status: status(Some(0), "m", &[]),
                terminating: false,
                now: 29,
                due: None,
                wakeup: Some(30),
            },
            Case {
                name: "initial delay passed",
                settings: delayed.clone(),
                status: status(Some(0), "m", &[]),
                terminating: false,
                now: 30,
                due: Some(TaskKind::Measure),
                wakeup: Some(30),
            },
            Case {
                name: "in flight is resumed",
                settings: once(),
                status: status(Some(0), "m", &[(Running, None)]),
                terminating: false,
                now: 3,
                due: Some(TaskKind::Resume),
                wakeup: None,
            },
            Case {
                name: "in flight is terminated",
                settings: once(),
                status: status(Some(0), "m", &[(Running, None)]),
                terminating: true,
                now: 3,
                due: Some(TaskKind::Terminate),
                wakeup: None,
            },
            Case {
                name: "terminating starts nothing new",
                settings: every(5, None),
                status: status(Some(0), "m", &[(Successful, Some(1))]),
                terminating: true,
                now: 60,
                due: None,
                wakeup: Some(6),
            },
        ];
        for case in cases {
            let metrics = [metric("m", case.settings)];
            let tasks = due_tasks(&metrics, &case.status, case.terminating, ts(case.now));
            assert_eq!(
                tasks.first().map(|t| t.kind),
                case.due,
                "{}: tasks",
                case.name
            );
            assert_eq!(
                next_wakeup(&metrics, &case.status),
                case.wakeup.map(ts),
                "{}: wakeup",
                case.name
            );
        }
    }

    #[test]
    fn a_resume_time_in_the_future_waits() {
        let mut s = status(Some(0), "m", &[(AnalysisPhase::Running, None)]);
        let last = &mut s.metric_results.as_mut().unwrap()[0]
            .measurements
            .as_mut()
            .unwrap()[0];
        last.resume_at = Some(Time(ts(20)));
        let metrics = [metric("m", once())];
        assert!(due_tasks(&metrics, &s, false, ts(10)).is_empty());
        assert_eq!(due_tasks(&metrics, &s, false, ts(20)).len(), 1);
        assert_eq!(next_wakeup(&metrics, &s), Some(ts(20)));
    }

    #[test]
    fn completed_metrics_are_left_alone_and_wakeup_is_the_earliest() {
        let mut s = status(Some(0), "a", &[(AnalysisPhase::Successful, Some(1))]);
        s.metric_results.as_mut().unwrap()[0].phase = AnalysisPhase::Successful;
        let mut b = status(Some(0), "b", &[(AnalysisPhase::Successful, Some(2))])
            .metric_results
            .unwrap();
        s.metric_results.as_mut().unwrap().append(&mut b);
        let metrics = [
            metric("a", every(1, None)),
            metric("b", every(7, None)),
            metric("c", every(3, None)),
        ];
        let tasks = due_tasks(&metrics, &s, false, ts(5));
        assert_eq!(
            tasks,
            [Task {
                metric: 2,
                kind: TaskKind::Measure
            }],
            "only c (never measured) is due"
        );
        assert_eq!(next_wakeup(&metrics, &s), Some(ts(9)));
    }

    #[test]
    fn ttl() {
        let strategy = TtlStrategy {
            seconds_after_completion: Some(60),
            seconds_after_failure: Some(600),
            seconds_after_success: None,
        };
        let done = |phase| AnalysisRunStatus {
            phase: Some(phase),
            completed_at: Some(Time(ts(100))),
            ..Default::default()
        };
        assert_eq!(
            ttl_deadline(Some(&strategy), &done(AnalysisPhase::Successful)),
            Some(ts(160))
        );
        assert_eq!(
            ttl_deadline(Some(&strategy), &done(AnalysisPhase::Failed)),
            Some(ts(700))
        );
        assert_eq!(
            ttl_deadline(Some(&strategy), &done(AnalysisPhase::Error)),
            Some(ts(160))
        );
        assert_eq!(
            ttl_deadline(Some(&strategy), &done(AnalysisPhase::Running)),
            None
        );
        assert_eq!(ttl_deadline(None, &done(AnalysisPhase::Failed)), None);
        let only_success = TtlStrategy {
            seconds_after_success: Some(5),
            ..Default::default()
        };
        assert_eq!(
            ttl_deadline(Some(&only_success), &done(AnalysisPhase::Successful)),
            Some(ts(105))
        );
        assert_eq!(
            ttl_deadline(Some(&only_success), &done(AnalysisPhase::Failed)),
            None
        );
    }
}
