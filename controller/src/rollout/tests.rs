//! The planner, pass by pass: small builders for Rollouts, ReplicaSets, Services and
//! AnalysisRuns, one plan per test step, no API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use ramp_analysis::api::{AnalysisPhase, AnalysisRunStatus, AnalysisTemplateRef};
use ramp_analysis::build::Templates;

use super::analysis::AnalysisUse;
use super::conditions::{self, INVALID_SPEC, PROGRESSING, ROLLOUT_ABORTED_REASON};
use super::hash::{pod_template_hash, step_hash};
use super::names::*;
use super::observe::Observed;
use super::pause::CANARY_PAUSE_STEP;
use super::plan::Plan;
use super::status::merge_patch;
use crate::api::{
    AnalysisRun, CanaryStatus, CanaryStep, CanaryStrategy, PauseCondition, Rollout,
    RolloutAnalysis, RolloutAnalysisRunStatus, RolloutPause, RolloutPhase, RolloutSpec,
    RolloutStatus, RolloutStrategy,
};

const UID: &str = "rollout-uid";

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn hash(image: &str) -> String {
    pod_template_hash(&template(image), None)
}

fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..Default::default()
    }
}

fn pause(seconds: Option<i32>) -> CanaryStep {
    CanaryStep {
        pause: Some(RolloutPause {
            duration: seconds.map(IntOrString::Int),
        }),
        ..Default::default()
    }
}

