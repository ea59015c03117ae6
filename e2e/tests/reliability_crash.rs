//! Crash-restart, the short version (the 100-trial run is `bench crash`): `ramp-controller`
//! runs as its own process and is SIGKILLed at random moments of canary rollouts with a step
//! analysis (web provider against demo apps), then started again with nothing but the objects
//! to resume from. For each ending (promoted, aborted by the analysis, paused for a human) a
//! fault-free reference runs first; every trial with kills must end in the same final state,
//! leave no orphaned ReplicaSet or AnalysisRun, and its recorded history must show no traffic
//! on a ReplicaSet without available pods, no status field reset, no duplicate AnalysisRun.
//!
//! The kill moments are random; the seed is printed and `RAMP_E2E_SEED=N` replays it.

use std::time::Duration;

use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::analysis::install_analysis_crds;
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::fixtures::rollouts::install_rollout_crds;
use ramp_e2e::reliability::process::{Profile, controller_binary};
use ramp_e2e::reliability::trial::{Ending, TrialPlan, TrialSetup, run_trial};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Trials with kills per ending.
const TRIALS_PER_ENDING: usize = 2;

async fn trials_of(setup: TrialSetup, ending: Ending, seed: u64) -> Result<Vec<String>, String> {
    let env = for_test().await.map_err(|e| e.to_string())?;
    let reference = run_trial(&setup, env.namespace(), &TrialPlan::reference(ending), None).await?;
    if !reference.breaks.is_empty() {
        return Err(format!(
            "{ending:?} without faults broke invariants: {:#?}",
            reference.breaks
        ));
    }
    eprintln!(
        "{ending:?}: reference ended {:?} after {:.1}s",
        reference.outcome,
        reference.took.as_secs_f64()
    );
    // Kills land anywhere from the update to a little past the fault-free end.
    let horizon = reference.took + Duration::from_millis(500);
    let mut rng = fastrand::Rng::with_seed(seed ^ ending as u64);
    let mut breaks = Vec::new();
    for trial in 0..TRIALS_PER_ENDING {
        let plan = TrialPlan::random(ending, horizon, &mut rng);
        let env = for_test().await.map_err(|e| e.to_string())?;
        let report = run_trial(&setup, env.namespace(), &plan, Some(&reference.outcome)).await?;
        eprintln!(
            "{ending:?} trial {trial}: kills at {:?}, {} breaks, ended after {:.1}s; stages {:?}",
            plan.kills,
            report.breaks.len(),
            report.took.as_secs_f64(),
            report.stages
        );
        breaks.extend(
            report
                .breaks
                .into_iter()
                .map(|b| format!("{ending:?} trial {trial} (kills at {:?}): {b}", plan.kills)),
        );
    }
    Ok(breaks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_controllers_resume_from_the_objects_alone() -> TestResult {
    let env = for_test().await?;
    install_rollout_crds(&env.client()).await?;
    install_analysis_crds(&env.client()).await?;
    let binary = tokio::task::spawn_blocking(|| controller_binary(Profile::Debug)).await??;
    let good = DemoApp::start(DemoAppConfig::new("v1", 0.0)).await?;
    let bad = DemoApp::start(DemoAppConfig::new("v2", 0.1)).await?;
    let seed = std::env::var("RAMP_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (RAMP_E2E_SEED={seed} replays these kill moments)");
    let setup = TrialSetup {
        client: env.client(),
        kubeconfig: env.kubeconfig_path().to_path_buf(),
        binary,
        good_url: good.url(),
        bad_url: bad.url(),
        log_dir: env.scratch_dir().to_path_buf(),
    };
    // The three endings run side by side, each in namespaces of its own.
    let results =
        futures::future::join_all(Ending::ALL.map(|ending| trials_of(setup.clone(), ending, seed)))
            .await;
    let mut breaks = Vec::new();
    for result in results {
        breaks.extend(result?);
    }
    assert!(
        breaks.is_empty(),
        "seed {seed}: {} invariant breaks:\n{}",
        breaks.len(),
        breaks.join("\n")
    );
    Ok(())
}
