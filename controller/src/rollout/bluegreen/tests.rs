//! The blue-green planner, pass by pass: a Rollout, its ReplicaSets and Services as a
//! previous pass left them, one plan per step, no API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use ramp_analysis::api::{AnalysisPhase, AnalysisRunStatus, AnalysisTemplateRef};
use ramp_analysis::build::Templates;

use super::super::analysis::AnalysisUse;
use super::super::conditions::INVALID_SPEC;
use super::super::hash::pod_template_hash;
use super::super::names::*;
use super::super::observe::Observed;
use super::super::pause::BLUE_GREEN_PAUSE;
use super::super::plan::{AnalysisRunChange, Plan};
use super::super::status::merge_patch;
use crate::api::{
    AnalysisRun, BlueGreenStatus, BlueGreenStrategy, PauseCondition, Rollout, RolloutAnalysis,
    RolloutAnalysisRunStatus, RolloutPhase, RolloutSpec, RolloutStatus, RolloutStrategy,
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

fn analysis(template: &str) -> RolloutAnalysis {
    RolloutAnalysis {
        templates: Some(vec![AnalysisTemplateRef {
            template_name: Some(template.into()),
            cluster_scope: None,
        }]),
        ..Default::default()
    }
}

/// `rollout().replicas(3).blue_green(|b| ...)`.
struct RolloutBuilder(Rollout);

fn rollout() -> RolloutBuilder {
    let mut r = Rollout::new(
        "web",
        RolloutSpec {
            replicas: Some(3),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                match_expressions: None,
            }),
            template: Some(template("web:1")),
            strategy: Some(RolloutStrategy {
                blue_green: Some(BlueGreenStrategy {
                    active_service: "web-active".into(),
                    preview_service: Some("web-preview".into()),
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
    r.metadata.annotations = Some(BTreeMap::from([(
        REVISION_ANNOTATION.to_string(),
        "1".to_string(),
    )]));
    RolloutBuilder(r)
}

impl RolloutBuilder {
    fn blue_green(mut self, edit: impl FnOnce(&mut BlueGreenStrategy)) -> Self {
        edit(
            self.0
                .spec
                .strategy
                .as_mut()
                .unwrap()
                .blue_green
                .as_mut()
                .unwrap(),
        );
        self
    }
    fn image(mut self, image: &str) -> Self {
        self.0.spec.template = Some(template(image));
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
    /// A status as a previous pass left it.
    fn status(mut self, stable: &str, current: &str, active: &str, preview: &str) -> Self {
        let selector = |h: &str| (!h.is_empty()).then(|| h.to_string());
        self.0.status = Some(RolloutStatus {
            stable_rs: selector(stable),
            current_pod_hash: selector(current),
            observed_generation: Some("1".into()),
            blue_green: Some(BlueGreenStatus {
                active_selector: selector(active),
                preview_selector: selector(preview),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }
    fn with_status(mut self, edit: impl FnOnce(&mut RolloutStatus)) -> Self {
        edit(self.0.status.get_or_insert_with(Default::default));
        self
    }
    fn build(self) -> Rollout {
        self.0
    }
}

/// A ReplicaSet of `image` sized by a previous pass for a Rollout of 3 replicas.
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
                (DESIRED_REPLICAS_ANNOTATION.into(), "3".into()),
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
            min_ready_seconds: Some(0),
            selector: LabelSelector {
                match_labels: template.metadata.as_ref().unwrap().labels.clone(),
                match_expressions: None,
            },
            template: Some(template),
        }),
        status: Some(ReplicaSetStatus {
            replicas: desired.max(available),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
    })
}

fn with_deadline(rs: Arc<ReplicaSet>, at: Timestamp) -> Arc<ReplicaSet> {
    let mut rs = (*rs).clone();
    rs.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(SCALE_DOWN_DEADLINE_ANNOTATION.into(), at.to_string());
    Arc::new(rs)
}

fn service(name: &str, selected: Option<&str>) -> Arc<Service> {
    let mut selector = BTreeMap::from([("app".to_string(), "web".to_string())]);
    if let Some(hash) = selected {
        selector.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    }
    Arc::new(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            annotations: selected
                .map(|_| BTreeMap::from([(MANAGED_BY_ANNOTATION.to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ..Default::default()
        }),
        status: None,
    })
}

fn observed(
    rollout: Rollout,
    sets: Vec<Arc<ReplicaSet>>,
    active: Option<&str>,
    preview: Option<&str>,
) -> Observed {
    let mut observed = Observed::new(Arc::new(rollout));
    observed.replica_sets = sets;
    observed
        .services
        .insert("web-active".into(), service("web-active", active));
    observed
        .services
        .insert("web-preview".into(), service("web-preview", preview));
    observed
}

fn with_templates(mut observed: Observed, uses: &[AnalysisUse]) -> Observed {
    for analysis_use in uses {
        observed
            .analysis_templates
            .insert(*analysis_use, Ok(Arc::new(Templates::default())));
    }
    observed
}

fn run(name: &str, hash: &str, phase: AnalysisPhase) -> Arc<AnalysisRun> {
    let mut run = AnalysisRun::new(name, Default::default());
    run.metadata.namespace = Some("shop".into());
    run.metadata.labels = Some(BTreeMap::from([(
        POD_TEMPLATE_HASH_LABEL.to_string(),
        hash.to_string(),
    )]));
    run.status = Some(AnalysisRunStatus {
        phase: Some(phase),
        message: Some(format!("run {name} is {phase}")),
        ..Default::default()
    });
    Arc::new(run)
}

fn run_status(name: &str, phase: AnalysisPhase) -> RolloutAnalysisRunStatus {
    RolloutAnalysisRunStatus {
        name: name.into(),
        status: phase,
        message: None,
    }
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

fn switches(plan: &Plan) -> Vec<(String, String)> {
    plan.services
        .iter()
        .map(|s| (s.service.clone(), s.to.clone()))
        .collect()
}

fn status(plan: &Plan) -> &RolloutStatus {
    plan.status.as_ref().expect("the plan writes status")
}

fn selectors(plan: &Plan) -> (Option<String>, Option<String>) {
    let bg = status(plan).blue_green.clone().unwrap_or_default();
    (bg.active_selector, bg.preview_selector)
}

fn name(image: &str) -> String {
    replica_set_name("web", &hash(image))
}

fn pause_reasons(plan: &Plan) -> Vec<String> {
    status(plan)
        .pause_conditions
        .iter()
        .flatten()
        .map(|c| c.reason.clone())
        .collect()
}

fn deadline_of(plan: &Plan, rs: &str) -> Option<Option<String>> {
    plan.replica_set_updates
        .iter()
        .find(|u| u.name == rs)
        .and_then(|u| u.annotations.get(SCALE_DOWN_DEADLINE_ANNOTATION).cloned())
}

#[test]
fn initial_deploy_switches_both_services_only_once_fully_available() {
    let v1 = hash("web:1");
    let first = super::super::plan(&observed(rollout().build(), vec![], None, None), at(0));
    let created = first
        .create_replica_set
        .as_ref()
        .expect("the first pass creates the ReplicaSet");
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        switches(&first),
        [("web-preview".to_string(), v1.clone())],
        "the preview follows the new ReplicaSet at once, the active waits for its pods"
    );
    assert_eq!(status(&first).stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(
        status(&first).message.as_deref(),
        Some("more replicas need to be updated")
    );

    // Two of three pods available: still not saturated.
    let r = rollout().status(&v1, &v1, "", &v1).build();
    let partial = super::super::plan(
        &observed(r, vec![replica_set("web:1", 1, 3, 2, 0)], None, Some(&v1)),
        at(5),
    );
    assert!(switches(&partial).is_empty(), "{:?}", partial.services);

    let r = rollout().status(&v1, &v1, "", &v1).build();
    let ready = super::super::plan(
        &observed(r, vec![replica_set("web:1", 1, 3, 3, 0)], None, Some(&v1)),
        at(10),
    );
    assert_eq!(switches(&ready), [("web-active".to_string(), v1.clone())]);
    assert_eq!(
        ready.services[0].add_managed_by.as_deref(),
        Some("web"),
        "the active Service is adopted"
    );
    assert_eq!(selectors(&ready), (Some(v1.clone()), Some(v1.clone())));
    assert_eq!(status(&ready).phase, Some(RolloutPhase::Healthy));
    assert_eq!(status(&ready).available_replicas, Some(3));
}

#[test]
fn a_settled_blue_green_rollout_plans_no_write() {
    let v1 = hash("web:1");
    let r = rollout().status(&v1, &v1, &v1, &v1).build();
    let sets = vec![replica_set("web:1", 1, 3, 3, 0)];
    let first = super::super::plan(
        &observed(r.clone(), sets.clone(), Some(&v1), Some(&v1)),
        at(0),
    );
    let mut settled = r;
    settled.status = first.status.clone();
    let second = super::super::plan(
        &observed(settled.clone(), sets, Some(&v1), Some(&v1)),
        at(60),
    );
    assert!(!second.writes_objects(), "{second:?}");
    assert_eq!(
        merge_patch(settled.status.as_ref().unwrap(), status(&second)),
        None
    );
    assert!(second.events.is_empty(), "{:?}", second.events);
    assert_eq!(status(&second).phase, Some(RolloutPhase::Healthy));
}

#[test]
fn an_update_previews_then_switches_when_saturated_and_keeps_the_old_for_the_delay() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    // The template changed: the new ReplicaSet is created and previewed, the status reset.
    let r = rollout().image("web:2").status(&v1, &v1, &v1, &v1).build();
    let old = replica_set("web:1", 1, 3, 3, 0);
    let plan = super::super::plan(&observed(r, vec![old.clone()], Some(&v1), Some(&v1)), at(0));
    assert_eq!(
        plan.create_replica_set
            .as_ref()
            .and_then(|rs| rs.metadata.name.clone()),
        Some(name("web:2"))
    );
    assert_eq!(switches(&plan), [("web-preview".to_string(), v2.clone())]);
    assert_eq!(status(&plan).current_pod_hash.as_deref(), Some(v2.as_str()));
    assert_eq!(
        status(&plan).message.as_deref(),
        Some("more replicas need to be updated")
    );

    // Next pass: the new ReplicaSet is scaled to full size beside the active one.
    let r = rollout()
        .image("web:2")
        .revision("2")
        .status(&v1, &v2, &v1, &v2)
        .build();
    let new = replica_set("web:2", 2, 0, 0, 10);
    let plan = super::super::plan(
        &observed(r.clone(), vec![old.clone(), new], Some(&v1), Some(&v2)),
        at(1),
    );
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:2"), 3)]));
    assert!(switches(&plan).is_empty());

    // Not all of it available: the active Service stays.
    let new = replica_set("web:2", 2, 3, 2, 10);
    let plan = super::super::plan(
        &observed(r.clone(), vec![old.clone(), new], Some(&v1), Some(&v2)),
        at(2),
    );
    assert!(switches(&plan).is_empty());
    assert_eq!(
        status(&plan).message.as_deref(),
        Some("active service cutover pending")
    );
    assert_eq!(
        status(&plan).available_replicas,
        Some(3),
        "counts are those of the active ReplicaSet"
    );

    // Saturated: switch and promote in one pass (no pause, no analysis).
    let new = replica_set("web:2", 2, 3, 3, 10);
    let plan = super::super::plan(
        &observed(r, vec![old.clone(), new.clone()], Some(&v1), Some(&v2)),
        at(3),
    );
    assert_eq!(switches(&plan), [("web-active".to_string(), v2.clone())]);
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(status(&plan).phase, Some(RolloutPhase::Healthy));

    // The old ReplicaSet is kept for scaleDownDelaySeconds (30 s by default)...
    let r = rollout()
        .image("web:2")
        .revision("2")
        .status(&v2, &v2, &v2, &v2)
        .build();
    let plan = super::super::plan(
        &observed(
            r.clone(),
            vec![old.clone(), new.clone()],
            Some(&v2),
            Some(&v2),
        ),
        at(4),
    );
    assert!(sizes(&plan).is_empty(), "{:?}", sizes(&plan));
    assert_eq!(
        deadline_of(&plan, &name("web:1")),
        Some(Some(at(34).to_string()))
    );
    assert!(plan.requeue_after.is_some_and(|d| d.as_secs() == 30));

    // ...and scaled down once it passed.
    let old = with_deadline(old, at(34));
    let plan = super::super::plan(
        &observed(
            r.clone(),
            vec![old.clone(), new.clone()],
            Some(&v2),
            Some(&v2),
        ),
        at(20),
    );
    assert!(sizes(&plan).is_empty());
    let plan = super::super::plan(&observed(r, vec![old, new], Some(&v2), Some(&v2)), at(35));
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:1"), 0)]));
}

#[test]
fn without_auto_promotion_the_rollout_pauses_until_promoted() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let manual = || {
        rollout()
            .image("web:2")
            .revision("2")
            .blue_green(|b| b.auto_promotion_enabled = Some(false))
    };
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let r = manual().status(&v1, &v2, &v1, &v2).build();
    let plan = super::super::plan(&observed(r, sets.clone(), Some(&v1), Some(&v2)), at(0));
    assert!(switches(&plan).is_empty());
    assert_eq!(pause_reasons(&plan), [BLUE_GREEN_PAUSE]);
    assert_eq!(status(&plan).controller_pause, Some(true));
    assert_eq!(status(&plan).phase, Some(RolloutPhase::Paused));

    // Still paused a long time later.
    let paused = |s: &mut RolloutStatus| {
        s.controller_pause = Some(true);
        s.pause_conditions = Some(vec![PauseCondition {
            reason: BLUE_GREEN_PAUSE.into(),
            start_time: Time(at(0)),
        }]);
    };
    let r = manual()
        .status(&v1, &v2, &v1, &v2)
        .with_status(paused)
        .build();
    let plan = super::super::plan(&observed(r, sets.clone(), Some(&v1), Some(&v2)), at(3600));
    assert!(switches(&plan).is_empty());
    assert_eq!(pause_reasons(&plan), [BLUE_GREEN_PAUSE]);

    // `promote` removes the pause conditions: the switch follows.
    let r = manual()
        .status(&v1, &v2, &v1, &v2)
        .with_status(|s| s.controller_pause = Some(true))
        .build();
    let plan = super::super::plan(&observed(r, sets, Some(&v1), Some(&v2)), at(3601));
    assert_eq!(switches(&plan), [("web-active".to_string(), v2.clone())]);
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v2.as_str()));
    assert!(pause_reasons(&plan).is_empty());
}

#[test]
fn auto_promotion_seconds_ends_the_pause() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let delayed = || {
        rollout()
            .image("web:2")
            .revision("2")
            .blue_green(|b| b.auto_promotion_seconds = Some(20))
    };
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let r = delayed().status(&v1, &v2, &v1, &v2).build();
    let plan = super::super::plan(&observed(r, sets.clone(), Some(&v1), Some(&v2)), at(0));
    assert_eq!(pause_reasons(&plan), [BLUE_GREEN_PAUSE]);

    let paused = |s: &mut RolloutStatus| {
        s.controller_pause = Some(true);
        s.pause_conditions = Some(vec![PauseCondition {
            reason: BLUE_GREEN_PAUSE.into(),
            start_time: Time(at(0)),
        }]);
    };
    let r = delayed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(paused)
        .build();
    let plan = super::super::plan(
        &observed(r.clone(), sets.clone(), Some(&v1), Some(&v2)),
        at(5),
    );
    assert!(switches(&plan).is_empty());
    let wait = plan.requeue_after.expect("looks again when the pause ends");
    assert!((15_000..=15_010).contains(&wait.as_millis()), "{wait:?}");

    let plan = super::super::plan(&observed(r, sets, Some(&v1), Some(&v2)), at(21));
    assert_eq!(switches(&plan), [("web-active".to_string(), v2.clone())]);
    assert!(pause_reasons(&plan).is_empty());
}

#[test]
fn preview_replica_count_scales_up_only_after_the_pause() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let previewed = || {
        rollout().image("web:2").revision("2").blue_green(|b| {
            b.preview_replica_count = Some(1);
            b.auto_promotion_enabled = Some(false);
        })
    };
    let old = replica_set("web:1", 1, 3, 3, 0);
    let r = previewed().status(&v1, &v2, &v1, &v2).build();
    let plan = super::super::plan(
        &observed(
            r,
            vec![old.clone(), replica_set("web:2", 2, 0, 0, 10)],
            Some(&v1),
            Some(&v2),
        ),
        at(0),
    );
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:2"), 1)]));

    // One preview pod available: pause for the user.
    let preview = replica_set("web:2", 2, 1, 1, 10);
    let r = previewed().status(&v1, &v2, &v1, &v2).build();
    let plan = super::super::plan(
        &observed(r, vec![old.clone(), preview.clone()], Some(&v1), Some(&v2)),
        at(1),
    );
    assert_eq!(pause_reasons(&plan), [BLUE_GREEN_PAUSE]);
    assert!(sizes(&plan).is_empty());

    // Promoted: the checkpoint is set and the preview grows to full size.
    let r = previewed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(|s| s.controller_pause = Some(true))
        .build();
    let plan = super::super::plan(
        &observed(r, vec![old.clone(), preview], Some(&v1), Some(&v2)),
        at(2),
    );
    let bg = status(&plan).blue_green.clone().unwrap();
    assert_eq!(bg.scale_up_preview_check_point, Some(true));
    assert!(switches(&plan).is_empty(), "not saturated yet");
    let r = previewed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(|s| {
            s.blue_green.as_mut().unwrap().scale_up_preview_check_point = Some(true);
        })
        .build();
    let plan = super::super::plan(
        &observed(
            r.clone(),
            vec![old.clone(), replica_set("web:2", 2, 1, 1, 10)],
            Some(&v1),
            Some(&v2),
        ),
        at(3),
    );
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:2"), 3)]));

    let plan = super::super::plan(
        &observed(
            r,
            vec![old, replica_set("web:2", 2, 3, 3, 10)],
            Some(&v1),
            Some(&v2),
        ),
        at(4),
    );
    assert_eq!(switches(&plan), [("web-active".to_string(), v2.clone())]);
    let bg = status(&plan).blue_green.clone().unwrap();
    assert_eq!(
        bg.scale_up_preview_check_point, None,
        "reset by the promotion"
    );
}

#[test]
fn pre_promotion_analysis_gates_the_switch_and_its_failure_aborts() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let analysed = || {
        rollout()
            .image("web:2")
            .revision("2")
            .blue_green(|b| b.pre_promotion_analysis = Some(analysis("smoke")))
    };
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let r = analysed().status(&v1, &v2, &v1, &v2).build();
    let plan = super::super::plan(
        &with_templates(
            observed(r, sets.clone(), Some(&v1), Some(&v2)),
            &[AnalysisUse::PrePromotion],
        ),
        at(0),
    );
    let created: Vec<&AnalysisRun> = plan
        .analysis_runs
        .iter()
        .filter_map(|c| match c {
            AnalysisRunChange::Create(run) => Some(run.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1);
    let run_name = created[0].metadata.name.clone().unwrap();
    assert_eq!(run_name, format!("web-{v2}-2-pre"));
    assert_eq!(
        created[0]
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(ROLLOUT_TYPE_LABEL)
            .map(String::as_str),
        Some(ROLLOUT_TYPE_PRE_PROMOTION)
    );
    assert!(switches(&plan).is_empty(), "no switch before the analysis");

    let recorded = |phase| {
        move |s: &mut RolloutStatus| {
            s.blue_green
                .as_mut()
                .unwrap()
                .pre_promotion_analysis_run_status =
                Some(run_status(&format!("web-{}-2-pre", hash("web:2")), phase));
        }
    };
    let running = run(&run_name, &v2, AnalysisPhase::Running);
    let r = analysed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(recorded(AnalysisPhase::Running))
        .build();
    let mut o = with_templates(
        observed(r, sets.clone(), Some(&v1), Some(&v2)),
        &[AnalysisUse::PrePromotion],
    );
    o.analysis_runs = vec![running];
    let plan = super::super::plan(&o, at(5));
    assert!(switches(&plan).is_empty());
    assert!(plan.analysis_runs.is_empty(), "{:?}", plan.analysis_runs);

    let r = analysed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(recorded(AnalysisPhase::Running))
        .build();
    let mut o = with_templates(
        observed(r.clone(), sets.clone(), Some(&v1), Some(&v2)),
        &[AnalysisUse::PrePromotion],
    );
    o.analysis_runs = vec![run(&run_name, &v2, AnalysisPhase::Successful)];
    let plan = super::super::plan(&o, at(10));
    assert_eq!(switches(&plan), [("web-active".to_string(), v2.clone())]);

    o.analysis_runs = vec![run(&run_name, &v2, AnalysisPhase::Failed)];
    let plan = super::super::plan(&o, at(10));
    assert!(switches(&plan).is_empty(), "the active Service stays on v1");
    assert_eq!(status(&plan).abort, Some(true));
    assert_eq!(status(&plan).phase, Some(RolloutPhase::Degraded));
    assert!(
        deadline_of(&plan, &name("web:2")).is_some(),
        "the preview is scaled down after abortScaleDownDelaySeconds"
    );
}

#[test]
fn a_failed_post_promotion_analysis_moves_the_active_service_back_at_once() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let analysed = || {
        rollout()
            .image("web:2")
            .revision("2")
            .blue_green(|b| b.post_promotion_analysis = Some(analysis("smoke")))
    };
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    // Switched, not yet stable: a post-promotion run starts.
    let r = analysed().status(&v1, &v2, &v2, &v2).build();
    let plan = super::super::plan(
        &with_templates(
            observed(r, sets.clone(), Some(&v2), Some(&v2)),
            &[AnalysisUse::PostPromotion],
        ),
        at(0),
    );
    assert!(plan.analysis_runs.iter().any(|c| matches!(
        c,
        AnalysisRunChange::Create(run) if run.metadata.name.as_deref() == Some(format!("web-{v2}-2-post").as_str())
    )));
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(
        status(&plan).message.as_deref(),
        Some("waiting for analysis to complete")
    );
    assert!(sizes(&plan).is_empty(), "the old stable stays up");

    let run_name = format!("web-{v2}-2-post");
    let r = analysed()
        .status(&v1, &v2, &v2, &v2)
        .with_status(|s| {
            s.blue_green
                .as_mut()
                .unwrap()
                .post_promotion_analysis_run_status =
                Some(run_status(&run_name, AnalysisPhase::Running));
        })
        .build();
    let mut o = with_templates(
        observed(r, sets, Some(&v2), Some(&v2)),
        &[AnalysisUse::PostPromotion],
    );
    o.analysis_runs = vec![run(&run_name, &v2, AnalysisPhase::Successful)];
    let plan = super::super::plan(&o, at(5));
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v2.as_str()));

    o.analysis_runs = vec![run(&run_name, &v2, AnalysisPhase::Failed)];
    let plan = super::super::plan(&o, at(5));
    assert_eq!(
        switches(&plan),
        [("web-active".to_string(), v1.clone())],
        "traffic goes back to the stable ReplicaSet in the pass that sees the failure"
    );
    assert_eq!(status(&plan).abort, Some(true));
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v1.as_str()));
}

