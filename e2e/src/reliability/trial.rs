//! One crash-restart trial: a canary Rollout with a step analysis (web provider against a
//! demo app) is updated while `ramp-controller` runs as its own process; the process is
//! SIGKILLed at planned moments and started again, with nothing but the objects to resume
//! from. The trial then checks the invariants: the Rollout ends as it ends without kills
//! (a fault-free [`Outcome`] of the same [`Ending`]), nothing is orphaned, and the
//! [`history`](super::history) of every object shows no traffic on a ReplicaSet without
//! available pods, no status field reset and no duplicate AnalysisRun.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_analysis::api::{AnalysisRun, AnalysisTemplate};
use ramp_controller::api::Rollout;
use ramp_controller::rollout::names::{POD_TEMPLATE_HASH_LABEL, STEP_INDEX_LABEL};
use serde_json::json;

use super::history::{Recorder, check_history};
use super::process::{ControllerCommand, ControllerProcess};
use crate::fixtures::rollouts::{phase, service, wait_for};

/// The Rollout every trial updates.
pub const ROLLOUT: &str = "web";
const TEMPLATE: &str = "check";
/// Limit for each wait of a trial (a converging rollout takes seconds).
const WAIT: Duration = Duration::from_secs(120);

/// How a trial's rollout ends without faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    /// The analysis passes; every step runs; the new version becomes stable.
    Promoted,
    /// The analysis fails; the Rollout aborts back to the old stable.
    Aborted,
    /// The analysis passes, then an indefinite pause waits for a human.
    PausedForHuman,
}

impl Ending {
    pub const ALL: [Ending; 3] = [Ending::Promoted, Ending::Aborted, Ending::PausedForHuman];

    fn steps(self, good: &str, bad: &str) -> serde_json::Value {
        let analysis = |url: &str| {
            json!({"analysis": {"templates": [{"templateName": TEMPLATE}],
                                "args": [{"name": "base-url", "value": url}]}})
        };
        match self {
            Ending::Promoted => json!([
                {"setWeight": 25}, {"pause": {"duration": "1s"}}, analysis(good),
                {"setWeight": 75}, {"pause": {"duration": "1s"}}
            ]),
            Ending::Aborted => json!([{"setWeight": 25}, analysis(bad), {"setWeight": 75}]),
            Ending::PausedForHuman => json!([{"setWeight": 50}, analysis(good), {"pause": {}}]),
        }
    }

    /// Size of the ReplicaSet of `version` (`old` or `new`) once the ending has settled.
    fn final_size(self, version: &str) -> i32 {
        match (self, version) {
            (Ending::Promoted, "new") | (Ending::Aborted, "old") => 4,
            (Ending::PausedForHuman, _) => 2,
            _ => 0,
        }
    }

    /// Whether the Rollout has reached this ending (not yet whether it settled).
    fn reached(self, rollout: &Rollout, old: &str) -> bool {
        let Some(status) = rollout.status.as_ref() else {
            return false;
        };
        let current = phase(rollout);
        let stable = status.stable_rs.as_deref().unwrap_or_default();
        match self {
            Ending::Promoted => {
                current == Some(ramp_controller::api::RolloutPhase::Healthy)
                    && stable != old
                    && status.current_pod_hash.as_deref() == Some(stable)
            }
            Ending::Aborted => {
                status.abort == Some(true)
                    && stable == old
                    && current == Some(ramp_controller::api::RolloutPhase::Degraded)
            }
            Ending::PausedForHuman => {
                current == Some(ramp_controller::api::RolloutPhase::Paused)
                    && status.current_step_index == Some(2)
            }
        }
    }
}

/// A rollout's final state, in terms that do not depend on the run (hashes become
/// `old`/`new`), so a trial with kills compares equal to a fault-free one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub phase: Option<String>,
    pub aborted: bool,
    pub step_index: Option<i32>,
    pub stable: String,
    pub pause_reasons: Vec<String>,
    /// (version, spec.replicas) of every ReplicaSet.
    pub replica_sets: Vec<(String, i32)>,
    /// (Service, version it selects).
    pub services: Vec<(String, String)>,
    /// (version, step, phase) of every AnalysisRun.
    pub analysis_runs: Vec<(String, String, String)>,
}

