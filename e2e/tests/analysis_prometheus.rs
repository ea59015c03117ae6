//! Analysis against a real Prometheus (Debian's package, 1 s scrapes) scraping demo-app
//! processes that a load generator keeps busy, judged by Ramp's runner on the test cluster.
//!
//! - a healthy version passes `result[0] < 0.01` on its error rate;
//! - a version answering 10% 5xx fails it, with Argo's message;
//! - Prometheus stopped mid-run: Error after consecutiveErrorLimit, never Successful;
//! - an empty vector does not pass `len(result) > 0 && …`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ramp_analysis::api::{AnalysisPhase, AnalysisRun, Metric};
use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::analysis::{
    AnalysisRunner, error_rate_metric, error_rate_query, phase, run, wait_for_completion,
    wait_for_run,
};
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::fixtures::loadgen::{LoadGenerator, LoadOptions, WeightSource};
use ramp_e2e::fixtures::prometheus::{Prometheus, ScrapeTarget};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A demo app version under load, scraped by its own Prometheus.
struct World {
    app: DemoApp,
    prometheus: Prometheus,
    _load: LoadGenerator,
}

impl World {
    async fn start(version: &str, error_rate: f64) -> Result<World, Box<dyn std::error::Error>> {
        let app = DemoApp::start(DemoAppConfig::new(version, error_rate)).await?;
        let prometheus = Prometheus::start().await?;
        prometheus
            .set_targets(&[ScrapeTarget::new(app.address().to_string()).label("app", "demo")])?;
        let load = LoadGenerator::start(
            &app.url(),
            None,
            WeightSource::Fixed,
            LoadOptions::default(),
        );
        prometheus
            .wait_for_targets(1, Duration::from_secs(30))
            .await?;
        // The rate needs a few scrapes of traffic before it means anything.
        prometheus
            .wait_for_value(
                &error_rate_query(version),
                Duration::from_secs(30),
                f64::is_finite,
            )
            .await?;
        Ok(World {
            app,
            prometheus,
            _load: load,
        })
    }
}

