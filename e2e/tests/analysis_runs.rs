//! AnalysisRuns on the test cluster, judged by Ramp's runner: web metrics against the demo
//! app (on schedule to the 100 ms), Job metrics ended by the simulated kubelet, a run created
//! with `kubectl create -f`, runs built from (cluster) templates, Secret args, dry-run,
//! termination, TTL cleanup and spec errors.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use ramp_analysis::api::{
    AnalysisPhase, AnalysisRun, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec,
    Argument, ClusterAnalysisTemplate, ClusterAnalysisTemplateSpec, DryRun, JobMetric, Metric,
    MetricProvider, SecretKeyRef, TtlStrategy, ValueFrom, WebMetric, WebMetricHeader,
};
use ramp_analysis::build::fetch_templates;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::analysis::{AnalysisRunner, phase, run, wait_for_completion, wait_for_run};
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VERDICT: Duration = Duration::from_secs(60);

fn web_metric(name: &str, url: &str, json_path: &str, condition: &str) -> Metric {
    Metric {
        name: name.to_string(),
        success_condition: Some(condition.to_string()),
        provider: MetricProvider {
            web: Some(WebMetric {
                url: url.to_string(),
                json_path: Some(json_path.to_string()),
                ..WebMetric::default()
            }),
            ..MetricProvider::default()
        },
        ..Metric::default()
    }
}

fn job_metric(name: &str, script: &str) -> Metric {
    Metric {
        name: name.to_string(),
        provider: MetricProvider {
            job: Some(JobMetric {
                metadata: None,
                spec: JobSpec {
                    backoff_limit: Some(0),
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            restart_policy: Some("Never".to_string()),
                            containers: vec![Container {
                                name: "check".to_string(),
                                image: Some("busybox:1.36".to_string()),
                                command: Some(vec![
                                    "sh".to_string(),
                                    "-c".to_string(),
                                    script.to_string(),
                                ]),
                                ..Container::default()
                            }],
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                },
            }),
            ..MetricProvider::default()
        },
        ..Metric::default()
    }
}

fn status_json(run: &AnalysisRun) -> String {
    serde_json::to_string(&run.status).unwrap_or_default()
}