fn analysis_step(template: &str) -> CanaryStep {
    CanaryStep {
        analysis: Some(RolloutAnalysis {
            templates: Some(vec![AnalysisTemplateRef {
                template_name: Some(template.into()),
                cluster_scope: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `rollout().replicas(5).steps([...])`.
struct RolloutBuilder(Rollout);

fn rollout() -> RolloutBuilder {
    let mut r = Rollout::new(
        "web",
        RolloutSpec {
            replicas: Some(1),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                match_expressions: None,
            }),
            template: Some(template("web:1")),
            strategy: Some(RolloutStrategy {
                canary: Some(CanaryStrategy {
                    steps: Some(Vec::new()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(UID.into());
    r.metadata.generation = Some(1);
    RolloutBuilder(r)
}

impl RolloutBuilder {
    fn canary(&mut self) -> &mut CanaryStrategy {
        self.0
            .spec
            .strategy
            .as_mut()
            .unwrap()
            .canary
            .as_mut()
            .unwrap()
    }
    fn replicas(mut self, n: i32) -> Self {
        self.0.spec.replicas = Some(n);
        self
    }
    fn image(mut self, image: &str) -> Self {
        self.0.spec.template = Some(template(image));
        self
    }
    fn steps(mut self, steps: impl IntoIterator<Item = CanaryStep>) -> Self {
        self.canary().steps = Some(steps.into_iter().collect());
        self
    }
    fn surge(mut self, surge: i32, unavailable: i32) -> Self {
        self.canary().max_surge = Some(IntOrString::Int(surge));
        self.canary().max_unavailable = Some(IntOrString::Int(unavailable));
        self
    }
    fn services(mut self, stable: &str, canary: &str) -> Self {
        self.canary().stable_service = Some(stable.into());
        self.canary().canary_service = Some(canary.into());
        self
    }
    fn revision(mut self, revision: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION_ANNOTATION.into(), revision.into());
        self
    }
    /// A status as a previous pass left it: at `index`, stable `stable`, current `current`.
    fn status(mut self, stable: &str, current: &str, index: Option<i32>) -> Self {
        let steps = self
            .0
            .spec
            .strategy
            .as_ref()
            .unwrap()
            .canary
            .as_ref()
            .unwrap()
            .steps
            .clone();
        self.0.status = Some(RolloutStatus {
            stable_rs: Some(stable.into()),
            current_pod_hash: Some(current.into()),
            current_step_hash: Some(step_hash(steps.as_deref())),
            current_step_index: index,
            observed_generation: Some("1".into()),
            canary: Some(CanaryStatus::default()),
            ..Default::default()
        });
        self
    }
    /// Paused by a pause step since second `second`.
    fn paused_at_step_since(self, second: i64) -> Self {
        self.with_status(|s| {
            s.controller_pause = Some(true);
            s.pause_conditions = Some(vec![PauseCondition {
                reason: CANARY_PAUSE_STEP.into(),
                start_time: Time(at(second)),
            }]);
        })
    }
    fn with_status(mut self, edit: impl FnOnce(&mut RolloutStatus)) -> Self {
        edit(self.0.status.get_or_insert_with(Default::default));
        self
    }
    fn build(self) -> Rollout {
        self.0
    }
}

fn replica_set(
    image: &str,
    revision: i64,
    desired: i32,
    available: i32,
    created: i64,
) -> Arc<ReplicaSet> {
    let h = hash(image);
    let mut template = template(image);
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), h.clone());
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(replica_set_name("web", &h)),
            namespace: Some("shop".into()),
            uid: Some(format!("rs-{h}")),
            labels: template.metadata.as_ref().unwrap().labels.clone(),
            annotations: Some(BTreeMap::from([
                (REVISION_ANNOTATION.into(), revision.to_string()),
                (DESIRED_REPLICAS_ANNOTATION.into(), "placeholder".into()),
            ])),
            creation_timestamp: Some(Time(at(created))),
            owner_references: Some(vec![OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Rollout".into(),
                name: "web".into(),
                uid: UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(desired),
            template: Some(template),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: desired.max(available),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
    })
}

/// Sets the `desired-replicas` annotation as a previous scale by the controller left it.
fn sized_for(rs: Arc<ReplicaSet>, replicas: i32) -> Arc<ReplicaSet> {
    let mut rs = (*rs).clone();
    rs.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(DESIRED_REPLICAS_ANNOTATION.into(), replicas.to_string());
    Arc::new(rs)
}

fn service(name: &str, selected: Option<&str>, managed: bool) -> Arc<Service> {
    let mut selector = BTreeMap::from([("app".to_string(), "web".to_string())]);
    if let Some(hash) = selected {
        selector.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    }
    Arc::new(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            annotations: managed
                .then(|| BTreeMap::from([(MANAGED_BY_ANNOTATION.to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ..Default::default()
        }),
        status: None,
    })
}

fn observed(rollout: Rollout, sets: Vec<Arc<ReplicaSet>>) -> Observed {
    let mut observed = Observed::new(Arc::new(rollout));
    observed.replica_sets = sets;
    observed
}

fn sizes(plan: &Plan) -> BTreeMap<String, i32> {
    let mut sizes: BTreeMap<String, i32> = plan
        .replica_set_updates
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.replicas?)))
        .collect();
    if let Some(created) = &plan.create_replica_set {
        sizes.insert(
            created.metadata.name.clone().unwrap(),
            created.spec.as_ref().unwrap().replicas.unwrap(),
        );
    }
    sizes
}

fn status(plan: &Plan) -> &RolloutStatus {
    plan.status.as_ref().expect("the plan writes status")
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn first_pass_records_the_revision_before_creating_anything() {
    let r = rollout()
        .replicas(3)
        .steps([weight(20), pause(None)])
        .build();
    let plan = super::plan(&observed(r, vec![]), at(0));
    assert!(plan.create_replica_set.is_none());
    let s = status(&plan);
    assert_eq!(s.current_pod_hash.as_deref(), Some(hash("web:1").as_str()));
    assert_eq!(s.current_step_index, Some(0));
    assert_eq!(s.observed_generation.as_deref(), Some("1"));
    assert_eq!(s.phase, Some(RolloutPhase::Progressing));
}

#[test]
fn initial_deploy_creates_a_full_size_replica_set_and_promotes_it() {
    let r = rollout()
        .replicas(3)
        .steps([weight(20), pause(None)])
        .status("", &hash("web:1"), Some(0))
        .build();
    let plan = super::plan(&observed(r, vec![]), at(0));
    let created = plan
        .create_replica_set
        .as_ref()
        .expect("creates the first ReplicaSet");
    assert_eq!(
        created.metadata.name.as_deref(),
        Some(replica_set_name("web", &hash("web:1")).as_str())
    );
    assert_eq!(
        created.spec.as_ref().unwrap().replicas,
        Some(3),
        "no stable yet: straight to full size"
    );
    let labels = created.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&hash("web:1")));
    let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Rollout", Some(true))
    );
    assert_eq!(
        created
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(plan.rollout_revision.as_deref(), Some("1"));
    assert_eq!(
        status(&plan).stable_rs.as_deref(),
        Some(hash("web:1").as_str()),
        "initial deploy is stable at once"
    );
    assert_eq!(
        reasons(&plan),
        [
            "NewReplicaSetCreated",
            "RolloutUpdated",
            "ScalingReplicaSet",
            "RolloutCompleted"
        ]
    );
}

#[test]
fn a_settled_rollout_plans_no_write() {
    let h = hash("web:1");
    let r = rollout()
        .replicas(3)
        .steps([weight(20)])
        .revision("1")
        .status(&h, &h, Some(1))
        .build();
    let rs = sized_for(replica_set("web:1", 1, 3, 3, 0), 3);
    let first = super::plan(&observed(r.clone(), vec![rs.clone()]), at(0));
    // Let the first pass's status stand as the observed one; the next pass must change nothing.
    let mut settled = r;
    settled.status = first.status.clone();
    let second = super::plan(&observed(settled.clone(), vec![rs]), at(60));
    assert!(!second.writes_objects(), "{second:?}");
    assert_eq!(
        merge_patch(settled.status.as_ref().unwrap(), status(&second)),
        None,
        "no status change"
    );
    assert!(second.events.is_empty(), "{:?}", second.events);
    assert_eq!(status(&second).phase, Some(RolloutPhase::Healthy));
}

#[test]
fn a_template_change_restarts_the_steps() {
    let old = hash("web:1");
    let r = rollout()
        .replicas(10)
        .steps([weight(20), pause(None)])
        .revision("1")
        .image("web:2")
        .status(&old, &old, Some(2))
        .build();
    let plan = super::plan(
        &observed(r, vec![sized_for(replica_set("web:1", 1, 10, 10, 0), 10)]),
        at(0),
    );
    assert!(
        plan.create_replica_set.is_none(),
        "the first pass only records the change"
    );
    let s = status(&plan);
    assert_eq!(s.current_pod_hash.as_deref(), Some(hash("web:2").as_str()));
    assert_eq!(s.current_step_index, Some(0));
    assert_eq!(s.stable_rs.as_deref(), Some(old.as_str()));
}

#[test]
fn set_weight_grows_the_canary_within_max_surge_then_drains_the_stable() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(10)
        .surge(2, 0)
        .steps([weight(20), pause(None)])
        .revision("1")
        .image("web:2")
        .status(&old, &new, Some(0))
        .build();
    let stable = sized_for(replica_set("web:1", 1, 10, 10, 0), 10);
    let plan = super::plan(&observed(r.clone(), vec![stable.clone()]), at(0));
    let created = plan
        .create_replica_set
        .as_ref()
        .expect("creates the canary ReplicaSet");
    assert_eq!(
        created.spec.as_ref().unwrap().replicas,
        Some(2),
        "canary 2, stable untouched"
    );
    assert_eq!(
        created
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("2")
    );
    assert!(
        plan.replica_set_updates
            .iter()
            .all(|u| u.replicas.is_none())
    );
    assert_eq!(
        status(&plan).current_step_index,
        Some(0),
        "not at the desired counts yet"
    );

    // The canary's two pods are available: the stable goes down to 8.
    let canary = sized_for(replica_set("web:2", 2, 2, 2, 10), 10);
    let plan = super::plan(&observed(r.clone(), vec![stable, canary.clone()]), at(20));
    assert_eq!(sizes(&plan).get(&replica_set_name("web", &old)), Some(&8));

    // At 2/8, all available: the step completes.
    let stable = sized_for(replica_set("web:1", 1, 8, 8, 0), 10);
    let plan = super::plan(&observed(r, vec![stable, canary]), at(30));
    assert!(sizes(&plan).is_empty());
    assert_eq!(status(&plan).current_step_index, Some(1));
    assert!(reasons(&plan).contains(&"RolloutStepCompleted"));
    assert!(
        plan.events
            .iter()
            .any(|e| e.message == "Rollout step 1/2 completed (setWeight: 20)")
    );
}

#[test]
fn pause_steps_pause_and_promote_resumes() {
    let old = hash("web:1");
    let new = hash("web:2");
    let steps = [weight(50), pause(None), weight(100)];
    let base = rollout()
        .replicas(2)
        .surge(1, 0)
        .steps(steps)
        .revision("2")
        .image("web:2");
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 2),
        sized_for(replica_set("web:2", 2, 1, 1, 10), 2),
    ];
    let r = base.status(&old, &new, Some(1)).build();
    let plan = super::plan(&observed(r.clone(), sets.clone()), at(0));
    let s = status(&plan);
    assert_eq!(
        s.pause_conditions.as_ref().unwrap()[0].reason,
        CANARY_PAUSE_STEP
    );
    assert_eq!(s.controller_pause, Some(true));
    assert_eq!(s.phase, Some(RolloutPhase::Paused));
    assert_eq!(s.message.as_deref(), Some(CANARY_PAUSE_STEP));
    assert!(reasons(&plan).contains(&"RolloutPaused"));

    // `kubectl argo rollouts promote` clears the pause conditions: the step completes.
    let mut promoted = r;
    promoted.status = plan.status.clone();
    promoted.status.as_mut().unwrap().pause_conditions = None;
    let plan = super::plan(&observed(promoted, sets), at(5));
    let s = status(&plan);
    assert_eq!(s.current_step_index, Some(2));
    assert_eq!(s.pause_conditions, None);
    assert_eq!(s.controller_pause, None);
}

#[test]
fn timed_pauses_requeue_exactly_when_they_end() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(2)
        .surge(1, 0)
        .steps([weight(50), pause(Some(30))])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .paused_at_step_since(0)
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 2),
        sized_for(replica_set("web:2", 2, 1, 1, 10), 2),
    ];
    let plan = super::plan(&observed(r.clone(), sets.clone()), at(10));
    let wait = plan
        .requeue_after
        .expect("a requeue for the end of the pause");
    assert!(
        wait >= Duration::from_secs(20) && wait <= Duration::from_millis(20_010),
        "{wait:?}"
    );
    assert_eq!(status(&plan).current_step_index, Some(1));

    let plan = super::plan(&observed(r, sets), at(31));
    assert_eq!(
        status(&plan).current_step_index,
        Some(2),
        "the pause is over"
    );
}

