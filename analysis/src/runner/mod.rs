//! The AnalysisRun runner: a controller that takes each run's measurements on schedule and
//! writes its verdict, whether a Rollout or a user (`kubectl create -f`) created the run.
//!
//! ```text
//!   watch AnalysisRuns + their Jobs ──▶ reconcile(run)
//!     gather:  the run (our last write if the cache lags), args
//!     plan:    prepare metrics (pure) ─▶ due tasks (pure)
//!     measure: Secrets read, providers run concurrently (I/O)
//!     decide:  advance status (pure) ─▶ verdict, trimmed history
//!     apply:   status patch (only when changed), Events, old Jobs deleted
//!     requeue: at the next measurement, resume, or TTL deadline
//! ```
//!
//! Only a replica allowed to write does anything: pass a `may_write` signal (the leader lease)
//! or start the runner only once elected. Every replica keeps its cache warm either way.

pub mod metrics;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

pub use metrics::AnalysisMetrics;

use crate::api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus};
use crate::args::resolve_metric;
use crate::plan::{SpecProblem, prepare};
use crate::progress::{Outcome, advance, begin, fail_spec, measurement_number};
use crate::providers::job::RUN_UID_LABEL;
use crate::providers::{ProviderError, Providers, RunRef, timestamp_now};
use crate::schedule::{due_tasks, next_wakeup, ttl_deadline};
use crate::verdict::{is_terminating, last_measurement};
use crate::watch::{PacedTriggers, paced};

/// How the runner runs.
#[derive(Clone, Debug, Default)]
pub struct RunnerConfig {
    /// The Prometheus server for prometheus metrics that name no `address`
    /// (`ramp-controller run --prometheus-address`).
    pub prometheus_address: Option<String>,
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// While this holds `false` the runner writes nothing (another replica holds the lease);
    /// when it turns `true` every run is reconciled. `None`: always write.
    pub may_write: Option<watch::Receiver<bool>>,
    /// Name in Events' `reportingController` (default `ramp`).
    pub reporter: Option<String>,
}

/// Why the runner could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("setting up metric providers: {0}")]
    Providers(#[from] ProviderError),
}

/// Why one reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing the status of AnalysisRun {run}: {source}")]
    WriteStatus {
        run: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting AnalysisRun {run} after its TTL: {source}")]
    Delete {
        run: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading Secrets for AnalysisRun {run}: {source}")]
    Secrets {
        run: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::WriteStatus { .. } => "WriteStatus",
            ReconcileError::Delete { .. } => "Delete",
            ReconcileError::Secrets { .. } => "Secrets",
        }
    }
}

/// How often an in-flight measurement with no `resumeAt` is looked at even without an event.
const IN_FLIGHT_POLL: Duration = Duration::from_secs(10);
/// Waking slightly after a scheduled time guarantees the time has passed when we look.
const WAKE_MARGIN: Duration = Duration::from_millis(2);
/// How many remembered writes may outnumber the cached runs before the extras are dropped.
const WRITTEN_SLACK: usize = 64;
/// Retry delay after a failed reconcile.
const ERROR_RETRY: Duration = Duration::from_secs(5);

struct Context {
    client: kube::Client,
    providers: Providers,
    metrics: Arc<AnalysisMetrics>,
    recorder: Recorder,
    may_write: Option<watch::Receiver<bool>>,
    /// The runner's cache of runs.
    runs: Store<AnalysisRun>,
    /// Our last status write per run uid (see [`Context::current_status`]).
    written: Mutex<HashMap<String, Written>>,
}

struct Written {
    /// resourceVersion our write produced.
    resource_version: String,
    status: AnalysisRunStatus,
}

impl Context {
    fn may_write(&self) -> bool {
        self.may_write.as_ref().is_none_or(|rx| *rx.borrow())
    }