#[test]
fn an_abort_never_moves_the_active_service_to_an_unavailable_replica_set() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let r = rollout()
        .image("web:2")
        .revision("2")
        .status(&v1, &v2, &v2, &v2)
        .with_status(|s| s.abort = Some(true))
        .build();
    // The stable ReplicaSet lost pods: it is scaled up, the active Service waits for it.
    let sets = vec![
        replica_set("web:1", 1, 3, 1, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r.clone(), sets, Some(&v2), Some(&v2)), at(0));
    assert!(switches(&plan).is_empty(), "{:?}", plan.services);
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(1));
    assert_eq!(switches(&plan), [("web-active".to_string(), v1.clone())]);
    assert_eq!(
        deadline_of(&plan, &name("web:2")),
        Some(Some(at(31).to_string())),
        "abortScaleDownDelaySeconds defaults to 30"
    );
}

#[test]
fn scale_down_delay_revision_limit_keeps_only_the_newest_old_revisions() {
    let v3 = hash("web:3");
    let r = rollout()
        .image("web:3")
        .revision("3")
        .blue_green(|b| b.scale_down_delay_revision_limit = Some(1))
        .status(&v3, &v3, &v3, &v3)
        .build();
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
        replica_set("web:3", 3, 3, 3, 20),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v3), Some(&v3)), at(30));
    assert_eq!(
        sizes(&plan),
        BTreeMap::from([(name("web:1"), 0)]),
        "revision 2 waits for its delay, revision 1 goes at once"
    );
    assert!(deadline_of(&plan, &name("web:2")).is_some());
}

