//! Experiments on the test cluster, from Argo Rollouts' own manifests: Ramp's controller
//! (Rollouts, Experiments and the AnalysisRun runner in-process, on exactly the chart's RBAC)
//! runs each one to its end.
//!
//! - `experiment-basic`, `experiment-same-template`: a ReplicaSet per template, Running once
//!   available, Successful after `duration`;
//! - `experiment-with-service`, `-multiport-service`, `-service-name`: a Service per template
//!   while it runs, gone with the pods after `scaleDownDelaySeconds`;
//! - `experiment-dry-run-analysis`, `experiment-measurement-retention-analysis`: Job analyses
//!   with dry-run and measurement retention;
//! - the expected failures: a missing AnalysisTemplate (Error), a failing analysis (Failed), a
//!   template never available (Failed at its progress deadline), a template without a pod
//!   spec and a malformed one (refused or Error);
//! - `rollout-experiment-analysis`: a Rollout's experiment step from its stable and canary
//!   ReplicaSets, hashes passed to the analysis, the Rollout moving on to its pause;
//! - `examples/rollout-experiment-step`: the experiment's analysis fails and the Rollout
//!   aborts, the Experiment winding down.
//!
//! The simulated kubelet cannot pull images or run `$RANDOM`: where a manifest relies on that
//! (an image that does not exist, a coin flip) the test says so and makes the outcome certain.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ramp_analysis::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate};
use ramp_analysis::providers::job::RUN_UID_LABEL;
use ramp_controller::api::{Experiment, Rollout, RolloutPhase};
use ramp_controller::rollout::names::POD_TEMPLATE_HASH_LABEL;
use ramp_e2e::cluster::{TestEnv, for_test};
use ramp_e2e::fixtures::gitops::install_crds;
use ramp_e2e::fixtures::rollouts::{
    InProcessController, healthy, install_rollout_crds, phase, promote, wait_for, wait_rollout,
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(120);

struct Scenario {
    env: TestEnv,
    controller: Option<InProcessController>,
}

impl Scenario {
    async fn start() -> Result<Scenario, Box<dyn std::error::Error>> {
        let env = for_test().await?;
        install_rollout_crds(&env.client()).await?;
        install_crds(&env.client(), &["experiments.argoproj.io"]).await?;
        let controller = InProcessController::start(env.kubeconfig_path(), env.namespace(), |c| {
            c.analysis = true;
        })
        .await?;
        Ok(Scenario {
            env,
            controller: Some(controller),
        })
    }

    fn client(&self) -> Client {
        self.env.client()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client(), self.env.namespace())
    }

    /// Creates every document of a reference file (after `edit`), as `kubectl create` would;
    /// returns the names given, by kind.
    async fn create(
        &self,
        path: &str,
        edit: impl Fn(&mut Value),
    ) -> Result<BTreeMap<String, Vec<String>>, String> {
        let text = reference(path)?;
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{path}: {e}"))?;
        let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for mut document in documents {
            if document.is_null() {
                continue;
            }
            edit(&mut document);
            let kind = document["kind"].as_str().unwrap_or_default().to_string();
            let name = match kind.as_str() {
                "AnalysisTemplate" => self.create_as::<AnalysisTemplate>(document).await,
                "Experiment" => self.create_as::<Experiment>(document).await,
                "Rollout" => self.create_as::<Rollout>(document).await,
                other => Err(format!("{path}: unexpected kind {other}")),
            }
            .map_err(|e| format!("{path}: creating a {kind}: {e}"))?;
            created.entry(kind).or_default().push(name);
        }
        Ok(created)
    }

    async fn create_as<K>(&self, document: Value) -> Result<String, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + serde::Serialize
            + Clone
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(document).map_err(|e| e.to_string())?;
        let created = self
            .api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| e.to_string())?;
        Ok(created.name_any())
    }

    async fn wait_experiment(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Experiment) -> bool,
    ) -> Result<Experiment, String> {
        let api = self.api::<Experiment>();
        let began = Instant::now();
        let mut last = None;
        loop {
            if let Ok(Some(experiment)) = api.get_opt(name).await {
                if check(&experiment) {
                    return Ok(experiment);
                }
                last = experiment.status;
            }
            if began.elapsed() > WAIT {
                return Err(format!(
                    "timed out waiting for Experiment {name}: {what}; last status: {last:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_phase(&self, name: &str, want: AnalysisPhase) -> Result<Experiment, String> {
        self.wait_experiment(name, &format!("phase {want}"), |e| {
            experiment_phase(e) == Some(want)
        })
        .await
    }

    /// `(spec.replicas, availableReplicas)` of a template's ReplicaSet.
    async fn size(&self, experiment: &str, template: &str) -> Option<(i32, i32)> {
        let rs = self
            .api::<ReplicaSet>()
            .get_opt(&format!("{experiment}-{template}"))
            .await
            .ok()??;
        Some((
            rs.spec.as_ref()?.replicas.unwrap_or(1),
            rs.status.as_ref()?.available_replicas.unwrap_or(0),
        ))
    }

    async fn wait_size(
        &self,
        experiment: &str,
        template: &str,
        want: (i32, i32),
    ) -> Result<(), String> {
        wait_for(
            &format!("ReplicaSet {experiment}-{template} at {want:?}"),
            WAIT,
            || async { (self.size(experiment, template).await == Some(want)).then_some(()) },
        )
        .await
    }

    async fn service_exists(&self, name: &str) -> bool {
        matches!(self.api::<Service>().get_opt(name).await, Ok(Some(_)))
    }

    async fn run(&self, name: &str) -> Result<AnalysisRun, String> {
        self.api::<AnalysisRun>()
            .get(name)
            .await
            .map_err(|e| format!("AnalysisRun {name}: {e}"))
    }

    /// Stops the controller, failing on any request the chart's RBAC refused it.
    async fn finish(mut self) -> TestResult {
        if let Some(controller) = self.controller.take() {
            controller.stop().await?;
        }
        Ok(())
    }
}

/// A file of Argo Rollouts' reference copy.
fn reference(path: &str) -> Result<String, String> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/reference/argo-rollouts")
        .join(path);
    std::fs::read_to_string(&full).map_err(|e| format!("reading {}: {e}", full.display()))
}

fn unchanged(_: &mut Value) {}

fn experiment_phase(experiment: &Experiment) -> Option<AnalysisPhase> {
    experiment.status.as_ref()?.phase
}

fn template_status(experiment: &Experiment, template: &str) -> Option<String> {
    experiment
        .status
        .as_ref()?
        .template_statuses
        .iter()
        .flatten()
        .find(|t| t.name == template)?
        .status
        .clone()
}

fn message(experiment: &Experiment) -> String {
    experiment
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn run_of(experiment: &Experiment, analysis: &str) -> Option<String> {
    experiment
        .status
        .as_ref()?
        .analysis_runs
        .iter()
        .flatten()
        .find(|r| r.name == analysis)
        .map(|r| r.analysis_run.clone())
        .filter(|r| !r.is_empty())
}

fn available_at(experiment: &Experiment) -> Option<k8s_openapi::jiff::Timestamp> {
    experiment
        .status
        .as_ref()?
        .available_at
        .as_ref()
        .map(|t| t.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn basic_and_same_template_experiments_run_their_duration_and_succeed() -> TestResult {
    let s = Scenario::start().await?;
    let basic = s
        .create("test/e2e/functional/experiment-basic.yaml", unchanged)
        .await?;
    let same = s
        .create(
            "test/e2e/functional/experiment-same-template.yaml",
            unchanged,
        )
        .await?;
    let basic = basic["Experiment"][0].clone();
    let same = same["Experiment"][0].clone();
    assert!(basic.starts_with("experiment-basic-"), "{basic}");

    let running = s.wait_phase(&basic, AnalysisPhase::Running).await?;
    let started = available_at(&running).ok_or("a Running experiment has availableAt")?;
    for template in ["baseline", "canary"] {
        assert_eq!(s.size(&basic, template).await, Some((1, 1)), "{template}");
        assert_eq!(
            template_status(&running, template).as_deref(),
            Some("Running")
        );
    }
    let rs = s
        .api::<ReplicaSet>()
        .get(&format!("{basic}-canary"))
        .await?;
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Experiment", basic.as_str())
    );
    let hash = rs.labels()[POD_TEMPLATE_HASH_LABEL].clone();
    let selector = rs
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(selector[POD_TEMPLATE_HASH_LABEL], hash);
    assert_eq!(selector["app"], "rollouts-demo");

    let done = s.wait_phase(&basic, AnalysisPhase::Successful).await?;
    let ran = k8s_openapi::jiff::Timestamp::now().duration_since(started);
    assert!(
        ran.as_secs() >= 29,
        "Successful only after its 30s duration, ran {ran:?}"
    );
    for template in ["baseline", "canary"] {
        assert_eq!(
            template_status(&done, template).as_deref(),
            Some("Successful")
        );
    }
    let progressing = done
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
        .ok_or("a Progressing condition")?;
    assert_eq!(progressing.status, "False");

    // Two templates with the same pod template each get their ReplicaSet.
    let same_done = s.wait_phase(&same, AnalysisPhase::Successful).await?;
    for template in ["first", "second"] {
        assert_eq!(
            template_status(&same_done, template).as_deref(),
            Some("Successful")
        );
    }
    // Both finished experiments scale down after the default 30 s delay.
    s.wait_size(&basic, "canary", (0, 0)).await?;
    s.wait_size(&same, "second", (0, 0)).await?;
    s.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn template_services_live_while_the_template_runs() -> TestResult {
    let s = Scenario::start().await?;
    let cases = [
        (
            "test/e2e/functional/experiment-with-service.yaml",
            "experiment-with-service",
            "experiment-with-service-test",
            1,
        ),
        (
            "test/e2e/functional/experiment-with-multiport-service.yaml",
            "experiment-with-multiport-service",
            "experiment-with-multiport-service-test",
            3,
        ),
        (
            "test/e2e/functional/experiment-with-service-name.yaml",
            "experiment-with-service-name",
            "test-service-name",
            1,
        ),
    ];
    // One at a time: each Service lives only 5 s past its experiment's end.
    for (path, name, service, ports) in &cases {
        s.create(path, unchanged).await?;
        let running = s.wait_phase(name, AnalysisPhase::Running).await?;
        assert_eq!(s.size(name, "test").await, Some((1, 1)));
        let svc = s.api::<Service>().get(service).await?;
        let spec = svc.spec.clone().unwrap_or_default();
        assert_eq!(spec.ports.as_ref().map(Vec::len), Some(*ports), "{service}");
        let hash = s
            .api::<ReplicaSet>()
            .get(&format!("{name}-test"))
            .await?
            .labels()[POD_TEMPLATE_HASH_LABEL]
            .clone();
        assert_eq!(
            spec.selector.unwrap_or_default()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        let status = running.status.unwrap_or_default();
        let entry = &status.template_statuses.unwrap_or_default()[0];
        assert_eq!(entry.service_name.as_deref(), Some(*service));

        let done = s.wait_phase(name, AnalysisPhase::Successful).await?;
        let finished = Instant::now();
        assert!(
            s.service_exists(service).await,
            "kept through the scale-down delay"
        );
        s.wait_size(name, "test", (0, 0)).await?;
        wait_for(&format!("Service {service} deleted"), WAIT, || async {
            (!s.service_exists(service).await).then_some(())
        })
        .await?;
        assert!(
            finished.elapsed() < Duration::from_secs(30),
            "scaled down and Service gone within the 5 s delay and a few passes"
        );
        let _ = done;
    }
    s.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_and_measurement_retention_analyses() -> TestResult {
    let s = Scenario::start().await?;
    s.create(
        "test/e2e/functional/experiment-dry-run-analysis.yaml",
        unchanged,
    )
    .await?;
    s.create(
        "test/e2e/functional/experiment-measurement-retention-analysis.yaml",
        unchanged,
    )
    .await?;

    // The dry-run metric fails, the experiment does not.
    let done = s
        .wait_phase("experiment-with-dry-run", AnalysisPhase::Successful)
        .await?;
    let run = s.run(&run_of(&done, "dry-run-job").ok_or("a run")?).await?;
    let summary = run.status.as_ref().and_then(|s| s.dry_run_summary.clone());
    let summary = summary.ok_or("a dryRunSummary")?;
    assert_eq!(
        (
            summary.count,
            summary.successful.unwrap_or(0),
            summary.failed
        ),
        (Some(1), 0, Some(1)),
        "{summary:?}"
    );
    assert_eq!(run.spec.dry_run.as_ref().map(Vec::len), Some(1));

    let done = s
        .wait_phase("experiment-with-mr", AnalysisPhase::Successful)
        .await?;
    let run_name = run_of(&done, "measurement-retention-job").ok_or("a run")?;
    let run = wait_for("the run to finish", WAIT, || async {
        let run = s.run(&run_name).await.ok()?;
        run.status.as_ref()?.phase?.completed().then_some(run)
    })
    .await?;
    let measurements = run
        .status
        .as_ref()
        .and_then(|s| s.metric_results.clone())
        .unwrap_or_default()[0]
        .measurements
        .clone()
        .unwrap_or_default();
    assert_eq!(measurements.len(), 2, "measurementRetention limit 2");
    s.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn argo_expected_failures_end_failed_or_in_error() -> TestResult {
    let s = Scenario::start().await?;
    s.create(
        "test/e2e/expectedfailures/experiment-error-template-missing.yaml",
        unchanged,
    )
    .await?;
    s.create(
        "test/e2e/expectedfailures/experiment-failed-analysis.yaml",
        unchanged,
    )
    .await?;
    // The simulated kubelet runs every image; its `-unready` suffix stands for an image that
    // cannot be pulled: the pod never becomes available.
    let degrade = s
        .create("test/e2e/expectedfailures/experiment-degrade.yaml", |doc| {
            doc["spec"]["templates"][0]["template"]["spec"]["containers"][0]["image"] =
                json!("argoproj/rollouts-demo:does-not-exist-unready");
        })
        .await?;
    let degrade = degrade["Experiment"][0].clone();
    let invalid = s
        .create(
            "test/e2e/expectedfailures/experiment-invalid.yaml",
            unchanged,
        )
        .await?;
    let invalid = invalid["Experiment"][0].clone();
    let malformed = s
        .create(
            "test/e2e/expectedfailures/malformed-experiment.yaml",
            unchanged,
        )
        .await;

    let missing = s
        .wait_phase("experiment-error-template-missing", AnalysisPhase::Error)
        .await?;
    assert!(
        message(&missing)
            .contains("AnalysisTemplate verification failed for analysis 'does-not-exist'"),
        "{}",
        message(&missing)
    );
    assert!(
        message(&missing).contains("not found"),
        "{}",
        message(&missing)
    );

    let failed = s
        .wait_phase("experiment-failed-analysis", AnalysisPhase::Failed)
        .await?;
    let run = s.run(&run_of(&failed, "bad-job").ok_or("a run")?).await?;
    assert_eq!(
        run.status.as_ref().and_then(|s| s.phase),
        Some(AnalysisPhase::Failed)
    );

    // A template without a pod spec: the API server refuses its ReplicaSet.
    let invalid = s.wait_phase(&invalid, AnalysisPhase::Error).await?;
    assert!(
        message(&invalid).contains("Failed to create ReplicaSet for template 'invalid-spec'"),
        "{}",
        message(&invalid)
    );
    assert_eq!(
        template_status(&invalid, "invalid-spec").as_deref(),
        Some("Error")
    );

    // `memory: invalid` is refused when created, or its ReplicaSet is.
    match malformed {
        Err(refused) => assert!(
            refused.contains("memory") || refused.contains("quantit"),
            "{refused}"
        ),
        Ok(created) => {
            let name = created["Experiment"][0].clone();
            let ended = s.wait_phase(&name, AnalysisPhase::Error).await?;
            assert!(
                message(&ended).contains("Failed to create ReplicaSet"),
                "{}",
                message(&ended)
            );
        }
    }

    let degraded = s.wait_phase(&degrade, AnalysisPhase::Failed).await?;
    assert_eq!(
        message(&degraded),
        "Template 'image-does-not-exist' exceeded its progressDeadlineSeconds (30)"
    );
    // A failed experiment's template is scaled down after the default 30 s delay.
    s.wait_size(&degrade, "image-does-not-exist", (0, 0))
        .await?;
    s.finish().await
}

/// Changes the pod template as Argo's e2e `UpdateSpec` does, to start an update.
async fn update_spec(api: &Api<Rollout>, name: &str) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"e2e-update": "1"}}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

fn paused(rollout: &Rollout) -> bool {
    phase(rollout) == Some(RolloutPhase::Paused)
}

async fn replica_set_of_revision(
    s: &Scenario,
    app: &str,
    revision: &str,
) -> Result<ReplicaSet, String> {
    let list = s
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| e.to_string())?;
    list.items
        .into_iter()
        .find(|rs| {
            rs.owner_references().iter().any(|o| o.kind == "Rollout")
                && rs
                    .annotations()
                    .get("rollout.argoproj.io/revision")
                    .map(String::as_str)
                    == Some(revision)
        })
        .ok_or_else(|| format!("no ReplicaSet of revision {revision}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_experiment_step_passes_hashes_to_its_analysis_and_moves_on() -> TestResult {
    let s = Scenario::start().await?;
    s.create(
        "test/e2e/functional/rollout-experiment-analysis.yaml",
        unchanged,
    )
    .await?;
    let rollouts = s.api::<Rollout>();
    let name = "rollout-experiment";
    wait_rollout(&rollouts, name, "Healthy", WAIT, healthy).await?;
    assert!(
        s.api::<Experiment>()
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );

    update_spec(&rollouts, name).await?;
    let at_pause = wait_rollout(&rollouts, name, "Paused after the experiment", WAIT, |r| {
        paused(r) && r.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await?;
    assert_ne!(at_pause.status.as_ref().and_then(|s| s.abort), Some(true));
    let experiments = s
        .api::<Experiment>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(experiments.len(), 1);
    let experiment = &experiments[0];
    assert_eq!(
        experiment_phase(experiment),
        Some(AnalysisPhase::Successful)
    );
    assert_eq!(
        experiment
            .annotations()
            .get("rollout.argoproj.io/revision")
            .map(String::as_str),
        Some("2")
    );

    let rs1 = replica_set_of_revision(&s, name, "1").await?;
    let rs2 = replica_set_of_revision(&s, name, "2").await?;
    let (hash1, hash2) = (
        rs1.labels()[POD_TEMPLATE_HASH_LABEL].clone(),
        rs2.labels()[POD_TEMPLATE_HASH_LABEL].clone(),
    );
    assert_ne!(hash1, hash2);
    let exp = experiment.name_any();
    let baseline = s
        .api::<ReplicaSet>()
        .get(&format!("{exp}-baseline"))
        .await?;
    let canary = s.api::<ReplicaSet>().get(&format!("{exp}-canary")).await?;
    let pod_spec = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.clone())
    };
    // specRef: stable and specRef: canary copy the pod specs.
    assert_eq!(pod_spec(&rs1), pod_spec(&baseline));
    assert_eq!(pod_spec(&rs2), pod_spec(&canary));
    let baseline_hash = baseline.labels()[POD_TEMPLATE_HASH_LABEL].clone();
    let canary_hash = canary.labels()[POD_TEMPLATE_HASH_LABEL].clone();
    assert_ne!(baseline_hash, canary_hash);
    assert_ne!(
        hash1, baseline_hash,
        "the experiment's pods are not the rollout's"
    );
    assert_ne!(
        hash2, canary_hash,
        "the experiment's pods are not the rollout's"
    );

    // podTemplateHashValue Stable/Latest and templates.NAME.podTemplateHash reach the Job.
    let run = s
        .run(&run_of(experiment, "echo-pod-hash").ok_or("a run")?)
        .await?;
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let jobs = s
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("{RUN_UID_LABEL}={uid}")))
        .await?
        .items;
    let env: BTreeMap<String, String> = jobs
        .first()
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(env["LATEST_HASH"], hash2);
    assert_eq!(env["STABLE_HASH"], hash1);
    assert_eq!(env["BASELINE_HASH"], baseline_hash);
    assert_eq!(env["CANARY_HASH"], canary_hash);

    promote(&rollouts, name).await?;
    wait_rollout(&rollouts, name, "Healthy on revision 2", WAIT, |r| {
        healthy(r) && r.status.as_ref().and_then(|s| s.stable_rs.clone()) == Some(hash2.clone())
    })
    .await?;
    // The finished experiment's ReplicaSets are scaled down after the delay.
    s.wait_size(&exp, "canary", (0, 0)).await?;
    s.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rollout_experiment_step_example_aborts_when_its_analysis_fails() -> TestResult {
    let s = Scenario::start().await?;
    // `random-fail` flips a coin with $RANDOM, which the simulated kubelet cannot run: here it
    // always fails, the outcome the example documents as an abort.
    s.create("examples/analysis-templates.yaml", |doc| {
        if doc["metadata"]["name"] == "random-fail" {
            doc["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]["containers"]
                [0]["args"] = json!(["exit 1"]);
        }
    })
    .await?;
    s.create("examples/rollout-experiment-step.yaml", unchanged)
        .await?;
    let rollouts = s.api::<Rollout>();
    let name = "rollout-experiment-step";
    wait_rollout(&rollouts, name, "Healthy", WAIT, healthy).await?;
    update_spec(&rollouts, name).await?;

    let aborted = wait_rollout(&rollouts, name, "aborted by the experiment", WAIT, |r| {
        phase(r) == Some(RolloutPhase::Degraded)
            && r.status.as_ref().and_then(|s| s.abort) == Some(true)
    })
    .await?;
    let status = aborted.status.clone().unwrap_or_default();
    assert_eq!(status.current_step_index, Some(0));
    let experiments = s
        .api::<Experiment>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(experiments.len(), 1);
    let experiment = &experiments[0];
    let exp = experiment.name_any();
    let failed = s.wait_phase(&exp, AnalysisPhase::Failed).await?;
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&message(&failed)),
        "the Rollout's abort names the experiment's failure: {:?} / {:?}",
        status.message,
        message(&failed)
    );
    // Back to the stable revision at full size; the experiment winds down.
    wait_rollout(&rollouts, name, "stable at full size", WAIT, |r| {
        r.status.as_ref().and_then(|s| s.available_replicas) == Some(4)
    })
    .await?;
    s.wait_size(&exp, "canary", (0, 0)).await?;
    s.finish().await
}
