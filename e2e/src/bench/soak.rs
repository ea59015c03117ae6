//! `bench soak --minutes N`: does the controller's memory stay flat under continuous work?
//!
//! The release `ramp-controller run` runs as its own process (as in [`super::scale`]) on a
//! private cluster, while `--rollouts` canary Rollouts are updated again and again for
//! `--minutes`: each cycle changes the image, goes through the steps
//! (setWeight 25, a 1 s pause, setWeight 50, an indefinite pause) and is then promoted to the
//! end (setWeight 75, a 1 s pause, Healthy), except every `--abort-every`th cycle, which is
//! aborted at the indefinite pause instead (back to stable, Degraded) and left for the next
//! image update to replace.
//!
//! The controller's RSS is sampled every `--sample-seconds`; the report gives the slope of a
//! least-squares line through the samples after `--warmup-seconds` (MiB per hour; goal: 0),
//! beside the first, last and largest sample, the cycles completed, aborted and timed out,
//! the API writes per cycle, and how many series `/metrics` holds before and after (series
//! labelled with the names of objects that come and go grow with every cycle).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ramp_controller::api::{Rollout, RolloutPhase};
use serde_json::json;

use super::cluster::{drop_namespace, fresh_namespace};
use super::scale::{ControllerProcess, controller_binary, fresh_cluster, rss_and_cpu, writes};
use super::{BenchError, CommonFlags, Report, output_dir, parse_flags};
use crate::fixtures::rollouts::{
    abort, canary_rollout, healthy, install_rollout_crds, phase, promote,
};

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// How long the Rollouts are kept busy.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Rollouts updated side by side.
    #[arg(long, default_value_t = 10)]
    rollouts: usize,
    /// Every Nth cycle of a Rollout is aborted instead of promoted.
    #[arg(long, default_value_t = 5)]
    abort_every: usize,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 5)]
    sample_seconds: u64,
    /// Samples of the first seconds (caches filling, allocator arenas growing) are left out
    /// of the slope; at most a fifth of the run.
    #[arg(long, default_value_t = 120)]
    warmup_seconds: u64,
}

/// Index of the indefinite pause among the steps.
const INDEFINITE_PAUSE: i32 = 3;

fn steps() -> serde_json::Value {
    json!({"steps": [
        {"setWeight": 25}, {"pause": {"duration": "1s"}},
        {"setWeight": 50}, {"pause": {}},
        {"setWeight": 75}, {"pause": {"duration": "1s"}}
    ]})
}

/// Least-squares fit `y = a + b·x`: `(b, r²)`; `(NaN, NaN)` with fewer than two distinct x.
pub fn linear_fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    if sxx == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    (slope, r2)
}

/// Counts of what the cycles did.
#[derive(Default)]
struct Outcomes {
    promoted: AtomicUsize,
    aborted: AtomicUsize,
    timed_out: AtomicUsize,
}

