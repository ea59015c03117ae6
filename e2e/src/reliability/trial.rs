//! One crash-restart trial: a canary Rollout with a step analysis (web provider against a
//! demo app) is updated while `ramp-controller` runs as its own process; the process is
//! SIGKILLed at planned moments and started again, with nothing but the objects to resume
//! from. The trial then checks the invariants: the Rollout ends as it ends without kills
//! (a fault-free [`Outcome`] of the same [`TrialKind`]), nothing is orphaned, and the
//! [`history`](super::history) of every object shows no traffic on a ReplicaSet without
//! available pods, no status field reset and no duplicate AnalysisRun.
//!
//! A trial's [`Variant`] says how traffic is split and how the update arrives:
//!
//! | variant      | traffic                              | update                     |
//! |--------------|--------------------------------------|----------------------------|
//! | `Canary`     | replica counts                       | image patch                |
//! | `GatewayApi` | HTTPRoute weights + a header route   | image patch                |
//! | `Nginx`      | canary Ingress + a header route      | image patch                |
//! | `Gitops`     | replica counts                       | a commit synced from Git   |

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_analysis::api::{AnalysisRun, AnalysisTemplate};
use ramp_controller::api::Rollout;
use ramp_controller::rollout::names::{POD_TEMPLATE_HASH_LABEL, STEP_INDEX_LABEL};
use serde_json::json;

use super::gitops::{self, GitSource};
use super::history::{Kind, Recorder, check_history};
use super::process::{ControllerCommand, ControllerProcess};
use super::router::{self, HEADER_ROUTE, Router};
use crate::fixtures::analysis::install_analysis_crds;
use crate::fixtures::rollouts::{install_rollout_crds, phase, service, wait_for};

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

    /// The canary steps; with `header_route`, a `setHeaderRoute` step after the first weight.
    fn steps(self, good: &str, bad: &str, header_route: bool) -> Vec<serde_json::Value> {
        let analysis = |url: &str| {
            json!({"analysis": {"templates": [{"templateName": TEMPLATE}],
                                "args": [{"name": "base-url", "value": url}]}})
        };
        let header = json!({"setHeaderRoute": {"name": HEADER_ROUTE, "match": [
            {"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}});
        let mut steps = match self {
            Ending::Promoted => vec![
                json!({"setWeight": 25}),
                json!({"pause": {"duration": "1s"}}),
                analysis(good),
                json!({"setWeight": 75}),
                json!({"pause": {"duration": "1s"}}),
            ],
            Ending::Aborted => vec![
                json!({"setWeight": 25}),
                analysis(bad),
                json!({"setWeight": 75}),
            ],
            Ending::PausedForHuman => {
                vec![
                    json!({"setWeight": 50}),
                    analysis(good),
                    json!({"pause": {}}),
                ]
            }
        };
        if header_route {
            let at = if self == Ending::Promoted { 2 } else { 1 };
            steps.insert(at, header);
        }
        steps
    }

    /// Size of the ReplicaSet of `version` (`old` or `new`) once the ending has settled. With
    /// a router the stable ReplicaSet keeps every replica while the canary runs.
    fn final_size(self, version: &str, routed: bool) -> i32 {
        match (self, version) {
            (Ending::Promoted, "new") | (Ending::Aborted, "old") => 4,
            (Ending::PausedForHuman, "old") if routed => 4,
            (Ending::PausedForHuman, _) => 2,
            _ => 0,
        }
    }

    /// Whether the Rollout has reached this ending (not yet whether it settled); a pause for a
    /// human is the last of `steps` steps.
    fn reached(self, rollout: &Rollout, old: &str, steps: usize) -> bool {
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
                    && status.current_step_index == i32::try_from(steps).ok().map(|n| n - 1)
            }
        }
    }
}

/// How a trial splits traffic and how its update arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// Replica counts approximate the weights; the image is patched.
    Canary,
    /// A Gateway API HTTPRoute carries the weights and a header route.
    GatewayApi,
    /// An NGINX canary Ingress carries the weights and a header route.
    Nginx,
    /// The Rollout (replica counts) and other objects come from Git through an Application;
    /// the update is a commit, and the controller is killed during its sync.
    Gitops,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Canary,
        Variant::GatewayApi,
        Variant::Nginx,
        Variant::Gitops,
    ];

    pub fn router(self) -> Option<Router> {
        match self {
            Variant::GatewayApi => Some(Router::GatewayApi),
            Variant::Nginx => Some(Router::Nginx),
            Variant::Canary | Variant::Gitops => None,
        }
    }

    /// Kinds the trial's history records beyond [`Kind::BASE`].
    fn kinds(self) -> Vec<Kind> {
        match self {
            Variant::Gitops => vec![
                Kind::ConfigMap,
                Kind::Deployment,
                Kind::AnalysisTemplate,
                Kind::Application,
            ],
            other => other.router().map(Router::kinds).unwrap_or_default(),
        }
    }
}