#[test]
fn an_old_revision_in_its_delay_follows_a_scaling_event() {
    let v2 = hash("web:2");
    let mut r = rollout()
        .image("web:2")
        .revision("2")
        .status(&v2, &v2, &v2, &v2)
        .build();
    r.spec.replicas = Some(5);
    let sets = vec![
        with_deadline(replica_set("web:1", 1, 3, 3, 0), at(20)),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(0));
    assert_eq!(
        sizes(&plan),
        BTreeMap::from([(name("web:1"), 5), (name("web:2"), 5)]),
        "a going back within the delay finds the old revision at the new size"
    );
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(20)));
}

#[test]
fn a_scale_down_delay_of_zero_scales_the_old_revision_down_at_once() {
    let v2 = hash("web:2");
    let r = rollout()
        .image("web:2")
        .revision("2")
        .blue_green(|b| b.scale_down_delay_seconds = Some(0))
        .status(&v2, &v2, &v2, &v2)
        .build();
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(0));
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:1"), 0)]));
    assert_eq!(deadline_of(&plan, &name("web:1")), None);
}

#[test]
fn an_undo_within_the_scale_down_delay_switches_back_without_pause() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let r = rollout()
        .image("web:1")
        .revision("2")
        .blue_green(|b| {
            b.auto_promotion_enabled = Some(false);
            b.post_promotion_analysis = Some(analysis("smoke"));
        })
        .status(&v2, &v1, &v2, &v2)
        .build();
    let sets = vec![
        with_deadline(replica_set("web:1", 1, 3, 3, 0), at(20)),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(5));
    assert_eq!(
        switches(&plan),
        [
            ("web-preview".to_string(), v1.clone()),
            ("web-active".to_string(), v1.clone())
        ]
    );
    assert!(pause_reasons(&plan).is_empty());
    assert_eq!(status(&plan).stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(deadline_of(&plan, &name("web:1")), Some(None));
}