async fn start(env: &TestEnv) -> Result<AnalysisRunner, String> {
    AnalysisRunner::start(env.client(), env.namespace(), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_metrics_against_the_demo_app_run_on_schedule() -> TestResult {
    let env = for_test().await?;
    let app = DemoApp::start(DemoAppConfig::new("v1", 0.0)).await?;
    let runner = start(&env).await?;
    let metric = Metric {
        interval: Some("1s".into()),
        count: Some(IntOrString::Int(5)),
        ..web_metric(
            "error-rate",
            &format!("{}/check", app.url()),
            "{$.errorRate}",
            "result < 0.05",
        )
    };
    runner.create(run("web", vec![metric])).await?;
    let done = wait_for_completion(&runner.runs(), "web", VERDICT).await?;
    assert_eq!(
        phase(&done),
        AnalysisPhase::Successful,
        "{}",
        status_json(&done)
    );
    let result = &done
        .status
        .as_ref()
        .unwrap()
        .metric_results
        .as_ref()
        .unwrap()[0];
    assert_eq!(result.count, Some(5));
    assert!(
        result
            .measurements
            .iter()
            .flatten()
            .all(|m| m.value.as_deref() == Some("0"))
    );

    // Each measurement is due at the previous one's finish + 1 s; the demo app sees each
    // call at most 100 ms after that (the previous finish is a few ms after its call).
    let calls = app.state().check_calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    let gaps: Vec<Duration> = calls
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_secs(1) && *g < Duration::from_millis(1100)),
        "gaps between measurements: {gaps:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_runner_neither_repeats_nor_skips() -> TestResult {
    let env = for_test().await?;
    let app = DemoApp::start(DemoAppConfig::new("v1", 0.0)).await?;
    let metric = Metric {
        interval: Some("1s".into()),
        count: Some(IntOrString::Int(6)),
        ..web_metric(
            "check",
            &format!("{}/check", app.url()),
            "{$.errors}",
            "result == 0",
        )
    };
    let runner = start(&env).await?;
    runner.create(run("restart", vec![metric])).await?;
    wait_for_run(
        &runner.runs(),
        "restart",
        VERDICT,
        "two measurements",
        |r| {
            r.status
                .as_ref()
                .and_then(|s| s.metric_results.as_ref())
                .is_some_and(|m| m[0].count.unwrap_or(0) >= 2)
        },
    )
    .await?;
    drop(runner);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runner = start(&env).await?;
    let done = wait_for_completion(&runner.runs(), "restart", VERDICT).await?;
    assert_eq!(
        phase(&done),
        AnalysisPhase::Successful,
        "{}",
        status_json(&done)
    );
    let calls = app.state().check_calls();
    assert_eq!(
        calls.len(),
        6,
        "exactly count measurements across the restart"
    );
    let gaps: Vec<Duration> = calls
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect();
    // The status keeps the last finish to the nanosecond, so the restarted runner's next
    // measurement is due exactly an interval after it: never early.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_secs(1)),
        "{gaps:?}"
    );
    let stored = runner.runs().get_status("restart").await?;
    let measurement = &stored
        .status
        .as_ref()
        .unwrap()
        .metric_results
        .as_ref()
        .unwrap()[0]
        .measurements
        .as_ref()
        .unwrap()[0];
    let finished = measurement.finished_at.as_ref().unwrap().0;
    assert_ne!(
        finished.subsec_nanosecond(),
        0,
        "finishedAt is stored with its fraction of a second"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_created_with_kubectl_runs() -> TestResult {
    let env = for_test().await?;
    let app = DemoApp::start(DemoAppConfig::new("v2", 0.1)).await?;
    let runner = start(&env).await?;
    let manifest = format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: by-hand
spec:
  args:
  - name: base-url
    value: {url}
  metrics:
  - name: demo-health
    successCondition: result == true
    provider:
      web:
        url: "{{{{args.base-url}}}}/check"
        jsonPath: "{{$.healthy}}"
"#,
        url = app.url()
    );
    let out = env
        .kubectl_with_stdin(&["create", "-f", "-"], &manifest)
        .await?;
    assert!(
        out.contains("analysisrun.argoproj.io/by-hand created"),
        "{out}"
    );
    let done = wait_for_completion(&runner.runs(), "by-hand", VERDICT).await?;
    // v2 answers 10% errors, so /check reports healthy: false.
    assert_eq!(
        phase(&done),
        AnalysisPhase::Failed,
        "{}",
        status_json(&done)
    );
    let shown = env.run_kubectl(&["get", "analysisrun", "by-hand"]).await?;
    assert!(shown.contains("Failed"), "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_metrics_follow_the_job() -> TestResult {
    let env = for_test().await?;
    let runner = start(&env).await?;
    runner
        .create(run("job-ok", vec![job_metric("smoke", "exit 0")]))
        .await?;
    runner
        .create(run("job-fails", vec![job_metric("smoke", "exit 1")]))
        .await?;
    runner
        .create(run("job-slow", vec![job_metric("soak", "sleep 300")]))
        .await?;

    let ok = wait_for_completion(&runner.runs(), "job-ok", VERDICT).await?;
    assert_eq!(
        phase(&ok),
        AnalysisPhase::Successful,
        "{}",
        status_json(&ok)
    );
    let fails = wait_for_completion(&runner.runs(), "job-fails", VERDICT).await?;
    assert_eq!(
        phase(&fails),
        AnalysisPhase::Failed,
        "{}",
        status_json(&fails)
    );

    // The Jobs are owned by their runs.
    let jobs: Api<Job> = Api::namespaced(env.client(), env.namespace());
    let uid = ok.uid().unwrap_or_default();
    let owned = jobs
        .list(&ListParams::default().labels(&format!("analysisrun.argoproj.io/uid={uid}")))
        .await?;
    assert_eq!(owned.items.len(), 1);
    let owner = &owned.items[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AnalysisRun", "job-ok")
    );

    // Terminating a run with a Job in flight deletes the Job; the run ends Successful.
    let slow = wait_for_run(&runner.runs(), "job-slow", VERDICT, "a running Job", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.metric_results.as_ref())
            .and_then(|m| m[0].measurements.as_ref())
            .is_some_and(|m| m[0].phase == AnalysisPhase::Running)
    })
    .await?;
    let job_name = slow.status.unwrap().metric_results.unwrap()[0]
        .measurements
        .as_ref()
        .unwrap()[0]
        .metadata
        .as_ref()
        .unwrap()["job-name"]
        .clone();
    runner
        .runs()
        .patch(
            "job-slow",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"terminate": true}})),
        )
        .await?;
    let terminated = wait_for_completion(&runner.runs(), "job-slow", VERDICT).await?;
    assert_eq!(phase(&terminated), AnalysisPhase::Successful);
    let status = terminated.status.unwrap();
    assert_eq!(status.message.as_deref(), Some("Run Terminated"));
    let measurement = &status.metric_results.unwrap()[0]
        .measurements
        .clone()
        .unwrap()[0];
    assert_eq!(measurement.message.as_deref(), Some("Metric Terminated"));
    let began = std::time::Instant::now();
    while jobs.get_opt(&job_name).await?.is_some() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "Job {job_name} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_built_from_templates_with_secret_args() -> TestResult {
    let env = for_test().await?;
    let app = DemoApp::start(DemoAppConfig {
        token: Some("t0ps3cret".into()),
        ..DemoAppConfig::new("v1", 0.0)
    })
    .await?;
    let runner = start(&env).await?;
    let ns = env.namespace().to_string();
    let secrets: Api<Secret> = Api::namespaced(env.client(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("demo-token".into()),
                    ..ObjectMeta::default()
                },
                string_data: Some(BTreeMap::from([("token".into(), "t0ps3cret".into())])),
                ..Secret::default()
            },
        )
        .await?;

    // A cluster template (named after the namespace: cluster-scoped names are shared) holding
    // the secured check, included by a namespaced template that adds a second metric.
    let cluster_name = format!("{ns}-secure-check");
    let cluster_templates: Api<ClusterAnalysisTemplate> = Api::all(env.client());
    let secure = Metric {
        provider: MetricProvider {
            web: Some(WebMetric {
                url: "{{args.base-url}}/secure".into(),
                headers: Some(vec![WebMetricHeader {
                    key: "Authorization".into(),
                    value: "Bearer {{args.token}}".into(),
                }]),
                json_path: Some("{$.version}".into()),
                ..WebMetric::default()
            }),
            ..MetricProvider::default()
        },
        ..web_metric("secure", "", "", "result == '{{args.version}}'")
    };
    cluster_templates
        .create(
            &PostParams::default(),
            &ClusterAnalysisTemplate::new(
                &cluster_name,
                ClusterAnalysisTemplateSpec(AnalysisTemplateSpec {
                    args: Some(vec![
                        Argument {
                            name: "base-url".into(),
                            ..Argument::default()
                        },
                        Argument {
                            name: "token".into(),
                            value_from: Some(ValueFrom {
                                secret_key_ref: Some(SecretKeyRef {
                                    name: "demo-token".into(),
                                    key: "token".into(),
                                }),
                                field_ref: None,
                            }),
                            ..Argument::default()
                        },
                        Argument {
                            name: "version".into(),
                            value: Some("v1".into()),
                            ..Argument::default()
                        },
                    ]),
                    metrics: Some(vec![secure]),
                    ..AnalysisTemplateSpec::default()
                }),
            ),
        )
        .await?;
    let templates: Api<AnalysisTemplate> = Api::namespaced(env.client(), &ns);
    templates
        .create(
            &PostParams::default(),
            &AnalysisTemplate::new(
                "canary-checks",
                AnalysisTemplateSpec {
                    args: Some(vec![Argument {
                        name: "base-url".into(),
                        ..Argument::default()
                    }]),
                    metrics: Some(vec![web_metric(
                        "errors",
                        "{{args.base-url}}/check",
                        "{$.errors}",
                        "result == 0",
                    )]),
                    dry_run: Some(vec![DryRun {
                        metric_name: "errors".into(),
                    }]),
                    templates: Some(vec![AnalysisTemplateRef {
                        template_name: Some(cluster_name.clone()),
                        cluster_scope: Some(true),
                    }]),
                    ..AnalysisTemplateSpec::default()
                },
            ),
        )
        .await?;

    let fetched = fetch_templates(
        &env.client(),
        &ns,
        &[AnalysisTemplateRef {
            template_name: Some("canary-checks".into()),
            cluster_scope: None,
        }],
    )
    .await?;
    let spec = fetched.run_spec(
        vec![Argument {
            name: "base-url".into(),
            value: Some(app.url()),
            value_from: None,
        }],
        vec![],
        vec![],
    )?;
    let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["errors", "secure"]);
    let mut from_templates = run("from-templates", vec![]);
    from_templates.spec = spec;
    from_templates.spec.ttl_strategy = Some(TtlStrategy {
        seconds_after_success: Some(2),
        ..TtlStrategy::default()
    });
    runner.create(from_templates).await?;

    let done = wait_for_completion(&runner.runs(), "from-templates", VERDICT).await?;
    assert_eq!(
        phase(&done),
        AnalysisPhase::Successful,
        "{}",
        status_json(&done)
    );
    let status_text = status_json(&done);
    assert!(
        !status_text.contains("t0ps3cret"),
        "a Secret's value reached the status: {status_text}"
    );
    let dry = &done.status.as_ref().unwrap().dry_run_summary;
    assert_eq!(dry.as_ref().and_then(|d| d.count), Some(1));
    assert_eq!(
        app.state().check_calls().len(),
        2,
        "one /check and one /secure call"
    );

    // ttlStrategy.secondsAfterSuccess: the run goes 2 s after it completed.
    let began = std::time::Instant::now();
    while runner.runs().get_opt("from-templates").await?.is_some() {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the run outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A missing template is named.
    let err = fetch_templates(
        &env.client(),
        &ns,
        &[AnalysisTemplateRef {
            template_name: Some("nope".into()),
            cluster_scope: None,
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "AnalysisTemplate \"nope\" in namespace \"{ns}\" not found: create it, or fix the templateName that refers to it"
        )
    );
    cluster_templates
        .delete(&cluster_name, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spec_errors_end_the_run_in_error() -> TestResult {
    let env = for_test().await?;
    let runner = start(&env).await?;
    let missing_arg = web_metric("m", "http://127.0.0.1:9/{{args.path}}", "{$}", "true");
    runner.create(run("missing-arg", vec![missing_arg])).await?;
    let mut missing_secret = run(
        "missing-secret",
        vec![web_metric(
            "m",
            "http://127.0.0.1:9/{{args.token}}",
            "{$}",
            "true",
        )],
    );
    missing_secret.spec.args = Some(vec![Argument {
        name: "token".into(),
        value: None,
        value_from: Some(ValueFrom {
            secret_key_ref: Some(SecretKeyRef {
                name: "absent".into(),
                key: "token".into(),
            }),
            field_ref: None,
        }),
    }]);
    runner.create(missing_secret).await?;
    let invalid = Metric {
        count: Some(IntOrString::Int(3)),
        ..web_metric("m", "http://127.0.0.1:9/", "{$}", "true")
    };
    runner.create(run("invalid", vec![invalid])).await?;

    for (name, message) in [
        (
            "missing-arg",
            "Unable to resolve metric arguments: \"http://127.0.0.1:9/{{args.path}}\" uses {{args.path}}, but no argument of that name is defined",
        ),
        (
            "missing-secret",
            "Unable to resolve metric arguments: secret 'absent' (argument \"token\") does not exist",
        ),
        (
            "invalid",
            "Analysis spec invalid: metrics[0].interval: interval must be set when count > 1",
        ),
    ] {
        let done = wait_for_completion(&runner.runs(), name, VERDICT).await?;
        assert_eq!(phase(&done), AnalysisPhase::Error, "{name}");
        let got = done.status.unwrap().message.unwrap_or_default();
        assert!(got.starts_with(message), "{name}: {got}");
    }
    Ok(())
}