#[test]
fn abort_moves_the_canary_service_back_first_and_scales_the_canary_down() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(4)
        .surge(1, 0)
        .services("web-stable", "web-canary")
        .steps([weight(50), pause(None)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .with_status(|s| s.abort = Some(true))
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 2, 2, 0), 4),
        sized_for(replica_set("web:2", 2, 2, 2, 10), 4),
    ];
    let mut world = observed(r, sets);
    world
        .services
        .insert("web-stable".into(), service("web-stable", Some(&old), true));
    world
        .services
        .insert("web-canary".into(), service("web-canary", Some(&new), true));
    let plan = super::plan(&world, at(0));
    assert_eq!(plan.services.len(), 1);
    assert_eq!(
        (
            plan.services[0].service.as_str(),
            plan.services[0].to.as_str()
        ),
        ("web-canary", old.as_str())
    );
    assert_eq!(
        sizes(&plan).get(&replica_set_name("web", &old)),
        Some(&3),
        "stable grows back within maxSurge"
    );
    let s = status(&plan);
    assert_eq!(s.current_step_index, Some(0));
    assert_eq!(s.abort, Some(true));
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    let progressing = conditions::get(s.conditions.as_deref().unwrap(), PROGRESSING).unwrap();
    assert_eq!(progressing.reason, ROLLOUT_ABORTED_REASON);
    assert_eq!(progressing.message, "Rollout aborted update to revision 2");
    assert!(
        plan.events
            .iter()
            .any(|e| e.warning && e.reason == ROLLOUT_ABORTED_REASON)
    );
}