#[test]
fn a_missing_active_service_is_an_invalid_spec() {
    let mut o = observed(rollout().build(), vec![], None, None);
    o.services.remove("web-active");
    let plan = super::super::plan(&o, at(0));
    let condition = status(&plan)
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == INVALID_SPEC)
        .expect("InvalidSpec");
    assert!(
        condition
            .message
            .contains("spec.strategy.blueGreen.activeService"),
        "{}",
        condition.message
    );
    assert!(plan.create_replica_set.is_none());
}

#[test]
fn active_and_preview_metadata_follow_the_roles() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let labelled = |rs: Arc<ReplicaSet>, role: &str| {
        let mut rs = (*rs).clone();
        let template = rs.spec.as_mut().unwrap().template.as_mut().unwrap();
        template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("role".into(), role.into());
        rs.metadata.annotations.as_mut().unwrap().insert(
            EPHEMERAL_METADATA_ANNOTATION.into(),
            format!(r#"{{"labels":{{"role":"{role}"}}}}"#),
        );
        Arc::new(rs)
    };
    let roles = |b: &mut BlueGreenStrategy| {
        b.active_metadata = Some(crate::api::ObjectLabels {
            labels: Some(BTreeMap::from([("role".into(), "active".into())])),
            annotations: None,
        });
        b.preview_metadata = Some(crate::api::ObjectLabels {
            labels: Some(BTreeMap::from([("role".into(), "preview".into())])),
            annotations: None,
        });
    };
    let sets = vec![
        labelled(replica_set("web:1", 1, 3, 3, 0), "active"),
        labelled(replica_set("web:2", 2, 3, 3, 10), "preview"),
    ];
    // While previewed, nothing changes.
    let r = rollout()
        .image("web:2")
        .revision("2")
        .blue_green(|b| {
            roles(b);
            b.auto_promotion_enabled = Some(false);
        })
        .status(&v1, &v2, &v1, &v2)
        .with_status(|s| {
            s.controller_pause = Some(true);
            s.pause_conditions = Some(vec![PauseCondition {
                reason: BLUE_GREEN_PAUSE.into(),
                start_time: Time(at(0)),
            }]);
        })
        .build();
    let plan = super::super::plan(&observed(r, sets.clone(), Some(&v1), Some(&v2)), at(1));
    assert!(
        plan.replica_set_updates
            .iter()
            .all(|u| u.template_labels.is_none()),
        "{:?}",
        plan.replica_set_updates
    );

    // Promoted and stable: the new ReplicaSet's pods are labelled active, the old one's lose
    // their role.
    let r = rollout()
        .image("web:2")
        .revision("2")
        .blue_green(roles)
        .status(&v2, &v2, &v2, &v2)
        .build();
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(2));
    let update = |rs: &str| {
        plan.replica_set_updates
            .iter()
            .find(|u| u.name == rs)
            .and_then(|u| u.template_labels.clone())
    };
    assert_eq!(
        update(&name("web:2")),
        Some(BTreeMap::from([("role".into(), Some("active".into()))]))
    );
    assert_eq!(
        update(&name("web:1")),
        Some(BTreeMap::from([("role".into(), None)]))
    );
    // Both have pods: they are relabelled, and the new role is recorded only after that.
    let relabelled: Vec<(String, Option<crate::api::ObjectLabels>)> = plan
        .pod_metadata
        .iter()
        .map(|s| (s.replica_set.clone(), s.wanted.clone()))
        .collect();
    let role = |r: &str| crate::api::ObjectLabels {
        labels: Some(BTreeMap::from([("role".into(), r.into())])),
        annotations: None,
    };
    assert_eq!(
        relabelled,
        [(name("web:2"), Some(role("active"))), (name("web:1"), None)]
    );
    let sync = &plan.pod_metadata[0];
    assert_eq!(sync.recorded, Some(role("preview")));
    assert_eq!(sync.uid.as_deref(), Some(format!("rs-{v2}").as_str()));
    assert_eq!(
        sync.selector,
        format!("app=web,{POD_TEMPLATE_HASH_LABEL}={v2}")
    );
    assert!(sync.protected.contains("app") && sync.protected.contains(POD_TEMPLATE_HASH_LABEL));
    assert!(
        plan.replica_set_updates
            .iter()
            .all(|u| !u.annotations.contains_key(EPHEMERAL_METADATA_ANNOTATION)),
        "{:?}",
        plan.replica_set_updates
    );
}