/// What a trial does.
#[derive(Clone, Debug)]
pub struct TrialPlan {
    pub ending: Ending,
    /// When to SIGKILL the controller, from the image update; each kill is followed by a
    /// restart after the matching `restart_after`.
    pub kills: Vec<Duration>,
    pub restart_after: Vec<Duration>,
}

impl TrialPlan {
    /// A fault-free run.
    pub fn reference(ending: Ending) -> Self {
        TrialPlan {
            ending,
            kills: Vec::new(),
            restart_after: Vec::new(),
        }
    }

    /// One to three kills at random moments within `horizon` of the update, each restart after
    /// up to 1 s.
    pub fn random(ending: Ending, horizon: Duration, rng: &mut fastrand::Rng) -> Self {
        let count = rng.usize(1..=3);
        let mut kills: Vec<Duration> = (0..count).map(|_| horizon.mul_f64(rng.f64())).collect();
        kills.sort();
        let restart_after = (0..count)
            .map(|_| Duration::from_millis(rng.u64(0..1000)))
            .collect();
        TrialPlan {
            ending,
            kills,
            restart_after,
        }
    }
}

/// What a trial found.
#[derive(Clone, Debug)]
pub struct TrialReport {
    pub outcome: Outcome,
    /// Invariant breaks; empty when the trial passed.
    pub breaks: Vec<String>,
    pub kills: usize,
    /// From the image update to the ending reached and settled.
    pub took: Duration,
    /// Wall time of each stage of the trial, for finding where a slow trial spent it.
    pub stages: Vec<(&'static str, Duration)>,
}

/// Where a trial runs: the cluster, the controller binary, the demo apps' URLs.
#[derive(Clone)]
pub struct TrialSetup {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub binary: PathBuf,
    /// `/check` of this app reports healthy.
    pub good_url: String,
    /// `/check` of this app reports unhealthy.
    pub bad_url: String,
    /// Controller logs go here, one file per trial.
    pub log_dir: PathBuf,
}

/// Creates the Services, the AnalysisTemplate and the Rollout (version 1) in `namespace`.
pub async fn prepare(setup: &TrialSetup, namespace: &str, ending: Ending) -> Result<(), String> {
    let client = &setup.client;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for name in ["web-stable", "web-canary"] {
        services
            .create(&PostParams::default(), &service(name, ROLLOUT))
            .await
            .map_err(|e| format!("creating Service {namespace}/{name}: {e}"))?;
    }
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE},
        "spec": {
            "args": [{"name": "base-url"}],
            "metrics": [{
                "name": "healthy", "interval": "1s", "count": 2,
                "successCondition": "result == true",
                "provider": {"web": {"url": "{{args.base-url}}/check", "jsonPath": "{$.healthy}"}}
            }]
        }
    }))
    .map_err(|e| e.to_string())?;
    Api::<AnalysisTemplate>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &template)
        .await
        .map_err(|e| format!("creating AnalysisTemplate {namespace}/{TEMPLATE}: {e}"))?;
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": ROLLOUT},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {
                "metadata": {"labels": {"app": ROLLOUT}, "annotations": {"ramp.e2e/ready-after": "300ms"}},
                "spec": {"containers": [{"name": "app", "image": "demo:1"}]}
            },
            "strategy": {"canary": {
                "maxSurge": 1, "maxUnavailable": 0,
                "canaryService": "web-canary", "stableService": "web-stable",
                "steps": ending.steps(&setup.good_url, &setup.bad_url)
            }}
        }
    }))
    .map_err(|e| e.to_string())?;
    Api::<Rollout>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &rollout)
        .await
        .map_err(|e| format!("creating Rollout {namespace}/{ROLLOUT}: {e}"))?;
    Ok(())
}