/// What a trial runs: a variant and the ending its rollout reaches without faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrialKind {
    pub variant: Variant,
    pub ending: Ending,
}

impl TrialKind {
    pub fn new(variant: Variant, ending: Ending) -> Self {
        TrialKind { variant, ending }
    }

    /// Every variant with every ending.
    pub fn all() -> Vec<TrialKind> {
        Variant::ALL
            .iter()
            .flat_map(|&v| Ending::ALL.map(|e| TrialKind::new(v, e)))
            .collect()
    }

    fn steps(self, setup: &TrialSetup) -> Vec<serde_json::Value> {
        self.ending.steps(
            &setup.good_url,
            &setup.bad_url,
            self.variant.router().is_some(),
        )
    }
}

/// An ending alone is the replica-weighted canary's.
impl From<Ending> for TrialKind {
    fn from(ending: Ending) -> Self {
        TrialKind::new(Variant::Canary, ending)
    }
}

impl fmt::Display for TrialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.variant, self.ending)
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
    /// The router's weights, rules and annotations (router variants).
    pub router: Vec<String>,
    /// The Application, its revision and the objects only Git owns (GitOps variant).
    pub git: Vec<String>,
}

/// What a trial does.
#[derive(Clone, Debug)]
pub struct TrialPlan {
    pub kind: TrialKind,
    /// When to SIGKILL the controller, from the update; each kill is followed by a restart
    /// after the matching `restart_after`.
    pub kills: Vec<Duration>,
    pub restart_after: Vec<Duration>,
}

impl TrialPlan {
    /// A fault-free run.
    pub fn reference(kind: impl Into<TrialKind>) -> Self {
        TrialPlan {
            kind: kind.into(),
            kills: Vec::new(),
            restart_after: Vec::new(),
        }
    }

    /// One to three kills at random moments within `horizon` of the update, the first within
    /// `focus` of it (the window where the interesting writes happen, e.g. a GitOps sync),
    /// each restart after up to 1 s.
    pub fn random(
        kind: TrialKind,
        focus: Duration,
        horizon: Duration,
        rng: &mut fastrand::Rng,
    ) -> Self {
        let count = rng.usize(1..=3);
        let mut kills: Vec<Duration> = (0..count)
            .map(|i| {
                let window = if i == 0 { focus.min(horizon) } else { horizon };
                window.mul_f64(rng.f64())
            })
            .collect();
        kills.sort();
        let restart_after = (0..count)
            .map(|_| Duration::from_millis(rng.u64(0..1000)))
            .collect();
        TrialPlan {
            kind,
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
    /// GitOps: from the push to the Application Synced at the new commit.
    pub synced: Option<Duration>,
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

/// Installs every CRD a trial may need: every kind Ramp serves (the controller process
/// watches them all, Applications included) and Gateway API HTTPRoutes.
pub async fn install_trial_crds(client: &Client) -> Result<(), String> {
    install_rollout_crds(client).await?;
    install_analysis_crds(client).await?;
    let names: Vec<String> = ramp_controller::crd::all()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::fixtures::gitops::install_crds(client, &names).await?;
    router::install_http_route_crd(client).await
}

/// The Services, the AnalysisTemplate and the Rollout at `image`, as (kind, name, object).
fn rollout_objects(
    setup: &TrialSetup,
    namespace: &str,
    kind: TrialKind,
    image: &str,
) -> Result<Vec<(Kind, String, serde_json::Value)>, String> {
    let mut objects = Vec::new();
    for name in ["web-stable", "web-canary"] {
        let object = serde_json::to_value(service(name, ROLLOUT)).map_err(|e| e.to_string())?;
        objects.push((Kind::Service, name.to_string(), object));
    }
    objects.push((
        Kind::AnalysisTemplate,
        TEMPLATE.to_string(),
        json!({
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
        }),
    ));
    let mut canary = json!({
        "maxSurge": 1, "maxUnavailable": 0,
        "canaryService": "web-canary", "stableService": "web-stable",
        "steps": kind.steps(setup)
    });
    if let Some(router) = kind.variant.router() {
        canary["trafficRouting"] = router.traffic_routing(namespace);
        // Short delays, so the scale-downs after promotion and abort (their deadlines kept in
        // ReplicaSet annotations across restarts) happen within the trial.
        canary["scaleDownDelaySeconds"] = json!(2);
        canary["abortScaleDownDelaySeconds"] = json!(2);
    }
    objects.push((
        Kind::Rollout,
        ROLLOUT.to_string(),
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": ROLLOUT},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": ROLLOUT}},
                "template": {
                    "metadata": {"labels": {"app": ROLLOUT}, "annotations": {"ramp.e2e/ready-after": "300ms"}},
                    "spec": {"containers": [{"name": "app", "image": image}]}
                },
                "strategy": {"canary": canary}
            }
        }),
    ));
    Ok(objects)
}

