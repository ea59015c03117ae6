//! Experiments pass by pass, and a Rollout's `experiment` step: small builders, one plan per
//! test step, no API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use ramp_analysis::api::{
    AnalysisPhase, AnalysisRun, AnalysisRunStatus, AnalysisTemplateSpec, Argument, Metric,
};
use ramp_analysis::build::Templates;

use super::plan::{self, ExperimentPlan, ObservedExperiment};
use super::step::ExperimentChange;
use super::{EXPERIMENT_NAME_ANNOTATION, TEMPLATE_NAME_ANNOTATION};
use crate::api::{
    AnalysisRunArgument, ArgumentValueFrom, CanaryStatus, CanaryStep, CanaryStrategy, Experiment,
    ExperimentAnalysisRunStatus, ExperimentAnalysisTemplateRef, ExperimentSpec, ExperimentStatus,
    ExperimentTemplate, Rollout, RolloutExperimentStep, RolloutExperimentStepAnalysisTemplateRef,
    RolloutExperimentTemplate, RolloutPause, RolloutSpec, RolloutStatus, RolloutStrategy,
    TemplateService,
};
use crate::rollout::hash::{pod_template_hash, step_hash};
use crate::rollout::names::{
    POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION,
};
use crate::rollout::observe::{Observed, ReplicaSetExt};

const EXPERIMENT_UID: &str = "experiment-uid";
const ROLLOUT_UID: &str = "rollout-uid";

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).unwrap()
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