/// Whether every ReplicaSet has the size the ending gives it, with all its pods available,
/// and every AnalysisRun has ended.
async fn settled(
    client: &Client,
    namespace: &str,
    ending: Ending,
    old: &str,
) -> Result<bool, String> {
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing ReplicaSets in {namespace}: {e}"))?;
    let sets_settled = sets.items.iter().all(|rs| {
        let hash = rs
            .labels()
            .get(POD_TEMPLATE_HASH_LABEL)
            .map_or("", String::as_str);
        let want = ending.final_size(if hash == old { "old" } else { "new" });
        let status = rs.status.as_ref();
        rs.spec.as_ref().and_then(|s| s.replicas) == Some(want)
            && status.map_or(0, |s| s.replicas) == want
            && status.and_then(|s| s.available_replicas).unwrap_or(0) == want
    });
    let runs = Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing AnalysisRuns in {namespace}: {e}"))?;
    let runs_ended = runs.items.iter().all(|run| {
        run.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.completed())
    });
    Ok(sets_settled && runs_ended)
}

/// The Rollout's final state, read from the live objects.
pub async fn outcome(client: &Client, namespace: &str, old: &str) -> Result<Outcome, String> {
    let rollout = Api::<Rollout>::namespaced(client.clone(), namespace)
        .get(ROLLOUT)
        .await
        .map_err(|e| format!("reading Rollout {namespace}/{ROLLOUT}: {e}"))?;
    let status = rollout.status.clone().unwrap_or_default();
    let new = status.current_pod_hash.clone().unwrap_or_default();
    let version = |hash: &str| match hash {
        h if h == old => "old".to_string(),
        h if h == new => "new".to_string(),
        other => other.to_string(),
    };
    let mut replica_sets: Vec<(String, i32)> =
        Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing ReplicaSets in {namespace}: {e}"))?
            .items
            .iter()
            .map(|rs| {
                (
                    version(
                        rs.labels()
                            .get(POD_TEMPLATE_HASH_LABEL)
                            .map_or("", String::as_str),
                    ),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                )
            })
            .collect();
    replica_sets.sort();
    let mut services: Vec<(String, String)> = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing Services in {namespace}: {e}"))?
        .items
        .iter()
        .map(|s| {
            let hash = s
                .spec
                .as_ref()
                .and_then(|spec| spec.selector.as_ref())
                .and_then(|sel| sel.get(POD_TEMPLATE_HASH_LABEL))
                .map_or("", String::as_str);
            (s.name_any(), version(hash))
        })
        .collect();
    services.sort();
    let mut analysis_runs: Vec<(String, String, String)> =
        Api::<AnalysisRun>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing AnalysisRuns in {namespace}: {e}"))?
            .items
            .iter()
            .map(|run| {
                (
                    version(
                        run.labels()
                            .get(POD_TEMPLATE_HASH_LABEL)
                            .map_or("", String::as_str),
                    ),
                    run.labels()
                        .get(STEP_INDEX_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                    run.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
    analysis_runs.sort();
    let mut pause_reasons: Vec<String> = status
        .pause_conditions
        .iter()
        .flatten()
        .map(|c| c.reason.clone())
        .collect();
    pause_reasons.sort();
    Ok(Outcome {
        phase: phase(&rollout).map(|p| p.as_str().to_string()),
        aborted: status.abort == Some(true),
        step_index: status.current_step_index,
        stable: version(status.stable_rs.as_deref().unwrap_or_default()),
        pause_reasons,
        replica_sets,
        services,
        analysis_runs,
    })
}

/// Objects left without their owner: every ReplicaSet and AnalysisRun in the namespace must
/// be controlled by the Rollout (by uid).
pub async fn orphans(client: &Client, namespace: &str) -> Result<Vec<String>, String> {
    let rollout = Api::<Rollout>::namespaced(client.clone(), namespace)
        .get(ROLLOUT)
        .await
        .map_err(|e| format!("reading Rollout {namespace}/{ROLLOUT}: {e}"))?;
    let uid = rollout.uid().unwrap_or_default();
    let controlled = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter()
            .any(|o| o.controller == Some(true) && o.kind == "Rollout" && o.uid == uid)
    };
    let mut found = Vec::new();
    for rs in Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing ReplicaSets in {namespace}: {e}"))?
        .items
    {
        if !controlled(rs.owner_references()) {
            found.push(format!(
                "ReplicaSet {namespace}/{} has no Rollout owner",
                rs.name_any()
            ));
        }
    }
    for run in Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing AnalysisRuns in {namespace}: {e}"))?
        .items
    {
        if !controlled(run.owner_references()) {
            found.push(format!(
                "AnalysisRun {namespace}/{} has no Rollout owner",
                run.name_any()
            ));
        }
    }
    Ok(found)
}

fn stable_rs(rollout: &Rollout) -> Option<String> {
    rollout.status.as_ref().and_then(|s| s.stable_rs.clone())
}

/// Runs one trial in `namespace` (fresh, with nothing in it). With `reference`, the final
/// state must equal it; without, the trial is the reference and only its own invariants count.
pub async fn run_trial(
    setup: &TrialSetup,
    namespace: &str,
    plan: &TrialPlan,
    reference: Option<&Outcome>,
) -> Result<TrialReport, String> {
    let client = &setup.client;
    let mut stages = Vec::new();
    let mut stage = Instant::now();
    let mut lap = |name: &'static str, stages: &mut Vec<(&'static str, Duration)>| {
        stages.push((name, stage.elapsed()));
        stage = Instant::now();
    };
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let recorder = Recorder::start(client, namespace).await?;
    let command = ControllerCommand {
        binary: setup.binary.clone(),
        kubeconfig: setup.kubeconfig.clone(),
        namespace: namespace.to_string(),
        args: Vec::new(),
        env: Vec::new(),
        log: setup.log_dir.join(format!("{namespace}.log")),
    };
    prepare(setup, namespace, plan.ending).await?;
    let mut controller = ControllerProcess::start(&command, WAIT).await?;
    lap("prepare and start", &mut stages);
    let first = wait_for("the first version to be Healthy", WAIT, || async {
        let rollout = rollouts.get_opt(ROLLOUT).await.ok().flatten()?;
        (crate::fixtures::rollouts::healthy(&rollout) && stable_rs(&rollout).is_some())
            .then_some(rollout)
    })
    .await
    .map_err(|e| format!("{e}; controller log:\n{}", controller.log_tail(20)))?;
    let old = stable_rs(&first).unwrap_or_default();
    lap("first version healthy", &mut stages);

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}});
    rollouts
        .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(image))
        .await
        .map_err(|e| format!("updating Rollout {namespace}/{ROLLOUT}: {e}"))?;
    let updated = Instant::now();
    for (at, pause) in plan.kills.iter().zip(&plan.restart_after) {
        tokio::time::sleep_until((updated + *at).into()).await;
        controller.kill9().await?;
        tokio::time::sleep(*pause).await;
        // Not waiting for readiness: the next kill may land while it starts up.
        controller = ControllerProcess::spawn(&command)?;
    }
    controller.ready(WAIT).await?;

    let ending = plan.ending;
    let mut breaks = Vec::new();
    let reached = wait_for(
        &format!("the rollout to end {ending:?} and settle"),
        WAIT,
        || async {
            let rollout = rollouts.get_opt(ROLLOUT).await.ok().flatten()?;
            (ending.reached(&rollout, &old)
                && settled(client, namespace, ending, &old).await.ok()?)
            .then_some(())
        },
    )
    .await;
    let took = updated.elapsed();
    lap("update to ending", &mut stages);
    if let Err(error) = reached {
        breaks.push(format!(
            "{error}; controller log:\n{}",
            controller.log_tail(20)
        ));
    }
    let mut outcome = outcome(client, namespace, &old).await?;
    if let Some(reference) = reference
        && &outcome != reference
    {
        // The state may still be converging towards the reference (e.g. a scale-down).
        let converged = wait_for("the same final state as without faults", WAIT, || async {
            let now = self::outcome(client, namespace, &old).await.ok()?;
            (&now == reference).then_some(now)
        })
        .await;
        match converged {
            Ok(now) => outcome = now,
            Err(_) => breaks.push(format!(
                "final state differs from the fault-free run:\n  got  {outcome:?}\n  want {reference:?}"
            )),
        }
    }
    breaks.extend(orphans(client, namespace).await?);
    controller.kill9().await?;
    breaks.extend(check_history(&recorder.history()));
    lap("final checks", &mut stages);
    Ok(TrialReport {
        stages,
        outcome,
        breaks,
        kills: plan.kills.len(),
        took,
    })
}