/// Creates the Services, the AnalysisTemplate, the router object and the Rollout (version 1)
/// in `namespace` (the GitOps variant's come from Git: see [`run_trial`]).
pub async fn prepare(
    setup: &TrialSetup,
    namespace: &str,
    kind: impl Into<TrialKind>,
) -> Result<(), String> {
    let client = &setup.client;
    let kind = kind.into();
    if let Some(router) = kind.variant.router() {
        router
            .create_objects(client, namespace, "web-stable", "web-canary")
            .await?;
    }
    for (object_kind, name, object) in rollout_objects(setup, namespace, kind, "demo:1")? {
        let created = match object_kind {
            Kind::Service => {
                let object: Service = serde_json::from_value(object).map_err(|e| e.to_string())?;
                Api::<Service>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
            Kind::AnalysisTemplate => {
                let object: AnalysisTemplate =
                    serde_json::from_value(object).map_err(|e| e.to_string())?;
                Api::<AnalysisTemplate>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
            _ => {
                let object: Rollout = serde_json::from_value(object).map_err(|e| e.to_string())?;
                Api::<Rollout>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
        };
        created.map_err(|e| format!("creating {object_kind:?} {namespace}/{name}: {e}"))?;
    }
    Ok(())
}

/// The Rollout's ReplicaSets (not those of the GitOps trial's Deployment).
async fn rollout_replica_sets(client: &Client, namespace: &str) -> Result<Vec<ReplicaSet>, String> {
    Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("app={ROLLOUT}")))
        .await
        .map(|list| list.items)
        .map_err(|e| format!("listing ReplicaSets in {namespace}: {e}"))
}

/// Whether every ReplicaSet has the size the ending gives it, with all its pods available,
/// and every AnalysisRun has ended.
async fn settled(
    client: &Client,
    namespace: &str,
    kind: TrialKind,
    old: &str,
) -> Result<bool, String> {
    let routed = kind.variant.router().is_some();
    let sets = rollout_replica_sets(client, namespace).await?;
    let sets_settled = sets.iter().all(|rs| {
        let hash = rs
            .labels()
            .get(POD_TEMPLATE_HASH_LABEL)
            .map_or("", String::as_str);
        let want = kind
            .ending
            .final_size(if hash == old { "old" } else { "new" }, routed);
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
pub async fn outcome(
    client: &Client,
    namespace: &str,
    old: &str,
    kind: TrialKind,
    git: Option<&GitSource>,
) -> Result<Outcome, String> {
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
    let mut replica_sets: Vec<(String, i32)> = rollout_replica_sets(client, namespace)
        .await?
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
    let router = match kind.variant.router() {
        Some(router) => router.state(client, namespace).await?,
        None => Vec::new(),
    };
    let git = match git {
        Some(git) => gitops::state(client, namespace, git).await?,
        None => Vec::new(),
    };
    Ok(Outcome {
        phase: phase(&rollout).map(|p| p.as_str().to_string()),
        aborted: status.abort == Some(true),
        step_index: status.current_step_index,
        stable: version(status.stable_rs.as_deref().unwrap_or_default()),
        pause_reasons,
        replica_sets,
        services,
        analysis_runs,
        router,
        git,
    })
}

/// Objects left without their owner: every ReplicaSet and AnalysisRun of the Rollout must be
/// controlled by it (by uid).
pub async fn orphans(client: &Client, namespace: &str) -> Result<Vec<String>, String> {
    orphans_of(client, namespace, Ending::Promoted.into()).await
}

/// [`orphans`], and with a router, anything it kept of a finished rollout (header routes) or
/// a canary Ingress the Rollout does not control.
pub async fn orphans_of(
    client: &Client,
    namespace: &str,
    kind: TrialKind,
) -> Result<Vec<String>, String> {
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
    for rs in rollout_replica_sets(client, namespace).await? {
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
    if let Some(router) = kind.variant.router() {
        let finished = kind.ending != Ending::PausedForHuman;
        found.extend(router.orphans(client, namespace, &uid, finished).await?);
    }
    Ok(found)
}

/// The Rollout's and the Application's status and the ReplicaSets' sizes, for an error.
async fn snapshot_of(client: &Client, namespace: &str) -> String {
    let rollout = Api::<Rollout>::namespaced(client.clone(), namespace)
        .get_opt(ROLLOUT)
        .await
        .map(|r| r.map(|r| r.status));
    let app = Api::<ramp_controller::gitops::Application>::namespaced(client.clone(), namespace)
        .get_opt(gitops::APP)
        .await
        .map(|a| a.map(|a| a.status));
    let sets: Vec<(String, Option<i32>, Option<i32>)> = rollout_replica_sets(client, namespace)
        .await
        .unwrap_or_default()
        .iter()
        .map(|rs| {
            (
                rs.name_any(),
                rs.spec.as_ref().and_then(|s| s.replicas),
                rs.status.as_ref().and_then(|s| s.available_replicas),
            )
        })
        .collect();
    format!(
        "Rollout {namespace}/{ROLLOUT} status {rollout:?}; ReplicaSets (name, replicas, available) {sets:?}; Application status {app:?}"
    )
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
    let kind = plan.kind;
    let mut stages = Vec::new();
    let mut stage = Instant::now();
    let mut lap = |name: &'static str, stages: &mut Vec<(&'static str, Duration)>| {
        stages.push((name, stage.elapsed()));
        stage = Instant::now();
    };
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let recorder = Recorder::start_with(client, namespace, &kind.variant.kinds()).await?;
    // The controller's temporary directory (the GitOps Git cache) outlives each process, as
    // a pod's emptyDir outlives a container restart.
    let scratch = setup.log_dir.join(format!("{namespace}-tmp"));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let mut git = None;
    let mut args = Vec::new();
    if kind.variant == Variant::Gitops {
        let objects = rollout_objects(setup, namespace, kind, "demo:1")?;
        git = Some(GitSource::new(&gitops::manifests(1, objects))?);
        args = ["--gitops", "--gitops-poll-interval", "10s"]
            .map(String::from)
            .to_vec();
    }
    let command = ControllerCommand {
        binary: setup.binary.clone(),
        kubeconfig: setup.kubeconfig.clone(),
        namespace: namespace.to_string(),
        args,
        env: vec![("TMPDIR".into(), scratch.display().to_string())],
        log: setup.log_dir.join(format!("{namespace}.log")),
    };
    match &git {
        Some(git) => gitops::create_application(client, namespace, &git.url()).await?,
        None => prepare(setup, namespace, kind).await?,
    }
    let mut controller = ControllerProcess::start(&command, WAIT).await?;
    lap("prepare and start", &mut stages);
    let first = wait_for("the first version to be Healthy", WAIT, || async {
        if let Some(git) = &git
            && !gitops::synced_at(client, namespace, &git.commits[0]).await
        {
            return None;
        }
        let rollout = rollouts.get_opt(ROLLOUT).await.ok().flatten()?;
        (crate::fixtures::rollouts::healthy(&rollout) && stable_rs(&rollout).is_some())
            .then_some(rollout)
    })
    .await
    .map_err(|e| format!("{kind}: {e}; controller log:\n{}", controller.log_tail(40)));
    let first = match first {
        Ok(first) => first,
        Err(error) => return Err(format!("{error}\n{}", snapshot_of(client, namespace).await)),
    };
    let old = stable_rs(&first).unwrap_or_default();
    lap("first version healthy", &mut stages);

    match git.as_mut() {
        Some(git) => {
            let objects = rollout_objects(setup, namespace, kind, "demo:2")?;
            git.commit(&gitops::manifests(2, objects), "second version")?;
            let status = git.push(controller.health_addr).await?;
            if status != 200 {
                return Err(format!("the webhook answered {status} to the push"));
            }
        }
        None => {
            let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}});
            rollouts
                .patch(ROLLOUT, &PatchParams::default(), &Patch::Merge(image))
                .await
                .map_err(|e| format!("updating Rollout {namespace}/{ROLLOUT}: {e}"))?;
        }
    }
    let updated = Instant::now();
    for (at, pause) in plan.kills.iter().zip(&plan.restart_after) {
        tokio::time::sleep_until((updated + *at).into()).await;
        controller.kill9().await?;
        tokio::time::sleep(*pause).await;
        // Not waiting for readiness: the next kill may land while it starts up.
        controller = ControllerProcess::spawn(&command)?;
    }
    controller.ready(WAIT).await?;

    let steps = kind.steps(setup).len();
    let mut breaks = Vec::new();
    let synced: Mutex<Option<Duration>> = Mutex::new(None);
    let reached = wait_for(
        &format!("the rollout to end {kind} and settle"),
        WAIT,
        || async {
            if let Some(git) = &git {
                let last = git.commits.last().map_or("", String::as_str);
                if !gitops::synced_at(client, namespace, last).await {
                    return None;
                }
                let mut synced = synced.lock().unwrap_or_else(|e| e.into_inner());
                synced.get_or_insert_with(|| updated.elapsed());
            }
            let rollout = rollouts.get_opt(ROLLOUT).await.ok().flatten()?;
            let ended = kind.ending.reached(&rollout, &old, steps)
                && settled(client, namespace, kind, &old).await.ok()?;
            // The Application's health follows the Rollout's at its next reconcile.
            let app_settled = match &git {
                Some(_) => gitops::health_settled(client, namespace).await,
                None => true,
            };
            (ended && app_settled).then_some(())
        },
    )
    .await;
    let took = updated.elapsed();
    let synced = synced.into_inner().unwrap_or_else(|e| e.into_inner());
    lap("update to ending", &mut stages);
    let ended = reached.is_ok();
    if let Err(error) = reached {
        breaks.push(format!(
            "{error}; {}; controller log:\n{}",
            snapshot_of(client, namespace).await,
            controller.log_tail(20)
        ));
    }
    let mut outcome = outcome(client, namespace, &old, kind, git.as_ref()).await?;
    // A trial that never reached its ending is broken already; the comparison only names how.
    if let Some(reference) = reference
        && &outcome != reference
        && !ended
    {
        breaks.push(format!(
            "final state differs from the fault-free run:\n  got  {outcome:?}\n  want {reference:?}"
        ));
    } else if let Some(reference) = reference
        && &outcome != reference
    {
        // The state may still be converging towards the reference (e.g. a scale-down).
        let converged = wait_for("the same final state as without faults", WAIT, || async {
            let now = self::outcome(client, namespace, &old, kind, git.as_ref())
                .await
                .ok()?;
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
    breaks.extend(orphans_of(client, namespace, kind).await?);
    controller.kill9().await?;
    let history = recorder.history();
    breaks.extend(check_history(&history));
    if let Some(git) = &git {
        let objects = rollout_objects(setup, namespace, kind, "demo:2")?;
        let kept: Vec<(Kind, String)> = gitops::manifests(2, objects)
            .into_iter()
            .map(|(kind, name, _)| (kind, name))
            .collect();
        breaks.extend(gitops::check(&history, &kept, git));
    }
    lap("final checks", &mut stages);
    Ok(TrialReport {
        stages,
        outcome,
        breaks,
        kills: plan.kills.len(),
        took,
        synced,
    })
}