fn run(name: &str, phase: AnalysisPhase, message: &str) -> Arc<AnalysisRun> {
    let mut run = AnalysisRun::new(name, Default::default());
    run.metadata.namespace = Some("shop".into());
    run.metadata.labels = Some(BTreeMap::from([(
        POD_TEMPLATE_HASH_LABEL.to_string(),
        hash("web:2"),
    )]));
    run.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        name: "web".into(),
        uid: UID.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    run.status = Some(AnalysisRunStatus {
        phase: Some(phase),
        message: Some(message.into()),
        ..Default::default()
    });
    Arc::new(run)
}

fn analysis_world(step_run: Option<Arc<AnalysisRun>>) -> Observed {
    let old = hash("web:1");
    let new = hash("web:2");
    let run_name = step_run.as_ref().map(|r| r.metadata.name.clone().unwrap());
    let r = rollout()
        .replicas(2)
        .surge(1, 0)
        .services("web-stable", "web-canary")
        .steps([weight(50), analysis_step("error-rate"), weight(100)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .with_status(|s| {
            if let Some(name) = run_name {
                s.canary.as_mut().unwrap().current_step_analysis_run_status =
                    Some(RolloutAnalysisRunStatus {
                        name,
                        status: AnalysisPhase::Running,
                        message: None,
                    });
            }
        })
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 2),
        sized_for(replica_set("web:2", 2, 1, 1, 10), 2),
    ];
    let mut world = observed(r, sets);
    world
        .services
        .insert("web-stable".into(), service("web-stable", Some(&old), true));
    world
        .services
        .insert("web-canary".into(), service("web-canary", Some(&new), true));
    let template = ramp_analysis::api::AnalysisTemplateSpec {
        metrics: Some(vec![ramp_analysis::api::Metric {
            name: "error-rate".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let templates = Templates {
        templates: vec![template],
        ..Default::default()
    };
    world
        .analysis_templates
        .insert(AnalysisUse::Step(1), Ok(Arc::new(templates)));
    world.runs(step_run)
}

impl Observed {
    fn runs(mut self, run: Option<Arc<AnalysisRun>>) -> Observed {
        self.analysis_runs = run.into_iter().collect();
        self
    }
}

#[test]
fn analysis_steps_create_labelled_owned_runs() {
    let plan = super::plan(&analysis_world(None), at(0));
    let created = plan
        .analysis_runs
        .iter()
        .find_map(|c| match c {
            super::plan::AnalysisRunChange::Create(run) => Some(run),
            _ => None,
        })
        .expect("creates the step's AnalysisRun");
    let name = format!("web-{}-2-1", hash("web:2"));
    assert_eq!(created.metadata.name.as_deref(), Some(name.as_str()));
    let labels = created.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get(ROLLOUT_TYPE_LABEL).map(String::as_str),
        Some("Step")
    );
    assert_eq!(labels.get(STEP_INDEX_LABEL).map(String::as_str), Some("1"));
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&hash("web:2")));
    assert_eq!(
        created.metadata.owner_references.as_ref().unwrap()[0].uid,
        UID
    );
    assert_eq!(created.spec.metrics[0].name, "error-rate");
    let recorded = status(&plan)
        .canary
        .as_ref()
        .unwrap()
        .current_step_analysis_run_status
        .as_ref()
        .unwrap();
    assert_eq!(recorded.name, name);
}

#[test]
fn a_failed_analysis_aborts_and_moves_traffic_in_the_same_pass() {
    let failed = run(
        &format!("web-{}-2-1", hash("web:2")),
        AnalysisPhase::Failed,
        "Metric \"error-rate\" assessed Failed",
    );
    let plan = super::plan(&analysis_world(Some(failed)), at(0));
    assert!(
        plan.services
            .iter()
            .any(|s| s.service == "web-canary" && s.to == hash("web:1")),
        "the canary Service goes back to stable in the pass that sees the failure: {:?}",
        plan.services
    );
    let s = status(&plan);
    assert_eq!(s.abort, Some(true));
    let progressing = conditions::get(s.conditions.as_deref().unwrap(), PROGRESSING).unwrap();
    assert_eq!(
        progressing.message,
        "Rollout aborted update to revision 2: Metric \"error-rate\" assessed Failed"
    );
    assert!(reasons(&plan).contains(&"AnalysisRunFailed"));
}

#[test]
fn a_successful_analysis_completes_the_step() {
    let done = run(
        &format!("web-{}-2-1", hash("web:2")),
        AnalysisPhase::Successful,
        "",
    );
    let plan = super::plan(&analysis_world(Some(done)), at(0));
    let s = status(&plan);
    assert_eq!(s.current_step_index, Some(2));
    assert!(
        s.canary
            .as_ref()
            .unwrap()
            .current_step_analysis_run_status
            .is_none()
    );
}

#[test]
fn an_inconclusive_analysis_pauses() {
    let unsure = run(
        &format!("web-{}-2-1", hash("web:2")),
        AnalysisPhase::Inconclusive,
        "",
    );
    let plan = super::plan(&analysis_world(Some(unsure)), at(0));
    let s = status(&plan);
    assert_eq!(
        s.pause_conditions.as_ref().unwrap()[0].reason,
        "InconclusiveAnalysisRun"
    );
    assert_eq!(s.phase, Some(RolloutPhase::Paused));
    assert_eq!(s.current_step_index, Some(1));
}

#[test]
fn invalid_specs_get_a_condition_and_nothing_else() {
    let mut r = rollout().replicas(3).build();
    r.spec.selector = None;
    let plan = super::plan(&observed(r, vec![]), at(0));
    assert!(!plan.writes_objects());
    let s = status(&plan);
    let condition = conditions::get(s.conditions.as_deref().unwrap(), INVALID_SPEC).unwrap();
    assert!(
        condition
            .message
            .starts_with("The Rollout \"web\" is invalid: spec.selector"),
        "{}",
        condition.message
    );
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
}

#[test]
fn missing_services_are_an_invalid_spec() {
    let r = rollout()
        .replicas(1)
        .services("web-stable", "web-canary")
        .build();
    let plan = super::plan(&observed(r, vec![]), at(0));
    let s = status(&plan);
    let condition = conditions::get(s.conditions.as_deref().unwrap(), INVALID_SPEC).unwrap();
    assert!(
        condition
            .message
            .contains("service \"web-stable\" not found"),
        "{}",
        condition.message
    );
}

#[test]
fn scaling_while_paused_resizes_the_stable_first() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(8)
        .steps([weight(25), pause(None)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .paused_at_step_since(0)
        .build();
    // Sized for 1 replica: the Rollout was just scaled to 8.
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 1),
        sized_for(replica_set("web:2", 2, 1, 1, 10), 1),
    ];
    let plan = super::plan(&observed(r, sets), at(5));
    assert_eq!(sizes(&plan).get(&replica_set_name("web", &old)), Some(&6));
    assert_eq!(
        status(&plan).current_step_index,
        Some(1),
        "a scaling event does not move the steps"
    );
    assert!(status(&plan).pause_conditions.is_some(), "nor the pause");
}

