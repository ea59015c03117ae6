//! The Grafana dashboards shipped in `charts/ramp/dashboards/`: every PromQL expression parses
//! (`promtool check rules`), and every metric they read is exported by a running
//! `ramp-controller` that has a Rollout, an AnalysisRun and an Application to report on.
//! Argo Rollouts' own dashboard must find its metrics too (all but the Go runtime's).

mod plugin_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use plugin_support::{ControllerProcess, ensure_command, python, workspace};
use ramp_controller::api::{AnalysisRun, Rollout};
use ramp_controller::gitops::Application;
use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::git::{GitDaemon, GitRepo};
use ramp_e2e::fixtures::gitops::{application, install_crds, wait_for};
use ramp_e2e::fixtures::rollouts::{canary_rollout, healthy, wait_rollout};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

/// Metrics a dashboard reads that another part of Ramp is to export, with who: reported, not
/// failed, while missing; an error once exported (then this entry must go).
const REQUESTED: [(&str, &str); 0] = [];

fn ramp_dashboards() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("charts/ramp/dashboards"))
        .expect("charts/ramp/dashboards exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn argo_dashboard() -> PathBuf {
    workspace().join("e2e/testdata/reference/argo-rollouts/examples/dashboard.json")
}

/// The expressions and metric names of a dashboard (from `e2e/scripts/dashboard_queries.py`),
/// with the expressions also written to `rules` as recording rules.
fn queries(dashboard: &Path, rules: &Path) -> Result<(Vec<String>, BTreeSet<String>), String> {
    let out = python(
        "dashboard_queries.py",
        &[
            &dashboard.to_string_lossy(),
            "--rules",
            &rules.to_string_lossy(),
        ],
    )?;
    let parsed: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let list = |key: &str| -> Vec<String> {
        parsed[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    Ok((list("expressions"), list("metrics").into_iter().collect()))
}

#[test]
fn every_expression_parses_with_promtool() -> TestResult {
    ensure_command("promtool", "prometheus")?;
    let scratch = tempfile::tempdir()?;
    let mut uids = BTreeSet::new();
    for dashboard in ramp_dashboards().into_iter().chain([argo_dashboard()]) {
        let name = dashboard
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let rules = scratch.path().join(format!("{name}.rules.yaml"));
        let (expressions, metrics) = queries(&dashboard, &rules)?;
        assert!(
            !expressions.is_empty() && !metrics.is_empty(),
            "{name}: no PromQL found"
        );
        let checked = std::process::Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules)
            .output()?;
        assert!(
            checked.status.success(),
            "promtool rejected an expression of {name}:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let report = String::from_utf8_lossy(&checked.stdout);
        assert!(
            report.contains(&format!("SUCCESS: {} rules found", expressions.len())),
            "{report}"
        );
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&dashboard)?)?;
        if dashboard != argo_dashboard() {
            assert!(
                uids.insert(json["uid"].as_str().unwrap_or_default().to_string()),
                "{name}: duplicate uid"
            );
            // Every panel queries the dashboard's data source variable.
            for panel in json["panels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["type"] != "row")
            {
                assert_eq!(
                    panel["datasource"]["uid"], "${datasource}",
                    "{name}: panel {}",
                    panel["title"]
                );
            }
        }
    }
    assert_eq!(uids.len(), 3, "Rollouts, Analysis and GitOps dashboards");
    Ok(())
}

/// Metric names a `/metrics` text exports: every sample's name, and every declared family with
/// the suffixes its type gives samples (so a counter nothing has incremented yet still counts).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut parts = declaration.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" if family.ends_with("_total") => &[""],
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Whether `text` has a sample of `metric` carrying all `labels`.
fn has_series(text: &str, metric: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|line| {
        line.starts_with(&format!("{metric}{{"))
            && labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
    })
}

