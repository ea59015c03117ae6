//! `kubectl ramp get rollout -w` over a whole canary update driven by Ramp's controller: the
//! captured frames must show the update step by step (paused at 25%, promoted, paused at 50%,
//! healthy on the new version), and the plugin must have read the cluster through watches
//! only. Colour appears on a terminal (a pseudo-terminal from `script`) and never with
//! `--no-color`.

mod plugin_support;

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use plugin_support::Plugin;
use ramp_controller::api::{Rollout, RolloutPhase};
use ramp_e2e::cluster::for_test;
use ramp_e2e::faults::{FaultProxy, FaultSpec};
use ramp_e2e::fixtures::rollouts::{
    InProcessController, canary_rollout, healthy, install_rollout_crds, wait_rollout,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

/// What a frame of the watch says, from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    status: String,
    step: String,
    set_weight: String,
    actual_weight: String,
    images: Vec<String>,
}

fn frames(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for block in text.split("Name:            web\n").skip(1) {
        let field = |label: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let mut images = Vec::new();
        let mut in_images = false;
        for line in block.lines() {
            if let Some(image) = line.strip_prefix("Images:") {
                in_images = true;
                images.push(image.trim().to_string());
            } else if in_images && line.starts_with("                 ") {
                images.push(line.trim().to_string());
            } else {
                in_images = false;
            }
        }
        let frame = Frame {
            status: field("Status:"),
            step: field("  Step:"),
            set_weight: field("  SetWeight:"),
            actual_weight: field("  ActualWeight:"),
            images,
        };
        if frames.last() != Some(&frame) {
            frames.push(frame);
        }
    }
    frames
}

/// Whether `wanted` appear in `frames` in this order (not necessarily next to each other).
fn in_order(frames: &[Frame], wanted: &[&dyn Fn(&Frame) -> bool]) -> bool {
    let mut next = 0;
    for frame in frames {
        if next < wanted.len() && wanted[next](frame) {
            next += 1;
        }
    }
    next == wanted.len()
}

