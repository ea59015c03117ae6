//! `bench crash --trials N`: the crash-restart scenario at full size. On a private cluster,
//! `ramp-controller run` (release build, its own process) drives canary Rollouts with a step
//! analysis (web provider against in-process demo apps) and is SIGKILLed 1–3 times at random
//! moments of each update, then started again with nothing but the objects to resume from.
//!
//! Trials cycle through every [`TrialKind`]: the four variants (traffic by replica counts,
//! a Gateway API HTTPRoute, an NGINX canary Ingress, and a GitOps Application syncing the
//! update from a Git repository, killed during the sync) times the three endings (promoted,
//! aborted by the analysis, paused for a human). Each kind's fault-free run is measured first
//! and is the final state its trials must reach. A trial breaks an invariant when its final
//! state differs, something is orphaned (ReplicaSet, AnalysisRun, canary Ingress, header
//! route), or its recorded history shows traffic on a ReplicaSet without available pods (from
//! Services, Rollout weights and the router objects), a status field reset, a duplicate
//! AnalysisRun, or a deletion of an object Git still has (see [`crate::reliability`]). Every
//! break is printed, and the trials and breaks of each kind are reported; the goal is 0.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};

use super::cluster::{drop_namespace, fresh_namespace, timed_start};
use super::{BenchError, CommonFlags, Report, Samples, output_dir, parse_flags};
use crate::cluster::ClusterOptions;
use crate::fixtures::demo_app::{DemoApp, DemoAppConfig};
use crate::fixtures::rollouts::wait_for;
use crate::reliability::process::{Profile, controller_binary};
use crate::reliability::trial::{
    Outcome, TrialKind, TrialPlan, TrialReport, TrialSetup, Variant, install_trial_crds, run_trial,
};

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonFlags,
    /// Trials with kills (cycling through every variant and ending).
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Trials running at the same time, each with its own controller and namespace.
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// Seed of the kill moments (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// A namespace whose `default` service account exists (pods are refused before it does).
async fn namespace(client: &Client) -> Result<String, BenchError> {
    let name = fresh_namespace(client, "crash").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for(
        &format!("service account {name}/default"),
        Duration::from_secs(60),
        || async { accounts.get_opt("default").await.ok().flatten() },
    )
    .await
    .map_err(BenchError::Failed)?;
    Ok(name)
}

async fn trial(
    setup: &TrialSetup,
    plan: &TrialPlan,
    reference: Option<&Outcome>,
) -> Result<TrialReport, BenchError> {
    let ns = namespace(&setup.client).await?;
    let report = run_trial(setup, &ns, plan, reference)
        .await
        .map_err(|e| BenchError::Failed(format!("trial in namespace {ns}: {e}")))?;
    drop_namespace(&setup.client, &ns).await?;
    Ok(report)
}