    /// Our last write of the run's status, while the cache holds that version or an older one:
    /// a cache that has not caught up with the write yet cannot cause a measurement to be taken
    /// twice. A newer version (someone else wrote) wins.
    fn current_status(&self, run: &AnalysisRun) -> Option<AnalysisRunStatus> {
        let uid = run.metadata.uid.as_deref()?;
        let seen = run.metadata.resource_version.as_deref().unwrap_or("");
        let mut written = self.written.lock().ok()?;
        let entry = written.get(uid)?;
        let not_newer = match (seen.parse::<u64>(), entry.resource_version.parse::<u64>()) {
            (Ok(seen), Ok(ours)) => seen <= ours,
            _ => seen == entry.resource_version,
        };
        if not_newer {
            Some(entry.status.clone())
        } else {
            written.remove(uid);
            None
        }
    }

    fn remember(&self, uid: &str, resource_version: Option<String>, status: AnalysisRunStatus) {
        if let (Ok(mut written), Some(resource_version)) = (self.written.lock(), resource_version) {
            // Drop what belongs to deleted runs once in a while.
            let known = self.runs.state();
            if written.len() > known.len() + WRITTEN_SLACK {
                written
                    .retain(|uid, _| known.iter().any(|r| r.metadata.uid.as_deref() == Some(uid)));
            }
            written.insert(
                uid.to_string(),
                Written {
                    resource_version,
                    status,
                },
            );
        }
    }

    fn forget(&self, uid: &str) {
        if let Ok(mut written) = self.written.lock() {
            written.remove(uid);
        }
    }
}

/// Runs the AnalysisRun controller until the watch streams end (dropping the future stops it).
///
/// Needs a rustls crypto provider installed in the process (for HTTP providers), and RBAC for:
/// AnalysisRuns (get, list, watch, patch status, delete), Jobs (get, list, watch, create,
/// delete), Secrets (get), events.k8s.io Events (create, patch).
pub async fn run(
    client: kube::Client,
    config: RunnerConfig,
    metrics: Arc<AnalysisMetrics>,
) -> Result<(), RunnerError> {
    let providers = Providers::new(client.clone(), config.prometheus_address.clone())?;
    let reporter = Reporter {
        controller: config
            .reporter
            .clone()
            .unwrap_or_else(|| "ramp".to_string()),
        instance: std::env::var("POD_NAME").ok(),
    };
    let (runs, jobs): (Api<AnalysisRun>, Api<Job>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Each watch is paced by itself (a 410 relists at once) rather than by the controller's
    // one backoff over both, which grows under repeated 410s and holds back every trigger.
    let (store, writer) = reflector::store::<AnalysisRun>();
    let run_events = paced(watcher(runs, watcher::Config::default()))
        .reflect(writer)
        .applied_objects();
    // A relist of the Jobs reconciles every run: a Job that ended or went away while the
    // watch was down came as no event.
    let (relist_sender, job_relists) = futures::channel::mpsc::unbounded();
    let mut jobs_listed_before = false;
    let job_events = paced(watcher(
        jobs,
        watcher::Config::default().labels(RUN_UID_LABEL),
    ))
    .inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            if jobs_listed_before {
                let _ = relist_sender.unbounded_send(());
            }
            jobs_listed_before = true;
        }
    })
    .touched_objects();
    let controller = Controller::for_stream(run_events, store)
        .owns_stream(job_events)
        .trigger_backoff(PacedTriggers)
        .reconcile_all_on(job_relists);
    metrics.watch_runs(controller.store());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        providers,
        metrics: metrics.clone(),
        may_write: config.may_write.clone(),
        runs: controller.store(),
        written: Mutex::new(HashMap::new()),
    });
    let became_writer = futures::stream::unfold(config.may_write, |rx| async move {
        let mut rx = rx?;
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), Some(rx)));
            }
        }
    });
    controller
        .reconcile_all_on(became_writer)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                crate::watch::log_controller_error("AnalysisRun", &error);
            }
        })
        .await;
    Ok(())
}

