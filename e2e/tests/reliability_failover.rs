//! Failover: two `ramp-controller run --leader-elect` processes, each talking to the API
//! server through a fault proxy of its own (no faults: the proxies only log every request).
//! The leader is SIGKILLed while a canary Rollout is in its analysis step; the follower must
//! take over within the Lease's duration and finish the rollout as it would have finished,
//! and the two request logs must show that at no time did both write: every write of the
//! killed leader ended before the follower's first write, which came after it acquired the
//! Lease. Writes to the Lease itself are the election, not controller work, and are left out.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use ramp_analysis::api::AnalysisRun;
use ramp_controller::api::Rollout;
use ramp_controller::leader::{DEFAULT_LEASE_NAME, LOSS_DETECTION};
use ramp_e2e::cluster::{for_test, kubeconfig};
use ramp_e2e::faults::{FaultProxy, FaultSpec, RequestRecord};
use ramp_e2e::fixtures::analysis::install_analysis_crds;
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::fixtures::rollouts::{healthy, install_rollout_crds, wait_for, wait_rollout};
use ramp_e2e::reliability::history::{Recorder, check_history};
use ramp_e2e::reliability::process::{
    ControllerCommand, ControllerProcess, Profile, controller_binary,
};
use ramp_e2e::reliability::trial::{Ending, ROLLOUT, TrialSetup, orphans, prepare};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(90);

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

/// Writes that are controller work (not the election).
fn work_writes(log: &[RequestRecord]) -> Vec<&RequestRecord> {
    log.iter()
        .filter(|r| r.is_write() && !r.path.contains("/apis/coordination.k8s.io/"))
        .collect()
}