/// Polls the Rollout until `check` holds; false after `limit`.
async fn until(
    api: &Api<Rollout>,
    name: &str,
    limit: Duration,
    check: impl Fn(&Rollout) -> bool,
) -> bool {
    let began = Instant::now();
    while began.elapsed() < limit {
        if let Ok(Some(rollout)) = api.get_opt(name).await
            && check(&rollout)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn at_indefinite_pause(rollout: &Rollout) -> bool {
    let status = rollout.status.as_ref();
    phase(rollout) == Some(RolloutPhase::Paused)
        && status.and_then(|s| s.current_step_index) == Some(INDEFINITE_PAUSE)
        && status
            .and_then(|s| s.pause_conditions.as_ref())
            .is_some_and(|c| !c.is_empty())
}

fn promoted(rollout: &Rollout) -> bool {
    let status = rollout.status.as_ref();
    healthy(rollout)
        && status.and_then(|s| s.stable_rs.as_ref()).is_some()
        && status.and_then(|s| s.stable_rs.as_ref())
            == status.and_then(|s| s.current_pod_hash.as_ref())
}

fn aborted(rollout: &Rollout) -> bool {
    rollout.status.as_ref().and_then(|s| s.abort) == Some(true)
        && phase(rollout) == Some(RolloutPhase::Degraded)
}

/// One Rollout's cycles until `deadline`.
async fn keep_busy(
    api: Api<Rollout>,
    name: String,
    deadline: Instant,
    abort_every: usize,
    outcomes: Arc<Outcomes>,
) -> Result<(), BenchError> {
    let limit = Duration::from_secs(120);
    let mut cycle = 0usize;
    while Instant::now() < deadline {
        cycle += 1;
        let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("soak/{name}:{cycle}")}]}}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(image))
            .await
            .map_err(|source| BenchError::Kube {
                what: format!("updating the image of Rollout {name}"),
                source,
            })?;
        if !until(&api, &name, limit, at_indefinite_pause).await {
            outcomes.timed_out.fetch_add(1, Ordering::Relaxed);
            eprintln!("Rollout {name}, cycle {cycle}: not at its indefinite pause after {limit:?}");
            continue;
        }
        let aborting = abort_every > 0 && cycle.is_multiple_of(abort_every);
        let (done, outcome) = if aborting {
            abort(&api, &name).await.map_err(BenchError::Failed)?;
            (until(&api, &name, limit, aborted).await, &outcomes.aborted)
        } else {
            promote(&api, &name).await.map_err(BenchError::Failed)?;
            (
                until(&api, &name, limit, promoted).await,
                &outcomes.promoted,
            )
        };
        if done {
            outcome.fetch_add(1, Ordering::Relaxed);
        } else {
            outcomes.timed_out.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "Rollout {name}, cycle {cycle}: not {} after {limit:?}",
                if aborting { "aborted" } else { "promoted" }
            );
        }
    }
    Ok(())
}

/// `bench soak`.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("soak", args)?;
    if flags.minutes == 0 || flags.rollouts == 0 || flags.sample_seconds == 0 {
        return Err(BenchError::Flags(
            "--minutes, --rollouts and --sample-seconds must be at least 1".into(),
        ));
    }
    let binary = controller_binary()?;
    let cluster = fresh_cluster().await?;
    let client = cluster.client();
    install_rollout_crds(&client)
        .await
        .map_err(BenchError::Failed)?;
    let report = soak(&client, cluster.kubeconfig_path(), &binary, &flags).await?;
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}

