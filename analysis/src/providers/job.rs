//! The job provider: each measurement runs a Kubernetes Job, owned by the run (so it goes when
//! the run goes). The measurement is Running while the Job runs, Successful when it completes,
//! Failed when it fails; terminating the run deletes the Job (the measurement then ends
//! Successful with "Metric Terminated", as in Argo).
//!
//! Jobs are named `<run uid>.<metric>.<n>` (n = measurements so far + 1, cut to 63 characters
//! because the Job controller copies the name into a pod label), labelled
//! `analysisrun.argoproj.io/uid` and annotated with the run and metric names.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};

use super::{ProviderError, RunRef, error_measurement, timestamp_now};
use crate::api::{API_VERSION, AnalysisPhase, Measurement, Metric};
use crate::schedule::TaskKind;

/// Label on every Job of a run: the run's uid.
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";
/// Annotation naming the run.
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
/// Annotation naming the metric.
pub const METRIC_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// Measurement metadata key holding the Job's name.
pub const JOB_NAME_KEY: &str = "job-name";

/// The name of the `number`th Job of a metric.
pub fn job_name(run_uid: &str, metric: &str, number: i32) -> String {
    let suffix = format!(".{number}");
    let metric: String = metric
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    let mut name = format!("{run_uid}.{metric}");
    let max = 63 - suffix.len();
    if name.len() > max {
        name.truncate(max);
    }
    let name = name.trim_end_matches(['.', '-']);
    format!("{name}{suffix}")
}

/// The Job a measurement runs: the metric's Job spec and metadata, owned by the run.
pub fn job_for(run: &RunRef, metric: &Metric, number: i32) -> Result<Job, ProviderError> {
    let spec = metric
        .provider
        .job
        .as_ref()
        .ok_or_else(|| ProviderError::Config("not a job metric".into()))?;
    let metadata = spec.metadata.clone().unwrap_or_default();
    let mut labels = metadata.labels.unwrap_or_default();
    labels.insert(RUN_UID_LABEL.to_string(), run.uid.clone());
    let mut annotations = metadata.annotations.unwrap_or_default();
    annotations.insert(RUN_NAME_ANNOTATION.to_string(), run.name.clone());
    annotations.insert(METRIC_NAME_ANNOTATION.to_string(), metric.name.clone());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&run.uid, &metric.name, number)),
            namespace: Some(run.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.to_string(),
                kind: "AnalysisRun".to_string(),
                name: run.name.clone(),
                uid: run.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec.spec.clone()),
        status: None,
    })
}

/// Where a Job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Complete,
    Failed,
}

/// Reads a Job's conditions.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten());
    for condition in conditions {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            "Complete" => return JobState::Complete,
            "Failed" => return JobState::Failed,
            _ => {}
        }
    }
    JobState::Running
}

/// Starts, resumes or terminates a Job measurement.
pub async fn measure(
    client: &kube::Client,
    run: &RunRef,
    metric: &Metric,
    kind: TaskKind,
    in_flight: Option<&Measurement>,
    number: i32,
) -> Measurement {
    let api: Api<Job> = Api::namespaced(client.clone(), &run.namespace);
    match (kind, in_flight) {
        (TaskKind::Measure, _) | (_, None) => start(&api, run, metric, number).await,
        (TaskKind::Resume, Some(measurement)) => resume(&api, measurement.clone()).await,
        (TaskKind::Terminate, Some(measurement)) => terminate(&api, measurement.clone()).await,
    }
}

async fn start(api: &Api<Job>, run: &RunRef, metric: &Metric, number: i32) -> Measurement {
    let started = Time(timestamp_now());
    let job = match job_for(run, metric, number) {
        Ok(job) => job,
        Err(e) => return error_measurement(Some(started), &e),
    };
    let name = job.metadata.name.clone().unwrap_or_default();
    let created = match api.create(&PostParams::default(), &job).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Created by an earlier pass whose status write was lost: adopt it if it is ours.
            match api.get(&name).await {
                Ok(existing) if owned_by(&existing, &run.uid) => existing,
                Ok(_) => {
                    return error_measurement(
                        Some(started),
                        &ProviderError::Kubernetes(format!(
                            "Job {name} already exists and belongs to another run"
                        )),
                    );
                }
                Err(e) => {
                    return error_measurement(
                        Some(started),
                        &ProviderError::Kubernetes(format!("reading Job {name}: {e}")),
                    );
                }
            }
        }
        Err(e) => {
            return error_measurement(
                Some(started),
                &ProviderError::Kubernetes(format!("creating Job {name}: {e}")),
            );
        }
    };
    tracing::info!(job = %name, namespace = %run.namespace, "analysis Job created");
    Measurement {
        phase: AnalysisPhase::Running,
        started_at: Some(started),
        metadata: Some(BTreeMap::from([(
            JOB_NAME_KEY.to_string(),
            created.metadata.name.unwrap_or(name),
        )])),
        ..Measurement::default()
    }
}