fn describe(r: &RequestRecord) -> String {
    format!(
        "{} {} {} at {} ({:?})",
        r.method, r.path, r.status, r.at, r.took
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_follower_takes_over_a_killed_leader_and_they_never_both_write() -> TestResult {
    let env = for_test().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    install_rollout_crds(&client).await?;
    install_analysis_crds(&client).await?;
    let binary = tokio::task::spawn_blocking(|| controller_binary(Profile::Debug)).await??;
    let good = DemoApp::start(DemoAppConfig::new("v1", 0.0)).await?;
    let setup = TrialSetup {
        client: client.clone(),
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        binary: binary.clone(),
        good_url: good.url(),
        bad_url: good.url(),
        log_dir: env.scratch_dir().to_path_buf(),
    };
    let recorder = Recorder::start(&client, &ns).await?;
    prepare(&setup, &ns, Ending::Promoted).await?;

    let upstream = kubeconfig::config_from_file(env.kubeconfig_path()).await?;
    let mut proxies = Vec::new();
    let mut commands = Vec::new();
    for identity in ["ramp-a", "ramp-b"] {
        let proxy = FaultProxy::start(upstream.clone(), FaultSpec::none()).await?;
        let path = env.scratch_dir().join(format!("{identity}.kubeconfig"));
        proxy.write_kubeconfig(&path, None)?;
        commands.push(ControllerCommand {
            binary: binary.clone(),
            kubeconfig: path,
            namespace: ns.clone(),
            args: vec![
                "--leader-elect".into(),
                "--leader-election-namespace".into(),
                ns.clone(),
            ],
            env: vec![("POD_NAME".into(), identity.into())],
            log: env.scratch_dir().join(format!("{identity}.log")),
        });
        proxies.push(proxy);
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = ControllerProcess::start(&commands[0], WAIT).await?;
    wait_for("ramp-a to hold the Lease", WAIT, || async {
        let lease = leases.get_opt(DEFAULT_LEASE_NAME).await.ok().flatten()?;
        (holder(&lease).as_deref() == Some("ramp-a")).then_some(())
    })
    .await?;
    let mut follower = ControllerProcess::start(&commands[1], WAIT).await?;

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let first = wait_rollout(&rollouts, ROLLOUT, "Healthy", WAIT, healthy).await?;
    let old = first.status.and_then(|s| s.stable_rs).unwrap_or_default();
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}});
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(image))
        .await?;
    // Mid-rollout: the step's AnalysisRun exists and is being measured by the leader.
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns);
    wait_for("the step's AnalysisRun", WAIT, || async {
        let list = runs.list(&ListParams::default()).await.ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await?;
    assert_eq!(
        holder(&leases.get(DEFAULT_LEASE_NAME).await?).as_deref(),
        Some("ramp-a")
    );
    let killed = Instant::now();
    leader.kill9().await?;
    // ramp-a is dead and reaped: no request of its can begin after this moment (one sent
    // just before the kill may still be answered after it).
    let dead_at = k8s_openapi::jiff::Timestamp::now();

    let lease = wait_for("ramp-b to take the Lease", WAIT, || async {
        let lease = leases.get_opt(DEFAULT_LEASE_NAME).await.ok().flatten()?;
        (holder(&lease).as_deref() == Some("ramp-b")).then_some(lease)
    })
    .await?;
    let takeover = killed.elapsed();
    eprintln!(
        "ramp-b took the Lease {:.1}s after ramp-a was killed",
        takeover.as_secs_f64()
    );
    // The Lease stays valid for its duration after the last renewal; the follower retries
    // within its grace period after that.
    assert!(
        takeover <= LOSS_DETECTION + Duration::from_secs(5),
        "takeover took {takeover:?}, more than the lease duration {LOSS_DETECTION:?} and a retry"
    );
    let acquired = lease
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.as_ref())
        .map(|t| t.0)
        .ok_or("the taken Lease has no acquireTime")?;

    wait_rollout(&rollouts, ROLLOUT, "promoted by ramp-b", WAIT, |r| {
        healthy(r)
            && r.status
                .as_ref()
                .and_then(|s| s.stable_rs.as_deref())
                .is_some_and(|s| s != old)
    })
    .await?;
    wait_for("the old ReplicaSet scaled down", WAIT, || async {
        let sets = ramp_e2e::fixtures::rollouts::replica_sets(&client, &ns, ROLLOUT)
            .await
            .ok()?;
        sets.iter()
            .all(|(hash, desired, available)| {
                if *hash == old {
                    *desired == 0
                } else {
                    *desired == 4 && *available == 4
                }
            })
            .then_some(())
    })
    .await?;
    assert!(follower.running(), "ramp-b keeps leading");

    // The request logs: ramp-a's writes all began before it died and ended before ramp-b's
    // first; ramp-b's all began after it acquired the Lease.
    let a_log = proxies[0].requests();
    let b_log = proxies[1].requests();
    let a_writes = work_writes(&a_log);
    let b_writes = work_writes(&b_log);
    assert!(!a_writes.is_empty(), "ramp-a started the rollout");
    assert!(!b_writes.is_empty(), "ramp-b finished the rollout");
    let a_last = a_writes
        .iter()
        .max_by_key(|r| r.at + r.took)
        .expect("not empty");
    let b_first = b_writes.iter().min_by_key(|r| r.at).expect("not empty");
    eprintln!(
        "{} writes by ramp-a, last {}; {} by ramp-b, first {}; ramp-b acquired the Lease at {acquired}",
        a_writes.len(),
        describe(a_last),
        b_writes.len(),
        describe(b_first)
    );
    let a_latest_start = a_writes.iter().max_by_key(|r| r.at).expect("not empty");
    assert!(
        a_latest_start.at <= dead_at,
        "ramp-a began a write after it was killed: {}",
        describe(a_latest_start)
    );
    assert!(
        a_last.at + a_last.took <= b_first.at,
        "ramp-a's last write {} overlaps ramp-b's first {}",
        describe(a_last),
        describe(b_first)
    );
    assert!(
        b_first.at >= acquired,
        "ramp-b wrote before it held the Lease (acquired {acquired}): {}",
        describe(b_first)
    );
    assert!(
        a_last.at + a_last.took < b_first.at,
        "the two controllers' writes overlap"
    );

    // And the invariants of every scenario.
    let mut breaks = orphans(&client, &ns).await?;
    breaks.extend(check_history(&recorder.history()));
    let run_list = runs.list(&ListParams::default()).await?;
    assert_eq!(
        run_list.items.len(),
        1,
        "one AnalysisRun for the step: {:?}",
        run_list
            .items
            .iter()
            .map(|r| r.name_any())
            .collect::<Vec<_>>()
    );
    assert!(
        breaks.is_empty(),
        "invariant breaks:\n{}",
        breaks.join("\n")
    );
    follower.kill9().await?;
    Ok(())
}
