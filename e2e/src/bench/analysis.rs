//! `bench analysis --runs 5 --parallel 10 --count 10`: how punctually the AnalysisRun runner
//! takes measurements (goal: within 100 ms of their schedule), in a private test cluster with
//! the runner in-process and a demo app answering its web metric.
//!
//! Each round creates `--parallel` runs at once, each measuring `--count` times every
//! `--interval`. The lateness of a measurement is read off the finished run's status, which
//! keeps times to the nanosecond: its `startedAt` against when it was due, i.e. the previous
//! measurement's `finishedAt` plus the interval (10 s after an error), Argo's rule. The first
//! measurement of a run is taken in the pass that starts the run, so it is left out. p50, p99
//! and the worst over all measurements of all rounds; the rounds' medians of p99 with their
//! spread.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun};
use serde_json::json;

use super::cluster::{drop_namespace, fresh_namespace, timed_start};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::ClusterOptions;
use crate::fixtures::analysis::{AnalysisRunner, wait_for_completion};
use crate::fixtures::demo_app::{DemoApp, DemoAppConfig};

#[derive(Debug, clap::Parser)]
struct AnalysisFlags {
    #[command(flatten)]
    common: CommonFlags,
    /// AnalysisRuns measuring at the same time in each round.
    #[arg(long, default_value_t = 10)]
    parallel: usize,
    /// Measurements per run.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Interval between measurements, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

/// How long after an errored measurement the next is due (Argo's rule, as the runner's).
const ERROR_RETRY: Duration = ramp_analysis::schedule::ERROR_RETRY_INTERVAL;

/// `bench analysis`.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: AnalysisFlags = parse_flags("analysis", args)?;
    let rounds = flags.common.runs.max(1);
    let interval = Duration::from_millis(flags.interval_ms.max(1));
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    let app = DemoApp::start(DemoAppConfig::new("v1", 0.0))
        .await
        .map_err(|e| BenchError::Failed(format!("starting the demo app: {e}")))?;

    let mut all = Samples::new();
    let mut round_p99 = Samples::new();
    let mut errors = 0usize;
    for round in 0..rounds {
        let namespace = fresh_namespace(&client, "bench-analysis").await?;
        let runner = AnalysisRunner::start(client.clone(), &namespace, None)
            .await
            .map_err(BenchError::Failed)?;
        let names: Vec<String> = (0..flags.parallel.max(1))
            .map(|i| format!("punctual-{round}-{i}"))
            .collect();
        let creates = names.iter().map(|name| {
            let run = web_run(name, &app.url(), interval, flags.count);
            let api = runner.runs();
            async move {
                api.create(&PostParams::default(), &run)
                    .await
                    .map_err(|source| BenchError::Kube {
                        what: format!("creating AnalysisRun {name}"),
                        source,
                    })
            }
        });
        for created in futures::future::join_all(creates).await {
            created?;
        }
        let limit = interval * (flags.count + 2) + Duration::from_secs(60);
        let mut round_samples = Samples::new();
        for name in &names {
            let done = wait_for_completion(&runner.runs(), name, limit)
                .await
                .map_err(BenchError::Failed)?;
            let phase = done.status.as_ref().and_then(|s| s.phase);
            if phase != Some(AnalysisPhase::Successful) {
                return Err(BenchError::Failed(format!(
                    "AnalysisRun {name} ended {phase:?}: {}",
                    serde_json::to_string(&done.status).unwrap_or_default()
                )));
            }
            let (late, errored) = lateness_ms(&done, interval);
            errors += errored;
            for ms in late {
                round_samples.push(ms);
                all.push(ms);
            }
        }
        round_p99.push(round_samples.quantile(0.99));
        drop(runner);
        drop_namespace(&client, &namespace).await?;
        eprintln!(
            "round {}/{rounds}: {} measurements, lateness p50 {:.1} ms, p99 {:.1} ms",
            round + 1,
            round_samples.len(),
            round_samples.median(),
            round_samples.quantile(0.99)
        );
    }