#[test]
fn a_replica_set_without_pods_records_its_role_with_its_template() {
    let v2 = hash("web:2");
    let mut old = (*replica_set("web:1", 1, 0, 0, 0)).clone();
    old.status.as_mut().unwrap().replicas = 0;
    let template = old.spec.as_mut().unwrap().template.as_mut().unwrap();
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("role".into(), "active".into());
    old.metadata.annotations.as_mut().unwrap().insert(
        EPHEMERAL_METADATA_ANNOTATION.into(),
        r#"{"labels":{"role":"active"}}"#.into(),
    );
    let r = rollout()
        .image("web:2")
        .revision("2")
        .blue_green(|b| {
            b.active_metadata = Some(crate::api::ObjectLabels {
                labels: Some(BTreeMap::from([("role".into(), "active".into())])),
                annotations: None,
            })
        })
        .status(&v2, &v2, &v2, &v2)
        .build();
    let mut current = (*replica_set("web:2", 2, 3, 3, 10)).clone();
    current.metadata.annotations.as_mut().unwrap().insert(
        EPHEMERAL_METADATA_ANNOTATION.into(),
        r#"{"labels":{"role":"active"}}"#.into(),
    );
    current
        .spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("role".into(), "active".into());
    let sets = vec![Arc::new(old), Arc::new(current)];
    let plan = super::super::plan(&observed(r, sets, Some(&v2), Some(&v2)), at(0));
    assert!(plan.pod_metadata.is_empty(), "{:?}", plan.pod_metadata);
    let update = plan
        .replica_set_updates
        .iter()
        .find(|u| u.name == name("web:1"))
        .expect("the old ReplicaSet's template");
    assert_eq!(
        update.template_labels,
        Some(BTreeMap::from([("role".into(), None)]))
    );
    assert_eq!(
        update.annotations.get(EPHEMERAL_METADATA_ANNOTATION),
        Some(&None)
    );
}