/// `bench crash`.
pub async fn run(args: Vec<String>) -> Result<Report, BenchError> {
    let flags: Flags = parse_flags("crash", args)?;
    let binary = tokio::task::spawn_blocking(|| controller_binary(Profile::Release))
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))?
        .map_err(BenchError::Failed)?;
    let (cluster, _) = timed_start(ClusterOptions::default()).await?;
    let client = cluster.client();
    install_trial_crds(&client)
        .await
        .map_err(BenchError::Failed)?;
    let io = |what: &'static str| {
        move |source: std::io::Error| BenchError::Io {
            what,
            path: "127.0.0.1".into(),
            source,
        }
    };
    let good = DemoApp::start(DemoAppConfig::new("v1", 0.0))
        .await
        .map_err(io("starting the healthy demo app"))?;
    let bad = DemoApp::start(DemoAppConfig::new("v2", 0.1))
        .await
        .map_err(io("starting the failing demo app"))?;
    let logs = tempfile::Builder::new()
        .prefix("ramp-bench-crash-")
        .tempdir()
        .map_err(io("creating the log directory"))?;
    let setup = TrialSetup {
        client: client.clone(),
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        binary,
        good_url: good.url(),
        bad_url: bad.url(),
        log_dir: logs.path().to_path_buf(),
    };
    let seed = flags.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (--seed {seed} replays these kill moments)");

    // The fault-free runs, side by side like the trials.
    let setup = &setup;
    let mut references: Vec<(TrialKind, TrialReport)> = futures::stream::iter(TrialKind::all())
        .map(|kind| async move {
            let report = trial(setup, &TrialPlan::reference(kind), None).await;
            (kind, report)
        })
        .buffer_unordered(flags.parallel.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(kind, report)| {
            let report = report?;
            if !report.breaks.is_empty() {
                return Err(BenchError::Failed(format!(
                    "{kind} broke invariants without any fault:\n{}",
                    report.breaks.join("\n")
                )));
            }
            eprintln!(
                "reference {kind}: {:.1}s, {:?}",
                report.took.as_secs_f64(),
                report.outcome
            );
            Ok((kind, report))
        })
        .collect::<Result<_, BenchError>>()?;
    references.sort_by_key(|(kind, _)| *kind);

    let mut rng = fastrand::Rng::with_seed(seed);
    let plans: Vec<TrialPlan> = (0..flags.trials)
        .map(|index| {
            let (kind, reference) = &references[index % references.len()];
            // Kills land anywhere from the update to a little past the fault-free end; a GitOps
            // trial's first kill lands while the controller syncs the commit.
            let horizon = reference.took + Duration::from_millis(500);
            let focus = reference
                .synced
                .map_or(horizon, |s| s + Duration::from_millis(300));
            TrialPlan::random(*kind, focus, horizon, &mut rng)
        })
        .collect();
    let references = &references;
    let results: Vec<(usize, TrialPlan, Result<TrialReport, BenchError>)> =
        futures::stream::iter(plans.into_iter().enumerate())
            .map(|(index, plan)| async move {
                let reference = references
                    .iter()
                    .find(|(k, _)| *k == plan.kind)
                    .map(|(_, r)| &r.outcome);
                let result = trial(setup, &plan, reference).await;
                match &result {
                    Ok(report) => eprintln!(
                        "trial {index}: {}, kills at {:?}: {} breaks, {:.1}s",
                        plan.kind,
                        plan.kills,
                        report.breaks.len(),
                        report.took.as_secs_f64()
                    ),
                    Err(error) => eprintln!("trial {index}: could not run: {error}"),
                }
                (index, plan, result)
            })
            .buffer_unordered(flags.parallel.max(1))
            .collect()
            .await;

    let mut kills = 0;
    let mut broken_trials = 0;
    let mut breaks = 0;
    let mut failed_to_run = 0;
    let mut took = Samples::new();
    // (trials, trials that ran, breaks) of each kind.
    let mut by_kind: BTreeMap<TrialKind, (usize, usize, usize)> = BTreeMap::new();
    for (index, plan, result) in &results {
        let counts = by_kind.entry(plan.kind).or_default();
        counts.0 += 1;
        match result {
            Ok(report) => {
                counts.1 += 1;
                counts.2 += report.breaks.len();
                kills += report.kills;
                took.push(report.took.as_secs_f64());
                if !report.breaks.is_empty() {
                    broken_trials += 1;
                    breaks += report.breaks.len();
                    eprintln!(
                        "trial {index} ({}, kills at {:?}) broke:\n  {}",
                        plan.kind,
                        plan.kills,
                        report.breaks.join("\n  ")
                    );
                }
            }
            Err(error) => {
                failed_to_run += 1;
                eprintln!("trial {index} ({}) did not run: {error}", plan.kind);
            }
        }
    }

    let mut report = Report::new("crash");
    report.add("trials", results.len() as f64, "trials with kills");
    report.add_exact("seed", seed, "seed of the kill moments");
    report.add(
        "kills",
        kills as f64,
        "SIGKILLs of the controller in all trials",
    );
    report.add(
        "broken_trials",
        broken_trials as f64,
        "trials with at least one invariant break (goal 0)",
    );
    report.add(
        "invariant_breaks",
        breaks as f64,
        "invariant breaks in all trials (goal 0)",
    );
    report.add(
        "failed_to_run",
        failed_to_run as f64,
        "trials that could not run (setup errors, not breaks)",
    );
    for variant in Variant::ALL {
        let of_variant = by_kind.iter().filter(|(k, _)| k.variant == variant);
        let (trials, ran, broken) =
            of_variant.fold((0, 0, 0), |a, (_, c)| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
        let name = format!("{variant:?}").to_lowercase();
        report.add(
            &format!("trials_{name}"),
            trials as f64,
            &format!("{variant:?} trials ({ran} ran)"),
        );
        report.add(
            &format!("breaks_{name}"),
            broken as f64,
            &format!("invariant breaks in {variant:?} trials (goal 0)"),
        );
    }
    for (kind, (trials, ran, broken)) in &by_kind {
        eprintln!("{kind}: {trials} trials, {ran} ran, {broken} invariant breaks");
    }
    for (kind, reference) in references {
        report.add(
            &format!(
                "reference_{}_{}_s",
                format!("{:?}", kind.variant).to_lowercase(),
                format!("{:?}", kind.ending).to_lowercase()
            ),
            reference.took.as_secs_f64(),
            "fault-free update to the settled ending",
        );
    }
    report.add_median(
        "trial_s",
        &took,
        "update to the settled ending, with kills and restarts",
    );
    report.write(&output_dir(&flags.common))?;
    Ok(report)
}
