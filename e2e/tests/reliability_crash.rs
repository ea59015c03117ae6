//! Crash-restart, the short version (the 100-trial run is `bench crash`): `ramp-controller`
//! runs as its own process and is SIGKILLed at random moments of canary rollouts with a step
//! analysis (web provider against demo apps), then started again with nothing but the objects
//! to resume from. For each ending (promoted, aborted by the analysis, paused for a human) of
//! a replica-weighted canary, and for one ending each of a Gateway API HTTPRoute canary, an
//! NGINX canary Ingress canary and a GitOps-delivered canary (killed during the sync), a
//! fault-free reference runs first; every trial with kills must end in the same final state,
//! leave no orphaned ReplicaSet, AnalysisRun, canary Ingress or header route, and its recorded
//! history must show no traffic on a ReplicaSet without available pods (from Services,
//! weights and router objects), no status field reset, no duplicate AnalysisRun and no
//! deletion of an object Git still has.
//!
//! The kill moments are random; the seed is printed and `RAMP_E2E_SEED=N` replays it.
//! `RAMP_E2E_CRASH_VARIANTS=gitops,nginx` runs only those variants (when replaying one).

use std::time::Duration;

use ramp_e2e::cluster::for_test;
use ramp_e2e::fixtures::demo_app::{DemoApp, DemoAppConfig};
use ramp_e2e::reliability::process::{Profile, controller_binary};
use ramp_e2e::reliability::trial::{
    Ending, TrialKind, TrialPlan, TrialSetup, Variant, install_trial_crds, run_trial,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Each kind with its trials with kills: two per ending of the replica-weighted canary, one
/// of each other variant.
fn kinds() -> Vec<(TrialKind, usize)> {
    let mut kinds: Vec<(TrialKind, usize)> = Ending::ALL
        .map(|ending| (TrialKind::new(Variant::Canary, ending), 2))
        .to_vec();
    kinds.extend([
        (TrialKind::new(Variant::GatewayApi, Ending::Promoted), 1),
        (TrialKind::new(Variant::Nginx, Ending::Aborted), 1),
        (TrialKind::new(Variant::Gitops, Ending::Promoted), 1),
    ]);
    kinds
}

/// Whether `RAMP_E2E_CRASH_VARIANTS` (comma-separated, any case; all when unset) names it.
fn selected(variant: Variant) -> bool {
    std::env::var("RAMP_E2E_CRASH_VARIANTS").map_or(true, |names| {
        names
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(&format!("{variant:?}")))
    })
}

async fn trials_of(
    setup: TrialSetup,
    kind: TrialKind,
    count: usize,
    seed: u64,
) -> Result<Vec<String>, String> {
    let env = for_test().await.map_err(|e| e.to_string())?;
    let reference = run_trial(&setup, env.namespace(), &TrialPlan::reference(kind), None)
        .await
        .map_err(|e| format!("{kind} reference in {}: {e}", env.namespace()))?;
    if !reference.breaks.is_empty() {
        return Err(format!(
            "{kind} without faults broke invariants: {:#?}",
            reference.breaks
        ));
    }
    eprintln!(
        "{kind}: reference ended {:?} after {:.1}s",
        reference.outcome,
        reference.took.as_secs_f64()
    );
    // Kills land anywhere from the update to a little past the fault-free end; a GitOps
    // trial's first kill lands while the controller syncs the commit.
    let horizon = reference.took + Duration::from_millis(500);
    let focus = reference
        .synced
        .map_or(horizon, |s| s + Duration::from_millis(300));
    let mut rng =
        fastrand::Rng::with_seed(seed ^ ((kind.variant as u64) << 8 | kind.ending as u64));
    let mut breaks = Vec::new();
    for trial in 0..count {
        let plan = TrialPlan::random(kind, focus, horizon, &mut rng);
        let env = for_test().await.map_err(|e| e.to_string())?;
        let report = run_trial(&setup, env.namespace(), &plan, Some(&reference.outcome))
            .await
            .map_err(|e| format!("{kind} trial {trial} in {}: {e}", env.namespace()))?;
        eprintln!(
            "{kind} trial {trial}: kills at {:?}, {} breaks, ended after {:.1}s; stages {:?}",
            plan.kills,
            report.breaks.len(),
            report.took.as_secs_f64(),
            report.stages
        );
        breaks.extend(
            report
                .breaks
                .into_iter()
                .map(|b| format!("{kind} trial {trial} (kills at {:?}): {b}", plan.kills)),
        );
    }
    Ok(breaks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_controllers_resume_from_the_objects_alone() -> TestResult {
    let env = for_test().await?;
    install_trial_crds(&env.client()).await?;
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
    // The kinds run side by side, each in namespaces of its own.
    let results = futures::future::join_all(
        kinds()
            .into_iter()
            .filter(|(kind, _)| selected(kind.variant))
            .map(|(kind, count)| trials_of(setup.clone(), kind, count, seed)),
    )
    .await;
    let mut breaks = Vec::new();
    for result in results {
        match result {
            Ok(found) => breaks.extend(found),
            Err(error) => breaks.push(format!("could not run: {error}")),
        }
    }
    assert!(
        breaks.is_empty(),
        "seed {seed}: {} invariant breaks:\n{}",
        breaks.len(),
        breaks.join("\n")
    );
    Ok(())
}
