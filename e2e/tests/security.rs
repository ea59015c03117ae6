//! Secrets stay secret: a marker value planted in Secrets reaches the endpoints it is meant for
//! (an analysis web provider's header and URL, a Prometheus provider's header, a Git
//! repository's bearer token; also a Git password) and nowhere else: not in the controller's logs (debug level),
//! Events, Rollout, AnalysisRun or Application objects, nor in `/metrics`.
//!
//! The controller, the runner and the GitOps reconciler run as the Helm chart's ServiceAccount
//! (the fixtures' least-privilege identity), which the last test checks holds no more than it
//! should.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ramp_controller::api::{AnalysisRun, AnalysisTemplate, Rollout};
use ramp_controller::gitops::Application;
use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::gitops::{GitopsRunner, application, conditions, install_crds, wait_for};
use ramp_e2e::fixtures::rbac::{ChartRelease, chart_identity, counted_client};
use ramp_e2e::fixtures::rollouts::{
    InProcessController, canary_rollout, healthy, install_rollout_crds, wait_rollout,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

/// Everything the process logs, at debug level, kept in memory.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn install() -> CapturedLogs {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        logs
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback HTTP server that records each request's head (request line and headers) and
/// answers every request with `status`, `headers` and `body`.
struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(status: &'static str, headers: &'static str, body: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(String::from_utf8_lossy(&buffer).into_owned());
                    }
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Recorder { port, heads, task }
    }

    fn heads(&self) -> String {
        self.heads.lock().map(|h| h.join("\n")).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

/// The places `marker` (or one of its `forms`) shows up in `text`, with some context.
fn occurrences(what: &str, text: &str, forms: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for form in forms {
        for (at, _) in text.match_indices(form.as_str()) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            let end = (at + form.len() + 120).min(text.len());
            let end = (end..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            found.push(format!("{what}: …{}…", &text[start..end]));
        }
    }
    found
}

async fn create_secret(client: &Client, ns: &str, secret: serde_json::Value) -> TestResult {
    let secret: Secret = serde_json::from_value(secret)?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

#[tokio::test]
async fn secret_values_never_reach_logs_events_status_or_metrics() -> TestResult {
    let logs = CapturedLogs::install();
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    let client = env.client();
    install_rollout_crds(&client).await?;
    install_crds(&client, &["applications.argoproj.io"]).await?;

    let marker = format!("ramp-marker-{:016x}", fastrand::u64(..));
    let git_basic =
        base64::engine::general_purpose::STANDARD.encode(format!("git:{marker}").as_bytes());
    let forms = vec![marker.clone(), git_basic.clone()];

    // Analysis: a web metric sending the secret as a header (its answer fails the condition),
    // one sending it in the URL's query to a closed port, and a Prometheus metric sending it
    // as a header to a closed port.
    let web = Recorder::start("200 OK", "", "{\"value\": 1}").await;
    let closed = closed_port().await;
    create_secret(
        &client,
        &ns,
        json!({"metadata": {"name": "analysis-token"}, "stringData": {"token": marker}}),
    )
    .await?;
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "guarded"},
        "spec": {
            "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "analysis-token", "key": "token"}}}],
            "metrics": [
                {"name": "web-header", "successCondition": "result == 0", "failureLimit": 0,
                 "provider": {"web": {"url": format!("http://127.0.0.1:{}/score", web.port),
                                      "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
                                      "jsonPath": "{$.value}"}}},
                {"name": "web-url", "successCondition": "result == 0", "consecutiveErrorLimit": 0,
                 "provider": {"web": {"url": format!("http://127.0.0.1:{closed}/score?token={{{{args.token}}}}"),
                                      "jsonPath": "{$.value}"}}},
                {"name": "prometheus-header", "successCondition": "result[0] == 0", "consecutiveErrorLimit": 0,
                 "provider": {"prometheus": {"address": format!("http://127.0.0.1:{closed}"), "query": "up",
                                             "headers": [{"key": "X-Token", "value": "{{args.token}}"}]}}}
            ]
        }
    }))?;
    Api::<AnalysisTemplate>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &template)
        .await?;

    // GitOps: repository credentials for an HTTP remote that asks for them and then refuses.
    let git = Recorder::start(
        "401 Unauthorized",
        "www-authenticate: Basic realm=\"git\"\r\n",
        "denied",
    )
    .await;
    let repo_url = format!("http://127.0.0.1:{}/team/apps.git", git.port);
    create_secret(
        &client,
        &ns,
        json!({"metadata": {"name": "apps-repo", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
               "stringData": {"url": repo_url, "username": "git", "password": marker}}),
    )
    .await?;
    let token_repo_url = format!("http://127.0.0.1:{}/team/tokens.git", git.port);
    create_secret(
        &client,
        &ns,
        json!({"metadata": {"name": "tokens-repo", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
               "stringData": {"url": token_repo_url, "bearerToken": marker}}),
    )
    .await?;

    let controller = InProcessController::start(env.kubeconfig_path(), &ns, |c| {
        c.analysis = true;
    })
    .await?;
    let gitops = GitopsRunner::start(client.clone(), &ns, |c| {
        c.poll_interval = Duration::from_secs(2);
    })
    .await?;
    let apps: Api<Application> = Api::namespaced(client.clone(), &ns);
    for (name, url) in [("apps", &repo_url), ("tokens", &token_repo_url)] {
        apps.create(
            &PostParams::default(),
            &application(name, &ns, url, "app", json!({"prune": true})),
        )
        .await?;
    }

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let steps = json!({"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "guarded"}]}}]});
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
    wait_rollout(&rollouts, "web", "aborted by its analysis", WAIT, |r| {
        r.status.as_ref().and_then(|s| s.abort) == Some(true)
    })
    .await?;
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns);
    wait_for("the AnalysisRun to finish", WAIT, || async {
        let list = runs.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.completed())
            })
            .then_some(())
    })
    .await?;
    let fetch_errors = wait_for("both Applications' fetch errors", WAIT, || async {
        let mut errors = Vec::new();
        for name in ["apps", "tokens"] {
            let app = apps.get_opt(name).await.ok().flatten()?;
            let found = conditions(&app, "ComparisonError");
            if found.is_empty() {
                return None;
            }
            errors.extend(found);
        }
        Some(errors)
    })
    .await?;

    // The secret was used where it belongs: otherwise finding it nowhere proves nothing.
    assert!(
        web.heads().contains(&format!("Bearer {marker}")),
        "the web provider did not send the resolved secret: {}",
        web.heads()
    );
    assert!(
        git.heads().contains(&format!("Bearer {marker}")),
        "the Git fetch did not send the repository's bearer token:\n{}\nApplications: {fetch_errors:?}",
        git.heads()
    );

    let mut leaks = Vec::new();
    leaks.extend(occurrences(
        "/metrics",
        &controller.metrics().await?,
        &forms,
    ));
    leaks.extend(occurrences(
        "GitOps metrics",
        &gitops.metrics_text(),
        &forms,
    ));
    let core_events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    let new_events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert!(
        !new_events.items.is_empty() || !core_events.items.is_empty(),
        "no Events were recorded"
    );
    leaks.extend(occurrences(
        "Events",
        &serde_json::to_string(&(core_events, new_events))?,
        &forms,
    ));
    leaks.extend(occurrences(
        "Rollout",
        &serde_json::to_string(&rollouts.get("web").await?)?,
        &forms,
    ));
    let runs = runs.list(&ListParams::default()).await?;
    assert!(!runs.items.is_empty(), "no AnalysisRun was created");
    leaks.extend(occurrences(
        "AnalysisRuns",
        &serde_json::to_string(&runs)?,
        &forms,
    ));
    leaks.extend(occurrences(
        "Applications",
        &serde_json::to_string(&apps.list(&ListParams::default()).await?)?,
        &forms,
    ));
    controller.stop().await?;
    drop(gitops);
    let log = logs.text();
    assert!(
        log.contains("web-url") || log.contains("guarded") || log.contains("AnalysisRun"),
        "the controller's logs were not captured"
    );
    leaks.extend(occurrences("logs", &log, &forms));
    if leaks.is_empty() {
        return Ok(());
    }
    let _ = std::io::stderr().write_all(log.as_bytes());
    panic!("the secret's value leaked:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn the_fixtures_identity_is_the_charts_and_no_more() -> TestResult {
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    let admin = ramp_e2e::cluster::kubeconfig::config_from_file(env.kubeconfig_path()).await?;
    let config = chart_identity(&admin, &ns, &ChartRelease::namespaced_controller(None)).await?;
    let (client, refusals) = counted_client(config, "the chart's ServiceAccount")?;
    create_secret(
        &env.client(),
        &ns,
        json!({"metadata": {"name": "one"}, "stringData": {"k": "v"}}),
    )
    .await?;

    // What the chart grants works: Secrets are read by name (secretKeyRef arguments).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.get("one").await?;
    assert_eq!(refusals.seen(), Vec::<String>::new());

    // What it does not grant is refused, and the refusal is named.
    let listed = secrets.list(&ListParams::default()).await;
    assert!(
        matches!(&listed, Err(kube::Error::Api(e)) if e.code == 403),
        "listing Secrets must be refused with scope: Namespace: {listed:?}"
    );
    let elsewhere: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let other = elsewhere.list(&ListParams::default()).await;
    assert!(
        matches!(&other, Err(kube::Error::Api(e)) if e.code == 403),
        "Rollouts of another namespace must be refused: {other:?}"
    );
    assert_eq!(
        refusals.seen(),
        vec![
            "List rollouts in default ×1".to_string(),
            format!("List secrets in {ns} ×1"),
        ]
    );
    let outcome = std::panic::catch_unwind(|| refusals.assert_none());
    let message = outcome
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("List secrets") && message.contains("rbac.yaml"),
        "{message}"
    );
    Ok(())
}