#[test]
fn going_back_to_the_stable_template_skips_the_steps() {
    let old = hash("web:1");
    let new = hash("web:2");
    // Mid-update to web:2, the user puts web:1 back.
    let r = rollout()
        .replicas(2)
        .steps([weight(50), pause(None)])
        .revision("2")
        .image("web:1")
        .status(&old, &new, Some(1))
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 2),
        sized_for(replica_set("web:2", 2, 1, 1, 10), 2),
    ];
    let plan = super::plan(&observed(r, sets), at(0));
    let s = status(&plan);
    assert_eq!(s.current_pod_hash.as_deref(), Some(old.as_str()));
    assert_eq!(s.current_step_index, Some(2));
    assert!(reasons(&plan).contains(&"SkipSteps"));
}

#[test]
fn a_promoted_canary_becomes_stable() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(2)
        .surge(1, 0)
        .steps([weight(50)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 0, 0, 0), 2),
        sized_for(replica_set("web:2", 2, 2, 2, 10), 2),
    ];
    let plan = super::plan(&observed(r, sets), at(0));
    let s = status(&plan);
    assert_eq!(s.stable_rs.as_deref(), Some(new.as_str()));
    assert!(plan.events.iter().any(|e| e.message
        == format!(
            "Rollout completed update to revision 2 ({new}): Completed all 1 canary steps"
        )));
}