    let mut report = Report::new("analysis");
    report.add(
        "measurements",
        all.len() as f64,
        "scheduled measurements judged (the first of each run left out)",
    );
    report.add(
        "errored_measurements",
        errors as f64,
        "measurements that errored (due 10 s after, not an interval)",
    );
    report.add(
        "lateness_p50_ms",
        all.median(),
        "measurement startedAt − due time (previous finishedAt + interval), p50",
    );
    report.add(
        "lateness_p99_ms",
        all.quantile(0.99),
        "the same, p99 (goal ≤ 100 ms)",
    );
    report.add("lateness_max_ms", all.max(), "the same, worst measurement");
    report.add_median(
        "round_lateness_p99_ms",
        &round_p99,
        "p99 of each round (median over rounds)",
    );
    report.add(
        "lateness_p99_goal_ratio",
        all.quantile(0.99) / 100.0,
        "p99 / the 100 ms goal",
    );
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}

/// A run measuring the demo app's `/check` `count` times, `interval` apart.
fn web_run(name: &str, app_url: &str, interval: Duration, count: u32) -> AnalysisRun {
    let value = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name},
        "spec": {
            "measurementRetention": [{"metricName": ".*", "limit": count}],
            "metrics": [{
                "name": "error-rate",
                "interval": format!("{}ms", interval.as_millis()),
                "count": count,
                "successCondition": "result < 0.05",
                "provider": {"web": {"url": format!("{app_url}/check"), "jsonPath": "{$.errorRate}"}}
            }]
        }
    });
    serde_json::from_value(value).expect("a well-formed AnalysisRun")
}

/// Lateness in milliseconds of every measurement but each metric's first, and how many
/// measurements errored.
fn lateness_ms(run: &AnalysisRun, interval: Duration) -> (Vec<f64>, usize) {
    let mut late = Vec::new();
    let mut errored = 0;
    for result in run
        .status
        .iter()
        .flat_map(|s| s.metric_results.iter().flatten())
    {
        let measurements: Vec<_> = result.measurements.iter().flatten().collect();
        errored += measurements
            .iter()
            .filter(|m| m.phase == AnalysisPhase::Error)
            .count();
        for pair in measurements.windows(2) {
            let (Some(finished), Some(started)) = (&pair[0].finished_at, &pair[1].started_at)
            else {
                continue;
            };
            let wait = if pair[0].phase == AnalysisPhase::Error {
                ERROR_RETRY
            } else {
                interval
            };
            late.push(ms_between(due(finished.0, wait), started.0));
        }
    }
    (late, errored)
}

fn due(finished: Timestamp, wait: Duration) -> Timestamp {
    ramp_analysis::schedule::after(finished, wait)
}

/// `to − from` in milliseconds (negative when early).
fn ms_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_measured_from_the_previous_finish() {
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "r"},
            "spec": {"metrics": []},
            "status": {"phase": "Successful", "metricResults": [{"name": "m", "phase": "Successful", "measurements": [
                {"phase": "Successful", "startedAt": "2026-12-04T03:00:00.000Z", "finishedAt": "2026-12-04T03:00:00.010Z"},
                {"phase": "Error", "startedAt": "2026-12-04T03:00:01.015Z", "finishedAt": "2026-12-04T03:00:01.020Z"},
                {"phase": "Successful", "startedAt": "2026-12-04T03:00:11.070Z", "finishedAt": "2026-12-04T03:00:11.080Z"}
            ]}]}
        }))
        .unwrap();
        let (late, errored) = lateness_ms(&run, Duration::from_secs(1));
        assert_eq!(errored, 1);
        assert_eq!(late.len(), 2);
        assert!((late[0] - 5.0).abs() < 1e-6, "{late:?}");
        assert!((late[1] - 50.0).abs() < 1e-6, "{late:?}");
    }
}