#[test]
fn a_scaling_event_resizes_the_active_and_preview_replica_sets_only() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let r = rollout()
        .image("web:2")
        .revision("2")
        .blue_green(|b| b.auto_promotion_enabled = Some(false))
        .status(&v1, &v2, &v1, &v2)
        .build();
    let mut r = r;
    r.spec.replicas = Some(5);
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let plan = super::super::plan(&observed(r, sets, Some(&v1), Some(&v2)), at(0));
    assert_eq!(
        sizes(&plan),
        BTreeMap::from([(name("web:1"), 5), (name("web:2"), 5)])
    );
    assert!(plan.services.is_empty());
    assert_eq!(
        status(&plan).hpa_replicas,
        Some(3),
        "counted on the active ReplicaSet"
    );
}

#[test]
fn anti_affinity_keeps_the_preview_off_the_active_nodes() {
    let v1 = hash("web:1");
    let r = rollout()
        .image("web:2")
        .blue_green(|b| {
            b.anti_affinity = Some(crate::api::AntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(Default::default()),
                preferred_during_scheduling_ignored_during_execution: None,
            })
        })
        .status(&v1, &v1, &v1, &v1)
        .build();
    let plan = super::super::plan(
        &observed(
            r,
            vec![replica_set("web:1", 1, 3, 3, 0)],
            Some(&v1),
            Some(&v1),
        ),
        at(0),
    );
    let created = plan
        .create_replica_set
        .as_ref()
        .expect("the preview ReplicaSet");
    let affinity = created
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .expect("an injected anti-affinity term");
    let term = &affinity[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    let requirement = &term
        .label_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(requirement.key, POD_TEMPLATE_HASH_LABEL);
    assert_eq!(requirement.values, Some(vec![v1]));
}

