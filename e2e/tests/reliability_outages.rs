//! Outages. Prometheus down mid-analysis (`analysis_rollout.rs`,
//! `prometheus_stopped_mid_analysis_aborts_and_never_promotes`: the run ends in Error, the
//! Rollout aborts, never promotes) and the Git remote down (`gitops.rs`,
//! `an_unreachable_remote_is_a_condition_and_prunes_nothing`: a ComparisonError naming the
//! remote, nothing pruned) are covered there. What is here: a webhook flood.
//!
//! Thousands of push events, a quarter of them garbage, hit the GitOps webhook while a
//! commit lands in the middle. Every request gets an answer (never a 5xx, never a dropped
//! connection), the pushes are coalesced (far fewer reconciles than pushes), the
//! Application ends Synced at the new head with exactly what Git has, and nothing Git still
//! has is deleted on the way.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ramp_controller::gitops::Application;
use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::git::{GitDaemon, GitRepo, post_github_push};
use ramp_e2e::fixtures::gitops::{GitopsRunner, application, install_crds, summary, wait_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(60);
const PUSHES: usize = 2000;

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{value}\"\n")
}

/// Not a push: a body that is not JSON. Returns the HTTP status.
async fn post_garbage(address: std::net::SocketAddr) -> std::io::Result<u16> {
    let body = "{\"ref\": \"refs/heads/main\", \"repository\": ";
    let request = format!(
        "POST /api/webhook HTTP/1.1\r\nHost: {address}\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_flood_is_coalesced_and_loses_nothing() -> TestResult {
    let env = for_test().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    install_crds(&client, &["applications.argoproj.io"]).await?;
    let repo = GitRepo::new()?;
    for index in 0..10 {
        repo.write(
            &format!("app/cm-{index}.yaml"),
            &config_map(&format!("cm-{index}"), "1"),
        )?;
    }
    let first = repo.commit("ten config maps")?;
    let daemon = GitDaemon::serve(&repo)?;
    let gitops = GitopsRunner::start(client.clone(), &ns, |_| {}).await?;
    let apps: Api<Application> = Api::namespaced(client.clone(), &ns);
    apps.create(
        &PostParams::default(),
        &application(
            "flooded",
            &ns,
            &daemon.url(),
            "app",
            json!({"prune": true, "selfHeal": true}),
        ),
    )
    .await?;
    let synced_at = |revision: String| {
        let apps = apps.clone();
        async move {
            wait_for(&format!("Synced at {revision}"), WAIT, || async {
                let app = apps.get_opt("flooded").await.ok().flatten()?;
                let (sync, at, _) = summary(&app);
                (sync == "Synced" && at == revision).then_some(app)
            })
            .await
        }
    };
    synced_at(first.clone()).await?;

    // Every deletion of a ConfigMap, from now on.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deleted = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let recorder = {
        let deleted = deleted.clone();
        let maps = maps.clone();
        tokio::spawn(async move {
            let mut events = watcher(maps, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Delete(map)) = event {
                    deleted.lock().unwrap().insert(map.name_any());
                }
            }
        })
    };

    let reconciles_before = gitops.reconciles();
    let webhook = gitops.webhook;
    let url = daemon.url();
    let statuses: Vec<Result<u16, String>> = futures::stream::iter(0..PUSHES)
        .map(|index| {
            let url = url.clone();
            let repo = &repo;
            async move {
                if index == PUSHES / 2 {
                    // Mid-flood: cm-0 changes, cm-9 leaves Git.
                    repo.write("app/cm-0.yaml", &config_map("cm-0", "2"))
                        .map_err(|e| e.to_string())?;
                    repo.remove("app/cm-9.yaml").map_err(|e| e.to_string())?;
                    repo.commit("change cm-0, remove cm-9")
                        .map_err(|e| e.to_string())?;
                }
                if index % 4 == 3 {
                    post_garbage(webhook).await.map_err(|e| e.to_string())
                } else {
                    post_github_push(webhook, &url, "main", None)
                        .await
                        .map_err(|e| e.to_string())
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed: Vec<&String> = statuses.iter().filter_map(|s| s.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} requests got no answer, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let server_errors = statuses
        .iter()
        .filter(|s| matches!(s, Ok(code) if *code >= 500))
        .count();
    let accepted = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    let refused = statuses
        .iter()
        .filter(|s| matches!(s, Ok(code) if (400..500).contains(code)))
        .count();
    assert_eq!(server_errors, 0, "the webhook never fails under a flood");
    assert_eq!(
        (accepted, refused),
        (PUSHES - PUSHES / 4, PUSHES / 4),
        "pushes accepted, garbage refused"
    );

    let head = repo.head()?;
    synced_at(head).await?;
    let reconciles = gitops.reconciles() - reconciles_before;
    eprintln!("{PUSHES} webhook requests ({accepted} pushes) led to {reconciles} reconciles");
    assert!(
        reconciles < (accepted / 4) as u64,
        "pushes are coalesced: {reconciles} reconciles for {accepted} pushes"
    );
    let live: BTreeSet<String> = maps
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|m| m.name_any().starts_with("cm-"))
        .map(|m| m.name_any())
        .collect();
    let in_git: BTreeSet<String> = (0..9).map(|i| format!("cm-{i}")).collect();
    assert_eq!(live, in_git, "exactly what Git has");
    let cm0 = maps.get("cm-0").await?;
    assert_eq!(
        cm0.data.unwrap_or_default().get("v").map(String::as_str),
        Some("2")
    );
    recorder.abort();
    let deleted = deleted.lock().unwrap().clone();
    assert_eq!(
        deleted,
        BTreeSet::from(["cm-9".to_string()]),
        "only what left Git was deleted"
    );
    Ok(())
}