#[test]
fn the_stable_keeps_a_pod_while_its_service_still_selects_it() {
    let old = hash("web:1");
    let new = hash("web:2");
    let r = rollout()
        .replicas(4)
        .surge(1, 0)
        .services("web-stable", "web-canary")
        .steps([weight(75)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .build();
    // All steps done, the canary whole: Argo's math would scale the stable to 0 now, while
    // web-stable still selects it (it moves once the canary is promoted).
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 4),
        sized_for(replica_set("web:2", 2, 4, 4, 10), 4),
    ];
    let mut world = observed(r.clone(), sets.clone());
    world
        .services
        .insert("web-stable".into(), service("web-stable", Some(&old), true));
    world
        .services
        .insert("web-canary".into(), service("web-canary", Some(&new), true));
    let plan = super::plan(&world, at(0));
    assert_ne!(
        sizes(&plan).get(&replica_set_name("web", &old)),
        Some(&0),
        "the stable Service would select no pods"
    );
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(new.as_str()));

    // Promoted: the Service moves to the new stable and the old one is scaled down after.
    let promoted = rollout()
        .replicas(4)
        .surge(1, 0)
        .services("web-stable", "web-canary")
        .steps([weight(75)])
        .revision("2")
        .image("web:2")
        .status(&new, &new, Some(1))
        .build();
    let mut world = observed(promoted, sets);
    world
        .services
        .insert("web-stable".into(), service("web-stable", Some(&old), true));
    world
        .services
        .insert("web-canary".into(), service("web-canary", Some(&new), true));
    let plan = super::plan(&world, at(1));
    assert!(
        plan.services
            .iter()
            .any(|s| s.service == "web-stable" && s.to == new),
        "{:?}",
        plan.services
    );
    assert_eq!(sizes(&plan).get(&replica_set_name("web", &old)), Some(&0));

    // Without Services, Argo's math is unchanged.
    let plain = rollout()
        .replicas(4)
        .surge(1, 0)
        .steps([weight(75)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(1))
        .build();
    let sets = vec![
        sized_for(replica_set("web:1", 1, 1, 1, 0), 4),
        sized_for(replica_set("web:2", 2, 4, 4, 10), 4),
    ];
    let plan = super::plan(&observed(plain, sets), at(0));
    assert_eq!(sizes(&plan).get(&replica_set_name("web", &old)), Some(&0));
}

