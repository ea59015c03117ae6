//! API faults from the fault proxy between `ramp-controller` (its own process) and the API
//! server: a full API outage in the middle of a rollout. The rollout must still end as its
//! fault-free run ends, with the invariants of [`ramp_e2e::reliability`] intact, and the
//! failed writes must be retried further and further apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use ramp_controller::api::Rollout;
use ramp_e2e::cluster::{TestEnv, for_test, kubeconfig};
use ramp_e2e::faults::{FaultProxy, FaultSpec, RequestRecord};
use ramp_e2e::fixtures::analysis::install_analysis_crds;
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::fixtures::rollouts::{healthy, install_rollout_crds, wait_rollout};
use ramp_e2e::reliability::history::{Recorder, check_history};
use ramp_e2e::reliability::process::{
    ControllerCommand, ControllerProcess, Profile, controller_binary,
};
use ramp_e2e::reliability::trial::{Ending, ROLLOUT, TrialSetup, orphans, prepare};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

struct World {
    setup: TrialSetup,
    _good: DemoApp,
    _bad: DemoApp,
}

async fn world(client: Client, kubeconfig: PathBuf, scratch: PathBuf) -> Result<World, String> {
    install_rollout_crds(&client).await?;
    install_analysis_crds(&client).await?;
    let binary = tokio::task::spawn_blocking(|| controller_binary(Profile::Debug))
        .await
        .map_err(|e| e.to_string())??;
    let good = DemoApp::start(DemoAppConfig::new("v1", 0.0))
        .await
        .map_err(|e| e.to_string())?;
    let bad = DemoApp::start(DemoAppConfig::new("v2", 0.1))
        .await
        .map_err(|e| e.to_string())?;
    Ok(World {
        setup: TrialSetup {
            client,
            kubeconfig,
            binary,
            good_url: good.url(),
            bad_url: bad.url(),
            log_dir: scratch,
        },
        _good: good,
        _bad: bad,
    })
}

async fn env_world(env: &TestEnv) -> Result<World, String> {
    world(
        env.client(),
        env.kubeconfig_path().to_path_buf(),
        env.scratch_dir().to_path_buf(),
    )
    .await
}

/// A proxy in front of the cluster `env` uses, with its kubeconfig written.
async fn proxy_for(env: &TestEnv, spec: &str, name: &str) -> Result<FaultProxy, String> {
    let upstream = kubeconfig::config_from_file(env.kubeconfig_path())
        .await
        .map_err(|e| e.to_string())?;
    let proxy = FaultProxy::start(upstream, spec.parse::<FaultSpec>()?)
        .await
        .map_err(|e| e.to_string())?;
    proxy
        .write_kubeconfig(&env.scratch_dir().join(format!("{name}.kubeconfig")), None)
        .map_err(|e| e.to_string())?;
    Ok(proxy)
}

/// Requests of one kind: method and path without the query.
fn key(r: &RequestRecord) -> String {
    format!(
        "{} {}",
        r.method,
        r.path.split('?').next().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_outage_mid_rollout_is_retried_with_growing_backoff() -> TestResult {
    let env = for_test().await?;
    let world = env_world(&env).await?;
    let setup = &world.setup;
    let ns = env.namespace();
    let client = env.client();
    let proxy = proxy_for(&env, "none", "outage").await?;
    let recorder = Recorder::start(&client, ns).await?;
    prepare(setup, ns, Ending::Promoted).await?;
    let command = ControllerCommand {
        binary: setup.binary.clone(),
        kubeconfig: proxy.kubeconfig_path().ok_or("no kubeconfig")?,
        namespace: ns.to_string(),
        args: Vec::new(),
        env: Vec::new(),
        log: env.scratch_dir().join("outage.log"),
    };
    let mut controller = ControllerProcess::start(&command, WAIT).await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let first = wait_rollout(&rollouts, ROLLOUT, "Healthy", WAIT, healthy).await?;
    let old = first.status.and_then(|s| s.stable_rs).unwrap_or_default();
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}});
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(image))
        .await?;
    // In the first pause (1 s), whose end the controller must write: the API goes away.
    wait_rollout(&rollouts, ROLLOUT, "at the 1 s pause", WAIT, |r| {
        r.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await?;
    proxy.clear_requests();
    proxy.set_faults("error-rate=1".parse()?);
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.set_faults(FaultSpec::none());
    let during = proxy.requests();
    let mut attempts: BTreeMap<String, Vec<&RequestRecord>> = BTreeMap::new();
    for record in during.iter().filter(|r| r.injected.is_some() && !r.watch) {
        attempts.entry(key(record)).or_default().push(record);
    }
    let (most, tries) = attempts
        .iter()
        .max_by_key(|(_, tries)| tries.len())
        .ok_or("the controller sent nothing during the outage")?;
    let gaps: Vec<Duration> = tries
        .windows(2)
        .map(|w| Duration::try_from(w[1].at.duration_since(w[0].at)).unwrap_or(Duration::ZERO))
        .collect();
    eprintln!(
        "{} requests in the 8 s outage; most retried: {most}, {} times, gaps {gaps:?}",
        during.len(),
        tries.len()
    );
    // A hot loop would send thousands; backing off, a handful per kind.
    assert!(
        during.len() < 200,
        "{} requests during an 8 s outage",
        during.len()
    );
    assert!(tries.len() >= 3, "the failed write was retried: {gaps:?}");
    assert!(
        gaps.last() > gaps.first(),
        "retries of {most} come further and further apart: {gaps:?}"
    );

    // The API is back: the rollout finishes as it would have.
    wait_rollout(&rollouts, ROLLOUT, "promoted after the outage", WAIT, |r| {
        healthy(r)
            && r.status
                .as_ref()
                .and_then(|s| s.stable_rs.as_deref())
                .is_some_and(|s| s != old)
    })
    .await?;
    assert!(controller.running(), "the controller survived the outage");
    let mut breaks = orphans(&client, ns).await?;
    breaks.extend(check_history(&recorder.history()));
    assert!(breaks.is_empty(), "{}", breaks.join("\n"));
    controller.kill9().await?;
    Ok(())
}