#[tokio::test]
async fn every_metric_is_exported_by_a_running_controller() -> TestResult {
    let env = for_test().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    install_crds(
        &client,
        &[
            "rollouts.argoproj.io",
            "analysisruns.argoproj.io",
            "analysistemplates.argoproj.io",
            "clusteranalysistemplates.argoproj.io",
            "applications.argoproj.io",
        ],
    )
    .await?;

    let args: Vec<String> = ["--namespace", &ns, "--gitops", "--gitops-poll-interval=5s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut controller = ControllerProcess::start(
        env.kubeconfig_path(),
        &args,
        &env.scratch_dir().join("controller.log"),
    )?;
    controller.ready(WAIT).await?;

    // A Rollout taken through an update to a pause, then aborted (weights, replicas, events).
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let steps = json!({"steps": [{"setWeight": 50}, {"pause": {}}]});
    rollouts
        .create(
            &PostParams::default(),
            &canary_rollout("web", 2, "shop/web:1", steps),
        )
        .await?;
    wait_rollout(&rollouts, "web", "Healthy", WAIT, healthy).await?;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/web:2"}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(image))
        .await?;
    wait_rollout(&rollouts, "web", "paused at 50%", WAIT, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.current_step_index == Some(1) && s.pause_conditions.is_some())
    })
    .await?;
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"abort": true}})),
        )
        .await?;

    // An AnalysisRun whose metric is a Job.
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns);
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "smoke"},
        "spec": {"metrics": [{"name": "smoke-test", "provider": {"job": {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "check", "image": "busybox:1.36", "command": ["sh", "-c", "exit 0"]}]}}}}}}]}
    }))?;
    runs.create(&PostParams::default(), &run).await?;

    // An Application synced from a Git repository.
    let repo = GitRepo::new()?;
    repo.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n",
    )?;
    repo.commit("settings")?;
    let daemon = GitDaemon::serve(&repo)?;
    let apps: Api<Application> = Api::namespaced(client.clone(), &ns);
    let app = application(
        "settings",
        &ns,
        &daemon.url(),
        "app",
        json!({"prune": true, "selfHeal": true}),
    );
    apps.create(&PostParams::default(), &app).await?;

    // Wait until every kind of series is there.
    let waited = wait_for(
        "labelled series of the Rollout, the AnalysisRun and the Application",
        WAIT,
        || async {
            let text = controller.scrape().await.ok()?;
            let ready = has_series(
                &text,
                "rollout_info",
                &[("namespace", &ns), ("name", "web")],
            ) && has_series(
                &text,
                "ramp_rollout_set_weight",
                &[("namespace", &ns), ("name", "web")],
            ) && has_series(
                &text,
                "rollout_events_total",
                &[("namespace", &ns), ("reason", "RolloutAborted")],
            ) && has_series(
                &text,
                "analysis_run_info",
                &[("namespace", &ns), ("name", "smoke")],
            ) && has_series(
                &text,
                "analysis_run_metric_phase",
                &[("name", "smoke"), ("metric", "smoke-test")],
            ) && has_series(
                &text,
                "argocd_app_info",
                &[
                    ("namespace", &ns),
                    ("name", "settings"),
                    ("sync_status", "Synced"),
                ],
            ) && has_series(&text, "argocd_app_sync_total", &[("name", "settings")]);
            ready.then_some(text)
        },
    )
    .await;
    let text = match waited {
        Ok(text) => text,
        Err(error) => {
            let last = controller.scrape().await.unwrap_or_else(|e| e);
            return Err(format!(
                "{error}\n--- last scrape ---\n{last}\n--- log ---\n{}",
                controller.log_text()
            )
            .into());
        }
    };
    let names = exported(&text);

    let scratch = tempfile::tempdir()?;
    let mut missing = Vec::new();
    for dashboard in ramp_dashboards().into_iter().chain([argo_dashboard()]) {
        let (_, used) = queries(&dashboard, &scratch.path().join("rules.yaml"))?;
        let name = dashboard
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for metric in used {
            // Argo's dashboard also charts the Go runtime of its controller.
            let go_runtime = dashboard == argo_dashboard() && metric.starts_with("go_");
            let requested = REQUESTED.iter().find(|(m, _)| *m == metric);
            match (names.contains(&metric), requested) {
                (true, Some((_, _))) => missing.push(format!(
                    "{name}: {metric} is exported now: remove it from REQUESTED in e2e/tests/dashboards.rs"
                )),
                (false, Some((_, from))) => eprintln!("not yet exported, requested from {from}: {metric} ({name})"),
                (false, None) if !go_runtime => missing.push(format!("{name}: {metric}")),
                _ => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the dashboards read but ramp-controller does not export:\n  {}\n--- exported ---\n{}",
        missing.join("\n  "),
        names.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}