/// A routed world at the `setWeight: 50` step with the canary at its size, the router's
/// last recorded weights being `weights`.
fn routed_weight_world(weights: Option<crate::api::TrafficWeights>) -> Observed {
    let old = hash("web:1");
    let new = hash("web:2");
    let mut builder = rollout()
        .replicas(4)
        .surge(1, 0)
        .services("web-stable", "web-canary")
        .steps([weight(50), pause(None)])
        .revision("2")
        .image("web:2")
        .status(&old, &new, Some(0))
        .with_status(|s| s.canary.as_mut().unwrap().weights = weights);
    builder.canary().traffic_routing = Some(crate::api::RolloutTrafficRouting {
        smi: Some(Default::default()),
        ..Default::default()
    });
    let sets = vec![
        sized_for(replica_set("web:1", 1, 4, 4, 0), 4),
        sized_for(replica_set("web:2", 2, 2, 2, 10), 4),
    ];
    let mut world = observed(builder.build(), sets);
    world
        .services
        .insert("web-stable".into(), service("web-stable", Some(&old), true));
    world
        .services
        .insert("web-canary".into(), service("web-canary", Some(&new), true));
    world
}

#[test]
fn a_routed_weight_step_completes_once_the_router_is_read_back_holding_it() {
    let plan = super::plan(&routed_weight_world(None), at(0));
    let s = status(&plan);
    let weights = s.canary.as_ref().unwrap().weights.clone().unwrap();
    assert_eq!(weights.canary.weight, 50);
    assert_eq!(
        weights.verified,
        Some(false),
        "a new weight is unverified until apply reads the router back"
    );
    assert_eq!(s.current_step_index, Some(0), "the step waits");

    let held = crate::api::TrafficWeights {
        verified: Some(true),
        ..weights.clone()
    };
    let plan = super::plan(&routed_weight_world(Some(held)), at(1));
    assert_eq!(status(&plan).current_step_index, Some(1));

    let not_held = crate::api::TrafficWeights {
        verified: Some(false),
        ..weights
    };
    let plan = super::plan(&routed_weight_world(Some(not_held)), at(1));
    assert_eq!(
        status(&plan).current_step_index,
        Some(0),
        "the router does not hold the weight: the step still waits"
    );
}