fn error_policy(run: Arc<AnalysisRun>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let namespace = run.namespace().unwrap_or_default();
    ctx.metrics.reconcile_failed(&namespace, &run.name_any());
    tracing::warn!(run = %run.name_any(), %namespace, category = error.category(), %error, "analysis run reconcile failed; retrying");
    Action::requeue(ERROR_RETRY)
}

#[tracing::instrument(skip_all, fields(run = %run.name_any(), namespace = run.namespace().unwrap_or_default()))]
async fn reconcile(run: Arc<AnalysisRun>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let _timer = ctx.metrics.reconcile_timer(&namespace, &name);
    if !ctx.may_write() || run.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let observed = ctx.current_status(&run).or_else(|| run.status.clone());
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);

    if let Some(phase) = observed
        .as_ref()
        .and_then(|s| s.phase)
        .filter(|p| p.completed())
    {
        return expire(&api, &run, observed.as_ref(), phase, &ctx).await;
    }

    // Gather and plan.
    let now = timestamp_now();
    let mut status = begin(observed.as_ref(), now);
    let metrics = match prepare(&run.spec) {
        Ok(metrics) => metrics,
        Err(problem) => {
            let status = fail_spec(status, &problem, now);
            write_status(&api, &run, &ctx, observed.as_ref(), status).await?;
            publish_completion(&ctx, &run, AnalysisPhase::Error, Some(&problem.to_string())).await;
            return Ok(Action::await_change());
        }
    };
    let terminate = run.spec.terminate == Some(true);
    let terminating = is_terminating(terminate, &status);
    let tasks = due_tasks(&metrics, &status, terminating, Timestamp::now());

    // Measure.
    let mut secrets = Vec::new();
    let mut outcomes = Vec::new();
    if !tasks.is_empty() {
        let values = match secrets::arg_values(&ctx.client, &namespace, &run.spec).await {
            Ok((values, secret_values)) => {
                secrets = secret_values;
                values
            }
            Err(secrets::SecretError::Missing(why)) => {
                let problem = SpecProblem::Args(why);
                let status = fail_spec(status, &problem, now);
                write_status(&api, &run, &ctx, observed.as_ref(), status).await?;
                publish_completion(&ctx, &run, AnalysisPhase::Error, Some(&problem.to_string()))
                    .await;
                return Ok(Action::await_change());
            }
            Err(secrets::SecretError::Api(source)) => {
                return Err(ReconcileError::Secrets { run: name, source });
            }
        };
        let run_ref = RunRef {
            name: name.clone(),
            namespace: namespace.clone(),
            uid: uid.clone(),
        };
        let measurements = tasks.iter().map(|task| {
            let prepared = &metrics[task.metric];
            let in_flight = last_measurement(&status, prepared.name()).cloned();
            let number = measurement_number(&status, prepared.name());
            let resolved = resolve_metric(&run.spec.metrics[prepared.index], &values);
            let providers = &ctx.providers;
            let run_ref = &run_ref;
            let kind = task.kind;
            async move {
                match resolved {
                    Ok(metric) => {
                        providers
                            .measure(run_ref, &metric, kind, in_flight.as_ref(), number)
                            .await
                    }
                    Err(e) => crate::providers::error_measurement(
                        None,
                        &ProviderError::Config(e.to_string()),
                    ),
                }
            }
        });
        let measured = futures::future::join_all(measurements).await;
        outcomes = tasks
            .iter()
            .zip(measured)
            .map(|(task, measurement)| Outcome {
                task: *task,
                measurement,
            })
            .collect();
    }

    // Decide.
    let advanced = advance(
        &metrics,
        status,
        outcomes,
        terminate,
        &secrets,
        timestamp_now(),
    );
    status = advanced.status;

    // Apply.
    write_status(&api, &run, &ctx, observed.as_ref(), status.clone()).await?;
    if let Some(phase) = advanced.completed {
        publish_completion(&ctx, &run, phase, status.message.as_deref()).await;
    }
    if !advanced.dropped.is_empty() {
        let run_ref = RunRef {
            name: name.clone(),
            namespace: namespace.clone(),
            uid: uid.clone(),
        };
        for (index, dropped) in &advanced.dropped {
            ctx.providers
                .garbage_collect(&run_ref, &metrics[*index].metric, dropped)
                .await;
        }
    }

    // Requeue.
    if status.phase.is_some_and(|p| p.completed()) {
        return Ok(
            match ttl_deadline(run.spec.ttl_strategy.as_ref(), &status) {
                Some(deadline) => Action::requeue(until(deadline)),
                None => Action::await_change(),
            },
        );
    }
    let in_flight = metrics
        .iter()
        .any(|m| last_measurement(&status, m.name()).is_some_and(|l| l.finished_at.is_none()));
    let wakeup = next_wakeup(&metrics, &status).map(until);
    let wait = match (wakeup, in_flight) {
        (Some(w), true) => w.min(IN_FLIGHT_POLL),
        (Some(w), false) => w,
        (None, true) => IN_FLIGHT_POLL,
        (None, false) => return Ok(Action::await_change()),
    };
    Ok(Action::requeue(wait))
}

