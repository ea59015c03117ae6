//! Kubernetes Events on Rollouts, with Argo Rollouts' reasons and messages, recorded by a
//! background task so that writing them never delays a reconcile (an abort's traffic move in
//! particular).
//!
//! Events go through `events.k8s.io/v1` (Kubernetes ≥ 1.19), so `kubectl describe rollout`
//! lists them. Identical Warnings for one Rollout within a minute (a failing write retried)
//! are recorded once; every transition Event is recorded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use super::names::FIELD_MANAGER;
use super::plan::PlannedEvent;
use crate::api::Rollout;
use crate::metrics::RolloutMetrics;

/// How many Events may wait to be written before new ones are dropped (with a log line).
const QUEUE: usize = 4096;
/// Identical Warnings for one object within this window are recorded once.
const DEDUPLICATE: Duration = Duration::from_secs(60);
/// `reportingController` of Ramp's Events.
pub const REPORTING_CONTROLLER: &str = "ramp.argoproj.io/rollouts-controller";

struct Queued {
    regarding: ObjectReference,
    event: PlannedEvent,
}

/// Hands Events to the background recorder.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Queued>,
    metrics: RolloutMetrics,
}

impl EventSink {
    /// Starts the recorder task; it ends when every sink is dropped.
    pub fn start(client: Client, metrics: RolloutMetrics) -> EventSink {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(record(client, receiver));
        EventSink { queue, metrics }
    }

    /// Queues Events about `rollout`.
    pub fn send(&self, rollout: &Rollout, events: Vec<PlannedEvent>) {
        if events.is_empty() {
            return;
        }
        let regarding = rollout.object_ref(&());
        let namespace = rollout.namespace().unwrap_or_default();
        let name = rollout.name_any();
        for event in events {
            self.metrics.event(
                &namespace,
                &name,
                if event.warning { "Warning" } else { "Normal" },
                &event.reason,
            );
            let queued = Queued {
                regarding: regarding.clone(),
                event,
            };
            if let Err(error) = self.queue.try_send(queued) {
                tracing::warn!(rollout = %name, %namespace, %error, "dropping an Event: the Event queue is full");
            }
        }
    }
}

async fn record(client: Client, mut receiver: mpsc::Receiver<Queued>) {
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "ramp".to_string());
    let mut recent: HashMap<(String, String, String), Instant> = HashMap::new();
    while let Some(Queued { regarding, event }) = receiver.recv().await {
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let name = regarding.name.clone().unwrap_or_default();
        let key = (
            format!("{namespace}/{name}"),
            event.reason.clone(),
            event.message.clone(),
        );
        let now = Instant::now();
        recent.retain(|_, at| now.duration_since(*at) < DEDUPLICATE);
        if event.warning && recent.insert(key, now).is_some() {
            continue;
        }
        let stamp = Timestamp::now();
        let object = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", stamp.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(stamp)),
            action: Some(event.reason.clone()),
            reason: Some(event.reason),
            note: Some(truncate(event.message)),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            dry_run: false,
        };
        if let Err(error) = api.create(&params, &object).await {
            tracing::debug!(rollout = %name, %namespace, %error, "could not record an Event");
        }
    }
}

/// Notes are limited to 1 kB by the API.
fn truncate(mut message: String) -> String {
    if message.len() > 1024 {
        let mut end = 1021;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}