#[test]
fn a_retry_after_the_preview_was_scaled_down_starts_a_fresh_pre_promotion_run() {
    let (v1, v2) = (hash("web:1"), hash("web:2"));
    let failed = format!("web-{v2}-2-pre");
    let analysed = || {
        rollout()
            .image("web:2")
            .revision("2")
            .blue_green(|b| b.pre_promotion_analysis = Some(analysis("smoke")))
    };
    let recorded = |s: &mut RolloutStatus| {
        s.aborted_at = Some(Time(at(0)));
        s.blue_green
            .as_mut()
            .unwrap()
            .pre_promotion_analysis_run_status = Some(run_status(
            &format!("web-{}-2-pre", hash("web:2")),
            AnalysisPhase::Failed,
        ));
    };
    // Retried (`abort: false`) while the aborted preview is scaled down with its deadline.
    let r = analysed()
        .status(&v1, &v2, &v1, &v2)
        .with_status(recorded)
        .build();
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        with_deadline(replica_set("web:2", 2, 0, 0, 10), at(3)),
    ];
    let mut o = with_templates(
        observed(r, sets, Some(&v1), Some(&v2)),
        &[AnalysisUse::PrePromotion],
    );
    o.analysis_runs = vec![run(&failed, &v2, AnalysisPhase::Failed)];
    let plan = super::super::plan(&o, at(10));
    assert_eq!(
        status(&plan).abort,
        None,
        "the old verdict does not abort again"
    );
    assert_eq!(sizes(&plan), BTreeMap::from([(name("web:2"), 3)]));
    let bg = status(&plan).blue_green.clone().unwrap();
    assert_eq!(bg.pre_promotion_analysis_run_status, None);

    // The preview is back: a fresh run starts even though abortedAt is gone.
    let r = analysed().status(&v1, &v2, &v1, &v2).build();
    let sets = vec![
        replica_set("web:1", 1, 3, 3, 0),
        replica_set("web:2", 2, 3, 3, 10),
    ];
    let mut o = with_templates(
        observed(r, sets, Some(&v1), Some(&v2)),
        &[AnalysisUse::PrePromotion],
    );
    o.analysis_runs = vec![run(&failed, &v2, AnalysisPhase::Failed)];
    let plan = super::super::plan(&o, at(20));
    assert!(
        plan.analysis_runs
            .iter()
            .any(|c| matches!(c, AnalysisRunChange::Create(_))),
        "{:?}",
        plan.analysis_runs
    );
    assert_eq!(status(&plan).abort, None);
    assert!(switches(&plan).is_empty());
}