#[tokio::test]
async fn watch_shows_a_whole_canary_update() -> TestResult {
    let env = for_test().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    install_rollout_crds(&client).await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let steps = json!({"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "2s"}}]});
    rollouts
        .create(
            &PostParams::default(),
            &canary_rollout("web", 4, "shop/web:1", steps),
        )
        .await?;
    let controller = InProcessController::start(env.kubeconfig_path(), &ns, |_| {}).await?;
    wait_rollout(&rollouts, "web", "Healthy", WAIT, healthy).await?;

    // The plugin reads through a recording proxy, so its requests can be counted.
    let upstream = ramp_e2e::cluster::kubeconfig::config_from_file(env.kubeconfig_path()).await?;
    let proxy = FaultProxy::start(upstream, FaultSpec::default()).await?;
    let proxied = env.scratch_dir().join("proxy-kubeconfig");
    proxy.write_kubeconfig(&proxied, None)?;
    let watcher = Plugin::new(&proxied, &ns);
    let direct = Plugin::new(env.kubeconfig_path(), &ns);

    let mut watching = watcher
        .command(&["get", "rollout", "web", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = watching.stdout.take().ok_or("no stdout")?;
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let mut listing = direct
        .command(&["list", "rollouts", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut list_stdout = listing.stdout.take().ok_or("no stdout")?;
    let list_reader = tokio::spawn(async move {
        let mut text = String::new();
        let _ = list_stdout.read_to_string(&mut text).await;
        text
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    direct.ok(&["set", "image", "web", "app=shop/web:2"]).await;
    let paused_at = |index: i32| {
        move |r: &Rollout| {
            r.status.as_ref().is_some_and(|s| {
                s.current_step_index == Some(index)
                    && s.phase == Some(RolloutPhase::Paused)
                    && s.pause_conditions.is_some()
            })
        }
    };
    wait_rollout(&rollouts, "web", "paused at step 1", WAIT, paused_at(1)).await?;
    // Let the watch draw the paused state before moving on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    direct.ok(&["promote", "web"]).await;
    wait_rollout(&rollouts, "web", "Healthy on the new version", WAIT, |r| {
        healthy(r)
            && r.status.as_ref().and_then(|s| s.stable_rs.as_ref())
                == r.status.as_ref().and_then(|s| s.current_pod_hash.as_ref())
            && r.status.as_ref().and_then(|s| s.current_step_index) == Some(4)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.start_kill()?;
    let _ = watching.wait().await;
    let text = reader.await?;
    listing.start_kill()?;
    let _ = listing.wait().await;
    let rows = list_reader.await?;
    controller.stop().await?;

    let frames = frames(&text);
    let described = format!("{frames:#?}");
    assert!(
        in_order(
            &frames,
            &[
                &|f| f.status == "✔ Healthy" && f.images == ["shop/web:1 (stable)"],
                &|f| f.status == "॥ Paused"
                    && f.step == "1/4"
                    && f.set_weight == "25"
                    && f.actual_weight == "25"
                    && f.images == ["shop/web:1 (stable)", "shop/web:2 (canary)"],
                &|f| f.step == "2/4" || f.step == "3/4",
                &|f| f.status == "॥ Paused"
                    && f.step == "3/4"
                    && f.set_weight == "50"
                    && f.actual_weight == "50",
                &|f| f.status == "✔ Healthy"
                    && f.step == "4/4"
                    && f.images == ["shop/web:2 (stable)"],
            ]
        ),
        "the watch did not show the update step by step:\n{described}\n--- output ---\n{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour and no screen clearing into a pipe"
    );
    // `list rollouts -w`: the table, then a line each time the row changed, same columns.
    let lines: Vec<&str> = rows.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("NAME  STRATEGY  STATUS")),
        "{rows}"
    );
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with("web ") && l.contains(needle))
    };
    let paused = at("Paused       1/4   25 ").ok_or_else(|| format!("no paused row:\n{rows}"))?;
    let done = lines
        .iter()
        .rposition(|l| l.starts_with("web ") && l.contains("Healthy      4/4   100"));
    assert!(
        done.is_some_and(|d| d > paused),
        "no Healthy row after the pause:\n{rows}"
    );
    // The tree lists both revisions while the canary runs.
    assert!(
        text.contains("# revision:2") && text.contains("# revision:1"),
        "{text}"
    );

    // Watches only: the initial reads, then nothing but watch requests (re-listing only if a
    // watch had to be restarted).
    let requests = proxy.requests();
    let reads: Vec<String> = requests
        .iter()
        .filter(|r| !r.watch)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let watches = requests.iter().filter(|r| r.watch).count();
    assert!(
        watches >= 4,
        "expected watches of the Rollout, ReplicaSets, pods and AnalysisRuns: {reads:#?}"
    );
    assert!(
        reads.len() <= 10,
        "the plugin polled instead of watching ({} reads):\n{reads:#?}",
        reads.len()
    );
    assert!(
        reads.iter().all(|r| r.starts_with("GET ")),
        "a read-only view wrote: {reads:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn colour_only_on_a_terminal() -> TestResult {
    let env = for_test().await?;
    let ns = env.namespace().to_string();
    install_rollout_crds(&env.client()).await?;
    let rollouts: Api<Rollout> = Api::namespaced(env.client(), &ns);
    rollouts
        .create(
            &PostParams::default(),
            &canary_rollout("web", 1, "shop/web:1", json!({"steps": []})),
        )
        .await?;
    let binary = plugin_support::ramp_binary("kubectl-ramp");
    let in_terminal = |extra: &str| {
        let line = format!("{} get rollout web -n {ns} {extra}", binary.display());
        let kubeconfig = env.kubeconfig_path().to_path_buf();
        async move {
            // `script` runs the command on a pseudo-terminal and copies what it printed.
            let output = tokio::process::Command::new("script")
                .args(["-qfec", &line, "/dev/null"])
                .env("KUBECONFIG", kubeconfig)
                .env_remove("NO_COLOR")
                .output()
                .await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&output.stdout).into_owned())
        }
    };
    let colored = in_terminal("").await?;
    assert!(
        colored.contains("\x1b[33m◌\x1b[0m Progressing"),
        "{colored:?}"
    );
    assert!(colored.contains("Name:"), "{colored:?}");
    let plain = in_terminal("--no-color").await?;
    assert!(
        plain.contains("Name:") && !plain.contains("\x1b["),
        "{plain:?}"
    );
    let piped = Plugin::new(env.kubeconfig_path(), &ns)
        .ok(&["get", "rollout", "web"])
        .await;
    assert!(!piped.contains("\x1b["), "{piped:?}");
    Ok(())
}