fn values(run: &AnalysisRun) -> Vec<String> {
    run.status
        .iter()
        .flat_map(|s| s.metric_results.iter().flatten())
        .flat_map(|r| r.measurements.iter().flatten())
        .filter_map(|m| m.value.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_version_passes_and_a_bad_one_fails() -> TestResult {
    let env = for_test().await?;
    let good = World::start("v1", 0.0).await?;
    let bad_app = DemoApp::start(DemoAppConfig::new("v2", 0.1)).await?;
    good.prometheus.set_targets(&[
        ScrapeTarget::new(good.app.address().to_string()).label("app", "demo"),
        ScrapeTarget::new(bad_app.address().to_string()).label("app", "demo"),
    ])?;
    let _bad_load = LoadGenerator::start(
        &bad_app.url(),
        None,
        WeightSource::Fixed,
        LoadOptions::default(),
    );
    good.prometheus
        .wait_for_targets(2, Duration::from_secs(30))
        .await?;
    good.prometheus
        .wait_for_value(&error_rate_query("v2"), Duration::from_secs(30), |v| {
            v > 0.05
        })
        .await?;

    let runner =
        AnalysisRunner::start(env.client(), env.namespace(), Some(good.prometheus.url())).await?;
    runner
        .create(run(
            "healthy",
            vec![error_rate_metric("error-rate", "v1", "1s", 3)],
        ))
        .await?;
    runner
        .create(run(
            "bad",
            vec![error_rate_metric("error-rate", "v2", "1s", 3)],
        ))
        .await?;

    let healthy = wait_for_completion(&runner.runs(), "healthy", Duration::from_secs(60)).await?;
    assert_eq!(
        phase(&healthy),
        AnalysisPhase::Successful,
        "{:?}",
        healthy.status
    );
    let recorded = values(&healthy);
    assert_eq!(recorded.len(), 3);
    assert!(recorded.iter().all(|v| v == "[0]"), "{recorded:?}");
    let result = &healthy
        .status
        .as_ref()
        .unwrap()
        .metric_results
        .as_ref()
        .unwrap()[0];
    assert_eq!(result.count, Some(3));
    assert_eq!(
        result.metadata.as_ref().unwrap()["ResolvedPrometheusQuery"],
        error_rate_query("v1")
    );

    let bad = wait_for_completion(&runner.runs(), "bad", Duration::from_secs(60)).await?;
    assert_eq!(phase(&bad), AnalysisPhase::Failed, "{:?}", bad.status);
    assert_eq!(
        bad.status.as_ref().unwrap().message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
    // One failing measurement ends it: the run stops at once.
    let recorded = values(&bad);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let rate: f64 = recorded[0].trim_matches(['[', ']']).parse()?;
    assert!(
        (0.05..0.15).contains(&rate),
        "a 10% error rate, measured {rate}"
    );

    let text = runner.metrics_text();
    let ns = env.namespace();
    assert!(
        text.contains(&format!(
            "analysis_run_info{{namespace=\"{ns}\",name=\"bad\",phase=\"Failed\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "analysis_run_metric_phase{{namespace=\"{ns}\",name=\"healthy\",metric=\"error-rate\",type=\"Prometheus\",dry_run=\"false\",phase=\"Successful\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("analysis_run_reconcile_count{"), "{text}");
    // The Analysis dashboard's values against thresholds: the number the condition compares
    // against, and the measured rate of the bad version.
    assert!(
        text.contains(&format!(
            "ramp_analysis_run_metric_threshold{{namespace=\"{ns}\",name=\"healthy\",metric=\"error-rate\",condition=\"success\"}} 0.01\n"
        )),
        "{text}"
    );
    let value_prefix = format!(
        "ramp_analysis_run_metric_value{{namespace=\"{ns}\",name=\"bad\",metric=\"error-rate\"}} "
    );
    let exported: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&value_prefix))
        .ok_or_else(|| format!("no {value_prefix}in\n{text}"))?
        .parse()?;
    assert!((exported - rate).abs() < 1e-9, "{exported} vs {rate}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_stopped_mid_run_is_an_error_never_a_pass() -> TestResult {
    let env = for_test().await?;
    let mut world = World::start("v1", 0.0).await?;
    let runner =
        AnalysisRunner::start(env.client(), env.namespace(), Some(world.prometheus.url())).await?;
    let metric = Metric {
        consecutive_error_limit: Some(IntOrString::Int(2)),
        ..error_rate_metric("error-rate", "v1", "1s", 30)
    };
    runner.create(run("outage", vec![metric])).await?;
    wait_for_run(
        &runner.runs(),
        "outage",
        Duration::from_secs(30),
        "two successes",
        |r| {
            r.status
                .as_ref()
                .and_then(|s| s.metric_results.as_ref())
                .is_some_and(|m| m[0].successful.unwrap_or(0) >= 2)
        },
    )
    .await?;
    world.prometheus.stop();

    // Watch every phase the run goes through until it ends.
    let runs = runner.runs();
    let began = std::time::Instant::now();
    let done = loop {
        let current = runs.get("outage").await?;
        let p = phase(&current);
        assert_ne!(
            p,
            AnalysisPhase::Successful,
            "a run whose Prometheus is down never passes"
        );
        if p.completed() {
            break current;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no verdict after 60s: {:?}",
            current.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(phase(&done), AnalysisPhase::Error);
    let status = done.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.starts_with(
            "Metric \"error-rate\" assessed Error due to consecutiveErrors (3) > consecutiveErrorLimit (2): \"Error Message: querying http://127.0.0.1:"
        ),
        "{message}"
    );
    let result = &status.metric_results.unwrap()[0];
    assert_eq!(result.error, Some(3));
    // Errors were retried 10 s apart.
    let errors: Vec<i64> = result
        .measurements
        .iter()
        .flatten()
        .filter(|m| m.phase == AnalysisPhase::Error)
        .filter_map(|m| m.finished_at.as_ref().map(|t| t.0.as_second()))
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(
        errors
            .windows(2)
            .all(|w| (10..=11).contains(&(w[1] - w[0]))),
        "{errors:?}"
    );
    drop(world.app);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_vector_does_not_pass() -> TestResult {
    let env = for_test().await?;
    let world = World::start("v1", 0.0).await?;
    let runner =
        AnalysisRunner::start(env.client(), env.namespace(), Some(world.prometheus.url())).await?;
    let guarded = Metric {
        success_condition: Some("len(result) > 0 && result[0] < 0.01".into()),
        ..error_rate_metric("no-such-version", "v9", "1s", 1)
    };
    runner.create(run("empty", vec![guarded])).await?;
    let done = wait_for_completion(&runner.runs(), "empty", Duration::from_secs(30)).await?;
    assert_eq!(phase(&done), AnalysisPhase::Failed, "{:?}", done.status);
    assert_eq!(values(&done), ["[]"]);
    Ok(())
}