/// A ReplicaSet whose pods were given `role` as ephemeral metadata by a previous pass.
fn with_role(rs: Arc<ReplicaSet>, role: &str) -> Arc<ReplicaSet> {
    let mut rs = (*rs).clone();
    let template = rs.spec.as_mut().unwrap().template.as_mut().unwrap();
    let labels = template.metadata.as_mut().unwrap().labels.as_mut().unwrap();
    labels.insert("role".into(), role.into());
    rs.metadata.annotations.as_mut().unwrap().insert(
        EPHEMERAL_METADATA_ANNOTATION.into(),
        format!(r#"{{"labels":{{"role":"{role}"}}}}"#),
    );
    Arc::new(rs)
}

fn role(r: &str) -> crate::api::ObjectLabels {
    crate::api::ObjectLabels {
        labels: Some(BTreeMap::from([("role".into(), r.into())])),
        annotations: None,
    }
}

#[test]
fn canary_and_stable_metadata_follow_the_roles() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let roles = |mut b: RolloutBuilder| {
        b.canary().stable_metadata = Some(role("stable"));
        b.canary().canary_metadata = Some(role("canary"));
        b
    };
    // Mid-update with each ReplicaSet labelled for its role: nothing to change.
    let r = roles(rollout().replicas(2).surge(1, 0))
        .steps([weight(50), pause(None)])
        .revision("2")
        .image("web:2")
        .status(&v1, &v2, Some(1))
        .paused_at_step_since(0)
        .build();
    let sets = vec![
        with_role(sized_for(replica_set("web:1", 1, 1, 1, 0), 2), "stable"),
        with_role(sized_for(replica_set("web:2", 2, 1, 1, 10), 2), "canary"),
    ];
    let plan = super::plan(&observed(r, sets.clone()), at(1));
    assert!(plan.pod_metadata.is_empty(), "{:?}", plan.pod_metadata);
    assert!(
        plan.replica_set_updates
            .iter()
            .all(|u| u.template_labels.is_none()),
        "{:?}",
        plan.replica_set_updates
    );

    // Promoted: the new ReplicaSet's running pods become stable, the old ones lose the role.
    let r = roles(rollout().replicas(2).surge(1, 0))
        .steps([weight(50), pause(None)])
        .revision("2")
        .image("web:2")
        .status(&v2, &v2, Some(2))
        .build();
    let sets = vec![
        with_role(sized_for(replica_set("web:1", 1, 0, 0, 0), 2), "stable"),
        with_role(sized_for(replica_set("web:2", 2, 2, 2, 10), 2), "canary"),
    ];
    let plan = super::plan(&observed(r, sets), at(2));
    let template = |rs: &str| {
        plan.replica_set_updates
            .iter()
            .find(|u| u.name == rs)
            .and_then(|u| u.template_labels.clone())
    };
    assert_eq!(
        template(&replica_set_name("web", &v2)),
        Some(BTreeMap::from([("role".into(), Some("stable".into()))]))
    );
    assert_eq!(
        template(&replica_set_name("web", &v1)),
        Some(BTreeMap::from([("role".into(), None)]))
    );
    let relabelled: Vec<_> = plan
        .pod_metadata
        .iter()
        .map(|s| (s.replica_set.clone(), s.wanted.clone()))
        .collect();
    assert!(
        relabelled.contains(&(replica_set_name("web", &v2), Some(role("stable")))),
        "{relabelled:?}"
    );
}