/// The pod-template-hash values of the injected term of a planned `podAntiAffinity`, with the
/// user's own terms.
fn anti_affinity_terms(anti: &k8s_openapi::api::core::v1::PodAntiAffinity) -> Vec<Vec<String>> {
    anti.preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .map(|w| {
            w.pod_affinity_term
                .label_selector
                .as_ref()
                .and_then(|s| s.match_expressions.clone())
                .into_iter()
                .flatten()
                .flat_map(|r| r.values.unwrap_or_default())
                .collect()
        })
        .collect()
}

#[test]
fn going_back_points_the_anti_affinity_of_the_old_revision_at_the_new_stable() {
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let (v1, v2, v3) = (hash("web:1"), hash("web:2"), hash("web:3"));
    let term = |key: &str, value: &str, weight: i32| WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: key.into(),
                    operator: "In".into(),
                    values: Some(vec![value.into()]),
                }]),
                match_labels: None,
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        },
    };
    // Revision 2 was created beside revision 1, next to a term of the user's own.
    let mut v2_set = (*replica_set("web:2", 2, 0, 0, 10)).clone();
    v2_set
        .spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .affinity = Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                term("tier", "cache", 5),
                term(POD_TEMPLATE_HASH_LABEL, &v1, 40),
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    });
    let anti = |b: &mut BlueGreenStrategy| {
        b.anti_affinity = Some(crate::api::AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(
                crate::api::PreferredAntiAffinity { weight: 40 },
            ),
            required_during_scheduling_ignored_during_execution: None,
        })
    };
    // Revision 3 is stable; the Rollout goes back to revision 2's template.
    let r = rollout()
        .image("web:2")
        .revision("3")
        .blue_green(anti)
        .status(&v3, &v3, &v3, &v3)
        .build();
    let sets = vec![
        replica_set("web:1", 1, 0, 0, 0),
        Arc::new(v2_set.clone()),
        replica_set("web:3", 3, 3, 3, 20),
    ];
    let plan = super::super::plan(&observed(r, sets.clone(), Some(&v3), Some(&v3)), at(30));
    let update = plan
        .replica_set_updates
        .iter()
        .find(|u| u.name == name("web:2"))
        .and_then(|u| u.template_pod_anti_affinity.as_ref())
        .expect("the anti-affinity of revision 2 re-pointed");
    assert_eq!(
        anti_affinity_terms(update),
        [vec!["cache".to_string()], vec![v3.clone()]],
        "the user's term stays, the injected one selects the stable revision"
    );

    // Once it selects the stable revision, nothing more is written.
    v2_set
        .spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .affinity = Some(Affinity {
        pod_anti_affinity: Some(update.clone()),
        ..Default::default()
    });
    let r = rollout()
        .image("web:2")
        .revision("4")
        .blue_green(anti)
        .status(&v3, &v2, &v3, &v2)
        .build();
    let sets = vec![sets[0].clone(), Arc::new(v2_set), sets[2].clone()];
    let plan = super::super::plan(&observed(r, sets, Some(&v3), Some(&v2)), at(31));
    assert!(
        plan.replica_set_updates
            .iter()
            .all(|u| u.template_pod_anti_affinity.is_none()),
        "{:?}",
        plan.replica_set_updates
    );
}