async fn soak(
    client: &Client,
    kubeconfig: &Path,
    binary: &Path,
    flags: &Flags,
) -> Result<Report, BenchError> {
    let namespace = fresh_namespace(client, "bench-soak").await?;
    let api: Api<Rollout> = Api::namespaced(client.clone(), &namespace);
    let names: Vec<String> = (0..flags.rollouts)
        .map(|i| format!("soak-{i:03}"))
        .collect();
    for name in &names {
        api.create(
            &PostParams::default(),
            &canary_rollout(name, 2, &format!("soak/{name}:0"), steps()),
        )
        .await
        .map_err(|source| BenchError::Kube {
            what: format!("creating Rollout {name}"),
            source,
        })?;
    }
    let log = output_dir(&flags.common)
        .join("logs")
        .join("controller-soak.log");
    let controller = ControllerProcess::start(binary, kubeconfig, &namespace, &log)?;
    for name in &names {
        if !until(&api, name, Duration::from_secs(120), healthy).await {
            return Err(BenchError::Failed(format!(
                "Rollout {name} was not Healthy 120 s after the controller started"
            )));
        }
    }
    let pid = controller.pid()?;
    let metrics_before = controller.scrape().await.unwrap_or_default();
    let writes_before = writes(&metrics_before);
    let (_, cpu_before) = rss_and_cpu(pid)?;

    let duration = Duration::from_secs(flags.minutes * 60);
    let began = Instant::now();
    let deadline = began + duration;
    let outcomes = Arc::new(Outcomes::default());
    let mut workers = tokio::task::JoinSet::new();
    for name in &names {
        workers.spawn(keep_busy(
            api.clone(),
            name.clone(),
            deadline,
            flags.abort_every,
            outcomes.clone(),
        ));
    }
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let interval = Duration::from_secs(flags.sample_seconds);
    let mut next_report = began + Duration::from_secs(60);
    while Instant::now() < deadline {
        tokio::time::sleep(interval).await;
        let (rss, _) = rss_and_cpu(pid)?;
        let hours = began.elapsed().as_secs_f64() / 3600.0;
        samples.push((hours, rss));
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            eprintln!(
                "{:5.1} min: RSS {rss:.1} MiB, {} promoted, {} aborted, {} timed out",
                hours * 60.0,
                outcomes.promoted.load(Ordering::Relaxed),
                outcomes.aborted.load(Ordering::Relaxed),
                outcomes.timed_out.load(Ordering::Relaxed)
            );
        }
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| BenchError::Failed(format!("a soak worker panicked: {e}")))??;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let (rss_end, cpu_after) = rss_and_cpu(pid)?;
    let metrics_after = controller.scrape().await.unwrap_or_default();
    let writes_after = writes(&metrics_after);
    controller.stop().await?;
    drop_namespace(client, &namespace).await?;

    let warmup_hours = (flags.warmup_seconds as f64).min(duration.as_secs_f64() / 5.0) / 3600.0;
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(hours, _)| *hours >= warmup_hours)
        .collect();
    let (slope, r2) = linear_fit(&steady);
    let promoted = outcomes.promoted.load(Ordering::Relaxed);
    let aborted = outcomes.aborted.load(Ordering::Relaxed);
    let timed_out = outcomes.timed_out.load(Ordering::Relaxed);
    let cycles = (promoted + aborted).max(1);
    let rss_max = samples.iter().map(|s| s.1).fold(f64::NAN, f64::max);

    let mut report = Report::new("soak");
    report.add("minutes", elapsed / 60.0, "minutes of continuous rollouts");
    report.add(
        "rollouts",
        flags.rollouts as f64,
        "Rollouts updated side by side",
    );
    report.add(
        "rss_slope_mib_per_h",
        slope,
        "RSS trend after the warm-up: least-squares slope, MiB per hour (goal 0)",
    );
    report.add(
        "rss_fit_r2",
        r2,
        "r² of that line (near 0: no trend, only noise)",
    );
    report.add(
        "rss_after_warmup_mb",
        steady.first().map_or(f64::NAN, |s| s.1),
        "RSS at the end of the warm-up, MiB",
    );
    report.add("rss_end_mb", rss_end, "RSS at the end, MiB");
    report.add("rss_max_mb", rss_max, "largest RSS sample, MiB");
    report.add("rss_samples", samples.len() as f64, "RSS samples taken");
    report.add(
        "cpu_cores",
        (cpu_after - cpu_before) / elapsed.max(1.0),
        "controller CPU over the soak, cores",
    );
    report.add(
        "updates_promoted",
        promoted as f64,
        "image updates promoted to Healthy",
    );
    report.add(
        "updates_aborted",
        aborted as f64,
        "image updates aborted back to stable",
    );
    report.add(
        "cycles_timed_out",
        timed_out as f64,
        "cycles that missed a state within 120 s (goal 0)",
    );
    report.add(
        "cycles_per_min",
        (promoted + aborted) as f64 * 60.0 / elapsed.max(1.0),
        "completed cycles per minute",
    );
    report.add(
        "writes_per_cycle",
        (writes_after - writes_before) / cycles as f64,
        "controller API writes per completed cycle",
    );
    report.add(
        "metric_series_start",
        series(&metrics_before),
        "series in the controller's /metrics before the soak",
    );
    report.add(
        "metric_series_end",
        series(&metrics_after),
        "series in /metrics after it (growth: labels naming objects that come and go)",
    );
    Ok(report)
}

/// Samples (non-comment lines) of a Prometheus exposition.
fn series(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_finds_a_slope_and_ignores_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 50.0 + 2.0 * i as f64)).collect();
        let (slope, r2) = linear_fit(&line);
        assert!(
            (slope - 2.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9,
            "{slope} {r2}"
        );
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64, if i % 2 == 0 { 50.0 } else { 51.0 }))
            .collect();
        let (slope, r2) = linear_fit(&flat);
        assert!(slope.abs() < 0.1 && r2 < 0.1, "{slope} {r2}");
        assert!(linear_fit(&[(1.0, 2.0)]).0.is_nan());
        assert!(linear_fit(&[(1.0, 2.0), (1.0, 3.0)]).0.is_nan());
    }
}