fn owned_by(job: &Job, uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

fn job_of(measurement: &Measurement) -> Result<String, ProviderError> {
    measurement
        .metadata
        .as_ref()
        .and_then(|m| m.get(JOB_NAME_KEY))
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| ProviderError::Kubernetes("job metadata reference missing".into()))
}

async fn resume(api: &Api<Job>, mut measurement: Measurement) -> Measurement {
    let name = match job_of(&measurement) {
        Ok(name) => name,
        Err(e) => return error_measurement(measurement.started_at, &e),
    };
    let job = match api.get_opt(&name).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return error_measurement(
                measurement.started_at,
                &ProviderError::Kubernetes(format!("Job {name} was deleted before it finished")),
            );
        }
        Err(e) => {
            return error_measurement(
                measurement.started_at,
                &ProviderError::Kubernetes(format!("reading Job {name}: {e}")),
            );
        }
    };
    match job_state(&job) {
        JobState::Running => measurement,
        state => {
            measurement.phase = if state == JobState::Complete {
                AnalysisPhase::Successful
            } else {
                AnalysisPhase::Failed
            };
            measurement.finished_at = Some(Time(timestamp_now()));
            tracing::info!(job = %name, phase = %measurement.phase, "analysis Job finished");
            measurement
        }
    }
}

async fn terminate(api: &Api<Job>, mut measurement: Measurement) -> Measurement {
    let name = match job_of(&measurement) {
        Ok(name) => name,
        Err(e) => return error_measurement(measurement.started_at, &e),
    };
    if let Err(e) = delete(api, &name).await {
        return error_measurement(
            measurement.started_at,
            &ProviderError::Kubernetes(format!("deleting Job {name}: {e}")),
        );
    }
    measurement.phase = AnalysisPhase::Successful;
    measurement.message = Some("Metric Terminated".to_string());
    measurement.finished_at = Some(Time(timestamp_now()));
    tracing::info!(job = %name, "analysis Job terminated");
    measurement
}

async fn delete(api: &Api<Job>, name: &str) -> Result<(), kube::Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the Jobs behind measurements the run no longer keeps.
pub async fn delete_jobs_of(client: &kube::Client, namespace: &str, dropped: &[Measurement]) {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    for measurement in dropped {
        let Ok(name) = job_of(measurement) else {
            continue;
        };
        if let Err(error) = delete(&api, &name).await {
            tracing::warn!(job = %name, %namespace, %error, "could not delete an old analysis Job");
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};

    use super::*;
    use crate::api::{JobMetric, MetricProvider, ObjectLabels};

    const UID: &str = "0b9a5f4e-3c2d-4e8f-9a1b-2c3d4e5f6a7b";

    #[test]
    fn names_fit_a_label() {
        assert_eq!(
            job_name(UID, "smoke", 1),
            "0b9a5f4e-3c2d-4e8f-9a1b-2c3d4e5f6a7b.smoke.1"
        );
        let long = job_name(UID, "a-very-long-metric-name-that-goes-on", 12);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with(".12"));
        assert_eq!(
            job_name(UID, "Smoke_Test", 2),
            format!("{UID}.smoke-test.2")
        );
    }

    #[test]
    fn the_job_is_owned_by_the_run() {
        let run = RunRef {
            name: "canary-1".into(),
            namespace: "prod".into(),
            uid: UID.into(),
        };
        let metric = Metric {
            name: "smoke".into(),
            provider: MetricProvider {
                job: Some(JobMetric {
                    metadata: Some(ObjectLabels {
                        labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                        annotations: None,
                    }),
                    spec: JobSpec {
                        backoff_limit: Some(0),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let job = job_for(&run, &metric, 3).unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some(&*format!("{UID}.smoke.3"))
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("prod"));
        let labels = job.metadata.labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[RUN_UID_LABEL], UID);
        let annotations = job.metadata.annotations.unwrap();
        assert_eq!(annotations[RUN_NAME_ANNOTATION], "canary-1");
        assert_eq!(annotations[METRIC_NAME_ANNOTATION], "smoke");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("AnalysisRun", UID, Some(true))
        );
        assert_eq!(job.spec.unwrap().backoff_limit, Some(0));
    }

    #[test]
    fn job_states() {
        let with = |conditions: Vec<(&str, &str)>| Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(t, s)| JobCondition {
                            type_: t.into(),
                            status: s.into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(job_state(&Job::default()), JobState::Running);
        assert_eq!(
            job_state(&with(vec![("Complete", "True")])),
            JobState::Complete
        );
        assert_eq!(job_state(&with(vec![("Failed", "True")])), JobState::Failed);
        assert_eq!(
            job_state(&with(vec![("Failed", "False")])),
            JobState::Running
        );
        assert_eq!(
            job_state(&with(vec![("Suspended", "True")])),
            JobState::Running
        );
    }

    #[test]
    fn the_job_name_comes_from_the_measurement() {
        let m = Measurement {
            metadata: Some(BTreeMap::from([(JOB_NAME_KEY.into(), "j".into())])),
            ..Default::default()
        };
        assert_eq!(job_of(&m).unwrap(), "j");
        assert!(job_of(&Measurement::default()).is_err());
    }
}