/// Time from now until `at` (plus a small margin), zero if it has passed.
fn until(at: Timestamp) -> Duration {
    let left = at.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO) + WAKE_MARGIN
}

/// A completed run: deleted once its TTL has passed, otherwise left until then.
async fn expire(
    api: &Api<AnalysisRun>,
    run: &AnalysisRun,
    status: Option<&AnalysisRunStatus>,
    _phase: AnalysisPhase,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let Some(deadline) = status.and_then(|s| ttl_deadline(run.spec.ttl_strategy.as_ref(), s))
    else {
        return Ok(Action::await_change());
    };
    if Timestamp::now() < deadline {
        return Ok(Action::requeue(until(deadline)));
    }
    let name = run.name_any();
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(source) => return Err(ReconcileError::Delete { run: name, source }),
    }
    if let Some(uid) = &run.metadata.uid {
        ctx.forget(uid);
    }
    tracing::info!(run = %name, "AnalysisRun deleted after its ttlStrategy");
    Ok(Action::await_change())
}

/// Writes the status if it changed; remembers the write for the next pass.
async fn write_status(
    api: &Api<AnalysisRun>,
    run: &AnalysisRun,
    ctx: &Context,
    observed: Option<&AnalysisRunStatus>,
    status: AnalysisRunStatus,
) -> Result<(), ReconcileError> {
    if observed == Some(&status) {
        return Ok(());
    }
    let mut body = serde_json::json!({ "status": &status });
    if status.message.is_none() {
        body["status"]["message"] = serde_json::Value::Null;
    }
    let name = run.name_any();
    let patched = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map_err(|source| ReconcileError::WriteStatus {
            run: name.clone(),
            source,
        })?;
    if let Some(uid) = &run.metadata.uid {
        ctx.remember(uid, patched.metadata.resource_version, status);
    }
    Ok(())
}

async fn publish_completion(
    ctx: &Context,
    run: &AnalysisRun,
    phase: AnalysisPhase,
    message: Option<&str>,
) {
    let type_ = match phase {
        AnalysisPhase::Error | AnalysisPhase::Failed => EventType::Warning,
        _ => EventType::Normal,
    };
    let mut note = format!("Analysis Completed. Result: {phase}");
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        note.push_str(": ");
        note.push_str(message);
    }
    note.truncate(1000);
    let event = Event {
        type_,
        reason: format!("AnalysisRun{phase}"),
        note: Some(note),
        action: "Analyze".to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &run.object_ref(&())).await {
        tracing::debug!(%error, "could not publish an AnalysisRun event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_is_never_negative() {
        let past = Timestamp::from_second(1).unwrap();
        assert_eq!(until(past), WAKE_MARGIN);
        let soon = Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(5))
            .unwrap();
        let wait = until(soon);
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5) + WAKE_MARGIN);
    }
}