fn pod(app: &str, image: &str, port: Option<i32>) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(app)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ports: port.map(|p| {
                    vec![ContainerPort {
                        container_port: p,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn template(name: &str, image: &str) -> ExperimentTemplate {
    ExperimentTemplate {
        name: name.into(),
        selector: LabelSelector {
            match_labels: Some(labels("demo")),
            match_expressions: None,
        },
        template: pod("demo", image, None),
        ..Default::default()
    }
}

fn experiment(templates: Vec<ExperimentTemplate>) -> Experiment {
    let mut e = Experiment::new(
        "exp",
        ExperimentSpec {
            templates,
            ..Default::default()
        },
    );
    e.metadata.namespace = Some("shop".into());
    e.metadata.uid = Some(EXPERIMENT_UID.into());
    e
}

fn analysis(name: &str, required: bool) -> ExperimentAnalysisTemplateRef {
    ExperimentAnalysisTemplateRef {
        name: name.into(),
        template_name: name.into(),
        required_for_completion: required.then_some(true),
        ..Default::default()
    }
}

fn observe(experiment: &Experiment) -> ObservedExperiment {
    ObservedExperiment::new(Arc::new(experiment.clone()))
}

/// What the cluster would hold after `plan` is applied and the ReplicaSets are `available`.
fn after(
    experiment: &Experiment,
    observed: &ObservedExperiment,
    plan: &ExperimentPlan,
    available: i32,
) -> (Experiment, ObservedExperiment) {
    let mut next = experiment.clone();
    next.status = Some(plan.status.clone());
    let mut world = ObservedExperiment::new(Arc::new(next.clone()));
    let mut sets: Vec<ReplicaSet> = observed
        .replica_sets
        .iter()
        .map(|rs| (**rs).clone())
        .collect();
    sets.extend(plan.create_replica_sets.iter().cloned());
    for rs in &mut sets {
        if let Some(change) = plan
            .replica_set_updates
            .iter()
            .find(|c| Some(&c.name) == rs.metadata.name.as_ref())
        {
            if let Some(replicas) = change.replicas {
                rs.spec.as_mut().unwrap().replicas = Some(replicas);
            }
            if let Some(deadline) = &change.scale_down_deadline {
                let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
                match deadline {
                    Some(at) => {
                        annotations.insert(SCALE_DOWN_DEADLINE_ANNOTATION.into(), at.clone())
                    }
                    None => annotations.remove(SCALE_DOWN_DEADLINE_ANNOTATION),
                };
            }
        }
        let desired = rs.desired();
        let up = available.min(desired);
        rs.status = Some(ReplicaSetStatus {
            replicas: desired,
            ready_replicas: Some(up),
            available_replicas: Some(up),
            ..Default::default()
        });
    }
    world.replica_sets = sets.into_iter().map(Arc::new).collect();
    let mut services: Vec<Service> = observed.services.iter().map(|s| (**s).clone()).collect();
    services.extend(plan.create_services.iter().cloned());
    services.retain(|s| !plan.delete_services.contains(&s.name_any()));
    world.services = services.into_iter().map(Arc::new).collect();
    let mut runs: Vec<AnalysisRun> = observed
        .analysis_runs
        .iter()
        .map(|r| (**r).clone())
        .collect();
    runs.extend(plan.create_runs.iter().map(|r| r.run.clone()));
    world.analysis_runs = runs.into_iter().map(Arc::new).collect();
    world.analysis_templates = observed.analysis_templates.clone();
    (next, world)
}

fn phase(plan: &ExperimentPlan) -> AnalysisPhase {
    plan.status.phase.unwrap()
}

fn template_status<'p>(plan: &'p ExperimentPlan, name: &str) -> Option<&'p str> {
    plan.status
        .template_statuses
        .iter()
        .flatten()
        .find(|t| t.name == name)
        .and_then(|t| t.status.as_deref())
}

fn job_templates() -> Arc<Templates> {
    Arc::new(Templates {
        templates: vec![AnalysisTemplateSpec {
            args: Some(vec![Argument {
                name: "hash".into(),
                value: None,
                value_from: None,
            }]),
            metrics: Some(vec![Metric {
                name: "check".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn with_run_phase(world: &mut ObservedExperiment, phase: AnalysisPhase, message: &str) {
    world.analysis_runs = world
        .analysis_runs
        .iter()
        .map(|run| {
            let mut run = (**run).clone();
            run.status = Some(AnalysisRunStatus {
                phase: Some(phase),
                message: Some(message.into()).filter(|m: &String| !m.is_empty()),
                ..Default::default()
            });
            Arc::new(run)
        })
        .collect();
}

#[test]
fn each_template_runs_as_a_replica_set_of_its_own_hash() {
    let mut e = experiment(vec![
        template("baseline", "demo:blue"),
        template("canary", "demo:yellow"),
    ]);
    e.spec.templates[1].replicas = Some(2);
    e.spec.templates[1].service = Some(TemplateService::default());
    e.spec.templates[1].template = pod("demo", "demo:yellow", Some(8080));
    let first = plan::plan(&observe(&e), at(0));
    assert_eq!(phase(&first), AnalysisPhase::Pending);
    assert_eq!(first.create_replica_sets.len(), 2);
    let canary = &first.create_replica_sets[1];
    assert_eq!(canary.name_any(), "exp-canary");
    let hash = canary.pod_hash().to_string();
    assert_eq!(
        hash,
        plan::template_hash(&pod("demo", "demo:yellow", Some(8080)), "canary", None)
    );
    // Not the plain pod template's hash (a Rollout's pods may have it), nor another template's.
    assert_ne!(
        hash,
        pod_template_hash(&pod("demo", "demo:yellow", Some(8080)), None)
    );
    assert_ne!(
        hash,
        plan::template_hash(&pod("demo", "demo:yellow", Some(8080)), "baseline", None)
    );
    let spec = canary.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .unwrap()
            .get(POD_TEMPLATE_HASH_LABEL),
        Some(&hash)
    );
    let pod_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    assert_eq!(
        pod_labels.unwrap().get(POD_TEMPLATE_HASH_LABEL),
        Some(&hash)
    );
    assert_eq!(
        canary
            .annotations()
            .get(EXPERIMENT_NAME_ANNOTATION)
            .unwrap(),
        "exp"
    );
    assert_eq!(
        canary.annotations().get(TEMPLATE_NAME_ANNOTATION).unwrap(),
        "canary"
    );
    assert_eq!(canary.owner_references()[0].kind, "Experiment");
    // `service: {}` asks for a Service named after the ReplicaSet, on its container ports.
    assert_eq!(first.create_services.len(), 1);
    let service = &first.create_services[0];
    assert_eq!(service.name_any(), "exp-canary");
    let service_spec = service.spec.as_ref().unwrap();
    assert_eq!(service_spec.ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(
        service_spec
            .selector
            .as_ref()
            .unwrap()
            .get(POD_TEMPLATE_HASH_LABEL),
        Some(&hash)
    );
}

#[test]
fn runs_for_its_duration_then_succeeds_and_scales_down_after_the_delay() {
    let mut e = experiment(vec![template("baseline", "demo:blue")]);
    e.spec.duration = Some("30s".into());
    e.spec.scale_down_delay_seconds = Some(5);
    let observed = observe(&e);
    let p1 = plan::plan(&observed, at(0));
    let (e, world) = after(&e, &observed, &p1, 0);
    let p2 = plan::plan(&world, at(1));
    assert_eq!(
        phase(&p2),
        AnalysisPhase::Pending,
        "the pod is not available yet"
    );
    assert_eq!(template_status(&p2, "baseline"), Some("Progressing"));
    let (e, world) = after(&e, &world, &p2, 1);
    let p3 = plan::plan(&world, at(2));
    assert_eq!(phase(&p3), AnalysisPhase::Running);
    assert_eq!(p3.status.available_at, Some(Time(at(2))));
    assert_eq!(p3.requeue_after.map(|d| d.as_secs()), Some(30));
    let (e, world) = after(&e, &world, &p3, 1);
    let p4 = plan::plan(&world, at(20));
    assert_eq!(
        phase(&p4),
        AnalysisPhase::Running,
        "still within its duration"
    );
    assert!(p4.replica_set_updates.is_empty() && p4.create_replica_sets.is_empty());
    let (e, world) = after(&e, &world, &p4, 1);
    let p5 = plan::plan(&world, at(33));
    assert_eq!(template_status(&p5, "baseline"), Some("Successful"));
    assert_eq!(phase(&p5), AnalysisPhase::Successful);
    let (e, world) = after(&e, &world, &p5, 1);
    // Finished: the ReplicaSet is kept for scaleDownDelaySeconds, then scaled to zero.
    let p6 = plan::plan(&world, at(34));
    assert_eq!(p6.replica_set_updates.len(), 1);
    assert_eq!(p6.replica_set_updates[0].replicas, None);
    assert_eq!(
        p6.replica_set_updates[0].scale_down_deadline,
        Some(Some(at(39).to_string()))
    );
    let (e, world) = after(&e, &world, &p6, 1);
    let p7 = plan::plan(&world, at(36));
    assert!(p7.replica_set_updates.is_empty());
    assert!(p7.requeue_after.is_some());
    let (_, world) = after(&e, &world, &p7, 1);
    let p8 = plan::plan(&world, at(40));
    assert_eq!(p8.replica_set_updates[0].replicas, Some(0));
    assert_eq!(phase(&p8), AnalysisPhase::Successful);
}

#[test]
fn a_template_never_available_fails_at_its_progress_deadline() {
    let mut e = experiment(vec![template("image-does-not-exist", "demo:nope")]);
    e.spec.progress_deadline_seconds = Some(30);
    let observed = observe(&e);
    let p1 = plan::plan(&observed, at(0));
    let (e, world) = after(&e, &observed, &p1, 0);
    let p2 = plan::plan(&world, at(1));
    assert_eq!(
        template_status(&p2, "image-does-not-exist"),
        Some("Progressing")
    );
    assert_eq!(p2.requeue_after.map(|d| d.as_secs()), Some(30));
    let (e, world) = after(&e, &world, &p2, 0);
    let p3 = plan::plan(&world, at(32));
    assert_eq!(template_status(&p3, "image-does-not-exist"), Some("Failed"));
    assert_eq!(phase(&p3), AnalysisPhase::Failed);
    assert_eq!(
        p3.status.message.as_deref(),
        Some("Template 'image-does-not-exist' exceeded its progressDeadlineSeconds (30)")
    );
    let (_, world) = after(&e, &world, &p3, 0);
    let p4 = plan::plan(&world, at(33));
    assert!(
        p4.replica_set_updates
            .iter()
            .any(|u| u.scale_down_deadline.as_ref().is_some_and(Option::is_some)),
        "a failed experiment winds its ReplicaSets down"
    );
}

#[test]
fn a_missing_analysis_template_is_an_error_before_anything_runs() {
    let mut e = experiment(vec![template("baseline", "demo:blue")]);
    e.spec.analyses = Some(vec![analysis("does-not-exist", false)]);
    let mut observed = observe(&e);
    observed.analysis_templates.insert(
        "does-not-exist".into(),
        Err("AnalysisTemplate \"does-not-exist\" in namespace \"shop\" not found".into()),
    );
    let p1 = plan::plan(&observed, at(0));
    let (e, world) = after(&e, &observed, &p1, 0);
    let p2 = plan::plan(&world, at(1));
    assert_eq!(phase(&p2), AnalysisPhase::Error);
    let message = p2.status.message.clone().unwrap();
    assert!(
        message.starts_with("AnalysisTemplate verification failed for analysis 'does-not-exist'"),
        "{message}"
    );
    assert!(p2.create_runs.is_empty());
    let (_, world) = after(&e, &world, &p2, 0);
    let p3 = plan::plan(&world, at(2));
    assert_eq!(phase(&p3), AnalysisPhase::Error, "a finished phase stays");
}

/// Runs an experiment with one analysis until its run exists; returns the world then.
fn started_with_analysis(required: bool) -> (Experiment, ObservedExperiment, ExperimentPlan) {
    let mut e = experiment(vec![template("baseline", "demo:blue")]);
    let mut a = analysis("check", required);
    a.args = Some(vec![Argument {
        name: "hash".into(),
        value: Some("{{templates.baseline.podTemplateHash}}".into()),
        value_from: None,
    }]);
    e.spec.analyses = Some(vec![a]);
    let mut observed = observe(&e);
    observed
        .analysis_templates
        .insert("check".into(), Ok(job_templates()));
    let p1 = plan::plan(&observed, at(0));
    let (e, world) = after(&e, &observed, &p1, 1);
    let p2 = plan::plan(&world, at(1));
    assert_eq!(phase(&p2), AnalysisPhase::Running);
    assert!(
        p2.create_runs.is_empty(),
        "runs start once the templates are available"
    );
    let (e, world) = after(&e, &world, &p2, 1);
    let p3 = plan::plan(&world, at(2));
    assert_eq!(p3.create_runs.len(), 1);
    (e, world, p3)
}

#[test]
fn an_analysis_run_gets_the_template_hashes_and_its_failure_fails_the_experiment() {
    let (e, world, p3) = started_with_analysis(false);
    let run = &p3.create_runs[0].run;
    assert_eq!(run.name_any(), "exp-check");
    assert_eq!(run.owner_references()[0].kind, "Experiment");
    let hash = world
        .replica_set("baseline")
        .unwrap()
        .pod_hash()
        .to_string();
    let args = run.spec.args.clone().unwrap();
    assert_eq!(args[0].value.as_deref(), Some(hash.as_str()));
    let entry = &p3.status.analysis_runs.as_ref().unwrap()[0];
    assert_eq!(
        (entry.analysis_run.as_str(), entry.phase),
        ("exp-check", AnalysisPhase::Pending)
    );

    let (e, mut world) = after(&e, &world, &p3, 1);
    with_run_phase(
        &mut world,
        AnalysisPhase::Failed,
        "metric \"check\" assessed Failed",
    );
    let p4 = plan::plan(&world, at(10));
    assert_eq!(phase(&p4), AnalysisPhase::Failed);
    assert_eq!(
        p4.status.message.as_deref(),
        Some("metric \"check\" assessed Failed")
    );
    let (_, world) = after(&e, &world, &p4, 1);
    let p5 = plan::plan(&world, at(11));
    assert_eq!(template_status(&p5, "baseline"), Some("Successful"));
    assert!(
        !p5.replica_set_updates.is_empty(),
        "the templates wind down"
    );
}

#[test]
fn a_required_analysis_that_succeeds_completes_the_experiment() {
    let (e, world, p3) = started_with_analysis(true);
    let (e, mut world) = after(&e, &world, &p3, 1);
    with_run_phase(&mut world, AnalysisPhase::Running, "");
    let p4 = plan::plan(&world, at(5));
    assert_eq!(phase(&p4), AnalysisPhase::Running);
    let (e, mut world) = after(&e, &world, &p4, 1);
    with_run_phase(&mut world, AnalysisPhase::Successful, "");
    let p5 = plan::plan(&world, at(9));
    assert_eq!(phase(&p5), AnalysisPhase::Successful);
    let (_, world) = after(&e, &world, &p5, 1);
    let p6 = plan::plan(&world, at(10));
    assert_eq!(template_status(&p6, "baseline"), Some("Successful"));
    assert!(
        !p6.replica_set_updates.is_empty(),
        "the templates wind down"
    );
}

#[test]
fn terminate_ends_it_successfully_and_stops_its_runs() {
    let (e, world, p3) = started_with_analysis(false);
    let (mut e, mut world) = after(&e, &world, &p3, 1);
    with_run_phase(&mut world, AnalysisPhase::Running, "");
    e.spec.terminate = Some(true);
    world.experiment = Arc::new(e.clone());
    let p4 = plan::plan(&world, at(5));
    assert_eq!(p4.terminate_runs, vec!["exp-check".to_string()]);
    assert_eq!(template_status(&p4, "baseline"), Some("Successful"));
    assert_eq!(phase(&p4), AnalysisPhase::Successful);
}

#[test]
fn an_invalid_spec_gets_a_condition_and_nothing_else() {
    let mut e = experiment(vec![template("baseline", "demo:blue")]);
    e.spec.templates[0].selector.match_labels = Some(labels("other"));
    let p = plan::plan(&observe(&e), at(0));
    assert!(p.create_replica_sets.is_empty());
    let condition = &p.status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("InvalidSpec", "True")
    );
}

#[test]
fn a_settled_experiment_writes_nothing() {
    let mut e = experiment(vec![template("baseline", "demo:blue")]);
    e.spec.duration = Some("1h".into());
    let observed = observe(&e);
    let p1 = plan::plan(&observed, at(0));
    let (e, world) = after(&e, &observed, &p1, 1);
    let p2 = plan::plan(&world, at(1));
    let (e, world) = after(&e, &world, &p2, 1);
    let p3 = plan::plan(&world, at(2));
    let (e, world) = after(&e, &world, &p3, 1);
    let p4 = plan::plan(&world, at(3));
    assert_eq!(Some(&p4.status), e.status.as_ref(), "no status change");
    assert!(p4.create_replica_sets.is_empty() && p4.replica_set_updates.is_empty());
}

// The canary `experiment` step.

fn rollout_pod(image: &str) -> PodTemplateSpec {
    pod("web", image, None)
}

fn rollout_replica_set(image: &str, revision: &str, replicas: i32) -> Arc<ReplicaSet> {
    let hash = pod_template_hash(&rollout_pod(image), None);
    let mut template = rollout_pod(image);
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut selector = labels("web");
    selector.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            namespace: Some("shop".into()),
            uid: Some(format!("rs-{hash}")),
            labels: template.metadata.as_ref().unwrap().labels.clone(),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )])),
            creation_timestamp: Some(Time(at(0))),
            owner_references: Some(vec![OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Rollout".into(),
                name: "web".into(),
                uid: ROLLOUT_UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: Some(template),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..Default::default()
        }),
    })
}

fn experiment_step() -> CanaryStep {
    CanaryStep {
        experiment: Some(RolloutExperimentStep {
            templates: vec![
                RolloutExperimentTemplate {
                    name: "baseline".into(),
                    spec_ref: "stable".into(),
                    ..Default::default()
                },
                RolloutExperimentTemplate {
                    name: "canary".into(),
                    spec_ref: "canary".into(),
                    ..Default::default()
                },
            ],
            analyses: Some(vec![RolloutExperimentStepAnalysisTemplateRef {
                name: "echo".into(),
                template_name: "echo".into(),
                required_for_completion: Some(true),
                args: Some(vec![
                    AnalysisRunArgument {
                        name: "stable-hash".into(),
                        value_from: Some(ArgumentValueFrom {
                            pod_template_hash_value: Some("Stable".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    AnalysisRunArgument {
                        name: "canary-hash".into(),
                        value: Some("{{templates.canary.podTemplateHash}}".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Rollout updated from `web:1` to `web:2`, at its experiment step, and its world.
fn rollout_at_experiment(current_experiment: Option<&str>) -> (Rollout, Vec<Arc<ReplicaSet>>) {
    let steps = vec![
        experiment_step(),
        CanaryStep {
            pause: Some(RolloutPause::default()),
            ..Default::default()
        },
    ];
    let mut r = Rollout::new(
        "web",
        RolloutSpec {
            replicas: Some(1),
            selector: Some(LabelSelector {
                match_labels: Some(labels("web")),
                match_expressions: None,
            }),
            template: Some(rollout_pod("web:2")),
            strategy: Some(RolloutStrategy {
                canary: Some(CanaryStrategy {
                    steps: Some(steps.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(ROLLOUT_UID.into());
    r.metadata.generation = Some(2);
    r.metadata.annotations = Some(BTreeMap::from([(REVISION_ANNOTATION.into(), "2".into())]));
    let stable = rollout_replica_set("web:1", "1", 1);
    let canary = rollout_replica_set("web:2", "2", 0);
    r.status = Some(RolloutStatus {
        stable_rs: Some(stable.pod_hash().into()),
        current_pod_hash: Some(canary.pod_hash().into()),
        current_step_hash: Some(step_hash(Some(&steps))),
        current_step_index: Some(0),
        observed_generation: Some("2".into()),
        canary: Some(CanaryStatus {
            current_experiment: current_experiment.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    });
    (r, vec![stable, canary])
}

fn step_world(
    rollout: Rollout,
    sets: Vec<Arc<ReplicaSet>>,
    experiments: Vec<Experiment>,
) -> Observed {
    let mut observed = Observed::new(Arc::new(rollout));
    observed.replica_sets = sets;
    observed.experiments = experiments.into_iter().map(Arc::new).collect();
    observed
}

fn created_experiment(plan: &crate::rollout::Plan) -> Experiment {
    plan.experiments
        .iter()
        .find_map(|c| match c {
            ExperimentChange::Create(e) => Some((**e).clone()),
            _ => None,
        })
        .expect("an Experiment is created")
}

fn with_phase(mut e: Experiment, phase: AnalysisPhase, message: Option<&str>) -> Experiment {
    e.metadata.uid = Some("step-experiment".into());
    e.status = Some(ExperimentStatus {
        phase: Some(phase),
        message: message.map(str::to_string),
        analysis_runs: Some(vec![ExperimentAnalysisRunStatus {
            name: "echo".into(),
            analysis_run: "x".into(),
            phase,
            message: None,
        }]),
        ..Default::default()
    });
    e
}

#[test]
fn the_experiment_step_creates_an_experiment_from_the_stable_and_canary_replica_sets() {
    let (rollout, sets) = rollout_at_experiment(None);
    let (stable, canary) = (sets[0].clone(), sets[1].clone());
    let plan = crate::rollout::plan(&step_world(rollout, sets, vec![]), at(10));
    let e = created_experiment(&plan);
    assert_eq!(e.name_any(), format!("web-{}-2-0", canary.pod_hash()));
    assert_eq!(e.owner_references()[0].kind, "Rollout");
    assert_eq!(
        e.labels().get(POD_TEMPLATE_HASH_LABEL).map(String::as_str),
        Some(canary.pod_hash())
    );
    let templates = &e.spec.templates;
    assert_eq!(templates[0].name, "baseline");
    assert_eq!(
        templates[0].template.spec,
        stable
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
    );
    assert_eq!(
        templates[1].template.spec,
        canary
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
    );
    let analysis = &e.spec.analyses.as_ref().unwrap()[0];
    assert_eq!(analysis.required_for_completion, Some(true));
    let args = analysis.args.as_ref().unwrap();
    assert_eq!(
        args[0].value.as_deref(),
        Some(stable.pod_hash()),
        "podTemplateHashValue resolved"
    );
    assert_eq!(
        args[1].value.as_deref(),
        Some("{{templates.canary.podTemplateHash}}"),
        "left for the Experiment to resolve"
    );
    let status = plan.status.unwrap();
    assert_eq!(status.current_step_index, Some(0));
    assert_eq!(
        status.canary.unwrap().current_experiment,
        Some(e.name_any()),
        "recorded as Argo's status.canary.currentExperiment"
    );
}

#[test]
fn the_step_waits_for_the_experiment_and_moves_on_when_it_succeeds() {
    let (rollout, sets) = rollout_at_experiment(None);
    let e = created_experiment(&crate::rollout::plan(
        &step_world(rollout, sets.clone(), vec![]),
        at(10),
    ));
    let name = e.name_any();
    let (rollout, _) = rollout_at_experiment(Some(&name));
    let running = with_phase(e.clone(), AnalysisPhase::Running, None);
    let plan = crate::rollout::plan(
        &step_world(rollout.clone(), sets.clone(), vec![running]),
        at(20),
    );
    assert!(plan.experiments.is_empty(), "{:?}", plan.experiments);
    assert_eq!(plan.status.as_ref().unwrap().current_step_index, Some(0));

    let done = with_phase(e, AnalysisPhase::Successful, None);
    let plan = crate::rollout::plan(&step_world(rollout, sets, vec![done]), at(30));
    let status = plan.status.unwrap();
    assert_eq!(status.current_step_index, Some(1));
    assert_eq!(status.canary.unwrap().current_experiment, None);
    assert_ne!(status.abort, Some(true));
}

#[test]
fn a_failed_experiment_aborts_the_rollout_and_a_retry_starts_a_new_one() {
    let (rollout, sets) = rollout_at_experiment(None);
    let e = created_experiment(&crate::rollout::plan(
        &step_world(rollout, sets.clone(), vec![]),
        at(10),
    ));
    let name = e.name_any();
    let (rollout, _) = rollout_at_experiment(Some(&name));
    let failed = with_phase(
        e.clone(),
        AnalysisPhase::Failed,
        Some("Metric \"echo\" assessed Failed"),
    );
    let plan = crate::rollout::plan(
        &step_world(rollout, sets.clone(), vec![failed.clone()]),
        at(20),
    );
    let status = plan.status.unwrap();
    assert_eq!(status.abort, Some(true));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Metric \"echo\" assessed Failed")),
        "{:?}",
        status.message
    );

    // Retried: the failed Experiment keeps its name; a new one is created beside it.
    let (rollout, _) = rollout_at_experiment(None);
    let mut terminated = failed;
    terminated.spec.terminate = Some(true);
    let plan = crate::rollout::plan(&step_world(rollout, sets, vec![terminated]), at(30));
    assert_eq!(created_experiment(&plan).name_any(), format!("{name}-1"));
}

#[test]
fn an_abort_terminates_the_running_experiment() {
    let (rollout, sets) = rollout_at_experiment(None);
    let e = created_experiment(&crate::rollout::plan(
        &step_world(rollout, sets.clone(), vec![]),
        at(10),
    ));
    let name = e.name_any();
    let (mut rollout, _) = rollout_at_experiment(Some(&name));
    rollout.status.as_mut().unwrap().abort = Some(true);
    let running = with_phase(e, AnalysisPhase::Running, None);
    let plan = crate::rollout::plan(&step_world(rollout, sets, vec![running]), at(20));
    assert!(
        plan.experiments
            .iter()
            .any(|c| matches!(c, ExperimentChange::Terminate { name: n } if *n == name)),
        "{:?}",
        plan.experiments
    );
}
